// The element address map (docs/smc.md §2): runs at 1 / 10 / 500 / 1000,
// contiguous, lookup by address and by type and index, and the limits.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ElementMap, ElementType, MAX_DRIVES, MAX_SLOTS } from '../../src/devices/smc/element-map.js';
import { ElementMapError } from '../../src/devices/smc/errors.js';

test('2 drives, 8 slots, one import/export element: the runs of docs/smc.md §2', () => {
  const m = new ElementMap({ drives: 2, slots: 8 });
  assert.deepEqual(
    m.ranges.map((r) => [r.type, r.first, r.count]),
    [
      [ElementType.MEDIUM_TRANSPORT, 1, 1],
      [ElementType.IMPORT_EXPORT, 10, 1],
      [ElementType.DATA_TRANSFER, 500, 2],
      [ElementType.STORAGE, 1000, 8],
    ],
  );
  assert.equal(m.storage.first, 1000);
  assert.equal(m.rangeOf(ElementType.DATA_TRANSFER), m.dataTransfer);
  assert.ok(Object.isFrozen(m) && Object.isFrozen(m.ranges));
});

test('lookup: every address of every run, and nothing at the gaps', () => {
  const m = new ElementMap({ drives: 2, slots: 8 });
  assert.deepEqual(m.lookup(1), { address: 1, type: ElementType.MEDIUM_TRANSPORT, index: 0 });
  assert.deepEqual(m.lookup(10), { address: 10, type: ElementType.IMPORT_EXPORT, index: 0 });
  assert.deepEqual(m.lookup(501), { address: 501, type: ElementType.DATA_TRANSFER, index: 1 });
  assert.deepEqual(m.lookup(1007), { address: 1007, type: ElementType.STORAGE, index: 7 });
  for (const a of [0, 2, 9, 11, 499, 502, 999, 1008, 0xffff]) assert.equal(m.lookup(a), null, `${a}`);
});

test('address by type and index; elements in ascending address order', () => {
  const m = new ElementMap({ drives: 2, slots: 3 });
  assert.equal(m.address(ElementType.DATA_TRANSFER, 1), 501);
  assert.equal(m.address(ElementType.STORAGE, 0), 1000);
  assert.equal(m.address(ElementType.STORAGE, 3), null);
  assert.equal(m.address(ElementType.STORAGE, -1), null);
  assert.deepEqual(
    m.elements().map((e) => e.address),
    [1, 10, 500, 501, 1000, 1001, 1002],
  );
  assert.deepEqual(
    m.elements(ElementType.STORAGE).map((e) => [e.address, e.index]),
    [
      [1000, 0],
      [1001, 1],
      [1002, 2],
    ],
  );
  assert.deepEqual(m.elements(ElementType.MEDIUM_TRANSPORT).length, 1);
});

test('no import/export element is allowed (a count of 0)', () => {
  const m = new ElementMap({ drives: 1, slots: 1, importExport: 0 });
  assert.equal(m.importExport.count, 0);
  assert.equal(m.lookup(10), null);
  assert.deepEqual(m.elements(ElementType.IMPORT_EXPORT), []);
});

test('limits: the runs stay disjoint and inside 16-bit addresses', () => {
  const big = new ElementMap({ drives: MAX_DRIVES, slots: MAX_SLOTS, importExport: 16 });
  assert.equal(big.lookup(999)?.type, ElementType.DATA_TRANSFER);
  assert.equal(big.lookup(0xffff)?.type, ElementType.STORAGE);
  assert.equal(big.lookup(25)?.type, ElementType.IMPORT_EXPORT);
  for (const bad of [
    { drives: 0, slots: 1 },
    { drives: MAX_DRIVES + 1, slots: 1 },
    { drives: 1, slots: 0 },
    { drives: 1, slots: MAX_SLOTS + 1 },
    { drives: 1, slots: 1, importExport: 17 },
    { drives: 1.5, slots: 1 },
  ]) {
    assert.throws(
      () => new ElementMap(bad),
      (e: unknown) => e instanceof ElementMapError && e.code === 'SMC_ELEMENT_MAP',
      JSON.stringify(bad),
    );
  }
});
