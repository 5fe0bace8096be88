// Names are bytes (docs/names.md): the lossless string form and the printed form.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  NotAByteNameError,
  decodeName,
  encodeName,
  escapeName,
  isUtf8Name,
  nameByteLength,
  unescapeName,
} from '../../src/util/byte-name.js';

/** A deterministic generator, so a failure names its case. */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
}

describe('byte names', () => {
  test('UTF-8 names are their own strings', () => {
    for (const s of ['a', 'résumé', '日本語', 'emoji 🎉', '']) {
      assert.equal(decodeName(Buffer.from(s)), s);
      assert.deepEqual(encodeName(s), Buffer.from(s));
      assert.ok(isUtf8Name(s));
    }
  });

  test('Latin-1 bytes round-trip and are not UTF-8', () => {
    const b = Buffer.from([0x63, 0x61, 0x66, 0xe9]); // "café" in Latin-1
    const s = decodeName(b);
    assert.equal(s.length, 4);
    assert.equal(s.charCodeAt(3), 0xdce9);
    assert.ok(!isUtf8Name(s));
    assert.deepEqual(encodeName(s), b);
    assert.equal(nameByteLength(s), 4);
    assert.equal(escapeName(s), 'caf\\xe9');
  });

  test('ill-formed UTF-8 of every kind is escaped byte by byte', () => {
    const cases = [
      [0xc0, 0x80], // overlong NUL
      [0xe0, 0x80, 0x80], // overlong
      [0xed, 0xa0, 0x80], // a UTF-16 surrogate in UTF-8 (CESU)
      [0xed, 0xb2, 0x80], // the very code unit an escape uses
      [0xf4, 0x90, 0x80, 0x80], // beyond U+10FFFF
      [0xe2, 0x82], // cut short
      [0x80],
      [0xff, 0xfe],
    ];
    for (const c of cases) {
      const b = Buffer.from([0x61, ...c, 0x62]);
      const s = decodeName(b);
      assert.equal(s.length, c.length + 2, JSON.stringify(c));
      assert.deepEqual(encodeName(s), b, JSON.stringify(c));
    }
  });

  test('every random byte string round-trips, and so does its printed form', () => {
    const next = rng(13);
    for (let n = 0; n < 5000; n++) {
      const len = next() % 24;
      const b = Buffer.alloc(len);
      for (let i = 0; i < len; i++) {
        // Mostly high bytes and lead bytes, so valid and invalid sequences mix.
        const r = next();
        b[i] = r % 3 === 0 ? 0x20 + (r % 95) : 0x80 + (r % 128);
      }
      const s = decodeName(b);
      assert.deepEqual(encodeName(s), b, b.toString('hex'));
      assert.equal(nameByteLength(s), b.length);
      const printed = escapeName(s);
      assert.ok(isUtf8Name(printed));
      assert.equal(unescapeName(printed), s, b.toString('hex'));
    }
  });

  test('the printed form escapes backslashes and control characters and keeps the rest', () => {
    assert.equal(escapeName('a\\b'), 'a\\\\b');
    assert.equal(escapeName('line\nbreak\t'), 'line\\x0abreak\\x09');
    assert.equal(escapeName('\u0085'), '\\xc2\\x85');
    assert.equal(escapeName('\x7f'), '\\x7f');
    assert.equal(escapeName('plain 🎉 é'), 'plain 🎉 é');
    for (const s of ['a\\b', 'line\nbreak', '\u0085x', 'x\\x41'])
      assert.equal(unescapeName(escapeName(s)), s);
  });

  test('a backslash before anything else stands for itself when typed', () => {
    assert.equal(unescapeName('a\\b'), 'a\\b');
    assert.equal(unescapeName('a\\x4'), 'a\\x4');
    assert.equal(unescapeName('caf\\xe9'), decodeName(Buffer.from([0x63, 0x61, 0x66, 0xe9])));
    assert.equal(unescapeName('\\xc3\\xa9'), 'é');
  });

  test('a string that stands for no bytes is refused', () => {
    assert.throws(() => encodeName('a\ud800b'), NotAByteNameError);
    assert.throws(() => encodeName('a\udc41'), NotAByteNameError);
  });
});
