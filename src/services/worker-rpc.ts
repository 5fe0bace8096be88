// Request/reply between the main thread and a session's worker threads (the
// drive thread, the data thread). The main thread sends one NDMP request's
// worth of work at a time; the worker answers with a reply body or an NDMP
// error, and may send events (notifications, log lines) at any time. Bulk
// bytes never travel this way except as transferred buffers.

import type { MessagePort, TransferListItem } from 'node:worker_threads';
import { Worker } from 'node:worker_threads';
import { ErrorCode, NdmpError } from '../wire/index.js';
import type { Session } from './session.js';

/** Operation name → request and reply types. Every worker also has `shutdown`. */
export type RpcOps = Record<string, { req: unknown; rep: unknown }>;

interface RpcRequest {
  readonly id: number;
  readonly op: string;
  readonly req: unknown;
}

type RpcReply =
  | { readonly id: number; readonly ok: true; readonly rep: unknown }
  | {
      readonly id: number;
      readonly ok: false;
      readonly ndmpError: number;
      readonly message: string;
      readonly reply?: Record<string, unknown>;
    };

/** Events a worker sends unasked; `log` is common to all. */
export interface LogEvent {
  readonly event: 'log';
  readonly level: 'debug' | 'info' | 'warn' | 'error';
  readonly msg: string;
  readonly fields?: Record<string, unknown>;
}

/** How long a closing session waits for a worker to finish its shutdown before stopping it. */
const SHUTDOWN_GRACE_MS = 5000;
/**
 * How long a closing session waits for a worker that is still loading its
 * modules. A worker stopped while its module loader is reading files leaks
 * the descriptors of the files being read (seen on Node 20, one to four per
 * stopped worker, see docs/memory.md); a busy host may take seconds to start
 * a thread, so the session waits for it to come up first, within this bound.
 */
const STARTUP_BOUND_MS = 60_000;

/** The first message of every session worker: its modules are loaded and it serves requests. */
export interface ReadyEvent {
  readonly event: 'ready';
}

/** The main thread's handle on one session worker. */
export class SessionWorker<Ops extends RpcOps, Event extends { event: string }> {
  /** Session threads started and not yet ended, server-wide (operators, the soak bench, tests). */
  static live = 0;
  /** Session threads ended so far, server-wide (memory.ts gives their memory back after them). */
  static ended = 0;
  private readonly worker: Worker;
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private exited = false;
  private stopping = false;
  private markReady: () => void = () => undefined;
  /** Settles when the worker serves requests, or has ended. */
  private readonly ready = new Promise<void>((resolve) => (this.markReady = resolve));

  /**
   * `onEvent` gets the worker's events (log events are logged here);
   * `onCrash` runs if the worker ends without being asked to.
   */
  constructor(
    private readonly session: Session,
    private readonly name: string,
    url: URL,
    workerData: unknown,
    onEvent: (e: Event) => void,
    onCrash: () => void,
  ) {
    // Node closes the descriptors a thread opened when it ends (trackUnmanagedFds,
    // the default): descriptors must never cross threads, and none do.
    this.worker = new Worker(url, { workerData });
    SessionWorker.live++;
    this.worker.on('message', (m: RpcReply | Event | LogEvent | ReadyEvent) => {
      if ('id' in m) this.settle(m);
      else if (m.event === 'ready') this.markReady();
      else if (m.event === 'log') {
        const l = m as LogEvent;
        session.log[l.level]({ ...withoutLogKeys(l.fields), thread: name }, l.msg);
      } else onEvent(m as Event);
    });
    this.worker.on('error', (e) => session.log.error({ err: e, thread: name }, 'session thread crashed'));
    this.worker.on('exit', (code) => {
      this.exited = true;
      SessionWorker.live--;
      SessionWorker.ended++;
      this.markReady();
      for (const p of this.pending.values()) {
        p.reject(new NdmpError(ErrorCode.NDMP_UNDEFINED_ERR, `the ${name} thread ended (exit ${code})`));
      }
      this.pending.clear();
      if (!this.stopping) {
        session.log.error({ code, thread: name }, 'session thread ended unexpectedly');
        onCrash();
      }
    });
  }

  call<K extends keyof Ops & string>(
    op: K,
    req: Ops[K]['req'],
    transfer: readonly TransferListItem[] = [],
  ): Promise<Ops[K]['rep']> {
    if (this.exited) {
      return Promise.reject(new NdmpError(ErrorCode.NDMP_UNDEFINED_ERR, `the ${this.name} thread has ended`));
    }
    const id = this.nextId++;
    const msg: RpcRequest = { id, op, req };
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.worker.postMessage(msg, transfer);
    });
  }

  /** Asks the worker to finish (op `shutdown`, with `req`), then ends it; a stuck worker is stopped after a grace period. */
  async shutdown(req: unknown = {}): Promise<void> {
    if (this.exited) return;
    this.stopping = true;
    // The grace period is for the shutdown itself, not for a slow start.
    let startup: NodeJS.Timeout | undefined;
    await Promise.race([this.ready, new Promise((r) => (startup = setTimeout(r, STARTUP_BOUND_MS)))]);
    clearTimeout(startup);
    if (this.exited) return;
    const timer = setTimeout(() => void this.worker.terminate(), SHUTDOWN_GRACE_MS);
    try {
      await this.call('shutdown', req as Ops[string]['req']);
    } catch (e) {
      this.session.log.warn(
        { err: (e as Error).message, thread: this.name },
        'session thread did not shut down cleanly',
      );
    } finally {
      clearTimeout(timer);
      await this.worker.terminate();
    }
  }

  private settle(m: RpcReply): void {
    const p = this.pending.get(m.id);
    if (!p) return;
    this.pending.delete(m.id);
    if (m.ok) p.resolve(m.rep);
    else p.reject(new NdmpError(m.ndmpError, m.message.replace(/^NDMP_[A-Z0-9_]+: /, ''), 'body', m.reply));
  }
}

/** Worker side: the handler of each operation, sync or async, returning the reply body or throwing NdmpError. */
export type RpcHandlers<Ops extends RpcOps> = {
  [K in keyof Ops]: (req: Ops[K]['req']) => Ops[K]['rep'] | Promise<Ops[K]['rep']>;
};

/**
 * Worker side: answers requests arriving on `port`. `transferOf` may name
 * buffers of a reply to transfer instead of copying (tape reads).
 */
export function serveRequests<Ops extends RpcOps>(
  port: MessagePort,
  handlers: RpcHandlers<Ops>,
  transferOf: (op: string, rep: unknown) => ArrayBuffer[] = () => [],
): void {
  const log = (level: LogEvent['level'], msg: string, fields?: Record<string, unknown>) =>
    port.postMessage({ event: 'log', level, msg, ...(fields ? { fields } : {}) } satisfies LogEvent);
  port.on('message', (msg: RpcRequest) => {
    void (async () => {
      let reply: RpcReply;
      let transfer: ArrayBuffer[] = [];
      try {
        const fn = handlers[msg.op] as ((req: unknown) => unknown) | undefined;
        if (!fn) throw new NdmpError(ErrorCode.NDMP_NOT_SUPPORTED_ERR, `no operation ${msg.op}`);
        const rep = await fn(msg.req);
        transfer = transferOf(msg.op, rep);
        reply = { id: msg.id, ok: true, rep };
      } catch (e) {
        if (e instanceof NdmpError) {
          reply = {
            id: msg.id,
            ok: false,
            ndmpError: e.ndmpError,
            message: e.message,
            ...(e.reply ? { reply: { ...e.reply } } : {}),
          };
        } else {
          log('error', 'session thread operation failed', { op: msg.op, err: String(e) });
          reply = { id: msg.id, ok: false, ndmpError: ErrorCode.NDMP_UNDEFINED_ERR, message: String(e) };
        }
      }
      port.postMessage(reply, transfer);
    })();
  });
  // Called once the thread's entry module has run, so every module is loaded.
  port.postMessage({ event: 'ready' } satisfies ReadyEvent);
}

/** Worker side: a log line for the session's log. */
export function workerLog(
  port: MessagePort,
  level: LogEvent['level'],
  msg: string,
  fields?: Record<string, unknown>,
): void {
  port.postMessage({ event: 'log', level, msg, ...(fields ? { fields } : {}) } satisfies LogEvent);
}

/**
 * A thread's log fields without the keys the log line itself has (pino's
 * `level`, `time`, `msg`, `pid`, `hostname`): a field of such a name would
 * overwrite the line's own, and a log filtered by level would lose the line.
 * Such a field is kept as `field_<name>`.
 */
function withoutLogKeys(fields: Record<string, unknown> | undefined): Record<string, unknown> {
  if (!fields) return {};
  let out: Record<string, unknown> | null = null;
  for (const k of LOG_LINE_KEYS) {
    if (!(k in fields)) continue;
    out ??= { ...fields };
    out[`field_${k}`] = out[k];
    delete out[k];
  }
  return out ?? fields;
}

const LOG_LINE_KEYS = ['level', 'time', 'msg', 'pid', 'hostname'] as const;
