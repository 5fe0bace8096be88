// The shutdown drain (SIGTERM, SIGINT; docs/operations.md, "Reloading and
// stopping"): take no new connections, tell every logged-in DMA by
// LOG_MESSAGE how long its running backups and restores have, wait for them,
// then abort what still runs so each DMA sees its data and mover halt
// ABORTED with the reason, and only then close the connections.
//
//   stopAccepting ─► LOG_MESSAGE WARNING to each DMA ─► wait (shutdown-timeout)
//        ─► DATA_ABORT / MOVER_ABORT of our own (reason in the halt) ─► grace
//        ─► close (SHUTDOWN, wait for the sessions' cleanup: tapes get their filemark)
//
// A second signal skips the wait (hurry). Every wait is bounded.

import { holdsDevice } from '../services/activity.js';
import { dataOf, dataWordsOf, raiseDataAbort } from '../services/data/client.js';
import { DATA_WORD_STATE } from '../services/data/state-rules.js';
import { driveOf, driveWordsOf } from '../services/tape/client.js';
import { DRIVE_WORD_MOVER_STATE } from '../services/tape/state-rules.js';
import type { Logger } from '../util/log.js';
import { DataState, LogType, M, MoverState } from '../wire/index.js';
import type { Connection } from './connection.js';
import type { NdmpServer } from './listener.js';

export interface DrainOptions {
  /** How long running operations get to finish (shutdown-timeout). */
  timeoutMs: number;
  /** After our aborts: how long the DMAs get to read their halts and hang up (default 10 s). */
  abortGraceMs?: number;
  /** How long closing the connections (and their cleanup) may take (default 30 s). */
  closeTimeoutMs?: number;
  /** How often the drain looks whether the sessions are done (default 100 ms). */
  pollMs?: number;
}

export interface DrainResult {
  /** Sessions whose data or mover operation the drain aborted. */
  aborted: number;
  /** Whether every connection closed and cleaned up within closeTimeoutMs. */
  closed: boolean;
}

/** LOG_MESSAGE ids are free-form (docs/protocol.md §9.4); these are the drain's own. */
let nextMessageId = 0x5d000000;

/** How long one abort request to a session's thread may take (it answers within a record: docs/design.md). */
const ABORT_CALL_MS = 5000;

/** `p`, or nothing after `ms`: a wedged thread must not hold the shutdown. */
async function bounded(p: Promise<unknown>, ms: number): Promise<void> {
  let t: NodeJS.Timeout | undefined;
  await Promise.race([p, new Promise<void>((r) => (t = setTimeout(r, ms)))]);
  clearTimeout(t);
}

/** The message each DMA gets; the seconds are the time left when it is sent. */
export function shutdownNotice(seconds: number): string {
  return `ndmpd is shutting down: running backups get ${seconds} s to finish`;
}

function dataRunning(c: Connection): boolean {
  const st = Atomics.load(dataWordsOf(c), DATA_WORD_STATE);
  return st !== DataState.NDMP_DATA_STATE_IDLE && st !== DataState.NDMP_DATA_STATE_HALTED;
}

function moverRunning(c: Connection): boolean {
  const st = Atomics.load(driveWordsOf(c), DRIVE_WORD_MOVER_STATE);
  return st !== MoverState.NDMP_MOVER_STATE_IDLE && st !== MoverState.NDMP_MOVER_STATE_HALTED;
}

export class ShutdownDrain {
  private hurried = false;
  private wake: () => void = () => undefined;

  constructor(
    private readonly server: NdmpServer,
    private readonly log: Logger,
    private readonly opts: DrainOptions,
  ) {}

  /** A second signal: stop waiting for the running operations and abort them now. */
  hurry(): void {
    this.hurried = true;
    this.wake();
  }

  async run(): Promise<DrainResult> {
    const o = this.opts;
    this.server.stopAccepting();
    const seconds = Math.round(o.timeoutMs / 1000);
    const text = shutdownNotice(seconds);
    let busy = 0;
    for (const c of this.server.openConnections()) {
      // Not logged in: nothing runs there, and no post but the status may go to it (docs/protocol.md §5.4).
      if (!c.isAuthenticated) {
        c.shutdown('server shutting down');
        continue;
      }
      if (holdsDevice(c)) busy++;
      c.post(M.LOG_MESSAGE, {
        logType: LogType.NDMP_LOG_WARNING,
        messageId: nextMessageId++,
        entry: text,
        associatedMessageValid: 0,
        associatedMessageSequence: 0,
      });
    }
    this.log.warn({ sessionsBusy: busy, shutdownTimeoutS: seconds }, text);

    const deadline = Date.now() + o.timeoutMs;
    const settled = await this.until(() => this.busy().length === 0, deadline);
    let aborted = 0;
    if (!settled) {
      const why = this.hurried
        ? 'ndmpd is shutting down: stopped at once (a second signal)'
        : `ndmpd is shutting down: shutdown-timeout (${seconds} s) passed`;
      aborted = await this.abortAll(why);
      if (aborted > 0) {
        // The DMAs see their halts and hang up by themselves; then nothing is cut mid-message.
        await this.until(() => this.busy().length === 0, Date.now() + (o.abortGraceMs ?? 10_000), false);
      }
    }
    const closeMs = o.closeTimeoutMs ?? 30_000;
    let timer: NodeJS.Timeout | undefined;
    const closed = await Promise.race([
      this.server.close().then(() => true),
      new Promise<boolean>((r) => (timer = setTimeout(() => r(false), closeMs))),
    ]);
    clearTimeout(timer);
    if (!closed) {
      this.log.error(
        { closeTimeoutMs: closeMs, open: this.server.connectionCount },
        'connections did not finish closing in time; exiting anyway (an open tape may lack its closing filemark)',
      );
    }
    return { aborted, closed };
  }

  /** Sessions still holding a device (a running operation, an open tape, the changer). */
  private busy(): Connection[] {
    return this.server.openConnections().filter((c) => c.isAuthenticated && holdsDevice(c));
  }

  /**
   * Aborts each running data and mover operation with `why` as its halt text,
   * data first so its halt names our reason rather than the mover's closed
   * connection; returns the sessions touched. The DMA also gets `why` by
   * LOG_MESSAGE (ERROR): NDMP v4's mover halt carries no text.
   */
  private async abortAll(why: string): Promise<number> {
    const jobs: Promise<void>[] = [];
    for (const c of this.busy()) {
      const data = dataRunning(c);
      const mover = moverRunning(c);
      if (!data && !mover) continue;
      c.log.warn({ data, mover }, `aborting the session's operation: ${why}`);
      c.post(M.LOG_MESSAGE, {
        logType: LogType.NDMP_LOG_ERROR,
        messageId: nextMessageId++,
        entry: `${why}: aborting this session's ${data ? 'data operation' : 'mover'}`,
        associatedMessageValid: 0,
        associatedMessageSequence: 0,
      });
      jobs.push(this.abortSession(c, data, mover, why));
    }
    await Promise.all(jobs);
    return jobs.length;
  }

  private async abortSession(c: Connection, data: boolean, mover: boolean, why: string): Promise<void> {
    const quiet = (what: string) => (e: Error) =>
      c.log.debug({ err: e.message }, `${what} abort at shutdown: it had halted already`);
    // The state words say the threads exist, so dataOf/driveOf start none.
    if (data) {
      raiseDataAbort(c);
      await bounded(dataOf(c).call('dataAbort', { reason: why }).catch(quiet('data')), ABORT_CALL_MS);
    }
    if (mover || moverRunning(c)) {
      await bounded(
        driveOf(c).drive.call('moverAbort', { reason: why }).catch(quiet('mover')),
        ABORT_CALL_MS,
      );
    }
  }

  /** Polls `done` until it holds (true), the deadline passes or, if `hurriable`, hurry() is called (false). */
  private async until(done: () => boolean, deadline: number, hurriable = true): Promise<boolean> {
    const poll = this.opts.pollMs ?? 100;
    while (!done()) {
      if ((hurriable && this.hurried) || Date.now() >= deadline) return false;
      await new Promise<void>((r) => {
        const t = setTimeout(r, Math.min(poll, Math.max(0, deadline - Date.now())));
        this.wake = () => {
          clearTimeout(t);
          r();
        };
      });
    }
    return true;
  }
}
