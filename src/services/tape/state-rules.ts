// The tape's and the mover's state rules (docs/protocol-coverage.md lists
// them): the one place that says in which state each TAPE and MOVER request
// is allowed, and which NDMP error any other state gets. The dispatcher checks
// them against the words the drive thread publishes; the drive thread checks
// them again as it executes (services/state-table.ts).

import { ErrorCode, M, MoverMode, MoverState } from '../../wire/index.js';
import type { StateTable } from '../state-table.js';
import { rulesOf } from '../state-table.js';

/** The drive thread's shared state: the mover's state and mode, and what the tape is. */
export const DRIVE_WORD_MOVER_STATE = 0;
export const DRIVE_WORD_MOVER_MODE = 1;
export const DRIVE_WORD_TAPE = 2;

/** DRIVE_WORD_TAPE's values. */
export const TapeWord = {
  CLOSED: 0,
  /** Open in NDMP_TAPE_READ_MODE. */
  READ: 1,
  /** Open for writing (RDWR, or RAW: the virtual drive has no labels to skip). */
  RDWR: 2,
  /** Open, but MTIO OFF took the medium offline. */
  OFFLINE: 3,
} as const;

const DRIVE_INITIAL = [MoverState.NDMP_MOVER_STATE_IDLE, MoverMode.NDMP_MOVER_MODE_NOACTION, TapeWord.CLOSED];

const MOVER_NAMES = ['IDLE', 'LISTEN', 'ACTIVE', 'PAUSED', 'HALTED'];
const MODE_NAMES = ['READ', 'WRITE', 'NOACTION'];

export function moverStateName(state: number): string {
  return MOVER_NAMES[state] ?? String(state);
}
export function moverModeName(mode: number): string {
  return MODE_NAMES[mode] ?? String(mode);
}

// An ACTIVE mover is named with its mode: MOVER_READ needs one that serves a recover.
const ACTIVE_READ = 'ACTIVE (mode READ)';
const ACTIVE_WRITE = 'ACTIVE (mode WRITE)';

export const MOVER_STATE_TABLE: StateTable = {
  subject: 'mover state',
  initial: DRIVE_INITIAL,
  stateName: (words) => {
    const state = Atomics.load(words, DRIVE_WORD_MOVER_STATE);
    if (state !== MoverState.NDMP_MOVER_STATE_ACTIVE) return moverStateName(state);
    return Atomics.load(words, DRIVE_WORD_MOVER_MODE) === MoverMode.NDMP_MOVER_MODE_WRITE
      ? ACTIVE_WRITE
      : ACTIVE_READ;
  },
  states: ['IDLE', 'LISTEN', ACTIVE_READ, ACTIVE_WRITE, 'PAUSED', 'HALTED'],
  // MOVER_GET_STATE is allowed in every state, so it has no rule.
  rules: rulesOf([
    [M.MOVER_LISTEN, { allow: ['IDLE'] }],
    [M.MOVER_CONNECT, { allow: ['IDLE'] }],
    [M.MOVER_SET_RECORD_SIZE, { allow: ['IDLE'] }],
    // IDLE before a transfer, PAUSED before CONTINUE. v4 refuses it in LISTEN;
    // v3 DMAs (ndmjob) set the window after MOVER_LISTEN.
    [M.MOVER_SET_WINDOW, { allow: ['IDLE', 'PAUSED'], allowV3: ['LISTEN'] }],
    // Only a mover serving a recover (mode WRITE: it writes the data connection) reads the tape for the DMA.
    [M.MOVER_READ, { allow: [ACTIVE_WRITE] }],
    [M.MOVER_CONTINUE, { allow: ['PAUSED'] }],
    [M.MOVER_ABORT, { allow: ['LISTEN', ACTIVE_READ, ACTIVE_WRITE, 'PAUSED'] }],
    [M.MOVER_STOP, { allow: ['HALTED'] }],
    [M.MOVER_CLOSE, { allow: [ACTIVE_READ, ACTIVE_WRITE, 'PAUSED'] }],
  ]),
};

// Tape states are what the tape is, and whether an ACTIVE mover is using it:
// then the DMA may only look at it (TAPE_GET_STATE); once the mover pauses,
// the tape is the DMA's again.
const TAPE_NAMES = ['CLOSED', 'READ', 'RDWR', 'OFFLINE'];
const BUSY = '/BUSY';

function tapeStateName(words: Int32Array): string {
  const tape = Atomics.load(words, DRIVE_WORD_TAPE);
  const name = TAPE_NAMES[tape] ?? String(tape);
  return Atomics.load(words, DRIVE_WORD_MOVER_STATE) === MoverState.NDMP_MOVER_STATE_ACTIVE
    ? name + BUSY
    : name;
}

const busy = (state: string) => state.endsWith(BUSY);
/** Not open: NDMP_DEV_NOT_OPEN_ERR; open but offline: no tape to move. */
const notUsable = (state: string) =>
  state.startsWith('CLOSED') ? ErrorCode.NDMP_DEV_NOT_OPEN_ERR : ErrorCode.NDMP_NO_TAPE_LOADED_ERR;
/** Moving or reading the tape: the mover comes first, then whether there is a tape. */
const motionError = (state: string) => (busy(state) ? ErrorCode.NDMP_DEVICE_BUSY_ERR : notUsable(state));

export const TAPE_STATE_TABLE: StateTable = {
  subject: 'tape state',
  initial: DRIVE_INITIAL,
  stateName: tapeStateName,
  states: TAPE_NAMES.flatMap((n) => [n, n + BUSY]),
  explain: (state, def) => {
    if (busy(state)) return 'the mover is using the tape (wait until it pauses or halts)';
    if (state === 'CLOSED') return 'no tape is open (TAPE_OPEN first)';
    if (state === 'OFFLINE') return 'the tape was taken offline (MTIO OFF); close it and open it again';
    if (def.code === M.TAPE_OPEN.code) return 'this session already has a tape open (TAPE_CLOSE first)';
    if (state === 'READ') return 'the tape is open read-only (open it in RDWR mode to write)';
    return undefined;
  },
  rules: rulesOf([
    [
      M.TAPE_OPEN,
      {
        allow: ['CLOSED'],
        // A tape already open comes first; with none, an ACTIVE mover still holds the drive.
        error: (state) =>
          state === 'CLOSED' + BUSY ? ErrorCode.NDMP_DEVICE_BUSY_ERR : ErrorCode.NDMP_DEVICE_OPENED_ERR,
      },
    ],
    // Closing an offline tape is how the DMA gets rid of it.
    [
      M.TAPE_CLOSE,
      {
        allow: ['READ', 'RDWR', 'OFFLINE'],
        error: (state) => (busy(state) ? ErrorCode.NDMP_DEVICE_BUSY_ERR : ErrorCode.NDMP_DEV_NOT_OPEN_ERR),
      },
    ],
    // Looking is allowed even while the mover writes.
    [
      M.TAPE_GET_STATE,
      {
        allow: ['READ', 'RDWR', 'OFFLINE', 'READ' + BUSY, 'RDWR' + BUSY, 'OFFLINE' + BUSY],
        error: ErrorCode.NDMP_DEV_NOT_OPEN_ERR,
      },
    ],
    [M.TAPE_MTIO, { allow: ['READ', 'RDWR'], error: motionError }],
    // Identifying the drive moves nothing: allowed whenever a tape is open, even offline or in use.
    [
      M.TAPE_EXECUTE_CDB,
      {
        allow: ['READ', 'RDWR', 'OFFLINE', 'READ' + BUSY, 'RDWR' + BUSY, 'OFFLINE' + BUSY],
        error: ErrorCode.NDMP_DEV_NOT_OPEN_ERR,
      },
    ],
    [M.TAPE_READ, { allow: ['READ', 'RDWR'], error: motionError }],
    // A tape opened for reading refuses writes with NDMP_PERMISSION_ERR.
    [
      M.TAPE_WRITE,
      {
        allow: ['RDWR'],
        error: (state) => (state === 'READ' ? ErrorCode.NDMP_PERMISSION_ERR : motionError(state)),
      },
    ],
  ]),
};
