// Entry point of a session's data thread (a worker thread): the data service's
// state machine and its data connection live here (./data-service.ts), and the
// backup and recover engines it runs, so the stream never crosses the main thread.

import { parentPort, workerData } from 'node:worker_threads';
import { serveRequests, workerLog } from '../worker-rpc.js';
import type { RpcHandlers } from '../worker-rpc.js';
import { DataService } from './data-service.js';
import { nameThread } from '../../util/native-fs.js';
import type { DataEvent, DataOps, DataThreadConfig } from './protocol.js';

const port = parentPort;
if (!port) throw new Error('the data thread must run as a worker thread');
nameThread('ndmp-data');
const config = workerData as DataThreadConfig;

const data = new DataService(config, {
  halted: (reason, text, figures) =>
    port.postMessage({ event: 'data-halted', reason, text, figures } satisfies DataEvent),
  logMessage: (logType, text) =>
    port.postMessage({ event: 'log-message', logType, text } satisfies DataEvent),
  log: (level, msg, fields) => workerLog(port, level, msg, fields),
  sendHistory: (message) => port.postMessage({ event: 'fh', message } satisfies DataEvent, [message]),
  dataRead: (offset, length) => port.postMessage({ event: 'data-read', offset, length } satisfies DataEvent),
  logFile: (name, recoveryStatus) =>
    port.postMessage({ event: 'log-file', name, recoveryStatus } satisfies DataEvent),
});

const handlers: RpcHandlers<DataOps> = {
  dataGetState: () => data.getState(),
  dataListen: async (r) => ({ connectAddr: await data.listen(r.addrType) }),
  dataConnect: (r) => data.connect(r.addr),
  dataAbort: (r) => data.abort(r.reason),
  dataStop: () => data.stop(),
  dataGetEnv: () => ({ env: data.getEnv() }),
  dataStartBackup: (r) => data.startBackup(r.butypeName, r.env, r.history),
  dataStartRecover: (r) => data.startRecover(r.env, r.nlist, r.butypeName, r.fileHistory, r.history),
  dataAttachLocal: (r) => data.attachLocal(r.sab, r.listening),
  dataDetachLocal: () => data.detachLocal(),
  shutdown: (r) => data.shutdown(r.why ?? null),
};

serveRequests(port, handlers);
