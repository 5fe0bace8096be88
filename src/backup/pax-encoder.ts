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

/**
 * The plan of the entry last planned and the parts of the time being written
 * (one object, not module-level variables: V8 checks each `let` of a module
 * for its temporal dead zone on every access).
 */
interface State {
  // A time's parts as written, `[-]whole[.frac]` (set by timeParts); the whole
  // seconds a number up to 2^53 (every real time), a string beyond.
  tNeg: boolean;
  tWhole: number;
  tWholeBig: string | null;
  tFrac: number;
  tFracDigits: number;
  tWholeDigits: number;
  pTypeflag: number;
  pIsLink: boolean;
  /** The stored name: S_PATH, or S_SPARSE for a sparse file. */
  pName: Scratch;
  /** Bytes of the stored name, a directory's '/' included. */
  pNameLen: number;
  /** Index of the '/' between prefix and name; -1: name only. */
  pSplit: number;
  pPathX: boolean;
  pLinkX: boolean;
  pUnameX: boolean;
  pGnameX: boolean;
  pUidX: boolean;
  pGidX: boolean;
  pBinary: boolean;
  /** Bytes after the ustar block in the archive: data, or a sparse file's map and regions. */
  pArchived: bigint;
  pSizeX: boolean;
  pSizeUstar: number;
  pMtimeX: boolean;
  pMtimeUstar: number;
  pDevMajor: number;
  pDevMinor: number;
  pDevMajorX: boolean;
  pDevMinorX: boolean;
  /** A sparse file's map as written after the ustar block (ASCII), or null. */
  pSparseMap: string | null;
  pSparseMapPadded: number;
  pRealSize: bigint;
  pAclAccess: Buffer | null;
  pAclDefault: Buffer | null;
  pDumpdirLen: number;
  pRecLen: number;
  pTotal: number;
  pXattrKeys: Buffer[];
  pXattrValues: Buffer[];
}

const S: State = {
  tNeg: false,
  tWhole: 0,
  tWholeBig: null,
  tFrac: 0,
  tFracDigits: 0,
  tWholeDigits: 0,
  pTypeflag: 0,
  pIsLink: false,
  pName: S_PATH,
  pNameLen: 0,
  pSplit: -1,
  pPathX: false,
  pLinkX: false,
  pUnameX: false,
  pGnameX: false,
  pUidX: false,
  pGidX: false,
  pBinary: false,
  pArchived: 0n,
  pSizeX: false,
  pSizeUstar: 0,
  pMtimeX: false,
  pMtimeUstar: 0,
  pDevMajor: 0,
  pDevMinor: 0,
  pDevMajorX: false,
  pDevMinorX: false,
  pSparseMap: null,
  pSparseMapPadded: 0,
  pRealSize: 0n,
  pAclAccess: null,
  pAclDefault: null,
  pDumpdirLen: -1,
  pRecLen: 0,
  pTotal: 0,
  pXattrKeys: [],
  pXattrValues: [],
};

const MAX_OCTAL_11_N = BigInt(MAX_OCTAL_11);

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

const MIN_SAFE_N = -MAX_SAFE_N;

/**
 * `sec.frac` as POSIX pax writes times: the real value, so sec −2 nsec 5e8 is
 * "-1.5", trailing zeros of the fraction dropped. Returns the value's length.
 */
function timeParts(tm: PaxTime): number {
  const sec = tm.sec;
  S.tNeg = sec < 0n;
  S.tFrac = tm.nsec;
  const borrow = S.tNeg && S.tFrac > 0; // -2 s + 0.5 s is -1.5: the whole part shrinks by one
  if (borrow) S.tFrac = 1e9 - S.tFrac;
  if (sec >= MIN_SAFE_N && sec <= MAX_SAFE_N) {
    S.tWhole = S.tNeg ? -Number(sec) - (borrow ? 1 : 0) : Number(sec);
    S.tWholeBig = null;
    S.tWholeDigits = decimalDigits(S.tWhole);
  } else {
    S.tWholeBig = (S.tNeg ? -sec - (borrow ? 1n : 0n) : sec).toString(); // beyond 2^53 s: rare enough to allocate
    S.tWholeDigits = S.tWholeBig.length;
  }
  S.tFracDigits = 0;
  if (S.tFrac > 0) {
    S.tFracDigits = 9;
    while (S.tFrac % 10 === 0) {
      S.tFrac /= 10;
      S.tFracDigits--;
    }
  }
  return (S.tNeg ? 1 : 0) + S.tWholeDigits + (S.tFracDigits > 0 ? 1 + S.tFracDigits : 0);
}

function recordTime(t: Uint8Array, p: number, key: Uint8Array, tm: PaxTime): number {
  const vlen = timeParts(tm);
  let at = recordHead(t, p, key, vlen);
  if (S.tNeg) t[at++] = 0x2d; // '-'
  if (S.tWholeBig === null) putDecimal(t, at, S.tWholeDigits, S.tWhole);
  else for (let i = 0; i < S.tWholeDigits; i++) t[at + i] = S.tWholeBig.charCodeAt(i);
  at += S.tWholeDigits;
  if (S.tFracDigits > 0) {
    t[at++] = 0x2e; // '.'
    putDecimal(t, at, S.tFracDigits, S.tFrac);
    at += S.tFracDigits;
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
// Planning and writing

/** Plans `e` (see the header comment); returns the bytes its header takes. */
function plan(e: PaxEntry): number {
  // S is about to hold another plan than the one headerBytes left.
  planned = null;
  curPath = typeof e.path === 'string' ? e.path : String(e.path);
  const typeflag = TYPEFLAGS[e.type];
  if (typeflag === undefined) unrepresentable(`bad type ${String(e.type)}`);
  S.pTypeflag = typeflag;
  const isFile = e.type === 'file';
  const isDir = e.type === 'dir';
  const isLink = e.type === 'symlink' || e.type === 'hardlink';
  const isDev = e.type === 'chardev' || e.type === 'blockdev';
  S.pIsLink = isLink;
  let rec = 0; // records' bytes

  // --- names ----------------------------------------------------------------
  if (typeof e.path !== 'string' || e.path.length === 0) unrepresentable('empty path');
  encodeString(e.path, S_PATH, 'path');
  const sparse = isFile && e.sparse !== undefined ? e.sparse : undefined;
  S.pBinary = S_PATH.binary;
  S.pName = S_PATH;
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
    S.pName = S_SPARSE;
    rec += recordLength(K_SPARSE_NAME.length, S_PATH.len);
  }
  const nb = S.pName.bytes;
  let plen = S.pName.len;
  if (isDir && nb[plen - 1] !== 0x2f) nb[plen++] = 0x2f; // directories carry a trailing '/' (after the string's bytes: `of` stays true)
  S.pNameLen = plen;
  S.pSplit = -1;
  S.pPathX = false;
  if (!S.pName.ascii || plen > PREFIX_LEN + 1 + NAME_LEN) S.pPathX = true;
  else if (plen > NAME_LEN) {
    // The longest name that fits: the first '/' with ≤ 100 bytes after it (and a
    // non-empty name, so not a dir's trailing '/') and ≤ 155 before it.
    const last = Math.min(PREFIX_LEN, plen - 2);
    for (let i = Math.max(1, plen - 1 - NAME_LEN); i <= last; i++) {
      if (nb[i] === 0x2f) {
        S.pSplit = i;
        break;
      }
    }
    if (S.pSplit < 0) S.pPathX = true;
  }
  if (S.pPathX) rec += recordLength(K_PATH.length, plen);

  S.pLinkX = false;
  if (isLink) {
    if (e.linkTarget === undefined || e.linkTarget.length === 0)
      unrepresentable(`${e.type} without a target`);
    encodeString(e.linkTarget, S_LINK, 'link target');
    S.pLinkX = !S_LINK.ascii || S_LINK.len > LINKNAME_LEN;
    if (S.pLinkX) rec += recordLength(K_LINKPATH.length, S_LINK.len);
    if (S_LINK.binary) S.pBinary = true;
  }

  encodeString(e.uname, S_UNAME, 'uname');
  encodeString(e.gname, S_GNAME, 'gname');
  S.pUnameX = !S_UNAME.ascii || S_UNAME.len >= OWNER_NAME_LEN; // the field needs its NUL
  S.pGnameX = !S_GNAME.ascii || S_GNAME.len >= OWNER_NAME_LEN;
  if (S.pUnameX) rec += recordLength(K_UNAME.length, S_UNAME.len);
  if (S.pGnameX) rec += recordLength(K_GNAME.length, S_GNAME.len);
  if (S_UNAME.binary || S_GNAME.binary) S.pBinary = true;
  if (S.pBinary) rec += recordLength(K_HDRCHARSET.length, V_BINARY.length);

  // --- numbers ----------------------------------------------------------------
  checkId(e.uid, 'uid');
  checkId(e.gid, 'gid');
  S.pUidX = e.uid > MAX_OCTAL_7;
  S.pGidX = e.gid > MAX_OCTAL_7;
  if (S.pUidX) rec += recordLength(K_UID.length, decimalDigits(e.uid));
  if (S.pGidX) rec += recordLength(K_GID.length, decimalDigits(e.gid));

  S.pArchived = 0n;
  S.pSparseMap = null;
  S.pSparseMapPadded = 0;
  if (isFile) {
    if (typeof e.size !== 'bigint' || e.size < 0n || e.size > MAX_SIZE)
      unrepresentable(`bad size ${String(e.size)}`);
    S.pArchived = e.size;
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
    S.pSparseMap = `${count}\n${text}`;
    S.pSparseMapPadded = pad512(S.pSparseMap.length);
    S.pArchived = BigInt(S.pSparseMapPadded) + data;
    S.pRealSize = real;
    rec += recordLength(K_SPARSE_MAJOR.length, 1) + recordLength(K_SPARSE_MINOR.length, 1);
    rec += recordLength(K_SPARSE_REALSIZE.length, bigDigits(real));
  }
  S.pSizeX = S.pArchived > MAX_OCTAL_11_N;
  S.pSizeUstar = S.pSizeX ? MAX_OCTAL_11 : Number(S.pArchived);
  if (S.pSizeX) rec += recordLength(K_SIZE.length, bigDigits(S.pArchived));

  S.pDevMajor = 0;
  S.pDevMinor = 0;
  S.pDevMajorX = false;
  S.pDevMinorX = false;
  if (isDev) {
    S.pDevMajor = e.devMajor ?? 0;
    S.pDevMinor = e.devMinor ?? 0;
    if (!Number.isSafeInteger(S.pDevMajor) || S.pDevMajor < 0 || S.pDevMajor > MAX_DEV)
      unrepresentable(`bad devMajor ${S.pDevMajor}`);
    if (!Number.isSafeInteger(S.pDevMinor) || S.pDevMinor < 0 || S.pDevMinor > MAX_DEV)
      unrepresentable(`bad devMinor ${S.pDevMinor}`);
    S.pDevMajorX = S.pDevMajor > MAX_OCTAL_7;
    S.pDevMinorX = S.pDevMinor > MAX_OCTAL_7;
    if (S.pDevMajorX) rec += recordLength(K_DEVMAJOR.length, decimalDigits(S.pDevMajor));
    if (S.pDevMinorX) rec += recordLength(K_DEVMINOR.length, decimalDigits(S.pDevMinor));
  }

  // --- times --------------------------------------------------------------------
  checkTime(e.mtime, 'mtime');
  const msec = Number(e.mtime.sec); // exact up to 2^53, monotonic beyond: fine for range checks
  S.pMtimeX = e.mtime.nsec !== 0 || msec < 0 || msec > MAX_OCTAL_11;
  S.pMtimeUstar = msec < 0 ? 0 : msec > MAX_OCTAL_11 ? MAX_OCTAL_11 : msec;
  if (S.pMtimeX) rec += recordLength(K_MTIME.length, timeParts(e.mtime));
  if (e.atime !== undefined) {
    checkTime(e.atime, 'atime');
    rec += recordLength(K_ATIME.length, timeParts(e.atime));
  }
  if (e.ctime !== undefined) {
    checkTime(e.ctime, 'ctime');
    rec += recordLength(K_CTIME.length, timeParts(e.ctime));
  }

  // --- ACLs, xattrs, dumpdir ------------------------------------------------------
  S.pAclAccess = e.aclAccess !== undefined ? aclBytes(e.aclAccess, 'access ACL') : null;
  S.pAclDefault = isDir && e.aclDefault !== undefined ? aclBytes(e.aclDefault, 'default ACL') : null;
  if (S.pAclAccess) rec += recordLength(K_ACL_ACCESS.length, S.pAclAccess.length);
  if (S.pAclDefault) rec += recordLength(K_ACL_DEFAULT.length, S.pAclDefault.length);
  S.pXattrKeys.length = 0;
  S.pXattrValues.length = 0;
  if (e.xattrs !== undefined) {
    for (const x of e.xattrs) {
      if (ACL_XATTRS.has(x.name)) continue; // the SCHILY.acl.* records carry them
      if (!Buffer.isBuffer(x.value))
        unrepresentable(`extended attribute ${JSON.stringify(x.name)} without a value`);
      const k = xattrKey(x.name);
      S.pXattrKeys.push(k);
      S.pXattrValues.push(x.value);
      rec += recordLength(k.length, x.value.length);
    }
  }
  S.pDumpdirLen = -1;
  if (isDir && e.dumpdir !== undefined) {
    S.pDumpdirLen = checkDumpdir(e.dumpdir);
    rec += recordLength(K_DUMPDIR.length, S.pDumpdirLen);
  }

  S.pRecLen = rec;
  S.pTotal = (rec > 0 ? BLOCK + pad512(rec) : 0) + BLOCK + S.pSparseMapPadded;
  return S.pTotal;
}

/**
 * Bytes `encodeHeaderInto` writes for `e`, exactly: the x block and its records
 * (if any), the ustar block and, for a sparse file, its map. Throws
 * PaxUnrepresentableError as encodeHeaderInto does.
 */
export function headerBytes(e: PaxEntry): number {
  const total = plan(e);
  planned = e;
  return total;
}

/**
 * The entry headerBytes planned last, which encodeHeaderInto then need not
 * plan again (a third of a small file's header cost): the backup asks for
 * the size, then encodes the same, unchanged entry. Any other entry, or
 * the same one asked again, is planned afresh.
 */
let planned: PaxEntry | null = null;

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
  const total = planned === e ? S.pTotal : plan(e);
  planned = null;
  if (offset + total > limit)
    throw new RangeError(`pax: target buffer too small (needs ${total} bytes, ${limit - offset} left)`);
  const nb = S.pName.bytes;
  const plen = S.pNameLen;

  // --- extended header ----------------------------------------------------
  let h = offset; // where the ustar block goes
  if (S.pRecLen > 0) {
    const recStart = offset + BLOCK;
    let p = recStart;
    const t = target;
    if (S.pBinary) p = recordBytes(t, p, K_HDRCHARSET, V_BINARY, V_BINARY.length);
    if (S.pPathX) p = recordBytes(t, p, K_PATH, nb, plen);
    if (S.pLinkX) p = recordBytes(t, p, K_LINKPATH, S_LINK.bytes, S_LINK.len);
    if (S.pSizeX) p = recordNumber(t, p, K_SIZE, S.pArchived);
    if (S.pUidX) p = recordNumber(t, p, K_UID, e.uid);
    if (S.pGidX) p = recordNumber(t, p, K_GID, e.gid);
    if (S.pUnameX) p = recordBytes(t, p, K_UNAME, S_UNAME.bytes, S_UNAME.len);
    if (S.pGnameX) p = recordBytes(t, p, K_GNAME, S_GNAME.bytes, S_GNAME.len);
    if (S.pDevMajorX) p = recordNumber(t, p, K_DEVMAJOR, S.pDevMajor);
    if (S.pDevMinorX) p = recordNumber(t, p, K_DEVMINOR, S.pDevMinor);
    if (S.pSparseMap !== null) {
      p = recordNumber(t, p, K_SPARSE_MAJOR, 1);
      p = recordNumber(t, p, K_SPARSE_MINOR, 0);
      p = recordBytes(t, p, K_SPARSE_NAME, S_PATH.bytes, S_PATH.len);
      p = recordNumber(t, p, K_SPARSE_REALSIZE, S.pRealSize);
    }
    if (S.pMtimeX) p = recordTime(t, p, K_MTIME, e.mtime);
    if (e.atime !== undefined) p = recordTime(t, p, K_ATIME, e.atime);
    if (e.ctime !== undefined) p = recordTime(t, p, K_CTIME, e.ctime);
    if (S.pAclAccess) p = recordBytes(t, p, K_ACL_ACCESS, S.pAclAccess, S.pAclAccess.length);
    if (S.pAclDefault) p = recordBytes(t, p, K_ACL_DEFAULT, S.pAclDefault, S.pAclDefault.length);
    for (let i = 0; i < S.pXattrKeys.length; i++) {
      const v = S.pXattrValues[i]!;
      p = recordBytes(t, p, S.pXattrKeys[i]!, v, v.length);
    }
    if (S.pDumpdirLen >= 0) p = recordDumpdir(t, p, e.dumpdir!, S.pDumpdirLen);
    if (p - recStart !== S.pRecLen)
      throw new Error(`pax: internal error: records ${p - recStart} bytes, planned ${S.pRecLen}`);
    const padded = recStart + pad512(S.pRecLen);
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
    sum += putOctal(target, offset + SIZE, 12, S.pRecLen);
    sum += putOctal(target, offset + MTIME, 12, S.pMtimeUstar);
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
  if (S.pSplit >= 0) {
    sum += putBytes(nb, 0, S.pSplit, target, h + PREFIX);
    sum += putBytes(nb, S.pSplit + 1, plen, target, h + NAME);
  } else sum += putBytes(nb, 0, utf8Cut(nb, plen, NAME_LEN), target, h + NAME);
  sum += putOctal(target, h + MODE, 8, e.mode & 0o7777);
  sum += putOctal(target, h + UID, 8, S.pUidX ? MAX_OCTAL_7 : e.uid);
  sum += putOctal(target, h + GID, 8, S.pGidX ? MAX_OCTAL_7 : e.gid);
  sum += putOctal(target, h + SIZE, 12, S.pSizeUstar);
  sum += putOctal(target, h + MTIME, 12, S.pMtimeUstar);
  if (S.pIsLink) {
    const ll = utf8Cut(S_LINK.bytes, S_LINK.len, LINKNAME_LEN);
    sum += putBytes(S_LINK.bytes, 0, ll, target, h + LINKNAME);
  }
  if (!S.pUnameX) sum += putBytes(S_UNAME.bytes, 0, S_UNAME.len, target, h + UNAME);
  if (!S.pGnameX) sum += putBytes(S_GNAME.bytes, 0, S_GNAME.len, target, h + GNAME);
  sum += putOctal(target, h + DEVMAJOR, 8, S.pDevMajorX ? MAX_OCTAL_7 : S.pDevMajor);
  sum += putOctal(target, h + DEVMINOR, 8, S.pDevMinorX ? MAX_OCTAL_7 : S.pDevMinor);
  finishBlock(target, h, S.pTypeflag, sum);
  h += BLOCK;

  // --- a sparse file's map: decimal count, then offset and length per region, one a line
  if (S.pSparseMap !== null) {
    const m = S.pSparseMap;
    for (let i = 0; i < m.length; i++) target[h + i] = m.charCodeAt(i);
    target.fill(0, h + m.length, h + S.pSparseMapPadded);
    h += S.pSparseMapPadded;
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
