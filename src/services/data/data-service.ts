// The NDMP data service of one session, run on its data thread (PROTOCOL.md
// §7.1; draft §3.5). This is its state machine and data connection; the
// backup and recover engines that run in ACTIVE come with the backup work.
//
//   IDLE ─LISTEN─► LISTEN ─mover connects─► CONNECTED ─START_*─► ACTIVE
//     └───CONNECT──────────────────────────► CONNECTED            │
//   any of LISTEN/CONNECTED/ACTIVE ─ABORT, error, end─► HALTED ─STOP─► IDLE
//
// Every entry into HALTED goes through halt(), which closes the data
// connection and posts NOTIFY_DATA_HALTED, even after DATA_ABORT.

import type net from 'node:net';
import {
  AddrType,
  DataHaltReason,
  DataOperation,
  DataState as S,
  DataStateUnsupported,
  ErrorCode,
  NdmpError,
} from '../../wire/index.js';
import type { Addr, Pval } from '../../wire/index.js';
import { connectTcp, ipv4String, listenForData } from '../data-connection.js';
import type { ListenOptions } from '../data-connection.js';
import type { DataState } from './protocol.js';

export interface DataHooks {
  halted(reason: number, text: string): void;
  log(level: 'debug' | 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>): void;
}

export class DataService {
  private state: number = S.NDMP_DATA_STATE_IDLE;
  private operation: number = DataOperation.NDMP_DATA_OP_NOACTION;
  private haltReason: number = DataHaltReason.NDMP_DATA_HALT_NA;
  private bytesProcessed = 0n;
  private dataAddr: Addr = { addrType: AddrType.NDMP_ADDR_LOCAL };
  private readOffset = 0n;
  private readLength = 0n;
  private env: Pval[] = [];
  private server: net.Server | null = null;
  private socket: net.Socket | null = null;

  constructor(
    private readonly opts: ListenOptions,
    private readonly hooks: DataHooks,
  ) {}

  getState(): DataState {
    return {
      // No estimates yet: say so rather than send zeros that look like facts.
      unsupported: DataStateUnsupported.EST_BYTES_REMAIN | DataStateUnsupported.EST_TIME_REMAIN,
      operation: this.operation,
      state: this.state,
      haltReason: this.haltReason,
      bytesProcessed: this.bytesProcessed,
      estBytesRemain: 0n,
      estTimeRemain: 0,
      dataConnectionAddr: this.dataAddr,
      readOffset: this.readOffset,
      readLength: this.readLength,
    };
  }

  async listen(addrType: number): Promise<Addr> {
    if (this.state !== S.NDMP_DATA_STATE_IDLE) throw this.illegalState('DATA_LISTEN');
    if (addrType === AddrType.NDMP_ADDR_LOCAL) {
      // The session's own mover connects through the server (MOVER_CONNECT LOCAL).
      this.state = S.NDMP_DATA_STATE_LISTEN;
      this.dataAddr = { addrType: AddrType.NDMP_ADDR_LOCAL };
      return this.dataAddr;
    }
    if (addrType !== AddrType.NDMP_ADDR_TCP)
      throw NdmpError.illegalArgs(`address type ${addrType} is not supported`);
    const { server, port, ipAddrs } = await listenForData(this.opts);
    this.server = server;
    server.on('connection', (sock) => this.onAccept(sock));
    server.on('error', (e: NodeJS.ErrnoException) => {
      if (this.server === server) {
        this.halt(
          DataHaltReason.NDMP_DATA_HALT_CONNECT_ERROR,
          `data listener failed: ${e.code ?? e.message}`,
        );
      }
    });
    this.state = S.NDMP_DATA_STATE_LISTEN;
    this.dataAddr = {
      addrType: AddrType.NDMP_ADDR_TCP,
      tcpAddrs: ipAddrs.map((ipAddr) => ({ ipAddr, port, addrEnv: [] })),
    };
    this.hooks.log('info', 'data service listening', { port });
    return this.dataAddr;
  }

  async connect(addr: Addr): Promise<void> {
    if (this.state !== S.NDMP_DATA_STATE_IDLE) throw this.illegalState('DATA_CONNECT');
    if (addr.addrType === AddrType.NDMP_ADDR_LOCAL) {
      throw NdmpError.illegalState('the mover is not listening for a LOCAL connection');
    }
    if (addr.addrType !== AddrType.NDMP_ADDR_TCP) {
      throw NdmpError.illegalArgs(`address type ${addr.addrType} is not supported`);
    }
    if (addr.tcpAddrs.length === 0) throw NdmpError.illegalArgs('no TCP address given');
    let lastErr = '';
    for (const a of addr.tcpAddrs) {
      const host = ipv4String(a.ipAddr);
      try {
        const sock = await connectTcp(host, a.port);
        // A single address, no environment (PROTOCOL.md §7.1).
        this.dataAddr = { addrType: AddrType.NDMP_ADDR_TCP, tcpAddrs: [{ ...a, addrEnv: [] }] };
        this.attach(sock);
        this.hooks.log('info', 'data service connected', { peer: `${host}:${a.port}` });
        return;
      } catch (e) {
        lastErr = `${host}:${a.port}: ${(e as Error).message}`;
      }
    }
    throw new NdmpError(ErrorCode.NDMP_CONNECT_ERR, `cannot connect to the mover (${lastErr})`);
  }

  abort(): void {
    switch (this.state) {
      case S.NDMP_DATA_STATE_LISTEN:
      case S.NDMP_DATA_STATE_CONNECTED:
      case S.NDMP_DATA_STATE_ACTIVE:
        this.halt(DataHaltReason.NDMP_DATA_HALT_ABORTED, 'aborted by the DMA');
        return;
      default:
        throw this.illegalState('DATA_ABORT');
    }
  }

  stop(): void {
    if (this.state !== S.NDMP_DATA_STATE_HALTED) throw this.illegalState('DATA_STOP');
    // Back to IDLE: every variable and the environment are reset (PROTOCOL.md §7.1).
    this.state = S.NDMP_DATA_STATE_IDLE;
    this.operation = DataOperation.NDMP_DATA_OP_NOACTION;
    this.haltReason = DataHaltReason.NDMP_DATA_HALT_NA;
    this.bytesProcessed = 0n;
    this.dataAddr = { addrType: AddrType.NDMP_ADDR_LOCAL };
    this.readOffset = 0n;
    this.readLength = 0n;
    this.env = [];
  }

  getEnv(): Pval[] {
    if (this.state !== S.NDMP_DATA_STATE_ACTIVE && this.state !== S.NDMP_DATA_STATE_HALTED) {
      throw this.illegalState('DATA_GET_ENV');
    }
    return this.env;
  }

  shutdown(): void {
    if (this.state !== S.NDMP_DATA_STATE_IDLE && this.state !== S.NDMP_DATA_STATE_HALTED) {
      this.halt(DataHaltReason.NDMP_DATA_HALT_ABORTED, 'session closed');
    }
    this.dropConnection();
  }

  private illegalState(what: string): NdmpError {
    return NdmpError.illegalState(`${what} is not allowed in data state ${stateName(this.state)}`);
  }

  private onAccept(sock: net.Socket): void {
    if (this.state !== S.NDMP_DATA_STATE_LISTEN || this.socket) {
      sock.destroy();
      return;
    }
    this.server?.close();
    this.server = null;
    this.hooks.log('info', 'data connection accepted', { peer: `${sock.remoteAddress}:${sock.remotePort}` });
    this.attach(sock);
  }

  private attach(sock: net.Socket): void {
    this.socket = sock;
    this.state = S.NDMP_DATA_STATE_CONNECTED;
    sock.setNoDelay(true);
    sock.on('error', (e: NodeJS.ErrnoException) => {
      if (this.socket === sock) {
        this.halt(
          DataHaltReason.NDMP_DATA_HALT_CONNECT_ERROR,
          `data connection failed: ${e.code ?? e.message}`,
        );
      }
    });
    // Before an operation starts, the peer going away ends the connection.
    sock.on('end', () => {
      if (this.socket === sock && this.state === S.NDMP_DATA_STATE_CONNECTED) {
        this.halt(DataHaltReason.NDMP_DATA_HALT_CONNECT_ERROR, 'the mover closed the data connection');
      }
    });
    sock.resume();
  }

  private halt(reason: number, text: string): void {
    if (this.state === S.NDMP_DATA_STATE_HALTED || this.state === S.NDMP_DATA_STATE_IDLE) return;
    this.state = S.NDMP_DATA_STATE_HALTED;
    this.haltReason = reason;
    this.dropConnection();
    this.hooks.log(
      reason === DataHaltReason.NDMP_DATA_HALT_SUCCESSFUL ? 'info' : 'warn',
      'data service halted',
      {
        reason: haltName(reason),
        text,
      },
    );
    this.hooks.halted(reason, text);
  }

  private dropConnection(): void {
    this.server?.close();
    this.server = null;
    if (this.socket) {
      this.socket.destroy();
      this.socket = null;
    }
  }
}

function stateName(s: number): string {
  return ['IDLE', 'ACTIVE', 'HALTED', 'LISTEN', 'CONNECTED'][s] ?? String(s);
}
function haltName(r: number): string {
  return ['NA', 'SUCCESSFUL', 'ABORTED', 'INTERNAL_ERROR', 'CONNECT_ERROR'][r] ?? String(r);
}
