// The one seam through which a backup reads the tree it backs up: a
// directory's names with their lstat (and xattr name lists) in one call, a
// batch of small files read straight into the stream in one call, and the one
// copy loop for a file read piece by piece. The walker (engine.ts) and the
// reader thread (reader.ts) both go through it, so "vanished / shrank / grew /
// read failed" is decided and worded in one place.
//
// Why native (native/batch.c): a small file costs the kernel a few µs, and
// each Node sync fs call adds 0.5-1.4 µs on top, six or seven calls per file;
// listing and stat'ing a directory, or reading a batch of files, in one call
// leaves only the system calls (docs/design.md, "Small files").
//
// Confinement is kept as util/confine.ts sets it out (docs/security.md): every
// name is reached from its directory's descriptor (fstatat, openat with
// O_NOFOLLOW), and every file read is checked to be the (dev, ino) listed.

import fs from 'node:fs';
import os from 'node:os';
import { ConfineError } from '../util/confine.js';
import type { ConfinedDir } from '../util/confine.js';
import { decodeName, encodeName, escapeName, isUtf8Name } from '../util/byte-name.js';
import { nativeAddon } from '../util/native-fs.js';
import type { HistoryStat, HistoryStatNumbers } from '../history/record.js';

/**
 * What a backup needs of a file's status: what its history record takes, and
 * the identity, device and exact times of its header. fs.BigIntStats has it
 * all, and so does a listing's ListedStat.
 */
export type FileStat = HistoryStat &
  Pick<fs.BigIntStats, 'dev' | 'ino' | 'rdev' | 'blocks' | 'atimeNs' | 'mtimeNs' | 'ctimeNs'>;

interface Batch {
  listDirectory(dirFd: number, wantXattrNames: boolean): ArrayBuffer;
  readFiles(dirFd: number, names: Uint8Array, desc: Uint8Array, out: Uint8Array): void;
}

let batch: Batch | undefined;
function native(): Batch {
  return (batch ??= nativeAddon<Batch>());
}

const S_IFMT = 0o170000;
const S_IFREG = 0o100000;
const S_IFDIR = 0o040000;
const S_IFLNK = 0o120000;
const S_IFIFO = 0o010000;
const S_IFCHR = 0o020000;
const S_IFBLK = 0o060000;
const S_IFSOCK = 0o140000;
const NS_PER_S = 1_000_000_000n;
const NS_PER_MS = 1_000_000n;

/**
 * An lstat from a directory listing: the fields of fs.BigIntStats a backup
 * uses, exact (64-bit) where they need to be. The small numbers and the times'
 * parts are kept as the listing gave them (the walk reads them per entry: see
 * timeOf, modeOf); the BigIntStats forms are made when asked for.
 */
export class ListedStat implements FileStat, HistoryStatNumbers {
  private readonly fmt: number;

  constructor(
    readonly dev: bigint,
    readonly ino: bigint,
    readonly modeNumber: number,
    readonly nlinkNumber: number,
    readonly uidNumber: number,
    readonly gidNumber: number,
    readonly rdev: bigint,
    readonly size: bigint,
    readonly blocks: bigint,
    readonly atimeSec: bigint,
    readonly atimeNsec: number,
    readonly mtimeSec: bigint,
    readonly mtimeNsec: number,
    readonly ctimeSec: bigint,
    readonly ctimeNsec: number,
  ) {
    this.fmt = modeNumber & S_IFMT;
  }

  get mode(): bigint {
    return BigInt(this.modeNumber);
  }
  get nlink(): bigint {
    return BigInt(this.nlinkNumber);
  }
  get uid(): bigint {
    return BigInt(this.uidNumber);
  }
  get gid(): bigint {
    return BigInt(this.gidNumber);
  }
  get atimeNs(): bigint {
    return this.atimeSec * NS_PER_S + BigInt(this.atimeNsec);
  }
  get mtimeNs(): bigint {
    return this.mtimeSec * NS_PER_S + BigInt(this.mtimeNsec);
  }
  get ctimeNs(): bigint {
    return this.ctimeSec * NS_PER_S + BigInt(this.ctimeNsec);
  }
  get atimeMs(): bigint {
    return msOf(this.atimeNs, NS_PER_MS);
  }
  get mtimeMs(): bigint {
    return msOf(this.mtimeNs, NS_PER_MS);
  }
  get ctimeMs(): bigint {
    return msOf(this.ctimeNs, NS_PER_MS);
  }
  isFile(): boolean {
    return this.fmt === S_IFREG;
  }
  isDirectory(): boolean {
    return this.fmt === S_IFDIR;
  }
  isSymbolicLink(): boolean {
    return this.fmt === S_IFLNK;
  }
  isFIFO(): boolean {
    return this.fmt === S_IFIFO;
  }
  isCharacterDevice(): boolean {
    return this.fmt === S_IFCHR;
  }
  isBlockDevice(): boolean {
    return this.fmt === S_IFBLK;
  }
  isSocket(): boolean {
    return this.fmt === S_IFSOCK;
  }
}

/** A time as pax keeps it (whole seconds rounded down, 0..999999999 ns). */
export interface TimeParts {
  sec: bigint;
  nsec: number;
}

/** The entry's mtime and atime as pax keeps them: straight from a listing, else from the ns. */
export function timesOf(st: FileStat): { mtime: TimeParts; atime: TimeParts } {
  if (st instanceof ListedStat)
    return {
      mtime: { sec: st.mtimeSec, nsec: st.mtimeNsec },
      atime: { sec: st.atimeSec, nsec: st.atimeNsec },
    };
  return { mtime: timeOfNs(st.mtimeNs), atime: timeOfNs(st.atimeNs) };
}

/** Permission bits, uid and gid as numbers, without BigInt arithmetic for a listed entry. */
export function idsOf(st: FileStat): { mode: number; uid: number; gid: number } {
  if (st instanceof ListedStat) return { mode: st.modeNumber & 0o7777, uid: st.uidNumber, gid: st.gidNumber };
  return { mode: Number(st.mode & 0o7777n), uid: Number(st.uid), gid: Number(st.gid) };
}

/**
 * A time in ns since the epoch as pax keeps it: whole seconds rounded down, so
 * `nsec` is never negative. Before 1970 BigInt division rounds toward zero
 * (-1.5 s would read -1 s and -5e8 ns), which the pax writer rightly refuses.
 */
export function timeOfNs(ns: bigint): TimeParts {
  let sec = ns / NS_PER_S;
  let nsec = ns % NS_PER_S;
  if (nsec < 0n) {
    sec -= 1n;
    nsec += NS_PER_S;
  }
  return { sec, nsec: Number(nsec) };
}

/** As fs.BigIntStats makes its *Ms fields from the ns: BigInt division, toward zero (also before 1970). */
function msOf(a: bigint, b: bigint): bigint {
  return a / b;
}

/** A Node-style error for an errno a batched call returned, so describe() words it as for any fs call. */
export function errnoError(errno: number, syscall: string): NodeJS.ErrnoException {
  const code = ERRNO_NAMES.get(errno) ?? `E${errno}`;
  const e: NodeJS.ErrnoException = new Error(`${code}: ${syscall} failed`);
  e.code = code;
  e.errno = -errno;
  e.syscall = syscall;
  return e;
}

const ERRNO_NAMES = new Map<number, string>(
  Object.entries(os.constants.errno).map(([name, n]) => [n, name] as [number, string]),
);

// Slots of a listed entry (native/batch.c, L_*).
const L_SLOTS = 20;
const L_NAME_OFF = 0;
const L_NAME_LEN = 1;
const L_ERRNO = 2;
const L_DEV = 3;
const L_INO = 4;
const L_MODE = 5;
const L_NLINK = 6;
const L_UID = 7;
const L_GID = 8;
const L_RDEV = 9;
const L_SIZE = 10;
const L_BLOCKS = 11;
const L_ATIME_S = 12;
const L_ATIME_NS = 13;
const L_MTIME_S = 14;
const L_MTIME_NS = 15;
const L_CTIME_S = 16;
const L_CTIME_NS = 17;
const L_XATTR_OFF = 18;
const L_XATTR_LEN = 19;

/** One name of a directory as listDirectory found it. */
export interface ListedEntry {
  readonly name: string;
  /** Its lstat, or why there is none (an fs-style error: vanished, permission denied). */
  readonly stat: ListedStat | NodeJS.ErrnoException;
  /**
   * Its extended attribute names (asked for, and it has some); empty: none; an
   * error: the list could not be read; null: not asked for.
   */
  readonly xattrNames: Buffer[] | NodeJS.ErrnoException | null;
}

const NO_NAMES: Buffer[] = [];

/**
 * Every name in `dir` (unsorted; "." and ".." left out) with its lstat and,
 * with `xattrNames`, its extended attribute names: one native call. Throws an
 * fs-style error when the directory cannot be read at all.
 */
export function listDirectory(dir: ConfinedDir, xattrNames: boolean): ListedEntry[] {
  const ab = native().listDirectory(dir.fd, xattrNames);
  const head = new Float64Array(ab, 0, 2);
  const count = head[0]!;
  if (head[1]! !== 0) throw errnoError(head[1]!, 'readdir');
  const slots = 2 + count * L_SLOTS;
  const f = new Float64Array(ab, 0, slots);
  const i64 = new BigInt64Array(ab, 0, slots);
  const u64 = new BigUint64Array(ab, 0, slots);
  const bytes = Buffer.from(ab);
  const blob = slots * 8;
  const out: ListedEntry[] = new Array<ListedEntry>(count);
  for (let i = 0; i < count; i++) {
    const s = 2 + i * L_SLOTS;
    const nameAt = blob + f[s + L_NAME_OFF]!;
    const name = decodeName(bytes, nameAt, nameAt + f[s + L_NAME_LEN]!);
    const err = f[s + L_ERRNO]!;
    if (err !== 0) {
      out[i] = { name, stat: errnoError(err, 'lstat'), xattrNames: null };
      continue;
    }
    const stat = new ListedStat(
      u64[s + L_DEV]!,
      u64[s + L_INO]!,
      f[s + L_MODE]!,
      f[s + L_NLINK]!,
      f[s + L_UID]!,
      f[s + L_GID]!,
      u64[s + L_RDEV]!,
      i64[s + L_SIZE]!,
      i64[s + L_BLOCKS]!,
      i64[s + L_ATIME_S]!,
      f[s + L_ATIME_NS]!,
      i64[s + L_MTIME_S]!,
      f[s + L_MTIME_NS]!,
      i64[s + L_CTIME_S]!,
      f[s + L_CTIME_NS]!,
    );
    let xattrs: ListedEntry['xattrNames'] = null;
    if (xattrNames) {
      const xl = f[s + L_XATTR_LEN]!;
      if (xl < 0) xattrs = errnoError(-xl, 'llistxattr');
      else if (xl === 0) xattrs = NO_NAMES;
      else xattrs = splitNames(bytes.subarray(blob + f[s + L_XATTR_OFF]!, blob + f[s + L_XATTR_OFF]! + xl));
    }
    out[i] = { name, stat, xattrNames: xattrs };
  }
  return out;
}

/** llistxattr's NUL-terminated names, each its own Buffer (copied: the listing's memory goes). */
export function splitNames(raw: Buffer): Buffer[] {
  const names: Buffer[] = [];
  for (let start = 0; start < raw.length;) {
    let end = raw.indexOf(0, start);
    if (end < 0) end = raw.length;
    if (end > start) names.push(Buffer.from(raw.subarray(start, end)));
    start = end + 1;
  }
  return names;
}

// ---- reading files ---------------------------------------------------------

/** How reading one file went (native/batch.c OUT_*, and the copy loop's). */
export const ReadOutcome = { OK: 0, SHRANK: 1, GREW: 2, READ_FAILED: 3, OPEN_FAILED: 4, CHANGED: 5 } as const;
export type ReadOutcome = (typeof ReadOutcome)[keyof typeof ReadOutcome];

/**
 * The warning for a file whose data in the stream is not what it held when
 * listed (null: it is), worded once for every way a file is read. The file
 * stays in the stream, exactly its recorded size.
 */
export function readWarning(name: string, outcome: ReadOutcome, err?: NodeJS.ErrnoException): string | null {
  switch (outcome) {
    case ReadOutcome.SHRANK:
      return `${escapeName(name)}: shrank while being read; padded with zeros to its recorded size`;
    case ReadOutcome.GREW:
      return `${escapeName(name)}: changed while being read; backed up as first seen`;
    case ReadOutcome.READ_FAILED:
      return `${escapeName(name)}: read failed (${err?.code ?? err?.message ?? 'unknown error'}); the rest is zeros in the backup`;
    default:
      return null;
  }
}

/** The warning for a file left out because it could not be opened as the file listed. */
export function skipWarning(name: string, e: unknown): string {
  return `${escapeName(name)}: ${skipReason(e)}; skipped`;
}

/**
 * Why a listed file is not read: a symbolic link or another file in its
 * place is the file having changed under the backup, never something to follow.
 */
export function skipReason(e: unknown): string {
  const code = (e as NodeJS.ErrnoException).code;
  if (e instanceof ConfineError || code === 'ELOOP' || code === 'ENOTDIR')
    return 'changed while being backed up (not the file that was listed)';
  return describe(e);
}

/** A file-system error as the DMA's log says it: vanished, permission denied, or its code. */
export function describe(e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  switch (err.code) {
    case 'ENOENT':
      return 'vanished';
    case 'EACCES':
    case 'EPERM':
      return 'permission denied';
    default:
      return err.code ?? err.message;
  }
}

const LITTLE_ENDIAN = os.endianness() === 'LE';

// Slots of a file in a read batch (native/batch.c, R_*). R_DEV and R_INO are adjacent (addRaw).
const R_SLOTS = 8;
const R_NAME_OFF = 0;
const R_NAME_LEN = 1;
const R_DEV = 2;
const R_INO = 3;
const R_SIZE = 4;
const R_DEST = 5;
const R_OUTCOME = 6;
const R_ERRNO = 7;

/** The most bytes a file may have to go through a batch (bigger ones are copied piece by piece). */
export const BATCH_FILE_MAX = 1 << 20;
/** The most files one batch holds. */
export const BATCH_FILES = 256;

/**
 * A batch of small files of one directory, read by one native call into
 * their places in an output buffer (the stream ring's memory): each gets
 * exactly its recorded size and the zero padding to its next 512-byte block.
 */
export class ReadBatch {
  private readonly desc = new Uint8Array(BATCH_FILES * R_SLOTS * 8);
  private readonly f = new Float64Array(this.desc.buffer);
  private readonly u64 = new BigUint64Array(this.desc.buffer);
  private names = Buffer.allocUnsafe(BATCH_FILES * 64);
  private namesLen = 0;
  private readonly enc = new TextEncoder();
  count = 0;

  get full(): boolean {
    return this.count === BATCH_FILES;
  }

  clear(): void {
    this.count = 0;
    this.namesLen = 0;
  }

  /** Adds `leaf` (a name in the batch's directory), which must be (dev, ino), `size` bytes, its data at `dest`. */
  add(leaf: string, dev: bigint, ino: bigint, size: number, dest: number): number {
    this.roomForName(3 * leaf.length);
    let n: number;
    if (isUtf8Name(leaf)) n = this.enc.encodeInto(leaf, this.names.subarray(this.namesLen)).written;
    else {
      const b = encodeName(leaf);
      this.names.set(b, this.namesLen);
      n = b.length;
    }
    const s = this.count * R_SLOTS;
    this.u64[s + R_DEV] = dev;
    this.u64[s + R_INO] = ino;
    return this.added(n, size, dest);
  }

  /**
   * As add(), with the leaf's bytes and the file's (dev, ino) as the 16 bytes
   * of two little-endian u64s (a work item's own layout, src/backup/pipe.ts):
   * copied as they are, so the reader neither decodes a name nor makes
   * BigInts per file. The name is decoded only if a warning needs it (leafName).
   */
  addRaw(leaf: Uint8Array, id: Uint8Array, size: number, dest: number): number {
    if (!LITTLE_ENDIAN) {
      const v = new DataView(id.buffer, id.byteOffset, 16);
      return this.add(decodeName(leaf), v.getBigUint64(0, true), v.getBigUint64(8, true), size, dest);
    }
    this.roomForName(leaf.length);
    this.names.set(leaf, this.namesLen);
    this.desc.set(id.subarray(0, 16), (this.count * R_SLOTS + R_DEV) * 8);
    return this.added(leaf.length, size, dest);
  }

  /** The leaf name of file i, as added (until clear()). */
  leafName(i: number): string {
    const at = this.f[i * R_SLOTS + R_NAME_OFF]!;
    return decodeName(this.names, at, at + this.f[i * R_SLOTS + R_NAME_LEN]!);
  }

  private roomForName(bytes: number): void {
    if (this.names.length - this.namesLen >= bytes) return;
    const grown = Buffer.allocUnsafe(Math.max(this.names.length * 2, this.namesLen + bytes));
    this.names.copy(grown, 0, 0, this.namesLen);
    this.names = grown;
  }

  private added(nameLen: number, size: number, dest: number): number {
    const s = this.count * R_SLOTS;
    this.f[s + R_NAME_OFF] = this.namesLen;
    this.f[s + R_NAME_LEN] = nameLen;
    this.f[s + R_SIZE] = size;
    this.f[s + R_DEST] = dest;
    this.namesLen += nameLen;
    return this.count++;
  }

  /** Reads every file of the batch from `dir` into `out`. */
  run(dir: ConfinedDir, out: Uint8Array): void {
    if (this.count === 0) return;
    native().readFiles(
      dir.fd,
      this.names.subarray(0, this.namesLen),
      this.desc.subarray(0, this.count * R_SLOTS * 8),
      out,
    );
  }

  outcome(i: number): ReadOutcome {
    return this.f[i * R_SLOTS + R_OUTCOME]! as ReadOutcome;
  }

  /** Why file i was not read (OPEN_FAILED, CHANGED), or its read failed, as the fs calls would have thrown it. */
  error(i: number): Error {
    if (this.outcome(i) === ReadOutcome.CHANGED)
      return new ConfineError('replaced by another file while being backed up', 'changed');
    const errno = this.f[i * R_SLOTS + R_ERRNO]!;
    return errnoError(errno, this.outcome(i) === ReadOutcome.READ_FAILED ? 'read' : 'open');
  }
}

/** Where a FileCopier puts bytes: room to fill, and how much was filled. */
export interface CopyTarget {
  /** A buffer with room, and where in it the room starts; waits (or throws) for room as the target must. */
  room(): { buf: Uint8Array; at: number; len: number };
  /** `n` bytes were written at the room's start. */
  filled(n: number): void;
}

/** A data region of a file: where it lies, how long (bigint offsets: a sparse file may be 8 EiB long). */
export interface CopyRegion {
  readonly offset: bigint;
  readonly length: bigint;
}

/**
 * The one copy loop for a file read piece by piece (big and sparse files):
 * its regions, each where it lies, into the stream, exactly their lengths
 * whatever happens to the file meanwhile (shrank: zeros; a read fails: zeros
 * for the rest; grew: cut), with the warning readWarning words. Resumable, so
 * the synchronous reader thread and the asynchronous one-thread engine (which
 * flushes its buffer between pieces) run the same code: step() fills what room
 * the target has and says whether the file is done.
 */
export class FileCopier {
  private region = 0;
  private pos: bigint;
  private left: bigint;
  private outcome: ReadOutcome = ReadOutcome.OK;
  private error: NodeJS.ErrnoException | undefined;
  /** Total bytes the regions hold: what goes into the stream. */
  readonly total: bigint;

  constructor(
    private readonly fd: number,
    private readonly regions: readonly CopyRegion[],
    /** The file's real size: a byte there means it grew. */
    private readonly realSize: bigint,
  ) {
    let total = 0n;
    for (const r of regions) total += r.length;
    this.total = total;
    this.pos = regions[0]?.offset ?? 0n;
    this.left = regions[0]?.length ?? 0n;
  }

  /** Copies into `buf` at `at`, at most `len` bytes; returns how many it put there (0: the file is done). */
  step(buf: Uint8Array, at: number, len: number): number {
    while (this.left === 0n) {
      if (++this.region >= this.regions.length) return 0;
      this.pos = this.regions[this.region]!.offset;
      this.left = this.regions[this.region]!.length;
    }
    const want = Number(this.left < BigInt(len) ? this.left : BigInt(len));
    let got = 0;
    if (this.outcome === ReadOutcome.OK) {
      try {
        got = fs.readSync(this.fd, buf, at, want, this.pos);
      } catch (e) {
        this.outcome = ReadOutcome.READ_FAILED;
        this.error = e as NodeJS.ErrnoException;
      }
      if (got === 0 && this.outcome === ReadOutcome.OK) this.outcome = ReadOutcome.SHRANK;
    }
    if (this.outcome !== ReadOutcome.OK) {
      buf.fill(0, at, at + want);
      got = want;
    }
    this.pos += BigInt(got);
    this.left -= BigInt(got);
    return got;
  }

  /** Copies the whole file synchronously into `target`. */
  copyAll(target: CopyTarget): void {
    while (!this.done) {
      const r = target.room();
      target.filled(this.step(r.buf, r.at, r.len));
    }
  }

  /** Whether step() has more to put; needs room only when it has. */
  get done(): boolean {
    if (this.left > 0n) return false;
    for (let i = this.region + 1; i < this.regions.length; i++)
      if (this.regions[i]!.length > 0n) return false;
    return true;
  }

  /**
   * Once done: the warning for how the copy went (null when the stream holds
   * the file as it was). A file read to its end is probed for one more byte.
   */
  finish(name: string): string | null {
    if (this.outcome === ReadOutcome.OK) {
      try {
        if (fs.readSync(this.fd, PROBE, 0, 1, this.realSize) > 0) this.outcome = ReadOutcome.GREW;
      } catch {
        // A probe the kernel refuses (EINVAL at 2^63 - 1, the end of an 8 EiB sparse file) cannot show growth.
      }
    }
    return readWarning(name, this.outcome, this.error);
  }
}

const PROBE = new Uint8Array(1);
