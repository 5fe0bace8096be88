// Messages between the main thread (hub.ts) and a history thread (thread.ts).

import type { HistoryCounters } from './control.js';
import type { BatchLimits } from './encoder.js';

export interface HistoryThreadConfig {
  readonly limits: BatchLimits;
  /** A batch that has entries goes out after this long even if not full. */
  readonly maxDelayMs: number;
  /** Bytes a session may have handed to its socket and not yet seen written. */
  readonly creditBytes: number;
  /** Bytes of messages a session may keep in memory beyond its credit before spooling. */
  readonly memoryBytes: number;
  readonly stallTimeoutMs: number;
  readonly spoolDir: string;
  /** Bytes a session's spool file may hold (it may pass them by one message); 0: no spool file. */
  readonly spoolMaxBytes: number;
  /** Free bytes the spool leaves on its file system; null: the smaller of 1 GiB and 5%; 0: no floor. */
  readonly spoolMinFreeBytes: number | null;
  /** One Int32 that producers ring (Atomics.notify) when a ring needs draining soon. */
  readonly doorbell: SharedArrayBuffer;
}

export type ToHistoryThread =
  | {
      readonly op: 'open';
      readonly id: number;
      readonly ring: SharedArrayBuffer;
      readonly control: SharedArrayBuffer;
    }
  /**
   * Credit back, for several sessions at once: `bytes[i]` of session `ids[i]`'s
   * messages were written (or failed to be: `failed[i]`). The main thread
   * returns it in batches (hub.ts), not per write.
   */
  | {
      readonly op: 'credit';
      readonly ids: readonly number[];
      readonly bytes: readonly number[];
      readonly failed: readonly boolean[];
    }
  /** The session's control connection closed. */
  | { readonly op: 'closed'; readonly id: number }
  | { readonly op: 'shutdown' };

export type FromHistoryThread =
  | {
      readonly event: 'log';
      readonly level: 'debug' | 'info' | 'warn' | 'error';
      readonly msg: string;
      readonly fields?: Record<string, unknown>;
    }
  /**
   * The session's spool could not take more and its backup now waits for the
   * DMA (`waiting`), or spooling works again; `text` is for the DMA, in plain words.
   */
  | {
      readonly event: 'spool';
      readonly id: number;
      readonly waiting: boolean;
      readonly text: string;
      readonly fields: Record<string, unknown>;
    }
  /**
   * Complete FH_ADD_* messages (sequence and time stamp zero), `messages[i]` for
   * session `ids[i]`'s connection, in order: all that one round of the history
   * thread sealed, in one hand-off.
   */
  | { readonly event: 'fh'; readonly ids: readonly number[]; readonly messages: readonly ArrayBuffer[] }
  | {
      readonly event: 'end';
      readonly id: number;
      readonly how: 'delivered' | 'failed' | 'discarded';
      readonly reason: number;
      /** What happened, in words, when it failed so ('' otherwise). */
      readonly detail: string;
      readonly counters: HistoryCounters;
    };
