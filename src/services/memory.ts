// Memory that comes back: every session runs in threads of its own (a data
// thread, a drive thread, a reader thread), and glibc's malloc keeps what
// ended threads freed in its arenas unless asked to give it back. ndmpd caps
// the arenas and fixes the mmap threshold at start (tuneMalloc), and after
// session threads have ended it trims malloc's free pages (trimMalloc), so an
// idle server returns near its starting size. docs/memory.md has the figures.

import { trimMalloc, tuneMalloc } from '../util/native-fs.js';
import type { Logger } from '../util/log.js';
import { SessionWorker } from './worker-rpc.js';

/** How often the trimmer looks whether session threads have ended since its last trim. */
export const TRIM_INTERVAL_MS = 10_000;

export interface MemoryReturn {
  /** Whether every session thread that has ended was followed by a trim. */
  readonly settled: boolean;
  stop(): void;
}

/**
 * Tunes malloc (unless the environment does) and starts the trimmer. Call it
 * first thing: the arena cap applies to arenas made after it.
 */
export function returnMemory(log: Logger, intervalMs = TRIM_INTERVAL_MS): MemoryReturn {
  const tuned = tuneMalloc();
  if (tuned) log.debug({ malloc: tuned }, 'malloc tuned for session threads');
  else log.debug('malloc not tuned (not glibc, or the native addon is missing)');
  let trimmedAfter = SessionWorker.ended;
  const timer = setInterval(() => {
    const ended = SessionWorker.ended;
    if (ended === trimmedAfter) return;
    trimmedAfter = ended;
    trimMalloc();
  }, intervalMs);
  // The trimmer never keeps a server alive that would otherwise exit.
  timer.unref();
  return {
    get settled() {
      return SessionWorker.ended === trimmedAfter;
    },
    stop: () => clearInterval(timer),
  };
}
