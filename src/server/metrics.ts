// The metrics endpoint (`--metrics-listen HOST:PORT`, off by default;
// docs/operations.md, "Monitoring"): Prometheus text at GET /metrics, from
// prom-client with a registry of its own (never the global one, so a test
// or an embedder may run several servers in one process).
//
// Two kinds of figures:
// - pulled at each scrape from what the server already keeps: connections
//   (the listener), sessions by data and mover state (a callback, SessionStates,
//   the one seam a session registry replaces), file history (the hub's
//   counters, src/history/hub.ts totals()), tape I/O (the shared counters the
//   drive threads add to, src/services/tape/counters.ts), so they move while a
//   backup runs;
// - pushed as they happen, through ServerObserver (src/services/observer.ts):
//   failed logins, refused requests, and each data operation's end with its
//   bytes, files and duration.
//
// The HTTP side is small and bounded: one path, GET only, no request body
// read, headers and the whole request timed out, few sockets at once.

import http from 'node:http';
import type net from 'node:net';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { HistoryHub } from '../history/hub.js';
import type { LagCondition } from '../history/lag-warning.js';
import { dataWordsOf } from '../services/data/client.js';
import { DATA_WORD_STATE } from '../services/data/state-rules.js';
import type { OperationSummary, ServerObserver } from '../services/observer.js';
import type { Session } from '../services/session.js';
import { allocateTapeCounters, readTapeCounters } from '../services/tape/counters.js';
import { driveWordsOf } from '../services/tape/client.js';
import { DRIVE_WORD_MOVER_STATE } from '../services/tape/state-rules.js';
import { CodedError } from '../util/coded-error.js';
import type { Logger } from '../util/log.js';
import { DataState, MoverState } from '../wire/index.js';

/** Each open session's data and mover state, by name (IDLE, ACTIVE, ...). */
export type SessionStates = () => Array<{ dataState: string; moverState: string }>;

/** What the metrics read from the server at each scrape. */
export interface MetricsSources {
  /** Connections accepted since start, and open now. */
  readonly connections: () => { accepted: number; open: number };
  readonly sessions: SessionStates;
  /** File history (null: the server has none). */
  readonly history: HistoryHub | null;
}

/** The listener could not be started (a port in use, an address not on this host). */
export class MetricsListenError extends CodedError {
  readonly code = 'NDMPD_METRICS_LISTEN';
}

/** Distinct (request, error, reason) series of refusals; beyond, reason="(other)": a DMA's text cannot grow the registry without end. */
const MAX_REFUSAL_SERIES = 200;
/** A reason longer than this is cut (it may quote a DMA's path or value). */
const MAX_REASON_CHARS = 160;
/** Bounds of the HTTP side (docs/operations.md, "Monitoring"). */
const HEADERS_TIMEOUT_MS = 5_000;
const REQUEST_TIMEOUT_MS = 10_000;
const MAX_HEADER_BYTES = 8 * 1024;
const MAX_SOCKETS = 16;

const DATA_STATE_NAMES = invert(DataState, 'NDMP_DATA_STATE_');
const MOVER_STATE_NAMES = invert(MoverState, 'NDMP_MOVER_STATE_');

/**
 * Sessions by state over what the server has today: every open control
 * connection's data and mover state words (src/services/activity.ts reads
 * the same). A session registry (src/services/) may replace this one function.
 */
export function sessionStatesOf(sessions: () => Iterable<Session>): SessionStates {
  return () => {
    const out: Array<{ dataState: string; moverState: string }> = [];
    for (const s of sessions()) {
      const d = Atomics.load(dataWordsOf(s), DATA_WORD_STATE);
      const m = Atomics.load(driveWordsOf(s), DRIVE_WORD_MOVER_STATE);
      out.push({
        dataState: DATA_STATE_NAMES[d] ?? String(d),
        moverState: MOVER_STATE_NAMES[m] ?? String(m),
      });
    }
    return out;
  };
}

export class ServerMetrics implements ServerObserver {
  readonly registry = new Registry();
  readonly tapeCounters = allocateTapeCounters();
  private sources: MetricsSources | null = null;
  private server: http.Server | null = null;
  private readonly refusalSeries = new Set<string>();

  private readonly authFailures = new Counter({
    name: 'ndmpd_auth_failures_total',
    help: 'CONNECT_CLIENT_AUTH refused: why = password (checked, wrong) or backoff (refused unchecked, the address failed recently)',
    labelNames: ['why'],
    registers: [this.registry],
  });
  private readonly refusals = new Counter({
    name: 'ndmpd_requests_refused_total',
    help: 'Requests refused with a body-level NDMP error, by request, error name and reason (the LOG_MESSAGE text)',
    labelNames: ['request', 'error', 'reason'],
    registers: [this.registry],
  });
  private readonly operations = new Counter({
    name: 'ndmpd_operations_total',
    help: 'Data operations ended, by operation (backup, recover, replay) and halt reason',
    labelNames: ['operation', 'halt'],
    registers: [this.registry],
  });
  private readonly durations = new Histogram({
    name: 'ndmpd_operation_duration_seconds',
    help: 'Duration of data operations, start to halt',
    labelNames: ['operation'],
    buckets: [1, 10, 60, 300, 900, 3600, 4 * 3600, 12 * 3600],
    registers: [this.registry],
  });
  private readonly backedUpBytes = this.counter(
    'ndmpd_backup_bytes_total',
    'Stream bytes of backups that completed',
  );
  private readonly backedUpFiles = this.counter(
    'ndmpd_backup_files_total',
    'Entries in backups that completed',
  );
  private readonly restoredBytes = this.counter(
    'ndmpd_restore_bytes_total',
    'Stream bytes read by recovers that completed',
  );
  private readonly restoredFiles = this.counter(
    'ndmpd_restore_files_total',
    'Entries restored by recovers that completed',
  );

  constructor(private readonly log: Logger) {
    collectDefaultMetrics({ register: this.registry });
    const pulled = (name: string, help: string, read: () => number): void => {
      new Counter({
        name,
        help,
        registers: [this.registry],
        collect() {
          // A monotonic figure kept elsewhere: the counter says what it is now.
          this.reset();
          this.inc(read());
        },
      });
    };
    const gauge = (name: string, help: string, read: () => number): void => {
      new Gauge({
        name,
        help,
        registers: [this.registry],
        collect() {
          this.set(read());
        },
      });
    };
    const src = (): MetricsSources | null => this.sources;
    pulled(
      'ndmpd_connections_accepted_total',
      'DMA control connections accepted',
      () => src()?.connections().accepted ?? 0,
    );
    gauge('ndmpd_connections_open', 'DMA control connections open', () => src()?.connections().open ?? 0);
    new Gauge({
      name: 'ndmpd_sessions',
      help: 'Open sessions by data and mover state',
      labelNames: ['data_state', 'mover_state'],
      registers: [this.registry],
      collect() {
        this.reset();
        for (const s of src()?.sessions() ?? [])
          this.inc({ data_state: s.dataState, mover_state: s.moverState });
      },
    });
    const h = (read: (t: ReturnType<HistoryHub['totals']>) => number) => () => {
      const hub = src()?.history;
      return hub ? read(hub.totals()) : 0;
    };
    pulled(
      'ndmpd_history_entries_total',
      'File history entries made by backups and replays',
      h((t) => t.entries),
    );
    pulled(
      'ndmpd_history_entries_sent_total',
      "File history entries handed to the DMA's connection",
      h((t) => t.entriesSent),
    );
    pulled(
      'ndmpd_history_posts_total',
      'FH_ADD_* posts sent',
      h((t) => t.posts),
    );
    pulled(
      'ndmpd_history_bytes_total',
      'Bytes of FH_ADD_* posts sent',
      h((t) => t.bytes),
    );
    pulled(
      'ndmpd_history_spooled_bytes_total',
      'Bytes of history written to spool files',
      h((t) => t.spooledBytes),
    );
    gauge(
      'ndmpd_history_spool_bytes',
      'Bytes in spool files now',
      h((t) => t.spoolBytes),
    );
    gauge(
      'ndmpd_history_entries_queued',
      'History entries made and not yet handed to the DMA',
      h((t) => Math.max(0, t.entries - t.entriesSent)),
    );
    pulled(
      'ndmpd_history_dma_not_accepting_seconds_total',
      'Time DMAs took no history while some waited (their credit used up), summed over sessions',
      h((t) => t.notAcceptingMs / 1000),
    );
    pulled(
      'ndmpd_history_spool_waits_total',
      'Times a full spool made a backup wait for its DMA',
      h((t) => t.spoolWaits),
    );
    pulled(
      'ndmpd_history_spool_waited_seconds_total',
      'Time backups waited for their DMA on a full spool',
      h((t) => t.waitedMs / 1000),
    );
    const hubRef = (): HistoryHub | null => src()?.history ?? null;
    new Counter({
      name: 'ndmpd_history_warnings_total',
      help: "History warnings sent (docs/operations.md, 'History warnings'), by condition: spool, lag",
      labelNames: ['condition'],
      registers: [this.registry],
      collect() {
        this.reset();
        const w = hubRef()?.warnings;
        for (const c of ['spool', 'lag'] as LagCondition[]) this.inc({ condition: c }, w?.[c] ?? 0);
      },
    });
    const t = (k: keyof ReturnType<typeof readTapeCounters>) => () => readTapeCounters(this.tapeCounters)[k];
    pulled(
      'ndmpd_tape_records_written_total',
      'Tape records written (TAPE_WRITE and the mover)',
      t('RECORDS_WRITTEN'),
    );
    pulled('ndmpd_tape_written_bytes_total', 'Bytes of tape records written', t('BYTES_WRITTEN'));
    pulled('ndmpd_tape_records_read_total', 'Tape records read', t('RECORDS_READ'));
    pulled('ndmpd_tape_read_bytes_total', 'Bytes of tape records read', t('BYTES_READ'));
    pulled('ndmpd_tape_filemarks_written_total', 'Filemarks written', t('FILEMARKS_WRITTEN'));
    pulled(
      'ndmpd_tape_write_errors_total',
      'Tape writes that failed (the end of the medium not counted)',
      t('WRITE_ERRORS'),
    );
    pulled('ndmpd_tape_read_errors_total', 'Tape reads that failed', t('READ_ERRORS'));
    pulled(
      'ndmpd_tape_media_errors_total',
      'Medium errors: records that fail their data CRC',
      t('MEDIA_ERRORS'),
    );
  }

  /** Where the pulled figures come from; before this they read 0. */
  attach(sources: MetricsSources): void {
    this.sources = sources;
  }

  // ---- ServerObserver ---------------------------------------------------------

  authFailed(why: 'password' | 'backoff'): void {
    this.authFailures.inc({ why });
  }

  refused(request: string, error: string, reason: string): void {
    let r = reason.length > MAX_REASON_CHARS ? `${reason.slice(0, MAX_REASON_CHARS)}…` : reason;
    const key = `${request}\0${error}\0${r}`;
    if (!this.refusalSeries.has(key)) {
      if (this.refusalSeries.size >= MAX_REFUSAL_SERIES) r = '(other)';
      else this.refusalSeries.add(key);
    }
    this.refusals.inc({ request: request.replace(/^NDMP_/, ''), error, reason: r });
  }

  operationEnded(o: OperationSummary): void {
    this.operations.inc({ operation: o.operation, halt: o.halt });
    this.durations.observe({ operation: o.operation }, o.durationMs / 1000);
    if (o.halt !== 'SUCCESSFUL') return;
    if (o.operation === 'backup') {
      this.backedUpBytes.inc(o.bytes);
      this.backedUpFiles.inc(o.files);
    } else if (o.operation === 'recover') {
      this.restoredBytes.inc(o.bytes);
      this.restoredFiles.inc(o.files);
    }
  }

  // ---- HTTP ---------------------------------------------------------------------

  /** Serves GET /metrics on host:port; rejects with MetricsListenError (a port in use, say). */
  listen(host: string, port: number): Promise<net.AddressInfo> {
    const server = http.createServer(
      { maxHeaderSize: MAX_HEADER_BYTES },
      (req, res) => void this.handle(req, res),
    );
    server.headersTimeout = HEADERS_TIMEOUT_MS;
    server.requestTimeout = REQUEST_TIMEOUT_MS;
    server.keepAliveTimeout = 5_000;
    server.maxConnections = MAX_SOCKETS;
    this.server = server;
    return new Promise((resolve, reject) => {
      server.once('error', (e: NodeJS.ErrnoException) =>
        reject(new MetricsListenError(`cannot listen for metrics on ${host}:${port}: ${e.message}`)),
      );
      server.listen(port, host, () => {
        server.removeAllListeners('error');
        server.on('error', (e) => this.log.error({ err: e }, 'metrics listener error'));
        const addr = server.address() as net.AddressInfo;
        this.log.info({ host: addr.address, port: addr.port }, 'serving metrics at /metrics');
        resolve(addr);
      });
    });
  }

  close(): Promise<void> {
    const s = this.server;
    this.server = null;
    if (!s) return Promise.resolve();
    return new Promise((resolve) => {
      s.close(() => resolve());
      s.closeAllConnections();
    });
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    // No request here has a body: none is read, and the socket goes after the answer.
    res.setHeader('Connection', 'close');
    const path = (req.url ?? '').split('?')[0];
    if (path !== '/metrics') {
      res.writeHead(404, { 'Content-Type': 'text/plain; charset=utf-8' });
      res.end('not found: metrics are at GET /metrics\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { Allow: 'GET', 'Content-Type': 'text/plain; charset=utf-8' });
      res.end('only GET /metrics\n');
      return;
    }
    try {
      const body = await this.registry.metrics();
      res.writeHead(200, { 'Content-Type': this.registry.contentType });
      res.end(req.method === 'HEAD' ? undefined : body);
    } catch (e) {
      this.log.error({ err: e }, 'metrics could not be collected');
      res.writeHead(500, { 'Content-Type': 'text/plain; charset=utf-8' });
      res.end('metrics could not be collected; the server log says why\n');
    }
  }

  private counter(name: string, help: string): Counter {
    return new Counter({ name, help, registers: [this.registry] });
  }
}

function invert(o: Readonly<Record<string, number>>, prefix: string): Record<number, string> {
  const out: Record<number, string> = {};
  for (const [k, v] of Object.entries(o)) out[v] = k.slice(prefix.length);
  return out;
}
