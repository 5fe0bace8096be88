// The history thread (DESIGN.md, "The idea it is built around"): one worker
// per server (or a few) that drains every session's history ring, aggregates
// the records into FH_ADD_* messages, and hands them to the main thread to
// write on that session's control connection. It, not the session, waits on
// the DMA:
//
// - a session has a credit of bytes in flight on its socket; credit comes
//   back as the main thread's writes complete;
// - messages beyond the credit wait in memory up to a bound, then in a spool
//   file, and go out in order as credit returns, so the ring stays drained;
// - a DMA that returns no credit for history.stall-timeout, or whose
//   connection fails, fails that session's history: the session sees it
//   through its control block and halts; other sessions go on.
//
// A session's history is done when its producer has closed the ring and
// every message has been written: then the session may post
// NOTIFY_DATA_HALTED, which so comes after the last FH post.

import { parentPort, workerData } from 'node:worker_threads';
import { SpscRing, waitWordAsync } from '../ring/spsc-ring.js';
import { HistoryControl, HistoryFailure } from './control.js';
import { FhEncoder } from './encoder.js';
import { Spool } from './spool.js';
import type { HistoryThreadConfig, ToHistoryThread, FromHistoryThread } from './thread-protocol.js';

const port = parentPort;
if (!port) throw new Error('the history thread must run as a worker thread');
const config = workerData as HistoryThreadConfig;

function send(m: FromHistoryThread, transfer?: ArrayBuffer[]): void {
  port!.postMessage(m, transfer);
}

class SessionHistory {
  private readonly ring: SpscRing;
  readonly control: HistoryControl;
  private readonly encoder: FhEncoder;
  /** Messages made and not yet handed to the main thread, oldest first (before the spool's). */
  private readonly queue: ArrayBuffer[] = [];
  private queued = 0;
  private spool: Spool | null = null;
  private inFlight = 0;
  /** When the open batch got its first entry (0: empty). */
  private batchSince = 0;
  /** When credit last came back, or sending began from idle. */
  private lastCredit = Date.now();
  /** Since when the DMA has not been accepting (credit used up), 0 when it is. */
  private blockedSince = 0;
  private ended = false;
  private counted = 0;

  constructor(
    readonly id: number,
    ringSab: SharedArrayBuffer,
    controlSab: SharedArrayBuffer,
  ) {
    this.ring = new SpscRing(ringSab);
    this.control = new HistoryControl(controlSab);
    this.encoder = new FhEncoder(config.limits, (m) => this.enqueue(m));
  }

  /** One round of work; true if anything moved. */
  poll(now: number): boolean {
    if (this.ended) return false;
    if (this.control.discarded) {
      this.finish('discarded');
      return true;
    }
    if (this.control.status !== 0) {
      this.finish('failed');
      return true;
    }
    this.control.max('maxRingDepth', this.ring.used);
    const n = this.ring.drainRecords((rec) => this.encoder.push(rec), 16384);
    if (this.encoder.pending > 0 && this.batchSince === 0) this.batchSince = now;
    const closed = n === 0 && this.ring.ended;
    if (this.encoder.pending > 0 && (closed || now - this.batchSince >= config.maxDelayMs))
      this.encoder.flush();
    if (this.encoder.entries !== this.counted) {
      this.control.add('entries', this.encoder.entries - this.counted);
      this.counted = this.encoder.entries;
    }
    const sent = this.pump(now);
    if (
      closed &&
      this.encoder.pending === 0 &&
      this.queue.length === 0 &&
      !this.spool?.pending &&
      this.inFlight === 0
    ) {
      this.control.delivered();
      this.finish('delivered');
      return true;
    }
    this.checkStall(now);
    return n > 0 || sent;
  }

  credit(bytes: number, failed: boolean): void {
    this.inFlight -= bytes;
    this.lastCredit = Date.now();
    if (failed) this.fail(HistoryFailure.CONNECTION);
  }

  fail(reason: number): void {
    if (this.ended) return;
    this.control.fail(reason);
    // Wakes a producer waiting for ring space; its writes now fail.
    this.ring.abort();
    this.finish('failed');
  }

  private enqueue(m: ArrayBuffer): void {
    this.batchSince = 0;
    if (this.spool || this.queued + m.byteLength > config.memoryBytes) {
      this.spool ??= new Spool(config.spoolDir, `history-${process.pid}-${this.id}.spool`);
      this.spool.append(m);
      this.control.add('spooledBytes', m.byteLength);
      return;
    }
    this.queue.push(m);
    this.queued += m.byteLength;
  }

  /** Hands messages to the main thread while credit lasts. */
  private pump(now: number): boolean {
    let sent = false;
    for (;;) {
      let next = this.queue[0]?.byteLength ?? this.spool?.peekLength() ?? -1;
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
      } else m = this.spool!.take();
      next = m.byteLength;
      if (this.inFlight === 0) this.lastCredit = now;
      this.inFlight += next;
      this.control.add('posts', 1);
      this.control.add('bytes', next);
      send({ event: 'fh', id: this.id, message: m }, [m]);
      sent = true;
    }
    if (this.blockedSince !== 0) {
      this.control.add('notAcceptingMs', now - this.blockedSince);
      this.blockedSince = 0;
    }
    return sent;
  }

  private checkStall(now: number): void {
    if (this.inFlight > 0 && now - this.lastCredit > config.stallTimeoutMs) this.fail(HistoryFailure.STALLED);
  }

  private finish(how: 'delivered' | 'failed' | 'discarded'): void {
    if (this.ended) return;
    this.ended = true;
    if (this.blockedSince !== 0) this.control.add('notAcceptingMs', Date.now() - this.blockedSince);
    this.spool?.close();
    this.spool = null;
    this.queue.length = 0;
    sessions.delete(this.id);
    send({ event: 'end', id: this.id, how, reason: this.control.reason, counters: this.control.snapshot() });
  }
}

const sessions = new Map<number, SessionHistory>();
let scheduled = false;
/** Rings when a session's ring is half full or closed (see RingProducer), so an idle wait ends early. */
const doorbell = new Int32Array(config.doorbell);
let idleRounds = 0;
/** The longest idle wait: records then wait at most this long (and the ring is 2 MiB: ample). */
const MAX_IDLE_MS = 16;

/**
 * Polls every session; again at once while there is work, else after an
 * idle wait that doubles from 1 ms up to MAX_IDLE_MS, cut short by the doorbell.
 */
function loop(): void {
  scheduled = false;
  const now = Date.now();
  let worked = false;
  for (const s of sessions.values()) {
    try {
      if (s.poll(now)) worked = true;
    } catch (e) {
      send({
        event: 'log',
        level: 'error',
        msg: 'file history failed for a session',
        fields: { session: s.id, err: (e as Error).message },
      });
      s.fail(HistoryFailure.INTERNAL);
    }
  }
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
    case 'credit':
      sessions.get(m.id)?.credit(m.bytes, m.failed);
      wake();
      return;
    case 'closed':
      sessions.get(m.id)?.fail(HistoryFailure.CONNECTION);
      return;
    case 'shutdown':
      for (const s of [...sessions.values()]) s.fail(HistoryFailure.CONNECTION);
      port.close();
      return;
  }
});
