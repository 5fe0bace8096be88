// The restore engine: a pax stream in, files out under one destination
// directory. It is the file-system half of DATA_START_RECOVER (PROTOCOL.md
// §9.2); the protocol half comes with the restore work.
//
// Nothing is ever written outside the destination (issue 5, "Safety"):
// - a name that is absolute, empty, or has a `..` component is refused;
// - no entry is created through a symbolic link: every directory between the
//   destination and the entry is checked with lstat (and remembered once
//   checked), so the classic trick of an archive symlink `d -> /etc` followed
//   by an entry `d/passwd` fails, as does a symlink planted in the
//   destination beforehand; files are opened with O_NOFOLLOW;
// - a hard link must name an earlier path of the same archive, by the same rules.
// A refused or failed entry is reported and skipped; the rest is restored. A
// stream that is not a valid archive stops the restore with a clear error
// (PaxFormatError), never a crash.

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { dirname, join, sep } from 'node:path';
import { PaxParser } from './pax.js';
import type { ParsedEntry, PaxTime } from './pax.js';

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
}

export type RestoreStatus = 'restored' | 'skipped' | 'refused' | 'failed';

export interface RestoreHooks {
  /** Each entry's outcome; `why` for anything but 'restored'. */
  entry?(path: string, status: RestoreStatus, why?: string): void;
  warn(text: string): void;
}

export interface RestoreResult {
  readonly restored: number;
  readonly refused: number;
  readonly failed: number;
  readonly skipped: number;
}

interface OpenFile {
  readonly entry: ParsedEntry;
  readonly target: string;
  fd: number;
  failed: boolean;
}

const O_WRITE = fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_TRUNC | fs.constants.O_NOFOLLOW;

export class RestoreEngine {
  private readonly parser = new PaxParser();
  private open: OpenFile | null = null;
  /** Directories below dest known to be real directories (not links), relative. */
  private readonly safeDirs = new Set<string>(['']);
  /** Directories restored, to get their times and modes once everything inside them is written. */
  private readonly dirs: { target: string; entry: ParsedEntry }[] = [];
  private readonly owners: boolean;
  private counts = { restored: 0, refused: 0, failed: 0, skipped: 0 };

  constructor(
    private readonly opts: RestoreOptions,
    private readonly hooks: RestoreHooks,
  ) {
    this.owners = opts.owners ?? process.getuid?.() === 0;
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
    // Deepest first, so setting a directory's times is not undone by its children.
    for (const d of this.dirs.reverse()) this.attributes(d.target, d.entry);
    return { ...this.counts };
  }

  /** Stops early (an abort): closes what is open. */
  abandon(): void {
    this.closeFile();
  }

  private onEntry(e: ParsedEntry): void {
    this.closeFile();
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
          this.open = { entry: e, target, fd: fs.openSync(target, O_WRITE, 0o600), failed: false };
          return; // restored once its data is in (closeFile)
        case 'symlink':
          if (!this.mayReplace(target, e)) return;
          fs.symlinkSync(e.linkTarget ?? '', target);
          this.attributes(target, e);
          break;
        case 'hardlink': {
          const from = this.checkedName(e.linkTarget ?? '');
          const fromRel = from === null ? null : (this.opts.select?.(from) ?? from);
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
          if (!this.mayReplace(target, e)) return;
          // Node has no mkfifo(); the coreutils one does exactly that.
          execFileSync('mkfifo', ['-m', (e.mode & 0o7777).toString(8), '--', target]);
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
    if (!f || f.failed) return;
    try {
      for (let off = 0; off < data.length;) off += fs.writeSync(f.fd, data, off, data.length - off);
    } catch (err) {
      f.failed = true;
      this.report(f.entry.path, 'failed', errorText(err));
    }
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
    const parts: string[] = [];
    for (const part of p.split('/')) {
      if (part === '' || part === '.') continue;
      if (part === '..') return null;
      parts.push(part);
    }
    return parts.join('/');
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
        fs.mkdirSync(abs, { mode: 0o700 });
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
      if (e.type === 'symlink') {
        fs.lutimesSync(target, seconds(e.atime ?? e.mtime), seconds(e.mtime));
        return;
      }
      // chmod after chown: chown clears setuid/setgid.
      fs.chmodSync(target, e.mode & 0o7777);
      fs.utimesSync(target, seconds(e.atime ?? e.mtime), seconds(e.mtime));
    } catch (err) {
      this.hooks.warn(`${e.path}: attributes not all restored (${errorText(err)})`);
    }
  }

  private report(path: string, status: RestoreStatus, why?: string): void {
    this.counts[status]++;
    if (status !== 'restored') this.hooks.warn(`${path}: ${status}${why ? `: ${why}` : ''}`);
    this.hooks.entry?.(path, status, why);
  }
}

/**
 * Seconds as Node's utimes takes them: a double, so nanoseconds survive only
 * to about a quarter of a microsecond at today's dates (Node has no
 * utimensat with integer nanoseconds).
 */
function seconds(t: PaxTime): number {
  return Number(t.sec) + t.nsec / 1e9;
}

/** An error for a restore report: its code and what the system said. */
function errorText(e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  return err.code
    ? `${err.code}${err.message ? ` (${err.message.replace(/^[A-Z]+: /, '')})` : ''}`
    : err.message;
}
