// `ndmp` never waits forever (issue 12, finding 2): ndmpd and ndmp as
// processes, tiny tapes. A spanning backup that runs out of blank tapes ends
// at once with the reason, both sides aborted and the drive free for the
// next backup; a server that stops answering mid-job (SIGSTOP) ends ndmp
// with the timeout message.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { BackupRecord } from '../../src/catalog/types.js';
import { NDMP_BIN, startNdmpd } from '../helpers/ndmpd-process.js';
import type { NdmpdProcess } from '../helpers/ndmpd-process.js';
import { addTapes, dmaFor, runNdmp } from '../helpers/ndmp-cli.js';

/** The server's log lines (JSON) of one connection. */
function logsOf(p: NdmpdProcess, conn: number): Array<{ msg: string; reason?: string }> {
  return p
    .logs()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as { conn?: number; msg: string; reason?: string })
    .filter((l) => l.conn === conn);
}

/** The connection of the server's last "backup started". */
function lastBackupConn(p: NdmpdProcess): number {
  const started = p
    .logs()
    .split('\n')
    .filter((l) => l.includes('"backup started"'))
    .map((l) => (JSON.parse(l) as { conn: number }).conn);
  assert.ok(started.length > 0, 'no backup started in the server log');
  return started[started.length - 1]!;
}

describe('ndmp ends its waits', { timeout: 240_000 }, () => {
  let p: NdmpdProcess;
  let work: string;
  let src: string;
  let dma: ReturnType<typeof dmaFor>;
  let catalog: string;

  before(async () => {
    // One drive: the library's first start makes two tapes and loads one; ndmp, through the
    // changer, puts that one back in its slot to make room, and uses it too (docs/dma.md).
    // Slots for every tape the tests add: a blank tape outside the changer cannot be loaded.
    p = await startNdmpd({
      logLevel: 'info',
      extraArgs: ['--tape-capacity', '1M', '--drives', '1', '--slots', '32'],
    });
    work = fs.mkdtempSync(join(os.tmpdir(), 'ndmp-waits-'));
    src = join(p.exportDir, 'big');
    fs.mkdirSync(src);
    // 5 MiB that does not compress: five and a bit 1 MiB tapes.
    for (let i = 0; i < 5; i++) fs.writeFileSync(join(src, `chunk${i}.bin`), randomBytes(1024 * 1024));
    catalog = join(work, 'catalog.sqlite');
    dma = dmaFor(p, catalog, join(work, 'state'));
    await dma.ready();
  });
  after(async () => {
    await p?.stop();
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  test('out of blank tapes mid-backup: exit 1 with the reason, catalog says failed, the next backup works', async () => {
    addTapes(p, 1, '1M'); // three blank tapes for a backup that needs six
    // A bound far beyond the job's own: a hang shows as a killed process, not exit 1.
    const r = await runNdmp(
      ['backup', `${dma.server}:${src}`, ...dma.creds, '--catalog', catalog, '--timeout', '10', '-q'],
      { NDMP_STATE_DIR: join(work, 'state') },
      120_000,
    );
    assert.equal(r.code, 1, `ndmp exited ${r.code}\n${r.err}\n${r.out}`);
    const reason =
      /no tape left for part 4 of backup 1 in pool default \(127\.0\.0\.1:\d+'s library has 3 tapes: 3 full\): add tapes with 'ndmpd tape create', or free the pool's tapes with 'ndmp forget' and 'ndmp prune', and run the backup again/;
    assert.match(r.err, reason);
    assert.match(r.out, /: failed \(no tape left for part 4/);

    const [b] = await dma.json<BackupRecord[]>(['backups']);
    assert.equal(b!.status, 'failed');
    assert.match(b!.haltReason ?? '', reason);
    assert.equal(b!.tapes.length, 3);

    // Both sides were aborted and halted; the tape was closed before the search for another.
    const conn = logsOf(p, lastBackupConn(p));
    assert.ok(
      conn.some((l) => l.msg === 'mover halted' && l.reason === 'ABORTED'),
      JSON.stringify(conn),
    );
    assert.ok(
      conn.some((l) => l.msg === 'data service halted'),
      JSON.stringify(conn),
    );
    assert.ok(conn.some((l) => l.msg === 'tape closed'));

    // The drive and the mover are free: with tapes enough, the same backup goes through.
    addTapes(p, 6, '1M');
    const again = await dma.json<BackupRecord>(['backup', `${dma.server}:${src}`, ...dma.creds, '-q']);
    assert.equal(again.status, 'done');
    assert.ok(again.tapes.length >= 5, JSON.stringify(again.tapes));
  });

  test("the server's log lines keep their own level: a backup's level is backupLevel", () => {
    const started = p
      .logs()
      .split('\n')
      .filter((l) => l.includes('"backup started"'))
      .map((l) => JSON.parse(l) as { level: unknown; backupLevel: unknown });
    assert.ok(started.length > 0, 'a backup ran');
    // pino's info is 30; a field named `level` used to overwrite it with the backup's level (0).
    for (const l of started) assert.deepEqual([l.level, l.backupLevel], [30, 0]);
  });

  test('a server that stops answering mid-job: ndmp ends with the timeout message', async () => {
    addTapes(p, 8, '1M');
    const child = spawn(
      process.execPath,
      [
        NDMP_BIN,
        'backup',
        `${dma.server}:${src}`,
        ...dma.creds,
        '--catalog',
        catalog,
        '--timeout',
        '3',
        '--tape-timeout',
        '3',
      ],
      { env: { ...process.env, NDMP_STATE_DIR: join(work, 'state') }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let err = '';
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number | null>((res) => child.once('exit', (code) => res(code)));
    // The first tape is full: the mover now waits for the DMA's MOVER_CONTINUE, so the
    // backup cannot end without the server answering again (and more tape changes follow).
    // The stop may land in the tape change's open or rewind, whose own bound (--tape-timeout,
    // an hour by default for real drives) is set to the reply timeout here.
    const full = new Promise<boolean>((res) => {
      const timer = setTimeout(() => res(false), 60_000);
      child.stderr.on('data', (d: Buffer) => {
        err += d.toString();
        if (/is full at stream byte/.test(err)) {
          clearTimeout(timer);
          res(true);
        }
      });
    });
    let stopped = false;
    try {
      assert.ok(await full, `no tape change seen:\n${err}`);
      process.kill(p.child.pid!, 'SIGSTOP');
      stopped = true;
      const bound = new Promise<'hung'>((res) => setTimeout(() => res('hung'), 90_000).unref());
      const code = await Promise.race([exited, bound]);
      if (code === 'hung') child.kill('SIGKILL');
      assert.equal(code, 3, `ndmp ended ${String(code)}\n${err}\n${out}`);
      assert.match(
        err,
        /^ndmp: NDMP_\w+: no reply from 127\.0\.0\.1:\d+ in 3 s: the server stopped answering, so the job was abandoned/m,
      );
    } finally {
      if (stopped) process.kill(p.child.pid!, 'SIGCONT');
      if (child.exitCode === null) child.kill('SIGKILL');
    }
    const [b] = await dma.json<BackupRecord[]>(['backups']);
    assert.equal(b!.status, 'failed');
    assert.match(b!.haltReason ?? '', /no reply from .* in 3 s/);
  });
});
