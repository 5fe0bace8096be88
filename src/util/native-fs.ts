// What restores need of the file system that Node lacks: file times set to the
// nanosecond (fs.utimes goes through doubles and libuv keeps microseconds) on
// files, directories and symlinks themselves, and fifos and device nodes. A small
// Node-API addon (native/posixfs.c, built into build/Release by `npm ci`) does
// it; this is its typed face. The addon is loaded at first use, not at import,
// so code that never restores runs without it. It works in worker threads too.
// It also holds the server's malloc settings (tuneMalloc, trimMalloc below).

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
    path: string,
    atimeSec: bigint,
    atimeNsec: number,
    mtimeSec: bigint,
    mtimeNsec: number,
    followSymlinks: boolean,
  ): void;
  mknod(path: string, mode: number, major: number, minor: number): void;
  mallocTune(arenaMax: number, mmapThreshold: number): boolean;
  mallocTrim(): boolean;
}

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
 * Sets a path's access and modification times exactly, to the nanosecond
 * (utimensat(2)). With `followSymlinks: false` a symlink's own times are set,
 * not its target's. Throws Node-style errors (`code`, `errno`, `syscall`, `path`).
 */
export function setTimesNs(
  path: string,
  atime: TimeNs,
  mtime: TimeNs,
  opts?: { followSymlinks?: boolean },
): void {
  addon().setTimes(path, atime.sec, atime.nsec, mtime.sec, mtime.nsec, opts?.followSymlinks ?? true);
}

/** Creates a fifo (mknod(2) with S_IFIFO). The umask applies to `mode`, as for fs.mkdirSync. */
export function mkfifo(path: string, mode: number): void {
  addon().mknod(path, fs.constants.S_IFIFO | permissionBits(mode), 0, 0);
}

/** Creates a character or block device node (mknod(2); needs root). The umask applies to `mode`. */
export function mknod(
  path: string,
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
