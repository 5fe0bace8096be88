// `ndmp` through the server's changer (docs/dma.md, "Tapes in a changer"):
// ndmpd and ndmp as processes, a library of 2 drives and 8 slots whose tapes
// (2 MiB each) are in its slots. A backup spanning three tapes loads each into
// a drive, unloads it at its end, and records barcodes only; a restore finds
// each tape where it is now (after the tapes were shuffled by hand), loads,
// checks and unloads it; a tape gone from the library is named, with what to
// do, before anything is read.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import type { BackupRecord } from '../../src/catalog/types.js';
import { MediumChanger } from '../../src/dma/changer.js';
import { NdmpClient } from '../../src/dma/client.js';
import type { RestoreOutcome } from '../../src/dma/restore-job.js';
import { dmaFor } from '../helpers/ndmp-cli.js';
import { NDMPD_BIN, startNdmpd } from '../helpers/ndmpd-process.js';
import type { NdmpdProcess } from '../helpers/ndmpd-process.js';
import { assertSameTree } from '../helpers/trees.js';

/** What `ndmpd tape drives` says is in each drive (its text output), as drive → barcode or ''. */
function drives(library: string): Map<string, string> {
  const out = execFileSync(process.execPath, [NDMPD_BIN, 'tape', 'drives', '--library', library], {
    encoding: 'utf8',
  });
  const m = new Map<string, string>();
  for (const line of out.split('\n')) {
    const f = line.trim().split(/\s+/);
    // DRIVE MODEL SERIAL LOADED ELEMENT FROM; LOADED is '-' when empty.
    if (/^drive\d+$/.test(f[0] ?? '')) m.set(f[0]!, f[3] === '-' ? '' : (f[3] ?? ''));
  }
  return m;
}

/** Barcode in each storage slot, from the folder itself (slots/<n> → ../tapes/<BARCODE>). */
function slots(library: string): Map<number, string> {
  const m = new Map<number, string>();
  for (const n of fs.readdirSync(join(library, 'slots'))) {
    m.set(
      Number(n),
      fs
        .readlinkSync(join(library, 'slots', n))
        .split('/')
        .pop()!,
    );
  }
  return m;
}

/** Moves through the server's changer over NDMP, as another DMA would: each [from, to], or 'unload' a drive to a free slot. */
async function robot(p: NdmpdProcess, moves: ([number, number] | ['unload', number])[]): Promise<void> {
  const client = await NdmpClient.connect({ host: p.host, port: p.port, timeoutMs: 10_000 });
  try {
    await client.open(4);
    await client.authText(p.user, p.password);
    const changer = await MediumChanger.open(client, 'changer0');
    for (const [from, to] of moves) {
      const els = await changer.elements();
      if (from === 'unload') {
        const drive = els.find((e) => e.address === to)!;
        if (drive.full)
          await changer.move(to, els.find((e) => e.kind === 'storage' && !e.full)!.address, els);
      } else await changer.move(from, to, els);
    }
    await changer.close();
  } finally {
    await client.close();
  }
}

describe('ndmp backup and restore through the changer', { timeout: 300_000 }, () => {
  let p: NdmpdProcess;
  let work: string;
  let src: string;
  let library: string;
  let dma: ReturnType<typeof dmaFor>;
  let backup: BackupRecord;

  before(async () => {
    work = fs.mkdtempSync(join(os.tmpdir(), 'ndmp-changer-'));
    p = await startNdmpd({
      logLevel: 'info',
      extraArgs: ['--tape-capacity', '2M', '--drives', '2', '--slots', '8'],
    });
    library = join(p.dir, 'state', 'library');
    src = join(p.exportDir, 'big');
    fs.mkdirSync(join(src, 'late'), { recursive: true });
    for (let i = 0; i < 5; i++) fs.writeFileSync(join(src, `chunk${i}.bin`), randomBytes(1024 * 1024));
    fs.writeFileSync(join(src, 'late', 'needle.txt'), 'found on a later tape\n');
    dma = dmaFor(p, join(work, 'catalog.sqlite'), join(work, 'state'));
    // Empty drives, so that every tape this backup writes is loaded (the other describe below
    // covers tapes written in the drive they are in).
    await robot(p, [
      ['unload', 500],
      ['unload', 501],
    ]);
  });
  after(async () => {
    await p?.stop();
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  test('a backup over three tapes: each loaded into a drive, unloaded at its end; barcodes recorded', async () => {
    const r = await dma.call(['backup', `${dma.server}:${src}`, ...dma.creds, '--json']);
    backup = JSON.parse(r.out) as BackupRecord;
    assert.equal(backup.status, 'done', r.err);
    assert.ok(backup.tapes.length >= 3, `5 MiB on 2 MiB tapes: ${JSON.stringify(backup.tapes)}`);
    for (const t of backup.tapes) {
      assert.match(t.barcode ?? '', /^NDM\d+$/);
      assert.doesNotMatch(t.device, /drive/, 'the catalog names tapes, never drives');
    }
    const loads = [...r.err.matchAll(/loaded tape (NDM\d+) from element \d+ into drive element (\d+)/g)];
    assert.deepEqual(
      loads.map((m) => m[1]),
      backup.tapes.map((t) => t.barcode),
      r.err,
    );
    assert.equal([...r.err.matchAll(/unloaded tape (NDM\d+) into slot/g)].length, backup.tapes.length, r.err);
    // All back in slots: no drive holds a tape of the backup (a tape ndmp did not load may stay in its drive).
    const written = new Set(backup.tapes.map((t) => t.barcode));
    for (const [drive, tape] of drives(library))
      assert.ok(!written.has(tape), `${drive} still holds ${tape}`);
    const inSlots = new Set(slots(library).values());
    for (const t of backup.tapes) assert.ok(inSlots.has(t.barcode!), `${t.barcode} in a slot`);
  });

  test('a restore after the tapes were shuffled: each found where it is now, loaded, read, unloaded', async () => {
    assert.ok(backup, 'the backup test ran');
    // Swap two slots' tapes by hand (as an operator might), and move one into another slot.
    const s = slots(library);
    const [a, b] = backup.tapes.map((t) => [...s].find(([, bc]) => bc === t.barcode)![0]);
    const la = join(library, 'slots', String(a));
    const lb = join(library, 'slots', String(b));
    const ta = fs.readlinkSync(la);
    const tb = fs.readlinkSync(lb);
    fs.unlinkSync(la);
    fs.unlinkSync(lb);
    fs.symlinkSync(tb, la);
    fs.symlinkSync(ta, lb);

    const whole = join(p.exportDir, 'whole');
    const r = await dma.call(['restore', String(backup.id), '--to', whole, ...dma.creds, '--json']);
    const w = JSON.parse(r.out) as RestoreOutcome;
    assert.equal(w.ok, true, `${r.out}\n${r.err}`);
    assert.deepEqual(
      w.tapesRead,
      backup.tapes.map((t) => t.barcode),
    );
    assertSameTree(src, whole);
    const loads = [...r.err.matchAll(/loaded tape (NDM\d+) from element (\d+)/g)];
    assert.deepEqual(
      loads.map((m) => m[1]),
      backup.tapes.map((t) => t.barcode),
      r.err,
    );
    // The first tape came from the slot the second's had been in (element 1000 + slot - 1).
    assert.equal(Number(loads[0]![2]), 1000 + b! - 1, r.err);
    const read = new Set(w.tapesRead);
    for (const [drive, tape] of drives(library)) assert.ok(!read.has(tape), `${drive} still holds ${tape}`);
  });

  test('a backup to a drive records the tape in it; after the drive is given another tape, the restore finds the right one', async () => {
    // A blank tape into drive1 (as an operator or another DMA would).
    const blank = JSON.parse(
      execFileSync(process.execPath, [NDMPD_BIN, 'tape', 'list', '--json', '--library', library], {
        encoding: 'utf8',
      }),
    ) as { barcode: string; blank: boolean; element: number | null }[];
    const pick = blank.find((t) => t.blank && t.element !== null && t.element >= 1000)!;
    await robot(p, [[pick.element!, 501]]);
    const held = drives(library).get('drive1')!;
    assert.equal(held, pick.barcode);
    const small = join(p.exportDir, 'small');
    fs.mkdirSync(small, { recursive: true });
    fs.writeFileSync(join(small, 'a.txt'), 'on the tape in drive1\n');
    const r = await dma.call([
      'backup',
      `${dma.server}:${small}`,
      '--tape',
      'drive1',
      ...dma.creds,
      '--json',
    ]);
    const b = JSON.parse(r.out) as BackupRecord;
    assert.equal(b.status, 'done', r.err);
    assert.deepEqual(
      b.tapes.map((t) => [t.barcode, t.device]),
      [[held, `tapes/${held}`]],
      'the tape, by barcode, not the drive',
    );

    // Swap: the tape goes to a slot, another one into drive1 (through the server's changer, as a DMA would).
    const client = await NdmpClient.connect({ host: p.host, port: p.port, timeoutMs: 10_000 });
    try {
      await client.open(4);
      await client.authText(p.user, p.password);
      const robot = await MediumChanger.open(client, 'changer0');
      let els = await robot.elements();
      const emptySlot = els.find((e) => e.kind === 'storage' && !e.full)!;
      await robot.move(501, emptySlot.address, els);
      els = await robot.elements();
      const other = els.find((e) => e.kind === 'storage' && e.full && e.volumeTag !== held)!;
      await robot.move(other.address, 501, els);
      await robot.close();
    } finally {
      await client.close();
    }
    assert.notEqual(drives(library).get('drive1'), held);

    const to = join(p.exportDir, 'small-back');
    const w = await dma.json<RestoreOutcome>(['restore', String(b.id), '--to', to, ...dma.creds]);
    assert.equal(w.ok, true, JSON.stringify(w));
    assert.deepEqual(w.tapesRead, [held]);
    assert.equal(fs.readFileSync(join(to, 'a.txt'), 'utf8'), 'on the tape in drive1\n');
  });

  test('a restore whose tape is gone from the library says which and what to do, and reads nothing', async () => {
    assert.ok(backup, 'the backup test ran');
    const last = backup.tapes[backup.tapes.length - 1]!.barcode!;
    const image = join(library, 'tapes', last);
    const away = join(work, `${last}.away`);
    fs.renameSync(image, away);
    try {
      const one = join(p.exportDir, 'one');
      // Exit 1: the job could not be done (EXIT_NDMP), with the reason and no stack.
      const r = await dma.call(
        ['restore', String(backup.id), join(src, 'late/needle.txt'), '--to', one, ...dma.creds],
        1,
      );
      assert.doesNotMatch(r.err, /at TapeLoader/);
      assert.match(
        r.err,
        new RegExp(`tape ${last} is in none of the changer changer0's slots and drives: put it in`),
      );
      assert.equal(fs.existsSync(join(one, 'late', 'needle.txt')), false);
    } finally {
      fs.renameSync(away, image);
    }
  });
});

describe(
  "a fresh library: backups append to the pool's tape, the one in a drive too",
  { timeout: 120_000 },
  () => {
    let p: NdmpdProcess;
    let work: string;

    before(async () => {
      // The first start makes 2 × drives tapes, one in each drive, the rest in slots (docs/changer.md §1.1).
      p = await startNdmpd({ logLevel: 'info', extraArgs: ['--drives', '2'] });
      work = fs.mkdtempSync(join(os.tmpdir(), 'ndmp-fresh-'));
    });
    after(async () => {
      await p?.stop();
      if (work) fs.rmSync(work, { recursive: true, force: true });
    });

    // Before pools each backup took a blank tape of its own and the third of a fresh library had
    // none left; now they append to the default pool's first tape (docs/dma.md, "Pools and tapes").
    test('four backups on one tape, in a drive and written where it is, one tape file each', async () => {
      const dma = dmaFor(p, join(work, 'catalog.sqlite'), join(work, 'state'));
      const library = join(p.dir, 'state', 'library');
      const inDrives = new Set([...drives(library).values()].filter(Boolean));
      assert.equal(inDrives.size, 2, 'one tape in each drive');
      const used: Array<[string, number]> = [];
      for (let i = 0; i < 4; i++) {
        const r = await dma.call(['backup', `${dma.server}:${p.exportDir}`, ...dma.creds, '--json']);
        const b = JSON.parse(r.out) as BackupRecord;
        assert.equal(b.status, 'done', r.err);
        assert.equal(b.tapes.length, 1);
        used.push([b.tapes[0]!.barcode!, b.tapes[0]!.tapeFile]);
        assert.doesNotMatch(r.err, /loaded tape/, 'the tape in the drive is written where it is');
      }
      const first = used[0]![0];
      assert.ok(inDrives.has(first), `${first} is one of the tapes in a drive`);
      assert.deepEqual(
        used,
        [0, 1, 2, 3].map((n) => [first, n]),
      );
      // The drives hold what they held.
      for (const [drive, tape] of drives(library))
        assert.ok(tape === '' || inDrives.has(tape), `${drive}: ${tape}`);
    });
  },
);
