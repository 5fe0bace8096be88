// Worker for bench/history.ts: plays a session thread that produces `count`
// path-model history records as fast as it can, then waits for delivery.

import { lstatSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import type { HistoryChannel } from '../src/history/control.js';
import { RingProducer } from '../src/history/producer.js';
import { FLAG_NODE, HistoryModel, RecordWriter } from '../src/history/record.js';

const { channel, count } = workerData as { channel: HistoryChannel; count: number };
const st = lstatSync(process.cwd(), { bigint: true });
const producer = new RingProducer(channel);
const w = new RecordWriter();
// Records made beforehand: this measures the history thread, not the
// producer's own cost of making records, which is measured apart below.
const made: Uint8Array[] = [];
for (let i = 0; i < 4096; i++) {
  made.push(
    w
      .entry(`dir-${i % 1000}/sub-${i % 37}/file-${i}.dat`, st, BigInt(i + 3), BigInt(i) * 1536n, FLAG_NODE)!
      .slice(),
  );
}
const t0 = performance.now();
producer.write(w.hello(HistoryModel.PATH));
for (let i = 0; i < count; i++) producer.write(made[i & 4095]!);
const produced = performance.now() - t0;
const status = await producer.finish();
const total = performance.now() - t0;
// The session thread's cost per record: making it from an lstat result.
const t1 = performance.now();
const n = 1_000_000;
for (let i = 0; i < n; i++)
  w.entry(`dir-${i % 1000}/sub-${i % 37}/file-${i}.dat`, st, BigInt(i + 3), BigInt(i) * 1536n, FLAG_NODE);
const makeNs = ((performance.now() - t1) * 1e6) / n;
parentPort!.postMessage({ produced, total, status, ringWaits: producer.ringWaits, makeNs });
