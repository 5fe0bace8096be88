// READ ELEMENT STATUS (docs/smc.md §4.5): the reply ndmjob accepted, byte
// for byte; each element type; ranges that start inside a run or run past
// the end; the element count; VolTag and DVCID on and off; the status bits;
// and the allocation length, which cuts the bytes but never the counts.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { executeChangerCdb } from '../../src/devices/smc/changer.js';
import { SmcStateError } from '../../src/devices/smc/errors.js';
import type { ElementContents } from '../../src/devices/smc/state.js';
import { MemoryChanger } from '../helpers/memory-changer.js';
import { asciiBytes, assertCheck, cdbRequest, goodData, toHex } from '../helpers/smc-bytes.js';

const h2 = (v: number): string => v.toString(16).padStart(2, '0');
const h4 = (v: number): string => v.toString(16).padStart(4, '0');
const h6 = (v: number): string => v.toString(16).padStart(6, '0');

/** A primary volume tag: identifier blank padded to 32, 2 reserved bytes, sequence number 0. */
function tag(barcode: string | null): string {
  return barcode === null ? '00'.repeat(36) : toHex(asciiBytes(barcode, 32)) + '00000000';
}

interface Desc {
  address: number;
  flags: number;
  source?: number;
  barcode?: string | null;
  asc?: number;
  ascq?: number;
}

/** One element descriptor, built from the layout of docs/smc.md §4.5. */
function desc(d: Desc, withTag: boolean, tail = '00000000'): string {
  const sv = d.source !== undefined ? '80' + h4(d.source) : '000000';
  return (
    h4(d.address) +
    h2(d.flags) +
    '00' +
    h2(d.asc ?? 0) +
    h2(d.ascq ?? 0) +
    '0000' +
    '00' +
    sv +
    (withTag ? tag(d.barcode ?? null) : '') +
    tail
  );
}

function page(type: number, withTag: boolean, length: number, descs: string[]): string {
  return h2(type) + (withTag ? '80' : '00') + h4(length) + '00' + h6(length * descs.length) + descs.join('');
}

function report(first: number, count: number, pages: string[]): string {
  const body = pages.join('');
  return h4(first) + h4(count) + '00' + h6(body.length / 2) + body;
}

/** docs/smc.md §4.5's example: NDM001 in drive 500 (from slot 1000), NDM002 in slot 1001. */
function exampleChanger(): MemoryChanger {
  return new MemoryChanger({
    drives: 2,
    slots: 3,
    media: { 500: { volumeTag: 'NDM001', sourceAddress: 1000 }, 1001: 'NDM002' },
  });
}

const MTE = page(1, false, 16, [desc({ address: 1, flags: 0 }, false)]);
const IEE = page(3, true, 52, [desc({ address: 10, flags: 0x38 }, true)]);
const DTE_500 = desc({ address: 500, flags: 0x09, source: 1000, barcode: 'NDM001' }, true);
const DTE_501 = desc({ address: 501, flags: 0x08 }, true);
const SE = [
  desc({ address: 1000, flags: 0x08 }, true),
  desc({ address: 1001, flags: 0x09, barcode: 'NDM002' }, true),
  desc({ address: 1002, flags: 0x08 }, true),
];

test("ndmjob's READ ELEMENT STATUS (all, VolTag, 80 elements, 8192 bytes): the 368 bytes ndmjob accepted", () => {
  const r = executeChangerCdb(exampleChanger(), cdbRequest('b8 10 00 00 00 50 00 00 20 00 00 00', 8192));
  const want = report(1, 7, [MTE, IEE, page(4, true, 52, [DTE_500, DTE_501]), page(2, true, 52, SE)]);
  assert.equal(want.slice(0, 16), '0001000700000168', 'the header of the reference example');
  assert.equal(goodData(r), want);
  assert.equal(r.dataIn.length, 368);
});

test('one type at a time: transport, storage, import/export, drives', () => {
  const c = exampleChanger();
  const run = (cdb: string): string => goodData(executeChangerCdb(c, cdbRequest(cdb)));
  assert.equal(run('b8 11 00 00 ff ff 00 00 ff ff 00 00'), report(1, 1, [MTE]));
  assert.equal(run('b8 12 00 00 ff ff 00 00 ff ff 00 00'), report(1000, 3, [page(2, true, 52, SE)]));
  assert.equal(run('b8 13 00 00 ff ff 00 00 ff ff 00 00'), report(10, 1, [IEE]));
  assert.equal(
    run('b8 14 00 00 ff ff 00 00 ff ff 00 00'),
    report(500, 2, [page(4, true, 52, [DTE_500, DTE_501])]),
  );
});

test('a range that starts inside a run, or runs past the end, reports what is there', () => {
  const c = exampleChanger();
  const run = (cdb: string): string => goodData(executeChangerCdb(c, cdbRequest(cdb)));
  // Storage from 1001 (mid-run), as many as there are.
  assert.equal(run('b8 12 03 e9 00 50 00 00 ff ff 00 00'), report(1001, 2, [page(2, true, 52, SE.slice(1))]));
  // From 1002, asking for 5: only 1002 exists.
  assert.equal(run('b8 12 03 ea 00 05 00 00 ff ff 00 00'), report(1002, 1, [page(2, true, 52, SE.slice(2))]));
  // All types from 501: the second drive, then the slots.
  assert.equal(
    run('b8 10 01 f5 00 50 00 00 ff ff 00 00'),
    report(501, 4, [page(4, true, 52, [DTE_501]), page(2, true, 52, SE)]),
  );
  // All types from 0, three elements: the count cuts inside the drive run.
  assert.equal(
    run('b8 10 00 00 00 03 00 00 ff ff 00 00'),
    report(1, 3, [MTE, IEE, page(4, true, 52, [DTE_500])]),
  );
  // A start between runs takes the next run.
  assert.equal(run('b8 10 00 0b 00 01 00 00 ff ff 00 00'), report(500, 1, [page(4, true, 52, [DTE_500])]));
  // A number of elements of 0 is no cap.
  assert.equal(run('b8 12 00 00 00 00 00 00 ff ff 00 00'), report(1000, 3, [page(2, true, 52, SE)]));
});

test('nothing at or above the start, or no element of that type: INVALID FIELD IN CDB at the start', () => {
  const c = exampleChanger();
  assertCheck(executeChangerCdb(c, cdbRequest('b8 10 03 eb 00 50 00 00 ff ff 00 00')), '5/24/00', 'c00002');
  assertCheck(executeChangerCdb(c, cdbRequest('b8 14 01 f6 00 50 00 00 ff ff 00 00')), '5/24/00', 'c00002');
  const noIe = new MemoryChanger({ importExport: 0 });
  assertCheck(
    executeChangerCdb(noIe, cdbRequest('b8 13 00 00 00 50 00 00 ff ff 00 00')),
    '5/24/00',
    'c00002',
  );
});

test('element type codes 5–15 are refused, pointing at the type field', () => {
  const c = exampleChanger();
  for (const t of [5, 8, 15]) {
    const cdb = `b8 1${t.toString(16)} 00 00 00 50 00 00 ff ff 00 00`;
    assertCheck(executeChangerCdb(c, cdbRequest(cdb)), '5/24/00', 'cb0001');
  }
});

test('VolTag off: 16-byte descriptors and no PVolTag bit on any page', () => {
  const r = executeChangerCdb(exampleChanger(), cdbRequest('b8 00 00 00 00 50 00 00 20 00 00 00'));
  const d = (x: Desc): string => desc(x, false);
  const want = report(1, 7, [
    MTE,
    page(3, false, 16, [d({ address: 10, flags: 0x38 })]),
    page(4, false, 16, [d({ address: 500, flags: 0x09, source: 1000 }), d({ address: 501, flags: 0x08 })]),
    page(2, false, 16, [
      d({ address: 1000, flags: 0x08 }),
      d({ address: 1001, flags: 0x09 }),
      d({ address: 1002, flags: 0x08 }),
    ]),
  ]);
  assert.equal(goodData(r), want);
  assert.equal(want.slice(0, 16), '0001000700000090');
});

/** The DVCID identifier of drive i: code set ASCII, T10 vendor ID, vendor + product + serial. */
function dvcid(i: number): string {
  return (
    '02010022' +
    toHex(asciiBytes('NDMPVTL', 8)) +
    toHex(asciiBytes('VIRTUAL-TAPE', 16)) +
    toHex(asciiBytes(`NDMDRV000${i}`))
  );
}

test('DVCID: each drive descriptor ends with its T10 identifier (length 0x56 with tags); other pages unchanged', () => {
  const r = executeChangerCdb(exampleChanger(), cdbRequest('b8 14 00 00 00 50 01 00 20 00 00 00'));
  const want = report(500, 2, [
    page(4, true, 0x56, [
      desc({ address: 500, flags: 0x09, source: 1000, barcode: 'NDM001' }, true, dvcid(0)),
      desc({ address: 501, flags: 0x08 }, true, dvcid(1)),
    ]),
  ]);
  assert.equal(goodData(r), want);
  // Without tags: 12 + 4 + 34.
  const bare = executeChangerCdb(exampleChanger(), cdbRequest('b8 04 01 f5 00 01 01 00 20 00 00 00'));
  assert.equal(
    goodData(bare),
    report(501, 1, [page(4, false, 50, [desc({ address: 501, flags: 0x08 }, false, dvcid(1))])]),
  );
  // All types with DVCID: only the drive page grows.
  const all = executeChangerCdb(exampleChanger(), cdbRequest('b8 10 00 00 00 50 03 00 20 00 00 00'));
  const allHex = goodData(all);
  assert.equal(allHex.slice(16, 16 + MTE.length), MTE);
  assert.equal(allHex.slice(16 + MTE.length, 16 + MTE.length + IEE.length), IEE);
  assert.equal(allHex.length / 2, 8 + 24 + 60 + (8 + 2 * 0x56) + (8 + 3 * 52));
});

test('status bits: ImpExp for a cartridge the operator put in, Except with its ASC/ASCQ, SValid only from a slot', () => {
  const media: Record<number, ElementContents> = {
    10: { volumeTag: 'OPS001', sourceAddress: null, placedByOperator: true },
    501: { volumeTag: 'FROMIE', sourceAddress: 10 }, // came through the mail slot: no SValid
    1000: { volumeTag: null, sourceAddress: null }, // a cartridge without a barcode
    1002: { volumeTag: 'BAD001', sourceAddress: null, exception: { asc: 0x83, ascq: 0x09 } },
  };
  const c = new MemoryChanger({ media });
  const r = executeChangerCdb(c, cdbRequest('b8 10 00 00 00 50 00 00 20 00 00 00'));
  const want = report(1, 7, [
    MTE,
    page(3, true, 52, [desc({ address: 10, flags: 0x3b, barcode: 'OPS001' }, true)]),
    page(4, true, 52, [
      desc({ address: 500, flags: 0x08 }, true),
      desc({ address: 501, flags: 0x09, barcode: 'FROMIE' }, true),
    ]),
    page(2, true, 52, [
      desc({ address: 1000, flags: 0x09, barcode: null }, true),
      desc({ address: 1001, flags: 0x08 }, true),
      desc({ address: 1002, flags: 0x0d, barcode: 'BAD001', asc: 0x83, ascq: 0x09 }, true),
    ]),
  ]);
  assert.equal(goodData(r), want);
});

test('allocation length: a header-only probe learns the size; the counts are never cut', () => {
  const c = exampleChanger();
  const full = goodData(executeChangerCdb(c, cdbRequest('b8 10 00 00 00 50 00 00 20 00 00 00')));
  assert.equal(
    goodData(executeChangerCdb(c, cdbRequest('b8 10 00 00 00 50 00 00 00 08 00 00'))),
    full.slice(0, 16),
  );
  assert.equal(
    goodData(executeChangerCdb(c, cdbRequest('b8 10 00 00 00 50 00 00 00 64 00 00'))),
    full.slice(0, 200),
  );
  assert.equal(
    goodData(executeChangerCdb(c, cdbRequest('b8 10 00 00 00 50 00 00 20 00 00 00', 20))),
    full.slice(0, 40),
  );
  assert.equal(goodData(executeChangerCdb(c, cdbRequest('b8 10 00 00 00 50 00 00 00 00 00 00'))), '');
  // 24-bit allocation length: 01 00 00 is 65536.
  assert.equal(goodData(executeChangerCdb(c, cdbRequest('b8 10 00 00 00 50 00 01 00 00 00 00'))), full);
});

test('CURDATA is accepted; reserved bits of byte 6 and byte 10 are refused', () => {
  const c = exampleChanger();
  const full = goodData(executeChangerCdb(c, cdbRequest('b8 10 00 00 00 50 00 00 20 00 00 00')));
  assert.equal(goodData(executeChangerCdb(c, cdbRequest('b8 10 00 00 00 50 02 00 20 00 00 00'))), full);
  assertCheck(executeChangerCdb(c, cdbRequest('b8 10 00 00 00 50 04 00 20 00 00 00')), '5/24/00', 'ca0006');
  assertCheck(executeChangerCdb(c, cdbRequest('b8 10 00 00 00 50 00 00 20 00 01 00')), '5/24/00', 'c0000a');
});

test('a state with a cartridge where none can be, a bad barcode or missing drive identities is thrown', () => {
  const cdb = 'b8 10 00 00 00 50 00 00 20 00 00 00';
  const broken: Record<number, string>[] = [
    { 1: 'NDM001' },
    { 2: 'NDM001' },
    { 1003: 'NDM001' },
    { 1000: 'HAS BLANK' },
  ];
  for (const media of broken) {
    const c = new MemoryChanger({ media });
    assert.throws(() => executeChangerCdb(c, cdbRequest(cdb)), SmcStateError, JSON.stringify(media));
  }
  const c = new MemoryChanger();
  Object.defineProperty(c, 'drives', { value: c.drives.slice(0, 1) });
  assert.throws(() => executeChangerCdb(c, cdbRequest(cdb)), SmcStateError);
});
