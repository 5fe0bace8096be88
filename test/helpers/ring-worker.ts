// The producer side of the cross-thread ring tests (test/unit/spsc-ring.test.ts),
// run as a worker: new Worker(URL of this file, { workerData: { role, sab, ... } }).
// It posts { ok: true, ... } when its role is done, { ok: false, error } if it failed.
//
// Imported on the main thread it only exports the deterministic stream and
// records both sides agree on.

import { isMainThread, parentPort, workerData } from 'node:worker_threads';

import { SpscRing, recordFootprint } from '../../src/ring/spsc-ring.js';

/** The byte stream is made of blocks of this size, each a function of (seed, block index). */
export const STREAM_BLOCK = 65536;

/** Block `index` of the pseudo-random stream for `seed` (xorshift32, one word at a time). */
export function streamBlock(seed: number, index: number): Uint8Array {
  const words = new Uint32Array(STREAM_BLOCK / 4);
  let x = (Math.imul(seed ^ 0x5bd1e995, 0x9e3779b1) ^ Math.imul(index + 1, 0x85ebca6b)) | 1;
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    words[i] = x;
  }
  return new Uint8Array(words.buffer);
}

const mix = (i: number): number => {
  let h = Math.imul(i ^ 0x27d4eb2f, 0x9e3779b1);
  h ^= h >>> 15;
  return Math.imul(h, 0x85ebca6b) >>> 0;
};

/** Payload size of record i: 0 .. 300 bytes. */
export function recordSize(i: number): number {
  return mix(i) % 301;
}

/** Writes record i's payload into buf (≥ recordSize(i) bytes): its number (LE u32) if it fits, then a pattern. */
export function fillRecord(i: number, buf: Uint8Array): Uint8Array {
  const size = recordSize(i);
  const out = buf.subarray(0, size);
  for (let j = 0; j < size; j++) out[j] = (i + j * 13) & 255;
  if (size >= 4) new DataView(out.buffer, out.byteOffset, 4).setUint32(0, i, true);
  return out;
}

/** Why payload is not record i, or null when it is. */
export function checkRecord(i: number, payload: Uint8Array): string | null {
  const size = recordSize(i);
  if (payload.length !== size) return `record ${i}: length ${payload.length}, expected ${size}`;
  let j = 0;
  if (size >= 4) {
    const n = payload[0]! | (payload[1]! << 8) | (payload[2]! << 16) | (payload[3]! << 24);
    if (n >>> 0 !== i) return `record ${i}: got sequence number ${n >>> 0}`;
    j = 4;
  }
  for (; j < size; j++) {
    if (payload[j] !== ((i + j * 13) & 255)) return `record ${i}: byte ${j} differs`;
  }
  return null;
}

export type RingWorkerData =
  /** Writes `total` bytes of streamBlock(seed, …) with writeAll in pieces of varied size, then closes. */
  | { role: 'bytes'; sab: SharedArrayBuffer; seed: number; total: number }
  /** Reads and checks what 'bytes' writes, with waitData (the sync wait), to the end. */
  | { role: 'bytes-consumer'; sab: SharedArrayBuffer; seed: number; total: number }
  /** Writes records 0 .. count-1 (tryWriteRecord, waitSpace when full), then closes. */
  | { role: 'records'; sab: SharedArrayBuffer; count: number }
  /** Fills the ring, posts { full: true }, then reports what a blocked writeAll returns (abort). */
  | { role: 'block'; sab: SharedArrayBuffer }
  /** On a ring the test filled: reports waitSpace(timeoutMs) and how long it took. */
  | { role: 'wait-space'; sab: SharedArrayBuffer; timeoutMs: number }
  /** Writes `bytes` bytes after `delayMs`, then closes. */
  | { role: 'late-write'; sab: SharedArrayBuffer; delayMs: number; bytes: number };

function post(msg: object): void {
  parentPort!.postMessage(msg);
}

function run(job: RingWorkerData): void {
  const ring = new SpscRing(job.sab);
  switch (job.role) {
    case 'bytes': {
      let pos = 0;
      let piece = 1;
      for (let b = 0; pos < job.total; b++) {
        const block = streamBlock(job.seed, b);
        const end = Math.min(STREAM_BLOCK, job.total - pos);
        for (let off = 0; off < end;) {
          piece = (Math.imul(piece, 1103515245) + 12345) >>> 0;
          const n = Math.min(end - off, 1 + (piece % 24000));
          if (!ring.writeAll(block.subarray(off, off + n), 10_000))
            throw new Error(`writeAll failed at ${pos}`);
          off += n;
          pos += n;
        }
      }
      ring.close();
      post({ ok: true });
      return;
    }
    case 'bytes-consumer': {
      const dst = new Uint8Array(1000);
      let pos = 0;
      let sleeps = 0;
      let block = streamBlock(job.seed, 0);
      let blockIndex = 0;
      for (;;) {
        const n = ring.readSome(dst.subarray(0, 1 + (pos % dst.length)));
        for (let i = 0; i < n; i++, pos++) {
          if (pos >= (blockIndex + 1) * STREAM_BLOCK) block = streamBlock(job.seed, ++blockIndex);
          if (dst[i] !== block[pos - blockIndex * STREAM_BLOCK]) throw new Error(`byte ${pos} differs`);
        }
        if (n > 0) continue;
        if (ring.ended) break;
        sleeps++;
        if (!ring.waitData(10_000)) throw new Error(`no data at ${pos}`);
      }
      if (pos !== job.total) throw new Error(`ended at ${pos} of ${job.total}`);
      post({ ok: true, waits: sleeps });
      return;
    }
    case 'records': {
      const buf = new Uint8Array(512);
      let waits = 0;
      for (let i = 0; i < job.count; i++) {
        const payload = fillRecord(i, buf);
        while (!ring.tryWriteRecord(payload)) {
          if (ring.aborted) throw new Error('aborted');
          waits++;
          if (!ring.waitSpace(10_000, recordFootprint(payload.length)))
            throw new Error(`no space for record ${i}`);
        }
      }
      ring.close();
      post({ ok: true, waits });
      return;
    }
    case 'block': {
      const chunk = new Uint8Array(4096).fill(7);
      while (ring.writeSome(chunk) > 0);
      post({ full: true });
      const result = ring.writeAll(new Uint8Array(ring.capacity * 4), Infinity);
      post({ ok: true, result, aborted: ring.aborted });
      return;
    }
    case 'wait-space': {
      const t0 = performance.now();
      const result = ring.waitSpace(job.timeoutMs);
      post({ ok: true, result, elapsedMs: performance.now() - t0 });
      return;
    }
    case 'late-write': {
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, job.delayMs);
      if (!ring.writeAll(new Uint8Array(job.bytes).fill(1), 10_000)) throw new Error('writeAll failed');
      ring.close();
      post({ ok: true });
      return;
    }
  }
}

if (!isMainThread && parentPort) {
  try {
    run(workerData as RingWorkerData);
  } catch (err) {
    post({ ok: false, error: err instanceof Error ? err.stack : String(err) });
  }
}
