// The pax interchange format's layout, shared by the encoder (pax-encoder.ts)
// and the parser (pax-parser.ts): the entry types, the ustar block's fields,
// typeflags and the constants of the stream. Written from the POSIX `pax`
// specification (XCU, "pax Interchange Format" and "ustar Interchange
// Format"); docs/pax.md says what is emitted and read, and why.

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
/** Sizes and uid/gid are handled as JS numbers: 2^53−1 bytes (8 PiB) is the cap. */
export const MAX_SAFE_N = BigInt(Number.MAX_SAFE_INTEGER);

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

/** Bound on the header bytes for paths and link targets ≤ 4096 bytes each, uname/gname ≤ 256 bytes. */
export const MAX_HEADER_BYTES = 20 * BLOCK; // x block + ≤ 18 blocks of records + ustar block; see docs/pax.md

/** End of archive: two 512-byte zero blocks (what POSIX requires; GNU tar pads further to its record size). */
export const END_OF_ARCHIVE: Buffer = Buffer.alloc(2 * BLOCK);

/** Zero bytes after `size` bytes of data to reach a block boundary. */
export function paddingAfter(size: bigint): number {
  const r = Number(size % 512n);
  return r === 0 ? 0 : BLOCK - r;
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
