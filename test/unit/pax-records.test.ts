// Issue 13's additions to the pax format (docs/pax.md): byte names with
// hdrcharset=BINARY, SCHILY.xattr and SCHILY.acl records, GNU sparse 1.0, big
// sizes, device numbers and times; headerBytes exact. Round trips through our
// parser at every chunk size, and hostile input. GNU tar as the independent
// reader and writer is test/interop/pax-gnutar.test.ts.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { encodeHeader, encodeHeaderInto, headerBytes } from '../../src/backup/pax-encoder.js';
import {
  alignSparseMap,
  BLOCK,
  END_OF_ARCHIVE,
  paddingAfter,
  PaxFormatError,
  PaxUnrepresentableError,
  sparseDataBytes,
} from '../../src/backup/pax-layout.js';
import type { PaxEntry, PaxSparse, PaxTime } from '../../src/backup/pax-layout.js';
import { PaxParser } from '../../src/backup/pax-parser.js';
import type { ParsedEntry } from '../../src/backup/pax-parser.js';
import { content } from '../helpers/pax-tree.js';
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
const file = (path: string, extra: Partial<PaxEntry> = {}): PaxEntry => ({
  ...BASE,
  path,
  type: 'file',
  ...extra,
});
const LATIN1 = 'caf\udce9'; // the bytes "caf\xe9": Latin-1, not UTF-8
const GIB = 1n << 30n;

/** A sparse file's map and the bytes of its regions (deterministic). */
function sparseFile(path: string, sparse: PaxSparse): { e: PaxEntry; data: Buffer } {
  const data = content(Number(sparseDataBytes(sparse)), 7);
  return { e: file(path, { size: sparse.realSize, sparse }), data };
}

/** The map as the encoder writes it: a final empty region at the real size unless data ends there. */
function written(s: PaxSparse): PaxSparse {
  const last = s.map.at(-1);
  if (last && last.offset + last.length === s.realSize) return s;
  return { realSize: s.realSize, map: [...s.map, { offset: s.realSize, length: 0n }] };
}

interface Item {
  e: PaxEntry;
  data?: Buffer;
}

function build(items: readonly Item[]): Buffer {
  const parts: Buffer[] = [];
  for (const { e, data } of items) {
    parts.push(encodeHeader(e));
    if (data && data.length > 0) parts.push(data, Buffer.alloc(paddingAfter(BigInt(data.length))));
  }
  parts.push(END_OF_ARCHIVE);
  return Buffer.concat(parts);
}

interface Got {
  e: ParsedEntry;
  /** [file offset, bytes] as onData gave them, merged where consecutive. */
  pieces: [bigint, Buffer][];
}

/** Parses `buf` in chunks of `step` bytes, checking `need` never reaches past the marker. */
function parse(buf: Uint8Array, step = buf.length): Got[] {
  const p = new PaxParser();
  const out: Got[] = [];
  const handlers = {
    onEntry: (e: ParsedEntry) => out.push({ e, pieces: [] }),
    onData: (e: ParsedEntry, d: Uint8Array, at: bigint) => {
      const g = out.at(-1)!;
      assert.equal(e, g.e);
      const last = g.pieces.at(-1);
      if (last && last[0] + BigInt(last[1].length) === at) last[1] = Buffer.concat([last[1], d]);
      else g.pieces.push([at, Buffer.from(d)]);
    },
  };
  for (let i = 0; i < buf.length; i += step) {
    assert.ok(Number(p.offset) + p.need <= buf.length, `need ${p.need} at ${p.offset} passes the end`);
    p.push(buf.subarray(i, i + step), handlers);
  }
  p.end();
  return out;
}

const records = xRecords;

describe('pax: byte names', () => {
  test('a name that is not UTF-8: its bytes in path/linkpath, hdrcharset=BINARY; the parser gives the same string', () => {
    const entries: PaxEntry[] = [
      file(LATIN1),
      file(`dir\udcff/${LATIN1}/x`),
      { ...BASE, path: 'link', type: 'symlink', linkTarget: '\udcff\udcfe' },
      { ...BASE, path: `${LATIN1}-hard`, type: 'hardlink', linkTarget: LATIN1 },
      file('owner', { uname: 'j\udcf6rg', gname: 'gr\udcfcppe' }),
      {
        ...BASE,
        path: `d\udce9`,
        type: 'dir',
        dumpdir: [
          { name: LATIN1, flag: 'Y' },
          { name: 'ü', flag: 'N' },
        ],
      },
      file('new\nline'),
      file('ü utf-8'),
    ];
    for (const e of entries) {
      const h = encodeHeader(e);
      assert.equal(h.length, headerBytes(e));
      const r = records(h);
      const binary = ['path', 'linkTarget', 'uname', 'gname'].some((k) =>
        /[\udc80-\udcff]/.test(String((e as unknown as Record<string, unknown>)[k] ?? '')),
      );
      assert.equal(r.get('hdrcharset')?.toString(), binary ? 'BINARY' : undefined, e.path);
      const [g] = parse(Buffer.concat([h, END_OF_ARCHIVE]));
      assert.deepEqual(strip(g!.e), e);
    }
    const r = records(encodeHeader(file(LATIN1)));
    assert.deepEqual(r.get('path'), Buffer.from('caf\xe9', 'latin1'));
    const d = records(encodeHeader(entries[5]!));
    assert.deepEqual(d.get('GNU.dumpdir'), Buffer.from('Ycaf\xe9\0N\xc3\xbc\0\0', 'latin1'));
  });

  test('the ustar name, prefix and linkname fields are decoded as bytes too', () => {
    // A pre-pax archive (no x header) with a Latin-1 name and link target.
    const h = encodeHeader({ ...BASE, path: 'ab', type: 'symlink', linkTarget: 'cd' });
    h.write('caf\xe9', 0, 'latin1');
    h.write('\xff\0', 157, 'latin1');
    h.write('pre\xe9', 345, 'latin1');
    h.fill(0x20, 148, 156);
    let sum = 0;
    for (let i = 0; i < BLOCK; i++) sum += h[i]!;
    h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
    const [g] = parse(Buffer.concat([h, END_OF_ARCHIVE]));
    assert.equal(g!.e.path, `pre\udce9/${LATIN1}`);
    assert.equal(g!.e.linkTarget, '\udcff');
  });

  test('a ~3 KB path and a 4 KiB link target of escaped bytes', () => {
    const long = Array.from({ length: 12 }, (_, i) => `${i}\udce9`.padEnd(250, 'x')).join('/');
    const e: PaxEntry = { ...BASE, path: long, type: 'symlink', linkTarget: '\udcff'.repeat(4096) };
    const [g] = parse(Buffer.concat([encodeHeader(e), END_OF_ARCHIVE]), 100);
    assert.deepEqual(strip(g!.e), e);
  });

  test('ASCII entries stay as before: no x header, one block', () => {
    assert.equal(encodeHeader(file('plain/ascii.txt')).length, BLOCK);
  });
});

describe('pax: xattrs and ACLs', () => {
  const binary = Buffer.from([0, 1, 0x0a, 0x3d, 0x0a, 0xff, 0]);
  const xattrs = [
    { name: 'user.bin', value: binary },
    { name: 'user.a=b%c', value: Buffer.from('escaped name') },
    { name: 'user.empty', value: Buffer.alloc(0) },
    { name: `user.${LATIN1}`, value: Buffer.from('x') },
    { name: 'trusted.t', value: Buffer.alloc(70_000, 7) }, // larger than any one block
    { name: 'security.selinux', value: Buffer.from('system_u:object_r:tmp_t:s0\0') },
  ];
  const ACCESS = 'user::rw-\nuser:nobody:rw-\ngroup::r--\ngroup:adm:r--\nmask::rw-\nother::r--\n';
  const DEFAULT = 'user::rwx\nuser:nobody:r-x\ngroup::r-x\nmask::r-x\nother::r-x\n';

  test('SCHILY.xattr.<name> records with the raw value; round trip at any chunking', () => {
    const e = file('f', { xattrs, aclAccess: ACCESS });
    const h = encodeHeader(e);
    assert.equal(h.length, headerBytes(e));
    const r = records(h);
    assert.deepEqual(r.get('SCHILY.xattr.user.bin'), binary);
    assert.deepEqual(r.get('SCHILY.xattr.user.a%3Db%25c'), Buffer.from('escaped name'));
    assert.deepEqual(r.get('SCHILY.xattr.user.empty'), Buffer.alloc(0));
    assert.deepEqual(r.get('SCHILY.acl.access'), Buffer.from(ACCESS));
    for (const step of [1, 7, 512, h.length + 1024]) {
      const [g] = parse(Buffer.concat([h, END_OF_ARCHIVE]), step);
      assert.deepEqual(strip(g!.e), e, `step ${step}`);
    }
  });

  test('access and default ACLs on a directory; a default ACL only on a directory', () => {
    const d: PaxEntry = {
      ...BASE,
      path: 'd',
      type: 'dir',
      mode: 0o755,
      aclAccess: ACCESS,
      aclDefault: DEFAULT,
    };
    const [g] = parse(Buffer.concat([encodeHeader(d), END_OF_ARCHIVE]));
    assert.deepEqual(strip(g!.e), d);
    assert.equal(records(encodeHeader(file('f', { aclDefault: DEFAULT }))).has('SCHILY.acl.default'), false);
  });

  test('the ACLs binary xattrs: never written; read when no ACL text stands for them', () => {
    const acl = { name: 'system.posix_acl_access', value: Buffer.from([2, 0, 0, 0]) };
    const h = encodeHeader(file('f', { xattrs: [acl, xattrs[0]!], aclAccess: ACCESS }));
    assert.deepEqual(
      [...records(h).keys()].filter((k) => k.startsWith('SCHILY')),
      ['SCHILY.acl.access', 'SCHILY.xattr.user.bin'],
    );
    // As GNU tar --xattrs --acls writes it: both forms; the text wins.
    const both = withRecords(
      rec('SCHILY.acl.access', Buffer.from(ACCESS)) + rec('SCHILY.xattr.system.posix_acl_access', acl.value),
    );
    const [g] = parse(both);
    assert.equal(g!.e.aclAccess, ACCESS);
    assert.equal(g!.e.xattrs, undefined);
    // tar --xattrs without --acls: only the binary form, kept as an xattr.
    const [g2] = parse(withRecords(rec('SCHILY.xattr.system.posix_acl_access', acl.value)));
    assert.deepEqual(g2!.e.xattrs, [acl]);
  });

  test('xattrs and ACLs in a global header are ignored', () => {
    const g = Buffer.from(
      withRecords(
        rec('SCHILY.xattr.user.g', Buffer.from('1')) + rec('SCHILY.acl.access', Buffer.from(ACCESS)),
      ),
    );
    g[156] = 0x67; // 'g'
    fixChecksum(g, 0);
    const [e] = parse(g);
    assert.equal(e!.e.xattrs, undefined);
    assert.equal(e!.e.aclAccess, undefined);
  });
});

describe('pax: GNU sparse 1.0', () => {
  const map = [
    { offset: 0n, length: 4096n },
    { offset: GIB / 2n, length: 8192n },
    { offset: GIB - 100n, length: 100n }, // data up to the end
  ];

  test('records, stored name, map block(s); real size and offsets back at any chunking', () => {
    const cases: PaxSparse[] = [
      { realSize: GIB, map },
      { realSize: GIB, map: [...map.slice(0, 2), { offset: GIB, length: 0n }] }, // ends in a hole
      { realSize: 5n * GIB, map: [] }, // all hole
      // 200 regions: the map takes several blocks
      {
        realSize: 1n << 40n,
        map: Array.from({ length: 200 }, (_, i) => ({ offset: BigInt(i) * (1n << 32n), length: 512n })),
      },
      { realSize: 2n ** 63n - 1n, map: [{ offset: 2n ** 62n, length: 1024n }] }, // 8 EiB
    ];
    for (const sparse of cases) {
      const { e, data } = sparseFile(`dir/${LATIN1}`, sparse);
      const h = encodeHeader(e);
      assert.equal(h.length, headerBytes(e));
      const r = records(h);
      assert.equal(r.get('GNU.sparse.major')?.toString(), '1');
      assert.equal(r.get('GNU.sparse.minor')?.toString(), '0');
      assert.deepEqual(r.get('GNU.sparse.name'), Buffer.from('dir/caf\xe9', 'latin1'));
      assert.equal(r.get('GNU.sparse.realsize')?.toString(), String(sparse.realSize));
      assert.deepEqual(r.get('path'), Buffer.from('dir/GNUSparseFile.0/caf\xe9', 'latin1'));
      const buf = build([{ e, data }]);
      for (const step of [1, 511, 4096, buf.length]) {
        if (step === 1 && data.length > 10_000) continue; // byte-at-a-time is slow; 511 covers the boundaries
        const [g] = parse(buf, step);
        assert.equal(g!.e.size, sparse.realSize);
        assert.deepEqual(g!.e.sparse, written(sparse));
        // The regions' bytes at their offsets, in order.
        let k = 0;
        for (const [at, bytes] of g!.pieces) {
          while (sparse.map[k]!.length === 0n) k++;
          const reg = sparse.map[k]!;
          assert.equal(at, reg.offset);
          assert.equal(BigInt(bytes.length), reg.length);
          k++;
        }
        assert.deepEqual(Buffer.concat(g!.pieces.map((p) => p[1])), data);
      }
    }
  });

  test('the map as GNU tar writes it, a final empty region at the real size', () => {
    const { e } = sparseFile('sp', { realSize: GIB, map: map.slice(0, 2) });
    const h = encodeHeader(e);
    const m = h.subarray(h.length - BLOCK).toString('latin1');
    assert.equal(m.replace(/\0+$/, ''), `3\n0\n4096\n${GIB / 2n}\n8192\n${GIB}\n0\n`);
    const ustar = h.subarray(h.length - 2 * BLOCK, h.length - BLOCK);
    assert.equal(ustar.toString('latin1', 0, 16), './GNUSparseFile.');
    assert.equal(parseInt(ustar.toString('latin1', 124, 135), 8), BLOCK + 4096 + 8192); // map + data
  });

  test('alignSparseMap widens regions to 512-byte blocks; the encoder refuses a map GNU tar would misread', () => {
    const odd: PaxSparse = {
      realSize: 10_000n,
      map: [
        { offset: 5n, length: 10n },
        { offset: 1000n, length: 30n },
        { offset: 9990n, length: 10n },
      ],
    };
    assert.throws(() => encodeHeader(file('f', { size: 10_000n, sparse: odd })), PaxUnrepresentableError);
    assert.deepEqual(alignSparseMap(odd).map, [
      { offset: 0n, length: 1536n }, // 0..512 and 512..1536 touch: merged
      { offset: 9728n, length: 272n }, // capped at the real size
    ]);
    assert.deepEqual(alignSparseMap({ realSize: 4096n, map: [] }).map, [{ offset: 4096n, length: 0n }]);
    assert.doesNotThrow(() => encodeHeader(file('f', { size: 10_000n, sparse: alignSparseMap(odd) })));
    // Out of order, overlapping, past the end, a real size that is not the size.
    const bad = (s: PaxSparse, size = s.realSize): void =>
      void assert.throws(() => encodeHeader(file('f', { size, sparse: s })), PaxUnrepresentableError);
    bad({
      realSize: 9000n,
      map: [
        { offset: 4096n, length: 512n },
        { offset: 0n, length: 512n },
      ],
    });
    bad({
      realSize: 9000n,
      map: [
        { offset: 0n, length: 1024n },
        { offset: 512n, length: 512n },
      ],
    });
    bad({ realSize: 9000n, map: [{ offset: 8704n, length: 512n }] });
    bad({ realSize: 9000n, map: [] }, 8000n);
  });

  test('malformed and unsupported sparse archives are a PaxFormatError', () => {
    const sp = (recs: string, body: string): Buffer => {
      const u = Buffer.from(encodeHeader(file('GNUSparseFile.0/f', { size: BigInt(pad(body).length) })));
      return Buffer.concat([withRecords(recs, undefined, u), pad(body), END_OF_ARCHIVE]);
    };
    const pad = (s: string): Buffer =>
      Buffer.concat([Buffer.from(s), Buffer.alloc(paddingAfter(BigInt(s.length)))]);
    const ok =
      rec('GNU.sparse.major', '1') + rec('GNU.sparse.minor', '0') + rec('GNU.sparse.realsize', '2000');
    // A good one first: no GNU.sparse.name, the stored name says it.
    const [g] = parse(sp(ok, '1\n0\n0\n'));
    assert.equal(g!.e.path, 'f');
    assert.deepEqual(g!.e.sparse, { realSize: 2000n, map: [{ offset: 0n, length: 0n }] });
    const fails: [string, Buffer, RegExp][] = [
      [
        '0.1',
        sp(rec('GNU.sparse.major', '0') + rec('GNU.sparse.minor', '1'), '1\n0\n0\n'),
        /0\.1 is not supported/,
      ],
      ['0.0 keywords', sp(rec('GNU.sparse.offset', '0'), ''), /0\.x is not supported/],
      [
        'no realsize',
        sp(rec('GNU.sparse.major', '1') + rec('GNU.sparse.minor', '0'), '1\n0\n0\n'),
        /realsize/,
      ],
      ['letters in the map', sp(ok, '1\n0x\n0\n'), /malformed GNU sparse map/],
      ['empty line', sp(ok, '1\n\n0\n'), /malformed GNU sparse map/],
      ['map past the entry', sp(ok, `999\n${'0\n'.repeat(254)}`), /past the entry/],
      ['NUL in the map', sp(ok, '5\n0\n0\n'), /malformed GNU sparse map/],
      ['data size differs', sp(ok, '1\n0\n10\n'), /holds 10 bytes of data/],
      ['region past the end', sp(ok, '1\n1990\n20\n'), /ends at 2010, past the real size 2000/],
      ['overlap', sp(ok, '2\n10\n0\n5\n0\n'), /out of order/],
      ['unaligned region before the last', sp(ok, '2\n0\n10\n1000\n5\n'), /not a multiple of 512/],
      ['too many regions', sp(ok, '99999999999\n'), /exceeds the limit/],
      ['number too long', sp(ok, '1\n00000000000000000000\n0\n'), /too long/],
    ];
    for (const [what, b, re] of fails) {
      assert.throws(
        () => parse(b),
        (err: unknown) => err instanceof PaxFormatError && re.test(err.message),
        what,
      );
    }
    // Sparse records on something that is not a regular file.
    const d = withRecords(ok, { ...BASE, path: 'd', type: 'dir' });
    assert.throws(() => parse(Buffer.concat([d, END_OF_ARCHIVE])), /sparse records on a dir/);
  });
});

describe('pax: numbers and times Linux can hold', () => {
  test('sizes to 2^63−1 (the size record), uids to 2^32−1, device numbers beyond the ustar field', () => {
    const big = file('big', { size: 2n ** 63n - 1n });
    const r = records(encodeHeader(big));
    assert.equal(r.get('size')?.toString(), '9223372036854775807');
    // Our parser's own limit is the stream: an entry of more than 2^53−1 archived bytes.
    assert.throws(() => parse(Buffer.concat([encodeHeader(big), END_OF_ARCHIVE])), /limit: 2\^53/);
    const ids = file('ids', { uid: 2 ** 32 - 1, gid: 2 ** 32 - 2 });
    assert.deepEqual(strip(parse(Buffer.concat([encodeHeader(ids), END_OF_ARCHIVE]))[0]!.e), ids);
    const devs: PaxEntry[] = [
      { ...BASE, path: 'linux-max', type: 'blockdev', devMajor: 4095, devMinor: 2 ** 20 - 1 },
      { ...BASE, path: 'glibc-max', type: 'chardev', devMajor: 2 ** 32 - 1, devMinor: 2 ** 21 },
    ];
    assert.equal(encodeHeader(devs[0]!).length, BLOCK, 'Linux device numbers fit the ustar fields');
    const rd = records(encodeHeader(devs[1]!));
    assert.equal(rd.get('SCHILY.devmajor')?.toString(), '4294967295');
    assert.equal(rd.get('SCHILY.devminor')?.toString(), '2097152');
    for (const d of devs)
      assert.deepEqual(strip(parse(Buffer.concat([encodeHeader(d), END_OF_ARCHIVE]))[0]!.e), d);
  });

  test('times: 1901, 1969.5, 2038+, 2200, ±2^63 s, with nanoseconds', () => {
    const times: [PaxTime, string][] = [
      [T(-2_177_452_800n, 123_456_789), '-2177452799.876543211'], // 1901-01-01 + ns
      [T(-15_778_800n, 500_000_000), '-15778799.5'], // mid-1969
      [T(-1n, 999_999_999), '-0.000000001'],
      [T(2_147_483_648n, 1), '2147483648.000000001'], // 2038-01-19 + 1 s
      [T(7_258_118_400n, 999_999_999), '7258118400.999999999'], // 2200-01-01
      [T(2n ** 63n - 1n, 999_999_999), '9223372036854775807.999999999'],
      [T(-(2n ** 63n), 0), '-9223372036854775808'],
      [T(-(2n ** 63n), 1), '-9223372036854775807.999999999'],
    ];
    for (const [tm, text] of times) {
      const e = file('t', { mtime: tm, atime: tm, ctime: tm });
      const h = encodeHeader(e);
      assert.equal(h.length, headerBytes(e));
      assert.equal(records(h).get('mtime')?.toString(), text);
      assert.deepEqual(parse(Buffer.concat([h, END_OF_ARCHIVE]))[0]!.e.mtime, tm, text);
    }
  });

  test('headerBytes is what encodeHeaderInto writes, and encodeHeaderInto writes nothing when it throws', () => {
    const e = file(`${'ü'.repeat(2000)}/x`, {
      xattrs: [{ name: 'user.v', value: Buffer.alloc(100_000) }],
      mtime: T(-5n, 3),
    });
    const n = headerBytes(e);
    const t = Buffer.alloc(n + 10, 0xee);
    assert.equal(encodeHeaderInto(e, t, 10), n);
    const small = Buffer.alloc(n - 1, 0xee);
    assert.throws(() => encodeHeaderInto(e, small, 0), RangeError);
    assert.ok(small.every((b) => b === 0xee));
    const bad = Buffer.alloc(4096, 0xee);
    assert.throws(() => encodeHeaderInto(file('a\0'), bad, 0), PaxUnrepresentableError);
    assert.ok(bad.every((b) => b === 0xee));
  });
});

// ---------------------------------------------------------------------------
// Hand-made records

/** A record "<len> key=value\n" of raw bytes (latin1 string for building). */
function rec(key: string, value: string | Buffer): string {
  const v = typeof value === 'string' ? Buffer.from(value) : value;
  const base = key.length + v.length + 3;
  let len = base + String(base).length;
  if (String(len).length !== String(base).length) len = base + String(len).length;
  return `${len} ${key}=${v.toString('latin1')}\n`;
}

/** Recomputes the checksum of the ustar block at `at`. */
function fixChecksum(b: Buffer, at = 0): Buffer {
  b.fill(0x20, at + 148, at + 156);
  let sum = 0;
  for (let i = at; i < at + BLOCK; i++) sum += b[i]!;
  b.write(`${sum.toString(8).padStart(6, '0')}\0 `, at + 148, 'latin1');
  return b;
}

/** An x header with `records` (a latin1 string of bytes), then `e`'s ustar block (or `ustar`); END_OF_ARCHIVE unless `ustar` is given. */
function withRecords(records: string, e: PaxEntry = file('f'), ustar?: Buffer): Buffer {
  const body = Buffer.from(records, 'latin1');
  const x = Buffer.alloc(BLOCK);
  x.write('PaxHeaders/f', 0, 'latin1');
  x.write('0000644\0', 100, 'latin1');
  x.write(`${body.length.toString(8).padStart(11, '0')}\0`, 124, 'latin1');
  x.write('x', 156, 'latin1');
  x.write('ustar\x0000', 257, 'latin1');
  fixChecksum(x);
  const parts = [x, body, Buffer.alloc(paddingAfter(BigInt(body.length))), ustar ?? encodeHeader(e)];
  if (!ustar) parts.push(END_OF_ARCHIVE);
  return Buffer.concat(parts);
}
