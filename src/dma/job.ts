// What backup and restore jobs share: the two agents (one connection when the
// data and tape services are on one server, the stream then LOCAL; two for
// three-way, over TCP), their halt and pause notifications, the mover set-up
// in each version's order, tape positioning, and the tidy end.

import {
  AddrType,
  DataHaltReason,
  DataState,
  ErrorCode,
  LogType,
  M,
  MoverHaltReason,
  MoverMode,
  MoverPauseReason,
  MoverState,
  NdmpError,
  TapeMtioOp,
  TapeOpenMode,
  TransportError,
  nameOf,
} from '../wire/index.js';
import type { Addr } from '../wire/index.js';
import type { NdmpClient } from './client.js';
import { CodedError } from '../util/coded-error.js';
import { WAITS, seconds } from './waits.js';

export interface Halt {
  reason: number;
  /** The protocol name without its prefix: SUCCESSFUL, ABORTED, CONNECT_CLOSED... */
  name: string;
  text: string;
}

export interface Pause {
  reason: number;
  name: string;
  seekPosition: bigint;
}

function shortName(table: Readonly<Record<string, number>>, value: number, prefix: string): string {
  return nameOf(table, value).replace(prefix, '');
}

/** Where the stream goes: the mover's mode names the direction from the tape's side. */
export type StreamDirection = 'backup' | 'recover';

const END_OF_DATA = new Set<number>([ErrorCode.NDMP_EOF_ERR, ErrorCode.NDMP_EOM_ERR]);

/** A tape that does not hold the tape file the catalog says it does. */
export class TapePositionError extends CodedError {
  readonly code = 'DMA_TAPE_POSITION';
  constructor(message: string) {
    super(message);
    this.name = 'TapePositionError';
  }
}

/** How a LOG_MESSAGE's log_type reads to a person. */
export function levelOfLog(t: number): 'info' | 'warning' | 'error' {
  if (t === LogType.NDMP_LOG_ERROR) return 'error';
  if (t === LogType.NDMP_LOG_WARNING) return 'warning';
  return 'info';
}

export class JobLink {
  dataHalt: Halt | null = null;
  moverHalt: Halt | null = null;
  private readonly pauses: Pause[] = [];
  private wake: (() => void) | null = null;
  /** Set by connectStream: which side waits on the other decides the order of an abort. */
  private direction: StreamDirection = 'backup';

  /** Rewinds and spacing take minutes on real drives: far longer than a reply's usual timeout. */
  private readonly tapeMotion: { timeoutMs: number };

  constructor(
    readonly data: NdmpClient,
    readonly tape: NdmpClient,
    tapeMotionMs: number = WAITS.tapeMotionMs,
  ) {
    this.tapeMotion = { timeoutMs: tapeMotionMs };
    data.onPost(M.NOTIFY_DATA_HALTED, (b) => {
      this.dataHalt = {
        reason: b.reason,
        name: shortName(DataHaltReason, b.reason, 'NDMP_DATA_HALT_'),
        text: b.textReason ?? '',
      };
      this.poke();
    });
    tape.onPost(M.NOTIFY_MOVER_HALTED, (b) => {
      this.moverHalt = {
        reason: b.reason,
        name: shortName(MoverHaltReason, b.reason, 'NDMP_MOVER_HALT_'),
        text: b.textReason ?? '',
      };
      this.poke();
    });
    tape.onPost(M.NOTIFY_MOVER_PAUSED, (b) => {
      this.pauses.push({
        reason: b.reason,
        name: shortName(MoverPauseReason, b.reason, 'NDMP_MOVER_PAUSE_'),
        seekPosition: b.seekPosition,
      });
      this.poke();
    });
  }

  /**
   * A job with no data service (`ndmp verify`: the DMA reads the stream
   * itself): the tape connection only. Its data side counts as halted from
   * the start, so aborts and teardowns address the mover alone.
   */
  static tapeOnly(tape: NdmpClient, tapeMotionMs: number = WAITS.tapeMotionMs): JobLink {
    const link = new JobLink(tape, tape, tapeMotionMs);
    link.noDataSide = true;
    link.dataHalt = { reason: 0, name: 'NA', text: 'no data service in this job' };
    return link;
  }

  private noDataSide = false;

  /** Data and tape services on one connection: the stream stays inside the server. */
  get local(): boolean {
    return this.data === this.tape && !this.noDataSide;
  }

  /**
   * For a DMA that is the data side itself: MOVER_LISTEN over TCP in mode
   * WRITE (tape to network), with the window set where each version allows it
   * (docs/protocol.md §7.5). Returns the address the DMA connects to.
   */
  async listenForDma(window: { offset: bigint; length: bigint }): Promise<Addr> {
    this.direction = 'recover';
    if (this.tape.version === 4) await this.tape.call(M.MOVER_SET_WINDOW, window);
    const { connectAddr } = await this.tape.call(M.MOVER_LISTEN, {
      mode: MoverMode.NDMP_MOVER_MODE_WRITE,
      addrType: AddrType.NDMP_ADDR_TCP,
    });
    if (this.tape.version !== 4) await this.tape.call(M.MOVER_SET_WINDOW, window);
    return connectAddr;
  }

  private poke(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  /** Waits for a notification, or `ms`, or a connection loss (whichever is first). */
  async next(ms: number): Promise<void> {
    if (this.pauses.length > 0 || this.data.closed || this.tape.closed) return;
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        this.wake = null;
        resolve();
      }, ms);
      this.wake = () => {
        clearTimeout(t);
        resolve();
      };
    });
  }

  takePause(): Pause | undefined {
    return this.pauses.shift();
  }

  /** A lost control connection, as an error to end the job with. */
  lost(): TransportError | null {
    for (const [client, who] of [
      [this.data, this.local ? 'the server' : 'the data server'],
      [this.tape, 'the tape server'],
    ] as const) {
      const why = client.closedReason;
      if (!why) continue;
      if (why.code === 'NDMP_TIMEOUT') {
        // We gave up on it (NdmpClient's abandonOnTimeout): the message says what was not answered.
        return new TransportError(
          'NDMP_TIMEOUT',
          `${why.message}: ${who} stopped answering, so the job was abandoned and its connection closed ` +
            '(the server aborts the job when it sees that); check that it runs (its log), then run the job again',
        );
      }
      return new TransportError(
        'NDMP_CONNECTION_CLOSED',
        `${who} (${client.peer}) closed the connection (${why.message}): see its log for why, then run the job again`,
      );
    }
    return null;
  }

  /**
   * MOVER_LISTEN and DATA_CONNECT, with the window set where each version
   * allows it: v4 sets it before LISTEN, v3 after (docs/protocol.md §7.5).
   */
  async connectStream(direction: StreamDirection, window: { offset: bigint; length: bigint }): Promise<void> {
    // The mover's mode is named from the data connection's side: READ it for a backup, WRITE it for a recover.
    const mode = direction === 'backup' ? MoverMode.NDMP_MOVER_MODE_READ : MoverMode.NDMP_MOVER_MODE_WRITE;
    const addrType = this.local ? AddrType.NDMP_ADDR_LOCAL : AddrType.NDMP_ADDR_TCP;
    this.direction = direction;
    if (this.tape.version === 4) await this.tape.call(M.MOVER_SET_WINDOW, window);
    const { connectAddr } = await this.tape.call(M.MOVER_LISTEN, { mode, addrType });
    if (this.tape.version !== 4) await this.tape.call(M.MOVER_SET_WINDOW, window);
    await this.data.call(M.DATA_CONNECT, {
      addr: this.local ? { addrType: AddrType.NDMP_ADDR_LOCAL } : connectAddr,
    });
  }

  /** Opens a tape and spaces to the start of tape file `file` (0: from the beginning). */
  async openAt(device: string, mode: 'read' | 'write', file: number): Promise<void> {
    await this.tape.call(
      M.TAPE_OPEN,
      { device, mode: mode === 'read' ? TapeOpenMode.NDMP_TAPE_READ_MODE : TapeOpenMode.NDMP_TAPE_RDWR_MODE },
      this.tapeMotion,
    );
    await this.tape.call(M.TAPE_MTIO, { tapeOp: TapeMtioOp.NDMP_MTIO_REW, count: 1 }, this.tapeMotion);
    if (file > 0) {
      const r = await this.tape.call(
        M.TAPE_MTIO,
        { tapeOp: TapeMtioOp.NDMP_MTIO_FSF, count: file },
        this.tapeMotion,
      );
      if (r.residCount !== 0) {
        throw new TapePositionError(
          `${device} has ${file - r.residCount} tape files; file ${file} was wanted`,
        );
      }
    }
  }

  /**
   * Opens a tape for writing after what it already holds: spaces over its
   * filemarks until the end of data, and returns the new tape file's number.
   * Nothing on a tape is ever overwritten.
   */
  async openForAppend(device: string): Promise<number> {
    await this.openAt(device, 'write', 0);
    let files = 0;
    for (;;) {
      try {
        const r = await this.tape.call(
          M.TAPE_MTIO,
          { tapeOp: TapeMtioOp.NDMP_MTIO_FSF, count: 1 },
          this.tapeMotion,
        );
        if (r.residCount !== 0) break;
      } catch (e) {
        // End of data answers EOF or EOM (versions and servers differ): we are there.
        // Any other error leaves us inside a tape file: writing there would destroy what follows.
        if (e instanceof NdmpError && END_OF_DATA.has(e.ndmpError)) break;
        throw e;
      }
      files++;
    }
    return files;
  }

  /**
   * Stops what is still running, then returns both services to IDLE and
   * closes the tape. Never throws. Each request has the connection's timeout;
   * a connection abandoned on a timeout fails them at once.
   */
  async teardown(): Promise<void> {
    const quiet = async (f: () => Promise<unknown>) => {
      try {
        await f();
      } catch {
        /* already idle, or the connection is gone */
      }
    };
    await this.abort();
    if (!this.noDataSide) await quiet(() => this.data.call(M.DATA_STOP, {}));
    await quiet(() => this.tape.call(M.MOVER_STOP, {}));
    await quiet(() => this.tape.call(M.TAPE_CLOSE, {}));
  }

  /**
   * Asks each side whose halt has not been announced for its state: some
   * agents (ndmjob's mover after MOVER_CLOSE) halt without a NOTIFY.
   */
  private async pollHalts(): Promise<void> {
    if (!this.moverHalt) {
      const st = await this.tape.call(M.MOVER_GET_STATE, {}).catch(() => null);
      if (st && st.state === MoverState.NDMP_MOVER_STATE_HALTED) {
        this.moverHalt = {
          reason: st.haltReason,
          name: shortName(MoverHaltReason, st.haltReason, 'NDMP_MOVER_HALT_'),
          text: '',
        };
      }
    }
    if (!this.dataHalt) {
      const st = await this.data.call(M.DATA_GET_STATE, {}).catch(() => null);
      if (st && st.state === DataState.NDMP_DATA_STATE_HALTED) {
        this.dataHalt = {
          reason: st.haltReason,
          name: shortName(DataHaltReason, st.haltReason, 'NDMP_DATA_HALT_'),
          text: '',
        };
      }
    }
  }

  /** Whether abort() was called. */
  aborted = false;

  /**
   * Aborts each side that has not halted; once per job (later calls do
   * nothing). Never throws. The side that waits on the other goes first: a
   * backup's mover (it may sit paused at the end of a tape, and the data side
   * then sees its stream closed), a recover's data side (it waits for bytes).
   */
  async abort(): Promise<void> {
    if (this.aborted) return;
    this.aborted = true;
    const data = async () => {
      if (!this.dataHalt) await this.data.call(M.DATA_ABORT, {}).catch(() => undefined);
    };
    const mover = async () => {
      if (!this.moverHalt) await this.tape.call(M.MOVER_ABORT, {}).catch(() => undefined);
    };
    if (this.direction === 'backup') {
      await mover();
      await data();
    } else {
      await data();
      await mover();
    }
  }

  /**
   * Waits until both sides have halted, aborting them if they linger past
   * `graceMs`, and gives up `graceMs` after that. Returns what is still
   * running (null once both halted), for the job's message.
   */
  async waitBothHalted(graceMs: number): Promise<string | null> {
    const deadline = Date.now() + graceMs;
    while (!(this.dataHalt && this.moverHalt)) {
      const gone = this.lost();
      if (gone) throw gone;
      if (Date.now() > deadline) await this.abort();
      await this.next(200);
      await this.pollHalts();
      if (Date.now() > deadline + graceMs) break;
    }
    const running = [!this.dataHalt && 'the data service', !this.moverHalt && 'the mover'].filter(Boolean);
    if (running.length === 0) return null;
    return (
      `${running.join(' and ')} did not halt in ${seconds(2 * graceMs)}, though aborted: ` +
      'the server may be stuck; see its log (the job is ended on this side)'
    );
  }
}
