// What a tape drive offers the layers above it: records, filemarks, positions.
// The devices layer knows nothing of NDMP; the tape service maps these results
// and errors to NDMP error codes. Implemented by the virtual tape image
// (tape-image.ts); a real drive could implement it too.
//
// Positions: a tape is a sequence of entries, each a record or a filemark,
// followed by end of data (EOD). `fileNum` counts the filemarks before the
// position, `blockNo` the records since the last of them.

import { CodedError } from '../util/coded-error.js';

/** Why a tape operation failed. */
export type TapeErrorKind =
  /** The record does not fit before the physical end of the medium; nothing was written. */
  | 'eom'
  /** The tape is write protected, or was opened read-only. */
  | 'write-protected'
  /** The image file is damaged or not a tape image. */
  | 'bad-image'
  /** An argument is out of range (record larger than the maximum, negative count...). */
  | 'illegal-args'
  /** The device has been closed. */
  | 'closed'
  /** An I/O error from the file system. */
  | 'io'
  /** A record reads back other than it was written (its data CRC fails): a drive's medium error. */
  | 'media';

export class TapeError extends CodedError {
  constructor(
    readonly kind: TapeErrorKind,
    message: string,
  ) {
    super(message);
    this.name = 'TapeError';
  }

  /** One code per kind: TAPE_EOM, TAPE_WRITE_PROTECTED, TAPE_IO, ... */
  get code(): string {
    return `TAPE_${this.kind.toUpperCase().replace(/-/g, '_')}`;
  }
}

/** The largest record a tape holds (NDMP replies must carry one whole). */
export const MAX_RECORD_SIZE = 4 * 1024 * 1024;

export interface TapePosition {
  /** Filemarks between BOT and the position. */
  readonly fileNum: number;
  /** Records between the last filemark (or BOT) and the position. */
  readonly blockNo: number;
  /** Entries (records and filemarks) between BOT and the position: an absolute address. */
  readonly entry: number;
  readonly atBot: boolean;
  /** At end of data: nothing recorded beyond the position. */
  readonly atEod: boolean;
  /** The next entry is a filemark (the position is on its BOT side). */
  readonly beforeFilemark: boolean;
}

export interface TapeSpace {
  /** Capacity of the medium in bytes. */
  readonly totalSpace: bigint;
  /** Bytes that can still be written from the current position. */
  readonly spaceRemain: bigint;
  /** Bytes from the current position to the start of the early-warning zone (0 inside it). */
  readonly untilEarlyWarning: bigint;
}

export type TapeReadResult =
  /** A record: `length` is its full size; `copied` bytes of it (at most the target's size) were copied. */
  | { readonly kind: 'record'; readonly length: number; readonly copied: number }
  /** A filemark is next. The position moved past it only if the read was asked to cross it. */
  | { readonly kind: 'filemark' }
  /** End of data: nothing was read. */
  | { readonly kind: 'eod' };

export interface WriteResult {
  /** The record was written and the tape is now inside the early-warning zone (logical EOM). */
  readonly earlyWarning: boolean;
}

export interface BatchWriteResult extends WriteResult {
  readonly written: number;
  /** The next record did not fit on the tape; it was not written. */
  readonly full: boolean;
}

/** An open tape. All calls are synchronous: run it on a thread that may block (a drive thread). */
export interface TapeDevice {
  /** Writes are refused: the medium is write protected or it was opened read-only. */
  readonly readOnly: boolean;
  /** The medium itself is write protected. */
  readonly writeProtected: boolean;
  /** Barcode of the medium, or '' when it has none. */
  readonly barcode: string;

  position(): TapePosition;
  space(): TapeSpace;

  /** Writes one record at the position; everything after it is lost (tape semantics). */
  writeRecord(data: Uint8Array): WriteResult;
  /**
   * Writes consecutive records of `recordSize` bytes each (data.length is a
   * multiple of it), as writeRecord would one by one, in fewer system calls.
   * Stops after the first record that enters the early-warning zone, and
   * before one that would not fit (`full`): `written` says how many went.
   */
  writeRecords(data: Uint8Array, recordSize: number): BatchWriteResult;
  /** Writes `count` filemarks at the position; everything after them is lost. */
  writeFilemarks(count: number): WriteResult;
  /** Reads the next record into `target` (a longer record is truncated; the rest is dropped). */
  readRecord(target: Uint8Array, opts: { crossFilemark: boolean }): TapeReadResult;

  /**
   * Spaces over `count` filemarks (negative: backwards). Forward, stops just
   * past the last filemark crossed, or at EOD; backward, stops on the BOT side
   * of the filemark, or at BOT. Returns the residual count (not crossed).
   */
  spaceFilemarks(count: number): number;
  /**
   * Spaces over `count` records (negative: backwards); a filemark stops it.
   * With `crossFilemark` the filemark that stops it is crossed (v3 drives),
   * otherwise the position stays on this side of it. Returns the residual.
   */
  spaceRecords(count: number, opts: { crossFilemark: boolean }): number;
  rewind(): void;
  /** Moves to end of data (for appending). */
  seekEod(): void;
  /** Moves to an absolute entry address (as in TapePosition.entry), clamped to EOD. */
  locate(entry: number): void;

  /** Flushes and closes; further calls throw TapeError('closed'). */
  close(): void;
}
