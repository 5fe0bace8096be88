// Tape positioning cost against tape size: the same positioning workload on a
// small image and on a 10 GiB sparse image of 1,000,000 records. Positioning
// uses the index (binary search over fixed-size entries) and never reads the
// records it skips, so the two should cost about the same.
//
//   npm run bench -- --records 1000000   (default)

import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';

import { buildSparseTapeImage, openTapeImage } from '../src/devices/tape-image.js';

const RECORD = 10240;
const FILES = 10;

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}

/** One round: open, then FSF/BSF/FSR/BSR/EOD/locate/rewind and a read of the last record. */
function round(path: string, perFile: number): void {
  const t = openTapeImage(path, { readOnly: true });
  const buf = Buffer.allocUnsafe(RECORD);
  t.spaceFilemarks(FILES - 1);
  t.spaceRecords(perFile - 1, { crossFilemark: false });
  t.readRecord(buf, { crossFilemark: false });
  t.spaceFilemarks(-(FILES / 2));
  t.spaceRecords(-(perFile / 2), { crossFilemark: false });
  t.seekEod();
  t.locate(Math.floor((FILES * (perFile + 1)) / 3));
  t.spaceRecords(perFile, { crossFilemark: true });
  t.rewind();
  t.spaceFilemarks(FILES);
  t.close();
}

function measure(path: string, perFile: number, rounds: number): number {
  for (let i = 0; i < 5; i++) round(path, perFile); // warm the page cache
  const start = performance.now();
  for (let i = 0; i < rounds; i++) round(path, perFile);
  return (performance.now() - start) / rounds;
}

export function benchTapePositioning(): void {
  const records = arg('records', 1_000_000);
  const rounds = arg('rounds', 200);
  const dir = mkdtempSync(join(os.tmpdir(), 'ndmpd-bench-tape-'));
  try {
    const small = join(dir, 'small');
    const large = join(dir, 'large');
    buildSparseTapeImage(
      small,
      Array.from({ length: FILES }, () => ({ records: 10, recordSize: RECORD })),
    );
    const built = performance.now();
    buildSparseTapeImage(
      large,
      Array.from({ length: FILES }, () => ({ records: records / FILES, recordSize: RECORD })),
      { capacity: BigInt(records) * BigInt(RECORD) * 2n },
    );
    const buildMs = performance.now() - built;
    const smallMs = measure(small, 10, rounds);
    const largeMs = measure(large, records / FILES, rounds);
    const gib = (records * RECORD) / 2 ** 30;
    console.log('tape positioning (open + 10 positioning ops + 1 read, per round)');
    console.log(
      `  small image:  ${FILES * 10} records                  ${(smallMs * 1000).toFixed(0)} µs/round`,
    );
    console.log(
      `  large image:  ${records} records, ${(gib * 1.073741824).toFixed(1)} GB sparse  ${(largeMs * 1000).toFixed(0)} µs/round` +
        `  (built in ${buildMs.toFixed(0)} ms)`,
    );
    console.log(`  ratio large/small: ${(largeMs / smallMs).toFixed(2)}×`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
