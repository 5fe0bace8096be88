// One file-history record as a session thread hands it to the history thread:
// a fixed little-endian header and the name's UTF-8 bytes, written into the
// session's own SPSC ring (src/ring). The history thread turns records into
// FH_ADD_FILE / FH_ADD_DIR / FH_ADD_NODE entries (encoder.ts) without ever
// decoding a name to a string: the bytes go from the producer's scratch buffer
// into the XDR message as they are.
//
//   kind HELLO   first record of a session: which history model it produces
//   kind ENTRY   an entry in the stream: stat, node, fh_info, path below the root
//   kind DIRENT  dir/node model: one name in a directory (name, node, parent)

import type { BigIntStats } from 'node:fs';
import { encodeName, isUtf8Name, nameByteLength } from '../util/byte-name.js';
import { FileType } from '../wire/index.js';

export const RecordKind = { HELLO: 0, ENTRY: 1, DIRENT: 2 } as const;

/** What the DMA gets (docs/protocol.md §8.1): HIST=n, path (FH_ADD_FILE), dir/node (FH_ADD_DIR + FH_ADD_NODE). */
export const HistoryModel = { NONE: 0, PATH: 1, DIRNODE: 2 } as const;
export type HistoryModel = (typeof HistoryModel)[keyof typeof HistoryModel];

/** ENTRY flag: the entry gets an FH_ADD_NODE (dir/node model: one per node, not per hard link). */
export const FLAG_NODE = 1;

// Field offsets (bytes). u64 values are two u32 words, low first.
export const OFF = {
  kind: 0,
  ftype: 1,
  flags: 2,
  model: 3,
  nameLen: 4,
  fattr: 8,
  uid: 12,
  gid: 16,
  links: 20,
  mtime: 24,
  atime: 28,
  ctime: 32,
  size: 36,
  node: 44,
  fhInfo: 52,
  parent: 60,
  name: 68,
} as const;
export const RECORD_HEADER_BYTES = OFF.name;
/** Longer names are not sent as history (PATH_MAX is 4096; this is a guard, not a limit in practice). */
export const MAX_NAME_BYTES = 65535;

/** What a history record needs of a file's status: an lstat result, or one made up from an archive header. */
export type HistoryStat = Pick<
  BigIntStats,
  | 'mode'
  | 'uid'
  | 'gid'
  | 'nlink'
  | 'mtimeMs'
  | 'atimeMs'
  | 'ctimeMs'
  | 'size'
  | 'isFile'
  | 'isDirectory'
  | 'isSymbolicLink'
  | 'isFIFO'
  | 'isCharacterDevice'
  | 'isBlockDevice'
  | 'isSocket'
>;

/**
 * The same fields as plain numbers (times as whole seconds, rounded down),
 * where a stat has them without BigInt arithmetic: a directory listing's
 * (src/backup/file-source.ts, ListedStat). BigInt operations cost more than
 * the rest of a record together, and a backup makes a record per file.
 */
export interface HistoryStatNumbers {
  readonly modeNumber: number;
  readonly uidNumber: number;
  readonly gidNumber: number;
  readonly nlinkNumber: number;
  readonly atimeSec: bigint;
  readonly mtimeSec: bigint;
  readonly ctimeSec: bigint;
}

function hasNumbers(st: HistoryStat): st is HistoryStat & HistoryStatNumbers {
  return (st as Partial<HistoryStatNumbers>).modeNumber !== undefined;
}

/** NDMP file type of an lstat result. */
export function ndmpFileType(st: HistoryStat): number {
  if (st.isFile()) return FileType.NDMP_FILE_REG;
  if (st.isDirectory()) return FileType.NDMP_FILE_DIR;
  if (st.isSymbolicLink()) return FileType.NDMP_FILE_SLINK;
  if (st.isFIFO()) return FileType.NDMP_FILE_FIFO;
  if (st.isCharacterDevice()) return FileType.NDMP_FILE_CSPEC;
  if (st.isBlockDevice()) return FileType.NDMP_FILE_BSPEC;
  if (st.isSocket()) return FileType.NDMP_FILE_SOCK;
  return FileType.NDMP_FILE_OTHER;
}

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);
const ALL_ONES = 0xffff_ffff;

/**
 * Writes records into one reusable scratch buffer. The caller hands
 * `bytes()` on (ring or lockstep encoder) before writing the next record.
 */
export class RecordWriter {
  private buf = Buffer.allocUnsafe(RECORD_HEADER_BYTES + 4096);
  private view = new DataView(this.buf.buffer, this.buf.byteOffset, this.buf.length);
  /** The same bytes as a plain Uint8Array: its subarray() is much cheaper than a Buffer's. */
  private u8 = new Uint8Array(this.buf.buffer, this.buf.byteOffset, this.buf.length);
  private len = 0;

  bytes(): Uint8Array {
    return this.u8.subarray(0, this.len);
  }

  hello(model: HistoryModel): Uint8Array {
    this.buf.fill(0, 0, RECORD_HEADER_BYTES);
    this.buf[OFF.kind] = RecordKind.HELLO;
    this.buf[OFF.model] = model;
    this.len = RECORD_HEADER_BYTES;
    return this.bytes();
  }

  /** An ENTRY; false (nothing written) when the name is too long to send. */
  entry(
    path: string,
    st: HistoryStat,
    node: bigint,
    fhInfo: bigint | null,
    flags: number,
  ): Uint8Array | null {
    if (!this.name(path)) return null;
    const v = this.view;
    this.buf[OFF.kind] = RecordKind.ENTRY;
    this.buf[OFF.ftype] = ndmpFileType(st);
    this.buf[OFF.flags] = flags;
    if (hasNumbers(st)) {
      v.setUint32(OFF.fattr, st.modeNumber & 0o7777, true);
      v.setUint32(OFF.uid, st.uidNumber >>> 0, true);
      v.setUint32(OFF.gid, st.gidNumber >>> 0, true);
      v.setUint32(OFF.links, Math.min(st.nlinkNumber, ALL_ONES), true);
      v.setUint32(OFF.mtime, clampSeconds(Number(st.mtimeSec)), true);
      v.setUint32(OFF.atime, clampSeconds(Number(st.atimeSec)), true);
      v.setUint32(OFF.ctime, clampSeconds(Number(st.ctimeSec)), true);
    } else {
      // Number() of each bigint once, then plain arithmetic.
      v.setUint32(OFF.fattr, Number(st.mode) & 0o7777, true);
      v.setUint32(OFF.uid, Number(st.uid) >>> 0, true);
      v.setUint32(OFF.gid, Number(st.gid) >>> 0, true);
      v.setUint32(OFF.links, Math.min(Number(st.nlink), ALL_ONES), true);
      v.setUint32(OFF.mtime, seconds(st.mtimeMs), true);
      v.setUint32(OFF.atime, seconds(st.atimeMs), true);
      v.setUint32(OFF.ctime, seconds(st.ctimeMs), true);
    }
    this.u64(OFF.size, st.size);
    this.u64(OFF.node, node);
    if (fhInfo === null) {
      v.setUint32(OFF.fhInfo, ALL_ONES, true);
      v.setUint32(OFF.fhInfo + 4, ALL_ONES, true);
    } else this.u64(OFF.fhInfo, fhInfo);
    // Not an ENTRY's fields, but no stale bytes of an earlier record either.
    this.buf[OFF.model] = 0;
    v.setBigUint64(OFF.parent, 0n, true);
    return this.bytes();
  }

  dirent(name: string, node: bigint, parent: bigint): Uint8Array | null {
    if (!this.name(name)) return null;
    this.buf[OFF.kind] = RecordKind.DIRENT;
    this.u64(OFF.node, node);
    this.u64(OFF.parent, parent);
    return this.bytes();
  }

  private name(s: string): boolean {
    // UTF-8 is at most 3 bytes per UTF-16 unit (an escaped byte is 1).
    const worst = RECORD_HEADER_BYTES + s.length * 3;
    if (s.length * 3 > MAX_NAME_BYTES && nameByteLength(s) > MAX_NAME_BYTES) return false;
    if (worst > this.buf.length) {
      this.buf = Buffer.allocUnsafe(Math.max(worst, this.buf.length * 2));
      this.view = new DataView(this.buf.buffer, this.buf.byteOffset, this.buf.length);
      this.u8 = new Uint8Array(this.buf.buffer, this.buf.byteOffset, this.buf.length);
    }
    const n = writeName(this.buf, s);
    this.view.setUint32(OFF.nameLen, n, true);
    this.len = RECORD_HEADER_BYTES + n;
    return true;
  }

  private u64(off: number, v: bigint): void {
    if (v <= MAX_SAFE) {
      const n = Number(v);
      this.view.setUint32(off, n >>> 0, true);
      this.view.setUint32(off + 4, Math.floor(n / 2 ** 32), true);
    } else {
      this.view.setUint32(off, Number(BigInt.asUintN(32, v)), true);
      this.view.setUint32(off + 4, Number(BigInt.asUintN(32, v >> 32n)), true);
    }
  }
}

/** Seconds for a 32-bit NDMP time field (from exact milliseconds): before 1970 reads as 0, after 2106 as the last second. */
function seconds(ms: bigint): number {
  return clampSeconds(Math.floor(Number(ms) / 1000));
}

/** Seconds since the epoch as NDMP's u_long holds them: before 1970 is 0, past 2106 all ones. */
function clampSeconds(s: number): number {
  if (s < 0) return 0;
  return s > ALL_ONES ? ALL_ONES : s;
}

/**
 * The history model the DMA's HIST variable asks of a tar backup (docs/protocol.md
 * §8.1): y (our choice: path, as tar servers do), f path, d dir/node, n none;
 * absent means none. Null for a value that means none of these. HIST may come
 * more than once (ndmjob sends HIST=y for -I beside a -E HIST=d): a specific
 * f or d wins over y.
 */
export function historyModelOf(env: readonly { name: string; value: string }[]): HistoryModel | null {
  let model: HistoryModel = HistoryModel.NONE;
  let specific = false;
  for (const p of env) {
    if (p.name !== 'HIST') continue;
    const v = p.value.trim().toLowerCase();
    switch (v) {
      case '':
      case 'n':
      case 'no':
      case 'false':
        if (!specific) model = HistoryModel.NONE;
        break;
      case 'y':
      case 'yes':
      case 't':
      case 'true':
        if (!specific) model = HistoryModel.PATH;
        break;
      case 'f':
      case 'd':
        if (!specific) model = v === 'd' ? HistoryModel.DIRNODE : HistoryModel.PATH;
        specific = true;
        break;
      default:
        return null;
    }
  }
  return model;
}

/**
 * The name's exact bytes at OFF.name (docs/names.md: the lossless string's
 * bytes, UTF-8 where they are). Most names are ASCII, and a plain loop writes
 * those several times faster than Buffer.write, whose call into C++ costs more
 * than a short name's bytes; other Unicode takes that road, and a name holding
 * escaped bytes goes through encodeName.
 */
function writeName(buf: Buffer, s: string): number {
  const n = s.length;
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0x80) {
      if (isUtf8Name(s)) return buf.write(s, OFF.name, 'utf8');
      const b = encodeName(s);
      buf.set(b, OFF.name);
      return b.length;
    }
    buf[OFF.name + i] = c;
  }
  return n;
}
