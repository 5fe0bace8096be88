// DATA_* in the dispatch table: each is handed to the session's data thread,
// which owns the data service's state and its data connection.

import { HistoryModel, historyModelOf } from '../../history/record.js';
import { AddrType, M } from '../../wire/index.js';
import type { NlistName, Pval } from '../../wire/index.js';
import { connectDataToMover } from '../local-link.js';
import type { Handler, Session } from '../session.js';
import { busyAfter, handler } from '../session.js';
import { SessionWorker } from '../worker-rpc.js';
import type { DataEvent, DataOps, DataThreadConfig } from './protocol.js';

type DataClient = SessionWorker<DataOps, DataEvent>;

const threads = new WeakMap<Session, DataClient>();
/** Each session's DataThreadConfig.abortFlag. */
const abortFlags = new WeakMap<Session, Int32Array>();
/** The history channel of the session's latest backup (HistoryHub id). */
const historyIds = new WeakMap<Session, number>();
/** LOG_MESSAGE ids: free-form (PROTOCOL.md §9.4); unique per server keeps logs readable. */
let nextMessageId = 1;

/** The session's data thread, started on first use and stopped when the connection closes. */
export function dataOf(s: Session): DataClient {
  const existing = threads.get(s);
  if (existing) return existing;
  const abortFlag = new SharedArrayBuffer(4);
  abortFlags.set(s, new Int32Array(abortFlag));
  const config: DataThreadConfig = {
    sessionId: s.id,
    abortFlag,
    version: s.version,
    dataPorts: s.ctx.dataPorts ?? { low: 0, high: 0 },
    localAddress: s.localAddress,
    dataAddress: s.ctx.dataAddress ?? null,
    exports: s.ctx.exports.map((e) => ({ name: e.name, path: e.path })),
    stateDir: s.ctx.stateDir ?? null,
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
          const id = historyIds.get(s);
          if (id !== undefined) s.ctx.history?.halted(id);
          s.post(M.NOTIFY_DATA_HALTED, { reason: e.reason, textReason: e.text });
          return;
        }
        case 'fh': {
          const id = historyIds.get(s);
          if (id !== undefined) s.ctx.history?.lockstepMessage(id, e.message);
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
      s.setBusy('data', false);
      if (threads.get(s) === client) threads.delete(s);
    },
  );
  threads.set(s, client);
  s.onClose(() => {
    const id = historyIds.get(s);
    if (id !== undefined) s.ctx.history?.closed(id);
    return client.shutdown({ why: s.closeReason });
  });
  return client;
}

const dataGetState = handler(M.DATA_GET_STATE, { handle: (s) => dataOf(s).call('dataGetState', {}) });
const dataListen = handler(M.DATA_LISTEN, {
  handle: (s, req) =>
    dataOf(s)
      .call('dataListen', req)
      .then(busyAfter(s, 'data', true)),
});
const dataConnect = handler(M.DATA_CONNECT, {
  handle: (s, req) =>
    (req.addr.addrType === AddrType.NDMP_ADDR_LOCAL
      ? connectDataToMover(s)
      : dataOf(s).call('dataConnect', req)
    ).then(busyAfter(s, 'data', true)),
});
const dataAbort = handler(M.DATA_ABORT, {
  handle: (s) => {
    const client = dataOf(s);
    // The backup stops at its next record; the thread's state machine answers.
    Atomics.store(abortFlags.get(s)!, 0, 1);
    return client.call('dataAbort', {});
  },
});
const dataStop = handler(M.DATA_STOP, {
  handle: (s) =>
    dataOf(s)
      .call('dataStop', {})
      .then(busyAfter(s, 'data', false)),
});
const dataGetEnv = handler(M.DATA_GET_ENV, { handle: (s) => dataOf(s).call('dataGetEnv', {}) });
const dataStartBackup = handler(M.DATA_START_BACKUP, {
  handle: async (s, req) => {
    const hub = s.ctx.history;
    // A channel only for a backup that asks for history (the data thread checks HIST properly).
    const wanted = (historyModelOf(req.env) ?? HistoryModel.NONE) !== HistoryModel.NONE;
    const opened = hub && wanted ? hub.open(s) : null;
    if (opened) historyIds.set(s, opened.id);
    try {
      await dataOf(s).call('dataStartBackup', { ...req, history: opened?.channel ?? null });
    } catch (e) {
      if (opened) hub!.cancel(opened.id);
      throw e;
    }
  },
});

/** Both recover requests: the replay's history gets a channel like a backup's. */
async function startRecover(
  s: Session,
  req: { env: Pval[]; nlist: NlistName[]; butypeName: string },
  fileHistory: boolean,
): Promise<void> {
  const hub = s.ctx.history;
  const opened = fileHistory && hub ? hub.open(s) : null;
  if (opened) historyIds.set(s, opened.id);
  try {
    await dataOf(s).call('dataStartRecover', { ...req, fileHistory, history: opened?.channel ?? null });
  } catch (e) {
    if (opened) hub!.cancel(opened.id);
    throw e;
  }
}
const dataStartRecover = handler(M.DATA_START_RECOVER, { handle: (s, req) => startRecover(s, req, false) });
const dataStartRecoverFilehist = handler(M.DATA_START_RECOVER_FILEHIST, {
  handle: (s, req) => startRecover(s, req, true),
});

export const dataHandlers: readonly Handler[] = [
  dataGetState,
  dataListen,
  dataConnect,
  dataAbort,
  dataStop,
  dataGetEnv,
  dataStartBackup,
  dataStartRecover,
  dataStartRecoverFilehist,
] as readonly Handler[];
