// RecordFramer: ONC RPC record marking (RFC 5531 §11, docs/protocol.md §1.2) reassembled
// across TCP splits and xdrrec fragments, with the record size capped before the
// payload is buffered.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import {
  compiled,
  DEFAULT_MAX_RECORD_SIZE,
  encodeMessage,
  FramingError,
  frameRecord,
  frameRecordFragmented,
  M,
  RecordFramer,
} from '../../src/wire/index.js';
import { recordOf, WIRE_CASES } from '../helpers/golden-cases.js';
import { b, mark, singleFragment, xorshift32 } from '../helpers/xdr-bytes.js';

const hex = (buf: Uint8Array): string => Buffer.from(buf).toString('hex');

/** Every golden message as a record payload (header + body, no mark). */
const PAYLOADS: readonly { title: string; payload: Buffer }[] = WIRE_CASES.map((c) => ({
  title: c.title,
  payload: recordOf(c),
}));

/** A TAPE_WRITE of 9000 bytes: more than two xdrrec fragments of 3996. */
const MEDIUM = (() => {
  const data = Buffer.from(Array.from({ length: 9000 }, (_, i) => (i * 7 + 3) & 0xff));
  const header = {
    sequence: 5,
    timeStamp: 1,
    messageType: 0 as const,
    messageCode: 0x304,
    replySequence: 0,
    errorCode: 0,
  };
  const framed = encodeMessage(header, compiled(4, M.TAPE_WRITE).body, { dataOut: data });
  return framed.subarray(4);
})();

function pushAll(framer: RecordFramer, chunks: readonly Buffer[]): Buffer[] {
  const out: Buffer[] = [];
  for (const c of chunks) out.push(...framer.push(c));
  return out;
}

function assertRecords(actual: readonly Buffer[], expected: readonly Buffer[], what: string): void {
  assert.deepEqual(
    actual.map((r) => hex(r)),
    expected.map((r) => hex(r)),
    what,
  );
}

describe('record mark format', () => {
  test('frameRecord writes 0x80000000 | length then the payload', () => {
    const payload = Buffer.from('hello');
    assert.equal(hex(frameRecord(payload)), hex(singleFragment(payload)));
    assert.equal(hex(frameRecord(Buffer.alloc(0))), '80000000');
  });

  test('frameRecordFragmented splits into marked fragments, the last one flagged', () => {
    const payload = Buffer.from('0123456789');
    const expected = b()
      .raw(mark(4, false))
      .raw(Buffer.from('0123'))
      .raw(mark(4, false))
      .raw(Buffer.from('4567'))
      .raw(mark(2, true))
      .raw(Buffer.from('89'))
      .bytes();
    assert.equal(hex(frameRecordFragmented(payload, 4)), hex(expected));
    assert.equal(
      hex(frameRecordFragmented(payload, 5)),
      hex(
        b()
          .raw(mark(5, false))
          .raw(Buffer.from('01234'))
          .raw(mark(5, true))
          .raw(Buffer.from('56789'))
          .bytes(),
      ),
    );
    assert.equal(hex(frameRecordFragmented(payload, 10)), hex(singleFragment(payload)));
    assert.equal(hex(frameRecordFragmented(Buffer.alloc(0), 4)), '80000000');
    assert.throws(() => frameRecordFragmented(payload, 0), RangeError);
  });
});

describe('golden records through the framer', () => {
  test('every golden record, split at every point into two pushes', () => {
    for (const { title, payload } of PAYLOADS) {
      const framed = singleFragment(payload);
      for (let k = 0; k <= framed.length; k++) {
        const framer = new RecordFramer();
        const got = pushAll(framer, [framed.subarray(0, k), framed.subarray(k)]);
        assertRecords(got, [payload], `${title} split at ${k}`);
        assert.equal(framer.buffered, 0, `${title} split at ${k}: nothing left over`);
      }
    }
  });

  test('every golden record, one byte at a time', () => {
    for (const { title, payload } of PAYLOADS) {
      const framed = singleFragment(payload);
      const framer = new RecordFramer();
      const got: Buffer[] = [];
      for (let i = 0; i < framed.length; i++) {
        const recs = framer.push(framed.subarray(i, i + 1));
        if (i < framed.length - 1)
          assert.equal(recs.length, 0, `${title}: record before its last byte (${i})`);
        got.push(...recs);
      }
      assertRecords(got, [payload], title);
    }
  });

  test('all golden records concatenated in one push come out in order', () => {
    const framer = new RecordFramer();
    const stream = Buffer.concat(PAYLOADS.map((p) => singleFragment(p.payload)));
    assertRecords(
      framer.push(stream),
      PAYLOADS.map((p) => p.payload),
      'one push',
    );
    assert.equal(framer.buffered, 0);
  });

  test('all golden records concatenated, cut into random chunks, come out in order', () => {
    const rnd = xorshift32(0x5eed);
    const stream = Buffer.concat(PAYLOADS.map((p) => singleFragment(p.payload)));
    for (let run = 0; run < 20; run++) {
      const framer = new RecordFramer();
      const chunks: Buffer[] = [];
      for (let off = 0; off < stream.length;) {
        const n = 1 + (rnd() % 200);
        chunks.push(stream.subarray(off, off + n));
        off += n;
      }
      assertRecords(
        pushAll(framer, chunks),
        PAYLOADS.map((p) => p.payload),
        `run ${run}`,
      );
    }
  });

  test('a returned record does not alias the pushed chunk', () => {
    const payload = Buffer.from('abcdefgh');
    const framed = singleFragment(payload);
    const [rec] = new RecordFramer().push(framed);
    framed.fill(0);
    assert.equal(hex(rec ?? Buffer.alloc(0)), hex(Buffer.from('abcdefgh')));
  });
});

describe('multi-fragment records', () => {
  const SIZES = [1, 3, 4, 3996, 4000];

  for (const size of SIZES) {
    test(`every golden record in fragments of ${size}`, () => {
      for (const { title, payload } of PAYLOADS) {
        const framed = frameRecordFragmented(payload, size);
        assertRecords(new RecordFramer().push(framed), [payload], `${title} / ${size}`);
      }
      const all = Buffer.concat(PAYLOADS.map((p) => frameRecordFragmented(p.payload, size)));
      assertRecords(
        new RecordFramer().push(all),
        PAYLOADS.map((p) => p.payload),
        `all, fragments of ${size}`,
      );
    });
  }

  test('every golden record in fragments of 3, one byte at a time', () => {
    for (const { title, payload } of PAYLOADS) {
      const framed = frameRecordFragmented(payload, 3);
      const framer = new RecordFramer();
      const got = pushAll(
        framer,
        Array.from({ length: framed.length }, (_, i) => framed.subarray(i, i + 1)),
      );
      assertRecords(got, [payload], title);
    }
  });

  for (const size of [3996, 4000, 1000]) {
    test(`a 9 KB TAPE_WRITE in fragments of ${size}, split at every point`, () => {
      const framed = frameRecordFragmented(MEDIUM, size);
      assert.ok(framed.length > MEDIUM.length + 8, 'several fragments');
      for (let k = 0; k <= framed.length; k++) {
        const got = pushAll(new RecordFramer(), [framed.subarray(0, k), framed.subarray(k)]);
        assert.equal(got.length, 1, `split at ${k}`);
        assert.ok(got[0]?.equals(MEDIUM), `split at ${k}`);
      }
    });
  }

  test('mixed single- and multi-fragment records in one stream', () => {
    const parts = [
      frameRecordFragmented(MEDIUM, 3996),
      singleFragment(Buffer.from('small')),
      frameRecordFragmented(MEDIUM, 4),
      frameRecordFragmented(Buffer.from('x'), 1),
    ];
    assertRecords(
      new RecordFramer().push(Buffer.concat(parts)),
      [MEDIUM, Buffer.from('small'), MEDIUM, Buffer.from('x')],
      'mixed',
    );
  });

  test('zero-length fragments are tolerated, also as the last fragment', () => {
    const stream = b()
      .raw(mark(0, false))
      .raw(mark(3, false))
      .raw(Buffer.from('abc'))
      .raw(mark(0, false))
      .raw(mark(0, false))
      .raw(mark(2, true))
      .raw(Buffer.from('de'))
      // a second record ended by an empty last fragment
      .raw(mark(2, false))
      .raw(Buffer.from('fg'))
      .raw(mark(0, true))
      // an empty record
      .raw(mark(0, true))
      .bytes();
    const expected = [Buffer.from('abcde'), Buffer.from('fg'), Buffer.alloc(0)];
    assertRecords(new RecordFramer().push(stream), expected, 'one push');
    const bytewise = pushAll(
      new RecordFramer(),
      Array.from({ length: stream.length }, (_, i) => stream.subarray(i, i + 1)),
    );
    assertRecords(bytewise, expected, 'byte at a time');
  });

  test('an empty push returns nothing and changes nothing', () => {
    const framer = new RecordFramer();
    assert.deepEqual(framer.push(Buffer.alloc(0)), []);
    framer.push(Buffer.from([0x80, 0]));
    assert.deepEqual(framer.push(Buffer.alloc(0)), []);
    assertRecords(framer.push(Buffer.from([0, 1, 0x2a])), [Buffer.from([0x2a])], 'after empty pushes');
  });
});

describe('maxRecordSize', () => {
  test('a record of exactly the maximum is accepted', () => {
    const payload = Buffer.alloc(1000, 7);
    assertRecords(new RecordFramer(1000).push(singleFragment(payload)), [payload], 'max');
    assertRecords(
      new RecordFramer(1000).push(frameRecordFragmented(payload, 300)),
      [payload],
      'max in fragments',
    );
  });

  test('an oversized mark throws as soon as the mark is seen, before the payload', () => {
    for (const declared of [1001, 0x7fffffff, DEFAULT_MAX_RECORD_SIZE + 1]) {
      const framer = new RecordFramer(1000);
      assert.throws(() => framer.push(mark(declared, true)), FramingError, `declared ${declared}`);
      assert.ok(framer.buffered <= 4, `buffered ${framer.buffered}`);
    }
  });

  test('an oversized mark split over pushes throws when its fourth byte arrives', () => {
    const framer = new RecordFramer(1000);
    const m = mark(5000, true);
    assert.deepEqual(framer.push(m.subarray(0, 1)), []);
    assert.deepEqual(framer.push(m.subarray(1, 3)), []);
    assert.throws(() => framer.push(m.subarray(3)), FramingError);
    assert.ok(framer.buffered <= 4);
  });

  test('the default maximum refuses 0x7fffffff and accepts DEFAULT_MAX_RECORD_SIZE', () => {
    assert.throws(() => new RecordFramer().push(mark(0x7fffffff, true)), FramingError);
    assert.throws(() => new RecordFramer().push(mark(DEFAULT_MAX_RECORD_SIZE + 1, true)), FramingError);
    const framer = new RecordFramer();
    assert.deepEqual(framer.push(mark(DEFAULT_MAX_RECORD_SIZE, true)), []);
  });

  test('the sum of several fragments over the maximum throws at the offending mark', () => {
    const framer = new RecordFramer(1000);
    assert.deepEqual(framer.push(Buffer.concat([mark(600, false), Buffer.alloc(600)])), []);
    assert.deepEqual(framer.push(Buffer.concat([mark(400, false), Buffer.alloc(400)])), []);
    assert.throws(() => framer.push(mark(1, true)), FramingError);
    assert.ok(framer.buffered <= 1000 + 4, `buffered ${framer.buffered}`);
  });

  test('the sum check also holds when everything arrives in one push', () => {
    const framer = new RecordFramer(1000);
    const stream = Buffer.concat([mark(600, false), Buffer.alloc(600), mark(401, true), Buffer.alloc(401)]);
    assert.throws(() => framer.push(stream), FramingError);
  });

  test('the size count restarts with each record', () => {
    const framer = new RecordFramer(1000);
    const one = frameRecordFragmented(Buffer.alloc(800, 1), 300);
    assertRecords(
      framer.push(Buffer.concat([one, one, one])),
      [Buffer.alloc(800, 1), Buffer.alloc(800, 1), Buffer.alloc(800, 1)],
      'three records of 800',
    );
  });

  test('after a FramingError every push throws FramingError', () => {
    const framer = new RecordFramer(1000);
    assert.throws(() => framer.push(mark(2000, true)), FramingError);
    assert.throws(() => framer.push(singleFragment(Buffer.from('ok'))), FramingError);
    assert.throws(() => framer.push(Buffer.alloc(0)), FramingError);
    assert.throws(() => framer.push(Buffer.from([1])), FramingError);
  });

  test('an oversized mark right after a complete record in the same push still throws', () => {
    // The push throws, so the caller closes the connection; the framer stays broken.
    const framer = new RecordFramer(100);
    const stream = Buffer.concat([singleFragment(Buffer.from('fine')), mark(101, true)]);
    assert.throws(() => framer.push(stream), FramingError);
    assert.throws(() => framer.push(Buffer.alloc(1)), FramingError);
  });
});

describe('garbage input', () => {
  const MAX = 512;

  /** Runs one chunked stream; returns the records or the FramingError that stopped it. */
  function feed(
    stream: Buffer,
    rnd: () => number,
    framer = new RecordFramer(MAX),
  ): { records: Buffer[]; error: FramingError | null } {
    const records: Buffer[] = [];
    for (let off = 0; off < stream.length;) {
      const n = 1 + (rnd() % 64);
      try {
        records.push(...framer.push(stream.subarray(off, off + n)));
      } catch (e) {
        assert.ok(e instanceof FramingError, `threw ${String(e)}`);
        assert.throws(() => framer.push(Buffer.alloc(1)), FramingError);
        return { records, error: e };
      }
      off += n;
    }
    assert.ok(framer.buffered <= MAX + 4, `buffered ${framer.buffered}`);
    return { records, error: null };
  }

  test('random bytes yield records or a FramingError, nothing else', () => {
    const rnd = xorshift32(0xc0ffee);
    let errors = 0;
    for (let run = 0; run < 500; run++) {
      const stream = Buffer.from(Array.from({ length: 1 + (rnd() % 2048) }, () => rnd() & 0xff));
      const { records, error } = feed(stream, rnd);
      if (error) errors++;
      for (const r of records) assert.ok(r.length <= MAX, `record of ${r.length}`);
    }
    assert.ok(errors > 0, 'random marks must hit the size cap');
  });

  test('random well-formed marks with random payloads reassemble exactly', () => {
    const rnd = xorshift32(42);
    let total = 0;
    for (let run = 0; run < 300; run++) {
      const parts: Buffer[] = [];
      const expected: Buffer[] = [];
      let current: Buffer[] = [];
      let size = 0;
      let overflow = false;
      for (let f = 0; f < 40 && !overflow; f++) {
        const len = rnd() % 200;
        const last = rnd() % 3 === 0;
        const payload = Buffer.from(Array.from({ length: len }, () => rnd() & 0xff));
        parts.push(mark(len, last), payload);
        size += len;
        if (size > MAX) overflow = true;
        current.push(payload);
        if (last) {
          expected.push(Buffer.concat(current));
          current = [];
          size = 0;
        }
      }
      const { records, error } = feed(Buffer.concat(parts), rnd);
      if (overflow) {
        assert.ok(error, `run ${run}: an oversized record must be refused`);
        assertRecords(records, expected.slice(0, records.length), `run ${run} before the error`);
      } else {
        assert.equal(error, null, `run ${run}`);
        assertRecords(records, expected, `run ${run}`);
      }
      total += records.length;
      for (const r of records) assert.ok(r.length <= MAX);
    }
    assert.ok(total > 100, `only ${total} records exercised`);
  });

  test('random bytes after valid records: the valid ones come out, then records or a FramingError', () => {
    const rnd = xorshift32(7);
    for (let run = 0; run < 200; run++) {
      const framer = new RecordFramer(MAX);
      const good = [Buffer.from('first'), Buffer.from('second record')];
      const first = feed(Buffer.concat(good.map((g) => singleFragment(g))), rnd, framer);
      assert.equal(first.error, null);
      assertRecords(first.records, good, `run ${run}`);
      const junk = Buffer.from(Array.from({ length: 1 + (rnd() % 100) }, () => rnd() & 0xff));
      const { records } = feed(junk, rnd, framer);
      for (const r of records) assert.ok(r.length <= MAX);
    }
  });
});
