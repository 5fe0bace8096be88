// Small files are where a backup's time goes (docs/design.md, "Measured in a
// prototype"): per file a walk step, an lstat, an open, a read and a close,
// each a system call with Node's per-call cost on top. One thread doing all of
// it stays well under GNU tar's pace, so a LOCAL backup splits it in two:
//
//   session thread (walker): readdir, lstat, pax header, history record
//        │  work ring: per entry its header bytes, path, size, history record
//        ▼
//   reader thread: open; header into the stream; the file read straight into
//        │  the mover's byte ring; zero padding; close; the history record,
//        │  its fh_info now known, into the session's history ring
//        ▼
//   mover (drive thread) → tape
//
// The reader opens the files: open and close then run on one thread, which
// matters (the process's descriptor table is shared, and the two threads'
// opens and closes contended when the walker opened). A file it cannot open
// is left out, header, history and all, with a warning, as one thread would.
// So the stream offsets (fh_info) are the reader's, and so is the history
// ring's producer side for the backup's duration (directory names travel
// through the work ring too, to keep their order).
//
// This module is both sides' protocol: the walker's FilePipe and the item
// layout the reader (reader.ts) decodes.

import type { HistoryChannel } from '../history/control.js';
import type { FileId } from '../util/confine.js';
import { SpscRing, waitWordAsync } from '../ring/spsc-ring.js';
import { CodedError } from '../util/coded-error.js';
import { encodeName, isUtf8Name } from '../util/byte-name.js';

/**
 * BYTES: stream bytes (+ history record); DIR: the directory the FILE and
 * SPARSE items after it are in; FILE: a file to open and stream; HIST: a
 * history record only; SPARSE: a file of which only the data regions the
 * walker mapped (they follow the record) are streamed.
 */
export const PipeKind = { BYTES: 1, FILE: 2, END: 3, HIST: 4, SPARSE: 5, DIR: 6 } as const;

/**
 * Item: kind u8, 3 pad, history record length u32, size lo u32, size hi u32,
 * header length u32, name length u32, path length u32, leaf length u32, the
 * directory's dev and ino u64, the file's dev and ino u64; then header, name,
 * path, leaf, history record; for SPARSE the regions, each its offset and
 * length as u64 (the size field is the real size).
 *
 * A DIR item names a directory once for the files that follow in it: path
 * (absolute) and its (dev, ino); name is the prefix of its files' relative
 * paths ('' at the root, else 'a/b/'). A FILE item then carries its leaf (the
 * name in that directory), its own (dev, ino), and a name only when its
 * relative path is not prefix + leaf. The reader opens the directory, checks
 * it is the one the walker listed (dev, ino), and opens each file in it by
 * name, checked the same way (util/confine.ts): nothing swapped in meanwhile
 * is followed or read.
 */
export const PIPE_HEADER = 64;
export const P_DIR_DEV = 32;
export const P_DIR_INO = 40;
export const P_FILE_DEV = 48;
export const P_FILE_INO = 56;

// Control words (Int32) and the byte counter (Float64 at byte 32).
export const C_STOP = 0;
export const C_DONE = 1;
export const C_WARNINGS = 2;
/** Why the reader stopped before the end (a ReaderStop), 0 while it has not. */
export const C_FAILED = 3;
export const ReaderStop = { TOLD: 1, MOVER_GONE: 2, ERROR: 3 } as const;
/** Files the reader could not open and left out. */
export const C_SKIPPED = 4;
export const C_BYTES_AT = 32;
export const PIPE_CONTROL_BYTES = 40;

const EMPTY = new Uint8Array(0);
const NO_ID: FileId = { dev: 0n, ino: 0n };

/** The stream could not be completed: the mover went away, or the reader failed. */
export class StreamBroken extends CodedError {
  readonly code = 'BACKUP_STREAM_BROKEN';
}

/** What the walker gives its reader thread at the start of a backup. */
export interface PipeJob {
  readonly work: SharedArrayBuffer;
  readonly out: SharedArrayBuffer;
  readonly control: SharedArrayBuffer;
  /** The data service's abort flag (DataThreadConfig.abortFlag). */
  readonly abortFlag: SharedArrayBuffer;
  /** The backup's history (worker mode), whose records the reader completes and appends. */
  readonly history: HistoryChannel | null;
}

/** The walker's end of the work ring. */
export class FilePipe {
  private readonly ring: SpscRing;
  private readonly words: Int32Array;
  private readonly bytes: Float64Array;
  private scratch = new Uint8Array(16 * 1024);
  private view = new DataView(this.scratch.buffer);
  private readonly enc = new TextEncoder();
  /** The directory the last DIR item named (its path and identity), and its files' relative prefix. */
  private dirPath = '';
  private dirDev = -1n;
  private dirIno = -1n;
  private dirPrefix = '';

  /**
   * A name's exact bytes (docs/names.md) into the scratch at `at`; returns
   * their count. Plain Unicode is encoded in place; a name holding escaped
   * bytes goes through encodeName.
   */
  private putName(s: string, at: number): number {
    if (isUtf8Name(s)) return this.enc.encodeInto(s, this.scratch.subarray(at)).written;
    const b = encodeName(s);
    this.scratch.set(b, at);
    return b.length;
  }

  constructor(job: PipeJob) {
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

  /** Warnings the reader reported (files that changed, failed or could not be opened). */
  get warnings(): number {
    return Atomics.load(this.words, C_WARNINGS);
  }

  /** Files the reader could not open (left out of the stream). */
  get skipped(): number {
    return Atomics.load(this.words, C_SKIPPED);
  }

  /** Stream bytes as they are (the header of an entry without data, the end marker), with the entry's history record. */
  bytesOut(b: Uint8Array, record: Uint8Array | null = null): Promise<void> | void {
    return this.put(PipeKind.BYTES, b, 0n, '', '', record);
  }

  /**
   * A regular file: `leaf` in the directory `dir` (its path and identity),
   * which must be `file`; its header, `size` bytes, padding; then its history
   * record. `name` is its path for messages. With `regions` (a sparse file,
   * `size` its real size) only those go into the stream, then the padding
   * after their total.
   */
  file(
    header: Uint8Array,
    size: bigint,
    name: string,
    dir: { readonly path: string; readonly dev: bigint; readonly ino: bigint },
    leaf: string,
    file: FileId,
    record: Uint8Array | null,
    regions: readonly { readonly offset: bigint; readonly length: bigint }[] | null = null,
  ): Promise<void> | void {
    const kind = regions ? PipeKind.SPARSE : PipeKind.FILE;
    if (dir.path !== this.dirPath || dir.dev !== this.dirDev || dir.ino !== this.dirIno) {
      this.dirPath = dir.path;
      this.dirDev = dir.dev;
      this.dirIno = dir.ino;
      this.dirPrefix = name.endsWith(leaf) ? name.slice(0, name.length - leaf.length) : '';
      const named = this.put(PipeKind.DIR, EMPTY, 0n, this.dirPrefix, dir.path, null, '', dir);
      if (named)
        return named.then(() => this.fileItem(kind, header, size, name, leaf, file, record, regions));
    }
    return this.fileItem(kind, header, size, name, leaf, file, record, regions);
  }

  private fileItem(
    kind: number,
    header: Uint8Array,
    size: bigint,
    name: string,
    leaf: string,
    file: FileId,
    record: Uint8Array | null,
    regions: readonly { readonly offset: bigint; readonly length: bigint }[] | null,
  ): Promise<void> | void {
    // The name only when the reader cannot make it from the directory's prefix and the leaf.
    const named =
      name.length === this.dirPrefix.length + leaf.length &&
      name.endsWith(leaf) &&
      name.startsWith(this.dirPrefix);
    return this.put(kind, header, size, named ? '' : name, '', record, leaf, NO_ID, file, regions);
  }

  /** A history record with no stream bytes (a directory's names, dir/node model). */
  history(record: Uint8Array): Promise<void> | void {
    return this.put(PipeKind.HIST, EMPTY, 0n, '', '', record);
  }

  /** No more: resolves once the reader has put everything into the stream. */
  async end(): Promise<void> {
    await this.put(PipeKind.END, EMPTY, 0n, '', '', null);
    // Closing wakes the reader at once, however little work is left (it sleeps until WORK_WAKE_BYTES come).
    this.ring.close();
    await this.readerDone();
    const broken = this.broken();
    if (broken) throw broken;
  }

  /** The backup stopped: the reader stops at its next item. */
  async stop(): Promise<void> {
    Atomics.store(this.words, C_STOP, 1);
    this.ring.close();
    await this.readerDone();
  }

  private async readerDone(): Promise<void> {
    while (Atomics.load(this.words, C_DONE) === 0) await waitWordAsync(this.words, C_DONE, 0, 1000);
  }

  /** Why the stream cannot be completed, if the reader stopped for a reason of its own. */
  private broken(): StreamBroken | null {
    switch (Atomics.load(this.words, C_FAILED)) {
      case ReaderStop.MOVER_GONE:
        return new StreamBroken('the mover closed the data connection');
      case ReaderStop.ERROR:
        return new StreamBroken('the reader thread failed');
      default:
        return null;
    }
  }

  private put(
    kind: number,
    header: Uint8Array,
    size: bigint,
    name: string,
    path: string,
    record: Uint8Array | null,
    leaf = '',
    dirId: FileId = NO_ID,
    fileId: FileId = NO_ID,
    regions: readonly { readonly offset: bigint; readonly length: bigint }[] | null = null,
  ): Promise<void> | void {
    const recLen = record?.length ?? 0;
    const mapLen = regions ? regions.length * 16 : 0;
    // UTF-8 takes at most 3 bytes per UTF-16 unit (an escaped byte takes 1): room for the worst case, then encode in place.
    const worst =
      PIPE_HEADER + header.length + 3 * (name.length + path.length + leaf.length) + recLen + mapLen;
    if (worst > this.scratch.length) {
      this.scratch = new Uint8Array(worst * 2);
      this.view = new DataView(this.scratch.buffer);
    }
    let at = PIPE_HEADER;
    this.scratch.set(header, at);
    at += header.length;
    // A DIR item's prefix may be '' (the root's files): lengths say what is there.
    const nameLen = name === '' ? 0 : this.putName(name, at);
    at += nameLen;
    const pathLen = path === '' ? 0 : this.putName(path, at);
    at += pathLen;
    const leafLen = leaf === '' ? 0 : this.putName(leaf, at);
    at += leafLen;
    if (record) this.scratch.set(record, at);
    let len = at + recLen;
    const v = this.view;
    for (const r of regions ?? []) {
      v.setBigUint64(len, r.offset, true);
      v.setBigUint64(len + 8, r.length, true);
      len += 16;
    }
    v.setUint8(0, kind);
    v.setUint32(4, recLen, true);
    v.setUint32(8, Number(BigInt.asUintN(32, size)), true);
    v.setUint32(12, Number(size >> 32n), true);
    v.setUint32(16, header.length, true);
    v.setUint32(20, nameLen, true);
    v.setUint32(24, pathLen, true);
    v.setUint32(28, leafLen, true);
    v.setBigUint64(P_DIR_DEV, dirId.dev, true);
    v.setBigUint64(P_DIR_INO, dirId.ino, true);
    v.setBigUint64(P_FILE_DEV, fileId.dev, true);
    v.setBigUint64(P_FILE_INO, fileId.ino, true);
    const rec = this.scratch.subarray(0, len);
    if (this.ring.tryWriteRecord(rec)) return;
    return this.putSlowly(rec);
  }

  private async putSlowly(rec: Uint8Array): Promise<void> {
    const need = 4 + ((rec.length + 3) & ~3);
    while (!this.ring.tryWriteRecord(rec)) {
      if (this.ring.aborted || Atomics.load(this.words, C_DONE) !== 0)
        throw this.broken() ?? new StreamBroken('the reader thread stopped');
      // Wait for a quarter of the ring, not for this record's room: the reader
      // frees a record at a time, and woken for each one the walker paid a
      // wake-up per item (docs/design.md, "Small files").
      await this.ring.waitSpaceAsync(1000, Math.max(need, this.ring.capacity >>> 2));
    }
  }
}
