// Names are bytes, end to end (docs/names.md, issue 13): a tree with Latin-1
// directory and file names, a name with a newline, a symbolic link to a target
// that is not UTF-8, a path of about 3 KB and hard links across such names,
// backed up over a real session (LOCAL, path history) and restored into a
// fresh directory: the same bytes everywhere (readdir and readlink as Buffers,
// inodes shared as in the source), the file history naming every entry with
// its exact bytes, FILES and EXCLUDE naming a Latin-1 name, and an nlist entry
// with such a name restored and reported (LOG_FILE) by its bytes. GNU tar
// extracts the same stream into the same tree.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { Library } from '../../src/devices/library.js';
import type { NdmpClient } from '../../src/dma/client.js';
import { decodeName, encodeName, escapeName } from '../../src/util/byte-name.js';
import {
  AddrType,
  DataHaltReason,
  INVALID_U64,
  M,
  MoverMode,
  RecoveryStatus,
  TapeOpenMode,
} from '../../src/wire/index.js';
import type { FhFile, HaltedPost, NlistName, Pval } from '../../src/wire/index.js';
import { client, startServer } from '../helpers/in-process.js';
import type { TestServer } from '../helpers/in-process.js';
import { tapeFileBytes } from '../helpers/tapes.js';
import { startLocalBackup } from '../helpers/local-backup.js';
import { byteTree, scanBytes, sameBytesTree, L } from '../helpers/byte-trees.js';

/** The lossless string of a path given as Latin-1 text (each char one byte). */
const s = (latin1: string): string => decodeName(Buffer.from(latin1, 'latin1'));

describe('byte names through a backup and a restore', { timeout: 120_000 }, () => {
  let srv: TestServer;
  let dir: string;
  let lib: Library;
  let tree: string;

  before(async () => {
    dir = fs.mkdtempSync(join(os.tmpdir(), 'ndmpd-bytes-'));
    lib = Library.open(join(dir, 'library'), { drives: 2 });
    srv = await startServer({}, { library: lib });
    tree = join(srv.exportDir, 'tree');
    fs.mkdirSync(tree);
    byteTree(tree);
  });
  after(async () => {
    await srv.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  interface Backup {
    tape: string;
    files: FhFile[];
    messages: string[];
    halted: HaltedPost;
  }

  /** A LOCAL backup with `env` and path history onto a fresh tape; resolves once data and mover halted. */
  async function backup(c: NdmpClient, env: Pval[]): Promise<Backup> {
    const files: FhFile[] = [];
    const messages: string[] = [];
    c.onPost(M.FH_ADD_FILE, (b) => files.push(...b.files));
    c.onPost(M.LOG_MESSAGE, (b) => messages.push(b.entry));
    const data = new Promise<HaltedPost>((r) => c.onPost(M.NOTIFY_DATA_HALTED, r));
    const mover = new Promise<HaltedPost>((r) => c.onPost(M.NOTIFY_MOVER_HALTED, r));
    const tape = await startLocalBackup(c, lib, [...env, { name: 'HIST', value: 'f' }]);
    const halted = await data;
    await mover;
    await c.call(M.DATA_STOP, {});
    await c.call(M.MOVER_STOP, {});
    await c.call(M.TAPE_CLOSE, {});
    return { tape, files, messages, halted };
  }

  /** Recovers `tape` over LOCAL as ndmjob does; resolves with the halt, LOG_FILEs and messages. */
  async function recover(
    c: NdmpClient,
    tape: string,
    env: Pval[],
    nlist: NlistName[] = [],
  ): Promise<{
    halted: HaltedPost;
    logFiles: { name: string; recoveryStatus: number }[];
    messages: string[];
  }> {
    const logFiles: { name: string; recoveryStatus: number }[] = [];
    const messages: string[] = [];
    c.onPost(M.LOG_FILE, (b) => logFiles.push(b));
    c.onPost(M.LOG_MESSAGE, (b) => messages.push(b.entry));
    c.onPost(M.NOTIFY_DATA_READ, (b) => void c.call(M.MOVER_READ, b).catch(() => undefined));
    c.onPost(M.NOTIFY_MOVER_PAUSED, () => void c.call(M.MOVER_CLOSE, {}).catch(() => undefined));
    const halted = new Promise<HaltedPost>((r) => c.onPost(M.NOTIFY_DATA_HALTED, r));
    await c.call(M.TAPE_OPEN, { device: tape, mode: TapeOpenMode.NDMP_TAPE_READ_MODE });
    await c.call(M.MOVER_SET_WINDOW, { offset: 0n, length: INVALID_U64 });
    await c.call(M.MOVER_LISTEN, {
      mode: MoverMode.NDMP_MOVER_MODE_WRITE,
      addrType: AddrType.NDMP_ADDR_LOCAL,
    });
    await c.call(M.DATA_CONNECT, { addr: { addrType: AddrType.NDMP_ADDR_LOCAL } });
    await c.call(M.DATA_START_RECOVER, { env, nlist, butypeName: 'tar' });
    const h = await halted;
    await c.call(M.DATA_STOP, {});
    await c.call(M.MOVER_STOP, {}).catch(() => undefined);
    await c.call(M.TAPE_CLOSE, {});
    return { halted: h, logFiles, messages };
  }

  const names = (files: FhFile[]): string[] =>
    files.map((f) => (f.names[0] as { unixName: string }).unixName).sort();

  test('the whole tree: history names every entry by its bytes, and the restore is identical', async () => {
    const c = await client(srv.port);
    let b: Backup;
    try {
      b = await backup(c, [{ name: 'FILESYSTEM', value: tree }]);
    } finally {
      await c.close();
    }
    assert.equal(b.halted.reason, DataHaltReason.NDMP_DATA_HALT_SUCCESSFUL, b.halted.textReason);
    assert.deepEqual(
      b.messages.filter((m) => /skipped|vanished|cannot/.test(m)),
      [],
    );
    // Every path of the source, as bytes, is named once in the history ('/' + its path).
    const src = scanBytes(tree);
    const want = [...src.keys()].map((p) => (p === '' ? '/' : `/${p}`)).sort();
    assert.deepEqual(names(b.files).map(escapeName), want.map(escapeName));
    for (const n of names(b.files)) assert.ok(!n.includes('\ufffd'), `no U+FFFD in ${JSON.stringify(n)}`);
    assert.ok(
      names(b.files).some((n) => encodeName(n).includes(Buffer.from('caf\xe9/na\xefve.txt', 'latin1'))),
      'the Latin-1 name is sent as its Latin-1 bytes',
    );

    const out = join(srv.exportDir, 'restored-whole');
    const r2 = await client(srv.port);
    try {
      const { halted, messages } = await recover(r2, b.tape, [{ name: 'PREFIX', value: out }]);
      assert.equal(
        halted.reason,
        DataHaltReason.NDMP_DATA_HALT_SUCCESSFUL,
        `${halted.textReason}\n${messages.join('\n')}`,
      );
    } finally {
      await r2.close();
    }
    sameBytesTree(tree, out);

    // GNU tar, the independent reader, extracts the same stream into the same tree (hdrcharset=BINARY).
    const byTar = join(srv.exportDir, 'restored-by-tar');
    fs.mkdirSync(byTar);
    execFileSync('tar', ['-xpf', '-', '-C', byTar], {
      input: tapeFileBytes(b.tape, 0),
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    sameBytesTree(tree, byTar);
  });

  test('FILES naming a Latin-1 directory and EXCLUDE naming a Latin-1 file match their bytes', async () => {
    const c = await client(srv.port);
    let b: Backup;
    try {
      b = await backup(c, [
        { name: 'FILESYSTEM', value: tree },
        { name: 'FILES', value: s(L.dir) },
        { name: 'EXCLUDE', value: s(L.file) },
      ]);
    } finally {
      await c.close();
    }
    assert.equal(b.halted.reason, DataHaltReason.NDMP_DATA_HALT_SUCCESSFUL, b.halted.textReason);
    const got = names(b.files);
    assert.ok(got.includes(`/${s(L.dir)}`), `the FILES directory is backed up: ${got.join(', ')}`);
    assert.ok(got.includes(`/${s(L.dir)}/ok.txt`));
    assert.ok(!got.includes(`/${s(L.dir)}/${s(L.file)}`), 'the EXCLUDEd Latin-1 file is left out');
    assert.ok(!got.some((n) => n.startsWith(`/${s(L.newline)}`)), 'nothing outside FILES');
  });

  test('an nlist entry with a Latin-1 name is restored and reported by its bytes', async () => {
    const c = await client(srv.port);
    let b: Backup;
    try {
      b = await backup(c, [{ name: 'FILESYSTEM', value: tree }]);
    } finally {
      await c.close();
    }
    const out = join(srv.exportDir, 'restored-one');
    const original = `/${s(L.dir)}/${s(L.file)}`;
    const r2 = await client(srv.port);
    try {
      const { halted, logFiles } = await recover(
        r2,
        b.tape,
        [],
        [
          {
            originalPath: original,
            destinationPath: `${out}${original}`,
            name: '',
            otherName: '',
            node: INVALID_U64,
            fhInfo: INVALID_U64,
          },
        ],
      );
      assert.equal(halted.reason, DataHaltReason.NDMP_DATA_HALT_SUCCESSFUL, halted.textReason);
      assert.deepEqual(
        logFiles.map((l) => ({ name: l.name, recoveryStatus: l.recoveryStatus })),
        [{ name: original, recoveryStatus: RecoveryStatus.NDMP_RECOVERY_SUCCESSFUL }],
      );
    } finally {
      await r2.close();
    }
    const bytes = fs.readFileSync(
      Buffer.concat([Buffer.from(`${out}/`), Buffer.from(`${L.dir}/${L.file}`, 'latin1')]),
    );
    assert.equal(bytes.toString(), 'na\xefve content\n');
  });
});
