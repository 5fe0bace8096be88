// The restore engine (groundwork for issue 5): a backup made by our own engine
// comes back as the same tree; a hostile stream (`..`, absolute names, a
// symlink followed by an entry beneath it, a hard link through it, a symlink
// planted in the destination) writes nothing outside the destination, and the
// rest of it is restored; a truncated stream stops with a clear error.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';

import { BackupEngine } from '../../src/backup/engine.js';
import { PaxFormatError } from '../../src/backup/pax-layout.js';
import { RestoreEngine } from '../../src/backup/restore.js';
import { archive as paxStream, entry } from '../helpers/archives.js';
import { assertSameTree, makeSampleTree } from '../helpers/trees.js';

function tmp(prefix: string): string {
  return fs.mkdtempSync(join(os.tmpdir(), prefix));
}

async function backup(root: string): Promise<Buffer> {
  const parts: Buffer[] = [];
  await new BackupEngine(
    { root, files: [], excludes: [] },
    { write: async (c) => void parts.push(Buffer.from(c)), end: async () => undefined },
    { aborted: () => false, warn: () => undefined },
  ).run();
  return Buffer.concat(parts);
}

test('our own backup restores into an identical tree (content, modes, times, links, fifo) with special on', async () => {
  const src = tmp('restore-src-');
  const dest = tmp('restore-dest-');
  try {
    makeSampleTree(src);
    const archive = await backup(src);
    const warnings: string[] = [];
    // The sample tree has a fifo and a setgid directory: exact only with special (RESTORE_SPECIAL=y).
    const r = new RestoreEngine(
      { dest, overwrite: 'always', special: true },
      { warn: (w) => warnings.push(w) },
    );
    // In uneven pieces, as a data connection delivers them.
    for (let off = 0; off < archive.length; off += 7777) r.push(archive.subarray(off, off + 7777));
    const result = r.end();
    assert.deepEqual(warnings, []);
    assert.equal(result.refused + result.failed, 0);
    assertSameTree(src, dest, { mtimeToleranceNs: 1000n });
  } finally {
    fs.rmSync(src, { recursive: true, force: true });
    fs.rmSync(dest, { recursive: true, force: true });
  }
});

test('special entries from a stream of unknown origin: withheld by default, exact with special', () => {
  const base = tmp('restore-special-');
  try {
    const items = [
      { e: entry('dir', 'dir', { mode: 0o2775 }) },
      { e: entry('dir/suid-root', 'file', { mode: 0o4755, uid: 0, gid: 0 }), content: '#!/bin/sh\n' },
      { e: entry('dir/sgid', 'file', { mode: 0o2711 }), content: 'x' },
      { e: entry('tmp', 'dir', { mode: 0o1777 }) },
      { e: entry('pipe', 'fifo', { mode: 0o600 }) },
      { e: entry('null', 'chardev', { mode: 0o666, devMajor: 1, devMinor: 3 }) },
      { e: entry('disk', 'blockdev', { mode: 0o660, devMajor: 7, devMinor: 0 }) },
      { e: entry('pipe-again', 'hardlink', { linkTarget: 'pipe' }) },
      { e: entry('plain', 'file', { mode: 0o644 }), content: 'plain' },
    ];
    const stream = paxStream(items);
    const run = (special: boolean | undefined) => {
      const dest = join(base, String(special));
      const warnings: string[] = [];
      const seen = new Map<string, string>();
      const r = new RestoreEngine(
        { dest, overwrite: 'always', ...(special === undefined ? {} : { special }) },
        { warn: (w) => warnings.push(w), entry: (p, status) => seen.set(p, status) },
      );
      r.push(stream);
      return { dest, warnings, seen, result: r.end() };
    };
    const mode = (p: string) => fs.lstatSync(p).mode & 0o7777;

    const safe = run(undefined);
    for (const n of ['pipe', 'null', 'disk', 'pipe-again']) {
      assert.equal(fs.existsSync(join(safe.dest, n)), false, n);
      assert.equal(safe.seen.get(n), 'withheld', n);
      assert.ok(
        safe.warnings.some(
          (w) => w.startsWith(`${n}: withheld: `) && w.endsWith('set RESTORE_SPECIAL=y to restore it'),
        ),
        `${n}: ${safe.warnings.join('\n')}`,
      );
    }
    assert.equal(safe.result.withheld, 4);
    assert.equal(safe.result.failed + safe.result.refused, 0);
    assert.equal(mode(join(safe.dest, 'dir', 'suid-root')), 0o755);
    assert.equal(mode(join(safe.dest, 'dir', 'sgid')), 0o711);
    assert.equal(mode(join(safe.dest, 'dir')), 0o775);
    assert.equal(mode(join(safe.dest, 'tmp')), 0o1777, 'the sticky bit stays');
    assert.ok(
      safe.warnings.some((w) =>
        /^dir\/suid-root: restored without its setuid\/setgid bits .*RESTORE_SPECIAL=y/.test(w),
      ),
    );
    assert.equal(fs.readFileSync(join(safe.dest, 'plain'), 'utf8'), 'plain');
    assert.equal(run(false).result.withheld, 4);

    const exact = run(true);
    assert.deepEqual(exact.warnings, []);
    assert.equal(exact.result.withheld, 0);
    assert.equal(mode(join(exact.dest, 'dir', 'suid-root')), 0o4755);
    assert.equal(mode(join(exact.dest, 'dir', 'sgid')), 0o2711);
    assert.equal(mode(join(exact.dest, 'dir')), 0o2775);
    assert.ok(fs.lstatSync(join(exact.dest, 'pipe')).isFIFO());
    assert.equal(
      fs.lstatSync(join(exact.dest, 'pipe-again')).ino,
      fs.lstatSync(join(exact.dest, 'pipe')).ino,
    );
    if (process.getuid?.() === 0) {
      const dev = fs.lstatSync(join(exact.dest, 'null'));
      assert.ok(dev.isCharacterDevice());
      assert.equal(dev.rdev, fs.statSync('/dev/null').rdev);
      assert.ok(fs.lstatSync(join(exact.dest, 'disk')).isBlockDevice());
    }
  } finally {
    fs.rmSync(base, { recursive: true, force: true });
  }
});

test('a hostile stream writes nothing outside the destination; its honest entries are restored', () => {
  const base = tmp('restore-hostile-');
  const dest = join(base, 'dest');
  const outside = join(base, 'outside');
  fs.mkdirSync(outside);
  fs.writeFileSync(join(outside, 'victim'), 'original');
  fs.mkdirSync(dest);
  // Planted before the restore: a link in the destination pointing out.
  fs.symlinkSync(outside, join(dest, 'planted'));
  const before = fs.readdirSync(outside).sort();
  try {
    const archive = paxStream([
      { e: entry('good', 'dir') },
      { e: entry('good/file', 'file'), content: 'fine' },
      { e: entry('../escape', 'file'), content: 'x' },
      { e: entry('good/../../escape2', 'file'), content: 'x' },
      { e: entry('/tmp/absolute', 'file'), content: 'x' },
      { e: entry('link', 'symlink', { linkTarget: outside }) },
      { e: entry('link/victim', 'file'), content: 'overwritten' },
      { e: entry('link/new', 'file'), content: 'x' },
      { e: entry('planted/victim', 'file'), content: 'overwritten' },
      { e: entry('hard', 'hardlink', { linkTarget: 'link/victim' }) },
      { e: entry('hard2', 'hardlink', { linkTarget: '../outside/victim' }) },
      { e: entry('good/after', 'file'), content: 'still restored' },
    ]);
    const seen = new Map<string, string>();
    const r = new RestoreEngine(
      { dest, overwrite: 'always' },
      { warn: () => undefined, entry: (p, status) => seen.set(p, status) },
    );
    r.push(archive);
    const result = r.end();
    // Nothing outside changed or appeared.
    assert.equal(fs.readFileSync(join(outside, 'victim'), 'utf8'), 'original');
    assert.deepEqual(fs.readdirSync(outside).sort(), before);
    assert.equal(fs.existsSync(join(base, 'escape')), false);
    assert.equal(fs.existsSync(join(base, 'escape2')), false);
    assert.equal(fs.existsSync('/tmp/absolute'), false);
    // The honest entries are there.
    assert.equal(fs.readFileSync(join(dest, 'good', 'file'), 'utf8'), 'fine');
    assert.equal(fs.readFileSync(join(dest, 'good', 'after'), 'utf8'), 'still restored');
    assert.equal(fs.readlinkSync(join(dest, 'link')), outside, 'a symlink itself is restored as it was');
    for (const p of ['../escape', 'good/../../escape2', '/tmp/absolute', 'hard', 'hard2'])
      assert.equal(seen.get(p), 'refused', p);
    for (const p of ['link/victim', 'link/new', 'planted/victim']) assert.equal(seen.get(p), 'failed', p);
    assert.equal(result.restored, 4);
  } finally {
    fs.rmSync(base, { recursive: true, force: true });
  }
});

test('a truncated stream stops with a PaxFormatError; what came before it is restored', () => {
  const dest = tmp('restore-trunc-');
  try {
    const archive = paxStream([
      { e: entry('a', 'file'), content: 'complete' },
      { e: entry('b', 'file'), content: 'x'.repeat(5000) },
    ]);
    const r = new RestoreEngine({ dest, overwrite: 'always' }, { warn: () => undefined });
    r.push(archive.subarray(0, 2048));
    assert.throws(() => r.end(), PaxFormatError);
    assert.equal(fs.readFileSync(join(dest, 'a'), 'utf8'), 'complete');
  } finally {
    fs.rmSync(dest, { recursive: true, force: true });
  }
});

test('overwrite policy: never keeps what is there, always replaces (a symlink in the way is replaced, not followed)', () => {
  const base = tmp('restore-overwrite-');
  const dest = join(base, 'dest');
  fs.mkdirSync(dest);
  fs.writeFileSync(join(base, 'target'), 'outside');
  fs.writeFileSync(join(dest, 'kept'), 'mine');
  fs.symlinkSync(join(base, 'target'), join(dest, 'link-in-the-way'));
  try {
    const archive = paxStream([
      { e: entry('kept', 'file'), content: 'theirs' },
      { e: entry('link-in-the-way', 'file'), content: 'restored' },
    ]);
    let r = new RestoreEngine({ dest, overwrite: 'never' }, { warn: () => undefined });
    r.push(archive);
    assert.equal(r.end().skipped, 2);
    assert.equal(fs.readFileSync(join(dest, 'kept'), 'utf8'), 'mine');
    r = new RestoreEngine({ dest, overwrite: 'always' }, { warn: () => undefined });
    r.push(archive);
    assert.equal(r.end().restored, 2);
    assert.equal(fs.readFileSync(join(dest, 'kept'), 'utf8'), 'theirs');
    assert.equal(fs.lstatSync(join(dest, 'link-in-the-way')).isFile(), true);
    assert.equal(fs.readFileSync(join(base, 'target'), 'utf8'), 'outside');
  } finally {
    fs.rmSync(base, { recursive: true, force: true });
  }
});
