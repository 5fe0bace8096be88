// Data CRCs of the virtual tape image (docs/tape-image.md, "Data CRCs"): each
// record's entry holds a CRC-32 of its bytes; a read of a record whose bytes
// changed fails as a drive's medium error, naming tape, file and block; an
// image from before data CRCs reads without checks.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';

import { TapeError } from '../../src/devices/tape.js';
import {
  TapeMediaError,
  createTapeImage,
  openTapeImage,
  readTapeImageInfo,
} from '../../src/devices/tape-image.js';
import { toNdmp } from '../../src/services/tape/tape-drive.js';
import { ErrorCode } from '../../src/wire/index.js';
import { flipDataByte, stripDataCrcs } from '../helpers/tape-damage.js';

function withTape(body: (path: string) => void): void {
  const dir = fs.mkdtempSync(join(os.tmpdir(), 'tape-crc-'));
  try {
    const path = join(dir, 'NDM001');
    createTapeImage(path, { barcode: 'NDM001' });
    body(path);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** Two tape files: records 0-2 of 100 bytes (file 0), then a batch of 4 records of 64 bytes (file 1). */
function writeSample(path: string): void {
  const t = openTapeImage(path, { readOnly: false });
  for (let i = 0; i < 3; i++) t.writeRecord(Buffer.alloc(100, i + 1));
  t.writeFilemarks(1);
  const batch = Buffer.alloc(4 * 64);
  for (let i = 0; i < batch.length; i++) batch[i] = i & 0xff;
  t.writeRecords(batch, 64);
  t.close();
}

function readAll(path: string): Buffer[] {
  const t = openTapeImage(path, { readOnly: true });
  const out: Buffer[] = [];
  const buf = Buffer.alloc(4096);
  try {
    for (;;) {
      const r = t.readRecord(buf, { crossFilemark: true });
      if (r.kind === 'eod') return out;
      if (r.kind === 'record') out.push(Buffer.from(buf.subarray(0, r.copied)));
    }
  } finally {
    t.close();
  }
}

test('a new image carries data CRCs; intact records read back', () => {
  withTape((path) => {
    writeSample(path);
    assert.equal(readTapeImageInfo(path).dataCrcs, true);
    const recs = readAll(path);
    assert.equal(recs.length, 7);
    assert.deepEqual(recs[1], Buffer.alloc(100, 2));
  });
});

test('a changed byte fails the read of its record (single and batched writes), naming tape, file and block', () => {
  withTape((path) => {
    writeSample(path);
    // File 1, block 2: data bytes 300 + 2*64 .. +64.
    flipDataByte(path, 300 + 2 * 64 + 5, 0x01);
    const t = openTapeImage(path, { readOnly: true });
    const buf = Buffer.alloc(4096);
    t.spaceFilemarks(1);
    t.readRecord(buf, { crossFilemark: false });
    t.readRecord(buf, { crossFilemark: false });
    const before = t.position();
    assert.throws(
      () => t.readRecord(buf, { crossFilemark: false }),
      (e: unknown) =>
        e instanceof TapeMediaError &&
        e.kind === 'media' &&
        e.code === 'TAPE_MEDIA' &&
        e.place.tape === 'NDM001' &&
        e.place.fileNum === 1 &&
        e.place.blockNo === 2 &&
        /NDM001: file 1, block 2 .* fails its data CRC/.test(e.message),
    );
    // The head stays before the bad record (as a drive's unrecoverable read error).
    assert.equal(t.position().entry, before.entry);
    // A short read of the record is checked too (the whole record is read for the CRC).
    assert.throws(() => t.readRecord(Buffer.alloc(8), { crossFilemark: false }), TapeMediaError);
    // Spacing over it, the next record reads.
    assert.equal(t.spaceRecords(1, { crossFilemark: false }), 0);
    assert.equal(t.readRecord(buf, { crossFilemark: false }).kind, 'record');
    t.close();
    // The drive answers NDMP_IO_ERR for it (TAPE_READ; the mover halts MEDIA_ERROR on the same error).
    const e = new TapeMediaError('x', { tape: 'NDM001', fileNum: 1, blockNo: 2, dataOffset: 0 });
    assert.equal(toNdmp(e).ndmpError, ErrorCode.NDMP_IO_ERR);
  });
});

test('a change in a single-record write of file 0 is caught too', () => {
  withTape((path) => {
    writeSample(path);
    flipDataByte(path, 150);
    assert.throws(
      () => readAll(path),
      (e: unknown) => e instanceof TapeError && e.kind === 'media',
    );
  });
});

test('an image from before data CRCs reads, without checks, and keeps reading after an append', () => {
  withTape((path) => {
    writeSample(path);
    stripDataCrcs(path);
    assert.equal(readTapeImageInfo(path).dataCrcs, false);
    flipDataByte(path, 150, 0x01);
    const recs = readAll(path);
    assert.equal(recs.length, 7);
    assert.equal(recs[1]![50], 2 ^ 0x01);
    // A new writer appends to it: its new records carry CRCs, the old ones still read unchecked.
    const t = openTapeImage(path, { readOnly: false });
    t.seekEod();
    t.writeFilemarks(1);
    t.writeRecord(Buffer.alloc(10, 9));
    t.close();
    assert.equal(readAll(path).length, 8);
    const size = fs.statSync(path).size;
    flipDataByte(path, size - 1);
    assert.throws(() => readAll(path), TapeMediaError);
  });
});
