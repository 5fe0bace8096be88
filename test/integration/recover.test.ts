// DATA_START_RECOVER through our own server, from streams nobody honest
// wrote: a hostile archive on tape (`..`, an absolute name, a symlink with an
// entry beneath it) restores its honest entries, reports the others by
// LOG_FILE and writes nothing outside the destination; a truncated or
// garbage stream halts the data service with a clear reason, and the session
// and server go on. Plus the refusals checked before the reply.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { Library } from '../../src/devices/library.js';
import type { NdmpClient } from '../../src/dma/client.js';
import {
  AddrType,
  DataHaltReason,
  ErrorCode,
  INVALID_U64,
  M,
  MoverMode,
  NdmpError,
  RecoveryStatus,
  TapeOpenMode,
} from '../../src/wire/index.js';
import type { HaltedPost, Pval } from '../../src/wire/index.js';
import { archive, entry } from '../helpers/archives.js';
import { client, startServer } from '../helpers/in-process.js';
import type { TestServer } from '../helpers/in-process.js';

const RECORD = 10240;

describe('DATA_START_RECOVER from crafted streams', { timeout: 60_000 }, () => {
  let srv: TestServer;
  let dir: string;
  let lib: Library;

  before(async () => {
    dir = fs.mkdtempSync(join(os.tmpdir(), 'ndmpd-recover-'));
    lib = Library.open(join(dir, 'library'));
    srv = await startServer({}, { library: lib });
  });
  after(async () => {
    await srv.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  /** Writes `bytes` as one tape file of RECORD-sized records (the last zero-padded). */
  async function writeTape(c: NdmpClient, bytes: Buffer): Promise<string> {
    const [barcode] = lib.createTapes({ count: 1 });
    const tape = lib.tapePath(barcode!);
    await c.call(M.TAPE_OPEN, { device: tape, mode: TapeOpenMode.NDMP_TAPE_RDWR_MODE });
    for (let off = 0; off < bytes.length; off += RECORD) {
      const rec = Buffer.alloc(RECORD);
      bytes.copy(rec, 0, off, Math.min(bytes.length, off + RECORD));
      await c.call(M.TAPE_WRITE, { dataOut: rec });
    }
    await c.call(M.TAPE_CLOSE, {});
    return tape;
  }

  /** The tape open for reading, the mover listening LOCAL in WRITE mode, the data service connected to it. */
  async function connectLocal(c: NdmpClient, tape: string): Promise<void> {
    await c.call(M.TAPE_OPEN, { device: tape, mode: TapeOpenMode.NDMP_TAPE_READ_MODE });
    await c.call(M.MOVER_SET_WINDOW, { offset: 0n, length: INVALID_U64 });
    await c.call(M.MOVER_LISTEN, {
      mode: MoverMode.NDMP_MOVER_MODE_WRITE,
      addrType: AddrType.NDMP_ADDR_LOCAL,
    });
    await c.call(M.DATA_CONNECT, { addr: { addrType: AddrType.NDMP_ADDR_LOCAL } });
  }

  /** Recovers the tape over LOCAL as a DMA does (NOTIFY_DATA_READ → MOVER_READ); resolves with the halt and the LOG_FILEs. */
  async function recover(
    c: NdmpClient,
    tape: string,
    env: Pval[],
  ): Promise<{
    halted: HaltedPost;
    logFiles: { name: string; recoveryStatus: number }[];
    messages: string[];
  }> {
    const logFiles: { name: string; recoveryStatus: number }[] = [];
    const messages: string[] = [];
    c.onPost(M.LOG_FILE, (b) => logFiles.push(b));
    c.onPost(M.LOG_MESSAGE, (b) => messages.push(b.entry));
    c.onPost(M.NOTIFY_DATA_READ, (b) => void c.call(M.MOVER_READ, b).catch(() => undefined));
    // The end of the tape file (and no other tape): the stream is over, as ndmjob does it.
    c.onPost(M.NOTIFY_MOVER_PAUSED, () => void c.call(M.MOVER_CLOSE, {}).catch(() => undefined));
    const halted = new Promise<HaltedPost>((r) => c.onPost(M.NOTIFY_DATA_HALTED, r));
    await connectLocal(c, tape);
    await c.call(M.DATA_START_RECOVER, { env, nlist: [], butypeName: 'tar' });
    return { halted: await halted, logFiles, messages };
  }

  test('a hostile archive: honest entries restored, the rest reported by LOG_FILE, nothing outside', async () => {
    const outside = join(srv.exportDir, 'outside');
    fs.mkdirSync(outside);
    fs.writeFileSync(join(outside, 'victim'), 'original');
    const dest = join(srv.exportDir, 'hostile-dest');
    const c = await client(srv.port, 'md5');
    try {
      const bytes = archive([
        { e: entry('good', 'dir') },
        { e: entry('good/file', 'file'), content: 'fine' },
        { e: entry('../escape', 'file'), content: 'x' },
        { e: entry('/tmp/absolute-ndmpd-test', 'file'), content: 'x' },
        { e: entry('link', 'symlink', { linkTarget: outside }) },
        { e: entry('link/victim', 'file'), content: 'overwritten' },
        { e: entry('link/new', 'file'), content: 'planted' },
      ]);
      const tape = await writeTape(c, bytes);
      const { halted, logFiles } = await recover(c, tape, [{ name: 'PREFIX', value: dest }]);
      assert.equal(halted.reason, DataHaltReason.NDMP_DATA_HALT_SUCCESSFUL, halted.textReason);
      assert.equal(fs.readFileSync(join(dest, 'good', 'file'), 'utf8'), 'fine');
      assert.equal(fs.readFileSync(join(outside, 'victim'), 'utf8'), 'original');
      assert.deepEqual(fs.readdirSync(outside), ['victim']);
      assert.equal(fs.existsSync(join(srv.exportDir, 'escape')), false);
      assert.equal(fs.existsSync('/tmp/absolute-ndmpd-test'), false);
      const refused = logFiles.map((l) => l.name).sort();
      assert.deepEqual(refused, ['../escape', '/tmp/absolute-ndmpd-test', 'link/new', 'link/victim']);
      for (const l of logFiles) assert.notEqual(l.recoveryStatus, RecoveryStatus.NDMP_RECOVERY_SUCCESSFUL);
    } finally {
      await c.close();
    }
  });

  for (const [what, bytes, reason] of [
    [
      'a truncated stream',
      archive([{ e: entry('big', 'file'), content: 'y'.repeat(30_000) }]).subarray(0, 12_000),
      /ends inside the data of big/,
    ],
    [
      'a stream that is not an archive',
      Buffer.alloc(3 * RECORD, 0x41),
      /not a valid archive.*(chksum|magic)/,
    ],
  ] as const) {
    test(`${what} halts the recover with a clear reason; the session goes on`, async () => {
      const c = await client(srv.port, 'md5');
      try {
        const tape = await writeTape(c, Buffer.from(bytes));
        const { halted, messages } = await recover(c, tape, [
          { name: 'PREFIX', value: join(srv.exportDir, 'bad') },
        ]);
        assert.equal(halted.reason, DataHaltReason.NDMP_DATA_HALT_INTERNAL_ERROR);
        // v4's NOTIFY_DATA_HALTED has no text: the reason comes as a LOG_MESSAGE.
        assert.ok(
          messages.some((m) => reason.test(m)),
          messages.join('\n'),
        );
        // The session, its data service and the server are fine.
        await c.call(M.DATA_STOP, {});
        await c.call(M.MOVER_ABORT, {}).catch(() => undefined);
        const st = await c.call(M.DATA_GET_STATE, {});
        assert.equal(st.haltReason, DataHaltReason.NDMP_DATA_HALT_NA);
      } finally {
        await c.close();
      }
    });
  }

  test('refused before the reply: no destination, one outside the exports, a bad OVERWRITE', async () => {
    const c = await client(srv.port, 'md5');
    try {
      const tape = await writeTape(c, archive([{ e: entry('f', 'file'), content: 'z' }]));
      await connectLocal(c, tape);
      // The reason is in the server's log; the reply carries the code.
      for (const [env, why] of [
        [[], 'no PREFIX and no nlist'],
        [[{ name: 'PREFIX', value: '/etc/ndmpd-test' }], 'a PREFIX outside the exports'],
        [
          [
            { name: 'PREFIX', value: join(srv.exportDir, 'x') },
            { name: 'OVERWRITE', value: 'maybe' },
          ],
          'OVERWRITE=maybe',
        ],
      ] as const) {
        await assert.rejects(
          c.call(M.DATA_START_RECOVER, { env: [...env], nlist: [], butypeName: 'tar' }),
          (e: unknown) => e instanceof NdmpError && e.ndmpError === ErrorCode.NDMP_ILLEGAL_ARGS_ERR,
          `ILLEGAL_ARGS for ${why}`,
        );
      }
      assert.equal(fs.existsSync('/etc/ndmpd-test'), false);
    } finally {
      await c.close();
    }
  });
});
