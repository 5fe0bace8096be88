// What the admin socket (./admin-socket.ts) answers: the server's status,
// every session as the registry knows it (services/registry.ts), and the
// operator's kill of one session (docs/operations.md, "Sessions").

import { DataOperation, DataState, LogType, M, MoverState } from '../wire/index.js';
import { dataOf, raiseDataAbort } from '../services/data/client.js';
import { DATA_WORD_STATE, dataStateName } from '../services/data/state-rules.js';
import type { SessionRecord } from '../services/registry.js';
import { sampleBytes } from '../services/registry.js';
import type { ServerContext } from '../services/session.js';
import { DRIVE_WORD_MOVER_STATE, moverStateName } from '../services/tape/state-rules.js';
import { Connection } from './connection.js';
import type { SlotState } from './connection.js';
import type { NdmpServer } from './listener.js';
import { AdminRequestError } from './admin-socket.js';
import type { AdminRequest } from './admin-socket.js';

/** A thread that does not answer a state request in this long is reported as not answering. */
const THREAD_ASK_MS = 2000;
/** A kill waits this long for the halts to be posted, and as long again for them to be written, then hangs up anyway. */
const KILL_WAIT_MS = 10_000;
/** Readings of each busy session's bytes for its throughput (docs/operations.md, "Sessions"). */
const SAMPLE_MS = 5000;

export interface AdminFacts {
  readonly version: string;
  readonly startedAt: number;
  readonly listen: string;
  readonly stateDir: string;
}

export interface SessionReport {
  id: number;
  peer: string;
  user: string | null;
  ndmpVersion: number;
  since: string;
  slot: SlotState;
  dataState: string;
  moverState: string;
  operation: 'backup' | 'recover' | 'none';
  /** The data service's bytes processed, else the mover's bytes moved (a tape-only session). */
  bytes: number;
  /** Bytes per second over the last minute (null until two readings exist). */
  bytesPerSecond: number | null;
  tape: {
    barcode: string | null;
    drive: string | null;
    blockno: number | null;
    fileNum: number | null;
  } | null;
  history: {
    entries: number;
    messagesSent: number;
    bytesSent: number;
    /** Written to the connection and not yet taken by the DMA, or waiting for its socket. */
    queuedBytes: number;
    spooledBytes: number;
    notAcceptingMs: number;
    /** notAcceptingMs over the backup's time so far (0..1). */
    notAcceptingShare: number;
  } | null;
  /** Threads that did not answer in time (the report says what it could). */
  notAnswering: string[];
}

export class AdminOps {
  private readonly sampler: NodeJS.Timeout;

  constructor(
    private readonly server: NdmpServer,
    private readonly ctx: ServerContext,
    private readonly facts: AdminFacts,
  ) {
    // Throughput needs readings over the minute, not only when someone asks.
    this.sampler = setInterval(() => void this.sampleBusy(), SAMPLE_MS).unref();
  }

  stop(): void {
    clearInterval(this.sampler);
  }

  handle = async (req: AdminRequest): Promise<Record<string, unknown>> => {
    switch (req.op) {
      case 'status':
        return { status: await this.status() };
      case 'sessions':
        return { sessions: await this.sessions() };
      case 'kill': {
        const id = req.id;
        if (typeof id !== 'number' || !Number.isInteger(id)) {
          throw new AdminRequestError(
            'ADMIN_BAD_REQUEST',
            'kill needs "id", a session id (ndmpd sessions lists them)',
          );
        }
        const reason =
          typeof req.reason === 'string' && req.reason.trim() ? req.reason.trim().slice(0, 200) : null;
        return { killed: await this.kill(id, reason) };
      }
      default:
        throw new AdminRequestError('ADMIN_UNKNOWN_OP', `unknown op "${req.op}": status, sessions or kill`);
    }
  };

  async status(): Promise<Record<string, unknown>> {
    const bySlot: Record<string, number> = { unauthenticated: 0, idle: 0, busy: 0, leaving: 0 };
    const byOperation: Record<string, number> = { backup: 0, recover: 0, none: 0 };
    const reports = await this.sessions();
    for (const r of reports) {
      bySlot[r.slot] = (bySlot[r.slot] ?? 0) + 1;
      byOperation[r.operation] = (byOperation[r.operation] ?? 0) + 1;
    }
    const lib = this.ctx.library ?? null;
    let library: Record<string, unknown> | null = null;
    if (lib) {
      const contents = lib.contents();
      library = {
        dir: lib.dir,
        drives: lib.drives().map((d) => ({ name: d.name, tape: lib.loaded(d.name) })),
        slots: lib.slotCount,
        slotsFull: contents.filter((c) => c.place.kind === 'slot').length,
        tapes: lib.listTapes().length,
      };
    }
    return {
      version: this.facts.version,
      pid: process.pid,
      startedAt: new Date(this.facts.startedAt).toISOString(),
      uptimeSeconds: Math.round((Date.now() - this.facts.startedAt) / 1000),
      listen: this.facts.listen,
      stateDir: this.facts.stateDir,
      sessions: { total: reports.length, ...bySlot, byOperation },
      history: this.ctx.history ? { openChannels: this.ctx.history.openChannels } : null,
      library,
    };
  }

  async sessions(): Promise<SessionReport[]> {
    return Promise.all(this.server.sessions.list().map((r) => this.report(r)));
  }

  private async sampleBusy(): Promise<void> {
    for (const r of this.server.sessions.list()) {
      if (!r.data || Atomics.load(r.data.words, DATA_WORD_STATE) !== DataState.NDMP_DATA_STATE_ACTIVE)
        continue;
      const st = await ask(r.data.client.call('dataGetState', {}));
      if (st) sampleBytes(r, Number(st.bytesProcessed));
    }
  }

  private async report(r: SessionRecord): Promise<SessionReport> {
    const s = r.session;
    const conn = s instanceof Connection ? s : null;
    const notAnswering: string[] = [];
    const [data, mover, tape] = await Promise.all([
      r.data ? ask(r.data.client.call('dataGetState', {})) : null,
      r.drive ? ask(r.drive.drive.call('moverGetState', {})) : null,
      r.drive ? ask(r.drive.drive.call('tapeGetState', {})) : null,
    ]);
    if (r.data && !data) notAnswering.push('data');
    if (r.drive && (!mover || !tape)) notAnswering.push('drive');
    const dataState = r.data ? Atomics.load(r.data.words, DATA_WORD_STATE) : DataState.NDMP_DATA_STATE_IDLE;
    const moverState = r.drive
      ? Atomics.load(r.drive.words, DRIVE_WORD_MOVER_STATE)
      : MoverState.NDMP_MOVER_STATE_IDLE;
    const op = data?.operation ?? DataOperation.NDMP_DATA_OP_NOACTION;
    const operation =
      dataState === DataState.NDMP_DATA_STATE_IDLE || op === DataOperation.NDMP_DATA_OP_NOACTION
        ? 'none'
        : op === DataOperation.NDMP_DATA_OP_BACKUP
          ? 'backup'
          : 'recover';
    const bytes = data ? Number(data.bytesProcessed) : mover ? Number(mover.bytesMoved) : 0;
    const bytesPerSecond = data || mover ? sampleBytes(r, bytes) : null;
    let tapeInfo: SessionReport['tape'] = null;
    if (r.drive && (r.drive.driveIndex !== null || tape)) {
      const lib = this.ctx.library ?? null;
      const drive = r.drive.driveIndex !== null ? (lib?.drives()[r.drive.driveIndex]?.name ?? null) : null;
      tapeInfo = {
        barcode: drive && lib ? lib.loaded(drive) : null,
        drive,
        blockno: tape ? tape.blockno : null,
        fileNum: tape ? tape.fileNum : null,
      };
    }
    let history: SessionReport['history'] = null;
    const h = r.historyId !== null ? (this.ctx.history?.counters(r.historyId) ?? null) : null;
    if (h) {
      const age = Math.max(1, Date.now() - h.openedAt);
      history = {
        entries: h.entries,
        messagesSent: h.posts,
        bytesSent: h.bytes,
        queuedBytes: h.writingBytes + (conn ? conn.stats().historyBytes : 0),
        spooledBytes: h.spooledBytes,
        notAcceptingMs: h.notAcceptingMs,
        notAcceptingShare: Math.min(1, Math.round((h.notAcceptingMs / age) * 1000) / 1000),
      };
    }
    return {
      id: s.id,
      peer: conn ? conn.peer : s.peerAddress,
      user: s.user,
      ndmpVersion: s.version,
      since: new Date(r.since).toISOString(),
      slot: conn ? conn.slot : 'idle',
      dataState: dataStateName(dataState),
      moverState: moverStateName(moverState),
      operation,
      bytes,
      bytesPerSecond: bytesPerSecond === null ? null : Math.round(bytesPerSecond),
      tape: tapeInfo,
      history,
      notAnswering,
    };
  }

  /**
   * `ndmpd sessions kill`: tells the DMA why (LOG_MESSAGE), aborts the data
   * service and the mover, so the DMA sees NOTIFY_DATA_HALTED and
   * NOTIFY_MOVER_HALTED with ABORTED (docs/protocol.md, halts), then hangs up
   * once those are written (the data halt waits behind the history before it,
   * docs/history.md). Other sessions are not touched.
   */
  async kill(id: number, reason: string | null): Promise<Record<string, unknown>> {
    const r = this.server.sessions.get(id);
    if (!r || !(r.session instanceof Connection)) {
      throw new AdminRequestError('ADMIN_NO_SUCH_SESSION', `no session ${id} (ndmpd sessions lists them)`);
    }
    const conn = r.session;
    if (r.killedBy !== null) {
      throw new AdminRequestError('ADMIN_NO_SUCH_SESSION', `session ${id} is already being killed`);
    }
    const why = `killed by the operator (ndmpd sessions kill ${id})${reason ? `: ${reason}` : ''}`;
    r.killedBy = why;
    conn.log.warn({ reason }, 'session killed by the operator');
    conn.post(M.LOG_MESSAGE, {
      logType: LogType.NDMP_LOG_ERROR,
      messageId: 0x7f000000 + id,
      entry: `ndmpd: session ${id} ${why}`,
      associatedMessageValid: 0,
      associatedMessageSequence: 0,
    });
    const dataBusy =
      r.data !== null &&
      ![DataState.NDMP_DATA_STATE_IDLE, DataState.NDMP_DATA_STATE_HALTED].includes(
        Atomics.load(r.data.words, DATA_WORD_STATE) as 0,
      );
    const moverBusy =
      r.drive !== null &&
      ![MoverState.NDMP_MOVER_STATE_IDLE, MoverState.NDMP_MOVER_STATE_HALTED].includes(
        Atomics.load(r.drive.words, DRIVE_WORD_MOVER_STATE) as 0,
      );
    const dataHalts = r.dataHalts;
    const moverHalts = r.moverHalts;
    const aborts: Promise<unknown>[] = [];
    if (dataBusy) {
      // As DATA_ABORT does: the backup sees the flag at its next record.
      raiseDataAbort(conn);
      aborts.push(dataOf(conn).call('dataAbort', {}));
    }
    if (moverBusy && r.drive) aborts.push(r.drive.drive.call('moverAbort', {}));
    // A refusal (it halted on its own meanwhile) is as good: it halted.
    await Promise.allSettled(aborts.map((p) => ask(p, KILL_WAIT_MS)));
    const halted = await waitFor(
      () => (!dataBusy || r.dataHalts > dataHalts) && (!moverBusy || r.moverHalts > moverHalts),
      KILL_WAIT_MS,
    );
    const text = `session ${why}`;
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, KILL_WAIT_MS);
      t.unref();
      conn.afterHistory(() => {
        clearTimeout(t);
        resolve();
      });
    });
    conn.shutdown(text);
    return { id, dataAborted: dataBusy, moverAborted: moverBusy, halted, reason: why };
  }
}

/** The thread's answer, or null when it fails or takes longer than `ms`. */
async function ask<T>(p: Promise<T>, ms = THREAD_ASK_MS): Promise<T | null> {
  let t: NodeJS.Timeout | undefined;
  const timeout = new Promise<null>((resolve) => (t = setTimeout(() => resolve(null), ms)));
  try {
    return await Promise.race([p.catch(() => null), timeout]);
  } finally {
    clearTimeout(t);
  }
}

async function waitFor(cond: () => boolean, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() >= deadline) return false;
    await new Promise((r) => setTimeout(r, 20));
  }
  return true;
}
