// The hand-written FH encoder (src/history/encoder.ts) against the schema
// codec that every other message uses: what it writes must decode, in v4 and
// v3, to exactly the entries the records describe; batches respect their
// bounds; and in the dir/node model no FH_ADD_NODE leaves before the
// FH_ADD_DIR that names its node.

import assert from 'node:assert/strict';
import { lstatSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';

import { FhEncoder } from '../../src/history/encoder.js';
import { FLAG_NODE, HistoryModel, RecordWriter, historyModelOf } from '../../src/history/record.js';
import { LAST_FRAGMENT } from '../../src/wire/framing.js';
import { FileType, M, compiled, decodeBody, decodeHeader } from '../../src/wire/index.js';
import type { FhDir, FhFile, FhNode } from '../../src/wire/index.js';

function decode(
  version: 3 | 4,
  message: ArrayBuffer,
): { code: number; files?: FhFile[]; dirs?: FhDir[]; nodes?: FhNode[] } {
  const all = Buffer.from(message);
  const mark = all.readUInt32BE(0);
  assert.ok((mark & LAST_FRAGMENT) !== 0, 'one complete fragment');
  assert.equal(mark & ~LAST_FRAGMENT, all.length - 4);
  const record = all.subarray(4);
  const h = decodeHeader(record);
  switch (h.messageCode) {
    case M.FH_ADD_FILE.code:
      return { code: h.messageCode, files: decodeBody(compiled(version, M.FH_ADD_FILE).body, record).files };
    case M.FH_ADD_DIR.code:
      return { code: h.messageCode, dirs: decodeBody(compiled(version, M.FH_ADD_DIR).body, record).dirs };
    case M.FH_ADD_NODE.code:
      return { code: h.messageCode, nodes: decodeBody(compiled(version, M.FH_ADD_NODE).body, record).nodes };
    default:
      throw new Error(`unexpected code ${h.messageCode}`);
  }
}

test('path model: FH_ADD_FILE entries decode to the records, in v4 and v3', () => {
  const dir = mkdtempSync(join(os.tmpdir(), 'fh-enc-'));
  try {
    writeFileSync(join(dir, 'f'), 'hello');
    symlinkSync('f', join(dir, 'l'));
    const fst = lstatSync(join(dir, 'f'), { bigint: true });
    const lst = lstatSync(join(dir, 'l'), { bigint: true });
    const dst = lstatSync(dir, { bigint: true });
    const out: ArrayBuffer[] = [];
    const enc = new FhEncoder({ maxEntries: 1000, maxBytes: 64 * 1024 }, (m) => out.push(m));
    const w = new RecordWriter();
    enc.push(w.hello(HistoryModel.PATH));
    enc.push(w.entry('.', dst, 2n, 0n, FLAG_NODE)!);
    enc.push(w.entry('f', fst, 77n, 1536n, FLAG_NODE)!);
    enc.push(w.entry('ünï cödé/x y', lst, (1n << 40n) + 5n, (1n << 33n) + 512n, 0)!);
    enc.push(w.entry('ancestor', dst, 9n, null, FLAG_NODE)!);
    enc.flush();
    assert.equal(out.length, 1);
    for (const v of [3, 4] as const) {
      const { files } = decode(v, out[0]!);
      assert.equal(files!.length, 4);
      const [root, f, l, anc] = files!;
      assert.deepEqual(root!.names, [{ fsType: 0, unixName: '/' }]);
      assert.deepEqual(f!.names, [{ fsType: 0, unixName: '/f' }]);
      assert.deepEqual(l!.names, [{ fsType: 0, unixName: '/ünï cödé/x y' }]);
      assert.equal(f!.node, 77n);
      assert.equal(f!.fhInfo, 1536n);
      assert.equal(l!.node, (1n << 40n) + 5n);
      assert.equal(l!.fhInfo, (1n << 33n) + 512n);
      assert.equal(anc!.fhInfo, 0xffff_ffff_ffff_ffffn, 'not in the stream: no position');
      const s = f!.stats[0]!;
      assert.equal(s.ftype, FileType.NDMP_FILE_REG);
      assert.equal(s.fattr, Number(fst.mode & 0o7777n));
      assert.equal(s.size, 5n);
      assert.equal(s.mtime, Number(fst.mtimeMs / 1000n));
      assert.equal(s.owner, Number(fst.uid));
      assert.equal(s.links, Number(fst.nlink));
      assert.equal(l!.stats[0]!.ftype, FileType.NDMP_FILE_SLINK);
      assert.equal(l!.stats[0]!.size, 1n, 'a symlink’s size is its target’s length');
      assert.equal(root!.stats[0]!.ftype, FileType.NDMP_FILE_DIR);
      assert.equal(root!.stats[0]!.size, 0n);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('batches respect their entry and byte bounds; nothing is lost between them', () => {
  const st = lstatSync(os.tmpdir(), { bigint: true });
  const out: ArrayBuffer[] = [];
  const enc = new FhEncoder({ maxEntries: 100, maxBytes: 4096 }, (m) => out.push(m));
  const w = new RecordWriter();
  enc.push(w.hello(HistoryModel.PATH));
  const names: string[] = [];
  for (let i = 0; i < 1000; i++) {
    const name = `d/${'n'.repeat(i % 50)}${i}`;
    names.push(`/${name}`);
    enc.push(w.entry(name, st, BigInt(i + 3), BigInt(i * 512), FLAG_NODE)!);
  }
  enc.flush();
  const got: string[] = [];
  for (const m of out) {
    const { files } = decode(4, m);
    assert.ok(files!.length <= 100);
    // One entry may cross the byte bound; it is the last of its batch.
    assert.ok(m.byteLength <= 4096 + 200, `message of ${m.byteLength} bytes`);
    for (const f of files!) got.push((f.names[0] as { unixName: string }).unixName);
  }
  assert.deepEqual(got, names);
  assert.equal(enc.entries, 1000);
});

test('dir/node model: every FH_ADD_NODE goes after the FH_ADD_DIR naming its node', () => {
  const st = lstatSync(os.tmpdir(), { bigint: true });
  const out: ArrayBuffer[] = [];
  const enc = new FhEncoder({ maxEntries: 7, maxBytes: 64 * 1024 }, (m) => out.push(m));
  const w = new RecordWriter();
  enc.push(w.hello(HistoryModel.DIRNODE));
  let node = 100n;
  for (let d = 0; d < 20; d++) {
    const dirNode = node++;
    enc.push(w.dirent('.', dirNode, dirNode)!);
    enc.push(w.dirent('..', 2n, dirNode)!);
    const kids = [node++, node++, node++];
    kids.forEach((k, i) => enc.push(w.dirent(`k${i}`, k, dirNode)!));
    enc.push(w.entry(`d${d}`, st, dirNode, 0n, FLAG_NODE)!);
    for (const k of kids) enc.push(w.entry(`d${d}/k`, st, k, 0n, FLAG_NODE)!);
    // A second hard link: a name, no node.
    enc.push(w.entry(`d${d}/again`, st, kids[0]!, 0n, 0)!);
  }
  enc.flush();
  const named = new Set<bigint>();
  let nodes = 0;
  for (const m of out) {
    const d = decode(4, m);
    for (const e of d.dirs ?? []) named.add(e.node);
    for (const n of d.nodes ?? []) {
      assert.ok(named.has(n.node), `node ${n.node} before its name`);
      nodes++;
    }
  }
  assert.equal(nodes, 80, 'one FH_ADD_NODE per node, none for the extra links');
});

test('HIST: y and f give paths, d dir/node, n none; a specific value beats y; nonsense is refused', () => {
  const h = (...v: string[]) => historyModelOf(v.map((value) => ({ name: 'HIST', value })));
  assert.equal(h(), HistoryModel.NONE);
  assert.equal(h('n'), HistoryModel.NONE);
  assert.equal(h('Y'), HistoryModel.PATH);
  assert.equal(h('f'), HistoryModel.PATH);
  assert.equal(h('d'), HistoryModel.DIRNODE);
  assert.equal(h('y', 'd'), HistoryModel.DIRNODE);
  assert.equal(h('d', 'y'), HistoryModel.DIRNODE);
  assert.equal(h('perhaps'), null);
});
