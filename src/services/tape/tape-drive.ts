// The TAPE interface of one session, run on its drive thread (docs/protocol.md
// §3.5, draft §3.4). Turns NDMP tape requests into device calls and device
// results into NDMP errors, with the v3/v4 differences ndmjob's test-tape
// checks: v4 stops at a filemark (a read or FSR reports it without crossing),
// v3 crosses it; v4 reports end of data as EOM, v3 as EOF.

import { MAX_RECORD_SIZE, TapeError } from '../../devices/tape.js';
import { countingDevice } from './counters.js';
import type { TapeDevice } from '../../devices/tape.js';
import { TapeMediaError, openTapeImage } from '../../devices/tape-image.js';
import type { TapeImageOptions } from '../../devices/tape-image.js';
import {
  ErrorCode,
  M,
  NdmpError,
  TapeMtioOp,
  TapeOpenMode,
  TapeStateFlags,
  INVALID_U32,
} from '../../wire/index.js';
import type { MessageDef, NdmpVersion, TapeGetStateReply } from '../../wire/index.js';
import { admit } from '../state-table.js';
import { DRIVE_WORD_TAPE, TAPE_STATE_TABLE, TapeWord } from './state-rules.js';

/** The most filemarks one MTIO EOF writes. */
export const MAX_FILEMARKS_PER_MTIO = 65536;

export class TapeDrive {
  private dev: TapeDevice | null = null;
  private mode = TapeOpenMode.NDMP_TAPE_READ_MODE as number;
  /**
   * Records were written and nothing has moved the tape since: closing,
   * rewinding or unloading then ends the tape file with a filemark first, as
   * drives do (docs/protocol.md §3.5, draft §3.4.1). Spacing does not (ndmjob's T-BWR writes a record
   * and spaces back over it, expecting no filemark behind it).
   */
  private writtenSinceMark = false;
  /** MTIO OFF took the medium offline: nothing but CLOSE/GET_STATE until reopened. */
  private offline = false;

  /**
   * `words`: the drive thread's shared state words (./state-rules.ts). The
   * tape's word says closed, open (read or read/write) or offline; the
   * mover's words say whether an ACTIVE mover holds the tape.
   */
  constructor(
    private readonly version: NdmpVersion,
    private readonly words: Int32Array,
    /**
     * A record failed its data CRC (TAPE_READ or the mover): for the server's
     * log and the DMA's LOG_MESSAGE, naming tape, file and block, as a drive's
     * medium error would be reported (docs/tape-image.md, "Data CRCs").
     */
    private readonly onMediaError: (e: TapeMediaError) => void = () => {},
    /** The server's tape counters (./counters.ts), or null: nothing counted. */
    private readonly counters: SharedArrayBuffer | null = null,
  ) {
    this.publish();
  }

  /** Reports a failed read that is a medium error (the others are the caller's to say). */
  readFailed(e: unknown): void {
    if (e instanceof TapeMediaError) this.onMediaError(e);
  }

  /** Stores what the tape now is where the dispatcher reads it; called at every change. */
  private publish(): void {
    const word = !this.dev
      ? TapeWord.CLOSED
      : this.offline
        ? TapeWord.OFFLINE
        : this.mode === TapeOpenMode.NDMP_TAPE_READ_MODE
          ? TapeWord.READ
          : TapeWord.RDWR;
    Atomics.store(this.words, DRIVE_WORD_TAPE, word);
  }

  /**
   * The tape state table's verdict on `def` now, as the request executes
   * (the mover may have started using the tape since the dispatcher looked);
   * then the open device.
   */
  private admit(def: MessageDef): TapeDevice {
    admit(TAPE_STATE_TABLE, def, this.words, this.version);
    return this.dev!;
  }

  get isOpen(): boolean {
    return this.dev !== null;
  }

  /** The open device, for the mover; null when closed or offline. */
  get device(): TapeDevice | null {
    return this.offline ? null : this.dev;
  }

  get openedReadOnly(): boolean {
    return this.mode === TapeOpenMode.NDMP_TAPE_READ_MODE;
  }

  /** The mover wrote records through the device. */
  noteWrite(): void {
    this.writtenSinceMark = true;
  }

  open(path: string, mode: number, blankDefaults: TapeImageOptions): void {
    admit(TAPE_STATE_TABLE, M.TAPE_OPEN, this.words, this.version);
    const readOnly = mode === TapeOpenMode.NDMP_TAPE_READ_MODE;
    try {
      this.dev = countingDevice(openTapeImage(path, { readOnly, blankDefaults }), this.counters);
    } catch (e) {
      if (e instanceof TapeError && e.kind === 'write-protected') {
        throw new NdmpError(ErrorCode.NDMP_WRITE_PROTECT_ERR, 'the tape is write protected');
      }
      throw toNdmp(e);
    }
    this.mode = mode;
    this.writtenSinceMark = false;
    this.offline = false;
    this.publish();
  }

  close(): void {
    this.closeDevice(this.admit(M.TAPE_CLOSE));
  }

  /** Closes `dev`, ending its tape file first unless it is offline; closed even when that fails. */
  private closeDevice(dev: TapeDevice): void {
    try {
      if (!this.offline) this.endTapeFile(dev);
    } finally {
      this.dev = null;
      this.writtenSinceMark = false;
      this.offline = false;
      this.publish();
      dev.close();
    }
  }

  getState(): Omit<TapeGetStateReply, 'error'> {
    const dev = this.admit(M.TAPE_GET_STATE);
    const pos = dev.position();
    const space = dev.space();
    let flags = TapeStateFlags.NOREWIND as number; // closing never rewinds
    if (dev.writeProtected) flags |= TapeStateFlags.WR_PROT;
    if (this.offline) flags |= TapeStateFlags.UNLOAD;
    return {
      unsupported: 0,
      flags,
      fileNum: pos.fileNum,
      softErrors: 0,
      blockSize: 0, // variable-length records
      // On the BOT side of a filemark a drive that spaced or read up to it
      // cannot know its block number: "unknown", as ndmjob's test expects.
      blockno: pos.beforeFilemark && !pos.atBot ? INVALID_U32 : pos.blockNo,
      totalSpace: space.totalSpace,
      spaceRemain: space.spaceRemain,
    };
  }

  mtio(op: number, count: number): number {
    const dev = this.admit(M.TAPE_MTIO);
    const v3 = this.version === 3;
    const moved = () => (this.writtenSinceMark = false);
    switch (op) {
      case TapeMtioOp.NDMP_MTIO_FSF:
        moved();
        return dev.spaceFilemarks(count);
      case TapeMtioOp.NDMP_MTIO_BSF:
        moved();
        return dev.spaceFilemarks(-count);
      case TapeMtioOp.NDMP_MTIO_FSR:
        moved();
        return dev.spaceRecords(count, { crossFilemark: v3 });
      case TapeMtioOp.NDMP_MTIO_BSR:
        moved();
        return dev.spaceRecords(-count, { crossFilemark: v3 });
      case TapeMtioOp.NDMP_MTIO_REW:
        this.endTapeFile(dev);
        dev.rewind();
        return 0;
      case TapeMtioOp.NDMP_MTIO_EOF:
        if (this.openedReadOnly) throw new NdmpError(ErrorCode.NDMP_PERMISSION_ERR, 'tape opened read-only');
        // Filemarks take no tape space here, so an absurd count would only
        // grow the index for minutes; no DMA writes more than a few at once.
        if (count > MAX_FILEMARKS_PER_MTIO) {
          throw NdmpError.illegalArgs(`${count} filemarks at once (at most ${MAX_FILEMARKS_PER_MTIO})`);
        }
        try {
          dev.writeFilemarks(count);
        } catch (e) {
          throw toNdmp(e);
        }
        this.writtenSinceMark = false;
        return 0;
      case TapeMtioOp.NDMP_MTIO_OFF:
        this.endTapeFile(dev);
        dev.rewind();
        this.offline = true;
        this.publish();
        return 0;
      case TapeMtioOp.NDMP_MTIO_TUR:
        if (v3) throw NdmpError.illegalArgs('MTIO TUR is NDMP v4 only');
        return 0;
      default:
        throw NdmpError.illegalArgs(`unknown MTIO operation ${op}`);
    }
  }

  write(data: Uint8Array): number {
    // A tape opened for reading refuses it (the table's NDMP_PERMISSION_ERR).
    const dev = this.admit(M.TAPE_WRITE);
    // A zero-length write moves nothing and is no error (v4; ndmjob T-BW).
    if (data.length === 0) return 0;
    if (data.length > MAX_RECORD_SIZE) {
      throw NdmpError.illegalArgs(`record of ${data.length} bytes exceeds ${MAX_RECORD_SIZE}`);
    }
    let earlyWarning: boolean;
    try {
      earlyWarning = dev.writeRecord(data).earlyWarning;
    } catch (e) {
      if (e instanceof TapeError && e.kind === 'eom') {
        throw new NdmpError(ErrorCode.NDMP_EOM_ERR, 'end of medium', 'body', { count: 0 });
      }
      throw toNdmp(e);
    }
    this.writtenSinceMark = true;
    // Inside the early-warning zone the record is written and the drive says
    // EOM, so the DMA can finish the tape file and change tapes.
    if (earlyWarning) {
      throw new NdmpError(ErrorCode.NDMP_EOM_ERR, 'early warning: near end of medium', 'body', {
        count: data.length,
      });
    }
    return data.length;
  }

  read(count: number): Uint8Array {
    const dev = this.admit(M.TAPE_READ);
    if (count === 0) return new Uint8Array(0);
    if (count > MAX_RECORD_SIZE) {
      throw NdmpError.illegalArgs(`read of ${count} bytes exceeds the largest record (${MAX_RECORD_SIZE})`);
    }
    const target = new Uint8Array(new ArrayBuffer(count));
    const v3 = this.version === 3;
    let r;
    try {
      r = dev.readRecord(target, { crossFilemark: v3 });
    } catch (e) {
      this.readFailed(e);
      throw toNdmp(e);
    }
    switch (r.kind) {
      case 'record':
        // A longer record is cut to what was asked; the rest is dropped (docs/protocol.md §3.5, draft §3.4.7).
        return target.subarray(0, r.copied);
      case 'filemark':
        throw new NdmpError(ErrorCode.NDMP_EOF_ERR, 'filemark');
      case 'eod':
        throw new NdmpError(v3 ? ErrorCode.NDMP_EOF_ERR : ErrorCode.NDMP_EOM_ERR, 'end of data');
    }
  }

  /** Writes the filemark a tape file still lacks after writes (see writtenSinceMark). */
  private endTapeFile(dev: TapeDevice): void {
    if (!this.writtenSinceMark) return;
    this.writtenSinceMark = false;
    try {
      dev.writeFilemarks(1);
    } catch (e) {
      throw toNdmp(e);
    }
  }

  /** The session ends: close as TAPE_CLOSE would, never throwing. */
  shutdown(): void {
    if (!this.dev) return;
    try {
      this.closeDevice(this.dev);
    } catch {
      // The device is gone either way.
    }
  }
}

/** A device failure as the NDMP error a DMA understands. */
export function toNdmp(e: unknown): NdmpError {
  if (e instanceof NdmpError) return e;
  if (e instanceof TapeError) {
    switch (e.kind) {
      case 'eom':
        return new NdmpError(ErrorCode.NDMP_EOM_ERR, e.message);
      case 'write-protected':
        return new NdmpError(ErrorCode.NDMP_WRITE_PROTECT_ERR, e.message);
      case 'illegal-args':
        return NdmpError.illegalArgs(e.message);
      case 'closed':
        return new NdmpError(ErrorCode.NDMP_DEV_NOT_OPEN_ERR, e.message);
      // 'media': a record that fails its data CRC, a drive's unrecoverable read error (docs/tape-image.md, "Data CRCs").
      case 'bad-image':
      case 'io':
      case 'media':
        return new NdmpError(ErrorCode.NDMP_IO_ERR, e.message);
    }
  }
  return new NdmpError(ErrorCode.NDMP_IO_ERR, e instanceof Error ? e.message : String(e));
}
