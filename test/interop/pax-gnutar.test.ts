// GNU tar 1.34 as the independent reader and writer of issue 13's pax
// additions (docs/pax.md): an archive our encoder writes of a tree with
// Latin-1 names, a newline in a name, a non-UTF-8 symlink target, a ~3 KB
// path, user.* xattrs of binary values, access and default ACLs, 1 GiB sparse
// files (data at the end; ending in a hole), times in 1901, 1969, past 2038
// and in 2200 with nanoseconds, and Linux's largest device numbers, extracted
// by `tar --xattrs --acls --xattrs-include='*' -xpf -` as root; and GNU tar's
// archive of the same tree made on disk, read by our parser. On a tmpfs:
// ext4 with small inodes holds no time before 1901-12-13.

import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import {
  lstatSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  readSync,
  closeSync,
  rmSync,
} from 'node:fs';
import { after, before, describe, test } from 'node:test';

import type { PaxEntry, PaxSparse, PaxTime } from '../../src/backup/pax-layout.js';
import { PaxParser } from '../../src/backup/pax-parser.js';
import type { ParsedEntry } from '../../src/backup/pax-parser.js';
import { decodeName, encodeName } from '../../src/util/byte-name.js';
import { issue13Spec, makeSpecTree, readAcl, readXattrs, specArchive } from '../helpers/pax-tree.js';
import type { SpecItem } from '../helpers/pax-tree.js';

const TAR_X = ['--xattrs', '--acls', '--xattrs-include=*'];
const ns = (t: PaxTime): bigint => t.sec * 1_000_000_000n + BigInt(t.nsec);
/** Linux's dev_t: 12-bit major, 20-bit minor (the glibc layout). */
const major = (rdev: bigint): bigint => ((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn);
const minor = (rdev: bigint): bigint => (rdev & 0xffn) | ((rdev >> 12n) & ~0xffn);

/** Data regions only (GNU tar ends every map with an empty region at the real size; we only when needed). */
const dataRegions = (s: PaxSparse): { offset: bigint; length: bigint }[] =>
  s.map.filter((r) => r.length > 0n);

/** The ACL text that only restates `mode`. */
function minimalAcl(mode: number): string {
  const rwx = (b: number): string => `${b & 4 ? 'r' : '-'}${b & 2 ? 'w' : '-'}${b & 1 ? 'x' : '-'}`;
  return `user::${rwx(mode >> 6)}\ngroup::${rwx(mode >> 3)}\nother::${rwx(mode)}\n`;
}

function readAt(path: Buffer, offset: bigint, length: number): Buffer {
  const fd = openSync(path, 'r');
  try {
    const b = Buffer.alloc(length);
    const n = readSync(fd, b, 0, length, Number(offset));
    return b.subarray(0, n);
  } finally {
    closeSync(fd);
  }
}

describe('pax and GNU tar: issue 13', () => {
  let dir = '';
  let items: SpecItem[] = [];

  before(() => {
    assert.equal(process.getuid?.(), 0, 'these tests run as root (mknod, ACLs of other users, owners)');
    dir = mkdtempSync('/dev/shm/ndmpd-pax-gnutar-');
    items = issue13Spec();
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('GNU tar extracts what our encoder writes: names, xattrs, ACLs, holes, times, devices', () => {
    const out = `${dir}/extracted`;
    mkdirSync(out);
    const r = spawnSync('tar', [...TAR_X, '-xpf', '-'], { cwd: out, input: specArchive(items) });
    assert.equal(r.status, 0, `tar failed: ${r.stderr.toString()}`);
    // GNU tar 1.34 reads hdrcharset=BINARY names as bytes but warns that it does not know the
    // keyword; and it remarks on times before 1970 or after the clock. Nothing else.
    const stderr = r.stderr.toString();
    assert.match(stderr, /Ignoring unknown extended header keyword 'hdrcharset'/);
    assert.doesNotMatch(
      stderr,
      /Cannot|rror|Skipping|Unexpected|Unknown|unknown extended header keyword '(?!hdrcharset)/,
    );

    const abs = (p: string): Buffer => encodeName(`${out}/${p}`);
    // Every name, as bytes, and nothing else.
    const names = new Set<string>();
    const walk = (rel: string): void => {
      for (const n of readdirSync(abs(rel), { encoding: 'buffer' })) {
        const child = `${rel}/${decodeName(n)}`;
        names.add(child);
        if (lstatSync(abs(child)).isDirectory()) walk(child);
      }
    };
    walk('t13');
    assert.deepEqual(
      [...names].sort(),
      items
        .map((i) => i.entry.path)
        .filter((p) => p !== 't13')
        .sort(),
    );

    for (const { entry: e, data } of items) {
      const what = `${e.path.slice(0, 40)} (${e.type})`;
      const st = lstatSync(abs(e.path), { bigint: true });
      if (e.type !== 'symlink') assert.equal(st.mode & 0o7777n, BigInt(e.mode), `mode of ${what}`);
      assert.equal(st.uid, 0n, what);
      if (e.type !== 'hardlink') assert.equal(st.mtimeNs, ns(e.mtime), `mtime of ${what}`);
      switch (e.type) {
        case 'dir':
          assert.ok(st.isDirectory(), what);
          break;
        case 'symlink':
          assert.deepEqual(
            readlinkSync(abs(e.path), { encoding: 'buffer' }),
            encodeName(e.linkTarget!),
            what,
          );
          break;
        case 'hardlink':
          assert.equal(st.ino, lstatSync(abs(e.linkTarget!), { bigint: true }).ino, what);
          break;
        case 'blockdev':
          assert.ok(st.isBlockDevice(), what);
          assert.equal(major(st.rdev), BigInt(e.devMajor!), what);
          assert.equal(minor(st.rdev), BigInt(e.devMinor!), what);
          break;
        default:
          assert.equal(st.size, e.size, `size of ${what}`);
          if (e.sparse) {
            // The regions where they belong, zeros around them, and holes on disk.
            let off = 0;
            for (const reg of dataRegions(e.sparse)) {
              const want = data!.subarray(off, off + Number(reg.length));
              assert.deepEqual(
                readAt(abs(e.path), reg.offset, want.length),
                want,
                `${what} at ${reg.offset}`,
              );
              if (reg.offset > 0n)
                assert.deepEqual(readAt(abs(e.path), reg.offset - 16n, 16), Buffer.alloc(16));
              off += want.length;
            }
            assert.ok(
              st.blocks * 512n <= BigInt(data!.length) + 65536n,
              `${what}: ${st.blocks} blocks, not sparse`,
            );
          } else assert.deepEqual(readFileSync(abs(e.path)), data, `content of ${what}`);
      }
      if (e.xattrs)
        assert.deepEqual(
          readXattrs(`${out}/${e.path}`),
          [...e.xattrs].sort((a, b) => (a.name < b.name ? -1 : 1)),
        );
      if (e.aclAccess)
        assert.equal(readAcl(`${out}/${e.path}`, 'access'), e.aclAccess, `access ACL of ${what}`);
      if (e.aclDefault)
        assert.equal(readAcl(`${out}/${e.path}`, 'default'), e.aclDefault, `default ACL of ${what}`);
    }
  });

  test('our parser reads what GNU tar writes of the same tree', () => {
    const src = `${dir}/src`;
    mkdirSync(src);
    makeSpecTree(src, items);
    const tar = execFileSync(
      'tar',
      ['--format=posix', ...TAR_X, '--sparse', '--sparse-version=1.0', '--sort=name', '-cf', '-', 't13'],
      { cwd: src, maxBuffer: 1 << 26 },
    );
    const got = new Map<string, { e: ParsedEntry; pieces: [bigint, Buffer][] }>();
    const p = new PaxParser();
    let cur: { e: ParsedEntry; pieces: [bigint, Buffer][] } | null = null;
    p.push(tar, {
      onEntry: (e) => {
        cur = { e, pieces: [] };
        got.set(e.path, cur);
      },
      onData: (_e, d, at) => cur!.pieces.push([at, Buffer.from(d)]),
    });
    p.end();
    assert.deepEqual([...got.keys()].sort(), items.map((i) => i.entry.path).sort());

    for (const { entry: want, data } of items) {
      const { e, pieces } = got.get(want.path)!;
      const what = `${want.path.slice(0, 40)} (${want.type})`;
      const st = lstatSync(encodeName(`${src}/${want.path}`), { bigint: true });
      assert.equal(e.type, want.type, what);
      if (want.type !== 'symlink') assert.equal(e.mode, want.mode, `mode of ${what}`);
      assert.equal(ns(e.mtime), st.mtimeNs, `mtime of ${what}`);
      if (want.type !== 'hardlink' && /^[\x20-\x7e\n]*$/.test(want.path))
        assert.equal(ns(e.mtime), ns(want.mtime), `mtime of ${what} as made`);
      assert.equal(e.uname, 'root');
      assert.equal(e.linkTarget, want.linkTarget, what);
      assert.equal(e.devMajor, want.devMajor, what);
      assert.equal(e.devMinor, want.devMinor, what);
      // GNU tar writes a directory's access ACL, even one the mode says, when it has a default ACL.
      const access = want.aclAccess ?? (want.aclDefault ? minimalAcl(want.mode) : undefined);
      assert.equal(e.aclAccess, access, `access ACL of ${what}`);
      assert.equal(e.aclDefault, want.aclDefault, `default ACL of ${what}`);
      const sortX = (x: PaxEntry['xattrs']) =>
        x ? [...x].sort((a, b) => (a.name < b.name ? -1 : 1)) : undefined;
      assert.deepEqual(sortX(e.xattrs), sortX(want.xattrs), `xattrs of ${what}`);
      if (want.type === 'file') {
        assert.equal(e.size, want.size, `size of ${what}`);
        if (want.sparse) {
          assert.ok(e.sparse, `${what} read as sparse`);
          assert.equal(e.sparse.realSize, want.sparse.realSize);
          assert.deepEqual(dataRegions(e.sparse), dataRegions(want.sparse), `map of ${what}`);
          // onData gives each region's bytes at the region's offset.
          const starts = dataRegions(want.sparse).map((r) => r.offset);
          assert.ok(
            pieces.every(([at]) => at >= starts[0]!),
            what,
          );
        }
        assert.deepEqual(Buffer.concat(pieces.map((x) => x[1])), data ?? Buffer.alloc(0), `data of ${what}`);
        if (!want.sparse) pieces.reduce((at, [a, b]) => (assert.equal(a, at), at + BigInt(b.length)), 0n);
      }
    }
  });
});
