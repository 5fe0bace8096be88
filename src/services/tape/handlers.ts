// TAPE_* and MOVER_* in the dispatch table. The main thread checks what needs
// no device (arguments, which device a name means, who holds it) and hands the
// rest to the session's drive thread, which owns the tape and the mover.
// Which tape or mover state allows which request is ./state-rules.ts, checked
// before the handler runs.

import { executeTapeCdb } from '../../devices/smc/index.js';
import { AddrType, ErrorCode, M, NdmpError, TapeOpenMode } from '../../wire/index.js';
import { connectMoverToData } from '../local-link.js';
import type { Handler } from '../session.js';
import { handler } from '../session.js';
import { withStateRules } from '../state-table.js';
import { cdbReply, checkCdbRequest } from '../scsi/handlers.js';
import { holdsChanger, scsiOf } from '../scsi/client.js';
import { driveOf, driveWordsOf } from './client.js';
import { DRIVE_WORD_TAPE, MOVER_STATE_TABLE, TAPE_STATE_TABLE, TapeWord } from './state-rules.js';

const tapeOpen = handler(M.TAPE_OPEN, {
  handle: async (s, req) => {
    // RAW (v4) is an open for writing without label processing; the virtual drive has none.
    const valid = [
      TapeOpenMode.NDMP_TAPE_READ_MODE,
      TapeOpenMode.NDMP_TAPE_RDWR_MODE,
      TapeOpenMode.NDMP_TAPE_RAW_MODE,
    ];
    if (!(valid as number[]).includes(req.mode)) throw NdmpError.illegalArgs(`tape open mode ${req.mode}`);
    // One device per connection (docs/changer.md §4): the changer is open here.
    if (holdsChanger(s)) {
      throw new NdmpError(
        ErrorCode.NDMP_DEVICE_OPENED_ERR,
        'this session has the changer open; open tapes on another connection',
      );
    }
    const d = driveOf(s);
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
    d.driveIndex = dev.kind === 'drive' ? lib.drives().indexOf(dev.drive) : null;
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
      d.driveIndex = null;
      throw e;
    }
    d.release?.();
    d.release = null;
    d.driveIndex = null;
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

// The drive's own identity, the same the changer's DVCID reports for its
// element, so a DMA can tell which drive element it opened (docs/smc.md §5).
const tapeExecuteCdb = handler(M.TAPE_EXECUTE_CDB, {
  handle: (s, req) => {
    checkCdbRequest(req);
    const d = driveOf(s);
    const changer = s.ctx.changer ?? null;
    const identity = d.driveIndex !== null ? changer?.drives[d.driveIndex] : undefined;
    if (!identity) {
      throw new NdmpError(
        ErrorCode.NDMP_NOT_SUPPORTED_ERR,
        'TAPE_EXECUTE_CDB is served for the library drives, not for a tape image opened by name',
      );
    }
    const r = executeTapeCdb(
      { identity, mediumLoaded: () => Atomics.load(d.words, DRIVE_WORD_TAPE) !== TapeWord.OFFLINE },
      { cdb: req.cdb, dataInLen: req.datainLen, dataOut: req.dataout },
      scsiOf(s).nexus,
    );
    return cdbReply(r);
  },
});

const moverGetState = handler(M.MOVER_GET_STATE, {
  handle: (s) => driveOf(s).drive.call('moverGetState', {}),
});
const moverListen = handler(M.MOVER_LISTEN, {
  handle: (s, req) => driveOf(s).drive.call('moverListen', req),
});
const moverConnect = handler(M.MOVER_CONNECT, {
  handle: (s, req) =>
    req.addr.addrType === AddrType.NDMP_ADDR_LOCAL
      ? connectMoverToData(s, driveOf(s).drive, req.mode)
      : driveOf(s).drive.call('moverConnect', req),
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
const moverStop = handler(M.MOVER_STOP, { handle: (s) => driveOf(s).drive.call('moverStop', {}) });
const moverClose = handler(M.MOVER_CLOSE, { handle: (s) => driveOf(s).drive.call('moverClose', {}) });

/** Each with its rule from the tape state table, checked against the drive thread's words. */
export const tapeHandlers: readonly Handler[] = withStateRules(TAPE_STATE_TABLE, driveWordsOf, [
  tapeOpen,
  tapeClose,
  tapeGetState,
  tapeMtio,
  tapeWrite,
  tapeRead,
  tapeExecuteCdb,
] as readonly Handler[]);

/** Each with its rule from the mover state table, checked against the drive thread's words. */
export const moverHandlers: readonly Handler[] = withStateRules(MOVER_STATE_TABLE, driveWordsOf, [
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
] as readonly Handler[]);
