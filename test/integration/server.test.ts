// Our server and our client over real sockets: negotiation, authentication,
// the pre-auth gate, CONFIG answers, and hostile input that must end one
// connection at most and never the server.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { NdmpClient } from '../../src/dma/client.js';
import { buildDispatchTable } from '../../src/server/dispatch.js';
import { configHandlers } from '../../src/services/config.js';
import { connectHandlers } from '../../src/services/connect.js';
import {
  ALL_MESSAGES,
  AddrType,
  AuthType,
  ConnectionStatusReason,
  ErrorCode,
  M,
  MessageType,
  NdmpError,
  TransportError,
  compiled,
  frameRecordFragmented,
  md5Digest,
} from '../../src/wire/index.js';
import { PASSWORD, RawPeer, USER, client, startServer, u32be } from '../helpers/in-process.js';
import type { TestServer } from '../helpers/in-process.js';

async function rejectsWith(p: Promise<unknown>, code: number, where?: 'header' | 'body'): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof NdmpError, `expected NdmpError, got ${String(e)}`);
    assert.equal(e.ndmpErrorName, new NdmpError(code).ndmpErrorName);
    if (where) assert.equal(e.where, where);
    return true;
  });
}

describe('ndmpd protocol core over real sockets', () => {
  let s: TestServer;
  before(async () => {
    s = await startServer({ maxRecordSize: 64 * 1024 });
  });
  after(async () => {
    await s.close();
  });

  test('greets with NOTIFY_CONNECTION_STATUS(CONNECTED, v4) as sequence 1', async () => {
    const raw = await RawPeer.connect(s.port);
    const first = await raw.next();
    assert.ok(first);
    assert.equal(first.header.sequence, 1);
    assert.equal(first.header.messageCode, M.NOTIFY_CONNECTION_STATUS.code);
    assert.equal(first.header.messageType, MessageType.NDMP_MESSAGE_REQUEST);
    // reason CONNECTED, version 4, empty text
    assert.deepEqual(first.record.subarray(24), u32be(ConnectionStatusReason.NDMP_CONNECTED, 4, 0));
    raw.close();
  });

  test('CONNECT_OPEN: v4 and v3 accepted, others ILLEGAL_ARGS, a second open ILLEGAL_STATE', async () => {
    const c = await client(s.port, 'none');
    await rejectsWith(
      c.call(M.CONNECT_OPEN, { protocolVersion: 5 }),
      ErrorCode.NDMP_ILLEGAL_ARGS_ERR,
      'body',
    );
    await rejectsWith(c.call(M.CONNECT_OPEN, { protocolVersion: 2 }), ErrorCode.NDMP_ILLEGAL_ARGS_ERR);
    await c.open(3);
    assert.equal(c.version, 3);
    await rejectsWith(c.call(M.CONNECT_OPEN, { protocolVersion: 3 }), ErrorCode.NDMP_ILLEGAL_STATE_ERR);
    await c.authText(USER, PASSWORD);
    // A v4-only message on a v3 session does not exist there: header-level NOT_SUPPORTED.
    c.version = 4;
    await rejectsWith(c.call(M.CONFIG_GET_EXT_LIST, {}), ErrorCode.NDMP_NOT_SUPPORTED_ERR, 'header');
    c.version = 3;
    const st = await c.call(M.CONFIG_GET_SERVER_INFO, {});
    assert.equal(st.vendorName, 'test vendor');
    await c.close();
  });

  test('before authentication only the spec list is served; all else NOT_AUTHORIZED (header)', async () => {
    const allowed = new Set([
      M.CONNECT_OPEN.code,
      M.CONNECT_CLIENT_AUTH.code,
      M.CONNECT_CLOSE.code,
      M.CONFIG_GET_SERVER_INFO.code,
      M.CONFIG_GET_AUTH_ATTR.code,
    ]);
    const c = await client(s.port, 'none');
    const refused = ALL_MESSAGES.filter(
      (d) => d.kind === 'request' && d.versions.includes(4) && !allowed.has(d.code),
    );
    // v4 has 44 requests that get a reply; 4 of them are allowed before auth.
    assert.equal(refused.length, 40);
    for (const def of refused) {
      const raw = c.request(def, compiled(4, def).body.zero() as never);
      await rejectsWith(raw, ErrorCode.NDMP_NOT_AUTHORIZED_ERR, 'header');
    }
    // The allowed ones answer, and server info tells no vendor yet.
    const info = await c.call(M.CONFIG_GET_SERVER_INFO, {});
    assert.equal(info.vendorName, '');
    assert.deepEqual(info.authTypes, [AuthType.NDMP_AUTH_TEXT, AuthType.NDMP_AUTH_MD5]);
    await c.close();
  });

  test('TEXT auth: right password accepted, wrong refused; three failures close the connection', async () => {
    const ok = await client(s.port, 'text');
    assert.equal((await ok.call(M.CONFIG_GET_HOST_INFO, {})).hostname, 'testhost');
    await ok.close();

    const c = await client(s.port, 'none');
    await c.open();
    await rejectsWith(c.authText(USER, 'nope'), ErrorCode.NDMP_NOT_AUTHORIZED_ERR, 'body');
    await rejectsWith(c.authText('nobody', PASSWORD), ErrorCode.NDMP_NOT_AUTHORIZED_ERR);
    await rejectsWith(c.authText(USER, ''), ErrorCode.NDMP_NOT_AUTHORIZED_ERR);
    await assert.rejects(c.call(M.CONFIG_GET_SERVER_INFO, {}), TransportError);
    await rejectsWith(
      (await client(s.port, 'none')).call(M.CONNECT_CLIENT_AUTH, {
        authData: { authType: AuthType.NDMP_AUTH_NONE },
      }),
      ErrorCode.NDMP_ILLEGAL_ARGS_ERR,
    );
  });

  test('MD5 auth: fresh challenge each time, digest checked, a challenge answers one attempt only', async () => {
    const c = await client(s.port, 'none');
    await c.open();
    // No challenge asked for yet: refused.
    await rejectsWith(
      c.call(M.CONNECT_CLIENT_AUTH, {
        authData: { authType: AuthType.NDMP_AUTH_MD5, authId: USER, authDigest: Buffer.alloc(16) },
      }),
      ErrorCode.NDMP_NOT_AUTHORIZED_ERR,
    );
    const a1 = await c.call(M.CONFIG_GET_AUTH_ATTR, { authType: AuthType.NDMP_AUTH_MD5 });
    const a2 = await c.call(M.CONFIG_GET_AUTH_ATTR, { authType: AuthType.NDMP_AUTH_MD5 });
    assert.equal(a1.serverAttr.authType, AuthType.NDMP_AUTH_MD5);
    assert.equal(a2.serverAttr.authType, AuthType.NDMP_AUTH_MD5);
    if (a1.serverAttr.authType !== 2 || a2.serverAttr.authType !== 2) return;
    assert.notDeepEqual(a1.serverAttr.challenge, a2.serverAttr.challenge);
    // The latest challenge is the one that counts.
    await rejectsWith(
      c.call(M.CONNECT_CLIENT_AUTH, {
        authData: { authType: 2, authId: USER, authDigest: md5Digest(PASSWORD, a1.serverAttr.challenge) },
      }),
      ErrorCode.NDMP_NOT_AUTHORIZED_ERR,
    );
    // ...and it was spent by that failed attempt: answering it now is refused too.
    // That is the third failure, which also ends the connection.
    await rejectsWith(
      c.call(M.CONNECT_CLIENT_AUTH, {
        authData: { authType: 2, authId: USER, authDigest: md5Digest(PASSWORD, a2.serverAttr.challenge) },
      }),
      ErrorCode.NDMP_NOT_AUTHORIZED_ERR,
    );
    await assert.rejects(c.call(M.CONFIG_GET_SERVER_INFO, {}), TransportError);
    const ok = await client(s.port, 'md5');
    assert.equal((await ok.call(M.CONFIG_GET_SERVER_INFO, {})).productName, 'test product');
    await ok.close();
  });

  test('CONNECT_SERVER_AUTH: MD5 answer proves the shared secret; TEXT is refused', async () => {
    const c = await client(s.port);
    const challenge = Buffer.alloc(64, 7);
    const r = await c.call(M.CONNECT_SERVER_AUTH, {
      clientAttr: { authType: AuthType.NDMP_AUTH_MD5, challenge },
    });
    assert.equal(r.serverResult.authType, AuthType.NDMP_AUTH_MD5);
    if (r.serverResult.authType === 2) {
      assert.equal(r.serverResult.authId, USER);
      assert.deepEqual(r.serverResult.authDigest, md5Digest(PASSWORD, challenge));
    }
    await rejectsWith(
      c.call(M.CONNECT_SERVER_AUTH, { clientAttr: { authType: AuthType.NDMP_AUTH_TEXT } }),
      ErrorCode.NDMP_ILLEGAL_ARGS_ERR,
    );
    await c.close();
  });

  test('CONFIG answers: host, connection types, tar backup type, real file-system sizes, empty tapes', async () => {
    for (const v of [4, 3] as const) {
      const c = await client(s.port, 'md5', v);
      const host = await c.call(M.CONFIG_GET_HOST_INFO, {});
      assert.deepEqual(
        { ...host },
        { error: 0, hostname: 'testhost', osType: 'Linux', osVers: '6', hostid: 'abcd1234' },
      );
      assert.deepEqual((await c.call(M.CONFIG_GET_CONNECTION_TYPE, {})).addrTypes, [0, 1]);
      const bu = await c.call(M.CONFIG_GET_BUTYPE_INFO, {});
      assert.equal(bu.butypeInfo.length, 1);
      assert.equal(bu.butypeInfo[0]!.butypeName, 'tar');
      assert.ok(bu.butypeInfo[0]!.defaultEnv.some((e) => e.name === 'TYPE' && e.value === 'tar'));
      const fs = (await c.call(M.CONFIG_GET_FS_INFO, {})).fsInfo;
      assert.equal(fs.length, 1);
      const f = fs[0]!;
      assert.equal(f.fsLogicalDevice, s.exportDir);
      assert.equal(f.fsStatus, 'online');
      const total = BigInt(s.statfs.blocks) * BigInt(s.statfs.bsize);
      assert.equal(f.totalSize, total);
      assert.ok(f.availSize > 0n && f.availSize <= total);
      assert.ok(f.fsEnv.some((e) => e.name === 'EXPORT_NAME' && e.value === 'data'));
      assert.deepEqual((await c.call(M.CONFIG_GET_TAPE_INFO, {})).tapeInfo, []);
      assert.deepEqual((await c.call(M.CONFIG_GET_SCSI_INFO, {})).scsiInfo, []);
      await c.close();
    }
  });

  test('extension negotiation: list, then select once; out of order is refused with the spec errors', async () => {
    const c = await client(s.port);
    await rejectsWith(
      c.call(M.CONFIG_SET_EXT_LIST, { ndmpSelectedExt: [] }),
      ErrorCode.NDMP_PRECONDITION_ERR,
    );
    assert.deepEqual((await c.call(M.CONFIG_GET_EXT_LIST, {})).classList, []);
    await rejectsWith(
      c.call(M.CONFIG_SET_EXT_LIST, { ndmpSelectedExt: [{ classId: 0x2050, version: 1 }] }),
      ErrorCode.NDMP_CLASS_NOT_SUPPORTED_ERR,
    );
    await rejectsWith(
      c.call(M.CONFIG_SET_EXT_LIST, {
        ndmpSelectedExt: [
          { classId: 0x2050, version: 1 },
          { classId: 0x2050, version: 2 },
        ],
      }),
      ErrorCode.NDMP_EXT_DUPL_CLASSES_ERR,
    );
    await c.call(M.CONFIG_SET_EXT_LIST, { ndmpSelectedExt: [] });
    await rejectsWith(
      c.call(M.CONFIG_SET_EXT_LIST, { ndmpSelectedExt: [] }),
      ErrorCode.NDMP_EXT_DANDN_ILLEGAL_ERR,
    );
    await rejectsWith(c.call(M.CONFIG_GET_EXT_LIST, {}), ErrorCode.NDMP_EXT_DANDN_ILLEGAL_ERR);
    await c.close();
  });

  test('a known message whose service is not offered: body-level NOT_SUPPORTED, session goes on', async () => {
    // Every service is offered now: a server built without the SCSI group stands in for one that lacks it.
    const partial = await startServer({}, {}, buildDispatchTable([connectHandlers, configHandlers]));
    const c = await client(partial.port);
    const r = await c.request(M.SCSI_GET_STATE, {});
    assert.equal(r.error, ErrorCode.NDMP_NOT_SUPPORTED_ERR);
    // The zero-filled rest of the reply decodes as the reply's own shape.
    assert.equal(r.targetId, 0);
    assert.equal((await c.call(M.CONFIG_GET_HOST_INFO, {})).hostname, 'testhost');
    await c.close();
    await partial.close();
  });

  test('unknown codes and server-side posts: header NOT_AUTHORIZED before login, NOT_SUPPORTED after; undecodable bodies: XDR_DECODE_ERR', async () => {
    const raw = await RawPeer.connect(s.port);
    await raw.next(); // greeting
    const codes = [0x1234, 0x20500001, 0x101, M.NOTIFY_DATA_HALTED.code, M.FH_ADD_FILE.code];
    const expectHeaderError = async (code: number, error: number) => {
      raw.send(raw.request(code));
      const r = await raw.next();
      assert.ok(r);
      assert.equal(r.header.messageType, MessageType.NDMP_MESSAGE_REPLY);
      assert.equal(r.header.replySequence, raw.lastSequence);
      assert.equal(r.header.messageCode, code);
      assert.equal(r.header.errorCode, error);
      assert.equal(r.record.length, 24, 'a header-level error carries no body');
    };
    // Before login the answer is the same for every code, so a stranger cannot tell which exist.
    for (const code of codes) await expectHeaderError(code, ErrorCode.NDMP_NOT_AUTHORIZED_ERR);
    // CONNECT_OPEN with its u_short cut off, and CONNECT_CLIENT_AUTH with a lying string length.
    raw.send(raw.request(M.CONNECT_OPEN.code, Buffer.from([0, 0])));
    let r = await raw.next();
    assert.equal(r?.header.errorCode, ErrorCode.NDMP_XDR_DECODE_ERR);
    raw.send(raw.request(M.CONNECT_CLIENT_AUTH.code, u32be(1, 0x7ffffff0)));
    r = await raw.next();
    assert.equal(r?.header.errorCode, ErrorCode.NDMP_XDR_DECODE_ERR);
    // A record shorter than a header is dropped; the session goes on.
    raw.send(Buffer.concat([u32be(0x80000008), Buffer.alloc(8)]));
    raw.send(raw.request(M.CONNECT_OPEN.code, u32be(4)));
    r = await raw.next();
    assert.equal(r?.header.replySequence, raw.lastSequence);
    assert.equal(r?.header.errorCode, 0);
    assert.deepEqual(r?.record.subarray(24), u32be(0));
    // Once logged in, codes the server does not have are NOT_SUPPORTED.
    const str = (t: string) => {
      const b = Buffer.from(t);
      return Buffer.concat([u32be(b.length), b, Buffer.alloc((4 - (b.length % 4)) % 4)]);
    };
    raw.send(raw.request(M.CONNECT_CLIENT_AUTH.code, Buffer.concat([u32be(1), str(USER), str(PASSWORD)])));
    assert.equal((await raw.next())?.header.errorCode, 0);
    for (const code of codes) await expectHeaderError(code, ErrorCode.NDMP_NOT_SUPPORTED_ERR);
    raw.close();
  });

  test('requests split at every byte, in many fragments, and pipelined are answered in order', async () => {
    const raw = await RawPeer.connect(s.port);
    await raw.next();
    const open = raw.request(M.CONNECT_OPEN.code, u32be(4));
    for (const byte of open) raw.send(Buffer.from([byte]));
    let r = await raw.next();
    assert.equal(r?.header.errorCode, 0);
    // xdrrec peers split long messages into fragments: 5-byte fragments here.
    const auth = raw.request(M.CONFIG_GET_AUTH_ATTR.code, u32be(AuthType.NDMP_AUTH_TEXT));
    raw.send(frameRecordFragmented(auth.subarray(4), 5));
    r = await raw.next();
    assert.equal(r?.header.replySequence, raw.lastSequence);
    assert.deepEqual(r?.record.subarray(24), u32be(0, AuthType.NDMP_AUTH_TEXT));
    // Ten pipelined requests in one write: ten replies, in order.
    const batch: Buffer[] = [];
    const seqs: number[] = [];
    for (let i = 0; i < 10; i++) {
      batch.push(raw.request(M.CONFIG_GET_SERVER_INFO.code));
      seqs.push(raw.lastSequence);
    }
    raw.send(Buffer.concat(batch));
    for (const seq of seqs) {
      r = await raw.next();
      assert.equal(r?.header.replySequence, seq);
    }
    raw.close();
  });

  test('an oversized record or garbage closes that connection only; the others go on', async () => {
    const bystander = await client(s.port);
    const before = s.server.connectionCount;

    const big = await RawPeer.connect(s.port);
    await big.next();
    // Declares 1 MiB (> the 64 KiB max of this server): closed as soon as the mark is seen.
    big.send(u32be(0x80000000 | (1024 * 1024)));
    assert.equal(await big.waitClosed(), true);

    // Several fragments that add up past the maximum.
    const sum = await RawPeer.connect(s.port);
    await sum.next();
    for (let i = 0; i < 3; i++) sum.send(Buffer.concat([u32be(30 * 1024), Buffer.alloc(30 * 1024)]));
    assert.equal(await sum.waitClosed(), true);

    // Deterministic garbage: the server answers or closes, and never falls over.
    let x = 0x12345678;
    const rnd = () => ((x ^= x << 13), (x ^= x >>> 17), (x ^= x << 5), x >>> 0);
    for (let round = 0; round < 20; round++) {
      const g = await RawPeer.connect(s.port);
      await g.next();
      const junk = Buffer.alloc(64 + (rnd() % 512));
      for (let i = 0; i < junk.length; i += 4)
        junk.writeUInt32BE(rnd(), i - (i + 4 > junk.length ? i + 4 - junk.length : 0));
      g.send(junk);
      await new Promise((r) => setTimeout(r, 10));
      g.close();
    }
    assert.equal((await bystander.call(M.CONFIG_GET_HOST_INFO, {})).hostname, 'testhost');
    const fresh = await client(s.port);
    assert.equal((await fresh.call(M.CONFIG_GET_HOST_INFO, {})).hostname, 'testhost');
    await fresh.close();
    await bystander.close();
    await new Promise((r) => setTimeout(r, 100));
    assert.ok(s.server.connectionCount <= before, 'closed connections are forgotten');
    assert.match(s.logText(), /framing error; closing connection/);
  });

  test('EOF without CONNECT_CLOSE ends the session normally; CONNECT_CLOSE gets no reply', async () => {
    const c = await client(s.port);
    const n = s.server.connectionCount;
    c.destroy();
    for (let i = 0; i < 50 && s.server.connectionCount >= n; i++) await new Promise((r) => setTimeout(r, 20));
    assert.equal(s.server.connectionCount, n - 1);

    const raw = await RawPeer.connect(s.port);
    await raw.next();
    raw.send(raw.request(M.CONNECT_CLOSE.code));
    assert.equal(await raw.next(), null, 'no reply: the server just closes');
  });

  test('the message trace at debug level never shows a password or digest', async () => {
    const c = await client(s.port, 'text');
    await c.close();
    const log = s.logText();
    assert.match(log, /"dir":"in"/, 'the trace is on');
    assert.match(log, /NDMP_CONNECT_CLIENT_AUTH/);
    assert.equal(log.includes(PASSWORD), false);
    assert.match(log, /\[redacted\]/);
  });
});

describe('ndmpd connection limits', () => {
  test('beyond max connections: NOTIFY_CONNECTION_STATUS(REFUSED) and close', async () => {
    const s = await startServer({ maxConnections: 1 });
    try {
      const first = await client(s.port);
      // Holding a device (the data service listening), it never gives way to a newcomer.
      await first.call(M.DATA_LISTEN, { addrType: AddrType.NDMP_ADDR_TCP });
      await assert.rejects(
        NdmpClient.connect({ host: '127.0.0.1', port: s.port, timeoutMs: 3000 }),
        (e: unknown) => {
          assert.ok(e instanceof TransportError);
          assert.equal(e.code, 'NDMP_REFUSED');
          assert.match(e.message, /too many connections/);
          return true;
        },
      );
      assert.equal((await first.call(M.CONFIG_GET_HOST_INFO, {})).hostname, 'testhost');
      await first.close();
    } finally {
      await s.close();
    }
  });

  test('a refused login is answered only after the failure delay; a good one at once', async () => {
    const s = await startServer({}, { authFailureDelayMs: 300 });
    try {
      const c = await client(s.port, 'none');
      await c.open();
      let t0 = Date.now();
      await rejectsWith(c.authText(USER, 'guess'), ErrorCode.NDMP_NOT_AUTHORIZED_ERR);
      assert.ok(Date.now() - t0 >= 290, `refusal came after ${Date.now() - t0} ms`);
      t0 = Date.now();
      await c.authText(USER, PASSWORD);
      assert.ok(Date.now() - t0 < 290, 'a right password is not delayed');
      await c.close();
    } finally {
      await s.close();
    }
  });

  test('no authentication in time: SHUTDOWN notice, then close', async () => {
    const s = await startServer({ preAuthTimeoutMs: 200 });
    try {
      const raw = await RawPeer.connect(s.port);
      await raw.next();
      const r = await raw.next(2000);
      assert.equal(r?.header.messageCode, M.NOTIFY_CONNECTION_STATUS.code);
      assert.equal(r?.record.readUInt32BE(24), ConnectionStatusReason.NDMP_SHUTDOWN);
      assert.equal(await raw.waitClosed(), true);
      // An authenticated session is not cut off.
      const c = await client(s.port);
      await new Promise((res) => setTimeout(res, 400));
      assert.equal((await c.call(M.CONFIG_GET_HOST_INFO, {})).hostname, 'testhost');
      await c.close();
    } finally {
      await s.close();
    }
  });
});
