// Backups through our own server end to end, driven by our client: the data
// service streams a pax backup over TCP to the mover of the same server, the
// mover writes it to a virtual tape, and GNU tar extracts the tape file into a
// tree identical to the source. Plus the refusals of DATA_START_BACKUP and an
// abort in the middle.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
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
  MoverHaltReason,
  MoverMode,
  NdmpError,
  TapeOpenMode,
} from '../../src/wire/index.js';
import type { HaltedPost, Pval } from '../../src/wire/index.js';
import { client, startServer } from '../helpers/in-process.js';
import type { TestServer } from '../helpers/in-process.js';
import { tapeFileBytes } from '../helpers/tapes.js';
import { assertSameTree, makeSampleTree } from '../helpers/trees.js';

function halts(c: NdmpClient) {
  const data = new Promise<HaltedPost>((r) => c.onPost(M.NOTIFY_DATA_HALTED, r));
  const mover = new Promise<HaltedPost>((r) => c.onPost(M.NOTIFY_MOVER_HALTED, r));
  return { data, mover };
}

describe('backup over TCP to this server’s mover', { timeout: 60_000 }, () => {
  let srv: TestServer;
  let dir: string;
  let lib: Library;
  let tree: string;

  before(async () => {
    dir = mkdtempSync(join(os.tmpdir(), 'ndmpd-backup-'));
    lib = Library.open(join(dir, 'library'));
    srv = await startServer({}, { library: lib });
    tree = join(srv.exportDir, 'tree');
    mkdirSync(tree);
    makeSampleTree(tree);
  });
  after(async () => {
    await srv.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Opens a fresh tape, the mover listening (TCP, READ), the data service connected to it. */
  async function connected(c: NdmpClient): Promise<string> {
    const [barcode] = lib.createTapes({ count: 1 });
    const tape = lib.tapePath(barcode!);
    await c.call(M.TAPE_OPEN, { device: tape, mode: TapeOpenMode.NDMP_TAPE_RDWR_MODE });
    await c.call(M.MOVER_SET_WINDOW, { offset: 0n, length: INVALID_U64 });
    const { connectAddr } = await c.call(M.MOVER_LISTEN, {
      mode: MoverMode.NDMP_MOVER_MODE_READ,
      addrType: AddrType.NDMP_ADDR_TCP,
    });
    await c.call(M.DATA_CONNECT, { addr: connectAddr });
    return tape;
  }

  test('a tar backup reaches the tape and GNU tar restores the tree exactly', async () => {
    const c = await client(srv.port, 'md5');
    try {
      const tape = await connected(c);
      const h = halts(c);
      const env: Pval[] = [
        { name: 'FILESYSTEM', value: tree },
        { name: 'HIST', value: 'n' },
        { name: 'TYPE', value: 'tar' },
        { name: 'SOMETHING_ELSE', value: 'kept' },
      ];
      await c.call(M.DATA_START_BACKUP, { butypeName: 'tar', env });
      assert.equal((await h.data).reason, DataHaltReason.NDMP_DATA_HALT_SUCCESSFUL);
      assert.equal((await h.mover).reason, MoverHaltReason.NDMP_MOVER_HALT_CONNECT_CLOSED);
      const st = await c.call(M.DATA_GET_STATE, {});
      const { env: back } = await c.call(M.DATA_GET_ENV, {});
      // Everything the DMA sent, in order, then what the server added.
      assert.deepEqual(back.slice(0, env.length), env);
      assert.ok(back.some((p) => p.name === 'PATHNAME_SEPARATOR' && p.value === '/'));
      const moved = (await c.call(M.MOVER_GET_STATE, {})).bytesMoved;
      assert.equal(moved, st.bytesProcessed);
      await c.call(M.DATA_STOP, {});
      await c.call(M.MOVER_STOP, {});
      await c.call(M.TAPE_CLOSE, {});

      const archive = tapeFileBytes(tape, 0);
      const file = join(dir, 'backup.tar');
      writeFileSync(file, archive);
      const out = join(dir, 'restored');
      mkdirSync(out);
      execFileSync('tar', ['-xf', file, '-C', out]);
      assertSameTree(tree, out);
    } finally {
      c.destroy();
    }
  });

  test('refusals: another butype, FILESYSTEM outside the exports, LEVEL above 9, a HIST value that means nothing', async () => {
    const c = await client(srv.port, 'md5');
    try {
      await connected(c);
      const start = (butypeName: string, env: Pval[]) => c.call(M.DATA_START_BACKUP, { butypeName, env });
      // The reply carries only the code; the reason is in the server's log.
      const refused = async (p: Promise<unknown>, re: RegExp) => {
        await assert.rejects(
          p,
          (e: unknown) => e instanceof NdmpError && e.ndmpError === ErrorCode.NDMP_ILLEGAL_ARGS_ERR,
        );
        assert.match(srv.logText(), re);
      };
      await refused(start('dump', [{ name: 'FILESYSTEM', value: tree }]), /only tar/);
      await refused(start('tar', [{ name: 'FILESYSTEM', value: '/etc' }]), /not inside an export/);
      await refused(start('tar', []), /FILESYSTEM is not set/);
      await refused(start('tar', [{ name: 'FILESYSTEM', value: join(tree, 'nope') }]), /FILESYSTEM/);
      await refused(
        start('tar', [
          { name: 'FILESYSTEM', value: tree },
          { name: 'LEVEL', value: '10' },
        ]),
        /LEVEL=10/,
      );
      await refused(
        start('tar', [
          { name: 'FILESYSTEM', value: tree },
          { name: 'HIST', value: 'maybe' },
        ]),
        /HIST=maybe/,
      );
      // Refused starts leave the data service where it was.
      const h = halts(c);
      await c.call(M.DATA_ABORT, {});
      assert.equal((await h.data).reason, DataHaltReason.NDMP_DATA_HALT_ABORTED);
    } finally {
      c.destroy();
    }
  });

  test('EXCLUDE and FILES choose what is backed up', async () => {
    const c = await client(srv.port, 'md5');
    try {
      const tape = await connected(c);
      const h = halts(c);
      await c.call(M.DATA_START_BACKUP, {
        butypeName: 'tar',
        env: [
          { name: 'FILESYSTEM', value: tree },
          { name: 'FILES', value: 'sub' },
          { name: 'FILES', value: 'a.txt' },
          { name: 'EXCLUDE', value: '*.bin' },
        ],
      });
      assert.equal((await h.data).reason, DataHaltReason.NDMP_DATA_HALT_SUCCESSFUL);
      await h.mover;
      await c.call(M.TAPE_CLOSE, {});
      const archive = tapeFileBytes(tape, 0);
      const file = join(dir, 'selected.tar');
      writeFileSync(file, archive);
      const names = execFileSync('tar', ['-tf', file], { encoding: 'utf8' }).trim().split('\n');
      assert.deepEqual(names, ['sub/', 'sub/deeper/', 'sub/deeper/exactly-512', 'a.txt']);
    } finally {
      c.destroy();
    }
  });
});
