// The metrics endpoint and the history warnings end to end (real sockets, the
// real history thread; docs/operations.md "Monitoring" and "History
// warnings"): two LOCAL backups (one DMA stops reading, so its history
// spools) and a restore, with /metrics read while they run and after: the
// figures move, and at the end they match the jobs' own (bytes and files of
// the backups and the restore); a failed login and a refused request are
// counted; the slow DMA gets the history warning as a LOG_MESSAGE and its
// backup's last log line carries the figures; other paths are 404. And the
// ndmpd binary: no metrics port unless asked, a port in use is one line and exit 2.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { Library } from '../../src/devices/library.js';
import type { NdmpClient } from '../../src/dma/client.js';
import { HistoryHub, historyDefaults } from '../../src/history/hub.js';
import { ServerMetrics, sessionStatesOf } from '../../src/server/metrics.js';
import { createLogger } from '../../src/util/log.js';
import {
  AddrType,
  DataHaltReason,
  INVALID_U64,
  LogType,
  M,
  MoverMode,
  TapeOpenMode,
} from '../../src/wire/index.js';
import type { HaltedPost, LogMessagePost } from '../../src/wire/index.js';
import { client, startServer } from '../helpers/in-process.js';
import type { TestServer } from '../helpers/in-process.js';
import { startLocalBackup } from '../helpers/local-backup.js';
import { NDMPD_BIN, startNdmpd } from '../helpers/ndmpd-process.js';

/** With ~3.6 KiB of history each, ~7 MB of history: more than the small credit and memory below hold. */
const FILES = 2000;

function makeDeepTree(root: string, files: number): void {
  let dir = root;
  for (let i = 0; i < 13; i++) dir = join(dir, `d${i}-${'y'.repeat(250)}`);
  mkdirSync(dir, { recursive: true });
  for (let i = 0; i < files; i++) writeFileSync(join(dir, `f${String(i).padStart(5, '0')}`), `${i}\n`);
}

type Scrape = Map<string, number>;

/** GET /metrics, parsed: `name{labels}` → value. */
async function scrape(port: number): Promise<Scrape> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(5000) });
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^text\/plain/);
  const out: Scrape = new Map();
  for (const line of (await res.text()).split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    out.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return out;
}

function get(s: Scrape, key: string): number {
  return s.get(key) ?? 0;
}

/** The sum of every series of `name` whose labels include `has`. */
function sum(s: Scrape, name: string, has = ''): number {
  let t = 0;
  for (const [k, v] of s) if ((k === name || k.startsWith(`${name}{`)) && k.includes(has)) t += v;
  return t;
}

async function waitFor(cond: () => boolean | Promise<boolean>, what: string, ms = 60_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function logLines(srv: TestServer): Array<Record<string, unknown>> {
  return srv
    .logText()
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

interface Job {
  halted: Promise<HaltedPost>;
  logs: LogMessagePost[];
  fhEntries: number;
}

function watch(c: NdmpClient): Job {
  const j: Job = { halted: null as unknown as Promise<HaltedPost>, logs: [], fhEntries: 0 };
  c.onPost(M.FH_ADD_FILE, (b) => (j.fhEntries += b.files.length));
  c.onPost(M.LOG_MESSAGE, (b) => j.logs.push(b));
  j.halted = new Promise((r) => c.onPost(M.NOTIFY_DATA_HALTED, r));
  return j;
}

/** "backup completed: N entries, B bytes" → the job's own figures. */
function backupFigures(text = ''): { files: number; bytes: number } {
  const m = /: (\d+) entries, (\d+) bytes$/.exec(text);
  assert.ok(m, text);
  return { files: Number(m[1]), bytes: Number(m[2]) };
}

async function finish(c: NdmpClient): Promise<void> {
  await c.call(M.DATA_STOP, {});
  await c.call(M.MOVER_STOP, {});
  await c.call(M.TAPE_CLOSE, {});
}

describe('metrics at GET /metrics, and history warnings', { timeout: 300_000 }, () => {
  let dir: string;
  let lib: Library;
  let srv: TestServer;
  let metrics: ServerMetrics;
  let port: number;

  before(async () => {
    dir = mkdtempSync(join(os.tmpdir(), 'ndmpd-metrics-'));
    lib = Library.open(join(dir, 'library'), { drives: 2 });
    const log = createLogger({ level: 'silent' });
    const hub = new HistoryHub(
      {
        ...historyDefaults(join(dir, 'spool')),
        // Small bounds, so a DMA that stops reading soon makes the session spool.
        creditBytes: 64 * 1024,
        memoryBytes: 128 * 1024,
        ringBytes: 256 * 1024,
        // Low thresholds: any spooling warns, and the share is looked at from the start.
        warnSpoolBytes: 1,
        warnLagShare: 0.01,
        warnLagAfterMs: 0,
      },
      log,
    );
    metrics = new ServerMetrics(log);
    srv = await startServer({}, { library: lib, history: hub, observer: metrics });
    metrics.attach({
      connections: () => ({ accepted: srv.server.accepted, open: srv.server.connectionCount }),
      sessions: sessionStatesOf(() => srv.server.openSessions()),
      history: hub,
    });
    port = (await metrics.listen('127.0.0.1', 0)).port;
    makeDeepTree(join(srv.exportDir, 'tree'), FILES);
  });
  after(async () => {
    await metrics.close();
    await srv.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('two backups (one spools for a slow DMA) and a restore: the figures move, and match the jobs at the end', async () => {
    const env = [
      { name: 'FILESYSTEM', value: join(srv.exportDir, 'tree') },
      { name: 'HIST', value: 'y' },
    ];
    const start = await scrape(port);
    assert.equal(sum(start, 'ndmpd_backup_bytes_total'), 0);

    // One: a DMA that keeps up.
    // v3: NOTIFY_DATA_HALTED carries the job's own figures in its text.
    const c1 = await client(srv.port, 'md5', 3);
    const j1 = watch(c1);
    const tape1 = await startLocalBackup(c1, lib, env);
    const h1 = await j1.halted;
    assert.equal(h1.reason, DataHaltReason.NDMP_DATA_HALT_SUCCESSFUL, h1.textReason);
    await finish(c1);
    const b1 = backupFigures(h1.textReason);
    await waitFor(
      async () => get(await scrape(port), 'ndmpd_backup_bytes_total') === b1.bytes,
      'the first backup counted',
    );

    // Two: a DMA that stops reading; the history spools, the server warns.
    // v3: NOTIFY_DATA_HALTED carries the job's own figures in its text.
    const c2 = await client(srv.port, 'md5', 3);
    const j2 = watch(c2);
    await startLocalBackup(c2, lib, env);
    c2.pauseReading();
    let during: Scrape = new Map();
    await waitFor(async () => {
      during = await scrape(port);
      return get(during, 'ndmpd_history_spool_bytes') > 0;
    }, 'history spooling for the slow DMA');
    await waitFor(
      () => logLines(srv).some((l) => typeof l.msg === 'string' && l.msg.startsWith('file history lags')),
      'the history warning in the log',
    );
    during = await scrape(port);
    assert.ok(
      get(during, 'ndmpd_history_spooled_bytes_total') > 0,
      'spooled bytes move while the backup runs',
    );
    assert.ok(
      get(during, 'ndmpd_history_entries_total') > get(during, 'ndmpd_history_entries_sent_total'),
      'entries are queued while the DMA reads nothing',
    );
    assert.ok(get(during, 'ndmpd_history_entries_queued') > 0);
    assert.ok(sum(during, 'ndmpd_history_warnings_total', 'condition="spool"') >= 1);
    assert.ok(
      sum(during, 'ndmpd_sessions', 'data_state="ACTIVE"') >= 1,
      'a session shows ACTIVE while it backs up',
    );
    assert.ok(get(during, 'ndmpd_connections_open') >= 1);
    // A DMA that reads nothing: its time not accepting counts while it lasts, and warns as lag too.
    await waitFor(async () => {
      during = await scrape(port);
      return (
        get(during, 'ndmpd_history_dma_not_accepting_seconds_total') > 0 &&
        sum(during, 'ndmpd_history_warnings_total', 'condition="lag"') >= 1
      );
    }, 'the time the DMA is not accepting, counted while it lasts, and the lag warning');
    c2.resumeReading();
    const h2 = await j2.halted;
    assert.equal(h2.reason, DataHaltReason.NDMP_DATA_HALT_SUCCESSFUL, h2.textReason);
    await finish(c2);
    const b2 = backupFigures(h2.textReason);
    const warned = j2.logs.find(
      (l) => l.logType === LogType.NDMP_LOG_WARNING && l.entry.startsWith('file history lags'),
    );
    assert.ok(warned, `the slow DMA is warned: ${JSON.stringify(j2.logs)}`);
    assert.match(warned.entry, /spooled, \d+ entries queued/);
    assert.match(warned.entry, /history\.warn-spool/);
    assert.equal(
      j1.logs.some((l) => l.entry.startsWith('file history lags')),
      false,
      'the DMA that kept up is not warned',
    );

    // The backup's last log line: its figures and its history's.
    let ended: Record<string, unknown> | undefined;
    await waitFor(() => {
      ended = logLines(srv)
        .filter((l) => l.msg === 'backup ended')
        .at(1);
      return ended !== undefined;
    }, 'the second backup ended line');
    assert.equal(ended!.bytes, b2.bytes);
    assert.equal(ended!.files, b2.files);
    assert.equal(ended!.halt, 'SUCCESSFUL');
    assert.equal(typeof ended!.durationS, 'number');
    const hist = ended!.history as Record<string, number>;
    assert.equal(hist.entriesSent, j2.fhEntries, 'entries sent are those the DMA got');
    assert.ok(hist.posts > 0);
    assert.ok(hist.spooledBytes > 0 && hist.maxSpoolBytes > 0 && hist.maxSpoolBytes <= hist.spooledBytes);
    assert.equal(typeof hist.notAcceptingS, 'number');
    assert.ok(hist.notAcceptingShare >= 0 && hist.notAcceptingShare <= 1);
    const conn2 = ended!.conn;
    const lines = logLines(srv).filter((l) => l.conn === conn2);
    const endAt = lines.indexOf(lines.find((l) => l.msg === 'backup ended')!);
    const fhEndAt = lines.findIndex((l) => l.msg === 'file history ended');
    assert.ok(fhEndAt >= 0 && fhEndAt < endAt, "the backup's line comes after its history's end");

    // A restore of the first backup.
    // v3: NOTIFY_DATA_HALTED carries the job's own figures in its text.
    const c3 = await client(srv.port, 'md5', 3);
    const j3 = watch(c3);
    c3.onPost(M.NOTIFY_DATA_READ, (b) => void c3.call(M.MOVER_READ, b).catch(() => undefined));
    c3.onPost(M.NOTIFY_MOVER_PAUSED, () => void c3.call(M.MOVER_CLOSE, {}).catch(() => undefined));
    await c3.call(M.TAPE_OPEN, { device: tape1, mode: TapeOpenMode.NDMP_TAPE_READ_MODE });
    await c3.call(M.MOVER_SET_WINDOW, { offset: 0n, length: INVALID_U64 });
    await c3.call(M.MOVER_LISTEN, {
      mode: MoverMode.NDMP_MOVER_MODE_WRITE,
      addrType: AddrType.NDMP_ADDR_LOCAL,
    });
    await c3.call(M.DATA_CONNECT, { addr: { addrType: AddrType.NDMP_ADDR_LOCAL } });
    const dest = join(srv.exportDir, 'restored');
    await c3.call(M.DATA_START_RECOVER, {
      env: [{ name: 'PREFIX', value: dest }],
      nlist: [],
      butypeName: 'tar',
    });
    const h3 = await j3.halted;
    assert.equal(h3.reason, DataHaltReason.NDMP_DATA_HALT_SUCCESSFUL, h3.textReason);
    const m3 = /recover completed: (\d+) entries restored from (\d+) bytes/.exec(h3.textReason ?? '');
    assert.ok(m3, h3.textReason);
    assert.ok(readdirSync(dest).length > 0);
    await c3.call(M.DATA_STOP, {});
    await c3.call(M.MOVER_STOP, {}).catch(() => undefined);
    await c3.call(M.TAPE_CLOSE, {});

    // At the end: the jobs' own figures.
    let end: Scrape = new Map();
    await waitFor(async () => {
      end = await scrape(port);
      return get(end, 'ndmpd_restore_files_total') > 0;
    }, 'the restore counted');
    assert.equal(get(end, 'ndmpd_backup_bytes_total'), b1.bytes + b2.bytes);
    assert.equal(get(end, 'ndmpd_backup_files_total'), b1.files + b2.files);
    assert.equal(get(end, 'ndmpd_restore_files_total'), Number(m3[1]));
    assert.equal(get(end, 'ndmpd_restore_bytes_total'), Number(m3[2]));
    assert.equal(get(end, 'ndmpd_operations_total{operation="backup",halt="SUCCESSFUL"}'), 2);
    assert.equal(get(end, 'ndmpd_operations_total{operation="recover",halt="SUCCESSFUL"}'), 1);
    assert.equal(get(end, 'ndmpd_history_entries_sent_total'), j1.fhEntries + j2.fhEntries);
    assert.equal(get(end, 'ndmpd_history_entries_total'), j1.fhEntries + j2.fhEntries);
    assert.equal(get(end, 'ndmpd_history_spool_bytes'), 0, 'no spool left');
    assert.ok(get(end, 'ndmpd_tape_written_bytes_total') >= b1.bytes + b2.bytes, 'the streams are on tape');
    assert.ok(get(end, 'ndmpd_tape_records_written_total') > 0);
    assert.ok(get(end, 'ndmpd_tape_read_bytes_total') >= Number(m3[2]), 'the restore read the tape');
    assert.equal(get(end, 'ndmpd_tape_write_errors_total'), 0);
    assert.ok(get(end, 'ndmpd_connections_accepted_total') >= 3);
    assert.ok(get(end, 'process_cpu_seconds_total') > 0, 'default process metrics');
    for (const c of [c1, c2, c3]) await c.close().catch(() => undefined);
  });

  test('a failed login and a refused request are counted, the refusal with its reason', async () => {
    const before = await scrape(port);
    const bad = await client(srv.port, 'none');
    try {
      await bad.open();
      await assert.rejects(bad.authText('dma', 'wrong-password'));
    } finally {
      bad.destroy();
    }
    const c = await client(srv.port);
    try {
      await assert.rejects(c.call(M.MOVER_SET_RECORD_SIZE, { len: 0 }));
    } finally {
      await c.close().catch(() => undefined);
    }
    const after = await scrape(port);
    assert.equal(
      sum(after, 'ndmpd_auth_failures_total', 'why="password"') -
        sum(before, 'ndmpd_auth_failures_total', 'why="password"'),
      1,
    );
    const refused = [...after.keys()].find(
      (k) =>
        k.startsWith('ndmpd_requests_refused_total{') &&
        k.includes('request="MOVER_SET_RECORD_SIZE"') &&
        k.includes('error="NDMP_ILLEGAL_ARGS_ERR"') &&
        k.includes('reason="record size 0 is not in 1..'),
    );
    assert.ok(refused, [...after.keys()].filter((k) => k.includes('refused')).join('\n'));
    assert.equal(after.get(refused), 1);
  });

  test('only GET /metrics: other paths are 404, other methods 405', async () => {
    for (const path of ['/', '/metrics/x', '/favicon.ico']) {
      const res = await fetch(`http://127.0.0.1:${port}${path}`, { signal: AbortSignal.timeout(5000) });
      assert.equal(res.status, 404, path);
      await res.text();
    }
    const res = await fetch(`http://127.0.0.1:${port}/metrics`, { method: 'POST', body: 'x' });
    assert.equal(res.status, 405);
    await res.text();
  });
});

describe('ndmpd and --metrics-listen', { timeout: 60_000 }, () => {
  test('off by default: no metrics port, no metrics line', async () => {
    const p = await startNdmpd({ logLevel: 'info' });
    try {
      assert.doesNotMatch(p.logs(), /serving metrics/);
    } finally {
      await p.stop();
    }
  });

  test('on: GET /metrics answers; a metrics port in use is one line and exit 2', async () => {
    const blocker = net.createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
    const busy = (blocker.address() as net.AddressInfo).port;
    const p = await startNdmpd({ logLevel: 'info', extraArgs: ['--metrics-listen', '127.0.0.1:0'] });
    try {
      const line = p
        .logs()
        .split('\n')
        .find((l) => l.includes('serving metrics'));
      assert.ok(line, p.logs());
      const mport = (JSON.parse(line) as { port: number }).port;
      const s = await scrape(mport);
      assert.equal(s.get('ndmpd_connections_open'), 0);
      // The same binary, its metrics port taken.
      const d = mkdtempSync(join(os.tmpdir(), 'ndmpd-metrics-busy-'));
      try {
        const child = spawn(
          process.execPath,
          [
            NDMPD_BIN,
            '--listen',
            '127.0.0.1:0',
            '--metrics-listen',
            `127.0.0.1:${busy}`,
            '--state-dir',
            join(d, 'state'),
            '--log-level',
            'silent',
          ],
          { stdio: ['ignore', 'pipe', 'pipe'] },
        );
        let err = '';
        child.stderr.on('data', (b: Buffer) => (err += b.toString()));
        const code = await new Promise<number | null>((r) => child.once('exit', r));
        assert.equal(code, 2, err);
        const lines = err.trim().split('\n');
        assert.equal(lines.length, 1, err);
        assert.match(lines[0]!, /^ndmpd: cannot listen for metrics on 127\.0\.0\.1:\d+: .*EADDRINUSE/);
      } finally {
        rmSync(d, { recursive: true, force: true });
      }
    } finally {
      await p.stop();
      blocker.close();
    }
  });
});
