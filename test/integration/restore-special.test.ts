// RESTORE_SPECIAL (issue 12, finding 8), end to end: ndmpd and ndmp as
// processes, a real backup of a tree holding a fifo, a character device and
// a setuid-root program. By default the restore creates neither node and
// clears setuid/setgid, naming each entry in a warning, and succeeds;
// `ndmp restore --special` (RESTORE_SPECIAL=y) restores them as stored.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { BackupRecord } from '../../src/catalog/types.js';
import type { RestoreOutcome } from '../../src/dma/restore-job.js';
import { startNdmpd } from '../helpers/ndmpd-process.js';
import type { NdmpdProcess } from '../helpers/ndmpd-process.js';
import { dmaFor } from '../helpers/ndmp-cli.js';

const root = process.getuid?.() === 0;

describe('RESTORE_SPECIAL: device nodes, fifos and setuid bits from a tape', { timeout: 120_000 }, () => {
  let p: NdmpdProcess;
  let work: string;
  let src: string;
  let dma: ReturnType<typeof dmaFor>;
  let backup: BackupRecord;

  before(async () => {
    p = await startNdmpd({ logLevel: 'info' });
    work = fs.mkdtempSync(join(os.tmpdir(), 'ndmp-special-'));
    src = join(p.exportDir, 'special');
    fs.mkdirSync(join(src, 'bin'), { recursive: true });
    fs.writeFileSync(join(src, 'bin', 'suid-root'), '#!/bin/sh\nid\n');
    fs.chmodSync(join(src, 'bin', 'suid-root'), 0o4755);
    fs.writeFileSync(join(src, 'plain.txt'), 'plain\n');
    execFileSync('mkfifo', [join(src, 'pipe')]);
    // A character device (as root only: others cannot make one, and the backup then has none).
    if (root) execFileSync('mknod', [join(src, 'null'), 'c', '1', '3']);
    dma = dmaFor(p, join(work, 'catalog.sqlite'), join(work, 'state'));
    backup = await dma.json<BackupRecord>(['backup', `${dma.server}:${src}`, ...dma.creds, '-q']);
    assert.equal(backup.status, 'done');
  });
  after(async () => {
    await p?.stop();
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  test('default: no fifo, no device node, setuid cleared, each named in a warning; the restore succeeds', async () => {
    const to = join(p.exportDir, 'safe');
    const r = await dma.call(['restore', String(backup.id), '--to', to, ...dma.creds, '--json']);
    const outcome = JSON.parse(r.out) as RestoreOutcome;
    assert.equal(outcome.ok, true, r.err);
    assert.equal(outcome.dataHalt, 'SUCCESSFUL');
    const dest = to; // a whole backup: its root's entries straight into --to
    assert.equal(fs.existsSync(join(dest, 'pipe')), false);
    assert.match(
      r.err,
      /^warning: pipe: withheld: a fifo: not restored; set RESTORE_SPECIAL=y to restore it$/m,
    );
    if (root) {
      assert.equal(fs.existsSync(join(dest, 'null')), false);
      assert.match(
        r.err,
        /^warning: null: withheld: a character device: not restored; set RESTORE_SPECIAL=y/m,
      );
    }
    assert.equal(fs.statSync(join(dest, 'bin', 'suid-root')).mode & 0o7777, 0o755);
    assert.match(r.err, /^warning: bin\/suid-root: restored without its setuid\/setgid bits/m);
    assert.equal(fs.readFileSync(join(dest, 'plain.txt'), 'utf8'), 'plain\n');
  });

  test('--special (RESTORE_SPECIAL=y): everything exactly as stored', async () => {
    const to = join(p.exportDir, 'exact');
    const r = await dma.call(['restore', String(backup.id), '--to', to, '--special', ...dma.creds, '--json']);
    assert.equal((JSON.parse(r.out) as RestoreOutcome).ok, true, r.err);
    assert.doesNotMatch(r.err, /withheld|without its setuid/);
    const dest = to; // a whole backup: its root's entries straight into --to
    assert.ok(fs.lstatSync(join(dest, 'pipe')).isFIFO());
    const suid = fs.statSync(join(dest, 'bin', 'suid-root'));
    assert.equal(suid.mode & 0o7777, 0o4755);
    if (root) {
      assert.equal(suid.uid, 0);
      const dev = fs.lstatSync(join(dest, 'null'));
      assert.ok(dev.isCharacterDevice());
      assert.equal(dev.rdev, fs.statSync('/dev/null').rdev);
    }
  });

  test('a RESTORE_SPECIAL the server cannot read is refused, naming it', async () => {
    const r = await dma.call(
      [
        'restore',
        String(backup.id),
        '--to',
        join(p.exportDir, 'x'),
        '--env',
        'RESTORE_SPECIAL=perhaps',
        ...dma.creds,
      ],
      1,
    );
    assert.match(r.err, /NDMP_ILLEGAL_ARGS_ERR/);
  });
});
