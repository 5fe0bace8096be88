// The SCSI service's state rules (docs/changer.md §4): the
// one place that says in which state each SCSI request is allowed and which
// NDMP error any other state gets. A connection holds one device at most
// (docs/changer.md §4): the changer (SCSI open) or a tape, never both.

import { ErrorCode, M } from '../../wire/index.js';
import type { StateTable } from '../state-table.js';
import { rulesOf } from '../state-table.js';

/** The session's SCSI words: whether the changer is open here, and whether a tape is (mirrored at each look). */
export const SCSI_WORD_OPEN = 0;
export const SCSI_WORD_TAPE_OPEN = 1;

const CLOSED = 'CLOSED';
const OPEN = 'OPEN';
/** No SCSI device, but this connection has a tape open: it may not open another device. */
const TAPE_OPEN = 'CLOSED (a tape is open)';

const open = { allow: [OPEN], error: ErrorCode.NDMP_DEV_NOT_OPEN_ERR } as const;

export const SCSI_STATE_TABLE: StateTable = {
  subject: 'SCSI state',
  initial: [0, 0],
  stateName: (w) =>
    Atomics.load(w, SCSI_WORD_OPEN) !== 0
      ? OPEN
      : Atomics.load(w, SCSI_WORD_TAPE_OPEN) !== 0
        ? TAPE_OPEN
        : CLOSED,
  states: [CLOSED, OPEN, TAPE_OPEN],
  explain: (state, def) => {
    if (def.code === M.SCSI_OPEN.code) {
      return state === OPEN
        ? 'this session already has the changer open (SCSI_CLOSE first)'
        : 'this session has a tape open; use another connection for the changer';
    }
    return state === OPEN ? undefined : 'no SCSI device is open (SCSI_OPEN first)';
  },
  rules: rulesOf([
    [M.SCSI_OPEN, { allow: [CLOSED], error: ErrorCode.NDMP_DEVICE_OPENED_ERR }],
    [M.SCSI_CLOSE, open],
    [M.SCSI_GET_STATE, open],
    [M.SCSI_SET_TARGET, open],
    [M.SCSI_RESET_DEVICE, open],
    [M.SCSI_RESET_BUS, open],
    [M.SCSI_EXECUTE_CDB, open],
  ]),
};
