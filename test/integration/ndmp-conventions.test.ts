// `ndmp`'s exit conventions (issue 16, item 7): a usage error is one line and
// a hint, exit 2; help and version exit 0; Ctrl-C during a job aborts it
// cleanly and exits 130, the catalog saying the backup was interrupted.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import type { BackupRecord } from '../../src/catalog/types.js';
import { dmaFor, runNdmp } from '../helpers/ndmp-cli.js';
import { NDMP_BIN, startNdmpd } from '../helpers/ndmpd-process.js';
import type { NdmpdProcess } from '../helpers/ndmpd-process.js';

test('usage errors: one line and a hint, exit 2; help and version exit 0', async () => {
  for (const args of [['backup', '--bogus'], ['nosuchcommand'], ['backup']]) {
    const r = await runNdmp(args);
    assert.equal(r.code, 2, `ndmp ${args.join(' ')}: ${r.err}`);
    const lines = r.err.trim().split('\n');
    assert.equal(lines.length, 2, r.err);
    assert.match(lines[0]!, /^error: /);
    assert.match(lines[1]!, /ndmp --help/);
    assert.equal(r.out, '');
  }
  for (const args of [['--help'], ['backup', '--help'], ['--version']]) {
    const r = await runNdmp(args);
    assert.equal(r.code, 0, `ndmp ${args.join(' ')}: ${r.err}`);
    assert.notEqual(r.out, '');
  }
});

describe('Ctrl-C during a backup', { timeout: 120_000 }, () => {
  let p: NdmpdProcess;
  let work: string;

  before(async () => {
    p = await startNdmpd({ logLevel: 'info' });
    work = fs.mkdtempSync(join(os.tmpdir(), 'ndmp-sigint-'));
    const big = join(p.exportDir, 'big');
    fs.mkdirSync(big);
    // Enough that the backup is still running when the signal comes.
    for (let i = 0; i < 40; i++) fs.writeFileSync(join(big, `f${i}.bin`), randomBytes(8 << 20));
  });
  after(async () => {
    await p?.stop();
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  test('aborts the job, records it failed as interrupted, exits 130', async () => {
    const dma = dmaFor(p, join(work, 'catalog.sqlite'), join(work, 'state'));
    await dma.ready();
    const child = spawn(
      process.execPath,
      [
        NDMP_BIN,
        'backup',
        `${dma.server}:${join(p.exportDir, 'big')}`,
        ...dma.creds,
        '--catalog',
        join(work, 'catalog.sqlite'),
      ],
      {
        env: {
          ...process.env,
          NDMP_STATE_DIR: join(work, 'state'),
          NDMPD_STATE_DIR: '/nonexistent-ndmpd-state',
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let err = '';
    child.stderr.on('data', (d: Buffer) => {
      err += d.toString();
      if (/writing tape/.test(err) && !child.killed) child.kill('SIGINT');
    });
    const code = await new Promise<number | null>((res) => child.once('exit', (c) => res(c)));
    assert.equal(code, 130, err);
    assert.match(err, /interrupted, aborting the job/);
    const [b] = await dma.json<BackupRecord[]>(['backups']);
    assert.equal(b!.status, 'failed');
    assert.match(b!.haltReason ?? '', /interrupted/);
  });

  test('progress: the whole, % and ETA from the server; a whole restore counts its files', async () => {
    const dma = dmaFor(p, join(work, 'progress.sqlite'), join(work, 'state'));
    await dma.ready();
    // Lines often enough to see some in a backup of seconds ($NDMP_PROGRESS_INTERVAL, docs/dma.md).
    const env = { NDMP_STATE_DIR: join(work, 'state'), NDMP_PROGRESS_INTERVAL: '0.05' };
    const big = join(p.exportDir, 'big');
    const args = ['--catalog', join(work, 'progress.sqlite'), ...dma.creds];
    const backup = await runNdmp(['backup', `${dma.server}:${big}`, ...args, '--json'], env, 120_000);
    assert.equal(backup.code, 0, backup.err);
    const lines = backup.err.split('\n').filter((l) => l.startsWith('backup '));
    assert.ok(lines.length > 0, backup.err);
    assert.match(
      lines.join('\n'),
      /: [\d.]+ [KMG]i?B of ~[\d.]+ [KMG]iB \(\d+%\), \d+ files, .*, ETA \d+ (s|min)/,
    );
    const b = JSON.parse(backup.out) as { id: number; files: number };

    const to = join(p.exportDir, 'restored');
    const restore = await runNdmp(['restore', String(b.id), '--to', to, ...args], env, 120_000);
    assert.equal(restore.code, 0, restore.err);
    const rl = restore.err.split('\n').filter((l) => l.startsWith('restore '));
    assert.ok(rl.length > 0, restore.err);
    // The files the stream has passed, counted from the catalog; the whole is the backup's size.
    const counts = rl.map((l) => Number(/, (\d+) files/.exec(l)?.[1] ?? -1));
    assert.ok(
      counts.some((n) => n > 0 && n <= b.files),
      rl.join('\n'),
    );
    assert.match(rl.join('\n'), / of ~[\d.]+ MiB \(\d+%\)/);
    fs.rmSync(to, { recursive: true, force: true });
  });
});
