// `ndmjob -c` (Amanda's DMA) backs up a tree through ndmpd, LOCAL (data and
// mover on one control connection) and three-way (two control connections,
// the stream between them over TCP). Success is ndmjob's own verdict ("Operation ended
// OKAY": data halted SUCCESSFUL, mover CONNECT_CLOSED); then the tape file,
// exported with `ndmpd tape export`, is extracted by GNU tar into a tree
// identical to the source.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { NDMPD_BIN, startNdmpd } from '../helpers/ndmpd-process.js';
import type { NdmpdProcess } from '../helpers/ndmpd-process.js';
import { peers, requirePeers, runNdmjob } from '../helpers/peers.js';
import { assertSameTree, makeSampleTree } from '../helpers/trees.js';

describe('ndmjob -c against ndmpd', { timeout: 300_000 }, () => {
  let p: NdmpdProcess | null = null;
  let work = '';

  before(async () => {
    if (!peers.ndmjob) return;
    work = mkdtempSync(join(os.tmpdir(), 'ndmjob-backup-'));
    p = await startNdmpd({ logLevel: 'info' });
  });
  after(async () => {
    await p?.stop();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  // [version, three-way?, tape]: LOCAL (data and mover on one connection, the
  // stream through shared memory) and three-way TCP, in both versions.
  const runs = [
    [4, true, 'NDM001'],
    [3, true, 'NDM002'],
    [4, false, 'NDM003'],
    [3, false, 'NDM004'],
  ] as const;
  for (const [version, threeWay, barcode] of runs) {
    const how = threeWay ? 'three-way (TCP)' : 'LOCAL';
    test(
      `${how} tar backup, v${version}: OKAY, and GNU tar restores the tree`,
      { timeout: 120_000 },
      async (t) => {
        if (!requirePeers(t, ['ndmjob'])) return;
        const tree = join(p!.exportDir, `tree-${barcode}`);
        mkdirSync(tree);
        makeSampleTree(tree);
        const library = join(p!.dir, 'state', 'library');
        // The tape by its path in the library (ndmjob's -f FILE convention).
        const tape = join(library, 'tapes', barcode);
        const agent = `127.0.0.1:${p!.port}/${version}m,${p!.user},${p!.password}`;
        const args = [
          '-c',
          '-D',
          agent,
          ...(threeWay ? ['-T', agent] : []),
          '-B',
          'tar',
          '-C',
          tree,
          '-f',
          tape,
        ];
        const r = await runNdmjob(args, 100_000);
        assert.match(r.output, /Operation ended OKAY/, r.output);

        const exportArgs = [NDMPD_BIN, 'tape', 'export', barcode, '--file', '0', '--library', library];
        const archive = execFileSync(process.execPath, exportArgs, { maxBuffer: 256 * 1024 * 1024 });
        const file = join(work, `${barcode}.tar`);
        writeFileSync(file, archive);
        const out = join(work, `restored-${barcode}`);
        mkdirSync(out);
        execFileSync('tar', ['-xf', file, '-C', out]);
        assertSameTree(tree, out);
      },
    );
  }
});
