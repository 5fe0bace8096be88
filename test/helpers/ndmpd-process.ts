// Starts the real `ndmpd` binary (dist/src/cli/ndmpd.js) as a child process in
// a fresh temporary state dir with its own auth file and export, and waits
// until it listens. For tests that must see the product as an operator runs it.

import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Repository root (this file runs from dist/test/helpers/). */
export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const NDMPD_BIN = join(REPO_ROOT, 'dist', 'src', 'cli', 'ndmpd.js');
export const NDMP_BIN = join(REPO_ROOT, 'dist', 'src', 'cli', 'ndmp.js');

export interface NdmpdProcess {
  child: ChildProcess;
  host: string;
  port: number;
  user: string;
  password: string;
  dir: string;
  authFile: string;
  exportDir: string;
  /** Everything the server logged so far (JSON lines). */
  logs(): string;
  /** Stops it and removes its dir, unless `keepDir` (to start it again there: `StartOptions.dir`). */
  stop(keepDir?: boolean): Promise<void>;
}

export interface StartOptions {
  host?: string;
  /** 0 = a free port chosen by the helper. */
  port?: number;
  user?: string;
  password?: string;
  extraArgs?: string[];
  logLevel?: string;
  /** The dir of a server stopped with keepDir: the same state (host id, library), export and auth file. */
  dir?: string;
}

/** A free TCP port on the host (bind to 0, read it, release it). */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  const net = await import('node:net');
  return new Promise((res, rej) => {
    const s = net.createServer();
    s.once('error', rej);
    s.listen(0, host, () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => res(p));
    });
  });
}

export async function startNdmpd(opts: StartOptions = {}): Promise<NdmpdProcess> {
  const dir = opts.dir ?? mkdtempSync(join(os.tmpdir(), 'ndmpd-test-'));
  const exportDir = join(dir, 'export');
  const user = opts.user ?? 'dma';
  const password = opts.password ?? 'S3cret-pass';
  const authFile = join(dir, 'auth');
  if (!opts.dir) {
    mkdirSync(exportDir);
    writeFileSync(join(exportDir, 'hello.txt'), 'hello\n');
    writeFileSync(authFile, `${user}:${password}\n`);
    chmodSync(authFile, 0o600);
  }
  const host = opts.host ?? '127.0.0.1';
  const port = opts.port || (await freePort(host));
  const args = [
    NDMPD_BIN,
    '--listen',
    `${host}:${port}`,
    '--state-dir',
    join(dir, 'state'),
    '--export',
    `data=${exportDir}`,
    '--auth-file',
    authFile,
    '--log-format',
    'json',
    '--log-level',
    opts.logLevel ?? 'debug',
    ...(opts.extraArgs ?? []),
  ];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  await new Promise<void>((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`ndmpd did not start:\n${out}`)), 10_000);
    const check = () => {
      if (out.includes('listening for DMAs')) {
        clearTimeout(timer);
        res();
      }
    };
    child.stdout!.on('data', check);
    child.stderr!.on('data', check);
    child.once('exit', (code) => {
      clearTimeout(timer);
      rej(new Error(`ndmpd exited with ${code}:\n${out}`));
    });
  });
  return {
    child,
    host,
    port,
    user,
    password,
    dir,
    authFile,
    exportDir,
    logs: () => out,
    async stop(keepDir = false) {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await exited;
      }
      if (!keepDir) rmSync(dir, { recursive: true, force: true });
    },
  };
}
