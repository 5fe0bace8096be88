// A control connection's file history on its way to the socket (docs/history.md,
// "On the DMA's socket"). Replies and posts go to the socket at once; history
// waits here and goes out only while little of it sits ahead of them:
//
// - in Node: one message at a time, and only once the socket's buffer is empty;
// - in this kernel: TCP_NOTSENT_LOWAT (set by the connection) keeps what it
//   holds unsent small;
// - in the DMA's kernel: the DMA's advertised window (TCP_INFO) shrinks by
//   what sits unread in its receive buffer. History is written while that
//   backlog, as the window shows it, plus the bytes not yet acknowledged, stays
//   under PEER_BYTES; a DMA that shows a backlog gets a message in slices as
//   the window opens, one that keeps up gets it whole. A window that did not change
//   may be stale (a receiver announces reading only when its window doubles),
//   so while held back a small slice goes every PROBE_MS: its acknowledgement
//   carries the window as it is now.
//
// So a DMA that reads history slowly gets NOTIFY_MOVER_HALTED and its replies
// after about PEER_BYTES plus one message, not after megabytes of history.
//
// A message begun is finished before any other output (records do not
// interleave): `beforeOutput`. Its sequence number is given as its first bytes
// are written. The queue is bounded by the history credit (docs/history.md,
// "The history thread"): the history thread hands over no more than that
// before writes complete.
//
// `after` is how a post waits behind history: it goes only once every history
// message queued before it has been handed to the socket. Which posts do so is
// decided in one place, connection.ts's AFTER_HISTORY (NOTIFY_DATA_HALTED: no
// FH post may follow it, docs/protocol.md §8.6).

import type { TcpSendState } from '../util/native-fs.js';

/** What this needs of the connection's socket. */
export interface HistorySocket {
  readonly writableLength: number;
  write(chunk: Uint8Array, cb: (err?: Error | null) => void): boolean;
}

/**
 * History the DMA's receive buffer may hold unread (by its window) before more
 * waits: more than a message (128 KiB), so a DMA that takes one post at a time
 * has the next one whole while it works; little enough that a post behind it
 * waits for about two (bench/history-handoff.ts: 97–120 ms at 36 ms per post;
 * 256 KiB gave 90–160 ms and no shorter job).
 */
export const PEER_BYTES = 160 * 1024;
/** Less room than this is no room: history goes in slices worth a system call. */
const MIN_SLICE = 32 * 1024;
/**
 * While history is held back, a slice this big goes out for a fresh window:
 * first after PROBE_MIN_MS, then after twice as long each time the window
 * shows the DMA still behind, up to PROBE_MS. A DMA that reads as fast as
 * history comes shows a stale window (its kernel does not announce the room
 * it makes by reading), and waiting 10 ms for each look held a fast DMA's
 * history to about two messages per 10 ms, behind the backup (docs/history.md,
 * "On the DMA's socket").
 */
const PROBE_BYTES = 256;
const PROBE_MIN_MS = 2;
const PROBE_MS = 10;
/**
 * Held back this long with the window exactly as it was (the DMA takes what
 * the probes send, yet its window stays below the largest seen), the largest
 * is taken to be stale: the DMA's receive buffer shrank. The window seen now
 * becomes the reference, so a stale one slows history, never stops it. A DMA
 * that reads nothing shows a window shrinking by the probes; one that reads
 * slowly, a window that moves.
 */
const RESET_MS = 1000;
/** How soon the queue looks again when only acknowledgements hold history back. */
const ACK_MS = 1;
/** How soon the queue looks again when the socket's buffer holds output it was not told of. */
const RETRY_MS = 2;

type Held =
  | { readonly message: Uint8Array; readonly done: (err?: Error) => void; readonly post?: undefined }
  | { readonly post: () => void; readonly message?: undefined; readonly done?: undefined };

/** A message partly written. */
interface Begun {
  readonly message: Uint8Array;
  readonly done: (err?: Error) => void;
  offset: number;
  settled: boolean;
}

export class HistoryOutput {
  private readonly held: Held[] = [];
  private current: Begun | null = null;
  /** History writes in the socket's own buffer (their callbacks have not come). */
  private writes = 0;
  private closed = false;
  private timer: NodeJS.Timeout | null = null;
  /** The largest window the DMA has advertised: its receive buffer as good as empty. */
  private windowRef = 0;
  /** Since when history is held back for the DMA's window (0: it is not), and the window then. */
  private heldSince = 0;
  private windowAtHold = 0;
  /** The window at the last look, and whether it had moved since the one before: then no probe is needed. */
  private lastWindow = -1;
  private moved = false;
  /** At the last look the DMA's window was at its largest: it reads as fast as history comes. */
  private keepingUp = true;
  /** How long the next probe waits (PROBE_MIN_MS after a hold that ended, doubling while one lasts). */
  private probeMs = PROBE_MIN_MS;
  /** Bytes of history waiting here. */
  heldBytes = 0;
  /** Times a slice went to learn the DMA's window (for the counters of a test or a benchmark). */
  probes = 0;
  /** Re-runs the queue; given as the write callback of output that went out while history waited. */
  readonly kick = (): void => this.pump();

  constructor(
    private readonly socket: HistorySocket,
    /** Fills in the message's sequence number and time stamp, as it is written (not before). */
    private readonly stamp: (message: Uint8Array) => void,
    /** The kernel's view of the connection (TCP_INFO), or null where it cannot say: no pacing by the window. */
    private readonly sendState: () => TcpSendState | null = () => null,
  ) {}

  /** History waits here (the connection's other output should then call `kick` once written). */
  get waiting(): boolean {
    return this.held.length > 0 || this.current !== null;
  }

  /** One complete history message: written after those before it, while the DMA keeps up. */
  add(message: Uint8Array, done: (err?: Error) => void): void {
    if (this.closed) {
      done(new Error('the connection is closed'));
      return;
    }
    this.held.push({ message, done });
    this.heldBytes += message.byteLength;
    this.pump();
  }

  /** A post that must not overtake history (NOTIFY_DATA_HALTED): `write` runs after everything queued so far. */
  after(write: () => void): void {
    if (!this.waiting) write();
    else this.held.push({ post: write });
  }

  /** Other output is about to be written: a message begun goes out whole first. */
  beforeOutput(): void {
    if (this.current) this.writeSlice(Infinity);
  }

  /** The connection closed: waiting history fails (its credit comes back as failed), waiting posts are dropped. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const err = new Error('the connection is closed');
    const c = this.current;
    this.current = null;
    if (c && !c.settled) {
      c.settled = true;
      c.done(err);
    }
    for (const h of this.held.splice(0)) h.done?.(err);
    this.heldBytes = 0;
  }

  private pump(): void {
    while (!this.closed) {
      if (!this.current) {
        const h = this.held[0];
        if (!h) return;
        if (h.post) {
          this.held.shift();
          h.post();
          continue;
        }
      }
      if (this.writes > 0) return;
      if (this.socket.writableLength > 0) {
        // Output that did not bring `kick` along: look again in a moment (a reply is small).
        this.later(RETRY_MS, false);
        return;
      }
      const room = this.room();
      if (room <= 0) {
        // Only acknowledgements outstanding (a DMA that keeps up): they come within a moment.
        if (this.keepingUp) this.later(ACK_MS, false);
        else if (this.later(this.probeMs, true)) this.probeMs = Math.min(PROBE_MS, 2 * this.probeMs);
        return;
      }
      // A DMA that shows no backlog gets the message whole: a lone slice of one segment waits for
      // the receiver's delayed acknowledgement (40 ms) before the next could go.
      this.writeSlice(this.keepingUp ? Infinity : room);
    }
  }

  /** Up to `n` bytes of the message begun, or of the next one (which so begins). */
  private writeSlice(n: number): void {
    let c = this.current;
    if (!c) {
      const h = this.held.shift() as { message: Uint8Array; done: (err?: Error) => void };
      this.heldBytes -= h.message.byteLength;
      this.stamp(h.message);
      c = this.current = { message: h.message, done: h.done, offset: 0, settled: false };
    }
    const begun = c;
    const end = Math.min(begun.message.byteLength, begun.offset + n);
    const chunk = begun.message.subarray(begun.offset, end);
    begun.offset = end;
    const last = end === begun.message.byteLength;
    if (last) this.current = null;
    this.writes++;
    this.socket.write(chunk, (err) => {
      this.writes--;
      if ((err || last) && !begun.settled) {
        begun.settled = true;
        begun.done(err ?? undefined);
      }
      this.pump();
    });
  }

  /** Bytes of history the DMA may be given now (Infinity when the kernel does not say). */
  private room(): number {
    const st = this.sendState();
    if (!st || st.peerWindow === 0xffffffff) {
      this.keepingUp = true;
      return Infinity;
    }
    const w = st.peerWindow;
    if (w > this.windowRef) this.windowRef = w;
    this.moved = w !== this.lastWindow;
    this.lastWindow = w;
    // Unread in the DMA's buffer (its window below the largest), plus what is on its way (or unacknowledged).
    this.keepingUp = this.windowRef - w < MIN_SLICE;
    const room = PEER_BYTES - (this.windowRef - w) - st.unackedBytes;
    if (room >= MIN_SLICE) {
      this.heldSince = 0;
      this.probeMs = PROBE_MIN_MS;
      return room;
    }
    const now = Date.now();
    if (this.heldSince === 0) {
      this.heldSince = now;
      this.windowAtHold = w;
    } else if (w !== this.windowAtHold) {
      this.heldSince = now;
      this.windowAtHold = w;
    } else if (now - this.heldSince >= RESET_MS && st.notsentBytes === 0) {
      this.windowRef = w;
      this.heldSince = 0;
      return PEER_BYTES;
    }
    return 0;
  }

  /**
   * Runs the queue again after `ms`; `probe`: first a small slice, if nothing
   * of ours is unsent. False when a run is already due.
   */
  private later(ms: number, probe: boolean): boolean {
    if (this.timer) return false;
    this.timer = setTimeout(() => {
      this.timer = null;
      if (this.closed) return;
      if (probe && this.writes === 0 && this.socket.writableLength === 0 && this.waiting) {
        const st = this.sendState();
        const still = st !== null && st.peerWindow === this.lastWindow && !this.moved;
        if (st && still && st.notsentBytes === 0 && (this.current || this.held[0]?.message)) {
          this.probes++;
          this.writeSlice(PROBE_BYTES);
          return;
        }
      }
      this.pump();
    }, ms);
    return true;
  }
}
