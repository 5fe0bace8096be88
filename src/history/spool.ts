// A session's history that its DMA has not taken yet, on disk: encoded
// messages appended as they are made and read back in order as the DMA
// catches up, so memory stays bounded however far behind the DMA is. The
// file holds the messages back to back; their lengths stay in memory (a
// number per message of up to 1000 entries). It lives in the state dir (mode
// 0600: file names are as private as the files), is emptied whenever it has
// been read to the end, and removed when the session's history is done.
//
// The spool never fails a backup by filling a disk: the history thread asks
// SpoolDisk before each append and stops spooling (the session then waits for
// its DMA) when the file system is nearly full, and a failed append leaves
// the file as it was, so the caller may keep the message and try later.

import fs from 'node:fs';
import { join } from 'node:path';
import { NdmpBaseError } from '../wire/errors.js';

/** The spool could not be read back: what it held for the DMA is lost, so the session's history fails. */
export class SpoolReadError extends NdmpBaseError {
  readonly code = 'NDMPD_HISTORY_SPOOL_READ';
}

export class Spool {
  readonly path: string;
  private fd: number;
  private writeAt = 0;
  private readAt = 0;
  /** Lengths of the messages not yet taken, oldest first. */
  private readonly lengths: number[] = [];

  constructor(dir: string, name: string) {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    this.path = join(dir, name);
    this.fd = fs.openSync(
      this.path,
      fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_TRUNC | fs.constants.O_NOFOLLOW,
      0o600,
    );
  }

  /** Bytes waiting in the file. */
  get pending(): number {
    return this.writeAt - this.readAt;
  }

  /** The length of the next message, or -1 when the spool is empty. */
  peekLength(): number {
    return this.lengths[0] ?? -1;
  }

  /**
   * Appends one message, all or nothing: on a write error (ENOSPC, EIO) the
   * spool is as before (a partial write is cut off again) and the error is thrown.
   */
  append(message: ArrayBuffer): void {
    const bytes = new Uint8Array(message);
    try {
      for (let done = 0; done < bytes.length;)
        done += fs.writeSync(this.fd, bytes, done, bytes.length - done, this.writeAt + done);
    } catch (e) {
      try {
        // Gives back the blocks of a partial write (they would be overwritten anyway).
        fs.ftruncateSync(this.fd, this.writeAt);
      } catch {
        /* the error above is the one to report */
      }
      throw e;
    }
    this.writeAt += bytes.length;
    this.lengths.push(bytes.length);
  }

  /** The next message (the spool must not be empty). */
  take(): ArrayBuffer {
    const n = this.lengths[0]!;
    const out = new ArrayBuffer(n);
    const view = new Uint8Array(out);
    try {
      for (let got = 0; got < n;) {
        const r = fs.readSync(this.fd, view, got, n - got, this.readAt + got);
        if (r === 0) throw new Error('the file is shorter than what was written to it');
        got += r;
      }
    } catch (e) {
      throw new SpoolReadError(
        `cannot read the file history spool ${this.path} back (${(e as Error).message}); ` +
          'check the disk of the state directory',
      );
    }
    this.lengths.shift();
    this.readAt += n;
    if (this.lengths.length === 0) {
      // Read to the end: start over, so the file does not grow for ever.
      fs.ftruncateSync(this.fd, 0);
      this.readAt = this.writeAt = 0;
    }
    return out;
  }

  close(): void {
    if (this.fd < 0) return;
    fs.closeSync(this.fd);
    this.fd = -1;
    fs.rmSync(this.path, { force: true });
  }
}

/** Free space below the floor: the spool takes no more. */
export interface DiskShort {
  readonly free: number;
  readonly floor: number;
}

/** The default floor: the smaller of 1 GiB and 5% of the file system (docs/history.md). */
export const DEFAULT_FLOOR_BYTES = 2 ** 30;
export const DEFAULT_FLOOR_FRACTION = 0.05;
/** statfs at least this often (in bytes written), so other writers filling the disk are noticed. */
const MAX_BUDGET = 64 * 2 ** 20;
/** While the disk is short, statfs at most this often. */
const RECHECK_MS = 250;

/**
 * The free-space check of one spool directory, shared by the sessions of a
 * history thread: statfs gives the room above the floor, a budget that
 * appends use up; only when it is spent is statfs asked again.
 */
export class SpoolDisk {
  private budget = 0;
  private short: DiskShort | null = null;
  private checkedAt = -Infinity;

  constructor(
    readonly dir: string,
    /** Bytes to keep free; null: the default rule; 0: no floor. */
    readonly minFree: number | null,
  ) {}

  /**
   * Null when `bytes` more may be spooled (and takes them from the budget),
   * else how short the disk is; `margin` more must be free than the floor
   * (to resume only with room to spare). Throws if statfs fails.
   */
  take(bytes: number, now: number, margin = 0): DiskShort | null {
    if (this.minFree === 0) return null;
    if (bytes + margin <= this.budget) {
      this.budget -= bytes;
      return null;
    }
    if (this.short && now - this.checkedAt < RECHECK_MS) return this.short;
    this.checkedAt = now;
    fs.mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const st = fs.statfsSync(this.dir);
    const free = st.bavail * st.bsize;
    const floor =
      this.minFree ?? Math.min(DEFAULT_FLOOR_BYTES, DEFAULT_FLOOR_FRACTION * st.blocks * st.bsize);
    this.budget = Math.min(free - floor, MAX_BUDGET);
    if (bytes + margin > this.budget) {
      this.short = { free, floor: Math.round(floor) };
      return this.short;
    }
    this.short = null;
    this.budget -= bytes;
    return null;
  }

  /** An append failed after take(): its bytes were not written. */
  giveBack(bytes: number): void {
    this.budget += bytes;
  }
}
