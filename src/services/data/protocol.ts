// Messages between the main thread and a session's data thread: NDMP DATA
// request bodies in, reply bodies or NDMP errors out, and the data service's
// notifications as events. See ../worker-rpc.ts for the transport.

import type { Addr, NdmpVersion, NlistName, Pval } from '../../wire/index.js';
import type { PortRange } from '../session.js';
import type { HistoryChannel } from '../../history/control.js';

/** What an operation came to, with NOTIFY_DATA_HALTED: for its last log line and the metrics (src/services/observer.ts). */
export interface HaltFigures {
  readonly operation: 'backup' | 'recover' | 'replay';
  readonly bytes: number;
  /** Entries backed up or restored (0 when the operation failed before it could say). */
  readonly files: number;
  readonly durationMs: number;
}

/** Given to the thread at start (workerData). */
export interface DataThreadConfig {
  readonly sessionId: number;
  readonly version: NdmpVersion;
  readonly dataPorts: PortRange;
  readonly localAddress: string;
  readonly dataAddress: string | null;
  /**
   * One Int32 the main thread sets on DATA_ABORT before the request reaches
   * the thread, so a running backup sees it between records without waiting
   * for its event loop (docs/design.md: an abort lands within one record).
   */
  readonly abortFlag: SharedArrayBuffer;
  /**
   * The data state, stored by the thread at every transition and read by the
   * dispatcher (layout: ./state-rules.ts), so the main thread knows the state
   * without asking.
   */
  readonly stateWords: SharedArrayBuffer;
  /** Incremental backups' dumpdates and snapshots live here (null: only full backups). */
  readonly stateDir: string | null;
  /** The exported trees: a backup's FILESYSTEM must lie inside one. */
  readonly exports: readonly { readonly name: string; readonly path: string }[];
  /**
   * RESTORE_SPECIAL when a recover's environment does not set it (the
   * server's `[restore] special`): device nodes, fifos and setuid/setgid bits
   * restored as stored. Absent: false.
   */
  readonly restoreSpecial?: boolean;
}

export interface DataState {
  unsupported: number;
  operation: number;
  state: number;
  haltReason: number;
  bytesProcessed: bigint;
  estBytesRemain: bigint;
  estTimeRemain: number;
  dataConnectionAddr: Addr;
  readOffset: bigint;
  readLength: bigint;
}

// A type alias, not an interface: RpcOps needs the index signature it implies.
export type DataOps = {
  dataGetState: { req: Record<string, never>; rep: DataState };
  dataListen: { req: { addrType: number }; rep: { connectAddr: Addr } };
  dataConnect: { req: { addr: Addr }; rep: void };
  /** `reason`: the halt's text when the server aborts (shutting down); absent: the DMA's DATA_ABORT. */
  dataAbort: { req: { reason?: string }; rep: void };
  dataStop: { req: Record<string, never>; rep: void };
  dataGetEnv: { req: Record<string, never>; rep: { env: Pval[] } };
  /** `history`: where the backup's file history goes (null: the server offers none). */
  dataStartBackup: { req: { butypeName: string; env: Pval[]; history: HistoryChannel | null }; rep: void };
  /** DATA_START_RECOVER, or with `fileHistory` DATA_START_RECOVER_FILEHIST (history goes to `history`). */
  dataStartRecover: {
    req: {
      env: Pval[];
      nlist: NlistName[];
      butypeName: string;
      fileHistory: boolean;
      history: HistoryChannel | null;
    };
    rep: void;
  };
  /** LOCAL link: `listening` = our LISTEN(LOCAL) accepts the mover; else DATA_CONNECT(LOCAL). */
  dataAttachLocal: { req: { sab: SharedArrayBuffer; listening: boolean }; rep: void };
  dataDetachLocal: { req: Record<string, never>; rep: void };
  /** The session is over: abort whatever runs, close the data connection, exit. */
  /** `why`: why the control connection ended ('peer closed' when the DMA went away). */
  shutdown: { req: { why?: string | null }; rep: void };
};

export type DataEvent =
  | {
      readonly event: 'data-halted';
      readonly reason: number;
      readonly text: string;
      /** What the operation came to (./data-service.ts HaltFigures): its last log line and the metrics. */
      readonly figures: HaltFigures;
    }
  /** A LOG_MESSAGE for the DMA (per-file trouble during a backup, say). */
  | { readonly event: 'log-message'; readonly logType: number; readonly text: string }
  /** Lockstep history: one encoded FH message for the main thread to write (transferred). */
  | { readonly event: 'fh'; readonly message: ArrayBuffer }
  /** NOTIFY_DATA_READ for the DMA. */
  | { readonly event: 'data-read'; readonly offset: bigint; readonly length: bigint }
  /** LOG_FILE for the DMA (a v4 recovery status; the codec writes v3's error). */
  | { readonly event: 'log-file'; readonly name: string; readonly recoveryStatus: number };
