// `ndmpd tape ...` as an administrator runs it: the built binary, a library
// in a temporary folder, and a tape file exported byte for byte.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { openTapeImage } from '../../src/devices/tape-image.js';
import { NDMPD_BIN, startNdmpd } from '../helpers/ndmpd-process.js';
import { parse as parseToml } from 'smol-toml';

const run = promisify(execFile);

interface Result {
  code: number;
  out: Buffer;
  err: string;
}

let dir: string;
let lib: string;

/** Runs `ndmpd tape ARGS --library LIB` with the state dir inside the temp folder. */
async function tape(args: string[], withLibrary = true): Promise<Result> {
  const argv = [NDMPD_BIN, 'tape', ...args, ...(withLibrary ? ['--library', lib] : [])];
  try {
    const r = await run(process.execPath, argv, {
      encoding: 'buffer',
      maxBuffer: 64 * 1024 * 1024,
      timeout: 20_000,
      env: { ...process.env, NDMPD_STATE_DIR: join(dir, 'state') },
    });
    return { code: 0, out: r.stdout, err: r.stderr.toString() };
  } catch (e) {
    const x = e as { code: number; stdout: Buffer; stderr: Buffer };
    return { code: x.code, out: x.stdout, err: x.stderr.toString() };
  }
}

async function ok(args: string[]): Promise<string> {
  const r = await tape(args);
  assert.equal(r.code, 0, `ndmpd tape ${args.join(' ')}: ${r.err}`);
  return r.out.toString();
}

interface ListedTape {
  barcode: string;
  label: string;
  capacity: number;
  usedBytes: number;
  files: number;
  writeProtected: boolean;
  loadedIn: string | null;
}

before(() => {
  dir = realpathSync(mkdtempSync(join(os.tmpdir(), 'ndmpd-tape-cli-')));
  lib = join(dir, 'lib');
});
after(() => rmSync(dir, { recursive: true, force: true }));

describe('ndmpd tape', () => {
  test('create prints the new barcodes; list --json shows them', async () => {
    assert.equal(await ok(['create', '--count', '3', '--capacity', '512M']), 'NDM001\nNDM002\nNDM003\n');
    const tapes = JSON.parse(await ok(['list', '--json'])) as ListedTape[];
    assert.deepEqual(
      tapes.map((t) => t.barcode),
      ['NDM001', 'NDM002', 'NDM003'],
    );
    assert.equal(tapes[0]!.capacity, 512 * 2 ** 20);
    assert.equal(tapes[0]!.usedBytes, 0);
    assert.equal(tapes[0]!.loadedIn, null);
  });

  test('label, protect, load, drives; the table shows it all', async () => {
    assert.match(await ok(['label', 'NDM002', 'weekly full']), /NDM002/);
    await ok(['protect', 'NDM003', 'on']);
    await ok(['load', 'NDM002', 'drive1']);
    const tapes = JSON.parse(await ok(['list', '--json'])) as ListedTape[];
    const t2 = tapes.find((t) => t.barcode === 'NDM002')!;
    assert.equal(t2.label, 'weekly full');
    assert.equal(t2.loadedIn, 'drive1');
    assert.equal(tapes.find((t) => t.barcode === 'NDM003')!.writeProtected, true);

    const table = await ok(['list']);
    assert.match(table, /^BARCODE\s+LABEL\s+USED \/ CAPACITY\s+FILES\s+PROTECTED\s+LOCATION\s+ELEMENT$/m);
    // New tapes went into slots 1..3; the load moved NDM002 out of slot 2 (docs/changer.md §1).
    assert.match(table, /^NDM002\s+weekly full\s+0 B \/ 512 MiB\s+0\s+no\s+drive1\s+@501$/m);
    assert.match(table, /^NDM003\s+-\s+0 B \/ 512 MiB\s+0\s+yes\s+slot 3\s+@1002$/m);

    const drives = await ok(['drives']);
    assert.match(drives, /^drive0\s+NDMPD-VTL\s+VTL[0-9A-F]+\s+-\s+@500\s+-$/m);
    assert.match(drives, /^drive1\s+NDMPD-VTL\s+VTL[0-9A-F]+\s+NDM002\s+@501\s+slot 2$/m);
    const dj = JSON.parse(await ok(['drives', '--json'])) as Array<{ name: string; loaded: string | null }>;
    assert.deepEqual(
      dj.map((d) => [d.name, d.loaded]),
      [
        ['drive0', null],
        ['drive1', 'NDM002'],
      ],
    );
    assert.match(await ok(['unload', 'drive1']), /NDM002 unloaded from drive1/);
    assert.match(await ok(['unload', 'drive1']), /drive1 was empty/);
    // Back in the slot it came from.
    const back = JSON.parse(await ok(['list', '--json'])) as (ListedTape & { location: string })[];
    assert.equal(back.find((t) => t.barcode === 'NDM002')!.location, 'slot 2');
  });

  test('failed operations: one line, exit 1; usage mistakes: exit 2', async () => {
    await ok(['load', 'NDM001', 'drive0']);
    for (const args of [
      ['load', 'NDM002', 'drive0'],
      ['load', 'NDM404', 'drive1'],
      ['load', 'NDM001', 'drive1'],
      ['label', 'NDM404', 'x'],
      ['export', 'NDM001', '--file', '5'],
    ]) {
      const r = await tape(args);
      assert.equal(r.code, 1, `${args.join(' ')}: ${r.err}`);
      assert.equal(r.err.trim().split('\n').length, 1, r.err);
      assert.match(r.err, /^ndmpd: /);
    }
    for (const args of [
      ['protect', 'NDM001', 'maybe'],
      ['create', '--count', 'x'],
      ['create', '--capacity', '12Q'],
      ['export', 'NDM001'],
      ['frobnicate'],
    ]) {
      const r = await tape(args);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.err}`);
    }
    // A library folder that is a file is a setup problem.
    writeFileSync(join(dir, 'afile'), '');
    const r = await tape(['list', '--library', join(dir, 'afile')], false);
    assert.equal(r.code, 2);
    assert.match(r.err, /not a directory/);
  });

  test('export writes one tape file, byte for byte, to stdout or -o', async () => {
    await ok(['create', '--prefix', 'EXP', '--capacity', '64M']);
    const path = join(lib, 'tapes', 'EXP001');
    // Records of different sizes, a filemark, more records, two filemarks: tape files 0, 1 and an empty 2.
    const file0 = [Buffer.alloc(10240, 1), Buffer.alloc(10240, 2), Buffer.from('tail of file 0')];
    const file1 = [Buffer.alloc(4096, 0xab), Buffer.alloc(70000, 0xcd)];
    for (const b of [...file0, ...file1]) b.writeUInt32BE(b.length, 0);
    const t = openTapeImage(path, { readOnly: false });
    for (const b of file0) t.writeRecord(b);
    t.writeFilemarks(1);
    for (const b of file1) t.writeRecord(b);
    t.writeFilemarks(2);
    t.close();

    let r = await tape(['export', 'EXP001', '--file', '0']);
    assert.equal(r.code, 0, r.err);
    assert.deepEqual(r.out, Buffer.concat(file0));
    r = await tape(['export', 'EXP001', '--file', '1']);
    assert.equal(r.code, 0, r.err);
    assert.deepEqual(r.out, Buffer.concat(file1));
    const outFile = join(dir, 'file1.bin');
    await ok(['export', 'EXP001', '--file', '1', '-o', outFile]);
    assert.deepEqual(readFileSync(outFile), Buffer.concat(file1));

    r = await tape(['export', 'EXP001', '--file', '2']);
    assert.equal(r.code, 0, r.err);
    assert.equal(r.out.length, 0);
    r = await tape(['export', 'EXP001', '--file', '3']);
    assert.equal(r.code, 1);
    assert.match(r.err, /no file 3/);

    const tapes = JSON.parse(await ok(['list', '--json'])) as ListedTape[];
    const exp = tapes.find((x) => x.barcode === 'EXP001')!;
    assert.equal(exp.files, 3);
    assert.ok(exp.usedBytes >= Buffer.concat([...file0, ...file1]).length);
  });

  test('without --library, the library is <state-dir>/library, as for the server', async () => {
    const r = await tape(['create', '--state-dir', join(dir, 'st')], false);
    assert.equal(r.code, 0, r.err);
    assert.equal(r.out.toString(), 'NDM001\n');
    const cfg = join(dir, 'ndmpd.toml');
    writeFileSync(cfg, `state-dir = "${join(dir, 'st')}"\ndrives = 3\n`);
    const d = await tape(['drives', '--config', cfg], false);
    assert.equal(d.code, 0, d.err);
    assert.match(d.out.toString(), /^drive2\s/m);
    const l = JSON.parse(
      (await tape(['list', '--json', '--config', cfg], false)).out.toString(),
    ) as ListedTape[];
    assert.deepEqual(
      l.map((x) => x.barcode),
      ['NDM001'],
    );
  });
});

describe('ndmpd library settings', () => {
  async function node(args: string[]): Promise<{ code: number; out: string; err: string }> {
    try {
      const r = await run(process.execPath, [NDMPD_BIN, ...args], { timeout: 20_000 });
      return { code: 0, out: r.stdout, err: r.stderr };
    } catch (e) {
      const x = e as { code: number; stdout: string; stderr: string };
      return { code: x.code, out: x.stdout, err: x.stderr };
    }
  }

  test('--check-config shows library, drives, tape capacity and data ports', async () => {
    const st = join(dir, 'cc');
    let r = await node(['--check-config', '--state-dir', st]);
    assert.equal(r.code, 0, r.err);
    // Printed as the config file spells them (ndmpd.example.toml).
    let c = parseToml(r.out) as {
      library: string;
      drives: number;
      'tape-capacity': string;
      'data-ports': string;
    };
    assert.equal(c.library, join(st, 'library'));
    assert.equal(c.drives, 2);
    assert.equal(c['tape-capacity'], '64G');
    assert.equal(c['data-ports'], '0');
    r = await node([
      '--check-config',
      '--library',
      join(dir, 'L'),
      '--drives',
      '4',
      '--tape-capacity',
      '10G',
      '--data-ports',
      '7000-7010',
    ]);
    assert.equal(r.code, 0, r.err);
    c = parseToml(r.out) as typeof c;
    assert.equal(c.library, join(dir, 'L'));
    assert.equal(c.drives, 4);
    assert.equal(c['tape-capacity'], '10G');
    assert.equal(c['data-ports'], '7000-7010');
    r = await node(['--check-config', '--data-ports', '7000']);
    assert.equal((parseToml(r.out) as typeof c)['data-ports'], '7000');
  });

  test('bad library settings: one line naming the setting, exit 2', async () => {
    for (const args of [
      ['--data-ports', '7010-7000'],
      ['--data-ports', '0-10'],
      ['--data-ports', '70000'],
      ['--data-ports', 'any'],
      ['--tape-capacity', 'big'],
      ['--tape-capacity', '10'],
      ['--drives', '0'],
      ['--data-address', '1.2.3'],
      ['--data-address', '::1'],
    ]) {
      const r = await node([...args, '--check-config']);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.err}`);
      assert.equal(r.err.trim().split('\n').length, 1, r.err);
      assert.ok(r.err.includes(args[0]!.slice(2)), r.err);
    }
  });

  test('the server opens the library at start and logs its drives', async () => {
    const l = join(dir, 'srvlib');
    assert.equal((await tape(['create', '--library', l], false)).code, 0);
    assert.equal((await tape(['load', 'NDM001', 'drive0', '--library', l], false)).code, 0);
    const p = await startNdmpd({ extraArgs: ['--library', l, '--drives', '3'], logLevel: 'info' });
    try {
      const logs = p.logs();
      assert.match(logs, new RegExp(`tape library ${l}`));
      assert.match(logs, /drive0: tape NDM001 loaded/);
      assert.match(logs, /drive2: empty/);
    } finally {
      await p.stop();
    }
  });

  test('a first start creates the library with a tape in each drive and as many spares', async () => {
    const p = await startNdmpd({ logLevel: 'info' });
    try {
      const lib = join(p.dir, 'state', 'library');
      assert.match(p.logs(), /created the tape library .* with 4 tapes, one loaded in each drive/);
      const list = await tape(['list', '--json', '--library', lib], false);
      assert.equal(list.code, 0, list.err);
      const tapes = JSON.parse(list.out.toString()) as {
        barcode: string;
        loadedIn: string | null;
        blank: boolean;
      }[];
      assert.deepEqual(
        tapes.map((t) => [t.barcode, t.loadedIn, t.blank]),
        [
          ['NDM001', 'drive0', true],
          ['NDM002', 'drive1', true],
          ['NDM003', null, true],
          ['NDM004', null, true],
        ],
      );
    } finally {
      await p.stop();
    }
  });
});
