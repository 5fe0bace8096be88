// The pax interchange format's layout, shared by the encoder (pax-encoder.ts)
// and the parser (pax-parser.ts): the entry types, the ustar block's fields,
// typeflags and the constants of the stream. Written from the POSIX `pax`
// specification (XCU, "pax Interchange Format" and "ustar Interchange
// Format"); docs/pax.md says what is emitted and read, and why.

import { escapeName } from '../util/byte-name.js';
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
  /** Extended attributes but the two POSIX ACL ones (`SCHILY.xattr.<name>` records). */
  xattrs?: readonly PaxXattr[];
  /** The access ACL as GNU tar `--acls` writes it (`SCHILY.acl.access`). */
  aclAccess?: string;
  /** The default ACL of a directory (`SCHILY.acl.default`). */
  aclDefault?: string;
  /** A sparse file's data regions (type 'file' only; `size` is then the real size). GNU sparse format 1.0. */
  sparse?: PaxSparse;
}

/** One extended attribute: `name` is the full name with its namespace ('user.x', 'security.selinux', 'trusted.y'), lossless string form. */
export interface PaxXattr {
  readonly name: string;
  readonly value: Buffer;
}

/** A sparse file's data regions, in file order, non-overlapping; a final zero-length region at realSize when the file ends in a hole. */
export interface PaxSparse {
  readonly realSize: bigint;
  readonly map: readonly { offset: bigint; length: bigint }[];
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

export const NAME = 0;
export const NAME_LEN = 100;
export const MODE = 100;
export const UID = 108;
export const GID = 116;
export const SIZE = 124;
export const MTIME = 136;
export const CHKSUM = 148;
export const TYPEFLAG = 156;
export const LINKNAME = 157;
export const LINKNAME_LEN = 100;
export const MAGIC = 257;
export const VERSION = 263;
export const UNAME = 265;
export const GNAME = 297;
export const OWNER_NAME_LEN = 32;
export const DEVMAJOR = 329;
export const DEVMINOR = 337;
export const PREFIX = 345;
export const PREFIX_LEN = 155;

/** Largest value of an 8-byte numeric field (7 octal digits + NUL): uid, gid, devmajor, devminor. */
export const MAX_OCTAL_7 = 0o7777777;
/** Largest value of a 12-byte numeric field (11 octal digits + NUL): size, mtime. */
export const MAX_OCTAL_11 = 0o77777777777;
/** uid/gid and the stream's own byte counts are JS numbers: 2^53−1 is their cap. */
export const MAX_SAFE_N = BigInt(Number.MAX_SAFE_INTEGER);
/** The `SCHILY.devmajor`/`SCHILY.devminor` keywords carry device numbers up to this (Linux's are 12 and 20 bits; glibc's dev_t 32 each). */
export const MAX_DEV = 0xffffffff;

export const TYPEFLAGS: Readonly<Record<PaxType, number>> = {
  file: 0x30, // '0'
  hardlink: 0x31, // '1'
  symlink: 0x32, // '2'
  chardev: 0x33, // '3'
  blockdev: 0x34, // '4'
  dir: 0x35, // '5'
  fifo: 0x36, // '6'
};
export const TF_EXTENDED = 0x78; // 'x'
export const TF_GLOBAL = 0x67; // 'g'

export const TYPES_BY_FLAG: Readonly<Record<number, PaxType>> = {
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

/** Largest size (and sparse real size) an entry may have: Linux's off_t, 2^63−1. */
export const MAX_SIZE = 2n ** 63n - 1n;
/** Times are Linux's: a signed 64-bit count of seconds. */
export const MIN_TIME_SEC = -(2n ** 63n);
export const MAX_TIME_SEC = 2n ** 63n - 1n;

/** The sparse map's `GNUSparseFile.<n>` directory: GNU tar puts its process id there, we a constant. */
export const SPARSE_DIR = 'GNUSparseFile.0';

/** The two extended attributes that hold POSIX ACLs: carried as `SCHILY.acl.*` text, never as xattr records. */
export const ACL_XATTRS: ReadonlySet<string> = new Set([
  'system.posix_acl_access',
  'system.posix_acl_default',
]);

/** End of archive: two 512-byte zero blocks (what POSIX requires; GNU tar pads further to its record size). */
export const END_OF_ARCHIVE: Buffer = Buffer.alloc(2 * BLOCK);

/** Zero bytes after `size` bytes of data to reach a block boundary. */
export function paddingAfter(size: bigint): number {
  const r = Number(size % 512n);
  return r === 0 ? 0 : BLOCK - r;
}

/**
 * What the encoder throws for an entry the format cannot hold (a NUL in a
 * name, an empty path, a value out of range): the backup leaves that entry
 * out with a warning (docs/pax.md). `reason` says what, without the path.
 */
export class PaxUnrepresentableError extends CodedError {
  readonly code = 'PAX_UNREPRESENTABLE';
  readonly reason: string;
  constructor(path: string, reason: string) {
    super(`pax: cannot store "${escapeName(path)}": ${reason}`);
    this.name = 'PaxUnrepresentableError';
    this.reason = reason;
  }
}

/** What the parser throws for a malformed stream. */
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

/** Bytes of a sparse file's data in the archive: the sum of its regions' lengths (padding not included). */
export function sparseDataBytes(sparse: PaxSparse): bigint {
  let n = 0n;
  for (const r of sparse.map) n += r.length;
  return n;
}

/**
 * `sparse` with its data regions widened to 512-byte boundaries (and merged
 * where they then touch), the end capped at the real size. GNU tar reads each
 * region from a block boundary, so every data region but the last must be a
 * multiple of 512 bytes long (the encoder refuses other maps); regions that
 * SEEK_DATA/SEEK_HOLE find are already, file system blocks being multiples of
 * 512. The bytes added are holes, which read as zeros.
 */
export function alignSparseMap(sparse: PaxSparse): PaxSparse {
  const out: { offset: bigint; length: bigint }[] = [];
  const real = sparse.realSize;
  for (const r of sparse.map) {
    if (r.length === 0n) continue;
    const start = r.offset - (r.offset % 512n);
    let end = r.offset + r.length;
    end = end % 512n === 0n ? end : end + 512n - (end % 512n);
    if (end > real) end = real;
    const last = out[out.length - 1];
    if (last !== undefined && start <= last.offset + last.length) {
      const e = last.offset + last.length;
      if (end > e) last.length = end - last.offset;
    } else out.push({ offset: start, length: end - start });
  }
  const last = out[out.length - 1];
  if (last === undefined || last.offset + last.length < real) out.push({ offset: real, length: 0n });
  return { realSize: real, map: out };
}
