// The NDMP data service of one session, run on its data thread (docs/protocol.md
// §7.1, draft §3.5): its state machine, its data connection, and the dispatch
// of the operations that run in ACTIVE, each in its own module beside this
// one: a backup (./backup-plan.ts, ./backup-operation.ts), a recover or a
// history replay (./recover-plan.ts, ./recovery.ts). Which request each state
// allows is ./state-rules.ts.
//
//   IDLE ─LISTEN─► LISTEN ─mover connects─► CONNECTED ─START_*─► ACTIVE
//     └───CONNECT──────────────────────────► CONNECTED            │
//   any of LISTEN/CONNECTED/ACTIVE ─ABORT, error, end─► HALTED ─STOP─► IDLE
//
// Every entry into HALTED goes through halt(), which closes the data
// connection and posts NOTIFY_DATA_HALTED, even after DATA_ABORT.

import type net from 'node:net';
import type { BackupResult } from '../../backup/engine.js';
import { HistoryControl, HistoryStatus, failureText } from '../../history/control.js';
import type { HistoryChannel } from '../../history/control.js';
import { LockstepProducer, RingProducer } from '../../history/producer.js';
import type { HistoryProducer } from '../../history/producer.js';
import { HistoryModel, RecordWriter, historyModelOf } from '../../history/record.js';
import { SpscRing } from '../../ring/spsc-ring.js';
import { PaxFormatError } from '../../backup/pax-layout.js';
import { BackupOperation, completedText, failedHalt, ringSink, socketSink } from './backup-operation.js';
import { backupEnv, planBackup, planBackupLevel, setEnv } from './backup-plan.js';
import { ReaderHost } from './reader-host.js';
import { planRecover } from './recover-plan.js';
import { HistoryReplay, Recovery, ringSource, socketSource } from './recovery.js';
import type { RecoverHooks } from './recovery.js';
import {
  AddrType,
  DataHaltReason,
  DataOperation,
  DataState as S,
  DataStateUnsupported,
  LogType,
  M,
  NdmpError,
} from '../../wire/index.js';
import type { Addr, MessageDef, NlistName, Pval } from '../../wire/index.js';
import { admit } from '../state-table.js';
import { connectToAny, listenForData } from '../data-connection.js';
import type { ListenOptions } from '../data-connection.js';
import type { DataState, DataThreadConfig, HaltFigures } from './protocol.js';

export type { HaltFigures } from './protocol.js';
import { DATA_STATE_TABLE, DATA_WORD_STATE } from './state-rules.js';

export interface DataHooks {
  halted(reason: number, text: string, figures: HaltFigures): void;
  /** A LOG_MESSAGE for the DMA. */
  logMessage(logType: number, text: string): void;
  log(level: 'debug' | 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>): void;
  /** Lockstep history: hands one encoded FH message to the main thread to write. */
  sendHistory(message: ArrayBuffer): void;
  /** NOTIFY_DATA_READ: a recover needs these stream bytes next. */
  dataRead(offset: bigint, length: bigint): void;
  /** LOG_FILE: what one nlist entry of a recover came to. */
  logFile(name: string, recoveryStatus: number): void;
}

export class DataService {
  private operation: number = DataOperation.NDMP_DATA_OP_NOACTION;
  private haltReason: number = DataHaltReason.NDMP_DATA_HALT_NA;
  private bytesProcessed = 0n;
  private dataAddr: Addr = { addrType: AddrType.NDMP_ADDR_LOCAL };
  private readOffset = 0n;
  private readLength = 0n;
  private env: Pval[] = [];
  private server: net.Server | null = null;
  private socket: net.Socket | null = null;
  /** The running (or last) backup. */
  private backup: BackupOperation | null = null;
  /** The running (or last) recover or history replay. */
  private recovery: Recovery | HistoryReplay | null = null;
  /** LOCAL: the byte ring to this session's mover (backup: we produce into it). */
  private ring: SpscRing | null = null;
  private ringSab: SharedArrayBuffer | null = null;
  /** LOCAL backups: the thread that reads files into the ring while the engine walks (see backup/pipe.ts). */
  private readonly reader: ReaderHost;
  /** The running backup, until it has halted. */
  private running: Promise<void> | null = null;
  private aborting = false;
  private startedAt = 0;
  /** Entries the running (or last) operation backed up or restored, once it has said (HaltFigures.files). */
  private files = 0;
  /** Set by the main thread on DATA_ABORT (see DataThreadConfig.abortFlag). */
  private readonly abortFlag: Int32Array;
  /** The running backup's file history, if the DMA asked for it. */
  private history: HistoryProducer | null = null;
  /** The data state lives in the word the main thread reads (DataThreadConfig.stateWords). */
  private readonly words: Int32Array;

  constructor(
    private readonly opts: ListenOptions &
      Pick<
        DataThreadConfig,
        'exports' | 'abortFlag' | 'version' | 'stateDir' | 'stateWords' | 'restoreSpecial'
      >,
    private readonly hooks: DataHooks,
  ) {
    this.abortFlag = new Int32Array(opts.abortFlag);
    this.words = new Int32Array(opts.stateWords);
    this.state = S.NDMP_DATA_STATE_IDLE;
    this.reader = new ReaderHost(opts.abortFlag, {
      warn: (text) => this.warn(text),
      failed: (e) => this.hooks.log('error', 'reader thread failed', { err: e.message }),
    });
  }

  /** The NDMP data state; every transition is stored where the dispatcher sees it. */
  private get state(): number {
    return Atomics.load(this.words, DATA_WORD_STATE);
  }
  private set state(state: number) {
    Atomics.store(this.words, DATA_WORD_STATE, state);
  }

  /**
   * The data state table's verdict on `def` now, as the request executes: the
   * state may have changed since the dispatcher looked (a backup halting).
   */
  private admit(def: MessageDef): void {
    admit(DATA_STATE_TABLE, def, this.words, this.opts.version);
  }

  getState(): DataState {
    const bytesProcessed =
      this.backup?.bytesProcessed ?? this.recovery?.bytesProcessed ?? this.bytesProcessed;
    // Estimates only while a backup runs and has one; otherwise say so rather
    // than send zeros that look like facts.
    const remain =
      this.state === S.NDMP_DATA_STATE_ACTIVE ? (this.backup?.estimateRemaining() ?? null) : null;
    const elapsed = (performance.now() - this.startedAt) / 1000;
    const rate = elapsed > 0.5 ? Number(bytesProcessed) / elapsed : 0;
    return {
      unsupported:
        (remain === null ? DataStateUnsupported.EST_BYTES_REMAIN : 0) |
        (remain === null || rate === 0 ? DataStateUnsupported.EST_TIME_REMAIN : 0),
      operation: this.operation,
      state: this.state,
      haltReason: this.haltReason,
      bytesProcessed,
      estBytesRemain: remain ?? 0n,
      estTimeRemain:
        remain !== null && rate > 0 ? Math.min(0xffff_ffff, Math.ceil(Number(remain) / rate)) : 0,
      dataConnectionAddr: this.dataAddr,
      readOffset: this.readOffset,
      readLength: this.readLength,
    };
  }

  async listen(addrType: number): Promise<Addr> {
    this.admit(M.DATA_LISTEN);
    if (addrType === AddrType.NDMP_ADDR_LOCAL) {
      // The session's own mover connects through the server (MOVER_CONNECT LOCAL).
      this.state = S.NDMP_DATA_STATE_LISTEN;
      this.dataAddr = { addrType: AddrType.NDMP_ADDR_LOCAL };
      return this.dataAddr;
    }
    if (addrType !== AddrType.NDMP_ADDR_TCP)
      throw NdmpError.illegalArgs(`address type ${addrType} is not supported`);
    const { server, port, ipAddrs } = await listenForData(this.opts);
    this.server = server;
    server.on('connection', (sock) => this.onAccept(sock));
    server.on('error', (e: NodeJS.ErrnoException) => {
      if (this.server === server) {
        this.halt(
          DataHaltReason.NDMP_DATA_HALT_CONNECT_ERROR,
          `data listener failed: ${e.code ?? e.message}`,
        );
      }
    });
    this.state = S.NDMP_DATA_STATE_LISTEN;
    this.dataAddr = {
      addrType: AddrType.NDMP_ADDR_TCP,
      tcpAddrs: ipAddrs.map((ipAddr) => ({ ipAddr, port, addrEnv: [] })),
    };
    this.hooks.log('info', 'data service listening', { port });
    return this.dataAddr;
  }

  async connect(addr: Addr): Promise<void> {
    this.admit(M.DATA_CONNECT);
    if (addr.addrType === AddrType.NDMP_ADDR_LOCAL) {
      throw NdmpError.illegalState('the mover is not listening for a LOCAL connection');
    }
    if (addr.addrType !== AddrType.NDMP_ADDR_TCP) {
      throw NdmpError.illegalArgs(`address type ${addr.addrType} is not supported`);
    }
    const { sock, addr: used, where } = await connectToAny(addr.tcpAddrs, 'mover');
    // A single address, no environment (docs/protocol.md §7.1).
    this.dataAddr = { addrType: AddrType.NDMP_ADDR_TCP, tcpAddrs: [used] };
    this.attach(sock);
    this.hooks.log('info', 'data service connected', { peer: where });
  }

  /**
   * DATA_START_BACKUP (docs/protocol.md §9.1): checks the request against the
   * environment (./backup-plan.ts), answers, and runs the backup
   * (./backup-operation.ts); its end is NOTIFY_DATA_HALTED.
   */
  startBackup(butypeName: string, env: Pval[], channel: HistoryChannel | null): void {
    this.admit(M.DATA_START_BACKUP);
    if (butypeName !== 'tar')
      throw NdmpError.illegalArgs(`backup type ${JSON.stringify(butypeName)}: only tar is offered`);
    const plan = planBackup(env, this.opts.exports, (p) =>
      this.hooks.log('info', 'environment variable ignored', { name: p.name, value: p.value }),
    );
    if (plan.model !== HistoryModel.NONE && !channel)
      throw NdmpError.illegalArgs('file history is not available on this server; back up with HIST=n');
    const incremental = planBackupLevel(env, plan.root, this.opts.stateDir);
    const aborted = (): boolean => this.aborting || Atomics.load(this.abortFlag, 0) !== 0;
    const sink = this.socket ? socketSink(this.socket) : this.ring ? ringSink(this.ring, aborted) : null;
    if (!sink) throw NdmpError.illegalState('no data connection');
    this.env = backupEnv(env);
    this.state = S.NDMP_DATA_STATE_ACTIVE;
    this.operation = DataOperation.NDMP_DATA_OP_BACKUP;
    this.aborting = false;
    Atomics.store(this.abortFlag, 0, 0);
    this.startedAt = performance.now();
    this.files = 0;
    const history = this.startHistory(plan.model, channel);
    this.history = history;
    const backup = new BackupOperation(
      {
        plan,
        incremental,
        stateDir: this.opts.stateDir,
        sink,
        ring: this.ringSab,
        reader: this.reader,
        history,
        channel,
      },
      {
        aborted,
        warn: (text) => this.warn(text),
        log: (level, msg, fields) => this.hooks.log(level, msg, fields),
      },
    );
    this.backup = backup;
    this.running = this.backUp(backup, history, channel)
      .then((text) => {
        // Null: abort() or a history failure has halted already.
        if (text !== null) this.halt(DataHaltReason.NDMP_DATA_HALT_SUCCESSFUL, text);
      })
      .catch((e: unknown) => {
        const { reason, text } = failedHalt(e);
        this.hooks.logMessage(LogType.NDMP_LOG_ERROR, text);
        this.halt(reason, text);
      });
  }

  /** Runs a backup; resolves with its halt text, or null when it was aborted or its history did not deliver. */
  private async backUp(
    backup: BackupOperation,
    history: HistoryProducer | null,
    channel: HistoryChannel | null,
  ): Promise<string | null> {
    let r: BackupResult;
    try {
      r = await backup.run();
    } finally {
      this.bytesProcessed = backup.bytesProcessed;
    }
    this.files = r.entries;
    // Aborted: abort() has halted already.
    if (history ? !(await this.historyDelivered(history, channel!, r.aborted)) : r.aborted) return null;
    // A completed backup goes into the dumpdates; DATA_GET_ENV then says DUMP_DATE.
    setEnv(this.env, backup.record());
    return completedText(r);
  }

  /**
   * DATA_START_RECOVER, or with `fileHistory` DATA_START_RECOVER_FILEHIST
   * (docs/protocol.md §9.2): checks the request, answers, and runs it; its end is
   * NOTIFY_DATA_HALTED, after a LOG_FILE per nlist entry.
   */
  startRecover(
    env: Pval[],
    nlist: NlistName[],
    butypeName: string,
    fileHistory: boolean,
    channel: HistoryChannel | null,
  ): void {
    this.admit(fileHistory ? M.DATA_START_RECOVER_FILEHIST : M.DATA_START_RECOVER);
    if (butypeName !== 'tar')
      throw NdmpError.illegalArgs(`backup type ${JSON.stringify(butypeName)}: only tar is offered`);
    const plan = planRecover(
      this.opts.version,
      env,
      nlist,
      this.opts.exports,
      fileHistory,
      this.opts.restoreSpecial ?? false,
    );
    let model: HistoryModel = HistoryModel.NONE;
    if (fileHistory) {
      const asked = historyModelOf(env);
      if (asked === null)
        throw NdmpError.illegalArgs(`HIST=${env.find((p) => p.name === 'HIST')?.value}: say y, f, d or n`);
      // Replaying history is the whole point: without HIST, the server's choice (path).
      model = asked === HistoryModel.NONE ? HistoryModel.PATH : asked;
      if (!channel) throw NdmpError.illegalArgs('file history is not available on this server');
    }
    const aborted = (): boolean => this.aborting || Atomics.load(this.abortFlag, 0) !== 0;
    const source = this.socket
      ? socketSource(this.socket, aborted)
      : this.ring
        ? ringSource(this.ring, aborted)
        : null;
    if (!source) throw NdmpError.illegalState('no data connection');
    this.env = [...env];
    this.state = S.NDMP_DATA_STATE_ACTIVE;
    this.operation = fileHistory
      ? DataOperation.NDMP_DATA_OP_RECOVER_FILEHIST
      : DataOperation.NDMP_DATA_OP_RECOVER;
    this.aborting = false;
    Atomics.store(this.abortFlag, 0, 0);
    this.startedAt = performance.now();
    const hooks: RecoverHooks = {
      aborted,
      dataRead: (offset, length) => {
        this.readOffset = offset;
        this.readLength = length;
        this.hooks.dataRead(offset, length);
      },
      logFile: (name, status) => this.hooks.logFile(name, status),
      warn: (text) => this.warn(text),
    };
    const history = fileHistory ? this.startHistory(model, channel) : null;
    this.history = history;
    this.hooks.log('info', fileHistory ? 'history replay started' : 'recover started', {
      destination: plan.destRoot || undefined,
      nlist: plan.targets.length,
      direct: plan.direct,
      overwrite: plan.overwrite,
    });
    const run = history
      ? this.replayHistory(new HistoryReplay(plan, model, history, source, hooks), history, channel!)
      : this.restore(new Recovery(plan, source, hooks));
    this.running = run
      .then((text) => {
        // Null: abort() or a history failure has halted already.
        if (text !== null) this.halt(DataHaltReason.NDMP_DATA_HALT_SUCCESSFUL, text);
      })
      .catch((e: unknown) => {
        const err = e as Error;
        // A stream that is not a valid archive, or one cut short: a clear reason, never a crash.
        const text =
          err instanceof PaxFormatError
            ? `${fileHistory ? 'history replay' : 'recover'} stopped: the backup stream is not a valid archive (${err.message})`
            : `${fileHistory ? 'history replay' : 'recover'} failed: ${err.message}`;
        this.hooks.logMessage(LogType.NDMP_LOG_ERROR, text);
        this.halt(DataHaltReason.NDMP_DATA_HALT_INTERNAL_ERROR, text);
      });
  }

  /** Runs a restore; resolves with its halt text, or null when it was aborted. */
  private async restore(recovery: Recovery): Promise<string | null> {
    this.recovery = recovery;
    const r = await recovery.run();
    this.files = r.restored;
    if (r.aborted) return null;
    const what = `${r.restored} entries restored from ${r.bytes} bytes`;
    const withheld = `${r.withheld} device nodes or fifos not created (RESTORE_SPECIAL=n)`;
    if (r.failed + r.failedTargets === 0 && r.withheld > 0)
      return `recover completed with warnings (${withheld}): ${what}`;
    return r.failed + r.failedTargets === 0
      ? `recover completed: ${what}`
      : `recover completed with failures (${r.failed} entries not restored; see LOG_FILE): ${what}`;
  }

  /** Runs a history replay; resolves with its halt text, or null when it did not deliver. */
  private async replayHistory(
    replay: HistoryReplay,
    history: HistoryProducer,
    channel: HistoryChannel,
  ): Promise<string | null> {
    this.recovery = replay;
    const r = await replay.run();
    this.files = r.entries;
    if (!(await this.historyDelivered(history, channel, r.aborted))) return null;
    return `file history of ${r.entries} entries replayed from ${r.bytes} bytes`;
  }

  /**
   * After an operation that fed history ends: true once all of it is on its
   * way to the DMA, before NOTIFY_DATA_HALTED (docs/protocol.md §8.6). Otherwise
   * false, and the data service has halted saying why (a history failure
   * here, an abort already).
   */
  private async historyDelivered(
    history: HistoryProducer,
    channel: HistoryChannel,
    aborted: boolean,
  ): Promise<boolean> {
    const failed = history.failure();
    if (failed !== 0) {
      this.failHistory(failed, channel);
      return false;
    }
    if (aborted) return false;
    if ((await history.finish()) !== HistoryStatus.DELIVERED) {
      this.failHistory(history.failure(), channel);
      return false;
    }
    return true;
  }

  private startHistory(model: HistoryModel, channel: HistoryChannel | null): HistoryProducer | null {
    if (model === HistoryModel.NONE || !channel) return null;
    const producer =
      channel.mode === 'lockstep'
        ? new LockstepProducer(channel, (m) => this.hooks.sendHistory(m))
        : new RingProducer(channel);
    producer.write(new RecordWriter().hello(model));
    return producer;
  }

  /** The DMA did not take the history (gone, or stalled): the backup halts and says why. */
  private failHistory(reason: number, channel: HistoryChannel): void {
    const detail = new HistoryControl(channel.control).detail;
    const text = `backup stopped: ${failureText(reason, channel.stallTimeoutMs, detail)}`;
    this.hooks.logMessage(LogType.NDMP_LOG_ERROR, text);
    this.halt(DataHaltReason.NDMP_DATA_HALT_CONNECT_ERROR, text);
  }

  /** LOCAL connection to this session's mover through a shared byte ring (docs/protocol.md §7.6). */
  attachLocal(sab: SharedArrayBuffer, listening: boolean): void {
    if (listening) {
      if (this.state !== S.NDMP_DATA_STATE_LISTEN || this.dataAddr.addrType !== AddrType.NDMP_ADDR_LOCAL) {
        throw NdmpError.illegalState('the data service is not listening for a LOCAL connection');
      }
    } else {
      this.admit(M.DATA_CONNECT);
    }
    this.ring = new SpscRing(sab);
    this.ringSab = sab;
    this.state = S.NDMP_DATA_STATE_CONNECTED;
    this.dataAddr = { addrType: AddrType.NDMP_ADDR_LOCAL };
    this.hooks.log('info', 'data service connected to the local mover');
  }

  /** Undoes attachLocal when the mover could not complete the connection. */
  detachLocal(): void {
    if (!this.ring || this.state !== S.NDMP_DATA_STATE_CONNECTED) return;
    this.ring = null;
    this.ringSab = null;
    this.state = S.NDMP_DATA_STATE_IDLE;
  }

  abort(reason = 'aborted by the DMA'): void {
    this.admit(M.DATA_ABORT);
    this.halt(DataHaltReason.NDMP_DATA_HALT_ABORTED, reason);
  }

  stop(): void {
    this.admit(M.DATA_STOP);
    // Back to IDLE: every variable and the environment are reset (docs/protocol.md §7.1).
    this.state = S.NDMP_DATA_STATE_IDLE;
    this.operation = DataOperation.NDMP_DATA_OP_NOACTION;
    this.haltReason = DataHaltReason.NDMP_DATA_HALT_NA;
    this.bytesProcessed = 0n;
    this.dataAddr = { addrType: AddrType.NDMP_ADDR_LOCAL };
    this.readOffset = 0n;
    this.readLength = 0n;
    this.env = [];
    this.backup = null;
    this.recovery = null;
  }

  getEnv(): Pval[] {
    this.admit(M.DATA_GET_ENV);
    return this.env;
  }

  /** The control connection ended (`why`, as the connection says it: 'peer closed' = the DMA went away). */
  async shutdown(why: string | null = null): Promise<void> {
    if (this.state !== S.NDMP_DATA_STATE_IDLE && this.state !== S.NDMP_DATA_STATE_HALTED) {
      // A DMA that vanished failed its connection; anything else (server stopping, ...) aborts.
      if (why === null || why === 'peer closed' || why === 'socket closed')
        this.halt(DataHaltReason.NDMP_DATA_HALT_CONNECT_ERROR, "the DMA's control connection closed");
      else this.halt(DataHaltReason.NDMP_DATA_HALT_ABORTED, `session closed: ${why}`);
    }
    this.dropConnection();
    // A running backup stops at its next record (its reader closes the files it holds); then the reader goes.
    if (this.running) await Promise.race([this.running, new Promise((r) => setTimeout(r, 2000))]);
    await this.reader.stop();
  }

  private onAccept(sock: net.Socket): void {
    if (this.state !== S.NDMP_DATA_STATE_LISTEN || this.socket) {
      sock.destroy();
      return;
    }
    this.server?.close();
    this.server = null;
    this.hooks.log('info', 'data connection accepted', { peer: `${sock.remoteAddress}:${sock.remotePort}` });
    this.attach(sock);
  }

  private attach(sock: net.Socket): void {
    this.socket = sock;
    this.state = S.NDMP_DATA_STATE_CONNECTED;
    sock.setNoDelay(true);
    sock.on('error', (e: NodeJS.ErrnoException) => {
      if (this.socket === sock) {
        this.halt(
          DataHaltReason.NDMP_DATA_HALT_CONNECT_ERROR,
          `data connection failed: ${e.code ?? e.message}`,
        );
      }
    });
    // Before an operation starts, the peer going away ends the connection.
    sock.on('end', () => {
      if (this.socket === sock && this.state === S.NDMP_DATA_STATE_CONNECTED) {
        this.halt(DataHaltReason.NDMP_DATA_HALT_CONNECT_ERROR, 'the mover closed the data connection');
      }
    });
    sock.resume();
  }

  /** A warning of the running operation: to the log, and to the DMA as LOG_MESSAGE. */
  private warn(text: string): void {
    this.hooks.log('warn', text);
    this.hooks.logMessage(LogType.NDMP_LOG_WARNING, text);
  }

  private halt(reason: number, text: string): void {
    if (this.state === S.NDMP_DATA_STATE_HALTED || this.state === S.NDMP_DATA_STATE_IDLE) return;
    const figures: HaltFigures = {
      operation:
        this.operation === DataOperation.NDMP_DATA_OP_BACKUP
          ? 'backup'
          : this.operation === DataOperation.NDMP_DATA_OP_RECOVER_FILEHIST
            ? 'replay'
            : 'recover',
      bytes: Number(this.backup?.bytesProcessed ?? this.recovery?.bytesProcessed ?? this.bytesProcessed),
      files: this.files,
      durationMs: Math.round(performance.now() - this.startedAt),
    };
    // A running backup stops at its next file or buffer.
    this.aborting = true;
    // History not yet delivered belongs to a backup that did not complete: dropped.
    if (reason !== DataHaltReason.NDMP_DATA_HALT_SUCCESSFUL) this.history?.discard();
    this.history = null;
    this.state = S.NDMP_DATA_STATE_HALTED;
    this.haltReason = reason;
    this.dropConnection();
    this.hooks.log(
      reason === DataHaltReason.NDMP_DATA_HALT_SUCCESSFUL ? 'info' : 'warn',
      'data service halted',
      {
        reason: haltName(reason),
        text,
      },
    );
    this.hooks.halted(reason, text, figures);
  }

  private dropConnection(): void {
    this.server?.close();
    this.server = null;
    if (this.socket) {
      this.socket.destroy();
      this.socket = null;
    }
    // Backup: the mover takes what is in the ring, then sees the end.
    // Recover: the mover stops filling it.
    if (this.operation === DataOperation.NDMP_DATA_OP_BACKUP) this.ring?.close();
    else this.ring?.abort();
    this.ring = null;
    this.ringSab = null;
  }
}

function haltName(r: number): string {
  return ['NA', 'SUCCESSFUL', 'ABORTED', 'INTERNAL_ERROR', 'CONNECT_ERROR'][r] ?? String(r);
}
