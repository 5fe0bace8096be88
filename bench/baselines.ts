// What the backup benchmark measures ndmpd against, in the same run on the
// same tree (issue 14, item 6): GNU tar `-cf`, and the bench's own C ceiling
// (bench/ceiling.c: one thread, walk + lstat + read + write of the same bytes
// in tar's blocking). Both write a fresh output file per run, as ndmpd gets a
// blank tape per run (bench/backup.ts says why), and both are timed by the
// wall clock around the child process, page cache warm (one untimed run
// first).

import { spawnSync } from 'node:child_process';
import { rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';

import { buildC } from './cc.js';

export interface Baseline {
  /** Median wall-clock time of the timed runs. */
  ms: number;
  /** Size of the output file. */
  bytes: number;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** `argv` writing `out`: one untimed run, then `runs` timed ones; the output removed before each (unless in place). */
function timed(
  what: string,
  argv: string[],
  out: string,
  o: { runs: number; freshFiles: boolean },
): Baseline {
  const once = () => {
    if (o.freshFiles) rmSync(out, { force: true });
    const t0 = performance.now();
    const r = spawnSync(argv[0]!, argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
    const ms = performance.now() - t0;
    if (r.error) throw r.error;
    if (r.status !== 0) throw new Error(`${what} exited with ${r.status}: ${r.stderr.toString().trim()}`);
    return ms;
  };
  once();
  const times: number[] = [];
  for (let i = 0; i < o.runs; i++) times.push(once());
  const bytes = statSync(out).size;
  rmSync(out, { force: true });
  return { ms: median(times), bytes };
}

/** GNU tar writing its own file. */
export function tarBaseline(
  root: string,
  workDir: string,
  o: { runs: number; freshFiles: boolean },
): Baseline {
  const out = join(workDir, 'gnutar.tar');
  return timed('tar', ['tar', '-cf', out, '-C', root, '.'], out, o);
}

/** The C ceiling (built into `binDir` if need be) writing its own file. */
export function ceilingBaseline(
  binDir: string,
  root: string,
  workDir: string,
  o: { runs: number; freshFiles: boolean },
): Baseline {
  const out = join(workDir, 'ceiling.out');
  return timed('the C ceiling', [buildC('ceiling', binDir), root, out], out, o);
}
