// The DMA's changer client (src/dma/changer.ts): its CDBs, its reading of
// READ ELEMENT STATUS by the replies' own byte counts, and sense in words.
// Replies come from the server's pure changer module over an in-memory
// library (test/helpers/memory-changer.ts), whose bytes are checked against
// ndmjob's accepted reply in smc-read-element-status.test.ts; and from bytes
// written here for what our server never sends (alternate tags, a longer
// identifier, descriptor-format sense).

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { executeChangerCdb } from '../../src/devices/smc/changer.js';
import { encodeFixedSense, SENSE } from '../../src/devices/smc/sense.js';
import {
  ChangerError,
  MediumChanger,
  describeSense,
  driveElementFor,
  findTape,
  homeFor,
  moveMediumCdb,
  parseElementStatus,
  readElementStatusCdb,
} from '../../src/dma/changer.js';
import type { CdbExecutor } from '../../src/dma/changer.js';
import { noTapeMessage, tapeCandidates } from '../../src/dma/pools.js';
import type { KnownTape } from '../../src/dma/pools.js';
import type { Medium } from '../../src/dma/media.js';
import { MemoryChanger, driveIdentity } from '../helpers/memory-changer.js';
import { hexBytes, toHex } from '../helpers/smc-bytes.js';

/** The client talking straight to the pure module (what the SCSI service does over NDMP). */
function direct(changer: MemoryChanger): { exec: CdbExecutor; cdbs: string[] } {
  const cdbs: string[] = [];
  const exec: CdbExecutor = async (cdb, dataInLen, dataOut) => {
    cdbs.push(toHex(cdb));
    const r = executeChangerCdb(changer, { cdb, dataInLen, dataOut: dataOut ?? new Uint8Array(0) });
    return { status: r.status, dataIn: r.dataIn, sense: r.sense };
  };
  return { exec, cdbs };
}

function library(): MemoryChanger {
  return new MemoryChanger({
    drives: 2,
    slots: 8,
    media: { 500: { volumeTag: 'NDM001', sourceAddress: 1000 }, 1001: 'NDM002', 1005: 'NDM006' },
  });
}

test('the CDBs: READ ELEMENT STATUS of all elements with VolTag and DVCID; MOVE MEDIUM by the transport', () => {
  assert.equal(toHex(readElementStatusCdb(0x12345)), 'b8100000ffff01012345' + '0000');
  assert.equal(toHex(moveMediumCdb(1, 1001, 501)), 'a500000103e901f500000000');
});

test('every element with what it holds: drives, slots, the import/export element, the transport', async () => {
  const { exec } = direct(library());
  const els = await new MediumChanger(exec, 'changer').elements();
  assert.deepEqual(
    els.map((e) => `${e.address}:${e.kind}:${e.full ? (e.volumeTag ?? '?') : '-'}`),
    [
      '1:transport:-',
      '10:import-export:-',
      '500:drive:NDM001',
      '501:drive:-',
      ...[1000, 1001, 1002, 1003, 1004, 1005, 1006, 1007].map(
        (a) => `${a}:storage:${a === 1001 ? 'NDM002' : a === 1005 ? 'NDM006' : '-'}`,
      ),
    ],
  );
  const d500 = els.find((e) => e.address === 500)!;
  assert.equal(d500.sourceAddress, 1000, 'SValid: the slot it came from');
  assert.equal(els.find((e) => e.address === 1001)!.sourceAddress, null);
  // DVCID: the drive's serial is in its identifier, so a drive element finds its tape device.
  assert.ok(d500.identifier?.endsWith(driveIdentity(0).serial), String(d500.identifier));
  assert.equal(driveElementFor(els, driveIdentity(1).serial)?.address, 501);
  assert.equal(driveElementFor(els, 'NO-SUCH-SERIAL'), null);
  assert.equal(findTape(els, 'NDM006')?.address, 1005);
  assert.equal(findTape(els, 'NDM099'), null);
});

test('a reply cut at the allocation length: asked again for what the header says there is', async () => {
  const changer = new MemoryChanger({ drives: 2, slots: 300, media: { 1299: 'LAST01' } });
  const { exec } = direct(changer);
  const asked: number[] = [];
  const counting: CdbExecutor = async (cdb, dataInLen) => {
    asked.push(dataInLen);
    return exec(cdb, dataInLen);
  };
  const els = await new MediumChanger(counting, 'changer', 100).elements();
  assert.equal(els.filter((e) => e.kind === 'storage').length, 300);
  assert.equal(findTape(els, 'LAST01')?.address, 1299);
  assert.equal(asked.length, 2, `asked ${asked.join(', ')}`);
  assert.equal(asked[0], 100);
  // The second ask is exactly the report's size as the first reply's header gave it.
  const whole = executeChangerCdb(changer, {
    cdb: readElementStatusCdb(0xffffff),
    dataInLen: 0xffffff,
    dataOut: new Uint8Array(0),
  });
  assert.equal(asked[1], whole.dataIn.length);
});

test('MOVE MEDIUM changes what the changer reports; where an unloaded tape goes', async () => {
  const changer = library();
  const { exec, cdbs } = direct(changer);
  const robot = new MediumChanger(exec, 'changer');
  await robot.move(1001, 501);
  let els = await robot.elements();
  assert.equal(findTape(els, 'NDM002')?.address, 501);
  assert.equal(els.find((e) => e.address === 501)!.sourceAddress, 1001);
  assert.ok(
    cdbs.some((c) => c.startsWith('a500000103e901f5')),
    cdbs.join('\n'),
  );
  // Home: the slot it came from while that is empty, else the first empty one.
  assert.equal(
    homeFor(
      els,
      els.find((e) => e.address === 501)!,
    )?.address,
    1001,
  );
  await robot.move(1005, 1001);
  els = await robot.elements();
  // 1001 is full now; 1000 is the first empty slot (its tape, NDM001, is in drive 500).
  const drive501 = els.find((e) => e.address === 501)!;
  assert.equal(homeFor(els, drive501)?.address, 1000);
});

test("a refused move: ChangerError with the changer's sense in words", async () => {
  const changer = library();
  const robot = new MediumChanger(direct(changer).exec, 'changer');
  await assert.rejects(robot.move(1002, 501), (e: unknown) => {
    assert.ok(e instanceof ChangerError);
    assert.equal(e.code, 'DMA_CHANGER');
    assert.deepEqual(e.sense, { key: 5, asc: 0x3b, ascq: 0x0e });
    assert.match(
      e.message,
      /changer changer could not move the tape at 1002 to 501: the source element is empty \(ILLEGAL REQUEST, 3B\/0E\)/,
    );
    return true;
  });
  await assert.rejects(robot.move(1001, 500), /the destination element is full \(ILLEGAL REQUEST, 3B\/0D\)/);
  changer.openDrives.add(500);
  await assert.rejects(robot.move(500, 1002), /medium removal is prevented/);
  await assert.rejects(robot.move(1001, 4000), /no such element address \(ILLEGAL REQUEST, 21\/01\)/);
});

test('ready(): one unit attention is news and asked again; a second, or NOT READY, fails', async () => {
  const replies = [encodeFixedSense(SENSE.POWER_ON_RESET_OCCURRED)];
  const exec: CdbExecutor = async () => {
    const s = replies.shift();
    return s
      ? { status: 2, dataIn: new Uint8Array(0), sense: s }
      : { status: 0, dataIn: new Uint8Array(0), sense: new Uint8Array(0) };
  };
  await new MediumChanger(exec, 'c').ready();
  replies.push(encodeFixedSense(SENSE.MEDIUM_NOT_PRESENT_TRAY_OPEN));
  await assert.rejects(
    new MediumChanger(exec, 'c').ready(),
    /is not ready: the import\/export element is open/,
  );
});

test('descriptors read by their own length: alternate tags and identifiers longer than ours are stepped over', () => {
  const tag = (s: string) => Buffer.from(s.padEnd(32, ' '), 'latin1').toString('hex') + '00000000';
  // A drive page with PVolTag and AVolTag, a 40-byte identifier, 4 bytes of padding past it.
  const id = 'ACME    ULTRIUM-HH9     SERIAL-0001-XYZ!';
  assert.equal(id.length, 40);
  const idHex = '02010028' + Buffer.from(id, 'latin1').toString('hex');
  const desc = (addr: string, flags: string, pv: string) =>
    addr + flags + '00' + '0000' + '000000' + '800064' + tag(pv) + tag('ALT') + idHex + '00000000';
  const descLen = 12 + 36 + 36 + 4 + 40 + 4;
  const d1 = desc('01f4', '09', 'TAPE01');
  const d2 = desc('01f5', '08', '');
  assert.equal(d1.length / 2, descLen);
  const page =
    '04c0' +
    descLen.toString(16).padStart(4, '0') +
    '00' +
    (2 * descLen).toString(16).padStart(6, '0') +
    d1 +
    d2;
  const header = '01f40002' + '00' + (page.length / 2).toString(16).padStart(6, '0');
  const els = parseElementStatus(hexBytes(header + page));
  assert.equal(els.length, 2);
  assert.deepEqual(els[0], {
    address: 500,
    kind: 'drive',
    full: true,
    volumeTag: 'TAPE01',
    sourceAddress: 100,
    identifier: id.trimEnd(),
    exception: null,
  });
  assert.equal(els[1]!.volumeTag, null, 'an empty element has no tag');
  assert.equal(els[1]!.full, false);
});

test('a reply shorter than its own counts is an error that says so, not a guess', () => {
  assert.throws(() => parseElementStatus(new Uint8Array(4)), /less than its header/);
  // A page that claims more bytes than the reply holds.
  const bad = hexBytes('0001000100000010' + '0200003400000100' + '00'.repeat(8));
  assert.throws(() => parseElementStatus(bad), /does not fit the reply/);
});

test('sense in words: fixed and descriptor format, known and unknown conditions', () => {
  assert.equal(
    describeSense(encodeFixedSense(SENSE.MEDIUM_DESTINATION_ELEMENT_FULL)).text,
    'the destination element is full (ILLEGAL REQUEST, 3B/0D)',
  );
  const d = describeSense(hexBytes('72053b0e00000000'));
  assert.deepEqual([d.key, d.asc, d.ascq], [5, 0x3b, 0x0e]);
  assert.match(
    describeSense(hexBytes('700004000000000a00000000aabb0000')).text,
    /ASC\/ASCQ AA\/BB \(HARDWARE ERROR, AA\/BB\)/,
  );
  assert.equal(describeSense(new Uint8Array(0)).text, 'no sense data');
});

test('no tape: the reasons counted per tape, and the remedy that fits them', () => {
  const tape = (barcode: string, more: Partial<Medium> = {}): Medium => ({
    device: `tapes/${barcode}`,
    barcode,
    label: '',
    capacity: 1 << 20,
    used: 0,
    files: 0,
    blank: true,
    writeProtected: false,
    loadedIn: null,
    ...more,
  });
  const media = [tape('A', { blank: false }), tape('B', { writeProtected: true }), tape('C'), tape('D')];
  const none = new Map<string, KnownTape>();
  // Through a changer that holds A and B only: C and D cannot be loaded.
  const inChanger = new Set(['A', 'B']);
  const opts = { pool: 'default', skip: new Set<string>(), inChanger };
  assert.deepEqual(tapeCandidates(media, none, opts), []);
  assert.equal(
    noTapeMessage('srv', media, none, opts, { part: 2, backupId: 9 }),
    "no tape left for part 2 of backup 9 in pool default (srv's library has 4 tapes: 1 foreign (written by something else), " +
      '1 write-protected, 2 outside the changer, whose slots are full): make room in the changer (take written tapes ' +
      'out through its import/export element, or give the server more --slots), and run the backup again (or give --wait SECONDS to wait for one)',
  );
  // Without a changer the same library has two to give, and when it has none the remedy is more tapes.
  const free = { pool: 'default', skip: new Set<string>(), inChanger: null };
  assert.deepEqual(
    tapeCandidates(media, none, free).map((c) => [c.medium.barcode, c.how]),
    [
      ['C', 'blank'],
      ['D', 'blank'],
    ],
  );
  assert.match(
    noTapeMessage('srv', media, none, { ...free, skip: new Set(['C', 'D']) }),
    /1 foreign \(written by something else\), 1 write-protected, 2 already used by this backup, or busy\): add tapes/,
  );
});
