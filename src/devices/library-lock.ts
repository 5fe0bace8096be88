// The one owner of a library's moves (docs/changer.md §2): an
// exclusive flock on DIR/.lock. The running server holds it for its whole
// life; `ndmpd tape` takes it for one command, and when a server holds it,
// refuses whatever would move or change tapes, naming the server's pid. The
// kernel drops a flock when its holder exits or crashes, so there is never a
// stale lock to clean up; the pid in the file is only for the message.

import { closeSync, ftruncateSync, openSync, readFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { CodedError } from '../util/coded-error.js';
import { tryLockExclusive } from '../util/native-fs.js';

export const LOCK_FILE = '.lock';

/** Another process owns the library's moves. */
export class LibraryLockedError extends CodedError {
  readonly code = 'NDMPD_LIBRARY_LOCKED';
  constructor(
    readonly dir: string,
    /** The holder's pid as it wrote it, or null when the file does not say. */
    readonly holderPid: number | null,
    message: string,
  ) {
    super(message);
    this.name = 'LibraryLockedError';
  }
}

export interface LibraryLock {
  readonly dir: string;
  /** Gives the lock back (closes the file); idempotent. */
  release(): void;
}

/**
 * Takes the lock on library folder `dir` (already created), or throws
 * LibraryLockedError when another open file holds it: another process, or
 * another lock of this process on the same folder.
 */
export function lockLibrary(dir: string, who: string): LibraryLock {
  const path = join(dir, LOCK_FILE);
  const fd = openSync(path, 'a+', 0o640);
  let held: boolean;
  try {
    held = tryLockExclusive(fd);
  } catch (e) {
    closeSync(fd);
    throw e;
  }
  if (!held) {
    closeSync(fd);
    const pid = holderPid(path);
    throw new LibraryLockedError(
      dir,
      pid,
      `the library ${dir} is in use by ${pid !== null ? `a running ndmpd (pid ${pid})` : 'another process'}`,
    );
  }
  ftruncateSync(fd, 0);
  writeSync(fd, `${process.pid} ${who}\n`);
  let released = false;
  return {
    dir,
    release() {
      if (released) return;
      released = true;
      closeSync(fd);
    },
  };
}

function holderPid(path: string): number | null {
  try {
    const m = /^(\d+)/.exec(readFileSync(path, 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}
