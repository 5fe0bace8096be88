// The data service's state machine and data connection over real sockets,
// with our client: three-way within one server (the data service of one
// session connects to the mover of another over TCP, and the reverse), the
// halts that follow aborts and dropped connections, and the state rules.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { Library } from '../../src/devices/library.js';
import type { NdmpClient } from '../../src/dma/client.js';
import {
  AddrType,
  DataHaltReason,
  DataState,
  DataStateUnsupported,
  ErrorCode,
  M,
  MoverHaltReason,
  MoverMode,
  MoverState,
  NdmpError,
  TapeOpenMode,
} from '../../src/wire/index.js';
import type { HaltedPost } from '../../src/wire/index.js';
import { client, startServer } from '../helpers/in-process.js';
import type { TestServer } from '../helpers/in-process.js';

async function rejectsWith(p: Promise<unknown>, code: number): Promise<void> {
  await assert.rejects(p, (e: unknown) => e instanceof NdmpError && e.ndmpError === code);
}

/** The next post of `def` on `c`. */
function nextPost(
  c: NdmpClient,
  def: typeof M.NOTIFY_DATA_HALTED | typeof M.NOTIFY_MOVER_HALTED,
): Promise<HaltedPost> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${def.name} in time`)), 10_000);
    const on = (b: HaltedPost) => {
      clearTimeout(timer);
      c.offPost(def, on);
      resolve(b);
    };
    c.onPost(def, on);
  });
}

async function waitFor<T>(probe: () => Promise<T>, ok: (v: T) => boolean): Promise<T> {
  const deadline = Date.now() + 5000;
  for (;;) {
    const v = await probe();
    if (ok(v) || Date.now() > deadline) return v;
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('data service', { timeout: 60_000 }, () => {
  let srv: TestServer;
  let dir: string;
  let lib: Library;

  before(async () => {
    dir = mkdtempSync(join(os.tmpdir(), 'ndmpd-data-'));
    lib = Library.open(join(dir, 'library'));
    srv = await startServer({}, { library: lib });
  });
  after(async () => {
    await srv.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('IDLE: state, refusals, GET_ENV only once something ran', async () => {
    const c = await client(srv.port, 'md5');
    try {
      const st = await c.call(M.DATA_GET_STATE, {});
      assert.equal(st.state, DataState.NDMP_DATA_STATE_IDLE);
      assert.equal(st.haltReason, DataHaltReason.NDMP_DATA_HALT_NA);
      assert.equal(
        st.unsupported,
        DataStateUnsupported.EST_BYTES_REMAIN | DataStateUnsupported.EST_TIME_REMAIN,
      );
      await rejectsWith(c.call(M.DATA_ABORT, {}), ErrorCode.NDMP_ILLEGAL_STATE_ERR);
      await rejectsWith(c.call(M.DATA_STOP, {}), ErrorCode.NDMP_ILLEGAL_STATE_ERR);
      await rejectsWith(c.call(M.DATA_GET_ENV, {}), ErrorCode.NDMP_ILLEGAL_STATE_ERR);
      await rejectsWith(c.call(M.DATA_LISTEN, { addrType: 123 }), ErrorCode.NDMP_ILLEGAL_ARGS_ERR);
      await rejectsWith(
        c.call(M.DATA_CONNECT, { addr: { addrType: AddrType.NDMP_ADDR_LOCAL } }),
        ErrorCode.NDMP_ILLEGAL_STATE_ERR,
      );
    } finally {
      c.destroy();
    }
  });

  test('data LISTEN (TCP), another session’s mover CONNECTs: both connected; aborts halt both sides', async () => {
    const d = await client(srv.port, 'md5');
    const t = await client(srv.port, 'md5');
    try {
      const { connectAddr } = await d.call(M.DATA_LISTEN, { addrType: AddrType.NDMP_ADDR_TCP });
      assert.equal((await d.call(M.DATA_GET_STATE, {})).state, DataState.NDMP_DATA_STATE_LISTEN);
      await rejectsWith(
        d.call(M.DATA_LISTEN, { addrType: AddrType.NDMP_ADDR_TCP }),
        ErrorCode.NDMP_ILLEGAL_STATE_ERR,
      );
      const [barcode] = lib.createTapes({ count: 1 });
      await t.call(M.TAPE_OPEN, { device: lib.tapePath(barcode!), mode: TapeOpenMode.NDMP_TAPE_RDWR_MODE });
      await t.call(M.MOVER_CONNECT, { mode: MoverMode.NDMP_MOVER_MODE_READ, addr: connectAddr });
      const st = await waitFor(
        () => d.call(M.DATA_GET_STATE, {}),
        (s) => s.state === DataState.NDMP_DATA_STATE_CONNECTED,
      );
      assert.equal(st.state, DataState.NDMP_DATA_STATE_CONNECTED);
      assert.equal((await t.call(M.MOVER_GET_STATE, {})).state, MoverState.NDMP_MOVER_STATE_ACTIVE);

      // The DMA aborts the data side: it halts ABORTED and, its connection gone, the mover's
      // stream ends: the mover halts CONNECT_CLOSED.
      const dataHalted = nextPost(d, M.NOTIFY_DATA_HALTED);
      const moverHalted = nextPost(t, M.NOTIFY_MOVER_HALTED);
      await d.call(M.DATA_ABORT, {});
      assert.equal((await dataHalted).reason, DataHaltReason.NDMP_DATA_HALT_ABORTED);
      assert.equal((await moverHalted).reason, MoverHaltReason.NDMP_MOVER_HALT_CONNECT_CLOSED);
      assert.deepEqual((await d.call(M.DATA_GET_ENV, {})).env, []);
      await d.call(M.DATA_STOP, {});
      const idle = await d.call(M.DATA_GET_STATE, {});
      assert.equal(idle.state, DataState.NDMP_DATA_STATE_IDLE);
      assert.equal(idle.dataConnectionAddr.addrType, AddrType.NDMP_ADDR_LOCAL);
      await t.call(M.MOVER_STOP, {});
      await t.call(M.TAPE_CLOSE, {});
    } finally {
      d.destroy();
      t.destroy();
    }
  });

  test('data CONNECTs to a listening mover; the mover aborting halts the data side CONNECT_ERROR', async () => {
    const d = await client(srv.port, 'md5', 3);
    const t = await client(srv.port, 'md5');
    try {
      const [barcode] = lib.createTapes({ count: 1 });
      await t.call(M.TAPE_OPEN, { device: lib.tapePath(barcode!), mode: TapeOpenMode.NDMP_TAPE_RDWR_MODE });
      const { connectAddr } = await t.call(M.MOVER_LISTEN, {
        mode: MoverMode.NDMP_MOVER_MODE_READ,
        addrType: AddrType.NDMP_ADDR_TCP,
      });
      await d.call(M.DATA_CONNECT, { addr: connectAddr });
      assert.equal((await d.call(M.DATA_GET_STATE, {})).state, DataState.NDMP_DATA_STATE_CONNECTED);
      const dataHalted = nextPost(d, M.NOTIFY_DATA_HALTED);
      await t.call(M.MOVER_ABORT, {});
      const h = await dataHalted;
      assert.equal(h.reason, DataHaltReason.NDMP_DATA_HALT_CONNECT_ERROR);
      assert.match(h.textReason ?? '', /closed|failed/); // v3 carries the text
      await d.call(M.DATA_STOP, {});
      await t.call(M.MOVER_STOP, {});
      await t.call(M.TAPE_CLOSE, {});
    } finally {
      d.destroy();
      t.destroy();
    }
  });

  test('LISTEN LOCAL then ABORT: HALTED(ABORTED) with its notification; a closed session stops its listener', async () => {
    const d = await client(srv.port, 'md5');
    try {
      const { connectAddr } = await d.call(M.DATA_LISTEN, { addrType: AddrType.NDMP_ADDR_LOCAL });
      assert.equal(connectAddr.addrType, AddrType.NDMP_ADDR_LOCAL);
      const halted = nextPost(d, M.NOTIFY_DATA_HALTED);
      await d.call(M.DATA_ABORT, {});
      assert.equal((await halted).reason, DataHaltReason.NDMP_DATA_HALT_ABORTED);
      const st = await d.call(M.DATA_GET_STATE, {});
      assert.deepEqual(
        [st.state, st.haltReason],
        [DataState.NDMP_DATA_STATE_HALTED, DataHaltReason.NDMP_DATA_HALT_ABORTED],
      );
    } finally {
      d.destroy();
    }
  });
});
