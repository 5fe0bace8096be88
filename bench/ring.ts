// The SPSC ring (src/ring/spsc-ring.ts) between two worker threads, as the
// product uses it: stream bytes (a session thread feeding the mover) and file
// history records (a session thread feeding the history thread). Baselines,
// measured in the same run: one thread doing one side's copy alone (the
// ceiling for a copy on each side), and one thread writing then draining the
// same records (the ring's per-record cost without a second core).
//
//   node -e "import('./dist/bench/ring.js').then((m) => m.benchRing())"

import { performance } from 'node:perf_hooks';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';

import { SpscRing, recordFootprint } from '../src/ring/spsc-ring.js';

const GIB = 2 ** 30;
const MIB = 2 ** 20;
const BYTES_TOTAL = GIB;
const BYTES_RING = 4 * MIB;
const BYTES_CHUNK = 64 * 1024;
const RECORDS = 10_000_000;
const RECORD_SIZE = 96;
const RECORD_RING = MIB;
/** The batched consumer sleeps until this much is there, or BATCH_MS passed. */
const BATCH_BYTES = 4096;
const BATCH_MS = 1;

type Role = 'bytes-producer' | 'bytes-consumer' | 'records-producer' | 'records-consumer';

interface Job {
  role: Role;
  sab: SharedArrayBuffer;
  /** Int32 [0]: 0 until the main thread says go. */
  go: SharedArrayBuffer;
  /** records-consumer: wait for BATCH_BYTES (or BATCH_MS) instead of any record. */
  batched?: boolean;
}

interface Done {
  role: Role;
  /** Times this side found the ring full (producer) or empty (consumer) and called a wait. */
  waits: number;
  check: number;
}

function runRole(job: Job): void {
  const ring = new SpscRing(job.sab);
  const go = new Int32Array(job.go);
  parentPort!.postMessage('ready');
  Atomics.wait(go, 0, 0);
  let waits = 0;
  let check = 0;
  switch (job.role) {
    case 'bytes-producer': {
      const src = new Uint8Array(BYTES_CHUNK).fill(0x5a);
      for (let done = 0; done < BYTES_TOTAL; done += BYTES_CHUNK) {
        const n = ring.writeSome(src);
        if (n === BYTES_CHUNK) continue;
        // Full: writeAll waits (Atomics.wait) for room for the rest.
        waits++;
        if (!ring.writeAll(src.subarray(n))) throw new Error('aborted');
      }
      ring.close();
      break;
    }
    case 'bytes-consumer': {
      const dst = new Uint8Array(BYTES_CHUNK);
      for (;;) {
        const n = ring.readSome(dst);
        if (n > 0) {
          check += n;
          continue;
        }
        if (ring.ended) break;
        waits++;
        ring.waitData(Infinity);
      }
      break;
    }
    case 'records-producer': {
      const payload = new Uint8Array(RECORD_SIZE).fill(1);
      const view = new DataView(payload.buffer);
      const need = recordFootprint(RECORD_SIZE);
      for (let i = 0; i < RECORDS; i++) {
        view.setUint32(0, i, true);
        while (!ring.tryWriteRecord(payload)) {
          waits++;
          ring.waitSpace(Infinity, need);
        }
      }
      ring.close();
      break;
    }
    case 'records-consumer': {
      // Counts records that arrive whole and in order (their number is in the first 4 bytes).
      let next = 0;
      const visit = (p: Uint8Array): void => {
        if ((p[0]! | (p[1]! << 8) | (p[2]! << 16) | (p[3]! << 24)) === next && p.length === RECORD_SIZE)
          next++;
      };
      for (;;) {
        if (ring.drainRecords(visit) > 0) continue;
        if (ring.ended) break;
        waits++;
        if (job.batched) ring.waitData(BATCH_MS, BATCH_BYTES);
        else ring.waitData(Infinity);
      }
      check = next;
      break;
    }
  }
  parentPort!.postMessage({ role: job.role, waits, check } satisfies Done);
}

if (!isMainThread && parentPort && (workerData as Job | undefined)?.role) runRole(workerData as Job);

async function pair(
  producer: Role,
  consumer: Role,
  capacity: number,
  batched = false,
): Promise<{ ms: number; done: Done[] }> {
  const sab = SpscRing.allocate(capacity);
  const go = new SharedArrayBuffer(4);
  const url = new URL(import.meta.url);
  const workers = [producer, consumer].map(
    (role) => new Worker(url, { workerData: { role, sab, go, batched } satisfies Job }),
  );
  const ready = workers.map((w) => new Promise((r) => w.once('message', r)));
  const finished = workers.map(
    (w) =>
      new Promise<Done>((resolve, reject) => {
        w.on('message', (m: Done | string) => typeof m === 'object' && resolve(m));
        w.once('error', reject);
      }),
  );
  await Promise.all(ready);
  const t0 = performance.now();
  Atomics.store(new Int32Array(go), 0, 1);
  Atomics.notify(new Int32Array(go), 0);
  const done = await Promise.all(finished);
  const ms = performance.now() - t0;
  await Promise.all(workers.map((w) => w.terminate()));
  return { ms, done };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1]!;
}

/** One thread copying BYTES_TOTAL in BYTES_CHUNK pieces into a BYTES_RING buffer: one side's copy alone. */
function copyBaseline(): number {
  const src = new Uint8Array(BYTES_CHUNK).fill(0x5a);
  const dst = new Uint8Array(BYTES_RING);
  const t0 = performance.now();
  for (let done = 0; done < BYTES_TOTAL; done += BYTES_CHUNK) dst.set(src, done % BYTES_RING);
  return performance.now() - t0;
}

/** The same records written and drained by one thread, a ring-full at a time. */
function recordsOneThread(): number {
  const ring = new SpscRing(SpscRing.allocate(RECORD_RING));
  const payload = new Uint8Array(RECORD_SIZE).fill(1);
  let sum = 0;
  const visit = (p: Uint8Array): void => {
    sum += p[0]!;
  };
  const t0 = performance.now();
  for (let i = 0; i < RECORDS;) {
    while (i < RECORDS && ring.tryWriteRecord(payload)) i++;
    ring.drainRecords(visit);
  }
  const ms = performance.now() - t0;
  if (sum !== RECORDS) throw new Error('records lost');
  return ms;
}

async function recordRuns(runs: number, batched: boolean): Promise<{ ms: number; waits: string }> {
  const times: number[] = [];
  let waits = '';
  for (let r = 0; r < runs; r++) {
    const { ms, done } = await pair('records-producer', 'records-consumer', RECORD_RING, batched);
    if (done[1]!.check !== RECORDS) throw new Error(`records: ${done[1]!.check} arrived whole and in order`);
    times.push(ms);
    waits = `found it full ${done[0]!.waits}×, empty ${done[1]!.waits}×`;
  }
  return { ms: median(times), waits };
}

export async function benchRing(runs = 5): Promise<void> {
  console.log(`\nring (src/ring/spsc-ring.ts): producer worker → consumer worker, median of ${runs} runs`);

  const bytes: number[] = [];
  let bytesWaits = '';
  for (let r = 0; r < runs; r++) {
    const { ms, done } = await pair('bytes-producer', 'bytes-consumer', BYTES_RING);
    if (done[1]!.check !== BYTES_TOTAL) throw new Error(`bytes: consumer saw ${done[1]!.check}`);
    bytes.push(ms);
    bytesWaits = `found it full ${done[0]!.waits}×, empty ${done[1]!.waits}×`;
  }
  const copy = median([copyBaseline(), copyBaseline(), copyBaseline()]);
  const gbs = (ms: number): string => (BYTES_TOTAL / 1e9 / (ms / 1e3)).toFixed(2);
  console.log(
    `  bytes, 1 GiB through a 4 MiB ring, 64 KiB writeSome/writeAll → readSome:` +
      ` ${gbs(median(bytes))} GB/s (${median(bytes).toFixed(0)} ms; last run ${bytesWaits})`,
  );
  console.log(`    baseline, one side's 64 KiB copies alone on one thread: ${gbs(copy)} GB/s`);

  const mps = (ms: number): string => (RECORDS / 1e6 / (ms / 1e3)).toFixed(2);
  const batched = await recordRuns(runs, true);
  console.log(
    `  records, 10 M × 96 B through a 1 MiB ring, tryWriteRecord → drainRecords,` +
      ` consumer waits for ${BATCH_BYTES / 1024} KiB or ${BATCH_MS} ms:` +
      ` ${mps(batched.ms)} M records/s (${batched.ms.toFixed(0)} ms; last run ${batched.waits})`,
  );
  const eager = await recordRuns(runs, false);
  console.log(
    `  records, the same, consumer wakes for every record (waitData(∞)):` +
      ` ${mps(eager.ms)} M records/s (${eager.ms.toFixed(0)} ms; last run ${eager.waits})`,
  );
  const one = median([recordsOneThread(), recordsOneThread(), recordsOneThread()]);
  console.log(`    baseline, write + drain on one thread: ${mps(one)} M records/s`);
}
