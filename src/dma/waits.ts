// How long a job waits for anything, in one place (docs/dma.md lists them
// for people). Every wait of `ndmp` has a bound; a wait that may be long for
// good reasons (a backup of many hours, a catalog behind) is bounded by
// progress instead: it goes on while something it can see moves, and ends
// the job when nothing has for a stall timeout.

import { NdmpBaseError } from '../wire/index.js';

/**
 * A wait of the job ran out: what it waited for and what to do are in the
 * message. The job has been ended (both sides aborted where they answer).
 */
export class JobWaitError extends NdmpBaseError {
  readonly code = 'DMA_WAIT_EXPIRED';
  constructor(message: string) {
    super(message);
    this.name = 'JobWaitError';
  }
}

export const WAITS = {
  /** Rewinds, spacing, opening a tape: minutes on real drives, far more than a reply's usual timeout. */
  tapeMotionMs: 60 * 60 * 1000,
  /** A side that was told to abort, or a mover that lingers after the data side is done, halts within this. */
  haltGraceMs: 30_000,
  /** After a restore's data side halted: the mover's own CONNECT_CLOSED halt, then MOVER_CLOSE, then this. */
  recoverMoverGraceMs: 10_000,
  /** One catalog call (begin, a tape part, finish, a query): a catalog that takes longer is broken. */
  catalogCallMs: 120_000,
  /** Default --stall-timeout: a running job in which nothing moves for this long ends. */
  stallMs: 600_000,
  /** The catalog closing as `ndmp` leaves. */
  catalogCloseMs: 10_000,
} as const;

/**
 * `p`, or a JobWaitError saying `what` did not happen in `ms` (then `hint`).
 * The operation itself is not cancelled: whatever it holds is released when
 * the job tears down.
 */
export async function withBound<T>(p: Promise<T>, ms: number, what: string, hint: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new JobWaitError(`${what} did not happen in ${seconds(ms)}: ${hint}`)),
      ms,
    );
  });
  try {
    return await Promise.race([p, expired]);
  } finally {
    clearTimeout(timer);
  }
}

/** "30 s", "10 min": how a bound reads in a message. */
export function seconds(ms: number): string {
  const s = ms / 1000;
  return s >= 120 && s % 60 === 0 ? `${s / 60} min` : `${Math.round(s * 10) / 10} s`;
}

/**
 * Progress as the job sees it: a list of counters (bytes the server reports,
 * history entries, catalog rows...). `stalledMs` is how long none of them
 * has changed.
 */
export class StallWatch {
  private last = '';
  private since = Date.now();

  constructor(readonly limitMs: number) {}

  note(...counters: Array<number | bigint | string>): void {
    const now = counters.join(',');
    if (now !== this.last) {
      this.last = now;
      this.since = Date.now();
    }
  }

  /** The clock restarts: a wait of the job's own (a tape change) is not the server's stall. */
  reset(): void {
    this.since = Date.now();
  }

  get stalledMs(): number {
    return Date.now() - this.since;
  }

  get expired(): boolean {
    return this.stalledMs > this.limitMs;
  }
}
