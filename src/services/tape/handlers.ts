// TAPE_* and MOVER_* in the dispatch table. The main thread checks what needs
// no device (arguments, which device a name means, who holds it) and hands the
// rest to the session's drive thread, which owns the tape and the mover.

import { AddrType, ErrorCode, M, NdmpError, TapeOpenMode } from '../../wire/index.js';
import { connectMoverToData } from '../local-link.js';
import type { Handler, Session } from '../session.js';
import { busyAfter, handler } from '../session.js';
import { SessionWorker } from '../worker-rpc.js';
import type { DriveEvent, DriveOps, DriveThreadConfig } from './protocol.js';

type DriveClient = SessionWorker<DriveOps, DriveEvent>;

interface SessionDrive {
  readonly drive: DriveClient;
  /** Releases the library claim on the open tape; null while no tape is open. */
  release: (() => void) | null;
}

const drives = new WeakMap<Session, SessionDrive>();

/** The session's drive thread, started on first use and stopped when the connection closes. */
export function driveOf(s: Session): SessionDrive {
  let d = drives.get(s);
  if (d) return d;
  const release = () => {
    created.release?.();
    created.release = null;
  };
  const config: DriveThreadConfig = {
    sessionId: s.id,
    version: s.version,
    dataPorts: s.ctx.dataPorts ?? { low: 0, high: 0 },
    localAddress: s.localAddress,
    dataAddress: s.ctx.dataAddress ?? null,
  };
  const drive: DriveClient = new SessionWorker<DriveOps, DriveEvent>(
    s,
    'drive',
    new URL('./thread.js', import.meta.url),
    config,
    (e) => {
      switch (e.event) {
        case 'mover-paused':
          s.post(M.NOTIFY_MOVER_PAUSED, { reason: e.reason, seekPosition: e.seekPosition });
          return;
        case 'mover-halted':
          s.post(M.NOTIFY_MOVER_HALTED, { reason: e.reason, textReason: e.text });
          return;
      }
    },
    () => {
      // The thread died under us: its tape and mover are gone. Free the
      // device and start afresh on the next request.
      release();
      s.setBusy('tape', false);
      s.setBusy('mover', false);
      if (drives.get(s) === created) drives.delete(s);
    },
  );
  const created: SessionDrive = { drive, release: null };
  d = created;
  drives.set(s, created);
  s.onClose(() => drive.shutdown().finally(release));
  return created;
}

const tapeOpen = handler(M.TAPE_OPEN, {
  handle: async (s, req) => {
    // RAW (v4) is an open for writing without label processing; the virtual drive has none.
    const valid = [
      TapeOpenMode.NDMP_TAPE_READ_MODE,
      TapeOpenMode.NDMP_TAPE_RDWR_MODE,
      TapeOpenMode.NDMP_TAPE_RAW_MODE,
    ];
    if (!(valid as number[]).includes(req.mode)) throw NdmpError.illegalArgs(`tape open mode ${req.mode}`);
    const d = driveOf(s);
    if (d.release)
      throw new NdmpError(ErrorCode.NDMP_DEVICE_OPENED_ERR, 'this session already has a tape open');
    const lib = s.ctx.library;
    const dev = lib?.resolve(req.device) ?? null;
    if (!lib || !dev)
      throw new NdmpError(ErrorCode.NDMP_NO_DEVICE_ERR, `no tape device named ${JSON.stringify(req.device)}`);
    const tapePath = dev.tapePath;
    if (!tapePath) throw new NdmpError(ErrorCode.NDMP_NO_TAPE_LOADED_ERR, `drive ${req.device} is empty`);
    const release = lib.claim(dev);
    if (!release)
      throw new NdmpError(ErrorCode.NDMP_DEVICE_BUSY_ERR, `${req.device} is in use by another session`);
    try {
      await d.drive.call('tapeOpen', {
        path: tapePath,
        mode: req.mode === TapeOpenMode.NDMP_TAPE_READ_MODE ? req.mode : TapeOpenMode.NDMP_TAPE_RDWR_MODE,
        blankDefaults: lib.blankDefaults,
      });
    } catch (e) {
      release();
      throw e;
    }
    d.release = release;
    s.setBusy('tape', true);
    s.log.info({ device: req.device, tape: tapePath, mode: req.mode }, 'tape opened');
  },
});

const tapeClose = handler(M.TAPE_CLOSE, {
  handle: async (s) => {
    const d = driveOf(s);
    try {
      await d.drive.call('tapeClose', {});
    } catch (e) {
      // Only a busy tape stays open; any other failure (the closing filemark
      // could not be written) still closed it, so it is free for others.
      if (e instanceof NdmpError && e.ndmpError === ErrorCode.NDMP_DEVICE_BUSY_ERR) throw e;
      d.release?.();
      d.release = null;
      s.setBusy('tape', false);
      throw e;
    }
    d.release?.();
    d.release = null;
    s.setBusy('tape', false);
    s.log.info('tape closed');
  },
});

const tapeGetState = handler(M.TAPE_GET_STATE, { handle: (s) => driveOf(s).drive.call('tapeGetState', {}) });

const tapeMtio = handler(M.TAPE_MTIO, { handle: (s, req) => driveOf(s).drive.call('tapeMtio', req) });

const tapeWrite = handler(M.TAPE_WRITE, {
  handle: (s, req) => {
    // The record arrived inside a control message; one copy hands it over.
    const data = new Uint8Array(req.dataOut.length);
    data.set(req.dataOut);
    return driveOf(s).drive.call('tapeWrite', { data }, [data.buffer]);
  },
});

const tapeRead = handler(M.TAPE_READ, {
  handle: async (s, req) => {
    const { dataIn } = await driveOf(s).drive.call('tapeRead', req);
    return { dataIn: Buffer.from(dataIn.buffer, dataIn.byteOffset, dataIn.byteLength) };
  },
});

const moverGetState = handler(M.MOVER_GET_STATE, {
  handle: (s) => driveOf(s).drive.call('moverGetState', {}),
});
const moverListen = handler(M.MOVER_LISTEN, {
  handle: (s, req) =>
    driveOf(s)
      .drive.call('moverListen', req)
      .then(busyAfter(s, 'mover', true)),
});
const moverConnect = handler(M.MOVER_CONNECT, {
  handle: (s, req) =>
    (req.addr.addrType === AddrType.NDMP_ADDR_LOCAL
      ? connectMoverToData(s, req.mode)
      : driveOf(s).drive.call('moverConnect', req)
    ).then(busyAfter(s, 'mover', true)),
});
const moverSetRecordSize = handler(M.MOVER_SET_RECORD_SIZE, {
  handle: (s, req) => driveOf(s).drive.call('moverSetRecordSize', req),
});
const moverSetWindow = handler(M.MOVER_SET_WINDOW, {
  handle: (s, req) => driveOf(s).drive.call('moverSetWindow', req),
});
const moverRead = handler(M.MOVER_READ, { handle: (s, req) => driveOf(s).drive.call('moverRead', req) });
const moverContinue = handler(M.MOVER_CONTINUE, {
  handle: (s) => driveOf(s).drive.call('moverContinue', {}),
});
const moverAbort = handler(M.MOVER_ABORT, { handle: (s) => driveOf(s).drive.call('moverAbort', {}) });
const moverStop = handler(M.MOVER_STOP, {
  handle: (s) =>
    driveOf(s)
      .drive.call('moverStop', {})
      .then(busyAfter(s, 'mover', false)),
});
const moverClose = handler(M.MOVER_CLOSE, { handle: (s) => driveOf(s).drive.call('moverClose', {}) });

export const tapeHandlers: readonly Handler[] = [
  tapeOpen,
  tapeClose,
  tapeGetState,
  tapeMtio,
  tapeWrite,
  tapeRead,
] as readonly Handler[];

export const moverHandlers: readonly Handler[] = [
  moverGetState,
  moverListen,
  moverConnect,
  moverSetRecordSize,
  moverSetWindow,
  moverRead,
  moverContinue,
  moverAbort,
  moverStop,
  moverClose,
] as readonly Handler[];
