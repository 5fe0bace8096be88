// Data connections (docs/protocol.md §7.6): where the listening side listens and
// what it advertises, and the connecting side's connect. Shared by the mover
// (drive thread) and the data service (data thread); both run off the main
// thread, so these sockets never carry bytes through it.

import net from 'node:net';
import os from 'node:os';
import { ErrorCode, NdmpError } from '../wire/index.js';
import type { TcpAddr } from '../wire/index.js';
import type { PortRange } from './session.js';

export interface ListenOptions {
  readonly dataPorts: PortRange;
  /** The address the DMA reached this server on. */
  readonly localAddress: string;
  /** Overrides it (ServerContext.dataAddress); 0.0.0.0 = every interface. */
  readonly dataAddress: string | null;
}

/**
 * Connects to the first of `addrs` (v4's preference order) that answers; the
 * address used comes back without its environment, as GET_STATE reports it.
 * NDMP_CONNECT_ERR names the last failure when none does.
 */
export async function connectToAny(
  addrs: readonly TcpAddr[],
  peer: string,
): Promise<{ sock: net.Socket; addr: TcpAddr; where: string }> {
  if (addrs.length === 0) throw NdmpError.illegalArgs('no TCP address given');
  let lastErr = '';
  for (const a of addrs) {
    const where = `${ipv4String(a.ipAddr)}:${a.port}`;
    try {
      const sock = await connectTcp(ipv4String(a.ipAddr), a.port);
      return { sock, addr: { ...a, addrEnv: [] }, where };
    } catch (e) {
      lastErr = `${where}: ${(e as Error).message}`;
    }
  }
  throw new NdmpError(ErrorCode.NDMP_CONNECT_ERR, `cannot connect to the ${peer} (${lastErr})`);
}

/** Listens for one data connection: on the configured address, on a port of the configured range. */
export async function listenForData(
  opts: ListenOptions,
): Promise<{ server: net.Server; port: number; ipAddrs: number[] }> {
  const reached = listenHost(opts.localAddress);
  const host = opts.dataAddress ?? reached;
  const { low, high } = opts.dataPorts;
  const ports = low === 0 ? [0] : Array.from({ length: high - low + 1 }, (_, i) => low + i);
  for (const port of ports) {
    const server = net.createServer({ pauseOnConnect: true });
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen({ host, port, exclusive: true }, () => {
          server.off('error', reject);
          resolve();
        });
      });
    } catch (e) {
      server.close();
      if ((e as NodeJS.ErrnoException).code === 'EADDRINUSE') continue;
      throw new NdmpError(ErrorCode.NDMP_CONNECT_ERR, `cannot listen on ${host}: ${(e as Error).message}`);
    }
    const bound = server.address() as net.AddressInfo;
    return { server, port: bound.port, ipAddrs: advertised(host, reached).map(ipv4Number) };
  }
  throw new NdmpError(ErrorCode.NDMP_CONNECT_ERR, `no free data port in ${low}-${high}`);
}

export function drained(sock: net.Socket): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      sock.off('drain', done);
      sock.off('close', done);
      resolve();
    };
    sock.on('drain', done);
    sock.on('close', done);
  });
}

export function connectTcp(host: string, port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host, port });
    const timer = setTimeout(() => sock.destroy(new Error('connect timed out')), 30_000);
    sock.once('connect', () => {
      clearTimeout(timer);
      sock.off('error', reject);
      sock.pause();
      resolve(sock);
    });
    sock.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

/** NDMP addresses are IPv4: listen where the DMA reached us, or on loopback if that was IPv6. */
function listenHost(localAddress: string): string {
  const v4 = localAddress.startsWith('::ffff:') ? localAddress.slice(7) : localAddress;
  return net.isIPv4(v4) ? v4 : '127.0.0.1';
}

/**
 * The addresses a listener on `host` offers, best first: itself, or for the
 * wildcard the one the DMA reached, then the host's other IPv4 addresses.
 */
function advertised(host: string, reached: string): string[] {
  if (host !== '0.0.0.0') return [host];
  const all = Object.values(os.networkInterfaces())
    .flat()
    .filter((i) => i !== undefined && i.family === 'IPv4')
    .map((i) => i!.address);
  return [reached, ...all.filter((a) => a !== reached)];
}

export function ipv4Number(host: string): number {
  return host.split('.').reduce((acc, part) => acc * 256 + Number(part), 0) >>> 0;
}

export function ipv4String(n: number): string {
  return [n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff].join('.');
}
