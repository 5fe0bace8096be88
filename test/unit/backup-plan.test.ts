// What a DATA_START_BACKUP's environment comes to (services/data/backup-plan.ts)
// and the stream sinks of a backup operation (services/data/backup-operation.ts):
// refusals name what is wrong, the server's additions to the environment, and
// a sink that stops on an abort and fails when the mover is gone.

import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, realpathSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { HistoryModel } from '../../src/history/record.js';
import { SpscRing } from '../../src/ring/spsc-ring.js';
import { failedHalt, ringSink, socketSink } from '../../src/services/data/backup-operation.js';
import { backupEnv, planBackup, planBackupLevel, setEnv } from '../../src/services/data/backup-plan.js';
import { DataHaltReason, ErrorCode, NdmpError } from '../../src/wire/index.js';
import type { Pval } from '../../src/wire/index.js';

let dir: string;
let exports: { name: string; path: string }[];

before(() => {
  dir = realpathSync(mkdtempSync(join(os.tmpdir(), 'ndmpd-backup-plan-')));
  mkdirSync(join(dir, 'tree'));
  exports = [{ name: 'tree', path: join(dir, 'tree') }];
});
after(() => rmSync(dir, { recursive: true, force: true }));

const env = (o: Record<string, string>): Pval[] =>
  Object.entries(o).map(([name, value]) => ({ name, value }));

function illegal(f: () => unknown, text: RegExp): void {
  assert.throws(f, (e: unknown) => {
    assert.ok(e instanceof NdmpError);
    assert.equal(e.ndmpError, ErrorCode.NDMP_ILLEGAL_ARGS_ERR);
    assert.match(e.message, text);
    return true;
  });
}

test('planBackup: the tree, its parts, the history model; metadata on unless the env says n', () => {
  const ignored: Pval[] = [];
  const root = join(dir, 'tree');
  const p = planBackup(
    [
      ...env({ FILESYSTEM: root, HIST: 'd', XATTRS: 'n', SOMETHING: 'else' }),
      ...env({ FILES: 'a' }),
      ...env({ FILES: 'b' }),
    ],
    exports,
    (v) => ignored.push(v),
  );
  assert.equal(p.root, root);
  assert.deepEqual(p.files, ['a', 'b']);
  assert.deepEqual(p.excludes, []);
  assert.equal(p.model, HistoryModel.DIRNODE);
  assert.equal(p.xattrs, false);
  assert.equal(p.acls, true);
  assert.deepEqual(ignored, [{ name: 'SOMETHING', value: 'else' }]);
  // PREFIX stands in for FILESYSTEM; no HIST is no history.
  assert.equal(planBackup(env({ PREFIX: root }), exports, () => undefined).model, HistoryModel.NONE);
});

test('planBackup: ILLEGAL_ARGS naming what is wrong', () => {
  const root = join(dir, 'tree');
  illegal(() => planBackup([], exports, () => undefined), /FILESYSTEM is not set/);
  illegal(() => planBackup(env({ FILESYSTEM: dir }), exports, () => undefined), /is not inside an export/);
  illegal(
    () => planBackup(env({ FILESYSTEM: root, HIST: 'q' }), exports, () => undefined),
    /: HIST=q: say y/,
  );
  illegal(
    () => planBackup(env({ FILESYSTEM: root, ACLS: 'maybe' }), exports, () => undefined),
    /: ACLS=maybe: say y/,
  );
});

test('planBackupLevel: without a state dir only an unrecorded full backup', () => {
  const root = join(dir, 'tree');
  assert.equal(planBackupLevel(env({ LEVEL: '0' }), root, null), null);
  illegal(() => planBackupLevel(env({ LEVEL: '1' }), root, null), /need a state dir/);
  illegal(() => planBackupLevel(env({ BASE_DATE: '12345' }), root, null), /need a state dir/);
});

test("backupEnv: the DMA's variables in its order, then what the server decided; setEnv replaces", () => {
  const dma = env({ FILESYSTEM: '/x', TYPE: 'tar' });
  const out = backupEnv(dma);
  assert.deepEqual(out, [...dma, ...env({ PATHNAME_SEPARATOR: '/', DIRECT: 'y' })]);
  assert.equal(dma.length, 2, "the DMA's list is left as it was");
  assert.deepEqual(
    backupEnv(env({ DIRECT: 'n', PATHNAME_SEPARATOR: '/' })),
    env({ DIRECT: 'n', PATHNAME_SEPARATOR: '/', TYPE: 'tar' }),
  );
  setEnv(out, env({ DUMP_DATE: '7', DIRECT: 'n' }));
  assert.deepEqual(out, [...dma, ...env({ PATHNAME_SEPARATOR: '/', DUMP_DATE: '7', DIRECT: 'n' })]);
});

test('ringSink: the bytes reach the ring; an abort stops the write; a mover gone fails it', async () => {
  const ring = new SpscRing(SpscRing.allocate(64 * 1024));
  let abort = false;
  const sink = ringSink(ring, () => abort);
  await sink.write(new Uint8Array(1000).fill(7));
  assert.equal(ring.used, 1000);
  abort = true;
  await sink.write(new Uint8Array(1000));
  assert.equal(ring.used, 1000, 'nothing written once aborted');
  abort = false;
  ring.abort();
  await assert.rejects(sink.write(new Uint8Array(10)), (e: unknown) => {
    assert.equal(failedHalt(e).reason, DataHaltReason.NDMP_DATA_HALT_CONNECT_ERROR);
    assert.equal(failedHalt(e).text, 'backup failed: the mover closed the data connection');
    return true;
  });
  // Bytes left in a ring the mover abandoned never reached the tape.
  await assert.rejects(sink.end(), /the mover closed the data connection/);
});

test('socketSink: a closed data connection fails the write as CONNECT_ERROR; other failures are INTERNAL_ERROR', async () => {
  const server = net.createServer((s) => s.resume());
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  try {
    const sock = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
    await new Promise<void>((r) => sock.once('connect', r));
    const sink = socketSink(sock);
    await sink.write(new Uint8Array(100));
    sock.destroy();
    await assert.rejects(sink.write(new Uint8Array(100)), (e: unknown) => {
      assert.equal(failedHalt(e).reason, DataHaltReason.NDMP_DATA_HALT_CONNECT_ERROR);
      return true;
    });
  } finally {
    server.close();
  }
  assert.deepEqual(failedHalt(new Error('disk on fire')), {
    reason: DataHaltReason.NDMP_DATA_HALT_INTERNAL_ERROR,
    text: 'backup failed: disk on fire',
  });
});
