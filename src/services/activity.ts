// Whether a session holds a device: a tape or the changer open, or a mover or
// data service out of IDLE. Read from the state words the session's threads publish
// (state-table.ts), so nothing is booked twice: the listener's slot reserve
// and the idle timeout (server/listener.ts) ask this at the moment they decide.

import { DataState, MoverState } from '../wire/index.js';
import { dataWordsOf } from './data/client.js';
import { DATA_WORD_STATE } from './data/state-rules.js';
import type { Session } from './session.js';
import { holdsChanger } from './scsi/client.js';
import { driveWordsOf } from './tape/client.js';
import { DRIVE_WORD_MOVER_STATE, DRIVE_WORD_TAPE, TapeWord } from './tape/state-rules.js';

/** Which of the session's services hold something right now (empty: the session is idle). */
export function devicesHeld(s: Session): ('data' | 'mover' | 'tape' | 'changer')[] {
  const held: ('data' | 'mover' | 'tape' | 'changer')[] = [];
  const data = dataWordsOf(s);
  const drive = driveWordsOf(s);
  if (Atomics.load(data, DATA_WORD_STATE) !== DataState.NDMP_DATA_STATE_IDLE) held.push('data');
  if (Atomics.load(drive, DRIVE_WORD_MOVER_STATE) !== MoverState.NDMP_MOVER_STATE_IDLE) held.push('mover');
  if (Atomics.load(drive, DRIVE_WORD_TAPE) !== TapeWord.CLOSED) held.push('tape');
  // A DMA's robot connection sits idle between moves for a whole backup: it holds the changer.
  if (holdsChanger(s)) held.push('changer');
  return held;
}

export function holdsDevice(s: Session): boolean {
  return devicesHeld(s).length > 0;
}
