// One control connection: bytes in -> records -> messages -> the dispatch
// table -> replies out, in order. Posts may go out at any time. Trouble here
// (garbage, a crash in a handler, a peer that vanishes) ends this connection
// at worst and never reaches another one.
//
//   socket ──► RecordFramer ──► queue (bounded; the socket pauses) ──► dispatch ──► reply
//                  │ FramingError: log + close               ▲ posts (NOTIFY/LOG) ─────┤ single writer
//                                                               FH ──► HistoryOutput ──┘ (when the socket is idle)
//
// Replies and posts are written at once; file history waits in HistoryOutput
// until the socket holds nothing else, so they overtake history not yet
// written (docs/history.md, "On the DMA's socket"). Sequence numbers are given
// as each message is written, so they rise on the wire.

import type { Socket } from 'node:net';
import type { Logger } from '../util/log.js';
import { holdsDevice } from '../services/activity.js';
import type { ExtNegotiation, Handler, ServerContext, Session } from '../services/session.js';
import { stateRefusal } from '../services/session.js';
import { normalizeAddress, peerKey } from '../util/address.js';
import { setTcpNotsentLowat, tcpSendState } from '../util/native-fs.js';
import { HistoryOutput } from './history-output.js';
import {
  ConnectionStatusReason,
  ErrorCode,
  HIGHEST_VERSION,
  LogType,
  M,
  MessageType,
  NdmpError,
  RecordFramer,
  XdrDecodeError,
  compiled,
  decodeBody,
  decodeHeader,
  encodeMessage,
  errorName,
  lookup,
  nowSeconds,
} from '../wire/index.js';
import type { CompiledMessage, Header, MessageDef, NdmpVersion, FramingError } from '../wire/index.js';
import type { DispatchTable } from './dispatch.js';

export interface ConnectionOptions {
  maxRecordSize: number;
  /** A connection that has not authenticated within this time is closed (0 = never). */
  preAuthTimeoutMs: number;
  /**
   * A logged-in session that holds no device and sends no request for this
   * long is closed (0 = never). One that holds a device is never timed out.
   */
  idleTimeoutMs: number;
}

/**
 * Where a connection stands for the listener's slot accounting: not logged in,
 * logged in holding no device, holding one (never closed to make room), or on
 * its way out (no longer counted).
 */
export type SlotState = 'unauthenticated' | 'idle' | 'busy' | 'leaving';

/** Bytes of requests read ahead of the one being handled before reading pauses. */
const MAX_QUEUED_BYTES = 256 * 1024;
/** Until a DMA authenticates, no message it may send is larger than this. */
export const PRE_AUTH_MAX_RECORD_SIZE = 64 * 1024;
/** Refusals logged at warn per connection; the rest go to debug, so a flood cannot flood the log. */
const LOUD_REFUSALS = 5;
/**
 * Unsent bytes the kernel holds for a control connection before it takes no
 * more (TCP_NOTSENT_LOWAT): what may sit ahead of a reply besides one history
 * message. Bytes in flight do not count, so a distant DMA's throughput is not
 * capped by it (docs/history.md, "On the DMA's socket").
 */
export const CONTROL_NOTSENT_BYTES = 32 * 1024;
/**
 * Posts that must not overtake file history (docs/protocol.md §8.6): they
 * wait behind every history message queued before them. This is the one
 * place the rule lives; every other post and reply goes ahead of history.
 */
const AFTER_HISTORY: ReadonlySet<number> = new Set([M.NOTIFY_DATA_HALTED.code]);

export interface ConnectionStats {
  id: number;
  peer: string;
  user: string | null;
  version: NdmpVersion;
  /** Records handled so far. */
  requests: number;
  /** Request bytes read but not yet handled. */
  queuedBytes: number;
  /** Reply bytes written but not yet taken by the DMA. */
  outputBytes: number;
  /** File history waiting for the socket (bounded by the history credit). */
  historyBytes: number;
  slot: SlotState;
}

export class Connection implements Session {
  version: NdmpVersion = HIGHEST_VERSION;
  /** The version is settled: by CONNECT_OPEN, or by the first other request (docs/protocol.md §5.3). */
  opened = false;
  user: string | null = null;
  md5Challenge: Buffer | null = null;
  authFailures = 0;
  extNegotiation: ExtNegotiation = 'none';
  readonly log: Logger;
  /** The peer's address, IPv4-mapped IPv6 as IPv4. */
  readonly peerAddress: string;
  /** What per-address limits count by (an IPv4 address or an IPv6 /64). */
  readonly peerKey: string;
  /** `address:port`, for log lines that name this peer. */
  readonly peer: string;

  private sequence = 0;
  /** The last request, login, or device given back: the idle timeout and eviction order count from it. */
  private lastActivity = Date.now();
  private idleTimer: NodeJS.Timeout | null = null;
  private readonly framer: RecordFramer;
  /** File history not yet handed to the socket (see the top of this file). */
  private readonly history: HistoryOutput;
  /** The socket's descriptor, for TCP_INFO and TCP_NOTSENT_LOWAT (-1: not known, no pacing by the kernel). */
  private fd = -1;
  private readonly queue: Buffer[] = [];
  private queuedBytes = 0;
  private draining = false;
  private authenticated = false;
  /** LOG_MESSAGE ids this connection sent (the reasons of refused requests). */
  private logMessageId = 0;
  private refusals = 0;
  private requests = 0;
  private closing: string | null = null;
  private closed = false;
  private ending = false;
  private destroyTimer: NodeJS.Timeout | null = null;
  private preAuthTimer: NodeJS.Timeout | null = null;
  private readonly trace: boolean;
  private readonly closeHooks: (() => void | Promise<void>)[] = [];
  private cleanupDone: () => void = () => undefined;
  /** Settles once the connection has closed and every close hook has finished. */
  readonly cleanedUp = new Promise<void>((resolve) => (this.cleanupDone = resolve));

  constructor(
    readonly id: number,
    private readonly socket: Socket,
    readonly ctx: ServerContext,
    private readonly table: DispatchTable,
    private readonly opts: ConnectionOptions,
    private readonly onClosed: (c: Connection) => void,
  ) {
    this.peerAddress = normalizeAddress(socket.remoteAddress ?? '');
    this.peerKey = peerKey(this.peerAddress);
    this.peer = `${this.peerAddress}:${socket.remotePort}`;
    this.log = ctx.log.child({ conn: id, peer: this.peer });
    this.trace = this.log.isLevelEnabled('debug');
    // Small records only until the DMA has shown who it is.
    this.framer = new RecordFramer(Math.min(PRE_AUTH_MAX_RECORD_SIZE, opts.maxRecordSize));
    this.history = new HistoryOutput(
      socket,
      (m) => this.stampEncoded(m),
      () => (this.fd >= 0 ? tcpSendState(this.fd) : null),
    );
  }

  /** Greets the DMA with the highest version we speak and starts reading. */
  start(): void {
    this.socket.setNoDelay(true);
    this.socket.setKeepAlive(true, 60_000);
    // Without it (no addon, not TCP) the kernel may hold MiBs of history ahead of a reply: slower, not wrong.
    const fd = (this.socket as unknown as { _handle?: { fd?: unknown } })._handle?.fd;
    if (typeof fd === 'number' && fd >= 0 && setTcpNotsentLowat(fd, CONTROL_NOTSENT_BYTES)) this.fd = fd;
    this.socket.on('data', (chunk: Buffer) => this.onData(chunk));
    this.socket.on('end', () => this.onPeerEnd());
    this.socket.on('error', (e: NodeJS.ErrnoException) =>
      this.log.info({ err: e.code ?? e.message }, 'socket error'),
    );
    this.socket.on('close', () => this.onSocketClose());
    if (this.opts.preAuthTimeoutMs > 0) {
      this.preAuthTimer = setTimeout(() => {
        this.log.warn({ timeoutMs: this.opts.preAuthTimeoutMs }, 'no authentication in time; closing');
        this.notifyStatus(ConnectionStatusReason.NDMP_SHUTDOWN, 'authentication timeout');
        this.close('authentication timeout');
      }, this.opts.preAuthTimeoutMs);
      this.preAuthTimer.unref();
    }
    this.log.info('connection accepted');
    this.notifyStatus(ConnectionStatusReason.NDMP_CONNECTED, '');
  }

  /**
   * Turns the connection away (it was never started): REFUSED with the reason,
   * then close. `loud` false logs at debug (the listener rate-limits refusals).
   */
  refuse(reason: string, loud = true): void {
    this.socket.on('error', (e: NodeJS.ErrnoException) =>
      this.log.debug({ err: e.code ?? e.message }, 'socket error'),
    );
    this.socket.on('close', () => (this.closed = true));
    if (loud) this.log.warn({ reason }, 'connection refused');
    else this.log.debug({ reason }, 'connection refused');
    this.notifyStatus(ConnectionStatusReason.NDMP_REFUSED, reason);
    this.closing = reason;
    this.endNow();
  }

  /** NOTIFY_CONNECTION_STATUS: CONNECTED on accept, SHUTDOWN before we hang up, REFUSED when full. */
  notifyStatus(reason: number, textReason: string): void {
    this.post(M.NOTIFY_CONNECTION_STATUS, { reason, protocolVersion: HIGHEST_VERSION, textReason });
  }

  post<Body>(def: MessageDef<Body, never>, body: Body): void {
    if (AFTER_HISTORY.has(def.code)) this.history.after(() => this.writePost(def, body));
    else this.writePost(def, body);
  }

  private writePost<Body>(def: MessageDef<Body, never>, body: Body): void {
    const msg = compiled(this.version, def);
    this.write(
      msg,
      {
        messageType: MessageType.NDMP_MESSAGE_REQUEST,
        messageCode: def.code,
        replySequence: 0,
        errorCode: 0,
      },
      msg.body,
      body,
    );
  }

  /**
   * Ends the connection. Inside a request, after its reply has gone out;
   * otherwise at once (pending output is still flushed before the socket closes).
   */
  close(reason: string): void {
    this.closing ??= reason;
    if (!this.draining) this.endNow();
  }

  onClose(hook: () => void | Promise<void>): void {
    if (this.closed) void this.runHooks([hook]);
    else this.closeHooks.push(hook);
  }

  /** The address the DMA reached us on (data connections listen there). */
  get localAddress(): string {
    return this.socket.localAddress ?? '127.0.0.1';
  }

  /** What this connection is doing, for operators and tests. */
  stats(): ConnectionStats {
    return {
      id: this.id,
      peer: this.peer,
      user: this.user,
      version: this.version,
      requests: this.requests,
      queuedBytes: this.queuedBytes,
      outputBytes: this.socket.writableLength,
      historyBytes: this.history.heldBytes,
      slot: this.slot,
    };
  }

  /** Runs `fn` once everything queued so far, file history and the posts behind it, has been written. */
  afterHistory(fn: () => void): void {
    this.history.after(fn);
  }

  /** Whether the DMA has authenticated (the listener counts the others). */
  get isAuthenticated(): boolean {
    return this.authenticated;
  }

  get slot(): SlotState {
    if (this.closing !== null || this.closed || this.ending) return 'leaving';
    if (!this.authenticated) return 'unauthenticated';
    return holdsDevice(this) ? 'busy' : 'idle';
  }

  /** When the session last did something (a request, its login, a device given back). */
  get idleSince(): number {
    return this.lastActivity;
  }

  /** A request is being handled: the session is not idle, whatever it holds. */
  get inRequest(): boolean {
    return this.draining;
  }

  /** Runs `fn` once the socket has closed (at once if it has). */
  onSocketGone(fn: () => void): void {
    if (this.socket.closed) fn();
    else this.socket.once('close', fn);
  }

  /** Drops the socket now, whatever is still unsent: for a connection already told why it goes. */
  destroyNow(): void {
    this.socket.destroy();
  }

  /**
   * Closes this connection so that a newcomer may have its slot: SHUTDOWN
   * with the reason first, so the DMA (or its operator) knows why.
   */
  evict(text: string): void {
    this.shutdown(text);
  }

  /** Server shutdown: say so, then hang up once the output is flushed. */
  shutdown(text: string): void {
    if (this.closed) return;
    this.notifyStatus(ConnectionStatusReason.NDMP_SHUTDOWN, text);
    this.close(text);
    this.endNow();
  }

  // ---- input ---------------------------------------------------------------

  private onData(chunk: Buffer): void {
    if (this.closing || this.closed) return;
    let records: Buffer[];
    try {
      records = this.framer.push(chunk);
    } catch (e) {
      // Broken framing cannot be resynchronised: log and close this connection only.
      this.log.warn({ err: (e as FramingError).message }, 'framing error; closing connection');
      this.closing = 'framing error';
      this.socket.destroy();
      return;
    }
    if (records.length === 0) return;
    for (const r of records) {
      this.queue.push(r);
      this.queuedBytes += r.length;
    }
    if (this.queuedBytes > MAX_QUEUED_BYTES) this.socket.pause();
    if (!this.draining) void this.drain();
  }

  /** Handles queued records one at a time so replies leave in request order. */
  private async drain(): Promise<void> {
    this.draining = true;
    try {
      for (let rec = this.queue.shift(); rec; rec = this.queue.shift()) {
        this.queuedBytes -= rec.length;
        this.lastActivity = Date.now();
        this.idleTimer?.refresh();
        try {
          await this.handleRecord(rec);
        } catch (e) {
          // A bug in a handler path must not take the server down.
          this.log.error({ err: e }, 'unexpected error while handling a message');
        }
        if (this.closing) {
          this.queue.length = 0;
          this.queuedBytes = 0;
          this.endNow();
          return;
        }
        // A DMA that does not read its replies gets no more of them: wait until
        // the socket drains (reading pauses meanwhile once the queue is full).
        if (this.socket.writableNeedDrain) await this.writable();
        if (this.queuedBytes <= MAX_QUEUED_BYTES / 2 && this.socket.isPaused()) this.socket.resume();
      }
    } finally {
      this.draining = false;
    }
  }

  private writable(): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        this.socket.off('drain', done);
        this.socket.off('close', done);
        resolve();
      };
      this.socket.on('drain', done);
      this.socket.on('close', done);
    });
  }

  /** Logs a refused request: loudly for the first few, quietly after. */
  private logRefusal(fields: Record<string, unknown>, text: string): void {
    this.refusals++;
    if (this.refusals <= LOUD_REFUSALS) this.log.warn(fields, text);
    else this.log.debug(fields, text);
  }

  private async handleRecord(rec: Buffer): Promise<void> {
    this.requests++;
    let header: Header;
    try {
      header = decodeHeader(rec);
    } catch (e) {
      // No sequence to answer: drop it (docs/protocol.md §1.2) and say so.
      this.logRefusal({ err: (e as XdrDecodeError).message }, 'record too short for a header; dropped');
      return;
    }
    if (header.messageType !== MessageType.NDMP_MESSAGE_REQUEST) {
      this.logRefusal(
        { seq: header.sequence, type: header.messageType, code: hex(header.messageCode) },
        'unexpected non-request from DMA; ignored',
      );
      return;
    }
    const msg = lookup(this.version, header.messageCode);
    const h: Handler | undefined = this.table.get(header.messageCode);
    // Auth gate first, before the code is judged: until the DMA has logged in, only
    // the spec's short list passes (docs/protocol.md §5.4, draft §2.11.3). Everything else, whether it
    // exists in this version or not (unknown, v2-only, extension codes, posts),
    // gets the same header-level NOT_AUTHORIZED, so a stranger cannot map which
    // messages this server has.
    if (this.user === null && !(msg && h?.preAuth)) {
      this.logRefusal(
        { seq: header.sequence, code: hex(header.messageCode), ndmp: msg?.def.name },
        'refused before authentication',
      );
      this.replyHeaderError(header, ErrorCode.NDMP_NOT_AUTHORIZED_ERR);
      return;
    }
    // Unknown in this version, or a server-to-DMA post sent our way: header-level NOT_SUPPORTED.
    if (!msg || msg.def.kind === 'post') {
      this.logRefusal(
        { seq: header.sequence, code: hex(header.messageCode), version: this.version },
        'unsupported message',
      );
      this.replyHeaderError(header, ErrorCode.NDMP_NOT_SUPPORTED_ERR);
      return;
    }
    let body: unknown;
    try {
      body = decodeBody(msg.body, rec);
    } catch (e) {
      if (!(e instanceof XdrDecodeError)) throw e;
      this.logRefusal({ seq: header.sequence, ndmp: msg.def.name, err: e.message }, 'undecodable body');
      this.replyHeaderError(header, ErrorCode.NDMP_XDR_DECODE_ERR);
      return;
    }
    if (this.trace) this.log.debug({ dir: 'in', seq: header.sequence, ndmp: msg.def.name, body }, 'message');
    // CONNECT_OPEN is optional: any other first request accepts the offered version,
    // and a CONNECT_OPEN after it is out of order (docs/protocol.md §5.3).
    if (header.messageCode !== M.CONNECT_OPEN.code) this.opened = true;

    if (!h) {
      // Declared by the protocol, but the service behind it is not part of this server (yet).
      this.replyError(
        msg,
        header,
        new NdmpError(ErrorCode.NDMP_NOT_SUPPORTED_ERR, `${msg.def.name} is not supported`),
      );
      return;
    }
    const refused = h.when ? stateRefusal(h.when, this, msg.def) : null;
    if (refused) {
      this.replyError(msg, header, refused);
      return;
    }
    let result: unknown;
    try {
      result = await h.handle(this, body);
    } catch (e) {
      if (!(e instanceof NdmpError)) {
        this.log.error({ err: e, ndmp: msg.def.name }, 'handler failed');
      }
      this.replyError(
        msg,
        header,
        e instanceof NdmpError ? e : new NdmpError(ErrorCode.NDMP_UNDEFINED_ERR, String(e)),
      );
      return;
    }
    if (this.user !== null && !this.authenticated) this.onAuthenticated();
    if (msg.reply) this.reply(msg, header, { ...(result as object), error: ErrorCode.NDMP_NO_ERR });
  }

  private onAuthenticated(): void {
    this.authenticated = true;
    if (this.preAuthTimer) clearTimeout(this.preAuthTimer);
    this.preAuthTimer = null;
    this.framer.setMaxRecordSize(this.opts.maxRecordSize);
    this.lastActivity = Date.now();
    this.startIdleTimer();
  }

  /** Arms (or re-arms) the idle timeout of a logged-in session that holds no device. */
  private startIdleTimer(): void {
    const ms = this.opts.idleTimeoutMs;
    if (ms <= 0 || !this.authenticated || this.closed) return;
    if (this.idleTimer) {
      this.idleTimer.refresh();
      return;
    }
    this.idleTimer = setTimeout(() => this.onIdleTimeout(), ms);
    this.idleTimer.unref();
  }

  private stopIdleTimer(): void {
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = null;
  }

  private onIdleTimeout(): void {
    this.idleTimer = null;
    if (this.closed || this.closing !== null) return;
    // A request in hand is activity, and a device held is work: look again a whole period later.
    if (this.draining || holdsDevice(this)) {
      this.startIdleTimer();
      return;
    }
    const seconds = this.opts.idleTimeoutMs / 1000;
    const text = `idle for ${seconds} s holding no device (idle-timeout); closed`;
    this.log.warn({ idleTimeoutS: seconds, user: this.user }, 'idle session timed out; closing');
    this.notifyStatus(ConnectionStatusReason.NDMP_SHUTDOWN, text);
    this.close(text);
  }

  // ---- output --------------------------------------------------------------

  private reply(msg: CompiledMessage, req: Header, body: unknown): void {
    const header = {
      messageType: MessageType.NDMP_MESSAGE_REPLY,
      messageCode: req.messageCode,
      replySequence: req.sequence,
      errorCode: 0,
    };
    try {
      this.write(msg, header, msg.reply, body);
    } catch (e) {
      // A reply we cannot encode is our bug; the DMA still gets an answer.
      this.log.error({ err: e, ndmp: msg.def.name }, 'cannot encode reply');
      this.replyHeaderError(req, ErrorCode.NDMP_XDR_ENCODE_ERR);
    }
  }

  /** A body-level error: the reply's own shape, zero-filled, with `error` set (docs/protocol.md §2.1, draft §2.7). */
  private replyError(msg: CompiledMessage, req: Header, err: NdmpError): void {
    this.log.info({ seq: req.sequence, ndmp: msg.def.name, error: errorName(err.ndmpError) }, err.message);
    if (!msg.reply) return;
    this.tellWhy(msg, req, err);
    this.reply(msg, req, { ...(msg.reply.zero() as object), ...err.reply, error: err.ndmpError });
  }

  /**
   * The reason of a refusal, to the DMA, before the refusal itself: an error
   * code says what kind of thing went wrong, not which (an export, a variable,
   * a tape), and a DMA can only print what it is sent (docs/protocol.md §2.1).
   * A LOG_MESSAGE of type ERROR, in v4 associated with the request's sequence;
   * only to an authenticated DMA (nothing before that but what the spec allows).
   */
  private tellWhy(msg: CompiledMessage, req: Header, err: NdmpError): void {
    const name = errorName(err.ndmpError);
    const reason = err.message.startsWith(`${name}: `) ? err.message.slice(name.length + 2) : err.message;
    // Counted by reason for the metrics (docs/operations.md, "Monitoring"), told or not.
    this.ctx.observer?.refused(msg.def.name, name, reason);
    if (!this.authenticated) return;
    // No reason of our own (the bare code), or only the message's name: nothing to add.
    if (reason === name || reason === '' || reason === msg.def.name) return;
    this.post(M.LOG_MESSAGE, {
      logType: LogType.NDMP_LOG_ERROR,
      messageId: ++this.logMessageId,
      entry: `${msg.def.name} refused (${name}): ${reason}`,
      associatedMessageValid: 1,
      associatedMessageSequence: req.sequence,
    });
  }

  /** A header-level error: no body follows (docs/protocol.md §2.1). */
  private replyHeaderError(req: Header, code: number): void {
    this.write(
      null,
      {
        messageType: MessageType.NDMP_MESSAGE_REPLY,
        messageCode: req.messageCode,
        replySequence: req.sequence,
        errorCode: code,
      },
      null,
      null,
    );
  }

  private write<T>(
    msg: CompiledMessage | null,
    h: Omit<Header, 'sequence' | 'timeStamp'>,
    codec: CompiledMessage['body'] | null,
    body: T | null,
  ): void {
    if (this.closed || !this.socket.writable) return;
    // The sequence is spent only once the message is encoded: a failed encode leaves no gap.
    const sequence = (this.sequence + 1) >>> 0 || 1;
    const header: Header = { ...h, sequence, timeStamp: nowSeconds() };
    const bytes = encodeMessage(header, codec, body);
    this.sequence = sequence;
    if (this.trace) {
      this.log.debug(
        {
          dir: 'out',
          seq: header.sequence,
          ndmp: msg?.def.name ?? hex(h.messageCode),
          error: h.errorCode ? errorName(h.errorCode) : undefined,
          body,
        },
        'message',
      );
    }
    // A history message begun goes out whole first; while history waits, this output's completion lets it go on.
    this.history.beforeOutput();
    if (this.history.waiting) this.socket.write(bytes, this.history.kick);
    else this.socket.write(bytes);
  }

  get closeReason(): string | null {
    return this.closing;
  }

  /** File history: queued behind nothing but other history; written when the socket is idle. */
  writeEncoded(message: Uint8Array, done: (err?: Error) => void): void {
    if (this.closed || !this.socket.writable) {
      done(new Error('the connection is closed'));
      return;
    }
    this.history.add(message, done);
  }

  /** Gives a history message its sequence number and time stamp as it goes to the socket. */
  private stampEncoded(message: Uint8Array): void {
    const sequence = (this.sequence + 1) >>> 0 || 1;
    this.sequence = sequence;
    // After the 4-byte record mark: sequence, then time stamp (docs/protocol.md §2.1).
    const view = new DataView(message.buffer, message.byteOffset, message.byteLength);
    view.setUint32(4, sequence);
    view.setUint32(8, nowSeconds());
    if (this.trace) {
      this.log.debug(
        { dir: 'out', seq: sequence, code: hex(view.getUint32(16)), entries: view.getUint32(28) },
        'file history message',
      );
    }
  }

  // ---- end -----------------------------------------------------------------

  private onPeerEnd(): void {
    // ndmjob never sends CONNECT_CLOSE: EOF is a normal end of session.
    this.log.info('peer closed the connection');
    this.closing ??= 'peer closed';
    if (!this.draining) this.endNow();
  }

  private endNow(): void {
    if (this.closed || this.ending) return;
    this.ending = true;
    this.socket.end();
    // Give the peer a moment to read what we wrote, then make sure the socket goes.
    this.destroyTimer = setTimeout(() => this.socket.destroy(), 2000);
    this.destroyTimer.unref();
  }

  /** Runs session cleanup (devices, threads); a failing hook is logged and the others still run. */
  private async runHooks(hooks: (() => void | Promise<void>)[]): Promise<void> {
    const results = await Promise.allSettled(hooks.map(async (h) => h()));
    for (const r of results) {
      if (r.status === 'rejected') this.log.error({ err: r.reason as unknown }, 'session cleanup failed');
    }
  }

  private onSocketClose(): void {
    if (this.closed) return;
    this.closed = true;
    this.history.close();
    if (this.preAuthTimer) clearTimeout(this.preAuthTimer);
    // A closed socket needs no destroying; the timer would keep the session reachable 2 s more.
    if (this.destroyTimer) clearTimeout(this.destroyTimer);
    this.stopIdleTimer();
    this.log.info({ reason: this.closing ?? 'socket closed' }, 'connection closed');
    void this.runHooks(this.closeHooks.splice(0)).then(() => this.cleanupDone());
    this.onClosed(this);
  }
}

function hex(code: number): string {
  return `0x${code.toString(16)}`;
}
