// An administrator's week with `ndmp` against real ndmpd processes (issue 16,
// "How it will be checked"), with a SQLite and a PostgreSQL catalog: a full
// and six incrementals of a changing tree fill the first tape and go on to the
// next; a file restored as of the fourth backup; verify passes, then fails
// naming the file whose bytes on tape were changed; a second week in its own
// pool; a DMA killed mid-backup leaves nothing "running"; the server moves to
// another port and an old backup restores with --server; forget --keep-last 2
// and prune recycle the first tape, and the next backup writes it from its
// start. Messages carry the server's reason, with the exit codes named.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import type { BackupRecord, FileRow } from '../../src/catalog/types.js';
import { tapeFileExtent } from '../../src/devices/tape-image.js';
import type { ListedTape } from '../../src/dma/pools.js';
import type { RestoreOutcome } from '../../src/dma/restore-job.js';
import type { VerifyOutcome } from '../../src/dma/verify-job.js';
import { addTapes, dmaFor, spawnBackup } from '../helpers/ndmp-cli.js';
import { startNdmpd } from '../helpers/ndmpd-process.js';
import type { NdmpdProcess } from '../helpers/ndmpd-process.js';
import { freshPostgresCatalog, postgresForTests } from '../helpers/postgres.js';
import { flipDataByte } from '../helpers/tape-damage.js';

const MiB = 1024 * 1024;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Incrementals compare times in whole seconds with a second's slack: a day is more than that. */
const nextDay = () => sleep(1300);

type Dma = ReturnType<typeof dmaFor>;

async function backup(dma: Dma, path: string, ...more: string[]): Promise<BackupRecord> {
  const r = await dma.call(['backup', `${dma.server}:${path}`, ...dma.creds, '--json', '-q', ...more]);
  const b = JSON.parse(r.out) as BackupRecord;
  assert.equal(b.status, 'done', r.err);
  return b;
}

async function tapes(dma: Dma): Promise<Map<string, ListedTape>> {
  const r = await dma.json<{ media: ListedTape[] }>(['tapes', dma.server, ...dma.creds]);
  return new Map(r.media.map((m) => [m.barcode, m]));
}

function catalogs(): Array<{ name: string; make: (dir: string) => Promise<string> | string }> {
  return [
    { name: 'SQLite', make: (dir) => join(dir, 'catalog.sqlite') },
    { name: 'PostgreSQL', make: () => freshPostgresCatalog() },
  ];
}

for (const kind of catalogs()) {
  describe(`an administrator's week (${kind.name} catalog)`, { timeout: 600_000 }, () => {
    let p: NdmpdProcess;
    let work: string;
    let catalog: string;
    let dma: Dma;
    let src: string;
    let skip: string | false = false;
    /** changing.bin as each day left it (day 0: the full's). */
    const versions: Buffer[] = [];
    const week: BackupRecord[] = [];
    /** The backup whose DMA was killed. */
    let killedId = 0;

    before(async () => {
      if (kind.name === 'PostgreSQL' && !postgresForTests()) {
        skip = 'no PostgreSQL for tests (set NDMP_TEST_POSTGRES)';
        return;
      }
      // Four 3 MiB tapes: the first week fills one and goes on to the next.
      p = await startNdmpd({ logLevel: 'info', extraArgs: ['--tape-capacity', '3M', '--slots', '8'] });
      work = fs.mkdtempSync(join(os.tmpdir(), 'ndmp-week-'));
      src = join(p.exportDir, 'home');
      fs.mkdirSync(join(src, 'docs'), { recursive: true });
      fs.writeFileSync(join(src, 'keep.bin'), randomBytes(MiB));
      fs.writeFileSync(join(src, 'also-kept.bin'), randomBytes(MiB));
      for (let i = 0; i < 10; i++) fs.writeFileSync(join(src, 'docs', `note${i}.txt`), `note ${i}\n`);
      versions.push(randomBytes(200 * 1024));
      fs.writeFileSync(join(src, 'changing.bin'), versions[0]!);
      catalog = await kind.make(work);
      dma = dmaFor(p, catalog, join(work, 'state'));
      await dma.ready();
    });
    after(async () => {
      await p?.stop();
      if (work) fs.rmSync(work, { recursive: true, force: true });
    });

    test('a full and six incrementals: the first tape fills, the week goes on on the next', async (t) => {
      if (skip) return t.skip(skip);
      // Made more than the incrementals' second of slack before the full: not in the first one.
      await nextDay();
      week.push(await backup(dma, src));
      assert.deepEqual(
        week[0]!.tapes.map((s) => [s.barcode, s.tapeFile]),
        [['NDM001', 0]],
      );
      for (let day = 1; day <= 6; day++) {
        await nextDay();
        versions.push(randomBytes(200 * 1024));
        fs.writeFileSync(join(src, 'changing.bin'), versions[day]!);
        fs.writeFileSync(join(src, 'docs', `day${day}.txt`), `added on day ${day}\n`);
        if (day === 2) fs.rmSync(join(src, 'docs', 'note3.txt'));
        week.push(await backup(dma, src, '--level', String(day)));
      }
      const used = week.flatMap((b) => b.tapes.map((s) => s.barcode));
      assert.ok(used.includes('NDM002'), `the week went on to the next tape: ${used.join(' ')}`);
      // Appended: each backup after the first on a tape is a tape file after the others.
      const onFirst = week.flatMap((b) =>
        b.tapes.filter((s) => s.barcode === 'NDM001').map((s) => s.tapeFile),
      );
      assert.deepEqual(
        onFirst,
        onFirst.map((_, i) => i),
      );
      const listed = await tapes(dma);
      assert.equal(listed.get('NDM001')!.state, 'full');
      assert.equal(listed.get('NDM002')!.state, 'appendable');
      assert.equal(listed.get('NDM002')!.pool, 'default');
    });

    test('a file as of the fourth backup: unchanged ones from the full, changed ones as they were', async (t) => {
      if (skip) return t.skip(skip);
      const fourth = week[3]!;
      const ls = await dma.json<Array<FileRow & { backupId: number }>>([
        'ls',
        String(fourth.id),
        join(src, 'docs'),
      ]);
      const names = ls.map((r) => r.name);
      assert.ok(!names.includes('note3.txt'), 'deleted on day 2: gone as of day 3');
      assert.ok(names.includes('note4.txt') && names.includes('day3.txt') && !names.includes('day4.txt'));
      assert.equal(ls.find((r) => r.name === 'note4.txt')!.backupId, week[0]!.id, 'from the full');

      const to = join(p.exportDir, 'asof4');
      const r = await dma.json<RestoreOutcome>([
        'restore',
        String(fourth.id),
        join(src, 'keep.bin'),
        join(src, 'changing.bin'),
        '--to',
        to,
        ...dma.creds,
      ]);
      assert.equal(r.ok, true, JSON.stringify(r));
      assert.deepEqual(fs.readFileSync(join(to, 'keep.bin')), fs.readFileSync(join(src, 'keep.bin')));
      assert.deepEqual(fs.readFileSync(join(to, 'changing.bin')), versions[3]);
    });

    test('verify passes; a changed byte on tape fails it, naming the file', async (t) => {
      if (skip) return t.skip(skip);
      const full = week[0]!;
      const ok = await dma.call(['verify', String(full.id), ...dma.creds, '--json', '-q']);
      assert.equal((JSON.parse(ok.out) as VerifyOutcome).ok, true);
      const [row] = await dma.json<FileRow[]>(['ls', String(full.id), join(src, 'also-kept.bin')]);
      const seg = full.tapes[0]!;
      const image = join(p.dir, 'state', 'library', 'tapes', seg.barcode!);
      const at = Number(tapeFileExtent(image, seg.tapeFile)!.start) + row!.fhInfo! + 4096 + 300_000;
      flipDataByte(image, at, 0x10);
      try {
        const bad = await dma.call(['verify', String(full.id), ...dma.creds, '-q'], 1);
        assert.match(bad.out + bad.err, /also-kept\.bin/);
        assert.match(bad.out + bad.err, /MEDIA_ERROR|CRC/);
      } finally {
        flipDataByte(image, at, 0x10);
      }
    });

    test('a second week in its own pool; a DMA killed mid-backup is closed as failed by the next command', async (t) => {
      if (skip) return t.skip(skip);
      await nextDay();
      const full2 = await backup(dma, src, '--pool', 'week2');
      assert.deepEqual(
        full2.tapes.map((s) => s.barcode),
        ['NDM003'],
      );
      await nextDay();
      fs.writeFileSync(join(src, 'changing.bin'), randomBytes(200 * 1024));
      const inc2 = await backup(dma, src, '--pool', 'week2', '--level', '1');
      assert.deepEqual(
        inc2.tapes.map((s) => [s.barcode, s.tapeFile]),
        [['NDM003', 1]],
      );

      // A big backup in pool scratch: NDM004 fills at once, then a 64 MiB tape; killed on it.
      addTapes(p, 1, '64M');
      const bulk = join(p.exportDir, 'bulk');
      fs.mkdirSync(bulk);
      for (let i = 0; i < 8; i++) fs.writeFileSync(join(bulk, `b${i}.bin`), randomBytes(4 * MiB));
      const job = spawnBackup(dma, catalog, bulk, /writing tape NDM005 /, '--pool', 'scratch');
      assert.ok(await job.seen, job.err());
      const image = join(p.dir, 'state', 'library', 'tapes', 'NDM005');
      const deadline = Date.now() + 30_000;
      while (fs.statSync(image).size < 2 * MiB && Date.now() < deadline) await sleep(5);
      job.child.kill('SIGKILL');
      await job.exited;
      await sleep(1000);
      const list = await dma.json<BackupRecord[]>(['backups']);
      assert.deepEqual(
        list.filter((b) => b.status === 'running'),
        [],
      );
      const killed = list.find((b) => b.path.endsWith('/bulk'))!;
      killedId = killed.id;
      assert.equal(killed.status, 'failed');
      assert.match(killed.haltReason ?? '', /the DMA that ran it .* is gone/);
      assert.ok(
        killed.tapes.some((s) => s.barcode === 'NDM005'),
        'its tape is recorded',
      );
    });

    test('the server moves to another port: the old backups restore, with --server once', async (t) => {
      if (skip) return t.skip(skip);
      const dir = p.dir;
      const oldPort = p.port;
      await p.stop(true);
      p = await startNdmpd({ dir, logLevel: 'info' });
      assert.notEqual(p.port, oldPort);
      const to = join(p.exportDir, 'after-move');
      const lost = await dma.call(
        ['restore', String(week[0]!.id), join(src, 'keep.bin'), '--to', to, ...dma.creds],
        3,
      );
      assert.match(lost.err, /ndmp: .*if the server moved, give --server HOST:PORT/);
      const moved = `127.0.0.1:${p.port}`;
      await dma.call([
        'restore',
        String(week[0]!.id),
        join(src, 'keep.bin'),
        '--to',
        to,
        '--server',
        moved,
        ...dma.creds,
        '-q',
      ]);
      assert.deepEqual(fs.readFileSync(join(to, 'keep.bin')), fs.readFileSync(join(src, 'keep.bin')));
      // The server's reason for a refusal comes with the NDMP error: exit 1.
      const refused = await dma.call(['backup', `${moved}:/etc`, ...dma.creds, '-q'], 1);
      assert.match(refused.err, /^ndmp: NDMP_ILLEGAL_ARGS_ERR: .*export/m);
      // A path not in a backup is ours to refuse: exit 2, naming the backup's source.
      const outside = await dma.call(['ls', String(week[0]!.id), '/nowhere'], 2);
      assert.match(outside.err, new RegExp(`backed up ${src}`));
    });

    test('forget --keep-last 2 and prune recycle the first tapes; the next backup writes NDM001 from its start', async (t) => {
      if (skip) return t.skip(skip);
      // The new address is known now (the restore with --server): no --server from here on.
      dma = dmaFor(p, catalog, join(work, 'state'));
      const plan = await dma.json<{ forgotten: number[] }>(['forget', '--keep-last', '2', '--json']);
      const ids = week.map((b) => b.id);
      // The failed one goes too (a policy keeps backups that can be restored).
      assert.deepEqual(
        [...plan.forgotten].sort((a, b) => a - b),
        [...ids, killedId],
        'the first week goes, the second stays',
      );
      const listed = (await dma.json<BackupRecord[]>(['backups'])).map((b) => b.id);
      for (const id of ids) assert.ok(!listed.includes(id), `backup ${id} is forgotten`);
      await dma.call(['prune']);
      const after = await tapes(dma);
      assert.equal(after.get('NDM001')!.state, 'recyclable');
      assert.equal(after.get('NDM002')!.state, 'recyclable');
      assert.equal(after.get('NDM003')!.state, 'appendable');
      assert.equal(after.get('NDM005')!.state, 'recyclable', "the killed backup's tape");

      await nextDay();
      const next = await backup(dma, join(src, 'docs'));
      assert.deepEqual(
        next.tapes.map((s) => [s.barcode, s.tapeFile]),
        [['NDM001', 0]],
      );
      const to = join(p.exportDir, 'next');
      const r = await dma.json<RestoreOutcome>(['restore', String(next.id), '--to', to, ...dma.creds]);
      assert.equal(r.ok, true, JSON.stringify(r));
      assert.equal(fs.readFileSync(join(to, 'day6.txt'), 'utf8'), 'added on day 6\n');
      const ok = await dma.call(['verify', String(next.id), ...dma.creds, '-q']);
      assert.equal(ok.code, 0);
    });
  });
}
