// Issue 12, finding 1, end to end over a real socket: an export holding
// `rootlink -> /` (anyone who can write in the export can plant one) and a
// secret outside the export. FILES=rootlink/<secret> is a warning naming the
// entry, and the tape holds no byte of the secret; FILES=rootlink backs up the
// link itself; FILESYSTEM=<export>/rootlink and a restore PREFIX through the
// link are refused ILLEGAL_ARGS with the reason.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { PaxParser } from '../../src/backup/pax-parser.js';
import type { ParsedEntry } from '../../src/backup/pax-parser.js';
import { Library } from '../../src/devices/library.js';
import {
  AddrType,
  DataHaltReason,
  ErrorCode,
  INVALID_U64,
  M,
  MoverMode,
  NdmpError,
  TapeOpenMode,
} from '../../src/wire/index.js';
import type { HaltedPost, Pval } from '../../src/wire/index.js';
import { client, startServer } from '../helpers/in-process.js';
import type { TestServer } from '../helpers/in-process.js';
import { tapeFileBytes } from '../helpers/tapes.js';
import { startLocalBackup } from '../helpers/local-backup.js';

const SECRET = 'confine-e2e-secret-bytes-0123456789';

describe('exports confine: a link to / inside the export', { timeout: 60_000 }, () => {
  let srv: TestServer;
  let dir: string;
  let lib: Library;
  let secretDir: string;

  before(async () => {
    dir = fs.mkdtempSync(join(os.tmpdir(), 'ndmpd-confine-e2e-'));
    lib = Library.open(join(dir, 'library'));
    srv = await startServer({}, { library: lib });
    // The secret lies outside the export (the export is a sibling temp dir).
    secretDir = fs.realpathSync(fs.mkdtempSync(join(os.tmpdir(), 'ndmpd-secret-')));
    fs.writeFileSync(join(secretDir, 'secret'), SECRET);
    fs.symlinkSync('/', join(srv.exportDir, 'rootlink'));
    fs.writeFileSync(join(srv.exportDir, 'ok.txt'), 'an honest file');
  });
  after(async () => {
    await srv.close();
    fs.rmSync(dir, { recursive: true, force: true });
    fs.rmSync(secretDir, { recursive: true, force: true });
  });

  /** A LOCAL backup of `env` to a fresh tape: the halt, the LOG_MESSAGEs and the tape file's bytes. */
  async function backup(env: Pval[]): Promise<{ halted: HaltedPost; messages: string[]; bytes: Buffer }> {
    const c = await client(srv.port, 'md5');
    try {
      const messages: string[] = [];
      c.onPost(M.LOG_MESSAGE, (b) => messages.push(b.entry));
      const halted = new Promise<HaltedPost>((r) => c.onPost(M.NOTIFY_DATA_HALTED, r));
      const moverHalted = new Promise<HaltedPost>((r) => c.onPost(M.NOTIFY_MOVER_HALTED, r));
      const tape = await startLocalBackup(c, lib, env);
      const h = await halted;
      await moverHalted;
      await c.call(M.DATA_STOP, {});
      await c.call(M.MOVER_STOP, {});
      await c.call(M.TAPE_CLOSE, {});
      return { halted: h, messages, bytes: tapeFileBytes(tape, 0) };
    } finally {
      await c.close();
    }
  }

  function entries(bytes: Buffer): Map<string, ParsedEntry> {
    const out = new Map<string, ParsedEntry>();
    new PaxParser().push(bytes, { onEntry: (e) => void out.set(e.path, e), onData: () => undefined });
    return out;
  }

  test('FILES=rootlink/<secret>: a warning naming the entry, no byte of the secret on tape, the rest backed up', async () => {
    const through = `rootlink${secretDir}/secret`;
    const r = await backup([
      { name: 'FILESYSTEM', value: srv.exportDir },
      { name: 'FILES', value: through },
      { name: 'FILES', value: 'ok.txt' },
      { name: 'HIST', value: 'n' },
    ]);
    assert.equal(r.halted.reason, DataHaltReason.NDMP_DATA_HALT_SUCCESSFUL);
    assert.ok(
      r.messages.some((m) => m.includes(JSON.stringify(through)) && /"rootlink" is a symbolic link/.test(m)),
      r.messages.join('\n'),
    );
    assert.equal(r.bytes.includes(Buffer.from(SECRET)), false, 'no byte of the secret on tape');
    assert.deepEqual([...entries(r.bytes).keys()], ['ok.txt']);
  });

  test('FILES=rootlink with dir/node history: the symbolic link itself', async () => {
    const r = await backup([
      { name: 'FILESYSTEM', value: srv.exportDir },
      { name: 'FILES', value: 'rootlink' },
      { name: 'HIST', value: 'd' },
    ]);
    assert.equal(r.halted.reason, DataHaltReason.NDMP_DATA_HALT_SUCCESSFUL);
    const e = entries(r.bytes);
    assert.deepEqual([...e.keys()], ['rootlink']);
    assert.equal(e.get('rootlink')!.type, 'symlink');
    assert.equal(e.get('rootlink')!.linkTarget, '/');
  });

  test('a whole-export backup stores the link and never follows it', async () => {
    const r = await backup([
      { name: 'FILESYSTEM', value: srv.exportDir },
      { name: 'HIST', value: 'n' },
    ]);
    assert.equal(r.halted.reason, DataHaltReason.NDMP_DATA_HALT_SUCCESSFUL);
    assert.equal(r.bytes.includes(Buffer.from(SECRET)), false);
    const e = entries(r.bytes);
    assert.equal(e.get('rootlink')?.type, 'symlink');
    assert.ok(![...e.keys()].some((p) => p.startsWith('rootlink/')));
  });

  test('FILESYSTEM through the link and a restore PREFIX through it: ILLEGAL_ARGS with the reason', async () => {
    const c = await client(srv.port, 'md5');
    try {
      const refused = async (p: Promise<unknown>, re: RegExp) => {
        await assert.rejects(
          p,
          (e: unknown) => e instanceof NdmpError && e.ndmpError === ErrorCode.NDMP_ILLEGAL_ARGS_ERR,
        );
        assert.match(srv.logText(), re);
      };
      const [barcode] = lib.createTapes({ count: 1 });
      await c.call(M.TAPE_OPEN, { device: lib.tapePath(barcode!), mode: TapeOpenMode.NDMP_TAPE_RDWR_MODE });
      await c.call(M.MOVER_SET_WINDOW, { offset: 0n, length: INVALID_U64 });
      await c.call(M.MOVER_LISTEN, {
        mode: MoverMode.NDMP_MOVER_MODE_READ,
        addrType: AddrType.NDMP_ADDR_LOCAL,
      });
      await c.call(M.DATA_CONNECT, { addr: { addrType: AddrType.NDMP_ADDR_LOCAL } });
      const link = join(srv.exportDir, 'rootlink');
      for (const fsName of [link, `${link}${secretDir}`]) {
        await refused(
          c.call(M.DATA_START_BACKUP, { butypeName: 'tar', env: [{ name: 'FILESYSTEM', value: fsName }] }),
          new RegExp(
            `FILESYSTEM ${fsName}: \\\\?"rootlink\\\\?" is a symbolic link; name the directory itself`,
          ),
        );
      }
      const prefix = `${link}${secretDir}/restored`;
      await refused(
        c.call(M.DATA_START_RECOVER, {
          env: [{ name: 'PREFIX', value: prefix }],
          nlist: [],
          butypeName: 'tar',
        }),
        new RegExp(`PREFIX ${prefix}: \\\\?"rootlink\\\\?" is a symbolic link`),
      );
      const nlistDest = `${link}${secretDir}`;
      await refused(
        c.call(M.DATA_START_RECOVER, {
          env: [],
          nlist: [
            {
              originalPath: 'ok.txt',
              destinationPath: nlistDest,
              name: 'ok.txt',
              otherName: '',
              node: INVALID_U64,
              fhInfo: INVALID_U64,
            },
          ],
          butypeName: 'tar',
        }),
        /nlist\[0\] destination .*rootlink\\?" is a symbolic link/,
      );
      assert.equal(fs.existsSync(join(secretDir, 'restored')), false);
      assert.equal(fs.existsSync(join(secretDir, 'ok.txt')), false);
    } finally {
      await c.close();
    }
  });
});
