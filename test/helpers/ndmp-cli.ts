// Runs the `ndmp` DMA as a process, the way an administrator does, with its
// own state dir (so its catalog is the test's) and no ndmpd credentials of
// this host to fall back on.

import { execFile, execFileSync, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { join } from 'node:path';
import { NDMPD_BIN, NDMP_BIN } from './ndmpd-process.js';
import type { NdmpdProcess } from './ndmpd-process.js';

const run = promisify(execFile);

export interface CliRun {
  code: number;
  out: string;
  err: string;
}

export async function runNdmp(
  args: string[],
  env: NodeJS.ProcessEnv = {},
  timeoutMs = 180_000,
): Promise<CliRun> {
  try {
    const r = await run(process.execPath, [NDMP_BIN, ...args], {
      env: { ...process.env, NDMPD_STATE_DIR: '/nonexistent-ndmpd-state', ...env },
      timeout: timeoutMs,
      maxBuffer: 256 * 1024 * 1024,
    });
    return { code: 0, out: r.stdout, err: r.stderr };
  } catch (e) {
    const x = e as { code: number; stdout: string; stderr: string };
    return { code: x.code, out: x.stdout, err: x.stderr };
  }
}

/** `ndmp` against one ndmpd, with a catalog of its own; fails loudly on an unexpected exit code. */
export function dmaFor(p: NdmpdProcess, catalog: string, stateDir: string) {
  const creds = ['--user', p.user, '--password-file', p.authFile];
  const env = { NDMP_STATE_DIR: stateDir };
  // A named catalog must exist ('ndmp init'): made here, once, as an administrator would first.
  let init: Promise<CliRun> | null = null;
  const call = async (args: string[], expect = 0): Promise<CliRun> => {
    init ??= runNdmp(['init', '--catalog', catalog], env);
    const made = await init;
    if (made.code !== 0) throw new Error(`ndmp init --catalog ${catalog} exited ${made.code}\n${made.err}`);
    const r = await runNdmp([...args, '--catalog', catalog], env);
    if (r.code !== expect) {
      throw new Error(`ndmp ${args.join(' ')} exited ${r.code}, not ${expect}\n${r.err}\n${r.out}`);
    }
    return r;
  };
  const json = async <T>(args: string[]): Promise<T> =>
    JSON.parse((await call([...args, '--json'])).out) as T;
  /** Makes the catalog now, for a test that runs `ndmp` by itself with it. */
  const ready = async (): Promise<void> => void (await call(['backups']));
  return { creds, call, json, ready, server: `${p.host}:${p.port}`, stateDir: join(stateDir) };
}

/** Adds `count` blank tapes of `capacity` (else the server's) to a running ndmpd's library (`ndmpd tape create`). */
export function addTapes(p: NdmpdProcess, count: number, capacity?: string): void {
  execFileSync(process.execPath, [
    NDMPD_BIN,
    'tape',
    'create',
    '--count',
    String(count),
    ...(capacity ? ['--capacity', capacity] : []),
    '--library',
    join(p.dir, 'state', 'library'),
  ]);
}

/** `ndmp backup` as a child, for tests that kill it or its server; `seen` resolves once `ready` matches its stderr. */
export function spawnBackup(
  dma: ReturnType<typeof dmaFor>,
  catalog: string,
  path: string,
  ready: RegExp,
  ...more: string[]
) {
  const child = spawn(
    process.execPath,
    [NDMP_BIN, 'backup', `${dma.server}:${path}`, ...dma.creds, '--catalog', catalog, ...more],
    {
      env: { ...process.env, NDMP_STATE_DIR: dma.stateDir, NDMPD_STATE_DIR: '/nonexistent-ndmpd-state' },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let err = '';
  const exited = new Promise<number | null>((res) => child.once('exit', (c) => res(c)));
  const seen = new Promise<boolean>((res) => {
    const timer = setTimeout(() => res(false), 60_000);
    child.stderr.on('data', (d: Buffer) => {
      err += d.toString();
      if (ready.test(err)) {
        clearTimeout(timer);
        res(true);
      }
    });
    void exited.then(() => res(ready.test(err)));
  });
  return { child, exited, seen, err: () => err };
}
