// The pax encoder (docs/pax.md "What the encoder emits"): one call per file on
// the backup's hot path. It writes into a caller-provided buffer, encodes
// strings into module-level scratch buffers and allocates nothing for ASCII
// names, so a typical header costs well under 1 µs.
//
// Each call first plans the entry (validates it, encodes its strings, decides
// which values need records and adds up the lengths), then writes: so
// headerBytes() is exact, and nothing is written for an entry that fails.

import { isUtf8 } from 'node:buffer';

import { encodeName, isUtf8Name, nameByteLength, NotAByteNameError } from '../util/byte-name.js';
import {
  ACL_XATTRS,
  BLOCK,
  CHKSUM,
  DEVMAJOR,
  DEVMINOR,
  GID,
  GNAME,
  LINKNAME,
  LINKNAME_LEN,
  MAGIC,
  MAX_DEV,
  MAX_OCTAL_11,
  MAX_OCTAL_7,
  MAX_SAFE_N,
  MAX_SIZE,
  MAX_TIME_SEC,
  MIN_TIME_SEC,
  MODE,
  MTIME,
  NAME,
  NAME_LEN,
  OWNER_NAME_LEN,
  PaxUnrepresentableError,
  PREFIX,
  PREFIX_LEN,
  SIZE,
  SPARSE_DIR,
  TF_EXTENDED,
  TYPEFLAG,
  TYPEFLAGS,
  UID,
  UNAME,
  VERSION,
} from './pax-layout.js';
import type { DumpdirEntry, PaxEntry, PaxTime } from './pax-layout.js';

/** A name's bytes (encodeName's) in a reusable scratch buffer. */
class Scratch {
  bytes: Buffer = Buffer.allocUnsafe(16384); // a 4096-character path in UTF-8, worst case
  len = 0;
  ascii = true;
  /** The bytes are not valid UTF-8 (the name holds escaped bytes): `hdrcharset=BINARY`. */
  binary = false;
  /** The string the bytes are of (owner names repeat: they are encoded once). */
  of: string | null = null;
}

const S_PATH = new Scratch();
const S_LINK = new Scratch();
const S_UNAME = new Scratch();
const S_GNAME = new Scratch();
/** A sparse file's stored name, `<dir>/GNUSparseFile.0/<base>`. */
const S_SPARSE = new Scratch();

/** The entry being planned, for error messages. */
let curPath = '';

function unrepresentable(reason: string): never {
  throw new PaxUnrepresentableError(curPath, reason);
}

/**
 * Encodes `s` into `sb`. Buffer#write is native and costs the same ~70 ns for
 * any short string, where a charCodeAt loop costs ~3 ns a character (paths are
 * usually concatenations, which V8 keeps as ropes). A name holding escaped
 * bytes (docs/pax.md "Names") takes encodeName's slower way, since Buffer#write
 * would turn each into U+FFFD.
 */
function encodeString(s: string, sb: Scratch, what: string): void {
  if (s === sb.of) return;
  sb.of = null;
  const n = s.length;
  if (n * 3 + 1 > sb.bytes.length) sb.bytes = Buffer.allocUnsafe(n * 3 + 1); // +1: a dir's '/'
  sb.len = sb.bytes.write(s, 0, sb.bytes.length, 'utf8');
  sb.ascii = sb.len === n; // any other character takes 2 or more bytes
  sb.binary = false;
  if (!sb.ascii && !isUtf8Name(s)) {
    let b: Buffer;
    try {
      b = encodeName(s);
    } catch (err) {
      if (err instanceof NotAByteNameError) unrepresentable(`${what}: ${err.message}`);
      throw err;
    }
    sb.len = b.copy(sb.bytes, 0);
    sb.binary = !isUtf8(b);
  }
  if (s.indexOf('\0') !== -1) unrepresentable(`${what} contains a NUL byte`);
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
const K_HDRCHARSET = te.encode('hdrcharset');
const V_BINARY = te.encode('BINARY');
const K_PATH = te.encode('path');
const K_LINKPATH = te.encode('linkpath');
const K_SIZE = te.encode('size');
const K_UID = te.encode('uid');
const K_GID = te.encode('gid');
const K_UNAME = te.encode('uname');
const K_GNAME = te.encode('gname');
const K_DEVMAJOR = te.encode('SCHILY.devmajor');
const K_DEVMINOR = te.encode('SCHILY.devminor');
const K_SPARSE_MAJOR = te.encode('GNU.sparse.major');
const K_SPARSE_MINOR = te.encode('GNU.sparse.minor');
const K_SPARSE_NAME = te.encode('GNU.sparse.name');
const K_SPARSE_REALSIZE = te.encode('GNU.sparse.realsize');
const K_MTIME = te.encode('mtime');
const K_ATIME = te.encode('atime');
const K_CTIME = te.encode('ctime');
const K_ACL_ACCESS = te.encode('SCHILY.acl.access');
const K_ACL_DEFAULT = te.encode('SCHILY.acl.default');
const XATTR_PREFIX = 'SCHILY.xattr.';
const K_DUMPDIR = te.encode('GNU.dumpdir');
const PAX_HEADERS_DIR = te.encode('PaxHeaders/');
const SPARSE_DIR_BYTES = te.encode(`/${SPARSE_DIR}/`);

/** Length of a record `"<len> <key>=<value>\n"` for a key and value of these lengths. */
function recordLength(keyLen: number, vlen: number): number {
  const base = keyLen + vlen + 3; // ' ', '=', '\n'
  const d = decimalDigits(base);
  return decimalDigits(base + d) > d ? base + d + 1 : base + d;
}

/** Writes the record prefix `"<len> <key>="` for a value of `vlen` bytes at `p`; returns where the value goes. */
function recordHead(t: Uint8Array, p: number, key: Uint8Array, vlen: number): number {
  const len = recordLength(key.length, vlen);
  const d = decimalDigits(len);
  putDecimal(t, p, d, len);
  p += d;
  t[p++] = 0x20;
  for (let i = 0; i < key.length; i++) t[p++] = key[i]!;
  t[p++] = 0x3d; // '='
  return p;
}

function recordBytes(t: Uint8Array, p: number, key: Uint8Array, v: Uint8Array, vlen: number): number {
  const at = recordHead(t, p, key, vlen);
  if (vlen > 64) t.set(v.subarray(0, vlen), at);
  else putBytes(v, 0, vlen, t, at);
  t[at + vlen] = 0x0a;
  return at + vlen + 1;
}

/** Decimal digits of a non-negative bigint. */
function bigDigits(v: bigint): number {
  return v <= MAX_SAFE_N ? decimalDigits(Number(v)) : v.toString().length;
}

function recordNumber(t: Uint8Array, p: number, key: Uint8Array, v: number | bigint): number {
  if (typeof v === 'bigint' && v > MAX_SAFE_N) {
    const s = v.toString(); // beyond 2^53: rare enough to allocate
    let at = recordHead(t, p, key, s.length);
    for (let i = 0; i < s.length; i++) t[at++] = s.charCodeAt(i);
    t[at] = 0x0a;
    return at + 1;
  }
  const n = Number(v);
  const d = decimalDigits(n);
  const at = recordHead(t, p, key, d);
  putDecimal(t, at, d, n);
  t[at + d] = 0x0a;
  return at + d + 1;
}

// A time's parts as written, `[-]whole[.frac]` (set by timeParts).
let tNeg = false;
let tWhole = 0n;
let tFrac = 0;
let tFracDigits = 0;
let tWholeDigits = 0;

/**
 * `sec.frac` as POSIX pax writes times: the real value, so sec −2 nsec 5e8 is
 * "-1.5", trailing zeros of the fraction dropped. Returns the value's length.
 */
function timeParts(tm: PaxTime): number {
  tNeg = tm.sec < 0n;
  tFrac = tm.nsec;
  tWhole = tNeg ? -tm.sec : tm.sec;
  if (tNeg && tFrac > 0) {
    tWhole -= 1n;
    tFrac = 1e9 - tFrac;
  }
  tFracDigits = 0;
  if (tFrac > 0) {
    tFracDigits = 9;
    while (tFrac % 10 === 0) {
      tFrac /= 10;
      tFracDigits--;
    }
  }
  tWholeDigits = bigDigits(tWhole);
  return (tNeg ? 1 : 0) + tWholeDigits + (tFracDigits > 0 ? 1 + tFracDigits : 0);
}

function recordTime(t: Uint8Array, p: number, key: Uint8Array, tm: PaxTime): number {
  const vlen = timeParts(tm);
  let at = recordHead(t, p, key, vlen);
  if (tNeg) t[at++] = 0x2d; // '-'
  if (tWhole <= MAX_SAFE_N) putDecimal(t, at, tWholeDigits, Number(tWhole));
  else {
    const s = tWhole.toString();
    for (let i = 0; i < tWholeDigits; i++) t[at + i] = s.charCodeAt(i);
  }
  at += tWholeDigits;
  if (tFracDigits > 0) {
    t[at++] = 0x2e; // '.'
    putDecimal(t, at, tFracDigits, tFrac);
    at += tFracDigits;
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
 * Bytes of the `GNU.dumpdir` value of `list`: per name its flag, its bytes
 * (encodeName's) and a NUL; one more NUL at the end.
 */
export function dumpdirValueLength(list: readonly DumpdirEntry[]): number {
  let n = 1;
  for (const d of list) n += 2 + nameByteLength(d.name);
  return n;
}

function checkDumpdir(list: readonly DumpdirEntry[]): number {
  let n = 1;
  for (const d of list) {
    if (DUMPDIR_FLAGS[d.flag] === undefined) unrepresentable(`bad dumpdir flag ${JSON.stringify(d.flag)}`);
    if (!dumpdirNameOk(d.name)) unrepresentable(`bad dumpdir name ${JSON.stringify(d.name)}`);
    try {
      n += 2 + nameByteLength(d.name);
    } catch (err) {
      if (err instanceof NotAByteNameError) unrepresentable(`dumpdir name: ${err.message}`);
      throw err;
    }
  }
  return n;
}

function recordDumpdir(t: Uint8Array, p: number, list: readonly DumpdirEntry[], vlen: number): number {
  let at = recordHead(t, p, K_DUMPDIR, vlen);
  const end = at + vlen;
  for (const d of list) {
    t[at++] = DUMPDIR_FLAGS[d.flag];
    if (isUtf8Name(d.name)) at += te.encodeInto(d.name, t.subarray(at, end)).written;
    else {
      const b = encodeName(d.name);
      t.set(b, at);
      at += b.length;
    }
    t[at++] = 0;
  }
  t[at++] = 0;
  t[at] = 0x0a;
  return at + 1;
}

/**
 * An xattr's record key: `SCHILY.xattr.` and the name's bytes with '%' as
 * `%25` and '=' as `%3D`, as GNU tar writes them (a key cannot hold '=').
 */
function xattrKey(name: string): Buffer {
  if (name.length === 0) unrepresentable('an extended attribute without a name');
  if (name.includes('\0')) unrepresentable('an extended attribute name contains a NUL byte');
  let b: Buffer;
  try {
    b = encodeName(name);
  } catch (err) {
    if (err instanceof NotAByteNameError) unrepresentable(`extended attribute name: ${err.message}`);
    throw err;
  }
  let extra = 0;
  for (const c of b) if (c === 0x25 || c === 0x3d) extra += 2;
  const k = Buffer.allocUnsafe(XATTR_PREFIX.length + b.length + extra);
  let n = k.write(XATTR_PREFIX, 0, 'latin1');
  for (const c of b) {
    if (c === 0x25 || c === 0x3d) {
      k[n++] = 0x25;
      k[n++] = 0x33 - (c === 0x25 ? 1 : 0); // '2' or '3'
      k[n++] = c === 0x25 ? 0x35 : 0x44; // '5' or 'D'
    } else k[n++] = c;
  }
  return k;
}

/** Bytes of an ACL's text (user and group names in it are names: encodeName). */
function aclBytes(text: string, what: string): Buffer {
  if (text.includes('\0')) unrepresentable(`${what} contains a NUL byte`);
  try {
    return encodeName(text);
  } catch (err) {
    if (err instanceof NotAByteNameError) unrepresentable(`${what}: ${err.message}`);
    throw err;
  }
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
  if (
    typeof tm.sec !== 'bigint' ||
    tm.sec < MIN_TIME_SEC ||
    tm.sec > MAX_TIME_SEC ||
    !Number.isInteger(tm.nsec) ||
    tm.nsec < 0 ||
    tm.nsec > 999_999_999
  )
    unrepresentable(`bad ${what} ${String(tm.sec)}.${tm.nsec}`);
}

function checkId(v: number, what: string): void {
  if (!Number.isSafeInteger(v) || v < 0) unrepresentable(`bad ${what} ${v}`);
}

function pad512(n: number): number {
  return n + ((BLOCK - (n % BLOCK)) % BLOCK);
}

// ---------------------------------------------------------------------------
// The plan of the entry last planned (module state: no allocation per entry).

let pTypeflag = 0;
let pIsLink = false;
/** The stored name: S_PATH, or S_SPARSE for a sparse file. */
let pName: Scratch = S_PATH;
/** Bytes of the stored name, a directory's '/' included. */
let pNameLen = 0;
let pSplit = -1; // index of the '/' between prefix and name; -1: name only
let pPathX = false;
let pLinkX = false;
let pUnameX = false;
let pGnameX = false;
let pUidX = false;
let pGidX = false;
let pBinary = false;
/** Bytes after the ustar block in the archive: data, or a sparse file's map and regions. */
let pArchived = 0n;
let pSizeX = false;
let pSizeUstar = 0;
let pMtimeX = false;
let pMtimeUstar = 0;
let pDevMajor = 0;
let pDevMinor = 0;
let pDevMajorX = false;
let pDevMinorX = false;
/** A sparse file's map as written after the ustar block (ASCII), or null. */
let pSparseMap: string | null = null;
let pSparseMapPadded = 0;
let pRealSize = 0n;
let pAclAccess: Buffer | null = null;
let pAclDefault: Buffer | null = null;
const pXattrKeys: Buffer[] = [];
const pXattrValues: Buffer[] = [];
let pDumpdirLen = -1;
let pRecLen = 0;
let pTotal = 0;

/** Plans `e` (see the header comment); returns the bytes its header takes. */
function plan(e: PaxEntry): number {
  curPath = typeof e.path === 'string' ? e.path : String(e.path);
  const typeflag = TYPEFLAGS[e.type];
  if (typeflag === undefined) unrepresentable(`bad type ${String(e.type)}`);
  pTypeflag = typeflag;
  const isFile = e.type === 'file';
  const isDir = e.type === 'dir';
  const isLink = e.type === 'symlink' || e.type === 'hardlink';
  const isDev = e.type === 'chardev' || e.type === 'blockdev';
  pIsLink = isLink;
  let rec = 0; // records' bytes

  // --- names ----------------------------------------------------------------
  if (typeof e.path !== 'string' || e.path.length === 0) unrepresentable('empty path');
  encodeString(e.path, S_PATH, 'path');
  const sparse = isFile && e.sparse !== undefined ? e.sparse : undefined;
  pBinary = S_PATH.binary;
  pName = S_PATH;
  if (sparse) {
    // GNU sparse 1.0: the ustar name is <dir>/GNUSparseFile.0/<base>, the real one a record.
    const pb = S_PATH.bytes;
    const len = S_PATH.len;
    let slash = len - 1;
    while (slash >= 0 && pb[slash] !== 0x2f) slash--;
    const need = len + SPARSE_DIR_BYTES.length + 1;
    if (S_SPARSE.bytes.length < need) S_SPARSE.bytes = Buffer.allocUnsafe(need);
    const sb = S_SPARSE.bytes;
    let n = 0;
    if (slash < 0)
      sb[n++] = 0x2e; // '.'
    else n = pb.copy(sb, 0, 0, slash);
    sb.set(SPARSE_DIR_BYTES, n);
    n += SPARSE_DIR_BYTES.length;
    n += pb.copy(sb, n, slash + 1, len);
    S_SPARSE.len = n;
    S_SPARSE.ascii = S_PATH.ascii;
    S_SPARSE.binary = S_PATH.binary;
    S_SPARSE.of = null;
    pName = S_SPARSE;
    rec += recordLength(K_SPARSE_NAME.length, S_PATH.len);
  }
  const nb = pName.bytes;
  let plen = pName.len;
  if (isDir && nb[plen - 1] !== 0x2f) nb[plen++] = 0x2f; // directories carry a trailing '/' (after the string's bytes: `of` stays true)
  pNameLen = plen;
  pSplit = -1;
  pPathX = false;
  if (!pName.ascii || plen > PREFIX_LEN + 1 + NAME_LEN) pPathX = true;
  else if (plen > NAME_LEN) {
    // The longest name that fits: the first '/' with ≤ 100 bytes after it (and a
    // non-empty name, so not a dir's trailing '/') and ≤ 155 before it.
    const last = Math.min(PREFIX_LEN, plen - 2);
    for (let i = Math.max(1, plen - 1 - NAME_LEN); i <= last; i++) {
      if (nb[i] === 0x2f) {
        pSplit = i;
        break;
      }
    }
    if (pSplit < 0) pPathX = true;
  }
  if (pPathX) rec += recordLength(K_PATH.length, plen);

  pLinkX = false;
  if (isLink) {
    if (e.linkTarget === undefined || e.linkTarget.length === 0)
      unrepresentable(`${e.type} without a target`);
    encodeString(e.linkTarget, S_LINK, 'link target');
    pLinkX = !S_LINK.ascii || S_LINK.len > LINKNAME_LEN;
    if (pLinkX) rec += recordLength(K_LINKPATH.length, S_LINK.len);
    if (S_LINK.binary) pBinary = true;
  }

  encodeString(e.uname, S_UNAME, 'uname');
  encodeString(e.gname, S_GNAME, 'gname');
  pUnameX = !S_UNAME.ascii || S_UNAME.len >= OWNER_NAME_LEN; // the field needs its NUL
  pGnameX = !S_GNAME.ascii || S_GNAME.len >= OWNER_NAME_LEN;
  if (pUnameX) rec += recordLength(K_UNAME.length, S_UNAME.len);
  if (pGnameX) rec += recordLength(K_GNAME.length, S_GNAME.len);
  if (S_UNAME.binary || S_GNAME.binary) pBinary = true;
  if (pBinary) rec += recordLength(K_HDRCHARSET.length, V_BINARY.length);

  // --- numbers ----------------------------------------------------------------
  checkId(e.uid, 'uid');
  checkId(e.gid, 'gid');
  pUidX = e.uid > MAX_OCTAL_7;
  pGidX = e.gid > MAX_OCTAL_7;
  if (pUidX) rec += recordLength(K_UID.length, decimalDigits(e.uid));
  if (pGidX) rec += recordLength(K_GID.length, decimalDigits(e.gid));

  pArchived = 0n;
  pSparseMap = null;
  pSparseMapPadded = 0;
  if (isFile) {
    if (typeof e.size !== 'bigint' || e.size < 0n || e.size > MAX_SIZE)
      unrepresentable(`bad size ${String(e.size)}`);
    pArchived = e.size;
  }
  if (sparse) {
    const real = sparse.realSize;
    if (real !== e.size) unrepresentable(`sparse real size ${String(real)} is not the size ${e.size}`);
    let text = '';
    let count = 0;
    let end = 0n;
    let data = 0n;
    let unaligned = -1n; // length of a data region not a multiple of 512, if one is not the last
    for (const r of sparse.map) {
      if (typeof r.offset !== 'bigint' || typeof r.length !== 'bigint' || r.offset < end || r.length < 0n)
        unrepresentable('sparse map regions out of order or overlapping');
      end = r.offset + r.length;
      if (end > real) unrepresentable(`sparse map region ends at ${end}, past the real size ${real}`);
      if (r.length > 0n) {
        if (unaligned >= 0n)
          unrepresentable(
            `sparse map data region of ${unaligned} bytes before the last is not a multiple of 512 (alignSparseMap makes it one)`,
          );
        if (r.length % 512n !== 0n) unaligned = r.length;
      }
      text += `${r.offset}\n${r.length}\n`;
      data += r.length;
      count++;
    }
    // A file that ends in a hole ends with an empty region at its size: GNU tar
    // truncates the extracted file there (a hole is not written).
    if (count === 0 || end < real) {
      text += `${real}\n0\n`;
      count++;
    }
    pSparseMap = `${count}\n${text}`;
    pSparseMapPadded = pad512(pSparseMap.length);
    pArchived = BigInt(pSparseMapPadded) + data;
    pRealSize = real;
    rec += recordLength(K_SPARSE_MAJOR.length, 1) + recordLength(K_SPARSE_MINOR.length, 1);
    rec += recordLength(K_SPARSE_REALSIZE.length, bigDigits(real));
  }
  pSizeX = pArchived > BigInt(MAX_OCTAL_11);
  pSizeUstar = pSizeX ? MAX_OCTAL_11 : Number(pArchived);
  if (pSizeX) rec += recordLength(K_SIZE.length, bigDigits(pArchived));

  pDevMajor = 0;
  pDevMinor = 0;
  pDevMajorX = false;
  pDevMinorX = false;
  if (isDev) {
    pDevMajor = e.devMajor ?? 0;
    pDevMinor = e.devMinor ?? 0;
    if (!Number.isSafeInteger(pDevMajor) || pDevMajor < 0 || pDevMajor > MAX_DEV)
      unrepresentable(`bad devMajor ${pDevMajor}`);
    if (!Number.isSafeInteger(pDevMinor) || pDevMinor < 0 || pDevMinor > MAX_DEV)
      unrepresentable(`bad devMinor ${pDevMinor}`);
    pDevMajorX = pDevMajor > MAX_OCTAL_7;
    pDevMinorX = pDevMinor > MAX_OCTAL_7;
    if (pDevMajorX) rec += recordLength(K_DEVMAJOR.length, decimalDigits(pDevMajor));
    if (pDevMinorX) rec += recordLength(K_DEVMINOR.length, decimalDigits(pDevMinor));
  }

  // --- times --------------------------------------------------------------------
  checkTime(e.mtime, 'mtime');
  const msec = Number(e.mtime.sec); // exact up to 2^53, monotonic beyond: fine for range checks
  pMtimeX = e.mtime.nsec !== 0 || msec < 0 || msec > MAX_OCTAL_11;
  pMtimeUstar = msec < 0 ? 0 : msec > MAX_OCTAL_11 ? MAX_OCTAL_11 : msec;
  if (pMtimeX) rec += recordLength(K_MTIME.length, timeParts(e.mtime));
  if (e.atime !== undefined) {
    checkTime(e.atime, 'atime');
    rec += recordLength(K_ATIME.length, timeParts(e.atime));
  }
  if (e.ctime !== undefined) {
    checkTime(e.ctime, 'ctime');
    rec += recordLength(K_CTIME.length, timeParts(e.ctime));
  }

  // --- ACLs, xattrs, dumpdir ------------------------------------------------------
  pAclAccess = e.aclAccess !== undefined ? aclBytes(e.aclAccess, 'access ACL') : null;
  pAclDefault = isDir && e.aclDefault !== undefined ? aclBytes(e.aclDefault, 'default ACL') : null;
  if (pAclAccess) rec += recordLength(K_ACL_ACCESS.length, pAclAccess.length);
  if (pAclDefault) rec += recordLength(K_ACL_DEFAULT.length, pAclDefault.length);
  pXattrKeys.length = 0;
  pXattrValues.length = 0;
  if (e.xattrs !== undefined) {
    for (const x of e.xattrs) {
      if (ACL_XATTRS.has(x.name)) continue; // the SCHILY.acl.* records carry them
      if (!Buffer.isBuffer(x.value))
        unrepresentable(`extended attribute ${JSON.stringify(x.name)} without a value`);
      const k = xattrKey(x.name);
      pXattrKeys.push(k);
      pXattrValues.push(x.value);
      rec += recordLength(k.length, x.value.length);
    }
  }
  pDumpdirLen = -1;
  if (isDir && e.dumpdir !== undefined) {
    pDumpdirLen = checkDumpdir(e.dumpdir);
    rec += recordLength(K_DUMPDIR.length, pDumpdirLen);
  }

  pRecLen = rec;
  pTotal = (rec > 0 ? BLOCK + pad512(rec) : 0) + BLOCK + pSparseMapPadded;
  return pTotal;
}

/**
 * Bytes `encodeHeaderInto` writes for `e`, exactly: the x block and its records
 * (if any), the ustar block and, for a sparse file, its map. Throws
 * PaxUnrepresentableError as encodeHeaderInto does.
 */
export function headerBytes(e: PaxEntry): number {
  return plan(e);
}

/**
 * Encodes the header block(s) of `e` into `target` at `offset`; returns bytes
 * written (headerBytes(e), a multiple of 512). Throws RangeError if target is
 * too small (nothing is written then), PaxUnrepresentableError if `e` cannot
 * be represented (NUL in a name, a negative size, ...).
 */
export function encodeHeaderInto(e: PaxEntry, target: Uint8Array, offset: number): number {
  const limit = target.length;
  if (!Number.isInteger(offset) || offset < 0 || offset > limit)
    throw new RangeError(`pax: bad offset ${offset}`);
  const total = plan(e);
  if (offset + total > limit)
    throw new RangeError(`pax: target buffer too small (needs ${total} bytes, ${limit - offset} left)`);
  const nb = pName.bytes;
  const plen = pNameLen;

  // --- extended header ----------------------------------------------------
  let h = offset; // where the ustar block goes
  if (pRecLen > 0) {
    const recStart = offset + BLOCK;
    let p = recStart;
    const t = target;
    if (pBinary) p = recordBytes(t, p, K_HDRCHARSET, V_BINARY, V_BINARY.length);
    if (pPathX) p = recordBytes(t, p, K_PATH, nb, plen);
    if (pLinkX) p = recordBytes(t, p, K_LINKPATH, S_LINK.bytes, S_LINK.len);
    if (pSizeX) p = recordNumber(t, p, K_SIZE, pArchived);
    if (pUidX) p = recordNumber(t, p, K_UID, e.uid);
    if (pGidX) p = recordNumber(t, p, K_GID, e.gid);
    if (pUnameX) p = recordBytes(t, p, K_UNAME, S_UNAME.bytes, S_UNAME.len);
    if (pGnameX) p = recordBytes(t, p, K_GNAME, S_GNAME.bytes, S_GNAME.len);
    if (pDevMajorX) p = recordNumber(t, p, K_DEVMAJOR, pDevMajor);
    if (pDevMinorX) p = recordNumber(t, p, K_DEVMINOR, pDevMinor);
    if (pSparseMap !== null) {
      p = recordNumber(t, p, K_SPARSE_MAJOR, 1);
      p = recordNumber(t, p, K_SPARSE_MINOR, 0);
      p = recordBytes(t, p, K_SPARSE_NAME, S_PATH.bytes, S_PATH.len);
      p = recordNumber(t, p, K_SPARSE_REALSIZE, pRealSize);
    }
    if (pMtimeX) p = recordTime(t, p, K_MTIME, e.mtime);
    if (e.atime !== undefined) p = recordTime(t, p, K_ATIME, e.atime);
    if (e.ctime !== undefined) p = recordTime(t, p, K_CTIME, e.ctime);
    if (pAclAccess) p = recordBytes(t, p, K_ACL_ACCESS, pAclAccess, pAclAccess.length);
    if (pAclDefault) p = recordBytes(t, p, K_ACL_DEFAULT, pAclDefault, pAclDefault.length);
    for (let i = 0; i < pXattrKeys.length; i++) {
      const v = pXattrValues[i]!;
      p = recordBytes(t, p, pXattrKeys[i]!, v, v.length);
    }
    if (pDumpdirLen >= 0) p = recordDumpdir(t, p, e.dumpdir!, pDumpdirLen);
    if (p - recStart !== pRecLen)
      throw new Error(`pax: internal error: records ${p - recStart} bytes, planned ${pRecLen}`);
    const padded = recStart + pad512(pRecLen);
    target.fill(0, p, padded);

    // The x block itself: name "PaxHeaders/<last component>" (ASCII, truncated),
    // mode 0644, ids 0, the entry's mtime, size = the records' length.
    target.fill(0, offset, recStart);
    let sum = putBytes(PAX_HEADERS_DIR, 0, PAX_HEADERS_DIR.length, target, offset + NAME);
    let n = offset + NAME + PAX_HEADERS_DIR.length;
    const pb = S_PATH.bytes;
    const rlen = S_PATH.len;
    let base = rlen - 1;
    while (base > 0 && pb[base] === 0x2f) base--; // a dir's own trailing '/'
    const baseEnd = base + 1;
    while (base >= 0 && pb[base] !== 0x2f) base--;
    const stop = Math.min(baseEnd, base + 1 + NAME_LEN - PAX_HEADERS_DIR.length);
    for (let i = base + 1; i < stop; i++) {
      const c = pb[i]! >= 0x80 ? 0x5f : pb[i]!; // '_' for non-ASCII bytes
      target[n++] = c;
      sum += c;
    }
    sum += putOctal(target, offset + MODE, 8, 0o644);
    sum += putOctal(target, offset + UID, 8, 0);
    sum += putOctal(target, offset + GID, 8, 0);
    sum += putOctal(target, offset + SIZE, 12, pRecLen);
    sum += putOctal(target, offset + MTIME, 12, pMtimeUstar);
    sum += putOctal(target, offset + DEVMAJOR, 8, 0);
    sum += putOctal(target, offset + DEVMINOR, 8, 0);
    finishBlock(target, offset, TF_EXTENDED, sum);
    h = padded;
  }

  // --- the ustar block ----------------------------------------------------
  // Values that went to the x header still get a best-effort ustar value: a
  // truncated name, the field's maximum for numbers (never 0: a pax-unaware
  // reader must not make a file root-owned), empty owner names.
  target.fill(0, h, h + BLOCK);
  let sum = 0;
  if (pSplit >= 0) {
    sum += putBytes(nb, 0, pSplit, target, h + PREFIX);
    sum += putBytes(nb, pSplit + 1, plen, target, h + NAME);
  } else sum += putBytes(nb, 0, utf8Cut(nb, plen, NAME_LEN), target, h + NAME);
  sum += putOctal(target, h + MODE, 8, e.mode & 0o7777);
  sum += putOctal(target, h + UID, 8, pUidX ? MAX_OCTAL_7 : e.uid);
  sum += putOctal(target, h + GID, 8, pGidX ? MAX_OCTAL_7 : e.gid);
  sum += putOctal(target, h + SIZE, 12, pSizeUstar);
  sum += putOctal(target, h + MTIME, 12, pMtimeUstar);
  if (pIsLink) {
    const ll = utf8Cut(S_LINK.bytes, S_LINK.len, LINKNAME_LEN);
    sum += putBytes(S_LINK.bytes, 0, ll, target, h + LINKNAME);
  }
  if (!pUnameX) sum += putBytes(S_UNAME.bytes, 0, S_UNAME.len, target, h + UNAME);
  if (!pGnameX) sum += putBytes(S_GNAME.bytes, 0, S_GNAME.len, target, h + GNAME);
  sum += putOctal(target, h + DEVMAJOR, 8, pDevMajorX ? MAX_OCTAL_7 : pDevMajor);
  sum += putOctal(target, h + DEVMINOR, 8, pDevMinorX ? MAX_OCTAL_7 : pDevMinor);
  finishBlock(target, h, pTypeflag, sum);
  h += BLOCK;

  // --- a sparse file's map: decimal count, then offset and length per region, one a line
  if (pSparseMap !== null) {
    const m = pSparseMap;
    for (let i = 0; i < m.length; i++) target[h + i] = m.charCodeAt(i);
    target.fill(0, h + m.length, h + pSparseMapPadded);
    h += pSparseMapPadded;
  }
  return h - offset;
}

let convenience = Buffer.allocUnsafe(16 * BLOCK);

/** Convenience: the header block(s) of `e` in a new Buffer. */
export function encodeHeader(e: PaxEntry): Buffer {
  const n = headerBytes(e);
  if (convenience.length < n) convenience = Buffer.allocUnsafe(n);
  return Buffer.from(convenience.subarray(0, encodeHeaderInto(e, convenience, 0)));
}
