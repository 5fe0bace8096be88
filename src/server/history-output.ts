// A control connection's file history on its way to the socket (docs/history.md,
// "On the DMA's socket"). Replies and posts go to the socket at once; history
// messages wait here until the socket holds nothing else, and go one at a time,
// so that what Node and the kernel hold ahead of a new reply or notification
// is at most one history message and the kernel's small unsent bound
// (TCP_NOTSENT_LOWAT, set by the connection). A DMA that reads history slowly
// so gets NOTIFY_MOVER_HALTED and its replies without waiting for megabytes of
// history it has not read yet.
//
// The queue is bounded by the history credit (docs/history.md, "Credit"): the
// history thread hands over no more than that before writes complete.
//
// The one ordering rule, kept here: a post given to `after` (NOTIFY_DATA_HALTED)
// goes only once every history message queued before it has been handed to the
// socket, so no FH post follows it (docs/protocol.md §8.6).

/** What this needs of the connection's socket. */
export interface HistorySocket {
  readonly writableLength: number;
  write(chunk: Uint8Array, cb: (err?: Error | null) => void): boolean;
}

/** How soon the queue looks again when the socket's buffer holds output it was not told of. */
const RETRY_MS = 2;

type Held =
  | { readonly message: Uint8Array; readonly done: (err?: Error) => void; readonly post?: undefined }
  | { readonly post: () => void; readonly message?: undefined; readonly done?: undefined };

export class HistoryOutput {
  private readonly held: Held[] = [];
  /** A history message is in the socket's own buffer (its write callback has not come). */
  private writing = false;
  private closed = false;
  /** Looks again soon when other output (written before history waited) fills the socket's buffer. */
  private retry: NodeJS.Timeout | null = null;
  /** Bytes of history waiting here. */
  heldBytes = 0;
  /** Re-runs the queue; given as the write callback of output that went out while history waited. */
  readonly kick = (): void => this.pump();

  constructor(
    private readonly socket: HistorySocket,
    /** Fills in the message's sequence number and time stamp, as it is written (not before). */
    private readonly stamp: (message: Uint8Array) => void,
  ) {}

  /** History waits here (the connection's other output should then call `kick` once written). */
  get waiting(): boolean {
    return this.held.length > 0;
  }

  /** One complete history message: written after those before it, once the socket holds nothing else. */
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
    if (this.held.length === 0) write();
    else this.held.push({ post: write });
  }

  /** The connection closed: waiting history fails (its credit comes back as failed), waiting posts are dropped. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.retry) clearTimeout(this.retry);
    this.retry = null;
    const err = new Error('the connection is closed');
    for (const h of this.held.splice(0)) h.done?.(err);
    this.heldBytes = 0;
  }

  private pump(): void {
    while (!this.closed && this.held.length > 0) {
      const h = this.held[0]!;
      if (h.post) {
        this.held.shift();
        h.post();
        continue;
      }
      // Nothing else in Node's buffer (the kernel keeps its own unsent part small).
      if (this.writing) return;
      if (this.socket.writableLength > 0) {
        // Output that did not bring `kick` along: look again in a moment (a reply is small).
        this.retry ??= setTimeout(() => {
          this.retry = null;
          this.pump();
        }, RETRY_MS);
        return;
      }
      this.held.shift();
      this.heldBytes -= h.message.byteLength;
      this.stamp(h.message);
      this.writing = true;
      this.socket.write(h.message, (err) => {
        this.writing = false;
        h.done(err ?? undefined);
        this.pump();
      });
    }
  }
}
