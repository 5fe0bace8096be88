// Server paths and point-in-time views, end to end (docs/dma.md, "Paths" and
// "Incremental chains: point-in-time"): ndmpd and ndmp as processes, a full
// backup and three incrementals of a tree that changes in between (files
// modified, added, deleted, a directory renamed, a directory emptied). `ls`
// of the 4th backup shows the tree as of then, each entry with the backup it
// comes from; a file unchanged since the full restores from the 4th backup's
// id; a directory as of the 4th backup restores to exactly the tree then;
// paths go in and come out as the server has them; a path outside the source
// is refused naming the source; `find` names each hit's backup and source.
// Both catalogs (PostgreSQL when the run has one).

import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { BackupRecord } from '../../src/catalog/types.js';
import type { ListedEntry, ServerHit } from '../../src/dma/browse.js';
import type { AsOfRestoreOutcome } from '../../src/dma/restore-as-of.js';
import { startNdmpd } from '../helpers/ndmpd-process.js';
import type { NdmpdProcess } from '../helpers/ndmpd-process.js';
import { dmaFor } from '../helpers/ndmp-cli.js';
import { freshPostgresCatalog, postgresForTests } from '../helpers/postgres.js';
import { assertSameTree } from '../helpers/trees.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function write(root: string, rel: string, body: string | Buffer): void {
  fs.mkdirSync(join(root, rel, '..'), { recursive: true });
  fs.writeFileSync(join(root, rel), body);
}

/** Copies `from` to `to` (files, directories, symlinks), for the tree as it was at a backup. */
function snapshot(from: string, to: string): void {
  fs.cpSync(from, to, { recursive: true, preserveTimestamps: true, verbatimSymlinks: true });
}

for (const kind of [
  { name: 'SQLite', make: (dir: string) => Promise.resolve(join(dir, 'catalog.sqlite')) },
  { name: 'PostgreSQL', make: () => freshPostgresCatalog() },
]) {
  describe(`point-in-time and server paths (${kind.name} catalog)`, { timeout: 300_000 }, () => {
    let p: NdmpdProcess;
    let work: string;
    let src: string;
    let dma: ReturnType<typeof dmaFor>;
    let skip: string | null = null;
    const backups: BackupRecord[] = [];
    /** The tree as it was at backups[3], copied then. */
    let asOf4: string;

    const backup = async (level: number): Promise<BackupRecord> => {
      // Out of the change test's clock slack (1 s) on both sides: what changed before this backup
      // must not count as changed for the next one too.
      await sleep(1300);
      const r = await dma.call([
        'backup',
        `${dma.server}:${src}`,
        '--level',
        String(level),
        ...dma.creds,
        '--json',
      ]);
      const b = JSON.parse(r.out) as BackupRecord;
      assert.equal(b.status, 'done', r.err);
      assert.equal(
        b.historyModel,
        level > 0 ? 'dirnode' : 'path',
        'incrementals take dir/node history by default',
      );
      await sleep(1300);
      return b;
    };

    before(async () => {
      if (kind.name === 'PostgreSQL' && !postgresForTests()) {
        skip = 'no PostgreSQL for tests (set NDMP_TEST_POSTGRES)';
        if (process.env.CI) throw new Error(`${skip}: CI must provide one (.ci/run)`);
        return;
      }
      p = await startNdmpd({ logLevel: 'info' });
      work = fs.mkdtempSync(join(os.tmpdir(), 'ndmp-pit-'));
      src = join(p.exportDir, 'share', 'doc');
      dma = dmaFor(p, await kind.make(work), join(work, 'dma-state'));
      asOf4 = join(work, 'as-of-4');

      write(src, 'NEWS.gz', Buffer.from([0x1f, 0x8b, 0x08, 0x00, 0xde, 0xad, 0xbe, 0xef, 0x00, 0xff]));
      write(src, 'keep/unchanged.txt', 'from the full, never changed\n');
      write(src, 'keep/modified.txt', 'version 1\n');
      write(src, 'keep/deleted-in-2.txt', 'gone in backup 2\n');
      write(src, 'olddir/inner/deep.txt', 'renamed with its directory\n');
      write(src, 'emptied/a', 'a');
      write(src, 'emptied/b', 'b');
      write(src, 'caf\u00e9 \\ odd/x', 'odd name\n');
      backups.push(await backup(0));
      // Level 1: modified, added, deleted.
      write(src, 'keep/modified.txt', 'version 2, longer\n');
      write(src, 'keep/added-in-2.txt', 'new in backup 2\n');
      fs.rmSync(join(src, 'keep/deleted-in-2.txt'));
      backups.push(await backup(1));
      // Level 2: a directory renamed, a directory emptied.
      fs.renameSync(join(src, 'olddir'), join(src, 'newdir'));
      fs.rmSync(join(src, 'emptied/a'));
      fs.rmSync(join(src, 'emptied/b'));
      backups.push(await backup(2));
      // Level 3: modified again, one more added.
      write(src, 'keep/modified.txt', 'version 4\n');
      write(src, 'newdir/inner/added-in-4.txt', 'new in backup 4\n');
      backups.push(await backup(3));
      snapshot(src, asOf4);
      // After the 4th: what it must not show.
      write(src, 'keep/after-4.txt', 'made after backup 4\n');
      fs.rmSync(join(src, 'keep/unchanged.txt'));
    });
    after(async () => {
      await p?.stop();
      if (work) fs.rmSync(work, { recursive: true, force: true });
    });

    test('ls of the 4th backup: the tree as of then, each entry from the backup that holds it', async (t) => {
      if (skip) return t.skip(skip);
      const [full, b2, b3, b4] = backups.map((b) => b.id);
      const keep = await dma.json<ListedEntry[]>(['ls', String(b4), join(src, 'keep')]);
      assert.deepEqual(
        keep.map((e) => [e.path, e.backupId]),
        [
          [join(src, 'keep/added-in-2.txt'), b2],
          [join(src, 'keep/modified.txt'), b4],
          [join(src, 'keep/unchanged.txt'), full],
        ],
      );
      assert.ok(
        keep.every((e) => e.dir === join(src, 'keep') && (e as ListedEntry & { plain: boolean }).plain),
      );
      assert.equal(keep[1]!.size, 'version 4\n'.length);
      // The root, with no path and with the source's own path: the same listing.
      const top = await dma.json<ListedEntry[]>(['ls', String(b4)]);
      assert.deepEqual(await dma.json<ListedEntry[]>(['ls', String(b4), src]), top);
      assert.deepEqual(
        top.map((e) => e.name),
        ['NEWS.gz', 'caf\u00e9 \\\\ odd', 'emptied', 'keep', 'newdir'],
      );
      assert.deepEqual((await dma.json<ListedEntry[]>(['ls', String(b4), join(src, 'emptied')])).length, 0);
      // The renamed directory as of the 4th; its unchanged file comes from the 3rd (renamed: whole again).
      const inner = await dma.json<ListedEntry[]>(['ls', String(b4), join(src, 'newdir/inner')]);
      assert.deepEqual(
        inner.map((e) => [e.name, e.backupId]),
        [
          ['added-in-4.txt', b4],
          ['deep.txt', b3],
        ],
      );
      // As of the 2nd: the old names; deleted ones gone.
      const keep2 = await dma.json<ListedEntry[]>(['ls', String(b2), join(src, 'keep')]);
      assert.deepEqual(
        keep2.map((e) => e.name),
        ['added-in-2.txt', 'modified.txt', 'unchanged.txt'],
      );
      assert.deepEqual(
        (await dma.json<ListedEntry[]>(['ls', String(b2), join(src, 'emptied')])).map((e) => e.name),
        ['a', 'b'],
      );
      await dma.call(['ls', String(b4), join(src, 'olddir')], 2);
      const gone = await dma.call(['ls', String(b4), join(src, 'keep/deleted-in-2.txt')], 2);
      assert.match(gone.err, /not in backup \d+ as of \d{4}-/);
      // The text form has the backup column, and a file is listed alone.
      const text = (await dma.call(['ls', String(b4), join(src, 'keep')])).out;
      assert.match(text, new RegExp(`#${full}\\s+unchanged\\.txt`));
      const one = await dma.json<ListedEntry[]>(['ls', String(full), join(src, 'NEWS.gz')]);
      assert.deepEqual(
        one.map((e) => [e.path, e.backupId]),
        [[join(src, 'NEWS.gz'), full]],
      );
    });

    test('a path outside the source is refused, naming the source', async (t) => {
      if (skip) return t.skip(skip);
      const id = String(backups[0]!.id);
      // The backup-relative path people had to type before: now it is a path on the server.
      const r = await dma.call(['ls', id, '/keep'], 2);
      assert.match(
        r.err,
        new RegExp(`/keep is not in backup ${id}: it backed up ${src.replace(/[/.]/g, '\\$&')}`),
      );
      const q = await dma.call(
        ['restore', id, join(p.exportDir, 'share'), '--to', join(p.exportDir, 'x'), ...dma.creds],
        2,
      );
      assert.match(q.err, /it backed up/);
      // Neither --to nor --in-place: a usage error that names both.
      const n = await dma.call(['restore', id, join(src, 'NEWS.gz'), ...dma.creds], 2);
      assert.match(n.err, /--to DIR .* or --in-place/);
    });

    test('find: server paths, each hit with its backup and source', async (t) => {
      if (skip) return t.skip(skip);
      const hits = await dma.json<ServerHit[]>(['find', 'modified.txt']);
      assert.deepEqual(
        hits.map((h) => [h.backupId, h.path, h.server, h.source]),
        [...backups]
          .reverse()
          .filter((b) => b.level !== 2) // the 3rd backup did not hold it
          .map((b) => [b.id, join(src, 'keep/modified.txt'), dma.server, src]),
      );
      // A path pattern as the server has it, a wildcard reaching into the source.
      const byPath = await dma.json<ServerHit[]>([
        'find',
        join(p.exportDir, '*/doc/keep/un*'),
        '--backup',
        String(backups[0]!.id),
      ]);
      assert.deepEqual(
        byPath.map((h) => h.path),
        [join(src, 'keep/unchanged.txt')],
      );
      const all = await dma.json<ServerHit[]>(['find', `${src}/*.gz`]);
      assert.deepEqual(
        all.map((h) => h.path),
        [join(src, 'NEWS.gz')],
      );
      const text = (await dma.call(['find', 'deep.txt'])).out;
      assert.match(
        text,
        new RegExp(
          `^${backups[2]!.id}\\s+${dma.server}:${src.replace(/[/.]/g, '\\$&')}\\s.*${join(src, 'newdir/inner/deep.txt').replace(/[/.]/g, '\\$&')}$`,
          'm',
        ),
      );
    });

    test('restore of an unchanged file as of the 4th backup: from the full, byte for byte', async (t) => {
      if (skip) return t.skip(skip);
      const b4 = backups[3]!;
      const to = join(p.exportDir, 'restore-one');
      const r = await dma.json<AsOfRestoreOutcome>([
        'restore',
        String(b4.id),
        join(src, 'NEWS.gz'),
        join(src, 'keep/unchanged.txt'),
        '--to',
        to,
        ...dma.creds,
      ]);
      assert.equal(r.ok, true, JSON.stringify(r));
      assert.deepEqual(
        r.files.map((f) => [f.path, f.ok]),
        [
          [join(src, 'NEWS.gz'), true],
          [join(src, 'keep/unchanged.txt'), true],
        ],
      );
      assert.deepEqual(
        r.passes.map((x) => x.backupId),
        [backups[0]!.id],
      );
      // Below --to, the paths below the source.
      assert.deepEqual(fs.readFileSync(join(to, 'NEWS.gz')), fs.readFileSync(join(asOf4, 'NEWS.gz')));
      assert.equal(fs.readFileSync(join(to, 'keep/unchanged.txt'), 'utf8'), 'from the full, never changed\n');
    });

    test('restore of the whole tree as of the 4th backup: exactly the tree then', async (t) => {
      if (skip) return t.skip(skip);
      const b4 = backups[3]!;
      const to = join(p.exportDir, 'restore-all');
      const r = await dma.json<AsOfRestoreOutcome>(['restore', String(b4.id), src, '--to', to, ...dma.creds]);
      assert.equal(r.ok, true, JSON.stringify(r));
      assert.deepEqual(
        r.passes.map((x) => x.backupId),
        backups.map((b) => b.id),
        'one restore per backup, oldest first',
      );
      assertSameTree(asOf4, to, { mtimeToleranceNs: 1_000_000_000n });
      // A directory of it alone, as of the 2nd backup: the files then, deleted ones not brought back.
      const to2 = join(p.exportDir, 'restore-keep-2');
      const r2 = await dma.json<AsOfRestoreOutcome>([
        'restore',
        String(backups[1]!.id),
        join(src, 'keep'),
        '--to',
        to2,
        ...dma.creds,
      ]);
      assert.equal(r2.ok, true, JSON.stringify(r2));
      assert.deepEqual(fs.readdirSync(join(to2, 'keep')).sort(), [
        'added-in-2.txt',
        'modified.txt',
        'unchanged.txt',
      ]);
      assert.equal(fs.readFileSync(join(to2, 'keep/modified.txt'), 'utf8'), 'version 2, longer\n');
    });

    test('restore --in-place puts a file back where it was', async (t) => {
      if (skip) return t.skip(skip);
      const b4 = backups[3]!;
      const r = await dma.json<AsOfRestoreOutcome>([
        'restore',
        String(b4.id),
        join(src, 'keep/unchanged.txt'),
        '--in-place',
        ...dma.creds,
      ]);
      assert.equal(r.ok, true, JSON.stringify(r));
      assert.equal(
        fs.readFileSync(join(src, 'keep/unchanged.txt'), 'utf8'),
        'from the full, never changed\n',
      );
      // What was made since is left alone.
      assert.ok(fs.existsSync(join(src, 'keep/after-4.txt')));
    });
  });
}
