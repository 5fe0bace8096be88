// Issue 12, findings 3 and 4, replayed over real sockets: peers that hold
// connection slots without logging in, a wrong-password storm, and logged-in
// sessions that only query must never keep a DMA from getting in and backing
// up. Loopback addresses 127.0.0.2 and up stand for other hosts (the client
// socket binds them with localAddress).

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Library } from '../../src/devices/library.js';
import type { NdmpClient } from '../../src/dma/client.js';
import { AuthBackoff } from '../../src/services/auth-backoff.js';
import {
  AddrType,
  ConnectionStatusReason,
  DataHaltReason,
  ErrorCode,
  INVALID_U64,
  M,
  MessageType,
  MoverMode,
  TapeOpenMode,
  decodeHeader,
} from '../../src/wire/index.js';
import type { HaltedPost } from '../../src/wire/index.js';
import { PASSWORD, RawPeer, USER, client, startServer, u32be } from '../helpers/in-process.js';
import type { TestServer } from '../helpers/in-process.js';
import { makeSampleTree } from '../helpers/trees.js';
import { NDMPD_BIN } from '../helpers/ndmpd-process.js';
import { parse as parseToml } from 'smol-toml';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `cond` until it holds; fails after `timeoutMs` with `what`. */
async function until(cond: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

function xdrString(t: string): Buffer {
  const b = Buffer.from(t);
  return Buffer.concat([u32be(b.length), b, Buffer.alloc((4 - (b.length % 4)) % 4)]);
}

/** A CONNECT_CLIENT_AUTH body with TEXT credentials. */
function authText(user: string, password: string): Buffer {
  return Buffer.concat([u32be(1), xdrString(user), xdrString(password)]);
}

interface Status {
  reason: number;
  text: string;
}

function statusOf(record: Buffer): Status {
  const len = record.readUInt32BE(32);
  return { reason: record.readUInt32BE(24), text: record.subarray(36, 36 + len).toString() };
}

/** A raw NDMP peer bound to a chosen local address, keeping every NOTIFY_CONNECTION_STATUS. */
class Peer extends RawPeer {
  readonly statuses: Status[] = [];

  static override connect(port: number, localAddress = '127.0.0.1', host = '127.0.0.1'): Promise<Peer> {
    return RawPeer.open(port, { host, localAddress }).then((s) => new Peer(s));
  }

  protected override onRecord(record: Buffer): void {
    if (decodeHeader(record).messageCode === M.NOTIFY_CONNECTION_STATUS.code)
      this.statuses.push(statusOf(record));
  }

  /** The greeting's status: CONNECTED or REFUSED (with its text), or null if closed without one. */
  async greeting(): Promise<Status | null> {
    const r = await this.next(5000);
    return r ? statusOf(r.record) : null;
  }

  /** Waits for the server to close the connection (a failure if it does not). */
  async closedByServer(timeoutMs = 5000): Promise<void> {
    await until(() => this.closed, 'the server to close the connection', timeoutMs);
  }

  /** Sends a TEXT CONNECT_CLIENT_AUTH and returns the reply's error code, or null if the connection closed. */
  async auth(user: string, password: string): Promise<number | null> {
    this.send(this.request(M.CONNECT_CLIENT_AUTH.code, authText(user, password)));
    const sequence = this.lastSequence;
    for (;;) {
      const r = await this.next(5000);
      if (!r) return null;
      if (r.header.messageType === MessageType.NDMP_MESSAGE_REPLY && r.header.replySequence === sequence) {
        return r.header.errorCode || r.record.readUInt32BE(24);
      }
    }
  }
}

function loopback(i: number): string {
  return `127.0.${Math.floor(i / 250)}.${(i % 250) + 2}`;
}

/** The text of the SHUTDOWN a client was sent, once it comes. */
function shutdownOf(c: NdmpClient): Promise<string> {
  return new Promise((r) =>
    c.onPost(M.NOTIFY_CONNECTION_STATUS, (b) => {
      if (b.reason === ConnectionStatusReason.NDMP_SHUTDOWN) r(b.textReason);
    }),
  );
}

function slots(s: TestServer): Record<string, number> {
  const out: Record<string, number> = {};
  for (const st of s.server.stats()) if (st.slot !== 'leaving') out[st.slot] = (out[st.slot] ?? 0) + 1;
  return out;
}

describe('finding 3: unauthenticated sockets cannot hold the door', () => {
  test('16+ idle sockets from one address: the 5th on is REFUSED; a DMA from another logs in', async () => {
    const s = await startServer();
    const peers: Peer[] = [];
    try {
      const greetings: Array<Status | null> = [];
      for (let i = 0; i < 20; i++) {
        const p = await Peer.connect(s.port, '127.0.0.2');
        peers.push(p);
        greetings.push(await p.greeting());
      }
      const connected = greetings.filter((g) => g?.reason === ConnectionStatusReason.NDMP_CONNECTED);
      const refused = greetings.filter((g) => g?.reason === ConnectionStatusReason.NDMP_REFUSED);
      assert.equal(connected.length, 4);
      assert.equal(refused.length, 16);
      assert.match(refused[0]!.text, /too many unauthenticated connections from 127\.0\.0\.2 \(at most 4/);

      const dma = await client(s.port, 'md5');
      assert.equal((await dma.call(M.CONFIG_GET_HOST_INFO, {})).hostname, 'testhost');
      await dma.close();
    } finally {
      for (const p of peers) p.close();
      await s.close();
    }
  });

  test('idle sockets from many addresses: the oldest give way (SHUTDOWN, logged); a DMA still logs in', async () => {
    const s = await startServer();
    const peers: Peer[] = [];
    try {
      for (let i = 0; i < 40; i++) {
        const p = await Peer.connect(s.port, loopback(10 + i));
        peers.push(p);
        assert.equal((await p.greeting())?.reason, ConnectionStatusReason.NDMP_CONNECTED);
      }
      // The pool holds 16: the first 24 were told why, then closed.
      for (const p of peers.slice(0, 24)) await p.closedByServer();
      for (const p of peers.slice(0, 24)) {
        assert.deepEqual(p.statuses.at(-1), {
          reason: ConnectionStatusReason.NDMP_SHUTDOWN,
          text: 'unauthenticated connection closed to make room for a new connection',
        });
      }
      assert.equal(slots(s).unauthenticated, 16);
      assert.ok(peers.slice(24).every((p) => !p.closed));

      const dma = await client(s.port, 'md5');
      assert.equal((await dma.call(M.CONFIG_GET_HOST_INFO, {})).hostname, 'testhost');
      await peers[24]!.closedByServer();
      // The log names both peers: the one that went and the newcomer.
      const line = s
        .logText()
        .split('\n')
        .find((l) => l.includes('make room') && l.includes(`"peer":"${loopback(10 + 24)}:`));
      assert.ok(line, 'a log line for the last eviction');
      assert.match(line, /"newcomer":"127\.0\.0\.1:\d+"/);
      await dma.close();
    } finally {
      for (const p of peers) p.close();
      await s.close();
    }
  });

  test('a 64-client wrong-password storm (127.0.0.2..65) while 20 real logins from 127.0.0.1 all succeed', async () => {
    const backoff = new AuthBackoff();
    // The production failure delay (1 s) keeps each storm connection open a while, as in the finding.
    const s = await startServer({}, { authBackoff: backoff, authFailureDelayMs: 1000 });
    let stop = false;
    let attempts = 0;
    const storm = async (address: string) => {
      while (!stop) {
        let p: Peer;
        try {
          p = await Peer.connect(s.port, address);
        } catch {
          continue;
        }
        try {
          if ((await p.greeting())?.reason !== ConnectionStatusReason.NDMP_CONNECTED) continue;
          while (!stop) {
            const err = await p.auth(USER, 'guess');
            if (err === null) break;
            attempts++;
            assert.equal(err, ErrorCode.NDMP_NOT_AUTHORIZED_ERR);
            // A breath between guesses keeps this test from eating the machine; still ~10,000 a second offered.
            await sleep(5);
          }
        } finally {
          p.close();
        }
      }
    };
    const storms = Array.from({ length: 64 }, (_, i) => storm(`127.0.0.${i + 2}`));
    try {
      await until(() => attempts >= 64, 'the storm to get going');
      for (let i = 0; i < 20; i++) {
        const c = await client(s.port, i % 2 ? 'text' : 'md5');
        assert.equal((await c.call(M.CONFIG_GET_HOST_INFO, {})).hostname, 'testhost');
        await c.close();
      }
      stop = true;
      await Promise.all(storms);
      // The storm filled the unauthenticated pool (the finding) and its oldest gave way;
      // penalised addresses were answered without a password check (logged once per window).
      assert.match(s.logText(), /unauthenticated connection closed to make room/);
      assert.match(s.logText(), /authentication refused unchecked/);
      assert.ok(backoff.size <= 64, 'one entry per storming address at most');
    } finally {
      stop = true;
      await Promise.allSettled(storms);
      await s.close();
    }
  });

  test('back-off: a penalised address is refused even with the right password until its penalty ends', async () => {
    const backoff = new AuthBackoff({
      freeFailures: 0,
      initialMs: 300,
      maxMs: 60_000,
      quietMs: 60_000,
      maxAddresses: 16,
    });
    const s = await startServer({}, { authBackoff: backoff });
    try {
      const p = await Peer.connect(s.port, '127.0.0.9');
      await p.greeting();
      assert.equal(await p.auth(USER, 'guess'), ErrorCode.NDMP_NOT_AUTHORIZED_ERR);
      assert.equal(await p.auth(USER, PASSWORD), ErrorCode.NDMP_NOT_AUTHORIZED_ERR, 'unchecked');
      // Another address is not affected.
      const other = await client(s.port, 'text');
      await other.close();
      await until(() => backoff.penaltyLeft('127.0.0.9') === 0, 'the penalty to end');
      const q = await Peer.connect(s.port, '127.0.0.9');
      await q.greeting();
      assert.equal(await q.auth(USER, PASSWORD), ErrorCode.NDMP_NO_ERR);
      assert.equal(backoff.penaltyLeft('127.0.0.9'), 0);
      const log = s.logText();
      assert.equal(log.match(/authentication refused unchecked/g)?.length, 1, 'one line per window');
      p.close();
      q.close();
    } finally {
      await s.close();
    }
  });
});

describe('finding 4: sessions that move data always get in', { timeout: 120_000 }, () => {
  let dir: string;
  let lib: Library;
  let s: TestServer;
  let tree: string;
  before(async () => {
    dir = mkdtempSync(join(os.tmpdir(), 'ndmpd-slots-'));
    lib = Library.open(join(dir, 'library'));
    // Scaled down from 64/16/8: 12 slots, 4 kept for sessions holding a device.
    s = await startServer(
      { maxConnections: 12, maxUnauthenticated: 4, reservedConnections: 4 },
      { library: lib },
    );
    tree = join(s.exportDir, 'tree');
    mkdirSync(tree);
    makeSampleTree(tree);
  });
  after(async () => {
    await s.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('a server full of query-only sessions: 8 DMAs connect, log in and back up; busy ones never give way', async () => {
    const queries: NdmpClient[] = [];
    const told: Array<Promise<string>> = [];
    for (let i = 0; i < 16; i++) {
      const q = await client(s.port, 'md5');
      told.push(shutdownOf(q));
      await q.call(M.CONFIG_GET_HOST_INFO, {});
      queries.push(q);
    }
    // Idle and unauthenticated sessions together keep out of the 4 reserved slots.
    assert.deepEqual(slots(s), { idle: 8 });
    for (const t of told.slice(0, 8))
      assert.equal(await t, 'idle session closed to make room for a new connection');

    const dmas: NdmpClient[] = [];
    const halted: Array<Promise<HaltedPost>> = [];
    const moverHalted: Array<Promise<HaltedPost>> = [];
    for (let i = 0; i < 8; i++) {
      const c = await client(s.port, 'md5');
      dmas.push(c);
      const [barcode] = lib.createTapes({ count: 1 });
      await c.call(M.TAPE_OPEN, { device: lib.tapePath(barcode!), mode: TapeOpenMode.NDMP_TAPE_RDWR_MODE });
      await c.call(M.MOVER_SET_WINDOW, { offset: 0n, length: INVALID_U64 });
      const { connectAddr } = await c.call(M.MOVER_LISTEN, {
        mode: MoverMode.NDMP_MOVER_MODE_READ,
        addrType: AddrType.NDMP_ADDR_TCP,
      });
      await c.call(M.DATA_CONNECT, { addr: connectAddr });
    }
    assert.equal(slots(s).busy, 8);
    // More query sessions now push out idle ones only: every DMA keeps its slot.
    for (let i = 0; i < 6; i++) queries.push(await client(s.port, 'md5'));
    assert.equal(slots(s).busy, 8);
    for (const c of dmas) {
      halted.push(new Promise<HaltedPost>((r) => c.onPost(M.NOTIFY_DATA_HALTED, r)));
      moverHalted.push(new Promise<HaltedPost>((r) => c.onPost(M.NOTIFY_MOVER_HALTED, r)));
      await c.call(M.DATA_START_BACKUP, {
        butypeName: 'tar',
        env: [
          { name: 'FILESYSTEM', value: tree },
          { name: 'HIST', value: 'n' },
        ],
      });
    }
    for (const h of halted) assert.equal((await h).reason, DataHaltReason.NDMP_DATA_HALT_SUCCESSFUL);
    await Promise.all(moverHalted);
    for (const c of dmas) {
      await c.call(M.DATA_STOP, {});
      await c.call(M.MOVER_STOP, {});
      await c.call(M.TAPE_CLOSE, {});
      await c.close();
    }
    await Promise.all(queries.map((q) => q.close().catch(() => undefined)));
  });

  test('with every slot holding a device a newcomer is REFUSED, and none is closed', async () => {
    await until(() => s.server.connectionCount === 0, 'the last test to have closed');
    const holders: NdmpClient[] = [];
    for (let i = 0; i < 12; i++) {
      const c = await client(s.port, 'md5');
      await c.call(M.DATA_LISTEN, { addrType: AddrType.NDMP_ADDR_TCP });
      holders.push(c);
    }
    await assert.rejects(client(s.port, 'md5'), /too many connections: 12 of 12/);
    assert.deepEqual(slots(s), { busy: 12 });
    await Promise.all(holders.map((c) => c.close()));
  });
});

describe('idle timeout', () => {
  test('a logged-in session holding no device times out; one holding a device does not', async () => {
    const s = await startServer({ idleTimeoutMs: 300 });
    try {
      const idle = await client(s.port, 'md5');
      const told = shutdownOf(idle);
      const holder = await client(s.port, 'md5');
      const holderTold = shutdownOf(holder);
      await holder.call(M.DATA_LISTEN, { addrType: AddrType.NDMP_ADDR_TCP });
      assert.equal(await told, 'idle for 0.3 s holding no device (idle-timeout); closed');
      await assert.rejects(idle.call(M.CONFIG_GET_HOST_INFO, {}));
      // A session that keeps asking is not idle, device or not.
      const asking = await client(s.port, 'md5');
      for (let i = 0; i < 30; i++) {
        await asking.call(M.CONFIG_GET_HOST_INFO, {});
        await sleep(30);
      }
      await asking.close();
      // Several periods later the one holding a device is still there.
      await sleep(1000);
      assert.equal((await holder.call(M.CONFIG_GET_HOST_INFO, {})).hostname, 'testhost');
      // Given back, it is idle and goes the same way.
      await holder.call(M.DATA_ABORT, {});
      await holder.call(M.DATA_STOP, {});
      assert.match(await holderTold, /idle-timeout/);
      assert.match(s.logText(), /idle session timed out/);
    } finally {
      await s.close();
    }
  });
});

describe('allow-list', () => {
  test('a peer outside it is closed without an NDMP byte; inside, by CIDR or bare address, it is greeted', async () => {
    const s = await startServer({ allow: ['127.0.0.1', '127.0.1.0/24', '127.0.0.2/32'] });
    try {
      for (const address of ['127.0.0.2', '127.0.1.77']) {
        const p = await Peer.connect(s.port, address);
        assert.equal((await p.greeting())?.reason, ConnectionStatusReason.NDMP_CONNECTED, address);
        p.close();
      }
      const dma = await client(s.port, 'md5');
      await dma.close();
      const out: Peer[] = [];
      for (let i = 0; i < 30; i++) out.push(await Peer.connect(s.port, '127.0.0.3'));
      for (const p of out) {
        await p.closedByServer();
        assert.equal(p.bytes, 0, 'not a byte of NDMP');
      }
      const lines = s
        .logText()
        .split('\n')
        .filter((l) => l.includes('not in the allow-list'));
      assert.ok(lines[0]?.includes('"peer":"127.0.0.3:'), 'logged with the address');
      assert.equal(
        lines.filter((l) => l.includes('"level":40')).length,
        20,
        'at most 20 loud lines a minute',
      );
    } finally {
      await s.close();
    }
  });

  test('IPv4 peers of a dual-stack listener (IPv4-mapped IPv6) are matched against IPv4 rules', async () => {
    const s = await startServer({ host: '::', allow: ['127.0.0.4/31'] });
    try {
      const inside = await Peer.connect(s.port, '127.0.0.5');
      assert.equal((await inside.greeting())?.reason, ConnectionStatusReason.NDMP_CONNECTED);
      assert.equal(s.server.stats()[0]?.peer.startsWith('127.0.0.5:'), true, 'counted as its IPv4 address');
      const outside = await Peer.connect(s.port, '127.0.0.6');
      await outside.closedByServer();
      assert.equal(outside.bytes, 0);
      inside.close();
    } finally {
      await s.close();
    }
  });
});

describe('ndmpd flags', () => {
  test('every slot setting is a flag; --allow repeats', async () => {
    const { stdout } = await promisify(execFile)(process.execPath, [
      NDMPD_BIN,
      '--check-config',
      '--allow',
      '10.0.0.0/8',
      '--allow',
      '::1',
      '--max-unauthenticated-per-address',
      '2',
      '--reserved-connections',
      '3',
      '--idle-timeout',
      '5',
      '--auth-backoff-max',
      '0',
    ]);
    const c = parseToml(stdout);
    assert.deepEqual(c.allow, ['10.0.0.0/8', '::1/128']);
    assert.equal(c['max-unauthenticated-per-address'], 2);
    assert.equal(c['reserved-connections'], 3);
    assert.equal(c['idle-timeout'], 5);
    assert.equal(c['auth-backoff-max'], 0);
  });
});
