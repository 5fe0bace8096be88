// The NDMP data service of one session, run on its data thread (docs/protocol.md
// §7.1, draft §3.5). This is its state machine and data connection; the
// backup and recover engines that run in ACTIVE come with the backup work.
//
//   IDLE ─LISTEN─► LISTEN ─mover connects─► CONNECTED ─START_*─► ACTIVE
//     └───CONNECT──────────────────────────► CONNECTED            │
//   any of LISTEN/CONNECTED/ACTIVE ─ABORT, error, end─► HALTED ─STOP─► IDLE
//
// Every entry into HALTED goes through halt(), which closes the data
// connection and posts NOTIFY_DATA_HALTED, even after DATA_ABORT.

import type net from 'node:net';
import { Worker } from 'node:worker_threads';
import { BackupEngine } from '../../backup/engine.js';
import type { BackedUpEntry, ListedName } from '../../backup/engine.js';
import { C_DONE, C_FAILED, FilePipe, ReaderStop, StreamBroken } from '../../backup/pipe.js';
import type { FromReader, ToReader } from '../../backup/reader-thread.js';
import { HistoryControl, HistoryStatus, failureText } from '../../history/control.js';
import type { HistoryChannel } from '../../history/control.js';
import { LockstepProducer, RingProducer } from '../../history/producer.js';
import type { HistoryProducer } from '../../history/producer.js';
import { FLAG_NODE, HistoryModel, RecordWriter, historyModelOf } from '../../history/record.js';
import { SpscRing } from '../../ring/spsc-ring.js';
import { ConfineError, confineToExport } from '../../util/confine.js';
import type { FileId } from '../../util/confine.js';
import { escapeName } from '../../util/byte-name.js';
import {
  IncrementalError,
  commitIncremental,
  parseLevel,
  planIncremental,
} from '../../backup/incremental.js';
import type { IncrementalPlan } from '../../backup/incremental.js';
import { PaxFormatError } from '../../backup/pax-layout.js';
import { planRecover } from './recover-plan.js';
import { HistoryReplay, Recovery, ringSource, socketSource } from './recovery.js';
import type { RecoverHooks } from './recovery.js';
import type { StreamSink } from '../../backup/engine.js';
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
import type { DataState, DataThreadConfig } from './protocol.js';
import { DATA_STATE_TABLE, DATA_WORD_STATE } from './state-rules.js';
import { CodedError } from '../../util/coded-error.js';

/** How long shutdown waits for a reader thread that is still starting (see STARTUP_BOUND_MS in worker-rpc.ts). */
const READER_STARTUP_BOUND_MS = 60_000;

export interface DataHooks {
  halted(reason: number, text: string): void;
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
  private engine: BackupEngine | null = null;
  /** The running (or last) recover or history replay. */
  private recovery: Recovery | HistoryReplay | null = null;
  /** LOCAL: the byte ring to this session's mover (backup: we produce into it). */
  private ring: SpscRing | null = null;
  private ringSab: SharedArrayBuffer | null = null;
  /** LOCAL backups: the thread that reads files into the ring while this one walks (see backup/pipe.ts). */
  private reader: Worker | null = null;
  /** Settles once the reader thread has loaded its modules (or ended). */
  private readerReady: Promise<unknown> = Promise.resolve();
  /** The control block of the reader's current job (pipe.ts). */
  private pipeControl: SharedArrayBuffer | null = null;
  /** The running backup, until it has halted. */
  private running: Promise<void> | null = null;
  private aborting = false;
  private startedAt = 0;
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
      this.engine?.bytesProcessed ?? this.recovery?.bytesProcessed ?? this.bytesProcessed;
    // Estimates only while a backup runs and has one; otherwise say so rather
    // than send zeros that look like facts.
    const remain =
      this.state === S.NDMP_DATA_STATE_ACTIVE ? (this.engine?.estimateRemaining() ?? null) : null;
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
   * environment, answers, and runs the backup; its end is NOTIFY_DATA_HALTED.
   */
  startBackup(butypeName: string, env: Pval[], channel: HistoryChannel | null): void {
    this.admit(M.DATA_START_BACKUP);
    if (butypeName !== 'tar')
      throw NdmpError.illegalArgs(`backup type ${JSON.stringify(butypeName)}: only tar is offered`);
    const plan = this.planBackup(env);
    if (plan.model !== HistoryModel.NONE && !channel)
      throw NdmpError.illegalArgs('file history is not available on this server; back up with HIST=n');
    const incremental = this.planIncremental(env, plan.root);
    const aborted = (): boolean => this.aborting || Atomics.load(this.abortFlag, 0) !== 0;
    const sink = this.socket ? socketSink(this.socket) : this.ring ? ringSink(this.ring, aborted) : null;
    if (!sink) throw NdmpError.illegalState('no data connection');
    // The DMA's environment, in its order, plus what the server decided (§9.1).
    this.env = [...env];
    if (!env.some((p) => p.name === 'PATHNAME_SEPARATOR'))
      this.env.push({ name: 'PATHNAME_SEPARATOR', value: '/' });
    if (!env.some((p) => p.name === 'TYPE')) this.env.push({ name: 'TYPE', value: 'tar' });
    // Every entry's history carries its header offset: the DMA may recover it
    // directly. Saved with the backup's environment, DIRECT=y comes back at
    // recover time (ndmjob -J does that), which is what enables DAR there.
    if (!env.some((p) => p.name === 'DIRECT')) this.env.push({ name: 'DIRECT', value: 'y' });
    this.state = S.NDMP_DATA_STATE_ACTIVE;
    this.operation = DataOperation.NDMP_DATA_OP_BACKUP;
    this.aborting = false;
    Atomics.store(this.abortFlag, 0, 0);
    this.startedAt = performance.now();
    const history = this.startHistory(plan.model, channel);
    this.history = history;
    const writer = new RecordWriter();
    // LOCAL backups stream through a reader thread (backup/pipe.ts), which then
    // also appends the history; lockstep history stays on this thread, like the classic servers.
    const pipe =
      this.ringSab && channel?.mode !== 'lockstep'
        ? this.startReader(this.ringSab, history ? channel : null)
        : null;
    const tooLong = (name: string): void =>
      this.hooks.log('warn', 'name too long for file history; left out of it', { name });
    /** A directory's names: into the history ring, or through the reader to keep their order. */
    const dirent = (rec: Uint8Array | null, name: string): void | Promise<void> => {
      if (!rec) tooLong(name);
      else if (pipe) return pipe.history(rec);
      else history!.write(rec);
    };
    const entryRecord = (e: BackedUpEntry): Uint8Array | null => {
      const rec = writer.entry(e.path, e.stat, e.node, e.headerOffset, e.type === 'hardlink' ? 0 : FLAG_NODE);
      if (!rec) tooLong(e.path);
      return rec;
    };
    const engine = new BackupEngine(
      incremental ? { ...plan, incremental } : plan,
      sink,
      {
        aborted: () => aborted() || (history !== null && history.failure() !== 0),
        warn: (text) => {
          this.hooks.log('warn', text);
          this.hooks.logMessage(LogType.NDMP_LOG_WARNING, text);
        },
        ...(history &&
          (pipe
            ? { record: entryRecord }
            : {
                entry: (e: BackedUpEntry) => {
                  const rec = entryRecord(e);
                  if (rec) history.write(rec);
                },
              })),
        ...(history &&
          plan.model === HistoryModel.DIRNODE && {
            directory: async (node: bigint, parent: bigint, names: readonly ListedName[], dots: boolean) => {
              if (dots) {
                await dirent(writer.dirent('.', node, node), '.');
                await dirent(writer.dirent('..', parent, node), '..');
              }
              for (const n of names) await dirent(writer.dirent(n.name, n.node, node), n.name);
            },
          }),
      },
      pipe,
    );
    this.engine = engine;
    if (incremental?.warning) {
      this.hooks.log('warn', incremental.warning);
      this.hooks.logMessage(LogType.NDMP_LOG_WARNING, incremental.warning);
    }
    this.hooks.log('info', 'backup started', {
      root: plan.root,
      level: incremental?.level ?? 0,
      since: incremental?.since != null ? String(incremental.since) : undefined,
      files: plan.files,
      excludes: plan.excludes,
      history: ['none', 'path', 'dir/node'][plan.model],
      historyMode: channel?.mode,
    });
    this.running = engine
      .run()
      .then(async (r) => {
        this.bytesProcessed = engine.bytesProcessed;
        // Aborted: abort() has halted already.
        if (history ? !(await this.historyDelivered(history, channel!, r.aborted)) : r.aborted) return;
        if (incremental) this.recordBackup(incremental, engine);
        const what = `${r.entries} entries, ${r.bytes} bytes`;
        this.halt(
          DataHaltReason.NDMP_DATA_HALT_SUCCESSFUL,
          r.warnings === 0
            ? `backup completed: ${what}`
            : `backup completed with warnings (${r.warnings}): ${what}`,
        );
      })
      .catch((e: unknown) => {
        this.bytesProcessed = engine.bytesProcessed;
        const err = e as NodeJS.ErrnoException;
        // A failed write to the data connection is the mover's side going away.
        const reason =
          err instanceof SinkError || err instanceof StreamBroken
            ? DataHaltReason.NDMP_DATA_HALT_CONNECT_ERROR
            : DataHaltReason.NDMP_DATA_HALT_INTERNAL_ERROR;
        this.hooks.logMessage(LogType.NDMP_LOG_ERROR, `backup failed: ${err.message}`);
        this.halt(reason, `backup failed: ${err.message}`);
      });
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
      warn: (text) => {
        this.hooks.log('warn', text);
        this.hooks.logMessage(LogType.NDMP_LOG_WARNING, text);
      },
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

  /** Hands a pipelined backup to the reader thread (started on first use). */
  private startReader(out: SharedArrayBuffer, history: HistoryChannel | null): FilePipe {
    if (!this.reader) {
      const reader = new Worker(new URL('../../backup/reader-thread.js', import.meta.url));
      this.readerReady = new Promise((r) => {
        reader.on('message', (m: FromReader) => 'ready' in m && r(undefined));
        reader.once('exit', r);
      });
      reader.on('message', (m: FromReader) => {
        if ('warn' in m) {
          this.hooks.log('warn', m.warn);
          this.hooks.logMessage(LogType.NDMP_LOG_WARNING, m.warn);
        }
      });
      reader.on('error', (e) => this.hooks.log('error', 'reader thread failed', { err: e.message }));
      reader.on('exit', () => {
        if (this.reader === reader) this.reader = null;
        // A backup it was streaming must not wait for it for ever: its walker sees it failed.
        if (this.pipeControl) {
          const words = new Int32Array(this.pipeControl);
          if (Atomics.load(words, C_DONE) === 0) {
            Atomics.store(words, C_FAILED, ReaderStop.ERROR);
            Atomics.store(words, C_DONE, 1);
            Atomics.notify(words, C_DONE);
          }
        }
      });
      this.reader = reader;
    }
    const { work, control } = FilePipe.allocate();
    const job = { work, out, control, abortFlag: this.opts.abortFlag, history };
    this.pipeControl = control;
    this.reader.postMessage({ job } satisfies ToReader);
    return new FilePipe(job);
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

  /** The backup the environment asks for, or ILLEGAL_ARGS naming what is wrong. */
  private planBackup(env: Pval[]): {
    root: string;
    rootId: FileId;
    files: string[];
    excludes: string[];
    model: HistoryModel;
  } {
    const all = (name: string) => env.filter((p) => p.name === name).map((p) => p.value);
    const one = (name: string) => all(name)[0];
    const fsName = one('FILESYSTEM') ?? one('PREFIX');
    if (!fsName) throw NdmpError.illegalArgs('FILESYSTEM is not set: name the directory to back up');
    // Inside an export, and no symbolic link followed below its root (util/confine.ts).
    let root: string;
    let rootId: FileId;
    try {
      const c = confineToExport(fsName, this.opts.exports, { what: 'FILESYSTEM', directory: true });
      root = c.path;
      rootId = c.stat;
    } catch (e) {
      if (e instanceof ConfineError) throw NdmpError.illegalArgs(e.message);
      throw NdmpError.illegalArgs(`FILESYSTEM ${escapeName(fsName)}: ${(e as Error).message}`);
    }
    const model = historyModelOf(env);
    if (model === null) {
      throw NdmpError.illegalArgs(
        `HIST=${one('HIST')}: say y (the server's choice), f (paths), d (directories and nodes) or n (none)`,
      );
    }
    const known = new Set([
      'BASE_DATE',
      'DIRECT',
      'FILESYSTEM',
      'PREFIX',
      'HIST',
      'TYPE',
      'LEVEL',
      'EXCLUDE',
      'FILES',
      'UPDATE',
      'USER',
    ]);
    for (const p of env) {
      if (!known.has(p.name))
        this.hooks.log('info', 'environment variable ignored', { name: p.name, value: p.value });
    }
    return { root, rootId, files: all('FILES'), excludes: all('EXCLUDE'), model };
  }

  /**
   * LEVEL / BASE_DATE / UPDATE (docs/protocol.md §9.3): the incremental this
   * backup is, against the dumpdates in the state dir. Null without a state
   * dir (then only full backups, not recorded).
   */
  private planIncremental(env: Pval[], root: string): IncrementalPlan | null {
    const stateDir = this.opts.stateDir;
    try {
      if (!stateDir) {
        if (
          parseLevel(env.find((p) => p.name === 'LEVEL')?.value) !== 0 ||
          env.some((p) => p.name === 'BASE_DATE')
        )
          throw new IncrementalError('incremental backups need a state dir; this server has none');
        return null;
      }
      // Full backups are recorded too (UPDATE defaults to y): they are the base of the next level 1.
      return planIncremental(env, root, stateDir);
    } catch (e) {
      if (e instanceof IncrementalError) throw NdmpError.illegalArgs(e.message);
      throw e;
    }
  }

  /** A completed backup goes into the dumpdates; DATA_GET_ENV then says DUMP_DATE. */
  private recordBackup(plan: IncrementalPlan, engine: BackupEngine): void {
    const snapshot = engine.snapshot();
    if (!snapshot) return;
    try {
      for (const p of commitIncremental(plan, snapshot, this.opts.stateDir!)) {
        const i = this.env.findIndex((q) => q.name === p.name);
        if (i >= 0) this.env.splice(i, 1);
        this.env.push(p);
      }
    } catch (e) {
      const text = `the backup completed but was not recorded for incrementals: ${(e as Error).message}`;
      this.hooks.log('warn', text);
      this.hooks.logMessage(LogType.NDMP_LOG_WARNING, text);
    }
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

  abort(): void {
    this.admit(M.DATA_ABORT);
    this.halt(DataHaltReason.NDMP_DATA_HALT_ABORTED, 'aborted by the DMA');
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
    this.engine = null;
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
    // Stopped while loading its modules, a thread leaks descriptors (worker-rpc.ts, STARTUP_BOUND_MS).
    let startup: NodeJS.Timeout | undefined;
    await Promise.race([
      this.readerReady,
      new Promise((r) => (startup = setTimeout(r, READER_STARTUP_BOUND_MS))),
    ]);
    clearTimeout(startup);
    await this.reader?.terminate();
    this.reader = null;
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

  private halt(reason: number, text: string): void {
    if (this.state === S.NDMP_DATA_STATE_HALTED || this.state === S.NDMP_DATA_STATE_IDLE) return;
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
    this.hooks.halted(reason, text);
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

/** The data connection failed while the backup wrote to it. */
class SinkError extends CodedError {
  readonly code = 'DATA_CONNECTION_FAILED';
}

/** The stream onto a TCP data connection: one write in flight; its callback frees the buffer. */
function socketSink(sock: net.Socket): StreamSink {
  return {
    write: (chunk) =>
      new Promise<void>((resolve, reject) => {
        if (sock.destroyed) {
          reject(new SinkError('the data connection is closed'));
          return;
        }
        sock.write(chunk, (err) => (err ? reject(new SinkError(err.message)) : resolve()));
      }),
    end: () => new Promise<void>((resolve) => sock.end(() => resolve())),
  };
}

/** Slices of a buffer put into the ring between two looks at the abort flag: about a tape record. */
const RING_SLICE = 16 * 1024;

/**
 * The stream into the byte ring to this session's mover; waits for space
 * without blocking the thread. A DATA_ABORT stops it within one slice.
 */
function ringSink(ring: SpscRing, aborted: () => boolean): StreamSink {
  return {
    write: async (chunk) => {
      for (let off = 0; off < chunk.length;) {
        if (ring.aborted) throw new SinkError('the mover closed the data connection');
        if (aborted()) return;
        const n = ring.writeSome(chunk.subarray(off, off + RING_SLICE));
        off += n;
        if (off < chunk.length && n === 0) await ring.waitSpaceAsync(1000);
      }
    },
    end: async () => {
      ring.close();
      // Done once the mover has taken everything (or gone away). A LOCAL backup's
      // reader thread, not this one, wrote the ring: this side's producer view is
      // stale, so waitSpaceAsync may return at once. A timer between looks keeps
      // the thread's event loop turning (DATA_GET_STATE and DATA_ABORT answered)
      // while a paused mover (end of tape) waits for its next tape.
      while (ring.used > 0 && !ring.aborted) {
        await ring.waitSpaceAsync(1000, ring.capacity);
        if (ring.used > 0) await new Promise((r) => setTimeout(r, 20));
      }
      // Bytes left in the ring never reached the tape: the backup is not whole.
      if (ring.aborted && ring.used > 0) throw new SinkError('the mover closed the data connection');
    },
  };
}

function haltName(r: number): string {
  return ['NA', 'SUCCESSFUL', 'ABORTED', 'INTERNAL_ERROR', 'CONNECT_ERROR'][r] ?? String(r);
}
