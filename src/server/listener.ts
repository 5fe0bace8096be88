// The TCP listener: accepts DMA control connections and gives each its own
// Connection. Connections share only the immutable ServerContext.
//
// Admission (README, "Configuration": connection slots) decides on each new
// connection, before it is greeted, so that a DMA can always get in:
//
//   peer not in the allow-list ─────────────────────────► closed, no NDMP byte
//   peer already has max-unauthenticated-per-address ────► REFUSED (its own fault)
//   unauthenticated pool full ──► the oldest unauthenticated one gives way
//                                 (one from a penalised address first)
//   not-busy pool full (max-connections − reserved) or server full
//                             ──► the longest-idle logged-in session gives way,
//                                 else the oldest unauthenticated one,
//                                 else (every slot holds a device) REFUSED
//
// "Busy" = holds a device (tape open, mover or data service not IDLE); busy
// sessions are never closed to make room. Connections on their way out are
// not counted.

import net from 'node:net';
import { SessionRegistry } from '../services/registry.js';
import type { ServerContext, Session } from '../services/session.js';
import { AllowList, normalizeAddress } from '../util/address.js';
import { DEFAULT_MAX_RECORD_SIZE } from '../wire/index.js';
import { Connection } from './connection.js';
import type { ConnectionStats } from './connection.js';
import type { DispatchTable } from './dispatch.js';
import { defaultDispatchTable } from './dispatch.js';

export interface ListenerOptions {
  host: string;
  /** 0 picks a free port (tests); see `address()`. */
  port: number;
  maxConnections: number;
  /** At most this many connections are not yet authenticated; beyond it the oldest gives way. */
  maxUnauthenticated: number;
  /** One address (IPv6: one /64) may have this many unauthenticated connections; more are REFUSED. */
  maxUnauthenticatedPerAddress: number;
  /**
   * Slots only sessions holding a device may fill: unauthenticated and idle
   * sessions together stay below maxConnections − this (at most maxConnections − 1).
   */
  reservedConnections: number;
  maxRecordSize: number;
  preAuthTimeoutMs: number;
  /** Logged-in sessions holding no device are closed after this long without a request (0 = never). */
  idleTimeoutMs: number;
  /** Networks (CIDR or bare addresses, IPv4 and IPv6) that may connect; empty = all. */
  allow: readonly string[];
  /**
   * A server already listening (bindControlPort in ./bind.ts): ndmpd binds
   * its port before it creates any state, so a port in use leaves nothing behind.
   */
  bound?: net.Server;
}

export const DEFAULT_LISTENER_OPTIONS: ListenerOptions = {
  host: '127.0.0.1',
  port: 10000,
  maxConnections: 64,
  maxUnauthenticated: 16,
  maxUnauthenticatedPerAddress: 4,
  reservedConnections: 8,
  maxRecordSize: DEFAULT_MAX_RECORD_SIZE,
  preAuthTimeoutMs: 30_000,
  idleTimeoutMs: 900_000,
  allow: [],
};

/** Lines at warn per minute for each kind of turning away; the rest go to debug, so a flood cannot flood the log. */
const LOUD_PER_MINUTE = 20;

/** Counts log lines per one-minute window: the first few are loud, the others quiet and counted. */
class LogBudget {
  private windowStart = 0;
  private used = 0;
  private quiet = 0;

  /** Whether this line may be loud; `quieted` is how many were not since the last loud one. */
  take(now = Date.now()): { loud: boolean; quieted: number } {
    if (now - this.windowStart >= 60_000) {
      this.windowStart = now;
      this.used = 0;
    }
    if (this.used >= LOUD_PER_MINUTE) {
      this.quiet++;
      return { loud: false, quieted: 0 };
    }
    this.used++;
    const quieted = this.quiet;
    this.quiet = 0;
    return { loud: true, quieted };
  }
}

type Admission =
  { verdict: 'admit'; victim: Connection | null; why: string } | { verdict: 'refuse'; reason: string };

export class NdmpServer {
  private readonly server: net.Server;
  private readonly connections = new Set<Connection>();
  /** Cleanups of closed connections still running (tapes being closed, drive threads stopping). */
  private readonly cleanups = new Set<Promise<void>>();
  /** close() waiting for the last connection to have closed. */
  private readonly drained: (() => void)[] = [];
  private nextId = 1;
  /** Connections accepted since start (turned away by the allow-list or refused not counted). */
  private acceptedCount = 0;
  /**
   * Refused connections and those that gave way, until their sockets close
   * (a peer that reads nothing keeps one up to a few seconds). Bounded: past
   * the bound the oldest is dropped at once; it has had its notice.
   */
  private readonly departing = new Set<Connection>();
  private allowList: AllowList;
  private readonly deniedLog = new LogBudget();
  private readonly evictedLog = new LogBudget();
  private readonly refusedLog = new LogBudget();
  /** The admitted sessions, by id, with their threads and history (services/registry.ts; the admin socket lists them). */
  readonly sessions = new SessionRegistry();

  constructor(
    private readonly ctx: ServerContext,
    private readonly opts: ListenerOptions,
    private readonly table: DispatchTable = defaultDispatchTable(),
  ) {
    this.allowList = new AllowList(opts.allow);
    this.server = opts.bound ?? net.createServer();
    // A bound server's placeholder handler (connections before the server was ready) gives way to ours.
    this.server.removeAllListeners('connection');
    this.server.on('connection', (socket: net.Socket) => this.accept(socket));
    this.server.on('error', (e) => ctx.log.error({ err: e }, 'listener error'));
  }

  listen(): Promise<net.AddressInfo> {
    return new Promise((resolve, reject) => {
      if (this.server.listening) {
        const addr = this.address();
        this.ctx.log.info({ host: addr.address, port: addr.port }, 'listening for DMAs');
        resolve(addr);
        return;
      }
      const onError = (e: Error) => reject(e);
      this.server.once('error', onError);
      this.server.listen(this.opts.port, this.opts.host, () => {
        this.server.off('error', onError);
        const addr = this.address();
        this.ctx.log.info({ host: addr.address, port: addr.port }, 'listening for DMAs');
        resolve(addr);
      });
    });
  }

  address(): net.AddressInfo {
    return this.server.address() as net.AddressInfo;
  }

  /** Every open control connection's counters. */
  stats(): ConnectionStats[] {
    return [...this.connections].map((c) => c.stats());
  }

  get connectionCount(): number {
    return this.connections.size;
  }

  /** Connections accepted since the server started (for the metrics). */
  get accepted(): number {
    return this.acceptedCount;
  }

  /** The open control connections' sessions (for the metrics' sessions by state, src/server/metrics.ts). */
  openSessions(): Session[] {
    return [...this.connections];
  }

  /** The open control connections, for the shutdown drain (./drain.ts). */
  openConnections(): Connection[] {
    return [...this.connections];
  }

  /** SIGHUP: new connections are judged by `cidrs`; those already in stay (docs/operations.md). */
  setAllowList(cidrs: readonly string[]): void {
    this.allowList = new AllowList(cidrs);
  }

  /** Takes no new connections; the open ones go on (the shutdown drain, ./drain.ts). */
  stopAccepting(): void {
    if (this.server.listening) this.server.close();
  }

  private accept(socket: net.Socket): void {
    const address = normalizeAddress(socket.remoteAddress ?? '');
    // Outside the allow-list: closed before any NDMP byte, so a stranger learns
    // nothing of this server (not even that it speaks NDMP).
    if (!this.allowList.allows(address)) {
      const { loud, quieted } = this.deniedLog.take();
      const fields = { peer: `${address}:${socket.remotePort}`, ...(quieted ? { notLogged: quieted } : {}) };
      const text = 'connection from an address not in the allow-list; closed without a greeting';
      if (loud) this.ctx.log.warn(fields, text);
      else this.ctx.log.debug(fields, text);
      socket.on('error', () => undefined);
      socket.destroy();
      return;
    }
    const id = this.nextId++;
    const conn = new Connection(id, socket, this.ctx, this.table, this.opts, (c) => {
      this.connections.delete(c);
      this.sessions.remove(c);
      this.cleanups.add(c.cleanedUp);
      void c.cleanedUp.then(() => this.cleanups.delete(c.cleanedUp));
      if (this.connections.size === 0) for (const r of this.drained.splice(0)) r();
    });
    const a = this.admit(conn);
    if (a.verdict === 'refuse') {
      // Say why before hanging up, as the spec's REFUSED status is for (docs/protocol.md §5.1, draft §4.1.2).
      conn.refuse(a.reason, this.refusedLog.take().loud);
      this.depart(conn);
      return;
    }
    if (a.victim) {
      const { loud, quieted } = this.evictedLog.take();
      const fields = {
        conn: a.victim.id,
        peer: a.victim.peer,
        user: a.victim.user,
        newcomer: conn.peer,
        ...(quieted ? { notLogged: quieted } : {}),
      };
      if (loud) this.ctx.log.warn(fields, a.why);
      else this.ctx.log.debug(fields, a.why);
      a.victim.evict(a.why);
      this.depart(a.victim);
    }
    this.connections.add(conn);
    this.sessions.add(conn);
    this.acceptedCount++;
    conn.start();
  }

  private depart(c: Connection): void {
    const bound = Math.max(16, this.opts.maxConnections);
    for (const old of this.departing) {
      if (this.departing.size < bound) break;
      this.departing.delete(old);
      old.destroyNow();
    }
    this.departing.add(c);
    c.onSocketGone(() => this.departing.delete(c));
  }

  /**
   * Whether `conn` may come in, and who gives way for it. Counts the live
   * connections by slot state; O(connections) per accept, which is small.
   */
  private admit(conn: Connection): Admission {
    const o = this.opts;
    // The reserve leaves at least one slot that anybody may use.
    const reserve = Math.max(0, Math.min(o.reservedConnections, o.maxConnections - 1));
    const unauthenticated: Connection[] = [];
    const idle: Connection[] = [];
    let live = 0;
    let fromPeer = 0;
    for (const c of this.connections) {
      const slot = c.slot;
      if (slot === 'leaving') continue;
      live++;
      if (slot === 'unauthenticated') {
        unauthenticated.push(c);
        if (c.peerKey === conn.peerKey) fromPeer++;
      } else if (slot === 'idle') idle.push(c);
    }
    // One host's idle sockets are its own problem: it gets no more, and the
    // others' slots are untouched (it may log in, or close some).
    if (fromPeer >= o.maxUnauthenticatedPerAddress) {
      return {
        verdict: 'refuse',
        reason: `too many unauthenticated connections from ${conn.peerAddress} (at most ${o.maxUnauthenticatedPerAddress}; log in on one or close some)`,
      };
    }
    // A real DMA authenticates within milliseconds; a socket that sits there
    // unauthenticated is the one to go when the pool is full.
    if (unauthenticated.length >= o.maxUnauthenticated) {
      return {
        verdict: 'admit',
        victim: this.oldestUnauthenticated(unauthenticated),
        why: 'unauthenticated connection closed to make room for a new connection',
      };
    }
    if (unauthenticated.length + idle.length >= o.maxConnections - reserve || live >= o.maxConnections) {
      const idleVictim = this.longestIdle(idle);
      if (idleVictim) {
        return {
          verdict: 'admit',
          victim: idleVictim,
          why: 'idle session closed to make room for a new connection',
        };
      }
      if (unauthenticated.length > 0) {
        return {
          verdict: 'admit',
          victim: this.oldestUnauthenticated(unauthenticated),
          why: 'unauthenticated connection closed to make room for a new connection',
        };
      }
      return {
        verdict: 'refuse',
        reason: `too many connections: ${live} of ${o.maxConnections}, each holding a device or in a request`,
      };
    }
    return { verdict: 'admit', victim: null, why: '' };
  }

  /** The oldest unauthenticated connection, one from an address serving a login penalty first. */
  private oldestUnauthenticated(list: Connection[]): Connection {
    const backoff = this.ctx.authBackoff;
    let best: Connection = list[0]!;
    let bestPenalised = backoff ? backoff.penaltyLeft(best.peerAddress) > 0 : false;
    for (const c of list.slice(1)) {
      const penalised = backoff ? backoff.penaltyLeft(c.peerAddress) > 0 : false;
      if ((penalised && !bestPenalised) || (penalised === bestPenalised && c.id < best.id)) {
        best = c;
        bestPenalised = penalised;
      }
    }
    return best;
  }

  /** The logged-in session without a device that has done nothing for longest; none in a request. */
  private longestIdle(list: Connection[]): Connection | null {
    let best: Connection | null = null;
    for (const c of list) {
      if (c.inRequest) continue;
      if (!best || c.idleSince < best.idleSince) best = c;
    }
    return best;
  }

  /**
   * Stops accepting, tells every DMA the server is shutting down, and waits
   * for the sockets to close and their sessions to clean up (open tapes get
   * their closing filemark before the process may exit).
   */
  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) =>
      this.server.listening ? this.server.close(() => resolve()) : resolve(),
    );
    for (const c of this.connections) c.shutdown('server shutting down');
    await closed;
    // The listener reports closed when its sockets are gone, which can be
    // before each connection has seen its own close: wait for those too.
    if (this.connections.size > 0) await new Promise<void>((r) => this.drained.push(r));
    await Promise.all([...this.cleanups]);
  }
}
