// The backup's one seam to the tree (src/backup/file-source.ts, native/batch.c)
// against what Node's own fs says: listDirectory must give, for every entry of
// every kind, exactly the fields fs.lstatSync(..., { bigint: true }) gives
// (times before 1970 with nanoseconds, their *Ms rounding, device numbers,
// names that are not UTF-8 or 255 bytes long, 20,000 names, xattr name lists
// longer than the native call's 4 KiB buffer), and say how it failed when an
// entry or the directory itself goes away. A read batch (ReadBatch) must give
// each file exactly its listed size and the zero padding after it, whatever
// happened to the file since it was listed (grew, shrank, vanished, replaced
// by another file, a symbolic link, a fifo or a directory), and never block or
// follow anything.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { ListedStat, ReadBatch, ReadOutcome, listDirectory } from '../../src/backup/file-source.js';
import type { ListedEntry } from '../../src/backup/file-source.js';
import { RecordWriter } from '../../src/history/record.js';
import { decodeName, encodeName } from '../../src/util/byte-name.js';
import { ConfinedDir } from '../../src/util/confine.js';
import { llistxattr, lsetxattr, mkfifo, mknod, setTimesNs } from '../../src/util/native-fs.js';

const FIELDS = [
  'dev',
  'ino',
  'mode',
  'nlink',
  'uid',
  'gid',
  'rdev',
  'size',
  'blocks',
  'atimeNs',
  'mtimeNs',
  'ctimeNs',
  'atimeMs',
  'mtimeMs',
  'ctimeMs',
] as const;
/** All but the *Ms fields (their rounding before 1970 has a test of its own). */
const EXACT = FIELDS.filter((f) => !f.endsWith('Ms'));
const KINDS = [
  'isFile',
  'isDirectory',
  'isSymbolicLink',
  'isFIFO',
  'isCharacterDevice',
  'isBlockDevice',
  'isSocket',
] as const;

function tmp(prefix: string, base = os.tmpdir()): string {
  return fs.mkdtempSync(join(base, prefix));
}

function byName(entries: ListedEntry[]): Map<string, ListedEntry> {
  return new Map(entries.map((e) => [e.name, e]));
}

function listed(path: string, xattrs = false): ListedEntry[] {
  const dir = ConfinedDir.open(path);
  try {
    return listDirectory(dir, xattrs);
  } finally {
    dir.close();
  }
}

function assertSameStat(
  got: ListedEntry['stat'],
  path: string | Buffer,
  what: string,
  fields: readonly (typeof FIELDS)[number][] = FIELDS,
): void {
  assert.ok(got instanceof ListedStat, `${what}: listed with a stat (${String(got)})`);
  const want = fs.lstatSync(path, { bigint: true });
  for (const f of fields) assert.equal(got[f], want[f], `${what}: ${f}`);
  for (const k of KINDS) assert.equal(got[k](), want[k](), `${what}: ${k}()`);
}

describe('listDirectory: every field as lstat gives it', () => {
  let root = '';
  let server: net.Server | null = null;

  before(async () => {
    root = tmp('file-source-');
    fs.writeFileSync(join(root, 'file'), 'x'.repeat(5000));
    fs.mkdirSync(join(root, 'dir'));
    fs.symlinkSync('file', join(root, 'link'));
    fs.symlinkSync('/nowhere/at/all', join(root, 'dangling'));
    mkfifo(join(root, 'fifo'), 0o640);
    // Device numbers whose major and minor both need the high bits of dev_t.
    mknod(join(root, 'chardev'), 'chardev', 0o600, 4095, 1048575);
    mknod(join(root, 'blockdev'), 'blockdev', 0o600, 259, 70000);
    fs.linkSync(join(root, 'file'), join(root, 'hardlink'));
    fs.writeFileSync(join(root, 'old'), 'before 1970');
    setTimesNs(join(root, 'old'), { sec: -1n, nsec: 999_999_999 }, { sec: -315619200n, nsec: 123_456_789 });
    fs.writeFileSync(join(root, 'future'), 'after 2038');
    setTimesNs(join(root, 'future'), { sec: 7_258_118_400n, nsec: 1 }, { sec: 1n << 40n, nsec: 999_999_999 });
    fs.writeFileSync(join(root, 'owned'), 'by nobody in particular');
    fs.lchownSync(join(root, 'owned'), 4294967294, 4294967293);
    fs.chmodSync(join(root, 'owned'), 0o7751);
    const sparse = fs.openSync(join(root, 'sparse'), 'w');
    fs.ftruncateSync(sparse, 1 << 30);
    fs.closeSync(sparse);
    server = net.createServer();
    await new Promise<void>((res) => server!.listen(join(root, 'socket'), res));
  });

  after(async () => {
    await new Promise((res) => server?.close(res));
    fs.rmSync(root, { recursive: true, force: true });
  });

  test('every kind of entry, every field, exactly', () => {
    const names = byName(listed(root));
    assert.deepEqual(
      [...names.keys()].sort(),
      [
        'blockdev',
        'chardev',
        'dangling',
        'dir',
        'fifo',
        'file',
        'future',
        'hardlink',
        'link',
        'old',
        'owned',
        'socket',
        'sparse',
      ],
      'every name but . and ..',
    );
    for (const [name, e] of names) {
      assertSameStat(e.stat, join(root, name), name, name === 'old' ? EXACT : FIELDS);
      assert.equal(e.xattrNames, null, `${name}: xattr names not asked for`);
    }
  });

  test('times before 1970 keep their nanoseconds', () => {
    const old = byName(listed(root)).get('old')!.stat as ListedStat;
    assert.equal(old.mtimeNs, -315619200n * 1_000_000_000n + 123_456_789n);
    assert.equal(old.atimeNs, -1n);
  });

  // ListedStat says its *Ms are "as fs.BigIntStats rounds its *Ms fields: down,
  // also before 1970"; Node's BigIntStats divides the ns by 10^6 as a BigInt,
  // which rounds toward zero: -1 ns is 0n ms there, -1n in a listing.
  test('*Ms before 1970 as fs.lstatSync(bigint) gives them (the FileStat contract)', () => {
    const old = byName(listed(root)).get('old')!.stat as ListedStat;
    const want = fs.lstatSync(join(root, 'old'), { bigint: true });
    assert.equal(old.mtimeMs, want.mtimeMs, 'mtimeMs');
    assert.equal(old.atimeMs, want.atimeMs, 'atimeMs');
  });

  test("a history record made from a listing is byte for byte the one made from lstat's (record.ts fast path)", () => {
    // ListedStat hands RecordWriter plain numbers (HistoryStatNumbers); a
    // BigIntStats goes the BigInt way. Before 1970, past 2106, ids near 2^32.
    const fromListing = new RecordWriter();
    const fromLstat = new RecordWriter();
    for (const [name, e] of byName(listed(root))) {
      const want = fs.lstatSync(join(root, name), { bigint: true });
      const a = fromListing.entry(name, e.stat as ListedStat, 7n, 1234n, 0);
      const b = fromLstat.entry(name, want, 7n, 1234n, 0);
      assert.ok(a && b);
      assert.deepEqual(Buffer.from(a), Buffer.from(b), name);
    }
  });

  test('with xattr names asked for, every kind still lists (sockets, fifos, devices, symlinks)', () => {
    const names = byName(listed(root, true));
    for (const [name, e] of names) {
      assertSameStat(e.stat, join(root, name), name, name === 'old' ? EXACT : FIELDS);
      if (name === 'socket') continue;
      assert.ok(Array.isArray(e.xattrNames), `${name}: ${String(e.xattrNames)}`);
      const want = llistxattr(join(root, name), { followSymlinks: false });
      assert.deepEqual(e.xattrNames, want, `${name}: its own xattr names, the link not followed`);
    }
  });
});

describe('listDirectory: names', () => {
  let root = '';
  before(() => {
    root = tmp('file-source-names-');
  });
  after(() => fs.rmSync(root, { recursive: true, force: true }));

  test('names that are not UTF-8, and 255-byte names, come back as their exact bytes', () => {
    const raw = [
      Buffer.from([0x66, 0xff, 0xfe, 0x80]),
      Buffer.from([0xc3, 0x28]), // a broken two-byte sequence
      Buffer.from([0xed, 0xa0, 0x80]), // an encoded surrogate: not UTF-8
      Buffer.alloc(255, 0x61),
      Buffer.from('€'.repeat(85)), // 255 bytes of three-byte characters
      Buffer.concat([Buffer.alloc(254, 0x62), Buffer.from([0xff])]),
    ];
    for (const b of raw) {
      const p = Buffer.concat([Buffer.from(`${root}/`), b]);
      fs.writeFileSync(p, b);
      lsetxattr(p, 'user.k', Buffer.from('v'));
    }
    const got = listed(root, true);
    assert.equal(got.length, raw.length);
    for (const b of raw) {
      const e = got.find((x) => encodeName(x.name).equals(b));
      assert.ok(e, `name ${b.toString('hex')} listed with its bytes`);
      assert.equal(e.name, decodeName(b));
      assertSameStat(e.stat, Buffer.concat([Buffer.from(`${root}/`), b]), b.toString('hex'));
      assert.deepEqual(e.xattrNames, [Buffer.from('user.k')], `xattr names of ${b.toString('hex')}`);
    }
  });

  test('a directory of 20,000 names: every one, each with its own stat', () => {
    const big = join(root, 'big');
    fs.mkdirSync(big);
    for (let i = 0; i < 20_000; i++) fs.writeFileSync(join(big, `n${i}`), '');
    const got = listed(big);
    assert.equal(got.length, 20_000);
    const seen = new Set<string>();
    for (const e of got) {
      assert.ok(e.stat instanceof ListedStat, e.name);
      seen.add(e.name);
    }
    assert.equal(seen.size, 20_000, 'no name twice');
    for (const i of [0, 4999, 12345, 19999]) {
      const e = got.find((x) => x.name === `n${i}`)!;
      assertSameStat(e.stat, join(big, `n${i}`), `n${i}`);
    }
  });
});

describe('listDirectory: xattr name lists', () => {
  let mnt = '';
  before(() => {
    // tmpfs takes user.* xattrs without ext4's one-block limit: lists longer than 4 KiB.
    mnt = tmp('file-source-xattrs-', '/dev/shm');
  });
  after(() => fs.rmSync(mnt, { recursive: true, force: true }));

  test('none, several, and a list longer than 4 KiB (many long names)', () => {
    fs.writeFileSync(join(mnt, 'none'), '');
    fs.writeFileSync(join(mnt, 'several'), '');
    for (const k of ['user.a', 'user.bb', 'user.ccc']) lsetxattr(join(mnt, 'several'), k, Buffer.from(k));
    fs.writeFileSync(join(mnt, 'many'), '');
    const long: string[] = [];
    for (let i = 0; i < 60; i++) {
      const k = `user.${String(i).padStart(3, '0')}${'x'.repeat(190)}`;
      long.push(k);
      lsetxattr(join(mnt, 'many'), k, Buffer.from('v'));
    }
    const raw = long.reduce((n, k) => n + k.length + 1, 0);
    assert.ok(raw > 8192, `the list is ${raw} bytes`);
    fs.mkdirSync(join(mnt, 'dir'));
    lsetxattr(join(mnt, 'dir'), 'user.on-a-dir', Buffer.from('1'));
    const got = byName(listed(mnt, true));
    assert.deepEqual(got.get('none')!.xattrNames, []);
    assert.deepEqual((got.get('several')!.xattrNames as Buffer[]).map(String).sort(), [
      'user.a',
      'user.bb',
      'user.ccc',
    ]);
    assert.deepEqual((got.get('many')!.xattrNames as Buffer[]).map(String).sort(), long.sort());
    assert.deepEqual((got.get('dir')!.xattrNames as Buffer[]).map(String), ['user.on-a-dir']);
  });
});

describe('listDirectory: trouble', () => {
  test('a directory removed after it was opened lists as empty (it was: rmdir takes only empty ones)', () => {
    const root = tmp('file-source-gone-');
    const dir = ConfinedDir.open(root);
    try {
      fs.rmdirSync(root);
      // getdents64 says ENOENT for a dead directory, which glibc's readdir takes as its end.
      assert.deepEqual(listDirectory(dir, true), []);
    } finally {
      dir.close();
    }
  });

  test('a descriptor that cannot be read as a directory: an fs-style readdir error', () => {
    const root = tmp('file-source-notdir-');
    fs.writeFileSync(join(root, 'f'), 'not a directory');
    const fd = fs.openSync(join(root, 'f'), 'r');
    try {
      assert.throws(
        () => listDirectory({ fd } as ConfinedDir, true),
        (e: NodeJS.ErrnoException) => e.code === 'ENOTDIR' && e.syscall === 'readdir',
      );
    } finally {
      fs.closeSync(fd);
      fs.rmSync(root, { recursive: true, force: true });
    }
  });

  test('an entry removed between readdir and its lstat: ENOENT for that name, the others listed', async () => {
    const root = tmp('file-source-race-');
    for (let i = 0; i < 50; i++) fs.writeFileSync(join(root, `keep${i}`), '');
    // Another process creates and removes names as fast as it can meanwhile.
    const churn = spawn(
      'sh',
      ['-c', `cd '${root}' && while :; do for i in 0 1 2 3 4 5 6 7 8 9; do : > t$i; rm -f t$i; done; done`],
      { stdio: 'ignore' },
    );
    try {
      let vanished: ListedEntry | undefined;
      const deadline = Date.now() + 20_000;
      while (!vanished && Date.now() < deadline) {
        const got = listed(root, true);
        for (const e of got) {
          if (e.name.startsWith('keep')) assert.ok(e.stat instanceof ListedStat, e.name);
          else if (e.stat instanceof Error) vanished = e;
        }
        assert.equal(got.filter((e) => e.name.startsWith('keep')).length, 50);
        await new Promise((res) => setImmediate(res));
      }
      assert.ok(vanished, 'a name went between readdir and fstatat at least once');
      const err = vanished.stat as NodeJS.ErrnoException;
      assert.equal(err.code, 'ENOENT');
      assert.equal(err.syscall, 'lstat');
      assert.equal(vanished.xattrNames, null);
    } finally {
      churn.kill('SIGKILL');
      await new Promise((res) => churn.once('exit', res));
      fs.rmSync(root, { recursive: true, force: true });
    }
  });
});

describe('ReadBatch: each file exactly its listed size, whatever became of it', () => {
  let root = '';
  let dir: ConfinedDir;

  before(() => {
    root = tmp('file-source-read-');
  });
  after(() => {
    fs.rmSync(root, { recursive: true, force: true });
  });

  /** Lists, lets `meanwhile` change the tree, reads the batch; each file's outcome, data and padding. */
  function readAll(
    files: Record<string, Buffer>,
    meanwhile: () => void,
    extra: Buffer[] = [],
  ): Map<string, { outcome: ReadOutcome; data: Buffer; pad: Buffer; error: Error | null }> {
    const sub = fs.mkdtempSync(join(root, 'b-'));
    const names = [...Object.keys(files).map((n) => Buffer.from(n)), ...extra];
    const contents = [...Object.values(files), ...extra];
    names.forEach((n, i) => fs.writeFileSync(Buffer.concat([Buffer.from(`${sub}/`), n]), contents[i]!));
    dir = ConfinedDir.open(sub);
    try {
      const list = listDirectory(dir, false);
      const batch = new ReadBatch();
      const out = Buffer.alloc(4 << 20, 0xaa);
      const at = new Map<string, { i: number; dest: number; size: number }>();
      let dest = 0;
      for (const e of list) {
        const st = e.stat as ListedStat;
        const size = Number(st.size);
        const i = batch.add(e.name, st.dev, st.ino, size, dest);
        at.set(e.name, { i, dest, size });
        dest += size + ((512 - (size % 512)) % 512) + 512; // a guard block between files
      }
      meanwhile.call(null);
      batch.run(dir, out);
      const res = new Map<string, { outcome: ReadOutcome; data: Buffer; pad: Buffer; error: Error | null }>();
      for (const [name, { i, dest: d, size }] of at) {
        const pad = (512 - (size % 512)) % 512;
        const outcome = batch.outcome(i);
        res.set(name, {
          outcome,
          data: Buffer.from(out.subarray(d, d + size)),
          pad: Buffer.from(out.subarray(d + size, d + size + pad)),
          error: outcome === ReadOutcome.OK ? null : batch.error(i),
        });
        // The guard block after each file is never written.
        const guard = out.subarray(d + size + pad, d + size + pad + 512);
        assert.ok(
          guard.every((b) => b === 0xaa),
          `${name}: nothing written past its padding`,
        );
      }
      return res;
    } finally {
      dir.close();
    }
  }

  const pattern = (n: number, seed = 1): Buffer =>
    Buffer.from(Array.from({ length: n }, (_, i) => (i * 131 + seed) & 0xff));

  test('quiet files of many sizes: exact data, zero padding', () => {
    const sizes = [0, 1, 511, 512, 513, 4096, 65535, 65536, 1 << 20];
    const files = Object.fromEntries(sizes.map((s) => [`s${s}`, pattern(s, s)]));
    const got = readAll(files, () => undefined);
    for (const s of sizes) {
      const r = got.get(`s${s}`)!;
      assert.equal(r.outcome, ReadOutcome.OK, `s${s}`);
      assert.ok(r.data.equals(files[`s${s}`]!), `s${s}: data`);
      assert.ok(
        r.pad.every((b) => b === 0),
        `s${s}: zero padding`,
      );
    }
  });

  test('grew, with and without padding after it: GREW, cut at the listed size', () => {
    const files = { g100: pattern(100), g512: pattern(512), g1024: pattern(1024), g1m: pattern(1 << 20) };
    const got = readAll(files, () => {
      for (const n of Object.keys(files)) fs.appendFileSync(join(dir.path, n), 'more');
    });
    for (const [n, want] of Object.entries(files)) {
      const r = got.get(n)!;
      assert.equal(r.outcome, ReadOutcome.GREW, n);
      assert.ok(r.data.equals(want), `${n}: the first listed bytes`);
      assert.ok(
        r.pad.every((b) => b === 0),
        `${n}: the probe byte does not stay in the padding`,
      );
    }
  });

  test('an empty file that grew is GREW too, as the copy loop says of it (FileCopier probes at size 0)', () => {
    const got = readAll({ empty: Buffer.alloc(0) }, () => fs.appendFileSync(join(dir.path, 'empty'), 'now'));
    assert.equal(got.get('empty')!.outcome, ReadOutcome.GREW);
  });

  test('shrank: SHRANK, zeros after what is left', () => {
    const got = readAll({ s: pattern(3000), z: pattern(2048) }, () => {
      fs.truncateSync(join(dir.path, 's'), 1000);
      fs.truncateSync(join(dir.path, 'z'), 0);
    });
    const s = got.get('s')!;
    assert.equal(s.outcome, ReadOutcome.SHRANK);
    assert.ok(s.data.equals(Buffer.concat([pattern(1000), Buffer.alloc(2000)])));
    assert.ok(s.pad.every((b) => b === 0));
    const z = got.get('z')!;
    assert.equal(z.outcome, ReadOutcome.SHRANK);
    assert.ok(z.data.every((b) => b === 0));
  });

  test('vanished, or replaced by another file, a symlink, a fifo or a directory: not read, nothing written', () => {
    const files = {
      gone: pattern(10),
      other: pattern(20),
      link: pattern(30),
      fifo: pattern(40),
      dir: pattern(50),
      quiet: pattern(60),
    };
    const got = readAll(files, () => {
      const p = (n: string): string => join(dir.path, n);
      fs.unlinkSync(p('gone'));
      fs.writeFileSync(p('other.new'), 'another file');
      fs.renameSync(p('other.new'), p('other'));
      fs.unlinkSync(p('link'));
      fs.symlinkSync('quiet', p('link'));
      fs.unlinkSync(p('fifo'));
      mkfifo(p('fifo'), 0o600); // no writer: an open without O_NONBLOCK would block here forever
      fs.unlinkSync(p('dir'));
      fs.mkdirSync(p('dir'));
    });
    const gone = got.get('gone')!;
    assert.equal(gone.outcome, ReadOutcome.OPEN_FAILED);
    assert.equal((gone.error as NodeJS.ErrnoException).code, 'ENOENT');
    const link = got.get('link')!;
    assert.equal(link.outcome, ReadOutcome.OPEN_FAILED, 'the symlink is not followed');
    assert.equal((link.error as NodeJS.ErrnoException).code, 'ELOOP');
    for (const n of ['other', 'fifo', 'dir']) assert.equal(got.get(n)!.outcome, ReadOutcome.CHANGED, n);
    for (const n of ['gone', 'other', 'link', 'fifo', 'dir']) {
      const r = got.get(n)!;
      assert.ok(
        r.data.every((b) => b === 0xaa),
        `${n}: its area is left untouched`,
      );
    }
    assert.equal(got.get('quiet')!.outcome, ReadOutcome.OK);
    assert.ok(got.get('quiet')!.data.equals(files.quiet));
  });

  test('names that are not UTF-8 and 255-byte names are opened by their bytes', () => {
    const odd = [
      Buffer.from([0x61, 0xff, 0x62]),
      Buffer.alloc(255, 0x7a),
      Buffer.from('é'.repeat(127) + 'x'),
    ];
    const got = readAll({}, () => undefined, odd);
    for (const b of odd) {
      const r = got.get(decodeName(b))!;
      assert.equal(r.outcome, ReadOutcome.OK, b.toString('hex'));
      assert.ok(r.data.equals(b));
    }
  });
});
