// The history thread (docs/design.md, "The idea it is built around"): one worker
// per server (or a few) that drains every session's history ring, aggregates
// the records into FH_ADD_* messages, and hands them to the main thread to
// write on that session's control connection. It, not the session, waits on
// the DMA:
//
// - a session has a credit of bytes in flight on its socket; credit comes
//   back as the main thread's writes complete;
// - messages beyond the credit wait in memory up to a bound, then in a spool
//   file, and go out in order as credit returns, so the ring stays drained;
// - when the spool can take no more (its bound, the disk's floor, a write
//   error), the thread stops draining that session's ring: the session waits
//   for its DMA, the lockstep way, until the spool takes history again;
// - a DMA that returns no credit for history.stall-timeout, or whose
//   connection fails, fails that session's history: the session sees it
//   through its control block and halts; other sessions go on.
//
// A session's history is done when its producer has closed the ring and
// every message has been written: then the session may post
// NOTIFY_DATA_HALTED, which so comes after the last FH post.

import { parentPort, workerData } from 'node:worker_threads';
import { SpscRing, waitWordAsync } from '../ring/spsc-ring.js';
import { HistoryControl, HistoryFailure, messageEntries } from './control.js';
import { FhEncoder } from './encoder.js';
import { Spool, SpoolDisk, SpoolReadError } from './spool.js';
import { nameThread, threadCpuNs } from '../util/native-fs.js';
import type { HistoryThreadConfig, ToHistoryThread, FromHistoryThread } from './thread-protocol.js';
import { sizeText } from '../util/size-text.js';

const port = parentPort;
if (!port) throw new Error('the history thread must run as a worker thread');
nameThread('ndmp-history');
const config = workerData as HistoryThreadConfig;

/** Messages sealed this round, for every session, handed to the main thread in one postMessage. */
const outIds: number[] = [];
const outMessages: ArrayBuffer[] = [];

function sendMessage(id: number, message: ArrayBuffer): void {
  outIds.push(id);
  outMessages.push(message);
}

/** Hands this round's messages over (transferred, not copied). */
function flushMessages(): void {
  if (outMessages.length === 0) return;
  const ids = outIds.splice(0);
  const messages = outMessages.splice(0);
  port!.postMessage({ event: 'fh', ids, messages } satisfies FromHistoryThread, messages);
}

/** Any other event; messages sealed before it go first, so the main thread sees them in order. */
function send(m: FromHistoryThread): void {
  flushMessages();
  port!.postMessage(m);
}

/** Why a session's spool takes no more (docs/history.md, "When the spool is full"). */
type WaitReason = 'off' | 'bound' | 'disk' | 'error';

interface Refusal {
  readonly reason: WaitReason;
  /** For the DMA (LOG_MESSAGE) and the log. */
  readonly text: string;
}

/** A failed spool write is tried again after this long (the error may have passed: space freed, say). */
const RETRY_MS = 1000;
/** After a disk-floor stop, spooling resumes only with this much room above the floor (or half the bound). */
const DISK_MARGIN = 16 * 2 ** 20;
const WAITS = 'the backup now waits for the DMA to take file history';
/** An episode of waiting ends (and is logged as ended) after this long without a refusal. */
const QUIET_MS = 10_000;
/** Records one round drains from a session's ring at most (then it comes back at once for more). */
const DRAIN_LIMIT = 16384;
/** How often a session's historyThreadCpuMs counter is brought up to date while it runs. */
const CPU_COUNT_MS = 1000;

class SessionHistory {
  private readonly ring: SpscRing;
  readonly control: HistoryControl;
  private readonly encoder: FhEncoder;
  /** Messages made and not yet handed to the main thread, oldest first (before the spool's). */
  private readonly queue: ArrayBuffer[] = [];
  private queued = 0;
  private spool: Spool | null = null;
  /**
   * Messages neither memory nor the spool could take, oldest first (after the
   * spool's). While there are any the ring is not drained, so the session
   * waits for its DMA: they are at most one drain of the ring plus a batch.
   */
  private readonly held: ArrayBuffer[] = [];
  /** Since when, and why, the spool takes no more (null: it does). */
  private waiting: { readonly reason: WaitReason; readonly since: number } | null = null;
  /**
   * The episode the log and the DMA were told of: from the first refusal
   * until the spool has taken history for QUIET_MS without one, so a DMA
   * that keeps the spool at its bound hears of it once, not at every batch.
   */
  private episode: { readonly reason: WaitReason; lastWaitEnded: number } | null = null;
  /** When a spool write last failed. */
  private errorAt = 0;
  private inFlight = 0;
  /** When the open batch got its first entry (0: empty). */
  private batchSince = 0;
  /** When credit last came back, or sending began from idle. */
  private lastCredit = Date.now();
  /** Since when the DMA has not been accepting (credit used up), 0 when it is. */
  private blockedSince = 0;
  private ended = false;
  private counted = 0;
  /** The poll's time, for enqueue (called from inside the encoder). */
  private now = Date.now();
  /** This thread's CPU clock (ns) when the session opened, and what the counter holds of it so far. */
  private readonly cpuAtOpen = threadCpuNs();
  private cpuCounted = 0;
  private cpuCountedAt = 0;

  constructor(
    readonly id: number,
    ringSab: SharedArrayBuffer,
    controlSab: SharedArrayBuffer,
  ) {
    this.ring = new SpscRing(ringSab);
    this.control = new HistoryControl(controlSab);
    this.encoder = new FhEncoder(config.limits, (m) => this.enqueue(m));
  }

  /** One round of work; true when there is more to do at once (a full drain, or the session ended). */
  poll(now: number): boolean {
    if (this.ended) return false;
    this.now = now;
    if (this.control.discarded) {
      this.finish('discarded');
      return true;
    }
    if (this.control.status !== 0) {
      this.finish('failed');
      return true;
    }
    this.control.max('maxRingDepth', this.ring.used);
    this.unhold();
    // Back-pressure: with messages held, the ring waits (and so, once it is full, the session).
    const n =
      this.held.length === 0 ? this.ring.drainRecords((rec) => this.encoder.push(rec), DRAIN_LIMIT) : 0;
    if (this.encoder.pending > 0 && this.batchSince === 0) this.batchSince = now;
    const closed = n === 0 && this.ring.ended;
    if (this.encoder.pending > 0 && (closed || now - this.batchSince >= config.maxDelayMs))
      this.encoder.flush();
    if (this.encoder.entries !== this.counted) {
      this.control.add('entries', this.encoder.entries - this.counted);
      this.counted = this.encoder.entries;
    }
    if (now - this.cpuCountedAt >= CPU_COUNT_MS) {
      this.countCpu(now);
      // A DMA still not accepting: the time so far counts now, not only once it takes history
      // again, so the lag warning and the metrics see a DMA that stopped (docs/operations.md).
      if (this.blockedSince !== 0) {
        this.control.add('notAcceptingMs', now - this.blockedSince);
        this.blockedSince = now;
      }
    }
    this.pump(now);
    // The DMA has caught up: whatever stopped the spool, the backup no longer waits.
    if (
      this.waiting &&
      this.held.length === 0 &&
      !this.spool?.pending &&
      this.queued <= config.memoryBytes / 2
    )
      this.stopWaiting(now);
    if (this.episode && !this.waiting && now - this.episode.lastWaitEnded >= QUIET_MS)
      this.endEpisode(`for ${QUIET_MS / 1000} s the spool has taken file history`);
    if (
      closed &&
      this.encoder.pending === 0 &&
      this.queue.length === 0 &&
      !this.spool?.pending &&
      this.held.length === 0 &&
      this.inFlight === 0
    ) {
      // Before `delivered`, so the DMA usually hears it before NOTIFY_DATA_HALTED (after: the log only).
      this.stopWaiting(now);
      this.endEpisode('all of it has been sent');
      this.control.delivered();
      this.finish('delivered');
      return true;
    }
    this.checkStall(now);
    // A drain that stopped at its limit left records behind; anything less can wait for the next round.
    return n >= DRAIN_LIMIT;
  }

  /** Credit came back; true when that calls for a round now (messages wait for it, or the history may be done). */
  credit(bytes: number, failed: boolean): boolean {
    this.inFlight -= bytes;
    this.lastCredit = Date.now();
    if (failed) this.fail(HistoryFailure.CONNECTION);
    return this.blockedSince !== 0 || (this.inFlight === 0 && this.ring.ended);
  }

  fail(reason: number, detail?: string): void {
    if (this.ended) return;
    this.control.fail(reason, detail);
    // Wakes a producer waiting for ring space; its writes now fail.
    this.ring.abort();
    this.finish('failed');
  }

  private enqueue(m: ArrayBuffer): void {
    this.batchSince = 0;
    // Behind held messages, to keep the order.
    if (this.held.length > 0 || !this.place(m)) this.held.push(m);
  }

  /** Moves held messages, oldest first, to memory or the spool while they take them; true if any moved. */
  private unhold(): boolean {
    let moved = false;
    while (this.held.length > 0 && this.place(this.held[0]!)) {
      this.held.shift();
      moved = true;
    }
    return moved;
  }

  /**
   * Memory while the spool is empty and memory has room, else the spool if
   * it can take the message; false when neither can (the session then waits).
   */
  private place(m: ArrayBuffer): boolean {
    const n = m.byteLength;
    if (!this.spool?.pending && this.queued + n <= config.memoryBytes) {
      this.queue.push(m);
      this.queued += n;
      return true;
    }
    const refused = this.spoolRefuses(n) ?? this.spoolAppend(m);
    if (refused) {
      this.startWaiting(refused);
      return false;
    }
    this.control.add('spooledBytes', n);
    this.countSpool();
    this.stopWaiting(this.now);
    return true;
  }

  /** Why the spool may not take `n` more bytes now, or null. */
  private spoolRefuses(n: number): Refusal | null {
    const max = config.spoolMaxBytes;
    if (max === 0) return { reason: 'off', text: `file history spool off (history.spool-max = 0): ${WAITS}` };
    const pending = this.spool?.pending ?? 0;
    // Once full, it takes more only when half empty: no flapping at the bound.
    if (pending >= (this.waiting?.reason === 'bound' ? max / 2 : max))
      return { reason: 'bound', text: `file history spool full (${sizeText(max)}): ${WAITS}` };
    if (this.waiting?.reason === 'error' && this.now - this.errorAt < RETRY_MS)
      return { reason: 'error', text: '' };
    let short;
    try {
      short = disk.take(n, this.now, this.waiting?.reason === 'disk' ? Math.min(DISK_MARGIN, max / 2) : 0);
    } catch (e) {
      this.errorAt = this.now;
      return {
        reason: 'error',
        text: `cannot check the free space for the file history spool in ${config.spoolDir} (${(e as Error).message}): ${WAITS}`,
      };
    }
    if (short)
      return {
        reason: 'disk',
        text:
          `disk nearly full: ${sizeText(short.free)} free where the file history spool is (${config.spoolDir}), ` +
          `${sizeText(short.floor)} kept free (history.spool-min-free): ${WAITS}`,
      };
    return null;
  }

  /** Appends to the spool (opening it on first use); a refusal if the write fails. */
  private spoolAppend(m: ArrayBuffer): Refusal | null {
    try {
      this.spool ??= new Spool(config.spoolDir, `history-${process.pid}-${this.id}.spool`);
      this.spool.append(m);
      return null;
    } catch (e) {
      disk.giveBack(m.byteLength);
      this.errorAt = this.now;
      const err = e as NodeJS.ErrnoException;
      const where = this.spool?.path ?? config.spoolDir;
      return {
        reason: 'error',
        text:
          err.code === 'ENOSPC' || err.code === 'EDQUOT'
            ? `disk full (writing the file history spool ${where}: ${err.code}): ${WAITS}`
            : `cannot write the file history spool ${where} (${err.message}): ${WAITS}`,
      };
    }
  }

  /** The spool stopped taking history: the session now waits for its DMA; logged once per episode. */
  private startWaiting(r: Refusal): void {
    if (this.waiting) return;
    this.waiting = { reason: r.reason, since: this.now };
    if (this.episode) return;
    this.episode = { reason: r.reason, lastWaitEnded: 0 };
    this.control.add('spoolWaits', 1);
    send({
      event: 'spool',
      id: this.id,
      waiting: true,
      text: r.text,
      fields: { reason: r.reason, spooledBytes: this.spool?.pending ?? 0 },
    });
  }

  /** The spool takes history again (or the DMA caught up): the ring is drained again. */
  private stopWaiting(now: number): void {
    const w = this.waiting;
    if (!w) return;
    this.waiting = null;
    this.control.add('waitedMs', now - w.since);
    if (this.episode) this.episode.lastWaitEnded = now;
  }

  private endEpisode(why: string): void {
    const e = this.episode;
    if (!e) return;
    this.episode = null;
    send({
      event: 'spool',
      id: this.id,
      waiting: false,
      text: `file history spooling again (${why}): the backup no longer waits for the DMA`,
      fields: {
        reason: e.reason,
        spooledBytes: this.spool?.pending ?? 0,
        waitedMs: this.control.snapshot().waitedMs,
      },
    });
  }

  /** Hands messages to the main thread while credit lasts: memory's first, then the spool's, then held ones. */
  private pump(now: number): boolean {
    let sent = false;
    for (;;) {
      let next = this.queue[0]?.byteLength ?? this.spool?.peekLength() ?? -1;
      if (next < 0) next = this.held[0]?.byteLength ?? -1;
      if (next < 0) {
        if (this.spool) {
          this.spool.close();
          this.spool = null;
        }
        break;
      }
      // One message always fits when nothing is in flight, however large.
      if (this.inFlight > 0 && this.inFlight + next > config.creditBytes) {
        if (this.blockedSince === 0) this.blockedSince = now;
        return sent;
      }
      let m: ArrayBuffer;
      if (this.queue.length > 0) {
        m = this.queue.shift()!;
        this.queued -= m.byteLength;
      } else if (this.spool && this.spool.peekLength() >= 0) m = this.spool.take();
      else m = this.held.shift()!;
      next = m.byteLength;
      if (this.inFlight === 0) this.lastCredit = now;
      this.inFlight += next;
      this.control.add('posts', 1);
      this.control.add('bytes', next);
      this.control.add('entriesSent', messageEntries(m));
      if (this.spool) this.countSpool();
      sendMessage(this.id, m);
      sent = true;
    }
    if (this.blockedSince !== 0) {
      this.control.add('notAcceptingMs', now - this.blockedSince);
      this.blockedSince = 0;
    }
    return sent;
  }

  /** The spool's size now and its peak, for the lag warnings and the metrics (docs/operations.md). */
  private countSpool(): void {
    const pending = this.spool?.pending ?? 0;
    this.control.set('spoolBytes', pending);
    this.control.max('maxSpoolBytes', pending);
  }

  /** Measures the DMA only: credit outstanding and none back for the timeout, whatever the spool does. */
  private checkStall(now: number): void {
    if (this.inFlight > 0 && now - this.lastCredit > config.stallTimeoutMs) this.fail(HistoryFailure.STALLED);
  }

  /** Brings the historyThreadCpuMs counter up to date (a clock read: done now and then, and at the end). */
  private countCpu(now: number): void {
    this.cpuCountedAt = now;
    if (this.cpuAtOpen < 0) return;
    const ms = (threadCpuNs() - this.cpuAtOpen) / 1e6;
    this.control.add('historyThreadCpuMs', ms - this.cpuCounted);
    this.cpuCounted = ms;
  }

  private finish(how: 'delivered' | 'failed' | 'discarded'): void {
    if (this.ended) return;
    this.ended = true;
    const now = Date.now();
    this.countCpu(now);
    if (this.blockedSince !== 0) this.control.add('notAcceptingMs', now - this.blockedSince);
    if (this.waiting) this.control.add('waitedMs', now - this.waiting.since);
    this.waiting = null;
    this.spool?.close();
    this.spool = null;
    this.control.set('spoolBytes', 0);
    this.queue.length = 0;
    this.held.length = 0;
    sessions.delete(this.id);
    send({
      event: 'end',
      id: this.id,
      how,
      reason: this.control.reason,
      detail: this.control.detail,
      counters: this.control.snapshot(),
    });
  }
}

/** The spool directory's free-space check, shared by this thread's sessions (one file system). */
const disk = new SpoolDisk(config.spoolDir, config.spoolMinFreeBytes);

const sessions = new Map<number, SessionHistory>();
let scheduled = false;
/** Rings when a session's ring is half full or closed (see RingProducer), so an idle wait ends early. */
const doorbell = new Int32Array(config.doorbell);
let idleRounds = 0;
/**
 * The longest wait between rounds: history.max-delay (50 ms by default; at
 * most 64), so a batch waits about that long at most. Each wake-up of this
 * thread costs more than encoding a few hundred records (bench/history-handoff.ts:
 * at 60k records/s, 16 ms waits cost 60 ms of CPU per 100k entries, 50 ms waits 35),
 * and the ring holds ample: 50 ms of 100k records/s is 500 KiB of its 2 MiB;
 * the producer rings the doorbell when it is half full.
 */
const MAX_IDLE_MS = Math.max(1, Math.min(64, config.maxDelayMs));

/**
 * Polls every session, then hands the round's messages over in one go; again
 * at once while a ring had more than a round takes, else after a wait that
 * doubles from 1 ms up to MAX_IDLE_MS, cut short by the doorbell (a ring half
 * full or closed) or by credit coming back. So a backup's steady flow of
 * records is taken in batches of milliseconds, not a round per record or two
 * (docs/history.md, "The history thread").
 */
function loop(): void {
  scheduled = false;
  const now = Date.now();
  let worked = false;
  for (const s of sessions.values()) {
    try {
      if (s.poll(now)) worked = true;
    } catch (e) {
      const err = e as Error;
      send({
        event: 'log',
        level: 'error',
        msg: 'file history failed for a session',
        fields: { session: s.id, err: err.message, stack: err.stack },
      });
      s.fail(
        HistoryFailure.INTERNAL,
        err instanceof SpoolReadError
          ? err.message
          : `the history thread failed (${err.message}); the server log has the details`,
      );
    }
  }
  flushMessages();
  if (sessions.size > 0) schedule(worked);
}

function schedule(now: boolean): void {
  if (scheduled) return;
  scheduled = true;
  if (now) {
    idleRounds = 0;
    setImmediate(loop);
    return;
  }
  const ms = Math.min(MAX_IDLE_MS, 1 << Math.min(idleRounds++, 8));
  void waitWordAsync(doorbell, 0, Atomics.load(doorbell, 0), ms).then(loop);
}

/** Ends an idle wait now (or starts the loop): a waitAsync of this thread's own also wakes on its notify. */
function wake(): void {
  if (!scheduled) {
    schedule(true);
    return;
  }
  Atomics.add(doorbell, 0, 1);
  Atomics.notify(doorbell, 0);
}

port.on('message', (m: ToHistoryThread) => {
  switch (m.op) {
    case 'open':
      sessions.set(m.id, new SessionHistory(m.id, m.ring, m.control));
      wake();
      return;
    case 'credit': {
      // Only credit that something waits for wakes the thread: each wake-up costs (see MAX_IDLE_MS).
      let needed = false;
      for (let i = 0; i < m.ids.length; i++)
        if (sessions.get(m.ids[i]!)?.credit(m.bytes[i]!, m.failed[i]!)) needed = true;
      if (needed) wake();
      return;
    }
    case 'closed':
      sessions.get(m.id)?.fail(HistoryFailure.CONNECTION);
      return;
    case 'shutdown':
      for (const s of [...sessions.values()]) s.fail(HistoryFailure.CONNECTION);
      port.close();
      return;
  }
});
