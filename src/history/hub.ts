// The main thread's side of file history: starts the history thread(s), gives
// each backup its channel (a record ring and a control block), and writes the
// messages the history thread (or, in lockstep mode, the session thread)
// hands over onto the session's control connection, returning credit as each
// write completes. It never encodes or looks inside a message (docs/design.md,
// "Threads and where bytes go").

import { Worker } from 'node:worker_threads';
import type { Logger } from '../util/log.js';
import { LogType, M } from '../wire/index.js';
import type { MessageDef } from '../wire/index.js';
import { SpscRing } from '../ring/spsc-ring.js';
import { COUNTER_NAMES, HistoryControl, HistoryFailure, failureText } from './control.js';
import type { HistoryChannel, HistoryCounters } from './control.js';
import {
  DEFAULT_WARN_LAG_AFTER_MS,
  DEFAULT_WARN_LAG_SHARE,
  DEFAULT_WARN_SPOOL_BYTES,
  lagWarnings,
} from './lag-warning.js';
import type { LagCondition, LagThresholds } from './lag-warning.js';
import { DEFAULT_BATCH_LIMITS } from './encoder.js';
import type { BatchLimits } from './encoder.js';
import type { FromHistoryThread, HistoryThreadConfig, ToHistoryThread } from './thread-protocol.js';

export type HistoryMode = 'worker' | 'lockstep';

export interface HistoryOptions {
  /** worker: the history thread sends (the design); lockstep: each session thread sends and waits. */
  readonly mode: HistoryMode;
  /** History threads per server; sessions are spread over them. */
  readonly threads: number;
  readonly stallTimeoutMs: number;
  readonly maxDelayMs: number;
  readonly spoolDir: string;
  /** Bytes each session's spool file may hold (history.spool-max); 0: no spool, the backup waits for its DMA. */
  readonly spoolMaxBytes: number;
  /** Free bytes the spool leaves on its file system (history.spool-min-free); null: min(1 GiB, 5%); 0: none. */
  readonly spoolMinFreeBytes: number | null;
  readonly limits: BatchLimits;
  readonly creditBytes: number;
  readonly memoryBytes: number;
  /** Bytes of each session's record ring (a power of two). */
  readonly ringBytes: number;
  /** History warnings (./lag-warning.ts, docs/operations.md "History warnings"); absent: the defaults. */
  readonly warnSpoolBytes?: number;
  readonly warnLagShare?: number;
  readonly warnLagAfterMs?: number;
}

/** history.spool-max's default: 4 GiB per session. */
export const DEFAULT_SPOOL_MAX = 4 * 2 ** 30;

export function historyDefaults(spoolDir: string): HistoryOptions {
  return {
    mode: 'worker',
    threads: 1,
    stallTimeoutMs: 300_000,
    maxDelayMs: 50,
    spoolDir,
    spoolMaxBytes: DEFAULT_SPOOL_MAX,
    spoolMinFreeBytes: null,
    limits: DEFAULT_BATCH_LIMITS,
    creditBytes: 1024 * 1024,
    memoryBytes: 2 * 1024 * 1024,
    ringBytes: 2 * 1024 * 1024,
    warnSpoolBytes: DEFAULT_WARN_SPOOL_BYTES,
    warnLagShare: DEFAULT_WARN_LAG_SHARE,
    warnLagAfterMs: DEFAULT_WARN_LAG_AFTER_MS,
  };
}

/** The connection a session's history goes out on. */
export interface HistoryTarget {
  readonly id: number;
  readonly log: Logger;
  /** Writes one complete message after everything queued before it; `done` once the socket took it. */
  writeEncoded(message: Uint8Array, done: (err?: Error) => void): void;
  /** Sends a post to the DMA (the hub's LOG_MESSAGEs); without it, those only go to the log. */
  post?<Body>(def: MessageDef<Body, never>, body: Body): void;
}

interface Entry {
  readonly target: HistoryTarget;
  readonly control: HistoryControl;
  readonly worker: Worker | null;
  /** The backup halted: messages still arriving are not written (no FH after DATA_HALTED). */
  halted: boolean;
  /** Bytes handed to the connection whose write has not completed. */
  writing: number;
  /** When the channel opened (the backup's start, for the lag share). */
  readonly openedAt: number;
  /** The history warnings this session has had (each once). */
  readonly warned: Set<LagCondition>;
  /** Run with the final counters once the history has ended (onEnded). */
  readonly ended: ((c: HistoryCounters) => void)[];
}

/** Ended sessions whose final counters are kept for a late onEnded (a history that failed before its backup halted). */
const RECENTLY_ENDED = 64;

/** Credit written and not yet returned to a history thread, per session. */
interface Owed {
  bytes: number;
  failed: boolean;
}

const PROGRESS_LOG_MS = 30_000;
/** How often running sessions are looked at for history warnings (./lag-warning.ts). */
const LAG_CHECK_MS = 1000;
/**
 * LOG_MESSAGE ids are free-form; the hub's count in a range of
 * their own, so they do not repeat the data service's.
 */
let nextMessageId = 0x40000000;

export class HistoryHub {
  private readonly workers: (Worker | null)[];
  private readonly doorbells = new Map<Worker, SharedArrayBuffer>();
  private nextWorker = 0;
  private nextId = 1;
  private readonly entries = new Map<number, Entry>();
  /** Credit to return, per history thread and session; sent in one message per thread (flushCredit). */
  private readonly owed = new Map<Worker, Map<number, Owed>>();
  private creditScheduled = false;
  private progressTimer: NodeJS.Timeout | null = null;
  private lagTimer: NodeJS.Timeout | null = null;
  private readonly lagThresholds: LagThresholds;
  /** The counters of every session whose history has ended, added up (the metrics' totals). */
  private readonly endedTotals = zeroCounters();
  private readonly recentlyEnded = new Map<number, HistoryCounters>();
  /** History warnings sent so far, by condition (the metrics). */
  readonly warnings: Record<LagCondition, number> = { spool: 0, lag: 0 };

  constructor(
    readonly options: HistoryOptions,
    private readonly log: Logger,
  ) {
    this.workers = new Array<Worker | null>(Math.max(1, options.threads)).fill(null);
    this.lagThresholds = {
      warnSpoolBytes: options.warnSpoolBytes ?? DEFAULT_WARN_SPOOL_BYTES,
      warnLagShare: options.warnLagShare ?? DEFAULT_WARN_LAG_SHARE,
      warnLagAfterMs: options.warnLagAfterMs ?? DEFAULT_WARN_LAG_AFTER_MS,
    };
  }

  /**
   * Runs `fn` with the session's final counters once its history has ended
   * (after the "file history ended" line), at once if it has; null if the
   * channel is unknown.
   */
  onEnded(id: number, fn: (c: HistoryCounters | null) => void): void {
    const e = this.entries.get(id);
    if (e) e.ended.push(fn);
    else fn(this.recentlyEnded.get(id) ?? null);
  }

  /** When the channel opened (ms since the epoch), or null. */
  openedAt(id: number): number | null {
    return this.entries.get(id)?.openedAt ?? null;
  }

  /**
   * Every session's counters added up, those that ended and those still
   * running: each only grows, so these are counters for the metrics
   * (src/server/metrics.ts). spoolBytes is the spools' total now.
   */
  totals(): HistoryCounters {
    const t = { ...this.endedTotals };
    for (const e of this.entries.values()) addCounters(t, e.control.snapshot());
    return t;
  }

  /** Channels opened and not yet ended (a backup's history still being delivered or dropped). */
  get openChannels(): number {
    return this.entries.size;
  }

  /**
   * One channel's counters while it is open (null once it has ended): for
   * `ndmpd sessions` (docs/operations.md, "Sessions"). `writingBytes` were
   * handed to the connection and not yet taken by its socket.
   */
  counters(id: number): (HistoryCounters & { writingBytes: number; openedAt: number }) | null {
    const e = this.entries.get(id);
    return e ? { ...e.control.snapshot(), writingBytes: e.writing, openedAt: e.openedAt } : null;
  }

  /** A channel for one backup's history; the id names it in the calls below. */
  open(target: HistoryTarget): { id: number; channel: HistoryChannel } {
    const id = this.nextId++;
    const control = new HistoryControl(HistoryControl.allocate());
    const lockstep = this.options.mode === 'lockstep';
    const ring = lockstep ? null : SpscRing.allocate(this.options.ringBytes);
    const worker = lockstep ? null : this.workerFor();
    this.entries.set(id, {
      target,
      control,
      worker,
      halted: false,
      writing: 0,
      openedAt: Date.now(),
      warned: new Set(),
      ended: [],
    });
    if (worker && ring) this.post(worker, { op: 'open', id, ring, control: control.sab });
    this.progressTimer ??= setInterval(() => this.logProgress(), PROGRESS_LOG_MS).unref();
    this.lagTimer ??= setInterval(() => this.checkLag(), LAG_CHECK_MS).unref();
    return {
      id,
      channel: {
        mode: this.options.mode,
        ring,
        doorbell: worker ? this.doorbells.get(worker)! : null,
        control: control.sab,
        limits: this.options.limits,
        stallTimeoutMs: this.options.stallTimeoutMs,
      },
    };
  }

  /** Lockstep: a message from the session thread; its write completing lets the session go on. */
  lockstepMessage(id: number, message: ArrayBuffer): void {
    const e = this.entries.get(id);
    if (!e) return;
    if (e.halted) {
      e.control.ack();
      return;
    }
    e.target.writeEncoded(new Uint8Array(message), (err) => {
      if (err) e.control.fail(HistoryFailure.CONNECTION);
      else e.control.ack();
    });
  }

  /** The backup halted (NOTIFY_DATA_HALTED is about to go out): nothing more is written for it. */
  halted(id: number): void {
    const e = this.entries.get(id);
    if (!e) return;
    e.halted = true;
    if (!e.worker) this.end(id, 'halted', e.control.reason);
  }

  /** The backup did not start: its channel is dropped. */
  cancel(id: number): void {
    const e = this.entries.get(id);
    if (!e) return;
    e.control.discard();
    e.halted = true;
    if (!e.worker) {
      addCounters(this.endedTotals, e.control.snapshot());
      this.entries.delete(id);
    }
  }

  /** The session's control connection closed. */
  closed(id: number): void {
    const e = this.entries.get(id);
    if (!e) return;
    e.control.fail(HistoryFailure.CONNECTION);
    if (e.worker) this.post(e.worker, { op: 'closed', id });
    else this.end(id, 'failed', HistoryFailure.CONNECTION);
  }

  async shutdown(): Promise<void> {
    if (this.progressTimer) clearInterval(this.progressTimer);
    this.progressTimer = null;
    if (this.lagTimer) clearInterval(this.lagTimer);
    this.lagTimer = null;
    await Promise.all(
      this.workers.map(async (w, i) => {
        if (!w) return;
        this.workers[i] = null;
        this.post(w, { op: 'shutdown' });
        const t = setTimeout(() => void w.terminate(), 2000);
        await new Promise((resolve) => w.once('exit', resolve));
        clearTimeout(t);
      }),
    );
  }

  private workerFor(): Worker {
    const i = this.nextWorker++ % this.workers.length;
    const existing = this.workers[i];
    if (existing) return existing;
    const config: HistoryThreadConfig = {
      limits: this.options.limits,
      maxDelayMs: this.options.maxDelayMs,
      creditBytes: this.options.creditBytes,
      memoryBytes: this.options.memoryBytes,
      stallTimeoutMs: this.options.stallTimeoutMs,
      spoolDir: this.options.spoolDir,
      spoolMaxBytes: this.options.spoolMaxBytes,
      spoolMinFreeBytes: this.options.spoolMinFreeBytes,
      doorbell: new SharedArrayBuffer(4),
    };
    const w = new Worker(new URL('./thread.js', import.meta.url), { workerData: config });
    this.workers[i] = w;
    this.doorbells.set(w, config.doorbell);
    // Sessions keep the server alive, not this thread: an idle server may exit.
    w.unref();
    w.on('message', (m: FromHistoryThread) => this.onMessage(w, m));
    let crash = '';
    w.on('error', (e) => {
      crash = e.message;
      this.log.error({ err: e, thread: `history${i}` }, 'history thread crashed');
    });
    w.on('exit', (code) => {
      this.doorbells.delete(w);
      this.owed.delete(w);
      if (this.workers[i] === w) {
        this.workers[i] = null;
        this.log.error({ code, thread: `history${i}` }, 'history thread ended unexpectedly');
      }
      // Its sessions cannot deliver any more: they halt; the next backup gets a new thread.
      const detail = crash
        ? `the history thread crashed (${crash}); the next backup gets a new one`
        : `the history thread ended unexpectedly (exit code ${code}); the next backup gets a new one`;
      for (const [id, e] of this.entries) {
        if (e.worker === w) {
          e.control.fail(HistoryFailure.INTERNAL, detail);
          this.end(id, 'failed', HistoryFailure.INTERNAL);
        }
      }
    });
    return w;
  }

  private onMessage(w: Worker, m: FromHistoryThread): void {
    switch (m.event) {
      case 'fh':
        for (let i = 0; i < m.ids.length; i++) this.write(w, m.ids[i]!, m.messages[i]!);
        return;
      case 'end':
        this.end(m.id, m.how, m.reason);
        return;
      case 'log':
        this.log[m.level]({ ...m.fields, thread: 'history' }, m.msg);
        return;
      case 'spool': {
        const e = this.entries.get(m.id);
        if (!e) return;
        const fields = { ...m.fields, session: e.target.id };
        if (m.waiting) e.target.log.warn(fields, m.text);
        else e.target.log.info(fields, m.text);
        // After NOTIFY_DATA_HALTED nothing of this backup's history is news to the DMA.
        if (!e.halted)
          this.logMessage(e.target, m.waiting ? LogType.NDMP_LOG_WARNING : LogType.NDMP_LOG_NORMAL, m.text);
        return;
      }
    }
  }

  /** Writes one of a history thread's messages on its session's connection; its credit comes back once written. */
  private write(w: Worker, id: number, message: ArrayBuffer): void {
    const e = this.entries.get(id);
    const bytes = message.byteLength;
    if (!e || e.halted) {
      this.owe(w, id, bytes, false, true);
      return;
    }
    e.writing += bytes;
    e.target.writeEncoded(new Uint8Array(message), (err) => {
      e.writing -= bytes;
      // Credit goes back in batches: a quarter of the credit at a time, or as soon as the
      // connection has taken everything (the history thread may be waiting for it, or be done).
      this.owe(w, id, bytes, err !== undefined, e.writing === 0);
    });
  }

  /**
   * Credit to return to `w`. It goes in one message per thread for all its
   * sessions, after the callbacks of this turn of the event loop: at once
   * (`now`) when the session has nothing left in writing, a failure, or a
   * quarter of the credit owed; otherwise with the next that is.
   */
  private owe(w: Worker, id: number, bytes: number, failed: boolean, now: boolean): void {
    let perWorker = this.owed.get(w);
    if (!perWorker) this.owed.set(w, (perWorker = new Map()));
    let o = perWorker.get(id);
    if (!o) perWorker.set(id, (o = { bytes: 0, failed: false }));
    o.bytes += bytes;
    o.failed ||= failed;
    if ((now || failed || o.bytes >= this.options.creditBytes / 4) && !this.creditScheduled) {
      this.creditScheduled = true;
      setImmediate(() => this.flushCredit());
    }
  }

  private flushCredit(): void {
    this.creditScheduled = false;
    for (const [w, perWorker] of this.owed) {
      if (perWorker.size === 0) continue;
      const ids: number[] = [];
      const bytes: number[] = [];
      const failed: boolean[] = [];
      for (const [id, o] of perWorker) {
        ids.push(id);
        bytes.push(o.bytes);
        failed.push(o.failed);
      }
      perWorker.clear();
      this.post(w, { op: 'credit', ids, bytes, failed });
    }
  }

  /** A LOG_MESSAGE to the session's DMA (if the target can post). */
  private logMessage(target: HistoryTarget, logType: number, text: string): void {
    target.post?.(M.LOG_MESSAGE, {
      logType,
      messageId: nextMessageId++,
      entry: text,
      associatedMessageValid: 0,
      associatedMessageSequence: 0,
    });
  }

  private end(id: number, how: string, reason: number): void {
    const e = this.entries.get(id);
    if (!e) return;
    this.entries.delete(id);
    const counters = e.control.snapshot();
    addCounters(this.endedTotals, counters);
    this.recentlyEnded.set(id, counters);
    if (this.recentlyEnded.size > RECENTLY_ENDED)
      this.recentlyEnded.delete(this.recentlyEnded.keys().next().value!);
    if (how === 'failed') {
      e.target.log.warn(
        { history: counters, why: failureText(reason, this.options.stallTimeoutMs, e.control.detail) },
        'file history failed',
      );
    } else if (e.worker) {
      // historyThreadCpuMs at the top too: the benchmark reads it from this line (bench/history-handoff.ts).
      e.target.log.info(
        { history: counters, how, historyThreadCpuMs: counters.historyThreadCpuMs },
        'file history ended',
      );
    } else e.target.log.info({ history: counters, how }, 'file history ended');
    if (this.entries.size === 0 && this.progressTimer) {
      clearInterval(this.progressTimer);
      this.progressTimer = null;
    }
    for (const fn of e.ended.splice(0)) fn(counters);
    if (this.entries.size === 0 && this.lagTimer) {
      clearInterval(this.lagTimer);
      this.lagTimer = null;
    }
  }

  /** Warns each running session whose history lags, once per condition (./lag-warning.ts). */
  private checkLag(): void {
    const now = Date.now();
    for (const e of this.entries.values()) {
      // After NOTIFY_DATA_HALTED the backup is over: nothing to warn of any more.
      if (e.halted) continue;
      for (const w of lagWarnings(e.control.snapshot(), now - e.openedAt, this.lagThresholds, e.warned)) {
        e.warned.add(w.condition);
        this.warnings[w.condition]++;
        e.target.log.warn({ ...w.fields, condition: w.condition, session: e.target.id }, w.text);
        this.logMessage(e.target, LogType.NDMP_LOG_WARNING, w.text);
      }
    }
  }

  private logProgress(): void {
    for (const e of this.entries.values()) {
      e.target.log.info({ history: e.control.snapshot() }, 'file history progress');
    }
  }

  private post(w: Worker, m: ToHistoryThread): void {
    w.postMessage(m);
  }
}

function zeroCounters(): HistoryCounters {
  const c = {} as HistoryCounters;
  for (const n of COUNTER_NAMES) c[n] = 0;
  return c;
}

/** Adds `b` into `a`; the peaks (maxRingDepth, maxSpoolBytes) as the larger of the two. */
function addCounters(a: HistoryCounters, b: HistoryCounters): void {
  for (const n of COUNTER_NAMES) {
    if (n === 'maxRingDepth' || n === 'maxSpoolBytes') a[n] = Math.max(a[n], b[n]);
    // The history thread's CPU is the whole thread's, counted from each session's open: not additive.
    else if (n !== 'historyThreadCpuMs') a[n] += b[n];
  }
}
