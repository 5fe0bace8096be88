// The README's first command: the main job, end to end, on embedded defaults.
// Starts ndmpd (its default state dir, generated credentials, its library,
// and an export holding a sample tree), then, with the ndmp DMA and its
// default SQLite catalog: backs the tree up, lists it, finds a file, restores
// it, and checks the restored bytes. Stops the server at the end; `npm start`
// runs one that stays.

import { spawn, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Library } from '../src/devices/library.js';
import { listTapeServer } from '../src/dma/media.js';
import { connectAgent, readPassword } from '../src/dma/agent.js';
import { defaultStateDir } from '../src/cli/server-config.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const NDMPD = join(ROOT, 'dist', 'src', 'cli', 'ndmpd.js');
const NDMP = join(ROOT, 'dist', 'src', 'cli', 'ndmp.js');

function say(text: string): void {
  process.stdout.write(`\n\x1b[1m== ${text}\x1b[0m\n`);
}

/** Runs `ndmp ARGS` with its output shown, as a person would see it; returns stdout. */
function ndmp(args: string[]): string {
  process.stdout.write(`$ ndmp ${args.map((a) => (/[\s*?]/.test(a) ? `'${a}'` : a)).join(' ')}\n`);
  const r = spawnSync(process.execPath, [NDMP, ...args], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  process.stdout.write(r.stdout);
  if (r.status !== 0) throw new Error(`ndmp ${args[0]} failed (exit ${r.status})`);
  return r.stdout;
}

/** 10000 when it is free, else a port the system picks. */
async function pickPort(): Promise<number> {
  const tryListen = (port: number) =>
    new Promise<number | null>((res) => {
      const srv = net.createServer();
      srv.once('error', () => res(null));
      srv.listen(port, '127.0.0.1', () => {
        const got = (srv.address() as net.AddressInfo).port;
        srv.close(() => res(got));
      });
    });
  return (await tryListen(10000)) ?? (await tryListen(0))!;
}

async function main(): Promise<void> {
  const stateDir = defaultStateDir();
  const sample = join(stateDir, 'quickstart', 'sample');
  const restored = join(stateDir, 'quickstart', 'restored');
  say(`a sample tree to back up: ${sample} (this project's sources and docs)`);
  rmSync(join(stateDir, 'quickstart'), { recursive: true, force: true });
  mkdirSync(sample, { recursive: true });
  for (const d of ['src', 'docs', 'test', 'native'])
    cpSync(join(ROOT, d), join(sample, d), { recursive: true });
  cpSync(join(ROOT, 'README.md'), join(sample, 'README.md'));

  const port = await pickPort();
  const listen = `127.0.0.1:${port}`;
  if (port !== 10000) process.stdout.write(`port 10000 is taken (another ndmpd?); this run uses ${port}\n`);
  say(`ndmpd on ${listen}, state dir ${stateDir}, export quickstart=${join(stateDir, 'quickstart')}`);
  const server = spawn(
    process.execPath,
    [
      NDMPD,
      '--listen',
      listen,
      '--export',
      `quickstart=${join(stateDir, 'quickstart')}`,
      '--log-format',
      'pretty',
      '--log-level',
      'warn',
    ],
    { stdio: ['ignore', 'inherit', 'inherit'] },
  );
  const exited = new Promise<number | null>((r) => server.once('exit', (code) => r(code)));
  try {
    // Up when it answers an NDMP login with the credentials it generated.
    const auth = join(stateDir, 'auth');
    let up = false;
    for (let i = 0; i < 100 && !up; i++) {
      await new Promise((r) => setTimeout(r, 100));
      if (server.exitCode !== null) throw new Error('ndmpd did not start (see above)');
      if (!existsSync(auth)) continue;
      try {
        const c = await connectAgent(
          { host: '127.0.0.1', port },
          { user: 'ndmp', password: readPassword(auth, 'ndmp'), auth: 'md5', timeoutMs: 2000 },
        );
        // Runs append to the default pool's tape; a catalog made afresh sees written tapes as
        // foreign (docs/dma.md, "Pools and tapes"), so keep a blank one in the library.
        if (!(await listTapeServer(c)).media.some((m) => m.blank && !m.writeProtected)) {
          Library.open(join(stateDir, 'library')).createTapes({ count: 2, label: 'quickstart' });
        }
        await c.close();
        up = true;
      } catch {
        /* not listening yet */
      }
    }
    if (!up) throw new Error('ndmpd did not answer in 10 s');
    process.stdout.write(`credentials: ${auth} (mode 0600, user ndmp); ndmp finds them there on this host\n`);

    say('back it up to a tape of the virtual library; the file history goes to the catalog');
    ndmp(['backup', `${listen}:${sample}`]);
    const newest = spawnSync(process.execPath, [NDMP, 'backups', '--json'], { encoding: 'utf8' });
    const backup = (JSON.parse(newest.stdout) as Array<{ id: number; files: number }>)[0]!;
    say('the catalog');
    ndmp(['backups']);
    // Paths as the server has them (docs/dma.md, "Paths").
    ndmp(['ls', String(backup.id), join(sample, 'docs')]);
    ndmp(['find', 'history.*']);
    say('restore one file (by Direct Access Recovery: only its records are read)');
    ndmp(['restore', String(backup.id), join(sample, 'docs', 'history.md'), '--to', restored]);
    say('read the whole backup back from its tape and check it against the catalog');
    ndmp(['verify', String(backup.id)]);
    const same = readFileSync(join(restored, 'docs', 'history.md')).equals(
      readFileSync(join(sample, 'docs', 'history.md')),
    );
    if (!same) throw new Error('the restored file differs from the original');
    say(`done: ${backup.files} files backed up, ${join(restored, 'docs', 'history.md')} restored, identical`);
    process.stdout.write(
      'Run a server that stays: npm start -- --export NAME=PATH   (then ndmp backup 127.0.0.1:/PATH, see README)\n',
    );
  } finally {
    server.kill('SIGTERM');
    await exited;
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`quickstart: ${(e as Error).message}\n`);
  process.exit(1);
});
