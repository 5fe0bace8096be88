// The reader's side of a pipelined backup (see pipe.ts): takes the walker's
// items in order and writes the stream into the mover's byte ring: headers
// as they are, each file's recorded size read from the file straight into the
// ring's memory, zero padding to the next 512-byte block. Synchronous, on a
// thread of its own, so it may block on the rings.
//
// Small files go in batches (file-source.ts ReadBatch, one native call for up
// to BATCH_FILES of them): their headers are laid out in the ring with room
// for each file's data after its header, then one call opens, checks, reads
// and closes them all. A file that could not be opened (gone, or not the file
// listed) is then taken out of the batch again, header, history and all, so
// the stream is as if it had never been listed. Big and sparse files, and a
// file that would not fit the ring's contiguous room, go piece by piece
// through the one copy loop (FileCopier).
//
// A file that shrank is padded with zeros to its recorded size, one that grew
// is cut at it, one whose read fails gets zeros for the rest: the stream
// always holds exactly what its header says, so every later offset stays true.

import fs from 'node:fs';
import { SpscRing } from '../ring/spsc-ring.js';
import { paddingAfter } from './pax-layout.js';
import { RingProducer } from '../history/producer.js';
import { OFF } from '../history/record.js';
import {
  BATCH_FILE_MAX,
  FileCopier,
  ReadBatch,
  ReadOutcome,
  readWarning,
  skipWarning,
} from './file-source.js';
import { ConfinedDir } from '../util/confine.js';
import { decodeName } from '../util/byte-name.js';
import {
  C_BYTES_AT,
  C_DONE,
  C_FAILED,
  C_SKIPPED,
  C_STOP,
  C_WARNINGS,
  PIPE_HEADER,
  P_DIR_DEV,
  P_DIR_INO,
  P_FILE_DEV,
  P_FILE_INO,
  PipeKind,
  ReaderStop,
} from './pipe.js';
import type { PipeJob } from './pipe.js';
import { CodedError } from '../util/coded-error.js';

const ZEROS = new Uint8Array(64 * 1024);
/** Bytes written into the out ring before they are published to the mover. */
const PUBLISH_BYTES = 256 * 1024;
/** How long one wait for ring space or work lasts before the stop flags are looked at again. */
const WAIT_MS = 50;
/**
 * An idle reader sleeps until this much work has come (or the walker ended
 * the work ring, or WAIT_MS passed): woken for every item, the two threads
 * spent more time in futex calls than on a small file, and a batch of one
 * file is no batch.
 */
const WORK_WAKE_BYTES = 64 * 1024;

class Stopped extends CodedError {
  readonly code = 'READER_STOPPED';
}

/** The directory DIR items name: where its files are, and their relative paths' prefix (messages). */
interface DirItem {
  readonly path: string;
  readonly prefix: string;
  readonly dev: bigint;
  readonly ino: bigint;
}

/** What a batch holds, in stream order: header bytes, a file (header + data + padding), a history record. */
interface Laid {
  /** Offset in the region of its first byte, and of the byte after it (equal for a record alone). */
  start: number;
  end: number;
  /** The ReadBatch index of a file, else -1. */
  file: number;
  /** Its path for messages; null: the directory's prefix and the batch's leaf name (made only for a warning). */
  name: string | null;
  /** Its history record's bytes in `records` (length 0: none). */
  recAt: number;
  recLen: number;
  /** The record only (HIST): no position to fill in. */
  histOnly: boolean;
}

export class PipeReader {
  private readonly work: SpscRing;
  private readonly out: SpscRing;
  private readonly words: Int32Array;
  private readonly bytes: Float64Array;
  private readonly abortFlag: Int32Array;
  /** The history ring's producer while this job runs (the walker wrote its HELLO before). */
  private readonly history: RingProducer | null;
  /** Part of the out ring reserved for us; `used` bytes of it written and not yet published. */
  private region: Uint8Array = new Uint8Array(0);
  private used = 0;
  /** The directory of the files that follow (the last DIR item). */
  private dirItem: DirItem | null = null;
  /**
   * That directory, opened here and checked to be the one the walker listed;
   * or why it could not be (its files are then skipped, each with the reason).
   */
  private dir: ConfinedDir | Error | null = null;

  private readonly batch = new ReadBatch();
  private readonly laid: Laid[] = [];
  private laidCount = 0;
  private records = new Uint8Array(64 * 1024);
  private recordsLen = 0;

  constructor(
    job: PipeJob,
    private readonly warn: (text: string) => void,
  ) {
    this.work = new SpscRing(job.work);
    this.out = new SpscRing(job.out);
    this.words = new Int32Array(job.control, 0, 8);
    this.bytes = new Float64Array(job.control, C_BYTES_AT, 1);
    this.abortFlag = new Int32Array(job.abortFlag);
    this.history = job.history ? new RingProducer(job.history) : null;
  }

  /** Runs the job to its END record (or a stop); always reports done. */
  run(): void {
    try {
      this.loop();
    } catch (e) {
      const moverGone = this.out.aborted || this.out.closed;
      if (!(e instanceof Stopped)) this.warn(`backup stream failed: ${(e as Error).message}`);
      const why = moverGone
        ? ReaderStop.MOVER_GONE
        : e instanceof Stopped
          ? ReaderStop.TOLD
          : ReaderStop.ERROR;
      Atomics.store(this.words, C_FAILED, why);
    } finally {
      this.closeDir();
      Atomics.store(this.words, C_DONE, 1);
      Atomics.notify(this.words, C_DONE);
    }
  }

  private stopped(): boolean {
    return (
      Atomics.load(this.words, C_STOP) !== 0 ||
      Atomics.load(this.abortFlag, 0) !== 0 ||
      this.out.aborted ||
      this.out.closed
    );
  }

  private loop(): void {
    let rec = new Uint8Array(16 * 1024);
    for (;;) {
      if (this.stopped()) throw new Stopped();
      const len = this.work.nextRecordLength();
      if (len < 0) {
        // Nothing to do until the walker sends more: the mover gets what we have.
        this.finishBatch();
        this.publish();
        if (this.work.ended) throw new Stopped();
        this.work.waitData(WAIT_MS, Math.min(WORK_WAKE_BYTES, this.work.capacity >>> 2));
        continue;
      }
      if (rec.length < len) rec = new Uint8Array(Math.max(len, 2 * rec.length));
      this.work.readRecordInto(rec);
      const v = new DataView(rec.buffer, rec.byteOffset, len);
      const kind = v.getUint8(0);
      if (kind === PipeKind.END) {
        this.finishBatch();
        this.publish();
        return;
      }
      const recLen = v.getUint32(4, true);
      const headerLen = v.getUint32(16, true);
      const nameLen = v.getUint32(20, true);
      const pathLen = v.getUint32(24, true);
      const leafLen = v.getUint32(28, true);
      const header = rec.subarray(PIPE_HEADER, PIPE_HEADER + headerLen);
      const nameAt = PIPE_HEADER + headerLen;
      const recAt = nameAt + nameLen + pathLen + leafLen;
      const record = recLen > 0 ? rec.subarray(recAt, recAt + recLen) : null;
      switch (kind) {
        case PipeKind.DIR: {
          this.finishBatch();
          this.closeDir();
          this.dirItem = {
            prefix: decodeName(rec, nameAt, nameAt + nameLen),
            path: decodeName(rec, nameAt + nameLen, nameAt + nameLen + pathLen),
            dev: v.getBigUint64(P_DIR_DEV, true),
            ino: v.getBigUint64(P_DIR_INO, true),
          };
          continue;
        }
        case PipeKind.HIST:
          if (this.laidCount > 0) this.lay(this.used, this.used, -1, '', record, true);
          else this.history?.write(record!);
          continue;
        case PipeKind.BYTES:
          if (this.laidCount > 0 && this.fits(header.length)) {
            this.region.set(header, this.used);
            this.lay(this.used, this.used + header.length, -1, '', record, false);
            this.used += header.length;
          } else {
            this.finishBatch();
            const at = this.position;
            this.put(header);
            this.recordAt(record, at);
          }
          continue;
      }
      // FILE or SPARSE.
      const leafAt = nameAt + nameLen + pathLen;
      if (kind === PipeKind.FILE) {
        const size = v.getUint32(8, true) + v.getUint32(12, true) * 2 ** 32;
        // A batched file is at most BATCH_FILE_MAX: its padding in plain numbers.
        const need = headerLen + size + ((512 - (size % 512)) % 512);
        if (size <= BATCH_FILE_MAX && this.roomFor(need)) {
          const dir = this.openDir();
          if (dir instanceof Error) {
            this.skip(this.nameIn(rec, nameAt, nameLen, leafAt, leafLen), dir);
            continue;
          }
          this.region.set(header, this.used);
          const i = this.batch.addRaw(
            rec.subarray(leafAt, leafAt + leafLen),
            rec.subarray(P_FILE_DEV, P_FILE_DEV + 16),
            size,
            this.used + headerLen,
          );
          const name = nameLen > 0 ? decodeName(rec, nameAt, nameAt + nameLen) : null;
          this.lay(this.used, this.used + need, i, name, record, false);
          this.used += need;
          if (this.batch.full || this.used >= PUBLISH_BYTES) {
            this.finishBatch();
            if (this.used >= PUBLISH_BYTES) this.publish();
          }
          continue;
        }
      }
      const leaf = decodeName(rec, leafAt, leafAt + leafLen);
      const name = this.nameIn(rec, nameAt, nameLen, leafAt, leafLen);
      const fileId = { dev: v.getBigUint64(P_FILE_DEV, true), ino: v.getBigUint64(P_FILE_INO, true) };
      this.finishBatch();
      const dir = this.openDir();
      let fd: number;
      try {
        if (dir instanceof Error) throw dir;
        fd = dir.openFile(leaf, fileId);
      } catch (e) {
        // Gone, unreadable, or not the file the walker saw: left out, as if never listed.
        this.skip(name, e);
        continue;
      }
      try {
        const at = this.position;
        this.put(header);
        let regions: { offset: bigint; length: bigint }[];
        if (kind === PipeKind.SPARSE) {
          // Offsets stay bigints: a sparse file may be 8 EiB long, past a double's integers.
          regions = [];
          for (let m = recAt + recLen; m + 16 <= len; m += 16)
            regions.push({ offset: v.getBigUint64(m, true), length: v.getBigUint64(m + 8, true) });
        } else {
          regions = [{ offset: 0n, length: v.getBigUint64(8, true) }];
        }
        const copier = new FileCopier(fd, regions, v.getBigUint64(8, true));
        while (!copier.done) {
          const room = this.room();
          this.used += copier.step(this.region, this.used, room);
        }
        const trouble = copier.finish(name);
        if (trouble) this.note(trouble);
        this.zeros(paddingAfter(copier.total));
        this.recordAt(record, at);
      } finally {
        fs.closeSync(fd);
      }
    }
  }

  /** A work item's path for messages: its own name, or its directory's prefix and its leaf. */
  private nameIn(rec: Uint8Array, nameAt: number, nameLen: number, leafAt: number, leafLen: number): string {
    if (nameLen > 0) return decodeName(rec, nameAt, nameAt + nameLen);
    return this.dirItem!.prefix + decodeName(rec, leafAt, leafAt + leafLen);
  }

  /** A laid file's path for messages. */
  private laidName(l: Laid): string {
    return l.name ?? this.dirItem!.prefix + this.batch.leafName(l.file);
  }

  /** A file left out: counted, and said why. */
  private skip(name: string, e: unknown): void {
    Atomics.add(this.words, C_SKIPPED, 1);
    this.note(skipWarning(name, e));
  }

  /** The current directory, opened on its first file and checked to be the one the walker listed. */
  private openDir(): ConfinedDir | Error {
    if (this.dir) return this.dir;
    const d = this.dirItem!;
    try {
      this.dir = ConfinedDir.openVerified(d.path, { dev: d.dev, ino: d.ino });
    } catch (e) {
      this.dir = e as Error;
    }
    return this.dir;
  }

  private closeDir(): void {
    if (this.dir instanceof ConfinedDir) this.dir.close();
    this.dir = null;
  }

  /** Whether `need` more bytes fit the reserved region as it is. */
  private fits(need: number): boolean {
    return this.region.length - this.used >= need;
  }

  /**
   * Contiguous room for `need` bytes at `used` in the out ring, for a file of
   * the batch: the batch so far is finished first when the region is short,
   * and the mover waited for (up to PUBLISH_BYTES more free) when the ring is
   * full. False when it cannot be contiguous (the ring wraps there): that file
   * goes piece by piece.
   */
  private roomFor(need: number): boolean {
    if (this.fits(need)) return true;
    this.finishBatch();
    this.publish();
    if (need > this.out.capacity) return false;
    const want = Math.min(Math.max(need, PUBLISH_BYTES), this.out.capacity);
    for (;;) {
      if (this.stopped()) throw new Stopped();
      this.region = this.out.reserve().first;
      this.used = 0;
      if (this.fits(need)) return true;
      const free = this.out.free;
      // The free space wraps at the ring's end: what is left before it cannot hold the file whole.
      if (free >= want && this.region.length < free) return false;
      this.out.waitSpace(WAIT_MS, want);
    }
  }

  /** Notes an item of the batch in stream order, its history record copied (the work item's memory is reused). */
  private lay(
    start: number,
    end: number,
    file: number,
    name: string | null,
    record: Uint8Array | null,
    histOnly: boolean,
  ): void {
    let recAt = 0;
    const recLen = record?.length ?? 0;
    if (record) {
      if (this.records.length - this.recordsLen < recLen) {
        const grown = new Uint8Array(Math.max(2 * this.records.length, this.recordsLen + recLen));
        grown.set(this.records.subarray(0, this.recordsLen));
        this.records = grown;
      }
      recAt = this.recordsLen;
      this.records.set(record, recAt);
      this.recordsLen += recLen;
    }
    const l = this.laid[this.laidCount];
    if (l) {
      l.start = start;
      l.end = end;
      l.file = file;
      l.name = name;
      l.recAt = recAt;
      l.recLen = recLen;
      l.histOnly = histOnly;
    } else this.laid.push({ start, end, file, name, recAt, recLen, histOnly });
    this.laidCount++;
  }

  /**
   * Reads the batch's files (one native call), then goes through what it
   * laid out in order: a file that could not be opened is cut out (what
   * follows moves down), every other item's history record gets its position.
   */
  private finishBatch(): void {
    if (this.laidCount === 0) return;
    if (this.batch.count > 0) this.batch.run(this.dir as ConfinedDir, this.region);
    const base = this.bytes[0]!;
    let cut = 0;
    for (let k = 0; k < this.laidCount; k++) {
      const l = this.laid[k]!;
      if (l.file >= 0) {
        const outcome = this.batch.outcome(l.file);
        if (outcome === ReadOutcome.OPEN_FAILED || outcome === ReadOutcome.CHANGED) {
          this.skip(this.laidName(l), this.batch.error(l.file));
          cut += l.end - l.start;
          continue;
        }
        const trouble = readWarning(
          this.laidName(l),
          outcome,
          outcome === ReadOutcome.READ_FAILED ? this.batch.error(l.file) : undefined,
        );
        if (trouble) this.note(trouble);
      }
      if (cut > 0 && l.end > l.start) this.region.copyWithin(l.start - cut, l.start, l.end);
      if (l.recLen > 0 && this.history) {
        const record = this.records.subarray(l.recAt, l.recAt + l.recLen);
        if (!l.histOnly) setFhInfo(record, base + l.start - cut);
        this.history.write(record);
      }
    }
    this.used -= cut;
    this.laidCount = 0;
    this.recordsLen = 0;
    this.batch.clear();
  }

  /** The entry's history record, its fh_info the stream offset `at` of its first header byte. */
  private recordAt(record: Uint8Array | null, at: number): void {
    if (!record || !this.history) return;
    setFhInfo(record, at);
    this.history.write(record);
  }

  private note(text: string): void {
    Atomics.add(this.words, C_WARNINGS, 1);
    this.warn(text);
  }

  /**
   * Room left in the region of the out ring we are filling, reserving a new
   * one (and waiting for the mover) when it is used up. Bytes are published
   * in batches (publish()): each publication may wake the mover, a system
   * call that costs more than a small file's bytes.
   */
  private room(): number {
    for (;;) {
      const left = this.region.length - this.used;
      if (left > 0) return left;
      this.publish();
      if (this.stopped()) throw new Stopped();
      this.region = this.out.reserve().first;
      if (this.region.length === 0) this.out.waitSpace(WAIT_MS);
    }
  }

  /** Stream offset of the next byte we write. */
  private get position(): number {
    return this.bytes[0]! + this.used;
  }

  /** Hands what was written since the last publication to the mover. */
  private publish(): void {
    if (this.used === 0) return;
    this.out.commit(this.used);
    this.bytes[0] = this.bytes[0]! + this.used;
    this.region = this.region.subarray(this.used);
    this.used = 0;
  }

  private put(b: Uint8Array): void {
    for (let off = 0; off < b.length;) {
      const n = Math.min(this.room(), b.length - off);
      this.region.set(b.subarray(off, off + n), this.used);
      this.used += n;
      off += n;
    }
    if (this.used >= PUBLISH_BYTES) this.publish();
  }

  private zeros(count: number): void {
    for (let left = count; left > 0;) {
      const n = Math.min(left, ZEROS.length);
      this.put(ZEROS.subarray(0, n));
      left -= n;
    }
  }
}

function setFhInfo(record: Uint8Array, at: number): void {
  const rv = new DataView(record.buffer, record.byteOffset, record.length);
  rv.setUint32(OFF.fhInfo, at % 2 ** 32, true);
  rv.setUint32(OFF.fhInfo + 4, Math.floor(at / 2 ** 32), true);
}
