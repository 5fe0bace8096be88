// The `ndmp` DMA end to end, as an administrator runs it: ndmpd and ndmp as
// processes over real sockets, a real catalog (SQLite, and PostgreSQL when the
// run has one), real tape images. Backup of a 20,000-file tree, browse,
// search, restore of one file by DAR (a few records read) and of a directory;
// a backup that spans tapes and comes back; the errors an administrator sees.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { BackupRecord, FileRow, FoundFile } from '../../src/catalog/types.js';
import type { RestoreOutcome } from '../../src/dma/restore-job.js';
import { startNdmpd } from '../helpers/ndmpd-process.js';
import type { NdmpdProcess } from '../helpers/ndmpd-process.js';
import { addTapes, dmaFor, runNdmp } from '../helpers/ndmp-cli.js';
import { freshPostgresCatalog, postgresForTests } from '../helpers/postgres.js';
import { assertSameTree } from '../helpers/trees.js';

const DIRS = 100;
const PER_DIR = 200; // 20,000 files

/** A tree of DIRS × PER_DIR small files (sizes 0 to ~3 KiB), a few odd names and a symlink. */
function makeWideTree(root: string): void {
  for (let d = 0; d < DIRS; d++) {
    const dir = join(root, `d${String(d).padStart(3, '0')}`);
    fs.mkdirSync(dir, { recursive: true });
    for (let f = 0; f < PER_DIR; f++) {
      const body = `file ${d}/${f}\n`.repeat((d * 31 + f * 7) % 200);
      fs.writeFileSync(join(dir, `f${String(f).padStart(4, '0')}.${f % 3 === 0 ? 'txt' : 'dat'}`), body);
    }
  }
  fs.mkdirSync(join(root, 'odd names'));
  fs.writeFileSync(join(root, 'odd names', 'report 100%_done.txt'), 'percent and underscore\n');
  fs.writeFileSync(join(root, 'odd names', 'ünïcödé.txt'), 'unicode\n');
  fs.symlinkSync('../d000/f0000.txt', join(root, 'odd names', 'link'));
}

/** Bytes the server read for its last recover, from its log line. */
function recoverBytes(p: NdmpdProcess): number {
  const all = [...p.logs().matchAll(/restored from (\d+) bytes/g)];
  assert.ok(all.length > 0, `no recover summary in the server log:\n${p.logs().slice(-3000)}`);
  return Number(all[all.length - 1]![1]);
}

function catalogs(): Array<{ name: string; make: (dir: string) => Promise<string> | string }> {
  return [
    { name: 'SQLite', make: (dir) => join(dir, 'catalog.sqlite') },
    { name: 'PostgreSQL', make: () => freshPostgresCatalog() },
  ];
}

for (const kind of catalogs()) {
  describe(
    `ndmp with a ${kind.name} catalog: 20,000 files backed up, browsed, found, restored`,
    { timeout: 300_000 },
    () => {
      let p: NdmpdProcess;
      let work: string;
      let src: string;
      let dma: ReturnType<typeof dmaFor>;
      let backup: BackupRecord;
      let skip: string | null = null;

      before(async () => {
        if (kind.name === 'PostgreSQL' && !postgresForTests()) {
          skip = 'no PostgreSQL for tests (set NDMP_TEST_POSTGRES)';
          if (process.env.CI) throw new Error(`${skip}: CI must provide one (.ci/run)`);
          return;
        }
        p = await startNdmpd({ logLevel: 'info' });
        work = fs.mkdtempSync(join(os.tmpdir(), 'ndmp-dma-'));
        src = join(p.exportDir, 'tree');
        makeWideTree(src);
        addTapes(p, 4);
        dma = dmaFor(p, await kind.make(work), join(work, 'dma-state'));
      });
      after(async () => {
        await p?.stop();
        if (work) fs.rmSync(work, { recursive: true, force: true });
      });

      test('backup: every file in the catalog, the tape recorded', async (t) => {
        if (skip) return t.skip(skip);
        const r = await dma.call(['backup', `${dma.server}:${src}`, ...dma.creds, '--json']);
        backup = JSON.parse(r.out) as BackupRecord;
        assert.equal(backup.status, 'done', r.err);
        // 20,000 files, 101 directories, 3 odd entries, and the root.
        assert.equal(backup.files, DIRS * PER_DIR + DIRS + 1 + 3 + 1);
        assert.equal(backup.tapes.length, 1);
        assert.match(backup.tapes[0]!.barcode ?? '', /^NDM/);
        assert.equal(backup.resultEnv.DIRECT, 'y');
        assert.ok(backup.bytes > 0);

        const list = await dma.json<BackupRecord[]>(['backups']);
        assert.equal(list[0]!.id, backup.id);
        const text = (await dma.call(['backups'])).out;
        assert.match(
          text,
          new RegExp(
            `^${backup.id}\\s.*${src.replace(/[/.]/g, '\\$&')}\\s+0\\s+done\\s+${backup.files}\\s`,
            'm',
          ),
        );
      });

      test('ls: the top, a directory, one file; sizes and types from the history', async (t) => {
        if (skip) return t.skip(skip);
        const top = await dma.json<FileRow[]>(['ls', String(backup.id)]);
        assert.equal(top.length, DIRS + 1);
        assert.deepEqual(
          top.slice(0, 2).map((f) => [f.name, f.type]),
          [
            ['d000', 'dir'],
            ['d001', 'dir'],
          ],
        );
        // Paths as the server has them (docs/dma.md, "Paths"): the source joined with the path inside.
        const d7 = await dma.json<Array<Omit<FileRow, 'mtime'> & { mtime: string }>>([
          'ls',
          String(backup.id),
          join(src, 'd007'),
        ]);
        assert.ok(d7.every((x) => x.dir === join(src, 'd007') && x.path === join(src, 'd007', x.name)));
        assert.equal(d7.length, PER_DIR);
        const f = d7.find((x) => x.name === 'f0013.dat')!;
        assert.equal(f.size, fs.statSync(join(src, 'd007', 'f0013.dat')).size);
        // JSON times are ISO 8601 (whole seconds, as NDMP carries them).
        const mtimeS = Math.floor(fs.statSync(join(src, 'd007', 'f0013.dat')).mtimeMs / 1000);
        assert.equal(f.mtime, new Date(mtimeS * 1000).toISOString());
        assert.ok(f.fhInfo !== null && f.fhInfo > 0);
        const text = (await dma.call(['ls', String(backup.id), join(src, 'odd names')])).out;
        assert.match(text, /^lrwxrwxrwx .* link$/m);
        assert.match(text, /^-rw-r--r-- .* report 100%_done\.txt$/m);
        const missing = await dma.call(['ls', String(backup.id), join(src, 'nope')], 2);
        assert.match(missing.err, /\/tree\/nope is not in backup/);
        // A path inside the backup, as it had to be typed before: outside the source now.
        const inside = await dma.call(['ls', String(backup.id), '/d007'], 2);
        assert.match(
          inside.err,
          /\/d007 is not in backup \d+: it backed up \/.*\/tree, so give a path below it/,
        );
      });

      test('find: name patterns, path patterns, literal % and _', async (t) => {
        if (skip) return t.skip(skip);
        const txt = await dma.json<FoundFile[]>([
          'find',
          '*.txt',
          '--backup',
          String(backup.id),
          '--limit',
          '100000',
        ]);
        // f0000, f0003, ... in each directory, plus two odd ones.
        assert.equal(txt.length, DIRS * Math.ceil(PER_DIR / 3) + 2);
        const one = await dma.json<FoundFile[]>(['find', `${src}/d042/f01?9.*`]);
        assert.deepEqual(
          one.map((f) => f.path).sort(),
          Array.from(
            { length: 10 },
            (_, i) => `${src}/d042/f01${i}9.${(100 + i * 10 + 9) % 3 === 0 ? 'txt' : 'dat'}`,
          ),
        );
        const pct = await dma.json<FoundFile[]>(['find', '*100%_*']);
        assert.deepEqual(
          pct.map((f) => f.path),
          [`${src}/odd names/report 100%_done.txt`],
        );
        const none = await dma.call(['find', 'no-such-*'], 1);
        assert.match(none.out, /nothing matches/);
      });

      test('restore one file by DAR: a few records read, content identical', async (t) => {
        if (skip) return t.skip(skip);
        const to = join(p.exportDir, 'restored-one');
        const r = await dma.json<RestoreOutcome>([
          'restore',
          String(backup.id),
          `${src}/d099/f0199.dat`,
          '--to',
          to,
          ...dma.creds,
        ]);
        assert.equal(r.ok, true, JSON.stringify(r));
        assert.equal(r.dar, true);
        assert.deepEqual(r.files, [{ path: `${src}/d099/f0199.dat`, ok: true, status: 'SUCCESSFUL' }]);
        assert.deepEqual(
          fs.readFileSync(join(to, 'd099', 'f0199.dat')),
          fs.readFileSync(join(src, 'd099', 'f0199.dat')),
        );
        // The last file of a stream of many MiB: the server read at most a few 64 KiB records.
        const read = recoverBytes(p);
        assert.ok(read <= 4 * 65536, `DAR read ${read} bytes`);
        assert.ok(backup.bytes > 20 * read, `backup ${backup.bytes} bytes vs ${read} read`);
        assert.deepEqual(fs.readdirSync(to), ['d099']);
        assert.deepEqual(fs.readdirSync(join(to, 'd099')), ['f0199.dat']);

        // The same in NDMP v3, whose name list spells the destination as a directory and a name.
        const to3 = join(p.exportDir, 'restored-one-v3');
        const r3 = await dma.json<RestoreOutcome>([
          'restore',
          String(backup.id),
          `${src}/d001/f0002.dat`,
          '--to',
          to3,
          '--v3',
          ...dma.creds,
        ]);
        assert.equal(r3.ok, true, JSON.stringify(r3));
        assert.equal(r3.dar, true);
        assert.deepEqual(
          fs.readFileSync(join(to3, 'd001', 'f0002.dat')),
          fs.readFileSync(join(src, 'd001', 'f0002.dat')),
        );
      });

      test('restore a directory and a renamed-safe odd name: trees identical', async (t) => {
        if (skip) return t.skip(skip);
        const to = join(p.exportDir, 'restored-dir');
        const r = await dma.call([
          'restore',
          String(backup.id),
          `${src}/d050`,
          `${src}/odd names`,
          '--to',
          to,
          ...dma.creds,
        ]);
        assert.match(r.out, /restored 2 of 2 .* by Direct Access Recovery/);
        assertSameTree(join(src, 'd050'), join(to, 'd050'));
        assertSameTree(join(src, 'odd names'), join(to, 'odd names'));
        assert.deepEqual(fs.readdirSync(to).sort(), ['d050', 'odd names']);
      });

      test('dir/node history gives the same catalog as path history', async (t) => {
        if (skip) return t.skip(skip);
        const dn = await dma.json<BackupRecord>([
          'backup',
          `${dma.server}:${src}/d010`,
          ...dma.creds,
          '--history',
          'dirnode',
          '-q',
        ]);
        assert.equal(dn.status, 'done');
        assert.equal(dn.historyModel, 'dirnode');
        assert.equal(dn.files, PER_DIR + 1);
        const a = await dma.json<FileRow[]>(['ls', String(dn.id), `${src}/d010`]);
        const b = await dma.json<FileRow[]>(['ls', String(backup.id), `${src}/d010`]);
        const strip = (rows: FileRow[]) => rows.map((r) => [r.name, r.type, r.size, r.mode, r.mtime]);
        assert.deepEqual(strip(a), strip(b));
      });

      test('errors: one line with the NDMP error name, the right exit code', async (t) => {
        if (skip) return t.skip(skip);
        const outside = await dma.call(['backup', `${dma.server}:/etc`, ...dma.creds, '-q'], 1);
        assert.match(outside.err, /^ndmp: NDMP_ILLEGAL_ARGS_ERR/m);
        assert.equal((await runNdmp(['init', '--catalog', join(work, 'x.sqlite')])).code, 0);
        const badPass = await runNdmp(
          ['backup', `${dma.server}:${src}`, '--user', p.user, '--catalog', join(work, 'x.sqlite')],
          {
            NDMP_PASSWORD: 'wrong',
            NDMP_STATE_DIR: join(work, 'dma-state'),
          },
        );
        assert.equal(badPass.code, 1);
        assert.match(badPass.err, /NDMP_NOT_AUTHORIZED_ERR.*wrong user or password/);
        const noBackup = await dma.call(['ls', '9999'], 2);
        assert.match(noBackup.err, /no backup 9999/);
        const notIn = await dma.call(
          ['restore', String(backup.id), `${src}/not/there`, '--to', join(p.exportDir, 'x'), ...dma.creds],
          2,
        );
        assert.match(notIn.err, /not in backup .*\/tree\/not\/there/);
        const refused = await runNdmp(['backups', '--catalog', 'postgres://nobody@127.0.0.1:1/none']);
        assert.equal(refused.code, 2);
        assert.equal(refused.err.trim().split('\n').length, 1, refused.err);
      });
    },
  );
}

describe('a backup larger than one tape', { timeout: 300_000 }, () => {
  let p: NdmpdProcess;
  let work: string;
  let src: string;

  before(async () => {
    p = await startNdmpd({ logLevel: 'info', extraArgs: ['--tape-capacity', '2M'] });
    work = fs.mkdtempSync(join(os.tmpdir(), 'ndmp-span-'));
    src = join(p.exportDir, 'big');
    fs.mkdirSync(join(src, 'late'), { recursive: true });
    for (let i = 0; i < 5; i++) fs.writeFileSync(join(src, `chunk${i}.bin`), randomBytes(1024 * 1024));
    fs.writeFileSync(join(src, 'late', 'needle.txt'), 'found on a later tape\n');
    addTapes(p, 4, '2M');
  });
  after(async () => {
    await p?.stop();
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  test('spans tapes at EOM, the catalog lists them, whole and DAR restores read across them', async () => {
    const dma = dmaFor(p, join(work, 'catalog.sqlite'), join(work, 'state'));
    await dma.ready();
    const tapes = await dma.json<{ media: Array<{ barcode: string; blank: boolean }> }>([
      'tapes',
      dma.server,
      ...dma.creds,
    ]);
    assert.ok(tapes.media.filter((m) => m.blank).length >= 4);

    const r = await dma.call(['backup', `${dma.server}:${src}`, ...dma.creds, '--json']);
    const b = JSON.parse(r.out) as BackupRecord;
    assert.equal(b.status, 'done', r.err);
    assert.ok(b.tapes.length >= 3, `5 MiB on 2 MiB tapes: ${JSON.stringify(b.tapes)}`);
    assert.match(r.err, /is full at stream byte/);
    // Each tape's part starts where the previous one ended; barcodes all differ.
    for (let i = 1; i < b.tapes.length; i++) {
      assert.equal(b.tapes[i]!.streamOffset, b.tapes[i - 1]!.streamOffset + b.tapes[i - 1]!.length);
    }
    assert.equal(new Set(b.tapes.map((t) => t.barcode)).size, b.tapes.length);
    const after = await dma.json<{ media: Array<{ barcode: string; blank: boolean }> }>([
      'tapes',
      dma.server,
      ...dma.creds,
    ]);
    for (const t of b.tapes) assert.equal(after.media.find((m) => m.barcode === t.barcode)!.blank, false);

    const whole = join(p.exportDir, 'whole');
    const w = await dma.json<RestoreOutcome>(['restore', String(b.id), '--to', whole, ...dma.creds]);
    assert.equal(w.ok, true, JSON.stringify(w));
    assert.deepEqual(
      w.tapesRead,
      b.tapes.map((t) => t.barcode),
    );
    assertSameTree(src, whole);

    const one = join(p.exportDir, 'one');
    const d = await dma.json<RestoreOutcome>([
      'restore',
      String(b.id),
      `${src}/late/needle.txt`,
      '--to',
      one,
      ...dma.creds,
    ]);
    assert.equal(d.ok, true, JSON.stringify(d));
    assert.equal(d.dar, true);
    assert.deepEqual(d.tapesRead, [b.tapes[b.tapes.length - 1]!.barcode]);
    assert.equal(fs.readFileSync(join(one, 'late', 'needle.txt'), 'utf8'), 'found on a later tape\n');

    // A file that starts on one tape and ends on the next, by DAR.
    const span = join(p.exportDir, 'span');
    const c = await dma.json<RestoreOutcome>([
      'restore',
      String(b.id),
      `${src}/chunk1.bin`,
      `${src}/chunk3.bin`,
      '--to',
      span,
      ...dma.creds,
    ]);
    assert.equal(c.ok, true, JSON.stringify(c));
    assert.ok(c.tapesRead.length >= 2, JSON.stringify(c.tapesRead));
    for (const n of ['chunk1.bin', 'chunk3.bin'])
      assert.deepEqual(fs.readFileSync(join(span, n)), fs.readFileSync(join(src, n)));
  });
});
