// The TCP listener: accepts DMA control connections and gives each its own
// Connection. Connections share only the immutable ServerContext.

import net from 'node:net';
import type { ServerContext } from '../services/session.js';
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
  /** Connections not yet authenticated beyond this many are refused. */
  maxUnauthenticated: number;
  maxRecordSize: number;
  preAuthTimeoutMs: number;
}

export const DEFAULT_LISTENER_OPTIONS: ListenerOptions = {
  host: '127.0.0.1',
  port: 10000,
  maxConnections: 64,
  maxUnauthenticated: 16,
  maxRecordSize: DEFAULT_MAX_RECORD_SIZE,
  preAuthTimeoutMs: 30_000,
};

export class NdmpServer {
  private readonly server: net.Server;
  private readonly connections = new Set<Connection>();
  /** Cleanups of closed connections still running (tapes being closed, drive threads stopping). */
  private readonly cleanups = new Set<Promise<void>>();
  /** close() waiting for the last connection to have closed. */
  private readonly drained: (() => void)[] = [];
  private nextId = 1;

  constructor(
    private readonly ctx: ServerContext,
    private readonly opts: ListenerOptions,
    private readonly table: DispatchTable = defaultDispatchTable(),
  ) {
    this.server = net.createServer((socket) => this.accept(socket));
    this.server.on('error', (e) => ctx.log.error({ err: e }, 'listener error'));
  }

  listen(): Promise<net.AddressInfo> {
    return new Promise((resolve, reject) => {
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

  private accept(socket: net.Socket): void {
    const id = this.nextId++;
    const conn = new Connection(id, socket, this.ctx, this.table, this.opts, (c) => {
      this.connections.delete(c);
      this.cleanups.add(c.cleanedUp);
      void c.cleanedUp.then(() => this.cleanups.delete(c.cleanedUp));
      if (this.connections.size === 0) for (const r of this.drained.splice(0)) r();
    });
    // Say why before hanging up, as the spec's REFUSED status is for (draft §4.1.2).
    if (this.connections.size >= this.opts.maxConnections) {
      conn.refuse('too many connections');
      return;
    }
    // Peers that have not logged in get a share of the slots only, so they cannot
    // lock out the DMAs that do.
    let unauthenticated = 0;
    for (const c of this.connections) if (!c.isAuthenticated) unauthenticated++;
    if (unauthenticated >= this.opts.maxUnauthenticated) {
      conn.refuse('too many unauthenticated connections');
      return;
    }
    this.connections.add(conn);
    conn.start();
  }

  /**
   * Stops accepting, tells every DMA the server is shutting down, and waits
   * for the sockets to close and their sessions to clean up (open tapes get
   * their closing filemark before the process may exit).
   */
  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const c of this.connections) c.shutdown('server shutting down');
    await closed;
    // The listener reports closed when its sockets are gone, which can be
    // before each connection has seen its own close: wait for those too.
    if (this.connections.size > 0) await new Promise<void>((r) => this.drained.push(r));
    await Promise.all([...this.cleanups]);
  }
}
