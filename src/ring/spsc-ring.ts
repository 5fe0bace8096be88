// The single-producer / single-consumer ring over a SharedArrayBuffer (docs/ring.md).
//
// One implementation carries both the backup stream (bytes, GB/s, a producer
// that may wait for space) and file history (length-prefixed records, a
// producer that must never wait). It imports nothing of ours: it sits below
// every layer that uses it.
//
// Correctness rests on three rules, argued in docs/ring.md:
//  - each cursor has one writer (head: producer, tail: consumer), stored with
//    Atomics.store after the data it covers and read by the other side with
//    Atomics.load before the data it covers;
//  - data bytes in [tail, head) belong to the consumer, the rest to the
//    producer, so plain typed-array copies never race;
//  - a side that sleeps announces what it waits for before its last check,
//    and the other side checks that announcement after its publish
//    (sequentially consistent Atomics on both sides: one of them sees the other).

/** Int32 words of the control area. Hot words sit 128 bytes apart (a line and its prefetch pair). */
const W_CAPACITY = 0;
const W_MAGIC = 1;
/** Producer-written on every publish. */
const W_HEAD = 32;
/** Consumer-written on every publish. */
const W_TAIL = 64;
/** Producer-written, rarely: end of stream, what the producer waits for, the futex word the consumer sleeps on. */
const W_CLOSED = 96;
const W_P_WANT = 97;
const W_DATA_SEQ = 98;
const W_P_WAIT_SEQ = 99;
/** Consumer-written, rarely. */
const W_ABORTED = 128;
const W_SIGNAL = 129;
const W_C_WANT = 130;
const W_SPACE_SEQ = 131;
const W_C_WAIT_SEQ = 132;

const HEADER_BYTES = 1024;
const HEADER_WORDS = HEADER_BYTES / 4;
const MAGIC = 0x53505343; // 'SPSC'
const MIN_CAPACITY = 8;
const MAX_CAPACITY = 2 ** 30;
/** setInterval's largest period: the keep-alive below never fires in practice. */
const MAX_TIMER_MS = 2 ** 31 - 1;

type WaitAsyncResult =
  { async: false; value: 'not-equal' | 'timed-out' } | { async: true; value: Promise<'ok' | 'timed-out'> };

// Node 20 has Atomics.waitAsync; lib ES2022 does not declare it.
const AtomicsAsync = Atomics as unknown as {
  waitAsync(ta: Int32Array, index: number, value: number, timeoutMs?: number): WaitAsyncResult;
};

const noop = (): void => {};

/**
 * Waits without blocking the thread until ta[index] is no longer `value` (or
 * `ms` passes), keeping the event loop alive meanwhile: a pending waitAsync
 * alone does not, so a process or worker with nothing else to do would exit
 * first. The keep-alive is an interval cleared when the wait settles, not a
 * timer of `ms`: V8 times the wait out on its own clock, which may fire a
 * little after a libuv timer of the same length, and in that gap the loop
 * would be empty (seen in CI as a test process ending mid-await).
 */
export async function waitWordAsync(ta: Int32Array, index: number, value: number, ms: number): Promise<void> {
  const r = AtomicsAsync.waitAsync(ta, index, value, ms);
  if (!r.async) return;
  const keep = setInterval(noop, MAX_TIMER_MS);
  try {
    await r.value;
  } finally {
    clearInterval(keep);
  }
}
/**
 * Checks a sync wait makes before it sleeps (~2 µs here): a consumer that keeps
 * up with its producer would otherwise sleep, and cost the producer a notify,
 * every few records. Short, so an idle side does not burn a core (docs/ring.md).
 */
const SPIN = 128;

/** The views a zero-copy reserve() or peek() hands out: `second` is non-empty only when the region wraps. */
export interface RingRegion {
  first: Uint8Array;
  second: Uint8Array;
}

/** Bytes a record of `payloadLength` bytes occupies in a ring: the 4-byte prefix, the payload rounded up to 4. */
export function recordFootprint(payloadLength: number): number {
  return 4 + ((payloadLength + 3) & -4);
}

function checkTimeout(timeoutMs: number): void {
  if (!(timeoutMs >= 0)) throw new RangeError(`timeout must be ≥ 0 ms (or Infinity), got ${timeoutMs}`);
}

export class SpscRing {
  /** Allocates a ring's shared memory: pass it to another thread (postMessage / workerData) and attach there. */
  static allocate(capacity: number): SharedArrayBuffer {
    if (
      !Number.isInteger(capacity) ||
      capacity < MIN_CAPACITY ||
      capacity > MAX_CAPACITY ||
      (capacity & (capacity - 1)) !== 0
    ) {
      // A power of two divides 2^32, so `cursor & mask` stays continuous when the
      // 32-bit cursors wrap; any other size would jump there.
      throw new RangeError(`ring capacity must be a power of two in 8 .. 2^30, got ${capacity}`);
    }
    const sab = new SharedArrayBuffer(HEADER_BYTES + capacity);
    const ctl = new Int32Array(sab, 0, HEADER_WORDS);
    ctl[W_CAPACITY] = capacity;
    ctl[W_MAGIC] = MAGIC;
    return sab;
  }

  readonly capacity: number;
  private readonly mask: number;
  private readonly ctl: Int32Array;
  private readonly data: Uint8Array;
  /** The data area as 32-bit words: record prefixes are 4-aligned, so each is one whole word. */
  private readonly words: Int32Array;

  // Producer state: its own head (it is the only writer) and a possibly stale
  // tail. A stale tail only understates free space, so it is re-read only when
  // the cached value says a write does not fit.
  private pHead: number;
  private pTail: number;
  private pClosed = false;
  // Consumer state, mirrored: its own tail and a possibly stale head (which
  // only understates what is readable).
  private cTail: number;
  private cHead: number;
  /** Where a wrapped record is made contiguous for drainRecords. */
  private scratch = new Uint8Array(0);

  constructor(sab: SharedArrayBuffer) {
    if (!(sab instanceof SharedArrayBuffer) || sab.byteLength < HEADER_BYTES + MIN_CAPACITY) {
      throw new TypeError('not a ring: expected a SharedArrayBuffer from SpscRing.allocate');
    }
    this.ctl = new Int32Array(sab, 0, HEADER_WORDS);
    const capacity = Atomics.load(this.ctl, W_CAPACITY);
    if (Atomics.load(this.ctl, W_MAGIC) !== MAGIC || sab.byteLength !== HEADER_BYTES + capacity) {
      throw new TypeError('not a ring: expected a SharedArrayBuffer from SpscRing.allocate');
    }
    this.capacity = capacity;
    this.mask = capacity - 1;
    this.data = new Uint8Array(sab, HEADER_BYTES, capacity);
    this.words = new Int32Array(sab, HEADER_BYTES, capacity >>> 2);
    this.pHead = this.cHead = Atomics.load(this.ctl, W_HEAD) >>> 0;
    this.pTail = this.cTail = Atomics.load(this.ctl, W_TAIL) >>> 0;
    this.pClosed = Atomics.load(this.ctl, W_CLOSED) !== 0;
  }

  /** Bytes written and not yet read; free space = capacity - used. */
  get used(): number {
    // Tail first: the head read after it is at least as new, so the difference
    // never goes negative even while both sides move.
    const tail = Atomics.load(this.ctl, W_TAIL);
    return (Atomics.load(this.ctl, W_HEAD) - tail) >>> 0;
  }

  get free(): number {
    return this.capacity - this.used;
  }

  // ---------------------------------------------------------------- producer

  /** Byte-stream write: copies as much of `src` as fits, returns the count (0 when full or aborted). */
  writeSome(src: Uint8Array): number {
    this.checkOpen();
    if (Atomics.load(this.ctl, W_ABORTED) !== 0) return 0;
    const n = Math.min(src.length, this.spaceFor(src.length));
    if (n === 0) return 0;
    const head = this.pHead;
    const idx = head & this.mask;
    const first = Math.min(n, this.capacity - idx);
    this.data.set(first === src.length ? src : src.subarray(0, first), idx);
    if (n > first) this.data.set(src.subarray(first, n), 0);
    this.publishHead((head + n) >>> 0);
    return n;
  }

  /**
   * Writes all of src, waiting (Atomics.wait, worker only) for space; returns false if the consumer
   * aborted or `timeoutMs` passed without progress. On false, a prefix of src may have been written.
   */
  writeAll(src: Uint8Array, timeoutMs = Infinity): boolean {
    checkTimeout(timeoutMs);
    // Waking for every freed byte would cost a wake-up per consumer read; a
    // quarter of the ring amortises it and leaves the consumer room to wait for
    // up to three quarters (see waitData's minBytes).
    const chunk = Math.max(1, this.capacity >>> 2);
    let off = 0;
    while (off < src.length) {
      const n = this.writeSome(off === 0 ? src : src.subarray(off));
      if (n > 0) {
        off += n;
        continue;
      }
      if (this.aborted) return false;
      if (!this.waitSpace(timeoutMs, Math.min(src.length - off, chunk))) return false;
    }
    return true;
  }

  /**
   * Record write: a 4-byte length prefix + payload, all or nothing (wraps as needed). False when it
   * does not fit now or the consumer aborted. Never blocks. RangeError when it could never fit
   * (payload longer than capacity − 4).
   */
  tryWriteRecord(payload: Uint8Array): boolean {
    const len = payload.length;
    if (len > this.capacity - 4) {
      throw new RangeError(`record of ${len} bytes exceeds the ring's limit of ${this.capacity - 4}`);
    }
    this.checkOpen();
    if (Atomics.load(this.ctl, W_ABORTED) !== 0) return false;
    const head = this.pHead;
    if ((head & 3) !== 0) throw new Error('ring carries a byte stream, not records');
    const need = 4 + ((len + 3) & -4);
    if (this.spaceFor(need) < need) return false;
    const cap = this.capacity;
    const idx = head & this.mask;
    // Capacity and head are multiples of 4, so the prefix never straddles the end.
    this.words[idx >>> 2] = len;
    const p = idx + 4 === cap ? 0 : idx + 4;
    const room = cap - p;
    if (len <= room) this.data.set(payload, p);
    else {
      this.data.set(payload.subarray(0, room), p);
      this.data.set(payload.subarray(room), 0);
    }
    this.publishHead((head + need) >>> 0);
    return true;
  }

  /**
   * Zero-copy producer: the whole free region (two views when it wraps; both empty when full or
   * aborted). Fill a prefix of first+second, then commit(n) to publish it.
   */
  reserve(): RingRegion {
    this.checkOpen();
    if (Atomics.load(this.ctl, W_ABORTED) !== 0)
      return { first: this.data.subarray(0, 0), second: this.data.subarray(0, 0) };
    const free = this.spaceFor(this.capacity);
    const idx = this.pHead & this.mask;
    const first = Math.min(free, this.capacity - idx);
    return { first: this.data.subarray(idx, idx + first), second: this.data.subarray(0, free - first) };
  }

  /** Publishes the first n reserved bytes. */
  commit(n: number): void {
    this.checkOpen();
    if (!Number.isInteger(n) || n < 0 || n > this.spaceFor(n)) {
      throw new RangeError(`commit(${n}): only ${this.spaceFor(this.capacity)} bytes are free`);
    }
    if (n > 0) this.publishHead((this.pHead + n) >>> 0);
  }

  /** End of stream: the consumer drains what is left, then sees `ended`. Idempotent. */
  close(): void {
    if (this.pClosed) return;
    this.pClosed = true;
    // After every head store in program order: a consumer that reads closed = 1
    // and then head sees the final head, so `ended` cannot fire early.
    Atomics.store(this.ctl, W_CLOSED, 1);
    this.wake(W_DATA_SEQ);
  }

  /** The consumer aborted: writes now fail (0 / false); stop producing. */
  get aborted(): boolean {
    return Atomics.load(this.ctl, W_ABORTED) !== 0;
  }

  /** 0 = none, else the code the consumer passed to signal(). */
  signalled(): number {
    return Atomics.load(this.ctl, W_SIGNAL);
  }

  /**
   * Waits (Atomics.wait: worker threads only — on Node's main thread it would block the event loop)
   * until `minBytes` are free, the consumer aborts, or a signal arrives during the wait. True when
   * one of those may have happened (re-check), false when `timeoutMs` passed first.
   */
  waitSpace(timeoutMs: number, minBytes = 1): boolean {
    checkTimeout(timeoutMs);
    this.checkWant(minBytes);
    const signal0 = Atomics.load(this.ctl, W_SIGNAL);
    for (let i = timeoutMs > 0 ? SPIN : 0; i >= 0; i--) if (this.spaceReady(minBytes, signal0)) return true;
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      // Announce, then check once more, then sleep on the sequence taken before
      // the check (see announce()).
      const seq = this.announce(W_SPACE_SEQ, W_P_WAIT_SEQ, W_P_WANT, minBytes);
      const ready = this.spaceReady(minBytes, signal0);
      const left = deadline - performance.now();
      if (ready || !(left > 0)) {
        Atomics.store(this.ctl, W_P_WANT, 0);
        return ready;
      }
      Atomics.wait(this.ctl, W_SPACE_SEQ, seq, left);
      Atomics.store(this.ctl, W_P_WANT, 0);
      if (this.spaceReady(minBytes, signal0)) return true;
    }
  }

  /** waitSpace without blocking the thread (Atomics.waitAsync): usable on the main thread. */
  async waitSpaceAsync(timeoutMs: number, minBytes = 1): Promise<boolean> {
    checkTimeout(timeoutMs);
    this.checkWant(minBytes);
    const signal0 = Atomics.load(this.ctl, W_SIGNAL);
    if (this.spaceReady(minBytes, signal0)) return true;
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      // The same announce / re-check / sleep order as waitSpace.
      const seq = this.announce(W_SPACE_SEQ, W_P_WAIT_SEQ, W_P_WANT, minBytes);
      const ready = this.spaceReady(minBytes, signal0);
      const left = deadline - performance.now();
      if (ready || !(left > 0)) {
        Atomics.store(this.ctl, W_P_WANT, 0);
        return ready;
      }
      await this.sleepAsync(W_SPACE_SEQ, seq, left);
      Atomics.store(this.ctl, W_P_WANT, 0);
      if (this.spaceReady(minBytes, signal0)) return true;
    }
  }

  // ---------------------------------------------------------------- consumer

  /** Byte-stream read into dst; returns count (0 when empty). */
  readSome(dst: Uint8Array): number {
    const n = Math.min(dst.length, this.dataFor(dst.length));
    if (n === 0) return 0;
    const tail = this.cTail;
    const idx = tail & this.mask;
    const first = Math.min(n, this.capacity - idx);
    dst.set(this.data.subarray(idx, idx + first), 0);
    if (n > first) dst.set(this.data.subarray(0, n - first), first);
    this.publishTail((tail + n) >>> 0);
    return n;
  }

  /** Zero-copy consumer: the whole readable region (two views when it wraps), valid until consume(). */
  peek(): RingRegion {
    const used = this.dataFor(this.capacity);
    const idx = this.cTail & this.mask;
    const first = Math.min(used, this.capacity - idx);
    return { first: this.data.subarray(idx, idx + first), second: this.data.subarray(0, used - first) };
  }

  /** Releases the first n readable bytes to the producer. */
  consume(n: number): void {
    if (!Number.isInteger(n) || n < 0 || n > this.dataFor(n)) {
      throw new RangeError(`consume(${n}): only ${this.dataFor(this.capacity)} bytes are readable`);
    }
    if (n > 0) this.publishTail((this.cTail + n) >>> 0);
  }

  /** The payload length of the next record, or -1 when there is none now. */
  nextRecordLength(): number {
    if (this.dataFor(1) === 0) return -1;
    return this.recordLengthAt(this.cTail);
  }

  /** Record read: the next whole record copied out, or null if none. */
  readRecord(): Uint8Array | null {
    const len = this.nextRecordLength();
    if (len < 0) return null;
    const out = new Uint8Array(len);
    this.takeRecord(len, out);
    return out;
  }

  /**
   * Record read into dst: returns the record's length, or -1 if none. RangeError (record left in the
   * ring) when dst is shorter than the record: nextRecordLength() says how long it is.
   */
  readRecordInto(dst: Uint8Array): number {
    const len = this.nextRecordLength();
    if (len < 0) return -1;
    if (dst.length < len) throw new RangeError(`record of ${len} bytes does not fit in ${dst.length}`);
    this.takeRecord(len, dst);
    return len;
  }

  /**
   * Visits every whole record available now (at most `limit`), consuming them; returns how many.
   * The payload view is valid only during the call (it is the ring's own memory, or a scratch copy
   * when the record wraps). A record whose visit throws counts as consumed.
   */
  drainRecords(visit: (payload: Uint8Array) => void, limit = Infinity): number {
    let tail = this.cTail;
    const head = (this.cHead = Atomics.load(this.ctl, W_HEAD) >>> 0);
    if (tail === head || !(limit > 0)) return 0;
    if ((tail & 3) !== 0) throw new Error('ring carries a byte stream, not records');
    const cap = this.capacity;
    const mask = this.mask;
    const data = this.data;
    const words = this.words;
    // Hand space back every eighth of the ring so a long batch does not keep a
    // producer that is out of room waiting for the whole of it.
    const step = cap >>> 3;
    let published = tail;
    let count = 0;
    try {
      while (tail !== head && count < limit) {
        if ((tail - published) >>> 0 >= step) {
          // Every record before `tail` has been visited and its view dropped.
          this.publishTail(tail);
          published = tail;
        }
        const idx = tail & mask;
        const len = words[idx >>> 2];
        const need = 4 + ((len + 3) & -4);
        if (len < 0 || need > (head - tail) >>> 0) throw new Error('ring corrupt: record overruns the data');
        const p = idx + 4 === cap ? 0 : idx + 4;
        tail = (tail + need) >>> 0;
        count++;
        if (len <= cap - p) visit(data.subarray(p, p + len));
        else visit(this.unwrap(p, len));
      }
    } finally {
      if (tail !== published) this.publishTail(tail);
    }
    return count;
  }

  /** The producer closed (there may still be data to read). */
  get closed(): boolean {
    return Atomics.load(this.ctl, W_CLOSED) !== 0;
  }

  /** The producer closed and everything was read. */
  get ended(): boolean {
    // closed before head: close() stored closed after its last head, so the head
    // read here is final (see close()).
    if (Atomics.load(this.ctl, W_CLOSED) === 0) return false;
    return Atomics.load(this.ctl, W_HEAD) === Atomics.load(this.ctl, W_TAIL);
  }

  /** Tells the producer to stop: its writes fail from now on, and a waiting producer wakes. Idempotent. */
  abort(): void {
    Atomics.store(this.ctl, W_ABORTED, 1);
    this.wake(W_SPACE_SEQ);
  }

  /**
   * Tells the producer "halt with reason `code`" (a non-zero int32) and wakes it if it waits. The first
   * code sticks; later ones are ignored. Writes still work: the producer reads signalled() and decides.
   */
  signal(code: number): void {
    if (!Number.isInteger(code) || code === 0 || code !== (code | 0)) {
      throw new RangeError(`signal code must be a non-zero int32, got ${code}`);
    }
    // Only the consumer writes this word, so load-then-store cannot race.
    if (Atomics.load(this.ctl, W_SIGNAL) !== 0) return;
    Atomics.store(this.ctl, W_SIGNAL, code);
    this.wake(W_SPACE_SEQ);
  }

  /**
   * Waits (Atomics.wait: worker threads only) until `minBytes` are readable or the producer closed.
   * True when that may have happened (re-check), false when `timeoutMs` passed first. A consumer that
   * waits for more than 3/4 of the capacity can deadlock against writeAll (which waits for up to 1/4).
   */
  waitData(timeoutMs: number, minBytes = 1): boolean {
    checkTimeout(timeoutMs);
    this.checkWant(minBytes);
    for (let i = timeoutMs > 0 ? SPIN : 0; i >= 0; i--) if (this.dataReady(minBytes)) return true;
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      // Announce, re-check, sleep: the mirror of waitSpace.
      const seq = this.announce(W_DATA_SEQ, W_C_WAIT_SEQ, W_C_WANT, minBytes);
      const ready = this.dataReady(minBytes);
      const left = deadline - performance.now();
      if (ready || !(left > 0)) {
        Atomics.store(this.ctl, W_C_WANT, 0);
        return ready;
      }
      Atomics.wait(this.ctl, W_DATA_SEQ, seq, left);
      Atomics.store(this.ctl, W_C_WANT, 0);
      if (this.dataReady(minBytes)) return true;
    }
  }

  /** waitData without blocking the thread (Atomics.waitAsync): usable on the main thread. */
  async waitDataAsync(timeoutMs: number, minBytes = 1): Promise<boolean> {
    checkTimeout(timeoutMs);
    this.checkWant(minBytes);
    if (this.dataReady(minBytes)) return true;
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const seq = this.announce(W_DATA_SEQ, W_C_WAIT_SEQ, W_C_WANT, minBytes);
      const ready = this.dataReady(minBytes);
      const left = deadline - performance.now();
      if (ready || !(left > 0)) {
        Atomics.store(this.ctl, W_C_WANT, 0);
        return ready;
      }
      await this.sleepAsync(W_DATA_SEQ, seq, left);
      Atomics.store(this.ctl, W_C_WANT, 0);
      if (this.dataReady(minBytes)) return true;
    }
  }

  // ---------------------------------------------------------------- internals

  private checkOpen(): void {
    if (this.pClosed) throw new Error('write to a closed ring');
  }

  private checkWant(minBytes: number): void {
    if (!Number.isInteger(minBytes) || minBytes < 1 || minBytes > this.capacity) {
      throw new RangeError(`minBytes must be in 1 .. ${this.capacity}, got ${minBytes}`);
    }
  }

  /** Free bytes for the producer, re-reading the tail only when the cached one says `need` does not fit. */
  private spaceFor(need: number): number {
    let free = this.capacity - ((this.pHead - this.pTail) >>> 0);
    if (free < need) {
      // Acquire: the consumer stored tail after it finished reading those bytes,
      // so overwriting them from here on cannot change what it read.
      this.pTail = Atomics.load(this.ctl, W_TAIL) >>> 0;
      free = this.capacity - ((this.pHead - this.pTail) >>> 0);
    }
    return free;
  }

  /** Readable bytes for the consumer, re-reading the head only when the cached one says fewer than `want`. */
  private dataFor(want: number): number {
    let used = (this.cHead - this.cTail) >>> 0;
    if (used < want) {
      // Acquire: the producer stored head after writing the bytes below it, so
      // the plain reads that follow see them.
      this.cHead = Atomics.load(this.ctl, W_HEAD) >>> 0;
      used = (this.cHead - this.cTail) >>> 0;
    }
    return used;
  }

  private publishHead(head: number): void {
    this.pHead = head;
    // Release: the data bytes were written above with plain stores; this
    // sequentially consistent store orders them before the new head, so a
    // consumer that loads this head (synchronises-with) reads complete data.
    Atomics.store(this.ctl, W_HEAD, head | 0);
    // After the store (Dekker with announce()): if the consumer's last check
    // missed this head, its announcement is visible here.
    const want = Atomics.load(this.ctl, W_C_WANT);
    if (want !== 0 && this.asleepOn(W_C_WAIT_SEQ, W_DATA_SEQ)) {
      // Re-read the tail only now (rare): the cached one would overstate `used`
      // and wake a consumer that waits for more than a byte on every publish.
      // Tail only grows, so this can overstate but never understate.
      this.pTail = Atomics.load(this.ctl, W_TAIL) >>> 0;
      if ((head - this.pTail) >>> 0 >= want) this.wake(W_DATA_SEQ);
    }
  }

  private publishTail(tail: number): void {
    this.cTail = tail;
    // Release: every read of the freed bytes is done before the producer can
    // see them as free.
    Atomics.store(this.ctl, W_TAIL, tail | 0);
    // Mirror of publishHead.
    const want = Atomics.load(this.ctl, W_P_WANT);
    if (want !== 0 && this.asleepOn(W_P_WAIT_SEQ, W_SPACE_SEQ)) {
      this.cHead = Atomics.load(this.ctl, W_HEAD) >>> 0;
      if (this.capacity - ((this.cHead - tail) >>> 0) >= want) this.wake(W_SPACE_SEQ);
    }
  }

  /**
   * Before a side's last check and sleep: records the sequence it will sleep on
   * (`waitSeqWord`), then how many bytes it needs (`wantWord`), and returns the
   * sequence. Lost wake-ups are impossible: the announcement is stored before
   * the check and the other side loads it after its cursor store, so with
   * sequentially consistent atomics either the check sees the new cursor or
   * the other side sees the announcement, and then bumps the sequence and
   * notifies, so Atomics.wait(seq) returns 'not-equal' or is woken.
   */
  private announce(seqWord: number, waitSeqWord: number, wantWord: number, minBytes: number): number {
    const seq = Atomics.load(this.ctl, seqWord);
    Atomics.store(this.ctl, waitSeqWord, seq);
    Atomics.store(this.ctl, wantWord, minBytes);
    return seq;
  }

  /**
   * Whether the other side still sleeps on the sequence it announced: once
   * bumped, its wait returns anyway, so one wake-up per sleep is enough. (Waking
   * on every publish until the sleeper clears its want can cost a system call per
   * record while a wake-up is under way, and slow the waker into a convoy.) Only
   * this side bumps `seqWord`, so the answer cannot go stale before wake().
   */
  private asleepOn(waitSeqWord: number, seqWord: number): boolean {
    return Atomics.load(this.ctl, waitSeqWord) === Atomics.load(this.ctl, seqWord);
  }

  private wake(seqWord: number): void {
    // The bump makes a waiter that took the old sequence but has not slept yet
    // return 'not-equal' instead of missing the notify.
    Atomics.add(this.ctl, seqWord, 1);
    Atomics.notify(this.ctl, seqWord);
  }

  private spaceReady(minBytes: number, signal0: number): boolean {
    return (
      Atomics.load(this.ctl, W_ABORTED) !== 0 ||
      Atomics.load(this.ctl, W_SIGNAL) !== signal0 ||
      this.spaceFor(minBytes) >= minBytes
    );
  }

  private dataReady(minBytes: number): boolean {
    return Atomics.load(this.ctl, W_CLOSED) !== 0 || this.dataFor(minBytes) >= minBytes;
  }

  private sleepAsync(seqWord: number, seq: number, ms: number): Promise<void> {
    return waitWordAsync(this.ctl, seqWord, seq, ms);
  }

  private recordLengthAt(tail: number): number {
    if ((tail & 3) !== 0) throw new Error('ring carries a byte stream, not records');
    const len = this.words[(tail & this.mask) >>> 2];
    if (len < 0 || 4 + ((len + 3) & -4) > this.dataFor(this.capacity)) {
      throw new Error('ring corrupt: record overruns the data');
    }
    return len;
  }

  /** Copies the next record (of length len) into dst and consumes it. */
  private takeRecord(len: number, dst: Uint8Array): void {
    const tail = this.cTail;
    const idx = tail & this.mask;
    const p = idx + 4 === this.capacity ? 0 : idx + 4;
    const room = this.capacity - p;
    if (len <= room) dst.set(this.data.subarray(p, p + len), 0);
    else {
      dst.set(this.data.subarray(p, this.capacity), 0);
      dst.set(this.data.subarray(0, len - room), room);
    }
    this.publishTail((tail + 4 + ((len + 3) & -4)) >>> 0);
  }

  /** A wrapped record made contiguous in the scratch buffer. */
  private unwrap(p: number, len: number): Uint8Array {
    if (this.scratch.length < len) this.scratch = new Uint8Array(Math.max(len, this.scratch.length * 2, 256));
    const room = this.capacity - p;
    this.scratch.set(this.data.subarray(p, this.capacity), 0);
    this.scratch.set(this.data.subarray(0, len - room), room);
    return this.scratch.subarray(0, len);
  }
}
