// The reader's side of a pipelined backup (see pipe.ts): takes the walker's
// records in order and writes the stream into the mover's byte ring: headers
// as they are, each file's recorded size read from its fd straight into the
// ring's memory, zero padding to the next 512-byte block. Synchronous, on a
// thread of its own, so it may block on the rings.
//
// A file that shrank is padded with zeros to its recorded size, one that grew
// is cut at it, one whose read fails gets zeros for the rest: the stream
// always holds exactly what its header says, so every later offset stays true.
// A sparse file (SPARSE items) is read region by region, where each lies.

import fs from 'node:fs';
import { grewPast } from './file-read.js';
import { SpscRing } from '../ring/spsc-ring.js';
import { paddingAfter } from './pax-layout.js';
import { RingProducer } from '../history/producer.js';
import { OFF } from '../history/record.js';
import { skipReason } from './engine.js';
import { ConfinedDir, sameFile } from '../util/confine.js';
import { decodeName, escapeName } from '../util/byte-name.js';
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

class Stopped extends CodedError {
  readonly code = 'READER_STOPPED';
}

export class PipeReader {
  private readonly work: SpscRing;
  private readonly out: SpscRing;
  private readonly words: Int32Array;
  private readonly bytes: Float64Array;
  private readonly abortFlag: Int32Array;
  /** The history ring's producer while this job runs (the walker wrote its HELLO before). */
  private readonly history: RingProducer | null;
  private readonly probe = new Uint8Array(1);
  /** Part of the out ring reserved for us; `used` bytes of it written and not yet published. */
  private region: Uint8Array = new Uint8Array(0);
  private used = 0;
  /**
   * The directory the last file was opened in, opened again here and checked
   * to be the one the walker listed: consecutive files of one directory share
   * it (one open per directory visited, not per file).
   */
  private dir: ConfinedDir | null = null;

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
      this.dir?.close();
      this.dir = null;
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
    const scratch = { rec: new Uint8Array(0) };
    for (;;) {
      if (this.stopped()) throw new Stopped();
      const len = this.work.nextRecordLength();
      if (len < 0) {
        // Nothing to do until the walker sends more: the mover gets what we have.
        this.publish();
        if (this.work.ended) throw new Stopped();
        this.work.waitData(WAIT_MS);
        continue;
      }
      if (scratch.rec.length < len) scratch.rec = new Uint8Array(Math.max(len, 16 * 1024));
      this.work.readRecordInto(scratch.rec);
      const rec = scratch.rec;
      const v = new DataView(rec.buffer, rec.byteOffset, len);
      const kind = v.getUint8(0);
      if (kind === PipeKind.END) {
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
      if (kind === PipeKind.HIST) {
        this.history?.write(record!);
        continue;
      }
      // This entry's first header byte: its fh_info.
      const at = this.position;
      if (kind === PipeKind.BYTES) {
        this.put(header);
      } else {
        const name = decodeName(rec, nameAt, nameAt + nameLen);
        const pathAt = nameAt + nameLen;
        const dirPath = decodeName(rec, pathAt, pathAt + pathLen);
        const leaf = decodeName(rec, pathAt + pathLen, pathAt + pathLen + leafLen);
        let fd: number;
        try {
          const dir = this.dirFor(dirPath, v.getBigUint64(P_DIR_DEV, true), v.getBigUint64(P_DIR_INO, true));
          fd = dir.openFile(leaf, {
            dev: v.getBigUint64(P_FILE_DEV, true),
            ino: v.getBigUint64(P_FILE_INO, true),
          });
        } catch (e) {
          // Gone, unreadable, or not the file the walker saw: left out, as if never listed.
          Atomics.add(this.words, C_SKIPPED, 1);
          this.note(`${escapeName(name)}: ${skipReason(e)}; skipped`);
          continue;
        }
        const size = v.getUint32(8, true) + v.getUint32(12, true) * 2 ** 32;
        try {
          this.put(header);
          if (kind === PipeKind.SPARSE) {
            const mapAt = recAt + recLen;
            // Offsets stay bigints: a sparse file may be 8 EiB long, past a double's integers.
            const regions: { offset: bigint; length: number }[] = [];
            for (let m = mapAt; m + 16 <= len; m += 16)
              regions.push({
                offset: v.getBigUint64(m, true),
                length: Number(v.getBigUint64(m + 8, true)),
              });
            const total = this.copyRegions(fd, regions, v.getBigUint64(8, true), name);
            this.zeros(paddingAfter(BigInt(total)));
          } else {
            this.copy(fd, size, name);
            this.zeros(paddingAfter(BigInt(size)));
          }
        } finally {
          fs.closeSync(fd);
        }
      }
      if (record && this.history) {
        const rv = new DataView(record.buffer, record.byteOffset, record.length);
        rv.setUint32(OFF.fhInfo, at % 2 ** 32, true);
        rv.setUint32(OFF.fhInfo + 4, Math.floor(at / 2 ** 32), true);
        this.history.write(record);
      }
    }
  }

  /** The directory `path` as the walker listed it ((dev, ino)), kept open for the files that follow in it. */
  private dirFor(path: string, dev: bigint, ino: bigint): ConfinedDir {
    const id = { dev, ino };
    if (this.dir && this.dir.path === path && sameFile(this.dir, id)) return this.dir;
    this.dir?.close();
    this.dir = null;
    this.dir = ConfinedDir.openVerified(path, id);
    return this.dir;
  }

  /** Exactly `size` bytes of the file into the stream. */
  private copy(fd: number, size: number, name: string): void {
    let left = size;
    let failed = false;
    while (left > 0) {
      if (failed) {
        this.zeros(left);
        return;
      }
      const room = this.room();
      // One byte more than is left, when there is room: a file that grew says so without another read.
      const want = Math.min(room, left + 1);
      let got: number;
      try {
        got = fs.readSync(fd, this.region, this.used, want, null);
      } catch (e) {
        const err = e as NodeJS.ErrnoException;
        this.note(
          `${escapeName(name)}: read failed (${err.code ?? err.message}); the rest is zeros in the backup`,
        );
        failed = true;
        continue;
      }
      if (got === 0) {
        this.note(`${escapeName(name)}: shrank while being read; padded with zeros to its recorded size`);
        failed = true;
        continue;
      }
      if (got > left) {
        this.used += left;
        this.note(`${escapeName(name)}: changed while being read; backed up as first seen`);
        return;
      }
      this.used += got;
      left -= got;
    }
    // Read to its recorded size with no room for the extra byte: ask once more.
    if (size > 0 && !failed && grewPast(fd, this.probe, null))
      this.note(`${escapeName(name)}: changed while being read; backed up as first seen`);
  }

  /**
   * A sparse file's regions into the stream, each read where it lies (the
   * stream holds exactly their lengths: zeros for what shrank away, a warning
   * for a file that grew past its real size). Returns their total.
   */
  private copyRegions(
    fd: number,
    regions: readonly { offset: bigint; length: number }[],
    realSize: bigint,
    name: string,
  ): number {
    let failed = false;
    let total = 0;
    for (const r of regions) {
      total += r.length;
      let pos = r.offset;
      let left = r.length;
      while (left > 0) {
        if (failed) {
          this.zeros(left);
          break;
        }
        const want = Math.min(this.room(), left);
        let got: number;
        try {
          got = fs.readSync(fd, this.region, this.used, want, pos);
        } catch (e) {
          const err = e as NodeJS.ErrnoException;
          this.note(
            `${escapeName(name)}: read failed (${err.code ?? err.message}); the rest is zeros in the backup`,
          );
          failed = true;
          continue;
        }
        if (got === 0) {
          this.note(`${escapeName(name)}: shrank while being read; padded with zeros to its recorded size`);
          failed = true;
          continue;
        }
        this.used += got;
        pos += BigInt(got);
        left -= got;
      }
    }
    if (!failed && grewPast(fd, this.probe, realSize))
      this.note(`${escapeName(name)}: changed while being read; backed up as first seen`);
    return total;
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
