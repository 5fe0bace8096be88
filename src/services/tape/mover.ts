// The NDMP mover of one session, run on its drive thread (docs/protocol.md §7.2,
// §7.3, draft §3.6, Appendix D). It moves the backup stream between a data
// connection and the tape:
//
//   mode READ  (backup):  data connection ──► record_size records ──► tape
//   mode WRITE (recover): tape ──► records ──► the byte ranges MOVER_READ asks for ──► data connection
//
// Which state allows which request is ./state-rules.ts (each request begins
// with admit()); every entry into PAUSED or HALTED goes through
// pause()/halt(), which post the notify.
//
//   IDLE ─LISTEN─► LISTEN ─peer connects─► ACTIVE ⇄ PAUSED (EOM, EOF, SEEK, EOW / CONTINUE)
//     └──CONNECT──────────────────────────► ACTIVE ──► HALTED ─STOP─► IDLE

import type net from 'node:net';
import { TapeError } from '../../devices/tape.js';
import type { BatchWriteResult } from '../../devices/tape.js';
import {
  AddrType,
  ErrorCode,
  INVALID_U64,
  MoverHaltReason,
  MoverMode,
  MoverPauseReason,
  MoverState,
  M,
  NdmpError,
} from '../../wire/index.js';
import type { Addr, MessageDef, MoverGetStateReply, NdmpVersion } from '../../wire/index.js';
import { admit } from '../state-table.js';
import {
  DRIVE_WORD_MOVER_MODE,
  DRIVE_WORD_MOVER_STATE,
  MOVER_STATE_TABLE,
  moverModeName as modeName,
} from './state-rules.js';
import type { PortRange } from '../session.js';
import { connectToAny, drained, listenForData } from '../data-connection.js';
import { SpscRing } from '../../ring/spsc-ring.js';
import type { TapeDrive } from './tape-drive.js';
import { toNdmp } from './tape-drive.js';

/** ndmjob and other servers start at 10240 bytes (20 × 512), and test-mover relies on a non-zero default. */
export const DEFAULT_RECORD_SIZE = 10240;
/** Recover: records served between two turns of the event loop when the peer never pushes back. */
const YIELD_EVERY_RECORDS = 16;
/** Records per tape write when whole records wait in the ring (640 KiB at the default size). */
const MAX_RECORDS_PER_WRITE = 64;
/** Records are cut from the stream and written whole: bounded by what the tape holds. */
const MAX_MOVER_RECORD = 4 * 1024 * 1024;

export interface MoverHooks {
  paused(reason: number, seekPosition: bigint): void;
  halted(reason: number, text: string): void;
  log(level: 'debug' | 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>): void;
}

export interface MoverOptions {
  readonly version: NdmpVersion;
  readonly dataPorts: PortRange;
  readonly localAddress: string;
  readonly dataAddress: string | null;
}

const S = MoverState;

export class Mover {
  private pauseReason: number = MoverPauseReason.NDMP_MOVER_PAUSE_NA;
  private haltReason: number = MoverHaltReason.NDMP_MOVER_HALT_NA;
  private recordSize = DEFAULT_RECORD_SIZE;
  private recordNum = 0;
  private bytesMoved = 0n;
  private seekPosition = 0n;
  private bytesLeftToRead = 0n;
  private windowOffset = 0n;
  private windowLength = 0n;
  private dataAddr: Addr = { addrType: AddrType.NDMP_ADDR_LOCAL };

  private server: net.Server | null = null;
  private socket: net.Socket | null = null;
  /** LOCAL: the byte ring shared with this server's data service (backup: we consume it; recover: we fill it). */
  private ring: SpscRing | null = null;
  private ringPumping = false;
  /** LOCAL recover: looks now and then whether the data service has finished with the stream. */
  private ringWatch: ReturnType<typeof setInterval> | null = null;

  // Backup (mode READ): stream bytes not yet cut into a record.
  private readonly input: Buffer[] = [];
  private inputEnded = false;
  private record: Buffer = Buffer.alloc(0);
  private recordFill = 0;
  /** Stream bytes in the record in hand (less than a record only for the padded last one). */
  private recordPayload = 0;
  /** Stream offset of the next record to write (records are aligned to record_size). */
  private streamOffset = 0n;

  // Recover (mode WRITE): the pending MOVER_READ and the stream offset of the tape's position.
  private readPending: { offset: bigint; length: bigint } | null = null;
  private tapeStreamOffset = 0n;
  private serving = false;

  /**
   * `words`: the drive thread's shared state words (./state-rules.ts); the
   * mover's state and mode live there, where the dispatcher reads them.
   */
  constructor(
    private readonly tape: TapeDrive,
    private readonly opts: MoverOptions,
    private readonly hooks: MoverHooks,
    private readonly words: Int32Array,
  ) {
    this.mode = MoverMode.NDMP_MOVER_MODE_NOACTION;
    this.state = S.NDMP_MOVER_STATE_IDLE;
  }

  private get state(): number {
    return Atomics.load(this.words, DRIVE_WORD_MOVER_STATE);
  }
  private set state(state: number) {
    Atomics.store(this.words, DRIVE_WORD_MOVER_STATE, state);
  }
  private get mode(): number {
    return Atomics.load(this.words, DRIVE_WORD_MOVER_MODE);
  }
  private set mode(mode: number) {
    Atomics.store(this.words, DRIVE_WORD_MOVER_MODE, mode);
  }

  /**
   * The mover state table's verdict on `def` now, as the request executes:
   * the mover may have paused or halted since the dispatcher looked.
   */
  private admit(def: MessageDef): void {
    admit(MOVER_STATE_TABLE, def, this.words, this.opts.version);
  }

  getState(): Omit<MoverGetStateReply, 'error'> {
    return {
      mode: this.mode,
      state: this.state,
      pauseReason: this.pauseReason,
      haltReason: this.haltReason,
      recordSize: this.recordSize,
      recordNum: this.recordNum >>> 0,
      bytesMoved: this.bytesMoved,
      seekPosition: this.seekPosition,
      bytesLeftToRead: this.bytesLeftToRead,
      windowOffset: this.windowOffset,
      windowLength: this.windowLength,
      dataConnectionAddr: this.dataAddr,
    };
  }

  setRecordSize(len: number): void {
    this.admit(M.MOVER_SET_RECORD_SIZE);
    if (len === 0 || len > MAX_MOVER_RECORD) {
      throw NdmpError.illegalArgs(`record size ${len} is not in 1..${MAX_MOVER_RECORD}`);
    }
    this.recordSize = len;
    // A new record size invalidates the window (docs/protocol.md §7.2, draft §3.6.2.1).
    this.windowOffset = 0n;
    this.windowLength = 0n;
  }

  setWindow(offset: bigint, length: bigint): void {
    this.admit(M.MOVER_SET_WINDOW);
    const rs = BigInt(this.recordSize);
    if (offset % rs !== 0n) throw NdmpError.illegalArgs(`window offset ${offset} is not a multiple of ${rs}`);
    // Length 0 is accepted: ndmjob's test-mover sets (0, 0) in IDLE and expects success.
    if (length !== INVALID_U64 && length % rs !== 0n) {
      throw NdmpError.illegalArgs(`window length ${length} is not a multiple of ${rs}`);
    }
    if (length !== INVALID_U64 && offset + length > INVALID_U64) {
      throw NdmpError.illegalArgs('window ends beyond 2^64');
    }
    this.windowOffset = offset;
    this.windowLength = length;
    this.recordNum = Number(offset / rs);
    // The tape is where the window starts: on recover, reads are measured from here.
    this.tapeStreamOffset = offset;
  }

  async listen(mode: number, addrType: number): Promise<Addr> {
    this.admit(M.MOVER_LISTEN);
    this.checkStart(mode, addrType);
    if (addrType === AddrType.NDMP_ADDR_LOCAL) {
      // The stream will come from this server's own data service (LOCAL).
      this.enter(S.NDMP_MOVER_STATE_LISTEN, mode);
      this.dataAddr = { addrType: AddrType.NDMP_ADDR_LOCAL };
      return this.dataAddr;
    }
    const { server, port, ipAddrs } = await listenForData(this.opts);
    this.server = server;
    server.on('connection', (sock) => this.onAccept(sock));
    // An accept failure (EMFILE, say) ends the listen, not the drive thread.
    server.on('error', (e: NodeJS.ErrnoException) => {
      if (this.server !== server) return;
      this.halt(
        MoverHaltReason.NDMP_MOVER_HALT_CONNECT_ERROR,
        `data listener failed: ${e.code ?? e.message}`,
      );
    });
    this.enter(S.NDMP_MOVER_STATE_LISTEN, mode);
    // v4 carries every address in preference order; v3 only the first.
    this.dataAddr = {
      addrType: AddrType.NDMP_ADDR_TCP,
      tcpAddrs: ipAddrs.map((ipAddr) => ({ ipAddr, port, addrEnv: [] })),
    };
    this.hooks.log('info', 'mover listening', { port, mode: modeName(mode) });
    return this.dataAddr;
  }

  async connect(mode: number, addr: Addr): Promise<void> {
    this.admit(M.MOVER_CONNECT);
    this.checkStart(mode, addr.addrType);
    if (addr.addrType !== AddrType.NDMP_ADDR_TCP) {
      // LOCAL needs this server's data service in LISTEN, which it is not.
      throw NdmpError.illegalState('the data service is not listening for a LOCAL connection');
    }
    const { sock, addr: used, where } = await connectToAny(addr.tcpAddrs, 'data service');
    this.enter(S.NDMP_MOVER_STATE_ACTIVE, mode);
    this.dataAddr = { addrType: AddrType.NDMP_ADDR_TCP, tcpAddrs: [used] };
    this.hooks.log('info', 'mover connected', { peer: where, mode: modeName(mode) });
    this.attach(sock);
  }

  /**
   * LOCAL connection (docs/protocol.md §7.6): the data service of this session
   * connects to our LISTEN(LOCAL), or we connect to its LISTEN(LOCAL) in
   * `mode`. Either way the stream arrives through a shared byte ring.
   */
  attachLocal(sab: SharedArrayBuffer, connectMode: number | null): void {
    if (connectMode === null) {
      if (this.state !== S.NDMP_MOVER_STATE_LISTEN || this.dataAddr.addrType !== AddrType.NDMP_ADDR_LOCAL) {
        throw NdmpError.illegalState('the mover is not listening for a LOCAL connection');
      }
    } else {
      this.admit(M.MOVER_CONNECT);
      this.checkStart(connectMode, AddrType.NDMP_ADDR_LOCAL);
      this.mode = connectMode;
    }
    this.ring = new SpscRing(sab);
    this.enter(S.NDMP_MOVER_STATE_ACTIVE, this.mode);
    this.dataAddr = { addrType: AddrType.NDMP_ADDR_LOCAL };
    if (this.mode === MoverMode.NDMP_MOVER_MODE_WRITE) {
      // Recover: MOVER_READs are served into the ring. The data service ends
      // the stream by aborting the ring (it has all it wants); between reads
      // nothing else would tell us, and ndmjob expects the mover to halt then.
      this.tapeStreamOffset = this.windowOffset;
      const ring = this.ring;
      this.ringWatch = setInterval(() => {
        if (ring.aborted && this.ring === ring) this.dataSideDone();
      }, 50);
      this.hooks.log('info', 'mover connected to the local data service (recover)');
      return;
    }
    this.record = Buffer.allocUnsafe(this.recordSize);
    this.recordFill = 0;
    this.recordPayload = this.recordSize;
    this.streamOffset = this.windowOffset;
    this.hooks.log('info', 'mover connected to the local data service');
    void this.pumpRing();
  }

  /** Undoes attachLocal when the data side could not complete the connection. */
  detachLocal(): void {
    if (!this.ring) return;
    this.ring.abort();
    this.ring = null;
    this.state = S.NDMP_MOVER_STATE_IDLE;
    this.mode = MoverMode.NDMP_MOVER_MODE_NOACTION;
  }

  continue(): void {
    this.admit(M.MOVER_CONTINUE);
    this.state = S.NDMP_MOVER_STATE_ACTIVE;
    this.pauseReason = MoverPauseReason.NDMP_MOVER_PAUSE_NA;
    this.hooks.log('debug', 'mover continues');
    this.kick();
  }

  abort(reason = 'aborted by the DMA'): void {
    this.admit(M.MOVER_ABORT);
    this.halt(MoverHaltReason.NDMP_MOVER_HALT_ABORTED, reason);
  }

  stop(): void {
    this.admit(M.MOVER_STOP);
    // Back to IDLE: everything resets except the record size (docs/protocol.md §7.2, draft §3.6.2.10).
    this.state = S.NDMP_MOVER_STATE_IDLE;
    this.mode = MoverMode.NDMP_MOVER_MODE_NOACTION;
    this.pauseReason = MoverPauseReason.NDMP_MOVER_PAUSE_NA;
    this.haltReason = MoverHaltReason.NDMP_MOVER_HALT_NA;
    this.recordNum = 0;
    this.bytesMoved = 0n;
    this.seekPosition = 0n;
    this.bytesLeftToRead = 0n;
    this.windowOffset = 0n;
    this.windowLength = 0n;
    this.dataAddr = { addrType: AddrType.NDMP_ADDR_LOCAL };
    this.streamOffset = 0n;
    this.tapeStreamOffset = 0n;
  }

  /** MOVER_CLOSE: the DMA ends the data connection (after a pause, or a recover that is done). */
  close(): void {
    this.admit(M.MOVER_CLOSE);
    this.halt(MoverHaltReason.NDMP_MOVER_HALT_CONNECT_CLOSED, 'closed by the DMA');
  }

  read(offset: bigint, length: bigint): void {
    this.admit(M.MOVER_READ);
    if (this.readPending) throw new NdmpError(ErrorCode.NDMP_READ_IN_PROGRESS_ERR, 'a read is in progress');
    // Nothing asked, nothing read: the tape does not move.
    if (length === 0n) return;
    this.readPending = { offset, length };
    this.bytesLeftToRead = length;
    this.kick();
  }

  /** The session ends: whatever the mover is doing stops now. */
  shutdown(): void {
    if (this.state !== S.NDMP_MOVER_STATE_IDLE && this.state !== S.NDMP_MOVER_STATE_HALTED) {
      this.halt(MoverHaltReason.NDMP_MOVER_HALT_ABORTED, 'session closed');
    }
    this.dropConnection();
  }

  // ---- transitions -----------------------------------------------------------

  /** LISTEN / CONNECT preconditions, in the order ndmjob's test-mover checks them. */
  private checkStart(mode: number, addrType: number): void {
    if (mode !== MoverMode.NDMP_MOVER_MODE_READ && mode !== MoverMode.NDMP_MOVER_MODE_WRITE) {
      throw NdmpError.illegalArgs(`mover mode ${mode} is not READ or WRITE`);
    }
    if (addrType !== AddrType.NDMP_ADDR_LOCAL && addrType !== AddrType.NDMP_ADDR_TCP) {
      throw NdmpError.illegalArgs(`address type ${addrType} is not supported`);
    }
    if (!this.tape.isOpen) throw new NdmpError(ErrorCode.NDMP_DEV_NOT_OPEN_ERR, 'no tape is open');
    // Mode READ writes the tape (it reads the network).
    if (mode === MoverMode.NDMP_MOVER_MODE_READ && this.tape.openedReadOnly) {
      throw new NdmpError(ErrorCode.NDMP_PERMISSION_ERR, 'the tape is open read-only');
    }
  }

  private enter(state: number, mode: number): void {
    // The mode first: a dispatcher that sees ACTIVE must see its mode too.
    this.mode = mode;
    this.state = state;
    this.pauseReason = MoverPauseReason.NDMP_MOVER_PAUSE_NA;
    this.haltReason = MoverHaltReason.NDMP_MOVER_HALT_NA;
  }

  private pause(reason: number, seekPosition: bigint): void {
    this.state = S.NDMP_MOVER_STATE_PAUSED;
    this.pauseReason = reason;
    this.seekPosition = seekPosition;
    // Backup: stop taking stream bytes. Recover: keep listening, so the data
    // service closing its end still halts a paused mover (ndmjob counts on it).
    if (this.mode === MoverMode.NDMP_MOVER_MODE_READ) this.socket?.pause();
    this.hooks.log('info', 'mover paused', { reason: pauseName(reason), seekPosition: String(seekPosition) });
    this.hooks.paused(reason, seekPosition);
  }

  private halt(reason: number, text: string): void {
    if (this.state === S.NDMP_MOVER_STATE_HALTED || this.state === S.NDMP_MOVER_STATE_IDLE) return;
    this.state = S.NDMP_MOVER_STATE_HALTED;
    this.pauseReason = MoverPauseReason.NDMP_MOVER_PAUSE_NA;
    this.haltReason = reason;
    this.readPending = null;
    this.bytesLeftToRead = 0n;
    this.dropConnection();
    this.hooks.log(
      reason === MoverHaltReason.NDMP_MOVER_HALT_CONNECT_CLOSED ? 'info' : 'warn',
      'mover halted',
      {
        reason: haltName(reason),
        text,
        bytesMoved: String(this.bytesMoved),
      },
    );
    this.hooks.halted(reason, text);
  }

  private dropConnection(): void {
    this.server?.close();
    this.server = null;
    if (this.ringWatch) clearInterval(this.ringWatch);
    this.ringWatch = null;
    // Backup: the data service, if it still produces, stops at its next write.
    // Recover: it reads what is in the ring, then sees the end of the stream.
    if (this.mode === MoverMode.NDMP_MOVER_MODE_WRITE) this.ring?.close();
    else this.ring?.abort();
    this.ring = null;
    if (this.socket) {
      this.socket.removeAllListeners('data');
      this.socket.destroy();
      this.socket = null;
    }
    this.input.length = 0;
    this.inputEnded = false;
    this.recordFill = 0;
  }

  // ---- the data connection ---------------------------------------------------

  private onAccept(sock: net.Socket): void {
    if (this.state !== S.NDMP_MOVER_STATE_LISTEN || this.socket) {
      sock.destroy();
      return;
    }
    this.server?.close();
    this.server = null;
    this.hooks.log('info', 'data connection accepted', { peer: `${sock.remoteAddress}:${sock.remotePort}` });
    this.state = S.NDMP_MOVER_STATE_ACTIVE;
    this.attach(sock);
  }

  private attach(sock: net.Socket): void {
    this.socket = sock;
    sock.setNoDelay(true);
    this.tapeStreamOffset = this.windowOffset;
    sock.on('error', (e: NodeJS.ErrnoException) => {
      if (this.socket !== sock) return;
      // Recover: the data service hangs up once it has what it asked for, and
      // bytes we sent that it never read turn its close into a reset. That is
      // its end of the stream, not a failure.
      if (this.mode === MoverMode.NDMP_MOVER_MODE_WRITE && (e.code === 'ECONNRESET' || e.code === 'EPIPE')) {
        this.halt(
          MoverHaltReason.NDMP_MOVER_HALT_CONNECT_CLOSED,
          'the data service closed the data connection',
        );
        return;
      }
      this.halt(
        MoverHaltReason.NDMP_MOVER_HALT_CONNECT_ERROR,
        `data connection failed: ${e.code ?? e.message}`,
      );
    });
    if (this.mode === MoverMode.NDMP_MOVER_MODE_READ) {
      this.record = Buffer.allocUnsafe(this.recordSize);
      this.recordFill = 0;
      this.recordPayload = this.recordSize;
      // The stream starts where the window does (normally 0).
      this.streamOffset = this.windowOffset;
      sock.on('data', (chunk: Buffer) => {
        this.input.push(chunk);
        this.pump();
      });
      sock.on('end', () => {
        this.inputEnded = true;
        this.pump();
      });
    } else {
      // Recover: the data service only reads; its end of the stream ends ours.
      sock.on('end', () => {
        if (this.socket === sock)
          this.halt(MoverHaltReason.NDMP_MOVER_HALT_CONNECT_CLOSED, 'data connection closed');
      });
      sock.on('data', () => undefined);
    }
    sock.resume();
  }

  private kick(): void {
    if (this.mode === MoverMode.NDMP_MOVER_MODE_READ) {
      if (this.ring) void this.pumpRing();
      else this.pump();
    } else void this.serve();
  }

  /** Recover: the data service closed its end; the stream is over (App. D.1's mirror image). */
  private dataSideDone(): void {
    if (this.state === S.NDMP_MOVER_STATE_ACTIVE || this.state === S.NDMP_MOVER_STATE_PAUSED)
      this.halt(
        MoverHaltReason.NDMP_MOVER_HALT_CONNECT_CLOSED,
        'the data service closed the data connection',
      );
  }

  /**
   * Backup over LOCAL: records are cut straight from the ring; when it is
   * empty we wait for the data service, without blocking this thread's
   * requests (GET_STATE, ABORT).
   */
  private async pumpRing(): Promise<void> {
    if (this.ringPumping) return;
    this.ringPumping = true;
    try {
      for (let n = 1; this.state === S.NDMP_MOVER_STATE_ACTIVE && this.ring; n++) {
        const ring = this.ring;
        // Whole records waiting in the ring go to tape straight from its memory, many per write.
        if (this.recordFill === 0) {
          const batch = this.writeFromRing(ring);
          if (batch === 'stop') return;
          if (batch === 'wrote') {
            if (n % YIELD_EVERY_RECORDS === 0) await new Promise((r) => setImmediate(r));
            continue;
          }
        }
        while (this.recordFill < this.recordSize) {
          const { first, second } = ring.peek();
          if (first.length === 0) break;
          let taken = Math.min(first.length, this.recordSize - this.recordFill);
          this.record.set(first.subarray(0, taken), this.recordFill);
          this.recordFill += taken;
          if (this.recordFill < this.recordSize && second.length > 0) {
            const more = Math.min(second.length, this.recordSize - this.recordFill);
            this.record.set(second.subarray(0, more), this.recordFill);
            this.recordFill += more;
            taken += more;
          }
          ring.consume(taken);
        }
        if (this.recordFill < this.recordSize) {
          if (ring.ended) {
            if (!this.endOfStream()) return;
            continue;
          }
          // Wake for a full batch, not for each publish: a wake-up costs the
          // producer a notify and this thread a turn of its loop, and one per
          // record was a quarter of a small-file backup's CPU (docs/design.md,
          // "Small files"). The end of the stream wakes us anyway; a stream that
          // trickles is written at the timeout.
          await ring.waitDataAsync(1000, this.wakeBytes(ring));
          continue;
        }
        if (!this.writePendingRecord()) return;
        // Let requests in now and then when the data never runs dry.
        if (n % YIELD_EVERY_RECORDS === 0) await new Promise((r) => setImmediate(r));
      }
    } finally {
      this.ringPumping = false;
    }
  }

  /** What pumpRing waits for: one tape write's worth, within the ring's safe quarter (docs/ring.md). */
  private wakeBytes(ring: SpscRing): number {
    return Math.min(ring.capacity >>> 2, MAX_RECORDS_PER_WRITE * this.recordSize);
  }

  /**
   * Writes as many whole records as lie contiguous at the ring's read end (at
   * least two; within the window), in one tape write. 'none' when there are
   * not enough (the caller cuts records one by one), 'stop' when the mover
   * paused.
   */
  private writeFromRing(ring: SpscRing): 'wrote' | 'none' | 'stop' {
    const rs = this.recordSize;
    const { first } = ring.peek();
    let k = Math.min(Math.floor(first.length / rs), MAX_RECORDS_PER_WRITE);
    if (this.windowLength !== INVALID_U64) {
      const room = this.windowOffset + this.windowLength - this.streamOffset;
      if (room < BigInt(k * rs)) k = Number(room / BigInt(rs));
    }
    const dev = this.tape.device;
    if (k < 2 || !dev) return 'none';
    let r: BatchWriteResult;
    try {
      r = dev.writeRecords(first.subarray(0, k * rs), rs);
    } catch (e) {
      // Nothing fitted, or the tape failed: the one-by-one path says which, with the record in hand.
      if (e instanceof TapeError && e.kind === 'eom') return 'none';
      this.mediaError(`tape write failed: ${toNdmp(e).message}`);
      return 'stop';
    }
    if (r.written > 0) {
      ring.consume(r.written * rs);
      this.wrote(r.written, r.written * rs);
    }
    if (r.earlyWarning) {
      this.pause(MoverPauseReason.NDMP_MOVER_PAUSE_EOM, this.streamOffset);
      return 'stop';
    }
    return r.full ? 'none' : 'wrote';
  }

  /**
   * The stream ended with `recordFill` bytes in hand: pads them into a last
   * record (App. D.1), or halts CONNECT_CLOSED when nothing is left. Returns
   * true when a padded record is ready to be written.
   */
  private endOfStream(): boolean {
    if (this.recordFill === 0) {
      this.halt(MoverHaltReason.NDMP_MOVER_HALT_CONNECT_CLOSED, 'end of the data stream');
      return false;
    }
    // Only the payload counts in bytes_moved.
    this.recordPayload = this.recordFill;
    this.record.fill(0, this.recordFill);
    this.recordFill = this.recordSize;
    return true;
  }

  // ---- backup: stream → records → tape -----------------------------------------

  /** Cuts whole records from the input and writes them until the input runs dry or the mover pauses. */
  private pump(): void {
    while (this.state === S.NDMP_MOVER_STATE_ACTIVE) {
      this.fillRecord();
      if (this.recordFill < this.recordSize) {
        if (!this.inputEnded) {
          this.socket?.resume();
          return;
        }
        if (!this.endOfStream()) return;
      }
      if (!this.writePendingRecord()) return;
    }
  }

  private fillRecord(): void {
    while (this.recordFill < this.recordSize && this.input.length > 0) {
      const chunk = this.input[0]!;
      const n = Math.min(chunk.length, this.recordSize - this.recordFill);
      chunk.copy(this.record, this.recordFill, 0, n);
      this.recordFill += n;
      if (n === chunk.length) this.input.shift();
      else this.input[0] = chunk.subarray(n);
    }
  }

  /** Writes the record in hand. Returns false when the mover paused or halted instead. */
  private writePendingRecord(): boolean {
    const dev = this.tape.device;
    if (!dev) {
      // The DMA closed the tape during a pause and continued without opening another.
      this.halt(MoverHaltReason.NDMP_MOVER_HALT_INTERNAL_ERROR, 'no tape is open');
      return false;
    }
    const rs = BigInt(this.recordSize);
    // The first write beyond the window pauses (draft App. D.8).
    if (this.windowLength !== INVALID_U64 && this.streamOffset + rs > this.windowOffset + this.windowLength) {
      this.pause(MoverPauseReason.NDMP_MOVER_PAUSE_EOW, this.streamOffset);
      return false;
    }
    let earlyWarning: boolean;
    try {
      earlyWarning = dev.writeRecord(this.record.subarray(0, this.recordSize)).earlyWarning;
    } catch (e) {
      if (e instanceof TapeError && e.kind === 'eom') {
        // Full tape: the record stays in hand for the next tape (draft App. D.8.1).
        this.pause(MoverPauseReason.NDMP_MOVER_PAUSE_EOM, this.streamOffset);
        return false;
      }
      this.mediaError(`tape write failed: ${toNdmp(e).message}`);
      return false;
    }
    this.wrote(1, this.recordPayload);
    this.recordFill = 0;
    this.recordPayload = this.recordSize;
    if (earlyWarning) {
      this.pause(MoverPauseReason.NDMP_MOVER_PAUSE_EOM, this.streamOffset);
      return false;
    }
    return true;
  }

  /** `records` whole records are on tape, `payload` bytes of them stream data (the rest padding). */
  private wrote(records: number, payload: number): void {
    this.tape.noteWrite();
    this.streamOffset += BigInt(records * this.recordSize);
    this.bytesMoved += BigInt(payload);
    this.recordNum += records;
  }

  /** A tape that cannot be read or written: v4 halts MEDIA_ERROR, v3 pauses MEDIA_ERROR (docs/protocol.md §4.2). */
  private mediaError(text: string): void {
    if (this.opts.version === 4) {
      this.halt(MoverHaltReason.NDMP_MOVER_HALT_MEDIA_ERROR, text);
    } else {
      this.hooks.log('warn', text);
      const at = this.mode === MoverMode.NDMP_MOVER_MODE_READ ? this.streamOffset : this.tapeStreamOffset;
      this.pause(MoverPauseReason.NDMP_MOVER_PAUSE_MEDIA_ERROR, at);
    }
  }

  // ---- recover: tape → byte ranges → stream ------------------------------------

  private async serve(): Promise<void> {
    if (this.serving) return;
    this.serving = true;
    try {
      for (
        let n = 1;
        this.state === S.NDMP_MOVER_STATE_ACTIVE && this.readPending && (this.socket || this.ring);
        n++
      ) {
        if (!(await this.serveOneRecord())) return;
        // A peer that keeps up never makes us wait for drain: let requests
        // (MOVER_ABORT, GET_STATE) in between records now and then.
        if (n % YIELD_EVERY_RECORDS === 0) await new Promise((r) => setImmediate(r));
      }
    } catch (e) {
      if (e instanceof TapeError) {
        this.tape.readFailed(e);
        this.mediaError(`tape read failed: ${e.message}`);
      } else
        this.halt(MoverHaltReason.NDMP_MOVER_HALT_INTERNAL_ERROR, `recover failed: ${(e as Error).message}`);
    } finally {
      this.serving = false;
    }
  }

  /** Sends the part of one record the pending read wants. False when the mover paused or halted. */
  private async serveOneRecord(): Promise<boolean> {
    const want = this.readPending!;
    const dev = this.tape.device;
    if (!dev) {
      this.halt(MoverHaltReason.NDMP_MOVER_HALT_INTERNAL_ERROR, 'no tape is open');
      return false;
    }
    const rs = BigInt(this.recordSize);
    const windowEnd = this.windowLength === INVALID_U64 ? INVALID_U64 : this.windowOffset + this.windowLength;
    // Outside the window the DMA must position the tape (App. D.3).
    if (want.offset < this.windowOffset || want.offset >= windowEnd) {
      this.pause(MoverPauseReason.NDMP_MOVER_PAUSE_SEEK, want.offset);
      return false;
    }
    // Space to the record holding the offset, counted from the window's start.
    const targetRecord = (want.offset - this.windowOffset) / rs;
    const currentRecord = (this.tapeStreamOffset - this.windowOffset) / rs;
    if (targetRecord !== currentRecord) {
      const delta = Number(targetRecord - currentRecord);
      const resid = dev.spaceRecords(delta, { crossFilemark: false });
      const moved = delta > 0 ? delta - resid : delta + resid;
      this.tapeStreamOffset += BigInt(moved) * rs;
      this.recordNum = Number(this.tapeStreamOffset / rs);
      if (resid !== 0) {
        // Forward: the tape file (filemark) or the recorded data (EOM) ended
        // first. Backward: the window's start is not where the DMA said; it
        // must position the tape for this offset itself.
        const pos = dev.position();
        if (delta < 0) this.pause(MoverPauseReason.NDMP_MOVER_PAUSE_SEEK, want.offset);
        else if (pos.beforeFilemark) this.pause(MoverPauseReason.NDMP_MOVER_PAUSE_EOF, this.tapeStreamOffset);
        else this.pause(MoverPauseReason.NDMP_MOVER_PAUSE_EOM, this.tapeStreamOffset);
        return false;
      }
    }
    const buf = Buffer.allocUnsafe(this.recordSize);
    const r = dev.readRecord(buf, { crossFilemark: false });
    if (r.kind !== 'record') {
      // A filemark ends the tape file; blank tape beyond is the end of the medium.
      this.pause(
        r.kind === 'filemark' ? MoverPauseReason.NDMP_MOVER_PAUSE_EOF : MoverPauseReason.NDMP_MOVER_PAUSE_EOM,
        this.tapeStreamOffset,
      );
      return false;
    }
    // Offsets are record_size × records: a record of another size would shift
    // every byte after it, so it is refused, not served.
    if (r.length !== this.recordSize) {
      dev.spaceRecords(-1, { crossFilemark: false });
      this.mediaError(
        `tape record of ${r.length} bytes where the record size is ${this.recordSize}: ` +
          'set MOVER_SET_RECORD_SIZE to the size the tape was written with',
      );
      return false;
    }
    const recordStart = this.tapeStreamOffset;
    this.tapeStreamOffset += rs;
    this.recordNum = Number(this.tapeStreamOffset / rs);
    const skip = Number(want.offset - recordStart);
    const avail = BigInt(r.copied - skip);
    const n = avail < want.length ? avail : want.length;
    const out = buf.subarray(skip, skip + Number(n));
    want.offset += n;
    want.length -= n;
    this.bytesMoved += n;
    this.bytesLeftToRead = want.length;
    if (want.length === 0n) this.readPending = null;
    return this.send(out);
  }

  /** Recover: bytes to the data service, waiting while it is behind. False when it has gone. */
  private async send(bytes: Uint8Array): Promise<boolean> {
    const ring = this.ring;
    if (!ring) {
      const sock = this.socket;
      if (sock && !sock.write(bytes)) await drained(sock);
      return this.socket !== null;
    }
    for (let off = 0; off < bytes.length;) {
      if (ring.aborted) {
        this.dataSideDone();
        return false;
      }
      off += ring.writeSome(bytes.subarray(off));
      if (off < bytes.length) await ring.waitSpaceAsync(1000);
      if (this.ring !== ring) return false;
    }
    return true;
  }
}

function pauseName(r: number): string {
  return ['NA', 'EOM', 'EOF', 'SEEK', 'MEDIA_ERROR', 'EOW'][r] ?? String(r);
}
function haltName(r: number): string {
  return (
    ['NA', 'CONNECT_CLOSED', 'ABORTED', 'INTERNAL_ERROR', 'CONNECT_ERROR', 'MEDIA_ERROR'][r] ?? String(r)
  );
}
