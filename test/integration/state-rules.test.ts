// The DATA, TAPE and MOVER state tables, checked end to end: sessions are
// driven over real sockets into every reachable combination of data, mover
// and tape state, and every request a table refuses in that state is sent and
// must come back with the table's own error. The cases come from the tables,
// so a rule added there is tested here without a new line.

import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { Library } from '../../src/devices/library.js';
import { createTapeImage } from '../../src/devices/tape-image.js';
import type { NdmpClient } from '../../src/dma/client.js';
import { DATA_STATE_TABLE } from '../../src/services/data/state-rules.js';
import { refusalIn } from '../../src/services/session.js';
import type { StateTable } from '../../src/services/state-table.js';
import { MOVER_STATE_TABLE, TAPE_STATE_TABLE } from '../../src/services/tape/state-rules.js';
import {
  AddrType,
  DataState,
  INVALID_U64,
  M,
  MoverMode,
  MoverState,
  NdmpError,
  TapeMtioOp,
  TapeOpenMode,
  errorName,
} from '../../src/wire/index.js';
import type { MessageDef } from '../../src/wire/index.js';
import { client, startServer } from '../helpers/in-process.js';
import type { TestServer } from '../helpers/in-process.js';

const LOOPBACK = 0x7f000001;
const TCP_PEER = { addrType: AddrType.NDMP_ADDR_TCP, tcpAddrs: [{ ipAddr: LOOPBACK, port: 1, addrEnv: [] }] };

/** A well-formed body for each request the tables rule on (the state refuses it before its arguments count). */
function bodyOf(def: MessageDef, tape: string): unknown {
  switch (def.code) {
    case M.DATA_LISTEN.code:
      return { addrType: AddrType.NDMP_ADDR_TCP };
    case M.DATA_CONNECT.code:
      return { addr: TCP_PEER };
    case M.DATA_START_BACKUP.code:
      return { butypeName: 'tar', env: [] };
    case M.DATA_START_RECOVER.code:
    case M.DATA_START_RECOVER_FILEHIST.code:
      return { env: [], nlist: [], butypeName: 'tar' };
    case M.TAPE_OPEN.code:
      return { device: tape, mode: TapeOpenMode.NDMP_TAPE_READ_MODE };
    case M.TAPE_MTIO.code:
      return { tapeOp: TapeMtioOp.NDMP_MTIO_REW, count: 1 };
    case M.TAPE_READ.code:
      return { count: 512 };
    case M.TAPE_WRITE.code:
      return { dataOut: Buffer.alloc(512, 7) };
    case M.MOVER_LISTEN.code:
      return { mode: MoverMode.NDMP_MOVER_MODE_READ, addrType: AddrType.NDMP_ADDR_TCP };
    case M.MOVER_CONNECT.code:
      return { mode: MoverMode.NDMP_MOVER_MODE_READ, addr: TCP_PEER };
    case M.MOVER_SET_RECORD_SIZE.code:
      return { len: 10240 };
    case M.MOVER_SET_WINDOW.code:
      return { offset: 0n, length: INVALID_U64 };
    case M.MOVER_READ.code:
      return { offset: 0n, length: 1n };
    case M.TAPE_EXECUTE_CDB.code:
      return { flags: 0, timeout: 0, datainLen: 0, cdb: Buffer.alloc(6), dataout: Buffer.alloc(0) };
    default:
      return {};
  }
}

/** Where a scenario leaves the session: one state name per table. */
interface Where {
  data: string;
  mover: string;
  tape: string;
}

interface Scenario {
  readonly name: string;
  readonly where: Where;
  /** Drives a fresh session, with its own blank tape at `tape`, into `where`. */
  setup(c: NdmpClient, tape: string, exportDir: string): Promise<void>;
}

const RDWR = TapeOpenMode.NDMP_TAPE_RDWR_MODE;
const READ = TapeOpenMode.NDMP_TAPE_READ_MODE;
const LOCAL = AddrType.NDMP_ADDR_LOCAL;
const TCP = AddrType.NDMP_ADDR_TCP;

/**
 * An empty window pauses the mover at its first record (EOW); the backup,
 * larger than what the sockets or the ring hold, then waits ACTIVE for the mover.
 */
function pausedBackup(addrType: typeof LOCAL | typeof TCP): Scenario {
  return {
    name: `a backup running into a paused mover (${addrType === LOCAL ? 'LOCAL' : 'TCP'})`,
    where: { data: 'ACTIVE', mover: 'PAUSED', tape: 'RDWR' },
    setup: async (c, tape, exportDir) => {
      const tree = join(exportDir, `paused-backup-${addrType}`);
      mkdirSync(tree, { recursive: true });
      // Data, not a hole: a sparse file is now stored by its (empty) data regions.
      writeFileSync(join(tree, 'dense'), Buffer.alloc(64 * 1024 * 1024, 0x5a));
      const paused = new Promise<void>((resolve) => c.onPost(M.NOTIFY_MOVER_PAUSED, () => resolve()));
      await c.call(M.TAPE_OPEN, { device: tape, mode: RDWR });
      await c.call(M.MOVER_SET_WINDOW, { offset: 0n, length: 0n });
      const { connectAddr } = await c.call(M.MOVER_LISTEN, {
        mode: MoverMode.NDMP_MOVER_MODE_READ,
        addrType,
      });
      await c.call(M.DATA_CONNECT, { addr: addrType === LOCAL ? { addrType: LOCAL } : connectAddr });
      await c.call(M.DATA_START_BACKUP, {
        butypeName: 'tar',
        env: [
          { name: 'FILESYSTEM', value: tree },
          { name: 'HIST', value: 'n' },
        ],
      });
      await paused;
    },
  };
}

const SCENARIOS: readonly Scenario[] = [
  { name: 'a fresh session', where: { data: 'IDLE', mover: 'IDLE', tape: 'CLOSED' }, setup: async () => {} },
  {
    name: 'a tape open for reading',
    where: { data: 'IDLE', mover: 'IDLE', tape: 'READ' },
    setup: async (c, tape) => void (await c.call(M.TAPE_OPEN, { device: tape, mode: READ })),
  },
  {
    name: 'a tape taken offline',
    where: { data: 'IDLE', mover: 'IDLE', tape: 'OFFLINE' },
    setup: async (c, tape) => {
      await c.call(M.TAPE_OPEN, { device: tape, mode: RDWR });
      await c.call(M.TAPE_MTIO, { tapeOp: TapeMtioOp.NDMP_MTIO_OFF, count: 1 });
    },
  },
  {
    name: 'both listening over TCP',
    where: { data: 'LISTEN', mover: 'LISTEN', tape: 'RDWR' },
    setup: async (c, tape) => {
      await c.call(M.TAPE_OPEN, { device: tape, mode: RDWR });
      await c.call(M.MOVER_LISTEN, { mode: MoverMode.NDMP_MOVER_MODE_READ, addrType: TCP });
      await c.call(M.DATA_LISTEN, { addrType: TCP });
    },
  },
  {
    name: 'both halted by an abort',
    where: { data: 'HALTED', mover: 'HALTED', tape: 'RDWR' },
    setup: async (c, tape) => {
      await c.call(M.TAPE_OPEN, { device: tape, mode: RDWR });
      await c.call(M.MOVER_LISTEN, { mode: MoverMode.NDMP_MOVER_MODE_READ, addrType: TCP });
      await c.call(M.DATA_LISTEN, { addrType: TCP });
      await c.call(M.MOVER_ABORT, {});
      await c.call(M.DATA_ABORT, {});
    },
  },
  {
    name: 'connected LOCAL for a backup, nothing started',
    where: { data: 'CONNECTED', mover: 'ACTIVE (mode READ)', tape: 'RDWR/BUSY' },
    setup: async (c, tape) => {
      await c.call(M.TAPE_OPEN, { device: tape, mode: RDWR });
      await c.call(M.MOVER_LISTEN, { mode: MoverMode.NDMP_MOVER_MODE_READ, addrType: LOCAL });
      await c.call(M.DATA_CONNECT, { addr: { addrType: LOCAL } });
    },
  },
  {
    name: 'connected LOCAL for a recover, nothing started',
    where: { data: 'CONNECTED', mover: 'ACTIVE (mode WRITE)', tape: 'READ/BUSY' },
    setup: async (c, tape) => {
      await c.call(M.TAPE_OPEN, { device: tape, mode: READ });
      await c.call(M.MOVER_LISTEN, { mode: MoverMode.NDMP_MOVER_MODE_WRITE, addrType: LOCAL });
      await c.call(M.DATA_CONNECT, { addr: { addrType: LOCAL } });
    },
  },
  pausedBackup(TCP),
  // The same over LOCAL: the data thread, waiting on a full ring the paused
  // mover does not drain, must still answer its requests (GET_STATE above all).
  pausedBackup(LOCAL),
];

/**
 * Tape states no session can stay in: the mover, ACTIVE again after a pause
 * in which the DMA closed the tape or took it offline, halts at its next
 * record. Their rules are still in the table; a test cannot hold the state.
 */
const TRANSIENT = new Set(['CLOSED/BUSY', 'OFFLINE/BUSY']);

const TABLES: ReadonlyArray<readonly [keyof Where, StateTable]> = [
  ['data', DATA_STATE_TABLE],
  ['mover', MOVER_STATE_TABLE],
  ['tape', TAPE_STATE_TABLE],
];

const DATA_NAMES: Record<number, string> = {
  [DataState.NDMP_DATA_STATE_IDLE]: 'IDLE',
  [DataState.NDMP_DATA_STATE_LISTEN]: 'LISTEN',
  [DataState.NDMP_DATA_STATE_CONNECTED]: 'CONNECTED',
  [DataState.NDMP_DATA_STATE_ACTIVE]: 'ACTIVE',
  [DataState.NDMP_DATA_STATE_HALTED]: 'HALTED',
};
const MOVER_NAMES: Record<number, string> = {
  [MoverState.NDMP_MOVER_STATE_IDLE]: 'IDLE',
  [MoverState.NDMP_MOVER_STATE_LISTEN]: 'LISTEN',
  [MoverState.NDMP_MOVER_STATE_ACTIVE]: 'ACTIVE',
  [MoverState.NDMP_MOVER_STATE_PAUSED]: 'PAUSED',
  [MoverState.NDMP_MOVER_STATE_HALTED]: 'HALTED',
};

describe('state tables over the wire', { timeout: 180_000 }, () => {
  let srv: TestServer;
  let dir: string;
  let lib: Library;
  let tapes = 0;

  before(async () => {
    dir = mkdtempSync(join(os.tmpdir(), 'ndmpd-state-rules-'));
    mkdirSync(join(dir, 'library'));
    lib = Library.open(join(dir, 'library'), { drives: 1 });
    srv = await startServer({}, { library: lib });
  });
  after(async () => {
    await srv.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('every state of every table is reached by a scenario (or cannot be held)', () => {
    for (const [key, table] of TABLES) {
      const reached = new Set(SCENARIOS.map((s) => s.where[key]));
      for (const state of table.states) {
        assert.ok(
          reached.has(state) || TRANSIENT.has(state),
          `no scenario leaves the ${table.subject} ${state}`,
        );
      }
    }
  });

  for (const version of [4, 3] as const) {
    for (const sc of SCENARIOS) {
      test(`v${version}, ${sc.name}: each refused request gets its table's error`, async () => {
        const tape = join(lib.dir, 'tapes', `SR${String(++tapes).padStart(4, '0')}`);
        createTapeImage(tape);
        const c = await client(srv.port, 'md5', version);
        try {
          await sc.setup(c, tape, srv.exportDir);
          // The session is where the scenario says, as the services themselves report it.
          const data = await c.call(M.DATA_GET_STATE, {});
          assert.equal(DATA_NAMES[data.state], sc.where.data);
          const mover = await c.call(M.MOVER_GET_STATE, {});
          assert.equal(MOVER_NAMES[mover.state], sc.where.mover.replace(/ \(mode \w+\)$/, ''));

          let probed = 0;
          for (const [key, table] of TABLES) {
            const state = sc.where[key];
            for (const { def, rule } of table.rules.values()) {
              const expected = refusalIn(rule, state, version, def);
              if (!expected) continue;
              probed++;
              await assert.rejects(
                c.call(def, bodyOf(def, tape) as never),
                (e: unknown) => {
                  assert.ok(e instanceof NdmpError, String(e));
                  assert.equal(
                    errorName(e.ndmpError),
                    expected.ndmpErrorName,
                    `${def.name} in ${table.subject} ${state}`,
                  );
                  return true;
                },
                `${def.name} in ${table.subject} ${state} must be refused`,
              );
            }
          }
          assert.ok(probed > 0);
          // Refusals change nothing: the states are still the scenario's.
          assert.equal(DATA_NAMES[(await c.call(M.DATA_GET_STATE, {})).state], sc.where.data);
          assert.equal((await c.call(M.MOVER_GET_STATE, {})).state, mover.state);
        } finally {
          c.destroy();
        }
      });
    }
  }
});
