// What sessions leave behind once they are gone: DMAs that drop LOCAL backups
// with file history mid-stream, or hang up while their session threads are
// still starting, must leave the server with no session threads, no history
// channels, and no descriptors of their own (docs/memory.md). Memory figures
// are the soak bench's (bench/soak.ts); this checks the things that hold them.

import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';

import { Library } from '../../src/devices/library.js';
import type { NdmpClient } from '../../src/dma/client.js';
import { HistoryHub, historyDefaults } from '../../src/history/hub.js';
import { createLogger } from '../../src/util/log.js';
import { SessionWorker } from '../../src/services/worker-rpc.js';
import {
  AddrType,
  ErrorCode,
  INVALID_U64,
  M,
  MoverMode,
  NdmpError,
  TapeOpenMode,
} from '../../src/wire/index.js';
import { PASSWORD, RawPeer, USER, client, startServer } from '../helpers/in-process.js';

/** This process's open descriptors, as what they point to. */
function descriptors(): string[] {
  const out: string[] = [];
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      out.push(readlinkSync(`/proc/self/fd/${fd}`));
    } catch {
      /* the one readdir itself used */
    }
  }
  return out;
}

async function waitFor(what: string, cond: () => boolean, ms = 60_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A LOCAL backup of `root` with history on `tape`; returns once DATA_START_BACKUP is answered. */
async function startBackup(c: NdmpClient, tape: string, root: string, hist: string): Promise<void> {
  // The slot's previous session may still be closing the tape.
  for (let i = 0; ; i++) {
    try {
      await c.call(M.TAPE_OPEN, { device: tape, mode: TapeOpenMode.NDMP_TAPE_RDWR_MODE });
      break;
    } catch (e) {
      if (!(e instanceof NdmpError && e.ndmpError === ErrorCode.NDMP_DEVICE_BUSY_ERR) || i > 400) throw e;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  await c.call(M.MOVER_SET_WINDOW, { offset: 0n, length: INVALID_U64 });
  await c.call(M.MOVER_LISTEN, { mode: MoverMode.NDMP_MOVER_MODE_READ, addrType: AddrType.NDMP_ADDR_LOCAL });
  await c.call(M.DATA_CONNECT, { addr: { addrType: AddrType.NDMP_ADDR_LOCAL } });
  await c.call(M.DATA_START_BACKUP, {
    butypeName: 'tar',
    env: [
      { name: 'FILESYSTEM', value: root },
      { name: 'HIST', value: hist },
    ],
  });
}

describe('what dropped sessions leave behind', { timeout: 300_000 }, () => {
  test('after 32 backups dropped mid-stream and 16 hang-ups during thread start: no threads, channels or descriptors left', async () => {
    const dir = mkdtempSync(join(os.tmpdir(), 'ndmpd-memory-'));
    const lib = Library.open(join(dir, 'library'), { drives: 4 });
    const tapes = lib.createTapes({ count: 4, capacity: 1n << 30n }).map((b) => lib.tapePath(b));
    const hub = new HistoryHub(historyDefaults(join(dir, 'spool')), createLogger({ level: 'silent' }));
    const s = await startServer({}, { library: lib, history: hub });
    try {
      const root = join(s.exportDir, 'tree');
      for (let d = 0; d < 20; d++) {
        mkdirSync(join(root, `d${d}`), { recursive: true });
        for (let f = 0; f < 50; f++) writeFileSync(join(root, `d${d}`, `f${f}`), Buffer.alloc(2048, f));
      }
      // One whole backup first: the history thread is the server's for good, not a session's.
      const warm = await client(s.port);
      const halted = new Promise((r) => warm.onPost(M.NOTIFY_DATA_HALTED, r));
      await startBackup(warm, tapes[0]!, root, 'y');
      await halted;
      warm.destroy();
      await waitFor(
        'the warm-up session to end',
        () => s.server.connectionCount === 0 && SessionWorker.live === 0,
      );
      const before = descriptors();

      // Dropped at once after DATA_START_BACKUP (its reader thread just starting), after the
      // first file history, or a little later; v3 and v4; both history models.
      let n = 0;
      await Promise.all(
        tapes.map(async (tape, slot) => {
          for (let i = 0; i < 8; i++) {
            const k = n++;
            const c = await client(s.port, 'text', k % 2 === 0 ? 4 : 3);
            const fh = new Promise<void>((r) => {
              c.onPost(M.FH_ADD_FILE, () => r());
              c.onPost(M.FH_ADD_DIR, () => r());
            });
            try {
              await startBackup(c, tape, root, (k + slot) % 2 === 0 ? 'y' : 'd');
              if (k % 3 === 1) await Promise.race([fh, new Promise((r) => setTimeout(r, 5000))]);
              else if (k % 3 === 2) await new Promise((r) => setTimeout(r, 20));
            } finally {
              c.destroy();
            }
          }
        }),
      );
      // Hang-ups while both session threads are still loading.
      for (let i = 0; i < 16; i++) {
        const raw = await RawPeer.connect(s.port);
        await raw.next();
        const req = raw.request(M.CONNECT_CLIENT_AUTH.code, authText());
        raw.send(
          Buffer.concat([req, raw.request(M.DATA_GET_STATE.code), raw.request(M.TAPE_GET_STATE.code)]),
        );
        await raw.next();
        raw.close();
      }

      await waitFor(
        'every session to end',
        () => s.server.connectionCount === 0 && SessionWorker.live === 0 && hub.openChannels === 0,
      );
      assert.equal(SessionWorker.live, 0, 'no session thread is left');
      assert.equal(hub.openChannels, 0, 'no history channel is left');
      // A thread stopped while loading its modules would leave their files open.
      // Sockets and pipes of the last sessions may take a moment to close: wait a bounded while.
      await waitFor('descriptors to settle', () => descriptors().length <= before.length, 10_000).catch(
        () => undefined,
      );
      const scripts = descriptors().filter((p) => p.endsWith('.js'));
      assert.deepEqual(scripts, [], 'no module file is left open');
      const sockets = (l: string[]) => l.filter((p) => p.startsWith('socket:')).length;
      assert.ok(sockets(descriptors()) <= sockets(before), 'no socket is left open');
    } finally {
      await s.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

/** A CONNECT_CLIENT_AUTH body with the test server's TEXT credentials. */
function authText(): Buffer {
  const str = (t: string) => {
    const b = Buffer.from(t);
    const len = Buffer.alloc(4);
    len.writeUInt32BE(b.length);
    return Buffer.concat([len, b, Buffer.alloc((4 - (b.length % 4)) % 4)]);
  };
  const type = Buffer.alloc(4);
  type.writeUInt32BE(1);
  return Buffer.concat([type, str(USER), str(PASSWORD)]);
}
