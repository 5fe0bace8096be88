// Retention's decisions without servers (docs/dma.md, "Retention: forget and
// prune", "A DMA that died"): restic's keep rules, the chain a kept
// incremental keeps, forgetting by id, and when a running backup is abandoned.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { BackupRecord } from '../../src/catalog/types.js';
import { abandonedBecause } from '../../src/dma/abandoned.js';
import { DependantsError, applyPolicy, isoWeek, planIds, planPolicy } from '../../src/dma/retention.js';

let nextId = 1;
function backup(at: string, more: Partial<BackupRecord> = {}): BackupRecord {
  const startedAt = new Date(at).getTime();
  return {
    id: nextId++,
    server: 'h:10000',
    serverId: 'hid',
    path: '/data',
    tapeServer: 'h:10000',
    tapeServerId: 'hid',
    butype: 'tar',
    level: 0,
    historyModel: 'path',
    recordSize: 65536,
    env: {},
    startedAt,
    status: 'done',
    finishedAt: startedAt + 1000,
    haltReason: null,
    bytes: 0,
    files: 0,
    resultEnv: {},
    tapes: [],
    pool: 'default',
    forgottenAt: null,
    dmaHost: 'dma',
    dmaPid: 42,
    heartbeatAt: startedAt,
    ...more,
  };
}

test('ISO weeks: the Thursday decides the year', () => {
  assert.equal(isoWeek(new Date(2021, 0, 3)), '2020-W53'); // a Sunday
  assert.equal(isoWeek(new Date(2021, 0, 4)), '2021-W01'); // the Monday after
  assert.equal(isoWeek(new Date(2024, 11, 30)), '2025-W01');
});

test("restic's rules: last, one per day for the last N days that have one, the oldest when short", () => {
  // Two a day for four days.
  const list = ['01', '02', '03', '04'].flatMap((d) => [
    backup(`2026-03-${d}T08:00:00`),
    backup(`2026-03-${d}T20:00:00`),
  ]);
  const newest = list[7]!;
  const byDay = (d: string) =>
    list.find((b) => b.startedAt === new Date(`2026-03-${d}T20:00:00`).getTime())!.id;
  const last2 = applyPolicy(list, { last: 2 });
  assert.deepEqual([...last2.keys()], [newest.id, list[6]!.id]);
  const daily2 = applyPolicy(list, { daily: 2 });
  assert.deepEqual(
    [...daily2].map(([id, why]) => [id, why]),
    [
      [byDay('04'), ['daily 2026-03-04']],
      [byDay('03'), ['daily 2026-03-03']],
    ],
  );
  // Ten days asked, four had backups: the latest of each, and the oldest backup too.
  const daily10 = applyPolicy(list, { daily: 10 });
  assert.equal(daily10.size, 5);
  assert.deepEqual(daily10.get(list[0]!.id), ['oldest daily']);
  // Rules combine as "or", and the reasons say which kept what.
  const both = applyPolicy(list, { last: 1, monthly: 1 });
  assert.deepEqual(both.get(newest.id), ['last', 'monthly 2026-03']);
  assert.equal(applyPolicy(list, { last: -1 }).size, 8, 'unlimited');
});

test('a kept incremental keeps its whole chain; failed backups are forgotten; other sources apart', () => {
  const full = backup('2026-03-01T08:00:00');
  const inc1 = backup('2026-03-02T08:00:00', { level: 1 });
  const inc2 = backup('2026-03-03T08:00:00', { level: 2 });
  const failed = backup('2026-03-03T09:00:00', { status: 'failed' });
  const other = backup('2026-03-01T07:00:00', { path: '/other' });
  const plan = planPolicy([full, inc1, inc2, failed, other], { last: 1 });
  const why = new Map(plan.decisions.map((d) => [d.id, d]));
  assert.deepEqual(why.get(inc2.id)!.reasons, ['last']);
  assert.deepEqual(why.get(inc1.id)!.reasons, [`base of ${inc2.id}`]);
  assert.deepEqual(why.get(full.id)!.reasons, [`base of ${inc2.id}`]);
  assert.equal(why.get(failed.id)!.action, 'forget');
  assert.equal(why.get(other.id)!.action, 'keep', 'its own source: its own last');
  assert.deepEqual(plan.forget, [failed.id]);
});

test('forget by id refuses to orphan an incremental, unless --with-dependants', () => {
  const full = backup('2026-03-01T08:00:00');
  const inc = backup('2026-03-02T08:00:00', { level: 1 });
  const all = [full, inc];
  assert.throws(
    () => planIds(all, [full.id], false),
    (e: unknown) =>
      e instanceof DependantsError &&
      e.code === 'DMA_FORGET_DEPENDANTS' &&
      e.message.includes(`backup ${full.id} is the base of ${inc.id} (level 1)`),
  );
  assert.deepEqual(planIds(all, [full.id, inc.id], false).forget, [inc.id, full.id]);
  const w = planIds(all, [full.id], true);
  assert.deepEqual(w.forget, [inc.id, full.id]);
  assert.deepEqual(w.decisions.find((d) => d.id === inc.id)!.reasons, [`depends on ${full.id}`]);
  // A dependant already forgotten does not hold its base.
  assert.deepEqual(planIds([full, { ...inc, forgottenAt: 1 }], [full.id], false).forget, [full.id]);
});

test('a running backup is abandoned when its DMA is gone on this host, or silent past the bound', () => {
  const now = Date.now();
  const running = backup('2026-03-01T08:00:00', { status: 'running', heartbeatAt: now - 1000 });
  const here = { now, host: 'dma', staleMs: 300_000 };
  assert.equal(abandonedBecause(running, { ...here, alive: () => true }), null);
  assert.match(
    abandonedBecause(running, { ...here, alive: () => false }) ?? '',
    /the DMA that ran it \(ndmp, pid 42 on dma\) is gone/,
  );
  // On another host its pid says nothing here: only the heartbeat counts.
  assert.equal(abandonedBecause(running, { ...here, host: 'elsewhere', alive: () => false }), null);
  const silent = { ...running, heartbeatAt: now - 400_000 };
  assert.match(
    abandonedBecause(silent, { ...here, host: 'elsewhere', alive: () => false }) ?? '',
    /no heartbeat from the DMA that ran it \(ndmp, pid 42 on dma\) for 6\.7 min|for 400 s/,
  );
  assert.equal(abandonedBecause({ ...running, status: 'done' }, { ...here, alive: () => false }), null);
});
