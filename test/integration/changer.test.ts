// The SCSI service over real sockets with our own client, against a library
// folder (docs/changer.md): open/close, one holder at a time and release
// when the connection closes, READ ELEMENT STATUS reflecting the folder,
// MOVE MEDIUM changing it, a drive another session has open refused with
// its sense, and the library lock against `ndmpd tape` while a server runs.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readlinkSync, renameSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';

import { Library } from '../../src/devices/library.js';
import { LibraryChanger } from '../../src/devices/library-changer.js';
import type { NdmpClient } from '../../src/dma/client.js';
import { SCSI_STATE_TABLE } from '../../src/services/scsi/state-rules.js';
import { refusalIn } from '../../src/services/session.js';
import { ErrorCode, M, NdmpError, TapeOpenMode } from '../../src/wire/index.js';
import { client, startServer } from '../helpers/in-process.js';
import type { TestServer } from '../helpers/in-process.js';
import { NDMPD_BIN, startNdmpd } from '../helpers/ndmpd-process.js';

const run = promisify(execFile);

async function rejectsWith(p: Promise<unknown>, code: number): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof NdmpError, String(e));
    assert.equal(e.ndmpErrorName, new NdmpError(code).ndmpErrorName);
    return true;
  });
}

const hex = (h: string) => Buffer.from(h.replace(/\s/g, ''), 'hex');

/** One EXECUTE_CDB; the reply body (NO_ERR is asserted by `call`). */
function cdb(c: NdmpClient, bytes: string, datainLen = 8192) {
  return c.call(M.SCSI_EXECUTE_CDB, {
    flags: datainLen > 0 ? 1 : 0,
    timeout: 300_000,
    datainLen,
    cdb: hex(bytes),
    dataout: Buffer.alloc(0),
  });
}

/** Sense key, ASC, ASCQ as ndmjob reads them (fixed format, docs/smc.md §1.1). */
function senseOf(r: { status: number; extSense: Buffer }): [number, number, number] {
  assert.equal(r.status, 2, 'expected CHECK CONDITION');
  assert.equal(r.extSense[0], 0x70);
  return [r.extSense[2]! & 0x0f, r.extSense[12]!, r.extSense[13]!];
}

/** MOVE MEDIUM source → destination through transport 1. */
function moveCdb(from: number, to: number): string {
  const w = (n: number) => n.toString(16).padStart(4, '0');
  return `a5 00 0001 ${w(from)} ${w(to)} 0000 00 00`;
}

interface Descriptor {
  address: number;
  full: boolean;
  tag: string | null;
  source: number | null;
}

/** READ ELEMENT STATUS data: every descriptor, tags read from the page's PVolTag. */
function parseElementStatus(data: Buffer): Descriptor[] {
  const out: Descriptor[] = [];
  let at = 8;
  while (at + 8 <= data.length) {
    const pvol = (data[at + 1]! & 0x80) !== 0;
    const len = data.readUInt16BE(at + 2);
    const bytes = data.readUIntBE(at + 5, 3);
    let d = at + 8;
    for (; d + len <= at + 8 + bytes; d += len) {
      const full = (data[d + 2]! & 0x01) !== 0;
      out.push({
        address: data.readUInt16BE(d),
        full,
        tag:
          pvol && full
            ? data
                .subarray(d + 12, d + 44)
                .toString('latin1')
                .trimEnd()
            : null,
        source: (data[d + 9]! & 0x80) !== 0 ? data.readUInt16BE(d + 10) : null,
      });
    }
    at += 8 + bytes;
  }
  return out;
}

async function elementStatus(c: NdmpClient): Promise<Map<number, Descriptor>> {
  const r = await cdb(c, 'b8 10 0000 0050 00 002000 00 00');
  assert.equal(r.status, 0);
  return new Map(parseElementStatus(r.datain).map((d) => [d.address, d]));
}

async function until(what: string, cond: () => boolean | Promise<boolean>): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.fail(`timed out waiting for ${what}`);
}

describe('the changer over NDMP', { timeout: 60_000 }, () => {
  let srv: TestServer;
  let dir: string;
  let lib: Library;

  before(async () => {
    dir = mkdtempSync(join(os.tmpdir(), 'ndmpd-changer-'));
    lib = Library.open(join(dir, 'library'), { drives: 2, slots: 8 });
    lib.createTapes({ count: 4 });
    srv = await startServer({}, { library: lib, changer: new LibraryChanger(lib) });
  });
  after(async () => {
    await srv.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const link = (p: string) => readlinkSync(join(lib.dir, p));

  test('CONFIG_GET_SCSI_INFO lists changer0 with the serial INQUIRY gives; drives match DVCID', async () => {
    const c = await client(srv.port);
    try {
      const { scsiInfo } = await c.call(M.CONFIG_GET_SCSI_INFO, {});
      assert.equal(scsiInfo.length, 1);
      assert.equal(scsiInfo[0]!.model, 'NDMPD VTL-CHANGER 0001');
      const dev = scsiInfo[0]!.caplist[0]!;
      assert.equal(dev.device, 'changer0');
      const caps = Object.fromEntries(dev.capability.map((p) => [p.name, p.value]));
      assert.match(caps.WORLD_WIDE_NAME!, /^0x3[0-9a-f]{15}$/);
      await c.call(M.SCSI_OPEN, { device: 'changer0' });
      const std = await cdb(c, '12 00 00 0080 00', 128);
      assert.equal(std.datain[0], 0x08);
      assert.equal(
        std.datain.subarray(8, 36).toString('latin1').replace(/ +/g, ' ').trim(),
        scsiInfo[0]!.model,
      );
      const vpd = await cdb(c, '12 01 80 00ff 00', 255);
      assert.equal(vpd.datain.subarray(4).toString('latin1'), caps.SERIAL_NUMBER);

      // DVCID of drive 0 carries the serial GET_TAPE_INFO and the drive's own INQUIRY report.
      const { tapeInfo } = await c.call(M.CONFIG_GET_TAPE_INFO, {});
      const d0 = tapeInfo[0]!.caplist[0]!;
      const serial = d0.capability.find((p) => p.name === 'SERIAL_NUMBER')!.value;
      assert.equal(d0.capability.find((p) => p.name === 'EXECUTE_CDB')!.value, 't');
      const res = await cdb(c, 'b8 14 01f4 0001 01 002000 00 00');
      assert.ok(res.datain.includes(Buffer.from(serial)), 'DVCID carries the drive serial');
      await c.call(M.SCSI_CLOSE, {});

      // Drive 1's own INQUIRY (TAPE_EXECUTE_CDB) gives the serial the tape info and DVCID give.
      lib.load('NDM004', 'drive1');
      const t = await client(srv.port);
      try {
        await t.call(M.TAPE_OPEN, { device: 'drive1', mode: TapeOpenMode.NDMP_TAPE_READ_MODE });
        const inq = await t.call(M.TAPE_EXECUTE_CDB, {
          flags: 1,
          timeout: 0,
          datainLen: 255,
          cdb: hex('12 01 80 00ff 00'),
          dataout: Buffer.alloc(0),
        });
        const serial1 = tapeInfo[0]!.caplist[1]!.capability.find((p) => p.name === 'SERIAL_NUMBER')!.value;
        assert.equal(inq.datain.subarray(4).toString('latin1'), serial1);
        await t.call(M.TAPE_CLOSE, {});
      } finally {
        t.destroy();
      }
      lib.unload('drive1');
    } finally {
      c.destroy();
    }
  });

  test('open / close / busy / released when the connection closes', async () => {
    const a = await client(srv.port);
    const b = await client(srv.port);
    try {
      await rejectsWith(cdb(a, '00 00 00 00 00 00', 0), ErrorCode.NDMP_DEV_NOT_OPEN_ERR);
      await rejectsWith(a.call(M.SCSI_CLOSE, {}), ErrorCode.NDMP_DEV_NOT_OPEN_ERR);
      await rejectsWith(a.call(M.SCSI_GET_STATE, {}), ErrorCode.NDMP_DEV_NOT_OPEN_ERR);
      await rejectsWith(a.call(M.SCSI_OPEN, { device: 'robot9' }), ErrorCode.NDMP_NO_DEVICE_ERR);
      await a.call(M.SCSI_OPEN, { device: 'changer0' });
      await rejectsWith(a.call(M.SCSI_OPEN, { device: 'changer0' }), ErrorCode.NDMP_DEVICE_OPENED_ERR);
      // One device per connection: no tape while the changer is open here.
      await rejectsWith(
        a.call(M.TAPE_OPEN, { device: 'drive0', mode: TapeOpenMode.NDMP_TAPE_READ_MODE }),
        ErrorCode.NDMP_DEVICE_OPENED_ERR,
      );
      const warned: string[] = [];
      b.onPost(M.LOG_MESSAGE, (m) => warned.push(m.entry));
      await rejectsWith(b.call(M.SCSI_OPEN, { device: 'changer0' }), ErrorCode.NDMP_DEVICE_BUSY_ERR);
      assert.ok(
        warned.some((w) => /in use by another session/.test(w)),
        warned.join('\n'),
      );
      assert.deepEqual(await a.call(M.SCSI_GET_STATE, {}), {
        error: 0,
        targetController: 0,
        targetId: 0,
        targetLun: 0,
      });
      await a.call(M.SCSI_RESET_DEVICE, {});
      assert.equal((await cdb(a, '00 00 00 00 00 00', 0)).status, 0);
      await a.call(M.SCSI_CLOSE, {});
      await b.call(M.SCSI_OPEN, { device: 'changer0' });
      // ndmjob never sends SCSI_CLOSE: the end of b's connection frees the changer.
      b.destroy();
      await until('the changer to be released', async () => {
        try {
          await a.call(M.SCSI_OPEN, { device: 'changer0' });
          return true;
        } catch {
          return false;
        }
      });
      await a.call(M.SCSI_CLOSE, {});
    } finally {
      a.destroy();
      b.destroy();
    }
  });

  test('bad requests are NDMP errors; SCSI failures are NO_ERR with CHECK CONDITION and sense', async () => {
    const c = await client(srv.port);
    try {
      await c.call(M.SCSI_OPEN, { device: 'changer0' });
      const req = {
        flags: 3,
        timeout: 0,
        datainLen: 8,
        cdb: hex('00 00 00 00 00 00'),
        dataout: Buffer.alloc(0),
      };
      await rejectsWith(c.call(M.SCSI_EXECUTE_CDB, req), ErrorCode.NDMP_ILLEGAL_ARGS_ERR);
      await rejectsWith(
        c.call(M.SCSI_EXECUTE_CDB, { ...req, flags: 1, cdb: Buffer.alloc(0) }),
        ErrorCode.NDMP_ILLEGAL_ARGS_ERR,
      );
      await rejectsWith(
        c.call(M.SCSI_EXECUTE_CDB, { ...req, flags: 1, cdb: Buffer.alloc(17) }),
        ErrorCode.NDMP_ILLEGAL_ARGS_ERR,
      );
      // An opcode a changer does not serve (READ(6)): INVALID COMMAND OPERATION CODE, never an NDMP error.
      assert.deepEqual(senseOf(await cdb(c, '08 00 00 00 01 00')), [5, 0x20, 0]);
      // EXCHANGE MEDIUM is not offered either.
      assert.deepEqual(senseOf(await cdb(c, 'a6 00 0001 03e8 03e9 03ea 00 00')), [5, 0x20, 0]);
      const ms = await cdb(c, '1a 08 1d 00 ff 00', 255);
      assert.equal(ms.datain.readUInt16BE(4 + 8), 8, 'page 1Dh: 8 slots');
      assert.equal(ms.datain.readUInt16BE(4 + 16), 2, 'page 1Dh: 2 drives');
    } finally {
      c.destroy();
    }
  });

  test('READ ELEMENT STATUS reflects the folder, an operator change included', async () => {
    const c = await client(srv.port);
    try {
      await c.call(M.SCSI_OPEN, { device: 'changer0' });
      let es = await elementStatus(c);
      assert.deepEqual(
        [1000, 1001, 1002, 1003, 1004].map((a) => es.get(a)!.tag),
        ['NDM001', 'NDM002', 'NDM003', 'NDM004', null],
      );
      assert.equal(es.get(500)!.full, false);
      assert.equal(es.get(10)!.full, false);
      // The operator moves a link by hand: the next look sees it.
      renameSync(join(lib.dir, 'slots', '4'), join(lib.dir, 'slots', '5'));
      es = await elementStatus(c);
      assert.equal(es.get(1003)!.full, false);
      assert.equal(es.get(1004)!.tag, 'NDM004');
      renameSync(join(lib.dir, 'slots', '5'), join(lib.dir, 'slots', '4'));
    } finally {
      c.destroy();
    }
  });

  test('MOVE MEDIUM renames the links; a drive another session has open is refused with 05/53/02', async () => {
    const robot = await client(srv.port);
    const tape = await client(srv.port);
    try {
      const told: string[] = [];
      robot.onPost(M.LOG_MESSAGE, (m) => told.push(m.entry));
      await robot.call(M.SCSI_OPEN, { device: 'changer0' });
      assert.equal((await cdb(robot, moveCdb(1000, 500), 0)).status, 0);
      assert.equal(link('drives/drive0'), '../tapes/NDM001');
      assert.equal(existsSync(join(lib.dir, 'slots', '1')), false);
      let es = await elementStatus(robot);
      assert.deepEqual([es.get(500)!.tag, es.get(500)!.source], ['NDM001', 1000]);
      assert.equal(es.get(1000)!.full, false);

      // Right after a GOOD load the drive opens (docs/smc.md §4.3 rule 6).
      await tape.call(M.TAPE_OPEN, { device: 'drive0', mode: TapeOpenMode.NDMP_TAPE_READ_MODE });
      await rejectsWith(tape.call(M.SCSI_OPEN, { device: 'changer0' }), ErrorCode.NDMP_DEVICE_OPENED_ERR);
      assert.deepEqual(senseOf(await cdb(robot, moveCdb(500, 1000), 0)), [5, 0x53, 0x02]);
      assert.equal(link('drives/drive0'), '../tapes/NDM001', 'the open drive kept its tape');
      await until('a LOG_MESSAGE naming the open drive', () => told.some((t) => /drive0 is open/.test(t)));
      await tape.call(M.TAPE_CLOSE, {});
      // Once closed, the move out succeeds at once.
      assert.equal((await cdb(robot, moveCdb(500, 1000), 0)).status, 0);
      assert.equal(link('slots/1'), '../tapes/NDM001');
      assert.equal(existsSync(join(lib.dir, 'drives', 'drive0')), false);

      // Empty source, full destination, not an element.
      assert.deepEqual(senseOf(await cdb(robot, moveCdb(1004, 1005), 0)), [5, 0x3b, 0x0e]);
      assert.deepEqual(senseOf(await cdb(robot, moveCdb(1000, 1001), 0)), [5, 0x3b, 0x0d]);
      assert.deepEqual(senseOf(await cdb(robot, moveCdb(1000, 2000), 0)), [5, 0x21, 0x01]);

      // Export and import through the mail slot.
      assert.equal((await cdb(robot, moveCdb(1001, 10), 0)).status, 0);
      assert.equal(link('mailslot/1'), '../tapes/NDM002');
      es = await elementStatus(robot);
      assert.deepEqual([es.get(10)!.tag, es.get(10)!.source], ['NDM002', 1001]);
      assert.equal((await cdb(robot, moveCdb(10, 1001), 0)).status, 0);
      assert.equal(link('slots/2'), '../tapes/NDM002');
      // INITIALIZE ELEMENT STATUS: a tape outside the changer enters the first free slot.
      lib.createTapes({ count: 1, outside: true });
      assert.equal((await cdb(robot, '07 00 00 00 00 00', 0)).status, 0);
      assert.equal(link('slots/5'), '../tapes/NDM005');
    } finally {
      robot.destroy();
      tape.destroy();
    }
  });

  test('a tape a session has open by its image name is not carried off either', async () => {
    const robot = await client(srv.port);
    const tape = await client(srv.port);
    try {
      await robot.call(M.SCSI_OPEN, { device: 'changer0' });
      await tape.call(M.TAPE_OPEN, { device: 'tapes/NDM003', mode: TapeOpenMode.NDMP_TAPE_READ_MODE });
      assert.deepEqual(senseOf(await cdb(robot, moveCdb(1002, 501), 0)), [5, 0x53, 0x02]);
      assert.equal(link('slots/3'), '../tapes/NDM003');
      await tape.call(M.TAPE_CLOSE, {});
      assert.equal((await cdb(robot, moveCdb(1002, 501), 0)).status, 0);
      assert.equal((await cdb(robot, moveCdb(501, 1002), 0)).status, 0);
      assert.equal(link('slots/3'), '../tapes/NDM003');
    } finally {
      robot.destroy();
      tape.destroy();
    }
  });

  test('v3: SET_TARGET is kept and reported, RESET_BUS is not supported', async () => {
    const c = await client(srv.port, 'md5', 3);
    try {
      await c.call(M.SCSI_OPEN, { device: 'changer0' });
      await c.call(M.SCSI_SET_TARGET, {
        device: 'changer0',
        targetController: 0xffff,
        targetId: 7,
        targetLun: 1,
      });
      const st = await c.call(M.SCSI_GET_STATE, {});
      assert.deepEqual([st.targetController, st.targetId, st.targetLun], [-1, 7, 1]);
      await rejectsWith(c.call(M.SCSI_RESET_BUS, {}), ErrorCode.NDMP_NOT_SUPPORTED_ERR);
      assert.equal((await elementStatus(c)).get(1000)!.tag, 'NDM001');
    } finally {
      c.destroy();
    }
  });

  for (const version of [4, 3] as const) {
    test(`v${version}: the SCSI state table, walked over the wire in each state`, async () => {
      const bodies: Record<number, unknown> = {
        [M.SCSI_OPEN.code]: { device: 'changer0' },
        [M.SCSI_SET_TARGET.code]: { device: 'changer0', targetController: 0, targetId: 0, targetLun: 0 },
        [M.SCSI_EXECUTE_CDB.code]: {
          flags: 0,
          timeout: 0,
          datainLen: 0,
          cdb: Buffer.alloc(6),
          dataout: Buffer.alloc(0),
        },
      };
      const setups: Array<[string, (c: NdmpClient) => Promise<unknown>]> = [
        ['CLOSED', async () => undefined],
        ['OPEN', (c) => c.call(M.SCSI_OPEN, { device: 'changer0' })],
        [
          'CLOSED (a tape is open)',
          (c) => c.call(M.TAPE_OPEN, { device: 'tapes/NDM003', mode: TapeOpenMode.NDMP_TAPE_READ_MODE }),
        ],
      ];
      for (const [state, setup] of setups) {
        assert.ok(SCSI_STATE_TABLE.states.includes(state));
        const c = await client(srv.port, 'md5', version);
        try {
          await setup(c);
          for (const { def, rule } of SCSI_STATE_TABLE.rules.values()) {
            if (!def.versions.includes(version)) continue;
            const expected = refusalIn(rule, state, version, def);
            if (!expected) continue;
            await rejectsWith(c.call(def, (bodies[def.code] ?? {}) as never), expected.ndmpError);
          }
        } finally {
          c.destroy();
        }
      }
    });
  }

  test('nothing SCSI before authentication', async () => {
    const c = await client(srv.port, 'none');
    try {
      await c.open(4);
      await rejectsWith(c.call(M.SCSI_OPEN, { device: 'changer0' }), ErrorCode.NDMP_NOT_AUTHORIZED_ERR);
      await rejectsWith(c.call(M.CONFIG_GET_SCSI_INFO, {}), ErrorCode.NDMP_NOT_AUTHORIZED_ERR);
    } finally {
      c.destroy();
    }
  });
});

describe('the library lock', { timeout: 60_000 }, () => {
  async function tape(args: string[]): Promise<{ code: number; out: string; err: string }> {
    try {
      const r = await run(process.execPath, [NDMPD_BIN, 'tape', ...args], { timeout: 20_000 });
      return { code: 0, out: r.stdout, err: r.stderr };
    } catch (e) {
      const x = e as { code: number; stdout: string; stderr: string };
      return { code: x.code, out: x.stdout, err: x.stderr };
    }
  }

  test('while a server runs, ndmpd tape refuses moves naming it; list works; once it is gone, moves work', async () => {
    const p = await startNdmpd({ logLevel: 'info' });
    const l = join(p.dir, 'state', 'library');
    let stopped = false;
    try {
      for (const args of [
        ['unload', 'drive0'],
        ['load', 'NDM003', 'drive0'],
        ['move', 'NDM003', 'mailslot'],
        ['label', 'NDM003', 'x'],
      ]) {
        const r = await tape([...args, '--library', l]);
        assert.equal(r.code, 1, `${args.join(' ')}: ${r.err}`);
        assert.match(r.err, new RegExp(`in use by a running ndmpd \\(pid ${p.child.pid}\\)`));
        assert.match(r.err, /changer0/);
      }
      const list = await tape(['list', '--library', l]);
      assert.equal(list.code, 0, list.err);
      assert.match(list.out, /^NDM001\s.*\sdrive0\s+@500$/m);
      assert.match(list.out, /^NDM003\s.*\sslot 3\s+@1002$/m);
      // A second server on the same library does not start.
      await assert.rejects(
        startNdmpd({ extraArgs: ['--library', l], logLevel: 'info' }),
        /in use by a running ndmpd/,
      );
      // New tapes while it runs: made outside the changer, placed by the server's next inventory.
      const made = await tape(['create', '--library', l]);
      assert.equal(made.code, 0, made.err);
      assert.match(made.err, /next inventory/);
      // The kernel drops the lock with its holder, even one killed outright.
      const gone = new Promise((r) => p.child.once('exit', r));
      p.child.kill('SIGKILL');
      await gone;
      const unload = await tape(['unload', 'drive0', '--library', l]);
      assert.equal(unload.code, 0, unload.err);
      assert.match(unload.out, /NDM001 unloaded from drive0/);
      await p.stop();
      stopped = true;
    } finally {
      if (!stopped) await p.stop().catch(() => undefined);
    }
  });

  test('without a server, ndmpd tape moves and shows where each tape is', async () => {
    const d = mkdtempSync(join(os.tmpdir(), 'ndmpd-lock-'));
    const l = join(d, 'library');
    try {
      assert.equal((await tape(['create', '--count', '3', '--library', l])).code, 0);
      let r = await tape(['load', 'NDM002', 'drive1', '--library', l]);
      assert.equal(r.code, 0, r.err);
      r = await tape(['drives', '--library', l]);
      assert.match(r.out, /^drive1\s+NDMPD-VTL\s+VTL[0-9A-F]+\s+NDM002\s+@501\s+slot 2$/m);
      r = await tape(['move', 'NDM003', 'mailslot', '--library', l]);
      assert.equal(r.code, 0, r.err);
      r = await tape(['slots', '--library', l]);
      assert.match(r.out, /^mailslot 1\s+@10\s+NDM003$/m);
      assert.match(r.out, /^slot 2\s+@1001\s+-$/m);
      r = await tape(['unload', 'drive1', '--library', l]);
      assert.match(r.out, /NDM002 unloaded from drive1/);
      assert.equal(readlinkSync(join(l, 'slots', '2')), '../tapes/NDM002', 'back to the slot it came from');
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  });
});
