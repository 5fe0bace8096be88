// The batched backup path (file-source.ts, reader.ts batches) with a real
// reader thread, on a noatime tmpfs (so that reading a tree leaves it as it
// was, and two backups of it can be compared byte for byte):
//   - a quiet tree gives the very archive the one-thread engine gives, with a
//     64 KiB out ring (pieces, wraps) and an 8 MiB one (the data service's);
//   - files that change between the walker's header and the reader's read
//     (grow, shrink, vanish, are replaced by another file, a symlink, a fifo,
//     a directory) in the middle of batches followed by directories,
//     symlinks and hard links: skipped or cut with the right warning, the
//     archive still parses (PaxParser and GNU tar), every content is right,
//     and every history record's fh_info is its own header's offset;
//   - a directory swapped while its files are read; an xattr gone before the
//     header; an empty file that grew.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import type { BackedUpEntry } from '../../src/backup/engine.js';
import { PaxParser } from '../../src/backup/pax-parser.js';
import type { ParsedEntry } from '../../src/backup/pax-parser.js';
import { lsetxattr, mkfifo } from '../../src/util/native-fs.js';
import { backupOneThread, backupWithReader } from '../helpers/batched-pipe.js';
import type { Run } from '../helpers/batched-pipe.js';

const RINGS = [
  { name: '64 KiB ring', outBytes: 1 << 16, holdReaderMs: 0 },
  { name: '8 MiB ring', outBytes: 8 << 20, holdReaderMs: 0 },
  // The reader starts late, the walker's items waiting: big batches, the trouble in their middle.
  { name: '64 KiB ring, reader late', outBytes: 1 << 16, holdReaderMs: 300 },
  { name: '8 MiB ring, reader late', outBytes: 8 << 20, holdReaderMs: 300 },
];

const pattern = (n: number, seed: number): Buffer => {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = (i * 131 + seed * 7 + (i >> 9)) & 0xff;
  return b;
};

interface Parsed {
  entry: ParsedEntry;
  content: Buffer;
}

/** The archive's entries by path (no trailing '/'; '.' the root), with their data; PaxParser must take it all. */
function parse(archive: Buffer): Map<string, Parsed> {
  const out = new Map<string, Parsed>();
  const chunks = new Map<string, Buffer[]>();
  const key = (p: string): string => p.replace(/\/$/, '') || '.';
  const parser = new PaxParser();
  parser.push(archive, {
    onEntry: (e) => {
      assert.ok(!out.has(key(e.path)), `${e.path} once in the archive`);
      out.set(key(e.path), { entry: e, content: Buffer.alloc(0) });
      chunks.set(key(e.path), []);
    },
    onData: (e, d) => chunks.get(key(e.path))!.push(Buffer.from(d)),
  });
  assert.equal(parser.offset, BigInt(archive.length), 'the archive ends with its end marker');
  for (const [p, c] of chunks) out.get(p)!.content = Buffer.concat(c);
  return out;
}

/** GNU tar lists the archive without complaint. */
function tarLists(archive: Buffer, dir: string): string[] {
  const file = join(dir, 'archive.tar');
  fs.writeFileSync(file, archive);
  try {
    return execFileSync('tar', ['-tvf', file], { encoding: 'latin1' }).split('\n').filter(Boolean);
  } finally {
    fs.rmSync(file);
  }
}

/** Every history record names an entry of the archive at its own header's offset; every entry has one. */
function checkHistory(run: Run, entries: Map<string, Parsed>): void {
  const seen = new Set<string>();
  for (const r of run.records) {
    const e = entries.get(r.path);
    assert.ok(e, `${r.path}: a record for an entry the archive holds`);
    assert.equal(r.fhInfo, e.entry.headerOffset, `${r.path}: fh_info is its header's offset`);
    seen.add(r.path);
  }
  assert.deepEqual([...seen].sort(), [...entries.keys()].sort(), 'one record per entry');
  let last = -1n;
  for (const r of run.records) {
    assert.ok(r.fhInfo > last, `${r.path}: records in stream order`);
    last = r.fhInfo;
  }
}

describe('the batched reader', { timeout: 300_000 }, () => {
  let mnt = '';
  let scratch = '';

  before(() => {
    mnt = fs.mkdtempSync(join(os.tmpdir(), 'batched-reader-'));
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=512m,noatime', 'tmpfs', mnt]);
    scratch = fs.mkdtempSync(join(os.tmpdir(), 'batched-reader-scratch-'));
  });
  after(() => {
    execFileSync('umount', [mnt]);
    fs.rmSync(mnt, { recursive: true, force: true });
    fs.rmSync(scratch, { recursive: true, force: true });
  });

  /** A fresh tree under the mount. */
  function tree(name: string): string {
    const root = join(mnt, name);
    fs.mkdirSync(root);
    return root;
  }

  describe('a quiet tree: the same archive as one thread', () => {
    let root = '';
    let one: Run;
    const files = new Map<string, Buffer>();

    before(async () => {
      root = tree('quiet');
      const put = (rel: string, data: Buffer): void => {
        fs.writeFileSync(join(root, rel), data);
        files.set(rel, data);
      };
      // More than one batch in one directory (BATCH_FILES is 256), many sizes.
      fs.mkdirSync(join(root, 'many'));
      for (let i = 0; i < 320; i++) put(`many/f${String(i).padStart(3, '0')}`, pattern((i * 97) % 9000, i));
      // Around the batch limit (1 MiB) and around the 64 KiB ring's size and its boundaries.
      fs.mkdirSync(join(root, 'sizes'));
      const sizes = [0, 1, 511, 512, 513, (1 << 20) - 1, 1 << 20, (1 << 20) + 1, 3 << 20];
      for (let s = (1 << 16) - 4096; s <= (1 << 16) + 512; s += 256) sizes.push(s, s - 1);
      for (const s of sizes) put(`sizes/s${s}`, pattern(s, s));
      // Between files: directories, symlinks, hard links, a fifo, xattrs, a name that is not UTF-8.
      fs.mkdirSync(join(root, 'mixed'));
      for (let i = 0; i < 40; i++) {
        put(`mixed/a${i}`, pattern(100 + i, i));
        if (i % 5 === 0) fs.mkdirSync(join(root, `mixed/a${i}d`));
        if (i % 7 === 0) fs.symlinkSync(`a${i}`, join(root, `mixed/a${i}l`));
        if (i % 9 === 0) fs.linkSync(join(root, `mixed/a${i}`), join(root, `mixed/a${i}h`));
      }
      mkfifo(join(root, 'mixed/a3f'), 0o644);
      lsetxattr(join(root, 'mixed/a4'), 'user.note', Buffer.from('kept'));
      fs.writeFileSync(Buffer.from(`${root}/mixed/\xff-latin1`, 'latin1'), 'bytes');
      // A directory whose name is not UTF-8, with files: the reader opens it by its bytes.
      const odd = Buffer.from(`${root}/\xfe-dir`, 'latin1');
      fs.mkdirSync(odd);
      for (let i = 0; i < 5; i++)
        fs.writeFileSync(Buffer.concat([odd, Buffer.from(`/g${i}`)]), pattern(600 * i, i));
      one = await backupOneThread(root);
      assert.equal(one.result.warnings, 0, one.warnings.join('\n'));
    });

    for (const ring of RINGS) {
      test(`${ring.name}: byte-identical archive, same history`, async () => {
        const two = await backupWithReader(root, {
          outBytes: ring.outBytes,
          holdReaderMs: ring.holdReaderMs,
        });
        assert.equal(two.result.warnings, 0, two.warnings.join('\n'));
        assert.equal(two.archive.length, one.archive.length, 'same length');
        assert.ok(two.archive.equals(one.archive), 'same bytes');
        const entries = parse(two.archive);
        for (const [rel, data] of files) assert.ok(entries.get(rel)!.content.equals(data), rel);
        checkHistory(two, entries);
        assert.deepEqual(two.records, one.records, 'the reader gives the history the one thread gives');
        assert.ok(tarLists(two.archive, scratch).length >= entries.size);
      });
    }
  });

  test('FILES paths (files named one by one, in several directories): the same archive as one thread', async () => {
    const root = tree('files-spec');
    fs.mkdirSync(join(root, 'x/y'), { recursive: true });
    for (let i = 0; i < 30; i++) fs.writeFileSync(join(root, 'x/y', `f${i}`), pattern(i * 300, i));
    fs.writeFileSync(join(root, 'top'), 'top');
    const files = ['x/y/f3', 'top', 'x/y/f10', 'x/y/f1', 'x/y'];
    const one = await backupOneThread(root, { spec: { files } });
    for (const ring of RINGS) {
      const two = await backupWithReader(root, {
        outBytes: ring.outBytes,
        holdReaderMs: ring.holdReaderMs,
        spec: { files },
      });
      assert.deepEqual(two.warnings, one.warnings, ring.name);
      assert.ok(two.archive.equals(one.archive), `${ring.name}: same bytes`);
      assert.deepEqual(two.records, one.records, `${ring.name}: same history`);
    }
  });

  describe('files that change after their header, before their read', () => {
    for (const ring of RINGS) {
      test(`${ring.name}: skipped or cut, with warnings; archive, contents and fh_info right`, async () => {
        const root = tree(`changing-${ring.outBytes}-${ring.holdReaderMs}`);
        const d = join(root, 'd');
        fs.mkdirSync(d);
        const want = new Map<string, Buffer>();
        const put = (name: string, data: Buffer, kept = true): void => {
          fs.writeFileSync(join(d, name), data);
          if (kept) want.set(`d/${name}`, data);
        };
        // Sorted order: quiet files, then each trouble followed by entries that are not files.
        for (let i = 0; i < 150; i++) put(`a${String(i).padStart(3, '0')}`, pattern(i * 13, i));
        put('b-gone', pattern(700, 1), false);
        fs.mkdirSync(join(d, 'b-gone-dir'));
        fs.symlinkSync('a000', join(d, 'b-gone-link'));
        fs.linkSync(join(d, 'a001'), join(d, 'b-gone-zhard'));
        put('c-other', pattern(800, 2), false);
        fs.mkdirSync(join(d, 'c-other-dir'));
        put('e-tolink', pattern(900, 3), false);
        fs.symlinkSync('a002', join(d, 'e-tolink-sym'));
        put('f-tofifo', pattern(1000, 4), false);
        fs.linkSync(join(d, 'a003'), join(d, 'f-tofifo-zhard'));
        put('g-todir', pattern(1100, 5), false);
        fs.mkdirSync(join(d, 'g-todir-x'));
        put('h-grew100', pattern(100, 6));
        put('h-grew512', pattern(512, 7));
        put('h-grew1m', pattern(1 << 20, 8));
        put('i-shrank', pattern(5000, 9), false);
        want.set('d/i-shrank', Buffer.concat([pattern(1234, 9), Buffer.alloc(5000 - 1234)]));
        for (let i = 0; i < 150; i++) put(`z${String(i).padStart(3, '0')}`, pattern(i * 17, i + 50));
        const p = (n: string): string => join(d, n);
        const change: Record<string, () => void> = {
          'd/b-gone': () => fs.unlinkSync(p('b-gone')),
          'd/c-other': () => {
            fs.writeFileSync(p('c-other.new'), 'another file altogether');
            fs.renameSync(p('c-other.new'), p('c-other'));
          },
          'd/e-tolink': () => {
            fs.unlinkSync(p('e-tolink'));
            fs.symlinkSync('a004', p('e-tolink'));
          },
          'd/f-tofifo': () => {
            fs.unlinkSync(p('f-tofifo'));
            mkfifo(p('f-tofifo'), 0o600);
          },
          'd/g-todir': () => {
            fs.unlinkSync(p('g-todir'));
            fs.mkdirSync(p('g-todir'));
          },
          'd/h-grew100': () => fs.appendFileSync(p('h-grew100'), 'more'),
          'd/h-grew512': () => fs.appendFileSync(p('h-grew512'), 'more'),
          'd/h-grew1m': () => fs.appendFileSync(p('h-grew1m'), 'more'),
          'd/i-shrank': () => fs.truncateSync(p('i-shrank'), 1234),
        };
        const run = await backupWithReader(root, {
          outBytes: ring.outBytes,
          holdReaderMs: ring.holdReaderMs,
          hooks: { record: (e: BackedUpEntry) => change[e.path]?.() },
        });
        const entries = parse(run.archive);
        for (const gone of ['b-gone', 'c-other', 'e-tolink', 'f-tofifo', 'g-todir'])
          assert.ok(!entries.has(`d/${gone}`), `${gone} is left out`);
        for (const [rel, data] of want) {
          const e = entries.get(rel);
          assert.ok(e, `${rel} in the archive`);
          assert.ok(e.content.equals(data), `${rel}: its content`);
        }
        for (const other of [
          'b-gone-dir',
          'b-gone-link',
          'b-gone-zhard',
          'c-other-dir',
          'e-tolink-sym',
          'g-todir-x',
        ])
          assert.ok(entries.has(`d/${other}`), `${other} after a skipped file is in the archive`);
        assert.equal(entries.get('d/b-gone-link')!.entry.linkTarget, 'a000');
        assert.equal(entries.get('d/b-gone-zhard')!.entry.type, 'hardlink');
        checkHistory(run, entries);
        const expect = [
          /^d\/b-gone: vanished; skipped$/,
          /^d\/c-other: changed while being backed up \(not the file that was listed\); skipped$/,
          /^d\/e-tolink: changed while being backed up \(not the file that was listed\); skipped$/,
          /^d\/f-tofifo: changed while being backed up \(not the file that was listed\); skipped$/,
          /^d\/g-todir: changed while being backed up \(not the file that was listed\); skipped$/,
          /^d\/h-grew100: changed while being read; backed up as first seen$/,
          /^d\/h-grew512: changed while being read; backed up as first seen$/,
          /^d\/h-grew1m: changed while being read; backed up as first seen$/,
          /^d\/i-shrank: shrank while being read; padded with zeros to its recorded size$/,
        ];
        for (const re of expect)
          assert.ok(
            run.warnings.some((w) => re.test(w)),
            `${re.source} in\n${run.warnings.join('\n')}`,
          );
        assert.equal(run.warnings.length, expect.length, run.warnings.join('\n'));
        assert.equal(run.result.warnings, expect.length);
        assert.equal(run.result.entries, entries.size, 'entries counts what the archive holds');
        const listed = tarLists(run.archive, scratch);
        assert.equal(listed.length, entries.size, 'GNU tar lists every entry');
      });
    }
  });

  test('a directory swapped for another while its files are read: none of the other one is read', async () => {
    const root = tree('swapped');
    fs.mkdirSync(join(root, 'd'));
    fs.mkdirSync(join(root, 'e'));
    for (let i = 0; i < 20; i++) {
      fs.writeFileSync(join(root, 'd', `f${i}`), `d's own ${i}`);
      fs.writeFileSync(join(root, 'e', `f${i}`), `NOT d's ${i}`);
    }
    const run = await backupWithReader(root, {
      hooks: {
        record: (e) => {
          if (e.path !== 'd/f0') return;
          fs.renameSync(join(root, 'd'), join(root, 'd.old'));
          fs.renameSync(join(root, 'e'), join(root, 'd'));
        },
      },
    });
    const entries = parse(run.archive);
    for (const [path, e] of entries)
      assert.ok(!e.content.toString().startsWith('NOT'), `${path}: the other directory's file is not read`);
    checkHistory(run, entries);
    assert.equal(tarLists(run.archive, scratch).length, entries.size);
  });

  describe('both ways of running agree', () => {
    for (const mode of ['one thread', 'reader thread'] as const) {
      test(`${mode}: an xattr removed after the listing is a warning naming it; the file is backed up`, async () => {
        const root = tree(`xattr-${mode.replace(' ', '-')}`);
        fs.writeFileSync(join(root, 'f'), 'content');
        lsetxattr(join(root, 'f'), 'user.gone', Buffer.from('soon'));
        lsetxattr(join(root, 'f'), 'user.kept', Buffer.from('here'));
        const directory = (): void => {
          execFileSync('setfattr', ['-x', 'user.gone', join(root, 'f')]);
        };
        const run =
          mode === 'one thread'
            ? await backupOneThread(root, { hooks: { directory } })
            : await backupWithReader(root, { hooks: { directory } });
        assert.deepEqual(
          run.warnings,
          ['f: extended attribute user.gone vanished; the file is backed up without it'],
          run.warnings.join('\n'),
        );
        const f = parse(run.archive).get('f')!;
        assert.equal(f.content.toString(), 'content');
        assert.deepEqual(
          f.entry.xattrs?.map((x) => [x.name, x.value.toString()]),
          [['user.kept', 'here']],
        );
      });

      test(`${mode}: an empty file that grew after the listing is a "changed while being read" warning`, async () => {
        const root = tree(`empty-grew-${mode.replace(' ', '-')}`);
        fs.writeFileSync(join(root, 'empty'), '');
        fs.writeFileSync(join(root, 'other'), 'quiet');
        const directory = (): void => fs.appendFileSync(join(root, 'empty'), 'now it has bytes');
        const run =
          mode === 'one thread'
            ? await backupOneThread(root, { hooks: { directory } })
            : await backupWithReader(root, { hooks: { directory } });
        // Wait a little for the reader's warnings (they come as messages).
        for (let i = 0; i < 50 && run.warnings.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
        assert.deepEqual(run.warnings, ['empty: changed while being read; backed up as first seen']);
        assert.equal(parse(run.archive).get('empty')!.content.length, 0);
      });

      test(`${mode}: a hard link whose first name was skipped still restores (its target is in the archive)`, async () => {
        const root = tree(`hardlink-${mode.replace(' ', '-')}`);
        fs.writeFileSync(join(root, 'a-first'), 'the linked data');
        fs.linkSync(join(root, 'a-first'), join(root, 'b-second'));
        // After the listing, before either name is read: the first name becomes another file.
        const directory = (): void => {
          fs.writeFileSync(join(root, 'a-first.new'), 'another file');
          fs.renameSync(join(root, 'a-first.new'), join(root, 'a-first'));
        };
        const run =
          mode === 'one thread'
            ? await backupOneThread(root, { hooks: { directory } })
            : await backupWithReader(root, { hooks: { directory } });
        const entries = parse(run.archive);
        assert.ok(!entries.has('a-first'), 'the changed first name is skipped');
        const second = entries.get('b-second');
        assert.ok(second, 'the second name is backed up');
        if (second.entry.type === 'hardlink')
          assert.ok(
            entries.has(second.entry.linkTarget!),
            `b-second links to ${second.entry.linkTarget}, which the archive does not hold`,
          );
        else assert.equal(second.content.toString(), 'the linked data');
        // And GNU tar can restore it.
        const out = fs.mkdtempSync(join(scratch, 'x-'));
        fs.writeFileSync(join(scratch, 'h.tar'), run.archive);
        execFileSync('tar', ['-xf', join(scratch, 'h.tar'), '-C', out]);
        assert.equal(fs.readFileSync(join(out, 'b-second'), 'utf8'), 'the linked data');
      });
    }
  });
});
