// Mover throughput: a stream sent over TCP to the mover (MOVER_LISTEN, mode
// READ) and written to a virtual tape, from the first byte to
// NOTIFY_MOVER_HALTED, against baselines measured in the same run: file
// writes alone, TCP loopback alone, and a minimal TCP-into-a-file loop in a
// worker (the least a TCP-fed mover must do).
//
//   npm run bench -- --mover-mib 1024 --record-kib 256

import { closeSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Worker } from 'node:worker_threads';
import { Writable } from 'node:stream';

import { Library } from '../src/devices/library.js';
import { createTapeImage } from '../src/devices/tape-image.js';
import { NdmpClient } from '../src/dma/client.js';
import { DEFAULT_LISTENER_OPTIONS, NdmpServer } from '../src/server/listener.js';
import { Credentials } from '../src/services/credentials.js';
import { ipv4String } from '../src/services/data-connection.js';
import { createLogger } from '../src/util/log.js';
import { AddrType, INVALID_U64, M, MoverMode, TapeOpenMode } from '../src/wire/index.js';

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}

function fileCeiling(path: string, total: number, record: number): number {
  const buf = Buffer.alloc(record, 0x5a);
  const fd = openSync(path, 'w');
  const start = performance.now();
  for (let done = 0; done < total; done += record) writeSync(fd, buf);
  closeSync(fd);
  return performance.now() - start;
}

/**
 * The same stream over TCP loopback into a worker thread that only counts it,
 * or (with `file`) that cuts it into records and writes them to a plain file:
 * the least any TCP-fed mover must do, without NDMP or a tape index.
 */
async function tcpBaseline(total: number, record: number, file: string | null): Promise<number> {
  const worker = new Worker(
    `const net = require('node:net');
     const fs = require('node:fs');
     const { parentPort, workerData } = require('node:worker_threads');
     const fd = workerData.file ? fs.openSync(workerData.file, 'w') : -1;
     const rec = Buffer.allocUnsafe(workerData.record);
     let fill = 0;
     const s = net.createServer((sock) => {
       sock.on('data', (d) => {
         if (fd < 0) return;
         for (let o = 0; o < d.length; ) {
           const n = Math.min(d.length - o, rec.length - fill);
           d.copy(rec, fill, o, o + n);
           fill += n;
           o += n;
           if (fill === rec.length) {
             fs.writeSync(fd, rec);
             fill = 0;
           }
         }
       });
       sock.on('end', () => {
         if (fd >= 0) fs.closeSync(fd);
         parentPort.postMessage({ done: true });
       });
     });
     s.listen(0, '127.0.0.1', () => parentPort.postMessage({ port: s.address().port }));`,
    { eval: true, workerData: { file, record } },
  );
  try {
    const port = await new Promise<number>((r) => worker.once('message', (m: { port: number }) => r(m.port)));
    const done = new Promise<void>((r) => worker.on('message', (m: { done?: boolean }) => m.done && r()));
    const sock = net.connect({ host: '127.0.0.1', port });
    await new Promise((r) => sock.once('connect', r));
    const chunk = Buffer.alloc(1024 * 1024, 0x5a);
    const start = performance.now();
    for (let sent = 0; sent < total; sent += chunk.length) {
      if (!sock.write(chunk)) await new Promise((r) => sock.once('drain', r));
    }
    sock.end();
    await done;
    return performance.now() - start;
  } finally {
    await worker.terminate();
    if (file) rmSync(file, { force: true });
  }
}

async function throughMover(lib: Library, tape: string, total: number, record: number): Promise<number> {
  const quiet = new Writable({ write: (_c, _e, cb) => cb() });
  const ctx = {
    info: {
      vendorName: 'bench',
      productName: 'bench',
      revisionNumber: '0',
      hostname: 'h',
      osType: 'Linux',
      osVers: '',
      hostId: '0',
    },
    credentials: Credentials.fromEntries([['bench', 'bench-pass']]),
    exports: [],
    log: createLogger({ level: 'warn', format: 'json', destination: quiet }),
    library: lib,
  };
  const server = new NdmpServer(ctx, { ...DEFAULT_LISTENER_OPTIONS, port: 0 });
  const { port } = await server.listen();
  const c = await NdmpClient.connect({ host: '127.0.0.1', port, timeoutMs: 60_000 });
  try {
    await c.open(4);
    await c.authText('bench', 'bench-pass');
    await c.call(M.MOVER_SET_RECORD_SIZE, { len: record });
    await c.call(M.TAPE_OPEN, { device: tape, mode: TapeOpenMode.NDMP_TAPE_RDWR_MODE });
    await c.call(M.MOVER_SET_WINDOW, { offset: 0n, length: INVALID_U64 });
    const halted = new Promise<void>((resolve) => c.onPost(M.NOTIFY_MOVER_HALTED, () => resolve()));
    const { connectAddr } = await c.call(M.MOVER_LISTEN, {
      mode: MoverMode.NDMP_MOVER_MODE_READ,
      addrType: AddrType.NDMP_ADDR_TCP,
    });
    const addr = (connectAddr as { tcpAddrs: { ipAddr: number; port: number }[] }).tcpAddrs[0]!;
    const data = net.connect({ host: ipv4String(addr.ipAddr), port: addr.port });
    await new Promise((r) => data.once('connect', r));
    const chunk = Buffer.alloc(1024 * 1024, 0x5a);
    const start = performance.now();
    for (let sent = 0; sent < total; sent += chunk.length) {
      if (!data.write(chunk)) await new Promise((r) => data.once('drain', r));
    }
    data.end();
    await halted;
    const ms = performance.now() - start;
    await c.call(M.MOVER_STOP, {});
    await c.call(M.TAPE_CLOSE, {});
    return ms;
  } finally {
    c.destroy();
    await server.close();
  }
}

export async function benchMoverThroughput(): Promise<void> {
  const mib = arg('mover-mib', 1024);
  const record = arg('record-kib', 256) * 1024;
  const total = mib * 1024 * 1024;
  const dir = mkdtempSync(join(os.tmpdir(), 'ndmpd-bench-mover-'));
  try {
    const lib = Library.open(join(dir, 'library'));
    const runs: { mover: number; ceiling: number; tcp: number; tcpFile: number }[] = [];
    for (let i = 0; i < 3; i++) {
      const tape = join(lib.dir, 'tapes', `BENCH${i}`);
      createTapeImage(tape, { capacity: BigInt(total) * 2n });
      const mover = await throughMover(lib, tape, total, record);
      rmSync(tape, { force: true });
      rmSync(`${tape}.idx`, { force: true });
      const ceiling = fileCeiling(join(dir, 'plain'), total, record);
      rmSync(join(dir, 'plain'), { force: true });
      runs.push({
        mover,
        ceiling,
        tcp: await tcpBaseline(total, record, null),
        tcpFile: await tcpBaseline(total, record, join(dir, 'tcp-file')),
      });
    }
    const median = (xs: number[]) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    const moverMs = median(runs.map((r) => r.mover));
    const ceilingMs = median(runs.map((r) => r.ceiling));
    const tcpMs = median(runs.map((r) => r.tcp));
    const tcpFileMs = median(runs.map((r) => r.tcpFile));
    const rate = (ms: number) => (total / 1e6 / (ms / 1000)).toFixed(0);
    console.log(`mover throughput (${mib} MiB over TCP loopback, ${record / 1024} KiB records, median of 3)`);
    console.log(`  mover → virtual tape:         ${rate(moverMs)} MB/s  (${moverMs.toFixed(0)} ms)`);
    console.log(`  baseline, file writes only:   ${rate(ceilingMs)} MB/s  (${ceilingMs.toFixed(0)} ms)`);
    console.log(`  baseline, TCP loopback only:   ${rate(tcpMs)} MB/s  (${tcpMs.toFixed(0)} ms)`);
    console.log(`  baseline, TCP into a file:    ${rate(tcpFileMs)} MB/s  (${tcpFileMs.toFixed(0)} ms)`);
    console.log(`  ratio mover / (TCP into a file): ${(tcpFileMs / moverMs).toFixed(2)}×`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
