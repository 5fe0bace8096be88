// SCSI_* in the dispatch table (docs/changer.md §4; docs/protocol.md §3.4, draft
// §3.3): the library's changer, opened by name, commands executed by the
// pure SCSI module (src/devices/smc/). Which state allows which request is
// ./state-rules.ts, checked before a handler runs.
//
// An NDMP error is only for what stops a command from reaching the changer
// (not open, a malformed request, no such device); whatever the CDB says,
// once delivered the reply is NDMP_NO_ERR with the SCSI status and sense
// (docs/smc.md §1: ndmjob gives up on an NDMP error and ignores sense).

import { executeChangerCdb, ScsiStatus } from '../../devices/smc/index.js';
import type { ScsiResult } from '../../devices/smc/index.js';
import { CHANGER_DEVICE } from '../../devices/library-changer.js';
import { ErrorCode, LogType, M, NdmpError } from '../../wire/index.js';
import type { Handler, Session } from '../session.js';
import { handler } from '../session.js';
import { withStateRules } from '../state-table.js';
import { closeScsi, scsiOf, scsiWordsOf } from './client.js';
import { SCSI_STATE_TABLE, SCSI_WORD_OPEN } from './state-rules.js';

/** execute_cdb flags (docs/protocol.md §4.3). */
export const CdbFlags = { DATA_IN: 0x1, DATA_OUT: 0x2 } as const;
/** The longest CDB a SCSI command has (16 bytes, SPC's variable-length ones aside). */
export const MAX_CDB_LENGTH = 16;

const scsiOpen = handler(M.SCSI_OPEN, {
  handle: (s, req) => {
    const changer = s.ctx.changer ?? null;
    if (!changer || req.device !== CHANGER_DEVICE) {
      throw new NdmpError(
        ErrorCode.NDMP_NO_DEVICE_ERR,
        `no SCSI device named ${JSON.stringify(req.device)}${changer ? ` (the changer is ${CHANGER_DEVICE})` : ''}`,
      );
    }
    const release = changer.library.claimChanger();
    if (!release) {
      const text = `${CHANGER_DEVICE} is in use by another session`;
      logToDma(s, LogType.NDMP_LOG_WARNING, `${text}; try again when it has finished`);
      throw new NdmpError(ErrorCode.NDMP_DEVICE_BUSY_ERR, text);
    }
    const st = scsiOf(s);
    st.release = release;
    Atomics.store(st.words, SCSI_WORD_OPEN, 1);
    s.log.info({ device: req.device }, 'changer opened');
    return {};
  },
});

const scsiClose = handler(M.SCSI_CLOSE, {
  handle: (s) => {
    closeScsi(scsiOf(s));
    s.log.info('changer closed');
    return {};
  },
});

const scsiGetState = handler(M.SCSI_GET_STATE, {
  handle: (s) => {
    const t = scsiOf(s).target;
    return { targetController: t.controller, targetId: t.id, targetLun: t.lun };
  },
});

// v3 only. ndmjob sends it for `-r NAME,SID[,LUN]` and fails the robot unless
// it succeeds; the virtual changer has no bus, so the numbers are only kept (docs/changer.md §4).
const scsiSetTarget = handler(M.SCSI_SET_TARGET, {
  handle: (s, req) => {
    if (req.device !== CHANGER_DEVICE) {
      throw new NdmpError(ErrorCode.NDMP_NO_DEVICE_ERR, `no SCSI device named ${JSON.stringify(req.device)}`);
    }
    // controller −1 comes as 0x0000ffff (a u_short): keep it as the DMA meant it.
    const short = (v: number) => ((v & 0xffff) << 16) >> 16;
    scsiOf(s).target = {
      controller: short(req.targetController),
      id: short(req.targetId),
      lun: short(req.targetLun),
    };
    return {};
  },
});

// Nothing to reset: the virtual changer has no transport in motion.
const scsiResetDevice = handler(M.SCSI_RESET_DEVICE, { handle: () => ({}) });

const scsiResetBus = handler(M.SCSI_RESET_BUS, {
  handle: () => {
    throw new NdmpError(ErrorCode.NDMP_NOT_SUPPORTED_ERR, 'the virtual changer has no SCSI bus to reset');
  },
});

/** Checks what NDMP itself refuses before a CDB reaches the device (docs/smc.md §1). */
export function checkCdbRequest(req: { flags: number; cdb: Buffer }): void {
  if ((req.flags & CdbFlags.DATA_IN) !== 0 && (req.flags & CdbFlags.DATA_OUT) !== 0) {
    throw NdmpError.illegalArgs('execute_cdb: DATA_IN and DATA_OUT both set');
  }
  if (req.cdb.length === 0 || req.cdb.length > MAX_CDB_LENGTH) {
    throw NdmpError.illegalArgs(`execute_cdb: a CDB is 1 to ${MAX_CDB_LENGTH} bytes, not ${req.cdb.length}`);
  }
}

/** The reply to a delivered command: NO_ERR, the status, data-in and autosense. */
export function cdbReply(r: ScsiResult) {
  return {
    status: r.status,
    dataoutLen: 0,
    datain: Buffer.from(r.dataIn.buffer, r.dataIn.byteOffset, r.dataIn.byteLength),
    extSense: Buffer.from(r.sense.buffer, r.sense.byteOffset, r.sense.byteLength),
  };
}

/** MOVE MEDIUM (A5h), INITIALIZE ELEMENT STATUS (07h, 37h): a refusal of these the DMA's operator should read. */
const TOLD_OPCODES = new Set([0xa5, 0x07, 0x37]);

const scsiExecuteCdb = handler(M.SCSI_EXECUTE_CDB, {
  handle: (s, req) => {
    checkCdbRequest(req);
    const changer = s.ctx.changer!;
    const r = executeChangerCdb(
      changer,
      { cdb: req.cdb, dataInLen: req.datainLen, dataOut: req.dataout },
      scsiOf(s).nexus,
    );
    if (r.status === ScsiStatus.CHECK_CONDITION) {
      const sense = r.sense;
      const fields = {
        cdb: req.cdb.toString('hex'),
        key: sense[2]! & 0x0f,
        asc: sense[12],
        ascq: sense[13],
      };
      s.log.warn(fields, `changer command refused: ${r.detail ?? 'CHECK CONDITION'}`);
      if (TOLD_OPCODES.has(req.cdb[0]!))
        logToDma(s, LogType.NDMP_LOG_WARNING, `changer: ${r.detail ?? 'refused'}`);
    } else if (req.cdb[0] === 0xa5) {
      s.log.info({ cdb: req.cdb.toString('hex') }, 'changer moved a tape');
    }
    return cdbReply(r);
  },
});

let nextMessageId = 1;

/** A LOG_MESSAGE to the DMA (ndmjob prints them), for refusals whose reason only we know. */
export function logToDma(s: Session, logType: number, entry: string): void {
  s.post(M.LOG_MESSAGE, {
    logType,
    messageId: nextMessageId++,
    entry,
    associatedMessageValid: 0,
    associatedMessageSequence: 0,
  });
}

/** Each with its rule from the SCSI state table. */
export const scsiHandlers: readonly Handler[] = withStateRules(SCSI_STATE_TABLE, scsiWordsOf, [
  scsiOpen,
  scsiClose,
  scsiGetState,
  scsiSetTarget,
  scsiResetDevice,
  scsiResetBus,
  scsiExecuteCdb,
] as readonly Handler[]);
