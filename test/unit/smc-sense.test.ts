// Fixed-format sense data (docs/smc.md §3): the 18 bytes, the field
// pointer, and every named condition's key/ASC/ASCQ.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  FIXED_SENSE_LENGTH,
  SENSE,
  SenseKey,
  atField,
  encodeFixedSense,
} from '../../src/devices/smc/sense.js';
import { toHex } from '../helpers/smc-bytes.js';

test('MEDIUM SOURCE ELEMENT EMPTY encodes as the reference reply carries it (docs/smc.md §3.1)', () => {
  const s = encodeFixedSense(SENSE.MEDIUM_SOURCE_ELEMENT_EMPTY);
  assert.equal(s.length, FIXED_SENSE_LENGTH);
  assert.equal(toHex(s), '700005000000000a000000003b0e00000000');
});

test('a field pointer sets SKSV and C/D, and BPV with the bit when a bit is named', () => {
  assert.equal(
    toHex(encodeFixedSense(atField(SENSE.INVALID_FIELD_IN_CDB, 2))),
    '700005000000000a000000002400' + '00' + 'c00002',
  );
  assert.equal(toHex(encodeFixedSense(atField(SENSE.INVALID_FIELD_IN_CDB, 2)).subarray(15)), 'c00002');
  assert.equal(toHex(encodeFixedSense(atField(SENSE.INVALID_FIELD_IN_CDB, 1, 3)).subarray(15)), 'cb0001');
  assert.equal(toHex(encodeFixedSense(atField(SENSE.INVALID_FIELD_IN_CDB, 10, 0)).subarray(15)), 'c8000a');
  assert.equal(
    toHex(encodeFixedSense(atField(SENSE.INVALID_ELEMENT_ADDRESS, 4)).subarray(12)),
    '210100c00004',
  );
  // The original constant is untouched.
  assert.equal(SENSE.INVALID_FIELD_IN_CDB.field, undefined);
});

test('every named condition has the key and ASC/ASCQ of docs/smc.md §3.2', () => {
  const table: Record<keyof typeof SENSE, string> = {
    NO_SENSE: '0/00/00',
    INVALID_COMMAND_OPERATION_CODE: '5/20/00',
    PARAMETER_LIST_LENGTH_ERROR: '5/1a/00',
    INVALID_ELEMENT_ADDRESS: '5/21/01',
    INVALID_FIELD_IN_CDB: '5/24/00',
    LOGICAL_UNIT_NOT_SUPPORTED: '5/25/00',
    INVALID_FIELD_IN_PARAMETER_LIST: '5/26/00',
    SAVING_PARAMETERS_NOT_SUPPORTED: '5/39/00',
    MEDIUM_DESTINATION_ELEMENT_FULL: '5/3b/0d',
    MEDIUM_SOURCE_ELEMENT_EMPTY: '5/3b/0e',
    MEDIUM_REMOVAL_PREVENTED: '5/53/02',
    LOGICAL_UNIT_BECOMING_READY: '2/04/01',
    MEDIUM_NOT_PRESENT: '2/3a/00',
    MEDIUM_NOT_PRESENT_TRAY_OPEN: '2/3a/02',
    NOT_READY_TO_READY_CHANGE: '6/28/00',
    IMPORT_OR_EXPORT_ELEMENT_ACCESSED: '6/28/01',
    POWER_ON_RESET_OCCURRED: '6/29/00',
    INTERNAL_TARGET_FAILURE: '4/44/00',
    WRITE_PROTECTED: '7/27/00',
  };
  assert.deepEqual(Object.keys(SENSE).sort(), Object.keys(table).sort());
  for (const [name, want] of Object.entries(table)) {
    const b = encodeFixedSense(SENSE[name as keyof typeof SENSE]);
    const [k, asc, ascq] = want.split('/');
    assert.equal(b[2], parseInt(k!, 16), name);
    assert.equal(toHex(b.subarray(12, 14)), asc! + ascq!, name);
    assert.equal(toHex(b.subarray(14)), '00000000', `${name}: no FRU, no field pointer`);
  }
  assert.equal(SenseKey.ILLEGAL_REQUEST, 5);
});
