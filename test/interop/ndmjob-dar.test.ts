// Directory DAR driven by ndmjob (Amanda's DMA): `-x -J INDEX DIR` sends the
// directory with its fh_info and DIRECT=y. The root (`/`) brings back the whole
// tree; a directory its subtree only, and the server reads about that
// subtree's stream bytes, not the backup; RECURSIVE=n the directory alone;
// several entries, overlapping and out of order, each once; NDMP v4 and v3;
// and an incremental's directory listings (GNU.dumpdir) applied to a subtree.

import assert from 'node:assert/strict';
import {
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { startNdmpd } from '../helpers/ndmpd-process.js';
import type { NdmpdProcess } from '../helpers/ndmpd-process.js';
import { peers, requirePeers, runNdmjob } from '../helpers/peers.js';
import { assertSameTree, makeSampleTree } from '../helpers/trees.js';

/** DHf lines of an ndmjob index as path → fh_info (path model). */
function fhInfos(index: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of readFileSync(index, 'utf8').split('\n')) {
    const m = /^DHf (\S+) UNIX .* @(\d+)$/.exec(line);
    if (m) out.set(m[1]!, Number(m[2]!));
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

/** Files below `root`, relative, sorted (directories too). */
function listTree(root: string): string[] {
  return (readdirSync(root, { recursive: true }) as string[]).sort();
}

describe('ndmjob -x -J INDEX DIR against ndmpd: directory DAR', { timeout: 300_000 }, () => {
  let p: NdmpdProcess | null = null;
  let work = '';
  let tree = '';
  let index = '';
  let fh = new Map<string, number>();
  let agent4 = '';
  let agent3 = '';

  before(async () => {
    if (!peers.ndmjob) return;
    work = mkdtempSync(join(os.tmpdir(), 'ndmjob-dar-'));
    p = await startNdmpd({ logLevel: 'info' });
    agent4 = `127.0.0.1:${p.port}/4,${p.user},${p.password}`;
    agent3 = `127.0.0.1:${p.port}/3,${p.user},${p.password}`;
    tree = join(p.exportDir, 'tree');
    mkdirSync(tree);
    makeSampleTree(tree);
    // A subtree in the middle of the stream with 4 MiB right after it, and 2 MiB after
    // sub/: reading past either is unmistakable next to the subtree's own bytes.
    mkdirSync(join(tree, 'mid', 'inner'), { recursive: true });
    writeFileSync(join(tree, 'mid', 'x.txt'), 'x\n');
    writeFileSync(join(tree, 'mid', 'inner', 'y.bin'), Buffer.alloc(200_000, 3));
    writeFileSync(join(tree, 'mid', 'inner', 'z.txt'), 'z\n');
    writeFileSync(join(tree, 'mid.big'), Buffer.alloc(4 * 1024 * 1024, 7));
    writeFileSync(join(tree, 'zzz.big'), Buffer.alloc(2 * 1024 * 1024, 9));
    index = join(work, 'index');
    const r = await runNdmjob(
      ['-c', '-D', agent4, '-B', 'tar', '-C', tree, '-f', 'drive0', '-I', index],
      120_000,
    );
    assert.match(r.output, /Operation ended OKAY/, r.output);
    fh = fhInfos(index);
  });
  after(async () => {
    await p?.stop();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  /** ndmjob -x -J INDEX NAMES into a fresh directory; the output must say OKAY. */
  async function extract(agent: string, out: string, names: string[], env: string[] = []): Promise<string> {
    const r = await runNdmjob(
      ['-x', '-D', agent, '-B', 'tar', '-C', out, '-f', 'drive0', '-J', index, ...env, ...names],
      120_000,
    );
    assert.match(r.output, /Operation ended OKAY/, r.output);
    return r.output;
  }

  for (const [version, agent] of [
    ['v4', () => agent4],
    ['v3', () => agent3],
  ] as const) {
    test(`${version} -x -J INDEX /: the whole tree, identical`, async (t) => {
      if (!requirePeers(t, ['ndmjob'])) return;
      const out = join(p!.exportDir, `dar-root-${version}`);
      const output = await extract(agent(), out, ['/'], ['-E', 'RESTORE_SPECIAL=y']);
      assert.match(output, /LOG_FILE messages: 1 OK, 0 ERROR, total 1 of 1/, output);
      assertSameTree(tree, out);
      assert.equal(lastRecover(p!.logs()).restored, fh.size);
    });

    test(`${version} -x -J INDEX /mid: that subtree only, about its bytes read`, async (t) => {
      if (!requirePeers(t, ['ndmjob'])) return;
      const out = join(p!.exportDir, `dar-mid-${version}`);
      const output = await extract(agent(), out, ['/mid']);
      assert.match(output, /LOG_FILE messages: 1 OK, 0 ERROR, total 1 of 1/, output);
      assert.deepEqual(readdirSync(out), ['mid']);
      assertSameTree(join(tree, 'mid'), join(out, 'mid'));
      const { restored, bytes } = lastRecover(p!.logs());
      assert.equal(restored, 5); // mid, inner, its two files, x.txt
      // The subtree's stream bytes: from its header to the next entry's.
      const subtree = fh.get('/mid.big')! - fh.get('/mid')!;
      t.diagnostic(`read ${bytes} bytes for a subtree of ${subtree}`);
      assert.ok(
        bytes >= subtree && bytes <= subtree + 64 * 1024,
        `read ${bytes} for a subtree of ${subtree}`,
      );
    });
  }

  test('-x -J INDEX /sub (the last subtree but one file): its bytes, not the file after it', async (t) => {
    if (!requirePeers(t, ['ndmjob'])) return;
    const out = join(p!.exportDir, 'dar-sub');
    // sub/deeper is setgid: kept only when asked for.
    await extract(agent4, out, ['/sub'], ['-E', 'RESTORE_SPECIAL=y']);
    assertSameTree(join(tree, 'sub'), join(out, 'sub'));
    assert.deepEqual(readdirSync(out), ['sub']);
    const subtree = fh.get('/zzz.big')! - fh.get('/sub')!;
    const { bytes } = lastRecover(p!.logs());
    t.diagnostic(`read ${bytes} bytes for a subtree of ${subtree}`);
    assert.ok(bytes >= subtree && bytes <= subtree + 64 * 1024, `read ${bytes} for a subtree of ${subtree}`);
  });

  test('RECURSIVE=n: the directory alone, a few blocks read', async (t) => {
    if (!requirePeers(t, ['ndmjob'])) return;
    const out = join(p!.exportDir, 'dar-flat');
    await extract(agent4, out, ['/mid'], ['-E', 'RECURSIVE=n']);
    assert.deepEqual(listTree(out), ['mid']);
    const { restored, bytes } = lastRecover(p!.logs());
    assert.equal(restored, 1);
    assert.ok(bytes <= 8 * 1024, `read ${bytes}`);
  });

  test('several entries, overlapping and out of order: each restored once, the subtrees read', async (t) => {
    if (!requirePeers(t, ['ndmjob'])) return;
    const out = join(p!.exportDir, 'dar-several');
    const output = await extract(
      agent4,
      out,
      // A file inside a listed directory, a directory inside another, a file elsewhere.
      ['/sub/deeper/exactly-512', '/mid', '/a.txt', '/mid/inner', '/sub'],
      ['-E', 'RESTORE_SPECIAL=y'],
    );
    assert.match(output, /LOG_FILE messages: 5 OK, 0 ERROR, total 5 of 5/, output);
    assert.deepEqual(readdirSync(out).sort(), ['a.txt', 'mid', 'sub']);
    assertSameTree(join(tree, 'mid'), join(out, 'mid'));
    assertSameTree(join(tree, 'sub'), join(out, 'sub'));
    assert.equal(readFileSync(join(out, 'a.txt'), 'utf8'), 'hello\n');
    const { restored, bytes } = lastRecover(p!.logs());
    assert.equal(restored, 1 + 5 + 4); // a.txt, mid's 5, sub's 4: each once
    const wanted =
      4 * 512 + // a.txt: its headers and one block of data
      (fh.get('/mid.big')! - fh.get('/mid')!) +
      (fh.get('/zzz.big')! - fh.get('/sub')!);
    // Regions before the last are read in windows a quarter of what each has read so far.
    t.diagnostic(`read ${bytes} bytes for regions of ${wanted}`);
    assert.ok(bytes <= (5 * wanted) / 4 + 64 * 1024, `read ${bytes} for subtrees of ${wanted}`);
    assert.ok(bytes < 2 * 1024 * 1024, `read ${bytes}: the big files were read too`);
  });

  test('over a three-way TCP data connection (-T): two subtrees, the big files between not read', async (t) => {
    if (!requirePeers(t, ['ndmjob'])) return;
    const out = join(p!.exportDir, 'dar-tcp');
    const r = await runNdmjob(
      [
        ...['-x', '-D', agent4, '-T', agent4, '-B', 'tar', '-C', out, '-f', 'drive0', '-J', index],
        ...['-E', 'RESTORE_SPECIAL=y', '/sub', '/mid'],
      ],
      120_000,
    );
    assert.match(r.output, /Operation ended OKAY/, r.output);
    assert.match(r.output, /LOG_FILE messages: 2 OK, 0 ERROR, total 2 of 2/, r.output);
    assert.deepEqual(readdirSync(out).sort(), ['mid', 'sub']);
    assertSameTree(join(tree, 'mid'), join(out, 'mid'));
    assertSameTree(join(tree, 'sub'), join(out, 'sub'));
    const wanted = fh.get('/mid.big')! - fh.get('/mid')! + (fh.get('/zzz.big')! - fh.get('/sub')!);
    const { bytes } = lastRecover(p!.logs());
    t.diagnostic(`read ${bytes} bytes for regions of ${wanted}`);
    assert.ok(bytes <= (5 * wanted) / 4 + 64 * 1024, `read ${bytes} for subtrees of ${wanted}`);
  });

  test("incrementals: a subtree by DAR from a full and a level 1 gives the subtree's new state", async (t) => {
    if (!requirePeers(t, ['ndmjob'])) return;
    const chain = join(p!.exportDir, 'chain');
    mkdirSync(join(chain, 'keep', 'gone-dir'), { recursive: true });
    writeFileSync(join(chain, 'keep', 'stays.txt'), 'stays\n');
    writeFileSync(join(chain, 'keep', 'deleted.txt'), 'deleted later\n');
    writeFileSync(join(chain, 'keep', 'gone-dir', 'f'), 'f\n');
    writeFileSync(join(chain, 'other.txt'), 'other\n');
    // An incremental takes what changed since its base began, less a second of clock slack.
    await new Promise((r) => setTimeout(r, 1500));
    const tapes = join(p!.dir, 'state', 'library', 'tapes');
    const spare = readdirSync(tapes)
      .filter((n) => !n.endsWith('.idx'))
      .sort()
      .slice(-2)
      .map((n) => join(tapes, n));
    const backup = async (tape: string, idx: string, extra: string[]): Promise<void> => {
      const r = await runNdmjob(
        ['-c', '-D', agent4, '-B', 'tar', '-C', chain, '-f', tape, '-I', idx, ...extra],
        120_000,
      );
      assert.match(r.output, /Operation ended OKAY/, r.output);
    };
    const idx0 = join(work, 'chain-0');
    const idx1 = join(work, 'chain-1');
    await backup(spare[0]!, idx0, []);
    unlinkSync(join(chain, 'keep', 'deleted.txt'));
    rmSync(join(chain, 'keep', 'gone-dir'), { recursive: true });
    writeFileSync(join(chain, 'keep', 'new.txt'), 'new\n');
    await backup(spare[1]!, idx1, ['-E', 'LEVEL=1']);

    const out = join(p!.exportDir, 'dar-chain');
    for (const [tape, idx] of [
      [spare[0]!, idx0],
      [spare[1]!, idx1],
    ] as const) {
      const r = await runNdmjob(
        ['-x', '-D', agent4, '-B', 'tar', '-C', out, '-f', tape, '-J', idx, '/keep'],
        120_000,
      );
      assert.match(r.output, /Operation ended OKAY/, r.output);
      assert.match(r.output, /LOG_FILE messages: 1 OK, 0 ERROR, total 1 of 1/, r.output);
    }
    // The level 1's listing of keep/ removed what was deleted; unchanged stays.txt stayed.
    assertSameTree(join(chain, 'keep'), join(out, 'keep'));
    assert.deepEqual(readdirSync(out), ['keep']);
  });
});
