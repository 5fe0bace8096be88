// What a session holds of the SCSI service: the changer claim, the SCSI
// nexus (pending sense) and the target a v3 DMA set, kept in the session's
// record (../registry.ts). Apart from the handlers so the tape service and
// the slot accounting (../activity.ts) can ask whether a session holds the
// changer without importing them.

import { newNexus } from '../../devices/smc/index.js';
import type { Session } from '../session.js';
import { recordOf } from '../registry.js';
import type { ScsiSession } from '../registry.js';
import { newStateWords } from '../state-table.js';
import { driveWordsOf } from '../tape/client.js';
import { DRIVE_WORD_TAPE, TapeWord } from '../tape/state-rules.js';
import { SCSI_STATE_TABLE, SCSI_WORD_OPEN, SCSI_WORD_TAPE_OPEN } from './state-rules.js';

export type { ScsiSession } from '../registry.js';

/** The session's SCSI state, made on first use; its changer is given back when the connection closes. */
export function scsiOf(s: Session): ScsiSession {
  const record = recordOf(s);
  let st = record.scsi;
  if (st) return st;
  st = {
    words: newStateWords(SCSI_STATE_TABLE),
    nexus: newNexus(),
    release: null,
    target: { controller: 0, id: 0, lun: 0 },
  };
  record.scsi = st;
  const created = st;
  // ndmjob never sends SCSI_CLOSE: the end of the connection closes the changer (docs/smc.md §6).
  s.onClose(() => closeScsi(created));
  return st;
}

export function closeScsi(st: ScsiSession): void {
  st.release?.();
  st.release = null;
  Atomics.store(st.words, SCSI_WORD_OPEN, 0);
}

/** The words the SCSI state table reads: the changer's, and whether a tape is open on this connection. */
export function scsiWordsOf(s: Session): Int32Array {
  const w = scsiOf(s).words;
  Atomics.store(
    w,
    SCSI_WORD_TAPE_OPEN,
    Atomics.load(driveWordsOf(s), DRIVE_WORD_TAPE) !== TapeWord.CLOSED ? 1 : 0,
  );
  return w;
}

/** The session has the changer open. */
export function holdsChanger(s: Session): boolean {
  const st = recordOf(s).scsi;
  return st !== null && Atomics.load(st.words, SCSI_WORD_OPEN) !== 0;
}
