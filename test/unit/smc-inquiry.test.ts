// INQUIRY for the changer (docs/smc.md §4.2): standard data and the VPD
// pages 00h/80h/83h byte for byte, the allocation length, and the CDB
// fields it refuses.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { executeChangerCdb } from '../../src/devices/smc/changer.js';
import { SmcStateError } from '../../src/devices/smc/errors.js';
import { checkIdentity } from '../../src/devices/smc/inquiry.js';
import { CHANGER_IDENTITY, MemoryChanger } from '../helpers/memory-changer.js';
import { asciiBytes, assertCheck, cdbRequest, concat, goodData, toHex } from '../helpers/smc-bytes.js';

const STANDARD = toHex(
  concat(
    '08 80 05 02 5b 00 00 00',
    asciiBytes('NDMPVTL', 8),
    asciiBytes('VIRTUAL-CHANGER', 16),
    asciiBytes('0001', 4),
    new Uint8Array(60),
  ),
);

test("ndmjob's INQUIRY (alloc 128, datain_len 128) gets the 96 bytes of standard data", () => {
  const c = new MemoryChanger();
  const r = executeChangerCdb(c, cdbRequest('12 00 00 00 80 00', 128));
  assert.equal(goodData(r), STANDARD);
  assert.equal(r.dataIn.length, 96);
});

test('standard data is cut to the allocation length and to datain_len, whichever is smaller', () => {
  const c = new MemoryChanger();
  assert.equal(goodData(executeChangerCdb(c, cdbRequest('12 00 00 00 24 00', 128))), STANDARD.slice(0, 72));
  assert.equal(goodData(executeChangerCdb(c, cdbRequest('12 00 00 00 80 00', 5))), STANDARD.slice(0, 10));
  assert.equal(goodData(executeChangerCdb(c, cdbRequest('12 00 00 00 00 00', 128))), '');
  // A 16-bit allocation length (SPC-3): 0x0100 is 256, not 0.
  assert.equal(goodData(executeChangerCdb(c, cdbRequest('12 00 00 01 00 00', 300))), STANDARD);
});

test('VPD 00h lists 00h, 80h, 83h', () => {
  const r = executeChangerCdb(new MemoryChanger(), cdbRequest('12 01 00 00 ff 00'));
  assert.equal(goodData(r), '08000003008083');
});

test('VPD 80h is the unit serial number', () => {
  const r = executeChangerCdb(new MemoryChanger(), cdbRequest('12 01 80 00 ff 00'));
  assert.equal(goodData(r), '0880000a' + toHex(asciiBytes('NDMCHG0001')));
});

test('VPD 83h: the T10 vendor ID designator, then the NAA designator (page length 0x32)', () => {
  const r = executeChangerCdb(new MemoryChanger(), cdbRequest('12 01 83 00 ff 00'));
  const want = concat(
    '08 83 00 32',
    '02 01 00 22',
    asciiBytes('NDMPVTL', 8),
    asciiBytes('VIRTUAL-CHANGER', 16),
    asciiBytes('NDMCHG0001'),
    '01 03 00 08',
    '30 11 22 33 44 55 66 77',
  );
  assert.equal(goodData(r), toHex(want));
});

test('VPD 83h without an NAA name has the T10 designator alone', () => {
  const c = new MemoryChanger();
  Object.defineProperty(c, 'identity', { value: { ...CHANGER_IDENTITY, naa: undefined } });
  const r = executeChangerCdb(c, cdbRequest('12 01 83 00 ff 00'));
  assert.equal(goodData(r).slice(0, 16), '0883002602010022');
  assert.equal(r.dataIn.length, 4 + 38);
});

test('refused fields: a page without EVPD, an unknown VPD page, CMDDT, reserved bits', () => {
  const c = new MemoryChanger();
  assertCheck(executeChangerCdb(c, cdbRequest('12 00 80 00 ff 00')), '5/24/00', 'c00002');
  assertCheck(executeChangerCdb(c, cdbRequest('12 01 b0 00 ff 00')), '5/24/00', 'c00002');
  assertCheck(executeChangerCdb(c, cdbRequest('12 02 00 00 ff 00')), '5/24/00', 'c90001');
  assertCheck(executeChangerCdb(c, cdbRequest('12 04 00 00 ff 00')), '5/24/00', 'ca0001');
  // The old SCSI-2 LUN bits are ignored.
  assert.equal(goodData(executeChangerCdb(c, cdbRequest('12 e0 00 00 80 00'))), STANDARD);
});

test('an identity that does not fit INQUIRY is the state’s bug, thrown, not a sense', () => {
  const base = { vendor: 'V', product: 'P', revision: 'R', serial: 'S1' };
  checkIdentity(base);
  for (const bad of [
    { ...base, vendor: 'NINECHARS' },
    { ...base, product: 'x'.repeat(17) },
    { ...base, revision: '12345' },
    { ...base, serial: '' },
    { ...base, serial: 'HAS BLANK' },
    { ...base, serial: 'x'.repeat(33) },
    { ...base, vendor: 'é' },
    { ...base, naa: new Uint8Array(7) },
    { ...base, naa: new Uint8Array(8) },
  ]) {
    assert.throws(() => checkIdentity(bad), SmcStateError, JSON.stringify(bad));
  }
  const c = new MemoryChanger();
  Object.defineProperty(c, 'identity', { value: { ...base, vendor: 'NINECHARS' } });
  assert.throws(() => executeChangerCdb(c, cdbRequest('12 00 00 00 80 00')), SmcStateError);
});
