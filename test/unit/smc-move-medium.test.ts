// MOVE MEDIUM (docs/smc.md §4.6) and the other commands that act on the
// library: POSITION TO ELEMENT, INITIALIZE ELEMENT STATUS (with range),
// PREVENT ALLOW MEDIUM REMOVAL. State changes, every failure with its
// sense, and the order the checks run in.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { executeChangerCdb } from '../../src/devices/smc/changer.js';
import { MemoryChanger } from '../helpers/memory-changer.js';
import { assertCheck, cdbRequest, goodData, toHex } from '../helpers/smc-bytes.js';

const h4 = (v: number): string => v.toString(16).padStart(4, '0');
/** MOVE MEDIUM transport → source → destination, as ndmjob builds it (no data). */
const move = (src: number, dst: number, transport = 1, tail = '00 00 00 00'): string =>
  `a5 00 ${h4(transport)} ${h4(src)} ${h4(dst)} ${tail}`;

function library(): MemoryChanger {
  return new MemoryChanger({ drives: 2, slots: 8, media: { 1000: 'NDM001', 1001: 'NDM002', 10: 'NDM009' } });
}

/** The SValid bit and source address READ ELEMENT STATUS reports for `address`. */
function reportedSource(c: MemoryChanger, address: number): string {
  const all = executeChangerCdb(c, cdbRequest(`b8 00 ${h4(address)} 00 01 00 00 ff ff 00 00`));
  return toHex(all.dataIn.subarray(8 + 8 + 9, 8 + 8 + 12));
}

test("ndmjob's load (slot 1000 → drive 500) moves the cartridge; unload puts it back to its SValid slot", () => {
  const c = library();
  const r = executeChangerCdb(c, cdbRequest('a5 00 00 01 03 e8 01 f4 00 00 00 00', 0));
  assert.equal(goodData(r), '');
  assert.equal(c.at(500), 'NDM001');
  assert.equal(c.at(1000), undefined);
  assert.equal(reportedSource(c, 500), '8003e8');
  assert.equal(goodData(executeChangerCdb(c, cdbRequest(move(500, 1000)))), '');
  assert.equal(c.at(1000), 'NDM001');
  assert.equal(reportedSource(c, 1000), '000000');
});

test('transport address 0 is the default transport', () => {
  const c = library();
  assert.equal(goodData(executeChangerCdb(c, cdbRequest(move(1001, 1002, 0)))), '');
  assert.equal(c.at(1002), 'NDM002');
});

test('import and export through the I/E element; drive to drive keeps the source slot', () => {
  const c = library();
  assert.equal(goodData(executeChangerCdb(c, cdbRequest(move(10, 1005)))), '');
  assert.equal(c.at(1005), 'NDM009');
  assert.equal(goodData(executeChangerCdb(c, cdbRequest(move(1001, 10)))), '');
  assert.equal(c.at(10), 'NDM002');
  assert.equal(goodData(executeChangerCdb(c, cdbRequest(move(1000, 501)))), '');
  assert.equal(goodData(executeChangerCdb(c, cdbRequest(move(501, 500)))), '');
  assert.equal(reportedSource(c, 500), '8003e8');
});

test('source empty: 05/3B/0E, as the reference reply carries it, and nothing moves', () => {
  const c = library();
  const r = executeChangerCdb(c, cdbRequest(move(1002, 500)));
  assertCheck(r, '5/3b/0e');
  assert.equal(toHex(r.sense), '700005000000000a000000003b0e00000000');
  assert.deepEqual(c.calls, ['media']);
});

test('destination full: 05/3B/0D; a move onto itself is GOOD and calls no move', () => {
  const c = library();
  assertCheck(executeChangerCdb(c, cdbRequest(move(1000, 1001))), '5/3b/0d');
  assert.equal(goodData(executeChangerCdb(c, cdbRequest(move(1000, 1000)))), '');
  assert.deepEqual(c.calls, ['media', 'media']);
  assert.equal(c.at(1000), 'NDM001');
});

test('invalid element addresses: 05/21/01 pointing at the field, before anything else is looked at', () => {
  const c = library();
  // A transport that is not the transport.
  assertCheck(executeChangerCdb(c, cdbRequest(move(1000, 500, 500))), '5/21/01', 'c00002');
  assertCheck(executeChangerCdb(c, cdbRequest(move(1000, 500, 2))), '5/21/01', 'c00002');
  // A source or destination that is no element, or is the transport.
  assertCheck(executeChangerCdb(c, cdbRequest(move(0, 500))), '5/21/01', 'c00004');
  assertCheck(executeChangerCdb(c, cdbRequest(move(1, 500))), '5/21/01', 'c00004');
  assertCheck(executeChangerCdb(c, cdbRequest(move(1008, 500))), '5/21/01', 'c00004');
  assertCheck(executeChangerCdb(c, cdbRequest(move(1000, 502))), '5/21/01', 'c00006');
  assertCheck(executeChangerCdb(c, cdbRequest(move(1000, 1))), '5/21/01', 'c00006');
  // ndmjob's "unload anyway" of an empty drive moves 500 → 0.
  assertCheck(executeChangerCdb(c, cdbRequest(move(500, 0))), '5/21/01', 'c00006');
  // An empty source with a bad destination: the address is reported first.
  assertCheck(executeChangerCdb(c, cdbRequest(move(1002, 9))), '5/21/01', 'c00006');
  assert.deepEqual(c.calls, []);
});

test('Invert is refused after the addresses and before the contents', () => {
  const c = library();
  assertCheck(executeChangerCdb(c, cdbRequest(move(1000, 500, 1, '00 00 01 00'))), '5/24/00', 'c8000a');
  assertCheck(executeChangerCdb(c, cdbRequest(move(1000, 9, 1, '00 00 01 00'))), '5/21/01', 'c00006');
  assert.deepEqual(c.calls, []);
});

test('reserved bits refused; the vendor bits of the control byte are not', () => {
  const c = library();
  assertCheck(executeChangerCdb(c, cdbRequest(move(1000, 500, 1, '01 00 00 00'))), '5/24/00', 'c00008');
  assertCheck(executeChangerCdb(c, cdbRequest(move(1000, 500, 1, '00 00 02 00'))), '5/24/00', 'c9000a');
  assertCheck(executeChangerCdb(c, cdbRequest(move(1000, 500, 1, '00 00 00 04'))), '5/24/00', 'ca000b');
  assertCheck(executeChangerCdb(c, cdbRequest('a5 01 00 01 03 e8 01 f4 00 00 00 00')), '5/24/00', 'c80001');
  assert.equal(goodData(executeChangerCdb(c, cdbRequest(move(1000, 500, 1, '00 00 00 c0')))), '');
  assert.equal(c.at(500), 'NDM001');
});

test("the state's refusals: drive in use 05/53/02, I/E open 02/3A/02, backend 04/44/00; nothing moves", () => {
  const c = library();
  assert.equal(goodData(executeChangerCdb(c, cdbRequest(move(1000, 500)))), '');
  c.openDrives.add(500);
  const inUse = executeChangerCdb(c, cdbRequest(move(500, 1000)));
  assertCheck(inUse, '5/53/02');
  assert.match(inUse.detail ?? '', /drive-in-use/);
  assert.equal(c.at(500), 'NDM001');
  c.openDrives.clear();
  c.failNext = { reason: 'import-export-open', detail: 'mail slot open' };
  assertCheck(executeChangerCdb(c, cdbRequest(move(500, 1000))), '2/3a/02');
  c.failNext = { reason: 'backend-failure', detail: 'symlink: EIO' };
  const io = executeChangerCdb(c, cdbRequest(move(500, 1000)));
  assertCheck(io, '4/44/00');
  assert.match(io.detail ?? '', /symlink: EIO/);
  assert.equal(goodData(executeChangerCdb(c, cdbRequest(move(500, 1000)))), '');
  assert.equal(c.at(1000), 'NDM001');
});

test('POSITION TO ELEMENT: GOOD for any element, 05/21/01 otherwise; nothing moves', () => {
  const c = library();
  for (const a of [1, 10, 500, 1007]) {
    assert.equal(goodData(executeChangerCdb(c, cdbRequest(`2b 00 00 01 ${h4(a)} 00 00 00 00`))), '', `${a}`);
  }
  assert.equal(goodData(executeChangerCdb(c, cdbRequest('2b 00 00 00 03 e8 00 00 00 00'))), '');
  assertCheck(executeChangerCdb(c, cdbRequest('2b 00 00 01 03 f0 00 00 00 00')), '5/21/01', 'c00004');
  assertCheck(executeChangerCdb(c, cdbRequest('2b 00 01 f4 03 e8 00 00 00 00')), '5/21/01', 'c00002');
  assertCheck(executeChangerCdb(c, cdbRequest('2b 00 00 01 03 e8 00 00 01 00')), '5/24/00', 'c80008');
  assertCheck(executeChangerCdb(c, cdbRequest('2b 00 00 01 03 e8 00 01 00 00')), '5/24/00', 'c00007');
  assert.deepEqual(c.calls, []);
});

test('INITIALIZE ELEMENT STATUS takes inventory; a backend failure is 04/44/00', () => {
  const c = library();
  assert.equal(goodData(executeChangerCdb(c, cdbRequest('07 00 00 00 00 00', 0))), '');
  assert.deepEqual(c.calls, ['initialize']);
  c.failNext = { reason: 'backend-failure', detail: 'readdir: EACCES' };
  assertCheck(executeChangerCdb(c, cdbRequest('07 00 00 00 00 00')), '4/44/00');
  assertCheck(executeChangerCdb(c, cdbRequest('07 00 00 01 00 00')), '5/24/00', 'c00003');
});

test('INITIALIZE ELEMENT STATUS WITH RANGE: a range must start at an element; without RANGE the fields are ignored', () => {
  const c = library();
  assert.equal(goodData(executeChangerCdb(c, cdbRequest('37 01 03 e8 00 00 00 02 00 00'))), '');
  assert.equal(goodData(executeChangerCdb(c, cdbRequest('37 03 01 f4 00 00 00 01 00 00'))), '');
  assert.equal(goodData(executeChangerCdb(c, cdbRequest('37 00 ff ff 00 00 00 00 00 00'))), '');
  assertCheck(executeChangerCdb(c, cdbRequest('37 01 00 02 00 00 00 01 00 00')), '5/21/01', 'c00002');
  assertCheck(executeChangerCdb(c, cdbRequest('37 04 03 e8 00 00 00 01 00 00')), '5/24/00', 'ca0001');
  assertCheck(executeChangerCdb(c, cdbRequest('37 01 03 e8 01 00 00 01 00 00')), '5/24/00', 'c00004');
  assert.deepEqual(c.calls, ['initialize', 'initialize', 'initialize']);
});

test('PREVENT ALLOW MEDIUM REMOVAL sets and clears the flag; robot moves go on; obsolete values refused', () => {
  const c = library();
  assert.equal(goodData(executeChangerCdb(c, cdbRequest('1e 00 00 00 01 00'))), '');
  assert.equal(c.preventMediumRemoval, true);
  assert.equal(goodData(executeChangerCdb(c, cdbRequest(move(10, 1002)))), '');
  assert.equal(goodData(executeChangerCdb(c, cdbRequest(move(1002, 10)))), '');
  assert.equal(goodData(executeChangerCdb(c, cdbRequest('1e 00 00 00 00 00'))), '');
  assert.equal(c.preventMediumRemoval, false);
  assertCheck(executeChangerCdb(c, cdbRequest('1e 00 00 00 02 00')), '5/24/00', 'c90004');
  assertCheck(executeChangerCdb(c, cdbRequest('1e 00 00 00 04 00')), '5/24/00', 'ca0004');
  assert.equal(c.preventMediumRemoval, false);
});
