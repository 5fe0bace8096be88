// File names are bytes (docs/names.md). Linux file systems hold any bytes but
// '/' and NUL in a name, and old SMB and NFS clients wrote Latin-1 names that
// are not valid UTF-8. A name is carried through the server, the wire and the
// catalog as a JavaScript string decoded the lossless way (PEP 383's
// "surrogate escape"): bytes that are valid UTF-8 become their characters, and
// every other byte B (always >= 0x80) becomes the lone surrogate U+DC00+B,
// which valid UTF-8 can never produce. `encodeName(decodeName(b))` is `b` for
// every byte string, so a name round-trips exactly; and names that are UTF-8
// (nearly all) cost nothing but a validity check.
//
// What must never touch a name: Buffer.from(s), Buffer.byteLength(s),
// buf.write(s) or a string path to node's fs, which encode lone surrogates as
// U+FFFD. Boundaries go through encodeName (fs paths as Buffers, pax bytes,
// XDR strings, history records) and decodeName.

import { isUtf8 } from 'node:buffer';
import { CodedError } from './coded-error.js';

/** A string that no byte string decodes to (a lone surrogate outside U+DC80..U+DCFF). */
export class NotAByteNameError extends CodedError {
  readonly code = 'NOT_A_BYTE_NAME';
  constructor(at: number) {
    super(`name holds a lone UTF-16 surrogate at index ${at} that stands for no byte`);
    this.name = 'NotAByteNameError';
  }
}

const ESCAPE_BASE = 0xdc00;

/** No lone surrogate (String#isWellFormed, Node 20; TypeScript's lib here predates it). */
function wellFormed(s: string): boolean {
  return (s as unknown as { isWellFormed(): boolean }).isWellFormed();
}

/** The lossless string of `b[start, end)`. */
export function decodeName(b: Uint8Array, start = 0, end = b.length): string {
  const buf = Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  // Fast path: ASCII and valid UTF-8 (isUtf8 is native and vectorised).
  if (isUtf8(buf.subarray(start, end))) return buf.toString('utf8', start, end);
  return decodeSlow(buf, start, end);
}

function decodeSlow(b: Uint8Array, start: number, end: number): string {
  let out = '';
  let run = start; // start of the pending valid run
  let i = start;
  const flush = (to: number): void => {
    if (to > run) out += Buffer.from(b.buffer, b.byteOffset + run, to - run).toString('utf8');
  };
  while (i < end) {
    const c = b[i]!;
    if (c < 0x80) {
      i++;
      continue;
    }
    const n = sequenceLength(b, i, end);
    if (n > 0) {
      i += n;
      continue;
    }
    flush(i);
    out += String.fromCharCode(ESCAPE_BASE + c);
    i++;
    run = i;
  }
  flush(end);
  return out;
}

/** Length of the valid UTF-8 sequence at `i` (lead byte >= 0x80), or 0. */
function sequenceLength(b: Uint8Array, i: number, end: number): number {
  const c = b[i]!;
  const cont = (k: number, lo = 0x80, hi = 0xbf): boolean => {
    const x = i + k < end ? b[i + k]! : -1;
    return x >= lo && x <= hi;
  };
  if (c >= 0xc2 && c <= 0xdf) return cont(1) ? 2 : 0;
  if (c === 0xe0) return cont(1, 0xa0) && cont(2) ? 3 : 0; // no overlong forms
  if (c === 0xed) return cont(1, 0x80, 0x9f) && cont(2) ? 3 : 0; // no UTF-16 surrogates
  if (c >= 0xe1 && c <= 0xef) return cont(1) && cont(2) ? 3 : 0;
  if (c === 0xf0) return cont(1, 0x90) && cont(2) && cont(3) ? 4 : 0;
  if (c >= 0xf1 && c <= 0xf3) return cont(1) && cont(2) && cont(3) ? 4 : 0;
  if (c === 0xf4) return cont(1, 0x80, 0x8f) && cont(2) && cont(3) ? 4 : 0; // <= U+10FFFF
  return 0;
}

/** Whether `s` is plain Unicode (no escaped byte): its bytes are valid UTF-8. */
export function isUtf8Name(s: string): boolean {
  return wellFormed(s);
}

/** The bytes `s` stands for (the inverse of decodeName). */
export function encodeName(s: string): Buffer {
  if (wellFormed(s)) return Buffer.from(s, 'utf8');
  const out = Buffer.allocUnsafe(s.length * 3);
  let n = 0;
  let run = 0;
  const flush = (to: number): void => {
    if (to > run) n += out.write(s.slice(run, to), n, 'utf8');
  };
  for (let i = 0; i < s.length; i++) {
    const u = s.charCodeAt(i);
    if (u < 0xd800 || u > 0xdfff) continue;
    if (u <= 0xdbff) {
      const next = i + 1 < s.length ? s.charCodeAt(i + 1) : 0;
      if (next >= 0xdc00 && next <= 0xdfff) {
        i++; // a pair: an ordinary character
        continue;
      }
      throw new NotAByteNameError(i);
    }
    if (u < ESCAPE_BASE + 0x80 || u > ESCAPE_BASE + 0xff) throw new NotAByteNameError(i);
    flush(i);
    out[n++] = u - ESCAPE_BASE;
    run = i + 1;
  }
  flush(s.length);
  return out.subarray(0, n);
}

/** Bytes of `s` once encoded. */
export function nameByteLength(s: string): number {
  return wellFormed(s) ? Buffer.byteLength(s, 'utf8') : encodeName(s).length;
}

// ---------------------------------------------------------------------------
// The printed form (docs/names.md): what `ndmp ls`/`find` print, the catalog
// stores and `ndmp restore` accepts. Printable characters stand for
// themselves; a backslash is `\\`; every byte that is not valid UTF-8, every
// control character (C0, DEL, C1) and nothing else is `\xHH`, one per byte.
// Reversible: unescapeName(escapeName(s)) === s for every name.

// eslint-disable-next-line no-control-regex
const NEEDS_ESCAPE = /[\\\x00-\x1f\x7f-\x9f]|[\udc80-\udcff]/;

/** The printed form of a name (see above). */
export function escapeName(s: string): string {
  if (!NEEDS_ESCAPE.test(s)) return s;
  let out = '';
  for (let i = 0; i < s.length; i++) {
    const u = s.charCodeAt(i);
    if (u === 0x5c) out += '\\\\';
    else if (u < 0x20 || u === 0x7f) out += hexByte(u);
    else if (u >= 0x80 && u <= 0x9f) out += hexByte(0xc0 | (u >> 6)) + hexByte(0x80 | (u & 0x3f));
    else if (u >= 0xd800 && u <= 0xdbff && i + 1 < s.length) {
      out += s[i]! + s[i + 1]!; // a pair (the escape set holds no pair's low half here)
      i++;
    } else if (u >= ESCAPE_BASE + 0x80 && u <= ESCAPE_BASE + 0xff) out += hexByte(u - ESCAPE_BASE);
    else out += s[i]!;
  }
  return out;
}

function hexByte(b: number): string {
  return `\\x${b.toString(16).padStart(2, '0')}`;
}

/**
 * The name a printed form stands for. `\\` is a backslash and `\xHH` a byte;
 * a backslash before anything else stands for itself, so a name typed with a
 * plain backslash in it is still found.
 */
export function unescapeName(p: string): string {
  if (p.indexOf('\\') === -1) return p;
  const bytes: number[] = [];
  const push = (s: string): void => {
    for (const b of encodeName(s)) bytes.push(b);
  };
  let run = 0;
  for (let i = 0; i < p.length; i++) {
    if (p.charCodeAt(i) !== 0x5c) continue;
    const next = p[i + 1];
    if (next === '\\') {
      push(p.slice(run, i + 1));
      i++;
      run = i + 1;
    } else if (next === 'x' && /^[0-9a-fA-F]{2}$/.test(p.slice(i + 2, i + 4))) {
      push(p.slice(run, i));
      bytes.push(parseInt(p.slice(i + 2, i + 4), 16));
      i += 3;
      run = i + 1;
    }
  }
  push(p.slice(run));
  return decodeName(Buffer.from(bytes));
}
