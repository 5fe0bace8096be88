// Our DMA against a tape agent that is not ours: ndmpd is the data server,
// Amanda's `ndmjob -o daemon` (its tape simulator) the tape server. The
// stream goes over TCP between the two; the catalog and the restores are
// `ndmp`'s. Also checks that ndmjob's daemon accepts our DMA's requests as
// they come (MOVER_LISTEN order per version, MOVER_READ forwarding).

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { BackupRecord } from '../../src/catalog/types.js';
import type { RestoreOutcome } from '../../src/dma/restore-job.js';
import { freePort, startNdmpd } from '../helpers/ndmpd-process.js';
import type { NdmpdProcess } from '../helpers/ndmpd-process.js';
import { dmaFor } from '../helpers/ndmp-cli.js';
import { NDMJOB, requirePeers } from '../helpers/peers.js';
import { assertSameTree, makeSampleTree } from '../helpers/trees.js';

describe('ndmp three-way: ndmpd data server, ndmjob -o daemon tape server', { timeout: 180_000 }, () => {
  let p: NdmpdProcess;
  let daemon: ChildProcess | null = null;
  let daemonPort = 0;
  let work: string;
  let src: string;

  before(async () => {
    p = await startNdmpd({ logLevel: 'info' });
    work = fs.mkdtempSync(join(os.tmpdir(), 'ndmp-3way-'));
    src = join(p.exportDir, 'sample');
    makeSampleTree(src);
  });
  after(async () => {
    daemon?.kill('SIGKILL');
    await p?.stop();
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  async function startDaemon(): Promise<void> {
    daemonPort = await freePort();
    daemon = spawn(NDMJOB, ['-o', 'daemon', '-p', String(daemonPort)], { stdio: 'ignore', cwd: work });
    // Listening once a connection is accepted.
    const net = await import('node:net');
    for (let i = 0; i < 50; i++) {
      const ok = await new Promise<boolean>((res) => {
        const s = net.connect(daemonPort, '127.0.0.1', () => {
          s.destroy();
          res(true);
        });
        s.once('error', () => res(false));
      });
      if (ok) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error('ndmjob -o daemon did not listen');
  }

  for (const version of ['4', '3'] as const) {
    test(`NDMP v${version}: backup to ndmjob's simulated tape, then restore whole and one file`, async (t) => {
      if (!requirePeers(t, ['ndmjob'])) return;
      if (!daemon) await startDaemon();
      const dma = dmaFor(p, join(work, `catalog-v${version}.sqlite`), join(work, 'state'));
      const tapeFile = join(work, `sim-v${version}.tape`);
      fs.writeFileSync(tapeFile, ''); // an empty file is a blank tape to ndmjob's simulator
      fs.writeFileSync(join(work, 'ndmjob-pass'), 'ndmp\n');
      const v3 = version === '3' ? ['--v3'] : [];
      const tapeArgs = [
        '--tape-server',
        `127.0.0.1:${daemonPort}`,
        '--tape-user',
        'ndmp',
        '--tape-password-file',
        join(work, 'ndmjob-pass'),
        '--tape',
        tapeFile,
      ];
      const r = await dma.call([
        'backup',
        `${dma.server}:${src}`,
        ...dma.creds,
        ...v3,
        ...tapeArgs,
        '--json',
        '-q',
      ]);
      const b = JSON.parse(r.out) as BackupRecord;
      assert.equal(b.status, 'done', `${r.err}\n${b.haltReason}`);
      assert.equal(b.tapeServer, `127.0.0.1:${daemonPort}`);
      assert.deepEqual(
        b.tapes.map((x) => [x.device, x.tapeFile]),
        [[tapeFile, 0]],
      );
      assert.ok(fs.statSync(tapeFile).size > b.bytes, "the stream is on ndmjob's tape file");

      const tapeCred = ['--tape-user', 'ndmp', '--tape-password-file', join(work, 'ndmjob-pass')];
      const whole = join(p.exportDir, `whole-v${version}`);
      const w = await dma.json<RestoreOutcome>([
        'restore',
        String(b.id),
        '--to',
        whole,
        // The sample tree's fifo and setgid directory come back only when asked for.
        '--special',
        ...dma.creds,
        ...v3,
        ...tapeCred,
      ]);
      assert.equal(w.ok, true, JSON.stringify(w));
      assertSameTree(src, whole);

      const one = join(p.exportDir, `one-v${version}`);
      const o = await dma.json<RestoreOutcome>([
        'restore',
        String(b.id),
        join(src, 'sub/b.bin'),
        '--to',
        one,
        ...dma.creds,
        ...v3,
        ...tapeCred,
      ]);
      assert.equal(o.ok, true, JSON.stringify(o));
      // ndmjob's tape agent serves reads only in whole records, so no DAR through it.
      assert.equal(o.dar, false);
      assert.deepEqual(fs.readdirSync(one), ['sub']);
      assert.deepEqual(fs.readdirSync(join(one, 'sub')), ['b.bin']);
      assert.deepEqual(
        fs.readFileSync(join(one, 'sub', 'b.bin')),
        fs.readFileSync(join(src, 'sub', 'b.bin')),
      );
    });
  }
});
