// pax header encoding rate: encodeHeaderInto on typical entries (short ASCII
// paths, whole-second mtime: one 512-byte ustar block) and on the same entries
// with a nanosecond mtime (which needs an x header: three blocks), as GNU tar's
// --format=posix writes for every file. Also: with atime and ctime too, and with
// long (x header) paths. Headers go into a reused 1 MiB buffer, as the backup's
// stream writer would do.
//
// Baseline: the goal is 100,000 files/s per session, i.e. ≤ 10 µs/header all
// included; the encoder's share should be ~1 µs or less.
//
//   npm run bench -- --pax-headers 1000000   (default)

import { performance } from 'node:perf_hooks';

import type { PaxEntry } from '../src/backup/pax-layout.js';
import { encodeHeaderInto } from '../src/backup/pax-encoder.js';

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}

const DISTINCT = 4096;
/** More than any header this benchmark makes takes (its paths are ≤ ~340 bytes). */
const ROOM = 8 * 512;

type Kind = 'ustar' | 'ustar-split' | 'mtime-ns' | 'all-times-ns' | 'path-x';

function entries(kind: Kind): PaxEntry[] {
  const path = (i: number): string => {
    const dirs = kind === 'ustar-split' ? 4 : kind === 'path-x' ? 10 : 0;
    const mid = 'deeply-nested-directory-name/'.repeat(dirs);
    return `home/user/project/${mid}src/module${i % 97}/file-${i}.ts`;
  };
  return Array.from({ length: DISTINCT }, (_, i) => {
    const e: PaxEntry = {
      path: path(i),
      type: i % 10 === 0 ? 'dir' : 'file',
      size: i % 10 === 0 ? 0n : BigInt((i * 7919) % 100_000),
      mode: i % 10 === 0 ? 0o755 : 0o644,
      uid: 1000,
      gid: 100,
      uname: 'user',
      gname: 'users',
      mtime: {
        sec: 1_700_000_000n + BigInt(i),
        nsec: kind === 'mtime-ns' || kind === 'all-times-ns' ? 123_456_789 + i : 0,
      },
    };
    if (kind === 'all-times-ns') {
      e.atime = { sec: 1_700_000_100n + BigInt(i), nsec: 987_654_321 - i };
      e.ctime = { sec: 1_700_000_050n + BigInt(i), nsec: 555_555_555 + i };
    }
    return e;
  });
}

/** Headers/s and bytes/header over `n` encodes (the best of 5 rounds after a warm-up: other load only slows). */
function measure(list: PaxEntry[], n: number): { rate: number; bytes: number } {
  const buf = new Uint8Array(1 << 20);
  let bytes = 0;
  const round = (count: number): number => {
    let off = 0;
    bytes = 0;
    const start = performance.now();
    for (let i = 0; i < count; i++) {
      if (off + ROOM > buf.length) off = 0;
      const w = encodeHeaderInto(list[i % DISTINCT]!, buf, off);
      off += w;
      bytes += w;
    }
    return performance.now() - start;
  };
  round(Math.min(n, 200_000)); // warm-up (JIT)
  const best = Math.min(round(n), round(n), round(n), round(n), round(n));
  return { rate: n / (best / 1000), bytes: bytes / n };
}

export async function benchPax(): Promise<void> {
  const n = arg('pax-headers', 1_000_000);
  console.log(`pax header encoding (${n.toLocaleString('en')} headers per round, best of 5)`);
  const kinds: [Kind, string][] = [
    ['ustar', 'no x header: ~45-byte path, whole-second mtime'],
    ['ustar-split', 'no x header: ~160-byte path, prefix/name split'],
    ['mtime-ns', 'x header: mtime with ns'],
    ['all-times-ns', 'x header: mtime, atime, ctime with ns'],
    ['path-x', 'x header: ~340-byte path'],
  ];
  for (const [kind, label] of kinds) {
    const { rate, bytes } = measure(entries(kind), n);
    console.log(
      `  ${label.padEnd(48)} ${(rate / 1e6).toFixed(2)} M headers/s  (${((1e9 / rate) | 0).toString().padStart(4)} ns/header, ${bytes.toFixed(0)} bytes/header)`,
    );
  }
  await Promise.resolve();
}
