// Catalog ingest and queries: --catalog-rows FileRows (1,000,000) of one
// backup, paths of 40-60 characters in ~1,100 directories, handed to
// addFiles in batches of --catalog-batch (2,000) in the order a server walks
// the tree (a directory's entries together, not sorted). Then listDir, lookup
// and find on the result. SQLite always; PostgreSQL too when a URL is given
// (--catalog-postgres URL or NDMP_BENCH_POSTGRES; its own schema, dropped
// afterwards).
//
// Baseline: a DMA gets history at most as fast as the server sends it, and
// the server's history thread delivers ~1 M entries/s to a fast reader; a
// catalog at >= 300,000 rows/s (the SQLite target) keeps up with any real
// backup (100,000 files/s per session is fast).
//
// Rows/s counts only the time inside addFiles (making the rows is not
// timed); "wall" includes it.
//
//   node dist/bench/catalog.js --catalog-rows 200000
//   npm run bench -- --catalog-postgres postgres://ndmp:ndmp@127.0.0.1/ndmp_test

import fs from 'node:fs';
import os from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import pg from 'pg';

import { PostgresCatalog } from '../src/catalog/postgres.js';
import { SqliteCatalog } from '../src/catalog/sqlite.js';
import type { Catalog, FileRow } from '../src/catalog/types.js';

interface Options {
  rows: number;
  batch: number;
  postgres: string | null;
}

function parseOptions(argv: string[], strict: boolean): Options {
  const { values } = parseArgs({
    args: argv,
    strict,
    allowPositionals: true,
    options: {
      'catalog-rows': { type: 'string', default: '1000000' },
      'catalog-batch': { type: 'string', default: '2000' },
      'catalog-postgres': { type: 'string' },
    },
  });
  const num = (k: 'catalog-rows' | 'catalog-batch') => {
    const n = Number(values[k]);
    if (!Number.isSafeInteger(n) || n < 1)
      throw new Error(`--${k} must be a whole number ≥ 1, not '${values[k]}'`);
    return n;
  };
  const pgUrl = values['catalog-postgres'];
  return {
    rows: num('catalog-rows'),
    batch: num('catalog-batch'),
    postgres: (typeof pgUrl === 'string' ? pgUrl : null) ?? process.env.NDMP_BENCH_POSTGRES ?? null,
  };
}

// ---- the tree ---------------------------------------------------------------------

const EXT = ['.c', '.h', '.txt', '.json', '.log', '.md', '.ts', '.png'];
const FANOUT = 10;

/** Leaf directories "/export/home/user-3/projects-7/src-4" (36 chars; the files in them 55-58): FANOUT^3 of them. */
function leafDirs(): string[] {
  const out: string[] = [];
  for (let a = 0; a < FANOUT; a++) {
    for (let b = 0; b < FANOUT; b++) {
      for (let c = 0; c < FANOUT; c++) out.push(`/export/home/user-${a}/projects-${b}/src-${c}`);
    }
  }
  return out;
}

const fileName = (f: number) => `file-${String(f).padStart(6, '0')}-data${EXT[f % EXT.length]}`;

function stat(path: string, type: FileRow['type'], n: number): FileRow {
  const i = path.lastIndexOf('/');
  return {
    path,
    dir: i === 0 ? '/' : path.slice(0, i),
    name: path.slice(i + 1),
    type,
    size: type === 'dir' ? 4096 : (n * 2654435761) % 1_000_000,
    mode: type === 'dir' ? 0o755 : 0o644,
    uid: 1000,
    gid: 1000,
    mtime: 1_700_000_000 + n,
    atime: 1_700_000_000 + n,
    ctime: 1_700_000_000 + n,
    node: n + 2,
    parent: 2,
    fhInfo: n * 1536,
  };
}

/** The rows a walk of the tree yields, `total` of them, in batches of `batch`, made as they are asked for. */
function* batches(total: number, batch: number): Generator<FileRow[]> {
  const leaves = leafDirs();
  const perLeaf = Math.ceil(total / leaves.length);
  let n = 0;
  const rows: FileRow[] = [];
  const push = (r: FileRow) => {
    rows.push(r);
    n++;
  };
  const made = new Set<string>();
  for (const leaf of leaves) {
    // Parents first, as a walk meets them.
    for (let p = leaf.indexOf('/', 1); p !== -1; p = leaf.indexOf('/', p + 1)) {
      const d = leaf.slice(0, p);
      if (!made.has(d) && n < total) {
        push(stat(d, 'dir', n));
        made.add(d);
      }
    }
    if (n < total) push(stat(leaf, 'dir', n));
    for (let k = 0; k < perLeaf && n < total; k++) {
      // Not in name order: a directory's entries come as readdir gives them.
      const f = (k * 7919) % perLeaf;
      push(stat(`${leaf}/${fileName(f)}`, 'file', n));
      if (rows.length >= batch) yield rows.splice(0, batch);
    }
  }
  if (rows.length > 0) yield rows;
}

// ---- measuring -------------------------------------------------------------------------

interface Timed {
  ms: number;
  count: number;
}

async function timed(f: () => Promise<number>, runs = 1): Promise<Timed> {
  const t0 = performance.now();
  let count = 0;
  for (let i = 0; i < runs; i++) count = await f();
  return { ms: (performance.now() - t0) / runs, count };
}

const fmtMs = (t: Timed) => (t.ms < 10 ? `${t.ms.toFixed(2)} ms` : `${t.ms.toFixed(0)} ms`);
const mib = (b: number) => `${(b / 2 ** 20).toFixed(0)} MiB`;

async function benchStore(
  label: string,
  c: Catalog,
  opts: Options,
  size: () => Promise<number>,
): Promise<void> {
  const id = await c.beginBackup({
    server: 'bench:10000',
    path: '/export/home',
    tapeServer: 'bench:10000',
    butype: 'tar',
    level: 0,
    historyModel: 'path',
    recordSize: 10240,
    env: { FILESYSTEM: '/export/home', HIST: 'y' },
    startedAt: Date.now(),
  });
  let inside = 0;
  let rows = 0;
  const wall0 = performance.now();
  for (const b of batches(opts.rows, opts.batch)) {
    const t0 = performance.now();
    await c.addFiles(id, b);
    inside += performance.now() - t0;
    rows += b.length;
  }
  const wall = performance.now() - wall0;
  const files = (await c.getBackup(id))!.files;
  if (files !== rows) throw new Error(`${label}: the backup counts ${files} rows, ${rows} were added`);
  console.log(
    `  ${label}: ${rows.toLocaleString('en')} rows in ${(inside / 1000).toFixed(2)} s: ` +
      `${Math.round((rows / inside) * 1000).toLocaleString('en')} rows/s ` +
      `(wall ${(wall / 1000).toFixed(2)} s with making the rows), ${mib(await size())}`,
  );

  const leaf = '/export/home/user-4/projects-2/src-7';
  const q: Array<[string, Timed]> = [
    ['listDir "/"', await timed(async () => (await c.listDir(id, '/')).length, 20)],
    [`listDir of a leaf`, await timed(async () => (await c.listDir(id, leaf)).length, 20)],
    [
      'lookup 1,000 paths',
      await timed(async () => {
        // Every other one missing.
        const paths = Array.from({ length: 1000 }, (_, i) => `${leaf}/${i % 2 ? 'no-' : ''}${fileName(i)}`);
        return (await c.lookup(id, paths)).length;
      }, 5),
    ],
    ["find '*.json' (limit 1,000)", await timed(async () => (await c.find('*.json')).length, 3)],
    [
      "find 'file-000123-*' (one a directory)",
      await timed(async () => (await c.find('file-000123-*')).length, 3),
    ],
    [
      "find '*/projects-3/*/file-00001?-*'",
      await timed(async () => (await c.find('*/projects-3/*/file-00001?-*')).length, 3),
    ],
    ["find 'no-such-name'", await timed(async () => (await c.find('no-such-name')).length, 3)],
  ];
  for (const [what, t] of q) console.log(`    ${what.padEnd(38)} ${fmtMs(t).padStart(9)}  (${t.count} rows)`);
}

// ---- entry -------------------------------------------------------------------------------

/** `strict`: refuse unknown options (run alone); from bench/run.ts the other benchmarks' options pass. */
export async function benchCatalog(argv: string[], { strict = false } = {}): Promise<void> {
  const opts = parseOptions(argv, strict);
  console.log(
    `\ncatalog: ingest of ${opts.rows.toLocaleString('en')} FileRows (one backup) in batches of ${opts.batch.toLocaleString('en')}, then queries   target >= 300,000 rows/s (SQLite)`,
  );
  const dir = fs.mkdtempSync(join(os.tmpdir(), 'ndmpd-bench-catalog-'));
  try {
    const file = join(dir, 'catalog.sqlite');
    const c = new SqliteCatalog(file);
    try {
      // The file and its write-ahead log, not yet folded into it.
      const size = (f: string) => (fs.existsSync(f) ? fs.statSync(f).size : 0);
      await benchStore('SQLite', c, opts, async () => size(file) + size(`${file}-wal`));
    } finally {
      await c.close();
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  if (!opts.postgres) {
    console.log('  PostgreSQL: not measured (give --catalog-postgres URL or NDMP_BENCH_POSTGRES)');
    return;
  }
  const schema = `ndmp_bench_${process.pid}`;
  const admin = new pg.Client({ connectionString: opts.postgres });
  await admin.connect();
  try {
    await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE; CREATE SCHEMA ${schema}`);
    const u = new URL(opts.postgres);
    u.searchParams.set('options', `-c search_path=${schema}`);
    const c = await PostgresCatalog.open(u.toString());
    try {
      await benchStore('PostgreSQL', c, opts, async () => {
        const r = await admin.query<{ b: string }>(
          `SELECT sum(pg_total_relation_size(c.oid))::text AS b FROM pg_class c
           JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind = 'r'`,
          [schema],
        );
        return Number(r.rows[0]!.b);
      });
    } finally {
      await c.close();
    }
  } finally {
    await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`).catch(() => undefined);
    await admin.end();
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  try {
    await benchCatalog(process.argv.slice(2), { strict: true });
  } catch (e) {
    console.error(`bench/catalog: ${e instanceof Error ? e.message : String(e)}`);
    process.exitCode = 2;
  }
}
