// Entry point of a session's drive thread (a worker thread). It owns the
// session's open tape and its mover: tape I/O runs here with synchronous file
// calls, and the mover's data connection lives here, so no stream byte ever
// crosses the main thread. The main thread sends one request at a time (its
// connection handles requests in order), plus `shutdown` at any time.

import { parentPort, workerData } from 'node:worker_threads';
import { serveRequests, workerLog } from '../worker-rpc.js';
import type { RpcHandlers } from '../worker-rpc.js';
import { Mover } from './mover.js';
import type { DriveEvent, DriveOps, DriveThreadConfig } from './protocol.js';
import { TapeDrive } from './tape-drive.js';
import { nameThread } from '../../util/native-fs.js';

const port = parentPort;
if (!port) throw new Error('the drive thread must run as a worker thread');
nameThread('ndmp-drive');
const config = workerData as DriveThreadConfig;

function emit(e: DriveEvent): void {
  port!.postMessage(e);
}

// The tape and the mover publish their states into the same words: the tape
// table's rules (an ACTIVE mover holds the tape) read both.
const words = new Int32Array(config.stateWords);
const tape = new TapeDrive(
  config.version,
  words,
  (e) => {
    workerLog(port, 'error', 'tape record fails its data CRC', { ...e.place, message: e.message });
    emit({ event: 'log-message', text: e.message });
  },
  config.tapeCounters,
);
const mover = new Mover(
  tape,
  config,
  {
    paused: (reason, seekPosition) => emit({ event: 'mover-paused', reason, seekPosition }),
    halted: (reason, text) => emit({ event: 'mover-halted', reason, text }),
    log: (level, msg, fields) => workerLog(port, level, msg, fields),
  },
  words,
);

// Each operation checks its request's state rule itself (./state-rules.ts).
const handlers: RpcHandlers<DriveOps> = {
  tapeOpen: (r) => tape.open(r.path, r.mode, r.blankDefaults),
  tapeClose: () => tape.close(),
  tapeGetState: () => tape.getState(),
  tapeMtio: (r) => ({ residCount: tape.mtio(r.tapeOp, r.count) }),
  tapeWrite: (r) => ({ count: tape.write(r.data) }),
  tapeRead: (r) => ({ dataIn: tape.read(r.count) }),
  moverGetState: () => mover.getState(),
  moverListen: async (r) => ({ connectAddr: await mover.listen(r.mode, r.addrType) }),
  moverConnect: (r) => mover.connect(r.mode, r.addr),
  moverSetRecordSize: (r) => mover.setRecordSize(r.len),
  moverSetWindow: (r) => mover.setWindow(r.offset, r.length),
  moverRead: (r) => mover.read(r.offset, r.length),
  moverContinue: () => mover.continue(),
  moverAbort: (r) => mover.abort(r.reason),
  moverStop: () => mover.stop(),
  moverClose: () => mover.close(),
  moverAttachLocal: (r) => mover.attachLocal(r.sab, r.connectMode),
  moverDetachLocal: () => mover.detachLocal(),
  shutdown: () => {
    mover.shutdown();
    tape.shutdown();
  },
};

// Bytes read from tape go back without a copy.
serveRequests(port, handlers, (op, rep) => {
  if (op !== 'tapeRead') return [];
  const data = (rep as DriveOps['tapeRead']['rep']).dataIn;
  return data.buffer instanceof ArrayBuffer && data.byteLength > 0 ? [data.buffer] : [];
});
