// POSIX.1-2001 pax interchange format: ustar header blocks, preceded by an
// extended header ('x' typeflag) when a value does not fit the ustar fields.
// Written from the POSIX `pax` specification (XCU, "pax Interchange Format" and
// "ustar Interchange Format"); docs/pax.md says what is emitted and why.
//
// The encoder is on the backup's hot path (one call per file): it writes into a
// caller-provided buffer, encodes strings into module-level scratch buffers and
// allocates nothing for ASCII names, so a typical header costs well under 1 µs.
// The parser is a push parser for restores and tests: any chunking, bounded
// memory, PaxFormatError with the stream offset on anything malformed.

import { CodedError } from '../util/coded-error.js';

export type PaxType = 'file' | 'dir' | 'symlink' | 'hardlink' | 'fifo' | 'chardev' | 'blockdev';

export interface PaxTime {
  sec: bigint;
  nsec: number;
}

export interface PaxEntry {
  /** Relative, '/'-separated, no leading '/', no trailing '/' (the encoder adds '/' for dirs). */
  path: string;
  type: PaxType;
  /** Data bytes that follow (file only; 0 otherwise). */
  size: bigint;
  /** Permission bits incl. setuid/setgid/sticky (07777). */
  mode: number;
  uid: number;
  gid: number;
  uname: string;
  gname: string;
  mtime: PaxTime;
  atime?: PaxTime;
  ctime?: PaxTime;
  /** Symlink target, or the path of the earlier entry a hard link refers to. */
  linkTarget?: string;
  devMajor?: number;
  devMinor?: number;
  /**
   * Directories of incremental backups: every name in the directory, with
   * whether it is in this archive (`GNU.dumpdir`, see below). Absent: no record.
   */
  dumpdir?: readonly DumpdirEntry[];
}

/**
 * One name of a directory listing in an incremental archive (GNU tar's
 * `GNU.dumpdir` pax keyword, what its posix-format incrementals write): `Y`
 * the entry is in this archive, `N` it is unchanged and not in this archive,
 * `D` a directory (always in the archive).
 */
export interface DumpdirEntry {
  readonly name: string;
  readonly flag: 'Y' | 'N' | 'D';
}

export const BLOCK = 512;

// ---------------------------------------------------------------------------
// ustar header layout (offset, length)

const NAME = 0;
const NAME_LEN = 100;
const MODE = 100;
const UID = 108;
const GID = 116;
const SIZE = 124;
const MTIME = 136;
const CHKSUM = 148;
const TYPEFLAG = 156;
const LINKNAME = 157;
const LINKNAME_LEN = 100;
const MAGIC = 257;
const VERSION = 263;
const UNAME = 265;
const GNAME = 297;
const OWNER_NAME_LEN = 32;
const DEVMAJOR = 329;
const DEVMINOR = 337;
const PREFIX = 345;
const PREFIX_LEN = 155;

/** Largest value of an 8-byte numeric field (7 octal digits + NUL): uid, gid, devmajor, devminor. */
const MAX_OCTAL_7 = 0o7777777;
/** Largest value of a 12-byte numeric field (11 octal digits + NUL): size, mtime. */
const MAX_OCTAL_11 = 0o77777777777;
/** Sizes and uid/gid are handled as JS numbers: 2^53−1 bytes (8 PiB) is the cap. */
const MAX_SAFE_N = BigInt(Number.MAX_SAFE_INTEGER);

const TYPEFLAGS: Readonly<Record<PaxType, number>> = {
  file: 0x30, // '0'
  hardlink: 0x31, // '1'
  symlink: 0x32, // '2'
  chardev: 0x33, // '3'
  blockdev: 0x34, // '4'
  dir: 0x35, // '5'
  fifo: 0x36, // '6'
};
const TF_EXTENDED = 0x78; // 'x'
const TF_GLOBAL = 0x67; // 'g'

/** Bound on the header bytes for paths and link targets ≤ 4096 bytes each, uname/gname ≤ 256 bytes. */
export const MAX_HEADER_BYTES = 20 * BLOCK; // x block + ≤ 18 blocks of records + ustar block; see docs/pax.md

/** End of archive: two 512-byte zero blocks (what POSIX requires; GNU tar pads further to its record size). */
export const END_OF_ARCHIVE: Buffer = Buffer.alloc(2 * BLOCK);

/** Zero bytes after `size` bytes of data to reach a block boundary. */
export function paddingAfter(size: bigint): number {
  const r = Number(size % 512n);
  return r === 0 ? 0 : BLOCK - r;
}

// ---------------------------------------------------------------------------
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

// ---------------------------------------------------------------------------
// Parser

export class PaxFormatError extends CodedError {
  readonly code = 'PAX_FORMAT';
  /** Stream offset of the offending header block or extended-header record (or of the end, for truncation). */
  readonly offset: bigint;
  constructor(message: string, offset: number | bigint) {
    super(`pax: ${message} (stream offset ${offset})`);
    this.name = 'PaxFormatError';
    this.offset = BigInt(offset);
  }
}

export interface ParsedEntry extends PaxEntry {
  /** Offset of the entry's first header block: its `x` header if it has one. */
  headerOffset: bigint;
  /** Offset of its data (just after the ustar block). */
  dataOffset: bigint;
}

export interface PaxHandlers {
  onEntry(e: ParsedEntry): void;
  /** A slice of the entry's data; the view is valid during the call only. */
  onData(e: ParsedEntry, data: Uint8Array): void;
  onEnd?(): void;
}

/**
 * Values from extended headers. `null` = deleted by an empty value (POSIX: the
 * field reverts to the ustar value); `undefined` = not given.
 */
interface Overrides {
  path?: string | null;
  linkpath?: string | null;
  size?: number | null;
  uid?: number | null;
  gid?: number | null;
  uname?: string | null;
  gname?: string | null;
  mtime?: PaxTime | null;
  atime?: PaxTime | null;
  ctime?: PaxTime | null;
  dumpdir?: DumpdirEntry[] | null;
}
type OverrideKey = keyof Overrides;

const enum State {
  Header,
  /** One zero block seen: the next must be zero too. */
  Zero1,
  ExtData,
  Data,
  Pad,
  Done,
  Failed,
}

const TYPES_BY_FLAG: Readonly<Record<number, PaxType>> = {
  0x30: 'file',
  0x00: 'file', // pre-POSIX regular file
  0x37: 'file', // '7' contiguous file: a regular file
  0x31: 'hardlink',
  0x32: 'symlink',
  0x33: 'chardev',
  0x34: 'blockdev',
  0x35: 'dir',
  0x36: 'fifo',
};

const utf8Strict = new TextDecoder('utf-8', { fatal: true });
const utf8Lenient = new TextDecoder('utf-8');

/** Length of a NUL-terminated field. */
function fieldLen(b: Uint8Array, at: number, len: number): number {
  for (let i = 0; i < len; i++) if (b[at + i] === 0) return i;
  return len;
}

/**
 * The parser's default bound on an `x`/`g` header body: 16 MiB, room for the
 * `GNU.dumpdir` of a directory of some 700,000 names (the buffer grows only
 * to the largest header actually met).
 */
export const DEFAULT_MAX_EXTENDED_HEADER = 16 << 20;

/**
 * The largest `GNU.dumpdir` value the backup engine writes: a directory whose
 * listing is longer goes without one (and a restore deletes nothing in it).
 */
export const MAX_DUMPDIR_BYTES = DEFAULT_MAX_EXTENDED_HEADER - 64 * 1024;

export class PaxParser {
  private readonly maxExt: number;
  private readonly base: number;
  private pos = 0; // bytes consumed
  private state = State.Header;
  private readonly block = new Uint8Array(BLOCK);
  private blockFill = 0;
  private ext = new Uint8Array(0);
  private extFill = 0;
  private extSize = 0;
  private extGlobal = false;
  private extDataAt = 0;
  private pending: Overrides | null = null;
  private pendingAt = 0;
  private globals: Overrides = {};
  private cur: ParsedEntry | null = null;
  private left = 0; // data or padding bytes left

  constructor(opts?: {
    /** Largest `x`/`g` header body accepted (default DEFAULT_MAX_EXTENDED_HEADER). */
    maxExtendedHeader?: number;
    /** Stream offset of the first byte pushed, when parsing from a seek point (default 0). */
    startOffset?: bigint;
  }) {
    this.maxExt = opts?.maxExtendedHeader ?? DEFAULT_MAX_EXTENDED_HEADER;
    this.base = Number(opts?.startOffset ?? 0n);
  }

  /** Bytes consumed so far (stops at the end of the end-of-archive marker: what follows it is ignored). */
  get offset(): bigint {
    return BigInt(this.base + this.pos);
  }

  /** True once the end-of-archive marker was seen. */
  get ended(): boolean {
    return this.state === State.Done;
  }

  private fail(message: string, at: number): never {
    this.state = State.Failed;
    throw new PaxFormatError(message, this.base + at);
  }

  push(chunk: Uint8Array, handlers: PaxHandlers): void {
    if (this.state === State.Failed) throw new PaxFormatError('parser used after an error', this.offset);
    let i = 0;
    const n = chunk.length;
    while (i < n) {
      switch (this.state) {
        case State.Done:
          return;
        case State.Header:
        case State.Zero1: {
          if (this.blockFill === 0 && n - i >= BLOCK) {
            i += BLOCK;
            this.pos += BLOCK;
            this.header(chunk, i - BLOCK, this.pos - BLOCK, handlers);
          } else {
            const take = Math.min(BLOCK - this.blockFill, n - i);
            this.block.set(chunk.subarray(i, i + take), this.blockFill);
            this.blockFill += take;
            i += take;
            this.pos += take;
            if (this.blockFill === BLOCK) {
              this.blockFill = 0;
              this.header(this.block, 0, this.pos - BLOCK, handlers);
            }
          }
          break;
        }
        case State.ExtData: {
          const take = Math.min(this.extSize - this.extFill, n - i);
          this.ext.set(chunk.subarray(i, i + take), this.extFill);
          this.extFill += take;
          i += take;
          this.pos += take;
          if (this.extFill === this.extSize) this.extDone();
          break;
        }
        case State.Data: {
          const take = Math.min(this.left, n - i);
          this.left -= take;
          this.pos += take;
          const e = this.cur!;
          if (this.left === 0) this.startPad(Number(e.size));
          i += take;
          handlers.onData(e, chunk.subarray(i - take, i));
          break;
        }
        case State.Pad: {
          const take = Math.min(this.left, n - i);
          this.left -= take;
          i += take;
          this.pos += take;
          if (this.left === 0) this.state = State.Header;
          break;
        }
        default:
          throw new PaxFormatError('parser in a bad state', this.offset);
      }
    }
  }

  /** Declares the end of the stream; throws PaxFormatError unless it ended at the end-of-archive marker. */
  end(): void {
    switch (this.state) {
      case State.Done:
        return;
      case State.Header:
        if (this.blockFill > 0) this.fail('stream ends inside a header block', this.pos);
        if (this.pending) this.fail('stream ends after an extended header', this.pos);
        this.fail('stream ends without the end-of-archive marker', this.pos);
      // fall through (fail never returns)
      case State.Zero1:
        this.fail('stream ends after a single zero block (end of archive is two)', this.pos);
      // fall through
      case State.ExtData:
        this.fail('stream ends inside an extended header', this.pos);
      // fall through
      case State.Data:
      case State.Pad:
        this.fail(`stream ends inside the data of ${this.cur?.path ?? 'an entry'}`, this.pos);
      // fall through
      default:
        throw new PaxFormatError('parser used after an error', this.offset);
    }
  }

  /**
   * Bytes that surely follow in the stream before the parser has finished
   * what it is in and read the next header block: reading exactly this many
   * never goes past the end-of-archive marker (Direct Access Recovery reads a
   * region no further than it must: past the tape file's end, a DMA would
   * take the mover's EOF pause for the end of the job). 0 once ended.
   */
  get need(): number {
    switch (this.state) {
      case State.Header:
      case State.Zero1:
        return BLOCK - this.blockFill;
      case State.ExtData:
        return this.extSize - this.extFill + paddingAfter(BigInt(this.extSize)) + BLOCK;
      case State.Data:
        return this.left + paddingAfter(this.cur!.size) + BLOCK;
      case State.Pad:
        return this.left + BLOCK;
      default:
        return 0;
    }
  }

  private startPad(size: number): void {
    const pad = size % BLOCK === 0 ? 0 : BLOCK - (size % BLOCK);
    this.left = pad;
    this.state = pad > 0 ? State.Pad : State.Header;
  }

  /** One 512-byte header block at `b[o..o+512)`, stream offset `at`. */
  private header(b: Uint8Array, o: number, at: number, handlers: PaxHandlers): void {
    let zero = true;
    for (let k = o; k < o + BLOCK; k++) {
      if (b[k] !== 0) {
        zero = false;
        break;
      }
    }
    if (zero) {
      if (this.pending) this.fail('extended header followed by the end-of-archive marker', at);
      if (this.state === State.Zero1) {
        this.state = State.Done;
        handlers.onEnd?.();
      } else this.state = State.Zero1;
      return;
    }
    if (this.state === State.Zero1) this.fail('a single zero block inside the archive', at - BLOCK);

    // Checksum: unsigned sum with the checksum field as spaces.
    let sum = 8 * 0x20;
    for (let k = o; k < o + CHKSUM; k++) sum += b[k]!;
    for (let k = o + CHKSUM + 8; k < o + BLOCK; k++) sum += b[k]!;
    const stored = this.octal(b, o + CHKSUM, 8, 'chksum', at, false);
    if (stored !== sum) this.fail(`bad header checksum (stored ${stored}, computed ${sum})`, at);

    // Magic: POSIX "ustar\0" "00", or GNU's "ustar  \0".
    const m = o + MAGIC;
    const ustar =
      b[m] === 0x75 && b[m + 1] === 0x73 && b[m + 2] === 0x74 && b[m + 3] === 0x61 && b[m + 4] === 0x72;
    const posix = ustar && b[m + 5] === 0 && b[m + 6] === 0x30 && b[m + 7] === 0x30;
    const gnu = ustar && b[m + 5] === 0x20 && b[m + 6] === 0x20 && b[m + 7] === 0;
    if (!posix && !gnu) this.fail('not a ustar header (bad magic)', at);

    const flag = b[o + TYPEFLAG]!;
    if (flag === TF_EXTENDED || flag === TF_GLOBAL) {
      const size = this.octal(b, o + SIZE, 12, 'size', at, true);
      if (size > this.maxExt)
        this.fail(`extended header of ${size} bytes exceeds the limit of ${this.maxExt}`, at);
      if (flag === TF_EXTENDED && !this.pending) {
        this.pending = {};
        this.pendingAt = at;
      }
      this.extGlobal = flag === TF_GLOBAL;
      this.extSize = size;
      this.extFill = 0;
      this.extDataAt = at + BLOCK;
      if (this.ext.length < size) this.ext = new Uint8Array(Math.max(size, Math.min(this.maxExt, 4096)));
      if (size === 0) this.extDone();
      else this.state = State.ExtData;
      return;
    }
    const type = TYPES_BY_FLAG[flag];
    if (type === undefined)
      this.fail(`unsupported typeflag ${JSON.stringify(String.fromCharCode(flag))}`, at);

    const x = this.pending ?? {};
    const g = this.globals;
    // ustar field < global (g) < extended (x); an x value of null falls back to the ustar field.
    const pick = <K extends OverrideKey>(k: K): Overrides[K] => {
      const v = x[k];
      if (v === null) return undefined;
      return v !== undefined ? v : g[k];
    };

    // Path: x/g `path`, else prefix '/' name.
    let path = pick('path');
    if (path == null) {
      const nl = this.pathField(b, o + NAME, NAME_LEN, 'name', at);
      const pl = this.pathField(b, o + PREFIX, PREFIX_LEN, 'prefix', at);
      const name = this.utf8(b, o + NAME, nl, 'name', at);
      path = pl > 0 ? `${this.utf8(b, o + PREFIX, pl, 'prefix', at)}/${name}` : name;
    }
    if (type === 'dir') while (path.length > 1 && path.endsWith('/')) path = path.slice(0, -1);
    if (path.length === 0) this.fail('empty path', at);

    let size = 0;
    if (type !== 'fifo' && type !== 'chardev' && type !== 'blockdev') {
      size = pick('size') ?? this.octal(b, o + SIZE, 12, 'size', at, true);
    }
    const mode = this.octal(b, o + MODE, 8, 'mode', at, true) & 0o7777;
    const uid = pick('uid') ?? this.octal(b, o + UID, 8, 'uid', at, true);
    const gid = pick('gid') ?? this.octal(b, o + GID, 8, 'gid', at, true);
    const uname =
      pick('uname') ?? utf8Lenient.decode(b.subarray(o + UNAME, o + UNAME + fieldLen(b, o + UNAME, 32)));
    const gname =
      pick('gname') ?? utf8Lenient.decode(b.subarray(o + GNAME, o + GNAME + fieldLen(b, o + GNAME, 32)));
    const mtime = pick('mtime') ?? { sec: BigInt(this.octal(b, o + MTIME, 12, 'mtime', at, true)), nsec: 0 };

    const e: ParsedEntry = {
      path,
      type,
      size: BigInt(size),
      mode,
      uid,
      gid,
      uname,
      gname,
      mtime,
      headerOffset: BigInt(this.base + (this.pending ? this.pendingAt : at)),
      dataOffset: BigInt(this.base + at + BLOCK),
    };
    const atime = pick('atime');
    if (atime != null) e.atime = atime;
    const ctime = pick('ctime');
    if (ctime != null) e.ctime = ctime;
    if (type === 'symlink' || type === 'hardlink') {
      let target = pick('linkpath');
      if (target == null) {
        const ll = this.pathField(b, o + LINKNAME, LINKNAME_LEN, 'linkname', at);
        target = this.utf8(b, o + LINKNAME, ll, 'linkname', at);
      }
      if (target.length === 0) this.fail(`${type} ${path} without a target`, at);
      e.linkTarget = target;
    }
    if (type === 'chardev' || type === 'blockdev') {
      e.devMajor = this.octal(b, o + DEVMAJOR, 8, 'devmajor', at, true);
      e.devMinor = this.octal(b, o + DEVMINOR, 8, 'devminor', at, true);
    }
    // A dumpdir only means something on a directory, and only from its own x header.
    const dumpdir = x.dumpdir;
    if (type === 'dir' && dumpdir) e.dumpdir = dumpdir;

    this.pending = null;
    this.cur = e;
    if (size > 0) {
      this.left = size;
      this.state = State.Data;
    } else this.state = State.Header;
    handlers.onEntry(e);
  }

  /** Length of a NUL-terminated path field; bytes after the NUL must be NUL too. */
  private pathField(b: Uint8Array, at: number, len: number, what: string, hdr: number): number {
    const l = fieldLen(b, at, len);
    for (let k = l + 1; k < len; k++) if (b[at + k] !== 0) this.fail(`NUL inside the ${what} field`, hdr);
    return l;
  }

  private utf8(b: Uint8Array, at: number, len: number, what: string, hdr: number): string {
    try {
      return utf8Strict.decode(b.subarray(at, at + len));
    } catch {
      this.fail(`${what} is not valid UTF-8`, hdr);
    }
  }

  /**
   * An octal field: optional leading spaces, octal digits, then only NULs/spaces.
   * An empty field is 0 when `emptyOk`. GNU base-256 (high bit set) is rejected.
   */
  private octal(b: Uint8Array, at: number, len: number, what: string, hdr: number, emptyOk: boolean): number {
    const end = at + len;
    let k = at;
    if (b[k]! & 0x80) this.fail(`base-256 ${what} field is not supported`, hdr);
    while (k < end && b[k] === 0x20) k++;
    let v = 0;
    let digits = 0;
    for (; k < end; k++) {
      const c = b[k]!;
      if (c < 0x30 || c > 0x37) break;
      v = v * 8 + (c - 0x30);
      digits++;
    }
    for (; k < end; k++) {
      const c = b[k]!;
      if (c !== 0 && c !== 0x20) this.fail(`bad octal in the ${what} field`, hdr);
    }
    if (digits === 0 && !emptyOk) this.fail(`empty ${what} field`, hdr);
    return v;
  }

  /** The body of an x or g header is complete: parse its records. */
  private extDone(): void {
    const into = this.extGlobal ? this.globals : this.pending!;
    const b = this.ext;
    const size = this.extSize;
    let p = 0;
    while (p < size) {
      const at = this.extDataAt + p;
      let q = p;
      let len = 0;
      while (q < size && b[q]! >= 0x30 && b[q]! <= 0x39 && len <= size) len = len * 10 + (b[q++]! - 0x30);
      if (q === p || q >= size || b[q] !== 0x20) this.fail('malformed extended header record length', at);
      if (len > size - p || len < q - p + 4) this.fail(`bad extended header record length ${len}`, at);
      const end = p + len;
      if (b[end - 1] !== 0x0a) this.fail('extended header record does not end with a newline', at);
      const ks = q + 1;
      let eq = ks;
      while (eq < end - 1 && b[eq] !== 0x3d) eq++;
      if (eq === ks || eq >= end - 1) this.fail('extended header record without keyword=value', at);
      const key = utf8Lenient.decode(b.subarray(ks, eq));
      this.record(into, key, b.subarray(eq + 1, end - 1), at);
      p = end;
    }
    this.startPad(size);
  }

  private record(into: Overrides, key: string, v: Uint8Array, at: number): void {
    let k: OverrideKey;
    switch (key) {
      case 'path':
      case 'linkpath':
      case 'uname':
      case 'gname':
      case 'size':
      case 'uid':
      case 'gid':
      case 'mtime':
      case 'atime':
      case 'ctime':
        k = key;
        break;
      case 'GNU.dumpdir':
        // Never from a global header: a dumpdir names one directory's contents.
        if (into !== this.globals) into.dumpdir = v.length === 0 ? null : this.dumpdir(v, at);
        return;
      default:
        if (key.startsWith('GNU.sparse.')) this.fail(`GNU sparse files are not supported (${key})`, at);
        return; // charset, comment, hdrcharset, SCHILY.*, LIBARCHIVE.*, ...: ignored
    }
    if (v.length === 0) {
      // POSIX: an empty value deletes the keyword (a global is deleted; an x
      // header's falls back to the ustar field).
      if (into === this.globals) delete into[k];
      else into[k] = null;
      return;
    }
    switch (k) {
      case 'path':
      case 'linkpath': {
        let s: string;
        try {
          s = utf8Strict.decode(v);
        } catch {
          this.fail(`${key} is not valid UTF-8`, at);
        }
        if (s.includes('\0')) this.fail(`NUL in ${key}`, at);
        into[k] = s;
        return;
      }
      case 'uname':
      case 'gname':
        into[k] = utf8Lenient.decode(v);
        return;
      case 'size':
      case 'uid':
      case 'gid': {
        let n = 0;
        for (let j = 0; j < v.length; j++) {
          const c = v[j]!;
          if (c < 0x30 || c > 0x39) this.fail(`${key} is not a non-negative decimal integer`, at);
          n = n * 10 + (c - 0x30);
          if (n > Number.MAX_SAFE_INTEGER) this.fail(`${key} is too large`, at);
        }
        into[k] = n;
        return;
      }
      default:
        into[k] = this.time(v, key, at);
    }
  }

  /**
   * A `GNU.dumpdir` value: entries of a flag (Y, N or D), a name and a NUL,
   * then one more NUL. A name must be one path component: a restore deletes
   * what a dumpdir leaves out, so a name that could point elsewhere is an error.
   */
  private dumpdir(v: Uint8Array, at: number): DumpdirEntry[] {
    const out: DumpdirEntry[] = [];
    const seen = new Set<string>();
    let j = 0;
    for (;;) {
      if (j >= v.length) this.fail('GNU.dumpdir does not end with an empty entry', at);
      const c = v[j]!;
      if (c === 0) break;
      if (c !== 0x59 && c !== 0x4e && c !== 0x44) {
        this.fail(
          `GNU.dumpdir entry with flag ${JSON.stringify(String.fromCharCode(c))} (only Y, N and D are supported)`,
          at,
        );
      }
      const start = j + 1;
      let end = start;
      while (end < v.length && v[end] !== 0) end++;
      if (end >= v.length) this.fail('GNU.dumpdir entry without its NUL', at);
      let name: string;
      try {
        name = utf8Strict.decode(v.subarray(start, end));
      } catch {
        this.fail('GNU.dumpdir name is not valid UTF-8', at);
      }
      if (name === '' || name === '.' || name === '..' || name.includes('/'))
        this.fail(`GNU.dumpdir name ${JSON.stringify(name)} is not a single path component`, at);
      if (seen.has(name)) this.fail(`GNU.dumpdir names ${JSON.stringify(name)} twice`, at);
      seen.add(name);
      out.push({ name, flag: c === 0x59 ? 'Y' : c === 0x4e ? 'N' : 'D' });
      j = end + 1;
    }
    if (j !== v.length - 1) this.fail('GNU.dumpdir has bytes after its end', at);
    return out;
  }

  /** A pax time: [-]digits[.digits], the real number of seconds (so "-1.5" is sec −2, nsec 5e8). */
  private time(v: Uint8Array, key: string, at: number): PaxTime {
    let j = 0;
    const neg = v[0] === 0x2d;
    if (neg) j++;
    const ws = j;
    while (j < v.length && v[j]! >= 0x30 && v[j]! <= 0x39) j++;
    const we = j;
    let frac = 0;
    let fd = 0;
    if (j < v.length && v[j] === 0x2e) {
      j++;
      const fs = j;
      for (; j < v.length && v[j]! >= 0x30 && v[j]! <= 0x39; j++) {
        if (fd < 9) {
          frac = frac * 10 + (v[j]! - 0x30);
          fd++;
        }
      }
      if (j === fs) this.fail(`bad ${key}`, at);
    }
    if (j !== v.length || we === ws || we - ws > 19) this.fail(`bad ${key}`, at);
    for (; fd < 9; fd++) frac *= 10;
    let sec = 0n;
    for (let k = ws; k < we; k++) sec = sec * 10n + BigInt(v[k]! - 0x30);
    if (!neg) return { sec, nsec: frac };
    if (frac === 0) return { sec: -sec, nsec: 0 };
    return { sec: -sec - 1n, nsec: 1e9 - frac };
  }
}
