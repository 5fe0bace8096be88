// The SPSC ring (src/ring/spsc-ring.ts, docs/ring.md): single-thread behaviour
// at every wrap position, then producer workers against a main-thread consumer.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { Worker } from 'node:worker_threads';

import { SpscRing, recordFootprint } from '../../src/ring/spsc-ring.js';
import { STREAM_BLOCK, checkRecord, streamBlock, type RingWorkerData } from '../helpers/ring-worker.js';

const WORKER = new URL('../helpers/ring-worker.js', import.meta.url);

/** Byte k of the single-thread tests' stream. */
const byteAt = (k: number): number => (k * 7 + (k >>> 8)) & 255;

function pattern(from: number, n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = byteAt(from + i);
  return out;
}

/** A ring whose cursors both stand at `offset` (written and read back). */
function ringAt(capacity: number, offset: number): SpscRing {
  const ring = new SpscRing(SpscRing.allocate(capacity));
  if (offset > 0) {
    assert.equal(ring.writeSome(new Uint8Array(offset)), offset);
    assert.equal(ring.readSome(new Uint8Array(offset)), offset);
  }
  return ring;
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}

test('allocate takes a power of two in 8 .. 2^30; attach rejects anything else', () => {
  for (const bad of [0, 4, 7, 48, 100, 2 ** 31, 1.5, NaN]) {
    assert.throws(() => SpscRing.allocate(bad), RangeError, String(bad));
  }
  const ring = new SpscRing(SpscRing.allocate(64));
  assert.equal(ring.capacity, 64);
  assert.equal(ring.used, 0);
  assert.equal(ring.free, 64);
  assert.throws(() => new SpscRing(new SharedArrayBuffer(2048)), TypeError);
  assert.throws(() => new SpscRing(new ArrayBuffer(2048) as unknown as SharedArrayBuffer), TypeError);
});

test('bytes: write and read back at every offset and length, partial writes when full', () => {
  const cap = 64;
  for (let offset = 0; offset < cap; offset++) {
    for (let n = 0; n <= cap; n++) {
      const ring = ringAt(cap, offset);
      const src = pattern(offset, cap + 10);
      assert.equal(ring.writeSome(src.subarray(0, n)), n);
      assert.equal(ring.used, n);
      assert.equal(ring.free, cap - n);
      // More than fits: only the free part goes in.
      assert.equal(ring.writeSome(src.subarray(n)), cap - n);
      assert.equal(ring.writeSome(src), 0);
      // Read back in two pieces split at n, the first through a larger buffer than needed.
      const a = new Uint8Array(n + 3);
      assert.equal(ring.readSome(a.subarray(0, n)), n);
      const b = new Uint8Array(cap + 5);
      assert.equal(ring.readSome(b), cap - n);
      assert.deepEqual(concat(a.subarray(0, n), b.subarray(0, cap - n)), src.subarray(0, cap));
      assert.equal(ring.readSome(b), 0);
      assert.equal(ring.used, 0);
    }
  }
});

test('bytes: the 32-bit cursors wrap past 2^32', () => {
  const sab = SpscRing.allocate(64);
  // docs/ring.md: head is Int32 word 32, tail word 64.
  const ctl = new Int32Array(sab, 0, 256);
  ctl[32] = ctl[64] = (2 ** 32 - 100) | 0;
  const ring = new SpscRing(sab);
  let written = 0;
  let read = 0;
  const dst = new Uint8Array(64);
  for (let step = 0; step < 40; step++) {
    written += ring.writeSome(pattern(written, 1 + ((step * 11) % 40)));
    assert.equal(ring.used, written - read);
    const n = ring.readSome(dst.subarray(0, 1 + ((step * 5) % 30)));
    assert.deepEqual(dst.subarray(0, n), pattern(read, n));
    read += n;
  }
  assert.ok(read > 200, 'crossed 2^32');
});

test('records: every size 0 .. capacity-4 at every aligned offset, read back four ways', () => {
  const cap = 64;
  let way = 0;
  for (let offset = 0; offset < cap; offset += 4) {
    for (let size = 0; size <= cap - 4; size++) {
      const ring = ringAt(cap, offset);
      const payload = pattern(size * 1000 + offset, size);
      assert.ok(ring.tryWriteRecord(payload));
      assert.equal(ring.used, recordFootprint(size));
      assert.equal(ring.nextRecordLength(), size);
      switch (way++ % 4) {
        case 0:
          assert.deepEqual(ring.readRecord(), payload);
          break;
        case 1: {
          const dst = new Uint8Array(cap);
          assert.equal(ring.readRecordInto(dst), size);
          assert.deepEqual(dst.subarray(0, size), payload);
          break;
        }
        default: {
          const seen: Uint8Array[] = [];
          assert.equal(
            ring.drainRecords((p) => seen.push(p.slice())),
            1,
          );
          assert.deepEqual(seen, [payload]);
        }
      }
      assert.equal(ring.used, 0);
      assert.equal(ring.readRecord(), null);
      assert.equal(ring.readRecordInto(new Uint8Array(4)), -1);
      assert.equal(ring.nextRecordLength(), -1);
    }
  }
});

test('records: drainRecords visits a wrapped record as one contiguous view, honours limit', () => {
  const ring = ringAt(64, 40);
  const records = [pattern(1, 10), pattern(2, 30), pattern(3, 0)]; // footprints 16, 36, 4: the second wraps
  for (const r of records) assert.ok(ring.tryWriteRecord(r));
  const seen: Uint8Array[] = [];
  assert.equal(
    ring.drainRecords((p) => seen.push(p.slice()), 2),
    2,
  );
  assert.deepEqual(seen, records.slice(0, 2));
  assert.equal(ring.used, 4);
  assert.equal(
    ring.drainRecords((p) => seen.push(p.slice())),
    1,
  );
  assert.deepEqual(seen, records);
  assert.equal(
    ring.drainRecords(() => assert.fail('empty')),
    0,
  );
});

test('records: a visit that throws consumes its record and the ones before it', () => {
  const ring = ringAt(64, 0);
  for (let i = 0; i < 3; i++) assert.ok(ring.tryWriteRecord(pattern(i, 8)));
  let calls = 0;
  assert.throws(
    () =>
      ring.drainRecords(() => {
        if (++calls === 2) throw new Error('boom');
      }),
    /boom/,
  );
  assert.equal(ring.used, recordFootprint(8));
  assert.deepEqual(ring.readRecord(), pattern(2, 8));
});

test('records: tryWriteRecord is all or nothing when full', () => {
  const ring = ringAt(64, 0);
  const r20 = pattern(20, 20); // footprint 24
  assert.ok(ring.tryWriteRecord(r20));
  assert.ok(ring.tryWriteRecord(r20));
  assert.equal(ring.used, 48);
  assert.equal(ring.tryWriteRecord(r20), false);
  assert.equal(ring.used, 48, 'a failed write leaves nothing behind');
  assert.ok(ring.tryWriteRecord(pattern(9, 9)), 'a record of footprint 16 still fits');
  assert.equal(ring.free, 0);
  assert.equal(ring.tryWriteRecord(new Uint8Array(0)), false);
  assert.deepEqual(ring.readRecord(), r20);
  assert.ok(ring.tryWriteRecord(r20));
  assert.deepEqual(ring.readRecord(), r20);
  assert.deepEqual(ring.readRecord(), pattern(9, 9));
  assert.deepEqual(ring.readRecord(), r20);
  assert.equal(ring.readRecord(), null);
});

test('records: RangeError for a record that could never fit, or a buffer too short', () => {
  const ring = ringAt(64, 0);
  assert.throws(() => ring.tryWriteRecord(new Uint8Array(61)), RangeError);
  assert.ok(ring.tryWriteRecord(new Uint8Array(60)));
  assert.throws(() => ring.readRecordInto(new Uint8Array(59)), RangeError);
  assert.equal(ring.readRecordInto(new Uint8Array(60)), 60, 'the record stayed');
  assert.equal(recordFootprint(0), 4);
  assert.equal(recordFootprint(1), 8);
  assert.equal(recordFootprint(96), 100);
});

test('reserve/commit and peek/consume across the wrap', () => {
  const ring = ringAt(64, 50);
  const r = ring.reserve();
  assert.equal(r.first.length, 14);
  assert.equal(r.second.length, 50);
  const src = pattern(0, 30);
  r.first.set(src.subarray(0, 14));
  r.second.set(src.subarray(14));
  assert.equal(ring.used, 0, 'nothing is visible before commit');
  ring.commit(30);
  assert.equal(ring.used, 30);
  assert.throws(() => ring.commit(35), RangeError);
  assert.deepEqual(ring.reserve().first.length + ring.reserve().second.length, 34);

  const p = ring.peek();
  assert.equal(p.first.length, 14);
  assert.equal(p.second.length, 16);
  assert.deepEqual(concat(p.first, p.second), src);
  ring.consume(20);
  assert.throws(() => ring.consume(11), RangeError);
  const q = ring.peek();
  assert.equal(q.first.length, 10);
  assert.equal(q.second.length, 0);
  assert.deepEqual(q.first, src.subarray(20));
  ring.consume(10);
  assert.equal(ring.peek().first.length, 0);
  ring.commit(0);
  ring.consume(0);
});

test('close: the consumer drains what is left, then sees the end', () => {
  const sab = SpscRing.allocate(64);
  const ring = new SpscRing(sab);
  // The consumer's own attachment, as another thread would have.
  const consumer = new SpscRing(sab);
  assert.equal(ring.writeSome(pattern(0, 10)), 10);
  assert.equal(ring.closed, false);
  ring.close();
  ring.close();
  assert.equal(ring.closed, true);
  assert.equal(ring.ended, false);
  assert.equal(ring.waitData(0), true, 'closed counts as ready');
  assert.throws(() => ring.writeSome(pattern(0, 1)), /closed/);
  assert.throws(() => ring.tryWriteRecord(pattern(0, 1)), /closed/);
  assert.throws(() => ring.reserve(), /closed/);
  assert.equal(consumer.closed, true);
  assert.equal(consumer.ended, false);
  const dst = new Uint8Array(64);
  assert.equal(consumer.readSome(dst), 10);
  assert.deepEqual(dst.subarray(0, 10), pattern(0, 10));
  assert.equal(consumer.ended, true);
  assert.equal(ring.ended, true, 'both attachments agree');
  assert.equal(consumer.readSome(dst), 0);
});

test('abort: the producer fails fast; signal: the first code sticks and writes go on', () => {
  const ring = ringAt(64, 0);
  assert.equal(ring.signalled(), 0);
  ring.signal(7);
  ring.signal(9);
  assert.equal(ring.signalled(), 7);
  assert.throws(() => ring.signal(0), RangeError);
  assert.throws(() => ring.signal(2 ** 31), RangeError);
  assert.equal(ring.writeSome(pattern(0, 8)), 8, 'a signal does not stop writes');
  assert.equal(ring.aborted, false);

  ring.abort();
  assert.equal(ring.aborted, true);
  assert.equal(ring.writeSome(pattern(0, 8)), 0);
  assert.equal(ring.tryWriteRecord(pattern(0, 8)), false);
  assert.equal(ring.writeAll(pattern(0, 8)), false);
  assert.equal(ring.writeAll(pattern(0, 100)), false);
  const r = ring.reserve();
  assert.equal(r.first.length + r.second.length, 0);
  assert.equal(ring.waitSpace(1000, 64), true, 'an aborted ring does not keep a producer waiting');
  assert.equal(ring.used, 8, 'what was written stays readable');
});

test('records and bytes do not mix: a misaligned head or tail is refused', () => {
  const ring = ringAt(64, 0);
  ring.writeSome(pattern(0, 3));
  assert.throws(() => ring.tryWriteRecord(pattern(0, 1)), /byte stream/);
  assert.throws(() => ring.readRecord(), /corrupt/, 'three bytes are no record');
  ring.readSome(new Uint8Array(3));
  ring.writeSome(pattern(0, 1));
  assert.throws(() => ring.readRecord(), /byte stream/);
  assert.throws(() => ring.drainRecords(() => {}), /byte stream/);
});

test('waits time out, sync and async, and report readiness at once', async () => {
  const ring = ringAt(64, 0);
  assert.equal(ring.waitData(0), false);
  assert.equal(ring.waitSpace(0), true);
  assert.equal(await ring.waitSpaceAsync(0, 64), true);
  assert.throws(() => ring.waitData(0, 65), RangeError);
  assert.throws(() => ring.waitData(-1), RangeError);

  let t0 = performance.now();
  assert.equal(await ring.waitDataAsync(60), false);
  const elapsedData = performance.now() - t0;
  assert.ok(elapsedData >= 60 && elapsedData < 1000, `waitDataAsync(60) took ${elapsedData} ms`);

  ring.writeSome(new Uint8Array(60));
  assert.equal(await ring.waitDataAsync(1000, 60), true);
  t0 = performance.now();
  assert.equal(await ring.waitSpaceAsync(60, 8), false);
  const elapsedSpace = performance.now() - t0;
  assert.ok(elapsedSpace >= 60 && elapsedSpace < 1000, `waitSpaceAsync(60) took ${elapsedSpace} ms`);

  // A consume on this thread wakes an async waiter here, before its timeout.
  const waiting = ring.waitSpaceAsync(5000, 8);
  setTimeout(() => ring.consume(8), 20);
  t0 = performance.now();
  assert.equal(await waiting, true);
  assert.ok(performance.now() - t0 < 2000);
});

// ------------------------------------------------------------ cross-thread

interface WorkerReply {
  ok?: boolean;
  error?: string;
  full?: boolean;
  result?: boolean;
  aborted?: boolean;
  elapsedMs?: number;
  waits?: number;
}

interface Started {
  next: () => Promise<WorkerReply>;
  /** Settles when the worker has exited (listened for from the start: the exit may come first). */
  exited: Promise<unknown>;
}

function startWorker(data: RingWorkerData): Started {
  const worker = new Worker(WORKER, { workerData: data });
  const exited = once(worker, 'exit');
  const queue: WorkerReply[] = [];
  const waiters: ((m: WorkerReply) => void)[] = [];
  const deliver = (m: WorkerReply): void => {
    const w = waiters.shift();
    if (w) w(m);
    else queue.push(m);
  };
  worker.on('message', deliver);
  worker.on('error', (err: Error) => deliver({ ok: false, error: err.stack ?? String(err) }));
  const next = (): Promise<WorkerReply> => {
    const m = queue.shift();
    return m ? Promise.resolve(m) : new Promise((resolve) => waiters.push(resolve));
  };
  return { next, exited };
}

/** Resolves once the producer announced it waits for space (docs/ring.md: Int32 word 97). */
async function producerWaiting(sab: SharedArrayBuffer): Promise<void> {
  const ctl = new Int32Array(sab, 0, 256);
  while (Atomics.load(ctl, 97) === 0) await new Promise((r) => setTimeout(r, 2));
}

async function finished(w: Started): Promise<WorkerReply> {
  const m = await w.next();
  assert.equal(m.ok, true, m.error);
  await w.exited;
  return m;
}

test('cross-thread bytes: 64 MiB through a 64 KiB ring, every byte checked, then the end', async () => {
  const total = 64 * 1024 * 1024 + 12345;
  const seed = 0x1234;
  const sab = SpscRing.allocate(64 * 1024);
  const ring = new SpscRing(sab);
  const w = startWorker({ role: 'bytes', sab, seed, total });

  let pos = 0;
  let blockIndex = -1;
  let block: Uint8Array = new Uint8Array(0);
  const verify = (chunk: Uint8Array): void => {
    for (let i = 0; i < chunk.length;) {
      const b = Math.floor(pos / STREAM_BLOCK);
      if (b !== blockIndex) {
        block = streamBlock(seed, b);
        blockIndex = b;
      }
      const off = pos - b * STREAM_BLOCK;
      const n = Math.min(chunk.length - i, STREAM_BLOCK - off);
      if (Buffer.compare(chunk.subarray(i, i + n), block.subarray(off, off + n)) !== 0) {
        assert.fail(`stream differs in ${n} bytes at ${pos}`);
      }
      i += n;
      pos += n;
    }
  };

  const dst = new Uint8Array(40000);
  for (let round = 0; ; round++) {
    let n: number;
    if (round % 2 === 0) {
      // Odd-sized reads, so they land at every alignment.
      n = ring.readSome(dst.subarray(0, 1 + ((round * 7919) % dst.length)));
      verify(dst.subarray(0, n));
    } else {
      const { first, second } = ring.peek();
      verify(first);
      verify(second);
      n = first.length + second.length;
      ring.consume(n);
    }
    if (n > 0) continue;
    if (ring.ended) break;
    assert.equal(await ring.waitDataAsync(10_000), true, `stalled at ${pos}`);
  }
  assert.equal(pos, total);
  await finished(w);
});

test('cross-thread records: 1 M records of 0-300 bytes in order through a 64 KiB ring', async () => {
  const count = 1_000_000;
  const sab = SpscRing.allocate(64 * 1024);
  const ring = new SpscRing(sab);
  const w = startWorker({ role: 'records', sab, count });

  let i = 0;
  let failure: string | null = null;
  const visit = (payload: Uint8Array): void => {
    failure ??= checkRecord(i, payload);
    i++;
  };
  for (let round = 0; ; round++) {
    let n: number;
    if (round % 16 === 15) {
      const r = ring.readRecord();
      n = r ? 1 : 0;
      if (r) visit(r);
    } else {
      n = ring.drainRecords(visit, round % 3 === 0 ? 100 : Infinity);
    }
    if (failure !== null) assert.fail(failure);
    if (n > 0) continue;
    if (ring.ended) break;
    assert.equal(await ring.waitDataAsync(10_000), true, `stalled at record ${i}`);
  }
  assert.equal(i, count);
  await finished(w);
});

test('cross-thread, both sides sleeping (sync waits): 4 MiB through a 256-byte ring, no lost wake-up', async () => {
  const total = 4 * 1024 * 1024;
  const seed = 99;
  const sab = SpscRing.allocate(256);
  const producer = startWorker({ role: 'bytes', sab, seed, total });
  const consumer = startWorker({ role: 'bytes-consumer', sab, seed, total });
  const [, c] = await Promise.all([finished(producer), finished(consumer)]);
  assert.ok(c.waits! > 0, 'the consumer had to wait');
});

test('cross-thread abort: a producer blocked in writeAll returns false promptly', async () => {
  const sab = SpscRing.allocate(64 * 1024);
  const ring = new SpscRing(sab);
  const w = startWorker({ role: 'block', sab });
  assert.deepEqual(await w.next(), { full: true });
  assert.equal(ring.free, 0);
  await producerWaiting(sab);
  const t0 = performance.now();
  ring.abort();
  const m = await finished(w);
  const ms = performance.now() - t0;
  assert.equal(m.result, false);
  assert.equal(m.aborted, true);
  assert.ok(ms < 1000, `the producer took ${ms} ms to see the abort`);
});

test('cross-thread waits: waitSpace times out in a worker, wakes on a signal; waitDataAsync wakes on data', async () => {
  const sab = SpscRing.allocate(64);
  const ring = new SpscRing(sab);
  ring.writeSome(new Uint8Array(64));

  let w = startWorker({ role: 'wait-space', sab, timeoutMs: 80 });
  let m = await finished(w);
  assert.equal(m.result, false);
  assert.ok(m.elapsedMs! >= 80 && m.elapsedMs! < 2000, `waitSpace(80) took ${m.elapsedMs} ms`);

  w = startWorker({ role: 'wait-space', sab, timeoutMs: 10_000 });
  await producerWaiting(sab);
  ring.signal(4);
  m = await finished(w);
  assert.equal(m.result, true);
  assert.ok(m.elapsedMs! < 5000);
  assert.equal(ring.free, 0, 'woken by the signal, not by space');

  const sab2 = SpscRing.allocate(1024);
  const ring2 = new SpscRing(sab2);
  w = startWorker({ role: 'late-write', sab: sab2, delayMs: 50, bytes: 100 });
  const t0 = performance.now();
  assert.equal(await ring2.waitDataAsync(10_000, 100), true);
  assert.ok(performance.now() - t0 < 5000);
  assert.equal(ring2.used, 100);
  await finished(w);
});
