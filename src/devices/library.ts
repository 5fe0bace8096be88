// The virtual tape library: a folder of tape images and a set of drives.
//
//   DIR/tapes/<BARCODE>        a tape's data file, with DIR/tapes/<BARCODE>.idx its index
//   DIR/drives/<drive>         a symlink to ../tapes/<BARCODE> while that tape is loaded
//
// The folder is the whole state: loading a tape is making a symlink, so the
// CLI (another process) and the server always agree on what is where, and an
// administrator can see it with `ls -l`. Drives are declared by configuration
// (drive0..drive(N-1)); a drive without a symlink is empty.

import { createHash } from 'node:crypto';
import {
  accessSync,
  constants as fsConstants,
  lstatSync,
  mkdirSync,
  readdirSync,
  readlinkSync,
  realpathSync,
  statSync,
  symlinkSync,
  unlinkSync,
} from 'node:fs';
import { basename, isAbsolute, join, resolve as resolvePath, sep } from 'node:path';
import {
  DEFAULT_CAPACITY,
  createTapeImage,
  defaultEarlyWarning,
  indexPathOf,
  readTapeImageInfo,
  updateTapeImage,
} from './tape-image.js';
import { isInside } from '../util/confine.js';
import type { TapeImageInfo, TapeImageOptions } from './tape-image.js';
import { CodedError } from '../util/coded-error.js';

export interface DriveInfo {
  readonly name: string;
  readonly model: string;
  readonly serial: string;
}

export interface LibraryOptions {
  /** Number of drives, named drive0..drive(N-1) (default 2). */
  drives?: number;
  /** Capacity of new tapes and of blank tapes without an index (default DEFAULT_CAPACITY). */
  capacity?: bigint;
  /** Early-warning point of such tapes (default: defaultEarlyWarning(capacity)). */
  earlyWarning?: bigint;
  /** Makes drive serial numbers stable across restarts (e.g. the host id). */
  serialSeed?: string;
}

export type ResolvedDevice =
  | { readonly kind: 'drive'; readonly drive: DriveInfo; readonly tapePath: string | null }
  | { readonly kind: 'image'; readonly tapePath: string };

export class LibraryError extends CodedError {
  readonly code = 'NDMPD_LIBRARY';
  constructor(message: string) {
    super(message);
    this.name = 'LibraryError';
  }
}

export const DRIVE_MODEL = 'NDMPD-VTL';
/**
 * CONFIG_GET_TAPE_INFO's model for the library's tape images, each a device
 * of its own (`tapes/BARCODE`): how a DMA sees the library before SCSI.
 */
export const TAPE_IMAGE_MODEL = 'NDMPD-VTL-TAPE';
export const DEFAULT_DRIVES = 2;
const MAX_DRIVES = 64;
const BARCODE_RE = /^[A-Za-z0-9_.-]{1,32}$/;
const PREFIX_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,23}$/;
const INDEX_SUFFIX = '.idx';

/**
 * Drives and tapes held open, across every Library instance and session of
 * the process: two openers of one tape would interleave writes and corrupt it.
 */
const claims = new Set<string>();

function isIndexName(name: string): boolean {
  return name.endsWith(INDEX_SUFFIX);
}

function errnoCode(e: unknown): string | undefined {
  return (e as NodeJS.ErrnoException).code;
}

export class Library {
  readonly dir: string;
  readonly blankDefaults: TapeImageOptions;
  private readonly capacity: bigint;
  private readonly earlyWarning: bigint;
  private readonly tapesDir: string;
  private readonly drivesDir: string;
  private readonly driveList: readonly DriveInfo[];

  private constructor(dir: string, opts: LibraryOptions) {
    this.dir = dir;
    this.tapesDir = join(dir, 'tapes');
    this.drivesDir = join(dir, 'drives');
    this.capacity = opts.capacity ?? DEFAULT_CAPACITY;
    this.earlyWarning = opts.earlyWarning ?? defaultEarlyWarning(this.capacity);
    this.blankDefaults = Object.freeze({ capacity: this.capacity, earlyWarning: this.earlyWarning });
    const seed = opts.serialSeed ?? dir;
    const count = opts.drives ?? DEFAULT_DRIVES;
    this.driveList = Array.from({ length: count }, (_, i) => {
      const name = `drive${i}`;
      // A hash rather than a counter: two hosts (or two libraries on one
      // host) must not present drives with the same serial to one DMA.
      const hash = createHash('sha256').update(`${seed}\0${name}`).digest('hex');
      return Object.freeze({ name, model: DRIVE_MODEL, serial: `VTL${hash.slice(0, 9).toUpperCase()}` });
    });
  }

  /** Opens (creating if needed) the library folder. */
  static open(dir: string, opts: LibraryOptions = {}): Library {
    const drives = opts.drives ?? DEFAULT_DRIVES;
    if (!Number.isInteger(drives) || drives < 1 || drives > MAX_DRIVES) {
      throw new LibraryError(`a library has 1 to ${MAX_DRIVES} drives, not ${drives}`);
    }
    const abs = resolvePath(dir);
    for (const d of [abs, join(abs, 'tapes'), join(abs, 'drives')]) {
      try {
        mkdirSync(d, { recursive: true, mode: 0o750 });
      } catch (e) {
        if (errnoCode(e) === 'EEXIST') throw new LibraryError(`library: ${d} is not a directory`);
        if (errnoCode(e) === 'ENOTDIR') {
          throw new LibraryError(`cannot create library folder ${d}: a part of that path is a file`);
        }
        throw new LibraryError(`cannot create library folder ${d}: ${(e as Error).message}`);
      }
      if (!statSync(d).isDirectory()) throw new LibraryError(`library: ${d} is not a directory`);
      try {
        accessSync(d, fsConstants.W_OK | fsConstants.X_OK);
      } catch {
        throw new LibraryError(`library folder ${d} is not writable by this user`);
      }
    }
    // The real path, so that containment checks compare like with like.
    return new Library(realpathSync(abs), opts);
  }

  drives(): readonly DriveInfo[] {
    return this.driveList;
  }

  private drive(name: string): DriveInfo | undefined {
    return this.driveList.find((d) => d.name === name);
  }

  private requireDrive(name: string): DriveInfo {
    const d = this.drive(name);
    if (!d) {
      const names = this.driveList.map((x) => x.name).join(', ');
      throw new LibraryError(`there is no drive '${name}' (drives: ${names})`);
    }
    return d;
  }

  /**
   * `p` lies strictly inside the library folder (both already real paths, so
   * the lexical check is the whole check: a device name, a drive's link or a
   * link in tapes/ that leads out of the folder resolves outside it).
   */
  private inside(p: string): boolean {
    return isInside(this.dir, p, { strict: true });
  }

  /** The real path of a usable tape data file, or null. */
  private realTape(p: string): string | null {
    let real: string;
    try {
      real = realpathSync(p);
      if (!statSync(real).isFile()) return null;
    } catch {
      return null;
    }
    // Index files and dot-names (temporary files) are never tapes.
    if (!this.inside(real) || isIndexName(basename(real)) || basename(real).startsWith('.')) return null;
    return real;
  }

  resolve(device: string): ResolvedDevice | null {
    if (typeof device !== 'string' || device === '' || device.includes('\0')) return null;
    const drive = this.drive(device);
    if (drive) {
      // A link to something that is not a tape of ours (deleted, or made by
      // hand to point elsewhere) leaves the drive empty rather than unsafe.
      const link = join(this.drivesDir, drive.name);
      let tapePath: string | null = null;
      try {
        lstatSync(link);
        tapePath = this.realTape(link);
      } catch {
        /* no link: empty drive */
      }
      return { kind: 'drive', drive, tapePath };
    }
    if (isIndexName(device)) return null;
    const given = isAbsolute(device) ? device : resolvePath(this.dir, device);
    const tapePath = this.realTape(given);
    return tapePath ? { kind: 'image', tapePath } : null;
  }

  claim(device: ResolvedDevice): (() => void) | null {
    const keys: string[] = [];
    if (device.kind === 'drive') keys.push(`drive:${this.dir}${sep}${device.drive.name}`);
    if (device.tapePath !== null) keys.push(`tape:${device.tapePath}`);
    if (keys.some((k) => claims.has(k))) return null;
    for (const k of keys) claims.add(k);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      for (const k of keys) claims.delete(k);
    };
  }

  tapePath(barcode: string): string {
    if (!BARCODE_RE.test(barcode) || barcode.startsWith('.') || isIndexName(barcode)) {
      throw new LibraryError(
        `'${barcode}' is not a barcode (1 to 32 of A-Z a-z 0-9 _ . -, not starting with '.' nor ending in .idx)`,
      );
    }
    return join(this.tapesDir, barcode);
  }

  /** The data file of an existing tape. */
  private existingTape(barcode: string): string {
    const p = this.tapePath(barcode);
    let isFile = false;
    try {
      isFile = lstatSync(p).isFile();
    } catch {
      /* missing */
    }
    if (!isFile) throw new LibraryError(`there is no tape ${barcode} in ${this.tapesDir}`);
    return p;
  }

  private barcodes(): string[] {
    return readdirSync(this.tapesDir, { withFileTypes: true })
      .filter((e) => e.isFile() && !e.name.startsWith('.') && !isIndexName(e.name))
      .map((e) => e.name)
      .sort();
  }

  createTapes(opts: { count: number; prefix?: string; capacity?: bigint; label?: string }): string[] {
    const prefix = opts.prefix ?? 'NDM';
    if (!PREFIX_RE.test(prefix)) {
      throw new LibraryError(
        `barcode prefix '${prefix}' must be 1 to 24 of A-Z a-z 0-9 _ . - (letter or digit first)`,
      );
    }
    if (!Number.isInteger(opts.count) || opts.count < 1 || opts.count > 10_000) {
      throw new LibraryError(`the number of tapes to create must be from 1 to 10000, not ${opts.count}`);
    }
    // Continue after the highest number in use with this prefix, so barcodes are never reused.
    const seqRe = new RegExp(`^${prefix.replace(/[.-]/g, '\\$&')}(\\d+)$`);
    let next = 1;
    for (const b of this.barcodes()) {
      const m = seqRe.exec(b);
      if (m) next = Math.max(next, Number(m[1]) + 1);
    }
    const tapeOpts: TapeImageOptions =
      opts.capacity !== undefined ? { capacity: opts.capacity } : { ...this.blankDefaults };
    if (opts.label !== undefined) tapeOpts.label = opts.label;
    const made: string[] = [];
    for (let i = 0; i < opts.count; i++, next++) {
      const barcode = `${prefix}${String(next).padStart(3, '0')}`;
      createTapeImage(this.tapePath(barcode), { ...tapeOpts, barcode });
      made.push(barcode);
    }
    return made;
  }

  listTapes(): (TapeImageInfo & { barcode: string; loadedIn: string | null })[] {
    const where = new Map<string, string>();
    for (const d of this.driveList) {
      const b = this.loaded(d.name);
      if (b !== null) where.set(b, d.name);
    }
    return this.barcodes().map((barcode) => {
      const p = join(this.tapesDir, barcode);
      let info: TapeImageInfo;
      try {
        info = readTapeImageInfo(p);
      } catch (e) {
        throw new LibraryError(`tape ${barcode} cannot be read: ${(e as Error).message}`);
      }
      // A blank file without an index is a blank tape of this library's default size.
      if (!this.hasIndex(p)) info = { ...info, capacity: this.capacity, earlyWarning: this.earlyWarning };
      return { ...info, barcode, loadedIn: where.get(barcode) ?? null };
    });
  }

  private hasIndex(p: string): boolean {
    try {
      lstatSync(indexPathOf(p));
      return true;
    } catch {
      return false;
    }
  }

  label(barcode: string, label: string): void {
    updateTapeImage(this.existingTape(barcode), { label }, this.blankDefaults);
  }

  protect(barcode: string, on: boolean): void {
    updateTapeImage(this.existingTape(barcode), { writeProtected: on }, this.blankDefaults);
  }

  load(barcode: string, drive: string): void {
    this.requireDrive(drive);
    this.existingTape(barcode);
    const inDrive = this.loaded(drive);
    if (inDrive !== null) throw new LibraryError(`${drive} already holds ${inDrive}; unload it first`);
    for (const d of this.driveList) {
      if (this.loaded(d.name) === barcode)
        throw new LibraryError(`${barcode} is already loaded in ${d.name}`);
    }
    try {
      // Relative, so the library folder can be moved or mounted elsewhere.
      symlinkSync(join('..', 'tapes', barcode), join(this.drivesDir, drive));
    } catch (e) {
      if (errnoCode(e) === 'EEXIST') throw new LibraryError(`${drive} was loaded by someone else meanwhile`);
      throw new LibraryError(`cannot load ${barcode} into ${drive}: ${(e as Error).message}`);
    }
  }

  unload(drive: string): string | null {
    const barcode = this.loaded(drive);
    const link = join(this.drivesDir, drive);
    try {
      if (!lstatSync(link).isSymbolicLink()) {
        throw new LibraryError(`${link} is not a symlink; remove it by hand`);
      }
      unlinkSync(link);
    } catch (e) {
      if (errnoCode(e) === 'ENOENT') return null;
      throw e;
    }
    return barcode;
  }

  loaded(drive: string): string | null {
    this.requireDrive(drive);
    let target: string;
    try {
      target = readlinkSync(join(this.drivesDir, drive));
    } catch {
      return null;
    }
    return basename(target);
  }
}
