// The virtual tape image: a TapeDevice kept in two files (docs/tape-image.md).
//
//   PATH      the data: the bytes of every record in tape order, nothing else,
//             so one tape file is one contiguous byte range (and can be exported
//             with dd). It may be sparse.
//   PATH.idx  a 4096-byte header, then one 32-byte entry per record or filemark
//             in tape order. Each entry carries its data offset and the position
//             (fileNum, blockNo) before it, so any positioning is a binary search
//             over entries: O(log n) small reads, never the record data and
//             never the whole index.
//
// Crash safety (a killed process, not a power cut): a record's data is written
// before its entry, each entry has a CRC, and opening drops trailing entries
// that are torn, damaged or point past the data. Whatever follows the last good
// entry is ignored, and cut off by the next write.

import fs from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { crc32 } from 'node:zlib';

import { MAX_RECORD_SIZE, TapeError } from './tape.js';
import { WriteBehind } from './tape-write-behind.js';
import type { TapeCachePolicy } from './tape-write-behind.js';
import type {
  BatchWriteResult,
  TapeDevice,
  TapePosition,
  TapeReadResult,
  TapeSpace,
  WriteResult,
} from './tape.js';

const GiB = 1024n ** 3n;
const MiB = 1024n ** 2n;

/** Capacity of a tape created without one: 64 GiB. */
export const DEFAULT_CAPACITY = 64n * GiB;

/** The early-warning zone of a tape created without one: 1/16 of the capacity, at most 256 MiB. */
export function defaultEarlyWarning(capacity: bigint): bigint {
  const sixteenth = capacity / 16n;
  return sixteenth < 256n * MiB ? sixteenth : 256n * MiB;
}

export interface TapeImageOptions {
  /** Bytes of record data the tape holds (default DEFAULT_CAPACITY). */
  capacity?: bigint;
  /** Size of the early-warning zone before the end (default defaultEarlyWarning(capacity)). */
  earlyWarning?: bigint;
  /** At most 64 bytes of UTF-8. */
  barcode?: string;
  /** At most 256 bytes of UTF-8. */
  label?: string;
  writeProtected?: boolean;
}

/** How a tape is opened (openTapeImage, `new VirtualTape`). */
export interface TapeOpenOptions {
  readOnly: boolean;
  /** For a blank tape without an index (an empty data file): the header it gets. */
  blankDefaults?: TapeImageOptions;
  /** What writes do with the page cache (default DEFAULT_CACHE_POLICY; docs/tape-image.md, "The write pattern"). */
  cache?: TapeCachePolicy;
}

export type { TapeCachePolicy } from './tape-write-behind.js';

/** The write pattern a tape opened without one gets (docs/tape-image.md, "The write pattern"). */
export const DEFAULT_CACHE_POLICY: TapeCachePolicy = 'preallocate';

export interface TapeImageInfo {
  path: string;
  barcode: string;
  label: string;
  capacity: bigint;
  earlyWarning: bigint;
  writeProtected: boolean;
  created: Date;
  /** Bytes of record data up to end of data. */
  usedBytes: bigint;
  records: number;
  filemarks: number;
  /** Nothing recorded. */
  blank: boolean;
  /** Made by a writer that stores each record's data CRC (docs/tape-image.md, "Data CRCs"). */
  dataCrcs: boolean;
}

// ---------------------------------------------------------------------------
// On-disk layout (docs/tape-image.md). All integers big-endian.

const MAGIC = Buffer.from('NDMPVTAP', 'latin1');
const FORMAT_VERSION = 1;
const HEADER_SIZE = 4096;
const ENTRY_SIZE = 32;
const MAX_BARCODE_BYTES = 64;
const MAX_LABEL_BYTES = 256;
const FLAG_WRITE_PROTECTED = 1;
/**
 * Header flag: the tape was made by a writer that stores a CRC-32 of each
 * record's data in its entry (docs/tape-image.md, "Data CRCs"). Informational:
 * what a read checks is the entry's own ENTRY_FLAG_DATA_CRC, so a tape that an
 * older writer appended to (no CRCs in its entries) reads without checks.
 */
const FLAG_DATA_CRCS = 2;
const U32_MAX = 0xffff_ffff;

/** Header field offsets; the CRC covers [0, HEADER_CRC). The rest of the 4096 bytes is reserved (zeros). */
const HEADER_VERSION = 8;
const HEADER_ENTRY_SIZE = 12;
const HEADER_CAPACITY = 16;
const HEADER_EARLY_WARNING = 24;
const HEADER_FLAGS = 32;
const HEADER_CREATED = 36;
const HEADER_BARCODE = 44; // u16 length + 64 bytes
const HEADER_LABEL = HEADER_BARCODE + 2 + MAX_BARCODE_BYTES; // 110: u16 length + 256 bytes
const HEADER_CRC = HEADER_LABEL + 2 + MAX_LABEL_BYTES; // 368

/** Entry field offsets; the CRC covers [0, ENTRY_CRC). */
const ENTRY_OFFSET = 0;
const ENTRY_LENGTH = 8;
const ENTRY_KIND = 12;
/** Entry flags (byte 13; bytes 14-15 stay zero). Bit 0: bytes 24-27 hold the record's data CRC. */
const ENTRY_FLAGS = 13;
const ENTRY_FLAG_DATA_CRC = 1;
const ENTRY_FILE_NUM = 16;
const ENTRY_BLOCK_NO = 20;
const ENTRY_DATA_CRC = 24;
const ENTRY_CRC = 28;

const RECORD = 0;
const FILEMARK = 1;

interface Header {
  capacity: bigint;
  earlyWarning: bigint;
  writeProtected: boolean;
  /** Made by a writer that stores data CRCs (FLAG_DATA_CRCS). */
  dataCrcs: boolean;
  created: Date;
  barcode: string;
  label: string;
}

/** One record or filemark. `fileNum`/`blockNo` are the position before it. */
interface Entry {
  /** Where its data starts in the data file (a filemark: where the next record would go). */
  offset: number;
  /** 0 for a filemark. */
  length: number;
  kind: typeof RECORD | typeof FILEMARK;
  fileNum: number;
  blockNo: number;
  /** CRC-32 of the record's data; null when the entry carries none (a filemark, an older writer's record). */
  dataCrc: number | null;
}

/** The data offset and tape position just past `e` (or at BOT when there is no entry). */
interface Place {
  offset: number;
  fileNum: number;
  blockNo: number;
}

function after(e: Entry | null): Place {
  if (e === null) return { offset: 0, fileNum: 0, blockNo: 0 };
  if (e.kind === FILEMARK) return { offset: e.offset, fileNum: e.fileNum + 1, blockNo: 0 };
  return { offset: e.offset + e.length, fileNum: e.fileNum, blockNo: e.blockNo + 1 };
}

export function indexPathOf(dataPath: string): string {
  return dataPath + '.idx';
}

const badImage = (message: string): TapeError => new TapeError('bad-image', message);
const hex = (n: number): string => n.toString(16).padStart(8, '0');

/** Where a record that failed its data CRC lies (for the log and the DMA's LOG_MESSAGE). */
export interface MediaErrorPlace {
  /** The barcode, or the image's path when it has none. */
  readonly tape: string;
  readonly fileNum: number;
  readonly blockNo: number;
  /** The record's first byte in the data file. */
  readonly dataOffset: number;
}

/** A record whose data does not match the CRC its entry holds: the image's medium error. */
export class TapeMediaError extends TapeError {
  constructor(
    message: string,
    readonly place: MediaErrorPlace,
  ) {
    super('media', message);
    this.name = 'TapeMediaError';
  }
}
const illegal = (message: string): TapeError => new TapeError('illegal-args', message);

function errnoOf(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | null)?.code;
}

/** Runs a file-system call, turning its failure into TapeError('io'). */
function io<T>(what: string, call: () => T): T {
  try {
    return call();
  } catch (err) {
    if (err instanceof TapeError) throw err;
    throw new TapeError('io', `${what}: ${(err as Error).message}`);
  }
}

function readFully(fd: number, target: Uint8Array, length: number, position: number): number {
  let done = 0;
  while (done < length) {
    const n = fs.readSync(fd, target, done, length - done, position + done);
    if (n === 0) break;
    done += n;
  }
  return done;
}

function writeFully(fd: number, data: Uint8Array, position: number): void {
  let done = 0;
  while (done < data.length) done += fs.writeSync(fd, data, done, data.length - done, position + done);
}

// ---------------------------------------------------------------------------
// Header

function headerFromOptions(opts: TapeImageOptions = {}): Header {
  const capacity = opts.capacity ?? DEFAULT_CAPACITY;
  // Data offsets are JavaScript numbers inside: exact up to 2^53.
  if (capacity <= 0n || capacity > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw illegal(`capacity ${capacity} is out of range (1 .. 2^53-1 bytes)`);
  }
  const earlyWarning = opts.earlyWarning ?? defaultEarlyWarning(capacity);
  if (earlyWarning < 0n || earlyWarning > capacity) {
    throw illegal(`early-warning zone ${earlyWarning} is out of range (0 .. capacity ${capacity})`);
  }
  const header = {
    capacity,
    earlyWarning,
    writeProtected: opts.writeProtected ?? false,
    dataCrcs: true,
    created: new Date(),
    barcode: opts.barcode ?? '',
    label: opts.label ?? '',
  };
  encodeHeader(header); // checks the barcode and label sizes before anything is created
  return header;
}

function putString(buf: Buffer, at: number, max: number, value: string, what: string): void {
  const bytes = Buffer.from(value, 'utf8');
  if (bytes.length > max) throw illegal(`${what} is ${bytes.length} bytes of UTF-8; at most ${max}`);
  buf.writeUInt16BE(bytes.length, at);
  bytes.copy(buf, at + 2);
}

function getString(buf: Buffer, at: number, max: number, what: string, path: string): string {
  const length = buf.readUInt16BE(at);
  if (length > max) throw badImage(`${path}: ${what} length ${length} is over ${max}`);
  return buf.toString('utf8', at + 2, at + 2 + length);
}

function encodeHeader(h: Header): Buffer {
  const buf = Buffer.alloc(HEADER_SIZE);
  MAGIC.copy(buf, 0);
  buf.writeUInt32BE(FORMAT_VERSION, HEADER_VERSION);
  buf.writeUInt32BE(ENTRY_SIZE, HEADER_ENTRY_SIZE);
  buf.writeBigUInt64BE(h.capacity, HEADER_CAPACITY);
  buf.writeBigUInt64BE(h.earlyWarning, HEADER_EARLY_WARNING);
  buf.writeUInt32BE(
    (h.writeProtected ? FLAG_WRITE_PROTECTED : 0) | (h.dataCrcs ? FLAG_DATA_CRCS : 0),
    HEADER_FLAGS,
  );
  buf.writeBigUInt64BE(BigInt(h.created.getTime()), HEADER_CREATED);
  putString(buf, HEADER_BARCODE, MAX_BARCODE_BYTES, h.barcode, 'barcode');
  putString(buf, HEADER_LABEL, MAX_LABEL_BYTES, h.label, 'label');
  buf.writeUInt32BE(crc32(buf.subarray(0, HEADER_CRC)), HEADER_CRC);
  return buf;
}

function decodeHeader(buf: Buffer, path: string): Header {
  if (!buf.subarray(0, MAGIC.length).equals(MAGIC)) throw badImage(`${path} is not a tape index (bad magic)`);
  if (buf.readUInt32BE(HEADER_CRC) !== crc32(buf.subarray(0, HEADER_CRC))) {
    throw badImage(`${path}: the header is damaged (CRC mismatch)`);
  }
  const version = buf.readUInt32BE(HEADER_VERSION);
  if (version !== FORMAT_VERSION) throw badImage(`${path}: format version ${version} is not supported`);
  const entrySize = buf.readUInt32BE(HEADER_ENTRY_SIZE);
  if (entrySize !== ENTRY_SIZE) throw badImage(`${path}: entry size ${entrySize} is not ${ENTRY_SIZE}`);
  const capacity = buf.readBigUInt64BE(HEADER_CAPACITY);
  const earlyWarning = buf.readBigUInt64BE(HEADER_EARLY_WARNING);
  if (capacity === 0n || capacity > BigInt(Number.MAX_SAFE_INTEGER) || earlyWarning > capacity) {
    throw badImage(`${path}: capacity ${capacity} / early warning ${earlyWarning} out of range`);
  }
  const flags = buf.readUInt32BE(HEADER_FLAGS);
  return {
    capacity,
    earlyWarning,
    writeProtected: (flags & FLAG_WRITE_PROTECTED) !== 0,
    dataCrcs: (flags & FLAG_DATA_CRCS) !== 0,
    created: new Date(Number(buf.readBigUInt64BE(HEADER_CREATED))),
    barcode: getString(buf, HEADER_BARCODE, MAX_BARCODE_BYTES, 'barcode', path),
    label: getString(buf, HEADER_LABEL, MAX_LABEL_BYTES, 'label', path),
  };
}

function readHeader(fd: number, indexPath: string): Header {
  const buf = Buffer.alloc(HEADER_SIZE);
  const got = io(`reading ${indexPath}`, () => readFully(fd, buf, HEADER_SIZE, 0));
  if (got < HEADER_SIZE) throw badImage(`${indexPath} is too short to be a tape index`);
  return decodeHeader(buf, indexPath);
}

/**
 * Writes a new index holding only `header`, atomically and exclusively: the
 * header goes to a temporary file that is then hard-linked to its name, so a
 * crash never leaves a half-written index and an existing one is never replaced.
 */
function writeNewIndex(indexPath: string, header: Header): void {
  // A dot-name, so a leftover from a crash is never taken for a tape.
  const temp = join(
    dirname(indexPath),
    `.${basename(indexPath)}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`,
  );
  io(`creating ${indexPath}`, () => fs.writeFileSync(temp, encodeHeader(header), { flag: 'wx' }));
  try {
    fs.linkSync(temp, indexPath);
  } catch (err) {
    if (errnoOf(err) === 'EEXIST') throw illegal(`${indexPath} already exists`);
    throw new TapeError('io', `creating ${indexPath}: ${(err as Error).message}`);
  } finally {
    fs.rmSync(temp, { force: true });
  }
}

// ---------------------------------------------------------------------------
// Entries

function encodeEntry(e: Entry, buf: Buffer, at: number): void {
  buf.fill(0, at, at + ENTRY_SIZE);
  buf.writeBigUInt64BE(BigInt(e.offset), at + ENTRY_OFFSET);
  buf.writeUInt32BE(e.length, at + ENTRY_LENGTH);
  buf.writeUInt8(e.kind, at + ENTRY_KIND);
  buf.writeUInt32BE(e.fileNum, at + ENTRY_FILE_NUM);
  buf.writeUInt32BE(e.blockNo, at + ENTRY_BLOCK_NO);
  if (e.dataCrc !== null) {
    buf.writeUInt8(ENTRY_FLAG_DATA_CRC, at + ENTRY_FLAGS);
    buf.writeUInt32BE(e.dataCrc, at + ENTRY_DATA_CRC);
  }
  buf.writeUInt32BE(crc32(buf.subarray(at, at + ENTRY_CRC)), at + ENTRY_CRC);
}

/** The entry in `buf`, or null when it is torn or damaged. */
function decodeEntry(buf: Buffer): Entry | null {
  if (buf.readUInt32BE(ENTRY_CRC) !== crc32(buf.subarray(0, ENTRY_CRC))) return null;
  const offset = buf.readBigUInt64BE(ENTRY_OFFSET);
  const length = buf.readUInt32BE(ENTRY_LENGTH);
  const kind = buf.readUInt8(ENTRY_KIND);
  if (offset > BigInt(Number.MAX_SAFE_INTEGER)) return null;
  const isRecord = kind === RECORD && length >= 1 && length <= MAX_RECORD_SIZE;
  const isFilemark = kind === FILEMARK && length === 0;
  if (!isRecord && !isFilemark) return null;
  // An older writer left byte 13 and bytes 24-27 zero: no data CRC, nothing to check.
  const hasCrc = isRecord && (buf.readUInt8(ENTRY_FLAGS) & ENTRY_FLAG_DATA_CRC) !== 0;
  return {
    offset: Number(offset),
    length,
    kind: isRecord ? RECORD : FILEMARK,
    fileNum: buf.readUInt32BE(ENTRY_FILE_NUM),
    blockNo: buf.readUInt32BE(ENTRY_BLOCK_NO),
    dataCrc: hasCrc ? buf.readUInt32BE(ENTRY_DATA_CRC) : null,
  };
}

/** Recently read entries kept: enough for the probes of a search to share their first steps. */
const ENTRY_CACHE_SIZE = 64;

/**
 * The entries of an index file and the searches over them. Only the count, the
 * last entry and a few cached entries are held in memory, whatever the tape's size.
 */
class TapeIndex {
  /** Entries that count: everything after them is ignored. */
  count = 0;
  /** Entry count-1, or null on a blank tape. */
  last: Entry | null = null;
  private readonly cache = new Map<number, Entry>();
  private readonly raw = Buffer.alloc(ENTRY_SIZE);

  /**
   * Finds the last good entry, from the end backwards: an entry counts if its
   * CRC holds, its data lies inside the data file and it follows its
   * predecessor. A crash leaves at most a torn tail; the loop drops it.
   */
  constructor(
    private readonly fd: number | null,
    readonly path: string,
    indexSize: number,
    dataSize: number,
  ) {
    if (fd === null) return;
    let count = Math.max(0, Math.floor((indexSize - HEADER_SIZE) / ENTRY_SIZE));
    while (count > 0) {
      const last = this.tryRead(count - 1);
      if (last !== null && last.offset + last.length <= dataSize) {
        const prev = count > 1 ? this.tryRead(count - 2) : null;
        if (count === 1 || prev !== null) {
          const expected = after(prev);
          if (
            last.offset === expected.offset &&
            last.fileNum === expected.fileNum &&
            last.blockNo === expected.blockNo
          ) {
            this.count = count;
            this.last = last;
            return;
          }
        }
      }
      count--;
      this.cache.clear(); // forget dropped entries: their slots will be rewritten
    }
  }

  /** The index file (a blank tape opened read-only has none, and no entries to read). */
  private get file(): number {
    if (this.fd === null) throw new TapeError('io', `${this.path} is not open`);
    return this.fd;
  }

  private tryRead(i: number): Entry | null {
    const cached = this.cache.get(i);
    if (cached !== undefined) return cached;
    const got = io(`reading ${this.path}`, () =>
      readFully(this.file, this.raw, ENTRY_SIZE, HEADER_SIZE + i * ENTRY_SIZE),
    );
    const e = got === ENTRY_SIZE ? decodeEntry(this.raw) : null;
    if (e !== null) {
      if (this.cache.size >= ENTRY_CACHE_SIZE) this.cache.delete(this.cache.keys().next().value as number);
      this.cache.set(i, e);
    }
    return e;
  }

  /** Entry `i` (< count). */
  entry(i: number): Entry {
    const e = this.tryRead(i);
    if (e === null) throw badImage(`${this.path}: entry ${i} is damaged`);
    return e;
  }

  /** The place at position `p` (0..count): before entry p, or past the last entry at EOD. */
  placeAt(p: number): Place {
    return p < this.count ? this.entry(p) : after(this.last);
  }

  /** The data offset at EOD. */
  get dataEnd(): number {
    return after(this.last).offset;
  }

  /**
   * The first position in [lo, hi] whose fileNum is at least `fileNum` (the
   * caller knows position hi qualifies). fileNum never decreases along the
   * tape, so this is a binary search: O(log n) single-entry reads.
   */
  firstPositionOfFile(fileNum: number, lo: number, hi: number): number {
    while (lo < hi) {
      const mid = lo + Math.floor((hi - lo) / 2);
      if (this.entry(mid).fileNum >= fileNum) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  }

  /** Drops entries from `count` on (the file shrinks to exactly the entries kept). */
  truncate(count: number): void {
    const last = count > 0 ? this.entry(count - 1) : null;
    io(`truncating ${this.path}`, () => fs.ftruncateSync(this.file, HEADER_SIZE + count * ENTRY_SIZE));
    this.cache.clear();
    this.count = count;
    this.last = last;
  }

  /** Appends entries at the end. */
  append(entries: readonly Entry[]): void {
    const buf = Buffer.alloc(entries.length * ENTRY_SIZE);
    entries.forEach((e, i) => encodeEntry(e, buf, i * ENTRY_SIZE));
    io(`writing ${this.path}`, () => writeFully(this.file, buf, HEADER_SIZE + this.count * ENTRY_SIZE));
    this.count += entries.length;
    this.last = entries[entries.length - 1] ?? this.last;
  }
}

// ---------------------------------------------------------------------------
// Opening, creating, inspecting

function sizeOf(fd: number, path: string): number {
  return io(`stat ${path}`, () => fs.fstatSync(fd).size);
}

function openOrNull(path: string, flags: string | number): number | null {
  try {
    return fs.openSync(path, flags);
  } catch (err) {
    if (errnoOf(err) === 'ENOENT') return null;
    throw err;
  }
}

/** Opens the data file read-only; a missing one is not a tape. */
function openDataForReading(dataPath: string): number {
  const fd = io(`opening ${dataPath}`, () => openOrNull(dataPath, 'r'));
  if (fd === null) throw badImage(`no tape image at ${dataPath} (the data file does not exist)`);
  return fd;
}

/** Runs `body` with the file closed afterwards. */
function withFd<T>(fd: number, body: (fd: number) => T): T {
  try {
    return body(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** The index of an existing tape, or null for a blank tape without one (an empty data file). */
function openIndexForReading(dataPath: string, dataSize: number): number | null {
  const indexPath = indexPathOf(dataPath);
  const fd = io(`opening ${indexPath}`, () => openOrNull(indexPath, 'r'));
  if (fd === null && dataSize > 0) {
    throw badImage(`${dataPath} holds data but has no index ${indexPath}: not a tape image`);
  }
  return fd;
}

/** Creates a blank tape (empty data file + index). Throws if the data file already exists with content or the index exists. */
export function createTapeImage(dataPath: string, opts?: TapeImageOptions): void {
  const header = headerFromOptions(opts);
  const indexPath = indexPathOf(dataPath);
  if (fs.existsSync(indexPath)) throw illegal(`${indexPath} already exists`);
  // 'a' creates a missing data file and leaves an existing one as it is.
  const dataSize = io(`creating ${dataPath}`, () =>
    withFd(fs.openSync(dataPath, 'a'), (fd) => sizeOf(fd, dataPath)),
  );
  if (dataSize > 0) throw illegal(`${dataPath} already holds data`);
  writeNewIndex(indexPath, header);
}

/** Header + counts, O(1) (records/filemarks from the last entry). An empty data file without index = blank tape with default options (nothing is created). */
export function readTapeImageInfo(dataPath: string): TapeImageInfo {
  return withFd(openDataForReading(dataPath), (dataFd) => {
    const dataSize = sizeOf(dataFd, dataPath);
    const indexFd = openIndexForReading(dataPath, dataSize);
    if (indexFd === null) {
      const header = headerFromOptions();
      header.created = io(`stat ${dataPath}`, () => fs.fstatSync(dataFd).mtime);
      return infoOf(dataPath, header, new TapeIndex(null, indexPathOf(dataPath), 0, 0));
    }
    return withFd(indexFd, (fd) => {
      const indexPath = indexPathOf(dataPath);
      const header = readHeader(fd, indexPath);
      return infoOf(dataPath, header, new TapeIndex(fd, indexPath, sizeOf(fd, indexPath), dataSize));
    });
  });
}

function infoOf(path: string, header: Header, index: TapeIndex): TapeImageInfo {
  const end = after(index.last);
  return {
    path,
    barcode: header.barcode,
    label: header.label,
    capacity: header.capacity,
    earlyWarning: header.earlyWarning,
    writeProtected: header.writeProtected,
    created: header.created,
    usedBytes: BigInt(end.offset),
    records: index.count - end.fileNum,
    filemarks: end.fileNum,
    blank: index.count === 0,
    dataCrcs: header.dataCrcs,
  };
}

/**
 * Rewrites label/barcode/writeProtected in the header (the index is created
 * first if the tape is blank and has none). The header is one aligned 4096-byte
 * page written by a single pwrite. Do not update a tape a VirtualTape has open:
 * it keeps the header it read.
 */
export function updateTapeImage(
  dataPath: string,
  patch: Partial<Pick<TapeImageOptions, 'label' | 'barcode' | 'writeProtected'>>,
  /** For a blank tape that has no index yet: the capacity and early warning it gets. */
  blankDefaults: TapeImageOptions = {},
): void {
  const indexPath = indexPathOf(dataPath);
  const dataSize = withFd(openDataForReading(dataPath), (fd) => sizeOf(fd, dataPath));
  const indexFd = io(`opening ${indexPath}`, () => openOrNull(indexPath, 'r+'));
  if (indexFd === null) {
    if (dataSize > 0)
      throw badImage(`${dataPath} holds data but has no index ${indexPath}: not a tape image`);
    createTapeImage(dataPath, { ...blankDefaults, ...patch });
    return;
  }
  withFd(indexFd, (fd) => {
    const header = { ...readHeader(fd, indexPath) };
    if (patch.label !== undefined) header.label = patch.label;
    if (patch.barcode !== undefined) header.barcode = patch.barcode;
    if (patch.writeProtected !== undefined) header.writeProtected = patch.writeProtected;
    const encoded = encodeHeader(header); // validates the strings before anything is written
    io(`writing ${indexPath}`, () => writeFully(fd, encoded, 0));
  });
}

/**
 * Opens a tape. An existing empty data file without an index is a blank tape
 * (ndmjob's convention: `-f FILE` naming an empty file): an index is created
 * with `blankDefaults` (read-only: nothing is created). A write-protected tape
 * opened with readOnly=false throws TapeError('write-protected').
 */
export function openTapeImage(dataPath: string, opts: TapeOpenOptions): VirtualTape {
  return new VirtualTape(dataPath, opts);
}

/**
 * Byte range [start, end) of tape file `fileNum` (0-based: the records between
 * filemark fileNum-1 and filemark fileNum, or EOD) in the data file; null if
 * the tape has no such file (an empty stretch after the last filemark is none). O(log n).
 */
export function tapeFileExtent(
  dataPath: string,
  fileNum: number,
): { start: bigint; end: bigint; records: number } | null {
  if (!Number.isSafeInteger(fileNum) || fileNum < 0) throw illegal(`bad tape file number ${fileNum}`);
  return withFd(openDataForReading(dataPath), (dataFd) => {
    const dataSize = sizeOf(dataFd, dataPath);
    const indexFd = openIndexForReading(dataPath, dataSize);
    if (indexFd === null) return null;
    return withFd(indexFd, (fd) => {
      const indexPath = indexPathOf(dataPath);
      readHeader(fd, indexPath);
      const index = new TapeIndex(fd, indexPath, sizeOf(fd, indexPath), dataSize);
      const eod = after(index.last);
      if (fileNum > eod.fileNum || (fileNum === eod.fileNum && eod.blockNo === 0)) return null;
      const first = index.firstPositionOfFile(fileNum, 0, index.count);
      // The file ends at its filemark (the entry just before file fileNum+1 starts), or at EOD.
      const stop =
        fileNum < eod.fileNum ? index.firstPositionOfFile(fileNum + 1, first, index.count) - 1 : index.count;
      return {
        start: BigInt(index.placeAt(first).offset),
        end: BigInt(index.placeAt(stop).offset),
        records: stop - first,
      };
    });
  });
}

/** writeRecords writes its data in stretches of about this much, each right after its CRCs (cache-hot). */
const CRC_STRETCH = 256 * 1024;

/** Entries written per chunk when building an image: 2 MiB buffers. */
const BUILD_CHUNK_ENTRIES = 65536;

/**
 * For tests and benchmarks: builds an image directly from a layout without
 * writing record data (the data file is ftruncated, sparse). layout: tape files
 * in order, each `{ records, recordSize }`, a filemark after each.
 */
export function buildSparseTapeImage(
  dataPath: string,
  layout: readonly { records: number; recordSize: number }[],
  opts?: TapeImageOptions,
): void {
  let total = 0;
  for (const file of layout) {
    if (!Number.isSafeInteger(file.records) || file.records < 0 || file.records > U32_MAX) {
      throw illegal(`bad record count ${file.records}`);
    }
    if (!Number.isSafeInteger(file.recordSize) || file.recordSize < 1 || file.recordSize > MAX_RECORD_SIZE) {
      throw illegal(`bad record size ${file.recordSize}`);
    }
    total += file.records * file.recordSize;
  }
  if (layout.length > U32_MAX) throw illegal(`too many tape files: ${layout.length}`);
  const capacity = headerFromOptions(opts).capacity;
  if (BigInt(total) > capacity)
    throw new TapeError('eom', `the layout needs ${total} bytes; capacity ${capacity}`);

  createTapeImage(dataPath, opts);
  const indexPath = indexPathOf(dataPath);
  // Data first, entries after: as for ordinary writes, no entry ever points past the data.
  io(`sizing ${dataPath}`, () => fs.truncateSync(dataPath, total));
  io(`writing ${indexPath}`, () =>
    withFd(fs.openSync(indexPath, 'r+'), (fd) => {
      const buf = Buffer.alloc(BUILD_CHUNK_ENTRIES * ENTRY_SIZE);
      let used = 0;
      let at = HEADER_SIZE;
      const flush = (): void => {
        writeFully(fd, buf.subarray(0, used), at);
        at += used;
        used = 0;
      };
      const put = (e: Entry): void => {
        encodeEntry(e, buf, used);
        used += ENTRY_SIZE;
        if (used === buf.length) flush();
      };
      let offset = 0;
      layout.forEach((file, fileNum) => {
        for (let blockNo = 0; blockNo < file.records; blockNo++) {
          // Sparse data is zeros nobody wrote: no CRC, so a later check has nothing to compare.
          put({ offset, length: file.recordSize, kind: RECORD, fileNum, blockNo, dataCrc: null });
          offset += file.recordSize;
        }
        put({ offset, length: 0, kind: FILEMARK, fileNum, blockNo: file.records, dataCrc: null });
      });
      flush();
    }),
  );
}

// ---------------------------------------------------------------------------
// The open tape

/** An open virtual tape. Create it with openTapeImage (or `new VirtualTape(path, opts)`). */
export class VirtualTape implements TapeDevice {
  readonly path: string;
  readonly readOnly: boolean;
  readonly writeProtected: boolean;
  readonly barcode: string;
  readonly label: string;
  readonly capacity: bigint;
  readonly earlyWarning: bigint;

  private readonly dataFd: number;
  private readonly indexFd: number | null;
  private readonly index: TapeIndex;
  /** The position: the number of entries between BOT and the head, 0..index.count (EOD). */
  private pos = 0;
  /** The files hold bytes past the last good entry (a crash, a failed write): cut them before writing. */
  private untrimmed: boolean;
  private closed = false;
  /** What the writes do with the page cache (docs/tape-image.md, "The write pattern"). */
  private readonly behind: WriteBehind | null;

  constructor(dataPath: string, opts: TapeOpenOptions) {
    const indexPath = indexPathOf(dataPath);
    // The data file may be reached through a path the library checked; its
    // index is never followed through a symlink (it could lead out of the library).
    const flags = opts.readOnly ? 'r' : 'r+';
    const open = (path: string): number | null => {
      try {
        if (path === indexPath) {
          const mode =
            (opts.readOnly ? fs.constants.O_RDONLY : fs.constants.O_RDWR) | fs.constants.O_NOFOLLOW;
          return openOrNull(path, mode);
        }
        return openOrNull(path, flags);
      } catch (err) {
        const code = errnoOf(err);
        if (!opts.readOnly && (code === 'EACCES' || code === 'EPERM' || code === 'EROFS')) {
          throw new TapeError('write-protected', `${path} is not writable: ${(err as Error).message}`);
        }
        throw new TapeError('io', `opening ${path}: ${(err as Error).message}`);
      }
    };
    const dataFd = open(dataPath);
    if (dataFd === null) throw badImage(`no tape image at ${dataPath} (the data file does not exist)`);
    let indexFd: number | null = null;
    try {
      const dataSize = sizeOf(dataFd, dataPath);
      indexFd = open(indexPath);
      let header: Header;
      if (indexFd !== null) {
        header = readHeader(indexFd, indexPath);
      } else {
        if (dataSize > 0)
          throw badImage(`${dataPath} holds data but has no index ${indexPath}: not a tape image`);
        // A blank tape: an empty data file (ndmjob -f FILE).
        header = headerFromOptions(opts.blankDefaults);
        if (!opts.readOnly) {
          writeNewIndex(indexPath, header);
          indexFd = open(indexPath);
        }
      }
      if (header.writeProtected && !opts.readOnly) {
        throw new TapeError('write-protected', `${dataPath} is write protected`);
      }
      const indexSize = indexFd === null ? 0 : sizeOf(indexFd, indexPath);
      this.index = new TapeIndex(indexFd, indexPath, indexSize, dataSize);
      this.untrimmed =
        indexFd !== null &&
        (indexSize !== HEADER_SIZE + this.index.count * ENTRY_SIZE || dataSize !== this.index.dataEnd);
      this.path = dataPath;
      this.readOnly = opts.readOnly;
      this.writeProtected = header.writeProtected;
      this.barcode = header.barcode;
      this.label = header.label;
      this.capacity = header.capacity;
      this.earlyWarning = header.earlyWarning;
      this.dataFd = dataFd;
      this.indexFd = indexFd;
      const cache = opts.cache ?? DEFAULT_CACHE_POLICY;
      this.behind =
        cache === 'keep' || (cache === 'preallocate' && opts.readOnly)
          ? null
          : new WriteBehind(
              dataFd,
              cache,
              dataPath,
              Math.min(dataSize, this.index.dataEnd),
              Number(header.capacity),
            );
    } catch (err) {
      fs.closeSync(dataFd);
      if (indexFd !== null) fs.closeSync(indexFd);
      throw err;
    }
  }

  private checkOpen(): void {
    if (this.closed) throw new TapeError('closed', `${this.path} is closed`);
  }

  private checkWritable(): void {
    this.checkOpen();
    if (this.readOnly) {
      throw new TapeError(
        'write-protected',
        this.writeProtected ? `${this.path} is write protected` : `${this.path} was opened read-only`,
      );
    }
  }

  private checkCount(count: number): void {
    if (!Number.isSafeInteger(count)) throw illegal(`bad count ${count}`);
  }

  position(): TapePosition {
    this.checkOpen();
    const p = this.pos;
    const atEod = p === this.index.count;
    const place = this.index.placeAt(p);
    return {
      fileNum: place.fileNum,
      blockNo: place.blockNo,
      entry: p,
      atBot: p === 0,
      atEod,
      beforeFilemark: !atEod && this.index.entry(p).kind === FILEMARK,
    };
  }

  space(): TapeSpace {
    this.checkOpen();
    const offset = BigInt(this.index.placeAt(this.pos).offset);
    const warnAt = this.capacity - this.earlyWarning;
    return {
      totalSpace: this.capacity,
      spaceRemain: offset < this.capacity ? this.capacity - offset : 0n,
      untilEarlyWarning: offset < warnAt ? warnAt - offset : 0n,
    };
  }

  /** Logical EOM: data ending past this offset lies in the early-warning zone. */
  private inEarlyWarning(end: number): boolean {
    return BigInt(end) > this.capacity - this.earlyWarning;
  }

  /**
   * Tape semantics: writing anywhere but at EOD loses everything after the
   * position. The index is cut first, so a crash in between leaves only
   * ignored data past the last entry, never an entry without its data.
   */
  private cutAt(p: number): void {
    if (p === this.index.count && !this.untrimmed) return;
    const offset = this.index.placeAt(p).offset;
    this.untrimmed = true;
    this.index.truncate(p);
    io(`truncating ${this.path}`, () => fs.ftruncateSync(this.dataFd, offset));
    this.behind?.cut(offset);
    this.untrimmed = false;
  }

  writeRecord(data: Uint8Array): WriteResult {
    this.checkWritable();
    if (data.length === 0 || data.length > MAX_RECORD_SIZE) {
      throw illegal(`record of ${data.length} bytes: records hold 1 to ${MAX_RECORD_SIZE} bytes`);
    }
    const at = this.index.placeAt(this.pos);
    const end = at.offset + data.length;
    // Checked before anything changes: a refused record leaves the tape as it was.
    if (BigInt(end) > this.capacity) {
      throw new TapeError(
        'eom',
        `a record of ${data.length} bytes does not fit: ${this.capacity - BigInt(at.offset)} left`,
      );
    }
    if (at.blockNo >= U32_MAX) throw new TapeError('eom', `tape file ${at.fileNum} cannot hold more records`);
    this.cutAt(this.pos);
    try {
      // Data before its entry: the entry is the commit (crash safety).
      io(`writing ${this.path}`, () => writeFully(this.dataFd, data, at.offset));
      const record: Entry = {
        offset: at.offset,
        length: data.length,
        kind: RECORD,
        fileNum: at.fileNum,
        blockNo: at.blockNo,
        dataCrc: crc32(data),
      };
      this.index.append([record]);
    } catch (err) {
      this.untrimmed = true;
      throw err;
    }
    this.pos = this.index.count;
    this.behind?.wrote(end);
    return { earlyWarning: this.inEarlyWarning(end) };
  }

  writeRecords(data: Uint8Array, recordSize: number): BatchWriteResult {
    this.checkWritable();
    const n = data.length / recordSize;
    if (!Number.isInteger(n) || n < 1 || recordSize < 1 || recordSize > MAX_RECORD_SIZE) {
      throw illegal(`${data.length} bytes are not whole records of ${recordSize} bytes`);
    }
    const at = this.index.placeAt(this.pos);
    const end = at.offset + data.length;
    if (n > 1 && !this.inEarlyWarning(end) && BigInt(end) <= this.capacity && at.blockNo + n < U32_MAX) {
      // All of it lies before the early-warning zone: one write for the data, one for the entries.
      this.cutAt(this.pos);
      try {
        // Each stretch's CRCs are computed just before it is written, while its
        // bytes are still in the CPU's cache: one pass over memory, not two.
        const entries: Entry[] = new Array<Entry>(n);
        const per = Math.max(1, Math.floor(CRC_STRETCH / recordSize));
        for (let i = 0; i < n; i += per) {
          const end = Math.min(n, i + per);
          for (let j = i; j < end; j++) {
            entries[j] = {
              offset: at.offset + j * recordSize,
              length: recordSize,
              kind: RECORD,
              fileNum: at.fileNum,
              blockNo: at.blockNo + j,
              dataCrc: crc32(data.subarray(j * recordSize, (j + 1) * recordSize)),
            };
          }
          const bytes = data.subarray(i * recordSize, end * recordSize);
          io(`writing ${this.path}`, () => writeFully(this.dataFd, bytes, at.offset + i * recordSize));
        }
        this.index.append(entries);
      } catch (err) {
        this.untrimmed = true;
        throw err;
      }
      this.pos = this.index.count;
      this.behind?.wrote(end);
      return { written: n, earlyWarning: false, full: false };
    }
    // Near the end of the tape: one by one, so EOM lands on the right record.
    for (let i = 0; i < n; i++) {
      let r: WriteResult;
      try {
        r = this.writeRecord(data.subarray(i * recordSize, (i + 1) * recordSize));
      } catch (err) {
        if (err instanceof TapeError && err.kind === 'eom' && i > 0)
          return { written: i, earlyWarning: false, full: true };
        throw err;
      }
      if (r.earlyWarning) return { written: i + 1, earlyWarning: true, full: false };
    }
    return { written: n, earlyWarning: false, full: false };
  }

  writeFilemarks(count: number): WriteResult {
    this.checkWritable();
    if (!Number.isSafeInteger(count) || count < 0) throw illegal(`bad filemark count ${count}`);
    const at = this.index.placeAt(this.pos);
    if (count === 0) return { earlyWarning: this.inEarlyWarning(at.offset) };
    if (at.fileNum + count > U32_MAX) throw illegal(`${count} filemarks would pass ${U32_MAX} tape files`);
    this.cutAt(this.pos);
    try {
      // Filemarks take no data; a huge count is written in bounded chunks.
      for (let written = 0; written < count;) {
        const batch: Entry[] = [];
        for (; written < count && batch.length < BUILD_CHUNK_ENTRIES; written++) {
          batch.push({
            offset: at.offset,
            length: 0,
            kind: FILEMARK,
            fileNum: at.fileNum + written,
            blockNo: written === 0 ? at.blockNo : 0,
            dataCrc: null,
          });
        }
        this.index.append(batch);
      }
    } catch (err) {
      this.untrimmed = true;
      throw err;
    }
    this.pos = this.index.count;
    return { earlyWarning: this.inEarlyWarning(at.offset) };
  }

  readRecord(target: Uint8Array, opts: { crossFilemark: boolean }): TapeReadResult {
    this.checkOpen();
    if (this.pos === this.index.count) return { kind: 'eod' };
    const e = this.index.entry(this.pos);
    if (e.kind === FILEMARK) {
      if (opts.crossFilemark) this.pos++;
      return { kind: 'filemark' };
    }
    // A target shorter than the record gets its head; the rest is dropped (as a drive does).
    const copied = Math.min(e.length, target.length);
    // The CRC covers the whole record: a short target is read through a scratch buffer.
    const into = e.dataCrc !== null && copied < e.length ? Buffer.allocUnsafe(e.length) : target;
    const want = into === target ? copied : e.length;
    const got = io(`reading ${this.path}`, () => readFully(this.dataFd, into, want, e.offset));
    if (got < want) throw badImage(`${this.path}: record ${this.pos} lies past the end of the data file`);
    if (e.dataCrc !== null) {
      const crc = crc32(into.subarray(0, e.length));
      // As a drive's unrecoverable read error: nothing is returned and the head stays before the record.
      if (crc !== e.dataCrc) throw this.mediaError(e, crc);
    }
    if (into !== target) target.set(into.subarray(0, copied));
    this.behind?.read(e.offset, e.offset + copied);
    this.pos++;
    return { kind: 'record', length: e.length, copied };
  }

  /** The error of a record whose bytes no longer match the CRC stored when it was written. */
  private mediaError(e: Entry, crc: number): TapeMediaError {
    const tape = this.barcode || this.path;
    return new TapeMediaError(
      `tape ${tape}: file ${e.fileNum}, block ${e.blockNo} (${e.length} bytes at byte ${e.offset} of ` +
        `${this.path}) fails its data CRC (stored ${hex(e.dataCrc!)}, read ${hex(crc)}): the tape's ` +
        'bytes changed after they were written; restore from another copy of this backup',
      { tape, fileNum: e.fileNum, blockNo: e.blockNo, dataOffset: e.offset },
    );
  }

  spaceFilemarks(count: number): number {
    this.checkOpen();
    this.checkCount(count);
    const n = this.index.count;
    const fileNum = this.index.placeAt(this.pos).fileNum;
    if (count > 0) {
      // Forward: stop just past the count-th filemark, i.e. at the first position of file fileNum+count.
      const target = fileNum + count;
      const eodFileNum = this.index.placeAt(n).fileNum;
      if (target > eodFileNum) {
        this.pos = n;
        return target - eodFileNum;
      }
      this.pos = this.index.firstPositionOfFile(target, this.pos, n);
    } else if (count < 0) {
      // Backward: stop on the BOT side of the filemark that ends file fileNum-k,
      // the entry just before file fileNum-k+1 begins.
      const k = -count;
      if (k > fileNum) {
        this.pos = 0;
        return k - fileNum;
      }
      this.pos = this.index.firstPositionOfFile(fileNum - k + 1, 0, this.pos) - 1;
    }
    return 0;
  }

  spaceRecords(count: number, opts: { crossFilemark: boolean }): number {
    this.checkOpen();
    this.checkCount(count);
    const n = this.index.count;
    if (count > 0) {
      const { fileNum } = this.index.placeAt(this.pos);
      // Common case: the count records ahead are all in this tape file.
      const landing = this.pos + count;
      if (landing <= n && this.index.placeAt(landing).fileNum === fileNum) {
        this.pos = landing;
        return 0;
      }
      // Otherwise the file's filemark (or EOD) stops us.
      const eodFileNum = this.index.placeAt(n).fileNum;
      const stop = fileNum < eodFileNum ? this.index.firstPositionOfFile(fileNum + 1, this.pos, n) - 1 : n;
      const moved = stop - this.pos;
      this.pos = opts.crossFilemark && stop < n ? stop + 1 : stop;
      return count - moved;
    }
    if (count < 0) {
      // Backward: blockNo records lie between the position and the filemark (or BOT) behind it.
      const k = -count;
      const { blockNo } = this.index.placeAt(this.pos);
      if (k <= blockNo) {
        this.pos -= k;
        return 0;
      }
      this.pos -= blockNo;
      if (opts.crossFilemark && this.pos > 0) this.pos--;
      return k - blockNo;
    }
    return 0;
  }

  rewind(): void {
    this.checkOpen();
    this.pos = 0;
  }

  seekEod(): void {
    this.checkOpen();
    this.pos = this.index.count;
  }

  locate(entry: number): void {
    this.checkOpen();
    this.checkCount(entry);
    this.pos = Math.min(Math.max(entry, 0), this.index.count);
  }

  /** Closes the files; further calls throw TapeError('closed'). Closing twice is harmless. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.behind?.preallocated) {
      // Gives back the blocks allocated past the end (a same-size truncate frees
      // them); the size and every byte stay as they are. Best effort: a tape that
      // keeps them reads the same.
      try {
        fs.ftruncateSync(this.dataFd, fs.fstatSync(this.dataFd).size);
      } catch {
        /* the blocks stay allocated; nothing the format reads changes */
      }
    }
    fs.closeSync(this.dataFd);
    if (this.indexFd !== null) fs.closeSync(this.indexFd);
  }
}
