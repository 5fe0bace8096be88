// Labels a DMA writes as a tape's first record (src/devices/tape-label.ts):
// ndmjob's media and volume labels, read back from a real tape image and
// from bytes; what only looks like one is not taken for one.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';

import { createTapeImage, openTapeImage } from '../../src/devices/tape-image.js';
import { parseWrittenLabel, readWrittenLabel } from '../../src/devices/tape-label.js';

/** A 512-byte record as ndmjob writes its label: the text, a newline, NULs after. */
function labelRecord(text: string): Uint8Array {
  const b = new Uint8Array(512);
  b.set(Buffer.from(`${text}\n`, 'latin1'));
  return b;
}

function tapeWith(records: (Uint8Array | 'filemark')[]): string {
  const dir = fs.mkdtempSync(join(os.tmpdir(), 'tape-label-'));
  const path = join(dir, 'NDM001');
  createTapeImage(path, { barcode: 'NDM001' });
  const t = openTapeImage(path, { readOnly: false });
  for (const r of records) {
    if (r === 'filemark') t.writeFilemarks(1);
    else t.writeRecord(r);
  }
  t.close();
  return path;
}

test("ndmjob's media and volume labels, read from the tape's first record", () => {
  const m = tapeWith([labelRecord('##ndmjob -m WEEKLY-07'), 'filemark', new Uint8Array(10240)]);
  assert.deepEqual(readWrittenLabel(m), { kind: 'media', text: 'WEEKLY-07' });
  const v = tapeWith([labelRecord('##ndmjob -V VOL 3'), 'filemark']);
  assert.deepEqual(readWrittenLabel(v), { kind: 'volume', text: 'VOL 3' });
});

test('no label: a blank tape, a tape that starts with a filemark or with data, another DMA’s record', () => {
  assert.equal(readWrittenLabel(tapeWith([])), null);
  assert.equal(readWrittenLabel(tapeWith(['filemark', labelRecord('##ndmjob -m LATE')])), null);
  assert.equal(readWrittenLabel(tapeWith([new Uint8Array(10240).fill(0x41)])), null);
  assert.equal(readWrittenLabel(tapeWith([labelRecord('VOL1NDM001')])), null);
});

test('from bytes: cut at a newline or NUL, at most 31 characters; empty or unprintable labels are none', () => {
  assert.deepEqual(parseWrittenLabel(labelRecord('##ndmjob -m A')), { kind: 'media', text: 'A' });
  assert.deepEqual(parseWrittenLabel(Buffer.from('##ndmjob -m B\0junk', 'latin1')), {
    kind: 'media',
    text: 'B',
  });
  assert.equal(parseWrittenLabel(labelRecord(`##ndmjob -m ${'x'.repeat(40)}`))!.text.length, 31);
  assert.equal(parseWrittenLabel(labelRecord('##ndmjob -m ')), null);
  assert.equal(parseWrittenLabel(Buffer.from('##ndmjob -m \x01\x02\n', 'latin1')), null);
  assert.equal(parseWrittenLabel(Buffer.from('##ndmjob -x C\n', 'latin1')), null);
  assert.equal(parseWrittenLabel(new Uint8Array(0)), null);
});
