// Real peers for interop tests (ndmjob, tshark) and the root needed for a
// private network namespace. Where one is missing a test says so plainly and
// is skipped, which is not a pass; under CI (CI=true) a missing peer is a
// failure, because CI installs them and must run every interop test.

import { accessSync, constants } from 'node:fs';
import { execFileSync, spawn } from 'node:child_process';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { REPO_ROOT } from './ndmpd-process.js';

export const NDMJOB = process.env.NDMJOB ?? '/usr/lib/amanda/ndmjob';

function executable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function onPath(cmd: string): string | null {
  try {
    return execFileSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' }).trim() || null;
  } catch {
    return null;
  }
}

export const peers = {
  ndmjob: executable(NDMJOB) ? NDMJOB : null,
  tshark: onPath('tshark'),
  unshare: onPath('unshare'),
  root: process.getuid?.() === 0,
};

/**
 * Returns true if the test may go on. Otherwise skips it with a plain reason,
 * or, under CI, throws so the run fails: CI must have every peer.
 */
export function requirePeers(t: TestContext, needs: Array<keyof typeof peers>): boolean {
  const missing = needs.filter((n) => !peers[n]);
  if (missing.length === 0) return true;
  const reason = `peer missing: ${missing.map((m) => (m === 'root' ? 'root (for a network namespace)' : m)).join(', ')}`;
  if (process.env.CI) throw new Error(`${reason} — CI must install it (.ci/run)`);
  t.skip(reason);
  return false;
}

export interface NdmjobRun {
  /** stdout and stderr together, in the order they arrived. */
  output: string;
  code: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
}

/**
 * Runs ndmjob with `args` and collects everything it prints. Its exit status
 * means almost nothing (docs/interop.md): callers judge the run by `output`. Killed
 * after `timeoutMs`, so a server that never answers cannot hang a test.
 */
/**
 * Builds the LD_PRELOAD shim with the client-side fixes test-tape needs on
 * this ndmjob build (test/interop/tools/ndmjob-fixes.c: the g_malloc(0) one
 * of docs/interop.md, and a signed-char compare in T-BWR) into `dir`; returns its path.
 */
export function buildNdmjobFixes(dir: string): string {
  const src = join(REPO_ROOT, 'test', 'interop', 'tools', 'ndmjob-fixes.c');
  const out = join(dir, 'ndmjob-fixes.so');
  execFileSync('cc', ['-shared', '-fPIC', '-o', out, src, '-ldl'], { stdio: 'pipe' });
  return out;
}

export function runNdmjob(
  args: string[],
  timeoutMs = 30_000,
  env: NodeJS.ProcessEnv = process.env,
): Promise<NdmjobRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(NDMJOB, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
    let output = '';
    let timedOut = false;
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(new Error(`cannot run ${NDMJOB}: ${e.message}`));
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ output, code, signal, timedOut });
    });
  });
}
