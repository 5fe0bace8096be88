// Mover throughput: a stream sent over TCP to the mover (MOVER_LISTEN, mode
// READ) and written to a virtual tape, from the first byte to
// NOTIFY_MOVER_HALTED, against baselines measured in the same run: file
// writes alone, TCP loopback alone, and a minimal TCP-into-a-file loop in a
// worker (the least a TCP-fed mover must do).
//
//   npm run bench -- --mover-mib 1024 --record-kib 256
//
// Then the tape image's write patterns (docs/tape-image.md, "The write
// pattern"): the mover's writes (64 records of 10 KiB per write, as it takes
// them from the ring) straight into a virtual tape under each cache policy,
// and the restore right after (record by record, as the mover reads), with the
// CPU time of the writing thread (/proc/thread-self/schedstat, ns), wall time,
// and the tape's pages left in the page cache. Each run writes a new tape;
// "warm" runs start right after the last one freed its pages, "rested" runs
// --pattern-rest-s later (on a VM that reports free pages to its host, such
// as this one, memory that lay free that long costs a host fault per page
// when it is touched again).
//
//   node dist/bench/mover-throughput.js --pattern-mib 1024 --pattern-runs 3 --pattern-rest-s 6

import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { pathToFileURL } from 'node:url';
import net from 'node:net';
import os from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Worker } from 'node:worker_threads';
import { Writable } from 'node:stream';

import { Library } from '../src/devices/library.js';
import { createTapeImage, openTapeImage } from '../src/devices/tape-image.js';
import type { TapeCachePolicy } from '../src/devices/tape-image.js';
import { TAPE_CACHE_POLICIES } from '../src/devices/tape-write-behind.js';
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
  await benchTapeWritePatterns();
}

// ---- the tape image's write patterns ----------------------------------------

/** CPU time of the calling thread, in ms (schedstat's first field is ns on the CPU). */
function threadCpuMs(): number {
  return Number(readFileSync('/proc/thread-self/schedstat', 'utf8').split(' ')[0]) / 1e6;
}

/** Bytes of `path` in the page cache (util-linux fincore), or NaN. */
function cachedBytes(path: string): number {
  const r = spawnSync('fincore', ['--bytes', '--noheadings', '--output', 'RES', path], { encoding: 'utf8' });
  return r.status === 0 ? Number(r.stdout.trim()) : NaN;
}

type Pattern = TapeCachePolicy;
const PATTERNS: readonly Pattern[] = TAPE_CACHE_POLICIES;

interface PatternRun {
  writeMs: number;
  writeCpuMs: number;
  /** The longest single write call. */
  maxWriteMs: number;
  readMs: number;
  readCpuMs: number;
  cachedMiB: number;
}

function patternRun(dir: string, pattern: Pattern, total: number): PatternRun {
  const rs = 10240;
  const batch = Buffer.alloc(64 * rs);
  for (let o = 0; o + 4 <= batch.length; o += 4) batch.writeUInt32LE((o * 2654435761) >>> 0, o);
  const path = join(dir, `pattern-${pattern}`);
  createTapeImage(path, { capacity: BigInt(total) * 2n });
  const cache = pattern;
  try {
    const tape = openTapeImage(path, { readOnly: false, cache });
    let maxWriteMs = 0;
    const cpu0 = threadCpuMs();
    const t0 = performance.now();
    for (let done = 0; done < total; done += batch.length) {
      const a = performance.now();
      tape.writeRecords(batch, rs);
      maxWriteMs = Math.max(maxWriteMs, performance.now() - a);
    }
    tape.close();
    const writeMs = performance.now() - t0;
    const writeCpuMs = threadCpuMs() - cpu0;
    const cachedMiB = cachedBytes(path) / 2 ** 20;
    // The restore right after: every record, front to back, as the mover serves them.
    const back = openTapeImage(path, { readOnly: true, cache });
    const rec = Buffer.alloc(rs);
    const cpu1 = threadCpuMs();
    const t1 = performance.now();
    while (back.readRecord(rec, { crossFilemark: false }).kind === 'record');
    const readMs = performance.now() - t1;
    const readCpuMs = threadCpuMs() - cpu1;
    back.close();
    return { writeMs, writeCpuMs, maxWriteMs, readMs, readCpuMs, cachedMiB };
  } finally {
    rmSync(path, { force: true });
    rmSync(`${path}.idx`, { force: true });
  }
}

export async function benchTapeWritePatterns(): Promise<void> {
  const mib = arg('pattern-mib', 512);
  const runs = arg('pattern-runs', 3);
  const restS = arg('pattern-rest-s', 6);
  const total = mib * 1024 * 1024;
  const dir = mkdtempSync(join(os.tmpdir(), 'ndmpd-bench-pattern-'));
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  try {
    for (const [label, rest] of [
      ['warm', 0],
      [`rested ${restS} s`, restS],
    ] as const) {
      if (label !== 'warm' && rest <= 0) continue;
      const results = new Map<Pattern, PatternRun[]>(PATTERNS.map((p) => [p, []]));
      for (let i = 0; i < runs; i++) {
        for (const p of PATTERNS) {
          if (rest > 0) await new Promise((r) => setTimeout(r, rest * 1000));
          results.get(p)!.push(patternRun(dir, p, total));
        }
      }
      console.log(
        `tape write patterns (${mib} MiB in 640 KiB writes of 10 KiB records, then read back; ${label}; median of ${runs})`,
      );
      console.log(
        '  pattern        write ms  write CPU ms  longest write ms  cached MiB  restore ms  restore CPU ms',
      );
      for (const [p, rs] of results) {
        const m = (k: keyof PatternRun) => median(rs.map((r) => r[k]));
        console.log(
          `  ${p.padEnd(13)} ${m('writeMs').toFixed(0).padStart(9)} ${m('writeCpuMs').toFixed(0).padStart(13)} ` +
            `${m('maxWriteMs').toFixed(1).padStart(17)} ${m('cachedMiB').toFixed(0).padStart(11)} ` +
            `${m('readMs').toFixed(0).padStart(11)} ${m('readCpuMs').toFixed(0).padStart(15)}`,
        );
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  if (process.argv.includes('--patterns-only')) await benchTapeWritePatterns();
  else await benchMoverThroughput();
}
