// Truncated and lying bodies: a decoder fed less than a whole body, or a count
// or length that the record cannot hold, must fail with XdrDecodeError (which
// the server answers with NDMP_XDR_DECODE_ERR), never with a RangeError or a
// garbage value, and never allocate what the record cannot contain.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import type { Codec, MessageDef, NdmpVersion } from '../../src/wire/index.js';
import { compiled, decodeBody, M, XdrDecodeError } from '../../src/wire/index.js';
import type { WireCase } from '../helpers/golden-cases.js';
import { codecOf, headerOf, recordOf, WIRE_CASES } from '../helpers/golden-cases.js';
import { b } from '../helpers/xdr-bytes.js';

const HEADER = headerOf({ def: M.CONNECT_OPEN as MessageDef, part: 'request' }).bytes;

/** Decodes `body` behind a header; returns the error thrown, or fails if none was. */
function decodeError(codec: Codec<unknown>, body: Uint8Array, what: string): unknown {
  try {
    const value = decodeBody(codec, Buffer.concat([HEADER, body]));
    assert.fail(
      `${what}: decoded without error to ${String(JSON.stringify(value, (_k, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v)))}`,
    );
  } catch (e) {
    if (e instanceof assert.AssertionError) throw e;
    return e;
  }
}

function assertXdrDecodeError(codec: Codec<unknown>, body: Uint8Array, what: string): XdrDecodeError {
  const e = decodeError(codec, body, what);
  assert.ok(e instanceof XdrDecodeError, `${what}: threw ${String(e)} instead of XdrDecodeError`);
  return e;
}

describe('every strict prefix of every golden body is refused', () => {
  for (const c of WIRE_CASES) {
    if (c.bytes.length === 0) continue; // an empty body has no strict prefix
    test(c.title, () => {
      const codec = codecOf(c);
      // The whole body decodes (so the prefixes below fail for being short, not for being wrong).
      assert.deepEqual(decodeBody(codec, recordOf(c)), c.decoded);
      for (let k = 0; k < c.bytes.length; k++) {
        assertXdrDecodeError(codec, c.bytes.subarray(0, k), `${k} of ${c.bytes.length} bytes`);
      }
    });
  }

  test('the table covers requests, posts and replies of both versions', () => {
    const seen = new Set(
      WIRE_CASES.filter((c: WireCase) => c.bytes.length > 0).map((c) => `${c.part} v${c.version}`),
    );
    for (const key of ['request v4', 'request v3', 'post v4', 'post v3', 'reply v4', 'reply v3']) {
      assert.ok(seen.has(key), key);
    }
  });
});

/** A message body whose array count claims far more elements than the bytes that follow. */
interface CountCase {
  readonly title: string;
  readonly def: MessageDef;
  readonly version: NdmpVersion;
  readonly part: 'body' | 'reply';
  /** Body bytes up to and including the count word's position (the count is appended). */
  readonly before: Buffer;
}

const COUNT_CASES: readonly CountCase[] = [
  { title: 'NDMP_FH_ADD_FILE files', def: M.FH_ADD_FILE, version: 4, part: 'body', before: b().bytes() },
  { title: 'NDMP_FH_ADD_DIR dirs', def: M.FH_ADD_DIR, version: 3, part: 'body', before: b().bytes() },
  { title: 'NDMP_FH_ADD_NODE nodes', def: M.FH_ADD_NODE, version: 4, part: 'body', before: b().bytes() },
  // inner arrays: a file's names (count after the outer count 1)
  {
    title: 'NDMP_FH_ADD_FILE file names',
    def: M.FH_ADD_FILE,
    version: 4,
    part: 'body',
    before: b().u32(1).bytes(),
  },
  {
    title: 'NDMP_FH_ADD_FILE file stats',
    def: M.FH_ADD_FILE,
    version: 4,
    part: 'body',
    before: b().u32(1).u32(1).u32(0).str('a').bytes(),
  },
  {
    title: 'NDMP_DATA_START_BACKUP env',
    def: M.DATA_START_BACKUP,
    version: 4,
    part: 'body',
    before: b().str('dump').bytes(),
  },
  {
    title: 'NDMP_DATA_START_RECOVER env',
    def: M.DATA_START_RECOVER,
    version: 3,
    part: 'body',
    before: b().bytes(),
  },
  {
    title: 'NDMP_DATA_START_RECOVER nlist',
    def: M.DATA_START_RECOVER,
    version: 4,
    part: 'body',
    before: b().u32(0).bytes(),
  },
  {
    title: 'NDMP_CONFIG_GET_CONNECTION_TYPE addr types',
    def: M.CONFIG_GET_CONNECTION_TYPE,
    version: 4,
    part: 'reply',
    before: b().u32(0).bytes(),
  },
  {
    title: 'NDMP_CONFIG_GET_FS_INFO fs list',
    def: M.CONFIG_GET_FS_INFO,
    version: 3,
    part: 'reply',
    before: b().u32(0).bytes(),
  },
  {
    title: 'NDMP_CONFIG_SET_EXT_LIST classes',
    def: M.CONFIG_SET_EXT_LIST,
    version: 4,
    part: 'body',
    before: b().bytes(),
  },
  {
    title: 'NDMP_MOVER_LISTEN v4 tcp address list',
    def: M.MOVER_LISTEN,
    version: 4,
    part: 'reply',
    before: b().u32(0).u32(1).bytes(),
  },
];

describe('impossible array counts are refused before allocation', () => {
  for (const c of COUNT_CASES) {
    test(`${c.title} (v${c.version})`, () => {
      const cm = compiled(c.version, c.def);
      const codec = c.part === 'reply' ? cm.reply : cm.body;
      assert.ok(codec);
      for (const count of [0x7fffffff, 0x40000000, 0xffffffff, 1000]) {
        // 24 bytes after the count: room for the enclosing element, not for `count` of these.
        const body = Buffer.concat([c.before, b().u32(count).bytes(), Buffer.alloc(24)]);
        const heapBefore = process.memoryUsage().heapUsed;
        const e = assertXdrDecodeError(codec, body, `count ${count}`);
        // Refused by the count check on this very count, not element by element.
        assert.match(e.message, new RegExp(`\\b${count}\\b.*cannot fit`), `count ${count}: ${e.message}`);
        assert.ok(process.memoryUsage().heapUsed - heapBefore < 64 * 1024 * 1024, 'no large allocation');
      }
    });
  }

  test('NDMP_FH_ADD_FILE: count 0x40000000 with 8 bytes left', () => {
    const codec = compiled(4, M.FH_ADD_FILE).body;
    const e = assertXdrDecodeError(codec, b().u32(0x40000000).quad(1n).bytes(), 'FH_ADD_FILE');
    assert.match(e.message, /cannot fit/);
  });

  test('a count that does fit is accepted (the check is not off by one)', () => {
    // 2 × u32 addr types with exactly 8 bytes left.
    const codec = compiled(4, M.CONFIG_GET_CONNECTION_TYPE).reply;
    assert.ok(codec);
    assert.deepEqual(decodeBody(codec, Buffer.concat([HEADER, b().u32(0).u32(2).u32(0).u32(1).bytes()])), {
      error: 0,
      addrTypes: [0, 1],
    });
    assertXdrDecodeError(codec, b().u32(0).u32(3).u32(0).u32(1).bytes(), 'count 3 with 8 bytes');
  });
});

/** Messages with a string or opaque whose length word we replace by a lie. */
const LENGTH_CASES = [
  { title: 'NDMP_TAPE_WRITE data_out (opaque)', codec: compiled(4, M.TAPE_WRITE).body, before: b() },
  { title: 'NDMP_SCSI_OPEN device (string)', codec: compiled(3, M.SCSI_OPEN).body, before: b() },
  {
    title: 'NDMP_TAPE_READ v4 reply data_in (opaque)',
    codec: compiled(4, M.TAPE_READ).reply,
    before: b().u32(0),
  },
  {
    title: 'NDMP_DATA_START_BACKUP butype_name then env (string, more fields follow)',
    codec: compiled(4, M.DATA_START_BACKUP).body,
    before: b(),
  },
  {
    title: 'NDMP_LOG_FILE v3 name then status (string, more fields follow)',
    codec: compiled(3, M.LOG_FILE).body,
    before: b(),
  },
] as const;

describe('string and opaque lengths beyond the record are refused', () => {
  for (const c of LENGTH_CASES) {
    test(`${c.title}: lengths up to 0x7ffffffc`, () => {
      assert.ok(c.codec);
      for (const len of [9, 13, 16, 17, 0x1000, 0x7ffffff0, 0x7ffffffc]) {
        const body = Buffer.concat([c.before.bytes(), b().u32(len).hex('41424344 45464748').bytes()]);
        assertXdrDecodeError(c.codec, body, `length 0x${len.toString(16)}`);
      }
    });

    // Regression: the padded size was once `(n + 3) & ~3`, which wraps to 0 or
    // below for n >= 0x7ffffffd and slipped past the bounds check.
    test(`${c.title}: lengths 0x7ffffffd..0xffffffff`, () => {
      assert.ok(c.codec);
      for (const len of [0x7ffffffd, 0x7fffffff, 0x80000000, 0xfffffffc, 0xfffffffd, 0xffffffff]) {
        const body = Buffer.concat([c.before.bytes(), b().u32(len).hex('41424344 45464748').bytes()]);
        assertXdrDecodeError(c.codec, body, `length 0x${len.toString(16)}`);
      }
    });
  }
});

describe('union discriminants', () => {
  test('an unknown addr_type is refused in both versions', () => {
    for (const version of [3, 4] as const) {
      const codec = compiled(version, M.DATA_CONNECT).body;
      for (const d of [4, 5, 0x7fffffff, 0xffffffff]) {
        assertXdrDecodeError(codec, b().u32(d).u32(0).u32(0).u32(0).bytes(), `v${version} addr_type ${d}`);
      }
    }
  });

  test('an unknown auth_type is refused', () => {
    const codec = compiled(4, M.CONNECT_CLIENT_AUTH).body;
    assertXdrDecodeError(codec, b().u32(3).str('x').str('y').bytes(), 'auth_type 3');
  });

  test('an MD5 auth_data needs the whole 16-byte digest', () => {
    const codec = compiled(4, M.CONNECT_CLIENT_AUTH).body;
    assertXdrDecodeError(codec, b().u32(2).str('ndmp').fixed(Buffer.alloc(12)).bytes(), 'digest of 12 bytes');
  });

  test('a file_name with an unknown fs_type decodes through the default arm', () => {
    const codec = compiled(4, M.FH_ADD_DIR).body;
    const body = b().u32(1).u32(1).u32(0xdead).str('other').quad(1n).quad(2n).bytes();
    assert.deepEqual(decodeBody(codec, Buffer.concat([HEADER, body])), {
      dirs: [{ names: [{ fsType: 0xdead, otherName: 'other' }], node: 1n, parent: 2n }],
    });
  });
});
