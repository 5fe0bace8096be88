// A chain of incremental backups restores exactly: a full backup of a tree
// (files, directories, a symlink, a hard link, a fifo, an empty file, unicode
// and space names), then changes (additions, also in a new directory; a
// modified file; deletions of a file and of a tree; a renamed file; a renamed
// directory whose children did not change; a directory replaced by a file; a
// mode change), a level-1 backup, more changes and a level-2. Restoring the
// three in order into a fresh directory gives the final tree, with our
// restore engine and with GNU tar (`-G`). Both ways the engine runs: one
// thread (three-way backups) and walker + reader thread (LOCAL backups).

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';

import { BackupEngine, ROOT_NODE } from '../../src/backup/engine.js';
import type { BackupHooks, ListedName, StreamSink } from '../../src/backup/engine.js';
import { commitIncremental, planIncremental } from '../../src/backup/incremental.js';
import { PaxParser } from '../../src/backup/pax-parser.js';
import type { ParsedEntry } from '../../src/backup/pax-parser.js';
import { RestoreEngine } from '../../src/backup/restore.js';
import { withReaderThread } from '../helpers/reader-pipe.js';
import { assertSameTree, makeSampleTree } from '../helpers/trees.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function tmp(prefix: string): string {
  return fs.mkdtempSync(join(os.tmpdir(), prefix));
}

interface Made {
  stream: Buffer;
  warnings: string[];
  /** Dir/node history: names per directory node, as the hook got them. */
  listed: Map<bigint, string[]>;
  dumpDate: string | undefined;
}

/** One backup of `root` with environment `vars`, recorded in `state`; through a reader thread when `piped`. */
async function backup(
  root: string,
  state: string,
  vars: Record<string, string>,
  piped: boolean,
): Promise<Made> {
  const env = Object.entries(vars).map(([name, value]) => ({ name, value }));
  const plan = planIncremental(env, root, state);
  const warnings: string[] = plan.warning ? [plan.warning] : [];
  const listed = new Map<bigint, string[]>();
  const hooks: BackupHooks = {
    aborted: () => false,
    warn: (t) => warnings.push(t),
    directory: (node: bigint, _parent: bigint, names: readonly ListedName[]) => {
      listed.set(node, [...(listed.get(node) ?? []), ...names.map((n) => n.name)]);
    },
  };
  const spec = { root, files: [], excludes: [], incremental: plan };
  let stream: Buffer;
  let engine: BackupEngine | null = null;
  if (!piped) {
    const parts: Buffer[] = [];
    const sink: StreamSink = {
      write: async (c) => void parts.push(Buffer.from(c)),
      end: async () => undefined,
    };
    engine = new BackupEngine(spec, sink, hooks);
    const r = await engine.run();
    assert.equal(r.aborted, false);
    stream = Buffer.concat(parts);
  } else {
    // Small rings (reader-pipe.ts), so big directory headers must go through in pieces.
    const piped = await withReaderThread(
      (pipe, sink) => {
        engine = new BackupEngine(spec, sink, { ...hooks, record: () => null }, pipe);
        return engine.run();
      },
      (w) => warnings.push(w),
    );
    assert.equal(piped.result.aborted, false);
    stream = piped.archive;
  }
  const added = commitIncremental(plan, engine!.snapshot()!, state);
  return { stream, warnings, listed, dumpDate: added.find((p) => p.name === 'DUMP_DATE')?.value };
}

function entries(stream: Buffer): ParsedEntry[] {
  const out: ParsedEntry[] = [];
  const p = new PaxParser();
  p.push(stream, { onEntry: (e) => out.push(e), onData: () => undefined });
  p.end();
  return out;
}

function restore(streams: Buffer[], dest: string): void {
  for (const s of streams) {
    const warnings: string[] = [];
    // The tree's fifo and setgid directory come back exactly only with special (RESTORE_SPECIAL=y).
    const r = new RestoreEngine(
      { dest, overwrite: 'always', special: true },
      { warn: (w) => warnings.push(w) },
    );
    for (let off = 0; off < s.length; off += 10240) r.push(s.subarray(off, off + 10240));
    const result = r.end();
    assert.deepEqual(warnings, []);
    assert.equal(result.failed + result.refused, 0);
  }
}

function buildTree(src: string): void {
  makeSampleTree(src);
  fs.writeFileSync(join(src, 'big.bin'), Buffer.alloc(1 << 20, 0x5a));
  fs.writeFileSync(join(src, 'modify.txt'), 'before\n');
  fs.writeFileSync(join(src, 'delete.txt'), 'doomed\n');
  fs.writeFileSync(join(src, 'rename me.txt'), 'moving\n');
  fs.mkdirSync(join(src, 'gone', 'y'), { recursive: true });
  fs.writeFileSync(join(src, 'gone', 'x'), 'x');
  fs.writeFileSync(join(src, 'gone', 'y', 'z'), 'z');
  fs.mkdirSync(join(src, 'olddir', 'nested'), { recursive: true });
  fs.writeFileSync(join(src, 'olddir', 'c1'), 'child one');
  fs.writeFileSync(join(src, 'olddir', 'nested', 'c2'), Buffer.alloc(70_000, 0x63));
  fs.symlinkSync('../a.txt', join(src, 'olddir', 'nested', 'up'));
  fs.mkdirSync(join(src, 'becomes-file'));
  fs.writeFileSync(join(src, 'becomes-file', 'inside'), 'i');
  // A directory of many names: its header (~290 KiB) outgrows the stream buffer and goes through the work ring in pieces.
  fs.mkdirSync(join(src, 'crowd'));
  for (let i = 0; i < 9000; i++) fs.writeFileSync(join(src, 'crowd', `member-${'m'.repeat(20)}-${i}`), '');
}

function firstChanges(src: string): void {
  fs.writeFileSync(join(src, 'new.txt'), 'new\n');
  fs.mkdirSync(join(src, 'newdir', 'sub'), { recursive: true });
  fs.writeFileSync(join(src, 'newdir', 'n1'), 'n1');
  fs.writeFileSync(join(src, 'newdir', 'sub', 'n2'), 'n2');
  fs.writeFileSync(join(src, 'modify.txt'), 'after, and longer\n');
  fs.rmSync(join(src, 'delete.txt'));
  fs.rmSync(join(src, 'gone'), { recursive: true });
  fs.renameSync(join(src, 'rename me.txt'), join(src, 'renamed ü.txt'));
  fs.renameSync(join(src, 'olddir'), join(src, 'moved dir'));
  fs.rmSync(join(src, 'becomes-file'), { recursive: true });
  fs.writeFileSync(join(src, 'becomes-file'), 'now a file');
  fs.chmodSync(join(src, 'empty'), 0o600);
  fs.rmSync(join(src, 'crowd', `member-${'m'.repeat(20)}-7`));
}

function secondChanges(src: string): void {
  fs.writeFileSync(join(src, 'new.txt'), 'new, changed again\n');
  fs.rmSync(join(src, 'newdir', 'sub'), { recursive: true });
  fs.renameSync(join(src, 'moved dir', 'nested'), join(src, 'moved dir', 'nested again'));
  fs.writeFileSync(join(src, 'dir ü', 'more'), 'more');
  fs.rmSync(join(src, 'hard'));
  fs.mkdirSync(join(src, 'late'));
  fs.writeFileSync(join(src, 'late', 'one'), '1');
  fs.linkSync(join(src, 'late', 'one'), join(src, 'late', 'two'));
}

for (const piped of [false, true]) {
  test(`full + level 1 + level 2 restore the final tree exactly (${piped ? 'walker + reader thread' : 'one thread'})`, async () => {
    const src = tmp('chain-src-');
    const state = tmp('chain-state-');
    const dest = tmp('chain-dest-');
    const gnuDest = tmp('chain-gnu-');
    try {
      buildTree(src);
      // Out of the change test's clock slack (1 s): untouched files must count as unchanged.
      await sleep(1300);
      const full = await backup(src, state, {}, piped);
      assert.deepEqual(full.warnings, []);
      assert.ok(full.dumpDate);
      assert.equal(
        entries(full.stream).some((e) => e.dumpdir),
        false,
        'a level-0 stream has no dumpdirs',
      );

      firstChanges(src);
      const l1 = await backup(src, state, { LEVEL: '1' }, piped);
      assert.deepEqual(l1.warnings, []);
      const l1Entries = entries(l1.stream);
      const names = new Set(l1Entries.map((e) => e.path));
      for (const p of [
        'new.txt',
        'newdir/n1',
        'newdir/sub/n2',
        'modify.txt',
        'renamed ü.txt',
        'becomes-file',
      ])
        assert.ok(names.has(p), `${p} is in the level 1`);
      // A renamed directory comes whole, though its children did not change.
      for (const p of ['moved dir/c1', 'moved dir/nested/c2', 'moved dir/nested/up'])
        assert.ok(names.has(p), p);
      for (const p of ['big.bin', 'a.txt', 'sub/b.bin', 'link', 'crowd/member-mmmmmmmmmmmmmmmmmmmm-1'])
        assert.ok(!names.has(p), `${p} did not change and is not in the level 1`);
      for (const e of l1Entries) if (e.type === 'dir') assert.ok(e.dumpdir, `${e.path} has its dumpdir`);
      const root = l1Entries.find((e) => e.path === '.')!;
      const flags = new Map(root.dumpdir!.map((d) => [d.name, d.flag]));
      assert.equal(flags.get('big.bin'), 'N');
      assert.equal(flags.get('new.txt'), 'Y');
      assert.equal(flags.get('sub'), 'D');
      assert.equal(flags.has('delete.txt'), false);
      assert.equal(flags.has('olddir'), false);
      assert.ok(
        l1.stream.length * 4 < full.stream.length,
        `level 1 (${l1.stream.length} bytes) is much smaller than the full (${full.stream.length})`,
      );
      // Dir/node history lists the whole directory, as the dumpdir does (docs/protocol.md §8.3
      // rule 5): unchanged names (N) too, which get no FH_ADD_NODE; a DMA tells them from deleted ones.
      assert.deepEqual(
        l1.listed.get(ROOT_NODE),
        root.dumpdir!.map((d) => d.name),
      );
      assert.ok(l1.listed.get(ROOT_NODE)!.includes('big.bin'), 'an unchanged name is listed');
      assert.ok(!l1.listed.get(ROOT_NODE)!.includes('delete.txt'), 'a deleted name is not');

      await sleep(20);
      secondChanges(src);
      const l2 = await backup(src, state, { LEVEL: '2' }, piped);
      assert.deepEqual(l2.warnings, []);
      const l2Names = new Set(entries(l2.stream).map((e) => e.path));
      assert.ok(l2Names.has('moved dir/nested again/c2'), 'renamed again: whole again');
      assert.ok(!l2Names.has('big.bin'));

      restore([full.stream, l1.stream, l2.stream], dest);
      assertSameTree(src, dest, { mtimeToleranceNs: 1000n });

      // GNU tar reads the incrementals as valid pax, and restores the chain the same way.
      const tarFiles = [full, l1, l2].map((b, i) => {
        const f = join(state, `${i}.tar`);
        fs.writeFileSync(f, b.stream);
        return f;
      });
      const listing = execFileSync('tar', ['-tf', tarFiles[1]!], { encoding: 'utf8', maxBuffer: 1 << 24 });
      assert.ok(listing.split('\n').includes('new.txt'), listing.slice(0, 500));
      assert.ok(!listing.split('\n').includes('big.bin'));
      for (const f of tarFiles) execFileSync('tar', ['-G', '-xf', f, '-C', gnuDest]);
      assertSameTree(src, gnuDest);
    } finally {
      for (const d of [src, state, dest, gnuDest]) fs.rmSync(d, { recursive: true, force: true });
    }
  });
}

test('a level without a lower-level record is a full backup that says so; UPDATE=n records nothing', async () => {
  const src = tmp('chain-orphan-');
  const state = tmp('chain-orphan-state-');
  try {
    fs.writeFileSync(join(src, 'f'), 'f');
    const b = await backup(src, state, { LEVEL: '1', UPDATE: 'n' }, false);
    assert.match(b.warnings.join('\n'), /no backup of .* at a lower level is recorded; this one is full/);
    assert.equal(b.dumpDate, undefined);
    assert.deepEqual(fs.readdirSync(state), []);
    const paths = entries(b.stream).map((e) => e.path);
    assert.deepEqual(paths, ['.', 'f']);
  } finally {
    fs.rmSync(src, { recursive: true, force: true });
    fs.rmSync(state, { recursive: true, force: true });
  }
});
