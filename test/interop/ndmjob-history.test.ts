// `ndmjob -c ... -I INDEX` (Amanda's DMA) against ndmpd: the file history our
// history thread sends lands in ndmjob's index, one line per file of the tree
// with its type, mode, size, mtime and fh_info, in the path model (HIST=y, DHf
// lines) and the dir/node model (-E HIST=d, DHd/DHn lines, which ndmjob checks
// for the ordering rules). fh_info must be the offset of the file's header in
// the tape file, and GNU tar must restore that tape file exactly.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { PaxParser } from '../../src/backup/pax-parser.js';
import { NDMPD_BIN, startNdmpd } from '../helpers/ndmpd-process.js';
import type { NdmpdProcess } from '../helpers/ndmpd-process.js';
import { peers, requirePeers, runNdmjob } from '../helpers/peers.js';
import { assertSameTree, makeSampleTree } from '../helpers/trees.js';

/** ndmjob's index escaping (docs/protocol.md §10.3): %XX for bytes <= 0x20, >= 0x7f and '%'. */
function unescape(s: string): string {
  return Buffer.from(
    s.replace(/%([0-9A-F]{2})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16))),
    'latin1',
  ).toString('utf8');
}

interface Stat {
  type: string;
  mode?: number;
  size?: bigint;
  mtime?: number;
  fh?: bigint;
}

function parseStat(tokens: string[]): Stat {
  const st: Stat = { type: '?' };
  for (const t of tokens) {
    if (t.startsWith('f')) st.type = t.slice(1);
    else if (t.startsWith('m')) st.mode = parseInt(t.slice(1), 8);
    else if (t.startsWith('s')) st.size = BigInt(t.slice(1));
    else if (t.startsWith('tm')) st.mtime = Number(t.slice(2));
    else if (t.startsWith('@')) st.fh = BigInt(t.slice(1));
  }
  return st;
}

/** Every path of the tree ('/' for the root, '/a/b' below) with what the index should say. */
function expected(root: string): Map<string, Stat> {
  const out = new Map<string, Stat>();
  const walk = (rel: string): void => {
    const st = lstatSync(rel === '' ? root : join(root, rel), { bigint: true });
    const type = st.isDirectory()
      ? 'd'
      : st.isSymbolicLink()
        ? 'l'
        : st.isFIFO()
          ? 'p'
          : st.isFile()
            ? '-'
            : '?';
    out.set(rel === '' ? '/' : `/${rel}`, {
      type,
      mode: Number(st.mode & 0o7777n),
      ...(type === '-' || type === 'l' ? { size: st.size } : {}),
      mtime: Number(st.mtimeMs / 1000n),
    });
    if (st.isDirectory()) {
      for (const n of readdirSync(rel === '' ? root : join(root, rel))) walk(rel === '' ? n : `${rel}/${n}`);
    }
  };
  walk('');
  return out;
}

/** Path → header offset in the archive. */
function headerOffsets(archive: Buffer): Map<string, bigint> {
  const out = new Map<string, bigint>();
  new PaxParser().push(archive, {
    onEntry: (e) => {
      const p = e.path.replace(/\/$/, '');
      out.set(p === '.' ? '/' : `/${p}`, e.headerOffset);
    },
    onData: () => undefined,
  });
  return out;
}

/** DHf lines, or DHd/DHn lines turned into paths. */
function indexEntries(text: string): Map<string, Stat> {
  const lines = text.split('\n');
  const out = new Map<string, Stat>();
  const names = new Map<bigint, { parent: bigint; name: string }[]>();
  const nodes = new Map<bigint, Stat>();
  let root: bigint | null = null;
  for (const line of lines) {
    const [tag, ...rest] = line.split(' ');
    if (tag === 'DHf') {
      assert.equal(rest[1], 'UNIX');
      out.set(unescape(rest[0]!), parseStat(rest.slice(2)));
    } else if (tag === 'DHr') root = BigInt(rest[0]!);
    else if (tag === 'DHd') {
      const [parent, name, , node] = rest;
      if (name === '.' || name === '..') continue;
      const n = BigInt(node!);
      names.set(n, [...(names.get(n) ?? []), { parent: BigInt(parent!), name: unescape(name!) }]);
    } else if (tag === 'DHn') nodes.set(BigInt(rest[0]!), parseStat(rest.slice(2)));
  }
  if (root !== null) {
    const pathsOf = (node: bigint): string[] => {
      if (node === root) return ['/'];
      return (names.get(node) ?? []).flatMap(({ parent, name }) =>
        pathsOf(parent).map((p) => (p === '/' ? `/${name}` : `${p}/${name}`)),
      );
    };
    for (const [node, st] of nodes) for (const p of pathsOf(node)) out.set(p, st);
  }
  return out;
}

describe('ndmjob -c -I: file history in the DMA’s index', { timeout: 300_000 }, () => {
  let p: NdmpdProcess | null = null;
  let work = '';

  before(async () => {
    if (!peers.ndmjob) return;
    work = mkdtempSync(join(os.tmpdir(), 'ndmjob-history-'));
    p = await startNdmpd({ logLevel: 'info' });
  });
  after(async () => {
    await p?.stop();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  for (const [model, extra, drive] of [
    ['path (HIST=y)', [] as string[], 'drive0'],
    ['dir/node (-E HIST=d)', ['-E', 'HIST=d'], 'drive1'],
  ] as const) {
    test(`${model}: one index line per file, right type, mode, size, mtime and fh_info`, async (t) => {
      if (!requirePeers(t, ['ndmjob'])) return;
      const tree = join(p!.exportDir, `tree-${drive}`);
      mkdirSync(tree);
      makeSampleTree(tree);
      mkdirSync(join(tree, 'many'));
      for (let i = 0; i < 1500; i++) writeFileSync(join(tree, 'many', `f${i}`), `${i}`.repeat(i % 7));
      const index = join(work, `index-${drive}`);
      const agent = `127.0.0.1:${p!.port}/4,${p!.user},${p!.password}`;
      const r = await runNdmjob(
        ['-c', '-D', agent, '-B', 'tar', '-C', tree, '-f', drive, '-I', index, ...extra],
        120_000,
      );
      assert.match(r.output, /Operation ended OKAY/, r.output);

      const library = join(p!.dir, 'state', 'library');
      const barcode = readlinkBarcode(join(library, 'drives', drive));
      const archive = execFileSync(
        process.execPath,
        [NDMPD_BIN, 'tape', 'export', barcode, '--file', '0', '--library', library],
        { maxBuffer: 256 * 1024 * 1024 },
      );
      const offsets = headerOffsets(archive);
      const want = expected(tree);
      const got = indexEntries(readFileSync(index, 'utf8'));
      assert.deepEqual([...got.keys()].sort(), [...want.keys()].sort(), 'one line per file');
      for (const [path, w] of want) {
        const g = got.get(path)!;
        assert.equal(g.type, w.type, path);
        assert.equal(g.mode, w.mode, path);
        assert.equal(g.size, w.size, path);
        assert.equal(g.mtime, w.mtime, path);
        // A second hard link's node carries the first link's position.
        if (!(extra.length > 0 && path === '/hard')) assert.equal(g.fh, offsets.get(path), path);
      }

      const file = join(work, `${drive}.tar`);
      writeFileSync(file, archive);
      const out = join(work, `restored-${drive}`);
      mkdirSync(out);
      execFileSync('tar', ['-xf', file, '-C', out]);
      assertSameTree(tree, out);
    });
  }
});

function readlinkBarcode(link: string): string {
  return execFileSync('readlink', [link]).toString().trim().split('/').pop()!;
}
