// A running DATA_START_BACKUP on the data thread (docs/protocol.md §9.1): the
// engine that walks the tree and encodes the stream (backup/engine.ts), the
// reader thread that puts a LOCAL backup's file data into the ring to the
// mover (backup/pipe.ts, ./reader-host.ts), the file history it feeds
// (docs/history.md), and the stream sinks it writes to. The data service
// (./data-service.ts) keeps the state machine: it checks the request, starts
// this, and halts with what it comes to, as it does with ./recovery.ts.

import type net from 'node:net';
import { BackupEngine } from '../../backup/engine.js';
import type { BackedUpEntry, BackupResult, ListedName, StreamSink } from '../../backup/engine.js';
import { commitIncremental } from '../../backup/incremental.js';
import type { IncrementalPlan } from '../../backup/incremental.js';
import { StreamBroken } from '../../backup/pipe.js';
import type { HistoryChannel } from '../../history/control.js';
import type { HistoryProducer } from '../../history/producer.js';
import { FLAG_NODE, HistoryModel, RecordWriter } from '../../history/record.js';
import type { SpscRing } from '../../ring/spsc-ring.js';
import { CodedError } from '../../util/coded-error.js';
import { DataHaltReason } from '../../wire/index.js';
import type { Pval } from '../../wire/index.js';
import type { BackupPlan } from './backup-plan.js';
import type { ReaderHost } from './reader-host.js';

export interface BackupOperationHooks {
  /** DATA_ABORT, or the data service halting: polled between files and between buffers. */
  aborted(): boolean;
  /** Per-file trouble: for LOG_MESSAGE and the log. */
  warn(text: string): void;
  log(level: 'info' | 'warn', msg: string, fields?: Record<string, unknown>): void;
}

/** What a backup operation is given to run. */
export interface BackupWiring {
  readonly plan: BackupPlan;
  /** The incremental it is (./backup-plan.ts, planBackupLevel); null: a full backup, not recorded. */
  readonly incremental: IncrementalPlan | null;
  /** Incremental backups' dumpdates live here (DataThreadConfig.stateDir). */
  readonly stateDir: string | null;
  readonly sink: StreamSink;
  /** LOCAL: the ring to this session's mover, which a reader thread then fills; null on TCP. */
  readonly ring: SharedArrayBuffer | null;
  readonly reader: ReaderHost;
  /** The backup's file history, started by the data service; null if the DMA asked for none. */
  readonly history: HistoryProducer | null;
  readonly channel: HistoryChannel | null;
}

export class BackupOperation {
  private readonly engine: BackupEngine;
  private readonly incremental: IncrementalPlan | null;
  private readonly stateDir: string | null;

  constructor(
    w: BackupWiring,
    private readonly hooks: BackupOperationHooks,
  ) {
    const { plan, incremental, sink, history, channel } = w;
    this.incremental = incremental;
    this.stateDir = w.stateDir;
    const writer = new RecordWriter();
    // LOCAL backups stream through a reader thread (backup/pipe.ts), which then
    // also appends the history; lockstep history stays on this thread, like the classic servers.
    const pipe =
      w.ring && channel?.mode !== 'lockstep' ? w.reader.start(w.ring, history ? channel : null) : null;
    const tooLong = (name: string): void =>
      hooks.log('warn', 'name too long for file history; left out of it', { name });
    /** A directory's names: into the history ring, or through the reader to keep their order. */
    const dirent = (rec: Uint8Array | null, name: string): void | Promise<void> => {
      if (!rec) tooLong(name);
      else if (pipe) return pipe.history(rec);
      else history!.write(rec);
    };
    const entryRecord = (e: BackedUpEntry): Uint8Array | null => {
      const rec = writer.entry(e.path, e.stat, e.node, e.headerOffset, e.type === 'hardlink' ? 0 : FLAG_NODE);
      if (!rec) tooLong(e.path);
      return rec;
    };
    this.engine = new BackupEngine(
      incremental ? { ...plan, incremental } : plan,
      sink,
      {
        aborted: () => hooks.aborted() || (history !== null && history.failure() !== 0),
        warn: (text) => hooks.warn(text),
        ...(history &&
          (pipe
            ? { record: entryRecord }
            : {
                entry: (e: BackedUpEntry) => {
                  const rec = entryRecord(e);
                  if (rec) history.write(rec);
                },
              })),
        ...(history &&
          plan.model === HistoryModel.DIRNODE && {
            directory: async (node: bigint, parent: bigint, names: readonly ListedName[], dots: boolean) => {
              if (dots) {
                await dirent(writer.dirent('.', node, node), '.');
                await dirent(writer.dirent('..', parent, node), '..');
              }
              for (const n of names) await dirent(writer.dirent(n.name, n.node, node), n.name);
            },
          }),
      },
      pipe,
    );
    if (incremental?.warning) hooks.warn(incremental.warning);
    hooks.log('info', 'backup started', {
      root: plan.root,
      // Not `level`: that is the log line's own (pino's), which a field of that name overwrites.
      backupLevel: incremental?.level ?? 0,
      since: incremental?.since != null ? String(incremental.since) : undefined,
      files: plan.files,
      excludes: plan.excludes,
      history: ['none', 'path', 'dir/node'][plan.model],
      historyMode: channel?.mode,
    });
  }

  /** Stream bytes produced so far (DATA_GET_STATE's bytes_processed). */
  get bytesProcessed(): bigint {
    return this.engine.bytesProcessed;
  }

  /** DATA_GET_STATE's est_bytes_remain, or null without an estimate. */
  estimateRemaining(): bigint | null {
    return this.engine.estimateRemaining();
  }

  /** Walks, encodes and streams the backup, to the end of the stream (or the abort). */
  run(): Promise<BackupResult> {
    return this.engine.run();
  }

  /**
   * A completed backup goes into the dumpdates: the variables (DUMP_DATE) that
   * DATA_GET_ENV then says. None for a full backup without a state dir, or when
   * recording failed (a warning says so: the backup itself is whole).
   */
  record(): Pval[] {
    if (!this.incremental) return [];
    const snapshot = this.engine.snapshot();
    if (!snapshot) return [];
    try {
      return commitIncremental(this.incremental, snapshot, this.stateDir!);
    } catch (e) {
      const text = `the backup completed but was not recorded for incrementals: ${(e as Error).message}`;
      this.hooks.warn(text);
      return [];
    }
  }
}

/** NOTIFY_DATA_HALTED's text for a backup that ran to its end. */
export function completedText(r: BackupResult): string {
  const what = `${r.entries} entries, ${r.bytes} bytes`;
  return r.warnings === 0
    ? `backup completed: ${what}`
    : `backup completed with warnings (${r.warnings}): ${what}`;
}

/** The halt a backup that failed with `e` comes to: a failed write to the data connection is the mover's side going away. */
export function failedHalt(e: unknown): { reason: number; text: string } {
  const err = e as NodeJS.ErrnoException;
  const reason =
    err instanceof SinkError || err instanceof StreamBroken
      ? DataHaltReason.NDMP_DATA_HALT_CONNECT_ERROR
      : DataHaltReason.NDMP_DATA_HALT_INTERNAL_ERROR;
  return { reason, text: `backup failed: ${err.message}` };
}

/** The data connection failed while the backup wrote to it. */
class SinkError extends CodedError {
  readonly code = 'DATA_CONNECTION_FAILED';
}

/** The stream onto a TCP data connection: one write in flight; its callback frees the buffer. */
export function socketSink(sock: net.Socket): StreamSink {
  return {
    write: (chunk) =>
      new Promise<void>((resolve, reject) => {
        if (sock.destroyed) {
          reject(new SinkError('the data connection is closed'));
          return;
        }
        sock.write(chunk, (err) => (err ? reject(new SinkError(err.message)) : resolve()));
      }),
    end: () => new Promise<void>((resolve) => sock.end(() => resolve())),
  };
}

/** Slices of a buffer put into the ring between two looks at the abort flag: about a tape record. */
const RING_SLICE = 16 * 1024;

/**
 * The stream into the byte ring to this session's mover; waits for space
 * without blocking the thread. A DATA_ABORT stops it within one slice.
 */
export function ringSink(ring: SpscRing, aborted: () => boolean): StreamSink {
  return {
    write: async (chunk) => {
      for (let off = 0; off < chunk.length;) {
        if (ring.aborted) throw new SinkError('the mover closed the data connection');
        if (aborted()) return;
        const n = ring.writeSome(chunk.subarray(off, off + RING_SLICE));
        off += n;
        if (off < chunk.length && n === 0) await ring.waitSpaceAsync(1000);
      }
    },
    end: async () => {
      ring.close();
      // Done once the mover has taken everything (or gone away). A LOCAL backup's
      // reader thread, not this one, wrote the ring: this side's producer view is
      // stale, so waitSpaceAsync may return at once. A timer between looks keeps
      // the thread's event loop turning (DATA_GET_STATE and DATA_ABORT answered)
      // while a paused mover (end of tape) waits for its next tape.
      while (ring.used > 0 && !ring.aborted) {
        await ring.waitSpaceAsync(1000, ring.capacity);
        if (ring.used > 0) await new Promise((r) => setTimeout(r, 20));
      }
      // Bytes left in the ring never reached the tape: the backup is not whole.
      if (ring.aborted && ring.used > 0) throw new SinkError('the mover closed the data connection');
    },
  };
}
