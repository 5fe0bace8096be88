// DATA_* in the dispatch table: each is handed to the session's data thread,
// which owns the data service's state and its data connection.

import { M } from '../../wire/index.js';
import type { Handler, Session } from '../session.js';
import { handler } from '../session.js';
import { SessionWorker } from '../worker-rpc.js';
import type { DataEvent, DataOps, DataThreadConfig } from './protocol.js';

type DataClient = SessionWorker<DataOps, DataEvent>;

const threads = new WeakMap<Session, DataClient>();

/** The session's data thread, started on first use and stopped when the connection closes. */
function dataOf(s: Session): DataClient {
  const existing = threads.get(s);
  if (existing) return existing;
  const config: DataThreadConfig = {
    sessionId: s.id,
    version: s.version,
    dataPorts: s.ctx.dataPorts ?? { low: 0, high: 0 },
    localAddress: s.localAddress,
    dataAddress: s.ctx.dataAddress ?? null,
  };
  const client: DataClient = new SessionWorker<DataOps, DataEvent>(
    s,
    'data',
    new URL('./thread.js', import.meta.url),
    config,
    (e) => s.post(M.NOTIFY_DATA_HALTED, { reason: e.reason, textReason: e.text }),
    () => {
      if (threads.get(s) === client) threads.delete(s);
    },
  );
  threads.set(s, client);
  s.onClose(() => client.shutdown());
  return client;
}

const dataGetState = handler(M.DATA_GET_STATE, { handle: (s) => dataOf(s).call('dataGetState', {}) });
const dataListen = handler(M.DATA_LISTEN, { handle: (s, req) => dataOf(s).call('dataListen', req) });
const dataConnect = handler(M.DATA_CONNECT, { handle: (s, req) => dataOf(s).call('dataConnect', req) });
const dataAbort = handler(M.DATA_ABORT, { handle: (s) => dataOf(s).call('dataAbort', {}) });
const dataStop = handler(M.DATA_STOP, { handle: (s) => dataOf(s).call('dataStop', {}) });
const dataGetEnv = handler(M.DATA_GET_ENV, { handle: (s) => dataOf(s).call('dataGetEnv', {}) });

export const dataHandlers: readonly Handler[] = [
  dataGetState,
  dataListen,
  dataConnect,
  dataAbort,
  dataStop,
  dataGetEnv,
] as readonly Handler[];
