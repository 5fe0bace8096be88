// The library folder: tapes, drives as symlinks, device names from TAPE_OPEN
// (which must never reach outside the folder), and one opener per tape.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readlinkSync,
  realpathSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { DRIVE_MODEL, Library, LibraryError } from '../../src/devices/library.js';
import { DEFAULT_CAPACITY, openTapeImage, readTapeImageInfo } from '../../src/devices/tape-image.js';

let root: string;
before(() => {
  root = realpathSync(mkdtempSync(join(os.tmpdir(), 'ndmpd-library-')));
});
after(() => rmSync(root, { recursive: true, force: true }));

let n = 0;
/** A fresh library in its own folder. */
function fresh(opts: Parameters<typeof Library.open>[1] = {}): Library {
  return Library.open(join(root, `lib${++n}`), opts);
}

describe('Library.open', () => {
  test('creates the folder with tapes/ and drives/, and declares the drives', () => {
    const dir = join(root, 'nested', 'lib');
    const lib = Library.open(dir, { serialSeed: 'host1' });
    assert.equal(lib.dir, dir);
    assert.ok(existsSync(join(dir, 'tapes')) && existsSync(join(dir, 'drives')));
    const drives = lib.drives();
    assert.deepEqual(
      drives.map((d) => [d.name, d.model]),
      [
        ['drive0', DRIVE_MODEL],
        ['drive1', DRIVE_MODEL],
      ],
    );
    assert.notEqual(drives[0]!.serial, drives[1]!.serial);
    assert.match(drives[0]!.serial, /^VTL[0-9A-F]+$/);
    // Same seed, same serials: a DMA sees the same drives after a restart.
    assert.deepEqual(Library.open(dir, { serialSeed: 'host1' }).drives(), drives);
    assert.notDeepEqual(Library.open(dir, { serialSeed: 'host2' }).drives(), drives);
    assert.equal(Library.open(dir, { drives: 4 }).drives().length, 4);
    assert.equal(lib.blankDefaults.capacity, DEFAULT_CAPACITY);
  });

  test('a file where the folder should be is a clear LibraryError', () => {
    const file = join(root, 'not-a-dir');
    writeFileSync(file, '');
    assert.throws(
      () => Library.open(file),
      (e: unknown) => {
        assert.ok(e instanceof LibraryError);
        assert.equal(e.code, 'NDMPD_LIBRARY');
        assert.match(e.message, /not a directory/);
        return true;
      },
    );
    assert.throws(() => Library.open(join(file, 'below')), LibraryError);
    assert.throws(() => Library.open(join(root, 'zero'), { drives: 0 }), /1 to 64 drives/);
  });
});

describe('tapes', () => {
  test('create numbers tapes after the highest in use; list shows them sorted', () => {
    const lib = fresh({ capacity: 10n * 2n ** 20n });
    assert.deepEqual(lib.createTapes({ count: 3 }), ['NDM001', 'NDM002', 'NDM003']);
    assert.deepEqual(lib.createTapes({ count: 1, prefix: 'WK', label: 'weekly', capacity: 2n ** 30n }), [
      'WK001',
    ]);
    assert.deepEqual(lib.createTapes({ count: 2 }), ['NDM004', 'NDM005']);
    // Stray files are not tapes.
    writeFileSync(join(lib.dir, 'tapes', '.hidden'), '');
    const tapes = lib.listTapes();
    assert.deepEqual(
      tapes.map((t) => t.barcode),
      ['NDM001', 'NDM002', 'NDM003', 'NDM004', 'NDM005', 'WK001'],
    );
    const ndm1 = tapes[0]!;
    assert.equal(ndm1.capacity, 10n * 2n ** 20n);
    assert.equal(ndm1.blank, true);
    assert.equal(ndm1.loadedIn, null);
    assert.equal(ndm1.writeProtected, false);
    const wk = tapes[5]!;
    assert.equal(wk.label, 'weekly');
    assert.equal(wk.capacity, 2n ** 30n);
    assert.equal(readTapeImageInfo(lib.tapePath('WK001')).barcode, 'WK001');
  });

  test('a blank file without an index lists as a blank tape of the library default size', () => {
    const lib = fresh({ capacity: 5n * 2n ** 20n });
    writeFileSync(join(lib.dir, 'tapes', 'HAND01'), '');
    const [t] = lib.listTapes();
    assert.equal(t!.barcode, 'HAND01');
    assert.equal(t!.blank, true);
    assert.equal(t!.capacity, 5n * 2n ** 20n);
  });

  test('label and protect change the tape; bad barcodes and missing tapes are refused', () => {
    const lib = fresh();
    lib.createTapes({ count: 1 });
    lib.label('NDM001', 'monthly');
    lib.protect('NDM001', true);
    let info = readTapeImageInfo(lib.tapePath('NDM001'));
    assert.equal(info.label, 'monthly');
    assert.equal(info.writeProtected, true);
    lib.protect('NDM001', false);
    info = readTapeImageInfo(lib.tapePath('NDM001'));
    assert.equal(info.writeProtected, false);
    for (const bad of ['', '..', '.x', 'a/b', 'NDM001.idx', 'x'.repeat(33), 'sp ace']) {
      assert.throws(() => lib.tapePath(bad), LibraryError, bad);
    }
    assert.throws(() => lib.label('NDM999', 'x'), /no tape NDM999/);
    assert.throws(() => lib.createTapes({ count: 1, prefix: '../x' }), LibraryError);
    assert.throws(() => lib.createTapes({ count: 0 }), LibraryError);
  });

  test('load, loaded, unload; refusals name the problem', () => {
    const lib = fresh();
    lib.createTapes({ count: 2 });
    assert.equal(lib.loaded('drive0'), null);
    lib.load('NDM001', 'drive0');
    assert.equal(lib.loaded('drive0'), 'NDM001');
    assert.equal(readlinkSync(join(lib.dir, 'drives', 'drive0')), join('..', 'tapes', 'NDM001'));
    assert.equal(lib.listTapes()[0]!.loadedIn, 'drive0');
    assert.throws(() => lib.load('NDM002', 'drive0'), /drive0 already holds NDM001/);
    assert.throws(() => lib.load('NDM001', 'drive1'), /NDM001 is already loaded in drive0/);
    assert.throws(() => lib.load('NDM003', 'drive1'), /no tape NDM003/);
    assert.throws(() => lib.load('NDM002', 'drive7'), /no drive 'drive7'/);
    assert.throws(() => lib.loaded('drive7'), LibraryError);
    assert.equal(lib.unload('drive0'), 'NDM001');
    assert.equal(lib.unload('drive0'), null);
    assert.equal(lib.loaded('drive0'), null);
    assert.throws(() => lib.unload('nodrive'), LibraryError);
    lib.load('NDM001', 'drive1');
    assert.equal(lib.loaded('drive1'), 'NDM001');
  });
});

describe('resolve', () => {
  let lib: Library;
  let outside: string;
  before(() => {
    lib = fresh();
    lib.createTapes({ count: 2 });
    lib.load('NDM002', 'drive1');
    outside = join(root, 'outside-tape');
    writeFileSync(outside, '');
    mkdirSync(join(lib.dir, 'sub'));
    symlinkSync(outside, join(lib.dir, 'tapes', 'ESCAPE'));
    symlinkSync(join(lib.dir, 'tapes', 'NDM001'), join(lib.dir, 'alias'));
  });

  test('drive names: the loaded tape (real path) or an empty drive', () => {
    const d0 = lib.resolve('drive0');
    assert.equal(d0?.kind, 'drive');
    assert.equal(d0.kind === 'drive' && d0.drive.name, 'drive0');
    assert.equal(d0.tapePath, null);
    const d1 = lib.resolve('drive1');
    assert.equal(d1?.kind, 'drive');
    assert.equal(d1.tapePath, join(lib.dir, 'tapes', 'NDM002'));
  });

  test('image paths inside the folder: absolute, relative to it, through a symlink inside it', () => {
    const want = join(lib.dir, 'tapes', 'NDM001');
    assert.deepEqual(lib.resolve(want), { kind: 'image', tapePath: want });
    assert.deepEqual(lib.resolve('tapes/NDM001'), { kind: 'image', tapePath: want });
    assert.deepEqual(lib.resolve('./sub/../tapes/NDM001'), { kind: 'image', tapePath: want });
    assert.deepEqual(lib.resolve('alias'), { kind: 'image', tapePath: want });
  });

  test('everything else is null, never an exception', () => {
    for (const bad of [
      '',
      'drive9',
      'tapes/NDM404',
      outside,
      '../outside-tape',
      `tapes/../../outside-tape`,
      'tapes/ESCAPE',
      'tapes',
      'sub',
      lib.dir,
      '/',
      'tapes/NDM001.idx',
      join(lib.dir, 'tapes', 'NDM001.idx'),
      'tapes/NDM001\0x',
      '/etc/passwd',
    ]) {
      assert.equal(lib.resolve(bad), null, JSON.stringify(bad));
    }
  });

  test('a drive whose link points outside the folder is empty', () => {
    const l = fresh();
    symlinkSync(outside, join(l.dir, 'drives', 'drive0'));
    const d = l.resolve('drive0');
    assert.equal(d?.kind, 'drive');
    assert.equal(d.tapePath, null);
  });
});

describe('claim', () => {
  test('one opener per drive and per tape, across Library instances', () => {
    const lib = fresh();
    lib.createTapes({ count: 2 });
    lib.load('NDM001', 'drive0');
    const again = Library.open(lib.dir);

    const release = lib.claim(lib.resolve('drive0')!);
    assert.ok(release);
    assert.equal(again.claim(again.resolve('drive0')!), null, 'the drive is held');
    // The tape in drive0, named by its path, is the same tape.
    assert.equal(lib.claim(lib.resolve('tapes/NDM001')!), null, 'its tape is held');
    const other = lib.claim(lib.resolve('tapes/NDM002')!);
    assert.ok(other, 'another tape is free');
    release();
    release(); // twice is harmless
    const r2 = again.claim(again.resolve('tapes/NDM001')!);
    assert.ok(r2, 'free again after release');
    // Now the tape is held by path: drive0 (which holds it) cannot be opened.
    assert.equal(lib.claim(lib.resolve('drive0')!), null);
    r2();
    other();
  });

  test('an empty drive is claimed by its name alone', () => {
    const lib = fresh();
    const r = lib.claim(lib.resolve('drive1')!);
    assert.ok(r);
    assert.equal(lib.claim(lib.resolve('drive1')!), null);
    assert.ok(lib.claim(lib.resolve('drive0')!));
    r();
  });

  test('a tape opened through the library is an ordinary tape image', () => {
    const lib = fresh({ capacity: 4n * 2n ** 20n });
    lib.createTapes({ count: 1 });
    const d = lib.resolve('tapes/NDM001')!;
    const tape = openTapeImage(d.tapePath!, { readOnly: false, blankDefaults: lib.blankDefaults });
    tape.writeRecord(new Uint8Array(1024).fill(7));
    tape.writeFilemarks(1);
    tape.close();
    const [t] = lib.listTapes();
    assert.equal(t!.records, 1);
    assert.equal(t!.filemarks, 1);
    assert.equal(t!.blank, false);
  });
});

describe('slots, the mail slot and moves (docs/changer.md §1)', () => {
  const link = (lib: Library, p: string) => readlinkSync(join(lib.dir, p));

  test('new tapes go into the first empty slots; a load moves the link and records its slot', () => {
    const lib = fresh({ slots: 3 });
    assert.deepEqual(lib.createTapes({ count: 4 }), ['NDM001', 'NDM002', 'NDM003', 'NDM004']);
    assert.equal(link(lib, 'slots/1'), '../tapes/NDM001');
    assert.equal(link(lib, 'slots/3'), '../tapes/NDM003');
    // All three slots full: the fourth tape is outside the changer.
    assert.equal(lib.whereIs('NDM004'), null);
    lib.load('NDM002', 'drive1');
    assert.equal(existsSync(join(lib.dir, 'slots', '2')), false);
    assert.deepEqual(lib.whereIs('NDM002'), {
      place: { kind: 'drive', name: 'drive1', index: 1 },
      barcode: 'NDM002',
      sourceSlot: 2,
    });
    // A drive → mail slot move keeps the source; back into a slot clears it.
    lib.move({ kind: 'drive', name: 'drive1', index: 1 }, { kind: 'mailslot', number: 1 });
    assert.equal(lib.whereIs('NDM002')!.sourceSlot, 2);
    lib.move({ kind: 'mailslot', number: 1 }, { kind: 'slot', number: 2 });
    assert.deepEqual(lib.whereIs('NDM002'), {
      place: { kind: 'slot', number: 2 },
      barcode: 'NDM002',
      sourceSlot: null,
    });
    assert.throws(
      () => lib.move({ kind: 'slot', number: 1 }, { kind: 'slot', number: 2 }),
      /already holds NDM002/,
    );
    assert.throws(() => lib.move({ kind: 'mailslot', number: 1 }, { kind: 'slot', number: 2 }), /is empty/);
    // Unload goes back to the slot the tape came from, even when an earlier one is free.
    lib.load('NDM003', 'drive0');
    lib.move({ kind: 'slot', number: 1 }, { kind: 'mailslot', number: 1 });
    assert.equal(lib.unload('drive0'), 'NDM003');
    assert.equal(link(lib, 'slots/3'), '../tapes/NDM003');
  });

  test('a library made before slots: its tapes get slots in barcode order on first open, drives untouched', () => {
    const dir = join(root, `old${++n}`);
    mkdirSync(join(dir, 'tapes'), { recursive: true });
    mkdirSync(join(dir, 'drives'));
    for (const b of ['B2', 'A1', 'C3']) writeFileSync(join(dir, 'tapes', b), '');
    symlinkSync('../tapes/B2', join(dir, 'drives', 'drive0'));
    const lib = Library.open(dir);
    assert.equal(link(lib, 'slots/1'), '../tapes/A1');
    assert.equal(link(lib, 'slots/2'), '../tapes/C3');
    assert.equal(link(lib, 'drives/drive0'), '../tapes/B2');
    // Not again: a tape taken out of the changer by hand stays out until an inventory.
    rmSync(join(dir, 'slots', '2'));
    Library.open(dir);
    assert.equal(existsSync(join(dir, 'slots', '2')), false);
    assert.deepEqual(lib.placeOutsiders(), ['C3']);
  });

  test('a dangling link is an empty place', () => {
    const lib = fresh({ slots: 2 });
    lib.createTapes({ count: 1 });
    symlinkSync('../tapes/GONE', join(lib.dir, 'slots', '2'));
    assert.equal(lib.at({ kind: 'slot', number: 2 }), null);
    lib.move({ kind: 'slot', number: 1 }, { kind: 'slot', number: 2 });
    assert.equal(link(lib, 'slots/2'), '../tapes/NDM001');
  });
});
