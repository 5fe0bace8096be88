// The tape image's write patterns (src/devices/tape-write-behind.ts,
// docs/tape-image.md "The write pattern"): every policy writes and reads the
// same tape, keeps the crash/EOD rules, and drop-behind really leaves the
// tape's pages out of the page cache as it goes.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { crc32 } from 'node:zlib';

import { createTapeImage, openTapeImage, readTapeImageInfo } from '../../src/devices/tape-image.js';
import type { TapeCachePolicy } from '../../src/devices/tape-image.js';
import { TAPE_CACHE_POLICIES, WRITE_BEHIND_CHUNK } from '../../src/devices/tape-write-behind.js';
import { dropCachedPages } from '../../src/util/native-fs.js';

const RS = 10240;
/** Records per batch, as the mover writes them from its ring (640 KiB). */
const BATCH = 64;

function withTempDir(body: (dir: string) => void): void {
  const dir = fs.mkdtempSync(join(os.tmpdir(), 'tape-write-behind-'));
  try {
    body(dir);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** Record i's bytes: different for every record, so a misplaced one shows. */
function record(i: number, size = RS): Buffer {
  const b = Buffer.alloc(size);
  for (let o = 0; o + 4 <= size; o += 4) b.writeUInt32LE((i * 2654435761 + o) >>> 0, o);
  return b;
}

function batch(first: number): Buffer {
  return Buffer.concat(Array.from({ length: BATCH }, (_, k) => record(first + k)));
}

/** Bytes of the file in the page cache (util-linux fincore), or null where it cannot say. */
function resident(path: string): number | null {
  const r = spawnSync('fincore', ['--bytes', '--noheadings', '--output', 'RES', path], { encoding: 'utf8' });
  if (r.status !== 0) return null;
  const n = Number(r.stdout.trim());
  return Number.isFinite(n) ? n : null;
}

for (const policy of TAPE_CACHE_POLICIES) {
  test(`${policy}: a tape of several chunks reads back record for record, after a cut and a rewrite too`, () => {
    withTempDir((dir) => {
      const path = join(dir, 'T');
      createTapeImage(path, { capacity: 1n << 30n });
      const batches = Math.ceil((3.5 * WRITE_BEHIND_CHUNK) / (BATCH * RS));
      let t = openTapeImage(path, { readOnly: false, cache: policy });
      for (let b = 0; b < batches; b++) assert.equal(t.writeRecords(batch(b * BATCH), RS).written, BATCH);
      t.writeRecord(record(-1, 4096)); // a short last record, as a padded stream end is not
      t.writeFilemarks(1);
      const total = batches * BATCH;
      // Back into the middle (past the first chunks) and over it: tape semantics cut the rest.
      const keep = Math.floor(total / 2);
      t.locate(keep);
      for (let b = 0; b < 2; b++) t.writeRecords(batch(1_000_000 + b * BATCH), RS);
      t.writeFilemarks(1);
      t.close();

      const info = readTapeImageInfo(path);
      assert.equal(info.records, keep + 2 * BATCH);
      assert.equal(info.filemarks, 1);
      assert.equal(info.usedBytes, BigInt((keep + 2 * BATCH) * RS));
      assert.equal(fs.statSync(path).size, (keep + 2 * BATCH) * RS, 'no byte past the last entry');
      // Closed, the tape keeps no block allocated past its end (preallocate gives them back).
      const st = fs.statSync(path);
      assert.ok(
        st.blocks * 512 <= st.size + 1024 * 1024,
        `${st.blocks * 512} bytes allocated for ${st.size}`,
      );

      t = openTapeImage(path, { readOnly: true, cache: policy });
      const buf = Buffer.alloc(RS);
      for (let i = 0; i < keep + 2 * BATCH; i++) {
        const r = t.readRecord(buf, { crossFilemark: false });
        assert.equal(r.kind, 'record');
        const want = i < keep ? record(i) : record(1_000_000 + i - keep);
        assert.equal(crc32(buf), crc32(want), `record ${i}`);
      }
      assert.equal(t.readRecord(buf, { crossFilemark: true }).kind, 'filemark');
      assert.equal(t.readRecord(buf, { crossFilemark: false }).kind, 'eod');
      // A second pass from BOT reads the same (drop-behind starts its reader's pass again).
      t.rewind();
      assert.equal(t.readRecord(buf, { crossFilemark: false }).kind, 'record');
      assert.equal(crc32(buf), crc32(record(0)));
      t.close();
    });
  });
}

test('drop-behind keeps a few chunks of the tape in the page cache while it writes and reads; keep keeps it all', (t) => {
  withTempDir((dir) => {
    // Does this file system drop clean pages on request at all (tmpfs does not)?
    const probe = join(dir, 'probe');
    fs.writeFileSync(probe, Buffer.alloc(4 * 1024 * 1024, 1));
    const fd = fs.openSync(probe, 'r');
    fs.fsyncSync(fd);
    dropCachedPages(fd, 0, 4 * 1024 * 1024);
    fs.closeSync(fd);
    const probed = resident(probe);
    if (probed === null || probed > 1024 * 1024) {
      t.skip(`cannot see or drop cached pages here (fincore: ${probed})`);
      return;
    }
    const size = 8 * WRITE_BEHIND_CHUNK;
    const batches = Math.ceil(size / (BATCH * RS));
    const written = batches * BATCH * RS;
    const cached: Partial<Record<TapeCachePolicy, number>> = {};
    for (const policy of ['keep', 'drop-behind'] as const) {
      const path = join(dir, policy);
      createTapeImage(path, { capacity: 1n << 30n });
      const tape = openTapeImage(path, { readOnly: false, cache: policy });
      for (let b = 0; b < batches; b++) tape.writeRecords(batch(b * BATCH), RS);
      tape.close();
      cached[policy] = resident(path)!;
    }
    assert.ok(cached.keep! > written * 0.9, `keep: ${cached.keep} of ${written} bytes cached`);
    // The chunk in hand, the one queued before it and LAG behind: at most four chunks.
    assert.ok(
      cached['drop-behind']! <= 4 * WRITE_BEHIND_CHUNK,
      `drop-behind: ${cached['drop-behind']} bytes cached`,
    );

    // Reading drops behind the reader too (clean pages: the kept tape is flushed first).
    const path = join(dir, 'keep');
    const kfd = fs.openSync(path, 'r');
    fs.fsyncSync(kfd);
    fs.closeSync(kfd);
    const tape = openTapeImage(path, { readOnly: true, cache: 'drop-behind' });
    const buf = Buffer.alloc(RS);
    while (tape.readRecord(buf, { crossFilemark: false }).kind === 'record');
    tape.close();
    const after = resident(path)!;
    assert.ok(after <= 4 * WRITE_BEHIND_CHUNK, `after a drop-behind read: ${after} bytes cached`);
  });
});
