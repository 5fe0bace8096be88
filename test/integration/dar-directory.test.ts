// Directory DAR through our own DMA: `ndmp restore ID DIR` sends the
// directory as one nlist entry with its fh_info (not every row below it), in
// NDMP v4 and v3 layouts, and ndmpd restores its subtree reading about that
// subtree's stream bytes; `/` is the whole backup; RECURSIVE=n the directory
// alone; several overlapping entries out of order each once. Both history
// models (dir/node gives directories their fh_info through ADD_NODE).

import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { BackupRecord, FileRow } from '../../src/catalog/types.js';
import type { RestoreOutcome } from '../../src/dma/restore-job.js';
import { startNdmpd } from '../helpers/ndmpd-process.js';
import type { NdmpdProcess } from '../helpers/ndmpd-process.js';
import { dmaFor } from '../helpers/ndmp-cli.js';
import { assertSameTree } from '../helpers/trees.js';

/** Bytes the server read for its last recover, and the entries restored, from its log line. */
function lastRecover(p: NdmpdProcess): { restored: number; bytes: number } {
  const all = [...p.logs().matchAll(/(\d+) entries restored from (\d+) bytes/g)];
  assert.ok(all.length > 0, `no recover summary in the server log:\n${p.logs().slice(-3000)}`);
  const m = all[all.length - 1]!;
  return { restored: Number(m[1]), bytes: Number(m[2]) };
}

/** The NDMP_DATA_START_RECOVER nlists the server was sent (its debug log). */
function nlistsSent(p: NdmpdProcess): { originalPath: string; fhInfo: number }[][] {
  const out: { originalPath: string; fhInfo: number }[][] = [];
  for (const line of p.logs().split('\n')) {
    if (!line.includes('"dir":"in"') || !line.includes('NDMP_DATA_START_RECOVER"')) continue;
    out.push(
      (JSON.parse(line) as { body: { nlist: { originalPath: string; fhInfo: number }[] } }).body.nlist,
    );
  }
  return out;
}

/** A tree with two subtrees, each followed in the stream by a file of MiBs. */
function makeTree(root: string): void {
  fs.mkdirSync(join(root, 'mid', 'inner'), { recursive: true });
  fs.writeFileSync(join(root, 'a.txt'), 'hello\n');
  fs.writeFileSync(join(root, 'mid', 'x.txt'), 'x\n');
  for (let i = 0; i < 50; i++)
    fs.writeFileSync(join(root, 'mid', 'inner', `f${i}`), `file ${i}\n`.repeat(i * 40));
  fs.writeFileSync(join(root, 'mid.big'), Buffer.alloc(3 * 1024 * 1024, 7));
  fs.mkdirSync(join(root, 'sub'));
  fs.writeFileSync(join(root, 'sub', 'b.bin'), Buffer.alloc(70_000, 5));
  fs.symlinkSync('b.bin', join(root, 'sub', 'link'));
  fs.writeFileSync(join(root, 'zzz.big'), Buffer.alloc(2 * 1024 * 1024, 9));
}

describe('ndmp restore DIR: directory DAR through our DMA', { timeout: 300_000 }, () => {
  let p: NdmpdProcess;
  let work: string;
  let src: string;
  let dma: ReturnType<typeof dmaFor>;
  const backups: Record<'path' | 'dirnode', BackupRecord> = {} as never;
  const rows = new Map<string, FileRow>();

  before(async () => {
    p = await startNdmpd(); // debug: the requests are logged
    work = fs.mkdtempSync(join(os.tmpdir(), 'ndmp-dar-'));
    src = join(p.exportDir, 'tree');
    fs.mkdirSync(src);
    makeTree(src);
    dma = dmaFor(p, join(work, 'catalog.sqlite'), join(work, 'dma-state'));
    for (const model of ['path', 'dirnode'] as const) {
      const b = await dma.json<BackupRecord>([
        'backup',
        `${dma.server}:${src}`,
        ...dma.creds,
        '--history',
        model,
        '-q',
      ]);
      assert.equal(b.status, 'done');
      backups[model] = b;
    }
    for (const dir of ['/', '/mid', '/mid/inner']) {
      for (const r of await dma.json<FileRow[]>(['ls', String(backups.path.id), onServer(dir)]))
        rows.set(inBackup(r.path), r);
    }
  });
  after(async () => {
    await p?.stop();
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  // ndmp takes and prints the server's paths (docs/dma.md, "Paths"); these tests name paths inside
  // the backup, as its nlist does: "/" is the source.
  const onServer = (inside: string) => (inside === '/' ? src : `${src}${inside}`);
  const inBackup = (server: string) => (server === src ? '/' : server.slice(src.length));

  /** `ndmp restore` by DAR into a fresh directory; it must succeed. */
  async function restore(
    id: number,
    paths: string[],
    to: string,
    extra: string[] = [],
  ): Promise<RestoreOutcome> {
    const r = await dma.json<RestoreOutcome>([
      'restore',
      String(id),
      ...paths.map(onServer),
      '--to',
      to,
      ...dma.creds,
      ...extra,
    ]);
    assert.equal(r.ok, true, JSON.stringify(r));
    assert.equal(r.dar, true);
    // The nlist checks below speak of paths inside the backup, as the server gets them.
    return { ...r, files: r.files.map((f) => ({ ...f, path: inBackup(f.path) })) };
  }

  const fhOf = (path: string): number => {
    const f = rows.get(path)?.fhInfo;
    assert.ok(typeof f === 'number', `${path} has an fh_info`);
    return f;
  };

  for (const model of ['path', 'dirnode'] as const) {
    for (const v of ['v4', 'v3'] as const) {
      const flags = v === 'v3' ? ['--v3'] : [];
      test(`${model} history, ${v}: / is the whole backup, sent as one entry`, async () => {
        const to = join(p.exportDir, `root-${model}-${v}`);
        const r = await restore(backups[model].id, ['/'], to, flags);
        assert.deepEqual(r.files, [{ path: '/', ok: true, status: 'SUCCESSFUL' }]);
        assertSameTree(src, to);
        const sent = nlistsSent(p).at(-1)!;
        assert.equal(sent.length, 1);
        assert.equal(sent[0]!.originalPath, '/');
        assert.equal(lastRecover(p).restored, backups[model].files);
      });

      test(`${model} history, ${v}: /mid is its subtree, one entry, about its bytes read`, async (t) => {
        const to = join(p.exportDir, `mid-${model}-${v}`);
        const r = await restore(backups[model].id, ['/mid'], to, flags);
        assert.deepEqual(r.files, [{ path: '/mid', ok: true, status: 'SUCCESSFUL' }]);
        assert.deepEqual(fs.readdirSync(to), ['mid']);
        assertSameTree(join(src, 'mid'), join(to, 'mid'));
        const sent = nlistsSent(p).at(-1)!;
        assert.deepEqual(
          sent.map((n) => n.originalPath),
          ['/mid'],
        );
        const { restored, bytes } = lastRecover(p);
        assert.equal(restored, 53); // mid, x.txt, inner and its 50 files
        // Both models lay the stream out alike: the path catalog's offsets hold for both.
        const subtree = fhOf('/mid.big') - fhOf('/mid');
        t.diagnostic(`read ${bytes} bytes for a subtree of ${subtree}`);
        assert.ok(
          bytes >= subtree && bytes <= subtree + 64 * 1024,
          `read ${bytes} for a subtree of ${subtree}`,
        );
      });
    }
  }

  test('RECURSIVE=n: the directory alone', async () => {
    const to = join(p.exportDir, 'flat');
    await restore(backups.path.id, ['/mid'], to, ['--env', 'RECURSIVE=n']);
    assert.deepEqual(fs.readdirSync(to), ['mid']);
    assert.deepEqual(fs.readdirSync(join(to, 'mid')), []);
    assert.equal(lastRecover(p).restored, 1);
  });

  test('several entries, overlapping, out of order: each restored once, the big files not read', async (t) => {
    const to = join(p.exportDir, 'several');
    const paths = ['/sub/link', '/mid/inner', '/sub', '/a.txt', '/mid', '/mid/inner/f7'];
    const r = await restore(backups.path.id, paths, to, ['--v3']);
    assert.deepEqual(
      r.files.map((f) => [f.path, f.status]),
      paths.map((path) => [path, 'SUCCESSFUL']),
    );
    assert.deepEqual(fs.readdirSync(to).sort(), ['a.txt', 'mid', 'sub']);
    assertSameTree(join(src, 'mid'), join(to, 'mid'));
    assertSameTree(join(src, 'sub'), join(to, 'sub'));
    const { restored, bytes } = lastRecover(p);
    assert.equal(restored, 1 + 53 + 3);
    const wanted = 4 * 512 + (fhOf('/mid.big') - fhOf('/mid')) + (fhOf('/zzz.big') - fhOf('/sub'));
    t.diagnostic(`read ${bytes} bytes for regions of ${wanted}`);
    assert.ok(bytes <= (5 * wanted) / 4 + 64 * 1024, `read ${bytes} for regions of ${wanted}`);
  });
});
