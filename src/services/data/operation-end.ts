// The last word on each data operation (docs/operations.md, "History
// warnings"): once a backup, recover or history replay has halted and its
// file history has ended, one log line with what it came to (bytes, files,
// duration, and its history's figures: entries sent, posts, spooled bytes
// peak and total, how long and what share of the backup the DMA did not
// accept history), and the same figures to the server's observer (the
// metrics). Runs on the main thread, where the history hub keeps the counters.

import type { HistoryCounters } from '../../history/control.js';
import type { HaltFigures } from './data-service.js';
import type { Session } from '../session.js';

const HALT_NAMES = ['NA', 'SUCCESSFUL', 'ABORTED', 'INTERNAL_ERROR', 'CONNECT_ERROR'];

/** NOTIFY_DATA_HALTED has gone (or is queued): `historyId` is the operation's history channel, if it had one. */
export function operationHalted(
  s: Session,
  reason: number,
  text: string,
  figures: HaltFigures,
  historyId: number | undefined,
): void {
  const hub = s.ctx.history;
  if (historyId === undefined || !hub) {
    ended(s, reason, text, figures, null);
    return;
  }
  hub.onEnded(historyId, (c) => ended(s, reason, text, figures, c));
}

function ended(s: Session, reason: number, text: string, f: HaltFigures, c: HistoryCounters | null): void {
  const halt = HALT_NAMES[reason] ?? String(reason);
  const history = c && {
    entries: c.entries,
    entriesSent: c.entriesSent,
    posts: c.posts,
    bytes: c.bytes,
    spooledBytes: c.spooledBytes,
    maxSpoolBytes: c.maxSpoolBytes,
    notAcceptingS: Math.round(c.notAcceptingMs / 100) / 10,
    notAcceptingShare:
      f.durationMs > 0
        ? Math.round((1000 * Math.min(c.notAcceptingMs, f.durationMs)) / f.durationMs) / 1000
        : 0,
    spoolWaits: c.spoolWaits,
  };
  const fields = {
    operation: f.operation,
    halt,
    bytes: f.bytes,
    files: f.files,
    durationS: Math.round(f.durationMs / 100) / 10,
    ...(history ? { history } : {}),
    text,
  };
  const what = { backup: 'backup ended', recover: 'recover ended', replay: 'history replay ended' }[
    f.operation
  ];
  if (reason === 1) s.log.info(fields, what);
  else s.log.warn(fields, what);
  s.ctx.observer?.operationEnded({ ...f, halt, history: c });
}
