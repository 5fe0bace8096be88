// Resolving paths inside an export without ever following a symbolic link
// below it (docs/security.md, "Confinement"). Every path a DMA names
// (FILESYSTEM, PREFIX, restore destinations, FILES entries) and every name a
// backup walks goes through here.
//
// The rules:
// - An absolute DMA path is matched to an export by the export's configured
//   path or its real path: the administrator's export path is trusted and may
//   itself contain symbolic links.
// - Below the export root every component is looked at with lstat and none is
//   ever followed: a symbolic link is refused with the component's name. `..`
//   is refused; `.` and empty components are dropped.
// - Each step is taken relative to the directory the previous step opened
//   (a descriptor, reached through /proc/self/fd/N: Node has no openat), and a
//   directory opened is checked to be the one that was lstat'ed (its dev and
//   ino). So a directory swapped for a symbolic link between two steps is
//   noticed, never followed: the walk is confined by construction, not only
//   when nothing changes under it.
// - Mount points and bind mounts inside an export are part of the export: only
//   root can make them, and the backup walk crosses file systems as GNU tar
//   does. A mount point is a directory to lstat like any other.
// - Names are bytes (docs/names.md): every name and path here is a lossless
//   string, and reaches node's fs only as a Buffer of its exact bytes (a string
//   path would turn a byte that is not UTF-8 into U+FFFD); listings and link
//   targets come back as Buffers and are decoded losslessly. Messages name a
//   file by its printed form (escapeName).

import fs from 'node:fs';
import { isAbsolute, resolve, sep } from 'node:path';
import { decodeName, encodeName, escapeName } from './byte-name.js';
import { CodedError } from './coded-error.js';

/** Why a path was refused. */
export type ConfineReason =
  'symlink' | 'dotdot' | 'not-directory' | 'outside' | 'missing' | 'relative' | 'changed';

/** A DMA-named path that does not stay inside an export, or a name that changed while it was resolved. */
export class ConfineError extends CodedError {
  readonly code = 'NDMPD_CONFINE';
  constructor(
    message: string,
    readonly reason: ConfineReason,
  ) {
    super(message);
    this.name = 'ConfineError';
  }
}

/** A file's identity: the same (dev, ino) is the same file, whatever its path. */
export interface FileId {
  readonly dev: bigint;
  readonly ino: bigint;
}

export interface ExportLike {
  readonly path: string;
}

const C = fs.constants;
const O_DIR = C.O_RDONLY | C.O_DIRECTORY | C.O_NOFOLLOW;
/** O_NONBLOCK: a fifo put in a file's place must not hang the open (it makes no difference to reading files). */
const O_FILE = C.O_RDONLY | C.O_NOFOLLOW | C.O_NONBLOCK;
/**
 * Linux O_PATH (Node does not export it): a descriptor naming a file without
 * opening it, so a device node's driver is never called and a fifo never
 * waits; its /proc/self/fd/N leads to that very file for chmod and chown.
 */
const O_PATH = 0o10000000;

/**
 * A path's components: '' and '.' dropped; null when one is '..'. The
 * components never contain '/', so each is one name in one directory.
 */
export function pathComponents(p: string): string[] | null {
  const parts: string[] = [];
  for (const part of p.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') return null;
    parts.push(part);
  }
  return parts;
}

/** Lexically: `p` is `base` or lies below it (both absolute and normalised; nothing is looked up). */
export function isInside(base: string, p: string, opts: { strict?: boolean } = {}): boolean {
  if (p === base) return !opts.strict;
  return p.startsWith(base.endsWith(sep) ? base : base + sep);
}

/** Whether `a` and `b` are one file. */
export function sameFile(a: FileId, b: FileId): boolean {
  return a.dev === b.dev && a.ino === b.ino;
}

function code(e: unknown): string | undefined {
  return (e as NodeJS.ErrnoException).code;
}

/**
 * An open directory, to reach the names in it without looking up any path
 * above it again. Owns its descriptor: close() it.
 */
export class ConfinedDir implements FileId {
  private closed = false;
  /** `/proc/self/fd/<fd>/`, to which a name's bytes are appended (at()). */
  private readonly prefix: Buffer;

  private constructor(
    readonly fd: number,
    /** Its path when opened (messages, and for another thread to open it again with openVerified). */
    readonly path: string,
    readonly dev: bigint,
    readonly ino: bigint,
  ) {
    this.prefix = Buffer.from(`/proc/self/fd/${fd}/`, 'latin1');
  }

  /**
   * Opens a trusted directory (an export root, or a backup root confineToExport
   * gave): the path is followed as it is. With `expect`, it must be that
   * directory still, else ConfineError 'changed'.
   */
  static open(path: string, expect?: FileId): ConfinedDir {
    const fd = fs.openSync(encodeName(path), expect ? O_DIR : C.O_RDONLY | C.O_DIRECTORY);
    return ConfinedDir.adopt(
      fd,
      path,
      expect,
      `${escapeName(path)}: changed since it was checked; try again`,
    );
  }

  /**
   * Opens a directory that must not be a symbolic link itself (a restore's
   * destination: the real path of an export, or below one), O_DIRECTORY|
   * O_NOFOLLOW; with `expect`, it must be that directory (else ConfineError
   * 'changed').
   */
  static openNoFollow(path: string, expect?: FileId): ConfinedDir {
    const fd = fs.openSync(encodeName(path), O_DIR);
    return ConfinedDir.adopt(
      fd,
      path,
      expect,
      `${escapeName(path)}: changed since it was checked; try again`,
    );
  }

  /**
   * Opens, from another thread or later, a directory a walk opened before:
   * `path` may lead anywhere by now, so what it opens must be `expect` (else
   * ConfineError 'changed'). O_DIRECTORY: nothing but a directory is ever
   * opened on the way, so no device can be opened by a swapped path.
   */
  static openVerified(path: string, expect: FileId): ConfinedDir {
    const fd = fs.openSync(encodeName(path), O_DIR);
    return ConfinedDir.adopt(
      fd,
      path,
      expect,
      `${escapeName(path)}: changed during the backup (not the directory listed)`,
    );
  }

  private static adopt(fd: number, path: string, expect: FileId | undefined, changed: string): ConfinedDir {
    let st: fs.BigIntStats;
    try {
      st = fs.fstatSync(fd, { bigint: true });
      if (expect && !sameFile(st, expect)) throw new ConfineError(changed, 'changed');
      // Names below are reached through the descriptor: /proc must be there.
      if (!fs.existsSync(`/proc/self/fd/${fd}`))
        throw new Error(
          '/proc is not mounted: ndmpd reads exports through /proc/self/fd so as never to follow a symbolic link; mount /proc',
        );
    } catch (e) {
      fs.closeSync(fd);
      throw e;
    }
    return new ConfinedDir(fd, path, st.dev, st.ino);
  }

  /**
   * The path of `name` in this directory, resolved from the descriptor: no
   * component above it is looked up again. Empty name: the directory itself.
   * A Buffer holding the name's exact bytes, for node's fs and the addon.
   */
  at(name = ''): Buffer {
    if (name === '') return this.prefix.subarray(0, this.prefix.length - 1);
    return Buffer.concat([this.prefix, encodeName(name)]);
  }

  /** The names in it (unsorted), lossless strings of their bytes. */
  list(): string[] {
    return fs.readdirSync(this.at(), { encoding: 'buffer' }).map((b) => decodeName(b));
  }

  /** lstat of a name in it: a symbolic link is described, not followed. */
  lstat(name: string): fs.BigIntStats {
    return fs.lstatSync(this.at(name), { bigint: true });
  }

  /** A symbolic link's target, the lossless string of its bytes. */
  readlink(name: string): string {
    return decodeName(fs.readlinkSync(this.at(name), { encoding: 'buffer' }));
  }

  /**
   * Opens a subdirectory: a symbolic link there fails (ELOOP); what opens
   * must be `expect` (the name's lstat), else ConfineError 'changed'.
   */
  openDir(name: string, expect: FileId): ConfinedDir {
    const fd = fs.openSync(this.at(name), O_DIR);
    return ConfinedDir.adopt(
      fd,
      this.childPath(name),
      expect,
      `${escapeName(name)}: changed while being backed up`,
    );
  }

  /**
   * Opens a file for reading: a symbolic link fails (ELOOP), and the file
   * opened must be `expect` (else the descriptor is closed and ConfineError
   * 'changed' thrown). Returns the descriptor.
   */
  openFile(name: string, expect: FileId): number {
    const fd = fs.openSync(this.at(name), O_FILE);
    try {
      if (!sameFile(fs.fstatSync(fd, { bigint: true }), expect))
        throw new ConfineError(
          `${escapeName(name)}: replaced by another file while being backed up`,
          'changed',
        );
    } catch (e) {
      fs.closeSync(fd);
      throw e;
    }
    return fd;
  }

  /**
   * A descriptor for the name itself, opened O_PATH|O_NOFOLLOW (nothing is
   * read, no driver called, a symbolic link is the link), and its lstat
   * through it: attribute calls on `/proc/self/fd/<it>` reach that very
   * file. The caller closes it.
   */
  openPath(name: string): { fd: number; stat: fs.BigIntStats } {
    const fd = fs.openSync(this.at(name), O_PATH | C.O_NOFOLLOW);
    try {
      return { fd, stat: fs.fstatSync(fd, { bigint: true }) };
    } catch (e) {
      fs.closeSync(fd);
      throw e;
    }
  }

  /** The path of a name in it, as opened (for messages and openVerified). */
  childPath(name: string): string {
    return this.path.endsWith('/') ? this.path + name : `${this.path}/${name}`;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    fs.closeSync(this.fd);
  }
}

/** A path resolved inside an export. */
export interface ConfinedPath {
  /** The export as configured. */
  readonly exportPath: string;
  /** The export's real path: what `path` starts with. */
  readonly root: string;
  /** The components below root, '/'-joined ('' = the export root itself). */
  readonly rel: string;
  /** root + rel: the path to use, free of symbolic links below the export root. */
  readonly path: string;
  /** The trailing components of rel that do not exist (only with allowMissing). */
  readonly missing: readonly string[];
  /** lstat of the deepest existing component. */
  readonly stat: fs.BigIntStats;
}

export interface ConfineOptions {
  /** How messages name the path: 'FILESYSTEM', 'PREFIX', 'nlist[0] destination'. */
  readonly what: string;
  /** Missing trailing components are allowed (destinations a restore will create). */
  readonly allowMissing?: boolean;
  /** The path must be a directory. */
  readonly directory?: boolean;
}

/**
 * Where an absolute DMA-named path lies: its export and the path below it,
 * each component below the export root checked with lstat (see the rules
 * above). Throws ConfineError with a message for the DMA.
 */
export function confineToExport(
  path: string,
  exports: readonly ExportLike[],
  opts: ConfineOptions,
): ConfinedPath {
  const { what } = opts;
  if (!isAbsolute(path))
    throw new ConfineError(`${what} "${escapeName(path)}" is not an absolute path`, 'relative');
  const parts = pathComponents(path);
  if (parts === null)
    throw new ConfineError(
      `${what} ${escapeName(path)}: '..' is not allowed; name the directory itself`,
      'dotdot',
    );
  const clean = '/' + parts.join('/');
  // The export holding it, by its configured path or its real path; the deepest one if exports nest.
  let best: { exportPath: string; base: string; real: string } | null = null;
  for (const x of exports) {
    let real: string;
    try {
      real = decodeName(fs.realpathSync(encodeName(x.path), { encoding: 'buffer' }));
    } catch {
      continue;
    }
    for (const base of new Set([resolve(x.path), real])) {
      if (isInside(base, clean) && (!best || base.length > best.base.length))
        best = { exportPath: x.path, base, real };
    }
  }
  if (!best) {
    const names = exports.map((x) => escapeName(x.path)).join(', ') || 'none';
    throw new ConfineError(
      `${what} ${escapeName(path)} is not inside an export (exports: ${names})`,
      'outside',
    );
  }
  const below = pathComponents(clean.slice(best.base.length))!;
  let dir = ConfinedDir.open(best.real);
  let stat = fs.fstatSync(dir.fd, { bigint: true });
  const missing: string[] = [];
  try {
    for (let i = 0; i < below.length; i++) {
      const name = below[i]!;
      const last = i === below.length - 1;
      let st: fs.BigIntStats;
      try {
        st = dir.lstat(name);
      } catch (e) {
        if (code(e) === 'ENOENT' && opts.allowMissing) {
          missing.push(...below.slice(i));
          break;
        }
        if (code(e) === 'ENOENT')
          throw new ConfineError(
            `${what} ${escapeName(path)}: "${escapeName(name)}" does not exist`,
            'missing',
          );
        throw new ConfineError(
          `${what} ${escapeName(path)}: "${escapeName(name)}": ${(e as Error).message}`,
          'missing',
        );
      }
      if (st.isSymbolicLink())
        throw new ConfineError(
          `${what} ${escapeName(path)}: "${escapeName(name)}" is a symbolic link; name the directory itself`,
          'symlink',
        );
      stat = st;
      if (last && !opts.directory && !st.isDirectory()) break;
      if (!st.isDirectory())
        throw new ConfineError(
          `${what} ${escapeName(path)}: "${escapeName(name)}" is not a directory`,
          'not-directory',
        );
      const next = openStep(dir, name, st, `${what} ${escapeName(path)}`);
      dir.close();
      dir = next;
    }
  } finally {
    dir.close();
  }
  const rel = below
    .slice(0, below.length - missing.length)
    .concat(missing)
    .join('/');
  return {
    exportPath: best.exportPath,
    root: best.real,
    rel,
    path: rel === '' ? best.real : best.real.endsWith('/') ? best.real + rel : `${best.real}/${rel}`,
    missing,
    stat,
  };
}

/** Opens the subdirectory `name` of `dir`, which must be the one lstat'ed (`st`); errors as ConfineError naming it. */
function openStep(dir: ConfinedDir, name: string, st: FileId, what: string): ConfinedDir {
  try {
    return dir.openDir(name, st);
  } catch (e) {
    if (e instanceof ConfineError || code(e) === 'ELOOP')
      throw new ConfineError(
        `${what}: "${escapeName(name)}" changed while being checked (a symbolic link now?); try again`,
        'changed',
      );
    throw e;
  }
}

/** A relative path resolved below an open directory (resolveBelow). */
export interface ResolvedBelow {
  /** The clean relative path, '/'-separated ('.' for the directory itself). */
  readonly rel: string;
  /** lstat of each component, in order (empty for '.'). */
  readonly stats: readonly fs.BigIntStats[];
  /**
   * The directories opened on the way: [the start, each middle component...];
   * the last is the one holding the final component. The start is not owned;
   * the caller closes the others (closeBelow).
   */
  readonly dirs: readonly ConfinedDir[];
  /** The final component's name ('' for '.'). */
  readonly name: string;
  /** lstat of the final component (of `start` itself for '.'). */
  readonly stat: fs.BigIntStats;
}

/**
 * A relative DMA path (a FILES entry) below `start`: no symbolic link is
 * followed in any component but the last, and the last is lstat'ed, so a
 * symbolic link named there is described as itself. Throws ConfineError
 * naming the component that is a symbolic link or not a directory; other
 * file-system errors (ENOENT...) as they are.
 */
export function resolveBelow(start: ConfinedDir, p: string, what: string): ResolvedBelow {
  const parts = pathComponents(p);
  if (parts === null)
    throw new ConfineError(`${what} "${escapeName(p)}": '..' is not allowed below the backup root`, 'dotdot');
  if (parts.length === 0)
    return { rel: '.', stats: [], dirs: [start], name: '', stat: fs.fstatSync(start.fd, { bigint: true }) };
  const dirs: ConfinedDir[] = [start];
  const stats: fs.BigIntStats[] = [];
  try {
    for (let i = 0; i < parts.length; i++) {
      const name = parts[i]!;
      const dir = dirs[dirs.length - 1]!;
      const st = dir.lstat(name);
      stats.push(st);
      if (i === parts.length - 1) break;
      if (st.isSymbolicLink())
        throw new ConfineError(
          `${what} "${escapeName(p)}": "${escapeName(name)}" is a symbolic link; not followed`,
          'symlink',
        );
      if (!st.isDirectory())
        throw new ConfineError(
          `${what} "${escapeName(p)}": "${escapeName(name)}" is not a directory`,
          'not-directory',
        );
      dirs.push(openStep(dir, name, st, `${what} "${escapeName(p)}"`));
    }
  } catch (e) {
    closeBelow({ dirs });
    throw e;
  }
  return {
    rel: parts.join('/'),
    stats,
    dirs,
    name: parts[parts.length - 1]!,
    stat: stats[stats.length - 1]!,
  };
}

/** Closes the directories resolveBelow opened (not its start). */
export function closeBelow(r: { readonly dirs: readonly ConfinedDir[] }): void {
  for (let i = 1; i < r.dirs.length; i++) r.dirs[i]!.close();
}

/**
 * Why a directory under a ConfinedTree cannot be written into: a symbolic
 * link, not a directory, or not the directory this tree checked before.
 */
function refuseStep(rel: string, st: fs.BigIntStats): ConfineError {
  return st.isSymbolicLink()
    ? new ConfineError(`${escapeName(rel)} is a symbolic link; nothing is restored through it`, 'symlink')
    : new ConfineError(`${escapeName(rel)} is not a directory; nothing is restored into it`, 'not-directory');
}

/**
 * A tree being written (a restore's destination), reached only through
 * directory descriptors: every directory below the root is created (mkdir
 * through its parent's /proc/self/fd/N/name) or opened through its parent's
 * descriptor, O_DIRECTORY|O_NOFOLLOW, and checked to be the one lstat'ed
 * there, and the first time this tree saw it. So once a directory is
 * checked, a symbolic link swapped into its place is never followed: a
 * descriptor still open writes into the directory itself (wherever it was
 * moved), and one opened again meets the link and refuses it.
 *
 * Open descriptors are kept in a least-recently-used cache of `limit`, plus
 * those `hold()` asked to keep for the entry at hand (a hard link needs two
 * directories at once). The identity of every directory checked is kept (one
 * per directory of the archive, as the restore's list of directories is), so
 * one opened again must be the same. close() closes them all.
 */
export class ConfinedTree {
  private readonly open = new Map<string, ConfinedDir>();
  private readonly known = new Map<string, FileId>();
  private readonly held = new Set<string>();
  private closed = false;

  constructor(
    /** The tree's root; owned by the tree from now on. */
    readonly root: ConfinedDir,
    private readonly limit = 64,
  ) {}

  /**
   * The open directory at `rel` ('/'-separated, clean; '' = the root). With
   * `createMode` missing directories are made (that mode, less the umask);
   * without it a missing one fails (ENOENT). Throws ConfineError naming the
   * first component that is a symbolic link, not a directory, or not the one
   * checked before. The descriptor belongs to the tree: use it before the
   * next call unless hold() keeps it.
   */
  dir(rel: string, createMode?: number): ConfinedDir {
    if (this.closed) throw new Error('ConfinedTree used after close()');
    if (rel === '') return this.root;
    const cached = this.open.get(rel);
    if (cached) {
      // Most recently used last: Map keeps insertion order.
      this.open.delete(rel);
      this.open.set(rel, cached);
      return cached;
    }
    const cut = rel.lastIndexOf('/');
    const parentRel = cut < 0 ? '' : rel.slice(0, cut);
    const name = rel.slice(cut + 1);
    const parent = this.dir(parentRel, createMode);
    // The parent may not be evicted while its child is opened through it.
    const wasHeld = this.held.has(parentRel);
    this.held.add(parentRel);
    try {
      let st: fs.BigIntStats;
      try {
        st = parent.lstat(name);
      } catch (e) {
        if (code(e) !== 'ENOENT' || createMode === undefined) throw e;
        try {
          fs.mkdirSync(parent.at(name), { mode: createMode });
        } catch (err) {
          if (code(err) !== 'EEXIST') throw err; // made meanwhile: checked below like any other
        }
        st = parent.lstat(name);
      }
      if (!st.isDirectory()) throw refuseStep(rel, st);
      const before = this.known.get(rel);
      if (before && !sameFile(before, st))
        throw new ConfineError(
          `${escapeName(rel)} was replaced by another directory during the restore; nothing more is restored into it`,
          'changed',
        );
      let dir: ConfinedDir;
      try {
        dir = parent.openDir(name, st);
      } catch (e) {
        if (e instanceof ConfineError || code(e) === 'ELOOP' || code(e) === 'ENOTDIR')
          throw new ConfineError(
            `${escapeName(rel)} changed while being opened (a symbolic link now?); nothing is restored through it`,
            'changed',
          );
        throw e;
      }
      this.known.set(rel, { dev: dir.dev, ino: dir.ino });
      this.open.set(rel, dir);
      this.evict();
      return dir;
    } finally {
      if (!wasHeld) this.held.delete(parentRel);
    }
  }

  /** Whether `rel` is a directory this tree checked (and has not forgotten). */
  has(rel: string): boolean {
    return rel === '' || this.known.has(rel);
  }

  /** Keeps `rel`'s descriptor open until release(), however many others are opened meanwhile. */
  hold(rel: string): void {
    this.held.add(rel);
  }

  /** Ends every hold(). */
  release(): void {
    this.held.clear();
    this.evict();
  }

  /**
   * `rel` and everything below it are gone (removed, or replaced by a file):
   * their descriptors are closed and their identities forgotten, so a
   * directory made there again is checked afresh.
   */
  forget(rel: string): void {
    const below = `${rel}/`;
    for (const [k, d] of this.open) {
      if (k === rel || k.startsWith(below)) {
        d.close();
        this.open.delete(k);
      }
    }
    for (const k of this.known.keys()) if (k === rel || k.startsWith(below)) this.known.delete(k);
  }

  /** Descriptors open now (the root included): for tests, and to see the bound kept. */
  get openCount(): number {
    return this.open.size + (this.closed ? 0 : 1);
  }

  /** Closes every descriptor, the root's too. Safe to call twice. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const d of this.open.values()) d.close();
    this.open.clear();
    this.held.clear();
    this.root.close();
  }

  private evict(): void {
    if (this.open.size <= this.limit) return;
    for (const [k, d] of this.open) {
      if (this.open.size <= this.limit) break;
      if (this.held.has(k)) continue;
      d.close();
      this.open.delete(k);
    }
  }
}
