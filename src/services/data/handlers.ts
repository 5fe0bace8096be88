// DATA_* in the dispatch table: each is handed to the session's data thread,
// which owns the data service's state and its data connection. Which data
// state allows which request is ./state-rules.ts, checked before the handler.

import { HistoryModel, historyModelOf } from '../../history/record.js';
import { AddrType, M } from '../../wire/index.js';
import type { NlistName, Pval } from '../../wire/index.js';
import { connectDataToMover } from '../local-link.js';
import type { Handler, Session } from '../session.js';
import { handler } from '../session.js';
import { withStateRules } from '../state-table.js';
import { dataOf, dataWordsOf, raiseDataAbort, setHistoryId } from './client.js';
import { DATA_STATE_TABLE } from './state-rules.js';

const dataGetState = handler(M.DATA_GET_STATE, { handle: (s) => dataOf(s).call('dataGetState', {}) });
const dataListen = handler(M.DATA_LISTEN, { handle: (s, req) => dataOf(s).call('dataListen', req) });
const dataConnect = handler(M.DATA_CONNECT, {
  handle: (s, req) =>
    req.addr.addrType === AddrType.NDMP_ADDR_LOCAL
      ? connectDataToMover(s, dataOf(s))
      : dataOf(s).call('dataConnect', req),
});
const dataAbort = handler(M.DATA_ABORT, {
  handle: (s) => {
    const client = dataOf(s);
    // The backup stops at its next record; the thread's state machine answers.
    raiseDataAbort(s);
    return client.call('dataAbort', {});
  },
});
const dataStop = handler(M.DATA_STOP, { handle: (s) => dataOf(s).call('dataStop', {}) });
const dataGetEnv = handler(M.DATA_GET_ENV, { handle: (s) => dataOf(s).call('dataGetEnv', {}) });
const dataStartBackup = handler(M.DATA_START_BACKUP, {
  handle: async (s, req) => {
    const hub = s.ctx.history;
    // A channel only for a backup that asks for history (the data thread checks HIST properly).
    const wanted = (historyModelOf(req.env) ?? HistoryModel.NONE) !== HistoryModel.NONE;
    const opened = hub && wanted ? hub.open(s) : null;
    setHistoryId(s, opened?.id);
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
  setHistoryId(s, opened?.id);
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

/** Each with its rule from the data state table, checked against the thread's state word. */
export const dataHandlers: readonly Handler[] = withStateRules(DATA_STATE_TABLE, dataWordsOf, [
  dataGetState,
  dataListen,
  dataConnect,
  dataAbort,
  dataStop,
  dataGetEnv,
  dataStartBackup,
  dataStartRecover,
  dataStartRecoverFilehist,
] as readonly Handler[]);
