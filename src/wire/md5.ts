// NDMP MD5 authentication digest (docs/protocol.md §6; draft-skardal-ndmpv4-04 §3.1.2).
//
// The 128-byte message is laid out as
//   [0, n)              the password P (cut to 32 bytes, n = its length)
//   [n, 64 - n)         zeros
//   [64 - n, 128 - n)   the 64-byte challenge
//   [128 - n, 128)      P again
// and the digest is MD5 of it. Pure computation: node's crypto has no I/O.

import { createHash } from 'node:crypto';

export const MD5_CHALLENGE_SIZE = 64;
const MAX_PASSWORD_BYTES = 32;

export function md5Digest(password: string, challenge: Uint8Array): Buffer {
  if (challenge.length !== MD5_CHALLENGE_SIZE) throw new RangeError('MD5 challenge must be 64 bytes');
  const p = Buffer.from(password, 'utf8').subarray(0, MAX_PASSWORD_BYTES);
  const n = p.length;
  const buf = Buffer.alloc(128);
  p.copy(buf, 0);
  buf.set(challenge, 64 - n);
  p.copy(buf, 128 - n);
  return createHash('md5').update(buf).digest();
}
