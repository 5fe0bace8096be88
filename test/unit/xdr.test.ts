// XdrReader / XdrWriter (RFC 4506 as NDMP uses it, docs/protocol.md §1.3) and the
// MD5 authentication digest (docs/protocol.md §6).

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, test } from 'node:test';

import { md5Digest, MD5_CHALLENGE_SIZE, XdrDecodeError, XdrReader, XdrWriter } from '../../src/wire/index.js';
import { b, fromHex, xorshift32 } from '../helpers/xdr-bytes.js';

const hex = (buf: Uint8Array): string => Buffer.from(buf).toString('hex');
const isDecodeError = { name: 'XdrDecodeError' } as const;

describe('XdrWriter', () => {
  test('u32, i32, u64 and bool are big-endian words', () => {
    const w = new XdrWriter();
    w.u32(0).u32(1).u32(0xdeadbeef).u32(0xffffffff);
    w.i32(-1).i32(-0x80000000).i32(0x7fffffff);
    w.u64(0n)
      .u64(2n ** 40n + 3n)
      .u64(0xffffffffffffffffn);
    w.bool(true).bool(false);
    assert.equal(
      hex(w.finish()),
      hex(
        b()
          .hex('00000000 00000001 deadbeef ffffffff')
          .hex('ffffffff 80000000 7fffffff')
          .hex('00000000 00000000  00000100 00000003  ffffffff ffffffff')
          .hex('00000001 00000000')
          .bytes(),
      ),
    );
    assert.equal(w.length, 4 * 4 + 3 * 4 + 3 * 8 + 2 * 4);
  });

  test('u32 rejects negative, non-integer and too-large values', () => {
    for (const v of [-1, 1.5, 0.1, 2 ** 32, 2 ** 53, Number.NaN, Number.POSITIVE_INFINITY, -0.5]) {
      assert.throws(() => new XdrWriter().u32(v), RangeError, `u32(${v})`);
    }
  });

  test('i32 rejects values outside the signed 32-bit range', () => {
    for (const v of [2 ** 31, -(2 ** 31) - 1, 1.5, Number.NaN]) {
      assert.throws(() => new XdrWriter().i32(v), RangeError, `i32(${v})`);
    }
  });

  test('strings and opaques are length-prefixed and zero-padded to 4 bytes', () => {
    const w = new XdrWriter();
    w.string('').string('a').string('ab').string('abc').string('abcd').string('abcde');
    w.opaque(Buffer.alloc(0))
      .opaque(Buffer.from([0xff]))
      .opaque(Buffer.from([1, 2, 3, 4]));
    assert.equal(
      hex(w.finish()),
      hex(
        b()
          .hex('00000000')
          .hex('00000001 61000000')
          .hex('00000002 61620000')
          .hex('00000003 61626300')
          .hex('00000004 61626364')
          .hex('00000005 61626364 65000000')
          .hex('00000000')
          .hex('00000001 ff000000')
          .hex('00000004 01020304')
          .bytes(),
      ),
    );
  });

  test('a string is counted and written in UTF-8 bytes', () => {
    const s = 'héllo €'; // h, é (2), l, l, o, space, € (3) = 10 bytes
    const w = new XdrWriter().string(s);
    assert.equal(hex(w.finish()), hex(b().u32(10).hex('68c3a96c6c6f20e282ac 0000').bytes()));
    assert.equal(hex(new XdrWriter().string('日本').finish()), '00000006' + 'e697a5e69cac' + '0000');
  });

  test('fixedOpaque writes no length word, pads, and insists on the exact length', () => {
    const w = new XdrWriter()
      .fixedOpaque(Buffer.from([1, 2, 3, 4, 5]), 5)
      .fixedOpaque(Buffer.alloc(16, 0xaa), 16);
    assert.equal(hex(w.finish()), '0102030405000000' + 'aa'.repeat(16));
    assert.throws(() => new XdrWriter().fixedOpaque(Buffer.alloc(15), 16), RangeError);
    assert.throws(() => new XdrWriter().fixedOpaque(Buffer.alloc(17), 16), RangeError);
    assert.throws(() => new XdrWriter().fixedOpaque(Buffer.alloc(0), 64), RangeError);
  });

  test('padding bytes are zero even where the buffer held other bytes', () => {
    const w = new XdrWriter(64);
    w.u32(0x11111111);
    // finish() is a view into the writer's buffer: dirty the unwritten part of it.
    const view = w.finish();
    Buffer.from(view.buffer, view.byteOffset, 64).fill(0xee, 4);
    w.string('x')
      .opaque(Buffer.from([9, 9]))
      .fixedOpaque(Buffer.from([7, 7, 7]), 3)
      .string('abc');
    assert.equal(
      hex(w.finish()),
      '11111111' + '00000001 78000000 00000002 09090000 07070700 00000003 61626300'.replace(/ /g, ''),
    );
  });

  test('the buffer grows from a tiny initial size without losing bytes', () => {
    const w = new XdrWriter(1);
    const expected = b();
    for (let i = 0; i < 1000; i++) {
      w.u32(i * 7919);
      expected.u32(i * 7919);
      if (i % 97 === 0) {
        w.string('s'.repeat(i % 13));
        expected.str('s'.repeat(i % 13));
      }
    }
    w.opaque(Buffer.alloc(5000, 3));
    expected.opaque(Buffer.alloc(5000, 3));
    assert.equal(hex(w.finish()), hex(expected.bytes()));
  });

  test('patchU32 overwrites a word written earlier', () => {
    const w = new XdrWriter();
    w.u32(0).u32(5);
    w.patchU32(0, 0x80000004);
    assert.equal(hex(w.finish()), '8000000400000005');
  });
});

describe('XdrReader', () => {
  test('reads words, quads and bools and tracks the offset', () => {
    const buf = b().hex('deadbeef ffffffff 00000100 00000003 00000001 00000000').bytes();
    const r = new XdrReader(buf);
    assert.equal(r.u32(), 0xdeadbeef);
    assert.equal(r.offset, 4);
    assert.equal(r.i32(), -1);
    assert.equal(r.u64(), 2n ** 40n + 3n);
    assert.equal(r.remaining, 8);
    assert.equal(r.bool(), true);
    assert.equal(r.bool(), false);
    assert.equal(r.remaining, 0);
  });

  test('bool refuses anything but 0 and 1', () => {
    for (const v of [2, 3, 0x100, 0xffffffff]) {
      assert.throws(() => new XdrReader(b().u32(v).bytes()).bool(), isDecodeError, `bool ${v}`);
    }
  });

  test('strings decode multi-byte UTF-8 and skip the padding', () => {
    const buf = b().str('héllo €').str('日本').u32(42).bytes();
    const r = new XdrReader(buf);
    assert.equal(r.string(), 'héllo €');
    assert.equal(r.string(), '日本');
    assert.equal(r.u32(), 42);
  });

  test('a string is a byte string: bytes that are not UTF-8 decode losslessly and encode back', () => {
    // Latin-1 "café", a lone continuation byte, a truncated sequence, a surrogate's
    // CESU-8 form and a newline: every byte string round-trips exactly.
    const cases = ['636166e9', '80', 'e282', 'eda080', '610a62', 'c3a9ff00', ''].map((h) => fromHex(h));
    for (const bytes of cases) {
      const wire = b().opaque(bytes).bytes(); // a string is an opaque on the wire
      const s = new XdrReader(wire).string();
      assert.equal(hex(new XdrWriter().string(s).finish()), hex(wire), `round trip of ${hex(bytes)}`);
    }
    assert.equal(new XdrReader(b().opaque(fromHex('636166e9')).bytes()).string(), 'caf\udce9');
  });

  test('a string with a lone surrogate that stands for no byte is written as U+FFFD, not refused', () => {
    const w = new XdrWriter().string('a\ud800b');
    assert.equal(hex(w.finish()), hex(b().opaque(fromHex('61efbfbd62')).bytes()));
  });

  test('opaque and fixedOpaque return copies and skip the padding', () => {
    const buf = b()
      .opaque(Buffer.from([1, 2, 3]))
      .fixed(Buffer.from([4, 5, 6, 7, 8]))
      .u32(9)
      .bytes();
    const r = new XdrReader(buf);
    const o = r.opaque();
    const f = r.fixedOpaque(5);
    assert.equal(hex(o), '010203');
    assert.equal(hex(f), '0405060708');
    assert.equal(r.u32(), 9);
    buf.fill(0);
    assert.equal(hex(o), '010203');
    assert.equal(hex(f), '0405060708');
  });

  test('every read past the end throws XdrDecodeError', () => {
    const cases: [string, Buffer, (r: XdrReader) => unknown][] = [
      ['u32 of 3', fromHex('000000'), (r) => r.u32()],
      ['i32 of 0', Buffer.alloc(0), (r) => r.i32()],
      ['u64 of 7', fromHex('00000000 000000'), (r) => r.u64()],
      ['bool of 2', fromHex('0000'), (r) => r.bool()],
      ['string body short', fromHex('00000005 61626364'), (r) => r.string()],
      ['string pad missing', fromHex('00000005 61626364 65'), (r) => r.string()],
      ['string length short', fromHex('0000'), (r) => r.string()],
      ['opaque body short', fromHex('00000008 01020304'), (r) => r.opaque()],
      ['opaque pad missing', fromHex('00000001 01'), (r) => r.opaque()],
      ['fixedOpaque short', Buffer.alloc(15), (r) => r.fixedOpaque(16)],
      ['fixedOpaque pad missing', Buffer.alloc(5), (r) => r.fixedOpaque(5)],
      ['count of 0', Buffer.alloc(0), (r) => r.count(4)],
    ];
    for (const [what, buf, read] of cases) {
      assert.throws(() => read(new XdrReader(buf)), isDecodeError, what);
    }
  });

  test('a reader confined to [start, end) does not read beyond end', () => {
    const buf = b().u32(1).u32(2).u32(3).u32(4).bytes();
    const r = new XdrReader(buf, 4, 8);
    assert.equal(r.u32(), 2);
    assert.equal(r.remaining, 0);
    assert.throws(() => r.u32(), isDecodeError);
    assert.throws(() => new XdrReader(buf, 4, 8).u64(), isDecodeError);
  });

  test('count refuses more elements than the bytes left can hold', () => {
    const buf = b().u32(2).u32(0).u32(0).bytes(); // count 2, 8 bytes left
    assert.equal(new XdrReader(buf).count(4), 2);
    assert.throws(() => new XdrReader(buf).count(8), isDecodeError);
    assert.throws(() => new XdrReader(b().u32(0xffffffff).bytes()).count(4), isDecodeError);
    assert.equal(new XdrReader(b().u32(0xffffffff).bytes()).count(0), 0xffffffff);
  });

  test('string and opaque lengths up to 0x7ffffffc beyond the end are refused', () => {
    for (const len of [5, 8, 0x10000, 0x7ffffffc]) {
      const buf = b().u32(len).hex('41424344').bytes();
      assert.throws(() => new XdrReader(buf).string(), XdrDecodeError, `string 0x${len.toString(16)}`);
      assert.throws(() => new XdrReader(buf).opaque(), XdrDecodeError, `opaque 0x${len.toString(16)}`);
    }
  });

  // Regression: `(n + 3) & ~3` once wrapped for n >= 0x7ffffffd, so the bounds
  // check passed, the rest of the buffer was returned and the offset moved back.
  test('string and opaque lengths 0x7ffffffd..0xffffffff are refused', () => {
    for (const len of [0x7ffffffd, 0x80000000, 0xfffffffc, 0xffffffff]) {
      const buf = b().u32(len).hex('41424344').bytes();
      assert.throws(() => new XdrReader(buf).string(), XdrDecodeError, `string 0x${len.toString(16)}`);
      assert.throws(() => new XdrReader(buf).opaque(), XdrDecodeError, `opaque 0x${len.toString(16)}`);
    }
  });
});

describe('XdrWriter -> XdrReader round trips', () => {
  test('random sequences of every item type', () => {
    const rnd = xorshift32(0xabcdef);
    for (let run = 0; run < 200; run++) {
      const ops: { kind: number; value: number | bigint | boolean | string | Buffer }[] = [];
      const w = new XdrWriter(8);
      for (let i = 0; i < 20; i++) {
        const kind = rnd() % 7;
        switch (kind) {
          case 0: {
            const v = rnd();
            w.u32(v);
            ops.push({ kind, value: v });
            break;
          }
          case 1: {
            const v = rnd() | 0;
            w.i32(v);
            ops.push({ kind, value: v });
            break;
          }
          case 2: {
            const v = (BigInt(rnd()) << 32n) | BigInt(rnd());
            w.u64(v);
            ops.push({ kind, value: v });
            break;
          }
          case 3: {
            const v = rnd() % 2 === 0;
            w.bool(v);
            ops.push({ kind, value: v });
            break;
          }
          case 4: {
            const v = Array.from({ length: rnd() % 9 }, () => ['a', 'é', '€', '😀'][rnd() % 4]).join('');
            w.string(v);
            ops.push({ kind, value: v });
            break;
          }
          case 5: {
            const v = Buffer.from(Array.from({ length: rnd() % 9 }, () => rnd() & 0xff));
            w.opaque(v);
            ops.push({ kind, value: v });
            break;
          }
          default: {
            const v = Buffer.from(Array.from({ length: 1 + (rnd() % 7) }, () => rnd() & 0xff));
            w.fixedOpaque(v, v.length);
            ops.push({ kind, value: v });
          }
        }
      }
      const buf = w.finish();
      assert.equal(buf.length % 4, 0, 'everything 4-byte aligned');
      const r = new XdrReader(buf);
      for (const op of ops) {
        switch (op.kind) {
          case 0:
            assert.equal(r.u32(), op.value);
            break;
          case 1:
            assert.equal(r.i32(), op.value);
            break;
          case 2:
            assert.equal(r.u64(), op.value);
            break;
          case 3:
            assert.equal(r.bool(), op.value);
            break;
          case 4:
            assert.equal(r.string(), op.value);
            break;
          case 5:
            assert.deepEqual(r.opaque(), op.value);
            break;
          default:
            assert.deepEqual(r.fixedOpaque((op.value as Buffer).length), op.value);
        }
      }
      assert.equal(r.remaining, 0);
    }
  });
});

describe('md5Digest (docs/protocol.md §6)', () => {
  const seq = Buffer.from(Array.from({ length: 64 }, (_, i) => i));
  const captured = fromHex(
    '28d61e567685ef29a812f9945f7ab885a15edaa6b202e0d141d395f5079f6c84' +
      '2cb0e3835888c577a03399549267b25eb5c474e1411ceb87b04c08fac37946cf',
  );

  /** The digest as docs/protocol.md §6 describes it: MD5(P | zeros(64 − 2·len(P)) | challenge | P). */
  function reference(password: string, challenge: Buffer): string {
    const p = Buffer.from(password, 'utf8').subarray(0, 32);
    const buf = Buffer.concat([p, Buffer.alloc(64 - 2 * p.length), challenge, p]);
    assert.equal(buf.length, 128);
    return createHash('md5').update(buf).digest('hex');
  }

  test('synthetic vector: password ndmp, challenge 0x00..0x3f', () => {
    assert.equal(hex(md5Digest('ndmp', seq)), 'bc7d61077ebc1e1bf84a59827c26dd65');
  });

  test('captured vector: ndmjob, password ndmp', () => {
    assert.equal(hex(md5Digest('ndmp', captured)), '9f1142c95e359f5a9f630938dc81e6cc');
  });

  test('the reference layout reproduces both published vectors', () => {
    assert.equal(reference('ndmp', seq), 'bc7d61077ebc1e1bf84a59827c26dd65');
    assert.equal(reference('ndmp', captured), '9f1142c95e359f5a9f630938dc81e6cc');
  });

  test('a 40-character password is cut to 32 bytes', () => {
    const pw40 = 'abcdefghijklmnopqrstuvwxyz0123456789ABCD';
    assert.equal(pw40.length, 40);
    const d = hex(md5Digest(pw40, captured));
    assert.equal(d, reference(pw40.slice(0, 32), captured));
    assert.equal(d, hex(md5Digest(pw40.slice(0, 32), captured)));
    assert.notEqual(d, hex(md5Digest(pw40.slice(0, 31), captured)));
  });

  test('an exactly 32-character password keeps its last character in both copies', () => {
    const pw32 = 'S3cr3t-Passw0rd-0f-32-characters';
    assert.equal(pw32.length, 32);
    assert.equal(hex(md5Digest(pw32, seq)), reference(pw32, seq));
  });

  test('passwords of every length up to 33 follow the reference layout', () => {
    for (let n = 0; n <= 33; n++) {
      const pw = 'p'.repeat(n);
      assert.equal(hex(md5Digest(pw, captured)), reference(pw, captured), `length ${n}`);
    }
  });

  test('a challenge that is not 64 bytes is refused', () => {
    assert.equal(MD5_CHALLENGE_SIZE, 64);
    assert.throws(() => md5Digest('ndmp', Buffer.alloc(63)), RangeError);
    assert.throws(() => md5Digest('ndmp', Buffer.alloc(65)), RangeError);
  });
});
