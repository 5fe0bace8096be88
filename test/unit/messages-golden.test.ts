// Golden bytes for every NDMP message body in every version that has it: the
// codec must produce exactly the bytes built by hand from the XDR rules, and
// decode them back to the value (test/helpers/golden-cases.ts holds the table).

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import type { MessageDef, NdmpVersion } from '../../src/wire/index.js';
import {
  ALL_MESSAGES,
  compiled,
  decodeBody,
  decodeHeader,
  encodeMessage,
  errorForVersion,
  M,
} from '../../src/wire/index.js';
import {
  codecOf,
  DECODE_ONLY,
  DELTA_BODIES,
  ENCODE_CASES,
  GOLDEN_BODIES,
  GOLDEN_CASES,
  headerOf,
  recordOf,
  V3_ERROR_MAP,
} from '../helpers/golden-cases.js';
import { b, fromHex, singleFragment } from '../helpers/xdr-bytes.js';

const hex = (buf: Uint8Array): string => Buffer.from(buf).toString('hex');

describe('golden table', () => {
  test('every message × version it exists in has exactly one golden case', () => {
    const missing: string[] = [];
    for (const def of ALL_MESSAGES) {
      for (const version of def.versions) {
        const cases = GOLDEN_CASES.filter((c) => c.def === def && c.version === version);
        if (cases.length !== 1) missing.push(`${def.name} v${version}: ${cases.length} cases`);
      }
    }
    assert.deepEqual(missing, []);
  });

  test('no golden case for a message in a version that lacks it', () => {
    for (const c of GOLDEN_CASES) {
      assert.ok(c.def.versions.includes(c.version), `${c.def.name} has no v${c.version}`);
      assert.ok(ALL_MESSAGES.includes(c.def), `${c.def.name} is not in ALL_MESSAGES`);
    }
  });

  test('a case has a reply sample exactly when the message has a reply', () => {
    for (const c of GOLDEN_CASES) {
      assert.equal(c.reply !== null, c.def.reply !== null, `${c.def.name} v${c.version}`);
    }
  });

  test('both versions have 55 message codes (docs/protocol.md §2.3)', () => {
    const count = (v: NdmpVersion) => GOLDEN_CASES.filter((c) => c.version === v).length;
    assert.equal(count(4), 55);
    assert.equal(count(3), 55);
  });

  test('titles are unique', () => {
    const titles = ENCODE_CASES.map((c) => c.title).concat(DECODE_ONLY.map((c) => c.title));
    assert.equal(new Set(titles).size, titles.length);
  });
});

function checkEncodeDecode(c: (typeof ENCODE_CASES)[number]): void {
  const codec = codecOf(c);
  const { header } = headerOf(c);
  const record = recordOf(c);
  const framed = encodeMessage(header, codec, c.value);
  assert.equal(hex(framed), hex(singleFragment(record)), 'encoded record');
  assert.deepEqual(decodeHeader(record), header);
  assert.deepEqual(decodeBody(codec, record), c.decoded);
}

describe('golden bytes: every message, both versions', () => {
  for (const c of GOLDEN_BODIES) test(c.title, () => checkEncodeDecode(c));
});

describe('v3 deltas and canonical translations', () => {
  for (const c of DELTA_BODIES) test(c.title, () => checkEncodeDecode(c));
  for (const c of DECODE_ONLY) {
    test(c.title, () => assert.deepEqual(decodeBody(codecOf(c), recordOf(c)), c.decoded));
  }

  test('errorForVersion maps exactly 24..30 on v3 and nothing on v4', () => {
    const v3 = new Map<number, number>(V3_ERROR_MAP.map(([a, z]) => [a, z]));
    for (let code = 0; code <= 31; code++) {
      assert.equal(errorForVersion(4, code), code, `v4 ${code}`);
      assert.equal(errorForVersion(3, code), v3.get(code) ?? code, `v3 ${code}`);
    }
  });

  test('NDMP_TAPE_GET_STATE v3 reply is 4 bytes longer than v4 (trailing partition)', () => {
    const v4 = GOLDEN_BODIES.find((c) => c.title === 'NDMP_TAPE_GET_STATE v4 reply');
    const v3 = GOLDEN_BODIES.find((c) => c.title === 'NDMP_TAPE_GET_STATE v3 reply');
    assert.ok(v4 && v3);
    assert.equal(v3.bytes.length, v4.bytes.length + 4);
    assert.equal(hex(v3.bytes.subarray(-4)), '00000000');
    assert.deepEqual(v3.decoded, v4.decoded);
  });

  test('NDMP_MOVER_GET_STATE v3 reply is v4 without the mode word', () => {
    const v4 = compiled(4, M.MOVER_GET_STATE).reply;
    const v3 = compiled(3, M.MOVER_GET_STATE).reply;
    const value = {
      error: 0,
      mode: 0,
      state: 1,
      pauseReason: 0,
      haltReason: 0,
      recordSize: 1,
      recordNum: 2,
      bytesMoved: 3n,
      seekPosition: 4n,
      bytesLeftToRead: 5n,
      windowOffset: 6n,
      windowLength: 7n,
      dataConnectionAddr: { addrType: 0 as const },
    };
    const header = {
      sequence: 1,
      timeStamp: 0,
      messageType: 1 as const,
      messageCode: 0xa00,
      replySequence: 1,
      errorCode: 0,
    };
    const e4 = encodeMessage(header, v4, value).subarray(4 + 24);
    const e3 = encodeMessage(header, v3, value).subarray(4 + 24);
    assert.equal(hex(e3), hex(Buffer.concat([e4.subarray(0, 4), e4.subarray(8)])));
  });
});

// Regression: HaltedPost.textReason is optional in the canonical (v4) value, and a
// v3 session once refused to encode a value without it.
describe('canonical halted posts on a v3 session', () => {
  for (const def of [M.NOTIFY_DATA_HALTED, M.NOTIFY_MOVER_HALTED]) {
    test(`${def.name} v3 post: a value without textReason goes out with an empty text_reason`, () => {
      const c = { def: def as MessageDef, version: 3 as const, part: 'post' as const };
      const { header, bytes } = headerOf(c);
      const framed = encodeMessage(header, compiled(3, def).body, { reason: 2 });
      assert.equal(hex(framed), hex(singleFragment(Buffer.concat([bytes, b().u32(2).str('').bytes()]))));
    });
  }
});

describe('real capture vectors (docs/protocol.md §1.4, §7.6)', () => {
  const HELLO =
    '8000002c000000016b05b6a10000000000000502000000000000000000000000000000040000000548656c6c6f000000';
  const helloHeader = {
    sequence: 1,
    timeStamp: 0x6b05b6a1,
    messageType: 0 as const,
    messageCode: 0x502,
    replySequence: 0,
    errorCode: 0,
  };
  const helloBody = { reason: 0, protocolVersion: 4, textReason: 'Hello' };

  for (const version of [4, 3] as const) {
    test(`NDMP_NOTIFY_CONNECTION_STATUS v${version} post: ndmjob's first message`, () => {
      const codec = compiled(version, M.NOTIFY_CONNECTION_STATUS).body;
      assert.equal(hex(encodeMessage(helloHeader, codec, helloBody)), HELLO);
      const record = fromHex(HELLO).subarray(4);
      assert.deepEqual(decodeHeader(record), helloHeader);
      assert.deepEqual(decodeBody(codec, record), helloBody);
    });
  }

  test('NDMP_MOVER_LISTEN v4 reply: one TCP address 127.0.0.1:48347', () => {
    const codec = compiled(4, M.MOVER_LISTEN).reply;
    const body = {
      error: 0,
      connectAddr: { addrType: 1 as const, tcpAddrs: [{ ipAddr: 0x7f000001, port: 48347, addrEnv: [] }] },
    };
    const header = {
      sequence: 2,
      timeStamp: 0,
      messageType: 1 as const,
      messageCode: 0xa01,
      replySequence: 5,
      errorCode: 0,
    };
    const framed = encodeMessage(header, codec, body);
    assert.equal(
      hex(framed.subarray(4 + 24)),
      '00000000' + '00000001' + '00000001' + '7f000001' + '0000bcdb' + '00000000',
    );
  });
});

describe('header-only messages', () => {
  test('a reply with a header error and a null body is the 24-byte header alone', () => {
    const header = {
      sequence: 3,
      timeStamp: 9,
      messageType: 1 as const,
      messageCode: 0x400,
      replySequence: 2,
      errorCode: 4,
    };
    const framed = encodeMessage(header, compiled(4, M.DATA_GET_STATE).reply, null);
    assert.equal(hex(framed), hex(b().u32(0x80000018).u32(3).u32(9).u32(1).u32(0x400).u32(2).u32(4).bytes()));
  });

  test('decodeHeader refuses a record shorter than 24 bytes', () => {
    for (let n = 0; n < 24; n++) {
      assert.throws(() => decodeHeader(Buffer.alloc(n)), { name: 'XdrDecodeError' });
    }
  });

  test('bytes after the body are ignored (padded records, docs/protocol.md §1.2)', () => {
    for (const c of ENCODE_CASES) {
      const padded = Buffer.concat([recordOf(c), fromHex('deadbeef 00000000')]);
      assert.deepEqual(decodeBody(codecOf(c), padded), c.decoded, c.title);
    }
  });
});
