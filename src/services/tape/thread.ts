// Entry point of a session's drive thread (a worker thread). It owns the
// session's open tape and its mover: tape I/O runs here with synchronous file
// calls, and the mover's data connection lives here, so no stream byte ever
// crosses the main thread. The main thread sends one request at a time (its
// connection handles requests in order), plus `shutdown` at any time.

import { parentPort, workerData } from 'node:worker_threads';
import { NdmpError, ErrorCode } from '../../wire/index.js';
import { Mover } from './mover.js';
import type {
  DriveEvent,
  DriveOp,
  DriveOps,
  DriveReply,
  DriveRequest,
  DriveThreadConfig,
} from './protocol.js';
import { TapeDrive } from './tape-drive.js';

const port = parentPort;
if (!port) throw new Error('the drive thread must run as a worker thread');
const config = workerData as DriveThreadConfig;

function emit(e: DriveEvent): void {
  port!.postMessage(e);
}

const tape = new TapeDrive(config.version);
const mover = new Mover(tape, config, {
  paused: (reason, seekPosition) => emit({ event: 'mover-paused', reason, seekPosition }),
  halted: (reason, text) => emit({ event: 'mover-halted', reason, text }),
  log: (level, msg, fields) => emit({ event: 'log', level, msg, ...(fields ? { fields } : {}) }),
});

/** While the mover is ACTIVE the tape is its own: the DMA may only look (PROTOCOL.md §7.2). */
function tapeNotBusy(): void {
  if (mover.isActive) throw new NdmpError(ErrorCode.NDMP_DEVICE_BUSY_ERR, 'the mover is using the tape');
}

type Handlers = {
  [K in DriveOp]: (req: DriveOps[K]['req']) => DriveOps[K]['rep'] | Promise<DriveOps[K]['rep']>;
};

const handlers: Handlers = {
  tapeOpen: (r) => {
    tapeNotBusy();
    tape.open(r.path, r.mode, r.blankDefaults);
  },
  tapeClose: () => {
    tapeNotBusy();
    tape.close();
  },
  tapeGetState: () => tape.getState(),
  tapeMtio: (r) => {
    tapeNotBusy();
    return { residCount: tape.mtio(r.tapeOp, r.count) };
  },
  tapeWrite: (r) => {
    tapeNotBusy();
    return { count: tape.write(r.data) };
  },
  tapeRead: (r) => {
    tapeNotBusy();
    return { dataIn: tape.read(r.count) };
  },
  moverGetState: () => mover.getState(),
  moverListen: async (r) => ({ connectAddr: await mover.listen(r.mode, r.addrType) }),
  moverConnect: (r) => mover.connect(r.mode, r.addr),
  moverSetRecordSize: (r) => mover.setRecordSize(r.len),
  moverSetWindow: (r) => mover.setWindow(r.offset, r.length),
  moverRead: (r) => mover.read(r.offset, r.length),
  moverContinue: () => mover.continue(),
  moverAbort: () => mover.abort(),
  moverStop: () => mover.stop(),
  moverClose: () => mover.close(),
  shutdown: () => {
    mover.shutdown();
    tape.shutdown();
  },
};

port.on('message', (msg: DriveRequest) => {
  void handle(msg);
});

async function handle(msg: DriveRequest): Promise<void> {
  let reply: DriveReply;
  const transfer: ArrayBuffer[] = [];
  try {
    const fn = handlers[msg.op] as (req: unknown) => unknown;
    const rep = await fn(msg.req);
    // Bytes read from tape go back without a copy.
    if (msg.op === 'tapeRead') {
      const data = (rep as DriveOps['tapeRead']['rep']).dataIn;
      if (data.buffer instanceof ArrayBuffer && data.byteLength > 0) transfer.push(data.buffer);
    }
    reply = { id: msg.id, ok: true, rep };
  } catch (e) {
    if (e instanceof NdmpError) {
      reply = {
        id: msg.id,
        ok: false,
        ndmpError: e.ndmpError,
        message: e.message,
        ...(e.reply ? { reply: { ...e.reply } } : {}),
      };
    } else {
      emit({
        event: 'log',
        level: 'error',
        msg: 'drive thread failed',
        fields: { op: msg.op, err: String(e) },
      });
      reply = { id: msg.id, ok: false, ndmpError: ErrorCode.NDMP_UNDEFINED_ERR, message: String(e) };
    }
  }
  port!.postMessage(reply, transfer);
}
