// Restores confined while the destination changes under them (docs/security.md,
// "While the tree changes"): a user who can write in the destination swaps a
// directory the restore already made and checked for a symbolic link to a
// directory outside (or moves an outside directory into its place) between
// two entries; nothing of the later entries may appear outside, and no
// attribute may be set there. The swap is made from the onHeader hook, which
// runs after an entry's header is parsed and before anything is written for
// it: exactly between two entries.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';

import type { ParsedEntry } from '../../src/backup/pax-parser.js';
import { RestoreEngine } from '../../src/backup/restore.js';
import { archive as paxStream, entry } from '../helpers/archives.js';

function tmp(prefix: string): string {
  return fs.mkdtempSync(join(os.tmpdir(), prefix));
}

/** Open descriptors of this process. */
function openFds(): number {
  return fs.readdirSync('/proc/self/fd').length;
}

interface Setup {
  base: string;
  dest: string;
  outside: string;
}

function setup(prefix: string): Setup {
  const base = tmp(prefix);
  const dest = join(base, 'dest');
  const outside = join(base, 'outside');
  fs.mkdirSync(dest);
  fs.mkdirSync(outside, { mode: 0o700 });
  fs.chmodSync(outside, 0o700);
  fs.writeFileSync(join(outside, 'victim'), 'original');
  return { base, dest, outside };
}

/** What the outside directory holds: names, the victim's text, its own mode. */
function outsideState(outside: string): { names: string[]; victim: string; mode: number } {
  return {
    names: fs.readdirSync(outside).sort(),
    victim: fs.readFileSync(join(outside, 'victim'), 'utf8'),
    mode: fs.statSync(outside).mode & 0o7777,
  };
}

/**
 * Restores `items`; when the header of `swapBefore` is parsed, `swap` runs.
 * Returns each entry's outcome and the warnings.
 */
function restoreWithSwap(
  dest: string,
  items: { e: ReturnType<typeof entry>; content?: string }[],
  swapBefore: string,
  swap: () => void,
): { seen: Map<string, string>; warnings: string[]; maxFds: number } {
  const seen = new Map<string, string>();
  const warnings: string[] = [];
  let maxFds = 0;
  const r = new RestoreEngine(
    {
      dest,
      overwrite: 'always',
      onHeader: (e: ParsedEntry) => {
        maxFds = Math.max(maxFds, openFds());
        if (e.path === swapBefore) swap();
      },
    },
    { warn: (w) => warnings.push(w), entry: (p, status) => seen.set(p, status) },
  );
  // In two pieces, as a data connection may deliver it.
  const stream = paxStream(items);
  const half = Math.floor(stream.length / 2);
  r.push(stream.subarray(0, half));
  r.push(stream.subarray(half));
  r.end();
  return { seen, warnings, maxFds };
}

test('a checked directory swapped for a symbolic link while its descriptor is open: later entries land in the original directory, nothing outside', () => {
  const { base, dest, outside } = setup('rconf-open-');
  const before = outsideState(outside);
  const fdsBefore = openFds();
  try {
    const { seen, warnings } = restoreWithSwap(
      dest,
      [
        { e: entry('d', 'dir', { mode: 0o751 }) },
        { e: entry('d/first', 'file'), content: 'first' },
        { e: entry('d/second', 'file'), content: 'second' },
        { e: entry('d/victim', 'file'), content: 'overwritten' },
        { e: entry('d/sub', 'dir') },
        { e: entry('d/sub/deep', 'file'), content: 'deep' },
        { e: entry('d/ln', 'symlink', { linkTarget: 'first' }) },
        { e: entry('hard', 'hardlink', { linkTarget: 'd/first' }) },
      ],
      'd/second',
      () => {
        // The user moves the checked directory aside and puts a link to the outside in its place.
        fs.renameSync(join(dest, 'd'), join(dest, 'd.moved'));
        fs.symlinkSync(outside, join(dest, 'd'));
      },
    );
    // Nothing appeared or changed outside: not the files, not the directory's mode (set at the end).
    assert.deepEqual(outsideState(outside), before);
    // The restore went on in the directory it had checked: it holds its descriptor.
    const moved = join(dest, 'd.moved');
    assert.equal(fs.readFileSync(join(moved, 'second'), 'utf8'), 'second');
    assert.equal(fs.readFileSync(join(moved, 'victim'), 'utf8'), 'overwritten');
    assert.equal(fs.readFileSync(join(moved, 'sub', 'deep'), 'utf8'), 'deep');
    assert.equal(fs.readlinkSync(join(moved, 'ln')), 'first');
    assert.equal(fs.lstatSync(join(dest, 'hard')).ino, fs.lstatSync(join(moved, 'first')).ino);
    assert.equal(fs.statSync(moved).mode & 0o7777, 0o751, 'the attributes went to the original directory');
    assert.ok(fs.lstatSync(join(dest, 'd')).isSymbolicLink(), 'the link itself is left alone');
    for (const p of ['d', 'd/first', 'd/second', 'd/victim', 'd/sub', 'd/sub/deep', 'd/ln', 'hard'])
      assert.equal(seen.get(p), 'restored', `${p}: ${warnings.join('\n')}`);
    assert.deepEqual(warnings, []);
    assert.equal(openFds(), fdsBefore, 'every directory descriptor is closed at the end');
  } finally {
    fs.rmSync(base, { recursive: true, force: true });
  }
});

/** `n` directories with a file each: enough to push the first ones out of the descriptor cache. */
function filler(n: number): { e: ReturnType<typeof entry>; content?: string }[] {
  const items: { e: ReturnType<typeof entry>; content?: string }[] = [];
  for (let i = 0; i < n; i++) {
    items.push({ e: entry(`x${i}`, 'dir') }, { e: entry(`x${i}/f`, 'file'), content: String(i) });
  }
  return items;
}

test('a checked directory swapped for a symbolic link after its descriptor was closed: later entries below it are refused, naming them', () => {
  const { base, dest, outside } = setup('rconf-evicted-');
  const before = outsideState(outside);
  const fdsBefore = openFds();
  try {
    const { seen, warnings, maxFds } = restoreWithSwap(
      dest,
      [
        { e: entry('d', 'dir', { mode: 0o751 }) },
        { e: entry('d/first', 'file'), content: 'first' },
        ...filler(150),
        { e: entry('d/late', 'file'), content: 'late' },
        { e: entry('d/victim', 'file'), content: 'overwritten' },
        { e: entry('d/sub', 'dir') },
        { e: entry('d/sub/deep', 'file'), content: 'deep' },
        { e: entry('hard', 'hardlink', { linkTarget: 'd/first' }) },
        { e: entry('after', 'file'), content: 'after' },
      ],
      'd/late',
      () => {
        fs.renameSync(join(dest, 'd'), join(dest, 'd.moved'));
        fs.symlinkSync(outside, join(dest, 'd'));
      },
    );
    assert.deepEqual(outsideState(outside), before);
    for (const p of ['d/late', 'd/victim', 'd/sub', 'd/sub/deep', 'hard']) {
      assert.equal(seen.get(p), 'failed', p);
      assert.ok(
        warnings.some((w) => w.startsWith(`${p}: failed: `) && w.includes('d is a symbolic link')),
        `${p}: ${warnings.join('\n')}`,
      );
    }
    assert.deepEqual(fs.readdirSync(join(dest, 'd.moved')).sort(), ['first']);
    assert.equal(fs.readFileSync(join(dest, 'after'), 'utf8'), 'after', 'the rest is restored');
    assert.equal(fs.readFileSync(join(dest, 'x149', 'f'), 'utf8'), '149');
    // d's own attributes could not be set through the link: a warning, not the outside's mode.
    assert.ok(
      warnings.some((w) => w.startsWith('d: attributes not restored')),
      warnings.join('\n'),
    );
    // The cache is bounded: 151 directories restored, far fewer descriptors ever open.
    assert.ok(maxFds < fdsBefore + 64 + 8, `at most ${maxFds} descriptors open (from ${fdsBefore})`);
    assert.equal(openFds(), fdsBefore, 'every directory descriptor is closed at the end');
  } finally {
    fs.rmSync(base, { recursive: true, force: true });
  }
});

test('an outside directory moved into the place of a checked one is not the one checked: entries below it are refused', () => {
  const { base, dest, outside } = setup('rconf-moved-in-');
  const before = outsideState(outside);
  try {
    const { seen, warnings } = restoreWithSwap(
      dest,
      [
        { e: entry('d', 'dir') },
        { e: entry('d/first', 'file'), content: 'first' },
        ...filler(150),
        { e: entry('d/late', 'file'), content: 'late' },
        { e: entry('d/victim', 'file'), content: 'overwritten' },
      ],
      'd/late',
      () => {
        // Same file system: the user renames the outside directory itself into the destination.
        fs.renameSync(join(dest, 'd'), join(dest, 'd.moved'));
        fs.renameSync(outside, join(dest, 'd'));
      },
    );
    fs.renameSync(join(dest, 'd'), outside);
    assert.deepEqual(outsideState(outside), before);
    for (const p of ['d/late', 'd/victim']) {
      assert.equal(seen.get(p), 'failed', p);
      assert.ok(
        warnings.some((w) => w.startsWith(`${p}: failed: d was replaced by another directory`)),
        `${p}: ${warnings.join('\n')}`,
      );
    }
  } finally {
    fs.rmSync(base, { recursive: true, force: true });
  }
});

test('a file swapped for a symbolic link while its data is written: its attributes go to the file written, not through the link', () => {
  const { base, dest, outside } = setup('rconf-file-');
  const before = outsideState(outside);
  const victimMode = fs.statSync(join(outside, 'victim')).mode & 0o7777;
  const fdsBefore = openFds();
  try {
    const seen = new Map<string, string>();
    const warnings: string[] = [];
    const r = new RestoreEngine(
      { dest, overwrite: 'always', special: true },
      { warn: (w) => warnings.push(w), entry: (p, status) => seen.set(p, status) },
    );
    const stream = paxStream([
      { e: entry('f', 'file', { mode: 0o606 }), content: 'y'.repeat(5000) },
      { e: entry('pipe', 'fifo', { mode: 0o666 }) },
    ]);
    // The header and part of the data, then the swap, then the rest.
    r.push(stream.subarray(0, 2048));
    assert.ok(fs.lstatSync(join(dest, 'f')).isFile(), 'the file is open and being written');
    fs.renameSync(join(dest, 'f'), join(dest, 'f.moved'));
    fs.symlinkSync(join(outside, 'victim'), join(dest, 'f'));
    r.push(stream.subarray(2048));
    r.end();
    assert.deepEqual(outsideState(outside), before);
    assert.equal(fs.statSync(join(outside, 'victim')).mode & 0o7777, victimMode);
    assert.equal(fs.readFileSync(join(dest, 'f.moved'), 'utf8'), 'y'.repeat(5000));
    assert.equal(fs.statSync(join(dest, 'f.moved')).mode & 0o7777, 0o606);
    assert.equal(seen.get('f'), 'restored');
    // A fifo's mode is set through a descriptor of the fifo itself (O_PATH): exact, umask or not.
    assert.ok(fs.lstatSync(join(dest, 'pipe')).isFIFO());
    assert.equal(fs.lstatSync(join(dest, 'pipe')).mode & 0o7777, 0o666);
    assert.deepEqual(warnings, []);
    assert.equal(openFds(), fdsBefore);
  } finally {
    fs.rmSync(base, { recursive: true, force: true });
  }
});

test('descriptors are closed when a stream breaks off mid-archive and when a restore is abandoned', () => {
  const dest = tmp('rconf-fds-');
  const fdsBefore = openFds();
  try {
    const stream = paxStream([
      { e: entry('a', 'dir') },
      { e: entry('a/b', 'dir') },
      { e: entry('a/b/c', 'file'), content: 'x'.repeat(5000) },
    ]);
    const r = new RestoreEngine({ dest, overwrite: 'always' }, { warn: () => undefined });
    r.push(stream.subarray(0, 2048));
    assert.throws(() => r.end());
    assert.equal(openFds(), fdsBefore);
    const r2 = new RestoreEngine({ dest: join(dest, 'two'), overwrite: 'always' }, { warn: () => undefined });
    r2.push(stream.subarray(0, 2048));
    r2.abandon();
    assert.equal(openFds(), fdsBefore);
  } finally {
    fs.rmSync(dest, { recursive: true, force: true });
  }
});
