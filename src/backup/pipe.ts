// Small files are where a backup's time goes (DESIGN.md, "Measured in a
// prototype"): per file a walk step, an lstat, an open, a read and a close,
// each a system call with Node's per-call cost on top. One thread doing all of
// it stays well under GNU tar's pace, so a LOCAL backup splits it in two:
//
//   session thread (walker): readdir, lstat, open, pax header, history record
//        │  work ring: per file its header bytes, its open fd, its size
//        ▼
//   reader thread: header into the stream, read the file into the stream
//        │  (straight into the mover's byte ring), zero padding, close
//        ▼
//   mover (drive thread) → tape
//
// The walker opens each file itself, so a file it cannot open is left out of
// the stream as before; the fd is the process's, and the reader reads and
// closes it. Stream offsets (fh_info) are the walker's: it knows every
// header's length and every file's recorded size, and the reader writes
// exactly that many bytes whatever happens to the file meanwhile.
//
// This module is both sides' protocol: the walker's FilePipe and the record
// layout the reader (reader.ts) decodes.

import { closeSync } from 'node:fs';
import { SpscRing, waitWordAsync } from '../ring/spsc-ring.js';

export const PipeKind = { BYTES: 1, FILE: 2, END: 3 } as const;

/** Record: kind u8, 3 pad, fd u32, size lo u32, size hi u32, header length u32, name length u32; then header, name. */
export const PIPE_HEADER = 24;

// Control words (Int32) and the byte counter (Float64 at byte 32).
export const C_STOP = 0;
export const C_DONE = 1;
export const C_WARNINGS = 2;
/** Why the reader stopped before the end: 1 told to, 2 the mover's ring went away, 3 an error. */
export const C_FAILED = 3;

/** The stream could not be completed: the mover went away, or the reader failed. */
export class StreamBroken extends Error {}
export const C_BYTES_AT = 32;
export const PIPE_CONTROL_BYTES = 40;

/** What the walker gives its reader thread at the start of a backup. */
export interface PipeJob {
  readonly work: SharedArrayBuffer;
  readonly out: SharedArrayBuffer;
  readonly control: SharedArrayBuffer;
  /** The data service's abort flag (DataThreadConfig.abortFlag). */
  readonly abortFlag: SharedArrayBuffer;
}

/** The walker's end of the work ring. */
export class FilePipe {
  private readonly ring: SpscRing;
  private readonly words: Int32Array;
  private readonly bytes: Float64Array;
  private scratch = new Uint8Array(16 * 1024);
  private view = new DataView(this.scratch.buffer);
  private readonly enc = new TextEncoder();

  private readonly work: SharedArrayBuffer;

  constructor(job: PipeJob) {
    this.work = job.work;
    this.ring = new SpscRing(job.work);
    this.words = new Int32Array(job.control, 0, 8);
    this.bytes = new Float64Array(job.control, C_BYTES_AT, 1);
  }

  static allocate(workBytes = 1 << 20): { work: SharedArrayBuffer; control: SharedArrayBuffer } {
    return { work: SpscRing.allocate(workBytes), control: new SharedArrayBuffer(PIPE_CONTROL_BYTES) };
  }

  /** Stream bytes the reader has put into the stream so far. */
  get streamed(): number {
    return this.bytes[0]!;
  }

  /** Warnings the reader reported (files that changed or failed while read). */
  get warnings(): number {
    return Atomics.load(this.words, C_WARNINGS);
  }

  /** Bytes that go into the stream as they are (headers of entries without data, the end marker). */
  bytesOut(b: Uint8Array): Promise<void> | void {
    return this.put(PipeKind.BYTES, b, -1, 0n, '');
  }

  /** A regular file: its header, then `size` bytes read from `fd` (which the reader closes), then padding. */
  file(header: Uint8Array, fd: number, size: bigint, name: string): Promise<void> | void {
    return this.put(PipeKind.FILE, header, fd, size, name);
  }

  /** No more: resolves once the reader has put everything into the stream. */
  async end(): Promise<void> {
    await this.put(PipeKind.END, new Uint8Array(0), -1, 0n, '');
    while (Atomics.load(this.words, C_DONE) === 0) await waitWordAsync(this.words, C_DONE, 0, 1000);
    switch (Atomics.load(this.words, C_FAILED)) {
      case 2:
        throw new StreamBroken('the mover closed the data connection');
      case 3:
        throw new StreamBroken('the reader thread failed');
    }
  }

  /** The backup stopped: the reader closes what it holds and stops; so do we, for what it never took. */
  async stop(): Promise<void> {
    Atomics.store(this.words, C_STOP, 1);
    this.ring.close();
    while (Atomics.load(this.words, C_DONE) === 0) await waitWordAsync(this.words, C_DONE, 0, 1000);
    // The reader is gone: this thread may be the ring's consumer now, through
    // a fresh view (this one's consumer cursor is stale).
    new SpscRing(this.work).drainRecords((rec) => {
      if (rec[0] === PipeKind.FILE) closeSync(new DataView(rec.buffer, rec.byteOffset).getInt32(4, true));
    });
  }

  private put(
    kind: number,
    header: Uint8Array,
    fd: number,
    size: bigint,
    name: string,
  ): Promise<void> | void {
    const nameBytes = name === '' ? null : this.enc.encode(name);
    const nameLen = nameBytes?.length ?? 0;
    const len = PIPE_HEADER + header.length + nameLen;
    if (len > this.scratch.length) {
      this.scratch = new Uint8Array(len * 2);
      this.view = new DataView(this.scratch.buffer);
    }
    const v = this.view;
    v.setUint8(0, kind);
    v.setInt32(4, fd, true);
    v.setUint32(8, Number(BigInt.asUintN(32, size)), true);
    v.setUint32(12, Number(size >> 32n), true);
    v.setUint32(16, header.length, true);
    v.setUint32(20, nameLen, true);
    this.scratch.set(header, PIPE_HEADER);
    if (nameBytes) this.scratch.set(nameBytes, PIPE_HEADER + header.length);
    const rec = this.scratch.subarray(0, len);
    if (this.ring.tryWriteRecord(rec)) return;
    return this.putSlowly(rec);
  }

  private async putSlowly(rec: Uint8Array): Promise<void> {
    const need = 4 + ((rec.length + 3) & ~3);
    while (!this.ring.tryWriteRecord(rec)) {
      if (this.ring.aborted || Atomics.load(this.words, C_DONE) !== 0)
        throw new StreamBroken(
          Atomics.load(this.words, C_FAILED) === 2
            ? 'the mover closed the data connection'
            : 'the reader thread stopped',
        );
      await this.ring.waitSpaceAsync(1000, need);
    }
  }
}
