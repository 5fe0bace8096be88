// The pieces every backup benchmark drives: a real `ndmpd` child process (its
// log captured), a DMA connection that can read its control socket slowly,
// and one LOCAL backup through them with its figures. bench/backup.ts,
// bench/dar.ts and bench/rss.ts share them.

import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import {
  chmodSync,
  closeSync,
  fstatSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import net from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';

import { Library } from '../src/devices/library.js';
import { NdmpClient } from '../src/dma/client.js';
import {
  AddrType,
  DataHaltReason,
  INVALID_U64,
  M,
  MessageType,
  MoverHaltReason,
  MoverMode,
  TapeMtioOp,
  TapeOpenMode,
} from '../src/wire/index.js';
import type { FhFile, HaltedPost } from '../src/wire/index.js';

const NDMPD_BIN = resolve(dirname(fileURLToPath(import.meta.url)), '..', 'src', 'cli', 'ndmpd.js');
export const USER = 'bench';
export const PASSWORD = 'bench-Pass-4';
/** Every server gets 4 drives: the library is made on the first start and reused by the others. */
export const DRIVES = 4;

// ---- the server as a child process ------------------------------------------

/** Every ndmpd this process started and has not seen exit: killed on any way out. */
const children = new Set<ChildProcess>();
export function killChildren(): void {
  for (const c of children) c.kill('SIGKILL');
}
process.on('exit', killChildren);

/** A TCP port on loopback that nothing listens on now. */
export async function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = net.createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => res(p));
    });
  });
}

/** A fresh folder for one benchmark's server under `base`, with the bench user's auth file (mode 0600). */
export function makeRunDir(base: string): { runDir: string; authFile: string } {
  const runDir = mkdtempSync(join(base, 'run-'));
  const authFile = join(runDir, 'auth');
  writeFileSync(authFile, `${USER}:${PASSWORD}\n`);
  chmodSync(authFile, 0o600);
  return { runDir, authFile };
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** A JSON log line of the server, as pino writes it. */
export type LogLine = Record<string, unknown> & { level?: number; msg?: string };

/** pino's number for warn: what the bench reports as the server's complaints. */
const WARN = 40;

/**
 * `ndmpd` as an operator starts it, logging JSON at level info (the level
 * that has "file history ended", whose counters the bench reads; a backup
 * logs a handful of lines there, not one per file). Not the tests' helper
 * (test/helpers/ndmpd-process.ts): that one makes its own state dir and
 * export, where this one must reuse the library and export the corpus;
 * readiness here is a DMA's greeting.
 */
export class Ndmpd {
  /** Output not yet split into lines. */
  private partial = '';
  /** The last lines, parsed, and how many came before them (so marks outlive trimming). */
  private lines: LogLine[] = [];
  private dropped = 0;

  private constructor(
    readonly child: ChildProcess,
    readonly port: number,
    readonly stateDir: string,
  ) {
    const keep = (d: Buffer) => {
      const text = this.partial + d.toString();
      const parts = text.split('\n');
      this.partial = parts.pop()!;
      for (const l of parts) {
        if (!l.trim()) continue;
        try {
          this.lines.push(JSON.parse(l) as LogLine);
        } catch {
          this.lines.push({ level: WARN, msg: l });
        }
      }
      // Bounded: a long run keeps only its recent lines.
      if (this.lines.length > 20_000) {
        this.dropped += 10_000;
        this.lines = this.lines.slice(10_000);
      }
    };
    child.stdout!.on('data', keep);
    child.stderr!.on('data', keep);
  }

  static async start(o: {
    stateDir: string;
    authFile: string;
    root: string;
    extra: string[];
    /** More exports, NAME=PATH (the DAR benchmark restores into one). */
    exports?: string[];
  }): Promise<Ndmpd> {
    const port = await freePort();
    const child = spawn(
      process.execPath,
      [
        // To profile the server: BENCH_SERVER_NODE_ARGS='--cpu-prof --cpu-prof-dir=/tmp/p'
        // (node refuses --cpu-prof in NODE_OPTIONS).
        ...(process.env.BENCH_SERVER_NODE_ARGS ?? '').split(' ').filter(Boolean),
        NDMPD_BIN,
        '--listen',
        `127.0.0.1:${port}`,
        '--state-dir',
        o.stateDir,
        '--auth-file',
        o.authFile,
        '--export',
        `bench=${o.root}`,
        ...(o.exports ?? []).flatMap((e) => ['--export', e]),
        '--drives',
        String(DRIVES),
        '--log-level',
        'info',
        '--log-format',
        'json',
        ...o.extra,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    children.add(child);
    child.once('exit', () => children.delete(child));
    const server = new Ndmpd(child, port, o.stateDir);
    const deadline = performance.now() + 20_000;
    for (;;) {
      if (child.exitCode !== null || child.signalCode !== null) {
        throw new Error(
          `ndmpd did not start (exit ${child.exitCode ?? child.signalCode}): ${server.firstError()}`,
        );
      }
      try {
        const c = await NdmpClient.connect({ host: '127.0.0.1', port, timeoutMs: 2000 });
        c.destroy();
        return server;
      } catch {
        if (performance.now() > deadline) {
          await server.stop();
          throw new Error(`ndmpd did not answer on port ${port} within 20 s: ${server.firstError()}`);
        }
        await sleep(50);
      }
    }
  }

  /** The first complaint (warn or above) of the server, else its first line. */
  firstError(): string {
    const texts = this.messagesSince(0);
    const line = texts[0] ?? (this.lines[0] ? JSON.stringify(this.lines[0]) : 'no output');
    return line.length > 200 ? `${line.slice(0, 200)}…` : line;
  }

  /** Where the server's log is now; `messagesSince` and `linesSince` read what came after. */
  mark(): number {
    return this.dropped + this.lines.length;
  }

  /** The parsed log lines since `mark` (those still kept). */
  linesSince(mark: number): LogLine[] {
    return this.lines.slice(Math.max(0, mark - this.dropped));
  }

  /** The `msg` (and `err`) of each warning or error line since `mark`. */
  messagesSince(mark: number): string[] {
    return this.linesSince(mark)
      .filter((o) => (o.level ?? WARN) >= WARN)
      .map((o) => {
        const e = o.err as { message?: string } | string | undefined;
        const err = typeof e === 'string' ? e : e?.message;
        const msg = o.msg ?? JSON.stringify(o);
        return err ? `${msg}: ${err}` : msg;
      });
  }

  /**
   * The first log line since `mark` whose msg is `msg`, waited for up to
   * `timeoutMs` (the server logs some lines just after the posts a DMA waits
   * for); null if none came.
   */
  async waitForLine(mark: number, msg: string, timeoutMs: number): Promise<LogLine | null> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const hit = this.linesSince(mark).find((o) => o.msg === msg);
      if (hit || performance.now() > deadline) return hit ?? null;
      await sleep(20);
    }
  }

  /** VmHWM: the most resident memory this process has had, in KiB. */
  peakRssKiB(): number | null {
    try {
      const m = /^VmHWM:\s+(\d+) kB/m.exec(readFileSync(`/proc/${this.child.pid}/status`, 'utf8'));
      return m ? Number(m[1]) : null;
    } catch {
      return null;
    }
  }

  tapePath(drive: string): string {
    return join(this.stateDir, 'library', 'drives', drive);
  }

  /**
   * A blank tape in `drive` instead of the one there, whose files are removed
   * (unless --in-place). Done as `ndmpd tape unload/create/load` would, on the
   * library folder, while no DMA uses the drive.
   */
  freshTape(drive: string): void {
    const lib = Library.open(join(this.stateDir, 'library'), { drives: DRIVES });
    const old = lib.unload(drive);
    const [blank] = lib.createTapes({ count: 1, prefix: 'BEN' });
    lib.load(blank!, drive);
    if (old) {
      rmSync(lib.tapePath(old), { force: true });
      rmSync(`${lib.tapePath(old)}.idx`, { force: true });
    }
  }

  async stop(): Promise<void> {
    const c = this.child;
    if (c.exitCode !== null || c.signalCode !== null) return;
    const exited = new Promise((r) => c.once('exit', r));
    c.kill('SIGTERM');
    const t = setTimeout(() => c.kill('SIGKILL'), 8000);
    await exited;
    clearTimeout(t);
  }
}

// ---- a DMA that reads its control socket slowly, or not at all ------------

const FH_CODES = new Set([M.FH_ADD_FILE.code, M.FH_ADD_DIR.code, M.FH_ADD_NODE.code]);

/**
 * Stands between a client's socket and the client's own parser and hands it
 * whole records one at a time. After each FH post it stops reading the socket
 * for `delayMs`: the socket is paused, so once Node's small read buffer is
 * full the kernel's buffers fill and TCP backpressure reaches the server,
 * as with a DMA busy writing its index. `stallAfterReply` stops reading
 * entirely after a given reply until `release`.
 *
 * NdmpClient does not expose its socket and must not change for a benchmark;
 * the field is reached by name here, and its absence is reported.
 */
export class ControlGate {
  delayMs = 0;
  /** Time spent not reading because of the delay, summed. */
  heldMs = 0;
  private readonly socket: net.Socket;
  private readonly deliver: (b: Buffer) => void;
  private partial: Buffer = Buffer.alloc(0);
  private readonly queue: { bytes: Buffer; type: number; code: number }[] = [];
  private held = false;
  private stalled = false;
  private stallCode: number | null = null;

  constructor(client: NdmpClient) {
    const socket = (client as unknown as { socket?: unknown }).socket;
    if (!(socket instanceof net.Socket)) {
      throw new Error('NdmpClient keeps no `socket` field any more: the slow DMA cannot hold its reads back');
    }
    this.socket = socket;
    const parsers = socket.listeners('data') as ((b: Buffer) => void)[];
    socket.removeAllListeners('data');
    this.deliver = (b) => {
      for (const p of parsers) p(b);
    };
    socket.on('data', (chunk: Buffer) => this.onChunk(chunk));
  }

  stallAfterReply(code: number): void {
    this.stallCode = code;
  }

  release(): void {
    this.stalled = false;
    this.pump();
  }

  private onChunk(chunk: Buffer): void {
    const buf = this.partial.length ? Buffer.concat([this.partial, chunk]) : chunk;
    let at = 0;
    // Whole records (one or more fragments, RFC 5531 record marking).
    for (;;) {
      let pos = at;
      let done = false;
      while (buf.length - pos >= 4) {
        const mark = buf.readUInt32BE(pos);
        const len = mark & 0x7fffffff;
        if (buf.length - pos - 4 < len) break;
        pos += 4 + len;
        if (mark & 0x80000000) {
          done = true;
          break;
        }
      }
      if (!done) break;
      const first = buf.readUInt32BE(at) & 0x7fffffff;
      const type = first >= 16 ? buf.readUInt32BE(at + 4 + 8) : -1;
      const code = first >= 16 ? buf.readUInt32BE(at + 4 + 12) : -1;
      this.queue.push({ bytes: buf.subarray(at, pos), type, code });
      at = pos;
    }
    this.partial = at < buf.length ? Buffer.from(buf.subarray(at)) : Buffer.alloc(0);
    this.pump();
  }

  private pump(): void {
    while (this.queue.length > 0 && !this.held && !this.stalled) {
      const r = this.queue.shift()!;
      this.deliver(r.bytes);
      if (r.type === MessageType.NDMP_MESSAGE_REPLY && r.code === this.stallCode) {
        this.stallCode = null;
        this.stalled = true;
      } else if (r.type === MessageType.NDMP_MESSAGE_REQUEST && FH_CODES.has(r.code) && this.delayMs > 0) {
        this.held = true;
        const from = performance.now();
        setTimeout(() => {
          this.heldMs += performance.now() - from;
          this.held = false;
          this.pump();
        }, this.delayMs);
      }
    }
    if (this.queue.length > 0 || this.held || this.stalled) this.socket.pause();
    else this.socket.resume();
  }
}

// ---- one backup -------------------------------------------------------------

/**
 * The clock a tape image's mtime is in, read as a write to a probe file on the
 * same file system stamps it: the tape's last write and the moment the DMA
 * reads NOTIFY_MOVER_HALTED are then on one clock, on one machine. The kernel
 * stamps unqueried files from its coarse clock (one tick, 4 ms at HZ=250) and a
 * queried one finely, so a latency read this way is at most a tick too long.
 */
export class FileClock {
  private fd: number | null;
  private readonly one = Buffer.alloc(1);

  constructor(readonly path: string) {
    this.fd = openSync(path, 'w');
    // Queried once: its next write is stamped finely (multigrain timestamps).
    fstatSync(this.fd);
  }

  nowNs(): bigint {
    if (this.fd === null) throw new Error(`the file clock ${this.path} is closed`);
    writeSync(this.fd, this.one, 0, 1, 0);
    return fstatSync(this.fd, { bigint: true }).mtimeNs;
  }

  close(): void {
    if (this.fd === null) return;
    closeSync(this.fd);
    this.fd = null;
    rmSync(this.path, { force: true });
  }
}

/** The server's threads by the names ndmpd gives them (src/util/native-fs.ts nameThread); the rest are node's. */
export const SERVER_THREADS = [
  'main',
  'ndmp-data',
  'ndmp-reader',
  'ndmp-drive',
  'ndmp-history',
  'other',
] as const;
export type ServerThread = (typeof SERVER_THREADS)[number];
export type ThreadSample = Map<number, { name: ServerThread; ns: number }>;

/** Run time of each thread of `pid` (schedstat, ns), named; threads that end between samples are lost. */
export function sampleThreads(pid: number | undefined): ThreadSample {
  const out: ThreadSample = new Map();
  if (pid === undefined) return out;
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const t of tids) {
    try {
      const comm = readFileSync(`/proc/${pid}/task/${t}/comm`, 'latin1').trim();
      const ns = Number(readFileSync(`/proc/${pid}/task/${t}/schedstat`, 'latin1').split(' ')[0]);
      const tid = Number(t);
      const name =
        tid === pid ? 'main' : (SERVER_THREADS as readonly string[]).includes(comm) ? comm : 'other';
      out.set(tid, { name: name as ServerThread, ns });
    } catch {
      // The thread ended.
    }
  }
  return out;
}

/** CPU ms per named thread between two samples (a thread born in between counts from 0). */
export function threadCpuMs(before: ThreadSample, after: ThreadSample): Record<ServerThread, number> {
  const ms = Object.fromEntries(SERVER_THREADS.map((n) => [n, 0])) as Record<ServerThread, number>;
  for (const [tid, a] of after) ms[a.name] += (a.ns - (before.get(tid)?.ns ?? 0)) / 1e6;
  return ms;
}

export interface Figures {
  dataMs: number;
  jobMs: number;
  /** FH entries received (history on), else the corpus's files + directories. */
  entries: number;
  posts: number;
  bytes: number;
  /** How long the DMA was not reading because of its delay (0 for a fast DMA). */
  histMs: number;
  /** CPU time of this process (the DMA) during the backup. */
  dmaCpuMs: number;
  /** DATA_START_BACKUP's reply → the tape image's last write (its mtime), on the file clock. */
  tapeMs: number;
  /** The tape image's last write → the DMA reading NOTIFY_MOVER_HALTED, on the file clock. */
  haltLatencyMs: number;
  /** historyThreadCpuMs of the server's "file history ended" line; NaN when it has none. */
  historyCpuMs: number;
  /** The entries that line counts (its history.entries), else NaN. */
  historyEntries: number;
  /** The server's CPU during the backup, per thread (see SERVER_THREADS). */
  serverCpuMs: Record<ServerThread, number>;
}

export const nameOf = (table: Record<string, number>, v: number) =>
  Object.entries(table).find(([, n]) => n === v)?.[0] ?? String(v);

/** A number named `key` anywhere in a log line (the field's place is the server's to choose). */
export function findNumber(o: unknown, key: string, depth = 0): number | null {
  if (o === null || typeof o !== 'object' || depth > 4) return null;
  const rec = o as Record<string, unknown>;
  if (typeof rec[key] === 'number') return rec[key];
  for (const v of Object.values(rec)) {
    const n = findNumber(v, key, depth + 1);
    if (n !== null) return n;
  }
  return null;
}

/** historyThreadCpuMs per 100,000 entries (in all, for a handful), or "n/a" while the server does not log it. */
export function historyCpuPer100k(m: Figures): string {
  const entries = Number.isFinite(m.historyEntries) && m.historyEntries > 0 ? m.historyEntries : m.entries;
  if (!Number.isFinite(m.historyCpuMs) || !(entries > 0)) return 'n/a';
  // A handful of entries says what the thread costs at all, not per entry (the large corpus has 5).
  if (entries < 10_000) return `${m.historyCpuMs.toFixed(0)} ms for ${entries} entries`;
  return `${((m.historyCpuMs * 100_000) / entries).toFixed(0)} ms per 100k entries`;
}

/** A LOCAL backup from one DMA connection: prepared, started, finished. */
export class BackupJob {
  gate: ControlGate | null = null;
  entries = 0;
  posts = 0;
  /** Each FH_ADD_FILE entry, when the caller wants them (the DAR benchmark picks a file). */
  onFile: ((f: FhFile) => void) | null = null;
  private tStart = 0;
  private tMover: number | null = null;
  private tData: number | null = null;
  private startNs = 0n;
  private tapeNs: bigint | null = null;
  private haltNs = 0n;
  private cpu0: NodeJS.CpuUsage = process.cpuUsage();
  private threads0: ThreadSample = new Map();
  private serverCpuMs: Record<ServerThread, number> | null = null;
  private dataHalt: HaltedPost | null = null;
  private moverHalt: HaltedPost | null = null;
  private readonly halted: Promise<void>;
  private readonly clock: FileClock;
  private readonly mark: number;

  private constructor(
    readonly c: NdmpClient,
    readonly server: Ndmpd,
    readonly drive: string,
  ) {
    this.mark = server.mark();
    this.clock = new FileClock(join(server.stateDir, `clock-${drive}`));
    c.onPost(M.FH_ADD_FILE, (b) => {
      this.entries += b.files.length;
      this.posts++;
      if (this.onFile) for (const f of b.files) this.onFile(f);
    });
    // HIST=y is the path model; should a server answer with dir/node posts, they count as posts.
    c.onPost(M.FH_ADD_DIR, () => this.posts++);
    c.onPost(M.FH_ADD_NODE, () => this.posts++);
    const mover = new Promise<void>((r) =>
      c.onPost(M.NOTIFY_MOVER_HALTED, (b) => {
        this.tMover = performance.now();
        // Before this DMA sends anything else: the tape image as the mover left it, then "now".
        this.tapeNs =
          statSync(server.tapePath(drive), { bigint: true, throwIfNoEntry: false })?.mtimeNs ?? null;
        this.haltNs = this.clock.nowNs();
        this.moverHalt = b;
        r();
      }),
    );
    const data = new Promise<void>((r) =>
      c.onPost(M.NOTIFY_DATA_HALTED, (b) => {
        this.tData = performance.now();
        this.dataHalt = b;
        // Now, while the session's threads still run (they end with it).
        this.serverCpuMs = threadCpuMs(this.threads0, sampleThreads(this.server.child.pid));
        r();
      }),
    );
    this.halted = Promise.all([mover, data]).then(() => undefined);
  }

  /** Connected, logged in, tape rewound, mover listening LOCAL, data service connected to it. */
  static async prepare(
    server: Ndmpd,
    drive: string,
    opts: { recordSize: number; freshFiles: boolean; xattrs: 'y' | 'n' },
    gated: boolean,
  ): Promise<BackupJob> {
    if (opts.freshFiles) server.freshTape(drive);
    const c = await NdmpClient.connect({ host: '127.0.0.1', port: server.port, timeoutMs: 60_000 });
    const job = new BackupJob(c, server, drive);
    job.xattrs = opts.xattrs;
    try {
      if (gated) job.gate = new ControlGate(c);
      await c.open(4);
      await c.authText(USER, PASSWORD);
      await c.call(M.TAPE_OPEN, { device: drive, mode: TapeOpenMode.NDMP_TAPE_RDWR_MODE });
      // From BOT: a blank tape, or (--in-place) the same tape rewritten.
      await c.call(M.TAPE_MTIO, { tapeOp: TapeMtioOp.NDMP_MTIO_REW, count: 1 });
      await c.call(M.MOVER_SET_RECORD_SIZE, { len: opts.recordSize });
      await c.call(M.MOVER_SET_WINDOW, { offset: 0n, length: INVALID_U64 });
      await c.call(M.MOVER_LISTEN, {
        mode: MoverMode.NDMP_MOVER_MODE_READ,
        addrType: AddrType.NDMP_ADDR_LOCAL,
      });
      await c.call(M.DATA_CONNECT, { addr: { addrType: AddrType.NDMP_ADDR_LOCAL } });
      return job;
    } catch (e) {
      job.destroy();
      throw e;
    }
  }

  /** XATTRS and ACLS of the backup. */
  xattrs: 'y' | 'n' = 'y';

  async start(root: string, hist: 'y' | 'n'): Promise<void> {
    this.cpu0 = process.cpuUsage();
    this.threads0 = sampleThreads(this.server.child.pid);
    await this.c.call(M.DATA_START_BACKUP, {
      butypeName: 'tar',
      env: [
        { name: 'FILESYSTEM', value: root },
        { name: 'HIST', value: hist },
        { name: 'TYPE', value: 'tar' },
        { name: 'XATTRS', value: this.xattrs },
        { name: 'ACLS', value: this.xattrs },
      ],
    });
    this.tStart = performance.now();
    this.startNs = this.clock.nowNs();
  }

  /**
   * Waits for both halts, checks them, reads the byte counts, and ends the
   * session cleanly (the tape stays in its drive, for bench/dar.ts to read).
   */
  async finish(timeoutMs: number, corpusEntries: number, hist: 'y' | 'n'): Promise<Figures> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((r) => (timer = setTimeout(() => r('late'), timeoutMs)));
    const r = await Promise.race([this.halted, late]);
    clearTimeout(timer);
    if (r === 'late') {
      const seen =
        this.tMover === null ? 'no NOTIFY_MOVER_HALTED' : 'NOTIFY_MOVER_HALTED but no NOTIFY_DATA_HALTED';
      throw new Error(`${seen} after ${(timeoutMs / 1000).toFixed(0)} s (${this.entries} FH entries so far)`);
    }
    const cpu = process.cpuUsage(this.cpu0);
    const data = this.dataHalt!;
    const mover = this.moverHalt!;
    if (data.reason !== DataHaltReason.NDMP_DATA_HALT_SUCCESSFUL) {
      throw new Error(`data halted ${nameOf(DataHaltReason, data.reason)} ${data.textReason ?? ''}`.trim());
    }
    if (mover.reason !== MoverHaltReason.NDMP_MOVER_HALT_CONNECT_CLOSED) {
      throw new Error(
        `mover halted ${nameOf(MoverHaltReason, mover.reason)} ${mover.textReason ?? ''}`.trim(),
      );
    }
    const moved = Number((await this.c.call(M.MOVER_GET_STATE, {})).bytesMoved);
    const processed = Number((await this.c.call(M.DATA_GET_STATE, {})).bytesProcessed);
    await this.c.call(M.DATA_STOP, {});
    await this.c.call(M.MOVER_STOP, {});
    await this.c.call(M.TAPE_CLOSE, {});
    await this.c.close();
    this.clock.close();
    // The history thread's own figures, logged as its session's history ends (info level).
    let historyCpuMs = NaN;
    let historyEntries = NaN;
    if (hist === 'y') {
      const line = await this.server.waitForLine(this.mark, 'file history ended', 3000);
      historyCpuMs = findNumber(line, 'historyThreadCpuMs') ?? NaN;
      historyEntries = findNumber(line?.history, 'entries') ?? NaN;
    }
    const ms = (ns: bigint) => Number(ns) / 1e6;
    return {
      dataMs: this.tMover! - this.tStart,
      jobMs: this.tData! - this.tStart,
      entries: hist === 'y' ? this.entries : corpusEntries,
      posts: this.posts,
      bytes: moved || processed,
      histMs: this.gate?.heldMs ?? 0,
      dmaCpuMs: (cpu.user + cpu.system) / 1000,
      tapeMs: this.tapeNs === null ? NaN : ms(this.tapeNs - this.startNs),
      haltLatencyMs: this.tapeNs === null ? NaN : ms(this.haltNs - this.tapeNs),
      historyCpuMs,
      historyEntries,
      serverCpuMs: this.serverCpuMs ?? threadCpuMs(new Map(), new Map()),
    };
  }

  destroy(): void {
    this.c.destroy();
    this.clock.close();
  }
}
