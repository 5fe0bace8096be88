// Replies and notifications overtake file history the server has not written
// yet (docs/history.md, "On the DMA's socket"), over real sockets: a DMA stops
// reading while its backup runs, so megabytes of history queue up; once the
// mover has halted it asks DATA_GET_STATE and reads again. NOTIFY_MOVER_HALTED
// and the reply must come after no more history than the socket buffers held
// (not behind everything queued), NOTIFY_DATA_HALTED after all of it, every
// entry exactly once and in order, the server's sequence numbers rising by one.

import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';

import { Library } from '../../src/devices/library.js';
import type { NdmpClient } from '../../src/dma/client.js';
import { HistoryHub, historyDefaults } from '../../src/history/hub.js';
import { createLogger } from '../../src/util/log.js';
import { DataHaltReason, DataState, M } from '../../src/wire/index.js';
import { client, startServer } from '../helpers/in-process.js';
import type { TestServer } from '../helpers/in-process.js';
import { startLocalBackup } from '../helpers/local-backup.js';

const FILES = 6000;
/** Each entry's path is ~1.3 KB: the history (~8 MB) is far more than credit, memory and socket buffers. */
const DEEP = Array.from({ length: 6 }, (_, i) => `level-${i}-${'x'.repeat(200)}`).join('/');

/**
 * What may reach the DMA ahead of a new post besides history written before
 * the post: one history message (128 KiB), the kernel's unsent bound
 * (32 KiB, overshot by up to a segment) and the DMA's own receive buffer, which
 * stays near its initial size (tcp_rmem's default, 128 KiB) since it read
 * nothing. Before this design it was at least the whole credit (1 MiB) plus
 * those buffers.
 */
const AHEAD_BOUND = 768 * 1024;

let srv: TestServer;
let dir: string;
let lib: Library;
let tree: string;

before(async () => {
  dir = mkdtempSync(join(os.tmpdir(), 'ndmpd-overtake-'));
  lib = Library.open(join(dir, 'library'), { drives: 1 });
  const hub = new HistoryHub(
    { ...historyDefaults(join(dir, 'spool')), stallTimeoutMs: 60_000 },
    createLogger({ level: 'silent' }),
  );
  srv = await startServer({}, { library: lib, history: hub });
  tree = join(srv.exportDir, 'wide');
  mkdirSync(join(tree, DEEP), { recursive: true });
  for (let i = 0; i < FILES; i++)
    writeFileSync(join(tree, DEEP, `file-${String(i).padStart(6, '0')}`), `${i}\n`);
});
after(async () => {
  await srv.close();
  rmSync(dir, { recursive: true, force: true });
});

/** The server's sequence numbers as the records arrive (a tap before the client's own parser). */
function tapSequences(c: NdmpClient): number[] {
  const socket = (c as unknown as { socket: net.Socket }).socket;
  assert.ok(socket instanceof net.Socket, 'NdmpClient keeps its socket in `socket`');
  const seqs: number[] = [];
  let buf: Buffer = Buffer.alloc(0);
  let fragments: Buffer[] = [];
  socket.prependListener('data', (chunk: Buffer) => {
    buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
    while (buf.length >= 4) {
      const mark = buf.readUInt32BE(0);
      const len = mark & 0x7fffffff;
      if (buf.length < 4 + len) break;
      fragments.push(buf.subarray(4, 4 + len));
      buf = buf.subarray(4 + len);
      if (mark & 0x80000000) {
        seqs.push(Buffer.concat(fragments).readUInt32BE(0));
        fragments = [];
      }
    }
  });
  return seqs;
}

async function until(what: string, ok: () => boolean, ms = 60_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

test('NOTIFY_MOVER_HALTED and a reply overtake queued history; NOTIFY_DATA_HALTED follows all of it', async () => {
  const c = await client(srv.port);
  try {
    const seqs = tapSequences(c);
    const names: string[] = [];
    const offsets: bigint[] = [];
    let reading = false;
    /** History bytes (about: name + fixed part of each entry) received since reading resumed. */
    let bytesSinceResume = 0;
    let aheadOfMover = -1;
    let aheadOfReply = -1;
    let afterDataHalted = 0;
    let dataHalted = false;
    c.onPost(M.FH_ADD_FILE, (b) => {
      for (const f of b.files) {
        names.push((f.names[0] as { unixName: string }).unixName);
        offsets.push(f.fhInfo);
        if (reading) bytesSinceResume += (f.names[0] as { unixName: string }).unixName.length + 84;
        if (dataHalted) afterDataHalted++;
      }
    });
    const mover = new Promise<void>((r) =>
      c.onPost(M.NOTIFY_MOVER_HALTED, () => {
        aheadOfMover = bytesSinceResume;
        r();
      }),
    );
    const data = new Promise<number>((r) =>
      c.onPost(M.NOTIFY_DATA_HALTED, (h) => {
        dataHalted = true;
        r(h.reason);
      }),
    );
    await startLocalBackup(c, lib, [
      { name: 'FILESYSTEM', value: tree },
      { name: 'HIST', value: 'y' },
    ]);
    c.pauseReading();
    // The tape is done long before the DMA has taken its history.
    await until('the mover to halt', () => /"msg":"mover halted"/.test(srv.logText()));
    // Asked while the DMA reads nothing: the server writes the reply ahead of the history it holds.
    const state = c.call(M.DATA_GET_STATE, {}).then((s) => {
      aheadOfReply = bytesSinceResume;
      return s;
    });
    reading = true;
    c.resumeReading();
    await mover;
    const s = await state;
    assert.equal(
      s.state,
      DataState.NDMP_DATA_STATE_ACTIVE,
      'history still on its way: the data service is active',
    );
    assert.ok(
      aheadOfMover <= AHEAD_BOUND,
      `NOTIFY_MOVER_HALTED came after ${aheadOfMover} bytes of history, not behind all that was queued`,
    );
    assert.ok(aheadOfReply <= AHEAD_BOUND, `the reply came after ${aheadOfReply} bytes of history`);
    assert.equal(await data, DataHaltReason.NDMP_DATA_HALT_SUCCESSFUL);
    assert.equal(afterDataHalted, 0, 'no FH post after NOTIFY_DATA_HALTED');
    assert.equal(names.length, FILES + 7, 'the root, six directories, the files: each once');
    assert.equal(new Set(names).size, names.length, 'no entry twice');
    for (let i = 1; i < offsets.length; i++)
      assert.ok(offsets[i]! > offsets[i - 1]!, 'entries in stream order');
    assert.ok(
      bytesSinceResume > 4 * AHEAD_BOUND,
      'most of the history was still queued when the mover halted',
    );
    for (let i = 1; i < seqs.length; i++)
      assert.equal(seqs[i], seqs[i - 1]! + 1, 'sequence numbers rise by one');
    await c.call(M.DATA_STOP, {});
    await c.call(M.MOVER_STOP, {});
    await c.call(M.TAPE_CLOSE, {});
  } finally {
    c.destroy();
  }
});
