// File history end to end through our own server (real sockets, the real
// history thread): path and dir/node models against the tape's own stream;
// four backups at once with one DMA that stops reading and then resumes (its
// history spools and arrives whole and in order; the others are not held up);
// a DMA that disconnects mid-backup; a DMA that stalls past the timeout; and
// lockstep mode.

import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { PaxParser } from '../../src/backup/pax-parser.js';
import { Library } from '../../src/devices/library.js';
import { openTapeImage } from '../../src/devices/tape-image.js';
import type { NdmpClient } from '../../src/dma/client.js';
import { HistoryHub, historyDefaults } from '../../src/history/hub.js';
import type { HistoryOptions } from '../../src/history/hub.js';
import {
  DataHaltReason,
  DataState,
  DataStateUnsupported,
  FileType,
  INVALID_U64,
  M,
  MoverHaltReason,
} from '../../src/wire/index.js';
import type { FhDir, FhFile, FhNode, HaltedPost, Pval } from '../../src/wire/index.js';
import { createLogger } from '../../src/util/log.js';
import { client, startServer } from '../helpers/in-process.js';
import type { TestServer } from '../helpers/in-process.js';
import { tapeFileBytes } from '../helpers/tapes.js';
import { makeSampleTree } from '../helpers/trees.js';
import { startLocalBackup } from '../helpers/local-backup.js';

interface Received {
  files: FhFile[];
  dirs: FhDir[];
  nodes: FhNode[];
  /** Message kinds in arrival order ('F', 'D', 'N', then 'H' for NOTIFY_DATA_HALTED). */
  order: string[];
  /** Every dir/node entry in arrival order. */
  seq: { kind: 'D' | 'N'; node: bigint }[];
  data: Promise<HaltedPost>;
  mover: Promise<HaltedPost>;
}

function listen(c: NdmpClient): Received {
  const r = { files: [], dirs: [], nodes: [], order: [], seq: [] } as unknown as Received;
  c.onPost(M.FH_ADD_FILE, (b) => {
    r.files.push(...b.files);
    r.order.push('F');
  });
  c.onPost(M.FH_ADD_DIR, (b) => {
    r.dirs.push(...b.dirs);
    for (const d of b.dirs) r.seq.push({ kind: 'D', node: d.node });
    r.order.push('D');
  });
  c.onPost(M.FH_ADD_NODE, (b) => {
    r.nodes.push(...b.nodes);
    for (const n of b.nodes) r.seq.push({ kind: 'N', node: n.node });
    r.order.push('N');
  });
  r.data = new Promise<HaltedPost>((res) =>
    c.onPost(M.NOTIFY_DATA_HALTED, (h) => {
      r.order.push('H');
      res(h);
    }),
  );
  r.mover = new Promise<HaltedPost>((res) => c.onPost(M.NOTIFY_MOVER_HALTED, res));
  return r;
}

function unixName(names: FhFile['names']): string {
  const n = names[0]!;
  assert.equal(n.fsType, 0);
  return (n as { unixName: string }).unixName;
}

/** header offset → path, from the tape file itself. */
function streamIndex(tape: string): Map<bigint, string> {
  const out = new Map<bigint, string>();
  new PaxParser().push(tapeFileBytes(tape, 0), {
    onEntry: (e) => out.set(e.headerOffset, e.path),
    onData: () => undefined,
  });
  return out;
}

/** A tree whose history is far larger than the socket buffers: long paths, many files. */
function makeWideTree(root: string, files: number): void {
  let dir = root;
  for (let i = 0; i < 6; i++) dir = join(dir, `level-${i}-${'x'.repeat(200)}`);
  mkdirSync(dir, { recursive: true });
  for (let i = 0; i < files; i++) writeFileSync(join(dir, `file-${String(i).padStart(6, '0')}`), `${i}\n`);
}

/** A server on `lib` whose history hub has these settings (its own log silent; sessions log to the server's). */
function historyServer(lib: Library, spoolDir: string, opts: Partial<HistoryOptions>): Promise<TestServer> {
  const hub = new HistoryHub({ ...historyDefaults(spoolDir), ...opts }, createLogger({ level: 'silent' }));
  return startServer({}, { library: lib, history: hub });
}

/** After a halted backup: data, mover and tape back to where they started. */
async function finish(c: NdmpClient): Promise<void> {
  await c.call(M.DATA_STOP, {});
  await c.call(M.MOVER_STOP, {});
  await c.call(M.TAPE_CLOSE, {});
}

/** The history env of a backup of `root`. */
function histEnv(root: string, hist: string): Pval[] {
  return [
    { name: 'FILESYSTEM', value: root },
    { name: 'HIST', value: hist },
  ];
}

/** Path-model history equals the stream: one entry per header, at its offset, in stream order. */
function checkPathHistory(r: Received, tape: string): void {
  const index = streamIndex(tape);
  assert.equal(r.files.length, index.size, 'one FH_ADD_FILE entry per entry in the stream');
  let last = -1n;
  for (const f of r.files) {
    const p = index.get(f.fhInfo);
    assert.ok(p !== undefined, `fh_info ${f.fhInfo} is the offset of a header`);
    const name = unixName(f.names);
    assert.equal(name, p === '.' || p === './' ? '/' : `/${p.replace(/\/$/, '')}`);
    assert.ok(f.fhInfo > last, 'history comes in stream order');
    last = f.fhInfo;
  }
}

describe('file history from the history thread', { timeout: 120_000 }, () => {
  let srv: TestServer;
  let dir: string;
  let lib: Library;
  let small: string;
  let wide: string;
  const wideFiles = 6000;

  before(async () => {
    dir = mkdtempSync(join(os.tmpdir(), 'ndmpd-history-'));
    lib = Library.open(join(dir, 'library'), { drives: 4 });
    // Small credit and memory bounds, so a DMA that stops reading makes the session spool.
    srv = await historyServer(lib, join(dir, 'spool'), {
      creditBytes: 64 * 1024,
      memoryBytes: 128 * 1024,
      stallTimeoutMs: 60_000,
    });
    small = join(srv.exportDir, 'small');
    mkdirSync(small);
    makeSampleTree(small);
    wide = join(srv.exportDir, 'wide');
    makeWideTree(wide, wideFiles);
  });
  after(async () => {
    await srv.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /** A LOCAL backup of `root` with HIST=`hist`, its posts collected. */
  async function startBackup(
    c: NdmpClient,
    root: string,
    hist: string,
  ): Promise<{ tape: string; r: Received }> {
    const r = listen(c);
    return { tape: await startLocalBackup(c, lib, histEnv(root, hist)), r };
  }

  test('path model (HIST=y): FH_ADD_FILE per entry, fh_info = header offset, all before DATA_HALTED', async () => {
    const c = await client(srv.port);
    try {
      const { tape, r } = await startBackup(c, small, 'y');
      assert.equal((await r.data).reason, DataHaltReason.NDMP_DATA_HALT_SUCCESSFUL);
      assert.equal((await r.mover).reason, MoverHaltReason.NDMP_MOVER_HALT_CONNECT_CLOSED);
      await finish(c);
      assert.equal(r.order.at(-1), 'H');
      checkPathHistory(r, tape);
      const a = r.files.find((f) => unixName(f.names) === '/a.txt')!;
      const st = a.stats[0]!;
      assert.equal(st.ftype, FileType.NDMP_FILE_REG);
      assert.equal(st.fattr, statSync(join(small, 'a.txt')).mode & 0o7777);
      assert.equal(st.size, 6n);
      assert.equal(st.mtime, 1_600_000_000);
      const link = r.files.find((f) => unixName(f.names) === '/link')!;
      assert.equal(link.stats[0]!.ftype, FileType.NDMP_FILE_SLINK);
      const hard = r.files.find((f) => unixName(f.names) === '/hard')!;
      assert.equal(hard.node, a.node, 'hard links share a node');
    } finally {
      c.destroy();
    }
  });

  test('dir/node model (HIST=d) keeps the ordering rules DMAs enforce', async () => {
    const c = await client(srv.port);
    try {
      const { tape, r } = await startBackup(c, small, 'd');
      assert.equal((await r.data).reason, DataHaltReason.NDMP_DATA_HALT_SUCCESSFUL);
      await finish(c);
      assert.equal(r.files.length, 0);
      const [dot, dotdot] = r.dirs;
      assert.equal(unixName(dot!.names), '.');
      assert.equal(unixName(dotdot!.names), '..');
      const root = dot!.node;
      assert.equal(root, 2n);
      assert.equal(dotdot!.node, root);
      assert.equal(dotdot!.parent, root);
      // Every node is named by an ADD_DIR that arrived before its ADD_NODE; one ADD_NODE per node.
      const named = new Set<bigint>();
      for (const e of r.seq) {
        if (e.kind === 'D') named.add(e.node);
        else assert.ok(named.has(e.node), `ADD_NODE ${e.node} before any ADD_DIR naming it`);
      }
      assert.equal(
        r.nodes.length,
        streamIndex(tape).size - 1,
        'one ADD_NODE per entry but the extra hard link',
      );
      const nodes = r.nodes.map((x) => x.node);
      assert.equal(new Set(nodes).size, nodes.length);
      // A directory's "." and ".." come before the names in it, and all of one directory's names together.
      const seenParents: bigint[] = [];
      for (const e of r.dirs) if (seenParents.at(-1) !== e.parent) seenParents.push(e.parent);
      assert.equal(new Set(seenParents).size, seenParents.length, 'no directory is listed in two pieces');
      // Names: every path of the tree is reachable from the root.
      const names = new Map<bigint, string[]>();
      for (const e of r.dirs) {
        const nm = unixName(e.names);
        if (nm === '.' || nm === '..') continue;
        names.set(e.node, [...(names.get(e.node) ?? []), nm]);
      }
      assert.ok([...names.values()].some((v) => v.includes('a.txt') && v.includes('hard')));
    } finally {
      c.destroy();
    }
  });

  test('dir/node with FILES: the directories above the chosen path are named, without a position', async () => {
    const c = await client(srv.port);
    try {
      const r = listen(c);
      await startLocalBackup(c, lib, [...histEnv(small, 'd'), { name: 'FILES', value: 'sub/deeper' }]);
      assert.equal((await r.data).reason, DataHaltReason.NDMP_DATA_HALT_SUCCESSFUL);
      await finish(c);
      assert.equal(unixName(r.dirs[0]!.names), '.');
      const byName = new Map(r.dirs.map((d) => [unixName(d.names), d]));
      const sub = byName.get('sub')!;
      const deeper = byName.get('deeper')!;
      assert.equal(sub.parent, 2n);
      assert.equal(deeper.parent, sub.node);
      assert.ok(byName.has('exactly-512'));
      const subNode = r.nodes.find((n) => n.node === sub.node)!;
      assert.equal(subNode.fhInfo, INVALID_U64, 'sub is not in the stream');
      const deeperNode = r.nodes.find((n) => n.node === deeper.node)!;
      assert.notEqual(deeperNode.fhInfo, INVALID_U64);
      assert.ok(!byName.has('a.txt'), 'nothing outside FILES');
    } finally {
      c.destroy();
    }
  });

  test('four backups at once; one DMA stops reading, its history spools and arrives whole and in order', async () => {
    const clients = await Promise.all([0, 1, 2, 3].map(() => client(srv.port)));
    try {
      const started = await Promise.all(clients.map((c) => startBackup(c, wide, 'y')));
      const slow = clients[0]!;
      slow.pauseReading();
      // The other three finish while the first DMA reads nothing.
      const others = await Promise.all(started.slice(1).map((s) => s.r.data));
      for (const h of others) assert.equal(h.reason, DataHaltReason.NDMP_DATA_HALT_SUCCESSFUL);
      await new Promise((res) => setTimeout(res, 500));
      slow.resumeReading();
      assert.equal((await started[0]!.r.data).reason, DataHaltReason.NDMP_DATA_HALT_SUCCESSFUL);
      for (let i = 0; i < 4; i++) {
        await finish(clients[i]!);
        const { tape, r } = started[i]!;
        assert.equal(r.order.at(-1), 'H', 'NOTIFY_DATA_HALTED came after all history');
        assert.equal(r.files.length, wideFiles + 7, 'the root, six directories, the files');
        checkPathHistory(r, tape);
      }
      assert.match(srv.logText(), /"spooledBytes":[1-9]/, 'the slow DMA made its session spool');
    } finally {
      for (const c of clients) c.destroy();
    }
  });

  test('the estimate of what remains counts the sizes of the files listed but not yet read', async () => {
    // Small files first, then big ones: an average of what finished (the small files) would say
    // the backup is nearly done when it has barely started the big ones.
    const root = join(srv.exportDir, 'estimate');
    mkdirSync(join(root, 'a-small'), { recursive: true });
    mkdirSync(join(root, 'b-big'));
    for (let i = 0; i < 50; i++) writeFileSync(join(root, 'a-small', `s${i}`), 'x'.repeat(100));
    const big = Buffer.alloc(1024 * 1024, 7);
    for (let i = 0; i < 16; i++) writeFileSync(join(root, 'b-big', `big${String(i).padStart(2, '0')}`), big);
    const whole = 16 * (1024 * 1024 + 1024) + 50 * 1536;
    const c = await client(srv.port);
    try {
      const r = listen(c);
      // A 1 MiB window: the mover pauses there and the backup waits, mid-way through b-big.
      await startLocalBackup(c, lib, histEnv(root, 'n'), 100n * 10240n);
      let st = await c.call(M.DATA_GET_STATE, {});
      for (let i = 0; i < 200 && st.bytesProcessed < 2n * 1024n * 1024n; i++) {
        await new Promise((res) => setTimeout(res, 10));
        st = await c.call(M.DATA_GET_STATE, {});
      }
      assert.equal(st.state, DataState.NDMP_DATA_STATE_ACTIVE);
      assert.equal(st.unsupported & DataStateUnsupported.EST_BYTES_REMAIN, 0, 'an estimate is given');
      const total = Number(st.bytesProcessed + st.estBytesRemain);
      assert.ok(
        total > whole * 0.8 && total < whole * 1.25,
        `processed ${st.bytesProcessed} + estimate ${st.estBytesRemain} = ${total}, the whole is about ${whole}`,
      );
      await c.call(M.DATA_ABORT, {});
      assert.equal((await r.data).reason, DataHaltReason.NDMP_DATA_HALT_ABORTED);
      await c.call(M.MOVER_ABORT, {});
    } finally {
      c.destroy();
    }
  });

  test('DATA_GET_STATE while a backup runs: bytes processed and estimates of what remains', async () => {
    const c = await client(srv.port);
    try {
      const r = listen(c);
      // A 1 MiB window: the mover pauses there, the ring between them fills, and the backup waits, ACTIVE.
      await startLocalBackup(c, lib, histEnv(wide, 'n'), 100n * 10240n);
      let st = await c.call(M.DATA_GET_STATE, {});
      for (let i = 0; i < 200 && st.bytesProcessed < 4n * 1024n * 1024n; i++) {
        await new Promise((res) => setTimeout(res, 10));
        st = await c.call(M.DATA_GET_STATE, {});
      }
      assert.equal(st.state, DataState.NDMP_DATA_STATE_ACTIVE);
      assert.ok(st.bytesProcessed >= 4n * 1024n * 1024n, `${st.bytesProcessed} bytes processed`);
      assert.equal(st.unsupported & DataStateUnsupported.EST_BYTES_REMAIN, 0, 'an estimate is given');
      assert.ok(st.estBytesRemain > 0n);
      const early = await Promise.race([r.data, new Promise<null>((res) => setTimeout(() => res(null), 0))]);
      assert.equal(early, null, `the backup halted by itself: ${JSON.stringify(early)}`);
      await c.call(M.DATA_ABORT, {});
      assert.equal((await r.data).reason, DataHaltReason.NDMP_DATA_HALT_ABORTED);
      await c.call(M.MOVER_ABORT, {});
    } finally {
      c.destroy();
    }
  });

  test('a DMA that disconnects mid-backup: its session halts, the tape holds whole records, others finish', async () => {
    const [gone, stays] = await Promise.all([client(srv.port), client(srv.port)]);
    try {
      const a = await startBackup(gone, wide, 'y');
      gone.pauseReading();
      const b = await startBackup(stays, wide, 'y');
      await new Promise((res) => setTimeout(res, 50));
      gone.destroy();
      assert.equal((await b.r.data).reason, DataHaltReason.NDMP_DATA_HALT_SUCCESSFUL);
      await finish(stays);
      checkPathHistory(b.r, b.tape);
      // The abandoned tape is closed and free, and reads back to a consistent end.
      // The DMA went away: its backup halts CONNECT_ERROR, saying so (the session's close or its
      // history's failure, whichever the data thread sees first).
      await waitFor(() =>
        /"reason":"CONNECT_ERROR","text":"[^"]*the DMA's control connection[^\n]*"data service halted"/.test(
          srv.logText(),
        ),
      );
      await waitFor(() => tapeFree(lib, a.tape));
      const t = openTapeImage(a.tape, { readOnly: true });
      t.close();
    } finally {
      stays.destroy();
    }
  });
});

function tapeFree(lib: Library, tape: string): boolean {
  const release = lib.claim(lib.resolve(tape)!);
  if (!release) return false;
  release();
  return true;
}

describe('a DMA that takes no history for history.stall-timeout', { timeout: 60_000 }, () => {
  test('its backup halts CONNECT_ERROR and says why', async () => {
    const dir = mkdtempSync(join(os.tmpdir(), 'ndmpd-stall-'));
    const lib = Library.open(join(dir, 'library'));
    const srv = await historyServer(lib, join(dir, 'spool'), {
      creditBytes: 16 * 1024,
      stallTimeoutMs: 1500,
    });
    const tree = join(srv.exportDir, 'wide');
    // Far more history than the socket buffers hold (~1.3 KiB an entry, ~16 MB), so credit runs out.
    makeWideTree(tree, 12_000);
    const c = await client(srv.port);
    try {
      await startLocalBackup(c, lib, histEnv(tree, 'y'));
      c.pauseReading();
      // The history thread logs its failure first, then the data service its halt: wait for the halt.
      await waitFor(
        () => /"reason":"CONNECT_ERROR"[^\n]*accepted no file history/.test(srv.logText()),
        20_000,
      ).catch(() => assert.fail(`no CONNECT_ERROR halt for the stalled history:\n${srv.logText()}`));
    } finally {
      c.destroy();
      await srv.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

async function waitFor(cond: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('lockstep mode (history.mode = lockstep)', { timeout: 60_000 }, () => {
  test('the session thread sends each batch itself; history is whole, in order, before DATA_HALTED', async () => {
    const dir = mkdtempSync(join(os.tmpdir(), 'ndmpd-lockstep-'));
    const lib = Library.open(join(dir, 'library'));
    const srv = await historyServer(lib, join(dir, 'spool'), { mode: 'lockstep' });
    const tree = join(srv.exportDir, 'wide');
    makeWideTree(tree, 2500);
    const c = await client(srv.port);
    try {
      const r = listen(c);
      const tape = await startLocalBackup(c, lib, histEnv(tree, 'y'));
      assert.equal((await r.data).reason, DataHaltReason.NDMP_DATA_HALT_SUCCESSFUL);
      await finish(c);
      assert.equal(r.order.at(-1), 'H');
      assert.equal(r.files.length, 2500 + 7);
      checkPathHistory(r, tape);
      assert.match(srv.logText(), /"historyMode":"lockstep"/);
    } finally {
      c.destroy();
      await srv.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
