// Pools and retention end to end (docs/dma.md, "Pools and tapes",
// "Retention: forget and prune", "A DMA that died"): ndmpd and ndmp as
// processes, a changer library of small tapes (2 MiB), a real catalog (SQLite,
// and PostgreSQL when the run has one). A full backup fills the first tape and
// goes on to the next; incrementals append to it; `ndmp tapes` shows states
// and pools; forget keeps a kept incremental's base; prune recycles a tape all
// of whose backups are forgotten and the next backup rewrites it from its
// start; two pools keep to their own tapes. Then: a DMA killed mid-backup, a
// server stopped mid-backup, and --wait for a tape.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { BackupRecord } from '../../src/catalog/types.js';
import type { ListedTape } from '../../src/dma/pools.js';
import type { Decision, PruneReport } from '../../src/dma/retention.js';
import type { RestoreOutcome } from '../../src/dma/restore-job.js';
import { addTapes, dmaFor, spawnBackup } from '../helpers/ndmp-cli.js';
import { startNdmpd } from '../helpers/ndmpd-process.js';
import type { NdmpdProcess } from '../helpers/ndmpd-process.js';
import { freshPostgresCatalog, postgresForTests } from '../helpers/postgres.js';

const KiB = 1024;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Dump dates have whole seconds: a file changed in the second a backup starts counts as changed after it. */
const nextSecond = () => sleep(1300);
const MiB = 1024 * KiB;

type Dma = ReturnType<typeof dmaFor>;

async function tapes(dma: Dma): Promise<Map<string, ListedTape>> {
  const r = await dma.json<{ media: ListedTape[] }>(['tapes', dma.server, ...dma.creds]);
  return new Map(r.media.map((m) => [m.barcode, m]));
}

async function backup(dma: Dma, path: string, ...more: string[]): Promise<BackupRecord> {
  const r = await dma.call(['backup', `${dma.server}:${path}`, ...dma.creds, '--json', ...more]);
  const b = JSON.parse(r.out) as BackupRecord;
  assert.equal(b.status, 'done', r.err);
  return b;
}

function catalogs(): Array<{ name: string; make: (dir: string) => Promise<string> | string }> {
  return [
    { name: 'SQLite', make: (dir) => join(dir, 'catalog.sqlite') },
    { name: 'PostgreSQL', make: () => freshPostgresCatalog() },
  ];
}

for (const kind of catalogs()) {
  describe(`pools and retention with a ${kind.name} catalog`, { timeout: 300_000 }, () => {
    let p: NdmpdProcess;
    let work: string;
    let src: string;
    let dma: Dma;
    let skip: string | null = null;
    const made: BackupRecord[] = [];

    before(async () => {
      if (kind.name === 'PostgreSQL' && !postgresForTests()) {
        skip = 'no PostgreSQL for tests (set NDMP_TEST_POSTGRES)';
        if (process.env.CI) throw new Error(`${skip}: CI must provide one (.ci/run)`);
        return;
      }
      // One drive: the first start makes two tapes (NDM001 in the drive, NDM002 in a slot).
      p = await startNdmpd({
        logLevel: 'info',
        extraArgs: ['--tape-capacity', '2M', '--drives', '1', '--slots', '8'],
      });
      work = fs.mkdtempSync(join(os.tmpdir(), 'ndmp-pools-'));
      src = join(p.exportDir, 'src');
      fs.mkdirSync(src);
      dma = dmaFor(p, await kind.make(work), join(work, 'state'));
    });
    after(async () => {
      await p?.stop();
      if (work) fs.rmSync(work, { recursive: true, force: true });
    });

    test('a full fills the first tape and goes on to the next; incrementals append there', async (t) => {
      if (skip) return t.skip(skip);
      fs.writeFileSync(join(src, 'a.bin'), randomBytes(2.5 * MiB));
      await nextSecond();
      const full = await backup(dma, src);
      await nextSecond();
      assert.deepEqual(
        full.tapes.map((s) => [s.barcode, s.tapeFile]),
        [
          ['NDM001', 0],
          ['NDM002', 0],
        ],
      );
      assert.equal(full.pool, 'default');
      fs.writeFileSync(join(src, 'small.txt'), 'changed after the full\n');
      const inc = await backup(dma, src, '--level', '1');
      // 11 KiB does not take a tape of its own: it is the next tape file on the pool's tape.
      assert.deepEqual(
        inc.tapes.map((s) => [s.barcode, s.tapeFile]),
        [['NDM002', 1]],
      );
      assert.ok(inc.bytes < 64 * KiB, `${inc.bytes}`);
      made.push(full, inc);
      const ts = await tapes(dma);
      assert.equal(ts.get('NDM001')!.state, 'full');
      assert.equal(ts.get('NDM002')!.state, 'appendable');
      assert.equal(ts.get('NDM001')!.pool, 'default');
      assert.deepEqual(ts.get('NDM001')!.backups, [full.id]);
      assert.deepEqual(ts.get('NDM002')!.backups, [full.id, inc.id]);
      const text = await dma.call(['tapes', dma.server, ...dma.creds]);
      assert.match(text.out, /POOL\s+STATE/);
      assert.match(text.out, /NDM001 .* default\s+full/);
      assert.match(text.out, /NDM002 .* default\s+appendable/);

      // The incremental is read from its tape file, after the full's.
      const to = join(p.exportDir, 'back');
      const w = await dma.json<RestoreOutcome>([
        'restore',
        String(inc.id),
        join(src, 'small.txt'),
        '--to',
        to,
        ...dma.creds,
      ]);
      assert.equal(w.ok, true, JSON.stringify(w));
      assert.equal(fs.readFileSync(join(to, 'small.txt'), 'utf8'), 'changed after the full\n');
    });

    test('forget keeps a kept incremental with its base, refuses to orphan one, and prune recycles', async (t) => {
      if (skip) return t.skip(skip);
      assert.equal(made.length, 2, 'the first test ran');
      fs.rmSync(join(src, 'a.bin'));
      fs.writeFileSync(join(src, 'b.bin'), randomBytes(MiB));
      await nextSecond();
      const full2 = await backup(dma, src);
      await nextSecond();
      assert.deepEqual(
        full2.tapes.map((s) => [s.barcode, s.tapeFile]),
        [['NDM002', 2]],
      );
      fs.writeFileSync(join(src, 'small.txt'), 'changed again\n');
      const inc2 = await backup(dma, src, '--level', '1');
      assert.deepEqual(
        inc2.tapes.map((s) => [s.barcode, s.tapeFile]),
        [['NDM002', 3]],
      );

      // --keep-last 1 keeps the incremental and, for it, its full backup.
      const dry = await dma.json<{ forgotten: number[]; decisions: Decision[] }>([
        'forget',
        '--keep-last',
        '1',
        '--dry-run',
      ]);
      const why = new Map(dry.decisions.map((d) => [d.id, d]));
      assert.deepEqual(why.get(inc2.id)!.reasons, ['last']);
      assert.equal(why.get(full2.id)!.action, 'keep');
      assert.deepEqual(why.get(full2.id)!.reasons, [`base of ${inc2.id}`]);
      assert.deepEqual(dry.forgotten.sort(), [made[0]!.id, made[1]!.id].sort());
      assert.equal((await dma.json<BackupRecord[]>(['backups'])).length, 4, 'a dry run changes nothing');

      // A base whose incremental is kept is refused by id, naming it.
      const refused = await dma.call(['forget', String(full2.id)], 2);
      assert.match(refused.err, new RegExp(`backup ${full2.id} is the base of ${inc2.id} \\(level 1\\)`));

      const text = await dma.call(['forget', '--keep-last', '2']);
      assert.match(text.out, /keep\s+\d+ .* last/);
      assert.match(text.out, /forgot 2 backups, kept 2/);
      const left = await dma.json<BackupRecord[]>(['backups']);
      assert.deepEqual(
        left.map((b) => b.id),
        [inc2.id, full2.id],
      );

      const dryPrune = await dma.json<PruneReport>(['prune', '--dry-run']);
      assert.deepEqual(
        dryPrune.recycled.map((r) => r.barcode),
        ['NDM001'],
      );
      assert.equal((await tapes(dma)).get('NDM001')!.state, 'full', 'a dry run changes nothing');
      const pr = await dma.json<PruneReport>(['prune']);
      assert.deepEqual(pr.backups.map((b) => b.id).sort(), [made[0]!.id, made[1]!.id].sort());
      assert.ok(pr.files >= 3, JSON.stringify(pr));
      assert.deepEqual(
        pr.recycled.map((r) => r.barcode),
        ['NDM001'],
      );
      assert.deepEqual(
        pr.held.map((h) => h.barcode),
        ['NDM002'],
      );
      const ts = await tapes(dma);
      assert.equal(ts.get('NDM001')!.state, 'recyclable');
      assert.equal(ts.get('NDM002')!.state, 'appendable');
      assert.equal((await dma.call(['find', 'a.bin'], 1)).code, 1, "the forgotten backups' rows are gone");

      // The next backup fills NDM002, and goes on to NDM001, rewritten from its start.
      fs.rmSync(join(src, 'b.bin'));
      fs.writeFileSync(join(src, 'c.bin'), randomBytes(MiB));
      await nextSecond();
      const next = await backup(dma, src);
      assert.deepEqual(
        next.tapes.map((s) => [s.barcode, s.tapeFile]),
        [
          ['NDM002', 4],
          ['NDM001', 0],
        ],
      );
      const after = await tapes(dma);
      assert.equal(after.get('NDM001')!.state, 'appendable');
      assert.equal(after.get('NDM001')!.files, 1, 'its old tape files are gone');
      assert.equal(after.get('NDM002')!.state, 'full');
      const to = join(p.exportDir, 'next');
      const w = await dma.json<RestoreOutcome>(['restore', String(next.id), '--to', to, ...dma.creds]);
      assert.equal(w.ok, true, JSON.stringify(w));
      assert.deepEqual(fs.readFileSync(join(to, 'c.bin')), fs.readFileSync(join(src, 'c.bin')));
    });

    test('two pools keep to their own tapes; none left says what to do', async (t) => {
      if (skip) return t.skip(skip);
      const other = join(p.exportDir, 'other');
      fs.mkdirSync(other, { recursive: true });
      fs.writeFileSync(join(other, 'x.txt'), 'other pool\n');
      // No blank tape, none of pool 'other': it is refused before anything starts.
      const none = await dma.call(['backup', `${dma.server}:${other}`, ...dma.creds, '--pool', 'other'], 2);
      assert.match(
        none.err,
        /no tape left for the backup in pool other .*2 tapes: .*in other pools.*'ndmpd tape create'/,
      );
      addTapes(p, 2, '2M');
      await nextSecond();
      const o1 = await backup(dma, other, '--pool', 'other');
      const o2 = await backup(dma, other, '--pool', 'other');
      const d = await backup(dma, src, '--level', '1');
      assert.equal(o1.pool, 'other');
      const blank = o1.tapes[0]!.barcode!;
      assert.notEqual(blank, 'NDM001');
      assert.notEqual(blank, 'NDM002');
      assert.deepEqual(
        o2.tapes.map((s) => [s.barcode, s.tapeFile]),
        [[blank, 1]],
      );
      assert.deepEqual(
        d.tapes.map((s) => s.barcode),
        ['NDM001'],
        'the default pool stays on its own tape',
      );
      const ts = await tapes(dma);
      assert.equal(ts.get(blank)!.pool, 'other');
      assert.equal(ts.get(blank)!.state, 'appendable');
      const blanks = [...ts.values()].filter((m) => m.state === 'blank');
      assert.equal(blanks.length, 1);
      assert.equal(blanks[0]!.pool, null);
      const bad = await dma.call(['backup', `${dma.server}:${other}`, ...dma.creds, '--pool', 'no pool'], 2);
      assert.match(bad.err, /a pool name is/);
    });
  });
}

describe('a DMA killed mid-backup, a server stopped mid-backup', { timeout: 300_000 }, () => {
  let p: NdmpdProcess;
  let work: string;
  let catalog: string;
  let dma: Dma;
  let big: string;

  before(async () => {
    // Tapes of 64 MiB: the killed backup is still on its first tape when it is killed.
    p = await startNdmpd({
      logLevel: 'info',
      // No drain: the SIGTERM below aborts the running backup at once (docs/operations.md).
      extraArgs: ['--tape-capacity', '64M', '--drives', '1', '--slots', '16', '--shutdown-timeout', '0'],
    });
    work = fs.mkdtempSync(join(os.tmpdir(), 'ndmp-killed-'));
    big = join(p.exportDir, 'big');
    fs.mkdirSync(big);
    for (let i = 0; i < 12; i++) fs.writeFileSync(join(big, `f${i}.bin`), randomBytes(4 * MiB));
    addTapes(p, 4, '4M');
    catalog = join(work, 'catalog.sqlite');
    dma = dmaFor(p, catalog, join(work, 'state'));
    await dma.ready();
  });
  after(async () => {
    await p?.stop();
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  test('SIGKILL: the next command closes it as failed, its tape recorded; the next backup appends after it', async () => {
    const job = spawnBackup(dma, catalog, big, /writing tape NDM001 /);
    assert.ok(await job.seen, job.err());
    // Killed once the mover has written a few MiB of its 48 on the tape image.
    const image = join(p.dir, 'state', 'library', 'tapes', 'NDM001');
    const deadline = Date.now() + 30_000;
    while (fs.statSync(image).size < 4 * MiB && Date.now() < deadline) await sleep(5);
    job.child.kill('SIGKILL');
    await job.exited;
    assert.equal(job.child.signalCode, 'SIGKILL');
    // The server sees the connection go, aborts the mover and closes the tape (its filemark).
    await sleep(1500);
    const r = await dma.call(['backups', '--json']);
    const [b] = JSON.parse(r.out) as BackupRecord[];
    assert.equal(b!.status, 'failed', r.out);
    assert.match(b!.haltReason ?? '', /abandoned: the DMA that ran it \(ndmp, pid \d+ on .*\) is gone/);
    assert.match(r.err, new RegExp(`backup ${b!.id} was left running: closed as failed`));
    assert.equal(b!.dmaPid, job.child.pid);
    assert.deepEqual(
      b!.tapes.map((s) => [s.barcode, s.tapeFile]),
      [['NDM001', 0]],
      'its tape part was recorded at mount',
    );
    // Again: nothing left running, nothing closed twice.
    const again = await dma.call(['backups']);
    assert.doesNotMatch(again.err, /left running/);
    const ts = await tapes(dma);
    assert.equal(ts.get('NDM001')!.state, 'appendable');
    assert.deepEqual(ts.get('NDM001')!.backups, [b!.id]);

    fs.mkdirSync(join(p.exportDir, 'small'), { recursive: true });
    fs.writeFileSync(join(p.exportDir, 'small', 'a.txt'), 'after the killed one\n');
    const next = await backup(dma, join(p.exportDir, 'small'));
    assert.deepEqual(
      next.tapes.map((s) => [s.barcode, s.tapeFile]),
      [['NDM001', 1]],
      "the pool goes on on the killed backup's tape, after its data",
    );
    const to = join(p.exportDir, 'small-back');
    const w = await dma.json<RestoreOutcome>(['restore', String(next.id), '--to', to, ...dma.creds]);
    assert.equal(w.ok, true, JSON.stringify(w));
    assert.equal(fs.readFileSync(join(to, 'a.txt'), 'utf8'), 'after the killed one\n');
  });

  test('a server stopped mid-backup (SIGTERM, shutdown-timeout 0) leaves the failed backup with its bytes and tapes', async () => {
    const image = join(p.dir, 'state', 'library', 'tapes', 'NDM001');
    const before = fs.statSync(image).size;
    const job = spawnBackup(dma, catalog, big, /writing tape NDM001 /);
    assert.ok(await job.seen, job.err());
    // Stopped once the mover has written a few MiB (and a heartbeat has counted some).
    const deadline = Date.now() + 30_000;
    while (fs.statSync(image).size < before + 4 * MiB && Date.now() < deadline) await sleep(5);
    const stopped = new Promise((r) => p.child.once('exit', r));
    p.child.kill('SIGTERM');
    await stopped;
    const code = await job.exited;
    assert.notEqual(code, 0, job.err());
    const [b] = await dma.json<BackupRecord[]>(['backups']);
    assert.equal(b!.status, 'failed');
    // Aborted by the server's drain: the DMA saw both halts, and why.
    assert.match(b!.haltReason ?? '', /ABORTED/);
    assert.match(job.err(), /ndmpd is shutting down: shutdown-timeout \(0 s\) passed/);
    // Its tape stays recorded, whatever the last count was: it holds the backup's data.
    assert.equal(b!.tapes[0]?.barcode, 'NDM001', JSON.stringify(b));
    assert.equal(
      b!.tapes.reduce((n, s) => n + s.length, 0),
      b!.bytes,
      'the tape parts hold what the mover wrote',
    );
  });
});

describe('--wait for a tape', { timeout: 200_000 }, () => {
  let p: NdmpdProcess;
  let work: string;
  let dma: Dma;

  before(async () => {
    p = await startNdmpd({
      logLevel: 'info',
      extraArgs: ['--tape-capacity', '2M', '--drives', '1', '--slots', '8'],
    });
    work = fs.mkdtempSync(join(os.tmpdir(), 'ndmp-wait-'));
    dma = dmaFor(p, join(work, 'catalog.sqlite'), join(work, 'state'));
    // Both tapes in pool 'a'.
    await backup(dma, p.exportDir, '--pool', 'a');
    fs.writeFileSync(join(p.exportDir, 'more.bin'), randomBytes(3 * MiB));
    await backup(dma, p.exportDir, '--pool', 'a');
  });
  after(async () => {
    await p?.stop();
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  test('gives up at its bound, saying what it waited for and what to do', async () => {
    const t0 = Date.now();
    const r = await dma.call(
      ['backup', `${dma.server}:${p.exportDir}`, ...dma.creds, '--pool', 'b', '--wait', '3'],
      2,
    );
    assert.ok(Date.now() - t0 >= 3000);
    assert.match(r.err, /no tape for pool b on .* yet; waiting up to 3 s/);
    assert.match(r.err, /no tape left for the backup in pool b .*\[waited 3 s for one\]/);
  });

  test('waits, then goes on when a tape is added', async () => {
    const tiny = join(p.exportDir, 'tiny');
    fs.mkdirSync(tiny);
    fs.writeFileSync(join(tiny, 't.txt'), 'tiny\n');
    const job = spawnBackup(
      dma,
      join(work, 'catalog.sqlite'),
      tiny,
      /waiting up to 60 s/,
      '--pool',
      'b',
      '--wait',
      '60',
      '--json',
    );
    let out = '';
    job.child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    assert.ok(await job.seen, job.err());
    addTapes(p, 1, '2M');
    const code = await job.exited;
    assert.equal(code, 0, job.err());
    const b = JSON.parse(out) as BackupRecord;
    assert.equal(b.status, 'done');
    assert.equal(b.pool, 'b');
    assert.match(job.err(), /is there now; going on/);
  });
});
