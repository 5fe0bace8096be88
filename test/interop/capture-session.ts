// capture-session.js OUTDIR [SCENARIO] [PORT]
//
// Records real ndmjob sessions against the real ndmpd for tshark to decode.
// SCENARIO `query` (the default) is described below; `tape-mover` runs
// ndmjob's conformance suites instead: -o test-tape (v4, v3; with the
// g_malloc(0) shim) and -o test-mover (v4, v3) on blank tapes in the library;
// `backup` runs ndmjob -c -I (file history, both models, v4 and v3);
// `changer` runs ndmjob's robot operations on the library's changer (v4, v3):
// -q, init-elem-status, load, unload through a drive, a refused move.
// Meant to run inside a private network namespace (tshark-capture.test.ts runs
// it under `unshare -n`), because Wireshark's NDMP dissector decodes only TCP
// port 10000 (docs/interop.md): there the server can own 127.0.0.1:10000 and the
// capture sees only this session's traffic.
//
// It starts ndmpd (temp state dir, export and 0600 auth file, via startNdmpd),
// starts dumpcap on lo for `tcp port 10000`, runs `ndmjob -q -D A -T A` (the
// data and the tape agent's view) with A = .../4t, /4m and /3t, then
// `ndmjob -q -D .../4t` with a wrong password, stops the capture and the server, and
// leaves in OUTDIR:
//   ndmp.pcap    the capture
//   ndmjob.txt   what each ndmjob run printed, under a `### ...` header
//   ndmjob.json  the same, as CapturedRun[]
//   ndmpd.log    the server's log
//   dumpcap.txt  what dumpcap printed
// Exits 0 when all that worked, non-zero with a message on stderr otherwise.
// ndmjob's own results are not judged here: the test reads them.

import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import { Library } from '../../src/devices/library.js';
import { startNdmpd } from '../helpers/ndmpd-process.js';
import type { NdmpdProcess } from '../helpers/ndmpd-process.js';
import { buildNdmjobFixes, runNdmjob } from '../helpers/peers.js';
import type { NdmjobRun } from '../helpers/peers.js';

const WRONG_PASSWORD = 'not-the-password';
const WATCHDOG_MS = 100_000;

export interface CapturedRun {
  /** `query`, or the conformance suite (`test-tape`, `test-mover`). */
  suite: string;
  flags: string;
  password: 'right' | 'wrong';
  /** ndmjob's arguments, the password masked. */
  args: string[];
  output: string;
  code: number | null;
  timedOut: boolean;
}

let server: NdmpdProcess | null = null;
let dumpcap: ChildProcess | null = null;
let dumpcapOut = '';

function pick(r: NdmjobRun): Pick<CapturedRun, 'output' | 'code' | 'timedOut'> {
  return { output: r.output, code: r.code, timedOut: r.timedOut };
}

async function stopDumpcap(): Promise<number | null> {
  const child = dumpcap;
  if (!child) return null;
  dumpcap = null;
  if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
  const exited = new Promise<number | null>((res) => child.once('exit', (code) => res(code)));
  // SIGINT makes dumpcap flush and close the file.
  child.kill('SIGINT');
  const hard = setTimeout(() => child.kill('SIGKILL'), 5_000);
  const code = await exited;
  clearTimeout(hard);
  return code;
}

async function cleanup(): Promise<void> {
  await stopDumpcap().catch(() => undefined);
  const s = server;
  server = null;
  if (s) await s.stop().catch(() => undefined);
}

async function fail(message: string): Promise<never> {
  process.stderr.write(`capture-session: ${message}\n`);
  await cleanup();
  process.exit(1);
}

async function startDumpcap(pcap: string, port: number): Promise<void> {
  const child = spawn('dumpcap', ['-i', 'lo', '-f', `tcp port ${port}`, '-P', '-q', '-w', pcap], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  dumpcap = child;
  child.stdout!.on('data', (d: Buffer) => (dumpcapOut += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (dumpcapOut += d.toString()));
  const spawnError = new Promise<Error>((res) => child.once('error', res));
  const deadline = Date.now() + 10_000;
  for (;;) {
    const err = await Promise.race([spawnError, sleep(50).then(() => null)]);
    if (err) throw new Error(`cannot run dumpcap: ${err.message}`);
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`dumpcap exited early (${child.exitCode ?? child.signalCode}):\n${dumpcapOut}`);
    }
    if (dumpcapOut.includes('Capturing on') && existsSync(pcap)) break;
    if (Date.now() > deadline) throw new Error(`dumpcap did not start capturing in 10 s:\n${dumpcapOut}`);
  }
  // "Capturing on" comes once the interface is open; give the filter a moment.
  await sleep(300);
}

async function queryRuns(server: NdmpdProcess, port: number): Promise<CapturedRun[]> {
  const runs: CapturedRun[] = [];
  const plan: Array<{ flags: string; password: 'right' | 'wrong' }> = [
    { flags: '4t', password: 'right' },
    { flags: '4m', password: 'right' },
    { flags: '3t', password: 'right' },
    { flags: '4t', password: 'wrong' },
  ];
  for (const step of plan) {
    const pass = step.password === 'right' ? server.password : WRONG_PASSWORD;
    const agent = `127.0.0.1:${port}/${step.flags},${server.user},${pass}`;
    // With -T too, ndmjob opens a second connection and asks CONFIG_GET_TAPE_INFO.
    const args = step.password === 'right' ? ['-q', '-D', agent, '-T', agent] : ['-q', '-D', agent];
    const r = await runNdmjob(args);
    runs.push({
      suite: 'query',
      ...step,
      args: args.map((a) => a.replace(pass, `<${step.password} password>`)),
      ...pick(r),
    });
  }
  return runs;
}

/** ndmjob's tape and mover conformance suites, each on a fresh blank tape. */
async function conformanceRuns(
  server: NdmpdProcess,
  port: number,
  library: string,
  outDir: string,
): Promise<CapturedRun[]> {
  const shim = buildNdmjobFixes(outDir);
  const runs: CapturedRun[] = [];
  const plan = [
    { suite: 'test-tape', flags: '4t' },
    { suite: 'test-mover', flags: '4t' },
    { suite: 'test-tape', flags: '3t' },
    { suite: 'test-mover', flags: '3t' },
  ];
  for (const [i, step] of plan.entries()) {
    const tape = join(library, 'tapes', `capture-${i}`);
    writeFileSync(tape, '');
    const agent = `127.0.0.1:${port}/${step.flags},${server.user},${server.password}`;
    const args = ['-v', '-o', step.suite, '-T', agent, '-f', tape];
    const r = await runNdmjob(args, 60_000, { ...process.env, LD_PRELOAD: shim });
    runs.push({
      ...step,
      password: 'right',
      args: args.map((a) => a.replace(server.password, '<right password>')),
      ...pick(r),
    });
  }
  return runs;
}

/**
 * Backups with file history: ndmjob -c -I over LOCAL in v4 (path model, then
 * dir/node with -E HIST=d) and v3 (path), each on a blank tape, of a small
 * tree in the export.
 */
async function backupRuns(server: NdmpdProcess, port: number, library: string): Promise<CapturedRun[]> {
  const tree = join(server.exportDir, 'capture-tree');
  mkdirSync(join(tree, 'sub', 'deeper'), { recursive: true });
  for (let i = 0; i < 300; i++) writeFileSync(join(tree, i % 2 ? 'sub' : 'sub/deeper', `file ${i}`), `${i}`);
  const runs: CapturedRun[] = [];
  const plan = [
    { suite: 'backup-path', flags: '4t', extra: [] as string[] },
    { suite: 'backup-dirnode', flags: '4t', extra: ['-E', 'HIST=d'] },
    { suite: 'backup-path', flags: '3t', extra: [] as string[] },
  ];
  for (const [i, step] of plan.entries()) {
    const tape = join(library, 'tapes', `backup-${i}`);
    writeFileSync(tape, '');
    const agent = `127.0.0.1:${port}/${step.flags},${server.user},${server.password}`;
    const index = join(library, `index-${i}`);
    const args = ['-c', '-D', agent, '-B', 'tar', '-C', tree, '-f', tape, '-I', index, ...step.extra];
    const r = await runNdmjob(args, 60_000);
    runs.push({
      suite: step.suite,
      flags: step.flags,
      password: 'right',
      args: args.map((a) => a.replace(server.password, '<right password>')),
      ...pick(r),
    });
  }
  return runs;
}

/**
 * ndmjob's robot operations against changer0 (docs/changer.md §5), v4 then
 * v3: the query, an inventory, a load, an unload after TAPE_OPEN/CLOSE of the
 * drive on the tape connection, and a move from an empty slot (CHECK
 * CONDITION with sense on the wire). v3 also sends SCSI_SET_TARGET (-r NAME,SID).
 */
async function changerRuns(server: NdmpdProcess, port: number): Promise<CapturedRun[]> {
  const runs: CapturedRun[] = [];
  for (const flags of ['4t', '3t']) {
    const agent = `127.0.0.1:${port}/${flags},${server.user},${server.password}`;
    const robot = flags === '3t' ? 'changer0,0,1' : 'changer0';
    const plan: Array<[string, string[]]> = [
      ['query', ['-q']],
      ['init-elem-status', ['-o', 'init-elem-status', '-v']],
      ['load', ['-o', 'load=1000', '-vv']],
      ['unload', ['-o', 'unload', '-f', 'drive0', '-vv']],
      ['move-empty', ['-o', 'move', '-o', 'from-addr=1007', '-o', 'to-addr=1006', '-vv']],
    ];
    for (const [suite, ops] of plan) {
      const args = [...ops, '-T', agent, '-r', robot];
      const r = await runNdmjob(args, 60_000);
      runs.push({
        suite,
        flags,
        password: 'right',
        args: args.map((a) => a.replace(server.password, '<right password>')),
        ...pick(r),
      });
    }
  }
  return runs;
}

async function main(): Promise<void> {
  const outArg = process.argv[2];
  if (!outArg) {
    process.stderr.write('usage: capture-session.js OUTDIR [query|tape-mover|backup|changer] [PORT]\n');
    process.exit(2);
  }
  const outDir = resolve(outArg);
  const scenario = process.argv[3] ?? 'query';
  const port = Number(process.argv[4] ?? 10000);
  mkdirSync(outDir, { recursive: true });
  const pcap = join(outDir, 'ndmp.pcap');

  const watchdog = setTimeout(() => {
    void fail(`gave up after ${WATCHDOG_MS / 1000} s`);
  }, WATCHDOG_MS);
  for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) {
    process.once(sig, () => void fail(`stopped by ${sig}`));
  }

  try {
    const library = join(outDir, 'library');
    mkdirSync(join(library, 'tapes'), { recursive: true });
    // Tapes in slots 1..4 for the changer's moves (the other scenarios bring their own).
    if (scenario === 'changer') Library.open(library).createTapes({ count: 4, capacity: 16n << 20n });
    server = await startNdmpd({ host: '127.0.0.1', port, extraArgs: ['--library', library] });
    await startDumpcap(pcap, port);

    const runs: CapturedRun[] =
      scenario === 'tape-mover'
        ? await conformanceRuns(server, port, library, outDir)
        : scenario === 'backup'
          ? await backupRuns(server, port, library)
          : scenario === 'changer'
            ? await changerRuns(server, port)
            : await queryRuns(server, port);

    // Let the last FIN/ACKs reach the capture.
    await sleep(1_000);
    const dumpcapCode = await stopDumpcap();
    const serverAlive = server.child.exitCode === null && server.child.signalCode === null;
    writeFileSync(join(outDir, 'ndmpd.log'), server.logs());
    writeFileSync(join(outDir, 'dumpcap.txt'), dumpcapOut);
    writeFileSync(join(outDir, 'ndmjob.json'), JSON.stringify(runs, null, 2));
    writeFileSync(
      join(outDir, 'ndmjob.txt'),
      runs
        .map(
          (r) =>
            `### ndmjob ${r.args.join(' ')} (exit ${r.code}${r.timedOut ? ', timed out' : ''})\n${r.output}`,
        )
        .join('\n'),
    );

    if (!serverAlive) await fail(`ndmpd died during the session:\n${server.logs()}`);
    if (dumpcapCode !== 0) await fail(`dumpcap exited with ${dumpcapCode}:\n${dumpcapOut}`);
    if (!existsSync(pcap)) await fail(`no capture file ${pcap}`);
    const timedOut = runs.filter((r) => r.timedOut);
    if (timedOut.length > 0) {
      await fail(`ndmjob timed out for ${timedOut.map((r) => `/${r.flags} (${r.password})`).join(', ')}`);
    }
    await cleanup();
    clearTimeout(watchdog);
  } catch (e) {
    await fail((e as Error).stack ?? String(e));
  }
}

await main();
process.exit(0);
