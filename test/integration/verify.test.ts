// `ndmp verify` and `ndmpd tape export --then` end to end (docs/dma.md,
// "Verifying a backup"; docs/tape-image.md, "Data CRCs"): ndmpd and ndmp as
// processes over real sockets, a backup on 2 MiB tapes that spans three of
// them, read back through the server's changer. A byte changed inside a
// file's data on tape fails its record's CRC and names that file; a changed
// header byte (on an image without CRCs) fails the pax checksum and names
// that entry; catalog rows the stream does not match are named; a row the
// catalog lacks is a warning; the exported parts make one archive GNU tar lists.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import Database from 'better-sqlite3';
import type { BackupRecord, FileRow, TapeSegment } from '../../src/catalog/types.js';
import type { VerifyOutcome } from '../../src/dma/verify-job.js';
import { tapeFileExtent } from '../../src/devices/tape-image.js';
import { NDMPD_BIN, startNdmpd } from '../helpers/ndmpd-process.js';
import type { NdmpdProcess } from '../helpers/ndmpd-process.js';
import { dmaFor } from '../helpers/ndmp-cli.js';
import { flipDataByte, stripDataCrcs } from '../helpers/tape-damage.js';

describe(
  'ndmp verify: a backup over three tapes, read back through the changer',
  { timeout: 300_000 },
  () => {
    let p: NdmpdProcess;
    let work: string;
    let src: string;
    let library: string;
    let catalogFile: string;
    let dma: ReturnType<typeof dmaFor>;
    let b: BackupRecord;

    /** The tape image and data-file byte of stream byte `pos` of the backup. */
    function onTape(pos: number): { path: string; offset: number; seg: TapeSegment } {
      const seg = b.tapes.find((s) => pos >= s.streamOffset && pos < s.streamOffset + s.length)!;
      const path = join(library, 'tapes', seg.barcode!);
      const extent = tapeFileExtent(path, seg.tapeFile)!;
      return { path, offset: Number(extent.start) + (pos - seg.streamOffset), seg };
    }

    async function row(path: string): Promise<FileRow> {
      const rows = await dma.json<FileRow[]>(['ls', String(b.id), path]);
      return rows[0]!;
    }

    async function verify(expect: number): Promise<{ r: VerifyOutcome; err: string }> {
      const run = await dma.call(['verify', String(b.id), ...dma.creds, '--json'], expect);
      return { r: JSON.parse(run.out) as VerifyOutcome, err: run.err };
    }

    function sql(statement: string, ...args: unknown[]): void {
      const db = new Database(catalogFile);
      try {
        db.prepare(statement).run(...args);
      } finally {
        db.close();
      }
    }

    before(async () => {
      work = fs.mkdtempSync(join(os.tmpdir(), 'ndmp-verify-'));
      p = await startNdmpd({ logLevel: 'info', extraArgs: ['--tape-capacity', '2M', '--slots', '8'] });
      library = join(p.dir, 'state', 'library');
      src = join(p.exportDir, 'big');
      fs.mkdirSync(join(src, 'small'), { recursive: true });
      for (let i = 0; i < 5; i++) fs.writeFileSync(join(src, `chunk${i}.bin`), randomBytes(1024 * 1024));
      for (let i = 0; i < 30; i++) fs.writeFileSync(join(src, 'small', `f${i}.txt`), `small file ${i}\n`);
      // A name that is not UTF-8, with a backslash: printed 'caf\xe9 \\ odd.txt' (docs/names.md).
      fs.writeFileSync(
        Buffer.concat([
          Buffer.from(`${join(src, 'small')}/caf`),
          Buffer.from([0xe9]),
          Buffer.from(' \\ odd.txt'),
        ]),
        'odd name\n',
      );
      fs.symlinkSync('f0.txt', join(src, 'small', 'link'));
      catalogFile = join(work, 'catalog.sqlite');
      dma = dmaFor(p, catalogFile, join(work, 'state'));
      const r = await dma.call(['backup', `${dma.server}:${src}`, ...dma.creds, '--json']);
      b = JSON.parse(r.out) as BackupRecord;
      assert.equal(b.status, 'done', r.err);
      assert.ok(b.tapes.length >= 3, `5 MiB on 2 MiB tapes: ${JSON.stringify(b.tapes)}`);
    });
    after(async () => {
      await p?.stop();
      if (work) fs.rmSync(work, { recursive: true, force: true });
    });

    test('an intact backup verifies: every entry, every tape, through the changer', async () => {
      const { r, err } = await verify(0);
      assert.equal(r.ok, true, JSON.stringify(r.problems));
      assert.deepEqual(r.problems, []);
      assert.deepEqual(r.warnings, []);
      assert.equal(r.bytes, b.bytes);
      assert.equal(r.rows, b.files);
      assert.equal(r.entries, b.files);
      assert.deepEqual(
        r.tapesRead,
        b.tapes.map((t) => t.barcode),
      );
      // Each tape read in turn; those in slots loaded by the changer (a tape already in a drive is read there).
      assert.deepEqual(
        [...err.matchAll(/reading tape (NDM\d+), file/g)].map((m) => m[1]),
        b.tapes.map((t) => t.barcode),
        err,
      );
      assert.match(err, /loaded tape NDM\d+ from element \d+ into drive element/);
      const text = await dma.call(['verify', String(b.id), ...dma.creds]);
      assert.match(text.out, new RegExp(`^verified backup ${b.id}: ${b.files} entries`, 'm'));
    });

    test('ndmpd tape export --then: the parts on three tapes are one archive GNU tar lists', () => {
      const [first, ...rest] = b.tapes;
      const args = [NDMPD_BIN, 'tape', 'export', first!.barcode!, '--file', String(first!.tapeFile)];
      for (const s of rest) args.push('--then', `${s.barcode}:${s.tapeFile}`);
      const exported = spawnSync(process.execPath, [...args, '--library', library], {
        maxBuffer: 64 * 1024 * 1024,
      });
      assert.equal(exported.status, 0, exported.stderr.toString());
      const tar = spawnSync('tar', ['-tvf', '-'], { input: exported.stdout, maxBuffer: 16 * 1024 * 1024 });
      assert.equal(tar.status, 0, tar.stderr.toString());
      const listed = tar.stdout.toString();
      for (let i = 0; i < 5; i++) assert.match(listed, new RegExp(`chunk${i}\\.bin`));
      for (let i = 0; i < 30; i++) assert.match(listed, new RegExp(`small/f${i}\\.txt`));
      assert.equal(listed.trim().split('\n').length, b.files, listed);

      // Only the first tape: the archive is cut short, and export says where it goes on.
      const cut = spawnSync(
        process.execPath,
        [...args.slice(0, 6), '--library', library, '-o', join(work, 'part0.tar')],
        { encoding: 'utf8' },
      );
      assert.equal(cut.status, 1, cut.stderr);
      assert.match(cut.stderr, /continues on another tape.*--then BARCODE:FILE/s);
    });

    test('a byte changed in a file data on tape: its record fails its CRC, verify names the file', async () => {
      const chunk = await row(join(src, 'chunk2.bin'));
      // Well inside the file's data: past its headers, half way through its megabyte.
      const at = onTape(chunk.fhInfo! + 512 * 4 + 500_000);
      flipDataByte(at.path, at.offset, 0x01);
      try {
        const { r } = await verify(1);
        assert.equal(r.ok, false);
        const read = r.problems.find((x) => x.code === 'TAPE_READ');
        assert.ok(read, JSON.stringify(r.problems));
        assert.match(read.message, /MEDIA_ERROR/);
        assert.match(read.message, /\/chunk2\.bin/);
        assert.match(read.message, new RegExp(`tape ${at.seg.barcode}`));
        // The server said which record, in its log and to the DMA.
        assert.match(p.logs(), /fails its data CRC/);
        // What lies past the bad record was not checked, and says so.
        assert.ok(r.problems.some((x) => x.code === 'UNREAD'));
        // A restore reads the same record and fails on it too.
        const restore = await dma.call(
          ['restore', String(b.id), join(src, 'chunk2.bin'), '--to', join(p.exportDir, 'back'), ...dma.creds],
          1,
        );
        assert.match(restore.err + restore.out, /CRC|MEDIA_ERROR/);
        // And so does exporting that tape file.
        const exp = spawnSync(
          process.execPath,
          [
            NDMPD_BIN,
            'tape',
            'export',
            at.seg.barcode!,
            '--file',
            String(at.seg.tapeFile),
            '--library',
            library,
          ],
          { encoding: 'latin1', maxBuffer: 64 * 1024 * 1024 },
        );
        assert.equal(exp.status, 1);
        assert.match(exp.stderr, /fails its data CRC/);
      } finally {
        flipDataByte(at.path, at.offset, 0x01);
      }
      await verify(0);
    });

    test('images without data CRCs (an older writer) still read; a changed header byte fails its checksum, named', async () => {
      for (const t of b.tapes) stripDataCrcs(join(library, 'tapes', t.barcode!));
      await verify(0);
      const victim = await row(join(src, 'small/f7.txt'));
      // A byte of the ustar name field (byte 0..99 of the block): the header checksum no longer holds.
      const at = onTape(victim.fhInfo! + 3);
      flipDataByte(at.path, at.offset, 0x01);
      try {
        const { r } = await verify(1);
        const bad = r.problems.filter((x) => x.code === 'PAX_FORMAT');
        assert.equal(bad.length, 1, JSON.stringify(r.problems));
        assert.equal(bad[0]!.path, join(src, 'small/f7.txt'));
        assert.equal(bad[0]!.offset, victim.fhInfo);
        assert.match(bad[0]!.message, /bad header checksum/);
        // The check resumed at the next entry: nothing else is wrong.
        assert.deepEqual(
          r.problems.filter((x) => x.code !== 'PAX_FORMAT'),
          [],
        );
      } finally {
        flipDataByte(at.path, at.offset, 0x01);
      }
    });

    test('catalog rows the stream does not match are named; a row the catalog lacks is a warning', async () => {
      const odd = `${src}/small/caf\\xe9 \\\\ odd.txt`;
      assert.equal((await row(odd)).path, odd);
      sql("UPDATE files SET size = size + 1 WHERE name = 'f3.txt'");
      sql(
        "INSERT INTO files (backup_id, dir, name, type, size, mode, uid, gid, mtime, atime, ctime, node, parent, fh_info) SELECT backup_id, dir, 'ghost.txt', type, size, mode, uid, gid, mtime, atime, ctime, NULL, parent, 999999999 FROM files WHERE name = 'f4.txt'",
      );
      const fh = (await row(join(src, 'small/f5.txt'))).fhInfo!;
      sql("UPDATE files SET fh_info = fh_info + 512 WHERE name = 'f5.txt'");
      let r: VerifyOutcome;
      try {
        ({ r } = await verify(1));
      } finally {
        sql("UPDATE files SET size = size - 1 WHERE name = 'f3.txt'");
        sql("DELETE FROM files WHERE name = 'ghost.txt'");
        sql('UPDATE files SET fh_info = ? WHERE name = ?', fh, 'f5.txt');
      }
      const by = (code: string) => r.problems.filter((x) => x.code === code).map((x) => x.path);
      assert.deepEqual(by('SIZE'), [join(src, 'small/f3.txt')]);
      assert.deepEqual(by('NOT_IN_STREAM'), [join(src, 'small/ghost.txt')]);
      assert.deepEqual(by('FH_INFO'), [join(src, 'small/f5.txt')]);
      assert.equal(r.problems.length, 3, JSON.stringify(r.problems));

      // The printed name (docs/names.md) is what the catalog holds and what verify names.
      sql('DELETE FROM files WHERE name = ?', 'caf\\xe9 \\\\ odd.txt');
      const { r: w } = await verify(0);
      assert.deepEqual(
        w.warnings.map((x) => [x.code, x.path]),
        [['NOT_IN_CATALOG', odd]],
      );
    });
  },
);
