// Amanda's ndmjob driving ndmpd's changer (docs/changer.md §5), in NDMP v4
// and v3, against a library of 2 drives and 8 slots: init-elem-status,
// load, unload, move, export/import through the mail slot, -Z, the sense of
// a move from an empty slot or into a full one, labels. After each command
// `ndmpd tape list` (which a running server allows) must show the tapes
// where ndmjob put them. Then a backup spanning three tapes, the robot changing
// them at each end of window, and its restore. ndmjob's exit status means nothing
// (docs/interop.md): runs are judged by what they print.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';

import { Library } from '../../src/devices/library.js';
import { NDMPD_BIN, startNdmpd } from '../helpers/ndmpd-process.js';
import type { NdmpdProcess } from '../helpers/ndmpd-process.js';
import { peers, requirePeers, runNdmjob } from '../helpers/peers.js';
import { assertSameTree } from '../helpers/trees.js';

const run = promisify(execFile);
const BARCODES = ['NDM001', 'NDM002', 'NDM003', 'NDM004', 'NDM005', 'NDM006'];

describe('ndmjob drives the changer', { timeout: 600_000 }, () => {
  let p: NdmpdProcess | null = null;
  let work = '';
  let library = '';

  before(async () => {
    if (!peers.ndmjob) return;
    work = mkdtempSync(join(os.tmpdir(), 'ndmjob-changer-'));
    library = join(work, 'library');
    // Six tapes in slots 1..6, drives and mail slot empty.
    Library.open(library, { drives: 2, slots: 8 }).createTapes({
      count: BARCODES.length,
      capacity: 64n << 20n,
    });
    p = await startNdmpd({
      extraArgs: ['--library', library, '--drives', '2', '--slots', '8'],
      logLevel: 'info',
    });
  });
  after(async () => {
    await p?.stop();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  /** Where each tape is, as `ndmpd tape list --json` says while the server runs. */
  async function where(): Promise<Record<string, string | null>> {
    const r = await run(process.execPath, [NDMPD_BIN, 'tape', 'list', '--json', '--library', library]);
    const tapes = JSON.parse(r.stdout) as { barcode: string; location: string | null }[];
    return Object.fromEntries(tapes.map((t) => [t.barcode, t.location]));
  }

  async function driveShows(drive: string, barcode: string | null): Promise<void> {
    const r = await run(process.execPath, [NDMPD_BIN, 'tape', 'drives', '--json', '--library', library]);
    const ds = JSON.parse(r.stdout) as { name: string; loaded: string | null }[];
    assert.equal(ds.find((d) => d.name === drive)!.loaded, barcode, `ndmpd tape drives: ${drive}`);
  }

  const initial = () => Object.fromEntries(BARCODES.map((b, i) => [b, `slot ${i + 1}`]));

  for (const version of [4, 3] as const) {
    test(
      `v${version}: inventory, load, unload, move, export, import, -Z`,
      { timeout: 240_000 },
      async (t) => {
        if (!requirePeers(t, ['ndmjob'])) return;
        const agent = `127.0.0.1:${p!.port}/${version},${p!.user},${p!.password}`;
        const robot = async (...args: string[]): Promise<string> => {
          const r = await runNdmjob([...args, '-T', agent, '-r', 'changer0'], 60_000);
          assert.ok(!r.timedOut, `ndmjob ${args.join(' ')} timed out:\n${r.output}`);
          return r.output;
        };
        const ok = async (...args: string[]): Promise<string> => {
          const out = await robot(...args);
          assert.match(out, /^SESS "Operation complete"$/m, `ndmjob ${args.join(' ')}:\n${out}`);
          assert.doesNotMatch(out, /had problems|move BAD|failed/, `ndmjob ${args.join(' ')}:\n${out}`);
          return out;
        };
        assert.deepEqual(await where(), initial());

        // -q prints the status table and no SESS line.
        const q = await robot('-q');
        assert.match(q, /slots 8@1000 {2}drive 2@500 {2}arm 1@1 {2}i\/e 1@10/);
        assert.match(q, /@1000 SLOT Full {2}PVolTag\(NDM001,#0\)/);

        assert.match(await ok('-o', 'init-elem-status', '-v'), /initialize element status/);

        assert.match(await ok('-o', 'load=1000', '-vv'), /robot move OK @1000 to @500/);
        assert.equal((await where()).NDM001, 'drive0');
        await driveShows('drive0', 'NDM001');
        assert.match(
          await ok('-o', 'load=1001', '-o', 'tape-addr=501', '-vv'),
          /robot move OK @1001 to @501/,
        );
        await driveShows('drive1', 'NDM002');

        // Without a destination ndmjob puts the tape back where SValid says it came from.
        assert.match(await ok('-o', 'unload', '-vv'), /robot move OK @500 to @1000/);
        assert.match(
          await ok('-o', 'unload', '-o', 'tape-addr=501', '-f', 'drive1', '-vv'),
          /robot move OK @501 to @1001/,
        );
        await driveShows('drive0', null);
        assert.deepEqual(await where(), initial());

        assert.match(
          await ok('-o', 'move', '-o', 'from-addr=1002', '-o', 'to-addr=1006', '-vv'),
          /robot move OK @1002 to @1006/,
        );
        assert.equal((await where()).NDM003, 'slot 7');
        assert.match(await ok('-o', 'export=1006', '-vv'), /robot move OK @1006 to @10/);
        assert.equal((await where()).NDM003, 'mailslot 1');
        assert.match(await ok('-o', 'import=1002', '-vv'), /robot move OK @10 to @1002/);
        assert.deepEqual(await where(), initial());

        // From an empty slot, into a full one: refused with the SMC sense, and ndmjob says so.
        const before = p!.logs().length;
        let out = await robot('-o', 'move', '-o', 'from-addr=1007', '-o', 'to-addr=1006', '-vv');
        assert.match(out, /robot move BAD @1007 to @1006/);
        assert.match(out, /RLMw "changer: source 1007 is empty"/);
        out = await robot('-o', 'move', '-o', 'from-addr=1000', '-o', 'to-addr=1001', '-vv');
        assert.match(out, /robot move BAD @1000 to @1001/);
        assert.match(out, /RLMw "changer: destination 1001 is full"/);
        const refusals = p!
          .logs()
          .slice(before)
          .split('\n')
          .filter((l) => l.includes('changer command refused'))
          .map((l) => JSON.parse(l) as { key: number; asc: number; ascq: number });
        assert.deepEqual(
          refusals.map((r) => [r.key, r.asc, r.ascq]),
          [
            [5, 0x3b, 0x0e],
            [5, 0x3b, 0x0d],
          ],
        );
        assert.deepEqual(await where(), initial(), 'refused moves moved nothing');

        // -Z: a full drive goes back to its source slot.
        await ok('-o', 'load=1003', '-vv');
        out = await ok('-Z', '-v');
        assert.match(out, /Robot is not ready, trying to remedy/);
        assert.deepEqual(await where(), initial());
      },
    );
  }

  test('v4: init-labels with -m entries, then -l lists every label', { timeout: 240_000 }, async (t) => {
    if (!requirePeers(t, ['ndmjob'])) return;
    const agent = `127.0.0.1:${p!.port}/4,${p!.user},${p!.password}`;
    const labels = ['LAB001@1000', 'LAB002@1001', 'LAB003@1002'];
    const r = await runNdmjob(
      [
        '-o',
        'init-labels',
        '-T',
        agent,
        '-r',
        'changer0',
        '-f',
        'drive0',
        ...labels.flatMap((m) => ['-m', m]),
        '-v',
      ],
      120_000,
    );
    for (const m of labels)
      assert.match(r.output, new RegExp(`Writing tape label '${m.split('@')[0]}' type=m`));
    assert.match(r.output, /^SESS "Operation complete"$/m, r.output);
    const l = await runNdmjob(['-l', '-T', agent, '-r', 'changer0', '-f', 'drive0', '-v'], 120_000);
    for (const m of labels) assert.match(l.output, new RegExp(`^ME "${m}"$`, 'm'), l.output);
    assert.deepEqual(await where(), initial(), 'every tape went back to its slot');
    // `ndmpd tape list` shows the labels ndmjob wrote, by barcode, in both its forms.
    const listed = JSON.parse(
      (await run(process.execPath, [NDMPD_BIN, 'tape', 'list', '--json', '--library', library])).stdout,
    ) as {
      barcode: string;
      label: string;
      writtenLabel: { kind: string; text: string } | null;
      element: number;
    }[];
    for (const m of labels) {
      const [label, at] = m.split('@');
      const t = listed.find((x) => x.element === Number(at))!;
      assert.equal(t.label, label, `${t.barcode} at ${at}`);
      assert.deepEqual(t.writtenLabel, { kind: 'media', text: label });
    }
    const text = (await run(process.execPath, [NDMPD_BIN, 'tape', 'list', '--library', library])).stdout;
    for (const m of labels) assert.match(text, new RegExp(`^NDM\\d+\\s+${m.split('@')[0]}\\s`, 'm'), text);
  });

  // A backup the robot spreads over three tapes (the /1000k windows force the changes,
  // docs/changer.md §5), then the restore with the same media list: the tree comes back whole.
  for (const version of [4, 3] as const) {
    test(
      `v${version}: ndmjob -c over three tapes changed by the robot, then -x restores the tree`,
      { timeout: 240_000 },
      async (t) => {
        if (!requirePeers(t, ['ndmjob'])) return;
        const agent = `127.0.0.1:${p!.port}/${version},${p!.user},${p!.password}`;
        const first = version === 4 ? 1003 : 1000;
        const media = [0, 1, 2].map((i) => `SPAN${version}${i}@${first + i}`);
        const r0 = await runNdmjob(
          [
            '-o',
            'init-labels',
            '-T',
            agent,
            '-r',
            'changer0',
            '-f',
            'drive0',
            ...media.flatMap((m) => ['-m', m]),
            '-v',
          ],
          120_000,
        );
        assert.match(r0.output, /^SESS "Operation complete"$/m, r0.output);
        const tree = join(p!.exportDir, `span-v${version}`);
        mkdirSync(join(tree, 'sub'), { recursive: true });
        writeFileSync(join(tree, 'a.bin'), randomBytes(1_500_000));
        writeFileSync(join(tree, 'sub', 'b.bin'), randomBytes(900_000));
        writeFileSync(join(tree, 'sub', 'c.txt'), 'the small one\n');
        // The first two tapes take 1000 KiB each, the third the rest.
        const list = media.flatMap((m, i) => ['-m', i < 2 ? m.replace('@', '/1000k@') : m]);
        const index = join(work, `span-v${version}.idx`);
        const b = await runNdmjob(
          [
            '-c',
            '-D',
            agent,
            '-r',
            'changer0',
            '-f',
            'drive0',
            '-B',
            'tar',
            '-C',
            tree,
            ...list,
            '-I',
            index,
            '-v',
          ],
          180_000,
        );
        assert.match(b.output, /Operation ended OKAY/, b.output.slice(-4000));
        assert.equal(
          b.output.match(/^SESS "Operation requires next tape"$/gm)?.length,
          2,
          b.output.slice(-4000),
        );
        for (const [i, m] of media.entries()) {
          assert.match(
            b.output,
            new RegExp(`media #${i + 1} ${m.split('@')[0]}\\+1/\\d+K@${first + i}`),
            b.output.slice(-2000),
          );
        }
        const out = join(p!.exportDir, `span-v${version}-restored`);
        const x = await runNdmjob(
          [
            '-x',
            '-D',
            agent,
            '-r',
            'changer0',
            '-f',
            'drive0',
            '-B',
            'tar',
            '-C',
            out,
            ...list,
            '-J',
            index,
            '-v',
          ],
          180_000,
        );
        assert.match(x.output, /Operation ended OKAY/, x.output.slice(-4000));
        assert.equal(
          x.output.match(/^SESS "Operation requires a different tape"$/gm)?.length,
          2,
          x.output.slice(-4000),
        );
        assertSameTree(tree, out);
        assert.deepEqual(await where(), initial(), 'every tape went back to its slot');
      },
    );
  }
});
