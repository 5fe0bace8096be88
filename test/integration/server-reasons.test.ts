// The server says why it refused (issue 16, item 6; docs/protocol.md §2.1):
// before an error reply whose code alone does not say which thing was wrong,
// ndmpd sends a LOG_MESSAGE (ERROR) with its reason, associated with the
// request in v4; our client puts the reason into the error, and `ndmp`
// prints it. Nothing is told before authentication.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import type { BackupRecord } from '../../src/catalog/types.js';
import { NdmpClient } from '../../src/dma/client.js';
import { ErrorCode, LogType, M, NdmpError, TapeOpenMode } from '../../src/wire/index.js';
import type { LogMessagePost, NdmpVersion } from '../../src/wire/index.js';
import { dmaFor } from '../helpers/ndmp-cli.js';
import { startNdmpd } from '../helpers/ndmpd-process.js';
import type { NdmpdProcess } from '../helpers/ndmpd-process.js';

describe('the server says why it refused', { timeout: 120_000 }, () => {
  let p: NdmpdProcess;
  let work: string;

  before(async () => {
    p = await startNdmpd({ logLevel: 'info' });
    work = fs.mkdtempSync(join(os.tmpdir(), 'ndmp-reasons-'));
  });
  after(async () => {
    await p?.stop();
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  async function client(
    version: NdmpVersion,
    login = true,
  ): Promise<{ c: NdmpClient; logs: LogMessagePost[] }> {
    const c = await NdmpClient.connect({ host: p.host, port: p.port, timeoutMs: 10_000 });
    const logs: LogMessagePost[] = [];
    c.onPost(M.LOG_MESSAGE, (b) => logs.push(b));
    await c.open(version);
    if (login) await c.authText(p.user, p.password);
    return { c, logs };
  }

  for (const version of [4, 3] as const) {
    test(`v${version}: a refused TAPE_OPEN comes with its reason, and the client's error carries it`, async () => {
      const { c, logs } = await client(version);
      try {
        await assert.rejects(
          c.call(M.TAPE_OPEN, { device: 'drive9', mode: TapeOpenMode.NDMP_TAPE_READ_MODE }),
          (e: unknown) => {
            assert.ok(e instanceof NdmpError);
            assert.equal(e.ndmpError, ErrorCode.NDMP_NO_DEVICE_ERR);
            assert.match(e.message, /^NDMP_NO_DEVICE_ERR: NDMP_TAPE_OPEN: .*drive9/);
            return true;
          },
        );
        assert.equal(logs.length, 1, JSON.stringify(logs));
        assert.equal(logs[0]!.logType, LogType.NDMP_LOG_ERROR);
        assert.match(logs[0]!.entry, /^NDMP_TAPE_OPEN refused \(NDMP_NO_DEVICE_ERR\): .*drive9/);
        assert.equal(logs[0]!.associatedMessageValid, version === 4 ? 1 : 0);
      } finally {
        await c.close();
      }
    });
  }

  test('before authentication nothing is told', async () => {
    const { c, logs } = await client(4, false);
    try {
      await assert.rejects(c.call(M.TAPE_OPEN, { device: 'drive9', mode: TapeOpenMode.NDMP_TAPE_READ_MODE }));
      assert.deepEqual(logs, []);
    } finally {
      await c.close();
    }
  });

  test('a refused backup prints the server\u2019s reason and leaves no backup in the list', async () => {
    const dma = dmaFor(p, join(work, 'refused.sqlite'), join(work, 'state-refused'));
    const r = await dma.call(['backup', `${dma.server}:/etc`, ...dma.creds], 1);
    assert.match(r.err, /NDMP_DATA_START_BACKUP: .*\/etc.*not inside an export/, r.err);
    assert.deepEqual(await dma.json<BackupRecord[]>(['backups']), []);
    // The drive and the tape are free again: a backup of an exported path goes through.
    const ok = JSON.parse(
      (await dma.call(['backup', `${dma.server}:${p.exportDir}`, ...dma.creds, '--json'])).out,
    ) as BackupRecord;
    assert.equal(ok.status, 'done');
  });

  test('ndmp restore to a directory outside every export prints the server\u2019s reason', async () => {
    const dma = dmaFor(p, join(work, 'catalog.sqlite'), join(work, 'state'));
    const b = JSON.parse(
      (await dma.call(['backup', `${dma.server}:${p.exportDir}`, ...dma.creds, '--json'])).out,
    ) as BackupRecord;
    assert.equal(b.status, 'done');
    const r = await dma.call(
      ['restore', String(b.id), '--to', '/tmp/elsewhere-not-exported', ...dma.creds],
      1,
    );
    assert.match(r.err, /NDMP_ILLEGAL_ARGS_ERR: NDMP_DATA_START_RECOVER: .*not inside an export/, r.err);
  });
});
