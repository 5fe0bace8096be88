// The data service's state rules (docs/protocol-coverage.md lists them): the
// one place that says in which data state each DATA request is allowed. The
// dispatcher checks them against the state word the data thread publishes;
// the data thread checks them again as it executes (services/state-table.ts).

import { DataState, M } from '../../wire/index.js';
import type { StateTable } from '../state-table.js';
import { rulesOf } from '../state-table.js';

/** The data thread's shared state: one word, the NDMP data state. */
export const DATA_WORD_STATE = 0;

const NAMES = ['IDLE', 'ACTIVE', 'HALTED', 'LISTEN', 'CONNECTED'];

/** A data state's name as NDMP spells it after NDMP_DATA_STATE_. */
export function dataStateName(state: number): string {
  return NAMES[state] ?? String(state);
}

export const DATA_STATE_TABLE: StateTable = {
  subject: 'data state',
  initial: [DataState.NDMP_DATA_STATE_IDLE],
  stateName: (words) => dataStateName(Atomics.load(words, DATA_WORD_STATE)),
  states: ['IDLE', 'LISTEN', 'CONNECTED', 'ACTIVE', 'HALTED'],
  // DATA_GET_STATE is allowed in every state, so it has no rule.
  rules: rulesOf([
    [M.DATA_LISTEN, { allow: ['IDLE'] }],
    [M.DATA_CONNECT, { allow: ['IDLE'] }],
    // An operation starts on an established data connection (docs/protocol.md §7.1, draft §3.5).
    [M.DATA_START_BACKUP, { allow: ['CONNECTED'] }],
    [M.DATA_START_RECOVER, { allow: ['CONNECTED'] }],
    [M.DATA_START_RECOVER_FILEHIST, { allow: ['CONNECTED'] }],
    [M.DATA_ABORT, { allow: ['LISTEN', 'CONNECTED', 'ACTIVE'] }],
    [M.DATA_STOP, { allow: ['HALTED'] }],
    // The environment exists once an operation has started, until DATA_STOP resets it.
    [M.DATA_GET_ENV, { allow: ['ACTIVE', 'HALTED'] }],
  ]),
};
