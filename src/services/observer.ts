// What the server tells whoever watches it (the metrics endpoint,
// src/server/metrics.ts; docs/operations.md, "Monitoring"): events the
// services see and nothing else does (a failed login, a refused request, an
// operation's end), and the shared counters every drive thread adds to. The
// services call it through ServerContext.observer and never import the
// server; without an observer nothing is counted and nothing costs.

import type { HistoryCounters } from '../history/control.js';

/** A backup, recover or history replay that ended: its figures as the data service had them. */
export interface OperationSummary {
  readonly operation: 'backup' | 'recover' | 'replay';
  /** SUCCESSFUL, ABORTED, INTERNAL_ERROR, CONNECT_ERROR (NOTIFY_DATA_HALTED's reason, without the prefix). */
  readonly halt: string;
  /** Stream bytes produced (backup) or consumed (recover). */
  readonly bytes: number;
  /** Entries backed up, or restored. */
  readonly files: number;
  readonly durationMs: number;
  /** The operation's file history counters at its end (null: it had none). */
  readonly history: HistoryCounters | null;
}

export interface ServerObserver {
  /** A CONNECT_CLIENT_AUTH refused: `why` is 'password' (checked, wrong) or 'backoff' (refused unchecked). */
  authFailed(why: 'password' | 'backoff'): void;
  /** A request refused with a reason (connection.ts tellWhy): the request, the NDMP error's name, the reason. */
  refused(request: string, error: string, reason: string): void;
  /** A data operation ended (after its history was delivered, or dropped). */
  operationEnded(summary: OperationSummary): void;
  /** Tape counters every drive thread adds to (layout: ./tape/counters.ts). */
  readonly tapeCounters: SharedArrayBuffer;
}
