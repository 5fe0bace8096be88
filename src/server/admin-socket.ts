// The local admin socket (docs/operations.md, "Sessions"): a Unix socket in
// the state dir, mode 0600, through which `ndmpd status`, `ndmpd sessions`
// and `ndmpd sessions kill` talk to the running server. One JSON request per
// line, one JSON reply per line. Only the server's own user (and root) can
// reach it: the state dir is 0700 and the socket 0600, so no authentication
// is asked for beyond the file system's.
//
// Bounded like the DMA side: a request line may be ADMIN_MAX_REQUEST_BYTES at
// most, a client that sends nothing for ADMIN_IDLE_MS is hung up on, and at
// most ADMIN_MAX_CLIENTS are served at once.

import { chmodSync, lstatSync, unlinkSync } from 'node:fs';
import net from 'node:net';
import { CodedError } from '../util/coded-error.js';
import type { Logger } from '../util/log.js';

export const ADMIN_SOCKET_NAME = 'admin.sock';
export const ADMIN_MAX_REQUEST_BYTES = 64 * 1024;
export const ADMIN_IDLE_MS = 10_000;
const ADMIN_MAX_CLIENTS = 16;
/** How long a start waits to learn whether a socket left in place has a server behind it. */
const PROBE_MS = 1000;

/** A request the admin socket cannot serve: its code and message go back to the client as the reply's error. */
export class AdminRequestError extends CodedError {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** The admin socket cannot be set up (another server answers on it, or the path is unusable). */
export class AdminSocketError extends CodedError {
  readonly code = 'ADMIN_SOCKET';
}

export type AdminRequest = { readonly op: string } & Record<string, unknown>;
export type AdminHandler = (req: AdminRequest) => Promise<Record<string, unknown>>;

export class AdminSocket {
  private readonly server: net.Server;
  private readonly clients = new Set<net.Socket>();
  private listening = false;

  constructor(
    readonly path: string,
    private readonly handle: AdminHandler,
    private readonly log: Logger,
  ) {
    this.server = net.createServer((c) => this.serve(c));
    this.server.maxConnections = ADMIN_MAX_CLIENTS;
    this.server.on('error', (e) => log.error({ err: e, socket: path }, 'admin socket error'));
  }

  /** Creates the socket, replacing one a crashed server left (nothing answers on it). */
  async start(): Promise<void> {
    if (exists(this.path)) {
      if (await answers(this.path)) {
        throw new AdminSocketError(
          `another ndmpd answers on ${this.path}: stop it, or give this server a --state-dir of its own`,
        );
      }
      unlinkSync(this.path);
      this.log.info(
        { socket: this.path },
        'removed a stale admin socket (left by a server that did not stop)',
      );
    }
    await new Promise<void>((resolve, reject) => {
      const onError = (e: Error) => reject(new AdminSocketError(`cannot create ${this.path}: ${e.message}`));
      this.server.once('error', onError);
      this.server.listen(this.path, () => {
        this.server.off('error', onError);
        resolve();
      });
    });
    // The state dir is 0700, so the moment before this chmod exposes nothing.
    chmodSync(this.path, 0o600);
    this.listening = true;
    this.log.info({ socket: this.path }, 'admin socket ready (ndmpd status, ndmpd sessions)');
  }

  /** Stops serving and removes the socket. */
  async stop(): Promise<void> {
    if (!this.listening) return;
    this.listening = false;
    for (const c of this.clients) c.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    // net.Server removes its socket file on close; a leftover (an odd platform) goes here.
    try {
      unlinkSync(this.path);
    } catch {
      // Already gone: what close is for.
    }
  }

  private serve(c: net.Socket): void {
    this.clients.add(c);
    c.on('close', () => this.clients.delete(c));
    c.on('error', () => undefined);
    c.setTimeout(ADMIN_IDLE_MS, () => c.destroy());
    let buf = '';
    let busy = false;
    const lines: string[] = [];
    const next = async (): Promise<void> => {
      if (busy) return;
      busy = true;
      for (let line = lines.shift(); line !== undefined; line = lines.shift()) {
        const reply = await this.answer(line);
        if (c.destroyed) return;
        c.write(`${JSON.stringify(reply)}\n`);
      }
      busy = false;
    };
    c.on('data', (chunk: Buffer) => {
      buf += chunk.toString('utf8');
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        lines.push(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
      }
      if (buf.length > ADMIN_MAX_REQUEST_BYTES) {
        c.end(
          `${JSON.stringify(failure('ADMIN_REQUEST_TOO_LARGE', `a request line may be ${ADMIN_MAX_REQUEST_BYTES} bytes at most`))}\n`,
        );
        c.pause();
        return;
      }
      void next();
    });
  }

  private async answer(line: string): Promise<Record<string, unknown>> {
    let req: unknown;
    try {
      req = JSON.parse(line);
    } catch {
      return failure('ADMIN_BAD_REQUEST', 'a request is one JSON object per line, e.g. {"op":"status"}');
    }
    if (typeof req !== 'object' || req === null || typeof (req as { op?: unknown }).op !== 'string') {
      return failure(
        'ADMIN_BAD_REQUEST',
        'a request is a JSON object with an "op" string, e.g. {"op":"status"}',
      );
    }
    try {
      return { ok: true, ...(await this.handle(req as AdminRequest)) };
    } catch (e) {
      if (e instanceof AdminRequestError) return failure(e.code, e.message);
      this.log.error({ err: e, op: (req as AdminRequest).op }, 'admin request failed');
      return failure(
        'ADMIN_INTERNAL',
        `the request failed: ${(e as Error).message} (the server log has more)`,
      );
    }
  }
}

function failure(code: string, message: string): Record<string, unknown> {
  return { ok: false, error: { code, message } };
}

function exists(path: string): boolean {
  try {
    lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

/** Whether something accepts connections on the Unix socket at `path` (within PROBE_MS). */
function answers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const c = net.connect(path);
    const done = (v: boolean) => {
      clearTimeout(t);
      c.destroy();
      resolve(v);
    };
    const t = setTimeout(() => done(false), PROBE_MS);
    c.once('connect', () => done(true));
    c.once('error', () => done(false));
  });
}
