// What restores need of the file system that Node lacks: file times set to the
// nanosecond (fs.utimes goes through doubles and libuv keeps microseconds) on
// files, directories and symlinks themselves, and fifos and device nodes. A small
// Node-API addon (native/posixfs.c, built into build/Release by `npm ci`) does
// it; this is its typed face. The addon is loaded at first use, not at import,
// so code that never restores runs without it. It works in worker threads too.
// It also holds the server's malloc settings (tuneMalloc, trimMalloc below).
// And what backups of extended attributes, ACLs and sparse files need that
// Node has none of: the xattr system calls (llistxattr, lgetxattr, lsetxattr
// and their following forms) and lseek(SEEK_DATA/SEEK_HOLE), whose whence
// values Node's fs does not offer (docs/metadata.md).

import fs from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** A point in time as the file system keeps it: seconds since the epoch (negative before 1970) and 0..999999999 ns. */
export interface TimeNs {
  sec: bigint;
  nsec: number;
}

interface Binding {
  setTimes(
    path: FsPath,
    atimeSec: bigint,
    atimeNsec: number,
    mtimeSec: bigint,
    mtimeNsec: number,
    followSymlinks: boolean,
  ): void;
  mknod(path: FsPath, mode: number, major: number, minor: number): void;
  mallocTune(arenaMax: number, mmapThreshold: number): boolean;
  mallocTrim(): boolean;
  listXattr(path: FsPath, followSymlinks: boolean): Buffer;
  getXattr(path: FsPath, name: FsPath, followSymlinks: boolean): Buffer;
  setXattr(path: FsPath, name: FsPath, value: Uint8Array, followSymlinks: boolean): void;
  dataRegions(fd: number, size: number | bigint, maxRegions: number): BigInt64Array;
  threadCpuNs(): number;
  setThreadName(name: string): boolean;
  setNotsentLowat(fd: number, bytes: number): boolean;
  tcpSendState(fd: number, out: Uint32Array): boolean;
  tryLockExclusive(fd: number): boolean;
}

/**
 * A path for the addon: a Buffer holds the name's exact bytes (what a name
 * that is not UTF-8 needs: `encodeName`, util/byte-name.ts); a string is
 * taken as UTF-8.
 */
export type FsPath = string | Buffer;

const ADDON = 'posixfs';

let binding: Binding | undefined;
let loadError: Error | undefined;

/** The directory holding package.json, walking up from this module's (src/util, or dist/src/util). */
function packageRoot(): string | undefined {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (fs.existsSync(join(dir, 'package.json'))) return dir;
    const parent = dirname(dir);
    if (parent === dir) return undefined;
    dir = parent;
  }
}

function addon(): Binding {
  if (binding) return binding;
  if (!loadError) {
    const root = packageRoot();
    const file = join(root ?? '.', 'build', 'Release', `${ADDON}.node`);
    try {
      if (root === undefined) throw new Error('no package.json above ' + fileURLToPath(import.meta.url));
      binding = createRequire(import.meta.url)(file) as Binding;
      return binding;
    } catch (err) {
      loadError = new Error(
        `the native addon ${file} could not be loaded (${(err as Error).message.split('\n')[0]}); ` +
          `build it with \`npm rebuild\` (which runs \`node-gyp rebuild\`) in ${root ?? 'the package directory'}; ` +
          "node-gyp needs python3, make, a C compiler and Node's headers",
        { cause: err },
      );
    }
  }
  throw loadError;
}

/**
 * The addon itself, typed by the caller: for the backup's batched calls
 * (src/backup/file-source.ts, native/batch.c), whose typed face lives with them.
 */
export function nativeAddon<T>(): T {
  return addon() as unknown as T;
}

/**
 * Sets a path's access and modification times exactly, to the nanosecond
 * (utimensat(2)). With `followSymlinks: false` a symlink's own times are set,
 * not its target's. Throws Node-style errors (`code`, `errno`, `syscall`, `path`).
 */
export function setTimesNs(
  path: FsPath,
  atime: TimeNs,
  mtime: TimeNs,
  opts?: { followSymlinks?: boolean },
): void {
  addon().setTimes(path, atime.sec, atime.nsec, mtime.sec, mtime.nsec, opts?.followSymlinks ?? true);
}

/** Creates a fifo (mknod(2) with S_IFIFO). The umask applies to `mode`, as for fs.mkdirSync. */
export function mkfifo(path: FsPath, mode: number): void {
  addon().mknod(path, fs.constants.S_IFIFO | permissionBits(mode), 0, 0);
}

/** Creates a character or block device node (mknod(2); needs root). The umask applies to `mode`. */
export function mknod(
  path: FsPath,
  type: 'chardev' | 'blockdev',
  mode: number,
  major: number,
  minor: number,
): void {
  let kind: number;
  if (type === 'chardev') kind = fs.constants.S_IFCHR;
  else if (type === 'blockdev') kind = fs.constants.S_IFBLK;
  else throw new TypeError(`The "type" argument must be 'chardev' or 'blockdev'; got ${String(type)}`);
  addon().mknod(path, kind | permissionBits(mode), major, minor);
}

/** Keeps a mode's permission bits (and setuid/setgid/sticky), so a full st_mode may be passed. */
function permissionBits(mode: number): number {
  if (typeof mode !== 'number') throw new TypeError('The "mode" argument must be of type number');
  if (!Number.isInteger(mode) || mode < 0 || mode > 0xffffffff) {
    throw new RangeError(`The value of "mode" is out of range. It must be an integer >= 0; got ${mode}`);
  }
  return mode & 0o7777;
}

/** How the xattr calls treat a symbolic link: by default it is the link's own attributes (the l- calls). */
export interface XattrOptions {
  /**
   * Follow a symbolic link at the path's end (listxattr, getxattr, setxattr):
   * needed for /proc/self/fd/N, which is a link to the open file.
   */
  followSymlinks?: boolean;
}

/**
 * The names of a path's extended attributes, each as its bytes (llistxattr(2);
 * those the caller may not see, e.g. trusted.* when not root, are not listed).
 * Empty when there are none. Throws Node-style errors (ENOENT, EOPNOTSUPP where
 * the file system has no xattrs, ...).
 */
export function llistxattr(path: FsPath, opts?: XattrOptions): Buffer[] {
  const raw = addon().listXattr(path, opts?.followSymlinks ?? false);
  const names: Buffer[] = [];
  for (let start = 0; start < raw.length;) {
    let end = raw.indexOf(0, start);
    if (end < 0) end = raw.length;
    if (end > start) names.push(raw.subarray(start, end));
    start = end + 1;
  }
  return names;
}

/** An extended attribute's value (lgetxattr(2)); ENODATA when it is not there (any more). */
export function lgetxattr(path: FsPath, name: FsPath, opts?: XattrOptions): Buffer {
  return addon().getXattr(path, name, opts?.followSymlinks ?? false);
}

/**
 * Creates or replaces an extended attribute (lsetxattr(2)). A file system or
 * namespace that takes none throws EOPNOTSUPP; a namespace the caller may not
 * write (trusted.* when not root, user.* on a symbolic link) EPERM.
 */
export function lsetxattr(path: FsPath, name: FsPath, value: Uint8Array, opts?: XattrOptions): void {
  addon().setXattr(path, name, value, opts?.followSymlinks ?? false);
}

/** One stretch of a sparse file that holds data (everything between two is a hole, read as zeros). */
export interface DataRegion {
  readonly offset: bigint;
  readonly length: bigint;
}

/**
 * Most regions dataRegions maps by default: beyond it the rest of the file is
 * one region, read densely. A file with more data/hole alternations than this
 * is unusual, and each region costs its line in the archive's sparse map.
 */
export const MAX_DATA_REGIONS = 4096;

/**
 * The data regions of an open regular file below `size`, in order, by
 * lseek(SEEK_DATA/SEEK_HOLE), in one call. Empty for a file that is all hole.
 * With more than `maxRegions`, the last region runs from its start to `size`
 * (holes in it read as zeros): a bounded map, never a wrong one. A file system
 * without SEEK_DATA gives one region, the whole file. Leaves the file offset at 0.
 */
export function dataRegions(fd: number, size: number | bigint, maxRegions = MAX_DATA_REGIONS): DataRegion[] {
  const pairs = addon().dataRegions(fd, BigInt(size), maxRegions);
  const out: DataRegion[] = [];
  for (let i = 0; i < pairs.length; i += 2) out.push({ offset: pairs[i]!, length: pairs[i + 1]! });
  return out;
}

/** What ndmpd asks of glibc's malloc (docs/memory.md has the measurements behind them). */
export const MALLOC_DEFAULTS = {
  /** Arenas shared by all threads; glibc's default is 8 per core, each keeping what its threads freed. */
  arenaMax: 2,
  /** Blocks from this size up are mapped on their own and unmapped when freed (glibc's starting value, kept fixed). */
  mmapThreshold: 128 * 1024,
} as const;

/**
 * Sets malloc's arena count and a fixed mmap threshold, each unless the
 * environment already sets it (MALLOC_ARENA_MAX, MALLOC_MMAP_THRESHOLD_: the
 * operator's choice wins). Returns what was applied, or null where it cannot
 * be (not glibc, or the addon is not built): the server runs either way.
 */
export function tuneMalloc(
  env: NodeJS.ProcessEnv = process.env,
): { arenaMax: number; mmapThreshold: number } | null {
  const arenaMax = env.MALLOC_ARENA_MAX ? 0 : MALLOC_DEFAULTS.arenaMax;
  const mmapThreshold = env.MALLOC_MMAP_THRESHOLD_ ? 0 : MALLOC_DEFAULTS.mmapThreshold;
  try {
    return addon().mallocTune(arenaMax, mmapThreshold) ? { arenaMax, mmapThreshold } : null;
  } catch {
    return null;
  }
}

/** Gives malloc's free pages back to the system (malloc_trim); false if none were, or it cannot. */
export function trimMalloc(): boolean {
  try {
    return addon().mallocTrim();
  } catch {
    return false;
  }
}

// ---- write-behind for the virtual tape's data file (docs/tape-image.md, "The write pattern") ----
// Node has no sync_file_range, posix_fadvise or fallocate; the tape image's
// writer uses them to keep its dirty pages few and, when asked, its clean ones too.

interface WriteBehindBinding {
  startWriteback(fd: number, offset: number, length: number): void;
  awaitWriteback(fd: number, offset: number, length: number): void;
  dropCachedPages(fd: number, offset: number, length: number): void;
  preallocate(fd: number, offset: number, length: number): void;
}

function writeBehindAddon(): WriteBehindBinding {
  return addon() as unknown as WriteBehindBinding;
}

/** Queues the range's dirty pages for writing, without waiting (sync_file_range SYNC_FILE_RANGE_WRITE). */
export function startWriteback(fd: number, offset: number, length: number): void {
  writeBehindAddon().startWriteback(fd, offset, length);
}

/**
 * Writes the range's dirty pages and waits until the device has them (all
 * three sync_file_range flags). Not an fsync: no metadata, no cache flush.
 * A failed writeback of the range shows here as EIO (or ENOSPC).
 */
export function awaitWriteback(fd: number, offset: number, length: number): void {
  writeBehindAddon().awaitWriteback(fd, offset, length);
}

/** Drops the range's clean cached pages (posix_fadvise POSIX_FADV_DONTNEED); dirty ones stay. */
export function dropCachedPages(fd: number, offset: number, length: number): void {
  writeBehindAddon().dropCachedPages(fd, offset, length);
}

/** Allocates blocks for the range without changing the file's size (fallocate FALLOC_FL_KEEP_SIZE). */
export function preallocate(fd: number, offset: number, length: number): void {
  writeBehindAddon().preallocate(fd, offset, length);
}

// ---- file history's hand-off (docs/history.md): thread CPU, the control socket's send state

/** CPU time of the calling thread in ns (CLOCK_THREAD_CPUTIME_ID); -1 where it cannot be read. */
export function threadCpuNs(): number {
  try {
    return addon().threadCpuNs();
  } catch {
    return -1;
  }
}

/**
 * Names the calling thread for `top -H`, `ps -L` and /proc (15 bytes kept):
 * an operator sees which of a session's threads burns the CPU
 * (docs/design.md, "Threads and where bytes go"). Best effort: nothing happens where it cannot be set.
 */
export function nameThread(name: string): void {
  try {
    addon().setThreadName(name);
  } catch {
    // No addon, or no such call on this system: the thread keeps node's name.
  }
}

/**
 * TCP_NOTSENT_LOWAT on a connected TCP socket's fd: the kernel takes no more
 * writes while more than `bytes` are unsent. False where it cannot be set
 * (no such option, not TCP, or the addon is not built): the caller goes on without.
 */
export function setTcpNotsentLowat(fd: number, bytes: number): boolean {
  try {
    return addon().setNotsentLowat(fd, bytes);
  } catch {
    return false;
  }
}

/** What the kernel holds for a TCP socket's peer: bytes written and not yet sent, the peer's window. */
export interface TcpSendState {
  notsentBytes: number;
  /** The peer's advertised receive window (0xffffffff when the kernel does not say). */
  peerWindow: number;
  /** Bytes written and not yet acknowledged by the peer, the unsent ones included. */
  unackedBytes: number;
}

const sendState = new Uint32Array(3);

/** TCP_INFO's notsent bytes and send window, and SIOCOUTQ, of a TCP socket's fd; null where they cannot be read. */
export function tcpSendState(fd: number): TcpSendState | null {
  try {
    if (!addon().tcpSendState(fd, sendState)) return null;
  } catch {
    return null;
  }
  return { notsentBytes: sendState[0]!, peerWindow: sendState[1]!, unackedBytes: sendState[2]! };
}

/**
 * flock(fd, LOCK_EX | LOCK_NB): true when this open file now holds the lock,
 * false when another open file holds it. The kernel releases it when the file
 * is closed or the process dies, so a crashed holder never leaves it behind.
 * Throws (the addon missing included) when it cannot be tried.
 */
export function tryLockExclusive(fd: number): boolean {
  return addon().tryLockExclusive(fd);
}
