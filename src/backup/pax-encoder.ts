// The pax encoder (docs/pax.md "What the encoder emits"): one call per file on
// the backup's hot path. It writes into a caller-provided buffer, encodes
// strings into module-level scratch buffers and allocates nothing for ASCII
// names, so a typical header costs well under 1 µs.

import {
  BLOCK,
  CHKSUM,
  DEVMAJOR,
  DEVMINOR,
  GID,
  GNAME,
  LINKNAME,
  LINKNAME_LEN,
  MAGIC,
  MAX_HEADER_BYTES,
  MAX_OCTAL_11,
  MAX_OCTAL_7,
  MAX_SAFE_N,
  MODE,
  MTIME,
  NAME,
  NAME_LEN,
  OWNER_NAME_LEN,
  PREFIX,
  PREFIX_LEN,
  SIZE,
  TF_EXTENDED,
  TYPEFLAG,
  TYPEFLAGS,
  UID,
  UNAME,
  VERSION,
} from './pax-layout.js';
import type { DumpdirEntry, PaxEntry, PaxTime } from './pax-layout.js';

// Encoder

/** A string's UTF-8 bytes in a reusable scratch buffer. */
class Scratch {
  bytes: Buffer = Buffer.allocUnsafe(16384); // a 4096-character path in UTF-8, worst case
  len = 0;
  ascii = true;
  /** The string the bytes are of (owner names repeat: they are encoded once). */
  of: string | null = null;
}

const S_PATH = new Scratch();
const S_LINK = new Scratch();
const S_UNAME = new Scratch();
const S_GNAME = new Scratch();

/**
 * Encodes `s` into `sb`. Buffer#write is native and costs the same ~70 ns for
 * any short string, where a charCodeAt loop costs ~3 ns a character (paths are
 * usually concatenations, which V8 keeps as ropes).
 */
function encodeString(s: string, sb: Scratch, what: string): void {
  if (s === sb.of) return;
  const n = s.length;
  if (n * 3 + 1 > sb.bytes.length) sb.bytes = Buffer.allocUnsafe(n * 3 + 1); // +1: a dir's '/'
  sb.of = null;
  sb.len = sb.bytes.write(s, 0, sb.bytes.length, 'utf8');
  sb.ascii = sb.len === n; // any other character takes 2 or more bytes
  if (s.indexOf('\0') !== -1) throw new TypeError(`pax: ${what} contains a NUL character`);
  sb.of = s;
}

/** Number of decimal digits of a non-negative safe integer. */
function decimalDigits(v: number): number {
  let d = 1;
  for (let p = 10; v >= p; p *= 10) d++;
  return d;
}

/**
 * Writes `v` (non-negative safe integer) as `width - 1` zero-padded octal digits
 * and a NUL; returns the sum of the bytes written (for the header checksum).
 */
function putOctal(t: Uint8Array, at: number, width: number, v: number): number {
  t[at + width - 1] = 0;
  let sum = 0x30 * (width - 1);
  if (v <= 0x7fffffff) {
    for (let i = at + width - 2; i >= at; i--) {
      const d = v & 7;
      t[i] = 0x30 + d;
      sum += d;
      v >>>= 3;
    }
  } else {
    for (let i = at + width - 2; i >= at; i--) {
      const d = v % 8;
      t[i] = 0x30 + d;
      sum += d;
      v = Math.floor(v / 8);
    }
  }
  return sum;
}

/** Writes `v` (non-negative safe integer) in decimal, `digits` long, at `at`. */
function putDecimal(t: Uint8Array, at: number, digits: number, v: number): void {
  if (v <= 0x7fffffff) {
    for (let i = at + digits - 1; i >= at; i--) {
      const q = (v / 10) | 0;
      t[i] = 0x30 + v - q * 10;
      v = q;
    }
    return;
  }
  for (let i = at + digits - 1; i >= at; i--) {
    t[i] = 0x30 + (v % 10);
    v = Math.floor(v / 10);
  }
}

/** Copies `src[from..to)` to `t[at..)`; returns the sum of the bytes copied. */
function putBytes(src: Uint8Array, from: number, to: number, t: Uint8Array, at: number): number {
  let sum = 0;
  for (let i = from; i < to; i++) {
    const c = src[i]!;
    t[at + i - from] = c;
    sum += c;
  }
  return sum;
}

/** Length of the longest prefix of `b[0..len)` that is ≤ `max` bytes and does not split a UTF-8 character. */
function utf8Cut(b: Uint8Array, len: number, max: number): number {
  if (len <= max) return len;
  let cut = max;
  while (cut > 0 && (b[cut]! & 0xc0) === 0x80) cut--;
  return cut;
}

const te = new TextEncoder();
const K_PATH = te.encode('path');
const K_LINKPATH = te.encode('linkpath');
const K_SIZE = te.encode('size');
const K_UID = te.encode('uid');
const K_GID = te.encode('gid');
const K_UNAME = te.encode('uname');
const K_GNAME = te.encode('gname');
const K_MTIME = te.encode('mtime');
const K_ATIME = te.encode('atime');
const K_CTIME = te.encode('ctime');
const K_DUMPDIR = te.encode('GNU.dumpdir');
const PAX_HEADERS_DIR = te.encode('PaxHeaders/');

function tooSmall(needed: number, available: number): never {
  throw new RangeError(`pax: target buffer too small (needs at least ${needed} bytes, ${available} left)`);
}

/**
 * Writes the record prefix `"<len> <key>="` for a value of `vlen` bytes at `p`,
 * checking that the whole record fits below `limit`. Returns where the value goes;
 * the record ends at `valueAt + vlen` with '\n' (written by the caller).
 */
function recordHead(t: Uint8Array, p: number, limit: number, key: Uint8Array, vlen: number): number {
  const base = key.length + vlen + 3; // ' ', '=', '\n'
  let d = decimalDigits(base);
  if (decimalDigits(base + d) > d) d++;
  const len = base + d;
  if (p + len > limit) tooSmall(p + len, limit - p);
  putDecimal(t, p, d, len);
  p += d;
  t[p++] = 0x20;
  for (let i = 0; i < key.length; i++) t[p++] = key[i]!;
  t[p++] = 0x3d; // '='
  return p;
}

function recordBytes(t: Uint8Array, p: number, limit: number, key: Uint8Array, sb: Scratch): number {
  const at = recordHead(t, p, limit, key, sb.len);
  if (sb.len > 64) sb.bytes.copy(t, at, 0, sb.len);
  else putBytes(sb.bytes, 0, sb.len, t, at);
  t[at + sb.len] = 0x0a;
  return at + sb.len + 1;
}

function recordNumber(t: Uint8Array, p: number, limit: number, key: Uint8Array, v: number): number {
  const d = decimalDigits(v);
  const at = recordHead(t, p, limit, key, d);
  putDecimal(t, at, d, v);
  t[at + d] = 0x0a;
  return at + d + 1;
}

/** `sec.frac` as POSIX pax writes times: the real value, so sec −2 nsec 5e8 is "-1.5". */
function recordTime(t: Uint8Array, p: number, limit: number, key: Uint8Array, tm: PaxTime): number {
  const neg = tm.sec < 0n;
  let frac = tm.nsec;
  let whole = neg ? -tm.sec : tm.sec;
  if (neg && frac > 0) {
    whole -= 1n;
    frac = 1e9 - frac;
  }
  let fracDigits = 0;
  if (frac > 0) {
    fracDigits = 9;
    while (frac % 10 === 0) {
      frac /= 10;
      fracDigits--;
    }
  }
  const small = whole <= MAX_SAFE_N;
  const wholeStr = small ? '' : whole.toString(); // beyond 2^53 s: rare enough to allocate
  const w = small ? Number(whole) : 0;
  const wholeDigits = small ? decimalDigits(w) : wholeStr.length;
  const vlen = (neg ? 1 : 0) + wholeDigits + (fracDigits > 0 ? 1 + fracDigits : 0);
  let at = recordHead(t, p, limit, key, vlen);
  if (neg) t[at++] = 0x2d; // '-'
  if (small) putDecimal(t, at, wholeDigits, w);
  else for (let i = 0; i < wholeDigits; i++) t[at + i] = wholeStr.charCodeAt(i);
  at += wholeDigits;
  if (fracDigits > 0) {
    t[at++] = 0x2e; // '.'
    putDecimal(t, at, fracDigits, frac);
    at += fracDigits;
  }
  t[at] = 0x0a;
  return at + 1;
}

const DUMPDIR_FLAGS = { Y: 0x59, N: 0x4e, D: 0x44 } as const;

/** Whether `name` may stand in a dumpdir: one path component (no '/', not '.' or '..'), no NUL. */
function dumpdirNameOk(name: string): boolean {
  return name !== '' && name !== '.' && name !== '..' && !name.includes('/') && !name.includes('\0');
}

/**
 * Bytes of the `GNU.dumpdir` value of `list`: per name its flag, its UTF-8
 * bytes and a NUL; one more NUL at the end. A directory's header takes at most
 * MAX_HEADER_BYTES + this + BLOCK bytes.
 */
export function dumpdirValueLength(list: readonly DumpdirEntry[]): number {
  let n = 1;
  for (const d of list) n += 2 + Buffer.byteLength(d.name, 'utf8');
  return n;
}

function recordDumpdir(t: Uint8Array, p: number, limit: number, list: readonly DumpdirEntry[]): number {
  const vlen = dumpdirValueLength(list);
  let at = recordHead(t, p, limit, K_DUMPDIR, vlen);
  const end = at + vlen;
  for (const d of list) {
    const flag = DUMPDIR_FLAGS[d.flag];
    if (flag === undefined) throw new TypeError(`pax: bad dumpdir flag ${JSON.stringify(d.flag)}`);
    if (!dumpdirNameOk(d.name)) throw new TypeError(`pax: bad dumpdir name ${JSON.stringify(d.name)}`);
    t[at++] = flag;
    at += te.encodeInto(d.name, t.subarray(at, end)).written;
    t[at++] = 0;
  }
  t[at++] = 0;
  t[at] = 0x0a;
  return at + 1;
}

/** Sum of the bytes every block has: "ustar\0", "00" and the checksum field counted as eight spaces. */
const CONSTANT_SUM = 0x75 + 0x73 + 0x74 + 0x61 + 0x72 + 0x30 + 0x30 + 8 * 0x20;

/**
 * Fills in the constant fields, typeflag and checksum of a ustar block whose
 * other fields are written (into a zeroed block) and sum to `sum`. Summing as we
 * write saves a 512-byte pass, which costs more than all the rest of a header.
 */
function finishBlock(t: Uint8Array, h: number, typeflag: number, sum: number): void {
  t[h + TYPEFLAG] = typeflag;
  t[h + MAGIC] = 0x75; // "ustar\0"
  t[h + MAGIC + 1] = 0x73;
  t[h + MAGIC + 2] = 0x74;
  t[h + MAGIC + 3] = 0x61;
  t[h + MAGIC + 4] = 0x72;
  t[h + VERSION] = 0x30; // "00"
  t[h + VERSION + 1] = 0x30;
  // POSIX: the unsigned sum of the block with the checksum field as spaces.
  putOctal(t, h + CHKSUM, 7, sum + CONSTANT_SUM + typeflag); // six digits and a NUL ...
  t[h + CHKSUM + 7] = 0x20; // ... and a space, as GNU tar writes it
}

function checkTime(tm: PaxTime, what: string): void {
  if (typeof tm.sec !== 'bigint' || !Number.isInteger(tm.nsec) || tm.nsec < 0 || tm.nsec > 999_999_999)
    throw new TypeError(`pax: bad ${what} ${String(tm.sec)}.${tm.nsec}`);
}

function checkId(v: number, what: string): void {
  if (!Number.isSafeInteger(v) || v < 0) throw new TypeError(`pax: bad ${what} ${v}`);
}

/**
 * Encodes the header block(s) of `e` into `target` at `offset`; returns bytes
 * written (a multiple of 512). Throws RangeError if target is too small (the
 * caller grows it; MAX_HEADER_BYTES bounds it for paths ≤ 4096 bytes), TypeError
 * if `e` cannot be represented (NUL in a string, negative size, ...).
 */
export function encodeHeaderInto(e: PaxEntry, target: Uint8Array, offset: number): number {
  const limit = target.length;
  if (!Number.isInteger(offset) || offset < 0 || offset > limit)
    throw new RangeError(`pax: bad offset ${offset}`);
  const typeflag = TYPEFLAGS[e.type];
  if (typeflag === undefined) throw new TypeError(`pax: bad type ${String(e.type)}`);
  const isFile = e.type === 'file';
  const isDir = e.type === 'dir';
  const isLink = e.type === 'symlink' || e.type === 'hardlink';
  const isDev = e.type === 'chardev' || e.type === 'blockdev';

  // --- values and where they go -------------------------------------------
  if (e.path.length === 0) throw new TypeError('pax: empty path');
  encodeString(e.path, S_PATH, 'path');
  const pb = S_PATH.bytes;
  let plen = S_PATH.len;
  if (isDir && pb[plen - 1] !== 0x2f) {
    pb[plen++] = 0x2f; // directories carry a trailing '/'
    S_PATH.len = plen;
    S_PATH.of = null; // the bytes are no longer just the string's
  }
  let split = -1; // index of the '/' between prefix and name; -1: name only
  let pathX = false;
  if (!S_PATH.ascii || plen > PREFIX_LEN + 1 + NAME_LEN) pathX = true;
  else if (plen > NAME_LEN) {
    // The longest name that fits: the first '/' with ≤ 100 bytes after it (and a
    // non-empty name, so not a dir's trailing '/') and ≤ 155 before it.
    const last = Math.min(PREFIX_LEN, plen - 2);
    for (let i = Math.max(1, plen - 1 - NAME_LEN); i <= last; i++) {
      if (pb[i] === 0x2f) {
        split = i;
        break;
      }
    }
    if (split < 0) pathX = true;
  }

  let linkX = false;
  if (isLink) {
    if (e.linkTarget === undefined || e.linkTarget.length === 0)
      throw new TypeError(`pax: ${e.type} ${e.path} without a target`);
    encodeString(e.linkTarget, S_LINK, 'link target');
    linkX = !S_LINK.ascii || S_LINK.len > LINKNAME_LEN;
  }

  encodeString(e.uname, S_UNAME, 'uname');
  encodeString(e.gname, S_GNAME, 'gname');
  const unameX = !S_UNAME.ascii || S_UNAME.len >= OWNER_NAME_LEN; // the field needs its NUL
  const gnameX = !S_GNAME.ascii || S_GNAME.len >= OWNER_NAME_LEN;

  checkId(e.uid, 'uid');
  checkId(e.gid, 'gid');
  const uidX = e.uid > MAX_OCTAL_7;
  const gidX = e.gid > MAX_OCTAL_7;

  let size = 0;
  if (isFile) {
    size = typeof e.size === 'bigint' ? Number(e.size) : -1; // rounds monotonically: range checks hold
    if (!(size >= 0 && size <= Number.MAX_SAFE_INTEGER))
      throw new TypeError(`pax: bad size ${String(e.size)}`);
  }
  const sizeX = size > MAX_OCTAL_11;

  checkTime(e.mtime, 'mtime');
  const msec = Number(e.mtime.sec); // exact up to 2^53, monotonic beyond: fine for range checks
  const mtimeX = e.mtime.nsec !== 0 || msec < 0 || msec > MAX_OCTAL_11;
  const mtimeUstar = msec < 0 ? 0 : msec > MAX_OCTAL_11 ? MAX_OCTAL_11 : msec;
  if (e.atime !== undefined) checkTime(e.atime, 'atime');
  if (e.ctime !== undefined) checkTime(e.ctime, 'ctime');

  let devMajor = 0;
  let devMinor = 0;
  if (isDev) {
    devMajor = e.devMajor ?? 0;
    devMinor = e.devMinor ?? 0;
    if (!Number.isSafeInteger(devMajor) || devMajor < 0 || devMajor > MAX_OCTAL_7)
      throw new TypeError(`pax: bad devMajor ${devMajor}`);
    if (!Number.isSafeInteger(devMinor) || devMinor < 0 || devMinor > MAX_OCTAL_7)
      throw new TypeError(`pax: bad devMinor ${devMinor}`);
  }

  // --- extended header ----------------------------------------------------
  let h = offset; // where the ustar block goes
  if (
    pathX ||
    linkX ||
    unameX ||
    gnameX ||
    uidX ||
    gidX ||
    sizeX ||
    mtimeX ||
    e.atime !== undefined ||
    e.ctime !== undefined ||
    (isDir && e.dumpdir !== undefined)
  ) {
    const recStart = offset + BLOCK;
    if (recStart > limit) tooSmall(BLOCK, limit - offset);
    let p = recStart;
    if (pathX) p = recordBytes(target, p, limit, K_PATH, S_PATH);
    if (linkX) p = recordBytes(target, p, limit, K_LINKPATH, S_LINK);
    if (sizeX) p = recordNumber(target, p, limit, K_SIZE, size);
    if (uidX) p = recordNumber(target, p, limit, K_UID, e.uid);
    if (gidX) p = recordNumber(target, p, limit, K_GID, e.gid);
    if (unameX) p = recordBytes(target, p, limit, K_UNAME, S_UNAME);
    if (gnameX) p = recordBytes(target, p, limit, K_GNAME, S_GNAME);
    if (mtimeX) p = recordTime(target, p, limit, K_MTIME, e.mtime);
    if (e.atime !== undefined) p = recordTime(target, p, limit, K_ATIME, e.atime);
    if (e.ctime !== undefined) p = recordTime(target, p, limit, K_CTIME, e.ctime);
    if (isDir && e.dumpdir !== undefined) p = recordDumpdir(target, p, limit, e.dumpdir);
    const recLen = p - recStart;
    const padded = recStart + recLen + ((BLOCK - (recLen % BLOCK)) % BLOCK);
    if (padded + BLOCK > limit) tooSmall(padded + BLOCK - offset, limit - offset);
    target.fill(0, p, padded);

    // The x block itself: name "PaxHeaders/<last component>" (ASCII, truncated),
    // mode 0644, ids 0, the entry's mtime, size = the records' length.
    target.fill(0, offset, recStart);
    let sum = putBytes(PAX_HEADERS_DIR, 0, PAX_HEADERS_DIR.length, target, offset + NAME);
    let n = offset + NAME + PAX_HEADERS_DIR.length;
    let base = plen - (isDir ? 2 : 1);
    while (base >= 0 && pb[base] !== 0x2f) base--;
    const baseEnd = Math.min(plen - (isDir ? 1 : 0), base + 1 + NAME_LEN - PAX_HEADERS_DIR.length);
    for (let i = base + 1; i < baseEnd; i++) {
      const c = pb[i]! >= 0x80 ? 0x5f : pb[i]!; // '_' for non-ASCII bytes
      target[n++] = c;
      sum += c;
    }
    sum += putOctal(target, offset + MODE, 8, 0o644);
    sum += putOctal(target, offset + UID, 8, 0);
    sum += putOctal(target, offset + GID, 8, 0);
    sum += putOctal(target, offset + SIZE, 12, recLen);
    sum += putOctal(target, offset + MTIME, 12, mtimeUstar);
    sum += putOctal(target, offset + DEVMAJOR, 8, 0);
    sum += putOctal(target, offset + DEVMINOR, 8, 0);
    finishBlock(target, offset, TF_EXTENDED, sum);
    h = padded;
  } else if (offset + BLOCK > limit) tooSmall(BLOCK, limit - offset);

  // --- the ustar block ----------------------------------------------------
  // Values that went to the x header still get a best-effort ustar value: a
  // truncated name, the field's maximum for numbers (never 0: a pax-unaware
  // reader must not make a file root-owned), empty owner names.
  target.fill(0, h, h + BLOCK);
  let sum = 0;
  if (split >= 0) {
    sum += putBytes(pb, 0, split, target, h + PREFIX);
    sum += putBytes(pb, split + 1, plen, target, h + NAME);
  } else sum += putBytes(pb, 0, utf8Cut(pb, plen, NAME_LEN), target, h + NAME);
  sum += putOctal(target, h + MODE, 8, e.mode & 0o7777);
  sum += putOctal(target, h + UID, 8, uidX ? MAX_OCTAL_7 : e.uid);
  sum += putOctal(target, h + GID, 8, gidX ? MAX_OCTAL_7 : e.gid);
  sum += putOctal(target, h + SIZE, 12, sizeX ? MAX_OCTAL_11 : size);
  sum += putOctal(target, h + MTIME, 12, mtimeUstar);
  if (isLink) {
    const ll = utf8Cut(S_LINK.bytes, S_LINK.len, LINKNAME_LEN);
    sum += putBytes(S_LINK.bytes, 0, ll, target, h + LINKNAME);
  }
  if (!unameX) sum += putBytes(S_UNAME.bytes, 0, S_UNAME.len, target, h + UNAME);
  if (!gnameX) sum += putBytes(S_GNAME.bytes, 0, S_GNAME.len, target, h + GNAME);
  sum += putOctal(target, h + DEVMAJOR, 8, devMajor);
  sum += putOctal(target, h + DEVMINOR, 8, devMinor);
  finishBlock(target, h, typeflag, sum);
  return h + BLOCK - offset;
}

let convenience = Buffer.allocUnsafe(MAX_HEADER_BYTES);

/** Convenience: the header block(s) of `e` in a new Buffer. */
export function encodeHeader(e: PaxEntry): Buffer {
  for (;;) {
    try {
      const n = encodeHeaderInto(e, convenience, 0);
      return Buffer.from(convenience.subarray(0, n));
    } catch (err) {
      if (!(err instanceof RangeError)) throw err;
      convenience = Buffer.allocUnsafe(convenience.length * 2);
    }
  }
}
