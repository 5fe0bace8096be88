// The restore engine: a pax stream in, files out under one destination
// directory. It is the file-system half of DATA_START_RECOVER (docs/protocol.md
// §9.2); the protocol half comes with the restore work.
//
// Nothing is ever written outside the destination (issue 5, "Safety"):
// - a name that is absolute, empty, or has a `..` component is refused;
// - no entry is created through a symbolic link: every directory between the
//   destination and the entry is checked with lstat (and remembered once
//   checked), so the classic trick of an archive symlink `d -> /etc` followed
//   by an entry `d/passwd` fails, as does a symlink planted in the
//   destination beforehand; files are opened with O_NOFOLLOW;
// - a hard link must name an earlier path of the same archive, by the same rules;
// - unless asked (RestoreOptions.special, RESTORE_SPECIAL=y), no device node or
//   fifo is made and no mode keeps setuid/setgid: a tape of unknown origin
//   cannot plant a root-owned setuid program or a raw disk device.
// A refused or failed entry is reported and skipped; the rest is restored. A
// stream that is not a valid archive stops the restore with a clear error
// (PaxFormatError), never a crash.

import fs from 'node:fs';
import { dirname, join, sep } from 'node:path';
import { PaxParser } from './pax.js';
import type { ParsedEntry } from './pax.js';
import { mkfifo, mknod, setTimesNs } from '../util/native-fs.js';

/** What happens to a file that already exists at a restore's target. */
export type OverwritePolicy = 'always' | 'never' | 'older';

export interface RestoreOptions {
  /** Absolute path of the destination directory (created if missing). */
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
  readonly target: string;
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

const O_WRITE = fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_TRUNC | fs.constants.O_NOFOLLOW;

export class RestoreEngine {
  private parser = new PaxParser();
  private open: OpenFile | null = null;
  /** Directories below dest known to be real directories (not links), relative. */
  private readonly safeDirs = new Set<string>(['']);
  /** Directories restored, to get their times and modes once everything inside them is written. */
  private readonly dirs: { target: string; entry: ParsedEntry }[] = [];
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
    fs.mkdirSync(opts.dest, { recursive: true });
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
    this.closeFile();
    this.parser.end();
    return this.finish();
  }

  /**
   * Done without reading to the end of the archive (Direct Access Recovery
   * read only the parts it wanted): the directories get their attributes.
   */
  finish(): RestoreResult {
    this.closeFile();
    // Deepest first, so setting a directory's times is not undone by its children.
    for (const d of this.dirs.reverse()) this.attributes(d.target, d.entry);
    this.dirs.length = 0;
    return { ...this.counts };
  }

  /** Stops early (an abort): closes what is open. */
  abandon(): void {
    this.closeFile();
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
    this.opts.onHeader?.(e);
    const rel = this.targetOf(e);
    if (rel === null) return;
    const target = join(this.opts.dest, rel);
    try {
      this.makeParents(rel);
      switch (e.type) {
        case 'dir':
          this.restoreDir(target, e);
          break;
        case 'file':
          if (!this.mayReplace(target, e)) return;
          this.open = {
            entry: e,
            target,
            fd: fs.openSync(target, O_WRITE, 0o600),
            failed: false,
            left: e.size,
          };
          if (e.size === 0n) this.closeFile();
          return; // restored once its data is in (closeFile)
        case 'symlink':
          if (!this.mayReplace(target, e)) return;
          fs.symlinkSync(e.linkTarget ?? '', target);
          this.attributes(target, e);
          break;
        case 'hardlink': {
          const from = this.checkedName(e.linkTarget ?? '');
          // Where this restore put the link's source: a source it did not select is not there.
          const fromRel = from === null ? null : this.opts.select ? this.opts.select(from) : from;
          if (fromRel !== null && this.withheldTargets.has(fromRel)) {
            this.withhold(e.path, rel, `a hard link to ${JSON.stringify(e.linkTarget)}, which was withheld`);
            return;
          }
          if (from === null || fromRel === null || !this.throughRealDirs(fromRel)) {
            this.report(
              e.path,
              'refused',
              `hard link to ${JSON.stringify(e.linkTarget)}: not a file restored from this archive`,
            );
            return;
          }
          if (!this.mayReplace(target, e)) return;
          fs.linkSync(join(this.opts.dest, fromRel), target);
          break;
        }
        case 'fifo':
          if (!this.special) {
            this.withhold(e.path, rel, SPECIAL_KIND[e.type]!);
            return;
          }
          if (!this.mayReplace(target, e)) return;
          mkfifo(target, e.mode & 0o7777);
          this.attributes(target, e);
          break;
        case 'chardev':
        case 'blockdev':
          if (!this.special) {
            this.withhold(e.path, rel, SPECIAL_KIND[e.type]!);
            return;
          }
          // Only root may make device nodes; others get the entry reported, not a crash.
          if (!this.mayReplace(target, e)) return;
          mknod(target, e.type, e.mode & 0o7777, e.devMajor ?? 0, e.devMinor ?? 0);
          this.attributes(target, e);
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
      fs.closeSync(f.fd);
      if (!f.failed) {
        this.attributes(f.target, f.entry);
        this.report(f.entry.path, 'restored');
      }
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
      this.report(e.path, 'refused', `target ${JSON.stringify(to)} is not a path inside the destination`);
      return null;
    }
    return checked;
  }

  /** A clean relative name ('' for the root itself), or null if it could leave the destination. */
  private checkedName(p: string): string | null {
    if (p.startsWith('/') || p.includes('\0')) return null;
    return normalizeArchivePath(p);
  }

  /** Whether every directory above `rel` is one this restore checked (so a link there cannot lead outside). */
  private throughRealDirs(rel: string): boolean {
    const parent = dirname(rel) === '.' ? '' : dirname(rel);
    return this.safeDirs.has(parent);
  }

  /** Creates the directories above `rel` as needed; refuses to go through anything but a real directory. */
  private makeParents(rel: string): void {
    const parent = dirname(rel) === '.' ? '' : dirname(rel);
    if (this.safeDirs.has(parent)) return;
    let sofar = '';
    for (const part of parent.split('/')) {
      sofar = sofar === '' ? part : `${sofar}/${part}`;
      if (this.safeDirs.has(sofar)) continue;
      const abs = join(this.opts.dest, sofar);
      let st: fs.Stats | undefined;
      try {
        st = fs.lstatSync(abs);
      } catch {
        fs.mkdirSync(abs, { mode: 0o755 });
        st = fs.lstatSync(abs);
      }
      if (!st.isDirectory()) {
        throw new Error(
          `${sofar} is ${st.isSymbolicLink() ? 'a symbolic link' : 'not a directory'}; nothing is restored through it`,
        );
      }
      this.safeDirs.add(sofar);
    }
  }

  private restoreDir(target: string, e: ParsedEntry): void {
    let st: fs.Stats | null = null;
    try {
      st = fs.lstatSync(target);
    } catch {
      /* absent: made below */
    }
    if (st && !st.isDirectory()) {
      if (this.opts.overwrite === 'never') throw new Error('exists and is not a directory (overwrite=never)');
      fs.rmSync(target, { force: true });
      st = null;
    }
    if (!st) fs.mkdirSync(target, { mode: 0o700 });
    const rel =
      target === this.opts.dest
        ? ''
        : target
            .slice(this.opts.dest.length + 1)
            .split(sep)
            .join('/');
    this.safeDirs.add(rel);
    this.dirs.push({ target, entry: e });
    if (e.dumpdir) this.purge(target, rel, e);
  }

  /** Whether the entry may be written where something may already be; clears the way if so. */
  private mayReplace(target: string, e: ParsedEntry): boolean {
    let st: fs.Stats;
    try {
      st = fs.lstatSync(target);
    } catch {
      return true;
    }
    const policy = this.opts.overwrite;
    const newer = st.mtimeMs >= Number(e.mtime.sec) * 1000 + e.mtime.nsec / 1e6;
    if (policy === 'never' || (policy === 'older' && newer)) {
      this.report(e.path, 'skipped', `exists (overwrite=${policy})`);
      return false;
    }
    if (st.isDirectory()) {
      this.report(e.path, 'failed', 'a directory is in the way');
      return false;
    }
    // Replaced, never written through: a symlink in the way is removed, not followed.
    fs.unlinkSync(target);
    return true;
  }

  private attributes(target: string, e: ParsedEntry): void {
    try {
      if (this.owners) fs.lchownSync(target, e.uid, e.gid);
      // Times to the nanosecond (Node's utimes keeps microseconds); a symlink's own, not its target's.
      if (e.type === 'symlink') {
        setTimesNs(target, e.atime ?? e.mtime, e.mtime, { followSymlinks: false });
        return;
      }
      // chmod after chown: chown clears setuid/setgid.
      fs.chmodSync(target, this.modeOf(e));
      setTimesNs(target, e.atime ?? e.mtime, e.mtime, { followSymlinks: false });
    } catch (err) {
      this.hooks.warn(`${e.path}: attributes not all restored (${errorText(err)})`);
    }
  }

  /** The mode to give a restored entry: as stored, less setuid/setgid unless `special`. */
  private modeOf(e: ParsedEntry): number {
    const mode = e.mode & 0o7777;
    if (this.special || (mode & SET_ID_BITS) === 0) return mode;
    this.hooks.warn(
      `${e.path}: restored without its setuid/setgid bits (mode ${(mode & ~SET_ID_BITS).toString(8)}, stored ${mode.toString(8)}); set RESTORE_SPECIAL=y to keep them`,
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
    if (status !== 'restored') this.hooks.warn(`${path}: ${status}${why ? `: ${why}` : ''}`);
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
  private purge(target: string, destRel: string, e: ParsedEntry): void {
    if (this.opts.overwrite === 'never') return;
    const archRel = this.checkedName(e.path);
    if (archRel === null) return;
    const listed = new Map(e.dumpdir!.map((d) => [d.name, d.flag]));
    let names: string[];
    try {
      names = fs.readdirSync(target);
    } catch (err) {
      this.hooks.warn(`${e.path}: cannot list the directory to remove what was deleted (${errorText(err)})`);
      return;
    }
    for (const name of names) {
      const flag = listed.get(name);
      if (flag === 'N' || flag === 'D') continue;
      const abs = join(target, name);
      if (flag === 'Y') {
        let st: fs.Stats;
        try {
          st = fs.lstatSync(abs);
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
        this.removeTree(abs);
      } catch (err) {
        this.hooks.warn(`${archPath}: deleted since the earlier backup, but not removed (${errorText(err)})`);
        continue;
      } finally {
        // Whatever of it is gone is no longer known to be a real directory.
        for (const d of this.safeDirs) {
          if (d === destPath || d.startsWith(`${destPath}/`)) this.safeDirs.delete(d);
        }
      }
      this.counts.removed++;
      this.hooks.removed?.(archPath);
    }
  }

  /** Removes `abs` and, for a directory, everything in it; a symbolic link is removed, never followed. */
  private removeTree(abs: string): void {
    const st = fs.lstatSync(abs);
    if (!st.isDirectory()) {
      fs.unlinkSync(abs);
      return;
    }
    // A directory restored read-only must open up to be emptied (as its owner may).
    if ((st.mode & 0o700) !== 0o700 && st.uid === process.getuid?.()) fs.chmodSync(abs, 0o700);
    for (const name of fs.readdirSync(abs)) this.removeTree(join(abs, name));
    fs.rmdirSync(abs);
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
  const err = e as NodeJS.ErrnoException;
  return err.code
    ? `${err.code}${err.message ? ` (${err.message.replace(/^[A-Z]+: /, '')})` : ''}`
    : err.message;
}
