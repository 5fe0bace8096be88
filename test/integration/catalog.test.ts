// The catalog's behaviour, one suite run against both stores: SQLite (a file
// in a temp dir) and PostgreSQL (NDMP_TEST_POSTGRES, a URL; each test in a
// schema of its own, dropped at the end). Without NDMP_TEST_POSTGRES the
// PostgreSQL half is skipped with a plain reason; under CI (CI=true) that is a
// failure, as for the interop tests' peers (test/helpers/peers.ts): CI
// starts PostgreSQL (.ci/run) and must run every test.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import type { TestContext } from 'node:test';
import Database from 'better-sqlite3';
import pg from 'pg';

import { CatalogError, openCatalog } from '../../src/catalog/open.js';
import { PostgresCatalog } from '../../src/catalog/postgres.js';
import { SqliteCatalog } from '../../src/catalog/sqlite.js';
import { inSchema } from '../helpers/postgres.js';
import { makePostgresV1, makeSqliteV1 } from '../helpers/catalog-v1.js';
import type { V1File } from '../helpers/catalog-v1.js';
import { MAX_NAME_BYTES, SCHEMA_VERSION } from '../../src/catalog/schema.js';
import type {
  BackupRecord,
  BackupResult,
  Catalog,
  FileRow,
  FileType,
  NewBackup,
} from '../../src/catalog/types.js';
import { HistoryIngest, catalogPath } from '../../src/dma/history-ingest.js';
import type { NdmpClient } from '../../src/dma/client.js';
import { resolvePaths } from '../../src/dma/restore-job.js';
import { decodeName, encodeName, escapeName, unescapeName } from '../../src/util/byte-name.js';
import { M } from '../../src/wire/index.js';

const POSTGRES_URL = process.env.NDMP_TEST_POSTGRES;
const MAX = Number.MAX_SAFE_INTEGER;

const tmpRoot = fs.mkdtempSync(join(os.tmpdir(), 'ndmp-catalog-'));
after(() => fs.rmSync(tmpRoot, { recursive: true, force: true }));

// ---- the two stores -----------------------------------------------------------

interface Store {
  /** A new, empty catalog; `reopen` opens another handle on the same one. */
  fresh(t: TestContext): Promise<{ catalog: Catalog; reopen: () => Promise<Catalog> } | null>;
  /** A schema-1 catalog holding `files` (backup 1), opened by this program; and its schema version after. */
  fromV1(
    t: TestContext,
    files: readonly V1File[],
  ): Promise<{ catalog: Catalog; version: () => Promise<string> } | null>;
  done(): Promise<void>;
}

let sqliteCount = 0;
const sqliteStore: Store = {
  async fresh() {
    const file = join(tmpRoot, `c${++sqliteCount}`, 'catalog.sqlite');
    return { catalog: new SqliteCatalog(file), reopen: async () => new SqliteCatalog(file) };
  },
  async fromV1(_t, files) {
    const dir = join(tmpRoot, `c${++sqliteCount}`);
    fs.mkdirSync(dir);
    const file = join(dir, 'catalog.sqlite');
    makeSqliteV1(file, files);
    const catalog = new SqliteCatalog(file);
    const version = async () => {
      const db = new Database(file, { readonly: true });
      try {
        return (db.prepare(`SELECT value FROM meta WHERE key = 'schema_version'`).get() as { value: string })
          .value;
      } finally {
        db.close();
      }
    };
    return { catalog, version };
  },
  async done() {},
};

/** Returns false (skipping the test) when there is no PostgreSQL to test against; under CI, fails instead. */
function requirePostgres(t: TestContext): boolean {
  if (POSTGRES_URL) return true;
  const reason = 'PostgreSQL missing: set NDMP_TEST_POSTGRES=postgres://user:password@host/db';
  if (process.env.CI) throw new Error(`${reason} — CI must provide it (.ci/run)`);
  t.skip(reason);
  return false;
}

const schemas: string[] = [];

async function admin<T>(f: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: POSTGRES_URL });
  await c.connect();
  try {
    return await f(c);
  } finally {
    await c.end();
  }
}

/** The test URL with a new, empty schema of its own (dropped when the suite ends). */
async function freshSchemaUrl(): Promise<string> {
  const schema = `ndmp_catalog_test_${process.pid}_${schemas.length}`;
  schemas.push(schema);
  // A leftover of an earlier run with the same pid would hold its rows.
  await admin(async (c) => {
    await c.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    await c.query(`CREATE SCHEMA ${schema}`);
  });
  return inSchema(POSTGRES_URL!, schema);
}

async function dropSchemas(): Promise<void> {
  if (!POSTGRES_URL || schemas.length === 0) return;
  await admin(async (c) => {
    for (const s of schemas.splice(0)) await c.query(`DROP SCHEMA IF EXISTS ${s} CASCADE`);
  });
}
after(dropSchemas);

const postgresStore: Store = {
  async fresh(t) {
    if (!requirePostgres(t)) return null;
    const url = await freshSchemaUrl();
    return { catalog: await PostgresCatalog.open(url), reopen: () => PostgresCatalog.open(url) };
  },
  async fromV1(t, files) {
    if (!requirePostgres(t)) return null;
    const url = await freshSchemaUrl();
    await makePostgresV1(url, files);
    const catalog = await PostgresCatalog.open(url);
    const version = async () => {
      const c = new pg.Client({ connectionString: url });
      await c.connect();
      try {
        return (await c.query<{ value: string }>(`SELECT value FROM meta WHERE key = 'schema_version'`))
          .rows[0]!.value;
      } finally {
        await c.end();
      }
    };
    return { catalog, version };
  },
  done: dropSchemas,
};

// ---- rows and backups -------------------------------------------------------------

function splitPath(path: string): { dir: string; name: string } {
  if (path === '/') return { dir: '', name: '' };
  const i = path.lastIndexOf('/');
  return { dir: i === 0 ? '/' : path.slice(0, i), name: path.slice(i + 1) };
}

function row(path: string, more: Partial<FileRow> = {}): FileRow {
  const type: FileType = more.type ?? 'file';
  return {
    path,
    ...splitPath(path),
    type,
    size: 100,
    mode: type === 'dir' ? 0o755 : 0o644,
    uid: 1000,
    gid: 1000,
    mtime: 1_700_000_000,
    atime: 1_700_000_001,
    ctime: 1_700_000_002,
    node: 42,
    parent: 2,
    fhInfo: 512,
    ...more,
  };
}

const dirRow = (path: string) => row(path, { type: 'dir', size: 0 });

function newBackup(more: Partial<NewBackup> = {}): NewBackup {
  return {
    server: '127.0.0.1:10000',
    path: '/export/home',
    tapeServer: '127.0.0.1:10000',
    butype: 'tar',
    level: 0,
    historyModel: 'path',
    recordSize: 10240,
    env: { FILESYSTEM: '/export/home', HIST: 'y', TYPE: 'tar', LEVEL: '0' },
    startedAt: 1_760_000_000_123,
    ...more,
  };
}

const result: BackupResult = {
  status: 'done',
  haltReason: 'SUCCESSFUL',
  bytes: 123_456_789,
  resultEnv: { DIRECT: 'y', DUMP_DATE: '1760000000' },
  finishedAt: 1_760_000_060_456,
};

const paths = (rows: readonly { path: string }[]) => rows.map((r) => r.path);

/** A backup holding `list` (paths; those ending in '/' are directories). */
async function backupOf(c: Catalog, list: string[], more: Partial<NewBackup> = {}): Promise<number> {
  const id = await c.beginBackup(newBackup(more));
  await c.addFiles(
    id,
    list.map((p) =>
      p.endsWith('/') && p !== '/' ? dirRow(p.slice(0, -1)) : p === '/' ? dirRow('/') : row(p),
    ),
  );
  return id;
}

// ---- the suite -------------------------------------------------------------------

function suite(kind: string, store: Store): void {
  describe(`catalog: ${kind}`, { timeout: 120_000 }, () => {
    after(() => store.done());

    /** Runs `f` on a fresh catalog, closed afterwards; skips when the store is missing. */
    const withCatalog =
      (f: (c: Catalog, reopen: () => Promise<Catalog>) => Promise<void>) =>
      async (t: TestContext): Promise<void> => {
        const made = await store.fresh(t);
        if (!made) return;
        try {
          await f(made.catalog, made.reopen);
        } finally {
          await made.catalog.close();
        }
      };

    test(
      'a backup from begin to finish: environment, tapes in seq order, files, status, result',
      withCatalog(async (c) => {
        assert.deepEqual(await c.listBackups(), []);
        const b = newBackup({
          env: { FILESYSTEM: '/export/home', HIST: 'y', 'ODD NAME': 'a "quoted" \\ value ü' },
        });
        const id = await c.beginBackup(b);
        await c.addFiles(id, [dirRow('/'), dirRow('/a'), row('/a/x')]);
        await c.addTapeSegment(id, {
          seq: 1,
          device: 'drive1',
          barcode: 'NDM002',
          tapeFile: 0,
          streamOffset: 1000,
          length: 500,
        });
        await c.addTapeSegment(id, {
          seq: 0,
          device: 'drive0',
          barcode: 'NDM001',
          tapeFile: 3,
          streamOffset: 0,
          length: 999,
        });
        // Given again with its final length: replaces the first.
        await c.addTapeSegment(id, {
          seq: 0,
          device: 'drive0',
          barcode: 'NDM001',
          tapeFile: 3,
          streamOffset: 0,
          length: 1000,
        });

        const running = (await c.getBackup(id))!;
        assert.deepEqual(running, {
          ...b,
          id,
          status: 'running',
          finishedAt: null,
          haltReason: null,
          bytes: 0,
          files: 3,
          resultEnv: {},
          serverId: '',
          tapeServerId: '',
          // Schema 3's pools and running DMA (docs/dma.md, "Pools and tapes", "A DMA that died").
          pool: 'default',
          forgottenAt: null,
          dmaHost: '',
          dmaPid: 0,
          heartbeatAt: b.startedAt,
          tapes: [
            { seq: 0, device: 'drive0', barcode: 'NDM001', tapeFile: 3, streamOffset: 0, length: 1000 },
            { seq: 1, device: 'drive1', barcode: 'NDM002', tapeFile: 0, streamOffset: 1000, length: 500 },
          ],
        });
        assert.deepEqual(Object.keys(running.env), Object.keys(b.env), 'env keeps its order');

        await c.addFiles(id, [row('/a/y')]);
        await c.finishBackup(id, result);
        const done = await c.getBackup(id);
        assert.deepEqual(done, {
          ...running,
          status: 'done',
          haltReason: 'SUCCESSFUL',
          bytes: result.bytes,
          finishedAt: result.finishedAt,
          resultEnv: result.resultEnv,
          files: 4,
        });

        const id2 = await c.beginBackup(
          newBackup({ level: 1, historyModel: 'dirnode', startedAt: b.startedAt + 1 }),
        );
        await c.finishBackup(id2, { ...result, status: 'failed', haltReason: 'CONNECT_ERROR' });
        const list = await c.listBackups();
        assert.deepEqual(
          list.map((x) => [x.id, x.status, x.haltReason, x.files, x.level, x.historyModel]),
          [
            [id2, 'failed', 'CONNECT_ERROR', 0, 1, 'dirnode'],
            [id, 'done', 'SUCCESSFUL', 4, 0, 'path'],
          ],
          'newest first',
        );
        assert.deepEqual(list[1], done);
        assert.equal(await c.getBackup(id2 + 100), null);
        await assert.rejects(c.finishBackup(id2 + 100, result), CatalogError);
        await assert.rejects(c.addFiles(id2 + 100, [row('/x')]), CatalogError);
        assert.deepEqual(await c.lookup(id2 + 100, ['/x']), [], 'nothing of a refused batch is kept');
      }),
    );

    test(
      '20,000 rows in batches of 1,000, then listDir at "/" and in a directory, by name',
      withCatalog(async (c) => {
        const id = await c.beginBackup(newBackup());
        const all: FileRow[] = [dirRow('/')];
        // 20 directories of 999 files each, the names in no particular order.
        for (let d = 0; d < 20; d++) {
          all.push(dirRow(`/dir${String(d).padStart(2, '0')}`));
          for (let f = 0; f < 999; f++) {
            const n = (f * 7919) % 999;
            all.push(
              row(`/dir${String(d).padStart(2, '0')}/file-${n}.dat`, { size: n, node: d * 1000 + n + 3 }),
            );
          }
        }
        assert.equal(all.length, 20_001);
        for (let i = 0; i < all.length; i += 1000) await c.addFiles(id, all.slice(i, i + 1000));
        assert.equal((await c.getBackup(id))!.files, 20_001);

        const top = await c.listDir(id, '/');
        assert.deepEqual(
          paths(top),
          Array.from({ length: 20 }, (_, d) => `/dir${String(d).padStart(2, '0')}`),
        );
        assert.ok(top.every((r) => r.type === 'dir' && r.dir === '/'));

        const inDir = await c.listDir(id, '/dir07');
        const expected = all
          .filter((r) => r.dir === '/dir07')
          .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
        assert.equal(inDir.length, 999);
        assert.deepEqual(inDir, expected);
        assert.deepEqual(await c.listDir(id, '/dir07/'), expected, 'a trailing slash is the same directory');
        assert.deepEqual(await c.listDir(id, '/nowhere'), []);
      }),
    );

    test(
      'listDir sorts by code point, the same in both stores',
      withCatalog(async (c) => {
        const names = ['😀', 'ｚ', 'a', 'B', 'é', '日', 'a b', 'a-b', 'a.b', 'a_b', 'Z'];
        const id = await backupOf(c, ['/', ...names.map((n) => `/${n}`)]);
        assert.deepEqual(
          (await c.listDir(id, '/')).map((r) => r.name),
          ['B', 'Z', 'a', 'a b', 'a-b', 'a.b', 'a_b', 'é', '日', 'ｚ', '😀'],
        );
      }),
    );

    test(
      'an entry sent twice keeps its last version, in one batch or across batches, and counts once',
      withCatalog(async (c) => {
        const id = await c.beginBackup(newBackup());
        await c.addFiles(id, [dirRow('/d'), row('/d/f', { size: 1 }), row('/d/f', { size: 2 }), row('/d/g')]);
        assert.equal((await c.lookup(id, ['/d/f']))[0]!.size, 2);
        await c.addFiles(id, [dirRow('/d'), row('/d/f', { size: 3, fhInfo: null }), row('/d/h')]);
        const [f] = await c.lookup(id, ['/d/f']);
        assert.equal(f!.size, 3);
        assert.equal(f!.fhInfo, null);
        assert.equal((await c.getBackup(id))!.files, 4);
        assert.deepEqual(paths(await c.listDir(id, '/d')), ['/d/f', '/d/g', '/d/h']);
      }),
    );

    test(
      'lookup: the rows of the paths that exist, the root included, in the order asked',
      withCatalog(async (c) => {
        const id = await backupOf(c, [
          '/',
          '/etc/',
          '/etc/hosts',
          '/etc/ssh/',
          '/etc/ssh/sshd_config',
          '/home/',
        ]);
        const got = await c.lookup(id, [
          '/etc/ssh/sshd_config',
          '/missing',
          '/',
          '/etc/nope',
          '/etc',
          '/etc/hosts',
        ]);
        assert.deepEqual(paths(got), ['/etc/ssh/sshd_config', '/', '/etc', '/etc/hosts']);
        assert.deepEqual(got[1], { ...dirRow('/'), dir: '', name: '' });
        assert.equal(got[2]!.type, 'dir');
        assert.deepEqual(await c.lookup(id, []), []);
        assert.deepEqual(await c.lookup(id + 1, ['/etc']), []);
      }),
    );

    describe('find', () => {
      const names = [
        'a.txt',
        'b.txt',
        'CAPS.TXT',
        'a.TXT',
        'abc',
        'aXc',
        'a.c',
        'ac',
        'bcd',
        '100%',
        'x_y',
        'x%y',
        'xy',
        'star*name',
        'starname',
        'q?',
        'qq',
        'naïve.txt',
        '日本語.txt',
        'with space.txt',
        '[br]acket',
        'bracket',
        ']x',
        '^x',
        '-x',
        // Names are stored printed (docs/names.md): a backslash is `\\`, a newline `\x0a`.
        'back\\\\slash',
        'dollar$',
        'paren(1)',
        'line\\x0abreak',
        'caf\\xe9',
      ];
      const tree = [
        '/',
        '/d1/',
        ...names.map((n) => `/d1/${n}`),
        '/d1/sub/',
        '/d1/sub/deep.txt',
        '/d2/',
        '/d2/a.txt',
      ];

      const cases: Array<[pattern: string, expected: string[]]> = [
        [
          '*.txt',
          [
            '/d1/a.txt',
            '/d1/b.txt',
            '/d1/naïve.txt',
            '/d1/sub/deep.txt',
            '/d1/with space.txt',
            '/d1/日本語.txt',
            '/d2/a.txt',
          ],
        ],
        ['a?c', ['/d1/a.c', '/d1/aXc', '/d1/abc']],
        ['a.c', ['/d1/a.c']],
        [
          '[ab]*',
          [
            '/d1/a.TXT',
            '/d1/a.c',
            '/d1/a.txt',
            '/d1/aXc',
            '/d1/abc',
            '/d1/ac',
            '/d1/b.txt',
            '/d1/back\\\\slash',
            '/d1/bcd',
            '/d1/bracket',
            '/d2/a.txt',
          ],
        ],
        ['[a-b]c*', ['/d1/ac', '/d1/bcd']],
        [
          '[!abcdilnpqswx-]*',
          ['/d1/100%', '/d1/CAPS.TXT', '/d1/[br]acket', '/d1/]x', '/d1/^x', '/d1/日本語.txt'],
        ],
        ['*%*', ['/d1/100%', '/d1/x%y']],
        ['x_y', ['/d1/x_y']],
        ['*_*', ['/d1/x_y']],
        ['x?y', ['/d1/x%y', '/d1/x_y']],
        ['star*name', ['/d1/star*name', '/d1/starname']],
        ['star\\*name', ['/d1/star*name']],
        ['q\\?', ['/d1/q?']],
        ['q?', ['/d1/q?', '/d1/qq']],
        ['\\[br]acket', ['/d1/[br]acket']],
        ['[[]br]acket', ['/d1/[br]acket']],
        ['[]]x', ['/d1/]x']],
        ['[\\^]x', ['/d1/^x']],
        ['[-]x', ['/d1/-x']],
        ['[!]^a-z[]x', ['/d1/-x']],
        // A printed name pasted as a pattern matches itself; `\\x` hex in either case.
        ['back\\\\slash', ['/d1/back\\\\slash']],
        ['back\\slash', []],
        ['*\\\\*', ['/d1/back\\\\slash']],
        ['dollar$', ['/d1/dollar$']],
        ['paren(1)', ['/d1/paren(1)']],
        ['line\\x0abreak', ['/d1/line\\x0abreak']],
        ['line\\x0Abreak', ['/d1/line\\x0abreak']],
        ['line????break', ['/d1/line\\x0abreak']],
        ['line*', ['/d1/line\\x0abreak']],
        ['caf\\xe9', ['/d1/caf\\xe9']],
        // One stored backslash (any escaped byte) only in brackets: `\\` is the printed backslash.
        ['*[\\\\]x*', ['/d1/caf\\xe9', '/d1/line\\x0abreak']],
        ['?本語.*', ['/d1/日本語.txt']],
        ['na[ï]ve.txt', ['/d1/naïve.txt']],
        ['with space*', ['/d1/with space.txt']],
        ['*.TXT', ['/d1/CAPS.TXT', '/d1/a.TXT']],
        ['[z-a]*', []],
        ['nothing', []],
        // With a '/': the whole path, and '*' crosses directories.
        [
          '/d1/*.txt',
          [
            '/d1/a.txt',
            '/d1/b.txt',
            '/d1/naïve.txt',
            '/d1/sub/deep.txt',
            '/d1/with space.txt',
            '/d1/日本語.txt',
          ],
        ],
        ['/d?/a.txt', ['/d1/a.txt', '/d2/a.txt']],
        ['*/sub/*', ['/d1/sub/deep.txt']],
        ['/', ['/']],
      ];

      for (const [pattern, expected] of cases) {
        test(
          `${JSON.stringify(pattern)}`,
          withCatalog(async (c) => {
            const id = await backupOf(c, tree);
            const got = await c.find(pattern);
            assert.deepEqual(paths(got), expected);
            assert.ok(got.every((r) => r.backupId === id));
          }),
        );
      }

      test(
        'a character class is refused plainly',
        withCatalog(async (c) => {
          await assert.rejects(
            c.find('[[:alpha:]]*'),
            (e: Error) => e instanceof CatalogError && /not supported/.test(e.message),
          );
        }),
      );

      test(
        'newest backup first, then by path; backupId and limit',
        withCatalog(async (c) => {
          const list = ['/', '/a/', '/a/b/', '/a/b/x.txt', '/a.c', '/a-b/', '/a-b/x.txt', '/a/y.txt'];
          const first = await backupOf(c, list);
          const second = await backupOf(c, list);
          const got = await c.find('*');
          const order = ['/', '/a', '/a-b', '/a-b/x.txt', '/a.c', '/a/b', '/a/b/x.txt', '/a/y.txt'];
          assert.deepEqual(
            got.map((r) => [r.backupId, r.path]),
            [...order.map((p) => [second, p]), ...order.map((p) => [first, p])],
          );
          assert.deepEqual(
            (await c.find('*.txt', { backupId: first })).map((r) => [r.backupId, r.path]),
            [
              [first, '/a-b/x.txt'],
              [first, '/a/b/x.txt'],
              [first, '/a/y.txt'],
            ],
          );
          assert.deepEqual(
            (await c.find('*.txt', { limit: 4 })).map((r) => [r.backupId, r.path]),
            [
              [second, '/a-b/x.txt'],
              [second, '/a/b/x.txt'],
              [second, '/a/y.txt'],
              [first, '/a-b/x.txt'],
            ],
          );
          // 0: no limit (ndmp find --limit 0).
          assert.equal((await c.find('*', { limit: 0 })).length, (await c.find('*', { limit: 100 })).length);
          assert.ok((await c.find('*', { limit: 0 })).length > 4);
          assert.equal((await c.find('*', { backupId: second + 1 })).length, 0);
        }),
      );

      test(
        'the default limit is 1,000',
        withCatalog(async (c) => {
          const id = await c.beginBackup(newBackup());
          await c.addFiles(
            id,
            Array.from({ length: 1500 }, (_, i) => row(`/f${i}`)),
          );
          assert.equal((await c.find('f*')).length, 1000);
          assert.equal((await c.find('f*', { limit: 2000 })).length, 1500);
        }),
      );
    });

    test(
      'directory listings (point-in-time): stored as given, appended when listed again, deleted with their backup',
      withCatalog(async (c) => {
        const a = await c.beginBackup(newBackup({ level: 1 }));
        const b = await c.beginBackup(newBackup({ level: 1 }));
        assert.equal(await c.hasListings(a), false);
        assert.equal(await c.getListing(a, '/'), null);
        // Printed names, odd ones too; an empty directory has an empty listing, not none.
        await c.addListings(a, [
          { dir: '/', names: ['caf\\xe9', 'back\\\\slash', 'two\\x0alines', 'empty'] },
          { dir: '/empty', names: [] },
          { dir: '/caf\\xe9', names: ['x'] },
        ]);
        await c.addListings(a, [{ dir: '/caf\\xe9', names: ['y', 'z'] }]);
        await c.addListings(a, [{ dir: '/empty', names: [] }]);
        assert.equal(await c.hasListings(a), true);
        assert.equal(await c.hasListings(b), false);
        assert.deepEqual(await c.getListing(a, '/'), ['caf\\xe9', 'back\\\\slash', 'two\\x0alines', 'empty']);
        assert.deepEqual(await c.getListing(a, '/caf\\xe9/'), ['x', 'y', 'z']);
        assert.deepEqual(await c.getListing(a, '/empty'), []);
        assert.equal(await c.getListing(b, '/'), null);
        // One call naming a directory twice (PostgreSQL merges it before its one statement).
        await c.addListings(b, [
          { dir: '/d', names: ['1'] },
          { dir: '/d', names: ['2'] },
        ]);
        assert.deepEqual(await c.getListing(b, '/d'), ['1', '2']);
        // What the stores could not give back as it came is refused.
        await assert.rejects(c.addListings(a, [{ dir: '/', names: ['a/b'] }]), CatalogError);
        await assert.rejects(c.addListings(a, [{ dir: '/', names: ['raw\nnewline'] }]), CatalogError);
        await assert.rejects(c.addListings(a, [{ dir: 'relative', names: [] }]), CatalogError);
        await assert.rejects(c.addListings(9999, [{ dir: '/', names: [] }]), /no backup 9999/);
        await c.deleteBackup(a);
        assert.equal(await c.hasListings(a), false);
        assert.deepEqual(await c.getListing(b, '/d'), ['1', '2']);
      }),
    );

    test(
      'tapesInUse: every device and barcode written',
      withCatalog(async (c) => {
        assert.deepEqual(await c.tapesInUse(), new Set());
        const a = await c.beginBackup(newBackup());
        const b = await c.beginBackup(newBackup());
        const seg = { tapeFile: 0, streamOffset: 0, length: 10 };
        await c.addTapeSegment(a, { seq: 0, device: 'drive0', barcode: 'NDM001', ...seg });
        await c.addTapeSegment(a, { seq: 1, device: 'drive0', barcode: 'NDM002', ...seg });
        await c.addTapeSegment(b, { seq: 0, device: '/srv/tapes/image1', barcode: null, ...seg });
        assert.deepEqual(await c.tapesInUse(), new Set(['drive0', 'NDM001', 'NDM002', '/srv/tapes/image1']));
      }),
    );

    test(
      'pools, heartbeats, forgetting and abandoned backups (docs/dma.md, "Pools and tapes")',
      withCatalog(async (c) => {
        assert.deepEqual(await c.listTapes(), []);
        await c.putTape({
          tapeServer: 'hid',
          barcode: 'NDM002',
          pool: 'p',
          state: 'appendable',
          updatedAt: 5,
        });
        await c.putTape({
          tapeServer: 'hid',
          barcode: 'NDM001',
          pool: 'p',
          state: 'appendable',
          updatedAt: 5,
        });
        await c.putTape({ tapeServer: 'hid', barcode: 'NDM001', pool: 'q', state: 'full', updatedAt: 6 });
        await c.putTape({
          tapeServer: 'other',
          barcode: 'NDM001',
          pool: 'p',
          state: 'recyclable',
          updatedAt: 7,
        });
        assert.deepEqual(await c.listTapes(), [
          { tapeServer: 'hid', barcode: 'NDM001', pool: 'q', state: 'full', updatedAt: 6 },
          { tapeServer: 'hid', barcode: 'NDM002', pool: 'p', state: 'appendable', updatedAt: 5 },
          { tapeServer: 'other', barcode: 'NDM001', pool: 'p', state: 'recyclable', updatedAt: 7 },
        ]);

        const id = await c.beginBackup(newBackup({ pool: 'p', dmaHost: 'dmahost', dmaPid: 4242 }));
        let b = (await c.getBackup(id))!;
        assert.deepEqual([b.pool, b.dmaHost, b.dmaPid, b.heartbeatAt], ['p', 'dmahost', 4242, b.startedAt]);
        const seg = { seq: 0, device: 'tapes/NDM002', barcode: 'NDM002', tapeFile: 1, streamOffset: 0 };
        await c.addTapeSegment(id, { ...seg, length: 0 });
        await c.heartbeat(id, b.startedAt + 2000, 777);
        await c.addTapeSegment(id, { ...seg, length: 777 });
        await c.addTapeSegment(id, { ...seg, seq: 1, length: 0 });
        await c.removeTapeSegment(id, 1);
        b = (await c.getBackup(id))!;
        assert.equal(b.heartbeatAt, b.startedAt + 2000);
        assert.equal(b.bytes, 777);
        assert.deepEqual(b.tapes, [{ ...seg, length: 777 }]);

        // Closed as failed once, keeping its bytes and tapes; not again, and never a finished one.
        assert.equal(await c.failAbandoned(id, 'abandoned: gone', b.startedAt + 2000), true);
        assert.equal(await c.failAbandoned(id, 'abandoned: again', 1), false);
        b = (await c.getBackup(id))!;
        assert.deepEqual(
          [b.status, b.haltReason, b.bytes, b.finishedAt],
          ['failed', 'abandoned: gone', 777, b.startedAt + 2000],
        );
        assert.equal(b.tapes.length, 1);
        await c.heartbeat(id, 1, 1); // a finished backup's heartbeat changes nothing
        assert.equal((await c.getBackup(id))!.bytes, 777);

        const other = await c.beginBackup(newBackup());
        await c.forgetBackups([id, other], 9);
        await c.forgetBackups([id], 10); // forgotten once: the first time stays
        assert.deepEqual(
          (await c.listBackups()).map((x) => [x.id, x.forgottenAt]),
          [
            [other, 9],
            [id, 9],
          ],
        );
      }),
    );

    test(
      'deleteBackup removes its rows and tapes, and leaves the others',
      withCatalog(async (c) => {
        const keep = await backupOf(c, ['/', '/a/', '/a/x.txt']);
        const gone = await backupOf(c, ['/', '/a/', '/a/x.txt', '/a/y.txt']);
        const seg = { tapeFile: 0, streamOffset: 0, length: 10 };
        await c.addTapeSegment(keep, { seq: 0, device: 'drive0', barcode: 'NDM001', ...seg });
        await c.addTapeSegment(gone, { seq: 0, device: 'drive1', barcode: 'NDM009', ...seg });
        await c.deleteBackup(gone);
        assert.equal(await c.getBackup(gone), null);
        assert.deepEqual(
          (await c.listBackups()).map((b) => b.id),
          [keep],
        );
        assert.deepEqual(await c.listDir(gone, '/a'), []);
        assert.deepEqual(await c.lookup(gone, ['/a/x.txt']), []);
        assert.deepEqual(
          (await c.find('*.txt')).map((r) => [r.backupId, r.path]),
          [[keep, '/a/x.txt']],
        );
        assert.deepEqual(await c.tapesInUse(), new Set(['drive0', 'NDM001']));
        assert.equal((await c.getBackup(keep))!.files, 3);
        await c.deleteBackup(gone); // again: nothing to do
        // A deleted backup's id is not given again.
        assert.ok((await c.beginBackup(newBackup())) > gone);
      }),
    );

    test(
      'integers up to 2^53-1 round-trip exactly; node and fhInfo may be null; unsafe ones are refused',
      withCatalog(async (c) => {
        const id = await c.beginBackup(newBackup({ startedAt: MAX, recordSize: 2 ** 32 }));
        const big = row('/big', {
          size: MAX,
          fhInfo: MAX,
          node: MAX,
          parent: MAX - 1,
          mtime: MAX,
          atime: -1,
          ctime: 0,
          uid: 2 ** 32 - 2,
          gid: 2 ** 32 - 1,
          mode: 0o7777,
        });
        const none = row('/none', { node: null, parent: null, fhInfo: null, size: 0 });
        await c.addFiles(id, [big, none]);
        assert.deepEqual(await c.lookup(id, ['/big', '/none']), [big, none]);
        await c.addTapeSegment(id, {
          seq: 0,
          device: 'd',
          barcode: null,
          tapeFile: MAX,
          streamOffset: MAX,
          length: MAX,
        });
        await c.finishBackup(id, { ...result, bytes: MAX, finishedAt: MAX });
        const b = (await c.getBackup(id))!;
        assert.equal(b.startedAt, MAX);
        assert.equal(b.recordSize, 2 ** 32);
        assert.equal(b.bytes, MAX);
        assert.equal(b.finishedAt, MAX);
        assert.deepEqual(b.tapes[0], {
          seq: 0,
          device: 'd',
          barcode: null,
          tapeFile: MAX,
          streamOffset: MAX,
          length: MAX,
        });
        assert.equal(typeof b.files, 'number');
        await assert.rejects(c.addFiles(id, [row('/huge', { size: 2 ** 53 })]), CatalogError);
        await assert.rejects(c.addFiles(id, [row('/frac', { fhInfo: 1.5 })]), CatalogError);
        await assert.rejects(c.addFiles(id, [{ ...row('/a/b'), dir: '/a/' }]), CatalogError);
        assert.equal((await c.getBackup(id))!.files, 2, 'a refused batch adds nothing');
      }),
    );

    test(
      'two backups of the same paths stay separate',
      withCatalog(async (c) => {
        const a = await c.beginBackup(newBackup());
        const b = await c.beginBackup(newBackup());
        await c.addFiles(a, [dirRow('/d'), row('/d/f', { size: 1 })]);
        await c.addFiles(b, [dirRow('/d'), row('/d/f', { size: 2 }), row('/d/g')]);
        assert.equal((await c.lookup(a, ['/d/f']))[0]!.size, 1);
        assert.equal((await c.lookup(b, ['/d/f']))[0]!.size, 2);
        assert.deepEqual(paths(await c.listDir(a, '/d')), ['/d/f']);
        assert.deepEqual(paths(await c.listDir(b, '/d')), ['/d/f', '/d/g']);
        assert.equal((await c.getBackup(a))!.files, 2);
        assert.equal((await c.getBackup(b))!.files, 3);
        assert.deepEqual(
          (await c.find('f')).map((r) => [r.backupId, r.size]),
          [
            [b, 2],
            [a, 1],
          ],
        );
      }),
    );

    test(
      'reopened, the catalog still holds everything; two opening it at once both succeed',
      withCatalog(async (c, reopen) => {
        const id = await backupOf(c, ['/', '/a/', '/a/x']);
        await c.finishBackup(id, result);
        const before = await c.getBackup(id);
        await c.close();
        const [again, other] = await Promise.all([reopen(), reopen()]);
        try {
          assert.deepEqual(await again.getBackup(id), before);
          assert.deepEqual(paths(await other.listDir(id, '/a')), ['/a/x']);
        } finally {
          await again.close();
          await other.close();
        }
      }),
    );

    // ---- names are bytes (docs/names.md) ----------------------------------------

    describe('byte names', () => {
      /** The lossless string of `bytes` given as latin1 text ('caf\xe9' is c a f 0xE9). */
      const bytes = (latin1: string) => decodeName(Buffer.from(latin1, 'latin1'));
      /** A row as history ingest makes it: the lossless path stored in its printed form. */
      const stored = (lossless: string, more: Partial<FileRow> = {}) => row(catalogPath(lossless), more);

      const top = bytes('/Fran\xe7ais');
      const tree = [
        `${top}/caf\udce9.txt`, // Latin-1 é: not UTF-8
        `${top}/two\nlines`,
        `${top}/back\\slash`,
        `${top}/tab\there`,
        `${top}/é-utf8.txt`,
        `${top}/mixed é\udce9\u0085`, // UTF-8 é, a Latin-1 byte, a C1 control (U+0085)
      ];

      test(
        'Latin-1 names, a newline, a backslash: stored printed, listed, found, resolved to the exact bytes',
        withCatalog(async (c) => {
          const id = await c.beginBackup(newBackup());
          await c.addFiles(id, [
            dirRow('/'),
            stored(top, { type: 'dir', size: 0 }),
            ...tree.map((p) => stored(p)),
          ]);
          assert.equal(escapeName(top), '/Fran\\xe7ais');

          const listed = await c.listDir(id, '/Fran\\xe7ais');
          assert.deepEqual(
            listed.map((r) => r.name),
            [
              'back\\\\slash',
              'caf\\xe9.txt',
              'mixed é\\xe9\\xc2\\x85',
              'tab\\x09here',
              'two\\x0alines',
              'é-utf8.txt',
            ],
          );
          assert.deepEqual(
            listed.map((r) => unescapeName(r.path)).sort(),
            [...tree].sort(),
            'every printed path unescapes to the lossless name it was',
          );
          assert.deepEqual(
            encodeName(unescapeName(listed[1]!.path)),
            Buffer.from('/Fran\xe7ais/caf\xe9.txt', 'latin1'),
          );

          const found = async (pattern: string) => paths(await c.find(pattern));
          assert.deepEqual(await found('caf\\xe9.txt'), ['/Fran\\xe7ais/caf\\xe9.txt']);
          assert.deepEqual(await found('caf\\xE9.*'), ['/Fran\\xe7ais/caf\\xe9.txt']);
          assert.deepEqual(await found('two\\x0alines'), ['/Fran\\xe7ais/two\\x0alines']);
          assert.deepEqual(await found('back\\\\slash'), ['/Fran\\xe7ais/back\\\\slash']);
          assert.deepEqual(await found('*é*'), [
            '/Fran\\xe7ais/mixed é\\xe9\\xc2\\x85',
            '/Fran\\xe7ais/é-utf8.txt',
          ]);
          assert.equal((await found('/Fran\\xe7ais/*')).length, 6);
          assert.deepEqual(await found('Fran\\xe7ais'), ['/Fran\\xe7ais']);

          // restore's look-up: the printed form, or a backslash typed plainly.
          const backup = { id } as BackupRecord;
          const got = await resolvePaths(c, backup, [
            '/Fran\\xe7ais/caf\\xe9.txt',
            '/Fran\\xe7ais/back\\\\slash',
            '/Fran\\xe7ais/back\\slash',
            '/Fran\\xe7ais/two\\x0alines',
            '/Fran\\xe7ais/',
          ]);
          assert.deepEqual(
            got.map((r) => unescapeName(r.path)),
            [tree[0], tree[2], tree[2], tree[1], top],
          );
          await assert.rejects(resolvePaths(c, backup, ['/Fran\\xe7ais/caf\\xe8.txt']), /not in backup/);
        }),
      );

      test(
        'a row holding a raw name (an escaped byte, a control character) is refused: names are stored printed',
        withCatalog(async (c) => {
          const id = await c.beginBackup(newBackup());
          await assert.rejects(c.addFiles(id, [row(`/caf\udce9`)]), /printed form/);
          await assert.rejects(c.addFiles(id, [row('/two\nlines')]), /printed form/);
          await assert.rejects(c.addFiles(id, [row('/a/b\u0085')]), /printed form/);
          assert.equal((await c.getBackup(id))!.files, 0);
          // Characters beyond the BMP (surrogate pairs) are plain text.
          await c.addFiles(id, [row('/😀')]);
          assert.equal((await c.lookup(id, ['/😀'])).length, 1);
        }),
      );

      test(
        'paths of 4,095 Latin-1 bytes (16 KB printed), many of them: stored, listed, looked up, found',
        withCatalog(async (c) => {
          // 15 directories of 255-byte names and a 254-byte file name: 15 * 256 + 255 = 4,095 bytes.
          const component = (tag: string, n: number) =>
            decodeName(Buffer.concat([Buffer.from(tag), Buffer.alloc(n - tag.length, 0xe9)]));
          const chains = 8;
          const perDir = 40;
          const rows: FileRow[] = [dirRow('/')];
          const deepDirs: string[] = [];
          const seen = new Set<string>();
          for (let k = 0; k < chains; k++) {
            let dir = '';
            for (let d = 0; d < 15; d++) {
              // The chains share their first 14 levels and part at the last.
              dir += `/${component(d === 14 ? `c${k}` : `d${d}`, 255)}`;
              if (!seen.has(dir)) rows.push(stored(dir, { type: 'dir', size: 0 }));
              seen.add(dir);
            }
            deepDirs.push(dir);
            for (let f = 0; f < perDir; f++)
              rows.push(stored(`${dir}/${component(`f${String(f).padStart(3, '0')}`, 254)}`));
          }
          const longest = unescapeName(rows.at(-1)!.path);
          assert.equal(encodeName(longest).length, 4095);
          assert.ok(rows.at(-1)!.path.length > 16_000, `${rows.at(-1)!.path.length} printed`);
          const id = await c.beginBackup(newBackup());
          for (let i = 0; i < rows.length; i += 100) await c.addFiles(id, rows.slice(i, i + 100));
          assert.equal((await c.getBackup(id))!.files, rows.length);

          const inDeep = await c.listDir(id, catalogPath(deepDirs[3]!));
          assert.equal(inDeep.length, perDir);
          assert.deepEqual(
            inDeep.map((r) => unescapeName(r.path)),
            Array.from(
              { length: perDir },
              (_, f) => `${deepDirs[3]}/${component(`f${String(f).padStart(3, '0')}`, 254)}`,
            ),
          );
          const want = [rows.at(-1)!.path, catalogPath(deepDirs[0]!), rows[20]!.path];
          assert.deepEqual(paths(await c.lookup(id, want)), want);
          assert.deepEqual(paths(await resolvePaths(c, { id } as BackupRecord, want)), want);
          // Sent again: the long rows are updated in place, not added.
          await c.addFiles(id, [{ ...rows.at(-1)!, size: 7 }]);
          assert.equal((await c.lookup(id, [rows.at(-1)!.path]))[0]!.size, 7);
          assert.equal((await c.getBackup(id))!.files, rows.length);

          assert.equal((await c.find('f007*')).length, chains);
          assert.equal((await c.find('*/c5\\xe9*/f0*', { limit: 5000 })).length, perDir);
          await c.deleteBackup(id);
          assert.deepEqual(await c.listDir(id, catalogPath(deepDirs[3]!)), []);
        }),
      );

      test(
        `a name over ${MAX_NAME_BYTES} bytes printed is refused by both stores alike; one of 255 Latin-1 bytes is kept`,
        withCatalog(async (c) => {
          const id = await c.beginBackup(newBackup());
          const name255 = escapeName(decodeName(Buffer.alloc(255, 0xff)));
          await c.addFiles(id, [row(`/${name255}`)]);
          assert.equal((await c.listDir(id, '/'))[0]!.name, name255);
          await assert.rejects(
            c.addFiles(id, [row(`/${'n'.repeat(MAX_NAME_BYTES + 1)}`)]),
            /over the catalog/,
          );
        }),
      );

      test(
        'history ingest stores the lossless names of FH_ADD_FILE printed; too-long names are left out and counted',
        withCatalog(async (c) => {
          const handlers = new Map<unknown, (body: unknown) => void>();
          const client = {
            onPost: (m: unknown, f: (body: unknown) => void) => handlers.set(m, f),
            pauseReading: () => undefined,
            resumeReading: () => undefined,
          } as unknown as NdmpClient;
          const id = await c.beginBackup(newBackup());
          const ingest = new HistoryIngest(client, c, id);
          const file = (unixName: string) => ({
            names: [{ fsType: 0, unixName }],
            stats: [],
            node: 0xffffffffffffffffn,
            fhInfo: 0xffffffffffffffffn,
          });
          handlers.get(M.FH_ADD_FILE)!({
            files: [file('.'), file(top), ...tree.map(file), file(`/${'x'.repeat(MAX_NAME_BYTES + 1)}`)],
          });
          await ingest.drain(10_000);
          assert.equal(ingest.tooLong, 1);
          assert.equal(ingest.rows, tree.length + 2);
          assert.deepEqual(
            (await c.listDir(id, '/Fran\\xe7ais')).map((r) => unescapeName(r.path)).sort(),
            [...tree].sort(),
          );
        }),
      );

      test(`a catalog of schema 1 is migrated to ${SCHEMA_VERSION}: names with backslashes and control characters escaped, the rest kept`, async (t) => {
        const v1: V1File[] = [
          { dir: '', name: '', type: 'dir' },
          { dir: '/', name: 'plain', type: 'dir' },
          { dir: '/plain', name: 'é.txt', type: 'file' },
          { dir: '/', name: 'a\\b', type: 'dir' }, // a directory with a backslash: its children move too
          { dir: '/a\\b', name: 'x', type: 'file' },
          { dir: '/a\\b', name: 'a\\\\b', type: 'file' }, // two backslashes: escaped, it must not meet...
          { dir: '/a\\b', name: 'a\\b', type: 'file' }, // ...this one's new name half-way
          { dir: '/', name: 'two\nlines\t\u0085', type: 'file' },
          { dir: '/', name: 'a\\\\b', type: 'file' },
        ];
        const made = await store.fromV1(t, v1);
        if (!made) return;
        const c = made.catalog;
        try {
          assert.equal(await made.version(), String(SCHEMA_VERSION));
          const b = (await c.getBackup(1))!;
          assert.equal(b.files, v1.length);
          assert.deepEqual(paths(await c.listDir(1, '/')), [
            '/a\\\\\\\\b',
            '/a\\\\b',
            '/plain',
            '/two\\x0alines\\x09\\xc2\\x85',
          ]);
          assert.deepEqual(paths(await c.listDir(1, '/a\\\\b')), [
            '/a\\\\b/a\\\\\\\\b',
            '/a\\\\b/a\\\\b',
            '/a\\\\b/x',
          ]);
          assert.deepEqual(paths(await c.lookup(1, ['/plain/é.txt', '/', '/a\\\\b/x'])), [
            '/plain/é.txt',
            '/',
            '/a\\\\b/x',
          ]);
          assert.deepEqual(paths(await c.find('two\\x0a*')), ['/two\\x0alines\\x09\\xc2\\x85']);
          // Every migrated name is what escapeName makes of the old one.
          const all = await c.find('*', { limit: 100 });
          assert.deepEqual(all.map((r) => r.name).sort(), v1.map((f) => escapeName(f.name)).sort());
          // And the migrated catalog takes new rows.
          await c.addFiles(1, [row('/a\\\\b/new')]);
          assert.equal((await c.listDir(1, '/a\\\\b')).length, 4);
        } finally {
          await c.close();
        }
      });
    });
  });
}

suite('SQLite', sqliteStore);
suite('PostgreSQL', postgresStore);

// ---- openCatalog -------------------------------------------------------------------

describe('openCatalog', () => {
  test('no spec: catalog.sqlite in the default dir, created 0700; the file is 0600', async () => {
    const dir = join(tmpRoot, 'state', 'ndmp');
    const c = await openCatalog(undefined, dir);
    try {
      assert.equal(c.location, `sqlite:${join(dir, 'catalog.sqlite')}`);
      assert.equal(fs.statSync(dir).mode & 0o777, 0o700);
      assert.equal(fs.statSync(join(dir, 'catalog.sqlite')).mode & 0o777, 0o600);
    } finally {
      await c.close();
    }
  });

  test('a path is a SQLite file; "sqlite:PATH" too', async () => {
    const file = join(tmpRoot, 'spec', 'my.db');
    const c = await openCatalog(file, '/nonexistent');
    const id = await c.beginBackup(newBackup());
    await c.close();
    const again = await openCatalog(`sqlite:${file}`, '/nonexistent');
    try {
      assert.equal(again.location, `sqlite:${file}`);
      assert.equal((await again.getBackup(id))?.id, id);
    } finally {
      await again.close();
    }
  });

  test('a SQLite path that cannot be created is a CatalogError naming it', async () => {
    const file = join(tmpRoot, 'plain-file');
    fs.writeFileSync(file, 'not a directory');
    await assert.rejects(
      openCatalog(join(file, 'catalog.sqlite'), tmpRoot),
      (e: Error) => e instanceof CatalogError && e.message.includes(join(file, 'catalog.sqlite')),
    );
    await assert.rejects(
      openCatalog(file, tmpRoot),
      (e: Error) => e instanceof CatalogError && /not a database/.test(e.message),
    );
  });

  test('an unreachable PostgreSQL is a CatalogError naming host and database, never the password', async () => {
    for (const scheme of ['postgres', 'postgresql']) {
      await assert.rejects(
        openCatalog(`${scheme}://ndmp:s3cr3t-pw@127.0.0.1:1/catalog_db`, tmpRoot),
        (e: Error) => {
          assert.ok(e instanceof CatalogError, String(e));
          assert.match(e.message, /127\.0\.0\.1:1/);
          assert.match(e.message, /catalog_db/);
          assert.doesNotMatch(e.message, /s3cr3t/);
          return true;
        },
      );
    }
  });

  test('DMAs opening a new PostgreSQL catalog at once all get it, created once', async (t) => {
    if (!requirePostgres(t)) return;
    const url = await freshSchemaUrl();
    const all = await Promise.all(Array.from({ length: 6 }, () => PostgresCatalog.open(url)));
    try {
      const ids = await Promise.all(all.map((c) => c.beginBackup(newBackup())));
      assert.equal(new Set(ids).size, 6);
      assert.equal((await all[0]!.listBackups()).length, 6);
    } finally {
      await Promise.all(all.map((c) => c.close()));
    }
  });

  test('a PostgreSQL URL opens PostgreSQL; its location shows no password', async (t) => {
    if (!requirePostgres(t)) return;
    const c = await openCatalog(await freshSchemaUrl(), tmpRoot);
    try {
      assert.ok(c instanceof PostgresCatalog);
      const u = new URL(POSTGRES_URL!);
      assert.ok(c.location.startsWith('postgres'));
      assert.ok(c.location.includes(u.hostname));
      if (u.password) assert.ok(!c.location.includes(`:${u.password}@`), c.location);
    } finally {
      await c.close();
    }
  });
});
