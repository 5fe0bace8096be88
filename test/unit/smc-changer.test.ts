// The changer's command dispatch (docs/smc.md §4): opcodes not served,
// short and padded CDBs, the CONTROL byte, TEST UNIT READY and REQUEST
// SENSE with a pending unit attention, and the data-in bound that holds for
// every command.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CHANGER_OPCODES, executeChangerCdb } from '../../src/devices/smc/changer.js';
import { newNexus } from '../../src/devices/smc/command.js';
import { SENSE } from '../../src/devices/smc/sense.js';
import { MemoryChanger } from '../helpers/memory-changer.js';
import { assertCheck, cdbRequest, goodData, hexBytes } from '../helpers/smc-bytes.js';

test('every opcode not served is INVALID COMMAND OPERATION CODE, never an exception', () => {
  const c = new MemoryChanger();
  for (let op = 0; op < 256; op++) {
    if (CHANGER_OPCODES.has(op)) continue;
    const cdb = new Uint8Array(op >= 0xa0 ? 12 : op >= 0x20 ? 10 : 6);
    cdb[0] = op;
    assertCheck(executeChangerCdb(c, cdbRequest(cdb)), '5/20/00');
  }
  // Among them, the ones docs/smc.md §4.10 names: EXCHANGE MEDIUM, REPORT LUNS, MODE SELECT, LOG SENSE.
  for (const cdb of [
    'a6 00 00 01 03 e8 01 f4 03 e9 00 00',
    'a0 00 00 00 00 00 00 00 01 00 00 00',
    '15 10 00 00 18 00',
  ]) {
    assertCheck(executeChangerCdb(c, cdbRequest(cdb)), '5/20/00');
  }
  assert.deepEqual(c.calls, []);
});

test('an empty CDB is INVALID COMMAND OPERATION CODE (the server refuses it with ILLEGAL_ARGS first)', () => {
  assertCheck(executeChangerCdb(new MemoryChanger(), cdbRequest(new Uint8Array(0))), '5/20/00');
});

test('a CDB shorter than its command is INVALID FIELD IN CDB, for every command served', () => {
  const c = new MemoryChanger({ media: { 1000: 'NDM001' } });
  const full: Record<number, string> = {
    0x00: '00 00 00 00 00 00',
    0x03: '03 00 00 00 12 00',
    0x07: '07 00 00 00 00 00',
    0x12: '12 00 00 00 80 00',
    0x1a: '1a 08 1d 00 ff 00',
    0x1e: '1e 00 00 00 00 00',
    0x2b: '2b 00 00 01 03 e8 00 00 00 00',
    0x37: '37 00 00 00 00 00 00 00 00 00',
    0x5a: '5a 08 1d 00 00 00 00 00 ff 00',
    0xa5: 'a5 00 00 01 03 e8 01 f4 00 00 00 00',
    0xb8: 'b8 10 00 00 00 50 00 00 20 00 00 00',
  };
  assert.deepEqual(
    Object.keys(full)
      .map(Number)
      .sort((a, b) => a - b),
    [...CHANGER_OPCODES].sort((a, b) => a - b),
  );
  for (const cdb of Object.values(full)) {
    const b = hexBytes(cdb);
    for (let n = 1; n < b.length; n++) {
      assertCheck(executeChangerCdb(c, cdbRequest(b.subarray(0, n))), '5/24/00');
    }
  }
  assert.equal(c.at(1000), 'NDM001', 'no short MOVE MEDIUM moved anything');
  assert.deepEqual(c.calls, []);
});

test('a CDB padded with zeros is served; padding that says something is refused where it is', () => {
  const c = new MemoryChanger();
  const plain = goodData(executeChangerCdb(c, cdbRequest('12 00 00 00 80 00')));
  assert.equal(goodData(executeChangerCdb(c, cdbRequest('12 00 00 00 80 00 00 00 00 00 00 00'))), plain);
  assertCheck(executeChangerCdb(c, cdbRequest('12 00 00 00 80 00 00 01')), '5/24/00', 'c00007');
});

test('CONTROL byte: NACA, LINK and reserved bits refused, vendor bits ignored', () => {
  const c = new MemoryChanger();
  assertCheck(executeChangerCdb(c, cdbRequest('00 00 00 00 00 04')), '5/24/00', 'ca0005');
  assertCheck(executeChangerCdb(c, cdbRequest('00 00 00 00 00 01')), '5/24/00', 'c80005');
  assertCheck(executeChangerCdb(c, cdbRequest('00 00 00 00 00 20')), '5/24/00', 'cd0005');
  assert.equal(goodData(executeChangerCdb(c, cdbRequest('00 00 00 00 00 80'))), '');
  assertCheck(executeChangerCdb(c, cdbRequest('00 00 01 00 00 00')), '5/24/00', 'c00002');
});

test('TEST UNIT READY: GOOD; a pending unit attention is reported once, then cleared', () => {
  const c = new MemoryChanger();
  assert.equal(goodData(executeChangerCdb(c, cdbRequest('00 00 00 00 00 00', 0))), '');
  const nexus = newNexus();
  nexus.pendingSense = SENSE.POWER_ON_RESET_OCCURRED;
  // INQUIRY never reports it (docs/smc.md §3.3), nor does any other command.
  assert.equal(executeChangerCdb(c, cdbRequest('12 00 00 00 80 00'), nexus).status, 0);
  assert.equal(executeChangerCdb(c, cdbRequest('1a 08 1d 00 ff 00'), nexus).status, 0);
  assertCheck(executeChangerCdb(c, cdbRequest('00 00 00 00 00 00'), nexus), '6/29/00');
  assert.equal(nexus.pendingSense, null);
  assert.equal(goodData(executeChangerCdb(c, cdbRequest('00 00 00 00 00 00'), nexus)), '');
});

test('REQUEST SENSE: NO SENSE when nothing is pending; the pending sense once; cut to the allocation length', () => {
  const c = new MemoryChanger();
  const noSense = '700000000000000a0000000000000000' + '0000';
  assert.equal(goodData(executeChangerCdb(c, cdbRequest('03 00 00 00 12 00'))), noSense);
  assert.equal(goodData(executeChangerCdb(c, cdbRequest('03 00 00 00 ff 00'))), noSense);
  assert.equal(goodData(executeChangerCdb(c, cdbRequest('03 00 00 00 08 00'))), noSense.slice(0, 16));
  const nexus = newNexus();
  nexus.pendingSense = SENSE.NOT_READY_TO_READY_CHANGE;
  assert.equal(
    goodData(executeChangerCdb(c, cdbRequest('03 00 00 00 12 00'), nexus)),
    '700006000000000a00000000280000000000',
  );
  assert.equal(goodData(executeChangerCdb(c, cdbRequest('03 00 00 00 12 00'), nexus)), noSense);
});

test('REQUEST SENSE with DESC = 1 is refused (descriptor format is never sent) and keeps the pending sense', () => {
  const c = new MemoryChanger();
  const nexus = newNexus();
  nexus.pendingSense = SENSE.POWER_ON_RESET_OCCURRED;
  assertCheck(executeChangerCdb(c, cdbRequest('03 01 00 00 12 00'), nexus), '5/24/00', 'c80001');
  assert.equal(nexus.pendingSense, SENSE.POWER_ON_RESET_OCCURRED);
});

test('data-in is never longer than datain_len, the allocation length or what was produced', () => {
  const c = new MemoryChanger({
    media: { 500: { volumeTag: 'NDM001', sourceAddress: 1000 }, 1001: 'NDM002' },
  });
  const withData = [
    { cdb: '03 00 00 00 LL 00', width: 1, produced: 18 },
    { cdb: '12 00 00 LL 00', width: 2, produced: 96 },
    { cdb: '12 01 83 LL 00', width: 2, produced: 54 },
    { cdb: '1a 08 3f 00 LL 00', width: 1, produced: 48 },
    { cdb: '5a 08 3f 00 00 00 00 LL 00', width: 2, produced: 52 },
    { cdb: 'b8 10 00 00 00 50 01 LL 00 00', width: 3, produced: 368 + 2 * 34 },
  ];
  for (const { cdb, width, produced } of withData) {
    for (const alloc of [0, 1, 7, 8, 17, 18, 40, 96, 255, 400]) {
      if (alloc >= 1 << (8 * width)) continue;
      for (const dataInLen of [0, 1, 8, 18, 64, 128, 8192]) {
        const l = alloc.toString(16).padStart(2 * width, '0');
        const r = executeChangerCdb(c, cdbRequest(cdb.replace('LL', l), dataInLen));
        assert.equal(r.status, 0, cdb);
        assert.equal(
          r.dataIn.length,
          Math.min(alloc, dataInLen, produced),
          `${cdb} alloc ${alloc} datain_len ${dataInLen}`,
        );
      }
    }
  }
  // No-data commands return no data whatever datain_len says.
  for (const cdb of [
    '00 00 00 00 00 00',
    '07 00 00 00 00 00',
    '1e 00 00 00 00 00',
    'a5 00 00 01 03 e9 03 ea 00 00 00 00',
  ]) {
    assert.equal(goodData(executeChangerCdb(c, cdbRequest(cdb, 8192))), '', cdb);
  }
  // A nonsensical datain_len is taken as 0.
  assert.equal(executeChangerCdb(c, cdbRequest('12 00 00 00 80 00', -1)).dataIn.length, 0);
  assert.equal(executeChangerCdb(c, cdbRequest('12 00 00 00 80 00', Number.NaN)).dataIn.length, 0);
});
