// How the virtual tape's data file meets the page cache (docs/tape-image.md,
// "The write pattern"). A backup streams hundreds of MiB into one file that
// nobody reads for a while. Left alone, every byte of it takes a new page of
// the page cache, and those pages stay dirty until the kernel's flusher gets
// round to them. With a policy, the writer works in chunks: each chunk it
// completes is queued for writeback at once (sync_file_range WRITE, which does
// not wait), and with 'drop-behind' a chunk LAG_CHUNKS behind, long since
// written, is awaited and its clean pages dropped (posix_fadvise DONTNEED), so
// the tape holds a few chunks of the page cache whatever its size and the
// pages it frees are the ones its next writes get.
//
// None of this changes what the files hold or when: the data is still written
// before its entry (crash safety, docs/tape-image.md) and a hint never cuts,
// grows or reorders anything.

import { awaitWriteback, dropCachedPages, preallocate, startWriteback } from '../util/native-fs.js';
import { TapeError } from './tape.js';

/**
 * What the tape's writer does with the pages it writes:
 *   keep          leave them to the kernel (its flusher writes them back in its own time)
 *   write-behind  start the writeback of each completed chunk at once; the pages stay cached
 *   drop-behind   as write-behind, and drop a chunk's pages once it is on the device
 *   preallocate   as keep, with the file's blocks allocated PREALLOCATE_STEP ahead of the
 *                 writes (fallocate KEEP_SIZE: the size, which the format reads, is unchanged)
 */
export type TapeCachePolicy = 'keep' | 'write-behind' | 'drop-behind' | 'preallocate';

export const TAPE_CACHE_POLICIES: readonly TapeCachePolicy[] = [
  'keep',
  'write-behind',
  'drop-behind',
  'preallocate',
];

/** Bytes allocated ahead of the writes at a time (preallocate). */
export const PREALLOCATE_STEP = 64 * 1024 * 1024;

/** Bytes per chunk: large enough that the calls cost nothing next to the writes (one per 8 MiB). */
export const WRITE_BEHIND_CHUNK = 8 * 1024 * 1024;
/**
 * Chunks between the one just queued and the one dropped: the device has had
 * the writes of LAG_CHUNKS chunks' time to finish it, so the wait is normally none.
 */
const LAG_CHUNKS = 2;

/** Errors a hint may meet on a file that cannot take it (a pipe, a file system without it): the hints stop. */
const UNSUPPORTED = new Set(['EINVAL', 'ENOSYS', 'EOPNOTSUPP', 'ESPIPE', 'ENODEV']);

function errnoOf(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | null)?.code;
}

/** The write-behind state of one open data file. */
export class WriteBehind {
  /** Everything below this offset has been queued for writeback (a chunk boundary). */
  private queued = 0;
  /** Reads: chunks below this offset were dropped behind the reader (or lie before its pass). */
  private readFrom = 0;
  /** Where the last read ended. */
  private readEnd = 0;
  private policy: TapeCachePolicy;
  /** preallocate: blocks are allocated below this offset. */
  private allocated = 0;
  /** preallocate: blocks may lie past the file's end, to be given back at close. */
  preallocated = false;

  constructor(
    private readonly fd: number,
    policy: TapeCachePolicy,
    private readonly path: string,
    /** Where the data ends when the tape is opened: writes start there or before. */
    dataEnd: number,
    /** No block is allocated past the tape's capacity. */
    private readonly capacity: number,
  ) {
    this.policy = policy;
    this.queued = floorChunk(dataEnd);
    this.allocated = dataEnd;
  }

  /**
   * Data now ends at `end` (a write just went there). Queues every chunk
   * completed below it and, for drop-behind, drops the chunk LAG_CHUNKS
   * behind each of them.
   */
  wrote(end: number): void {
    if (this.policy === 'keep') return;
    if (this.policy === 'preallocate') {
      if (end + WRITE_BEHIND_CHUNK <= this.allocated || end >= this.capacity) return;
      const from = Math.max(end, this.allocated);
      const length = Math.min(PREALLOCATE_STEP, this.capacity - from);
      // ENOSPC too stops it: a full disk is the writes' to report, not the hint's.
      try {
        preallocate(this.fd, from, length);
      } catch (err) {
        const code = errnoOf(err);
        if (code !== undefined && !UNSUPPORTED.has(code) && code !== 'ENOSPC') {
          throw new TapeError('io', `allocating ${this.path}: ${(err as Error).message}`);
        }
        this.policy = 'keep';
        return;
      }
      this.allocated = from + length;
      this.preallocated = true;
      return;
    }
    while (end - this.queued >= WRITE_BEHIND_CHUNK) {
      const chunk = this.queued;
      if (!this.hint(() => startWriteback(this.fd, chunk, WRITE_BEHIND_CHUNK))) return;
      const old = chunk - LAG_CHUNKS * WRITE_BEHIND_CHUNK;
      if (this.policy === 'drop-behind' && old >= 0) {
        // Awaited first: DONTNEED leaves dirty and under-writeback pages where they are.
        try {
          awaitWriteback(this.fd, old, WRITE_BEHIND_CHUNK);
        } catch (err) {
          if (!UNSUPPORTED.has(errnoOf(err) ?? '')) {
            // A failed writeback of records already on the index: the device lost them.
            throw new TapeError('io', `writing ${this.path}: ${(err as Error).message}`);
          }
          this.policy = 'keep';
          return;
        }
        if (!this.hint(() => dropCachedPages(this.fd, old, WRITE_BEHIND_CHUNK))) return;
      }
      this.queued = chunk + WRITE_BEHIND_CHUNK;
    }
  }

  /**
   * A read of [offset, end) just went (drop-behind only): a restore reads the
   * tape once, front to back, so the chunk LAG_CHUNKS behind a sequential
   * reader is dropped as the reader passes, and readahead gets the pages back.
   * Dirty pages (records written, not yet on the device) are not dropped.
   */
  read(offset: number, end: number): void {
    if (this.policy !== 'drop-behind') return;
    if (offset < this.readFrom || offset > this.readEnd + WRITE_BEHIND_CHUNK) {
      // Not where the last read ended: a new pass starts here (locate, rewind, DAR).
      this.readFrom = floorChunk(offset);
    }
    this.readEnd = end;
    while (end - this.readFrom >= (LAG_CHUNKS + 1) * WRITE_BEHIND_CHUNK) {
      const chunk = this.readFrom;
      if (!this.hint(() => dropCachedPages(this.fd, chunk, WRITE_BEHIND_CHUNK))) return;
      this.readFrom = chunk + WRITE_BEHIND_CHUNK;
    }
  }

  /** The data was cut to `end` (or a write starts there): chunks from there on are queued again. */
  cut(end: number): void {
    if (end < this.queued) this.queued = floorChunk(end);
    // The cut freed the blocks past `end`, the preallocated ones with them.
    if (end < this.allocated) this.allocated = end;
  }

  /** Runs a hint; a file that cannot take hints turns them off. The addon missing does too. */
  private hint(call: () => void): boolean {
    try {
      call();
      return true;
    } catch (err) {
      const code = errnoOf(err);
      if (code === undefined || UNSUPPORTED.has(code)) {
        // No addon (code undefined: it failed to load) or no such call here: the kernel's own pattern.
        this.policy = 'keep';
        return false;
      }
      throw new TapeError('io', `writing ${this.path}: ${(err as Error).message}`);
    }
  }
}

function floorChunk(offset: number): number {
  return offset - (offset % WRITE_BEHIND_CHUNK);
}
