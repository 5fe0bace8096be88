// Messages between the main thread and a session's drive thread. The main
// thread decodes NDMP and runs the dispatch table; the drive thread owns the
// open tape and the mover, so tape I/O and the mover's data connection never
// touch the main thread. Requests carry NDMP's own request bodies; replies
// carry NDMP reply bodies or an NDMP error code.

import type { Addr, MoverGetStateReply, NdmpVersion, TapeGetStateReply } from '../../wire/index.js';
import type { TapeImageOptions } from '../../devices/tape-image.js';
import type { PortRange } from '../session.js';

/** Given to the thread at start (workerData). */
export interface DriveThreadConfig {
  readonly sessionId: number;
  readonly version: NdmpVersion;
  readonly dataPorts: PortRange;
  /** Where the DMA reached this server: TCP data connections listen there. */
  readonly localAddress: string;
  /** Overrides localAddress for listening (see ServerContext.dataAddress). */
  readonly dataAddress: string | null;
  /**
   * The mover's state and mode and the tape's state, stored by the thread at
   * every transition and read by the dispatcher (layout: ./state-rules.ts).
   */
  readonly stateWords: SharedArrayBuffer;
  /** The server's tape counters (./counters.ts; ServerObserver.tapeCounters), or null. */
  readonly tapeCounters: SharedArrayBuffer | null;
}

// A type alias, not an interface: RpcOps needs the index signature it implies.
export type DriveOps = {
  tapeOpen: { req: { path: string; mode: number; blankDefaults: TapeImageOptions }; rep: void };
  tapeClose: { req: Record<string, never>; rep: void };
  tapeGetState: { req: Record<string, never>; rep: Omit<TapeGetStateReply, 'error'> };
  tapeMtio: { req: { tapeOp: number; count: number }; rep: { residCount: number } };
  /** `data` is a transferred buffer. */
  tapeWrite: { req: { data: Uint8Array }; rep: { count: number } };
  tapeRead: { req: { count: number }; rep: { dataIn: Uint8Array } };

  moverGetState: { req: Record<string, never>; rep: Omit<MoverGetStateReply, 'error'> };
  moverListen: { req: { mode: number; addrType: number }; rep: { connectAddr: Addr } };
  moverConnect: { req: { mode: number; addr: Addr }; rep: void };
  moverSetRecordSize: { req: { len: number }; rep: void };
  moverSetWindow: { req: { offset: bigint; length: bigint }; rep: void };
  moverRead: { req: { offset: bigint; length: bigint }; rep: void };
  moverContinue: { req: Record<string, never>; rep: void };
  /** `reason`: the halt's text when the server aborts (shutting down); absent: the DMA's MOVER_ABORT. */
  moverAbort: { req: { reason?: string }; rep: void };
  moverStop: { req: Record<string, never>; rep: void };
  moverClose: { req: Record<string, never>; rep: void };
  /** LOCAL link: `connectMode` null = our LISTEN(LOCAL) accepts; else MOVER_CONNECT(LOCAL) in that mode. */
  moverAttachLocal: { req: { sab: SharedArrayBuffer; connectMode: number | null }; rep: void };
  moverDetachLocal: { req: Record<string, never>; rep: void };

  /** The session is over: abort the mover, close the tape (writing a pending filemark), exit. */
  shutdown: { req: Record<string, never>; rep: void };
};

/** Things the drive thread tells the main thread without being asked (besides log lines). */
export type DriveEvent =
  | { readonly event: 'mover-paused'; readonly reason: number; readonly seekPosition: bigint }
  | { readonly event: 'mover-halted'; readonly reason: number; readonly text: string }
  /** An error the DMA is told of as LOG_MESSAGE (a record that fails its data CRC). */
  | { readonly event: 'log-message'; readonly text: string };
