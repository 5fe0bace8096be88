// History back-pressure made visible (docs/operations.md, "History
// warnings"): while a backup runs, the hub looks at its session's counters
// (the shared control block, ./control.ts) once a second and warns the DMA
// (a LOG_MESSAGE, NDMP_LOG_WARNING) and the server log, once per session and
// condition, when its history lags:
//
// - `spool`: the spool holds more than history.warn-spool bytes;
// - `lag`: the DMA has not accepted history (its credit used up) for more
//   than history.warn-lag-share of the backup's time so far, looked at once
//   the backup has run history.warn-lag-after.
//
// The spool and the wait are by design (docs/history.md): a warning is news
// for the operator (a DMA, an index database or a network that cannot keep up),
// not a failure. Pure, so the figures and the words are tested without a backup.

import type { HistoryCounters } from './control.js';
import { sizeText } from '../util/size-text.js';

export interface LagThresholds {
  /** Bytes in the spool beyond which the session is warned of; 0: never. */
  readonly warnSpoolBytes: number;
  /** Share (0..1) of the backup's time the DMA may not accept before the session is warned of; 0: never. */
  readonly warnLagShare: number;
  /** The share is looked at only once the backup has run this long (a short backup's share says little). */
  readonly warnLagAfterMs: number;
}

/** history.warn-spool's default: 64 MiB, some seconds of a busy backup's history. */
export const DEFAULT_WARN_SPOOL_BYTES = 64 * 2 ** 20;
export const DEFAULT_WARN_LAG_SHARE = 0.15;
export const DEFAULT_WARN_LAG_AFTER_MS = 30_000;

export type LagCondition = 'spool' | 'lag';

export interface LagWarning {
  readonly condition: LagCondition;
  /** For the DMA and the log line's message. */
  readonly text: string;
  /** For the log line. */
  readonly fields: LagFigures;
}

/** A session's history figures, as warnings and a backup's last log line give them. */
export interface LagFigures {
  readonly notAcceptingS: number;
  /** notAcceptingS over the backup's time so far, 0..1, three decimals. */
  readonly notAcceptingShare: number;
  readonly spooledBytes: number;
  readonly entriesQueued: number;
}

export function lagFigures(c: HistoryCounters, elapsedMs: number): LagFigures {
  return {
    notAcceptingS: round(c.notAcceptingMs / 1000, 1),
    notAcceptingShare: elapsedMs > 0 ? round(Math.min(1, c.notAcceptingMs / elapsedMs), 3) : 0,
    spooledBytes: c.spoolBytes,
    entriesQueued: Math.max(0, c.entries - c.entriesSent),
  };
}

/**
 * The warnings due for a session `elapsedMs` into its backup, leaving out
 * the conditions in `warned` (each is said once per session).
 */
export function lagWarnings(
  c: HistoryCounters,
  elapsedMs: number,
  t: LagThresholds,
  warned: ReadonlySet<LagCondition>,
): LagWarning[] {
  const f = lagFigures(c, elapsedMs);
  const out: LagWarning[] = [];
  const rest = `the DMA did not accept file history for ${f.notAcceptingS} s of ${round(elapsedMs / 1000, 1)} s (${percent(f.notAcceptingShare)}), ${sizeText(f.spooledBytes)} spooled, ${f.entriesQueued} entries queued`;
  if (!warned.has('spool') && t.warnSpoolBytes > 0 && f.spooledBytes > t.warnSpoolBytes) {
    out.push({
      condition: 'spool',
      text: `file history lags: the spool holds ${sizeText(f.spooledBytes)}, more than ${sizeText(t.warnSpoolBytes)} (history.warn-spool); ${rest}; the DMA (or its index database) takes file history slower than the backup makes it`,
      fields: f,
    });
  }
  if (
    !warned.has('lag') &&
    t.warnLagShare > 0 &&
    elapsedMs >= t.warnLagAfterMs &&
    c.notAcceptingMs > t.warnLagShare * elapsedMs
  ) {
    out.push({
      condition: 'lag',
      text: `file history lags: ${rest}, more than ${percent(t.warnLagShare)} of the backup (history.warn-lag-share); the DMA (or its index database) takes file history slower than the backup makes it`,
      fields: f,
    });
  }
  return out;
}

function round(n: number, digits: number): number {
  const k = 10 ** digits;
  return Math.round(n * k) / k;
}

function percent(share: number): string {
  return `${round(share * 100, 1)}%`;
}
