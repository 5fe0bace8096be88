// The catalog knows a server by its host id, not by the address it answered
// at (issue 16, item 4): a server that moved to another port still restores
// its old backups, with --server once, then by itself; a server that is not
// the one the tapes are on is refused by name. And the JSON and catalog
// conventions of item 7: JSON errors, ISO times, `ndmp init`, find's limit.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { dmaFor, runNdmp } from '../helpers/ndmp-cli.js';
import { startNdmpd } from '../helpers/ndmpd-process.js';
import type { NdmpdProcess } from '../helpers/ndmpd-process.js';

/** Every file named `name` below `dir`. */
function findFiles(dir: string, name: string): string[] {
  const out: string[] = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...findFiles(p, name));
    else if (e.name === name) out.push(p);
  }
  return out;
}

describe('a server that moved to another port', { timeout: 180_000 }, () => {
  let first: NdmpdProcess;
  let moved: NdmpdProcess | undefined;
  let other: NdmpdProcess | undefined;
  let work: string;

  before(async () => {
    first = await startNdmpd({ logLevel: 'info' });
    work = fs.mkdtempSync(join(os.tmpdir(), 'ndmp-identity-'));
    const src = join(first.exportDir, 'src');
    fs.mkdirSync(src);
    for (let i = 0; i < 6; i++) fs.writeFileSync(join(src, `note${i}.txt`), `note ${i}\n`);
  });
  after(async () => {
    await first?.stop();
    await moved?.stop();
    await other?.stop();
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  test('restores its old backups: --server once, then from the address the catalog learnt', async () => {
    const catalog = join(work, 'catalog.sqlite');
    const dma = dmaFor(first, catalog, join(work, 'state'));
    const src = join(first.exportDir, 'src');
    const b = await dma.json<{ id: number; serverId: string; tapeServerId: string; startedAt: string }>([
      'backup',
      `${dma.server}:${src}`,
      ...dma.creds,
      '-q',
    ]);
    assert.match(b.serverId, /^[0-9a-f]+$/, 'the host id of the data server is recorded');
    assert.equal(b.tapeServerId, b.serverId);
    // One time unit in JSON: ISO 8601.
    assert.match(b.startedAt, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);

    // Same state dir (host id, library), another port.
    const dir = first.dir;
    await first.stop(true);
    moved = await startNdmpd({ dir, logLevel: 'info' });
    assert.notEqual(moved.port, first.port);
    const movedAt = `127.0.0.1:${moved.port}`;

    const to1 = join(moved.exportDir, 'r1');
    const lost = await dma.call(['restore', String(b.id), '--to', to1, ...dma.creds, '-q'], 3);
    assert.match(lost.err, /if the server moved, give --server HOST:PORT/);

    await dma.call(['restore', String(b.id), '--to', to1, '--server', movedAt, ...dma.creds, '-q']);
    assert.equal(findFiles(to1, 'note3.txt').length, 1, 'restored through --server');
    assert.equal(fs.readFileSync(findFiles(to1, 'note3.txt')[0]!, 'utf8'), 'note 3\n');

    // The catalog noted where that host id answered: no --server needed now.
    const to2 = join(moved.exportDir, 'r2');
    await dma.call(['restore', String(b.id), '--to', to2, ...dma.creds, '-q']);
    assert.equal(findFiles(to2, 'note5.txt').length, 1, 'restored from the learnt address');

    // Another server (another host id: its state dir's host-id file) is not where the tapes are:
    // refused, naming both.
    const otherDir = fs.mkdtempSync(join(os.tmpdir(), 'ndmpd-other-'));
    fs.mkdirSync(join(otherDir, 'export'));
    fs.mkdirSync(join(otherDir, 'state'), { mode: 0o700 });
    fs.writeFileSync(join(otherDir, 'state', 'host-id'), '0badc0de\n');
    fs.writeFileSync(join(otherDir, 'auth'), `${moved.user}:${moved.password}\n`, { mode: 0o600 });
    other = await startNdmpd({ dir: otherDir, logLevel: 'info', user: moved.user, password: moved.password });
    const wrong = await dma.call(
      [
        'restore',
        String(b.id),
        '--to',
        join(moved.exportDir, 'r3'),
        '--tape-server',
        `127.0.0.1:${other.port}`,
        ...dma.creds,
        '-q',
      ],
      2,
    );
    assert.match(
      wrong.err,
      new RegExp(`not the server whose tapes hold backup ${b.id} \\(host id ${b.serverId}`),
    );
    assert.match(wrong.err, /give --tape-server HOST:PORT/);
  });
});

describe('catalog and JSON conventions', { timeout: 120_000 }, () => {
  let p: NdmpdProcess;
  let work: string;

  before(async () => {
    p = await startNdmpd({ logLevel: 'info' });
    work = fs.mkdtempSync(join(os.tmpdir(), 'ndmp-json-'));
    const src = join(p.exportDir, 'many');
    fs.mkdirSync(src);
    for (let i = 0; i < 12; i++) fs.writeFileSync(join(src, `item${String(i).padStart(2, '0')}.log`), 'x');
  });
  after(async () => {
    await p?.stop();
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  test('a catalog path that does not exist is refused with the way out; ndmp init makes it', async () => {
    const file = join(work, 'mistyped', 'catalgo.sqlite');
    const r = await runNdmp(['backups', '--catalog', file]);
    assert.equal(r.code, 2, r.err);
    assert.match(
      r.err,
      /^ndmp: there is no catalog at .*catalgo\.sqlite: create it with 'ndmp init --catalog/,
    );
    assert.equal(fs.existsSync(file), false, 'nothing was created');
    const j = await runNdmp(['backups', '--catalog', file, '--json']);
    assert.equal(j.code, 2);
    const e = JSON.parse(j.err) as { error: { code: string; message: string; exit: number } };
    assert.deepEqual([e.error.code, e.error.exit], ['CATALOG_ERROR', 2]);
    assert.match(e.error.message, /no catalog at/);

    const made = await runNdmp(['init', '--catalog', file]);
    assert.equal(made.code, 0, made.err);
    assert.match(made.out, /is ready/);
    assert.equal(fs.statSync(file).mode & 0o777, 0o600);
    const again = await runNdmp(['init', '--catalog', file]);
    assert.match(again.out, /exists already \(0 backups\)/);
    assert.equal((await runNdmp(['backups', '--catalog', file])).code, 0);
  });

  test('--json: usage errors and NDMP refusals are one JSON object on stderr', async () => {
    const usage = await runNdmp(['backup', '--bogus', '--json']);
    assert.equal(usage.code, 2);
    const u = JSON.parse(usage.err) as { error: { code: string; message: string; exit: number } };
    assert.equal(u.error.code, 'commander.unknownOption');
    assert.match(u.error.message, /--bogus/);
    assert.equal(u.error.exit, 2);

    const dma = dmaFor(p, join(work, 'refusals.sqlite'), join(work, 'state'));
    const refused = await dma.call(['backup', `${dma.server}:/etc`, ...dma.creds, '-q', '--json'], 1);
    const n = JSON.parse(refused.err.trim().split('\n').pop()!) as {
      error: { code: string; message: string };
    };
    assert.equal(n.error.code, 'NDMP_ILLEGAL_ARGS_ERR');
    assert.match(n.error.message, /not inside an export|export/);
  });

  test('find says when it stopped at --limit; --limit 0 is every hit', async () => {
    const dma = dmaFor(p, join(work, 'find.sqlite'), join(work, 'state'));
    await dma.call(['backup', `${dma.server}:${join(p.exportDir, 'many')}`, ...dma.creds, '-q']);
    const cut = await dma.call(['find', '*.log', '--limit', '5']);
    assert.equal(cut.out.trim().split('\n').length, 5);
    assert.match(cut.err, /stopped at 5 hits \(--limit\); there are more: .*--limit 0 for all/);
    const all = await dma.json<unknown[]>(['find', '*.log', '--limit', '0']);
    assert.equal(all.length, 12);
    const exact = await dma.call(['find', '*.log', '--limit', '12']);
    assert.equal(exact.err, '', 'no notice when nothing was cut');
    const rows = await dma.json<Array<{ mtime: string }>>(['find', 'item00.log']);
    assert.match(rows[0]!.mtime, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.000Z$/);
  });
});
