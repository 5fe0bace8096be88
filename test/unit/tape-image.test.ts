// The virtual tape image (src/devices/tape-image.ts, docs/tape-image.md): tape
// semantics of reads, writes and spacing, the on-disk format, crash safety and
// positioning whose cost does not grow with the tape.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { MAX_RECORD_SIZE, TapeError } from '../../src/devices/tape.js';
import type { TapeErrorKind } from '../../src/devices/tape.js';
import {
  buildSparseTapeImage,
  createTapeImage,
  DEFAULT_CAPACITY,
  defaultEarlyWarning,
  indexPathOf,
  openTapeImage,
  readTapeImageInfo,
  tapeFileExtent,
  updateTapeImage,
} from '../../src/devices/tape-image.js';
import type { VirtualTape } from '../../src/devices/tape-image.js';
import { isFilemarkAt, recordAt } from '../helpers/tape-writer-child.js';

const HEADER_SIZE = 4096;
const ENTRY_SIZE = 32;
const MiB = 1024 * 1024;

function withTempDir(body: (dir: string) => void): void {
  const dir = fs.mkdtempSync(join(os.tmpdir(), 'tape-image-'));
  try {
    body(dir);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

async function withTempDirAsync(body: (dir: string) => Promise<void>): Promise<void> {
  const dir = fs.mkdtempSync(join(os.tmpdir(), 'tape-image-'));
  try {
    await body(dir);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** Distinct content for each (seed, size). */
function bytes(size: number, seed: number): Buffer {
  const buf = Buffer.alloc(size);
  let x = (seed * 2654435761 + 12345) >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    buf[i] = x & 0xff;
  }
  return buf;
}

const FM = 'FM' as const;
type Layout = readonly (number | typeof FM)[];

/** Creates a tape holding `layout` (record sizes and filemarks); returns the records written. */
function makeTape(path: string, layout: Layout, opts = {}): Buffer[] {
  createTapeImage(path, opts);
  const tape = openTapeImage(path, { readOnly: false });
  const records: Buffer[] = [];
  layout.forEach((item, i) => {
    if (item === FM) {
      tape.writeFilemarks(1);
    } else {
      const record = bytes(item, i + 1);
      tape.writeRecord(record);
      records.push(record);
    }
  });
  tape.close();
  return records;
}

function throwsTape(kind: TapeErrorKind, call: () => unknown): void {
  assert.throws(call, (err: unknown) => {
    assert.ok(err instanceof TapeError, `expected a TapeError, got ${String(err)}`);
    assert.equal(err.kind, kind, err.message);
    return true;
  });
}

function at(tape: VirtualTape): { entry: number; fileNum: number; blockNo: number } {
  const { entry, fileNum, blockNo } = tape.position();
  return { entry, fileNum, blockNo };
}

function readNext(tape: VirtualTape, size = MAX_RECORD_SIZE): Buffer | 'filemark' | 'eod' {
  const target = Buffer.alloc(size);
  const result = tape.readRecord(target, { crossFilemark: true });
  if (result.kind !== 'record') return result.kind;
  assert.equal(result.copied, Math.min(result.length, size));
  return target.subarray(0, result.copied);
}

test('defaults: 64 GiB, early warning 1/16 of the capacity up to 256 MiB, index next to the data', () => {
  assert.equal(DEFAULT_CAPACITY, 64n * 1024n ** 3n);
  assert.equal(defaultEarlyWarning(DEFAULT_CAPACITY), 256n * 1024n ** 2n);
  assert.equal(defaultEarlyWarning(1024n * 1024n), 65536n);
  assert.equal(indexPathOf('/x/tape1'), '/x/tape1.idx');
});

test('a new tape is blank; creating over an existing tape or data is refused', () => {
  withTempDir((dir) => {
    const path = join(dir, 't');
    createTapeImage(path, { barcode: 'ABC123L6', label: 'étiquette' });
    assert.equal(fs.statSync(path).size, 0);
    assert.equal(fs.statSync(indexPathOf(path)).size, HEADER_SIZE);
    const info = readTapeImageInfo(path);
    assert.equal(info.path, path);
    assert.equal(info.barcode, 'ABC123L6');
    assert.equal(info.label, 'étiquette');
    assert.equal(info.capacity, DEFAULT_CAPACITY);
    assert.equal(info.earlyWarning, defaultEarlyWarning(DEFAULT_CAPACITY));
    assert.equal(info.writeProtected, false);
    assert.ok(Math.abs(info.created.getTime() - Date.now()) < 60_000);
    assert.deepEqual([info.usedBytes, info.records, info.filemarks, info.blank], [0n, 0, 0, true]);
    throwsTape('illegal-args', () => createTapeImage(path));

    const full = join(dir, 'full');
    fs.writeFileSync(full, 'data');
    throwsTape('illegal-args', () => createTapeImage(full));
    assert.equal(fs.existsSync(indexPathOf(full)), false);

    throwsTape('illegal-args', () => createTapeImage(join(dir, 'b'), { barcode: 'x'.repeat(65) }));
    throwsTape('illegal-args', () => createTapeImage(join(dir, 'c'), { capacity: 0n }));
    throwsTape('illegal-args', () => createTapeImage(join(dir, 'd'), { capacity: 10n, earlyWarning: 11n }));
    assert.deepEqual(fs.readdirSync(dir).sort(), ['full', 't', 't.idx'], 'refused options create nothing');
  });
});

test('records of 1 byte to 4 MiB read back exactly, also after reopening', () => {
  withTempDir((dir) => {
    const path = join(dir, 't');
    const sizes = [1, 2, 511, 512, 10240, 65536, MiB + 3, MAX_RECORD_SIZE - 1, MAX_RECORD_SIZE];
    const records = makeTape(path, [...sizes, FM, 7]);
    for (const readOnly of [false, true]) {
      const tape = openTapeImage(path, { readOnly });
      for (const record of records.slice(0, sizes.length)) assert.ok(record.equals(readNext(tape) as Buffer));
      assert.equal(readNext(tape), 'filemark');
      assert.ok(records[sizes.length]!.equals(readNext(tape) as Buffer));
      assert.equal(readNext(tape), 'eod');
      tape.close();
    }
    const info = readTapeImageInfo(path);
    const total = [...sizes, 7].reduce((a, b) => a + b, 0);
    assert.deepEqual(
      [info.records, info.filemarks, info.usedBytes, info.blank],
      [10, 1, BigInt(total), false],
    );
    assert.equal(fs.statSync(path).size, total);
    assert.equal(fs.statSync(indexPathOf(path)).size, HEADER_SIZE + 11 * ENTRY_SIZE);

    const tape = openTapeImage(path, { readOnly: false });
    tape.seekEod();
    throwsTape('illegal-args', () => tape.writeRecord(Buffer.alloc(0)));
    throwsTape('illegal-args', () => tape.writeRecord(Buffer.alloc(MAX_RECORD_SIZE + 1)));
    assert.equal(at(tape).entry, 11);
    tape.close();
  });
});

test('a short target gets the head of the record and the rest is dropped', () => {
  withTempDir((dir) => {
    const path = join(dir, 't');
    const [first, second] = makeTape(path, [1000, 300]);
    const tape = openTapeImage(path, { readOnly: true });
    const small = Buffer.alloc(100);
    assert.deepEqual(tape.readRecord(small, { crossFilemark: false }), {
      kind: 'record',
      length: 1000,
      copied: 100,
    });
    assert.ok(small.equals(first!.subarray(0, 100)));
    assert.deepEqual(at(tape), { entry: 1, fileNum: 0, blockNo: 1 });
    const large = Buffer.alloc(4096);
    assert.deepEqual(tape.readRecord(large, { crossFilemark: false }), {
      kind: 'record',
      length: 300,
      copied: 300,
    });
    assert.ok(large.subarray(0, 300).equals(second!));
    tape.close();
  });
});

test('reading a filemark moves past it only when asked; EOD does not move', () => {
  withTempDir((dir) => {
    const path = join(dir, 't');
    makeTape(path, [10, FM, 20]);
    const tape = openTapeImage(path, { readOnly: true });
    const target = Buffer.alloc(64);
    tape.locate(1);
    assert.deepEqual(tape.readRecord(target, { crossFilemark: false }), { kind: 'filemark' });
    assert.deepEqual(at(tape), { entry: 1, fileNum: 0, blockNo: 1 });
    assert.deepEqual(tape.readRecord(target, { crossFilemark: true }), { kind: 'filemark' });
    assert.deepEqual(at(tape), { entry: 2, fileNum: 1, blockNo: 0 });
    assert.equal(tape.readRecord(target, { crossFilemark: false }).kind, 'record');
    assert.deepEqual(tape.readRecord(target, { crossFilemark: true }), { kind: 'eod' });
    assert.deepEqual(at(tape), { entry: 3, fileNum: 1, blockNo: 1 });
    tape.close();
  });
});

test('position: BOT, EOD, before a filemark, and file/block numbers at EOD', () => {
  withTempDir((dir) => {
    const blank = join(dir, 'blank');
    createTapeImage(blank);
    let tape = openTapeImage(blank, { readOnly: true });
    assert.deepEqual(tape.position(), {
      fileNum: 0,
      blockNo: 0,
      entry: 0,
      atBot: true,
      atEod: true,
      beforeFilemark: false,
    });
    tape.close();

    const path = join(dir, 't');
    makeTape(path, [10, 10, FM]);
    tape = openTapeImage(path, { readOnly: true });
    tape.locate(2);
    assert.deepEqual(tape.position(), {
      fileNum: 0,
      blockNo: 2,
      entry: 2,
      atBot: false,
      atEod: false,
      beforeFilemark: true,
    });
    tape.seekEod();
    assert.deepEqual(tape.position(), {
      fileNum: 1,
      blockNo: 0,
      entry: 3,
      atBot: false,
      atEod: true,
      beforeFilemark: false,
    });
    tape.rewind();
    assert.deepEqual(tape.position(), {
      fileNum: 0,
      blockNo: 0,
      entry: 0,
      atBot: true,
      atEod: false,
      beforeFilemark: false,
    });
    tape.locate(-5);
    assert.equal(at(tape).entry, 0);
    tape.locate(1000);
    assert.equal(at(tape).entry, 3);
    throwsTape('illegal-args', () => tape.locate(1.5));
    tape.close();

    const open = join(dir, 'open');
    makeTape(open, [10, FM, 10, 10]);
    tape = openTapeImage(open, { readOnly: true });
    tape.seekEod();
    assert.deepEqual(at(tape), { entry: 4, fileNum: 1, blockNo: 2 });
    tape.close();
  });
});

test('spaceFilemarks: forward stops past the filemark or at EOD, backward on its BOT side or at BOT', () => {
  withTempDir((dir) => {
    const onlyFm = join(dir, 'fm');
    makeTape(onlyFm, [FM]);
    let tape = openTapeImage(onlyFm, { readOnly: true });
    assert.equal(tape.spaceFilemarks(100), 99);
    assert.deepEqual(at(tape), { entry: 1, fileNum: 1, blockNo: 0 });
    assert.equal(tape.spaceFilemarks(-100), 99);
    assert.deepEqual(at(tape), { entry: 0, fileNum: 0, blockNo: 0 });
    assert.equal(tape.spaceFilemarks(-100), 100);
    assert.equal(at(tape).entry, 0);
    tape.close();

    const onlyRecord = join(dir, 'r');
    makeTape(onlyRecord, [10]);
    tape = openTapeImage(onlyRecord, { readOnly: true });
    assert.equal(tape.spaceFilemarks(100), 100);
    assert.equal(tape.position().atEod, true);
    assert.equal(tape.spaceFilemarks(100), 100);
    assert.equal(tape.position().atEod, true);
    assert.equal(tape.spaceFilemarks(-1), 1);
    assert.equal(tape.position().atBot, true);
    tape.close();

    // Entries: 0 1 2 [FM 3] 4 5 [FM 6] 7 (EOD 8).
    const path = join(dir, 't');
    makeTape(path, [10, 10, 10, FM, 10, 10, FM, 10]);
    tape = openTapeImage(path, { readOnly: true });
    assert.equal(tape.spaceFilemarks(0), 0);
    assert.equal(at(tape).entry, 0);
    assert.equal(tape.spaceFilemarks(1), 0);
    assert.deepEqual(at(tape), { entry: 4, fileNum: 1, blockNo: 0 });
    assert.equal(tape.spaceFilemarks(1), 0);
    assert.deepEqual(at(tape), { entry: 7, fileNum: 2, blockNo: 0 });
    tape.rewind();
    assert.equal(tape.spaceFilemarks(2), 0);
    assert.equal(at(tape).entry, 7);
    tape.rewind();
    assert.equal(tape.spaceFilemarks(3), 1);
    assert.deepEqual(at(tape), { entry: 8, fileNum: 2, blockNo: 1 });
    assert.equal(tape.spaceFilemarks(-1), 0);
    assert.deepEqual(tape.position(), {
      fileNum: 1,
      blockNo: 2,
      entry: 6,
      atBot: false,
      atEod: false,
      beforeFilemark: true,
    });
    tape.seekEod();
    assert.equal(tape.spaceFilemarks(-2), 0);
    assert.deepEqual(at(tape), { entry: 3, fileNum: 0, blockNo: 3 });
    tape.locate(5);
    assert.equal(tape.spaceFilemarks(-1), 0);
    assert.equal(at(tape).entry, 3);
    tape.seekEod();
    assert.equal(tape.spaceFilemarks(-3), 1);
    assert.equal(at(tape).entry, 0);
    tape.locate(3); // on the BOT side of a filemark: forward crosses it
    assert.equal(tape.spaceFilemarks(1), 0);
    assert.equal(at(tape).entry, 4);
    throwsTape('illegal-args', () => tape.spaceFilemarks(Number.NaN));
    tape.close();
  });
});

test('spaceRecords: a filemark stops it, crossed only with crossFilemark; BOT and EOD stop it', () => {
  withTempDir((dir) => {
    // Entries: 0 [FM 1] 2 3 [FM 4] (EOD 5).
    const path = join(dir, 't');
    makeTape(path, [512, FM, 512, 512, FM]);
    const tape = openTapeImage(path, { readOnly: true });
    assert.equal(tape.spaceRecords(1_000_000, { crossFilemark: false }), 999_999);
    assert.deepEqual(at(tape), { entry: 1, fileNum: 0, blockNo: 1 });
    assert.equal(tape.position().beforeFilemark, true);
    tape.rewind();
    assert.equal(tape.spaceRecords(1_000_000, { crossFilemark: true }), 999_999);
    assert.deepEqual(at(tape), { entry: 2, fileNum: 1, blockNo: 0 });
    assert.equal(tape.spaceRecords(2, { crossFilemark: true }), 0);
    assert.deepEqual(at(tape), { entry: 4, fileNum: 1, blockNo: 2 });
    assert.equal(tape.spaceRecords(1, { crossFilemark: false }), 1);
    assert.equal(at(tape).entry, 4);
    assert.equal(tape.spaceRecords(1, { crossFilemark: true }), 1);
    assert.deepEqual(at(tape), { entry: 5, fileNum: 2, blockNo: 0 });
    assert.equal(tape.spaceRecords(1, { crossFilemark: true }), 1); // EOD
    assert.equal(at(tape).entry, 5);
    assert.equal(tape.spaceRecords(0, { crossFilemark: true }), 0);

    // Backward from EOD: the filemark right behind stops it, or is crossed.
    assert.equal(tape.spaceRecords(-1, { crossFilemark: false }), 1);
    assert.equal(at(tape).entry, 5);
    assert.equal(tape.spaceRecords(-1, { crossFilemark: true }), 1);
    assert.deepEqual(at(tape), { entry: 4, fileNum: 1, blockNo: 2 });
    assert.equal(tape.spaceRecords(-1, { crossFilemark: false }), 0);
    assert.deepEqual(at(tape), { entry: 3, fileNum: 1, blockNo: 1 });
    assert.equal(tape.spaceRecords(-5, { crossFilemark: false }), 4);
    assert.deepEqual(at(tape), { entry: 2, fileNum: 1, blockNo: 0 });
    tape.locate(4);
    assert.equal(tape.spaceRecords(-5, { crossFilemark: true }), 3);
    assert.deepEqual(tape.position(), {
      fileNum: 0,
      blockNo: 1,
      entry: 1,
      atBot: false,
      atEod: false,
      beforeFilemark: true,
    });
    assert.equal(tape.spaceRecords(-5, { crossFilemark: true }), 4);
    assert.equal(tape.position().atBot, true);
    throwsTape('illegal-args', () => tape.spaceRecords(0.5, { crossFilemark: false }));
    tape.close();

    const one = join(dir, 'one');
    makeTape(one, [10]);
    const single = openTapeImage(one, { readOnly: true });
    single.seekEod();
    assert.equal(single.spaceRecords(-100, { crossFilemark: false }), 99);
    assert.equal(single.position().atBot, true);
    assert.equal(single.spaceRecords(-100, { crossFilemark: true }), 100);
    assert.equal(single.position().atBot, true);
    assert.equal(single.spaceRecords(100, { crossFilemark: true }), 99);
    assert.equal(single.position().atEod, true);
    single.close();
  });
});

test('writing in the middle of the tape loses what followed (both files are cut)', () => {
  withTempDir((dir) => {
    const path = join(dir, 't');
    const records = makeTape(path, [100, 200, 300, FM, 400, 500]);
    let tape = openTapeImage(path, { readOnly: false });
    tape.locate(2);
    assert.deepEqual(tape.writeFilemarks(0), { earlyWarning: false }); // nothing written, nothing lost
    assert.equal(readTapeImageInfo(path).records, 5);
    const replacement = bytes(50, 99);
    assert.deepEqual(tape.writeRecord(replacement), { earlyWarning: false });
    assert.deepEqual(tape.position(), {
      fileNum: 0,
      blockNo: 3,
      entry: 3,
      atBot: false,
      atEod: true,
      beforeFilemark: false,
    });
    assert.equal(fs.statSync(path).size, 350);
    assert.equal(fs.statSync(indexPathOf(path)).size, HEADER_SIZE + 3 * ENTRY_SIZE);
    tape.rewind();
    assert.ok(records[0]!.equals(readNext(tape) as Buffer));
    assert.ok(records[1]!.equals(readNext(tape) as Buffer));
    assert.ok(replacement.equals(readNext(tape) as Buffer));
    assert.equal(readNext(tape), 'eod');

    // Filemarks written mid-tape cut too, and take no data.
    tape.locate(1);
    tape.writeFilemarks(2);
    assert.deepEqual(tape.position(), {
      fileNum: 2,
      blockNo: 0,
      entry: 3,
      atBot: false,
      atEod: true,
      beforeFilemark: false,
    });
    assert.equal(fs.statSync(path).size, 100);
    tape.close();

    tape = openTapeImage(path, { readOnly: true });
    assert.ok(records[0]!.equals(readNext(tape) as Buffer));
    assert.equal(readNext(tape), 'filemark');
    assert.equal(readNext(tape), 'filemark');
    assert.equal(readNext(tape), 'eod');
    tape.close();
    const info = readTapeImageInfo(path);
    assert.deepEqual([info.records, info.filemarks, info.usedBytes], [1, 2, 100n]);
  });
});

test('reopening keeps the header, the entries and the data; the tape opens at BOT', () => {
  withTempDir((dir) => {
    const path = join(dir, 't');
    createTapeImage(path, { barcode: 'B1', label: 'L1', capacity: 1_000_000n, earlyWarning: 1000n });
    let tape = openTapeImage(path, { readOnly: false });
    const first = bytes(1234, 1);
    tape.writeRecord(first);
    tape.writeFilemarks(1);
    tape.close();
    tape = openTapeImage(path, { readOnly: false });
    assert.deepEqual(
      [tape.barcode, tape.label, tape.capacity, tape.earlyWarning],
      ['B1', 'L1', 1_000_000n, 1000n],
    );
    assert.equal(tape.position().atBot, true);
    tape.seekEod();
    const second = bytes(99, 2);
    tape.writeRecord(second);
    tape.close();
    tape = openTapeImage(path, { readOnly: true });
    assert.ok(first.equals(readNext(tape) as Buffer));
    assert.equal(readNext(tape), 'filemark');
    assert.ok(second.equals(readNext(tape) as Buffer));
    assert.equal(readNext(tape), 'eod');
    tape.close();
  });
});

test('capacity: a record past the end is refused whole; records ending in the last zone warn', () => {
  withTempDir((dir) => {
    const path = join(dir, 't');
    createTapeImage(path, { capacity: 10_000n, earlyWarning: 2000n });
    const tape = openTapeImage(path, { readOnly: false });
    assert.deepEqual(tape.space(), { totalSpace: 10_000n, spaceRemain: 10_000n, untilEarlyWarning: 8000n });
    assert.deepEqual(tape.writeRecord(bytes(7000, 1)), { earlyWarning: false });
    assert.deepEqual(tape.writeRecord(bytes(1000, 2)), { earlyWarning: false }); // ends at 8000
    assert.deepEqual(tape.space(), { totalSpace: 10_000n, spaceRemain: 2000n, untilEarlyWarning: 0n });
    assert.deepEqual(tape.writeRecord(bytes(1, 3)), { earlyWarning: true });
    throwsTape('eom', () => tape.writeRecord(bytes(2000, 4)));
    assert.equal(at(tape).entry, 3);
    assert.equal(fs.statSync(path).size, 8001);
    assert.equal(fs.statSync(indexPathOf(path)).size, HEADER_SIZE + 3 * ENTRY_SIZE);
    assert.deepEqual(tape.writeRecord(bytes(1999, 5)), { earlyWarning: true });
    assert.equal(tape.space().spaceRemain, 0n);
    assert.deepEqual(tape.writeFilemarks(1), { earlyWarning: true }); // filemarks cost nothing
    throwsTape('eom', () => tape.writeRecord(bytes(1, 6)));

    // Space is counted from the position: rewinding and rewriting frees the rest.
    tape.locate(1);
    assert.deepEqual(tape.space(), { totalSpace: 10_000n, spaceRemain: 3000n, untilEarlyWarning: 1000n });
    tape.rewind();
    assert.deepEqual(tape.space(), { totalSpace: 10_000n, spaceRemain: 10_000n, untilEarlyWarning: 8000n });
    assert.deepEqual(tape.writeRecord(bytes(10_000, 7)), { earlyWarning: true });
    assert.equal(fs.statSync(path).size, 10_000);
    tape.close();
  });
});

test('write protection: the medium flag and read-only opening', () => {
  withTempDir((dir) => {
    const path = join(dir, 't');
    makeTape(path, [10]);
    updateTapeImage(path, { writeProtected: true });
    throwsTape('write-protected', () => openTapeImage(path, { readOnly: false }));
    let tape = openTapeImage(path, { readOnly: true });
    assert.deepEqual([tape.readOnly, tape.writeProtected], [true, true]);
    throwsTape('write-protected', () => tape.writeRecord(Buffer.alloc(1)));
    throwsTape('write-protected', () => tape.writeFilemarks(1));
    assert.equal(readNext(tape, 10).length, 10);
    tape.close();

    updateTapeImage(path, { writeProtected: false });
    tape = openTapeImage(path, { readOnly: true });
    assert.deepEqual([tape.readOnly, tape.writeProtected], [true, false]);
    throwsTape('write-protected', () => tape.writeRecord(Buffer.alloc(1)));
    throwsTape('write-protected', () => tape.writeFilemarks(0));
    tape.close();
    tape = openTapeImage(path, { readOnly: false });
    assert.deepEqual([tape.readOnly, tape.writeProtected], [false, false]);
    tape.close();

    // A data file the process may not write is a write-protected medium too.
    if (process.getuid?.() !== 0) {
      fs.chmodSync(path, 0o444);
      throwsTape('write-protected', () => openTapeImage(path, { readOnly: false }));
      openTapeImage(path, { readOnly: true }).close();
    }
  });
});

test('an empty data file without index is a blank tape (ndmjob -f FILE)', () => {
  withTempDir((dir) => {
    const path = join(dir, 't');
    fs.writeFileSync(path, '');
    const info = readTapeImageInfo(path);
    assert.deepEqual(
      [info.blank, info.capacity, info.barcode, info.label, info.writeProtected, info.records],
      [true, DEFAULT_CAPACITY, '', '', false, 0],
    );
    assert.equal(tapeFileExtent(path, 0), null);
    let tape = openTapeImage(path, { readOnly: true, blankDefaults: { barcode: 'NOPE' } });
    assert.equal(tape.position().atEod, true);
    throwsTape('write-protected', () => tape.writeFilemarks(1));
    tape.close();
    assert.equal(fs.existsSync(indexPathOf(path)), false, 'read-only opening creates nothing');

    tape = openTapeImage(path, {
      readOnly: false,
      blankDefaults: { barcode: 'NEW001', capacity: 1n << 30n },
    });
    assert.equal(tape.barcode, 'NEW001');
    tape.writeRecord(bytes(10, 1));
    tape.close();
    const after = readTapeImageInfo(path);
    assert.deepEqual([after.barcode, after.capacity, after.records], ['NEW001', 1n << 30n, 1]);

    const notTape = join(dir, 'data');
    fs.writeFileSync(notTape, 'hello');
    throwsTape('bad-image', () => openTapeImage(notTape, { readOnly: false }));
    throwsTape('bad-image', () => readTapeImageInfo(notTape));
    const missing = join(dir, 'missing');
    throwsTape('bad-image', () => openTapeImage(missing, { readOnly: false }));
    throwsTape('bad-image', () => openTapeImage(missing, { readOnly: true }));
    throwsTape('bad-image', () => readTapeImageInfo(missing));
    throwsTape('bad-image', () => tapeFileExtent(missing, 0));
    assert.equal(fs.existsSync(missing), false);
  });
});

test('header updates round-trip; a blank tape without index gets one', () => {
  withTempDir((dir) => {
    const path = join(dir, 't');
    makeTape(path, [10, FM], { barcode: 'OLD', label: 'old', capacity: 5_000_000n });
    const before = readTapeImageInfo(path);
    updateTapeImage(path, { label: 'Nouveau label ✓', barcode: 'NEW000L6' });
    let info = readTapeImageInfo(path);
    assert.deepEqual(info, { ...before, label: 'Nouveau label ✓', barcode: 'NEW000L6' });
    updateTapeImage(path, { writeProtected: true });
    assert.equal(readTapeImageInfo(path).writeProtected, true);
    throwsTape('illegal-args', () => updateTapeImage(path, { label: 'x'.repeat(257) }));
    info = readTapeImageInfo(path);
    assert.equal(info.label, 'Nouveau label ✓');
    assert.equal(info.records, 1);

    const blank = join(dir, 'blank');
    fs.writeFileSync(blank, '');
    updateTapeImage(blank, { label: 'fresh' });
    assert.equal(fs.existsSync(indexPathOf(blank)), true);
    assert.equal(readTapeImageInfo(blank).label, 'fresh');
  });
});

test('a damaged or foreign header is a bad image', () => {
  withTempDir((dir) => {
    const path = join(dir, 't');
    makeTape(path, [10], { label: 'label' });
    const idx = indexPathOf(path);
    const good = fs.readFileSync(idx);
    const damage = (mutate: (buf: Buffer) => Buffer): void => {
      fs.writeFileSync(idx, mutate(Buffer.from(good)));
      throwsTape('bad-image', () => openTapeImage(path, { readOnly: true }));
      throwsTape('bad-image', () => readTapeImageInfo(path));
    };
    damage((buf) => {
      buf[120] ^= 1; // inside the label
      return buf;
    });
    damage((buf) => {
      buf.write('NOTATAPE', 0, 'latin1');
      return buf;
    });
    damage((buf) => buf.subarray(0, 100));
    fs.writeFileSync(idx, good);
    assert.equal(readTapeImageInfo(path).label, 'label');
  });
});

test('tapeFileExtent: each tape file is one contiguous byte range of the data file', () => {
  withTempDir((dir) => {
    const path = join(dir, 't');
    // File 0: 3 records, file 1: empty, file 2: 2 records, file 3: 1 record up to EOD (no filemark).
    const layout: Layout = [1000, 33, 4096, FM, FM, 777, 1, FM, 2048];
    const records = makeTape(path, layout);
    const files = [records.slice(0, 3), [], records.slice(3, 5), records.slice(5)];
    const data = fs.readFileSync(path);
    files.forEach((file, fileNum) => {
      const extent = tapeFileExtent(path, fileNum);
      assert.ok(extent !== null, `file ${fileNum}`);
      assert.equal(extent.records, file.length);
      assert.ok(data.subarray(Number(extent.start), Number(extent.end)).equals(Buffer.concat(file)));
    });
    assert.equal(tapeFileExtent(path, 4), null);
    assert.deepEqual(tapeFileExtent(path, 2), { start: 5129n, end: 5907n, records: 2 });
    throwsTape('illegal-args', () => tapeFileExtent(path, -1));

    const closed = join(dir, 'closed');
    makeTape(closed, [10, FM]);
    assert.deepEqual(tapeFileExtent(closed, 0), { start: 0n, end: 10n, records: 1 });
    assert.equal(tapeFileExtent(closed, 1), null, 'nothing after the last filemark');
    const blank = join(dir, 'blank');
    createTapeImage(blank);
    assert.equal(tapeFileExtent(blank, 0), null);
  });
});

test('after a crash: torn, damaged or dangling trailing entries are dropped, stray bytes cut at the next write', () => {
  withTempDir((dir) => {
    const path = join(dir, 't');
    const idx = indexPathOf(path);
    const records = makeTape(path, [100, 200, FM, 300]);
    const goodIndex = fs.readFileSync(idx);
    const goodData = fs.readFileSync(path);
    const restore = (): void => {
      fs.writeFileSync(idx, goodIndex);
      fs.writeFileSync(path, goodData);
    };
    const expectEntries = (count: number): void => {
      const info = readTapeImageInfo(path);
      assert.equal(info.records + info.filemarks, count);
      const tape = openTapeImage(path, { readOnly: true });
      tape.seekEod();
      assert.equal(at(tape).entry, count);
      tape.close();
    };

    // A torn entry (the index write was cut short).
    fs.appendFileSync(idx, goodIndex.subarray(HEADER_SIZE, HEADER_SIZE + 17));
    expectEntries(4);
    // Data written but its entry not yet (the commit point was not reached).
    fs.appendFileSync(path, bytes(5000, 9));
    expectEntries(4);
    // The next write cuts both files to what counts, then appends.
    let tape = openTapeImage(path, { readOnly: false });
    tape.seekEod();
    const next = bytes(10, 10);
    tape.writeRecord(next);
    tape.close();
    assert.equal(fs.statSync(idx).size, HEADER_SIZE + 5 * ENTRY_SIZE);
    assert.equal(fs.statSync(path).size, 610);
    tape = openTapeImage(path, { readOnly: true });
    tape.locate(3);
    assert.ok(records[2]!.equals(readNext(tape) as Buffer));
    assert.ok(next.equals(readNext(tape) as Buffer));
    tape.close();

    // A damaged last entry (bad CRC).
    restore();
    const damaged = Buffer.from(goodIndex);
    damaged[HEADER_SIZE + 3 * ENTRY_SIZE + 9] ^= 0x40;
    fs.writeFileSync(idx, damaged);
    expectEntries(3);

    // Entries whose data is not there (the data file was cut and the index not).
    restore();
    fs.truncateSync(path, 299);
    expectEntries(1);
    fs.truncateSync(path, 300);
    expectEntries(3); // the filemark needs no data

    // A well-formed entry that does not follow its predecessor.
    restore();
    fs.appendFileSync(idx, goodIndex.subarray(HEADER_SIZE, HEADER_SIZE + ENTRY_SIZE));
    expectEntries(4);

    // A damaged entry in the middle (not a crash): reading it is a bad image.
    restore();
    const middle = Buffer.from(goodIndex);
    middle[HEADER_SIZE + ENTRY_SIZE + 3] ^= 1;
    fs.writeFileSync(idx, middle);
    tape = openTapeImage(path, { readOnly: true });
    tape.locate(1);
    throwsTape('bad-image', () => tape.position());
    tape.close();
  });
});

test('a closed tape refuses every call; closing twice is harmless', () => {
  withTempDir((dir) => {
    const path = join(dir, 't');
    makeTape(path, [10]);
    const tape = openTapeImage(path, { readOnly: false });
    tape.close();
    tape.close();
    const calls: (() => unknown)[] = [
      () => tape.position(),
      () => tape.space(),
      () => tape.writeRecord(Buffer.alloc(1)),
      () => tape.writeFilemarks(1),
      () => tape.readRecord(Buffer.alloc(1), { crossFilemark: false }),
      () => tape.spaceFilemarks(1),
      () => tape.spaceRecords(1, { crossFilemark: false }),
      () => tape.rewind(),
      () => tape.seekEod(),
      () => tape.locate(0),
    ];
    for (const call of calls) throwsTape('closed', call);
    throwsTape('illegal-args', () => {
      const again = openTapeImage(path, { readOnly: false });
      try {
        again.writeFilemarks(-1);
      } finally {
        again.close();
      }
    });
  });
});

// ---------------------------------------------------------------------------
// Crash safety: a writer killed with SIGKILL at arbitrary moments.

const CHILD = fileURLToPath(new URL('../helpers/tape-writer-child.js', import.meta.url));

/** Runs the writer until `delayMs` after it is ready, kills it, returns the last entry count it reported. */
async function writeThenKill(tapePath: string, delayMs: number, mode = 'append'): Promise<number> {
  const child = spawn(process.execPath, [CHILD, tapePath, mode], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (err += chunk));
  const exited = new Promise<NodeJS.Signals | null>((resolve) =>
    child.on('close', (_code, signal) => resolve(signal)),
  );
  await new Promise<void>((resolve, reject) => {
    const check = (): void => {
      if (out.includes('\n')) resolve();
    };
    child.stdout.on('data', check);
    child.on('close', () => reject(new Error(`writer exited early: ${err}`)));
  });
  await new Promise((resolve) => setTimeout(resolve, delayMs));
  child.kill('SIGKILL');
  assert.equal(await exited, 'SIGKILL', `the writer ended by itself: ${err}`);
  const lines = out.split('\n').slice(0, -1); // only complete lines
  const last = lines[lines.length - 1]!;
  return Number(last.startsWith('ready ') ? last.slice(6) : last);
}

/** Every entry on the tape is what the writer's model says; returns the count. */
function verifyWriterTape(tapePath: string): number {
  const tape = openTapeImage(tapePath, { readOnly: true });
  const target = Buffer.alloc(MAX_RECORD_SIZE);
  let i = 0;
  for (;;) {
    const result = tape.readRecord(target, { crossFilemark: true });
    if (result.kind === 'eod') break;
    if (isFilemarkAt(i)) {
      assert.equal(result.kind, 'filemark', `entry ${i}`);
    } else {
      assert.equal(result.kind, 'record', `entry ${i}`);
      const expected = recordAt(i);
      assert.ok(result.kind === 'record' && result.length === expected.length, `entry ${i} length`);
      assert.ok(target.subarray(0, expected.length).equals(expected), `entry ${i} content`);
    }
    i++;
  }
  tape.close();
  return i;
}

test('a writer killed mid-write leaves every complete entry readable', { timeout: 120_000 }, async () => {
  await withTempDirAsync(async (dir) => {
    const path = join(dir, 'crash');
    createTapeImage(path);
    let previous = 0;
    for (const delayMs of [50, 500, 200, 5]) {
      const reported = await writeThenKill(path, delayMs);
      const count = verifyWriterTape(path);
      assert.ok(count >= reported, `${count} entries on tape, the writer reported ${reported} done`);
      assert.ok(count >= previous);
      previous = count;
    }
    assert.ok(previous > 20, `the writers wrote only ${previous} entries`);

    const tape = openTapeImage(path, { readOnly: false });
    tape.seekEod();
    const last = bytes(3333, 7);
    tape.writeRecord(last);
    tape.spaceRecords(-1, { crossFilemark: false });
    assert.ok(last.equals(readNext(tape) as Buffer));
    assert.equal(tape.position().entry, previous + 1);
    tape.close();
    assert.equal(fs.statSync(indexPathOf(path)).size, HEADER_SIZE + (previous + 1) * ENTRY_SIZE);
  });
});

test(
  'a writer killed while cutting and overwriting mid-tape leaves a sound tape',
  { timeout: 120_000 },
  async () => {
    await withTempDirAsync(async (dir) => {
      const path = join(dir, 'crash-overwrite');
      createTapeImage(path);
      for (const delayMs of [300, 80, 450, 20, 150]) {
        const reported = await writeThenKill(path, delayMs, 'overwrite');
        const count = verifyWriterTape(path);
        assert.ok(count >= reported, `${count} entries on tape, the writer reported ${reported} done`);
      }
      const count = verifyWriterTape(path);
      // Nothing past the last entry survives in either file once the next write cuts it.
      const tape = openTapeImage(path, { readOnly: false });
      tape.seekEod();
      tape.writeRecord(bytes(100, 1));
      tape.close();
      assert.equal(fs.statSync(indexPathOf(path)).size, HEADER_SIZE + (count + 1) * ENTRY_SIZE);
    });
  },
);

// ---------------------------------------------------------------------------
// Positioning cost does not grow with the tape.

/** Opens the tape and runs a fixed round of positioning, checking every position; returns ms. */
function positioningRound(path: string, files: number, records: number, recordSize: number): number {
  const started = process.hrtime.bigint();
  const tape = openTapeImage(path, { readOnly: true });
  const pos = (): [number, number] => [tape.position().fileNum, tape.position().blockNo];
  const half = Math.floor(records / 2);
  assert.equal(tape.spaceFilemarks(5), 0);
  assert.deepEqual(pos(), [5, 0]);
  assert.equal(tape.spaceRecords(half, { crossFilemark: false }), 0);
  assert.deepEqual(pos(), [5, half]);
  assert.equal(tape.spaceFilemarks(-2), 0);
  assert.deepEqual(pos(), [3, records]);
  assert.equal(tape.spaceRecords(-half, { crossFilemark: false }), 0);
  assert.deepEqual(pos(), [3, records - half]);
  assert.equal(tape.spaceRecords(records, { crossFilemark: true }), records - half);
  assert.deepEqual(pos(), [4, 0]);
  tape.seekEod();
  assert.deepEqual(pos(), [files, 0]);
  assert.equal(tape.spaceRecords(-1, { crossFilemark: true }), 1);
  assert.deepEqual(pos(), [files - 1, records]);
  assert.equal(tape.spaceRecords(-1, { crossFilemark: false }), 0);
  const target = Buffer.alloc(recordSize);
  assert.deepEqual(tape.readRecord(target, { crossFilemark: false }), {
    kind: 'record',
    length: recordSize,
    copied: recordSize,
  });
  assert.deepEqual(pos(), [files - 1, records]);
  const middle = Math.floor((files * (records + 1)) / 2) + 1;
  tape.locate(middle);
  assert.deepEqual(pos(), [Math.floor(middle / (records + 1)), middle % (records + 1)]);
  assert.equal(tape.spaceFilemarks(1000), 1000 - (files - Math.floor(middle / (records + 1))));
  assert.equal(tape.position().atEod, true);
  tape.rewind();
  assert.deepEqual(pos(), [0, 0]);
  tape.close();
  return Number(process.hrtime.bigint() - started) / 1e6;
}

test('positioning a 10 GiB, 1 M-record tape costs about what a tiny one does', { timeout: 120_000 }, () => {
  withTempDir((dir) => {
    const recordSize = 10240;
    const large = join(dir, 'large');
    const small = join(dir, 'small');
    const t0 = process.hrtime.bigint();
    buildSparseTapeImage(
      large,
      Array.from({ length: 10 }, () => ({ records: 100_000, recordSize })),
    );
    const buildMs = Number(process.hrtime.bigint() - t0) / 1e6;
    buildSparseTapeImage(
      small,
      Array.from({ length: 10 }, () => ({ records: 10, recordSize })),
    );

    const info = readTapeImageInfo(large);
    assert.deepEqual([info.records, info.filemarks, info.usedBytes], [1_000_000, 10, 10_240_000_000n]);
    assert.equal(fs.statSync(indexPathOf(large)).size, HEADER_SIZE + 1_000_010 * ENTRY_SIZE);
    assert.deepEqual(tapeFileExtent(large, 9), {
      start: 9n * 1_024_000_000n,
      end: 10_240_000_000n,
      records: 100_000,
    });

    const rounds = 25;
    let largeMs = 0;
    let smallMs = 0;
    positioningRound(small, 10, 10, recordSize); // warm up
    for (let i = 0; i < rounds; i++) {
      smallMs += positioningRound(small, 10, 10, recordSize);
      largeMs += positioningRound(large, 10, 100_000, recordSize);
    }
    console.log(
      `sparse positioning, ${rounds} rounds of open + 13 moves: large ${largeMs.toFixed(1)} ms, ` +
        `small ${smallMs.toFixed(1)} ms; building the 1 M-entry image ${buildMs.toFixed(0)} ms`,
    );
    assert.ok(buildMs < 3000, `building took ${buildMs} ms`);
    assert.ok(largeMs <= 20 * smallMs + 200, `large ${largeMs} ms vs small ${smallMs} ms`);
  });
});

test('writeRecords: many records in one write read back as separate records; EOM and a full tape land on the right record', () => {
  withTempDir((dir) => {
    const path = join(dir, 'batch');
    // 100 records of 1000 bytes fit; early warning starts 5 records before the end.
    createTapeImage(path, { capacity: 100_000n, earlyWarning: 5_000n });
    const tape = openTapeImage(path, { readOnly: false });
    const data = Buffer.concat(Array.from({ length: 40 }, (_, i) => bytes(1000, i)));
    assert.deepEqual(tape.writeRecords(data, 1000), { written: 40, earlyWarning: false, full: false });
    // 40 more, then a batch that reaches the early-warning zone stops after the record that enters it.
    assert.deepEqual(tape.writeRecords(data, 1000), { written: 40, earlyWarning: false, full: false });
    const r = tape.writeRecords(data, 1000);
    assert.equal(r.earlyWarning, true);
    assert.equal(r.written, 16, 'record 96 ends at 96,000 > 95,000: inside the zone');
    // Inside the zone each record reports EOM, as writeRecord does; a full tape refuses the next.
    for (let i = 0; i < 4; i++) {
      assert.deepEqual(tape.writeRecords(data.subarray(0, 2000), 1000), {
        written: 1,
        earlyWarning: true,
        full: false,
      });
    }
    throwsTape('eom', () => tape.writeRecords(data.subarray(0, 2000), 1000));
    throwsTape('illegal-args', () => tape.writeRecords(data.subarray(0, 1500), 1000));
    tape.rewind();
    const got = Buffer.alloc(1000);
    for (let i = 0; i < 100; i++) {
      const rr = tape.readRecord(got, { crossFilemark: false });
      assert.equal(rr.kind, 'record');
      assert.deepEqual(got, bytes(1000, i < 96 ? i % 40 : 0), `record ${i}`);
    }
    assert.equal(tape.readRecord(got, { crossFilemark: false }).kind, 'eod');
    const pos = tape.position();
    assert.equal(pos.blockNo, 100);
    tape.close();
    // Without an early-warning zone, a batch runs into the end: what fits is written, then `full`.
    const bare = join(dir, 'bare');
    createTapeImage(bare, { capacity: 10_500n, earlyWarning: 0n });
    const t2 = openTapeImage(bare, { readOnly: false });
    assert.deepEqual(t2.writeRecords(data.subarray(0, 12_000), 1000), {
      written: 10,
      earlyWarning: false,
      full: true,
    });
    t2.close();
  });
});
