// `ndmp verify BACKUP`: reads a cataloged backup back from its tapes and
// checks it against the catalog (docs/dma.md, "Verifying a backup"). No data
// server takes part: the DMA plays the data side itself. The tape server's
// mover listens over TCP in mode WRITE (tape to network), the DMA connects to
// it, asks for the whole stream with one MOVER_READ, and parses the pax
// stream as it arrives (verify-check.ts). The tapes are mounted part after
// part, through the changer when the server has one, exactly as a restore
// mounts them (tape-segments.ts); a record that fails the tape's own check
// (a data CRC, docs/tape-image.md) halts the mover MEDIA_ERROR, and the
// entry that spans it is named.

import net from 'node:net';
import { M, MoverHaltReason, MoverState } from '../wire/index.js';
import type { Addr } from '../wire/index.js';
import type { BackupRecord, Catalog, FileRow } from '../catalog/types.js';
import { DmaUsageError, connectAgent, formatTarget } from './agent.js';
import { addressOf, checkIdentity, knownServers, movedHint, rememberServer } from './identity.js';
import { serverRow, toServerPath } from './server-paths.js';
import type { AgentAddress, Credentials } from './agent.js';
import type { JobEvents } from './backup-job.js';
import { TapeLoader } from './loader.js';
import { JobLink, levelOfLog } from './job.js';
import { SegmentReader } from './tape-segments.js';
import { StreamCheck } from './verify-check.js';
import type { VerifyProblem } from './verify-check.js';
import { StallWatch, WAITS, seconds, withBound } from './waits.js';
import { CodedError } from '../util/coded-error.js';

export type { VerifyProblem } from './verify-check.js';

/** The mover's data connection could not be made. */
export class VerifyConnectError extends CodedError {
  readonly code = 'DMA_VERIFY_CONNECT';
  constructor(message: string) {
    super(message);
    this.name = 'VerifyConnectError';
  }
}

export interface VerifyJobOptions {
  backup: BackupRecord;
  /** Where the tapes are now, when not the catalog's tapeServer. */
  tapeServer?: AgentAddress;
  tapeCred: Credentials;
  catalog: Catalog;
  events?: JobEvents;
  signal?: AbortSignal;
  pollMs?: number;
  /** The check ends when no stream byte arrives for this long (ms). */
  stallMs?: number;
  /** The bound on one tape motion (open, rewind, spacing) (ms). */
  tapeMotionMs?: number;
}

export interface VerifyOutcome {
  ok: boolean;
  backup: number;
  /** Stream bytes read back, of `expectedBytes` (the catalog's). */
  bytes: number;
  expectedBytes: number;
  /** Entries met in the stream; catalog rows checked against. */
  entries: number;
  rows: number;
  problems: VerifyProblem[];
  warnings: VerifyProblem[];
  tapesRead: string[];
  /** Why reading stopped early (a medium error, an abort), when it did. */
  reason: string | null;
}

/** How long connecting to the mover's data address may take. */
const DATA_CONNECT_MS = 30_000;

/** Every row of the backup: a name pattern that matches every name (the root's empty one too). */
async function allRows(catalog: Catalog, b: BackupRecord): Promise<FileRow[]> {
  const limit = Math.max(1000, b.files * 2 + 1000);
  const rows = await withBound(
    catalog.find('*', { backupId: b.id, limit }),
    WAITS.catalogCallMs,
    `the catalog (${catalog.location}) to list the rows of backup ${b.id}`,
    'check the catalog database, then run the verify again',
  );
  return rows.map(({ backupId: _, ...r }) => r);
}

export async function runVerify(o: VerifyJobOptions): Promise<VerifyOutcome> {
  const b = o.backup;
  if (b.tapes.length === 0)
    throw new DmaUsageError(`backup ${b.id} has no tapes recorded (status ${b.status}): nothing to verify`);
  if (b.status !== 'done')
    o.events?.message?.('warning', `backup ${b.id} is ${b.status}: its stream may end early`);
  const rows = await allRows(o.catalog, b);
  const known = await knownServers(o.catalog, 'verify');
  // By identity: where the tape server answered last, unless the user says where it is now (docs/dma.md, "Servers").
  const addr = addressOf(known, b.tapeServerId, b.tapeServer, o.tapeServer);
  const tape = await connectAgent(addr, o.tapeCred).catch((e: unknown) => {
    throw movedHint(e, o.tapeServer ? null : '--tape-server');
  });
  try {
    const who = await rememberServer(o.catalog, tape, addr);
    checkIdentity(who, { id: b.tapeServerId }, addr, `whose tapes hold backup ${b.id}`, '--tape-server');
    const loader = await TapeLoader.forServer(
      tape,
      () => connectAgent(addr, o.tapeCred),
      (text) => o.events?.message?.('info', text),
    );
    try {
      return await new VerifyJob(o, rows, JobLink.tapeOnly(tape, o.tapeMotionMs), loader, addr).run();
    } finally {
      await loader.close();
    }
  } finally {
    await tape.close();
  }
}

class VerifyJob {
  private readonly check: StreamCheck;
  private readonly tapes: SegmentReader;
  private socket: net.Socket | null = null;
  private socketEnded = false;
  private socketError: string | null = null;
  private failure: string | null = null;

  constructor(
    private readonly o: VerifyJobOptions,
    private readonly rows: FileRow[],
    private readonly link: JobLink,
    private readonly loader: TapeLoader,
    private readonly addr: AgentAddress,
  ) {
    // Problems name entries as the server has them, as ls and find print them (docs/dma.md, "Paths").
    this.check = new StreamCheck(
      rows.map((r) => serverRow(o.backup, r)),
      (p) => toServerPath(o.backup, p),
    );
    this.tapes = new SegmentReader(o.backup.tapes, link, loader, (text) => this.say('info', text));
  }

  private say(level: 'info' | 'warning' | 'error', text: string): void {
    this.o.events?.message?.(level, text);
  }

  async run(): Promise<VerifyOutcome> {
    const { tape } = this.link;
    const b = this.o.backup;
    tape.onPost(M.LOG_MESSAGE, (p) => this.say(levelOfLog(p.logType), p.entry));
    try {
      await tape.call(M.MOVER_SET_RECORD_SIZE, { len: b.recordSize });
      const first = b.tapes[0]!;
      await this.tapes.mount(first);
      const connectAddr = await this.link.listenForDma(this.tapes.window(first));
      await this.connect(connectAddr);
      await this.accepted();
      // The whole stream in one read: the mover pauses at each tape part's end (tape-segments.ts).
      await tape.call(M.MOVER_READ, { offset: 0n, length: BigInt(b.bytes) });
      await this.monitor();
    } finally {
      this.socket?.destroy();
      await this.link.teardown();
      await this.loader.unmount();
    }
    const complete = this.check.bytes >= b.bytes && this.failure === null;
    this.check.finish(complete);
    const problems = [...this.check.problems];
    if (this.failure !== null) {
      problems.push({ code: 'TAPE_READ', path: null, offset: this.check.bytes, message: this.failure });
    }
    return {
      ok: problems.length === 0,
      backup: b.id,
      bytes: this.check.bytes,
      expectedBytes: b.bytes,
      entries: this.check.entries,
      rows: this.rows.length,
      problems,
      warnings: this.check.warnings,
      tapesRead: this.tapes.tapesRead,
      reason: this.failure,
    };
  }

  /** Connects to the mover's address; if none of those it gives answers, its control address with that port (a server behind NAT). */
  private async connect(addr: Addr): Promise<void> {
    if (addr.addrType !== 1 || addr.tcpAddrs.length === 0)
      throw new VerifyConnectError(`the mover listens on no TCP address (address type ${addr.addrType})`);
    const tried: string[] = [];
    const places = addr.tcpAddrs.map((a) => ({ host: ipv4(a.ipAddr), port: a.port }));
    places.push({ host: this.addr.host, port: addr.tcpAddrs[0]!.port });
    for (const p of places) {
      try {
        this.socket = await connectTcp(p.host, p.port);
        break;
      } catch (e) {
        tried.push(`${p.host}:${p.port} (${(e as Error).message})`);
      }
    }
    const sock = this.socket;
    if (!sock) {
      throw new VerifyConnectError(
        `could not connect to the mover of ${formatTarget(this.addr)}: tried ${tried.join(', ')}; ` +
          'check that its data ports are reachable from here (a firewall?)',
      );
    }
    sock.on('data', (chunk: Buffer) => {
      // The parse is synchronous: the socket is not read while it runs, and
      // TCP holds the mover back meanwhile (back-pressure); the stream bytes
      // beyond the backup's are the last record's padding, never asked for.
      sock.pause();
      try {
        this.check.push(chunk);
      } catch (e) {
        this.failure ??= `checking the stream failed: ${(e as Error).message}`;
      }
      sock.resume();
    });
    sock.on('end', () => {
      this.socketEnded = true;
    });
    sock.on('error', (e) => {
      this.socketError ??= e.message;
    });
  }

  /**
   * The mover takes our connection on its own thread, a moment after the
   * connect completes here; MOVER_READ is refused until it has (LISTEN).
   */
  private async accepted(): Promise<void> {
    const deadline = Date.now() + DATA_CONNECT_MS;
    for (;;) {
      const st = await this.link.tape.call(M.MOVER_GET_STATE, {});
      if (st.state !== MoverState.NDMP_MOVER_STATE_LISTEN) return;
      if (Date.now() > deadline) {
        throw new VerifyConnectError(
          `the mover of ${formatTarget(this.addr)} did not take the data connection in ${seconds(DATA_CONNECT_MS)}: see its log`,
        );
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  private get done(): boolean {
    return this.check.bytes >= this.o.backup.bytes;
  }

  /** Reads until every byte of the backup has arrived, the mover halts, or nothing moves for the stall timeout. */
  private async monitor(): Promise<void> {
    const { tape } = this.link;
    const b = this.o.backup;
    const pollMs = this.o.pollMs ?? 1000;
    const stall = new StallWatch(this.o.stallMs ?? WAITS.stallMs);
    let lastPoll = 0;
    const abort = async (why: string) => {
      this.failure ??= why;
      await this.link.abort();
    };
    while (!this.done && this.failure === null) {
      const gone = this.link.lost();
      if (gone) throw gone;
      if (this.o.signal?.aborted) {
        await abort('interrupted');
        break;
      }
      const pause = this.link.takePause();
      if (pause) {
        if (pause.name === 'MEDIA_ERROR') {
          // v3 pauses on a medium error (docs/protocol.md §4.2): the same as v4's halt here.
          await abort(this.unreadable('the mover paused MEDIA_ERROR'));
          break;
        }
        await this.tapes.onPause(pause.reason, pause.seekPosition).catch((e: Error) => abort(e.message));
        stall.reset();
        continue;
      }
      const halt = this.link.moverHalt;
      if (halt) {
        // Bytes already sent may still be in flight: let them arrive first.
        await this.link.next(200);
        if (this.done) break;
        const why =
          halt.reason === MoverHaltReason.NDMP_MOVER_HALT_MEDIA_ERROR
            ? this.unreadable(`the mover halted MEDIA_ERROR${halt.text ? `: ${halt.text}` : ''}`)
            : `the mover halted ${halt.name}${halt.text ? ` (${halt.text})` : ''} at stream byte ${this.check.bytes} of ${b.bytes}`;
        this.failure ??= why;
        break;
      }
      if (this.socketEnded || this.socketError) {
        await this.link.next(200);
        if (this.done) break;
        await abort(
          `the data connection ${this.socketError ? `failed (${this.socketError})` : 'closed'} at stream byte ` +
            `${this.check.bytes} of ${b.bytes}`,
        );
        break;
      }
      if (Date.now() - lastPoll >= pollMs) {
        lastPoll = Date.now();
        // Proof of life: a poll that times out abandons the connection, and lost() ends the job.
        await tape.call(M.MOVER_GET_STATE, {}).catch(() => null);
        this.o.events?.progress?.({
          bytes: this.check.bytes,
          bytesRemaining: Math.max(0, b.bytes - this.check.bytes),
          files: this.check.entries,
          tape: this.tapes.segment?.barcode ?? this.tapes.segment?.device ?? '',
        });
        stall.note(this.check.bytes, this.tapes.tapesRead.length);
        if (stall.expired) {
          await abort(
            `nothing moved for ${seconds(stall.limitMs)}: no stream bytes from the tape server ` +
              `(${this.check.bytes} of ${b.bytes} so far); see its log for what it waits on, ` +
              'or give --stall-timeout SECONDS',
          );
          break;
        }
      }
      await this.link.next(Math.min(pollMs, 100));
    }
    if (this.done && !this.link.moverHalt) {
      // All of it arrived: the stream is over for the mover too.
      await tape.call(M.MOVER_CLOSE, {}).catch(() => undefined);
    }
    if (!this.link.moverHalt) {
      const still = await this.link.waitBothHalted(WAITS.haltGraceMs).catch(() => null);
      if (still) this.say('warning', still);
    }
  }

  /** A record that cannot be read: the entries it holds, by the stream offset the mover had reached. */
  private unreadable(what: string): string {
    const at = this.check.bytes;
    const names = this.check.entriesIn(at, at + this.o.backup.recordSize);
    const seg = this.tapes.segment;
    const where = seg ? ` on tape ${seg.barcode ?? seg.device}, file ${seg.tapeFile}` : '';
    return (
      `${what}: the record at stream byte ${at}${where} cannot be read` +
      `${names.length ? `; it holds ${names.join(', ')}` : ''}`
    );
  }
}

function ipv4(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

function connectTcp(host: string, port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host, port });
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`no answer in ${seconds(DATA_CONNECT_MS)}`));
    }, DATA_CONNECT_MS);
    sock.once('connect', () => {
      clearTimeout(timer);
      sock.removeAllListeners('error');
      resolve(sock);
    });
    sock.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}
