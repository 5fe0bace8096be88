// Regression tests from the review of the protocol core: peers that reset,
// never read, send big records before logging in, crowd the connection slots,
// or reopen the protocol late must cost their own connection at most.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { NdmpClient } from '../../src/dma/client.js';
import {
  AddrType,
  ConnectionStatusReason,
  ErrorCode,
  M,
  NdmpError,
  TransportError,
} from '../../src/wire/index.js';
import { RawPeer, client, startServer, u32be } from '../helpers/in-process.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A CONNECT_CLIENT_AUTH body with TEXT credentials, built by hand for a raw peer. */
function authText(user: string, password: string): Buffer {
  const str = (t: string) => {
    const b = Buffer.from(t);
    return Buffer.concat([u32be(b.length), b, Buffer.alloc((4 - (b.length % 4)) % 4)]);
  };
  return Buffer.concat([u32be(1), str(user), str(password)]);
}

describe('robustness of the control connection', () => {
  test('refused connections that the peer resets do not crash the server and are closed', async () => {
    const s = await startServer({ maxConnections: 1 });
    try {
      const holder = await client(s.port);
      // Holding a device (the data service listening), it never gives way to a newcomer.
      await holder.call(M.DATA_LISTEN, { addrType: AddrType.NDMP_ADDR_TCP });
      const sockets: net.Socket[] = [];
      for (let i = 0; i < 20; i++) {
        const sock = net.connect({ host: '127.0.0.1', port: s.port });
        sock.on('error', () => undefined);
        sockets.push(sock);
        // Reset as soon as connected, while the server is writing its REFUSED notice.
        sock.on('connect', () => sock.resetAndDestroy());
      }
      await sleep(300);
      assert.equal((await holder.call(M.CONFIG_GET_HOST_INFO, {})).hostname, 'testhost');
      assert.equal(s.server.connectionCount, 1);
      await holder.close();
    } finally {
      await s.close();
    }
  });

  test('a peer that never reads its replies gets no more of them; memory stays bounded; all arrive later', async () => {
    const s = await startServer();
    try {
      const raw = await RawPeer.connect(s.port);
      await raw.next();
      raw.send(raw.request(M.CONNECT_CLIENT_AUTH.code, authText('dma', 'pa55-Word!')));
      assert.equal((await raw.next())?.header.errorCode, 0);
      // Stop reading. CONFIG_GET_BUTYPE_INFO replies are ~200 bytes: 60,000 of them are
      // ~12 MB, more than loopback's socket buffers (a few MB) can absorb.
      raw.socket.pause();
      const n = 60_000;
      const batch: Buffer[] = [];
      for (let i = 0; i < n; i++) batch.push(raw.request(M.CONFIG_GET_BUTYPE_INFO.code));
      raw.socket.write(Buffer.concat(batch));
      await sleep(1500);
      const [st] = s.server.stats();
      assert.ok(st, 'the connection is there');
      assert.ok(st.outputBytes < 512 * 1024, `server holds ${st.outputBytes} reply bytes`);
      assert.ok(st.queuedBytes <= 512 * 1024, `server holds ${st.queuedBytes} request bytes`);
      assert.ok(st.requests < n, 'the server stopped answering');
      raw.socket.resume();
      let got = 0;
      while (got < n) {
        const r = await raw.next(10_000);
        assert.ok(r, 'connection stays open');
        got++;
      }
      assert.equal(got, n);
      raw.close();
    } finally {
      await s.close();
    }
  });

  test('before login a record over 64 KiB closes the connection; after login it is read', async () => {
    const s = await startServer();
    try {
      const pre = await RawPeer.connect(s.port);
      await pre.next();
      pre.send(u32be(0x80000000 | (100 * 1024)));
      assert.equal(await pre.waitClosed(), true);

      const c = await client(s.port);
      // A 100 KiB TAPE_WRITE: read and answered (no tape is open: DEV_NOT_OPEN).
      const r = await c.request(M.TAPE_WRITE, { dataOut: Buffer.alloc(100 * 1024, 1) });
      assert.equal(r.error, ErrorCode.NDMP_DEV_NOT_OPEN_ERR);
      await c.close();
    } finally {
      await s.close();
    }
  });

  test('peers that do not log in get a share of the slots only: the oldest gives way to a newcomer', async () => {
    const s = await startServer({ maxUnauthenticated: 2 });
    try {
      const a = await NdmpClient.connect({ host: '127.0.0.1', port: s.port });
      const shutdown = new Promise<string>((r) =>
        a.onPost(M.NOTIFY_CONNECTION_STATUS, (b) => {
          if (b.reason === ConnectionStatusReason.NDMP_SHUTDOWN) r(b.textReason);
        }),
      );
      const b = await NdmpClient.connect({ host: '127.0.0.1', port: s.port });
      // The pool is full: the newcomer gets in, the oldest unauthenticated one goes.
      const c = await client(s.port);
      assert.match(await shutdown, /unauthenticated connection closed to make room/);
      await assert.rejects(a.call(M.CONFIG_GET_SERVER_INFO, {}), TransportError);
      assert.equal((await c.call(M.CONFIG_GET_HOST_INFO, {})).hostname, 'testhost');
      await b.open();
      await b.authText('dma', 'pa55-Word!');
      await Promise.all([b.close(), c.close()]);
    } finally {
      await s.close();
    }
  });

  test('the first request other than CONNECT_OPEN settles the version; a late CONNECT_OPEN is refused', async () => {
    const s = await startServer();
    try {
      const c = await client(s.port, 'none');
      await c.call(M.CONFIG_GET_SERVER_INFO, {});
      await assert.rejects(c.call(M.CONNECT_OPEN, { protocolVersion: 3 }), (e: unknown) => {
        assert.ok(e instanceof NdmpError);
        assert.equal(e.ndmpError, ErrorCode.NDMP_ILLEGAL_STATE_ERR);
        return true;
      });
      assert.equal(s.server.stats()[0]?.version, 4);
      await c.close();
    } finally {
      await s.close();
    }
  });

  test('a client whose server closes before greeting is told at once, not at the timeout', async () => {
    const srv = net.createServer((sock) => sock.destroy());
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const port = (srv.address() as net.AddressInfo).port;
    const t0 = Date.now();
    await assert.rejects(NdmpClient.connect({ host: '127.0.0.1', port, timeoutMs: 5000 }), (e: unknown) => {
      assert.ok(e instanceof TransportError);
      assert.equal(e.code, 'NDMP_CONNECTION_CLOSED');
      return true;
    });
    assert.ok(Date.now() - t0 < 2000);
    await new Promise((r) => srv.close(r));
  });
});
