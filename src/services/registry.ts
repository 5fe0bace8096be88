// The session registry: the one place that knows every session of a server —
// its control connection, its data and drive threads, its SCSI state and the
// history channel of its latest operation (docs/operations.md, "Sessions").
//
// The per-session records used to sit in WeakMaps private to each client
// module (data/client.ts, tape/client.ts, scsi/client.ts), which nothing
// could list. They live here now: the clients create and fill them, the
// admin socket (server/admin.ts) lists them, and anything that needs a peer
// service's thread (the LOCAL link) finds it here without importing the
// other service's client. This module imports no service module, only types,
// so it can sit under all of them without a cycle (test/unit/architecture.test.ts).

import type { ScsiNexus } from '../devices/smc/index.js';
import type { DataEvent, DataOps } from './data/protocol.js';
import type { Session } from './session.js';
import type { DriveEvent, DriveOps } from './tape/protocol.js';
import type { SessionWorker } from './worker-rpc.js';

export type DataClient = SessionWorker<DataOps, DataEvent>;
export type DriveClient = SessionWorker<DriveOps, DriveEvent>;

/** A session's data thread, as the main thread holds it. */
export interface SessionData {
  readonly client: DataClient;
  /** DataThreadConfig.abortFlag. */
  readonly abortFlag: Int32Array;
  /** DataThreadConfig.stateWords: the data state as the thread last stored it. */
  readonly words: Int32Array;
}

/** A session's drive thread (tape and mover), as the main thread holds it. */
export interface SessionDrive {
  readonly drive: DriveClient;
  /** DriveThreadConfig.stateWords: the mover and tape state as the thread last stored them. */
  readonly words: Int32Array;
  /** Releases the library claim on the open tape; null while no tape is open. */
  release: (() => void) | null;
  /** The library drive (its index) the open tape is in; null for a tape image opened by name, or none open. */
  driveIndex: number | null;
}

/** What a session holds of the SCSI service. */
export interface ScsiSession {
  readonly words: Int32Array;
  readonly nexus: ScsiNexus;
  /** Gives the changer back; null while none is open. */
  release: (() => void) | null;
  /** SCSI_SET_TARGET's numbers (v3), reported by SCSI_GET_STATE. */
  target: { controller: number; id: number; lun: number };
}

/** One (time, bytes) reading of a session's data service, for throughput over the last minute. */
export interface ByteSample {
  readonly at: number;
  readonly bytes: number;
}

export interface SessionRecord {
  readonly session: Session;
  /** When the record was made: the connection's start, for a registered session. */
  readonly since: number;
  data: SessionData | null;
  drive: SessionDrive | null;
  scsi: ScsiSession | null;
  /** The history channel (HistoryHub id) the session's latest backup or replay feeds. */
  historyId: number | null;
  /** Recent readings of the data service's bytes (oldest first, at most THROUGHPUT_WINDOW_MS and one more). */
  readonly samples: ByteSample[];
  /** NOTIFY_DATA_HALTED and NOTIFY_MOVER_HALTED posted so far (a kill waits for its own before hanging up). */
  dataHalts: number;
  moverHalts: number;
  /** Set by `ndmpd sessions kill`: the operator's reason, so the session's end says who ended it. */
  killedBy: string | null;
}

/** Throughput is measured over this window (docs/operations.md, "Sessions"). */
export const THROUGHPUT_WINDOW_MS = 60_000;

const records = new WeakMap<Session, SessionRecord>();

/** The session's record, made on first use (a session outside any registry, as in unit tests, has one too). */
export function recordOf(s: Session): SessionRecord {
  let r = records.get(s);
  if (!r) {
    r = {
      session: s,
      since: Date.now(),
      data: null,
      drive: null,
      scsi: null,
      historyId: null,
      samples: [],
      dataHalts: 0,
      moverHalts: 0,
      killedBy: null,
    };
    records.set(s, r);
  }
  return r;
}

/**
 * Adds a reading of the session's data bytes and returns bytes per second
 * over the last minute (null until two readings a second apart exist). A
 * drop in bytes (a new operation) starts the window afresh.
 */
export function sampleBytes(r: SessionRecord, bytes: number, now = Date.now()): number | null {
  const s = r.samples;
  const last = s[s.length - 1];
  if (last && bytes < last.bytes) s.length = 0;
  s.push({ at: now, bytes });
  // Keep one reading older than the window, so the window is covered whole.
  while (s.length > 2 && s[1]!.at <= now - THROUGHPUT_WINDOW_MS) s.shift();
  const first = s[0]!;
  const dt = now - first.at;
  return dt >= 1000 ? ((bytes - first.bytes) * 1000) / dt : null;
}

/** The sessions of one server, by id (the connection's id: small, stable, logged as `conn` from its accept on). */
export class SessionRegistry {
  private readonly live = new Map<number, Session>();

  add(s: Session): SessionRecord {
    this.live.set(s.id, s);
    return recordOf(s);
  }

  remove(s: Session): void {
    if (this.live.get(s.id) === s) this.live.delete(s.id);
  }

  get(id: number): SessionRecord | null {
    const s = this.live.get(id);
    return s ? recordOf(s) : null;
  }

  /** Every registered session's record, by id. */
  list(): SessionRecord[] {
    return [...this.live.values()].sort((a, b) => a.id - b.id).map(recordOf);
  }

  get size(): number {
    return this.live.size;
  }
}
