// ndmjob's own conformance suites against the real ndmpd: `-o test-tape`
// (every phase, T-OC through T-MTIO), `-o test-mover` and `-o test-data`, in NDMP v4 and v3,
// on a blank tape image inside the server's library (ndmjob's `-f FILE`
// convention) and on a library drive. ndmjob stops at the first failed or
// warned step (docs/interop.md), so "FINAL ... warn=0 fail=0" means every step ran
// and passed. test-tape needs the g_malloc(0) shim for this ndmjob build.

import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { Library } from '../../src/devices/library.js';
import { startNdmpd } from '../helpers/ndmpd-process.js';
import type { NdmpdProcess } from '../helpers/ndmpd-process.js';
import { buildNdmjobFixes, peers, requirePeers, runNdmjob } from '../helpers/peers.js';

const TAPE_PHASES = ['T-OC', 'T-BGS', 'T-BW', 'T-BR', 'T-BWR', 'T-WRITE', 'T-READ', 'T-MTIO'];

/** The FINAL line's counts, or null when ndmjob did not get there. */
function final(output: string, series: string): { pass: number; warn: number; fail: number } | null {
  const m = new RegExp(`FINAL ${series} Passed -- pass=(\\d+) warn=(\\d+) fail=(\\d+)`).exec(output);
  return m ? { pass: Number(m[1]), warn: Number(m[2]), fail: Number(m[3]) } : null;
}

describe('ndmjob conformance: test-tape, test-mover, test-data', { timeout: 600_000 }, () => {
  let p: NdmpdProcess | null = null;
  let work = '';
  let library = '';
  let shim = '';

  before(async () => {
    if (!peers.ndmjob) return;
    work = mkdtempSync(join(os.tmpdir(), 'ndmjob-conf-'));
    library = join(work, 'library');
    mkdirSync(join(library, 'tapes'), { recursive: true });
    // drive0 holds a labelled tape, as an operator would set it up.
    const lib = Library.open(library);
    const [barcode] = lib.createTapes({ count: 1, label: 'conformance' });
    lib.load(barcode!, 'drive0');
    shim = buildNdmjobFixes(work);
    p = await startNdmpd({ extraArgs: ['--library', library], logLevel: 'info' });
  });

  after(async () => {
    await p?.stop();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  /** A fresh empty file in the library: a blank tape by ndmjob's convention. */
  function blankTape(name: string): string {
    const path = join(library, 'tapes', name);
    writeFileSync(path, '');
    return path;
  }

  for (const version of [4, 3] as const) {
    test(`test-tape v${version}: every phase passes`, { timeout: 180_000 }, async (t) => {
      if (!requirePeers(t, ['ndmjob'])) return;
      const agent = `127.0.0.1:${p!.port}/${version}t,${p!.user},${p!.password}`;
      const r = await runNdmjob(
        ['-vv', '-o', 'test-tape', '-T', agent, '-f', blankTape(`tt-v${version}`)],
        150_000,
        {
          ...process.env,
          LD_PRELOAD: shim,
        },
      );
      const counts = final(r.output, 'test-tape');
      assert.ok(counts, `no FINAL line:\n${r.output.slice(-4000)}`);
      assert.equal(counts.fail, 0, r.output.slice(-4000));
      assert.equal(counts.warn, 0, r.output.slice(-4000));
      for (const phase of TAPE_PHASES)
        assert.match(r.output, new RegExp(`\\b${phase}\\b`), `phase ${phase} missing`);
      t.diagnostic(`test-tape v${version}: pass=${counts.pass}`);
    });

    test(`test-mover v${version}: pass=100 warn=0 fail=0, LOCAL and TCP`, { timeout: 180_000 }, async (t) => {
      if (!requirePeers(t, ['ndmjob'])) return;
      const agent = `127.0.0.1:${p!.port}/${version}t,${p!.user},${p!.password}`;
      const r = await runNdmjob(
        ['-vv', '-o', 'test-mover', '-T', agent, '-f', blankTape(`tm-v${version}`)],
        150_000,
      );
      const counts = final(r.output, 'test-mover');
      assert.ok(counts, `no FINAL line:\n${r.output.slice(-4000)}`);
      assert.deepEqual(counts, { pass: 100, warn: 0, fail: 0 }, r.output.slice(-4000));
      assert.match(r.output, /LOCAL and TCP addressing tested/);
    });
  }

  test('test-mover through a library drive name', { timeout: 180_000 }, async (t) => {
    if (!requirePeers(t, ['ndmjob'])) return;
    const agent = `127.0.0.1:${p!.port}/4t,${p!.user},${p!.password}`;
    const r = await runNdmjob(['-vv', '-o', 'test-mover', '-T', agent, '-f', 'drive0'], 150_000);
    assert.deepEqual(final(r.output, 'test-mover'), { pass: 100, warn: 0, fail: 0 }, r.output.slice(-4000));
  });

  for (const version of [4, 3] as const) {
    test(`test-data v${version}: every check passes, LOCAL and TCP`, { timeout: 120_000 }, async (t) => {
      if (!requirePeers(t, ['ndmjob'])) return;
      const agent = `127.0.0.1:${p!.port}/${version}t,${p!.user},${p!.password}`;
      const r = await runNdmjob(['-vv', '-o', 'test-data', '-D', agent], 100_000);
      const counts = final(r.output, 'test-data');
      assert.ok(counts, `no FINAL line:\n${r.output.slice(-4000)}`);
      assert.equal(counts.fail, 0, r.output.slice(-4000));
      assert.equal(counts.warn, 0, r.output.slice(-4000));
      assert.match(r.output, /D-IDLE/);
      assert.match(r.output, /D-LISTEN/);
      assert.match(r.output, /LOCAL and TCP addressing tested/);
    });
  }
});
