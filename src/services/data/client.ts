// Each session's data thread, as the main thread holds it: the worker, the
// abort flag and the state word it shares with it, and the history channel of
// its latest operation. The record itself lives in the session registry
// (../registry.ts), where the admin socket lists it and the LOCAL link
// (../local-link.ts) finds the thread.

import { M } from '../../wire/index.js';
import type { Session } from '../session.js';
import { newStateWords } from '../state-table.js';
import { recordOf } from '../registry.js';
import type { DataClient } from '../registry.js';
import { operationHalted } from './operation-end.js';
import { SessionWorker } from '../worker-rpc.js';
import type { DataEvent, DataOps, DataThreadConfig } from './protocol.js';
import { DATA_STATE_TABLE } from './state-rules.js';

export type { DataClient } from '../registry.js';

/** LOG_MESSAGE ids: free-form (docs/protocol.md §9.4); unique per server keeps logs readable. */
let nextMessageId = 1;
/** The words of a session whose data thread has not started (yet, or again): IDLE. */
const NOT_STARTED = newStateWords(DATA_STATE_TABLE);

/** The session's data state words, read by the dispatcher before a DATA request runs. */
export function dataWordsOf(s: Session): Int32Array {
  return recordOf(s).data?.words ?? NOT_STARTED;
}

/** DATA_ABORT: the running operation sees it at its next record, before the request reaches the thread. */
export function raiseDataAbort(s: Session): void {
  const d = recordOf(s).data;
  if (d) Atomics.store(d.abortFlag, 0, 1);
}

/** The history channel the session's next operation feeds (undefined: none, so no earlier one's is taken for it). */
export function setHistoryId(s: Session, id: number | undefined): void {
  recordOf(s).historyId = id ?? null;
}

/** The session's data thread, started on first use and stopped when the connection closes. */
export function dataOf(s: Session): DataClient {
  const record = recordOf(s);
  if (record.data) return record.data.client;
  const abortFlag = new SharedArrayBuffer(4);
  const words = newStateWords(DATA_STATE_TABLE);
  const config: DataThreadConfig = {
    sessionId: s.id,
    abortFlag,
    stateWords: words.buffer as SharedArrayBuffer,
    version: s.version,
    dataPorts: s.ctx.dataPorts ?? { low: 0, high: 0 },
    localAddress: s.localAddress,
    dataAddress: s.ctx.dataAddress ?? null,
    exports: s.ctx.exports.map((e) => ({ name: e.name, path: e.path })),
    stateDir: s.ctx.stateDir ?? null,
    restoreSpecial: s.ctx.restoreSpecial ?? false,
  };
  const client: DataClient = new SessionWorker<DataOps, DataEvent>(
    s,
    'data',
    new URL('./thread.js', import.meta.url),
    config,
    (e) => {
      switch (e.event) {
        case 'data-halted': {
          // Nothing of this backup's history may follow the notification.
          const id = record.historyId;
          if (id !== null) s.ctx.history?.halted(id);
          s.post(M.NOTIFY_DATA_HALTED, { reason: e.reason, textReason: e.text });
          record.dataHalts++;
          // Its last log line, once its history has ended too (./operation-end.ts).
          operationHalted(s, e.reason, e.text, e.figures, id ?? undefined);
          return;
        }
        case 'fh': {
          const id = record.historyId;
          if (id !== null) s.ctx.history?.lockstepMessage(id, e.message);
          return;
        }
        case 'data-read':
          s.post(M.NOTIFY_DATA_READ, { offset: e.offset, length: e.length });
          return;
        case 'log-file':
          s.post(M.LOG_FILE, { name: e.name, recoveryStatus: e.recoveryStatus });
          return;
        case 'log-message':
          s.post(M.LOG_MESSAGE, {
            logType: e.logType,
            messageId: nextMessageId++,
            entry: e.text,
            associatedMessageValid: 0,
            associatedMessageSequence: 0,
          });
          return;
      }
    },
    () => {
      // A thread that died took its state with it: the next request starts afresh (IDLE).
      if (record.data?.client === client) record.data = null;
    },
  );
  record.data = { client, abortFlag: new Int32Array(abortFlag), words };
  s.onClose(() => {
    const id = record.historyId;
    if (id !== null) s.ctx.history?.closed(id);
    return client.shutdown({ why: s.closeReason });
  });
  return client;
}
