// The DMA side of a control connection: requests correlated with replies by
// sequence number, a timeout per request, and handlers for the server's posts
// (NOTIFY_*, LOG_*, FH_*), which may arrive at any time, even between a request
// and its reply (docs/protocol.md §2.2).

import net from 'node:net';
import {
  AuthType,
  ConnectionStatusReason,
  ErrorCode,
  LogType,
  M,
  MessageType,
  NdmpError,
  RecordFramer,
  TransportError,
  XdrDecodeError,
  compiled,
  decodeBody,
  decodeHeader,
  encodeMessage,
  lookup,
  md5Digest,
  nowSeconds,
  SUPPORTED_VERSIONS,
} from '../wire/index.js';
import type {
  FramingError,
  Header,
  LogMessagePost,
  MessageDef,
  NdmpVersion,
  ReplyOf,
  RequestOf,
} from '../wire/index.js';
import type { Logger } from '../util/log.js';
import { silentLogger } from '../util/log.js';

export interface ClientOptions {
  host: string;
  port: number;
  /** How long to wait for the TCP connection and for each reply (default 30 s). */
  timeoutMs?: number;
  maxRecordSize?: number;
  log?: Logger;
  /**
   * A request that gets no reply in time ends the connection (later calls
   * fail at once with that timeout): what a job wants of a server that
   * stopped answering. The server, when it sees the connection go, aborts
   * what the connection ran. Default false: the request alone fails.
   */
  abandonOnTimeout?: boolean;
}

type PostHandler = (body: unknown, header: Header) => void;

interface Pending {
  code: number;
  def: MessageDef;
  resolve: (body: unknown) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
  /** The server's reason, from a LOG_MESSAGE of type ERROR that came for this request before its reply. */
  reason?: string;
}

export class NdmpClient {
  /** The version the server announced in NOTIFY_CONNECTION_STATUS. */
  offeredVersion: NdmpVersion = 4;
  /** The version messages are encoded with (the offered one until `open`). */
  version: NdmpVersion = 4;

  private sequence = 0;
  private readonly pending = new Map<number, Pending>();
  /** Reply bodies that carry an error, with the server's reason for it (call() puts it in the NdmpError). */
  private readonly reasons = new WeakMap<object, string>();
  private readonly postHandlers = new Map<number, PostHandler[]>();
  private closedError: TransportError | null = null;
  private readonly framer: RecordFramer;
  private readonly log: Logger;
  private readonly timeoutMs: number;
  private readonly abandonOnTimeout: boolean;
  /** HOST:PORT, for messages. */
  readonly peer: string;

  private constructor(
    private readonly socket: net.Socket,
    opts: ClientOptions,
  ) {
    this.log = opts.log ?? silentLogger();
    this.timeoutMs = opts.timeoutMs ?? 30_000;
    this.abandonOnTimeout = opts.abandonOnTimeout ?? false;
    this.peer = opts.host.includes(':') ? `[${opts.host}]:${opts.port}` : `${opts.host}:${opts.port}`;
    this.framer = new RecordFramer(opts.maxRecordSize);
  }

  /**
   * Connects and waits for the server's NOTIFY_CONNECTION_STATUS. Rejects with
   * TransportError NDMP_REFUSED if the server refuses the connection.
   */
  static connect(opts: ClientOptions): Promise<NdmpClient> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host: opts.host, port: opts.port });
      const client = new NdmpClient(socket, opts);
      const fail = (e: Error) => {
        clearTimeout(timer);
        socket.destroy();
        reject(e);
      };
      const timer = setTimeout(
        () =>
          fail(
            new TransportError(
              'NDMP_TIMEOUT',
              `no greeting from ${client.peer} in ${client.timeoutMs / 1000} s: is it an NDMP server, and is it running?`,
            ),
          ),
        client.timeoutMs,
      );
      socket.once('error', (e) =>
        fail(
          new TransportError(
            'NDMP_CONNECT_FAILED',
            `cannot connect to ${opts.host}:${opts.port}: ${e.message}`,
          ),
        ),
      );
      client.onPost(M.NOTIFY_CONNECTION_STATUS, function greet(body) {
        client.offPost(M.NOTIFY_CONNECTION_STATUS, greet);
        clearTimeout(timer);
        socket.removeAllListeners('error');
        socket.on('error', (e) => client.fail(new TransportError('NDMP_CONNECTION_CLOSED', e.message)));
        if (body.reason !== ConnectionStatusReason.NDMP_CONNECTED) {
          fail(
            new TransportError(
              'NDMP_REFUSED',
              `server refused the connection: ${body.textReason || 'no reason given'}`,
            ),
          );
          return;
        }
        const v = body.protocolVersion as NdmpVersion;
        // A server offering v5+ still speaks 4; one offering less than 3 is beyond us.
        client.offeredVersion = v > 4 ? 4 : v;
        if (!SUPPORTED_VERSIONS.includes(client.offeredVersion)) {
          fail(
            new TransportError(
              'NDMP_REFUSED',
              `server offers NDMP v${body.protocolVersion}; v3 or v4 needed`,
            ),
          );
          return;
        }
        client.version = client.offeredVersion;
        resolve(client);
      });
      socket.on('data', (chunk: Buffer) => client.onData(chunk));
      socket.on('close', () => {
        const e = new TransportError('NDMP_CONNECTION_CLOSED', 'connection closed by the server');
        client.fail(e);
        // Closed before the greeting: say so now rather than at the timeout (a no-op once settled).
        fail(e);
      });
    });
  }

  /** CONNECT_OPEN with the given version, or the highest both sides speak. */
  async open(version?: NdmpVersion): Promise<void> {
    const v = version ?? (Math.min(4, this.offeredVersion) as NdmpVersion);
    await this.call(M.CONNECT_OPEN, { protocolVersion: v });
    this.version = v;
  }

  async authText(user: string, password: string): Promise<void> {
    await this.call(M.CONNECT_CLIENT_AUTH, {
      authData: { authType: AuthType.NDMP_AUTH_TEXT, authId: user, authPassword: password },
    });
  }

  async authMd5(user: string, password: string): Promise<void> {
    const attr = await this.call(M.CONFIG_GET_AUTH_ATTR, { authType: AuthType.NDMP_AUTH_MD5 });
    if (attr.serverAttr.authType !== AuthType.NDMP_AUTH_MD5) {
      throw new NdmpError(ErrorCode.NDMP_ILLEGAL_ARGS_ERR, 'server returned no MD5 challenge');
    }
    await this.call(M.CONNECT_CLIENT_AUTH, {
      authData: {
        authType: AuthType.NDMP_AUTH_MD5,
        authId: user,
        authDigest: md5Digest(password, attr.serverAttr.challenge),
      },
    });
  }

  /**
   * Sends a request and resolves with its reply body. Rejects with NdmpError
   * when the reply carries an error (in the header or in the body's `error`),
   * and with TransportError on timeout or a lost connection.
   */
  call<D extends MessageDef>(
    def: D,
    body: RequestOf<D>,
    opts: { timeoutMs?: number } = {},
  ): Promise<ReplyOf<D>> {
    return this.request(def, body, opts).then((reply) => {
      const err = (reply as { error?: number }).error;
      if (err !== undefined && err !== ErrorCode.NDMP_NO_ERR) {
        const reason = this.reasons.get(reply as object);
        throw new NdmpError(err, reason ? `${def.name}: ${reason}` : def.name, 'body');
      }
      return reply;
    });
  }

  /** Like `call`, but a body-level error is returned in the body, not thrown. */
  request<D extends MessageDef>(
    def: D,
    body: RequestOf<D>,
    opts: { timeoutMs?: number } = {},
  ): Promise<ReplyOf<D>> {
    if (this.closedError) return Promise.reject(this.closedError);
    const msg = compiled(this.version, def);
    const seq = this.send(def.code, msg.body, body);
    if (def.kind !== 'request') return Promise.resolve(undefined as ReplyOf<D>);
    return new Promise((resolve, reject) => {
      const timeoutMs = opts.timeoutMs ?? this.timeoutMs;
      const timer = setTimeout(() => {
        // A late reply to this sequence is then ignored.
        this.pending.delete(seq);
        // Replies wait unread while we hold reading back (a catalog behind): say so, it is not the server's fault.
        const held = this.socket.isPaused()
          ? ', while this DMA held back reading (its catalog was behind)'
          : '';
        const e = new TransportError(
          'NDMP_TIMEOUT',
          `${def.name}: no reply from ${this.peer} in ${timeoutMs / 1000} s${held}`,
        );
        reject(e);
        if (this.abandonOnTimeout) {
          this.fail(e);
          this.socket.destroy();
        }
      }, timeoutMs);
      this.pending.set(seq, { code: def.code, def, resolve: resolve as (b: unknown) => void, reject, timer });
    });
  }

  onPost<Body>(def: MessageDef<Body, never>, fn: (body: Body, header: Header) => void): void {
    const list = this.postHandlers.get(def.code) ?? [];
    list.push(fn as PostHandler);
    this.postHandlers.set(def.code, list);
  }

  offPost<Body>(def: MessageDef<Body, never>, fn: (body: Body, header: Header) => void): void {
    const list = this.postHandlers.get(def.code);
    if (list)
      this.postHandlers.set(
        def.code,
        list.filter((f) => f !== (fn as PostHandler)),
      );
  }

  /** Whether the connection is gone (closed by either side, or failed). */
  get closed(): boolean {
    return this.closedError !== null;
  }

  /** Why the connection is gone (a timeout when it was abandoned), or null while it is up. */
  get closedReason(): TransportError | null {
    return this.closedError;
  }

  /** CONNECT_CLOSE (no reply), then close the socket. */
  async close(): Promise<void> {
    if (this.closedError) return;
    try {
      this.send(M.CONNECT_CLOSE.code, compiled(this.version, M.CONNECT_CLOSE).body, {});
    } catch {
      /* already going */
    }
    await new Promise<void>((resolve) => {
      this.socket.once('close', () => resolve());
      this.socket.end();
      setTimeout(() => {
        this.socket.destroy();
        resolve();
      }, 1000).unref();
    });
  }

  /**
   * Stops reading from the server (its posts and replies wait in the socket
   * buffers, and TCP holds the server back): how a DMA that is busy, or a
   * test of one, applies backpressure. resumeReading() undoes it.
   */
  pauseReading(): void {
    this.socket.pause();
  }
  resumeReading(): void {
    this.socket.resume();
  }

  /** Drops the connection without CONNECT_CLOSE, as ndmjob does. */
  destroy(): void {
    this.socket.destroy();
  }

  private send<T>(code: number, codec: ReturnType<typeof compiled>['body'], body: T): number {
    this.sequence = (this.sequence + 1) >>> 0 || 1;
    const header: Header = {
      sequence: this.sequence,
      timeStamp: nowSeconds(),
      messageType: MessageType.NDMP_MESSAGE_REQUEST,
      messageCode: code,
      replySequence: 0,
      errorCode: 0,
    };
    this.socket.write(encodeMessage(header, codec, body));
    return this.sequence;
  }

  private onData(chunk: Buffer): void {
    let records: Buffer[];
    try {
      records = this.framer.push(chunk);
    } catch (e) {
      this.fail(
        new TransportError(
          'NDMP_CONNECTION_CLOSED',
          `framing error from server: ${(e as FramingError).message}`,
        ),
      );
      this.socket.destroy();
      return;
    }
    for (const rec of records) this.onRecord(rec);
  }

  private onRecord(rec: Buffer): void {
    let header: Header;
    try {
      header = decodeHeader(rec);
    } catch {
      this.log.warn({ bytes: rec.length }, 'short record from server dropped');
      return;
    }
    if (header.messageType === MessageType.NDMP_MESSAGE_REPLY) {
      const p = this.pending.get(header.replySequence);
      if (!p || p.code !== header.messageCode) {
        this.log.warn(
          { replySequence: header.replySequence, code: header.messageCode },
          'reply to no pending request',
        );
        return;
      }
      this.pending.delete(header.replySequence);
      clearTimeout(p.timer);
      // A header-level error has no body (docs/protocol.md §2.1).
      if (header.errorCode !== 0) {
        p.reject(
          new NdmpError(header.errorCode, p.reason ? `${p.def.name}: ${p.reason}` : p.def.name, 'header'),
        );
        return;
      }
      const msg = compiled(this.version, p.def);
      try {
        const reply = decodeBody(msg.reply!, rec);
        if (p.reason && typeof reply === 'object' && reply !== null) this.reasons.set(reply, p.reason);
        p.resolve(reply);
      } catch (e) {
        p.reject(
          e instanceof XdrDecodeError
            ? new NdmpError(ErrorCode.NDMP_XDR_DECODE_ERR, `${p.def.name} reply: ${e.message}`)
            : (e as Error),
        );
      }
      return;
    }
    const msg = lookup(this.version, header.messageCode);
    if (!msg || msg.def.kind !== 'post') {
      this.log.warn({ code: header.messageCode }, 'unexpected request from server ignored');
      return;
    }
    let body: unknown;
    try {
      body = decodeBody(msg.body, rec);
    } catch (e) {
      this.log.warn({ post: msg.def.name, err: (e as Error).message }, 'undecodable post from server');
      return;
    }
    if (header.messageCode === M.LOG_MESSAGE.code) this.noteReason(body as LogMessagePost);
    for (const fn of this.postHandlers.get(header.messageCode) ?? []) {
      // A handler's bug must not become an uncaught exception in the socket's data event.
      try {
        fn(body, header);
      } catch (e) {
        this.log.error({ err: e, post: msg.def.name }, 'post handler failed');
      }
    }
  }

  /**
   * A LOG_MESSAGE of type ERROR is the server's reason for refusing a
   * request (ndmpd sends it just before the refusal, docs/protocol.md §2.1):
   * kept with the request it names (v4), or in v3, which cannot name one, with
   * the only request waiting for its reply.
   */
  private noteReason(post: LogMessagePost): void {
    if (post.logType !== LogType.NDMP_LOG_ERROR) return;
    let p: Pending | undefined;
    if (post.associatedMessageValid) p = this.pending.get(post.associatedMessageSequence);
    else if (this.pending.size === 1) p = this.pending.values().next().value;
    if (p) p.reason = post.entry.replace(/^\S+ refused \([A-Z_]+\): /, '');
  }

  private fail(e: TransportError): void {
    if (this.closedError) return;
    this.closedError = e;
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(e);
    }
    this.pending.clear();
  }
}
