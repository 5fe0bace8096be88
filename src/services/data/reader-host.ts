// The data thread's side of the reader thread that streams a LOCAL backup's
// file data into the ring to the mover while the engine walks (backup/pipe.ts,
// backup/reader-thread.ts). One per session: started by its first pipelined
// backup, kept for the next, stopped when the session ends (DataService.shutdown
// in ./data-service.ts calls stop()).

import { Worker } from 'node:worker_threads';
import { C_DONE, C_FAILED, FilePipe, ReaderStop } from '../../backup/pipe.js';
import type { FromReader, ToReader } from '../../backup/reader-thread.js';
import type { HistoryChannel } from '../../history/control.js';

/** How long shutdown waits for a reader thread that is still starting (see STARTUP_BOUND_MS in worker-rpc.ts). */
const READER_STARTUP_BOUND_MS = 60_000;

export interface ReaderHostHooks {
  /** A file's trouble the reader met (a file that shrank, say): for LOG_MESSAGE and the log. */
  warn(text: string): void;
  /** The thread itself failed. */
  failed(err: Error): void;
}

export class ReaderHost {
  private reader: Worker | null = null;
  /** Settles once the reader thread has loaded its modules (or ended). */
  private readerReady: Promise<unknown> = Promise.resolve();
  /** The control block of the reader's current job (pipe.ts). */
  private pipeControl: SharedArrayBuffer | null = null;

  constructor(
    /** The data service's abort flag (DataThreadConfig.abortFlag), which the reader polls too. */
    private readonly abortFlag: SharedArrayBuffer,
    private readonly hooks: ReaderHostHooks,
  ) {}

  /** Hands a pipelined backup to the reader thread (started on first use). */
  start(out: SharedArrayBuffer, history: HistoryChannel | null): FilePipe {
    if (!this.reader) {
      const reader = new Worker(new URL('../../backup/reader-thread.js', import.meta.url));
      this.readerReady = new Promise((r) => {
        reader.on('message', (m: FromReader) => 'ready' in m && r(undefined));
        reader.once('exit', r);
      });
      reader.on('message', (m: FromReader) => {
        if ('warn' in m) this.hooks.warn(m.warn);
      });
      reader.on('error', (e) => this.hooks.failed(e));
      reader.on('exit', () => {
        if (this.reader === reader) this.reader = null;
        // A backup it was streaming must not wait for it for ever: its walker sees it failed.
        if (this.pipeControl) {
          const words = new Int32Array(this.pipeControl);
          if (Atomics.load(words, C_DONE) === 0) {
            Atomics.store(words, C_FAILED, ReaderStop.ERROR);
            Atomics.store(words, C_DONE, 1);
            Atomics.notify(words, C_DONE);
          }
        }
      });
      this.reader = reader;
    }
    const { work, control } = FilePipe.allocate();
    const job = { work, out, control, abortFlag: this.abortFlag, history };
    this.pipeControl = control;
    this.reader.postMessage({ job } satisfies ToReader);
    return new FilePipe(job);
  }

  /**
   * The session ends: the thread goes, once it has loaded its modules (stopped
   * while loading them, a thread leaks descriptors: worker-rpc.ts, STARTUP_BOUND_MS).
   */
  async stop(): Promise<void> {
    let startup: NodeJS.Timeout | undefined;
    await Promise.race([
      this.readerReady,
      new Promise((r) => (startup = setTimeout(r, READER_STARTUP_BOUND_MS))),
    ]);
    clearTimeout(startup);
    await this.reader?.terminate();
    this.reader = null;
  }
}
