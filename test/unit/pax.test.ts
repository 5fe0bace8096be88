// The pax encoder and parser (src/backup/pax-encoder.ts, pax-parser.ts): round trips through our own
// parser at every chunk boundary, GNU tar 1.34 extracting and listing what we
// write (including a 9 GiB file through a pipe), our parser reading GNU tar's
// --format=posix output, and hostile input.

import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import {
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readlinkSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import type { PaxEntry, PaxTime } from '../../src/backup/pax-layout.js';
import type { ParsedEntry } from '../../src/backup/pax-parser.js';
import {
  BLOCK,
  END_OF_ARCHIVE,
  paddingAfter,
  PaxFormatError,
  PaxUnrepresentableError,
} from '../../src/backup/pax-layout.js';
import { encodeHeader, encodeHeaderInto, headerBytes } from '../../src/backup/pax-encoder.js';
import { PaxParser } from '../../src/backup/pax-parser.js';
import { archive, buildTree, content, HIGH_UID, walkTree } from '../helpers/pax-tree.js';
import type { WalkedEntry } from '../helpers/pax-tree.js';
import { strip, xRecords } from '../helpers/pax-inspect.js';

const T = (sec: bigint, nsec = 0): PaxTime => ({ sec, nsec });
const BASE = {
  size: 0n,
  mode: 0o644,
  uid: 0,
  gid: 0,
  uname: 'root',
  gname: 'root',
  mtime: T(1_700_000_000n),
};
const file = (path: string, size: number, extra: Partial<PaxEntry> = {}): PaxEntry => ({
  ...BASE,
  path,
  type: 'file',
  size: BigInt(size),
  ...extra,
});

/** Entries covering every type and every reason for an x header. */
const ENTRIES: PaxEntry[] = [
  file('a.txt', 5),
  { ...BASE, path: 'dir', type: 'dir', mode: 0o755 },
  file('p'.repeat(100), 1), // exactly fills the name field
  file(`${'q'.repeat(54)}/${'r'.repeat(100)}`, 0), // 155 bytes: prefix/name split
  file(`${'x'.repeat(155)}/${'y'.repeat(100)}`, 513), // 256 bytes: the longest split
  { ...BASE, path: 'd'.repeat(99), type: 'dir' }, // 99 + '/' = 100
  { ...BASE, path: `${'e'.repeat(150)}/${'d'.repeat(100)}`, type: 'dir' }, // name would be 101 with '/'
  file('c'.repeat(200), 2), // 200-byte component: x path
  file(Array.from({ length: 20 }, (_, i) => `${i}`.padEnd(199, 'z')).join('/'), 3), // 4000 bytes
  file('dir ü/ファイル name.txt', 10),
  { ...BASE, path: 'sym', type: 'symlink', mode: 0o777, linkTarget: 'a.txt' },
  { ...BASE, path: 'longsym', type: 'symlink', mode: 0o777, linkTarget: `../${'t'.repeat(300)}` },
  { ...BASE, path: 'sym ü', type: 'symlink', mode: 0o777, linkTarget: 'ziel ü' },
  { ...BASE, path: 'hard', type: 'hardlink', linkTarget: 'a.txt' },
  { ...BASE, path: 'fifo', type: 'fifo', mode: 0o600 },
  { ...BASE, path: 'tty', type: 'chardev', mode: 0o620, devMajor: 4, devMinor: 1 },
  { ...BASE, path: 'sda', type: 'blockdev', mode: 0o660, devMajor: 8, devMinor: 1048575 },
  file('setuid', 1, { mode: 0o4755 }),
  file('setgid', 1, { mode: 0o2755 }),
  { ...BASE, path: 'sticky', type: 'dir', mode: 0o1777 },
  file('uid0', 0, { uid: 0, gid: 0 }),
  file('maxustar', 0, { uid: 0o7777777, gid: 0o7777777 }),
  file('highuid', 7, { uid: HIGH_UID, gid: HIGH_UID + 1, uname: '', gname: '' }),
  file('names', 0, { uname: 'u'.repeat(32), gname: 'grüppe' }),
  file('name31', 0, { uname: 'v'.repeat(31), gname: 'w'.repeat(31) }),
  file('ns', 4, {
    mtime: T(1_700_000_000n, 123_456_789),
    atime: T(1_700_000_001n, 1),
    ctime: T(1_700_000_002n, 0),
  }),
  file('epoch', 0, { mtime: T(0n) }),
  file('before-epoch', 0, { mtime: T(-2n, 500_000_000) }), // -1.5 s
  file('before-epoch-whole', 0, { mtime: T(-3n) }),
  file('far-future', 0, { mtime: T(1n << 40n, 999_999_999) }),
  file('max-mtime', 0, { mtime: T(0o77777777777n) }),
  file('line\nbreak', 0),
];

/** Encodes entries with data content(size, index), then END_OF_ARCHIVE. */
function build(entries: readonly PaxEntry[]): { buf: Buffer; offsets: number[]; headerBytes: number[] } {
  const parts: Buffer[] = [];
  const offsets: number[] = [];
  const headerBytes: number[] = [];
  let off = 0;
  entries.forEach((e, i) => {
    const h = encodeHeader(e);
    offsets.push(off);
    headerBytes.push(h.length);
    parts.push(h);
    off += h.length;
    if (e.type === 'file' && e.size > 0n) {
      const pad = paddingAfter(e.size);
      parts.push(content(Number(e.size), i), Buffer.alloc(pad));
      off += Number(e.size) + pad;
    }
  });
  parts.push(END_OF_ARCHIVE);
  return { buf: Buffer.concat(parts), offsets, headerBytes };
}

interface Parsed {
  entries: ParsedEntry[];
  data: Buffer[];
  ended: boolean;
}

/** Parses `buf` fed in the given chunk sizes (the rest in one chunk), then end(). */
function parse(buf: Uint8Array, chunks: number[] = [], opts?: { maxExtendedHeader?: number }): Parsed {
  const p = new PaxParser(opts);
  const out: Parsed = { entries: [], data: [], ended: false };
  const parts: Buffer[][] = [];
  const handlers = {
    onEntry: (e: ParsedEntry) => {
      out.entries.push(e);
      parts.push([]);
    },
    onData: (e: ParsedEntry, d: Uint8Array) => {
      assert.equal(e, out.entries.at(-1));
      parts.at(-1)!.push(Buffer.from(d)); // the view is only valid during the call
    },
    onEnd: () => {
      out.ended = true;
    },
  };
  let at = 0;
  for (const n of chunks) {
    p.push(buf.subarray(at, at + n), handlers);
    at += n;
  }
  p.push(buf.subarray(at), handlers);
  p.end();
  out.data = parts.map((ps) => Buffer.concat(ps));
  return out;
}

/** Keys of the x header at the start of `h` (UTF-8 text), read independently of the parser. */
function xKeys(h: Uint8Array): Map<string, string> {
  return new Map(
    [...xRecords(h)].map(([k, v]) => [Buffer.from(k, 'latin1').toString('utf8'), v.toString('utf8')]),
  );
}

describe('pax encoder', () => {
  test('round trip through PaxParser: entries, data and offsets', () => {
    const { buf, offsets, headerBytes } = build(ENTRIES);
    const r = parse(buf);
    assert.equal(r.ended, true);
    assert.equal(r.entries.length, ENTRIES.length);
    r.entries.forEach((e, i) => {
      const want = ENTRIES[i]!;
      assert.deepEqual(strip(e), want, want.path);
      assert.equal(e.headerOffset, BigInt(offsets[i]!), want.path);
      assert.equal(e.dataOffset, BigInt(offsets[i]! + headerBytes[i]!), want.path);
      assert.ok(r.data[i]!.equals(want.type === 'file' ? content(Number(want.size), i) : Buffer.alloc(0)));
    });
  });

  test('parses identically whatever the chunk boundaries', () => {
    const small = [ENTRIES[0]!, ENTRIES[7]!, ENTRIES[10]!, file('f513', 513), ENTRIES[25]!];
    const { buf } = build(small);
    const ref = parse(buf);
    for (let k = 0; k <= buf.length; k++) {
      const r = parse(buf, [k]);
      assert.deepEqual(r, ref, `split at ${k}`);
    }
    assert.deepEqual(parse(buf, Array<number>(buf.length).fill(1)), ref, 'one byte at a time');
    let seed = 12345;
    for (let round = 0; round < 50; round++) {
      const chunks: number[] = [];
      for (let left = buf.length; left > 0;) {
        seed = (seed * 1103515245 + 12345) & 0x7fffffff;
        const n = Math.min(left, seed % 1500);
        chunks.push(n);
        left -= n;
      }
      assert.deepEqual(parse(buf, chunks), ref, `random chunks round ${round}`);
    }
  });

  test('what goes to the x header, and how many blocks', () => {
    const cases: [PaxEntry, number, string[]][] = [
      [file('a', 1), 1, []],
      [file('p'.repeat(100), 0), 1, []],
      [file(`${'x'.repeat(155)}/${'y'.repeat(100)}`, 0), 1, []],
      [file(`${'x'.repeat(156)}/${'y'.repeat(99)}`, 0), 3, ['path']],
      [file('c'.repeat(101), 0), 3, ['path']],
      [{ ...BASE, path: 'd'.repeat(100), type: 'dir' }, 3, ['path']],
      [file('ü', 0), 3, ['path']],
      [{ ...BASE, path: 's', type: 'symlink', linkTarget: 't'.repeat(100) }, 1, []],
      [{ ...BASE, path: 's', type: 'symlink', linkTarget: 't'.repeat(101) }, 3, ['linkpath']],
      [{ ...BASE, path: 'h', type: 'hardlink', linkTarget: 'é' }, 3, ['linkpath']],
      [file('u', 0, { uid: 0o7777777, gid: 0o7777777 }), 1, []],
      [file('u', 0, { uid: 0o10000000 }), 3, ['uid']],
      [file('u', 0, { gid: 0o10000000 }), 3, ['gid']],
      [file('n', 0, { uname: 'a'.repeat(31), gname: 'b'.repeat(31) }), 1, []],
      [file('n', 0, { uname: 'a'.repeat(32) }), 3, ['uname']],
      [file('n', 0, { gname: 'ö' }), 3, ['gname']],
      [file('s', 0, { size: 8n * 2n ** 30n - 1n }), 1, []],
      [file('s', 0, { size: 8n * 2n ** 30n }), 3, ['size']],
      [file('t', 0, { mtime: T(1n, 1) }), 3, ['mtime']],
      [file('t', 0, { mtime: T(-1n) }), 3, ['mtime']],
      [file('t', 0, { mtime: T(0o100000000000n) }), 3, ['mtime']],
      [file('t', 0, { atime: T(5n) }), 3, ['atime']],
      [file('t', 0, { ctime: T(5n) }), 3, ['ctime']],
      [file('c'.repeat(4000), 0), 10, ['path']],
    ];
    for (const [e, blocks, keys] of cases) {
      const h = encodeHeader(e);
      assert.equal(h.length, blocks * BLOCK, e.path);
      assert.deepEqual([...xKeys(h).keys()], keys, e.path);
    }
    // Exact record text, and the ustar fields left when values moved to x.
    const h = encodeHeader(
      file('big', 0, {
        size: 9n * 2n ** 30n,
        uid: HIGH_UID,
        mtime: T(-2n, 500_000_000),
        atime: T(1_700_000_000n, 120_000_000),
      }),
    );
    assert.deepEqual(
      [...xKeys(h)],
      [
        ['size', '9663676416'],
        ['uid', '3000000'],
        ['mtime', '-1.5'],
        ['atime', '1700000000.12'],
      ],
    );
    const u = h.subarray(h.length - BLOCK);
    assert.equal(u.toString('latin1', 124, 136), '77777777777\0'); // size: the field's maximum
    assert.equal(u.toString('latin1', 108, 116), '7777777\0'); // uid: the maximum, never 0 (root)
    assert.equal(u.toString('latin1', 136, 148), '00000000000\0'); // negative mtime: 0
    assert.equal(u.toString('latin1', 257, 265), 'ustar\x0000');
    // A record whose length crosses a power of ten ("99 ..." vs "100 ...").
    for (let n = 80; n < 100; n++) {
      const e = file('c'.repeat(n + 101), 0);
      const rec = xKeys(encodeHeader(e));
      assert.equal(rec.get('path'), e.path);
    }
  });

  test('directories get a trailing slash, long ASCII paths a prefix/name split', () => {
    const h = encodeHeader({ ...BASE, path: `${'a'.repeat(120)}/b`, type: 'dir' });
    assert.equal(h.length, BLOCK);
    assert.equal(h.toString('latin1', 0, 3), 'b/\0');
    assert.equal(h.toString('latin1', 345, 345 + 121), `${'a'.repeat(120)}\0`);
    assert.equal(String.fromCharCode(h[156]!), '5');
  });

  test('writes into a caller buffer at an offset, nothing outside; RangeError when too small', () => {
    const e = file('c'.repeat(300), 1, { mtime: T(1n, 5) });
    const want = encodeHeader(e);
    const big = Buffer.alloc(want.length + 1000, 0xee);
    assert.equal(encodeHeaderInto(e, big, 500), want.length);
    assert.ok(big.subarray(500, 500 + want.length).equals(want));
    assert.ok(big.subarray(0, 500).every((b) => b === 0xee));
    assert.ok(big.subarray(500 + want.length).every((b) => b === 0xee));
    for (const len of [0, 100, 511, 512, 1023, want.length - 1]) {
      assert.throws(() => encodeHeaderInto(e, new Uint8Array(len), 0), RangeError, `len ${len}`);
    }
    assert.throws(() => encodeHeaderInto(file('a', 0), new Uint8Array(1000), 600), RangeError);
    // headerBytes is exact, for the worst case too.
    const worst: PaxEntry = {
      ...BASE,
      path: 'ü'.repeat(2048), // 4096 bytes
      type: 'symlink',
      linkTarget: 'é'.repeat(2048),
      size: 0n,
      uid: Number.MAX_SAFE_INTEGER,
      gid: Number.MAX_SAFE_INTEGER,
      uname: 'ö'.repeat(128),
      gname: 'ö'.repeat(128),
      mtime: T(-(2n ** 63n), 999_999_999),
      atime: T(-(2n ** 63n), 999_999_999),
      ctime: T(-(2n ** 63n), 999_999_999),
    };
    const n = encodeHeaderInto(worst, new Uint8Array(headerBytes(worst)), 0);
    assert.equal(n, headerBytes(worst));
    assert.deepEqual(strip(parse(Buffer.concat([encodeHeader(worst), END_OF_ARCHIVE])).entries[0]!), worst);
  });

  test('rejects entries it cannot represent, with a typed error', () => {
    const U = PaxUnrepresentableError;
    assert.throws(() => encodeHeader(file('a\0b', 0)), U);
    assert.throws(() => encodeHeader(file('ü\0', 0)), U);
    assert.throws(() => encodeHeader(file('', 0)), U);
    assert.throws(() => encodeHeader(file('a', -1)), U);
    assert.throws(() => encodeHeader(file('a', 0, { size: 2n ** 63n })), U);
    assert.throws(() => encodeHeader(file('a', 0, { uid: -1 })), U);
    assert.throws(() => encodeHeader(file('a', 0, { mtime: T(0n, 1e9) })), U);
    assert.throws(() => encodeHeader(file('a', 0, { mtime: T(2n ** 63n) })), U);
    assert.throws(() => encodeHeader(file('a', 0, { mtime: T(-(2n ** 63n) - 1n) })), U);
    assert.throws(() => encodeHeader({ ...BASE, path: 's', type: 'symlink' }), U);
    assert.throws(() => encodeHeader({ ...BASE, path: 'd', type: 'chardev', devMajor: 2 ** 32 }), U);
    assert.throws(() => encodeHeader(file('\ud800x', 0)), U); // a surrogate that stands for no byte
    assert.throws(
      () => encodeHeader(file('x', 0, { xattrs: [{ name: 'user.a\0', value: Buffer.alloc(1) }] })),
      U,
    );
    assert.throws(() => encodeHeader(file('x', 0, { xattrs: [{ name: '', value: Buffer.alloc(1) }] })), U);
    const err = (() => {
      try {
        encodeHeader(file('dir/caf\udce9\0', 0));
      } catch (e) {
        return e as PaxUnrepresentableError;
      }
      return assert.fail('no error');
    })();
    assert.equal(err.code, 'PAX_UNREPRESENTABLE');
    assert.equal(err.reason, 'path contains a NUL byte');
    assert.match(err.message, /dir\/caf\\xe9\\x00/); // the path in its printed form
  });

  test('paddingAfter and END_OF_ARCHIVE', () => {
    assert.equal(paddingAfter(0n), 0);
    assert.equal(paddingAfter(1n), 511);
    assert.equal(paddingAfter(512n), 0);
    assert.equal(paddingAfter(513n), 511);
    assert.equal(paddingAfter(9n * 2n ** 30n + 1n), 511);
    assert.equal(END_OF_ARCHIVE.length, 1024);
    assert.ok(END_OF_ARCHIVE.every((b) => b === 0));
  });
});

describe('pax and GNU tar', () => {
  let dir = '';
  let src = '';
  let highUid = false;
  let walked: WalkedEntry[] = [];
  const isRoot = process.getuid?.() === 0;

  before(() => {
    dir = mkdtempSync(join(os.tmpdir(), 'ndmpd-pax-'));
    src = join(dir, 'src');
    mkdirSync(src);
    highUid = buildTree(src).highUid;
    walked = walkTree(src);
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('GNU tar lists and extracts our archive exactly', () => {
    const arch = join(dir, 'ours.tar');
    writeFileSync(arch, archive(walked));
    const listing = execFileSync('tar', ['-tvf', arch], { encoding: 'utf8' });
    const lines = listing.trimEnd().split('\n');
    assert.equal(lines.length, walked.length);
    assert.match(listing, / link -> f513\n/);
    assert.match(listing, / sub\/hard2 link to hard1\n/);
    assert.match(listing, /^p.* pipe$/m);
    assert.match(listing, / dir ü\/ファイル name\.txt$/m);

    const out = join(dir, 'out');
    mkdirSync(out);
    // Root extracts with --same-owner --same-permissions by default; others need -p for the modes.
    execFileSync('tar', [...(isRoot ? [] : ['-p']), '-xf', arch, '-C', out]);
    for (const { entry: e, abs } of walked) {
      const got = join(out, e.path);
      const s = lstatSync(abs, { bigint: true });
      const o = lstatSync(got, { bigint: true });
      const what = `${e.path.slice(0, 60)} (${e.type})`;
      assert.equal(o.isDirectory(), s.isDirectory(), what);
      assert.equal(o.isSymbolicLink(), s.isSymbolicLink(), what);
      assert.equal(o.isFIFO(), s.isFIFO(), what);
      assert.equal(o.isFile(), s.isFile(), what);
      if (!o.isSymbolicLink()) assert.equal(o.mode & 0o7777n, s.mode & 0o7777n, `mode of ${what}`);
      assert.equal(o.mtimeNs, s.mtimeNs, `mtime of ${what}`);
      if (isRoot) {
        assert.equal(o.uid, s.uid, `uid of ${what}`);
        assert.equal(o.gid, s.gid, `gid of ${what}`);
      }
      if (e.type === 'file') assert.ok(readFileSync(got).equals(readFileSync(abs)), `content of ${what}`);
      if (e.type === 'symlink') assert.equal(readlinkSync(got), readlinkSync(abs), what);
      if (e.type === 'hardlink')
        assert.equal(o.ino, lstatSync(join(out, e.linkTarget!), { bigint: true }).ino, what);
    }
    if (isRoot && highUid) assert.equal(lstatSync(join(out, 'owned')).uid, HIGH_UID);
  });

  test('we parse GNU tar --format=posix output of the same tree', () => {
    const arch = join(dir, 'gnu.tar');
    execFileSync('tar', ['--format=posix', '--sort=name', '-cf', arch, '-C', src, '.']);
    const r = parse(readFileSync(arch));
    assert.equal(r.ended, true);
    const got = r.entries.filter((e) => e.path !== '.');
    assert.equal(got.length, walked.length);
    got.forEach((g, i) => {
      const { entry: e, abs } = walked[i]!;
      assert.equal(g.path, `./${e.path}`);
      const { atime, ctime, ...rest } = strip(g);
      const fixed: PaxEntry = { ...rest, path: e.path };
      if (g.type === 'hardlink') fixed.linkTarget = g.linkTarget!.replace(/^\.\//, '');
      assert.deepEqual(fixed, e, e.path);
      assert.ok(atime && ctime, 'GNU tar stores atime and ctime');
      if (e.type === 'file') assert.ok(r.data[i + 1]!.equals(readFileSync(abs)), e.path);
    });
  });

  test('global (g) headers apply to the entries after them', () => {
    const arch = join(dir, 'global.tar');
    execFileSync('tar', [
      '--format=posix',
      '--pax-option=uname=globaluser,comment=hello',
      '-cf',
      arch,
      '-C',
      src,
      'f1',
      'f0',
    ]);
    const buf = readFileSync(arch);
    assert.equal(String.fromCharCode(buf[156]!), 'g');
    const r = parse(buf);
    assert.deepEqual(
      r.entries.map((e) => [e.path, e.uname]),
      [
        ['f1', 'globaluser'],
        ['f0', 'globaluser'],
      ],
    );
    assert.equal(r.entries[0]!.headerOffset > 0n, true, 'the g header is not part of the entry');
  });

  test('a 9 GiB file: GNU tar and our parser read the size from the x header', async () => {
    const size = 9n * 2n ** 30n;
    const big = file('big', 0, { size });
    const last = file('after', 3);
    const h = encodeHeader(big);
    assert.equal(h.length, 3 * BLOCK);
    const tar = spawn('tar', ['-tvf', '-'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let listing = '';
    let errors = '';
    tar.stdout.setEncoding('utf8').on('data', (d: string) => (listing += d));
    tar.stderr.setEncoding('utf8').on('data', (d: string) => (errors += d));
    const closed = new Promise<number | null>((resolve) => tar.on('close', resolve));
    const parser = new PaxParser();
    const seen: ParsedEntry[] = [];
    let dataBytes = 0;
    const handlers = {
      onEntry: (e: ParsedEntry) => seen.push(e),
      onData: (_e: ParsedEntry, d: Uint8Array) => (dataBytes += d.length),
    };
    const write = async (b: Buffer): Promise<void> => {
      parser.push(b, handlers);
      if (!tar.stdin.write(b)) await new Promise((resolve) => tar.stdin.once('drain', resolve));
    };
    const started = Date.now();
    await write(h);
    const zeros = Buffer.alloc(4 << 20);
    for (let left = Number(size); left > 0; left -= zeros.length) {
      await write(left >= zeros.length ? zeros : zeros.subarray(0, left));
    }
    await write(Buffer.alloc(paddingAfter(size)));
    await write(encodeHeader(last));
    await write(Buffer.concat([Buffer.from('abc'), Buffer.alloc(509), END_OF_ARCHIVE]));
    tar.stdin.end();
    assert.equal(await closed, 0, errors);
    parser.end();
    const lines = listing.trimEnd().split('\n');
    assert.match(lines[0]!, / 9663676416 .* big$/);
    assert.match(lines[1]!, / 3 .* after$/);
    assert.equal(seen.length, 2);
    assert.equal(seen[0]!.size, size);
    assert.equal(seen[1]!.headerOffset, BigInt(3 * BLOCK) + size);
    assert.equal(dataBytes, Number(size) + 3);
    const seconds = (Date.now() - started) / 1000;
    assert.ok(seconds < 60, `took ${seconds} s`);
  });
});

// ---------------------------------------------------------------------------
// Hostile input

/** Recomputes the checksum of the ustar block at `at`. */
function fixChecksum(b: Buffer, at = 0): Buffer {
  b.fill(0x20, at + 148, at + 156);
  let sum = 0;
  for (let i = at; i < at + BLOCK; i++) sum += b[i]!;
  b.write(`${sum.toString(8).padStart(6, '0')}\0 `, at + 148, 'latin1');
  return b;
}

/** A well-formed record "<len> key=value\n" (UTF-8). */
function rec(key: string, value: string): string {
  const base = Buffer.byteLength(`${key}=${value}`) + 2;
  let len = base + String(base).length;
  if (String(len).length !== String(base).length) len = base + String(len).length;
  return `${len} ${key}=${value}\n`;
}

/** An x header block + records (as given, raw) for the entry `e`, then e's ustar block. */
function withRecords(records: string | Buffer, e: PaxEntry = file('f', 0)): Buffer {
  const body = typeof records === 'string' ? Buffer.from(records, 'utf8') : records;
  const x = Buffer.alloc(BLOCK);
  x.write('PaxHeaders/f', 0, 'latin1');
  x.write('0000644\0', 100, 'latin1');
  x.write(`${body.length.toString(8).padStart(11, '0')}\0`, 124, 'latin1');
  x.write('x', 156, 'latin1');
  x.write('ustar\x0000', 257, 'latin1');
  fixChecksum(x);
  return Buffer.concat([x, body, Buffer.alloc(paddingAfter(BigInt(body.length))), encodeHeader(e)]);
}

function assertFormatError(
  buf: Uint8Array,
  offset: number,
  message: RegExp,
  opts?: { maxExtendedHeader?: number },
) {
  assert.throws(
    () => parse(buf, [], opts),
    (err: unknown) => {
      assert.ok(err instanceof PaxFormatError, String(err));
      assert.equal(err.offset, BigInt(offset), err.message);
      assert.match(err.message, message);
      return true;
    },
  );
}

describe('pax parser: hostile input', () => {
  const good = build([file('a', 3), file('b', 600)]).buf; // headers at 0 and 1024

  test('bad checksum', () => {
    const b = Buffer.from(good);
    b[1024 + 5] ^= 1;
    assertFormatError(b, 1024, /checksum/);
    const c = Buffer.from(good);
    c.write('12345x', 148, 'latin1');
    assertFormatError(c, 0, /octal in the chksum/);
  });

  test('truncated streams', () => {
    assertFormatError(good.subarray(0, 300), 300, /inside a header block/);
    assertFormatError(good.subarray(0, 512 + 2), 514, /inside the data of a/);
    assertFormatError(good.subarray(0, 1024 + 512 + 100), 1636, /inside the data of b/);
    assertFormatError(good.subarray(0, good.length - 1024), good.length - 1024, /without the end-of-archive/);
    assertFormatError(good.subarray(0, good.length - 512), good.length - 512, /single zero block/);
    assertFormatError(new Uint8Array(0), 0, /without the end-of-archive/);
    const x = withRecords('12 uid=1234\n');
    assertFormatError(x.subarray(0, 520), 520, /inside an extended header/);
    assertFormatError(x.subarray(0, 1024), 1024, /after an extended header/);
    const lone = Buffer.concat([good.subarray(0, 1024), Buffer.alloc(512), good.subarray(1024)]);
    assertFormatError(lone, 1024, /single zero block inside/);
  });

  test('x header claiming 1 GiB: rejected at its header, nothing buffered', () => {
    const b = Buffer.from(withRecords('12 uid=1234\n'));
    b.write(`${(2 ** 30).toString(8).padStart(11, '0')}\0`, 124, 'latin1');
    fixChecksum(b);
    const p = new PaxParser();
    const noop = { onEntry: () => assert.fail('no entry'), onData: () => assert.fail('no data') };
    assert.throws(() => p.push(b.subarray(0, BLOCK), noop), /exceeds the limit/);
    assert.throws(() => p.push(b.subarray(BLOCK), noop), /after an error/);
    assertFormatError(withRecords(rec('comment', 'x'.repeat(200))), 0, /exceeds the limit of 100/, {
      maxExtendedHeader: 100,
    });
  });

  test('malformed numbers', () => {
    const b = Buffer.from(good);
    b.write('00000000abc\0', 124, 'latin1');
    assertFormatError(fixChecksum(b), 0, /bad octal in the size/);
    const c = Buffer.from(good);
    c[124] = 0x80; // GNU base-256
    assertFormatError(fixChecksum(c), 0, /base-256/);
    assertFormatError(withRecords(rec('size', '12a')), 512, /size is not a non-negative decimal/);
    assertFormatError(withRecords(rec('size', '-1')), 512, /size is not a non-negative decimal/);
    assertFormatError(withRecords(rec('size', '99999999999999999999')), 512, /size is too large/);
    assertFormatError(withRecords(rec('uid', '-5')), 512, /uid is not/);
    assertFormatError(withRecords(rec('mtime', '12.3x')), 512, /bad mtime/);
    assertFormatError(withRecords(rec('mtime', '.')), 512, /bad mtime/);
    assertFormatError(withRecords(rec('mtime', '123456789012345678901234')), 512, /bad mtime/);
  });

  test('malformed x records', () => {
    assertFormatError(withRecords('99 path=a\n'), 512, /record length 99/);
    assertFormatError(withRecords('11 path=ab?'), 512, /newline/);
    assertFormatError(withRecords('9 pathab\n'), 512, /keyword=value/);
    assertFormatError(withRecords('x path=ab\n'), 512, /record length/);
    assertFormatError(withRecords('10 path=a\n9 a=bcd\n'), 522, /record length 9/);
    assertFormatError(withRecords('3 \n\n\n'), 512, /record length 3/);
    assertFormatError(withRecords(rec('GNU.sparse.map', '0,1,2,3')), 512, /sparse/);
  });

  test('NUL in a path', () => {
    assertFormatError(withRecords(rec('path', 'a\0bc')), 512, /NUL in path/);
    assertFormatError(withRecords(rec('linkpath', 'a\0bc')), 512, /NUL in linkpath/);
    const b = Buffer.from(good);
    b.write('a\0b', 0, 'latin1');
    assertFormatError(fixChecksum(b), 0, /NUL inside the name/);
    // Bytes that are not UTF-8 are the name's bytes (hdrcharset=BINARY or not).
    const bin = parse(
      Buffer.concat([withRecords(Buffer.from('11 path=\xff\xfe\n', 'latin1')), END_OF_ARCHIVE]),
    );
    assert.equal(bin.entries[0]!.path, '\udcff\udcfe');
  });

  test('other bad headers', () => {
    const b = Buffer.from(good);
    b.write('ustar\0', 257, 'latin1');
    b.write('01', 263, 'latin1');
    assertFormatError(fixChecksum(b), 0, /magic/);
    const c = Buffer.from(good);
    c.write('L', 156, 'latin1');
    assertFormatError(fixChecksum(c), 0, /unsupported typeflag "L"/);
    const d = Buffer.from(good);
    d.fill(0, 0, 100);
    assertFormatError(fixChecksum(d), 0, /empty path/);
  });

  test('unknown keywords are ignored; an empty value falls back to the ustar field', () => {
    const b = Buffer.concat([
      withRecords(
        rec('SCHILY.foo', 'bar baz') + rec('comment', 'hi') + rec('uname', '') + rec('path', 'other/x'),
        file('f', 0, { uname: 'u' }),
      ),
      END_OF_ARCHIVE,
    ]);
    const r = parse(b);
    assert.equal(r.entries[0]!.path, 'other/x');
    assert.equal(r.entries[0]!.uname, 'u');
    assert.equal(r.entries[0]!.headerOffset, 0n);
    assert.equal(r.entries[0]!.dataOffset, 1536n);
  });

  test('bytes after the end-of-archive marker are ignored', () => {
    const b = Buffer.concat([good, Buffer.from('garbage after the end')]);
    const p = new PaxParser();
    p.push(b, { onEntry: () => {}, onData: () => {} });
    p.end();
    assert.equal(p.offset, BigInt(good.length));
    assert.equal(p.ended, true);
  });

  test('fuzz: mutated archives end in entries or PaxFormatError, never anything else', () => {
    const { buf } = build(ENTRIES.slice(0, 14));
    let seed = 7;
    const rnd = (n: number): number => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    for (let round = 0; round < 3000; round++) {
      const b = Buffer.from(buf);
      const flips = 1 + rnd(4);
      for (let k = 0; k < flips; k++) b[rnd(b.length)] = rnd(256);
      // Half the time, make the checksums right so the field parsers see the damage.
      if (round % 2 === 0)
        for (let at = 0; at + BLOCK <= b.length; at += BLOCK) if (b[at + 257] === 0x75) fixChecksum(b, at);
      try {
        parse(b.subarray(0, rnd(b.length + 1)), [rnd(2000)], { maxExtendedHeader: 64 * 1024 });
      } catch (err) {
        if (!(err instanceof PaxFormatError)) throw err;
      }
    }
  });
});
