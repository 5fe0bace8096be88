// An ndmpd server inside the test process (real sockets, port 0), with a log
// captured in memory, plus a raw socket that speaks bytes for abuse tests.

import net from 'node:net';
import { Writable } from 'node:stream';
import { statfsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { Credentials } from '../../src/services/credentials.js';
import { NdmpServer, DEFAULT_LISTENER_OPTIONS } from '../../src/server/listener.js';
import type { ListenerOptions } from '../../src/server/listener.js';
import type { DispatchTable } from '../../src/server/dispatch.js';
import type { ServerContext } from '../../src/services/session.js';
import { createLogger } from '../../src/util/log.js';
import { HistoryHub, historyDefaults } from '../../src/history/hub.js';
import { NdmpClient } from '../../src/dma/client.js';
import { RecordFramer, decodeHeader } from '../../src/wire/index.js';
import type { Header } from '../../src/wire/index.js';
import { requestRecord } from './xdr-bytes.js';

export const USER = 'dma';
export const PASSWORD = 'pa55-Word!';

export interface TestServer {
  server: NdmpServer;
  port: number;
  exportDir: string;
  logText(): string;
  close(): Promise<void>;
  statfs: ReturnType<typeof statfsSync>;
}

export async function startServer(
  opts: Partial<ListenerOptions> = {},
  ctxOverrides: Partial<ServerContext> = {},
  table?: DispatchTable,
): Promise<TestServer> {
  const exportDir = mkdtempSync(join(os.tmpdir(), 'ndmpd-export-'));
  let logs = '';
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      logs += chunk.toString();
      cb();
    },
  });
  const log = createLogger({ level: 'debug', format: 'json', destination: sink });
  const history = new HistoryHub(
    historyDefaults(join(exportDir, '..', `${exportDir.split('/').pop()}-spool`)),
    log,
  );
  const ctx: ServerContext = {
    info: {
      vendorName: 'test vendor',
      productName: 'test product',
      revisionNumber: '9.9',
      hostname: 'testhost',
      osType: 'Linux',
      osVers: '6',
      hostId: 'abcd1234',
    },
    credentials: Credentials.fromEntries([[USER, PASSWORD]]),
    exports: [{ name: 'data', path: exportDir }],
    log,
    authFailureDelayMs: 5,
    history,
    stateDir: join(exportDir, '..', `${exportDir.split('/').pop()}-state`),
    ...ctxOverrides,
  };
  const server = new NdmpServer(ctx, { ...DEFAULT_LISTENER_OPTIONS, port: 0, ...opts }, table);
  const addr = await server.listen();
  return {
    server,
    port: addr.port,
    exportDir,
    logText: () => logs,
    statfs: statfsSync(exportDir),
    async close() {
      await server.close();
      await ctx.history?.shutdown();
      rmSync(exportDir, { recursive: true, force: true });
    },
  };
}

export async function client(
  port: number,
  login: 'none' | 'text' | 'md5' = 'md5',
  version?: 3 | 4,
): Promise<NdmpClient> {
  const c = await NdmpClient.connect({ host: '127.0.0.1', port, timeoutMs: 5000 });
  if (login === 'none') return c;
  await c.open(version);
  if (login === 'text') await c.authText(USER, PASSWORD);
  else await c.authMd5(USER, PASSWORD);
  return c;
}

/** A socket that sends bytes as given and hands back whole records. */
export class RawPeer {
  private readonly framer = new RecordFramer();
  private readonly records: Buffer[] = [];
  private waiters: Array<() => void> = [];
  closed = false;
  private seq = 0;

  /** Bytes received in all (a peer the allow-list turns away gets none). */
  bytes = 0;

  protected constructor(readonly socket: net.Socket) {
    socket.on('data', (d: Buffer) => {
      this.bytes += d.length;
      try {
        for (const r of this.framer.push(d)) {
          this.onRecord(r);
          this.records.push(r);
        }
      } catch {
        /* the server never sends bad framing; ignore */
      }
      this.wake();
    });
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
    socket.on('error', () => undefined);
  }

  static connect(port: number): Promise<RawPeer> {
    return RawPeer.open(port, {}).then((s) => new RawPeer(s));
  }

  /** A connected socket for a peer of this kind, from `localAddress` if given. */
  protected static open(port: number, opts: { host?: string; localAddress?: string }): Promise<net.Socket> {
    return new Promise((res, rej) => {
      const s = net.connect({ host: opts.host ?? '127.0.0.1', port, localAddress: opts.localAddress }, () =>
        res(s),
      );
      s.once('error', rej);
    });
  }

  /** Sees every record as it arrives (before next() hands it out). */
  protected onRecord(_record: Buffer): void {}

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** The next record from the server, or null when the connection closed first. */
  async next(timeoutMs = 3000): Promise<{ header: Header; record: Buffer } | null> {
    const deadline = Date.now() + timeoutMs;
    while (this.records.length === 0) {
      if (this.closed) return null;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error('no record from server in time');
      await new Promise<void>((r) => {
        const t = setTimeout(r, left);
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
    const record = this.records.shift()!;
    return { header: decodeHeader(record), record };
  }

  /** Waits for the server to close the connection. */
  async waitClosed(timeoutMs = 3000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (!this.closed && Date.now() < deadline) {
      this.records.length = 0;
      await new Promise((r) => setTimeout(r, 20));
    }
    return this.closed;
  }

  /** A request header + raw body bytes, framed as one record (its sequence: lastSequence). */
  request(code: number, body: Buffer = Buffer.alloc(0)): Buffer {
    return requestRecord(++this.seq, code, body);
  }

  get lastSequence(): number {
    return this.seq;
  }

  send(bytes: Buffer): void {
    this.socket.write(bytes);
  }

  close(): void {
    this.socket.destroy();
  }
}

export function u32be(...vals: number[]): Buffer {
  const b = Buffer.alloc(vals.length * 4);
  vals.forEach((v, i) => b.writeUInt32BE(v >>> 0, i * 4));
  return b;
}
