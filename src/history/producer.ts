// The session thread's side of file history. In worker mode (the design) it
// appends each record to the session's own ring and goes on: the history
// thread does the rest. In lockstep mode (the classic servers' way, kept as
// the benchmark's baseline) it encodes batches itself, hands each to the main
// thread to write, and waits for the write to complete before going on.

import { SpscRing } from '../ring/spsc-ring.js';
import { HistoryControl, HistoryFailure, HistoryStatus, messageEntries } from './control.js';
import type { HistoryChannel } from './control.js';
import { FhEncoder } from './encoder.js';

export interface HistoryProducer {
  /** Appends one record (the view may be reused once this returns). */
  write(rec: Uint8Array): void;
  /** No more records: resolves with the final status (DELIVERED or FAILED; see control.reason). */
  finish(): Promise<number>;
  /** The backup halted otherwise than SUCCESSFUL: what is not delivered yet is dropped. */
  discard(): void;
  /** Non-zero (a HistoryFailure) once delivery has failed: the backup should halt. */
  failure(): number;
  readonly control: HistoryControl;
}

/** Worker mode: records into the session's ring. */
export class RingProducer implements HistoryProducer {
  readonly control: HistoryControl;
  private readonly ring: SpscRing;
  private readonly doorbell: Int32Array;
  private writes = 0;
  /** Times the ring was full and the session waited for the history thread (should stay 0). */
  ringWaits = 0;

  constructor(channel: HistoryChannel) {
    this.control = new HistoryControl(channel.control);
    this.ring = new SpscRing(channel.ring!);
    this.doorbell = new Int32Array(channel.doorbell!);
  }

  write(rec: Uint8Array): void {
    // Now and then: a ring half full wakes an idle history thread early.
    if ((++this.writes & 255) === 0 && this.ring.used > this.ring.capacity >>> 1) this.wake();
    const need = 4 + ((rec.length + 3) & ~3);
    while (!this.ring.tryWriteRecord(rec)) {
      // The history thread stopped taking records (the DMA failed): drop them;
      // failure() tells the backup to halt.
      if (this.ring.aborted || this.control.status !== HistoryStatus.RUNNING) return;
      this.ringWaits++;
      this.wake();
      this.ring.waitSpace(100, need);
    }
  }

  async finish(): Promise<number> {
    this.ring.close();
    this.wake();
    return this.control.settled();
  }

  discard(): void {
    this.control.discard();
    this.ring.close();
    this.wake();
  }

  /** Rings the history thread's doorbell. */
  private wake(): void {
    Atomics.add(this.doorbell, 0, 1);
    Atomics.notify(this.doorbell, 0);
  }

  failure(): number {
    return this.control.status === HistoryStatus.FAILED ? this.control.reason : 0;
  }
}

/** Lockstep mode: encode here, send through the main thread, wait for each write. */
export class LockstepProducer implements HistoryProducer {
  readonly control: HistoryControl;
  private readonly encoder: FhEncoder;
  private counted = 0;

  constructor(
    private readonly channel: HistoryChannel,
    /** Hands one encoded message to the main thread (transferring it). */
    send: (message: ArrayBuffer) => void,
  ) {
    this.control = new HistoryControl(channel.control);
    this.encoder = new FhEncoder(channel.limits, (message) => {
      if (this.control.status !== HistoryStatus.RUNNING) return;
      const seen = this.control.acks;
      // Read before sending: send transfers the buffer, which leaves it empty here.
      const bytes = message.byteLength;
      const entries = messageEntries(message);
      send(message);
      this.control.add('entries', this.encoder.entries - this.counted);
      this.counted = this.encoder.entries;
      this.control.add('posts', 1);
      this.control.add('bytes', bytes);
      this.control.add('entriesSent', entries);
      const t0 = Date.now();
      // The classic way: the backup does not go on until the DMA's socket took the batch.
      if (!this.control.waitAck(seen, this.channel.stallTimeoutMs)) this.control.fail(HistoryFailure.STALLED);
      this.control.add('notAcceptingMs', Date.now() - t0);
    });
  }

  write(rec: Uint8Array): void {
    if (this.control.status !== HistoryStatus.RUNNING) return;
    this.encoder.push(rec);
  }

  finish(): Promise<number> {
    this.encoder.flush();
    this.control.delivered();
    return Promise.resolve(this.control.status);
  }

  discard(): void {
    this.control.discard();
  }

  failure(): number {
    return this.control.status === HistoryStatus.FAILED ? this.control.reason : 0;
  }
}
