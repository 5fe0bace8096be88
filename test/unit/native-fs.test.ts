// The native file-system addon (src/util/native-fs.ts, native/posixfs.c): times
// set to the nanosecond on files, directories and symlinks themselves, before
// 1970 and past 2038; fifos and device nodes; errors shaped like Node's; bad
// arguments refused with a TypeError or RangeError, never a crash; and the addon
// loaded and used from worker threads as well as the main thread. Extended
// attributes (binary values, byte names, symbolic links' own, the sizes past
// the first try) and the data regions of sparse files.

import assert from 'node:assert/strict';
import { once } from 'node:events';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { Worker } from 'node:worker_threads';

import {
  dataRegions,
  lgetxattr,
  llistxattr,
  lsetxattr,
  mkfifo,
  mknod,
  setTimesNs,
} from '../../src/util/native-fs.js';
import type { TimeNs } from '../../src/util/native-fs.js';

const NS = 1_000_000_000n;
const ns = (t: TimeNs): bigint => t.sec * NS + BigInt(t.nsec);

function tmpDir(): string {
  return fs.mkdtempSync(join(os.tmpdir(), 'native-fs-'));
}

function times(p: string): { atime: bigint; mtime: bigint } {
  const st = fs.lstatSync(p, { bigint: true });
  return { atime: st.atimeNs, mtime: st.mtimeNs };
}

/** The thrown error, which must be an Error. */
function thrown(fn: () => void): NodeJS.ErrnoException {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof Error);
    return err;
  }
  assert.fail('did not throw');
}

const A: TimeNs = { sec: 1_600_000_000n, nsec: 123_456_789 };
const M: TimeNs = { sec: 1_700_000_000n, nsec: 987_654_321 };

test('a file and a directory get their times to the nanosecond', () => {
  const dir = tmpDir();
  try {
    const file = join(dir, 'f');
    fs.writeFileSync(file, 'x');
    for (const p of [file, dir]) {
      setTimesNs(p, A, M);
      assert.deepEqual(times(p), { atime: ns(A), mtime: ns(M) });
      // The ends of the nanosecond range.
      setTimesNs(p, { sec: 1n, nsec: 0 }, { sec: 2n, nsec: 999_999_999 });
      assert.deepEqual(times(p), { atime: 1n * NS, mtime: 3n * NS - 1n });
    }
  } finally {
    fs.rmSync(dir, { recursive: true });
  }
});

test("a symlink's own times, without following it; followed, its target's", () => {
  const dir = tmpDir();
  try {
    const target = join(dir, 'target');
    const link = join(dir, 'link');
    fs.writeFileSync(target, 'x');
    fs.symlinkSync('target', link);
    const targetTimes = {
      atime: ns({ sec: 1_000_000_000n, nsec: 111 }),
      mtime: ns({ sec: 1_000_000_001n, nsec: 222 }),
    };
    setTimesNs(target, { sec: 1_000_000_000n, nsec: 111 }, { sec: 1_000_000_001n, nsec: 222 });

    setTimesNs(link, A, M, { followSymlinks: false });
    assert.deepEqual(times(link), { atime: ns(A), mtime: ns(M) });
    assert.deepEqual(times(target), targetTimes);

    // Following (the default) changes the target, not the link. (Following
    // reads the link, which may update its atime: only its mtime is compared.)
    const A2: TimeNs = { sec: 1_500_000_000n, nsec: 5 };
    const M2: TimeNs = { sec: 1_500_000_001n, nsec: 6 };
    setTimesNs(link, A2, M2);
    assert.deepEqual(times(target), { atime: ns(A2), mtime: ns(M2) });
    assert.equal(times(link).mtime, ns(M));

    // A dangling symlink's own times can still be set.
    fs.rmSync(target);
    setTimesNs(link, M, A, { followSymlinks: false });
    assert.deepEqual(times(link), { atime: ns(M), mtime: ns(A) });
  } finally {
    fs.rmSync(dir, { recursive: true });
  }
});

test('times before 1970 and after 2038 (2100), where the file system keeps them', (t) => {
  const dir = tmpDir();
  try {
    const file = join(dir, 'f');
    fs.writeFileSync(file, 'x');
    const cases: [string, TimeNs][] = [
      ['1960', { sec: -315_619_200n, nsec: 123_456_789 }],
      ['1969-12-31T23:59:59.999999999', { sec: -1n, nsec: 999_999_999 }],
      ['2100', { sec: 4_102_444_800n, nsec: 987_654_321 }],
    ];
    for (const [name, when] of cases) {
      try {
        setTimesNs(file, when, when);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'EINVAL' || code === 'EOVERFLOW' || code === 'ERANGE') {
          t.diagnostic(`${name}: the file system refuses it (${code})`);
          continue;
        }
        throw err;
      }
      assert.deepEqual(times(file), { atime: ns(when), mtime: ns(when) }, name);
    }
  } finally {
    fs.rmSync(dir, { recursive: true });
  }
});

test('mkfifo makes a fifo with the mode, less the umask', () => {
  const dir = tmpDir();
  const old = process.umask(0o027);
  try {
    const fifo = join(dir, 'fifo');
    mkfifo(fifo, 0o666);
    const st = fs.lstatSync(fifo);
    assert.ok(st.isFIFO());
    assert.equal(st.mode & 0o7777, 0o640);

    // A whole st_mode (type bits included) is taken for its permission bits.
    const fifo2 = join(dir, 'fifo2');
    mkfifo(fifo2, 0o010600);
    assert.ok(fs.lstatSync(fifo2).isFIFO());
    assert.equal(fs.lstatSync(fifo2).mode & 0o7777, 0o600);

    const err = thrown(() => mkfifo(fifo, 0o600));
    assert.equal(err.code, 'EEXIST');
    assert.equal(err.errno, -os.constants.errno.EEXIST);
    assert.equal(err.syscall, 'mknod');
    assert.equal(err.path, fifo);
  } finally {
    process.umask(old);
    fs.rmSync(dir, { recursive: true });
  }
});

test('device nodes, as root', (t) => {
  if (process.getuid?.() !== 0) {
    t.skip('needs root');
    return;
  }
  const dir = tmpDir();
  const old = process.umask(0);
  try {
    // glibc's makedev, as stat's rdev reports it.
    const makedev = (major: bigint, minor: bigint): bigint =>
      (minor & 0xffn) | ((major & 0xfffn) << 8n) | ((minor & ~0xffn) << 12n) | ((major & ~0xfffn) << 32n);
    const chr = join(dir, 'null');
    try {
      mknod(chr, 'chardev', 0o666, 1, 3);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EPERM') {
        t.skip('mknod is not permitted here (no CAP_MKNOD)');
        return;
      }
      throw err;
    }
    const c = fs.lstatSync(chr, { bigint: true });
    assert.ok(c.isCharacterDevice());
    assert.equal(c.mode & 0o7777n, 0o666n);
    assert.equal(c.rdev, makedev(1n, 3n));

    const blk = join(dir, 'blk');
    mknod(blk, 'blockdev', 0o640, 259, 70_000);
    const b = fs.lstatSync(blk, { bigint: true });
    assert.ok(b.isBlockDevice());
    assert.equal(b.mode & 0o7777n, 0o640n);
    assert.equal(b.rdev, makedev(259n, 70_000n));
  } finally {
    process.umask(old);
    fs.rmSync(dir, { recursive: true });
  }
});

test("errors carry Node's code, errno, syscall and path", () => {
  const dir = tmpDir();
  try {
    const missing = join(dir, 'no-such-dir', 'f');
    const err = thrown(() => setTimesNs(missing, A, M));
    assert.equal(err.code, 'ENOENT');
    assert.equal(err.errno, -os.constants.errno.ENOENT);
    assert.equal(err.syscall, 'utimensat');
    assert.equal(err.path, missing);
    assert.match(err.message, /^ENOENT: .+, utimensat '.*no-such-dir\/f'$/);

    const err2 = thrown(() => mkfifo(missing, 0o600));
    assert.equal(err2.code, 'ENOENT');
    assert.equal(err2.syscall, 'mknod');
    assert.equal(err2.path, missing);

    // A path through a file.
    fs.writeFileSync(join(dir, 'file'), '');
    const err3 = thrown(() => setTimesNs(join(dir, 'file', 'x'), A, M));
    assert.equal(err3.code, 'ENOTDIR');
    assert.equal(err3.errno, -os.constants.errno.ENOTDIR);
  } finally {
    fs.rmSync(dir, { recursive: true });
  }
});

test('bad arguments throw TypeError or RangeError, never crash', () => {
  const any = <T>(v: unknown): T => v as T;
  const typeErrors: [string, () => void][] = [
    ['path not a string', () => setTimesNs(any(42), A, M)],
    ['path with a NUL byte', () => setTimesNs('/tmp/a\0b', A, M)],
    ['empty path', () => setTimesNs('', A, M)],
    ['sec a number', () => setTimesNs('/tmp', { sec: any(1), nsec: 0 }, M)],
    ['nsec a bigint', () => setTimesNs('/tmp', A, { sec: 1n, nsec: any(1n) })],
    ['nsec a string', () => setTimesNs('/tmp', { sec: 1n, nsec: any('1') }, M)],
    ['followSymlinks a string', () => setTimesNs('/tmp', A, M, { followSymlinks: any('no') })],
    ['mkfifo path undefined', () => mkfifo(any(undefined), 0o600)],
    ['mkfifo mode a string', () => mkfifo('/tmp/x', any('600'))],
    ['mknod type', () => mknod('/tmp/x', any('fifo'), 0o600, 1, 3)],
    ['mknod major a string', () => mknod('/tmp/x', 'chardev', 0o600, any('1'), 3)],
  ];
  for (const [name, fn] of typeErrors) assert.throws(fn, TypeError, name);

  const rangeErrors: [string, () => void][] = [
    ['nsec 1e9', () => setTimesNs('/tmp', { sec: 1n, nsec: 1_000_000_000 }, M)],
    ['nsec negative', () => setTimesNs('/tmp', A, { sec: 1n, nsec: -1 })],
    ['nsec fractional', () => setTimesNs('/tmp', A, { sec: 1n, nsec: 1.5 })],
    ['nsec NaN', () => setTimesNs('/tmp', A, { sec: 1n, nsec: NaN })],
    ['sec beyond 64 bits', () => setTimesNs('/tmp', { sec: 1n << 70n, nsec: 0 }, M)],
    ['mode negative', () => mkfifo('/tmp/x', -1)],
    ['minor negative', () => mknod('/tmp/x', 'chardev', 0o600, 1, -3)],
  ];
  for (const [name, fn] of rangeErrors) assert.throws(fn, RangeError, name);

  // The addon itself, called with nothing or the wrong things.
  type Loose = (...args: unknown[]) => void;
  const binding = createRequire(import.meta.url)('../../../build/Release/posixfs.node') as {
    setTimes: Loose;
    mknod: Loose;
  };
  assert.throws(() => binding.setTimes(), TypeError);
  assert.throws(() => binding.setTimes('/tmp', 1n, 0, 1n, 0), TypeError); // followSymlinks missing
  assert.throws(() => binding.mknod(), TypeError);
  assert.throws(() => binding.mknod({}, [], null, Symbol('x')), TypeError);
});

test('the addon loads and works in worker threads', async () => {
  const dir = tmpDir();
  try {
    // Loaded in the main thread first, so the workers load it into a process
    // that already has it (a module that is not context-aware fails there).
    fs.writeFileSync(join(dir, 'main'), '');
    setTimesNs(join(dir, 'main'), A, M);

    const code = `
      const { parentPort, workerData } = require('node:worker_threads');
      import(workerData.module).then((m) => {
        m.setTimesNs(workerData.path, workerData.atime, workerData.mtime, { followSymlinks: false });
        m.mkfifo(workerData.path + '.fifo', 0o600);
        let code;
        try {
          m.setTimesNs(workerData.path + '/missing/x', workerData.atime, workerData.mtime);
        } catch (err) {
          code = err.code;
        }
        parentPort.postMessage({ code });
      });
    `;
    const module = new URL('../../src/util/native-fs.js', import.meta.url).href;
    const run = async (i: number): Promise<void> => {
      const path = join(dir, `w${i}`);
      fs.writeFileSync(path, '');
      const atime: TimeNs = { sec: BigInt(1_000_000 * i), nsec: 100_000_001 * i };
      const mtime: TimeNs = { sec: -BigInt(1_000_000 * i), nsec: 999_999_999 - i };
      const worker = new Worker(code, { eval: true, workerData: { module, path, atime, mtime } });
      // Listening for the exit first: a worker that ends at once can deliver
      // its message and exit in one turn, before a later once() would listen.
      const exited = once(worker, 'exit');
      const [msg] = (await once(worker, 'message')) as [{ code: string }];
      await exited;
      assert.equal(msg.code, 'ENOTDIR');
      assert.deepEqual(times(path), { atime: ns(atime), mtime: ns(mtime) });
      assert.ok(fs.lstatSync(path + '.fifo').isFIFO());
    };
    await Promise.all([run(1), run(2), run(3)]);
    // A worker started after others have come and gone loads it again.
    await run(4);
  } finally {
    fs.rmSync(dir, { recursive: true });
  }
});

/** A directory on tmpfs when there is one: ext4 without ea_inode keeps at most a block of xattrs per file. */
function xattrDir(): string {
  const base = fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir();
  return fs.mkdtempSync(join(base, 'native-xattr-'));
}

const names = (p: string | Buffer, follow = false): string[] =>
  llistxattr(p, { followSymlinks: follow })
    .map((n) => n.toString('latin1'))
    .sort();

test('xattrs: binary values (NUL, newline, 64 KiB) set, listed and read back exactly', () => {
  const dir = xattrDir();
  try {
    const file = join(dir, 'f');
    fs.writeFileSync(file, 'x');
    assert.deepEqual(llistxattr(file), []);
    const big = Buffer.alloc(64 * 1024);
    for (let i = 0; i < big.length; i++) big[i] = (i * 7 + 3) & 0xff;
    const values: [string, Buffer][] = [
      ['user.nul', Buffer.from([0, 1, 0, 0xff])],
      ['user.newline', Buffer.from('a\nb\n')],
      ['user.empty', Buffer.alloc(0)],
      ['user.big', big],
      ['trusted.t', Buffer.from('root only')],
    ];
    for (const [n, v] of values) lsetxattr(file, n, v);
    assert.deepEqual(names(file), values.map(([n]) => n).sort());
    for (const [n, v] of values) assert.deepEqual(lgetxattr(file, n), v, n);
    // Replaced, not appended.
    lsetxattr(file, 'user.nul', Buffer.from('y'));
    assert.deepEqual(lgetxattr(file, Buffer.from('user.nul')), Buffer.from('y'));

    const err = thrown(() => lgetxattr(file, 'user.none'));
    assert.equal(err.code, 'ENODATA');
    assert.equal(err.syscall, 'lgetxattr');
    assert.equal(err.path, file);
  } finally {
    fs.rmSync(dir, { recursive: true });
  }
});

test('xattrs: a list longer than the first try, and names and paths as bytes', () => {
  const dir = xattrDir();
  try {
    // A name that is not UTF-8 (Latin-1 é), reached only as a Buffer path.
    const file = Buffer.concat([Buffer.from(dir + '/caf'), Buffer.from([0xe9])]);
    fs.writeFileSync(file, '');
    const many: string[] = [];
    for (let i = 0; i < 40; i++) many.push(`user.${String(i).padStart(3, '0')}${'n'.repeat(150)}`);
    for (const n of many) lsetxattr(file, n, Buffer.from(n.slice(5, 8)));
    // An attribute name with a byte that is not UTF-8.
    const odd = Buffer.concat([Buffer.from('user.x'), Buffer.from([0xff])]);
    lsetxattr(file, odd, Buffer.from('odd'));
    const listed = llistxattr(file);
    assert.equal(listed.length, 41);
    assert.ok(listed.some((n) => n.equals(odd)));
    assert.deepEqual(lgetxattr(file, odd), Buffer.from('odd'));
    assert.deepEqual(lgetxattr(file, many[17]!), Buffer.from('017'));
  } finally {
    fs.rmSync(dir, { recursive: true });
  }
});

test("xattrs: a symbolic link's own, or, followed, its target's (as /proc/self/fd/N needs)", () => {
  const dir = xattrDir();
  try {
    const target = join(dir, 'target');
    const link = join(dir, 'link');
    fs.writeFileSync(target, '');
    fs.symlinkSync('target', link);
    lsetxattr(link, 'user.a', Buffer.from('via link'), { followSymlinks: true });
    assert.deepEqual(lgetxattr(target, 'user.a'), Buffer.from('via link'));
    assert.deepEqual(names(link, true), ['user.a']);
    // The link itself has none; user.* cannot be set on a symbolic link (the kernel's rule).
    assert.deepEqual(names(link), []);
    assert.equal(thrown(() => lgetxattr(link, 'user.a')).code, 'ENODATA');
    assert.equal(thrown(() => lsetxattr(link, 'user.b', Buffer.from('x'))).code, 'EPERM');
    lsetxattr(link, 'trusted.l', Buffer.from('on the link'));
    assert.deepEqual(lgetxattr(link, 'trusted.l'), Buffer.from('on the link'));

    // Through an open descriptor's /proc/self/fd/N, which is a link to the file.
    const fd = fs.openSync(target, 'r');
    try {
      const at = `/proc/self/fd/${fd}`;
      lsetxattr(at, 'user.fd', Buffer.from('by fd'), { followSymlinks: true });
      assert.deepEqual(lgetxattr(target, 'user.fd'), Buffer.from('by fd'));
    } finally {
      fs.closeSync(fd);
    }
  } finally {
    fs.rmSync(dir, { recursive: true });
  }
});

test("xattrs: errors are shaped like Node's; a file system without them says EOPNOTSUPP", (t) => {
  const dir = xattrDir();
  try {
    const missing = join(dir, 'missing');
    const e1 = thrown(() => llistxattr(missing));
    assert.equal(e1.code, 'ENOENT');
    assert.equal(e1.syscall, 'llistxattr');
    assert.equal(e1.errno, -os.constants.errno.ENOENT);
    assert.equal(thrown(() => lsetxattr(missing, 'user.a', Buffer.from('x'))).code, 'ENOENT');
    // An unknown namespace.
    fs.writeFileSync(join(dir, 'f'), '');
    const e2 = thrown(() => lsetxattr(join(dir, 'f'), 'nonsense.a', Buffer.from('x')));
    assert.equal(e2.code, 'EOPNOTSUPP');
    assert.equal(e2.syscall, 'lsetxattr');
  } finally {
    fs.rmSync(dir, { recursive: true });
  }
  // /proc's files hold no user.* attributes.
  const e3 = thrown(() => lsetxattr('/proc/self/status', 'user.a', Buffer.from('x')));
  t.diagnostic(`/proc: ${e3.code ?? ''}`);
  assert.ok(['EOPNOTSUPP', 'EPERM', 'EACCES'].includes(e3.code ?? ''), e3.code);
});

test('dataRegions: the data of a sparse file, one ending in a hole, all hole, dense, bounded', () => {
  const dir = tmpDir();
  try {
    const file = join(dir, 'sparse');
    const fd = fs.openSync(file, 'w+');
    try {
      const block = Buffer.alloc(4096, 0x61);
      const size = 64 * 1024 * 1024;
      fs.ftruncateSync(fd, size);
      assert.deepEqual(dataRegions(fd, size), []);
      fs.writeSync(fd, block, 0, block.length, 1024 * 1024);
      fs.writeSync(fd, block, 0, block.length, 8 * 1024 * 1024);
      fs.writeSync(fd, block, 0, block.length, 8 * 1024 * 1024 + 4096); // adjacent: one region
      fs.writeSync(fd, block, 0, block.length, 32 * 1024 * 1024);
      const MiB = 1024n * 1024n;
      const want = [
        { offset: MiB, length: 4096n },
        { offset: 8n * MiB, length: 8192n },
        { offset: 32n * MiB, length: 4096n },
      ];
      assert.deepEqual(dataRegions(fd, size), want);
      // Below a smaller size (what was lstat'ed): cut there.
      assert.deepEqual(dataRegions(fd, 8 * 1024 * 1024 + 100), [want[0], { offset: 8n * MiB, length: 100n }]);
      // Bounded: past two regions, the second runs to the end.
      assert.deepEqual(dataRegions(fd, size, 2), [
        want[0],
        { offset: 8n * MiB, length: BigInt(size) - 8n * MiB },
      ]);
      assert.deepEqual(dataRegions(fd, size, 1), [{ offset: MiB, length: BigInt(size) - MiB }]);
      // The offset is back at 0 for the reads that follow.
      const b = Buffer.alloc(1);
      assert.equal(fs.readSync(fd, b, 0, 1, null), 1);
      assert.equal(b[0], 0);
    } finally {
      fs.closeSync(fd);
    }
    const dense = join(dir, 'dense');
    fs.writeFileSync(dense, Buffer.alloc(10_000, 1));
    const dfd = fs.openSync(dense, 'r');
    try {
      assert.deepEqual(dataRegions(dfd, 10_000), [{ offset: 0n, length: 10_000n }]);
      assert.deepEqual(dataRegions(dfd, 0), []);
    } finally {
      fs.closeSync(dfd);
    }
    assert.equal(thrown(() => dataRegions(987_654, 10)).code, 'EBADF');
  } finally {
    fs.rmSync(dir, { recursive: true });
  }
});

test('xattr and dataRegions arguments: TypeError or RangeError, never a crash', () => {
  const any = <T>(v: unknown): T => v as T;
  assert.throws(() => llistxattr(any(42)), TypeError);
  assert.throws(() => llistxattr(''), TypeError);
  assert.throws(() => llistxattr(Buffer.from('/tmp\0x')), TypeError);
  assert.throws(() => lgetxattr('/tmp', any(undefined)), TypeError);
  assert.throws(() => lgetxattr('/tmp', ''), TypeError);
  assert.throws(() => lsetxattr('/tmp', 'user.a', any('a string')), TypeError);
  assert.throws(() => lsetxattr('/tmp', 'user.a', any(new Uint16Array(2))), TypeError);
  assert.throws(
    () => lsetxattr('/tmp', 'user.a', Buffer.alloc(1), { followSymlinks: any('yes') }),
    TypeError,
  );
  assert.throws(() => dataRegions(any('3'), 10), TypeError);
  assert.throws(() => dataRegions(0, -1), RangeError);
  assert.throws(() => dataRegions(0, 1.5), RangeError);
  assert.throws(() => dataRegions(0, 10, 0), RangeError);
});
