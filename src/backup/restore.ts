// The restore engine: a pax stream in, files out under one destination
// directory. It is the file-system half of DATA_START_RECOVER (docs/protocol.md
// §9.2); the protocol half comes with the restore work.
//
// Nothing is ever written outside the destination (issue 5, "Safety"):
// - a name that is absolute, empty, or has a `..` component is refused;
// - no entry is created through a symbolic link, even one swapped in while the
//   restore runs (docs/security.md, "While the tree changes"): the
//   destination is opened O_DIRECTORY|O_NOFOLLOW, every directory below it is
//   made or opened through its parent's descriptor and checked to be the one
//   lstat'ed (util/confine.ts, ConfinedTree), and every file, link, node and
//   attribute call names its target as /proc/self/fd/<its directory>/<name>,
//   never as a path from the destination. So the classic trick of an archive
//   symlink `d -> /etc` followed by an entry `d/passwd` fails, as does a
//   symlink planted in the destination beforehand or put in place of a
//   directory the restore already checked; files are created
//   O_EXCL|O_NOFOLLOW;
// - a hard link must name an earlier path of the same archive, in a directory
//   this restore checked, reached through descriptors the same way;
// - unless asked (RestoreOptions.special, RESTORE_SPECIAL=y), no device node or
//   fifo is made and no mode keeps setuid/setgid: a tape of unknown origin
//   cannot plant a root-owned setuid program or a raw disk device.
// Names are bytes (docs/names.md): entry paths and link targets are lossless
// strings, and every file, link and node is made with their exact bytes (Buffer
// paths through ConfinedTree's descriptors, util/confine.ts); warnings name
// entries by their printed form (escapeName).
//
// A refused or failed entry is reported and skipped; the rest is restored. A
// stream that is not a valid archive stops the restore with a clear error
// (PaxFormatError), never a crash.

import fs from 'node:fs';
import { PaxParser } from './pax-parser.js';
import type { ParsedEntry } from './pax-parser.js';
import { ConfineError, ConfinedDir, ConfinedTree, sameFile } from '../util/confine.js';
import { mkfifo, mknod, setTimesNs } from '../util/native-fs.js';
import { encodeName, escapeName } from '../util/byte-name.js';

/** What happens to a file that already exists at a restore's target. */
export type OverwritePolicy = 'always' | 'never' | 'older';

export interface RestoreOptions {
  /**
   * Absolute path of the destination directory (created if missing): a
   * trusted path (an export's real path), whose last component must not be
   * a symbolic link. Everything below it is reached through descriptors.
   */
  readonly dest: string;
  readonly overwrite: OverwritePolicy;
  /** Set owners from the archive (only root can). Default: when running as root. */
  readonly owners?: boolean;
  /**
   * Which entries to restore, and where: the path below `dest` for an
   * archive path, or null to skip it. Default: everything, at its own path.
   */
  readonly select?: (path: string) => string | null;
  /**
   * Each entry as its header is parsed, before anything is written for it:
   * Direct Access Recovery learns from it how far the entry reaches.
   */
  readonly onHeader?: (e: ParsedEntry) => void;
  /**
   * Restore "special" entries exactly as stored: device nodes and fifos are
   * created, setuid/setgid bits kept. Default false: an archive of unknown
   * origin must not plant a device node or a setuid-root program on this
   * host, so those entries are withheld (reported) and every mode loses
   * setuid/setgid (the sticky bit stays). RESTORE_SPECIAL=y asks for true.
   */
  readonly special?: boolean;
}

/** 'withheld': a device node or fifo not created because `special` is off (a warning, not a failure). */
export type RestoreStatus = 'restored' | 'skipped' | 'refused' | 'failed' | 'withheld';

export interface RestoreHooks {
  /** Each entry's outcome; `why` for anything but 'restored'. */
  entry?(path: string, status: RestoreStatus, why?: string): void;
  warn(text: string): void;
  /**
   * Incremental archives: a name removed from the destination because its
   * directory's GNU.dumpdir does not list it (deleted or renamed since the
   * earlier backup); `path` is its archive path. A directory counts once.
   */
  removed?(path: string): void;
}

export interface RestoreResult {
  readonly restored: number;
  readonly refused: number;
  readonly failed: number;
  readonly skipped: number;
  /** Device nodes and fifos not created (RestoreOptions.special off). */
  readonly withheld: number;
  /** Names removed from the destination by incremental archives' directory listings (see RestoreHooks.removed). */
  readonly removed: number;
}

interface OpenFile {
  readonly entry: ParsedEntry;
  /** Open for writing; its attributes are set through it before it is closed. */
  fd: number;
  failed: boolean;
  /** Data bytes still to come: the file is closed (and reported) the moment its last byte is in. */
  left: bigint;
}

/** setuid and setgid: cleared from restored modes unless RestoreOptions.special. */
const SET_ID_BITS = 0o6000;

/** How a withheld entry is named in its warning. */
const SPECIAL_KIND: Readonly<Record<string, string>> = {
  fifo: 'a fifo',
  chardev: 'a character device',
  blockdev: 'a block device',
};

/**
 * O_EXCL: whatever was in the way was unlinked (mayReplace), so the file is
 * made anew; anything put there meanwhile (a link to another file, a
 * symbolic link) fails the open instead of being written through.
 */
const O_WRITE = fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW;

/** Open directory descriptors a restore keeps (besides the destination and those the entry at hand needs). */
const OPEN_DIRS = 64;

/** What is where: an entry's directory (open) and its name there. */
interface Place {
  readonly dir: ConfinedDir;
  readonly name: string;
}

/** The directory part of a clean relative path ('' at the top) and its last name. */
function splitRel(rel: string): { parent: string; name: string } {
  const cut = rel.lastIndexOf('/');
  return cut < 0 ? { parent: '', name: rel } : { parent: rel.slice(0, cut), name: rel.slice(cut + 1) };
}

export class RestoreEngine {
  private parser = new PaxParser();
  private open: OpenFile | null = null;
  /** The destination, reached only through directory descriptors; closed by finish() and abandon(). */
  private readonly tree: ConfinedTree;
  private done = false;
  /** Directories restored (relative), to get their times and modes once everything inside them is written. */
  private readonly dirs: { rel: string; entry: ParsedEntry }[] = [];
  private readonly owners: boolean;
  private readonly special: boolean;
  /** Targets (relative) of withheld entries, so a hard link to one is withheld too rather than failed. */
  private readonly withheldTargets = new Set<string>();
  private counts = { restored: 0, refused: 0, failed: 0, skipped: 0, withheld: 0, removed: 0 };

  constructor(
    private readonly opts: RestoreOptions,
    private readonly hooks: RestoreHooks,
  ) {
    this.owners = opts.owners ?? process.getuid?.() === 0;
    this.special = opts.special ?? false;
    // The destination path is trusted (the administrator's export, checked by
    // recover-plan); from its descriptor on, nothing is looked up by path.
    fs.mkdirSync(encodeName(opts.dest), { recursive: true });
    this.tree = new ConfinedTree(ConfinedDir.openNoFollow(opts.dest), OPEN_DIRS);
  }

  /** Feeds stream bytes. Throws PaxFormatError when the stream is not a valid archive. */
  push(chunk: Uint8Array): void {
    this.parser.push(chunk, {
      onEntry: (e) => this.onEntry(e),
      onData: (_e, data) => this.onData(data),
    });
  }

  /** The stream ended: finishes the last file and the directories' attributes. */
  end(): RestoreResult {
    try {
      this.closeFile();
      this.parser.end();
    } catch (e) {
      this.abandon();
      throw e;
    }
    return this.finish();
  }

  /**
   * Done without reading to the end of the archive (Direct Access Recovery
   * read only the parts it wanted): the directories get their attributes.
   */
  finish(): RestoreResult {
    if (this.done) return { ...this.counts };
    try {
      this.closeFile();
      // Deepest first, so setting a directory's times is not undone by its children.
      for (const d of this.dirs.reverse()) {
        this.tree.release();
        let dir: ConfinedDir;
        try {
          dir = this.tree.dir(d.rel);
        } catch (err) {
          this.hooks.warn(`${escapeName(d.entry.path)}: attributes not restored (${errorText(err)})`);
          continue;
        }
        this.attributesOf(dir.fd, d.entry);
      }
    } finally {
      this.dirs.length = 0;
      this.done = true;
      this.tree.close();
    }
    return { ...this.counts };
  }

  /** Stops early (an abort, an error): closes what is open, the directories' descriptors too. */
  abandon(): void {
    try {
      this.closeFile();
    } finally {
      this.done = true;
      this.tree.close();
    }
  }

  /**
   * Direct Access Recovery: the next bytes pushed start at stream offset
   * `offset`, an entry's first header byte. What was being parsed is dropped
   * (an entry cut short is reported failed).
   */
  seek(offset: bigint): void {
    const f = this.open;
    if (f && f.left > 0n && !f.failed) {
      f.failed = true;
      this.report(f.entry.path, 'failed', 'its data was not all read');
    }
    this.closeFile();
    this.parser = new PaxParser({ startOffset: offset });
  }

  /** Stream offset of the next byte the parser expects. */
  get offset(): bigint {
    return this.parser.offset;
  }

  /** Bytes the parser surely needs next (PaxParser.need). */
  get need(): number {
    return this.parser.need;
  }

  /** True once the end-of-archive marker was parsed. */
  get ended(): boolean {
    return this.parser.ended;
  }

  private onEntry(e: ParsedEntry): void {
    this.closeFile();
    this.tree.release();
    this.opts.onHeader?.(e);
    const rel = this.targetOf(e);
    if (rel === null) return;
    try {
      if (e.type === 'dir') {
        this.restoreDir(rel, e);
        this.report(e.path, 'restored');
        return;
      }
      const at = this.placeOf(rel);
      switch (e.type) {
        case 'file': {
          const fd = this.create(at, e);
          if (fd === null) return;
          this.open = { entry: e, fd, failed: false, left: e.size };
          if (e.size === 0n) this.closeFile();
          return; // restored once its data is in (closeFile)
        }
        case 'symlink':
          if (!this.mayReplace(at, e)) return;
          fs.symlinkSync(encodeName(e.linkTarget ?? ''), at.dir.at(at.name));
          this.linkAttributes(at, e);
          break;
        case 'hardlink': {
          const from = this.checkedName(e.linkTarget ?? '');
          // Where this restore put the link's source: a source it did not select is not there.
          const fromRel = from === null ? null : this.opts.select ? this.opts.select(from) : from;
          if (fromRel !== null && this.withheldTargets.has(fromRel)) {
            this.withhold(
              e.path,
              rel,
              `a hard link to "${escapeName(e.linkTarget ?? '')}", which was withheld`,
            );
            return;
          }
          const source = fromRel === null || fromRel === '' ? null : splitRel(fromRel);
          // Only in a directory this restore checked: one it never saw may be anything.
          if (from === null || source === null || !this.tree.has(source.parent)) {
            this.report(
              e.path,
              'refused',
              `hard link to "${escapeName(e.linkTarget ?? '')}": not a file restored from this archive`,
            );
            return;
          }
          const sourceDir = this.tree.dir(source.parent);
          this.tree.hold(source.parent);
          if (!this.mayReplace(at, e)) return;
          // link(2) does not follow a symbolic link at the source: a link is linked as itself.
          fs.linkSync(sourceDir.at(source.name), at.dir.at(at.name));
          break;
        }
        case 'fifo':
          if (!this.special) {
            this.withhold(e.path, rel, SPECIAL_KIND[e.type]!);
            return;
          }
          if (!this.mayReplace(at, e)) return;
          mkfifo(at.dir.at(at.name), e.mode & 0o7777);
          this.nodeAttributes(at, e);
          break;
        case 'chardev':
        case 'blockdev':
          if (!this.special) {
            this.withhold(e.path, rel, SPECIAL_KIND[e.type]!);
            return;
          }
          // Only root may make device nodes; others get the entry reported, not a crash.
          if (!this.mayReplace(at, e)) return;
          mknod(at.dir.at(at.name), e.type, e.mode & 0o7777, e.devMajor ?? 0, e.devMinor ?? 0);
          this.nodeAttributes(at, e);
          break;
        default:
          this.report(e.path, 'skipped', `${e.type} entries are not restored`);
          return;
      }
      this.report(e.path, 'restored');
    } catch (err) {
      this.report(e.path, 'failed', errorText(err));
    }
  }

  private onData(data: Uint8Array): void {
    const f = this.open;
    if (!f) return;
    f.left -= BigInt(data.length);
    if (!f.failed) {
      try {
        for (let off = 0; off < data.length;) off += fs.writeSync(f.fd, data, off, data.length - off);
      } catch (err) {
        f.failed = true;
        this.report(f.entry.path, 'failed', errorText(err));
      }
    }
    if (f.left <= 0n) this.closeFile();
  }

  private closeFile(): void {
    const f = this.open;
    if (!f) return;
    this.open = null;
    try {
      // Through the descriptor still open: the file written, whatever its name leads to by now.
      if (!f.failed) this.attributesOf(f.fd, f.entry);
      fs.closeSync(f.fd);
      if (!f.failed) this.report(f.entry.path, 'restored');
    } catch (err) {
      if (!f.failed) this.report(f.entry.path, 'failed', errorText(err));
    }
  }

  /** The entry's path below dest, or null (reported) when it is refused or not selected. */
  private targetOf(e: ParsedEntry): string | null {
    const name = this.checkedName(e.path);
    if (name === null) {
      this.report(
        e.path,
        'refused',
        'not a relative path inside the destination (absolute, empty or with ..)',
      );
      return null;
    }
    if (name === '') return this.opts.select ? this.opts.select('') : '';
    const to = this.opts.select ? this.opts.select(name) : name;
    if (to === null) {
      this.counts.skipped++;
      return null;
    }
    const checked = this.checkedName(to);
    if (checked === null || checked === '') {
      this.report(e.path, 'refused', `target "${escapeName(to)}" is not a path inside the destination`);
      return null;
    }
    return checked;
  }

  /** A clean relative name ('' for the root itself), or null if it could leave the destination. */
  private checkedName(p: string): string | null {
    if (p.startsWith('/') || p.includes('\0')) return null;
    return normalizeArchivePath(p);
  }

  /**
   * The entry's directory, made as needed (mode 755 until its own entry, if
   * any, says otherwise), and its name there. Every directory on the way is
   * reached through its parent's descriptor; one that is a symbolic link, not
   * a directory, or no longer the one checked fails the entry (ConfineError).
   */
  private placeOf(rel: string): Place {
    const { parent, name } = splitRel(rel);
    const dir = this.tree.dir(parent, 0o755);
    this.tree.hold(parent);
    return { dir, name };
  }

  private restoreDir(rel: string, e: ParsedEntry): void {
    if (rel !== '') {
      const at = this.placeOf(rel);
      const st = lstatOrNull(at);
      if (st && !st.isDirectory()) {
        if (this.opts.overwrite === 'never')
          throw new Error('exists and is not a directory (overwrite=never)');
        fs.unlinkSync(at.dir.at(at.name));
        this.tree.forget(rel); // whatever directory was known there is gone: the new one is checked afresh
      }
    }
    const dir = this.tree.dir(rel, 0o700);
    this.dirs.push({ rel, entry: e });
    if (e.dumpdir) this.purge(dir, rel, e);
  }

  /**
   * A file made anew for the entry, open for writing; null when the overwrite
   * policy keeps what is there (reported). The common case, nothing there,
   * costs one open; only when something is in the way (EEXIST) is it looked
   * at and, if the policy says so, unlinked first.
   */
  private create(at: Place, e: ParsedEntry): number | null {
    const path = at.dir.at(at.name);
    try {
      return fs.openSync(path, O_WRITE, 0o600);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    if (!this.mayReplace(at, e)) return null;
    return fs.openSync(path, O_WRITE, 0o600);
  }

  /** Whether the entry may be written where something may already be; clears the way if so. */
  private mayReplace(at: Place, e: ParsedEntry): boolean {
    const st = lstatOrNull(at);
    if (st === null) return true;
    const policy = this.opts.overwrite;
    const newer = Number(st.mtimeNs) / 1e6 >= Number(e.mtime.sec) * 1000 + e.mtime.nsec / 1e6;
    if (policy === 'never' || (policy === 'older' && newer)) {
      this.report(e.path, 'skipped', `exists (overwrite=${policy})`);
      return false;
    }
    if (st.isDirectory()) {
      this.report(e.path, 'failed', 'a directory is in the way');
      return false;
    }
    // Replaced, never written through: a symlink in the way is removed, not followed.
    fs.unlinkSync(at.dir.at(at.name));
    return true;
  }

  /**
   * Owner, mode and times of a file, directory or node, through a descriptor
   * naming that very file, whatever its name leads to by now: `fd` for fchown
   * and fchmod when it is open for real (a file being written, a directory),
   * or, for an O_PATH one (which those refuse), its /proc/self/fd/N, from
   * which the kernel goes to the file. Times go by that path too (the addon
   * takes paths).
   */
  private attributesOf(fd: number, e: ParsedEntry, opts: { pathOnly?: boolean } = {}): void {
    const at = `/proc/self/fd/${fd}`;
    try {
      if (this.owners) {
        if (opts.pathOnly) fs.chownSync(at, e.uid, e.gid);
        else fs.fchownSync(fd, e.uid, e.gid);
      }
      // chmod after chown: chown clears setuid/setgid.
      if (opts.pathOnly) fs.chmodSync(at, this.modeOf(e));
      else fs.fchmodSync(fd, this.modeOf(e));
      // Times to the nanosecond (Node's utimes keeps microseconds).
      setTimesNs(at, e.atime ?? e.mtime, e.mtime, { followSymlinks: true });
    } catch (err) {
      this.hooks.warn(`${escapeName(e.path)}: attributes not all restored (${errorText(err)})`);
    }
  }

  /** A symbolic link's own owner and times (it has no mode of its own): by name in its directory, not followed. */
  private linkAttributes(at: Place, e: ParsedEntry): void {
    try {
      const path = at.dir.at(at.name);
      if (this.owners) fs.lchownSync(path, e.uid, e.gid);
      setTimesNs(path, e.atime ?? e.mtime, e.mtime, { followSymlinks: false });
    } catch (err) {
      this.hooks.warn(`${escapeName(e.path)}: attributes not all restored (${errorText(err)})`);
    }
  }

  /**
   * A fifo's or device node's attributes, through an O_PATH descriptor of it
   * (chmod has no form that leaves a symbolic link alone, and opening the node
   * itself would call its driver or wait on the fifo). What is there must be
   * what was made: a link swapped in gets nothing.
   */
  private nodeAttributes(at: Place, e: ParsedEntry): void {
    let node: { fd: number; stat: fs.BigIntStats };
    try {
      node = at.dir.openPath(at.name);
    } catch (err) {
      this.hooks.warn(`${escapeName(e.path)}: attributes not all restored (${errorText(err)})`);
      return;
    }
    try {
      const st = node.stat;
      const same =
        e.type === 'fifo' ? st.isFIFO() : e.type === 'chardev' ? st.isCharacterDevice() : st.isBlockDevice();
      if (!same) {
        this.hooks.warn(`${escapeName(e.path)}: replaced while being restored; its attributes are not set`);
        return;
      }
      this.attributesOf(node.fd, e, { pathOnly: true });
    } finally {
      fs.closeSync(node.fd);
    }
  }

  /** The mode to give a restored entry: as stored, less setuid/setgid unless `special`. */
  private modeOf(e: ParsedEntry): number {
    const mode = e.mode & 0o7777;
    if (this.special || (mode & SET_ID_BITS) === 0) return mode;
    this.hooks.warn(
      `${escapeName(e.path)}: restored without its setuid/setgid bits (mode ${(mode & ~SET_ID_BITS).toString(8)}, stored ${mode.toString(8)}); set RESTORE_SPECIAL=y to keep them`,
    );
    return mode & ~SET_ID_BITS;
  }

  /** A special entry not created: reported (a warning naming it), and remembered for hard links to it. */
  private withhold(path: string, rel: string, what: string): void {
    this.withheldTargets.add(rel);
    this.report(path, 'withheld', `${what}: not restored; set RESTORE_SPECIAL=y to restore it`);
  }

  private report(path: string, status: RestoreStatus, why?: string): void {
    this.counts[status]++;
    if (status !== 'restored') this.hooks.warn(`${escapeName(path)}: ${status}${why ? `: ${why}` : ''}`);
    this.hooks.entry?.(path, status, why);
  }

  /**
   * An incremental archive's directory (its GNU.dumpdir lists every name it
   * had at the backup): what the destination directory holds beyond that was
   * deleted or renamed since the earlier backups, and goes. Names listed N
   * (unchanged, not in this archive) stay as they are; a directory where this
   * archive has a non-directory (Y) goes too, to make way. Never with
   * overwrite=never; with `select`, only names this restore would put at
   * exactly that place; nothing is followed through a symbolic link.
   */
  private purge(dir: ConfinedDir, destRel: string, e: ParsedEntry): void {
    if (this.opts.overwrite === 'never') return;
    const archRel = this.checkedName(e.path);
    if (archRel === null) return;
    const listed = new Map(e.dumpdir!.map((d) => [d.name, d.flag]));
    let names: string[];
    try {
      names = dir.list();
    } catch (err) {
      this.hooks.warn(
        `${escapeName(e.path)}: cannot list the directory to remove what was deleted (${errorText(err)})`,
      );
      return;
    }
    for (const name of names) {
      const flag = listed.get(name);
      if (flag === 'N' || flag === 'D') continue;
      if (flag === 'Y') {
        let st: fs.BigIntStats;
        try {
          st = dir.lstat(name);
        } catch {
          continue;
        }
        if (!st.isDirectory()) continue; // replaced by the entry itself (mayReplace)
      }
      const archPath = archRel === '' ? name : `${archRel}/${name}`;
      const destPath = destRel === '' ? name : `${destRel}/${name}`;
      if (this.opts.select) {
        const to = this.opts.select(archPath);
        if (to === null || this.checkedName(to) !== destPath) continue;
      }
      try {
        this.removeTree(dir, name);
      } catch (err) {
        this.hooks.warn(
          `${escapeName(archPath)}: deleted since the earlier backup, but not removed (${errorText(err)})`,
        );
        continue;
      } finally {
        // Whatever of it is gone is no longer a directory this restore checked.
        this.tree.forget(destPath);
      }
      this.counts.removed++;
      this.hooks.removed?.(archPath);
    }
  }

  /**
   * Removes `name` in `dir` and, for a directory, everything in it, each
   * level through its own descriptor; a symbolic link is removed, never
   * followed. The descriptors open are one per level of the tree removed.
   */
  private removeTree(dir: ConfinedDir, name: string): void {
    const st = dir.lstat(name);
    if (!st.isDirectory()) {
      fs.unlinkSync(dir.at(name));
      return;
    }
    // A directory restored read-only must open up to be emptied (as its owner
    // may); through an O_PATH descriptor, which needs no read permission.
    const mode = Number(st.mode);
    if ((mode & 0o700) !== 0o700 && Number(st.uid) === process.getuid?.()) {
      const p = dir.openPath(name);
      try {
        if (sameFile(p.stat, st)) fs.chmodSync(`/proc/self/fd/${p.fd}`, (mode & 0o7777) | 0o700);
      } finally {
        fs.closeSync(p.fd);
      }
    }
    const sub = dir.openDir(name, st);
    try {
      for (const n of sub.list()) this.removeTree(sub, n);
    } finally {
      sub.close();
    }
    fs.rmdirSync(dir.at(name));
  }
}

/** lstat of a name in its directory, or null when there is nothing there. */
function lstatOrNull(at: Place): fs.BigIntStats | null {
  try {
    return at.dir.lstat(at.name);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
}

/**
 * An archive path as restores compare them: '/'-separated, no leading '/' or
 * './', no empty or '.' parts ('' for the root itself); null if it has '..'.
 */
export function normalizeArchivePath(p: string): string | null {
  const parts: string[] = [];
  for (const part of p.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') return null;
    parts.push(part);
  }
  return parts.join('/');
}

/** An error for a restore report: its code and what the system said. */
function errorText(e: unknown): string {
  if (e instanceof ConfineError) return e.message;
  const err = e as NodeJS.ErrnoException;
  return err.code
    ? `${err.code}${err.message ? ` (${err.message.replace(/^[A-Z]+: /, '')})` : ''}`
    : err.message;
}
