// TAPE_EXECUTE_CDB for a drive (docs/smc.md §5): INQUIRY with device type
// 01h and the drive's serial, the same T10 identifier the changer reports
// for that drive with DVCID, TEST UNIT READY by whether a cartridge is
// loaded, REQUEST SENSE, and nothing else.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { executeChangerCdb } from '../../src/devices/smc/changer.js';
import { newNexus } from '../../src/devices/smc/command.js';
import { SENSE } from '../../src/devices/smc/sense.js';
import type { TapeDriveState } from '../../src/devices/smc/state.js';
import { TAPE_OPCODES, executeTapeCdb } from '../../src/devices/smc/tape-cdb.js';
import { MemoryChanger, driveIdentity } from '../helpers/memory-changer.js';
import { asciiBytes, assertCheck, cdbRequest, concat, goodData, toHex } from '../helpers/smc-bytes.js';

function drive(i: number, loaded = true): TapeDriveState & { loaded: boolean } {
  return {
    identity: driveIdentity(i),
    loaded,
    mediumLoaded() {
      return this.loaded;
    },
  };
}

test('standard INQUIRY: sequential access, removable, the drive identity', () => {
  const r = executeTapeCdb(drive(1), cdbRequest('12 00 00 00 80 00', 128));
  const want = concat(
    '01 80 05 02 5b 00 00 00',
    asciiBytes('NDMPVTL', 8),
    asciiBytes('VIRTUAL-TAPE', 16),
    asciiBytes('0001', 4),
    new Uint8Array(60),
  );
  assert.equal(goodData(r), toHex(want));
});

test('VPD 00h, 80h and 83h carry device type 01h and the drive serial', () => {
  const d = drive(1);
  assert.equal(goodData(executeTapeCdb(d, cdbRequest('12 01 00 00 ff 00'))), '01000003008083');
  assert.equal(
    goodData(executeTapeCdb(d, cdbRequest('12 01 80 00 ff 00'))),
    '0180000a' + toHex(asciiBytes('NDMDRV0001')),
  );
  assert.equal(
    goodData(executeTapeCdb(d, cdbRequest('12 01 83 00 ff 00'))),
    '01830026' +
      '02010022' +
      toHex(asciiBytes('NDMPVTL', 8)) +
      toHex(asciiBytes('VIRTUAL-TAPE', 16)) +
      toHex(asciiBytes('NDMDRV0001')),
  );
  assertCheck(executeTapeCdb(d, cdbRequest('12 01 b1 00 ff 00')), '5/24/00', 'c00002');
  assertCheck(executeTapeCdb(d, cdbRequest('12 00 80 00 ff 00')), '5/24/00', 'c00002');
});

test("the drive's VPD 83h designator is the changer's DVCID identifier for that drive element", () => {
  const c = new MemoryChanger({ drives: 2 });
  for (const i of [0, 1]) {
    const vpd = executeTapeCdb(drive(i), cdbRequest('12 01 83 00 ff 00')).dataIn;
    const designator = vpd.subarray(4, 4 + 4 + vpd[7]!);
    const addr = (500 + i).toString(16).padStart(4, '0');
    const res = executeChangerCdb(c, cdbRequest(`b8 14 ${addr} 00 01 01 00 ff ff 00 00`)).dataIn;
    const tail = res.subarray(8 + 8 + 12 + 36);
    assert.equal(toHex(tail), toHex(designator), `drive ${i}`);
    // And VPD 80h is the serial inside it.
    const serial = executeTapeCdb(drive(i), cdbRequest('12 01 80 00 ff 00')).dataIn.subarray(4);
    assert.equal(toHex(designator.subarray(4 + 24)), toHex(serial));
  }
});

test('TEST UNIT READY: GOOD with a cartridge loaded, 02/3A/00 without (or ejected)', () => {
  const d = drive(0, false);
  assertCheck(executeTapeCdb(d, cdbRequest('00 00 00 00 00 00')), '2/3a/00');
  d.loaded = true;
  assert.equal(goodData(executeTapeCdb(d, cdbRequest('00 00 00 00 00 00'))), '');
  const nexus = newNexus();
  nexus.pendingSense = SENSE.NOT_READY_TO_READY_CHANGE;
  assertCheck(executeTapeCdb(d, cdbRequest('00 00 00 00 00 00'), nexus), '6/28/00');
  assert.equal(goodData(executeTapeCdb(d, cdbRequest('00 00 00 00 00 00'), nexus)), '');
});

test('REQUEST SENSE: fixed-format NO SENSE, or the pending sense once', () => {
  const d = drive(0);
  assert.equal(
    goodData(executeTapeCdb(d, cdbRequest('03 00 00 00 12 00'))),
    '700000000000000a00000000000000000000',
  );
  const nexus = newNexus();
  nexus.pendingSense = SENSE.POWER_ON_RESET_OCCURRED;
  assert.equal(goodData(executeTapeCdb(d, cdbRequest('03 00 00 00 ff 00', 4), nexus)), '70000600');
  assert.equal(nexus.pendingSense, null);
  assertCheck(executeTapeCdb(d, cdbRequest('03 01 00 00 12 00')), '5/24/00', 'c80001');
});

test('anything else is INVALID COMMAND OPERATION CODE: tape motion, changer commands, LOCATE (2Bh)', () => {
  const d = drive(0);
  assert.deepEqual(
    [...TAPE_OPCODES].sort((a, b) => a - b),
    [0x00, 0x03, 0x12],
  );
  for (const cdb of [
    '08 01 00 00 01 00', // READ(6)
    '0a 01 00 00 01 00', // WRITE(6)
    '01 00 00 00 00 00', // REWIND
    '11 01 00 00 01 00', // SPACE
    '1b 00 00 00 00 00', // LOAD UNLOAD
    '2b 00 00 00 00 00 00 00 00 00', // LOCATE(10), POSITION TO ELEMENT to a changer
    '05 00 00 00 00 00', // READ BLOCK LIMITS
    '1a 08 3f 00 ff 00', // MODE SENSE(6)
    'b8 10 00 00 00 50 00 00 20 00 00 00', // READ ELEMENT STATUS
    'a5 00 00 01 03 e8 01 f4 00 00 00 00', // MOVE MEDIUM
    '1e 00 00 00 01 00', // PREVENT ALLOW MEDIUM REMOVAL
  ]) {
    assertCheck(executeTapeCdb(d, cdbRequest(cdb)), '5/20/00');
  }
  assertCheck(executeTapeCdb(d, cdbRequest('12 00 00')), '5/24/00');
});
