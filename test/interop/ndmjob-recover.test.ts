// Restores driven by ndmjob (Amanda's DMA) against ndmpd: a backup with an
// index (-c -I); the index regenerated from tape (-t: RECOVER_FILEHIST); the
// whole backup into a fresh directory (-x), equal to the source to the
// nanosecond; single files by Direct Access Recovery (-x -J INDEX FILE), which
// reads a few KiB, not the backup; renames (NEW=OLD); and a recover over a
// three-way TCP connection (-T).

import assert from 'node:assert/strict';
import {
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { startNdmpd } from '../helpers/ndmpd-process.js';
import type { NdmpdProcess } from '../helpers/ndmpd-process.js';
import { peers, requirePeers, runNdmjob } from '../helpers/peers.js';
import { assertSameTree, makeSampleTree } from '../helpers/trees.js';

/** DH* lines of an ndmjob index as path → fh_info (path model). */
function fhInfos(index: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of readFileSync(index, 'utf8').split('\n')) {
    const m = /^DHf (\S+) UNIX .* @(\d+)$/.exec(line);
    if (m) out.set(m[1]!, m[2]!);
  }
  return out;
}

/** "recover completed: N entries restored from B bytes" of the server's last recover. */
function lastRecover(log: string): { restored: number; bytes: number } {
  const all = [...log.matchAll(/recover completed[^:]*: (\d+) entries restored from (\d+) bytes/g)];
  const m = all.at(-1);
  assert.ok(m, 'the server logged a completed recover');
  return { restored: Number(m[1]), bytes: Number(m[2]) };
}

describe('ndmjob -t / -x against ndmpd: recovery', { timeout: 300_000 }, () => {
  let p: NdmpdProcess | null = null;
  let work = '';
  let tree = '';
  let index = '';
  let agent = '';

  before(async () => {
    if (!peers.ndmjob) return;
    work = mkdtempSync(join(os.tmpdir(), 'ndmjob-recover-'));
    p = await startNdmpd({ logLevel: 'info' });
    agent = `127.0.0.1:${p.port}/4,${p.user},${p.password}`;
    tree = join(p.exportDir, 'tree');
    mkdirSync(tree);
    makeSampleTree(tree);
    mkdirSync(join(tree, 'one'));
    writeFileSync(join(tree, 'one', 'file'), 'the one file\n');
    // Enough bytes that reading the whole backup is unmistakable next to a DAR.
    writeFileSync(join(tree, 'big.bin'), Buffer.alloc(4 * 1024 * 1024, 7));
    index = join(work, 'index');
    const r = await runNdmjob(
      ['-c', '-D', agent, '-B', 'tar', '-C', tree, '-f', 'drive0', '-I', index],
      120_000,
    );
    assert.match(r.output, /Operation ended OKAY/, r.output);
  });
  after(async () => {
    await p?.stop();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  test('-t: the index regenerated from tape names every file at the same position', async (t) => {
    if (!requirePeers(t, ['ndmjob'])) return;
    const listed = join(work, 'index-t');
    const r = await runNdmjob(['-t', '-D', agent, '-B', 'tar', '-f', 'drive0', '-I', listed], 120_000);
    assert.match(r.output, /Operation ended OKAY/, r.output);
    const want = fhInfos(index);
    assert.ok(want.size > 10);
    assert.deepEqual(fhInfos(listed), want);
  });

  test('-x: the whole backup into a fresh directory equals the source', async (t) => {
    if (!requirePeers(t, ['ndmjob'])) return;
    const out = join(p!.exportDir, 'restored-whole');
    const r = await runNdmjob(
      // The sample tree's fifo and setgid directory come back exactly only when asked for.
      ['-x', '-D', agent, '-B', 'tar', '-C', out, '-f', 'drive0', '-J', index, '-E', 'RESTORE_SPECIAL=y'],
      120_000,
    );
    assert.match(r.output, /Operation ended OKAY/, r.output);
    assertSameTree(tree, out);
  });

  test('-x -J INDEX FILE: one file by Direct Access Recovery, a few KiB read', async (t) => {
    if (!requirePeers(t, ['ndmjob'])) return;
    const out = join(p!.exportDir, 'restored-dar');
    const r = await runNdmjob(
      ['-x', '-D', agent, '-B', 'tar', '-C', out, '-f', 'drive0', '-J', index, '/one/file'],
      120_000,
    );
    assert.match(r.output, /Operation ended OKAY/, r.output);
    assert.match(r.output, /LOG_FILE messages: 1 OK, 0 ERROR, total 1 of 1/, r.output);
    assert.equal(readFileSync(join(out, 'one', 'file'), 'utf8'), 'the one file\n');
    const { restored, bytes } = lastRecover(p!.logs());
    assert.equal(restored, 1);
    assert.ok(bytes < 16 * 1024, `a DAR of one file read ${bytes} bytes`);
  });

  test('-x NEW=OLD: renames, and a name not in the backup is reported, the rest restored', async (t) => {
    if (!requirePeers(t, ['ndmjob'])) return;
    const out = join(p!.exportDir, 'restored-renamed');
    const r = await runNdmjob(
      [
        '-x',
        ...['-D', agent, '-B', 'tar', '-C', out, '-f', 'drive0', '-J', index],
        // sub/deeper is setgid: kept only when asked for.
        ...['-E', 'RESTORE_SPECIAL=y'],
        '/elsewhere/a-copy.txt=/a.txt',
        '/moved-sub=/sub',
        '/not/there',
      ],
      120_000,
    );
    assert.match(r.output, /LOG_FILE messages: 2 OK, 1 ERROR, total 3 of 3/, r.output);
    assert.match(r.output, /not\/there/, r.output);
    assert.equal(readFileSync(join(out, 'elsewhere', 'a-copy.txt'), 'utf8'), 'hello\n');
    assert.equal(readFileSync(join(out, 'moved-sub', 'deeper', 'exactly-512')).length, 512);
    assertSameTree(join(tree, 'sub'), join(out, 'moved-sub'));
  });

  test('incrementals: a full and a level-1 backup restored in order give the changed tree', async (t) => {
    if (!requirePeers(t, ['ndmjob'])) return;
    const chain = join(p!.exportDir, 'chain');
    mkdirSync(chain);
    makeSampleTree(chain);
    // An incremental takes what changed since its base began, less a second of
    // clock slack (incremental.ts): files made just before the full backup would count as changed.
    await new Promise((r) => setTimeout(r, 1500));
    // Two spare tapes of the library, by path (TAPE_OPEN takes one inside the library).
    const tapes = join(p!.dir, 'state', 'library', 'tapes');
    const spare = readdirSync(tapes)
      .filter((n) => !n.endsWith('.idx'))
      .sort()
      .slice(-2)
      .map((n) => join(tapes, n));
    const backup = async (tape: string, idx: string, extra: string[]): Promise<void> => {
      const r = await runNdmjob(
        ['-c', '-D', agent, '-B', 'tar', '-C', chain, '-f', tape, '-I', idx, ...extra],
        120_000,
      );
      assert.match(r.output, /Operation ended OKAY/, r.output);
    };
    const idx0 = join(work, 'chain-0');
    const idx1 = join(work, 'chain-1');
    await backup(spare[0]!, idx0, []);
    assert.match(readFileSync(idx0, 'utf8'), /^DE DUMP_DATE=\d+$/m, 'a recorded backup returns DUMP_DATE');

    // Add, modify, delete (a file and a directory tree), rename (a file and a directory).
    writeFileSync(join(chain, 'new.txt'), 'new');
    mkdirSync(join(chain, 'newdir'));
    writeFileSync(join(chain, 'newdir', 'x'), 'x');
    writeFileSync(join(chain, 'a.txt'), 'changed content\n');
    rmSync(join(chain, 'empty'));
    rmSync(join(chain, 'dir ü'), { recursive: true });
    renameSync(join(chain, 'sub', 'b.bin'), join(chain, 'sub', 'b-renamed.bin'));
    renameSync(join(chain, 'sub', 'deeper'), join(chain, 'deeper-moved'));

    await backup(spare[1]!, idx1, ['-E', 'LEVEL=1']);
    // The level 1 holds what changed (and every directory, with its listing), not the unchanged files.
    const changed = fhInfos(idx1);
    for (const path of ['/new.txt', '/newdir/x', '/a.txt', '/sub/b-renamed.bin'])
      assert.ok(changed.has(path), path);
    for (const path of ['/fifo', '/link', `/${'long-name-'.repeat(12)}.txt`])
      assert.ok(!changed.has(path), path);
    assert.ok(fhInfos(idx0).has('/fifo'));

    const out = join(p!.exportDir, 'restored-chain');
    for (const [tape, idx] of [
      [spare[0]!, idx0],
      [spare[1]!, idx1],
    ] as const) {
      const r = await runNdmjob(
        ['-x', '-D', agent, '-B', 'tar', '-C', out, '-f', tape, '-J', idx, '-E', 'RESTORE_SPECIAL=y'],
        120_000,
      );
      assert.match(r.output, /Operation ended OKAY/, r.output);
    }
    assertSameTree(chain, out);
  });

  test('-x over a three-way TCP data connection (-T)', async (t) => {
    if (!requirePeers(t, ['ndmjob'])) return;
    const out = join(p!.exportDir, 'restored-tcp');
    const r = await runNdmjob(
      [
        '-x',
        '-D',
        agent,
        '-T',
        agent,
        '-B',
        'tar',
        '-C',
        out,
        '-f',
        'drive0',
        '-J',
        index,
        '-E',
        'RESTORE_SPECIAL=y',
      ],
      120_000,
    );
    assert.match(r.output, /Operation ended OKAY/, r.output);
    assertSameTree(tree, out);
  });
});
