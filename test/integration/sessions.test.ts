// The operator's view of a running ndmpd (docs/operations.md, "Sessions"):
// `ndmpd status` and `ndmpd sessions` through the admin socket while two
// backups run, and `ndmpd sessions kill` ending one of them while the other
// goes on to the end.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import type { SessionReport } from '../../src/server/admin-ops.js';
import { dmaFor, spawnBackup } from '../helpers/ndmp-cli.js';
import { NDMPD_BIN, startNdmpd } from '../helpers/ndmpd-process.js';
import type { NdmpdProcess } from '../helpers/ndmpd-process.js';

const run = promisify(execFile);
const MiB = 1024 * 1024;

async function ndmpd(args: string[]): Promise<{ code: number; out: string; err: string }> {
  try {
    const r = await run(process.execPath, [NDMPD_BIN, ...args], { timeout: 60_000 });
    return { code: 0, out: r.stdout, err: r.stderr };
  } catch (e) {
    const x = e as { code: number; stdout: string; stderr: string };
    return { code: x.code, out: x.stdout, err: x.stderr };
  }
}

let p: NdmpdProcess;
let work: string;
let stateDir: string;

before(async () => {
  p = await startNdmpd({ logLevel: 'info', extraArgs: ['--drives', '2'] });
  stateDir = join(p.dir, 'state');
  work = fs.mkdtempSync(join(os.tmpdir(), 'ndmp-sessions-'));
  // Two trees large enough that both backups are still running while the test looks.
  const chunk = randomBytes(8 * MiB);
  for (const name of ['a', 'b']) {
    fs.mkdirSync(join(p.exportDir, name));
    for (let i = 0; i < 100; i++) {
      chunk.writeUInt32BE(i, 0);
      fs.writeFileSync(join(p.exportDir, name, `f${i}.bin`), chunk);
    }
  }
});
after(async () => {
  await p?.stop();
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

async function sessions(): Promise<SessionReport[]> {
  const r = await ndmpd(['sessions', '--json', '--state-dir', stateDir]);
  assert.equal(r.code, 0, r.err);
  return JSON.parse(r.out) as SessionReport[];
}

test('the admin socket is the owner’s only (0600)', () => {
  const st = fs.statSync(join(stateDir, 'admin.sock'));
  assert.ok(st.isSocket());
  assert.equal(st.mode & 0o777, 0o600);
});

test('ndmpd status, text and JSON', async () => {
  const t = await ndmpd(['status', '--state-dir', stateDir]);
  assert.equal(t.code, 0, t.err);
  assert.match(t.out, new RegExp(`listening on 127\\.0\\.0\\.1:${p.port}`));
  assert.match(t.out, /sessions: 0 /);
  assert.match(t.out, /library: .*drive0: NDM00\d/);
  const j = await ndmpd(['status', '--json', '--state-dir', stateDir]);
  assert.equal(j.code, 0, j.err);
  const st = JSON.parse(j.out) as { listen: string; uptimeSeconds: number; sessions: { total: number } };
  assert.equal(st.listen, `127.0.0.1:${p.port}`);
  assert.equal(st.sessions.total, 0);
  assert.ok(st.uptimeSeconds >= 0);
});

test('no server: says which state dir it looked in and how to start one, exit 2', async () => {
  const r = await ndmpd(['sessions', '--state-dir', join(work, 'none')]);
  assert.equal(r.code, 2);
  assert.match(r.err, /no ndmpd is running with state dir .*none.*start one \(ndmpd --state-dir/);
  const k = await ndmpd(['sessions', 'kill', '99', '--state-dir', stateDir]);
  assert.equal(k.code, 1);
  assert.match(k.err, /no session 99/);
  const u = await ndmpd(['sessions', 'kill', 'x', '--state-dir', stateDir]);
  assert.equal(u.code, 2);
});

test('two backups: both listed with moving bytes; killing one ends it ABORTED, the other finishes', async () => {
  const dma = dmaFor(p, join(work, 'catalog.sqlite'), join(work, 'dma-state'));
  await dma.ready();
  const a = spawnBackup(dma, join(work, 'catalog.sqlite'), join(p.exportDir, 'a'), /writing tape/);
  const b = spawnBackup(dma, join(work, 'catalog.sqlite'), join(p.exportDir, 'b'), /writing tape/);
  // Both backing up, with bytes: then a second look shows them moving.
  let first: SessionReport[] = [];
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    first = (await sessions()).filter((s) => s.operation === 'backup' && s.bytes > 0);
    if (first.length === 2) break;
    await sleep(50);
  }
  assert.equal(first.length, 2, `${a.err()}\n${b.err()}`);
  await sleep(300);
  const second = await sessions();
  const moved = first.filter((f) => (second.find((s) => s.id === f.id)?.bytes ?? 0) > f.bytes);
  assert.ok(moved.length >= 1, JSON.stringify({ first, second }));
  for (const s of second.filter((x) => x.operation === 'backup')) {
    assert.equal(s.user, p.user);
    assert.equal(s.dataState, 'ACTIVE');
    assert.match(s.tape?.barcode ?? '', /^NDM\d{3}$/);
    assert.ok(s.history, 'a backup has its history counters');
  }
  const text = await ndmpd(['sessions', '--state-dir', stateDir]);
  assert.match(text.out, /#\d+ 127\.0\.0\.1:\d+ user dma NDMPv\d .*backup/);

  // Kill the one with fewer bytes so far: it is surely still running.
  const victim = [...second].filter((s) => s.operation === 'backup').sort((x, y) => x.bytes - y.bytes)[0]!;
  const k = await ndmpd([
    'sessions',
    'kill',
    String(victim.id),
    '--reason',
    'disk maintenance',
    '--state-dir',
    stateDir,
  ]);
  assert.equal(k.code, 0, k.err);
  assert.match(k.out, new RegExp(`session ${victim.id} killed by the operator.*disk maintenance`));
  const [ca, cb] = await Promise.all([a.exited, b.exited]);
  const codes = [ca, cb].sort();
  assert.deepEqual(codes, [0, 1], `${a.err()}\n----\n${b.err()}`);
  const killedErr = ca === 1 ? a.err() : b.err();
  assert.match(killedErr, /killed by the operator.*disk maintenance/);
  assert.match(killedErr, /ABORTED|abort/i);
  assert.match(p.logs(), /session killed by the operator/);
  // Gone from the list once closed.
  const endDeadline = Date.now() + 10_000;
  while ((await sessions()).some((s) => s.id === victim.id) && Date.now() < endDeadline) await sleep(100);
  assert.ok(!(await sessions()).some((s) => s.id === victim.id));
});
