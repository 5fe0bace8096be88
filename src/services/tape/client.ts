// The main thread's side of a session's drive thread: starts it on first use,
// sends requests and turns its answers back into replies or NdmpErrors, and
// posts the mover's notifications on the session's control connection.

import { Worker } from 'node:worker_threads';
import { ErrorCode, M, NdmpError } from '../../wire/index.js';
import type { Session } from '../session.js';
import type {
  DriveEvent,
  DriveOp,
  DriveOps,
  DriveReply,
  DriveRequest,
  DriveThreadConfig,
} from './protocol.js';
import { isDriveReply } from './protocol.js';

/** How long a closing session waits for its drive thread to close the tape before it is stopped. */
const SHUTDOWN_GRACE_MS = 5000;

export class DriveClient {
  private readonly worker: Worker;
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private exited = false;
  private stopping = false;

  /** `onCrash` runs if the thread ends without being asked to (a bug; logged). */
  constructor(
    private readonly session: Session,
    config: DriveThreadConfig,
    onCrash: () => void,
  ) {
    this.worker = new Worker(new URL('./thread.js', import.meta.url), { workerData: config });
    this.worker.on('message', (m: DriveReply | DriveEvent) => this.onMessage(m));
    this.worker.on('error', (e) => session.log.error({ err: e }, 'drive thread crashed'));
    this.worker.on('exit', (code) => {
      this.exited = true;
      for (const p of this.pending.values()) {
        p.reject(new NdmpError(ErrorCode.NDMP_UNDEFINED_ERR, `the drive thread ended (exit ${code})`));
      }
      this.pending.clear();
      if (!this.stopping) {
        session.log.error({ code }, 'drive thread ended unexpectedly; its tape and mover are closed');
        onCrash();
      }
    });
  }

  call<K extends DriveOp>(
    op: K,
    req: DriveOps[K]['req'],
    transfer: ArrayBuffer[] = [],
  ): Promise<DriveOps[K]['rep']> {
    if (this.exited) return Promise.reject(new Error('the drive thread has exited'));
    const id = this.nextId++;
    const msg: DriveRequest<K> = { id, op, req };
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.worker.postMessage(msg, transfer);
    });
  }

  /** Closes the tape (with its pending filemark) and ends the thread. */
  async shutdown(): Promise<void> {
    if (this.exited) return;
    this.stopping = true;
    const timer = setTimeout(() => void this.worker.terminate(), SHUTDOWN_GRACE_MS);
    try {
      await this.call('shutdown', {});
    } catch (e) {
      this.session.log.warn({ err: (e as Error).message }, 'drive thread did not shut down cleanly');
    } finally {
      clearTimeout(timer);
      await this.worker.terminate();
    }
  }

  private onMessage(m: DriveReply | DriveEvent): void {
    if (isDriveReply(m)) {
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      if (m.ok) p.resolve(m.rep);
      else p.reject(new NdmpError(m.ndmpError, m.message.replace(/^NDMP_[A-Z0-9_]+: /, ''), 'body', m.reply));
      return;
    }
    switch (m.event) {
      case 'mover-paused':
        this.session.post(M.NOTIFY_MOVER_PAUSED, { reason: m.reason, seekPosition: m.seekPosition });
        return;
      case 'mover-halted':
        this.session.post(M.NOTIFY_MOVER_HALTED, { reason: m.reason, textReason: m.text });
        return;
      case 'log':
        this.session.log[m.level]({ ...m.fields, drive: true }, m.msg);
        return;
    }
  }
}
