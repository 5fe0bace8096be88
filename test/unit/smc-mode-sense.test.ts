// MODE SENSE(6)/(10) (docs/smc.md §4.4): page 1Dh as ndmjob reads it, the
// other pages, page control, DBD, and the allocation length.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { executeChangerCdb } from '../../src/devices/smc/changer.js';
import { MemoryChanger } from '../helpers/memory-changer.js';
import { assertCheck, cdbRequest, goodData } from '../helpers/smc-bytes.js';

const PAGE_1D = '1d12 0001 0001 03e8 0003 000a 0001 01f4 0002 0000';
const PAGE_1E = '1e02 0000';
const PAGE_1F = '1f12 0e00 000e 0e0e 0000 0000 0000 0000 0000 0000';
const hex = (h: string): string => h.replace(/\s/g, '');

test("ndmjob's MODE SENSE(6) 1Dh with DBD: the 24 bytes the mock sent and ndmjob accepted (N=2, M=3)", () => {
  const r = executeChangerCdb(new MemoryChanger(), cdbRequest('1a 08 1d 00 ff 00', 255));
  assert.equal(goodData(r), hex('17 00 00 00 1d 12 00 01 00 01 03 e8 00 03 00 0a 00 01 01 f4 00 02 00 00'));
});

test('no block descriptor whatever DBD says: the page stays at offset 4', () => {
  const r = executeChangerCdb(new MemoryChanger(), cdbRequest('1a 00 1d 00 ff 00'));
  assert.equal(goodData(r), hex('17000000' + PAGE_1D));
});

test('page 1Dh follows the map: 2 drives, 8 slots, no import/export element', () => {
  const c = new MemoryChanger({ drives: 2, slots: 8, importExport: 0 });
  const r = executeChangerCdb(c, cdbRequest('1a 08 1d 00 ff 00'));
  assert.equal(goodData(r), hex('17000000 1d12 0001 0001 03e8 0008 000a 0000 01f4 0002 0000'));
});

test('pages 1Eh and 1Fh; 3Fh is all of them in page order', () => {
  const c = new MemoryChanger();
  assert.equal(goodData(executeChangerCdb(c, cdbRequest('1a 08 1e 00 ff 00'))), hex('07000000' + PAGE_1E));
  assert.equal(goodData(executeChangerCdb(c, cdbRequest('1a 08 1f 00 ff 00'))), hex('17000000' + PAGE_1F));
  const all = hex('2f000000' + PAGE_1D + PAGE_1E + PAGE_1F);
  assert.equal(goodData(executeChangerCdb(c, cdbRequest('1a 08 3f 00 ff 00'))), all);
  // "All subpages" is the same: none of these pages has subpages.
  assert.equal(goodData(executeChangerCdb(c, cdbRequest('1a 08 3f ff ff 00'))), all);
  assert.equal(goodData(executeChangerCdb(c, cdbRequest('1a 08 1d ff ff 00'))), hex('17000000' + PAGE_1D));
});

test('MODE SENSE(10): an 8-byte header with a 2-byte length, a 16-bit allocation length', () => {
  const c = new MemoryChanger();
  const r = executeChangerCdb(c, cdbRequest('5a 08 1d 00 00 00 00 00 ff 00'));
  assert.equal(goodData(r), hex('001a 0000 0000 0000' + PAGE_1D));
  // LLBAA is accepted (there are no block descriptors to make long).
  const all = executeChangerCdb(c, cdbRequest('5a 18 3f 00 00 00 00 01 00 00'));
  assert.equal(goodData(all), hex('0032 0000 0000 0000' + PAGE_1D + PAGE_1E + PAGE_1F));
});

test('page control: default = current, changeable = all-zero bodies, saved refused', () => {
  const c = new MemoryChanger();
  assert.equal(goodData(executeChangerCdb(c, cdbRequest('1a 08 9d 00 ff 00'))), hex('17000000' + PAGE_1D));
  assert.equal(
    goodData(executeChangerCdb(c, cdbRequest('1a 08 5d 00 ff 00'))),
    hex('17000000 1d12' + '00'.repeat(18)),
  );
  assertCheck(executeChangerCdb(c, cdbRequest('1a 08 dd 00 ff 00')), '5/39/00');
});

test('allocation length cuts the data but not the mode data length', () => {
  const c = new MemoryChanger();
  assert.equal(goodData(executeChangerCdb(c, cdbRequest('1a 08 1d 00 04 00'))), '17000000');
  assert.equal(goodData(executeChangerCdb(c, cdbRequest('1a 08 1d 00 ff 00', 6))), '170000001d12');
  assert.equal(goodData(executeChangerCdb(c, cdbRequest('5a 08 1d 00 00 00 00 00 03 00'))), '001a00');
  assert.equal(goodData(executeChangerCdb(c, cdbRequest('1a 08 1d 00 00 00'))), '');
});

test('refused: unknown pages, subpages, reserved bits', () => {
  const c = new MemoryChanger();
  // Page code is bits 5–0 of byte 2.
  assertCheck(executeChangerCdb(c, cdbRequest('1a 08 00 00 ff 00')), '5/24/00', 'cd0002');
  assertCheck(executeChangerCdb(c, cdbRequest('1a 08 1c 00 ff 00')), '5/24/00', 'cd0002');
  assertCheck(executeChangerCdb(c, cdbRequest('1a 08 1d 01 ff 00')), '5/24/00', 'c00003');
  assertCheck(executeChangerCdb(c, cdbRequest('1a 0c 1d 00 ff 00')), '5/24/00', 'ca0001');
  assertCheck(executeChangerCdb(c, cdbRequest('5a 08 1d 00 01 00 00 00 ff 00')), '5/24/00', 'c00004');
  assertCheck(executeChangerCdb(c, cdbRequest('5a 0a 1d 00 00 00 00 00 ff 00')), '5/24/00', 'c90001');
});
