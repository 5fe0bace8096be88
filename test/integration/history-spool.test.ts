// The history spool's bounds end to end (real sockets, the real history
// thread, docs/history.md "When the spool is full"): a tiny spool, a real
// ENOSPC on a 1 MiB tmpfs and a disk floor each make the session wait for a
// DMA that stops reading, and the backup still ends SUCCESSFUL with every
// entry once and in order, the DMA told in a LOG_MESSAGE; a slow DMA through
// a full spool, waiting in all longer than the stall timeout, never fails the
// backup; one that takes nothing still fails it after the stall timeout; and a
// history thread that dies says so in NOTIFY_DATA_HALTED.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import type { Worker } from 'node:worker_threads';
import { after, before, describe, test } from 'node:test';

import { PaxParser } from '../../src/backup/pax-parser.js';
import { Library } from '../../src/devices/library.js';
import type { NdmpClient } from '../../src/dma/client.js';
import { HistoryHub, historyDefaults } from '../../src/history/hub.js';
import type { HistoryOptions } from '../../src/history/hub.js';
import {
  AddrType,
  DataHaltReason,
  INVALID_U64,
  LogType,
  M,
  MoverMode,
  TapeOpenMode,
} from '../../src/wire/index.js';
import type { FhFile, HaltedPost, LogMessagePost, Pval } from '../../src/wire/index.js';
import { createLogger } from '../../src/util/log.js';
import { client, startServer } from '../helpers/in-process.js';
import type { TestServer } from '../helpers/in-process.js';
import { tapeFileBytes } from '../helpers/tapes.js';

/** Files in the test tree; with ~3.6 KiB of history each, ~11 MB: more than the sockets' buffers hold. */
const FILES = 3000;
const WAITS = 'the backup now waits for the DMA to take file history';

interface Received {
  files: FhFile[];
  logs: LogMessagePost[];
  data: Promise<HaltedPost>;
}

function listen(c: NdmpClient): Received {
  const r = { files: [], logs: [] } as unknown as Received;
  c.onPost(M.FH_ADD_FILE, (b) => r.files.push(...b.files));
  c.onPost(M.LOG_MESSAGE, (b) => r.logs.push(b));
  r.data = new Promise<HaltedPost>((res) => c.onPost(M.NOTIFY_DATA_HALTED, res));
  return r;
}

/** Deep paths (~3.5 KiB each), so the history is large while the tree is quick to make. */
function makeDeepTree(root: string, files: number): void {
  let dir = root;
  for (let i = 0; i < 13; i++) dir = join(dir, `d${i}-${'y'.repeat(250)}`);
  mkdirSync(dir, { recursive: true });
  for (let i = 0; i < files; i++) writeFileSync(join(dir, `f${String(i).padStart(5, '0')}`), `${i}\n`);
}

async function historyServer(
  lib: Library,
  spoolDir: string,
  opts: Partial<HistoryOptions>,
): Promise<{ srv: TestServer; hub: HistoryHub }> {
  const hub = new HistoryHub(
    {
      ...historyDefaults(spoolDir),
      // Small bounds everywhere, so a DMA that stops reading soon makes the session wait.
      creditBytes: 64 * 1024,
      memoryBytes: 128 * 1024,
      ringBytes: 256 * 1024,
      stallTimeoutMs: 60_000,
      ...opts,
    },
    createLogger({ level: 'silent' }),
  );
  return { srv: await startServer({}, { library: lib, history: hub }), hub };
}

async function startLocalBackup(c: NdmpClient, lib: Library, root: string): Promise<string> {
  const [barcode] = lib.createTapes({ count: 1 });
  const tape = lib.tapePath(barcode!);
  const env: Pval[] = [
    { name: 'FILESYSTEM', value: root },
    { name: 'HIST', value: 'y' },
  ];
  await c.call(M.TAPE_OPEN, { device: tape, mode: TapeOpenMode.NDMP_TAPE_RDWR_MODE });
  await c.call(M.MOVER_SET_WINDOW, { offset: 0n, length: INVALID_U64 });
  await c.call(M.MOVER_LISTEN, { mode: MoverMode.NDMP_MOVER_MODE_READ, addrType: AddrType.NDMP_ADDR_LOCAL });
  await c.call(M.DATA_CONNECT, { addr: { addrType: AddrType.NDMP_ADDR_LOCAL } });
  await c.call(M.DATA_START_BACKUP, { butypeName: 'tar', env });
  return tape;
}

async function finish(c: NdmpClient): Promise<void> {
  await c.call(M.DATA_STOP, {});
  await c.call(M.MOVER_STOP, {});
  await c.call(M.TAPE_CLOSE, {});
}

/** Every entry of the stream exactly once, at its header's offset, in stream order. */
function checkWholeHistory(r: Received, tape: string): void {
  const index = new Map<bigint, string>();
  new PaxParser().push(tapeFileBytes(tape, 0), {
    onEntry: (e) => index.set(e.headerOffset, e.path),
    onData: () => undefined,
  });
  assert.equal(index.size, FILES + 14, 'the root, 13 directories, the files');
  assert.equal(r.files.length, index.size, 'one FH_ADD_FILE entry per entry of the stream');
  let last = -1n;
  for (const f of r.files) {
    const p = index.get(f.fhInfo);
    assert.ok(p !== undefined, `fh_info ${f.fhInfo} is a header's offset`);
    const name = (f.names[0] as { unixName: string }).unixName;
    assert.equal(name, p === '.' || p === './' ? '/' : `/${p.replace(/\/$/, '')}`);
    assert.ok(f.fhInfo > last, 'in stream order, none twice');
    last = f.fhInfo;
  }
}

async function waitFor(cond: () => boolean, what: string, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** The server's log lines, parsed. */
function logLines(srv: TestServer): Array<Record<string, unknown>> {
  return srv
    .logText()
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** Where in the server's log (a line number) session `conn`'s data service halted (-1: not yet). */
function haltedAt(srv: TestServer, conn: unknown): number {
  return logLines(srv).findIndex((l) => l.msg === 'data service halted' && l.conn === conn);
}

/** The history counters of the session's "file history ended" line. */
function endCounters(srv: TestServer, conn?: unknown): Record<string, number> {
  const line = logLines(srv).find(
    (l) => l.msg === 'file history ended' && (conn === undefined || l.conn === conn),
  );
  assert.ok(line, 'file history ended');
  return line.history as Record<string, number>;
}

/**
 * Pauses the DMA until the server says the spool is full (`warning`), then a
 * while longer, checks the backup did not end meanwhile (it waits for the
 * DMA), resumes, and checks the outcome: SUCCESSFUL, history whole, the
 * LOG_MESSAGE warning.
 */
async function pauseUntilWaiting(
  srv: TestServer,
  lib: Library,
  tree: string,
  warning: RegExp,
  /** Runs while the DMA is paused (after the warning), with the waiting session's connection id. */
  whilePaused?: (conn: unknown) => Promise<void>,
): Promise<void> {
  const c = await client(srv.port);
  try {
    const r = listen(c);
    const tape = await startLocalBackup(c, lib, tree);
    c.pauseReading();
    await waitFor(
      () => logLines(srv).some((l) => typeof l.msg === 'string' && warning.test(l.msg)),
      'the spool-full warning',
    );
    const warn = logLines(srv).find((l) => typeof l.msg === 'string' && warning.test(l.msg))!;
    assert.equal(typeof warn.spooledBytes, 'number', JSON.stringify(warn));
    assert.equal(typeof warn.reason, 'string', JSON.stringify(warn));
    assert.equal(typeof warn.session, 'number', JSON.stringify(warn));
    const conn = warn.conn;
    await sleep(1500);
    await whilePaused?.(conn);
    assert.equal(
      haltedAt(srv, conn),
      -1,
      'the backup waits for the DMA: it has not ended while the DMA reads nothing',
    );
    const resumedAt = logLines(srv).length;
    c.resumeReading();
    const h = await r.data;
    assert.equal(h.reason, DataHaltReason.NDMP_DATA_HALT_SUCCESSFUL, h.textReason);
    assert.ok(haltedAt(srv, conn) >= resumedAt, "the backup's data finished after the DMA resumed");
    await finish(c);
    checkWholeHistory(r, tape);
    const warned = r.logs.find((l) => l.logType === LogType.NDMP_LOG_WARNING && warning.test(l.entry));
    assert.ok(warned, `a LOG_MESSAGE warning: ${JSON.stringify(r.logs)}`);
    assert.ok(warned.entry.endsWith(WAITS), warned.entry);
    assert.ok(endCounters(srv, conn).spoolWaits >= 1, 'the episode is counted');
  } finally {
    c.destroy();
  }
}

describe('a history spool that cannot take more: the backup waits for its DMA', { timeout: 300_000 }, () => {
  let dir: string;
  let tree: string;

  before(() => {
    dir = mkdtempSync(join(os.tmpdir(), 'ndmpd-spool-'));
    tree = join(dir, 'tree');
    makeDeepTree(tree, FILES);
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  /** A server with these history settings whose export holds a copy of the test tree. */
  async function serve(name: string, spoolDir: string, opts: Partial<HistoryOptions>) {
    const lib = Library.open(join(dir, `${name}-library`), { drives: 2 });
    const { srv, hub } = await historyServer(lib, spoolDir, opts);
    const root = join(srv.exportDir, 'tree');
    execFileSync('cp', ['-a', tree, root]);
    return { lib, srv, root, hub };
  }

  test('a 64 KiB spool, a DMA that pauses for seconds: SUCCESSFUL, history whole and in order, the DMA warned; another session goes on', async () => {
    const { lib, srv, root } = await serve('tiny', join(dir, 'tiny-spool'), { spoolMaxBytes: 64 * 1024 });
    const other = await client(srv.port);
    try {
      await pauseUntilWaiting(srv, lib, root, /file history spool full \(64\.0 KiB\)/, async (conn) => {
        // A second session whose DMA reads: it runs and ends while the first one waits.
        const ro = listen(other);
        const otherTape = await startLocalBackup(other, lib, root);
        const h = await ro.data;
        assert.equal(h.reason, DataHaltReason.NDMP_DATA_HALT_SUCCESSFUL, h.textReason);
        await finish(other);
        checkWholeHistory(ro, otherTape);
        assert.equal(haltedAt(srv, conn), -1, 'the first session is still waiting');
      });
      assert.match(srv.logText(), /file history spooling again/);
    } finally {
      other.destroy();
      await srv.close();
    }
  });

  test('a DMA slow but alive through a full spool, waited on longer than the stall timeout in all: SUCCESSFUL', async () => {
    const stallTimeoutMs = 1500;
    const { lib, srv, root } = await serve('slow', join(dir, 'slow-spool'), {
      spoolMaxBytes: 64 * 1024,
      stallTimeoutMs,
    });
    const c = await client(srv.port);
    try {
      const r = listen(c);
      // The DMA takes one post (~128 KiB), then reads nothing for 100 ms: ~1.3 MB/s.
      c.onPost(M.FH_ADD_FILE, () => {
        c.pauseReading();
        setTimeout(() => c.resumeReading(), 100);
      });
      const tape = await startLocalBackup(c, lib, root);
      const h = await r.data;
      assert.equal(h.reason, DataHaltReason.NDMP_DATA_HALT_SUCCESSFUL, h.textReason);
      await finish(c);
      checkWholeHistory(r, tape);
      const counters = endCounters(srv);
      assert.ok(counters.spoolWaits >= 1, JSON.stringify(counters));
      assert.ok(
        counters.waitedMs > stallTimeoutMs,
        `the backup waited ${counters.waitedMs} ms for the DMA, more than the stall timeout, and did not fail`,
      );
    } finally {
      c.destroy();
      await srv.close();
    }
  });

  test('ENOSPC for real: the spool on a full 1 MiB tmpfs; the backup waits, then ends SUCCESSFUL with all its history', async (t) => {
    if (process.getuid?.() !== 0) {
      assert.notEqual(process.env.CI, 'true', 'this test mounts a tmpfs: under CI it must run as root');
      t.skip('mounting a tmpfs needs root');
      return;
    }
    const mnt = join(dir, 'tmpfs');
    mkdirSync(mnt);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m,mode=0700', 'tmpfs', mnt]);
    try {
      // No floor: the spool writes until the file system itself says ENOSPC.
      const { lib, srv, root } = await serve('enospc', mnt, { spoolMinFreeBytes: 0 });
      try {
        await pauseUntilWaiting(srv, lib, root, /disk full \(writing the file history spool [^)]*: ENOSPC\)/);
        assert.ok(endCounters(srv).spooledBytes > 0, 'the spool did take history before the disk filled');
      } finally {
        await srv.close();
      }
      assert.deepEqual(readdirSync(mnt), [], 'the spool file is gone');
    } finally {
      execFileSync('umount', [mnt]);
    }
  });

  test('the disk floor (history.spool-min-free): below it the spool takes nothing, the backup waits', async () => {
    const { lib, srv, root } = await serve('floor', join(dir, 'floor-spool'), { spoolMinFreeBytes: 2 ** 50 });
    try {
      await pauseUntilWaiting(srv, lib, root, /disk nearly full: [^:]* free where the file history spool is/);
      assert.equal(endCounters(srv).spooledBytes, 0);
    } finally {
      await srv.close();
    }
  });

  test('a DMA that takes nothing, with the spool full: the backup still fails after the stall timeout, saying why', async () => {
    const { lib, srv, root } = await serve('stall', join(dir, 'stall-spool'), {
      spoolMaxBytes: 64 * 1024,
      stallTimeoutMs: 1500,
    });
    const c = await client(srv.port);
    try {
      await startLocalBackup(c, lib, root);
      c.pauseReading();
      await waitFor(() => /"reason":"CONNECT_ERROR"/.test(srv.logText()), 'the backup to halt');
      assert.match(srv.logText(), /file history spool full/);
      assert.match(
        srv.logText(),
        /"reason":"CONNECT_ERROR","text":"backup stopped: the DMA accepted no file history for 1.5 s/,
      );
    } finally {
      c.destroy();
      await srv.close();
    }
  });

  test('a history thread that dies: NOTIFY_DATA_HALTED (v3) and a LOG_MESSAGE say what happened', async () => {
    const { lib, srv, root, hub } = await serve('crash', join(dir, 'crash-spool'), {
      spoolMaxBytes: 64 * 1024,
    });
    // NDMP v3: its NOTIFY_DATA_HALTED carries a text (v4's does not; there the LOG_MESSAGE says it).
    const c = await client(srv.port, 'md5', 3);
    try {
      const r = listen(c);
      await startLocalBackup(c, lib, root);
      c.pauseReading();
      await waitFor(() => /file history spool full/.test(srv.logText()), 'the session to wait');
      // The hub's only thread, ended from outside, as a crash would end it.
      const workers = (hub as unknown as { workers: (Worker | null)[] }).workers;
      await workers[0]!.terminate();
      c.resumeReading();
      if (process.env.NDMPD_TEST_SHOW_LOG) process.stdout.write(srv.logText());
      const h = await r.data;
      assert.equal(h.reason, DataHaltReason.NDMP_DATA_HALT_CONNECT_ERROR);
      assert.match(
        h.textReason ?? '',
        /file history could not be delivered: the history thread ended unexpectedly/,
      );
      assert.ok(
        r.logs.some((l) => l.logType === LogType.NDMP_LOG_ERROR && l.entry === h.textReason),
        `a LOG_MESSAGE with the same words: ${JSON.stringify(r.logs)}`,
      );
    } finally {
      c.destroy();
      await srv.close();
    }
  });
});
