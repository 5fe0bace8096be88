// The mover over real TCP, driven by our DMA client, with the test playing the
// data service: a backup stream goes through the mover onto a small tape,
// pauses at early-warning EOM, continues on a second tape after a tape change,
// and reads back identical through the mover in recover mode, across the same
// two tapes. Also: a data connection that drops, busy devices, and tape calls
// refused while the mover owns the tape.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, mkdirSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { Library } from '../../src/devices/library.js';
import { createTapeImage, openTapeImage } from '../../src/devices/tape-image.js';
import type { NdmpClient } from '../../src/dma/client.js';
import { ipv4String } from '../../src/services/data-connection.js';
import {
  AddrType,
  ErrorCode,
  INVALID_U64,
  M,
  MoverHaltReason,
  MoverMode,
  MoverPauseReason,
  MoverState,
  NdmpError,
  TapeOpenMode,
} from '../../src/wire/index.js';
import type { Addr, HaltedPost } from '../../src/wire/index.js';
import { client, startServer } from '../helpers/in-process.js';
import { tapeFileBytes } from '../helpers/tapes.js';
import type { TestServer } from '../helpers/in-process.js';

const RECORD = 10240;
const MiB = 1024 * 1024;

type MoverEvent = { kind: 'paused'; reason: number; seek: bigint } | { kind: 'halted'; reason: number };

/** Collects NOTIFY_MOVER_PAUSED/HALTED posts; next() waits for the next one. */
function moverEvents(c: NdmpClient) {
  const queue: MoverEvent[] = [];
  const waiters: ((e: MoverEvent) => void)[] = [];
  const push = (e: MoverEvent) => {
    const w = waiters.shift();
    if (w) w(e);
    else queue.push(e);
  };
  c.onPost(M.NOTIFY_MOVER_PAUSED, (b) => push({ kind: 'paused', reason: b.reason, seek: b.seekPosition }));
  c.onPost(M.NOTIFY_MOVER_HALTED, (b: HaltedPost) => push({ kind: 'halted', reason: b.reason }));
  return {
    next(timeoutMs = 10_000): Promise<MoverEvent> {
      const e = queue.shift();
      if (e) return Promise.resolve(e);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('no mover notification in time')), timeoutMs);
        waiters.push((ev) => {
          clearTimeout(timer);
          resolve(ev);
        });
      });
    },
  };
}

function tcpAddrOf(a: Addr): { host: string; port: number } {
  assert.equal(a.addrType, AddrType.NDMP_ADDR_TCP);
  const t = (a as { tcpAddrs: { ipAddr: number; port: number }[] }).tcpAddrs[0]!;
  return { host: ipv4String(t.ipAddr), port: t.port };
}

async function rejectsWith(p: Promise<unknown>, code: number): Promise<void> {
  await assert.rejects(p, (e: unknown) => e instanceof NdmpError && e.ndmpError === code);
}

describe('mover over TCP', { timeout: 120_000 }, () => {
  let srv: TestServer;
  let dir: string;
  let lib: Library;

  before(async () => {
    dir = mkdtempSync(join(os.tmpdir(), 'ndmpd-mover-'));
    mkdirSync(join(dir, 'library'));
    lib = Library.open(join(dir, 'library'), { drives: 1 });
    srv = await startServer({}, { library: lib });
  });
  after(async () => {
    await srv.close();
    rmSync(dir, { recursive: true, force: true });
  });

  function newTape(name: string, capacity: bigint, earlyWarning: bigint): string {
    const path = join(lib.dir, 'tapes', name);
    createTapeImage(path, { capacity, earlyWarning, barcode: name });
    return path;
  }

  test('backup across two tapes at EOM, then recover the same bytes', async () => {
    // 3 MiB + a bit (not a whole number of records) onto 2 MiB tapes.
    const stream = randomBytes(3 * MiB + 777);
    const tapeA = newTape('EOM-A', BigInt(2 * MiB), BigInt(256 * 1024));
    const tapeB = newTape('EOM-B', BigInt(2 * MiB), BigInt(256 * 1024));
    const c = await client(srv.port, 'md5');
    const ev = moverEvents(c);
    try {
      await c.call(M.MOVER_SET_RECORD_SIZE, { len: RECORD });
      await c.call(M.TAPE_OPEN, { device: tapeA, mode: TapeOpenMode.NDMP_TAPE_RDWR_MODE });
      await c.call(M.MOVER_SET_WINDOW, { offset: 0n, length: INVALID_U64 });
      const { connectAddr } = await c.call(M.MOVER_LISTEN, {
        mode: MoverMode.NDMP_MOVER_MODE_READ,
        addrType: AddrType.NDMP_ADDR_TCP,
      });
      const { host, port } = tcpAddrOf(connectAddr);

      const data = net.connect({ host, port });
      await new Promise((r) => data.once('connect', r));
      data.end(stream);

      // Early warning on tape A: the mover pauses with EOM.
      const first = await ev.next();
      assert.deepEqual(first.kind, 'paused');
      assert.equal((first as { reason: number }).reason, MoverPauseReason.NDMP_MOVER_PAUSE_EOM);
      const s1 = await c.call(M.MOVER_GET_STATE, {});
      assert.equal(s1.state, MoverState.NDMP_MOVER_STATE_PAUSED);
      assert.equal(s1.pauseReason, MoverPauseReason.NDMP_MOVER_PAUSE_EOM);
      assert.ok(s1.bytesMoved > 0n && s1.bytesMoved % BigInt(RECORD) === 0n);
      assert.equal(BigInt(s1.recordNum) * BigInt(RECORD), s1.bytesMoved);

      // Tape change: close A (a filemark ends its file), load B, window from here, continue.
      await c.call(M.TAPE_CLOSE, {});
      await c.call(M.TAPE_OPEN, { device: tapeB, mode: TapeOpenMode.NDMP_TAPE_RDWR_MODE });
      await c.call(M.MOVER_SET_WINDOW, { offset: s1.bytesMoved, length: INVALID_U64 });
      await c.call(M.MOVER_CONTINUE, {});

      const end = await ev.next();
      assert.deepEqual(end, { kind: 'halted', reason: MoverHaltReason.NDMP_MOVER_HALT_CONNECT_CLOSED });
      const s2 = await c.call(M.MOVER_GET_STATE, {});
      assert.equal(s2.state, MoverState.NDMP_MOVER_STATE_HALTED);
      assert.equal(s2.bytesMoved, BigInt(stream.length)); // padding is not counted
      await c.call(M.MOVER_STOP, {});
      await c.call(M.TAPE_CLOSE, {});

      // The two tapes' first files, end to end, are the stream (plus the last record's zero padding).
      const onTape = Buffer.concat([tapeFileBytes(tapeA, 0), tapeFileBytes(tapeB, 0)]);
      assert.equal(BigInt(tapeFileBytes(tapeA, 0).length), s1.bytesMoved);
      assert.equal(onTape.length % RECORD, 0);
      assert.ok(onTape.subarray(0, stream.length).equals(stream), 'tape contents differ from the stream');
      assert.ok(onTape.subarray(stream.length).every((x) => x === 0));

      // Recover: the mover connects to our "data service" and serves MOVER_READ across both tapes.
      const received: Buffer[] = [];
      const sink = net.createServer((sock) => sock.on('data', (d: Buffer) => received.push(d)));
      await new Promise<void>((r) => sink.listen(0, '127.0.0.1', r));
      const sinkPort = (sink.address() as net.AddressInfo).port;
      await c.call(M.TAPE_OPEN, { device: tapeA, mode: TapeOpenMode.NDMP_TAPE_READ_MODE });
      await c.call(M.MOVER_SET_WINDOW, { offset: 0n, length: INVALID_U64 });
      await c.call(M.MOVER_CONNECT, {
        mode: MoverMode.NDMP_MOVER_MODE_WRITE,
        addr: {
          addrType: AddrType.NDMP_ADDR_TCP,
          tcpAddrs: [{ ipAddr: 0x7f000001, port: sinkPort, addrEnv: [] }],
        },
      });
      await c.call(M.MOVER_READ, { offset: 0n, length: BigInt(stream.length) });
      const eof = await ev.next();
      assert.deepEqual(eof, {
        kind: 'paused',
        reason: MoverPauseReason.NDMP_MOVER_PAUSE_EOF,
        seek: s1.bytesMoved,
      });
      await c.call(M.TAPE_CLOSE, {});
      await c.call(M.TAPE_OPEN, { device: tapeB, mode: TapeOpenMode.NDMP_TAPE_READ_MODE });
      await c.call(M.MOVER_SET_WINDOW, { offset: s1.bytesMoved, length: INVALID_U64 });
      await c.call(M.MOVER_CONTINUE, {});
      const deadline = Date.now() + 10_000;
      while (Buffer.concat(received).length < stream.length && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 20));
      }
      assert.ok(Buffer.concat(received).equals(stream), 'recovered bytes differ');
      const s3 = await c.call(M.MOVER_GET_STATE, {});
      assert.equal(s3.bytesMoved, BigInt(stream.length));
      assert.equal(s3.bytesLeftToRead, 0n);
      await c.call(M.MOVER_CLOSE, {});
      assert.deepEqual(await ev.next(), {
        kind: 'halted',
        reason: MoverHaltReason.NDMP_MOVER_HALT_CONNECT_CLOSED,
      });
      await c.call(M.MOVER_STOP, {});
      await c.call(M.TAPE_CLOSE, {});
      sink.close();
    } finally {
      c.destroy();
    }
  });

  test('a read outside the window pauses with SEEK at the offset asked for', async () => {
    const tape = newTape('SEEK', BigInt(64 * MiB), BigInt(MiB));
    const dev = openTapeImage(tape, { readOnly: false });
    for (let i = 0; i < 10; i++) dev.writeRecord(Buffer.alloc(RECORD, i));
    dev.writeFilemarks(1);
    dev.close();
    const c = await client(srv.port, 'md5');
    const ev = moverEvents(c);
    const sink = net.createServer((sock) => sock.resume());
    await new Promise<void>((r) => sink.listen(0, '127.0.0.1', r));
    try {
      await c.call(M.TAPE_OPEN, { device: tape, mode: TapeOpenMode.NDMP_TAPE_READ_MODE });
      await c.call(M.MOVER_SET_RECORD_SIZE, { len: RECORD });
      await c.call(M.MOVER_SET_WINDOW, { offset: 0n, length: BigInt(4 * RECORD) });
      await c.call(M.MOVER_CONNECT, {
        mode: MoverMode.NDMP_MOVER_MODE_WRITE,
        addr: {
          addrType: AddrType.NDMP_ADDR_TCP,
          tcpAddrs: [{ ipAddr: 0x7f000001, port: (sink.address() as net.AddressInfo).port, addrEnv: [] }],
        },
      });
      await c.call(M.MOVER_READ, { offset: BigInt(6 * RECORD + 5), length: 100n });
      assert.deepEqual(await ev.next(), {
        kind: 'paused',
        reason: MoverPauseReason.NDMP_MOVER_PAUSE_SEEK,
        seek: BigInt(6 * RECORD + 5),
      });
      // PAUSED: no new read until the DMA has positioned the tape and continued.
      await rejectsWith(c.call(M.MOVER_READ, { offset: 0n, length: 1n }), ErrorCode.NDMP_ILLEGAL_STATE_ERR);
      await c.call(M.MOVER_ABORT, {});
      assert.deepEqual(await ev.next(), { kind: 'halted', reason: MoverHaltReason.NDMP_MOVER_HALT_ABORTED });
      await c.call(M.MOVER_STOP, {});
      await c.call(M.TAPE_CLOSE, {});
    } finally {
      sink.close();
      c.destroy();
    }
  });

  test('a data connection that drops halts CONNECT_ERROR and leaves whole records on tape', async () => {
    const tape = newTape('DROP', BigInt(64 * MiB), BigInt(MiB));
    const c = await client(srv.port, 'md5');
    const other = await client(srv.port, 'md5');
    const ev = moverEvents(c);
    try {
      await c.call(M.TAPE_OPEN, { device: tape, mode: TapeOpenMode.NDMP_TAPE_RDWR_MODE });
      // One opener per tape: another session is refused while this one holds it.
      await rejectsWith(
        other.call(M.TAPE_OPEN, { device: tape, mode: TapeOpenMode.NDMP_TAPE_READ_MODE }),
        ErrorCode.NDMP_DEVICE_BUSY_ERR,
      );
      await c.call(M.MOVER_SET_RECORD_SIZE, { len: RECORD });
      await c.call(M.MOVER_SET_WINDOW, { offset: 0n, length: INVALID_U64 });
      const { connectAddr } = await c.call(M.MOVER_LISTEN, {
        mode: MoverMode.NDMP_MOVER_MODE_READ,
        addrType: AddrType.NDMP_ADDR_TCP,
      });
      const { host, port } = tcpAddrOf(connectAddr);
      const data = net.connect({ host, port });
      await new Promise((r) => data.once('connect', r));
      data.write(Buffer.alloc(5 * RECORD + 100, 7));
      // While the mover owns the tape, the DMA may look but not touch.
      const deadline = Date.now() + 5000;
      while ((await c.call(M.MOVER_GET_STATE, {})).bytesMoved < BigInt(5 * RECORD) && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 10));
      }
      await rejectsWith(c.call(M.TAPE_MTIO, { tapeOp: 4, count: 1 }), ErrorCode.NDMP_DEVICE_BUSY_ERR);
      const ts = await c.call(M.TAPE_GET_STATE, {});
      assert.equal(ts.blockno, 5);
      data.resetAndDestroy();
      assert.deepEqual(await ev.next(), {
        kind: 'halted',
        reason: MoverHaltReason.NDMP_MOVER_HALT_CONNECT_ERROR,
      });
      await c.call(M.MOVER_STOP, {});
      await c.call(M.TAPE_CLOSE, {});
      const dev = openTapeImage(tape, { readOnly: true });
      const buf = Buffer.alloc(RECORD);
      let records = 0;
      for (
        let r = dev.readRecord(buf, { crossFilemark: false });
        r.kind === 'record';
        r = dev.readRecord(buf, { crossFilemark: false })
      ) {
        assert.equal(r.length, RECORD);
        assert.ok(buf.every((x) => x === 7));
        records++;
      }
      dev.close();
      assert.equal(records, 5);
    } finally {
      c.destroy();
      other.destroy();
    }
  });

  test('the data connection lives on the drive thread: MOVER_LISTEN adds no socket to the main thread', async () => {
    const tape = newTape('THREAD', BigInt(64 * MiB), BigInt(MiB));
    const c = await client(srv.port, 'md5');
    const ev = moverEvents(c);
    const count = (kind: string) => process.getActiveResourcesInfo().filter((r) => r === kind).length;
    try {
      await c.call(M.TAPE_OPEN, { device: tape, mode: TapeOpenMode.NDMP_TAPE_RDWR_MODE });
      await c.call(M.MOVER_SET_WINDOW, { offset: 0n, length: INVALID_U64 });
      const servers = count('TCPServerWrap');
      const sockets = count('TCPSocketWrap');
      const { connectAddr } = await c.call(M.MOVER_LISTEN, {
        mode: MoverMode.NDMP_MOVER_MODE_READ,
        addrType: AddrType.NDMP_ADDR_TCP,
      });
      assert.equal(count('TCPServerWrap'), servers, 'the mover listens on the main thread');
      const { host, port } = tcpAddrOf(connectAddr);
      const data = net.connect({ host, port });
      await new Promise((r) => data.once('connect', r));
      data.write(Buffer.alloc(3 * RECORD, 5));
      const deadline = Date.now() + 5000;
      while ((await c.call(M.MOVER_GET_STATE, {})).bytesMoved < BigInt(3 * RECORD) && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 10));
      }
      // Only the test's own end of the data connection is on this thread.
      assert.equal(count('TCPSocketWrap'), sockets + 1);
      data.end();
      assert.deepEqual(await ev.next(), {
        kind: 'halted',
        reason: MoverHaltReason.NDMP_MOVER_HALT_CONNECT_CLOSED,
      });
      await c.call(M.MOVER_STOP, {});
      await c.call(M.TAPE_CLOSE, {});
    } finally {
      c.destroy();
    }
  });

  test('a window that ends pauses with EOW; a new window and CONTINUE go on', async () => {
    const tape = newTape('EOW', BigInt(64 * MiB), BigInt(MiB));
    const c = await client(srv.port, 'md5', 3);
    const ev = moverEvents(c);
    try {
      await c.call(M.MOVER_SET_RECORD_SIZE, { len: RECORD });
      await c.call(M.TAPE_OPEN, { device: tape, mode: TapeOpenMode.NDMP_TAPE_RDWR_MODE });
      // v3 order: LISTEN, then the window (allowed in LISTEN for v3 only).
      const { connectAddr } = await c.call(M.MOVER_LISTEN, {
        mode: MoverMode.NDMP_MOVER_MODE_READ,
        addrType: AddrType.NDMP_ADDR_TCP,
      });
      await c.call(M.MOVER_SET_WINDOW, { offset: 0n, length: BigInt(4 * RECORD) });
      const { host, port } = tcpAddrOf(connectAddr);
      const data = net.connect({ host, port });
      await new Promise((r) => data.once('connect', r));
      const stream = randomBytes(6 * RECORD);
      data.end(stream);
      assert.deepEqual(await ev.next(), {
        kind: 'paused',
        reason: MoverPauseReason.NDMP_MOVER_PAUSE_EOW,
        seek: BigInt(4 * RECORD),
      });
      const st = await c.call(M.MOVER_GET_STATE, {});
      assert.equal(st.bytesMoved, BigInt(4 * RECORD));
      assert.equal(st.recordNum, 4);
      await c.call(M.MOVER_SET_WINDOW, { offset: BigInt(4 * RECORD), length: INVALID_U64 });
      await c.call(M.MOVER_CONTINUE, {});
      assert.deepEqual(await ev.next(), {
        kind: 'halted',
        reason: MoverHaltReason.NDMP_MOVER_HALT_CONNECT_CLOSED,
      });
      assert.equal((await c.call(M.MOVER_GET_STATE, {})).bytesMoved, BigInt(stream.length));
      await c.call(M.MOVER_STOP, {});
      await c.call(M.TAPE_CLOSE, {});
      assert.ok(tapeFileBytes(tape, 0).equals(stream));
    } finally {
      c.destroy();
    }
  });

  test('a full tape (no early-warning zone) pauses EOM with the record kept for the next tape', async () => {
    // Room for exactly 3 records and no warning: the 4th write is refused and must not be lost.
    const tapeA = newTape('FULL-A', BigInt(3 * RECORD), 0n);
    const tapeB = newTape('FULL-B', BigInt(64 * MiB), BigInt(MiB));
    const c = await client(srv.port, 'md5');
    const ev = moverEvents(c);
    try {
      await c.call(M.MOVER_SET_RECORD_SIZE, { len: RECORD });
      await c.call(M.TAPE_OPEN, { device: tapeA, mode: TapeOpenMode.NDMP_TAPE_RDWR_MODE });
      await c.call(M.MOVER_SET_WINDOW, { offset: 0n, length: INVALID_U64 });
      const { connectAddr } = await c.call(M.MOVER_LISTEN, {
        mode: MoverMode.NDMP_MOVER_MODE_READ,
        addrType: AddrType.NDMP_ADDR_TCP,
      });
      const { host, port } = tcpAddrOf(connectAddr);
      const data = net.connect({ host, port });
      await new Promise((r) => data.once('connect', r));
      const stream = randomBytes(5 * RECORD + 1);
      data.end(stream);
      const first = await ev.next();
      assert.equal(first.kind, 'paused');
      assert.equal((first as { reason: number }).reason, MoverPauseReason.NDMP_MOVER_PAUSE_EOM);
      const moved = (await c.call(M.MOVER_GET_STATE, {})).bytesMoved;
      assert.equal(moved, BigInt(3 * RECORD));
      await c.call(M.TAPE_CLOSE, {});
      await c.call(M.TAPE_OPEN, { device: tapeB, mode: TapeOpenMode.NDMP_TAPE_RDWR_MODE });
      await c.call(M.MOVER_SET_WINDOW, { offset: moved, length: INVALID_U64 });
      await c.call(M.MOVER_CONTINUE, {});
      assert.deepEqual(await ev.next(), {
        kind: 'halted',
        reason: MoverHaltReason.NDMP_MOVER_HALT_CONNECT_CLOSED,
      });
      await c.call(M.MOVER_STOP, {});
      await c.call(M.TAPE_CLOSE, {});
      const both = Buffer.concat([tapeFileBytes(tapeA, 0), tapeFileBytes(tapeB, 0)]);
      assert.ok(both.subarray(0, stream.length).equals(stream));
      assert.equal(both.length, 6 * RECORD);
    } finally {
      c.destroy();
    }
  });

  test('a DMA that vanishes mid-backup: the mover stops, the tape is closed and free again', async () => {
    const tape = newTape('GONE', BigInt(64 * MiB), BigInt(MiB));
    const c = await client(srv.port, 'md5');
    await c.call(M.TAPE_OPEN, { device: tape, mode: TapeOpenMode.NDMP_TAPE_RDWR_MODE });
    await c.call(M.MOVER_SET_WINDOW, { offset: 0n, length: INVALID_U64 });
    const { connectAddr } = await c.call(M.MOVER_LISTEN, {
      mode: MoverMode.NDMP_MOVER_MODE_READ,
      addrType: AddrType.NDMP_ADDR_TCP,
    });
    const { host, port } = tcpAddrOf(connectAddr);
    const data = net.connect({ host, port });
    await new Promise((r) => data.once('connect', r));
    data.on('error', () => undefined);
    data.write(Buffer.alloc(2 * RECORD, 9));
    await new Promise((r) => setTimeout(r, 100));
    c.destroy();
    // The data connection is dropped by the server, and the tape can be opened by someone else.
    await new Promise<void>((resolve) => data.once('close', () => resolve()));
    const other = await client(srv.port, 'md5');
    try {
      const deadline = Date.now() + 5000;
      for (;;) {
        try {
          await other.call(M.TAPE_OPEN, { device: tape, mode: TapeOpenMode.NDMP_TAPE_READ_MODE });
          break;
        } catch (e) {
          if (!(e instanceof NdmpError) || Date.now() > deadline) throw e;
          await new Promise((r) => setTimeout(r, 20));
        }
      }
      const st = await other.call(M.TAPE_GET_STATE, {});
      assert.equal(st.fileNum, 0);
      await other.call(M.TAPE_MTIO, { tapeOp: 0, count: 1 }); // FSF over the filemark the close wrote
      assert.equal((await other.call(M.TAPE_GET_STATE, {})).fileNum, 1);
      await other.call(M.TAPE_CLOSE, {});
    } finally {
      other.destroy();
    }
  });
});

describe('mover data ports', { timeout: 60_000 }, () => {
  test('MOVER_LISTEN uses a port of --data-ports and refuses when the range is taken', async () => {
    const dir = mkdtempSync(join(os.tmpdir(), 'ndmpd-ports-'));
    const lib = Library.open(join(dir, 'library'));
    const blocker = net.createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
    const low = (blocker.address() as net.AddressInfo).port;
    blocker.close();
    const srv = await startServer({}, { library: lib, dataPorts: { low, high: low } });
    const tape = join(lib.dir, 'tapes', 'PORTS');
    createTapeImage(tape);
    const a = await client(srv.port, 'md5');
    const b = await client(srv.port, 'md5');
    try {
      await a.call(M.TAPE_OPEN, { device: tape, mode: TapeOpenMode.NDMP_TAPE_RDWR_MODE });
      const { connectAddr } = await a.call(M.MOVER_LISTEN, {
        mode: MoverMode.NDMP_MOVER_MODE_READ,
        addrType: AddrType.NDMP_ADDR_TCP,
      });
      assert.deepEqual(tcpAddrOf(connectAddr), { host: '127.0.0.1', port: low });
      const other = join(lib.dir, 'tapes', 'PORTS2');
      createTapeImage(other);
      await b.call(M.TAPE_OPEN, { device: other, mode: TapeOpenMode.NDMP_TAPE_RDWR_MODE });
      await rejectsWith(
        b.call(M.MOVER_LISTEN, { mode: MoverMode.NDMP_MOVER_MODE_READ, addrType: AddrType.NDMP_ADDR_TCP }),
        ErrorCode.NDMP_CONNECT_ERR,
      );
      // A failed LISTEN leaves the mover IDLE.
      assert.equal((await b.call(M.MOVER_GET_STATE, {})).state, MoverState.NDMP_MOVER_STATE_IDLE);
    } finally {
      a.destroy();
      b.destroy();
      await srv.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
  test('with dataAddress 0.0.0.0 the mover listens on every interface and advertises the reached one first', async () => {
    const dir = mkdtempSync(join(os.tmpdir(), 'ndmpd-addr-'));
    const lib = Library.open(join(dir, 'library'));
    const srv = await startServer({}, { library: lib, dataAddress: '0.0.0.0' });
    const tape = join(lib.dir, 'tapes', 'ADDR');
    createTapeImage(tape);
    const c = await client(srv.port, 'md5');
    const ev = moverEvents(c);
    try {
      await c.call(M.TAPE_OPEN, { device: tape, mode: TapeOpenMode.NDMP_TAPE_RDWR_MODE });
      await c.call(M.MOVER_SET_WINDOW, { offset: 0n, length: INVALID_U64 });
      const { connectAddr } = await c.call(M.MOVER_LISTEN, {
        mode: MoverMode.NDMP_MOVER_MODE_READ,
        addrType: AddrType.NDMP_ADDR_TCP,
      });
      const addrs = (connectAddr as { tcpAddrs: { ipAddr: number; port: number }[] }).tcpAddrs;
      const ipv4s = Object.values(os.networkInterfaces())
        .flat()
        .filter((x) => x?.family === 'IPv4');
      assert.equal(addrs.length, ipv4s.length);
      assert.equal(ipv4String(addrs[0]!.ipAddr), '127.0.0.1');
      // Any advertised address reaches the listener: use the last one.
      const last = addrs[addrs.length - 1]!;
      const data = net.connect({ host: ipv4String(last.ipAddr), port: last.port });
      await new Promise((r) => data.once('connect', r));
      data.end(Buffer.alloc(RECORD, 1));
      assert.deepEqual(await ev.next(), {
        kind: 'halted',
        reason: MoverHaltReason.NDMP_MOVER_HALT_CONNECT_CLOSED,
      });
    } finally {
      c.destroy();
      await srv.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('mover recover edge cases', { timeout: 60_000 }, () => {
  let srv: TestServer;
  let dir: string;
  let lib: Library;

  before(async () => {
    dir = mkdtempSync(join(os.tmpdir(), 'ndmpd-recover-'));
    lib = Library.open(join(dir, 'library'));
    srv = await startServer({}, { library: lib });
  });
  after(async () => {
    await srv.close();
    rmSync(dir, { recursive: true, force: true });
  });

  function tapeOf(name: string, records: number, size: number): string {
    const path = join(lib.dir, 'tapes', name);
    const dev = openTapeImage(path, { readOnly: false, blankDefaults: {} });
    for (let i = 0; i < records; i++) dev.writeRecord(Buffer.alloc(size, i));
    dev.writeFilemarks(1);
    dev.close();
    return path;
  }

  async function recoverSession(tape: string, recordSize: number, sink: net.Server) {
    const c = await client(srv.port, 'md5');
    const ev = moverEvents(c);
    await c.call(M.TAPE_OPEN, { device: tape, mode: TapeOpenMode.NDMP_TAPE_READ_MODE });
    await c.call(M.MOVER_SET_RECORD_SIZE, { len: recordSize });
    await c.call(M.MOVER_SET_WINDOW, { offset: 0n, length: INVALID_U64 });
    await c.call(M.MOVER_CONNECT, {
      mode: MoverMode.NDMP_MOVER_MODE_WRITE,
      addr: {
        addrType: AddrType.NDMP_ADDR_TCP,
        tcpAddrs: [{ ipAddr: 0x7f000001, port: (sink.address() as net.AddressInfo).port, addrEnv: [] }],
      },
    });
    return { c, ev };
  }

  async function listening(handler: (s: net.Socket) => void): Promise<net.Server> {
    const sink = net.createServer(handler);
    await new Promise<void>((r) => sink.listen(0, '127.0.0.1', r));
    return sink;
  }

  test('records of another size than record_size halt MEDIA_ERROR; the drive thread stays responsive', async () => {
    writeFileSync(join(lib.dir, 'tapes', 'SHORT'), '');
    const tape = tapeOf('SHORT', 10, 1000);
    const sink = await listening((sock) => sock.resume());
    const { c, ev } = await recoverSession(tape, 2048, sink);
    try {
      await c.call(M.MOVER_READ, { offset: 0n, length: 5000n });
      assert.deepEqual(await ev.next(), {
        kind: 'halted',
        reason: MoverHaltReason.NDMP_MOVER_HALT_MEDIA_ERROR,
      });
      const st = await c.call(M.MOVER_GET_STATE, {});
      assert.equal(st.state, MoverState.NDMP_MOVER_STATE_HALTED);
      assert.equal(st.bytesMoved, 0n);
      await c.call(M.MOVER_STOP, {});
    } finally {
      c.destroy();
      sink.close();
    }
  });

  test('a read pending in ACTIVE refuses another with READ_IN_PROGRESS; record_num follows the tape', async () => {
    writeFileSync(join(lib.dir, 'tapes', 'BIG'), '');
    const tape = tapeOf('BIG', 64, 256 * 1024);
    // A data service that reads nothing: the mover fills the socket and waits.
    let peer: net.Socket | null = null;
    const sink = await listening((sock) => {
      peer = sock;
      sock.pause();
    });
    const { c, ev } = await recoverSession(tape, 256 * 1024, sink);
    try {
      await c.call(M.MOVER_READ, { offset: BigInt(3 * 256 * 1024 + 10), length: BigInt(40 * 256 * 1024) });
      await new Promise((r) => setTimeout(r, 200));
      await rejectsWith(
        c.call(M.MOVER_READ, { offset: 0n, length: 1n }),
        ErrorCode.NDMP_READ_IN_PROGRESS_ERR,
      );
      const st = await c.call(M.MOVER_GET_STATE, {});
      assert.equal(st.state, MoverState.NDMP_MOVER_STATE_ACTIVE);
      assert.ok(st.bytesLeftToRead > 0n);
      // Records 0..2 were spaced over, not read, and still count.
      assert.ok(st.recordNum >= 4, `record_num ${st.recordNum}`);
      const ts = await c.call(M.TAPE_GET_STATE, {});
      assert.equal(ts.blockno, st.recordNum);
      // The data service ends the connection in the middle: the mover halts CONNECT_CLOSED.
      const p = peer as net.Socket | null;
      p?.resume();
      p?.end();
      assert.deepEqual(await ev.next(), {
        kind: 'halted',
        reason: MoverHaltReason.NDMP_MOVER_HALT_CONNECT_CLOSED,
      });
      await c.call(M.MOVER_STOP, {});
      await c.call(M.TAPE_CLOSE, {});
    } finally {
      c.destroy();
      sink.close();
    }
  });
});
