// Each session's drive thread, as the main thread holds it: the worker, the
// state words it shares with it, and the library claim on the open tape. The
// record lives in the session registry (../registry.ts), where the admin
// socket lists it and the LOCAL link (../local-link.ts) finds the thread.

import { LogType, M } from '../../wire/index.js';
import type { Session } from '../session.js';
import { newStateWords } from '../state-table.js';
import { recordOf } from '../registry.js';
import type { DriveClient, SessionDrive } from '../registry.js';
import { SessionWorker } from '../worker-rpc.js';
import type { DriveEvent, DriveOps, DriveThreadConfig } from './protocol.js';
import { MOVER_STATE_TABLE } from './state-rules.js';

export type { DriveClient, SessionDrive } from '../registry.js';

/** LOG_MESSAGE ids of the drive threads' messages (free-form, docs/protocol.md §9.4). */
let nextMessageId = 1;
/** The words of a session whose drive thread has not started (yet, or again): mover IDLE, no tape. */
const NOT_STARTED = newStateWords(MOVER_STATE_TABLE);

/** The session's drive state words, read by the dispatcher before a TAPE or MOVER request runs. */
export function driveWordsOf(s: Session): Int32Array {
  return recordOf(s).drive?.words ?? NOT_STARTED;
}

/** The session's drive thread, started on first use and stopped when the connection closes. */
export function driveOf(s: Session): SessionDrive {
  const record = recordOf(s);
  if (record.drive) return record.drive;
  const release = () => {
    created.release?.();
    created.release = null;
    created.driveIndex = null;
  };
  const words = newStateWords(MOVER_STATE_TABLE);
  const config: DriveThreadConfig = {
    sessionId: s.id,
    version: s.version,
    dataPorts: s.ctx.dataPorts ?? { low: 0, high: 0 },
    localAddress: s.localAddress,
    dataAddress: s.ctx.dataAddress ?? null,
    stateWords: words.buffer as SharedArrayBuffer,
    tapeCounters: s.ctx.observer?.tapeCounters ?? null,
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
          record.moverHalts++;
          return;
        case 'log-message':
          s.post(M.LOG_MESSAGE, {
            logType: LogType.NDMP_LOG_ERROR,
            messageId: nextMessageId++,
            entry: e.text,
            associatedMessageValid: 0,
            associatedMessageSequence: 0,
          });
          return;
      }
    },
    () => {
      // The thread died under us: its tape and mover are gone. Free the
      // device and start afresh (IDLE, no tape) on the next request.
      release();
      if (record.drive === created) record.drive = null;
    },
  );
  const created: SessionDrive = { drive, words, release: null, driveIndex: null };
  record.drive = created;
  s.onClose(() => drive.shutdown().finally(release));
  return created;
}
