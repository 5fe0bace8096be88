// File history's hand-off between threads and onto the DMA's socket (issue 14,
// items 2 and 4; docs/history.md, "Measured"):
//
// 1. in process: a worker plays a backup's session thread and writes path-model
//    records into its ring at a backup's pace (bursts every millisecond), the
//    real history thread encodes them, the main thread writes them to a TCP
//    reader that discards them. Reported per 100k entries: the history
//    thread's CPU and the main thread's (utime + stime of each thread, from
//    /proc/self/task: the same figure for code without the historyThreadCpuMs
//    counter, so before and after compare), and the messages between them.
// 2. a real `ndmpd` child, a LOCAL backup of the small corpus with HIST=y and a
//    DMA that stops reading its control socket for --slow-delay-ms after each
//    FH post (bench/backup.ts's slow DMA): how long after the tape's last write
//    (the tape image's mtime, read as NOTIFY_MOVER_HALTED arrives, before the
//    DMA sends anything) the DMA sees NOTIFY_MOVER_HALTED; how long a
//    DATA_GET_STATE sent then takes to be answered; that NOTIFY_DATA_HALTED came
//    after every FH entry. Also the server's historyThreadCpuMs (from its "file
//    history ended" log line) and its main thread's CPU, for a fast DMA too.
//
//   node dist/bench/history-handoff.js [--part handoff,dma] [--entries N] [--rate R]
//        [--scale F] [--runs N] [--slow-delay-ms MS|auto] [--ndmpd PATH]
//
// --slow-delay-ms auto (the default) picks, as bench/backup.ts does, a delay
// per post that makes the DMA need 1.5× the fast run's data-stream time to
// take all history. --ndmpd runs another build's server (a before/after).
//
// Prints figures; asserts nothing (tests check behaviour, benchmarks measure).

import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import {
  chmodSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';

import { Library } from '../src/devices/library.js';
import { NdmpClient } from '../src/dma/client.js';
import { HistoryControl } from '../src/history/control.js';
import type { HistoryChannel } from '../src/history/control.js';
import { HistoryHub, historyDefaults } from '../src/history/hub.js';
import { RingProducer } from '../src/history/producer.js';
import { FLAG_NODE, HistoryModel, RecordWriter } from '../src/history/record.js';
import { createLogger } from '../src/util/log.js';
import {
  AddrType,
  INVALID_U64,
  M,
  MessageType,
  MoverMode,
  TapeMtioOp,
  TapeOpenMode,
} from '../src/wire/index.js';
import { ensureCorpus } from './corpus.js';
import { freePort } from './ndmpd-child.js';

let ndmpdBin = resolve(dirname(fileURLToPath(import.meta.url)), '..', 'src', 'cli', 'ndmpd.js');
const USER = 'bench';
const PASSWORD = 'bench-Pass-4';

// ---- 1. the hand-off in process ----------------------------------------------

/** utime + stime of one of this process's threads, in ms (clock ticks of 10 ms). */
function threadCpuMs(tid: number | string): number {
  const f = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
  const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return (Number(rest[11]) + Number(rest[12])) * 10;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const tasks = () => new Set(readdirSync('/proc/self/task'));

interface ProducerData {
  channel: HistoryChannel;
  count: number;
  /** Records per millisecond burst (0: as fast as possible). */
  perMs: number;
}

/** The worker's side: a session thread writing records at a backup's pace, then waiting for delivery. */
async function produce({ channel, count, perMs }: ProducerData): Promise<void> {
  const st = lstatSync(process.cwd(), { bigint: true });
  const producer = new RingProducer(channel);
  const w = new RecordWriter();
  producer.write(w.hello(HistoryModel.PATH));
  const t0 = performance.now();
  const nap = new Int32Array(new SharedArrayBuffer(4));
  for (let i = 0, burst = 1; i < count; burst++) {
    const end = perMs > 0 ? Math.min(count, i + perMs) : count;
    for (; i < end; i++)
      producer.write(
        w.entry(`dir-${i % 1000}/file-${i}.dat`, st, BigInt(i + 3), BigInt(i) * 1536n, FLAG_NODE)!,
      );
    // A backup makes records between its file reads: the next burst a millisecond after this one began.
    if (perMs > 0) Atomics.wait(nap, 0, 0, Math.max(0, t0 + burst - performance.now()));
  }
  const status = await producer.finish();
  parentPort!.postMessage({ status, ms: performance.now() - t0, ringWaits: producer.ringWaits });
}

async function benchHandoff(count: number, rate: number): Promise<void> {
  let received = 0;
  const server = net.createServer((s) => s.on('data', (b: Buffer) => (received += b.length)));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const sock = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
  await new Promise<void>((r) => sock.once('connect', r));
  const log = createLogger({ level: 'silent' });
  const hub = new HistoryHub(historyDefaults(join(os.tmpdir(), 'ndmpd-bench-spool')), log);
  let writes = 0;
  const before = tasks();
  const { channel } = hub.open({
    id: 1,
    log,
    writeEncoded: (m, done) => {
      writes++;
      sock.write(m, (err) => done(err ?? undefined));
    },
  });
  // The thread hub.open started is the history thread.
  await sleep(200);
  const started = [...tasks()].filter((t) => !before.has(t));
  if (started.length !== 1)
    throw new Error(`expected one new thread for the history thread, found ${started.length}`);
  const historyTid = started[0]!;
  const hist0 = threadCpuMs(historyTid);
  const main0 = threadCpuMs(process.pid);
  const perMs = rate > 0 ? Math.max(1, Math.round(rate / 1000)) : 0;
  const w = new Worker(new URL(import.meta.url), {
    workerData: { channel, count, perMs } satisfies ProducerData,
  });
  const r = await new Promise<{ status: number; ms: number; ringWaits: number }>((res, rej) => {
    w.once('message', res);
    w.once('error', rej);
  });
  const mainMs = threadCpuMs(process.pid) - main0;
  const histMs = threadCpuMs(historyTid) - hist0;
  await w.terminate();
  const c = new HistoryControl(channel.control).snapshot();
  const per = 100_000 / count;
  console.log(
    `  ${count.toLocaleString('en')} entries${rate > 0 ? ` at ${rate.toLocaleString('en')}/s` : ', as fast as they come'}: ` +
      `${(r.ms / 1000).toFixed(2)} s, ${c.posts} messages, ${(received / 2 ** 20).toFixed(1)} MiB; per 100k entries: ` +
      `history thread ${(histMs * per).toFixed(0)} ms CPU` +
      ('historyThreadCpuMs' in c ? ` (its own clock: ${(c.historyThreadCpuMs * per).toFixed(0)} ms)` : '') +
      `, main thread ${(mainMs * per).toFixed(0)} ms CPU ` +
      `(${writes} writes; ring-full waits ${r.ringWaits})`,
  );
  sock.destroy();
  server.close();
  await hub.shutdown();
}

// ---- 2. a real server and a slow DMA ---------------------------------------------

class Server {
  out = '';
  private constructor(
    readonly child: ChildProcess,
    readonly port: number,
    readonly stateDir: string,
  ) {
    const keep = (d: Buffer) => (this.out += d.toString());
    child.stdout!.on('data', keep);
    child.stderr!.on('data', keep);
  }

  static async start(stateDir: string, authFile: string, root: string): Promise<Server> {
    const port = await freePort();
    const child = spawn(
      process.execPath,
      [
        ndmpdBin,
        ...['--listen', `127.0.0.1:${port}`, '--state-dir', stateDir, '--auth-file', authFile],
        ...['--export', `bench=${root}`, '--drives', '1', '--log-level', 'info', '--log-format', 'json'],
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const s = new Server(child, port, stateDir);
    for (let i = 0; ; i++) {
      try {
        (await NdmpClient.connect({ host: '127.0.0.1', port, timeoutMs: 2000 })).destroy();
        return s;
      } catch (e) {
        if (i > 200 || child.exitCode !== null)
          throw new Error(`ndmpd did not start: ${String(e)}\n${s.out}`);
        await sleep(50);
      }
    }
  }

  /** CPU ms of the whole process and of its main thread (utime + stime, clock ticks of 10 ms). */
  cpu(): { process: number; main: number } {
    const ticks = (path: string) => {
      const f = readFileSync(path, 'utf8');
      const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
      return (Number(rest[11]) + Number(rest[12])) * 10;
    };
    const pid = this.child.pid!;
    return { process: ticks(`/proc/${pid}/stat`), main: ticks(`/proc/${pid}/task/${pid}/stat`) };
  }

  /** The historyThreadCpuMs of the last "file history ended" line. */
  lastHistoryCpuMs(): number | null {
    const lines = this.out.split('\n').filter((l) => l.includes('"file history ended"'));
    if (lines.length === 0) return null;
    const o = JSON.parse(lines.at(-1)!) as { historyThreadCpuMs?: number };
    return o.historyThreadCpuMs ?? null;
  }

  freshTape(): void {
    const lib = Library.open(join(this.stateDir, 'library'), { drives: 1 });
    const old = lib.unload('drive0');
    const [blank] = lib.createTapes({ count: 1, prefix: 'HND' });
    lib.load(blank!, 'drive0');
    if (old) rmSync(lib.tapePath(old), { force: true });
  }

  tapePath(): string {
    return join(this.stateDir, 'library', 'drives', 'drive0');
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null) return;
    const exited = new Promise((r) => this.child.once('exit', r));
    this.child.kill('SIGTERM');
    await exited;
  }
}

const FH_CODES = new Set([M.FH_ADD_FILE.code, M.FH_ADD_DIR.code, M.FH_ADD_NODE.code]);

/**
 * The slow DMA of bench/backup.ts: between the client's socket and its parser,
 * whole records one at a time; after each FH post the socket is not read for
 * `delayMs` (paused), so TCP backpressure reaches the server.
 */
class SlowReader {
  private partial = Buffer.alloc(0);
  private readonly queue: { bytes: Buffer; slow: boolean }[] = [];
  private held = false;
  private readonly socket: net.Socket;
  private readonly deliver: (b: Buffer) => void;

  constructor(
    client: NdmpClient,
    readonly delayMs: number,
  ) {
    const socket = (client as unknown as { socket?: unknown }).socket;
    if (!(socket instanceof net.Socket)) throw new Error('NdmpClient keeps no `socket` field any more');
    this.socket = socket;
    const parsers = socket.listeners('data') as ((b: Buffer) => void)[];
    socket.removeAllListeners('data');
    this.deliver = (b) => parsers.forEach((p) => p(b));
    socket.on('data', (chunk: Buffer) => this.onChunk(chunk));
  }

  private onChunk(chunk: Buffer): void {
    const buf = this.partial.length ? Buffer.concat([this.partial, chunk]) : chunk;
    let at = 0;
    while (buf.length - at >= 4) {
      let pos = at;
      let done = false;
      while (buf.length - pos >= 4) {
        const mark = buf.readUInt32BE(pos);
        if (buf.length - pos - 4 < (mark & 0x7fffffff)) break;
        pos += 4 + (mark & 0x7fffffff);
        if (mark & 0x80000000) {
          done = true;
          break;
        }
      }
      if (!done) break;
      const type = buf.readUInt32BE(at + 12);
      const code = buf.readUInt32BE(at + 16);
      this.queue.push({
        bytes: buf.subarray(at, pos),
        slow: type === MessageType.NDMP_MESSAGE_REQUEST && FH_CODES.has(code),
      });
      at = pos;
    }
    this.partial = Buffer.from(buf.subarray(at));
    this.pump();
  }

  private pump(): void {
    while (this.queue.length > 0 && !this.held) {
      const r = this.queue.shift()!;
      this.deliver(r.bytes);
      if (r.slow && this.delayMs > 0) {
        this.held = true;
        setTimeout(() => {
          this.held = false;
          this.pump();
        }, this.delayMs);
      }
    }
    if (this.queue.length > 0 || this.held) this.socket.pause();
    else this.socket.resume();
  }
}

interface DmaFigures {
  /** NOTIFY_MOVER_HALTED's arrival after the tape's last write (its mtime). */
  moverLateMs: number;
  /** DATA_GET_STATE sent as NOTIFY_MOVER_HALTED arrived → its reply. */
  replyMs: number;
  /** FH entries that arrived after NOTIFY_MOVER_HALTED. */
  entriesAfterMover: number;
  entries: number;
  /** NOTIFY_DATA_HALTED after every FH entry, none after it. */
  ordered: boolean;
  historyCpuMs: number | null;
  posts: number;
  /** DATA_START_BACKUP's reply → NOTIFY_MOVER_HALTED. */
  dataMs: number;
  serverCpuMs: number;
  mainCpuMs: number;
  jobMs: number;
}

async function oneBackup(server: Server, root: string, delayMs: number): Promise<DmaFigures> {
  server.freshTape();
  const c = await NdmpClient.connect({ host: '127.0.0.1', port: server.port, timeoutMs: 120_000 });
  if (delayMs > 0) new SlowReader(c, delayMs);
  await c.open(4);
  await c.authText(USER, PASSWORD);
  await c.call(M.TAPE_OPEN, { device: 'drive0', mode: TapeOpenMode.NDMP_TAPE_RDWR_MODE });
  await c.call(M.TAPE_MTIO, { tapeOp: TapeMtioOp.NDMP_MTIO_REW, count: 1 });
  await c.call(M.MOVER_SET_RECORD_SIZE, { len: 10240 });
  await c.call(M.MOVER_SET_WINDOW, { offset: 0n, length: INVALID_U64 });
  await c.call(M.MOVER_LISTEN, { mode: MoverMode.NDMP_MOVER_MODE_READ, addrType: AddrType.NDMP_ADDR_LOCAL });
  await c.call(M.DATA_CONNECT, { addr: { addrType: AddrType.NDMP_ADDR_LOCAL } });
  let entries = 0;
  let posts = 0;
  let tMover = 0;
  let afterData = 0;
  let atMover = -1;
  let dataHalted = false;
  let moverLateMs = NaN;
  let reply: Promise<number> | null = null;
  c.onPost(M.FH_ADD_FILE, (b) => {
    entries += b.files.length;
    posts++;
    if (dataHalted) afterData += b.files.length;
  });
  const mover = new Promise<void>((r) =>
    c.onPost(M.NOTIFY_MOVER_HALTED, () => {
      // Before the DMA sends anything: the tape's last write as the file system saw it.
      moverLateMs = Date.now() - statSync(server.tapePath()).mtimeMs;
      tMover = performance.now();
      atMover = entries;
      const t = performance.now();
      reply = c.call(M.DATA_GET_STATE, {}).then(() => performance.now() - t);
      r();
    }),
  );
  const data = new Promise<void>((r) =>
    c.onPost(M.NOTIFY_DATA_HALTED, () => {
      dataHalted = true;
      r();
    }),
  );
  const cpu0 = server.cpu();
  const t0 = performance.now();
  await c.call(M.DATA_START_BACKUP, {
    butypeName: 'tar',
    env: [
      { name: 'FILESYSTEM', value: root },
      { name: 'HIST', value: 'y' },
      { name: 'TYPE', value: 'tar' },
    ],
  });
  await Promise.all([mover, data]);
  const jobMs = performance.now() - t0;
  const replyMs = await reply!;
  await sleep(200);
  const cpu1 = server.cpu();
  await c.call(M.DATA_STOP, {});
  await c.call(M.MOVER_STOP, {});
  await c.call(M.TAPE_CLOSE, {});
  await c.close();
  await sleep(100);
  return {
    moverLateMs,
    replyMs,
    entriesAfterMover: entries - atMover,
    entries,
    ordered: afterData === 0,
    historyCpuMs: server.lastHistoryCpuMs(),
    posts,
    dataMs: tMover - t0,
    serverCpuMs: cpu1.process - cpu0.process,
    mainCpuMs: cpu1.main - cpu0.main,
    jobMs,
  };
}

async function benchDma(scale: number, runs: number, delayMs: number | null): Promise<void> {
  const corpus = ensureCorpus('small', scale, (l) => console.log(`  ${l}`));
  const dir = mkdtempSync(join(os.tmpdir(), 'ndmpd-handoff-'));
  const authFile = join(dir, 'auth');
  writeFileSync(authFile, `${USER}:${PASSWORD}\n`);
  chmodSync(authFile, 0o600);
  mkdirSync(join(dir, 'state'));
  const server = await Server.start(join(dir, 'state'), authFile, corpus.root);
  const n = corpus.files + corpus.dirs + 1;
  try {
    await oneBackup(server, corpus.root, 0); // warm-up: JIT, page cache
    const fast: DmaFigures[] = [];
    for (let i = 0; i < runs; i++) fast.push(await oneBackup(server, corpus.root, 0));
    const posts = fast[0]!.posts;
    const dataMs = fast.map((f) => f.dataMs).sort((a, b) => a - b)[Math.floor(runs / 2)]!;
    const delay = delayMs ?? Math.max(1, Math.ceil((1.5 * dataMs) / posts));
    const slow: DmaFigures[] = [];
    for (let i = 0; i < runs; i++) slow.push(await oneBackup(server, corpus.root, delay));
    for (const [label, fs] of [
      ['fast DMA', fast],
      [`slow DMA (${delay} ms per FH post)`, slow],
    ] as const) {
      for (const f of fs) {
        const per = 100_000 / f.entries;
        console.log(
          `  ${label}: ${f.entries.toLocaleString('en')}/${n.toLocaleString('en')} entries in ${f.posts} posts, ` +
            `data ${(f.dataMs / 1000).toFixed(2)} s, job ${(f.jobMs / 1000).toFixed(2)} s; ` +
            `NOTIFY_MOVER_HALTED ${f.moverLateMs.toFixed(0)} ms after the tape's last write ` +
            `(${f.entriesAfterMover.toLocaleString('en')} entries after it), DATA_GET_STATE then answered in ${f.replyMs.toFixed(0)} ms, ` +
            `NOTIFY_DATA_HALTED after all history: ${f.ordered ? 'yes' : 'NO'}; per 100k entries: ` +
            `history thread ${f.historyCpuMs === null ? '?' : (f.historyCpuMs * per).toFixed(0)} ms CPU, ` +
            `server main thread ${(f.mainCpuMs * per).toFixed(0)} ms, whole server ${(f.serverCpuMs * per).toFixed(0)} ms`,
        );
      }
    }
  } finally {
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function benchHistoryHandoff(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    allowPositionals: true,
    strict: false,
    options: {
      part: { type: 'string', default: 'handoff,dma' },
      entries: { type: 'string', default: '1000000' },
      rate: { type: 'string', default: '60000' },
      scale: { type: 'string', default: '1' },
      runs: { type: 'string', default: '3' },
      'slow-delay-ms': { type: 'string', default: 'auto' },
      ndmpd: { type: 'string' },
    },
  });
  if (typeof values.ndmpd === 'string') ndmpdBin = resolve(values.ndmpd);
  const parts = String(values.part).split(',');
  if (parts.includes('handoff')) {
    console.log(
      '\nhistory hand-off in process (a paced producer, the history thread, a discarding TCP reader)',
    );
    await benchHandoff(Number(values.entries), Number(values.rate));
    await benchHandoff(Number(values.entries), 0);
  }
  if (parts.includes('dma')) {
    console.log('\nhistory to a real DMA socket: ndmpd, small corpus, LOCAL backup, HIST=y');
    const d = String(values['slow-delay-ms']);
    await benchDma(Number(values.scale), Number(values.runs), d === 'auto' ? null : Number(d));
  }
}

if (!isMainThread) await produce(workerData as ProducerData);
else if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href)
  await benchHistoryHandoff(process.argv.slice(2));
