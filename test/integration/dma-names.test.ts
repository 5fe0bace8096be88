// Names are bytes through `ndmp` (docs/names.md): a tree with a Latin-1
// directory and file, a newline and a backslash in names, and a path of
// ~3 KB of Latin-1 bytes (12 KB printed: over PostgreSQL's btree key limit)
// is backed up from a real ndmpd, listed and found in the printed form, and
// restored by those printed paths to the exact bytes. SQLite and PostgreSQL.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { BackupRecord } from '../../src/catalog/types.js';
import type { RestoreOutcome } from '../../src/dma/restore-job.js';
import { decodeName, encodeName, escapeName, unescapeName } from '../../src/util/byte-name.js';
import { startNdmpd } from '../helpers/ndmpd-process.js';
import type { NdmpdProcess } from '../helpers/ndmpd-process.js';
import { dmaFor } from '../helpers/ndmp-cli.js';
import { freshPostgresCatalog, postgresForTests } from '../helpers/postgres.js';

type Row = { path: string; name: string; type: string; size: number; plain: boolean };

const L1 = (s: string) => Buffer.from(s, 'latin1');
/** A path under `root` from latin1-spelled components (each char one byte). */
const at = (root: string, ...parts: string[]) =>
  Buffer.concat([Buffer.from(root), ...parts.map((p) => L1(`/${p}`))]);

const DEEP = Array.from({ length: 12 }, (_, i) => `${'\xe9'.repeat(240)}${i}`); // 12 * 242 = 2,904 bytes
const DEEP_FILE = `f\xe9.txt`;

function makeTree(src: string): void {
  fs.mkdirSync(src);
  fs.mkdirSync(at(src, 'Fran\xe7ais'));
  fs.writeFileSync(at(src, 'Fran\xe7ais', 'caf\xe9.txt'), 'latin-1 name\n');
  fs.writeFileSync(at(src, 'Fran\xe7ais', 'plain.txt'), 'utf-8 name in a latin-1 directory\n');
  fs.writeFileSync(at(src, 'two\nlines'), 'newline\n');
  fs.writeFileSync(at(src, 'back\\slash'), 'backslash\n');
  for (let i = 1; i <= DEEP.length; i++) fs.mkdirSync(at(src, ...DEEP.slice(0, i)));
  fs.writeFileSync(at(src, ...DEEP, DEEP_FILE), 'deep\n');
}

/** The lossless path of latin1-spelled components, printed: what the catalog shows. */
const printed = (...parts: string[]) => escapeName(decodeName(L1(`/${parts.join('/')}`)));

for (const kind of ['SQLite', 'PostgreSQL']) {
  describe(
    `ndmp with a ${kind} catalog: byte names backed up, listed, found, restored exactly`,
    { timeout: 300_000 },
    () => {
      let p: NdmpdProcess;
      let work: string;
      let src: string;
      let dma: ReturnType<typeof dmaFor>;
      let backup: BackupRecord;
      let skip: string | null = null;

      before(async () => {
        if (kind === 'PostgreSQL' && !postgresForTests()) {
          skip = 'no PostgreSQL for tests (set NDMP_TEST_POSTGRES)';
          if (process.env.CI) throw new Error(`${skip}: CI must provide one (.ci/run)`);
          return;
        }
        p = await startNdmpd({ logLevel: 'info' });
        work = fs.mkdtempSync(join(os.tmpdir(), 'ndmp-names-'));
        src = join(p.exportDir, 'tree');
        makeTree(src);
        const catalog = kind === 'SQLite' ? join(work, 'catalog.sqlite') : await freshPostgresCatalog();
        dma = dmaFor(p, catalog, join(work, 'dma-state'));
      });
      after(async () => {
        await p?.stop();
        if (work) fs.rmSync(work, { recursive: true, force: true });
      });

      test('backup: every entry in the catalog, the warnings none', async (t) => {
        if (skip) return t.skip(skip);
        const r = await dma.call(['backup', `${dma.server}:${src}`, ...dma.creds, '--json']);
        backup = JSON.parse(r.out) as BackupRecord;
        assert.equal(backup.status, 'done', r.err);
        assert.doesNotMatch(r.err, /warning/i);
        // The root, Français and its 2 files, 2 odd files, 12 deep directories and the deep file.
        assert.equal(backup.files, 1 + 3 + 2 + DEEP.length + 1);
      });

      test('ls and find print the printed form; --json says which rows hold escapes', async (t) => {
        if (skip) return t.skip(skip);
        const top = await dma.json<Row[]>(['ls', String(backup.id)]);
        assert.deepEqual(
          top.map((r) => [r.name, r.plain]),
          [
            ['Fran\\xe7ais', false],
            ['back\\\\slash', false],
            ['two\\x0alines', false],
            [escapeName(decodeName(L1(DEEP[0]!))), false],
          ].sort((a, b) => ((a[0] as string) < (b[0] as string) ? -1 : 1)),
        );
        const text = (await dma.call(['ls', String(backup.id), `${src}/Fran\\xe7ais`])).out;
        assert.match(text, /^-rw-r--r-- .* caf\\xe9\.txt$/m);
        assert.match(text, /^-rw-r--r-- .* plain\.txt$/m);
        assert.equal(text.split('\n').length, 3, 'one line per entry');
        const inside = await dma.json<Row[]>(['ls', String(backup.id), `${src}/Fran\\xe7ais`]);
        assert.deepEqual(
          inside.map((r) => [r.name, r.plain]),
          [
            ['caf\\xe9.txt', false],
            ['plain.txt', false], // its directory's name holds an escape
          ],
        );
        // The bytes back from the printed form, as a consumer of --json does.
        assert.deepEqual(encodeName(unescapeName(inside[0]!.path)), at(src, 'Fran\xe7ais', 'caf\xe9.txt'));

        const hits = async (pattern: string) => (await dma.json<Row[]>(['find', pattern])).map((r) => r.path);
        // Server paths (docs/dma.md, "Paths"): the source joined with the printed path inside.
        assert.deepEqual(await hits('caf\\xe9*'), [`${src}/Fran\\xe7ais/caf\\xe9.txt`]);
        assert.deepEqual(await hits('two\\x0a*'), [`${src}/two\\x0alines`]);
        assert.deepEqual(await hits('back\\\\slash'), [`${src}/back\\\\slash`]);
        // Long paths compared by equality, so that a failure does not print 12 KB.
        const deepHits = await hits(`${src}${printed(...DEEP.slice(0, 11))}/*/f\\xe9.txt`);
        assert.ok(
          deepHits.length === 1 && deepHits[0] === `${src}${printed(...DEEP, DEEP_FILE)}`,
          `${deepHits.length} hits`,
        );
        const deep = await dma.json<Row[]>(['ls', String(backup.id), `${src}${printed(...DEEP)}`]);
        assert.ok(
          deep.length === 1 && deep[0]!.path === `${src}${printed(...DEEP, DEEP_FILE)}`,
          `${deep.length} rows`,
        );
        assert.ok(deep[0]!.path.length > 11_000, `${deep[0]!.path.length} characters printed`);
      });

      test('restore by printed paths (and a plainly typed backslash): the exact bytes come back', async (t) => {
        if (skip) return t.skip(skip);
        const to = join(p.exportDir, 'restored');
        const r = await dma.json<RestoreOutcome>([
          'restore',
          String(backup.id),
          `${src}/Fran\\xe7ais/caf\\xe9.txt`,
          `${src}/two\\x0alines`,
          `${src}/back\\slash`,
          `${src}${printed(...DEEP, DEEP_FILE)}`,
          '--to',
          to,
          ...dma.creds,
        ]);
        const short = (x: string) => (x.length > 80 ? `${x.slice(0, 40)}...${x.slice(-30)}` : x);
        assert.equal(r.ok, true, JSON.stringify(r.files.map((f) => [short(f.path), f.status])));
        assert.deepEqual(
          r.files.map((f) => [f.path, f.status]),
          [
            [`${src}/Fran\\xe7ais/caf\\xe9.txt`, 'SUCCESSFUL'],
            [`${src}/two\\x0alines`, 'SUCCESSFUL'],
            [`${src}/back\\\\slash`, 'SUCCESSFUL'],
            [`${src}${printed(...DEEP, DEEP_FILE)}`, 'SUCCESSFUL'],
          ],
        );
        for (const parts of [
          ['Fran\xe7ais', 'caf\xe9.txt'],
          ['two\nlines'],
          ['back\\slash'],
          [...DEEP, DEEP_FILE],
        ]) {
          assert.deepEqual(fs.readFileSync(at(to, ...parts)), fs.readFileSync(at(src, ...parts)));
        }
        assert.deepEqual(fs.readdirSync(at(to, 'Fran\xe7ais'), { encoding: 'buffer' }), [L1('caf\xe9.txt')]);

        // A whole directory by its printed name.
        const to2 = join(p.exportDir, 'restored-dir');
        const d = await dma.json<RestoreOutcome>([
          'restore',
          String(backup.id),
          `${src}/Fran\\xe7ais`,
          '--to',
          to2,
          ...dma.creds,
        ]);
        assert.equal(d.ok, true, JSON.stringify(d));
        assert.deepEqual(
          fs
            .readdirSync(at(to2, 'Fran\xe7ais'), { encoding: 'buffer' })
            .map((b) => b.toString('latin1'))
            .sort(),
          ['caf\xe9.txt', 'plain.txt'],
        );
      });
    },
  );
}
