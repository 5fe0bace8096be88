// The virtual tape library: a folder of tape images, drives, storage slots
// and a mail slot (docs/changer.md).
//
//   DIR/tapes/<BARCODE>        a tape's data file, with DIR/tapes/<BARCODE>.idx its index
//   DIR/drives/<drive>         a symlink to ../tapes/<BARCODE> while that tape is loaded
//   DIR/slots/<n>              a symlink to ../tapes/<BARCODE>: the tape sits in slot n (1-based)
//   DIR/mailslot/<n>           the same for the import/export element(s)
//   DIR/changer.json           the slot each tape in a drive or the mail slot last left
//   DIR/.lock                  flocked by the server that owns the moves (./library-lock.ts)
//
// The folder is the whole state: a tape is where its one symlink is, and a
// move is a rename of that symlink (atomic, and every link has the same
// ../tapes/ target wherever it sits), so the CLI (another process) and the
// server always agree on what is where, and an administrator can see it with
// `ls -l`. Drives, slots and mail slots are declared by configuration; one
// without a symlink is empty. A tape with no link anywhere is outside the
// changer: still a device of its own (tapes/BARCODE), and placed into a free
// slot at the next inventory.

import { createHash } from 'node:crypto';
import {
  accessSync,
  closeSync,
  existsSync,
  constants as fsConstants,
  fsyncSync,
  lstatSync,
  mkdirSync,
  openSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  realpathSync,
  renameSync,
  statSync,
  symlinkSync,
  unlinkSync,
  writeFileSync,
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
import { readWrittenLabel } from './tape-label.js';
import type { WrittenLabel } from './tape-label.js';
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
  /** Storage slots, slots/1..slots/N (default DEFAULT_SLOTS). */
  slots?: number;
  /** Import/export elements, mailslot/1..mailslot/K (default 1). */
  mailslots?: number;
}

/** Where a tape sits: a drive, a storage slot or a mail slot (numbers 1-based), as the folder says. */
export type Place =
  | { readonly kind: 'drive'; readonly name: string; readonly index: number }
  | { readonly kind: 'slot'; readonly number: number }
  | { readonly kind: 'mailslot'; readonly number: number };

/** One full place: the tape in it, and the slot it last left when it sits in a drive or the mail slot. */
export interface PlacedTape {
  readonly place: Place;
  readonly barcode: string;
  /** The storage slot (1-based) the tape last left; null when it is in a slot or came from the mail slot. */
  readonly sourceSlot: number | null;
}

export function placeName(p: Place): string {
  return p.kind === 'drive' ? p.name : p.kind === 'slot' ? `slot ${p.number}` : `mailslot ${p.number}`;
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
export const DEFAULT_SLOTS = 8;
const MAX_DRIVES = 64;
/** Keeps every element inside what ndmjob reads in one READ ELEMENT STATUS (80 elements, docs/changer.md §3). */
export const MAX_SLOTS = 1024;
const MAX_MAILSLOTS = 16;
const STATE_FILE = 'changer.json';
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
  private readonly slotsDir: string;
  private readonly mailslotsDir: string;
  private readonly driveList: readonly DriveInfo[];
  readonly slotCount: number;
  readonly mailslotCount: number;
  /** The seed of the serial numbers, for the changer's identity (./library-changer.ts). */
  readonly serialSeed: string;

  private constructor(dir: string, opts: LibraryOptions) {
    this.dir = dir;
    this.tapesDir = join(dir, 'tapes');
    this.drivesDir = join(dir, 'drives');
    this.slotsDir = join(dir, 'slots');
    this.mailslotsDir = join(dir, 'mailslot');
    this.slotCount = opts.slots ?? DEFAULT_SLOTS;
    this.mailslotCount = opts.mailslots ?? 1;
    this.capacity = opts.capacity ?? DEFAULT_CAPACITY;
    this.earlyWarning = opts.earlyWarning ?? defaultEarlyWarning(this.capacity);
    this.blankDefaults = Object.freeze({ capacity: this.capacity, earlyWarning: this.earlyWarning });
    const seed = opts.serialSeed ?? dir;
    this.serialSeed = seed;
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
    const slots = opts.slots ?? DEFAULT_SLOTS;
    if (!Number.isInteger(slots) || slots < 1 || slots > MAX_SLOTS) {
      throw new LibraryError(`a library has 1 to ${MAX_SLOTS} slots, not ${slots}`);
    }
    const mailslots = opts.mailslots ?? 1;
    if (!Number.isInteger(mailslots) || mailslots < 0 || mailslots > MAX_MAILSLOTS) {
      throw new LibraryError(`a library has 0 to ${MAX_MAILSLOTS} mail slots, not ${mailslots}`);
    }
    const abs = resolvePath(dir);
    // A library made before slots existed: its tapes get slots on this first open.
    const firstWithSlots = !existsSync(join(abs, 'slots'));
    for (const d of [
      abs,
      join(abs, 'tapes'),
      join(abs, 'drives'),
      join(abs, 'slots'),
      join(abs, 'mailslot'),
    ]) {
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
    const lib = new Library(realpathSync(abs), opts);
    if (firstWithSlots) lib.placeOutsiders();
    return lib;
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

  /** A tape session holds this drive open (TAPE_OPEN in this process): the changer must not empty or fill it. */
  driveInUse(name: string): boolean {
    return claims.has(`drive:${this.dir}${sep}${name}`);
  }

  /** A tape session has this tape open (by a drive or as tapes/BARCODE): the robot must not carry it off. */
  tapeInUse(barcode: string): boolean {
    return claims.has(`tape:${join(this.tapesDir, barcode)}`);
  }

  /**
   * Claims the changer of this library for one SCSI session (in this
   * process); null when another holds it. The release is idempotent.
   */
  claimChanger(): (() => void) | null {
    const key = `changer:${this.dir}`;
    if (claims.has(key)) return null;
    claims.add(key);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      claims.delete(key);
    };
  }

  // ---- places: drives, slots, mail slots -----------------------------------

  private linkOf(p: Place): string {
    if (p.kind === 'drive') return join(this.drivesDir, p.name);
    return join(p.kind === 'slot' ? this.slotsDir : this.mailslotsDir, String(p.number));
  }

  /** Every place in element order: drives, slots, mail slots. */
  places(): Place[] {
    const out: Place[] = this.driveList.map((d, index) => ({ kind: 'drive', name: d.name, index }));
    for (let n = 1; n <= this.slotCount; n++) out.push({ kind: 'slot', number: n });
    for (let n = 1; n <= this.mailslotCount; n++) out.push({ kind: 'mailslot', number: n });
    return out;
  }

  /** The barcode of the tape at `p`, or null when it is empty (no link, or one that leads to no tape of ours). */
  at(p: Place): string | null {
    const link = this.linkOf(p);
    let target: string;
    try {
      target = readlinkSync(link);
    } catch {
      return null;
    }
    return this.realTape(link) ? basename(target) : null;
  }

  /**
   * What is where, read from the folder: each full place once, in element
   * order. A tape linked from two places (made by hand) counts at the first.
   */
  contents(): PlacedTape[] {
    const sources = this.readSources();
    const seen = new Set<string>();
    const out: PlacedTape[] = [];
    for (const place of this.places()) {
      const barcode = this.at(place);
      if (barcode === null || seen.has(barcode)) continue;
      seen.add(barcode);
      const src = place.kind === 'slot' ? null : (sources[barcode] ?? null);
      out.push({
        place,
        barcode,
        sourceSlot: src !== null && src >= 1 && src <= this.slotCount ? src : null,
      });
    }
    return out;
  }

  /** Where a tape is, or null when it is outside the changer. */
  whereIs(barcode: string): PlacedTape | null {
    return this.contents().find((c) => c.barcode === barcode) ?? null;
  }

  private readSources(): Record<string, number> {
    try {
      const j = JSON.parse(readFileSync(join(this.dir, STATE_FILE), 'utf8')) as { sources?: unknown };
      const out: Record<string, number> = {};
      if (j.sources && typeof j.sources === 'object') {
        for (const [k, v] of Object.entries(j.sources as Record<string, unknown>)) {
          if (typeof v === 'number' && Number.isInteger(v)) out[k] = v;
        }
      }
      return out;
    } catch {
      return {};
    }
  }

  /** Replaces changer.json whole (temporary file, fsync, rename, fsync of the folder). */
  private writeSources(sources: Record<string, number>): void {
    const tmp = join(this.dir, `.${STATE_FILE}.tmp`);
    writeFileSync(tmp, `${JSON.stringify({ version: 1, sources }, null, 2)}\n`);
    fsyncPath(tmp);
    renameSync(tmp, join(this.dir, STATE_FILE));
    fsyncPath(this.dir);
  }

  /**
   * Moves the tape at `from` to the empty place `to`: one rename of its
   * symlink, made durable (both folders fsynced) before it returns. The
   * slot it left is recorded first when it leaves a slot, and forgotten
   * after it lands in one, so a crash between the two steps leaves at worst
   * a stale record that no reader uses (docs/changer.md §1.2).
   * The caller owns the moves (the server's changer, or the CLI under the
   * library lock) and has checked that the drive involved is not open.
   */
  move(from: Place, to: Place): string {
    const barcode = this.at(from);
    if (barcode === null) throw new LibraryError(`${placeName(from)} is empty`);
    if (this.at(to) !== null) throw new LibraryError(`${placeName(to)} already holds ${this.at(to)}`);
    const sources = this.readSources();
    const before = sources[barcode] ?? null;
    if (to.kind !== 'slot') {
      // Provenance (docs/smc.md §4.5): kept through drive and mail-slot moves, cleared by the mail slot.
      const src = from.kind === 'slot' ? from.number : from.kind === 'mailslot' ? null : before;
      if (src === null) delete sources[barcode];
      else sources[barcode] = src;
      if (src !== before) this.writeSources(sources);
    }
    try {
      renameSync(this.linkOf(from), this.linkOf(to));
      fsyncPath(dirnameOf(this.linkOf(from)));
      if (dirnameOf(this.linkOf(to)) !== dirnameOf(this.linkOf(from))) fsyncPath(dirnameOf(this.linkOf(to)));
    } catch (e) {
      throw new LibraryError(
        `cannot move ${barcode} from ${placeName(from)} to ${placeName(to)}: ${(e as Error).message}`,
      );
    }
    if (to.kind === 'slot' && barcode in sources) {
      delete sources[barcode];
      this.writeSources(sources);
    }
    return barcode;
  }

  /** The first empty slot, or null when every slot is full. */
  private emptySlot(): number | null {
    for (let n = 1; n <= this.slotCount; n++) if (this.at({ kind: 'slot', number: n }) === null) return n;
    return null;
  }

  /**
   * Inventory: every tape in tapes/ that is in no place goes into the first
   * empty slot, in barcode order, while slots are free (a library made
   * before slots, tapes created while a server ran). Never moves a tape that
   * has a place. Returns the tapes placed.
   */
  placeOutsiders(): string[] {
    const placed = new Set(this.contents().map((c) => c.barcode));
    const made: string[] = [];
    for (const barcode of this.barcodes()) {
      if (placed.has(barcode)) continue;
      const n = this.emptySlot();
      if (n === null) break;
      this.linkInto({ kind: 'slot', number: n }, barcode);
      made.push(barcode);
    }
    if (made.length > 0) fsyncPath(this.slotsDir);
    return made;
  }

  private linkInto(p: Place, barcode: string): void {
    const link = this.linkOf(p);
    // A dangling link (its tape deleted) is an empty place: it gives way.
    try {
      if (lstatSync(link).isSymbolicLink()) unlinkSync(link);
    } catch {
      /* no link */
    }
    // Relative, so the library folder can be moved or mounted elsewhere.
    symlinkSync(join('..', 'tapes', barcode), link);
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

  /**
   * Makes blank tapes; each goes into the first empty slot unless `outside`
   * (a server owns the moves: it places them at its next inventory).
   */
  createTapes(opts: {
    count: number;
    prefix?: string;
    capacity?: bigint;
    label?: string;
    outside?: boolean;
  }): string[] {
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
    if (!opts.outside) this.placeOutsiders();
    return made;
  }

  /**
   * Every tape with its image's figures, where it is, and its label: the
   * header's (`ndmpd tape create/label`), else the one a DMA wrote as the
   * tape's first record (`writtenLabel`, ./tape-label.ts).
   */
  listTapes(): (TapeImageInfo & {
    barcode: string;
    loadedIn: string | null;
    place: PlacedTape | null;
    writtenLabel: WrittenLabel | null;
  })[] {
    const where = new Map<string, string>();
    for (const d of this.driveList) {
      const b = this.loaded(d.name);
      if (b !== null) where.set(b, d.name);
    }
    const places = new Map(this.contents().map((c) => [c.barcode, c]));
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
      let writtenLabel: WrittenLabel | null = null;
      try {
        writtenLabel = info.blank ? null : readWrittenLabel(p);
      } catch {
        // A first record that cannot be read has no label to show; the listing goes on.
      }
      return {
        ...info,
        label: info.label || (writtenLabel?.text ?? ''),
        barcode,
        loadedIn: where.get(barcode) ?? null,
        place: places.get(barcode) ?? null,
        writtenLabel,
      };
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

  /** Puts a tape into an empty drive: from its slot or mail slot (a move), or, outside the changer, a new link. */
  load(barcode: string, drive: string): void {
    const d = this.requireDrive(drive);
    this.existingTape(barcode);
    const inDrive = this.loaded(drive);
    if (inDrive !== null) throw new LibraryError(`${drive} already holds ${inDrive}; unload it first`);
    const here = this.whereIs(barcode);
    if (here?.place.kind === 'drive')
      throw new LibraryError(`${barcode} is already loaded in ${here.place.name}`);
    const to: Place = { kind: 'drive', name: d.name, index: this.driveList.indexOf(d) };
    if (here) {
      this.move(here.place, to);
      return;
    }
    try {
      symlinkSync(join('..', 'tapes', barcode), join(this.drivesDir, drive));
      fsyncPath(this.drivesDir);
    } catch (e) {
      if (errnoCode(e) === 'EEXIST') throw new LibraryError(`${drive} was loaded by someone else meanwhile`);
      throw new LibraryError(`cannot load ${barcode} into ${drive}: ${(e as Error).message}`);
    }
  }

  /**
   * Takes the tape out of a drive, back to the slot it came from if that is
   * empty, else to the first empty slot. With every slot full it leaves the
   * changer (the link goes; the tape stays in tapes/).
   */
  unload(drive: string): string | null {
    const d = this.requireDrive(drive);
    const link = join(this.drivesDir, drive);
    try {
      if (!lstatSync(link).isSymbolicLink()) {
        throw new LibraryError(`${link} is not a symlink; remove it by hand`);
      }
    } catch (e) {
      if (errnoCode(e) === 'ENOENT') return null;
      throw e;
    }
    const barcode = this.loaded(drive);
    const from: Place = { kind: 'drive', name: d.name, index: this.driveList.indexOf(d) };
    const here = this.contents().find((c) => c.place.kind === 'drive' && c.place.name === drive);
    const back = here?.sourceSlot ?? null;
    const slot = back !== null && this.at({ kind: 'slot', number: back }) === null ? back : this.emptySlot();
    if (here && slot !== null) {
      this.move(from, { kind: 'slot', number: slot });
      return barcode;
    }
    unlinkSync(link);
    fsyncPath(this.drivesDir);
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

/** fsync of a file or folder: a rename or a new link is durable once its folder is synced. */
function fsyncPath(p: string): void {
  const fd = openSync(p, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

function dirnameOf(p: string): string {
  return p.slice(0, p.lastIndexOf(sep));
}
