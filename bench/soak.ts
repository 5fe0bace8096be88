// Soak: does memory come back? One server process takes N rounds of fuzzed
// control messages (before and after login, v3 and v4) and of backups whose
// DMA drops the control connection mid-stream; after each round, once the
// server is idle, its resident memory (after a forced gc) is printed next to
// the baseline taken before the first round. docs/memory.md has the figures
// and what they mean.
//
// The server runs in a child process (this file again, with --soak-serve)
// that builds the same server ndmpd builds (listener, history hub, library,
// one export) and answers "measure" over IPC, so the figures are those of a
// server process and nothing of the driver's own memory is in them.
//
//   node dist/bench/soak.js [--quick] [--rounds N] [--messages K] [--backups M]
//       [--malloc glibc-defaults] [--child-env NAME=VALUE ...] [--snapshots DIR] [--log-level L]
//
// --malloc glibc-defaults leaves malloc as glibc sets it (ndmpd tunes it:
// services/memory.ts), to compare; --child-env sets the server's environment
// (MALLOC_ARENA_MAX=2, ...); --snapshots writes heap snapshots at the baseline
// and at the end, to diff by constructor.

import { fork } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import {
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import v8 from 'node:v8';

import { Library } from '../src/devices/library.js';
import { NdmpClient } from '../src/dma/client.js';
import { HistoryHub, historyDefaults } from '../src/history/hub.js';
import { DEFAULT_LISTENER_OPTIONS, NdmpServer } from '../src/server/listener.js';
import { Credentials } from '../src/services/credentials.js';
import type { ServerContext } from '../src/services/session.js';
import { SessionWorker } from '../src/services/worker-rpc.js';
import { createLogger } from '../src/util/log.js';
import { TRIM_INTERVAL_MS, returnMemory } from '../src/services/memory.js';
import {
  AddrType,
  AuthType,
  ErrorCode,
  INVALID_U64,
  M,
  MessageType,
  MoverMode,
  NdmpError,
  TapeOpenMode,
  compiled,
  encodeMessage,
  nowSeconds,
} from '../src/wire/index.js';
import type { NdmpVersion } from '../src/wire/index.js';
import { GOLDEN_CASES } from '../test/helpers/golden-cases.js';
import { requestRecord } from '../test/helpers/xdr-bytes.js';

const USER = 'soak';
const PASSWORD = 'soak-pa55';
/** Tapes, and so backups at once: each abandoned backup reuses its slot's tape. */
const SLOTS = 4;
const FUZZ_CONNECTIONS_AT_ONCE = 8;

// ---- the server child ------------------------------------------------------

interface ServeConfig {
  readonly exportDir: string;
  readonly libraryDir: string;
  readonly stateDir: string;
  readonly logLevel: string;
  /** 'ndmpd': malloc tuned as ndmpd tunes it; 'glibc-defaults': left alone (to compare). */
  readonly malloc: string;
}

export interface Measure {
  rss: number;
  heapTotal: number;
  heapUsed: number;
  external: number;
  arrayBuffers: number;
  threads: number;
  fds: number;
  connections: number;
  sessionThreads: number;
  historyChannels: number;
  /** Open descriptors by kind (socket, pipe, anon_inode, or the file's directory). */
  fdKinds: Record<string, number>;
}

type ToChild = { op: 'measure' } | { op: 'snapshot'; path: string };
type FromChild = { event: 'ready'; port: number } | { event: 'measured'; m: Measure } | { event: 'written' };

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function procStatus(pid: number | 'self'): { rss: number; threads: number } {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8');
  const rss = Number(/^VmRSS:\s+(\d+) kB/m.exec(s)?.[1] ?? 0) * 1024;
  const threads = Number(/^Threads:\s+(\d+)/m.exec(s)?.[1] ?? 0);
  return { rss, threads };
}

function fdKinds(): Record<string, number> {
  const out: Record<string, number> = {};
  for (const fd of readdirSync('/proc/self/fd')) {
    let k: string;
    try {
      k = readlinkSync(`/proc/self/fd/${fd}`)
        .replace(/:\[\d+\]$/, '')
        .replace(/\/[^/]*$/, '/');
    } catch {
      continue;
    }
    out[k] = (out[k] ?? 0) + 1;
  }
  return out;
}

async function serve(): Promise<void> {
  const cfg = JSON.parse(process.env.NDMPD_SOAK_CONFIG ?? '{}') as ServeConfig;
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error('the soak server needs --expose-gc');
  // As ndmpd does at start, unless the soak compares with malloc's own defaults.
  const log = createLogger({ level: cfg.logLevel, format: 'json', destination: 2 });
  const memory = cfg.malloc === 'glibc-defaults' ? null : returnMemory(log);
  const history = new HistoryHub(
    historyDefaults(join(cfg.stateDir, 'spool')),
    log.child({ component: 'history' }),
  );
  const ctx: ServerContext = {
    info: {
      vendorName: 'soak',
      productName: 'ndmpd soak',
      revisionNumber: '0',
      hostname: os.hostname(),
      osType: os.type(),
      osVers: os.release(),
      hostId: '50a50a50',
    },
    credentials: Credentials.fromEntries([[USER, PASSWORD]]),
    exports: [{ name: 'soak', path: cfg.exportDir }],
    log,
    library: Library.open(cfg.libraryDir, { drives: SLOTS }),
    history,
    stateDir: cfg.stateDir,
    // Fuzzed logins fail often; a second each would make a round last an hour.
    authFailureDelayMs: 5,
  };
  const server = new NdmpServer(ctx, { ...DEFAULT_LISTENER_OPTIONS, port: 0, maxConnections: 64 });
  const { port } = await server.listen();
  const send = (m: FromChild) => process.send!(m);
  process.on('message', (m: ToChild) => {
    void (async () => {
      if (m.op === 'snapshot') {
        gc();
        v8.writeHeapSnapshot(m.path);
        send({ event: 'written' });
        return;
      }
      // Idle: every connection gone, the threads count settled, then a full gc.
      for (let i = 0; i < 300 && server.connectionCount > 0; i++) await sleep(100);
      let threads = procStatus('self').threads;
      for (let i = 0; i < 50; i++) {
        await sleep(200);
        const now = procStatus('self').threads;
        if (now === threads && SessionWorker.live === 0) break;
        threads = now;
      }
      for (let i = 0; i < 3; i++) {
        gc();
        await sleep(100);
      }
      // ndmpd's trimmer runs every TRIM_INTERVAL_MS: wait for it to have seen the ended threads.
      for (let i = 0; memory && !memory.settled && i < (2 * TRIM_INTERVAL_MS) / 200; i++) await sleep(200);
      const u = process.memoryUsage();
      const st = procStatus('self');
      send({
        event: 'measured',
        m: {
          rss: st.rss,
          heapTotal: u.heapTotal,
          heapUsed: u.heapUsed,
          external: u.external,
          arrayBuffers: u.arrayBuffers,
          threads: st.threads,
          fds: readdirSync('/proc/self/fd').length,
          connections: server.connectionCount,
          sessionThreads: SessionWorker.live,
          historyChannels: history.openChannels,
          fdKinds: fdKinds(),
        },
      });
    })();
  });
  process.on('disconnect', () => {
    void server
      .close()
      .then(() => history.shutdown())
      .finally(() => process.exit(0));
  });
  send({ event: 'ready', port });
}

// ---- the driver --------------------------------------------------------------

/** A small deterministic PRNG (xorshift32): the same seed, the same fuzz. */
class Rng {
  constructor(private s: number) {}
  next(): number {
    let x = this.s;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.s = x >>> 0;
    return this.s / 2 ** 32;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  bytes(n: number): Buffer {
    const b = Buffer.alloc(n);
    for (let i = 0; i < n; i++) b[i] = this.int(256);
    return b;
  }
}

const REQUESTS: Record<NdmpVersion, { code: number; body: Buffer }[]> = { 3: [], 4: [] };
for (const c of GOLDEN_CASES) {
  if (c.def.kind === 'post') continue;
  REQUESTS[c.version as 3 | 4].push({ code: c.def.code, body: c.request.bytes });
}

function encoded<B>(
  v: NdmpVersion,
  seq: number,
  def: Parameters<typeof compiled<B, unknown>>[1],
  body: B,
): Buffer {
  const msg = compiled(v, def);
  return encodeMessage(
    {
      sequence: seq,
      timeStamp: nowSeconds(),
      messageType: MessageType.NDMP_MESSAGE_REQUEST,
      messageCode: def.code,
      replySequence: 0,
      errorCode: 0,
    },
    msg.body,
    body,
  );
}

/** One fuzzed request: a real request body as is, with bytes changed, cut short, grown, or noise. */
function fuzzed(rng: Rng, v: NdmpVersion, seq: number): Buffer {
  const pick = REQUESTS[v][rng.int(REQUESTS[v].length)]!;
  // CONNECT_CLOSE would end most connections after a message or two.
  if (pick.code === M.CONNECT_CLOSE.code && rng.int(8) !== 0)
    return requestRecord(seq, M.CONFIG_GET_HOST_INFO.code);
  const r = rng.int(100);
  let body = pick.body;
  let code = pick.code;
  if (r < 35) {
    /* as is */
  } else if (r < 65) {
    body = Buffer.from(body);
    for (let i = rng.int(4) + 1; i > 0 && body.length > 0; i--) body[rng.int(body.length)] = rng.int(256);
  } else if (r < 80) body = body.subarray(0, rng.int(body.length + 1));
  else if (r < 88) body = Buffer.concat([body, rng.bytes(rng.int(256))]);
  else if (r < 96) body = rng.bytes(rng.int(512));
  else {
    code = rng.int(4) === 0 ? rng.int(2 ** 32) : (pick.code & 0xff00) | rng.int(0x20);
    body = rng.bytes(rng.int(64));
  }
  return requestRecord(seq, code >>> 0, body);
}

/** One fuzzing connection: optional login, then `n` fuzzed requests, then a close or a reset. */
async function fuzzConnection(
  port: number,
  rng: Rng,
  n: number,
  v: NdmpVersion,
  login: boolean,
): Promise<void> {
  const sock = net.connect({ host: '127.0.0.1', port });
  sock.on('error', () => undefined);
  sock.on('data', () => undefined);
  const closed = new Promise<void>((r) => sock.once('close', () => r()));
  await new Promise<void>((r) => {
    sock.once('connect', () => r());
    sock.once('close', () => r());
  });
  let seq = 1;
  const write = async (b: Buffer) => {
    if (sock.destroyed) return;
    if (!sock.write(b)) await Promise.race([new Promise((r) => sock.once('drain', r)), closed]);
  };
  if (login || rng.int(2) === 0) await write(encoded(v, seq++, M.CONNECT_OPEN, { protocolVersion: v }));
  if (login) {
    await write(
      encoded(v, seq++, M.CONNECT_CLIENT_AUTH, {
        authData: { authType: AuthType.NDMP_AUTH_TEXT, authId: USER, authPassword: PASSWORD },
      }),
    );
  }
  for (let i = 0; i < n && !sock.destroyed; i++) {
    // Now and then a record mark that breaks the framing: the server must drop the connection.
    if (rng.int(2000) === 0) {
      await write(Buffer.from([0x7f, 0xff, 0xff, 0xff]));
      break;
    }
    await write(fuzzed(rng, v, seq++));
  }
  if (rng.int(2) === 0) sock.end();
  else sock.resetAndDestroy();
  // The server answers what it read before closing; a bounded wait, then ours goes.
  const t = setTimeout(() => sock.destroy(), 15_000);
  await closed;
  clearTimeout(t);
}

async function fuzzRound(port: number, seed: number, messages: number): Promise<number> {
  const rng = new Rng(seed);
  let left = messages;
  let connections = 0;
  const runOne = async (): Promise<void> => {
    while (left > 0) {
      const n = Math.min(left, 1 + rng.int(600));
      left -= n;
      connections++;
      const v: NdmpVersion = rng.int(2) === 0 ? 3 : 4;
      await fuzzConnection(port, new Rng((rng.int(2 ** 31) | 1) >>> 0), n, v, rng.int(2) === 0);
    }
  };
  await Promise.all(Array.from({ length: FUZZ_CONNECTIONS_AT_ONCE }, runOne));
  return connections;
}

/** A LOCAL backup with history that its DMA abandons: after the first FH post, or after a few ms. */
async function abandonedBackup(
  port: number,
  tape: string,
  rng: Rng,
  v: NdmpVersion,
  root: string,
): Promise<boolean> {
  const c = await NdmpClient.connect({ host: '127.0.0.1', port, timeoutMs: 20_000 });
  let sawHistory = false;
  try {
    await c.open(v);
    await c.authText(USER, PASSWORD);
    const firstFh = new Promise<void>((r) => {
      const seen = () => {
        sawHistory = true;
        r();
      };
      c.onPost(M.FH_ADD_FILE, seen);
      c.onPost(M.FH_ADD_DIR, seen);
      c.onPost(M.FH_ADD_NODE, seen);
    });
    // The slot's last session may still be closing its tape.
    for (let i = 0; ; i++) {
      try {
        await c.call(M.TAPE_OPEN, { device: tape, mode: TapeOpenMode.NDMP_TAPE_RDWR_MODE });
        break;
      } catch (e) {
        if (!(e instanceof NdmpError && e.ndmpError === ErrorCode.NDMP_DEVICE_BUSY_ERR) || i > 200) throw e;
        await sleep(50);
      }
    }
    await c.call(M.MOVER_SET_WINDOW, { offset: 0n, length: INVALID_U64 });
    await c.call(M.MOVER_LISTEN, {
      mode: MoverMode.NDMP_MOVER_MODE_READ,
      addrType: AddrType.NDMP_ADDR_LOCAL,
    });
    await c.call(M.DATA_CONNECT, { addr: { addrType: AddrType.NDMP_ADDR_LOCAL } });
    await c.call(M.DATA_START_BACKUP, {
      butypeName: 'tar',
      env: [
        { name: 'FILESYSTEM', value: root },
        { name: 'HIST', value: rng.int(2) === 0 ? 'y' : 'd' },
      ],
    });
    if (rng.int(3) === 0) await sleep(rng.int(40));
    else await Promise.race([firstFh, sleep(10_000)]);
  } finally {
    c.destroy();
  }
  return sawHistory;
}

async function backupRound(
  port: number,
  seed: number,
  tapes: string[],
  count: number,
  root: string,
): Promise<number> {
  const rng = new Rng(seed);
  let left = count;
  let withHistory = 0;
  await Promise.all(
    tapes.map(async (tape) => {
      while (left > 0) {
        left--;
        const v: NdmpVersion = rng.int(2) === 0 ? 3 : 4;
        if (await abandonedBackup(port, tape, new Rng((rng.int(2 ** 31) | 1) >>> 0), v, root)) withHistory++;
      }
    }),
  );
  return withHistory;
}

/** A tree of a few MB: 40 directories of 60 files, 1-3 KiB each, plus a few of 256 KiB. */
function makeTree(root: string): void {
  const rng = new Rng(12345);
  for (let d = 0; d < 40; d++) {
    const dir = join(root, `dir-${String(d).padStart(2, '0')}`);
    mkdirSync(dir, { recursive: true });
    for (let f = 0; f < 60; f++) writeFileSync(join(dir, `file-${f}.dat`), rng.bytes(1024 + rng.int(2048)));
  }
  for (let i = 0; i < 8; i++) writeFileSync(join(root, `big-${i}.bin`), rng.bytes(256 * 1024));
}

class SoakServer {
  private waiters: ((m: FromChild) => void)[] = [];
  private stderr = '';

  private constructor(readonly child: ChildProcess) {
    child.on('message', (m: FromChild) => this.waiters.shift()?.(m));
    child.stderr!.on('data', (d: Buffer) => {
      this.stderr += d.toString();
      if (this.stderr.length > 64 * 1024) this.stderr = this.stderr.slice(-32 * 1024);
    });
  }

  static async start(
    cfg: ServeConfig,
    env: Record<string, string>,
  ): Promise<{ server: SoakServer; port: number }> {
    const child = fork(fileURLToPath(import.meta.url), ['--soak-serve'], {
      execArgv: ['--expose-gc'],
      env: { ...process.env, ...env, NDMPD_SOAK_CONFIG: JSON.stringify(cfg) },
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    });
    const server = new SoakServer(child);
    const m = await server.next(30_000);
    if (m.event !== 'ready') throw new Error('the soak server did not start');
    return { server, port: m.port };
  }

  private next(ms: number): Promise<FromChild> {
    return new Promise((res, rej) => {
      const onExit = (code: number | null) => {
        clearTimeout(t);
        rej(new Error(`the soak server exited (${code}): ${this.tail()}`));
      };
      const t = setTimeout(() => {
        this.child.off('exit', onExit);
        rej(new Error(`the soak server did not answer in ${ms} ms: ${this.tail()}`));
      }, ms);
      this.waiters.push((m) => {
        clearTimeout(t);
        this.child.off('exit', onExit);
        res(m);
      });
      this.child.once('exit', onExit);
    });
  }

  tail(): string {
    return this.stderr.split('\n').filter(Boolean).slice(-3).join(' | ') || 'no output';
  }

  async measure(): Promise<Measure> {
    this.child.send({ op: 'measure' } satisfies ToChild);
    const m = await this.next(60_000);
    if (m.event !== 'measured') throw new Error('unexpected answer from the soak server');
    return m.m;
  }

  async snapshot(path: string): Promise<void> {
    this.child.send({ op: 'snapshot', path } satisfies ToChild);
    await this.next(120_000);
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null) return;
    const exited = new Promise((r) => this.child.once('exit', r));
    this.child.disconnect();
    const t = setTimeout(() => this.child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(t);
  }
}

/** Descriptors of kinds there are more of than at baseline, e.g. " fds+ socket:12". */
function fdDelta(base: Measure, m: Measure): string {
  const more = Object.entries(m.fdKinds)
    .filter(([k, n]) => n > (base.fdKinds[k] ?? 0) + 2)
    .map(([k, n]) => `${k}:${n - (base.fdKinds[k] ?? 0)}`);
  return more.length ? `  fds+ ${more.join(' ')}` : '';
}

const MB = (n: number) => (n / 2 ** 20).toFixed(1);

export async function benchSoak(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    strict: false,
    options: {
      quick: { type: 'boolean' },
      rounds: { type: 'string' },
      messages: { type: 'string' },
      backups: { type: 'string' },
      'child-env': { type: 'string', multiple: true },
      snapshots: { type: 'string' },
      'log-level': { type: 'string' },
      malloc: { type: 'string' },
    },
  });
  const quick = values.quick === true;
  const count = (k: 'rounds' | 'messages' | 'backups', dflt: number) => {
    const v = values[k] === undefined ? dflt : Number(values[k]);
    if (!Number.isInteger(v) || v < 0)
      throw new Error(`--${k} must be a whole number ≥ 0, not '${String(values[k])}'`);
    return v;
  };
  const rounds = Math.max(1, count('rounds', 3));
  const messages = count('messages', quick ? 15_000 : 150_000);
  const backups = count('backups', quick ? 40 : 480);
  const env: Record<string, string> = {};
  for (const kv of (values['child-env'] as string[] | undefined) ?? []) {
    const at = kv.indexOf('=');
    env[kv.slice(0, at)] = kv.slice(at + 1);
  }
  const snapshots = typeof values.snapshots === 'string' ? resolve(values.snapshots) : null;
  const dir = mkdtempSync(join(os.tmpdir(), 'ndmpd-soak-'));
  try {
    const exportDir = join(dir, 'export');
    const root = join(exportDir, 'tree');
    makeTree(root);
    const libraryDir = join(dir, 'library');
    const lib = Library.open(libraryDir, { drives: SLOTS });
    const tapes = lib.createTapes({ count: SLOTS, capacity: 1n << 30n }).map((b) => lib.tapePath(b));
    const stateDir = join(dir, 'state');
    mkdirSync(stateDir, { mode: 0o700 });
    const logLevel = typeof values['log-level'] === 'string' ? values['log-level'] : 'error';
    const { server, port } = await SoakServer.start(
      {
        exportDir,
        libraryDir,
        stateDir,
        logLevel,
        malloc: typeof values.malloc === 'string' ? values.malloc : 'ndmpd',
      },
      env,
    );
    try {
      const envText = Object.entries(env)
        .map(([k, v]) => `${k}=${v}`)
        .join(' ');
      console.log(
        `\nsoak: ${rounds} rounds of ${messages} fuzzed messages (v3/v4, before/after login) and ${backups} abandoned LOCAL backups with history, one server process${envText ? ` (${envText})` : ''}`,
      );
      const base = await server.measure();
      if (snapshots) await server.snapshot(join(snapshots, 'soak-0-baseline.heapsnapshot'));
      const header = `${'after'.padEnd(22)} ${'RSS MB'.padStart(8)} ${'×base'.padStart(6)} ${'heap MB'.padStart(8)} ${'ext MB'.padStart(7)} ${'ab MB'.padStart(6)} ${'threads'.padStart(7)} ${'fds'.padStart(4)} ${'sess.thr'.padStart(8)} ${'hist.ch'.padStart(7)}  time`;
      console.log(header);
      const row = (label: string, m: Measure, ms: number) =>
        console.log(
          `${label.padEnd(22)} ${MB(m.rss).padStart(8)} ${(m.rss / base.rss).toFixed(2).padStart(6)} ${MB(m.heapUsed).padStart(8)} ${MB(m.external).padStart(7)} ${MB(m.arrayBuffers).padStart(6)} ${String(m.threads).padStart(7)} ${String(m.fds).padStart(4)} ${String(m.sessionThreads).padStart(8)} ${String(m.historyChannels).padStart(7)}  ${(ms / 1000).toFixed(1)} s${fdDelta(base, m)}`,
        );
      row('baseline (idle)', base, 0);
      // What the first sessions start once for good (the history thread, code compiled for the
      // services) is not memory kept: a warm-up, and the figures also against it.
      await fuzzRound(port, 0x1234567, 600);
      await backupRound(port, 0x7654321, tapes, SLOTS, root);
      const warm = await server.measure();
      row(`warm-up (${SLOTS} backups)`, warm, 0);
      let peak = base.rss;
      const peakOf = () => {
        try {
          peak = Math.max(peak, procStatus(server.child.pid!).rss);
        } catch {
          /* gone */
        }
      };
      const sampler = setInterval(peakOf, 250);
      for (let r = 1; r <= rounds; r++) {
        let t = Date.now();
        const conns = await fuzzRound(port, 0x9e3779b9 ^ r, messages);
        row(`fuzz ${r} (${conns} conns)`, await server.measure(), Date.now() - t);
        t = Date.now();
        const fh = await backupRound(port, 0x85ebca6b ^ r, tapes, backups, root);
        row(`backups ${r} (${fh}/${backups} FH)`, await server.measure(), Date.now() - t);
      }
      clearInterval(sampler);
      const last = await server.measure();
      if (snapshots) await server.snapshot(join(snapshots, `soak-${rounds}-end.heapsnapshot`));
      console.log(
        `descriptors: baseline ${JSON.stringify(base.fdKinds)}, end ${JSON.stringify(last.fdKinds)}`,
      );
      console.log(
        `end: idle RSS ${MB(last.rss)} MB vs baseline ${MB(base.rss)} MB (×${(last.rss / base.rss).toFixed(2)}, +${MB(last.rss - base.rss)} MB), vs warm-up ${MB(warm.rss)} MB (×${(last.rss / warm.rss).toFixed(2)}, +${MB(last.rss - warm.rss)} MB); peak RSS while driven ${MB(peak)} MB`,
      );
    } finally {
      await server.stop();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[2] === '--soak-serve') await serve();
else if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  await benchSoak(process.argv.slice(2));
}
