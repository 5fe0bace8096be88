// Names are bytes, as ndmjob (Amanda's DMA) sees them (docs/names.md): a tree
// with Latin-1 names, a newline in a name, a symlink to a target that is not
// UTF-8, a path of about 3 KB and hard links across such names, backed up by
// `ndmjob -c -I INDEX` and restored by `ndmjob -x -J INDEX` into a fresh
// directory: identical byte for byte, and the index (whose names ndmjob
// writes %XX-escaped, docs/protocol.md §10.3) names every entry with its
// exact bytes.

import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { decodeName, encodeName, escapeName } from '../../src/util/byte-name.js';
import { byteTree, sameBytesTree, scanBytes } from '../helpers/byte-trees.js';
import { startNdmpd } from '../helpers/ndmpd-process.js';
import type { NdmpdProcess } from '../helpers/ndmpd-process.js';
import { peers, requirePeers, runNdmjob } from '../helpers/peers.js';

/** A name as ndmjob's index holds it (%XX for control bytes, bytes from 0x7f and '%'), back to its bytes. */
function unescapeIndexName(s: string): Buffer {
  const out: number[] = [];
  for (let i = 0; i < s.length; i++) {
    if (s[i] === '%' && /^[0-9A-F]{2}$/.test(s.slice(i + 1, i + 3))) {
      out.push(parseInt(s.slice(i + 1, i + 3), 16));
      i += 2;
    } else out.push(s.charCodeAt(i));
  }
  return Buffer.from(out);
}

/**
 * ndmjob cuts an index line's name at 1,023 characters (escaped) in the path
 * model: what it keeps of a longer path is not the path, so those are
 * compared by their start only.
 */
const NDMJOB_NAME_CHARS = 1023;

/** An index name as ndmjob escapes it (docs/protocol.md §10.3), to know whether it was cut. */
function escapedLength(s: string): number {
  let n = 0;
  for (const b of encodeName(s)) n += b <= 0x20 || b >= 0x7f || b === 0x25 ? 3 : 1;
  return n;
}

/** The DHf paths of an ndmjob index (path history), as lossless strings of their bytes. */
function pathModelPaths(text: string): string[] {
  const out: string[] = [];
  for (const line of text.split('\n')) {
    const m = /^DHf (\S+) UNIX /.exec(line);
    if (m) out.push(decodeName(unescapeIndexName(m[1]!)));
  }
  return out.sort();
}

/** The paths DHr/DHd lines make (dir/node history), as lossless strings of their bytes; a hard link gives each of its paths. */
function dirNodePaths(text: string): string[] {
  const names = new Map<bigint, { parent: bigint; name: string }[]>();
  let root: bigint | null = null;
  for (const line of text.split('\n')) {
    const [tag, ...rest] = line.split(' ');
    if (tag === 'DHr') root = BigInt(rest[0]!);
    else if (tag === 'DHd') {
      const [parent, name, , node] = rest;
      if (name === '.' || name === '..') continue;
      const n = BigInt(node!);
      const decoded = decodeName(unescapeIndexName(name!));
      names.set(n, [...(names.get(n) ?? []), { parent: BigInt(parent!), name: decoded }]);
    }
  }
  assert.ok(root !== null, 'the index has its DHr line');
  const pathsOf = (node: bigint): string[] =>
    node === root
      ? ['/']
      : (names.get(node) ?? []).flatMap(({ parent, name }) =>
          pathsOf(parent).map((p) => (p === '/' ? `/${name}` : `${p}/${name}`)),
        );
  return ['/', ...[...names.keys()].flatMap(pathsOf)].sort();
}

describe('ndmjob -c -I / -x -J with names that are not UTF-8', { timeout: 300_000 }, () => {
  let p: NdmpdProcess | null = null;
  let work = '';
  let tree = '';
  let index = '';
  let indexD = '';
  let agent = '';

  before(async () => {
    if (!peers.ndmjob) return;
    work = mkdtempSync(join(os.tmpdir(), 'ndmjob-bytes-'));
    p = await startNdmpd({ logLevel: 'info' });
    agent = `127.0.0.1:${p.port}/4,${p.user},${p.password}`;
    tree = join(p.exportDir, 'tree');
    mkdirSync(tree);
    byteTree(tree);
    index = join(work, 'index');
    indexD = join(work, 'index-d');
    // Dir/node history onto drive1, path history onto drive0 (restored from below).
    for (const [drive, file, extra] of [
      ['drive1', indexD, ['-E', 'HIST=d']],
      ['drive0', index, []],
    ] as const) {
      const r = await runNdmjob(
        ['-c', '-D', agent, '-B', 'tar', '-C', tree, '-f', drive, '-I', file, ...extra],
        120_000,
      );
      assert.match(r.output, /Operation ended OKAY/, r.output);
    }
  });
  after(async () => {
    await p?.stop();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  const sourcePaths = (): string[] =>
    [...scanBytes(tree).keys()].map((k) => (k === '' ? '/' : `/${k}`)).sort();

  test('dir/node history (-E HIST=d): the index names every entry with its exact bytes', (t) => {
    if (!requirePeers(t, ['ndmjob'])) return;
    assert.deepEqual(
      dirNodePaths(readFileSync(indexD, 'latin1')).map(escapeName),
      sourcePaths().map(escapeName),
    );
  });

  test('path history: one DHf line per entry, each the exact bytes (as far as ndmjob keeps them)', (t) => {
    if (!requirePeers(t, ['ndmjob'])) return;
    const got = pathModelPaths(readFileSync(index, 'latin1'));
    const want = sourcePaths();
    assert.equal(got.length, want.length, 'one line per entry');
    const whole = want.filter((p) => escapedLength(p) <= NDMJOB_NAME_CHARS);
    assert.ok(
      whole.length >= 10 && whole.length < want.length,
      'the tree has paths both below and beyond the cut',
    );
    for (const p of whole) assert.ok(got.includes(p), `${escapeName(p)} is in the index`);
    const cut = got.filter((p) => !whole.includes(p));
    assert.equal(cut.length, want.length - whole.length);
    for (const c of cut)
      assert.ok(
        want.some((p) => p.startsWith(c)),
        `${escapeName(c).slice(0, 60)}... starts a path of the tree`,
      );
  });

  test('-x -J: the whole backup into a fresh directory is the same tree, byte for byte', async (t) => {
    if (!requirePeers(t, ['ndmjob'])) return;
    const out = join(p!.exportDir, 'restored');
    const r = await runNdmjob(
      ['-x', '-D', agent, '-B', 'tar', '-C', out, '-f', 'drive0', '-J', index],
      120_000,
    );
    assert.match(r.output, /Operation ended OKAY/, r.output);
    sameBytesTree(tree, out);
  });
});
