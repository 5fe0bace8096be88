// No single entry can fail a backup (issue 13): the engine is fed one of each
// kind of entry at the edge of what Linux can hold, on a tmpfs (which takes
// 64-bit times, 8 EiB files and user.* xattrs): times before 1901 and far
// after 2038 with nanoseconds, an 8 EiB sparse file, uids and gids near
// 2^32, device numbers at Linux's limits, a name of every byte but '/' and
// NUL, a symlink target of 4,095 bytes that are not UTF-8, a 64 KiB xattr,
// and a socket (which pax cannot hold). Every entry comes back from the
// stream exactly, but the socket, which is a warning naming it; the backup
// completes. Both ways of running: one thread, and walker + reader thread.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { BackupEngine } from '../../src/backup/engine.js';
import type { StreamSink } from '../../src/backup/engine.js';
import { PaxParser } from '../../src/backup/pax-parser.js';
import type { ParsedEntry } from '../../src/backup/pax-parser.js';
import { decodeName, encodeName } from '../../src/util/byte-name.js';
import { lsetxattr, setTimesNs } from '../../src/util/native-fs.js';
import { withReaderThread } from '../helpers/reader-pipe.js';

const EVERY_BYTE = Buffer.from(Array.from({ length: 254 }, (_, i) => i + 1).filter((c) => c !== 0x2f));
const LONG_TARGET = Buffer.alloc(4095, 0xe9);
const BIG_XATTR = Buffer.from(Array.from({ length: 65536 }, (_, i) => (i * 31) & 0xff));
const SPARSE_REAL = (1n << 63n) - 1n;
const TAIL_DATA = Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 7 + 1) & 0xff));
const TIMES = {
  'before-1901': { sec: -(1n << 40n), nsec: 1 },
  'far-future': { sec: 1n << 40n, nsec: 999_999_999 },
  'year-2200': { sec: 7_258_118_400n, nsec: 123_456_789 },
} as const;

describe('no single entry fails a backup', () => {
  let mnt = '';
  let root = '';

  before(() => {
    mnt = fs.mkdtempSync(join(os.tmpdir(), 'every-entry-'));
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64m', 'tmpfs', mnt]);
    root = join(mnt, 'tree');
    fs.mkdirSync(root);
    for (const [name, t] of Object.entries(TIMES)) {
      fs.writeFileSync(join(root, name), name);
      setTimesNs(join(root, name), t, t);
    }
    const fd = fs.openSync(join(root, 'eight-exbibytes'), 'w');
    fs.ftruncateSync(fd, Number.MAX_SAFE_INTEGER); // node's ftruncate stops at 2^53 ...
    fs.closeSync(fd);
    execFileSync('truncate', ['-s', SPARSE_REAL.toString(), join(root, 'eight-exbibytes')]); // ... GNU truncate does not
    // 4 KiB of data near the end, where offsets no longer fit a double.
    execFileSync(
      'dd',
      [
        `of=${join(root, 'eight-exbibytes')}`,
        'bs=4096',
        `seek=${(SPARSE_REAL + 1n - 8192n) / 4096n}`,
        'count=1',
        'conv=notrunc',
        'status=none',
      ],
      { input: TAIL_DATA },
    );
    fs.writeFileSync(join(root, 'high-ids'), 'ids');
    fs.chownSync(join(root, 'high-ids'), 4_294_967_294, 4_294_967_293);
    execFileSync('mknod', [join(root, 'char-max'), 'c', '4095', '1048575']);
    execFileSync('mknod', [join(root, 'block-max'), 'b', '4095', '1048575']);
    fs.writeFileSync(Buffer.concat([Buffer.from(`${root}/`), EVERY_BYTE]), 'every byte');
    fs.symlinkSync(LONG_TARGET, Buffer.from(`${root}/long-target`));
    fs.writeFileSync(join(root, 'big-xattr'), 'x');
    lsetxattr(join(root, 'big-xattr'), 'user.big', BIG_XATTR);
    // A socket file outlives the process that bound it.
    execFileSync('python3', [
      '-c',
      'import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])',
      join(root, 'a-socket'),
    ]);
  });
  after(() => {
    if (mnt) {
      execFileSync('umount', [mnt]);
      fs.rmSync(mnt, { recursive: true, force: true });
    }
  });

  function check(archive: Buffer, warnings: string[]): void {
    const seen = new Map<string, ParsedEntry>();
    const data = new Map<string, number>();
    const tail: Array<{ at: bigint; bytes: Buffer }> = [];
    new PaxParser().push(archive, {
      onEntry: (e) => void seen.set(e.path, e),
      onData: (e, d, at) => {
        data.set(e.path, (data.get(e.path) ?? 0) + d.length);
        if (e.path === 'eight-exbibytes') tail.push({ at, bytes: Buffer.from(d) });
      },
    });
    assert.deepEqual(
      warnings.filter((w) => !/a-socket/.test(w)),
      [],
      'no warning but the socket',
    );
    assert.ok(
      warnings.some((w) => /^a-socket: a socket/.test(w)),
      warnings.join('\n'),
    );
    assert.ok(!seen.has('a-socket'));
    for (const [name, t] of Object.entries(TIMES)) {
      assert.deepEqual(seen.get(name)?.mtime, t, name);
    }
    const sparse = seen.get('eight-exbibytes')!;
    assert.equal(sparse.size, SPARSE_REAL);
    assert.ok(sparse.sparse, 'stored sparse');
    assert.equal(data.get('eight-exbibytes'), 4096, 'its 4 KiB of data and nothing of its holes');
    assert.deepEqual(
      sparse.sparse.map.filter((r) => r.length > 0n),
      [{ offset: SPARSE_REAL + 1n - 8192n, length: 4096n }],
    );
    assert.deepEqual(tail, [{ at: SPARSE_REAL + 1n - 8192n, bytes: TAIL_DATA }]);
    const ids = seen.get('high-ids')!;
    assert.deepEqual([ids.uid, ids.gid], [4_294_967_294, 4_294_967_293]);
    for (const dev of ['char-max', 'block-max']) {
      const d = seen.get(dev)!;
      assert.deepEqual([d.devMajor, d.devMinor], [4095, 1048575], dev);
    }
    const every = seen.get(decodeName(EVERY_BYTE))!;
    assert.ok(every, 'the name of every byte');
    assert.deepEqual(encodeName(every.path), EVERY_BYTE);
    assert.deepEqual(encodeName(seen.get('long-target')!.linkTarget!), LONG_TARGET);
    const x = seen.get('big-xattr')!.xattrs?.find((a) => a.name === 'user.big');
    assert.deepEqual(x?.value, BIG_XATTR);
  }

  test('one thread', async () => {
    const parts: Buffer[] = [];
    const sink: StreamSink = {
      write: async (c) => void parts.push(Buffer.from(c)),
      end: async () => undefined,
    };
    const warnings: string[] = [];
    const r = await new BackupEngine({ root, files: [], excludes: [] }, sink, {
      aborted: () => false,
      warn: (t) => warnings.push(t),
    }).run();
    assert.equal(r.aborted, false);
    check(Buffer.concat(parts), warnings);
  });

  test('walker + reader thread', async () => {
    const warnings: string[] = [];
    const { result: r, archive } = await withReaderThread(
      (pipe, sink) =>
        new BackupEngine(
          { root, files: [], excludes: [] },
          sink,
          { aborted: () => false, warn: (t) => warnings.push(t), record: () => null },
          pipe,
        ).run(),
      (w) => warnings.push(w),
    );
    assert.equal(r.aborted, false);
    check(archive, warnings);
  });
});
