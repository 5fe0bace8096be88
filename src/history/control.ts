// The small shared block beside each session's history ring: how its history
// ended (delivered, or failed and why), the session's "drop it" when its
// backup halts otherwise than SUCCESSFUL, the lockstep delivery counter, and
// the per-session counters, which any thread may read while the backup runs.
// Status words move with Atomics; counters are written by one thread only.
// A failure may carry a short text (what went wrong, in words), which the
// session puts in NOTIFY_DATA_HALTED and a LOG_MESSAGE.

import { waitWordAsync } from '../ring/spsc-ring.js';
import type { BatchLimits } from './encoder.js';

const W_STATUS = 0;
const W_REASON = 1;
const W_DISCARD = 2;
const W_ACK = 3;
/** The reason whose text is in the text area (0: none yet), then the text's length in bytes. */
const W_TEXT_REASON = 4;
const W_TEXT_LEN = 5;
const COUNTERS_AT = 64;
/** Room for a failure's text (UTF-8, cut at a character boundary). */
const TEXT_BYTES = 512;

export const HistoryStatus = { RUNNING: 0, DELIVERED: 1, FAILED: 2 } as const;

/** Why a session's history failed (the session halts with NDMP_DATA_HALT_CONNECT_ERROR). */
export const HistoryFailure = {
  /** The DMA's control connection failed or closed. */
  CONNECTION: 1,
  /** The DMA accepted no history for history.stallTimeout. */
  STALLED: 2,
  /** The history thread itself failed (a bug, or reading its spool back); the text says what. */
  INTERNAL: 3,
} as const;

export const COUNTER_NAMES = [
  'entries',
  'posts',
  'bytes',
  'spooledBytes',
  'maxRingDepth',
  'notAcceptingMs',
  /** Times the spool could not take more, so the backup waited for the DMA (see docs/history.md). */
  'spoolWaits',
  /** Milliseconds the history thread left the session's ring undrained for that. */
  'waitedMs',
  /**
   * CPU time of the session's history thread (all of its work, for every
   * session it serves) from this session's open on (docs/history.md, "The history thread").
   */
  'historyThreadCpuMs',
  /** Entries handed to the DMA's connection; `entries` less this is what is queued (docs/operations.md). */
  'entriesSent',
  /** Bytes in the session's spool file now, and the most it held (`spooledBytes` is all it ever took). */
  'spoolBytes',
  'maxSpoolBytes',
] as const;
export type HistoryCounters = Record<(typeof COUNTER_NAMES)[number], number>;

/** What a session thread needs to produce history (structured-cloneable: shared memory and numbers). */
export interface HistoryChannel {
  readonly mode: 'worker' | 'lockstep';
  /** worker: the session's record ring (SpscRing memory). */
  readonly ring: SharedArrayBuffer | null;
  /** worker: its history thread's doorbell (see HistoryThreadConfig). */
  readonly doorbell: SharedArrayBuffer | null;
  readonly control: SharedArrayBuffer;
  readonly limits: BatchLimits;
  readonly stallTimeoutMs: number;
}

export class HistoryControl {
  readonly words: Int32Array;
  private readonly counters: Float64Array;
  private readonly text: Uint8Array;

  static allocate(): SharedArrayBuffer {
    return new SharedArrayBuffer(COUNTERS_AT + 8 * COUNTER_NAMES.length + TEXT_BYTES);
  }

  constructor(readonly sab: SharedArrayBuffer) {
    this.words = new Int32Array(sab, 0, COUNTERS_AT / 4);
    this.counters = new Float64Array(sab, COUNTERS_AT, COUNTER_NAMES.length);
    this.text = new Uint8Array(sab, COUNTERS_AT + 8 * COUNTER_NAMES.length, TEXT_BYTES);
  }

  get status(): number {
    return Atomics.load(this.words, W_STATUS);
  }
  get reason(): number {
    return Atomics.load(this.words, W_REASON);
  }

  /** History thread / main thread: every entry has been written to the DMA's socket. */
  delivered(): void {
    if (Atomics.compareExchange(this.words, W_STATUS, HistoryStatus.RUNNING, HistoryStatus.DELIVERED) === 0)
      Atomics.notify(this.words, W_STATUS);
  }

  /** The first failure sticks; `detail` says what happened, in words. */
  fail(reason: number, detail?: string): void {
    if (this.status !== HistoryStatus.RUNNING) return;
    // The text goes in before the status is published, so whoever sees FAILED
    // can read it; the first writer keeps the area, tagged with its reason.
    if (detail && Atomics.compareExchange(this.words, W_TEXT_REASON, 0, reason) === 0) {
      const { written } = new TextEncoder().encodeInto(detail, this.text);
      Atomics.store(this.words, W_TEXT_LEN, written);
    }
    if (Atomics.compareExchange(this.words, W_STATUS, HistoryStatus.RUNNING, HistoryStatus.FAILED) !== 0)
      return;
    Atomics.store(this.words, W_REASON, reason);
    Atomics.notify(this.words, W_STATUS);
    // A lockstep session waits on the delivery counter: wake it too.
    Atomics.add(this.words, W_ACK, 1);
    Atomics.notify(this.words, W_ACK);
  }

  /** What happened, if the failure came with words ('' otherwise). */
  get detail(): string {
    if (Atomics.load(this.words, W_TEXT_REASON) !== this.reason) return '';
    const n = Atomics.load(this.words, W_TEXT_LEN);
    return new TextDecoder().decode(this.text.slice(0, n));
  }

  /** Session thread: resolves once the status is no longer RUNNING. */
  async settled(): Promise<number> {
    for (;;) {
      const s = this.status;
      if (s !== HistoryStatus.RUNNING) return s;
      await waitWordAsync(this.words, W_STATUS, s, 1000);
    }
  }

  /** Session thread: its backup ended otherwise than SUCCESSFUL; undelivered history is dropped. */
  discard(): void {
    Atomics.store(this.words, W_DISCARD, 1);
  }
  get discarded(): boolean {
    return Atomics.load(this.words, W_DISCARD) !== 0;
  }

  /** Lockstep: deliveries so far (main thread counts them up, the session thread waits on them). */
  get acks(): number {
    return Atomics.load(this.words, W_ACK);
  }
  ack(): void {
    Atomics.add(this.words, W_ACK, 1);
    Atomics.notify(this.words, W_ACK);
  }
  /** Lockstep, session thread: blocks until the counter passes `seen`; false on timeout. */
  waitAck(seen: number, timeoutMs: number): boolean {
    const deadline = Date.now() + timeoutMs;
    while (Atomics.load(this.words, W_ACK) === seen) {
      const left = deadline - Date.now();
      if (left <= 0) return false;
      Atomics.wait(this.words, W_ACK, seen, left);
    }
    return true;
  }

  add(name: (typeof COUNTER_NAMES)[number], n: number): void {
    this.counters[COUNTER_NAMES.indexOf(name)]! += n;
  }
  /** A gauge's value (spoolBytes): like add, written by one thread only. */
  set(name: (typeof COUNTER_NAMES)[number], n: number): void {
    this.counters[COUNTER_NAMES.indexOf(name)] = n;
  }
  max(name: (typeof COUNTER_NAMES)[number], n: number): void {
    const i = COUNTER_NAMES.indexOf(name);
    if (n > this.counters[i]!) this.counters[i] = n;
  }
  snapshot(): HistoryCounters {
    const out = {} as HistoryCounters;
    COUNTER_NAMES.forEach((name, i) => (out[name] = Math.round(this.counters[i]!)));
    return out;
  }
}

/**
 * Entries in one sealed FH_ADD_* message: the entry array's length, after the
 * record mark (4 bytes) and the header (24 bytes) (docs/protocol.md §2.1, §8).
 */
export function messageEntries(message: ArrayBuffer): number {
  return message.byteLength >= 32 ? new DataView(message).getUint32(28) : 0;
}

/** A failure in words, for NOTIFY_DATA_HALTED, a LOG_MESSAGE and the log; `detail` from HistoryControl.detail. */
export function failureText(reason: number, stallTimeoutMs: number, detail = ''): string {
  switch (reason) {
    case HistoryFailure.CONNECTION:
      return "the DMA's control connection failed while file history was being sent";
    case HistoryFailure.STALLED:
      return `the DMA accepted no file history for ${stallTimeoutMs / 1000} s (history.stall-timeout)`;
    default:
      return detail
        ? `file history could not be delivered: ${detail}`
        : 'file history could not be delivered: the history thread failed (the server log says why)';
  }
}
