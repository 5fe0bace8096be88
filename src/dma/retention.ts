// Retention (docs/dma.md, "Retention: forget and prune"). `ndmp forget`
// marks backups forgotten, by id or by a policy applied to each source (the
// data server, by identity, and the path) with restic's semantics for the
// keep rules; it never leaves a kept incremental without its base: a kept
// backup keeps its whole chain (src/dma/chain.ts). `ndmp prune` then deletes
// the forgotten backups from the catalog (their file rows too) and recycles
// each tape whose backups were all forgotten: the pool's next backup rewinds
// it and writes it from its start.

import type { BackupRecord, Catalog, TapeRecord } from '../catalog/types.js';
import { CodedError } from '../util/coded-error.js';
import { chainOf, dependantsOf } from './chain.js';
import { tapeServerKey } from './pools.js';

/** A forget that would leave a kept incremental without its base. */
export class DependantsError extends CodedError {
  readonly code = 'DMA_FORGET_DEPENDANTS';
  constructor(message: string) {
    super(message);
    this.name = 'DependantsError';
  }
}

/** What `forget` was asked for that cannot be done (no such backup, a running one). */
export class ForgetError extends CodedError {
  readonly code = 'DMA_FORGET';
  constructor(message: string) {
    super(message);
    this.name = 'ForgetError';
  }
}

/** restic's keep rules; a count of -1 is 'unlimited'. 0 or absent: the rule is not used. */
export interface KeepPolicy {
  last?: number;
  hourly?: number;
  daily?: number;
  weekly?: number;
  monthly?: number;
  yearly?: number;
}

export interface Decision {
  id: number;
  /** "HOST:PORT:/path" as `ndmp backups` prints the source. */
  source: string;
  level: number;
  status: BackupRecord['status'];
  startedAt: number;
  action: 'keep' | 'forget';
  /** Why: the rules that keep it, the kept backups it is the base of, or why it goes. */
  reasons: string[];
}

export interface ForgetPlan {
  decisions: Decision[];
  /** The ids forgotten (or, in a dry run, to be). */
  forget: number[];
}

/** The source a backup is of: the data server (by identity when it has one) and the path. */
export function sourceKey(b: BackupRecord): string {
  return `${b.serverId !== '' ? b.serverId : b.server}\0${b.path}`;
}

function sourceName(b: BackupRecord): string {
  return `${b.server}:${b.path}`;
}

const p2 = (n: number) => String(n).padStart(2, '0');
const day = (d: Date) => `${d.getFullYear()}-${p2(d.getMonth() + 1)}-${p2(d.getDate())}`;

/** ISO 8601 week (its year and number) of local date `d`, as restic's weekly buckets. */
export function isoWeek(d: Date): string {
  const t = new Date(Date.UTC(d.getFullYear(), d.getMonth(), d.getDate()));
  const dow = (t.getUTCDay() + 6) % 7; // Monday 0
  t.setUTCDate(t.getUTCDate() - dow + 3); // the week's Thursday decides its year
  const jan4 = new Date(Date.UTC(t.getUTCFullYear(), 0, 4));
  const week =
    1 + Math.round(((t.getTime() - jan4.getTime()) / 86_400_000 - 3 + ((jan4.getUTCDay() + 6) % 7)) / 7);
  return `${t.getUTCFullYear()}-W${p2(week)}`;
}

/** The period rules, each with the bucket (a label of its period, in local time) a time falls in. */
const BUCKETS: Array<{ rule: Exclude<keyof KeepPolicy, 'last'>; of: (d: Date) => string }> = [
  { rule: 'hourly', of: (d) => `${day(d)} ${p2(d.getHours())}h` },
  { rule: 'daily', of: day },
  { rule: 'weekly', of: isoWeek },
  { rule: 'monthly', of: (d) => `${d.getFullYear()}-${p2(d.getMonth() + 1)}` },
  { rule: 'yearly', of: (d) => `${d.getFullYear()}` },
];

/**
 * restic's policy over one source's backups (docs/dma.md cites restic's
 * `forget`): newest first, `last` keeps the n most recent; each period
 * rule (hourly ... yearly) keeps the most recent backup of each of the last
 * n periods that have one; a backup is kept when any rule keeps it. When a
 * period rule runs out of backups before n periods, the oldest backup is
 * kept as well (restic ≥ 0.14: "the oldest snapshot in the group is kept
 * additionally"). Returns the reasons per kept id.
 */
export function applyPolicy(snapshots: readonly BackupRecord[], p: KeepPolicy): Map<number, string[]> {
  const newestFirst = [...snapshots].sort((a, b) => b.startedAt - a.startedAt || b.id - a.id);
  const kept = new Map<number, string[]>();
  const keep = (id: number, why: string) => kept.set(id, [...(kept.get(id) ?? []), why]);
  let last = p.last ?? 0;
  const left = new Map(BUCKETS.map((b) => [b.rule, p[b.rule] ?? 0]));
  const lastBucket = new Map<string, string>();
  for (const s of newestFirst) {
    if (last !== 0) {
      keep(s.id, 'last');
      if (last > 0) last--;
    }
    const d = new Date(s.startedAt);
    for (const b of BUCKETS) {
      const n = left.get(b.rule)!;
      if (n === 0) continue;
      const v = b.of(d);
      if (lastBucket.get(b.rule) === v) continue;
      lastBucket.set(b.rule, v);
      keep(s.id, `${b.rule} ${v}`);
      if (n > 0) left.set(b.rule, n - 1);
    }
  }
  const oldest = newestFirst[newestFirst.length - 1];
  if (oldest) {
    for (const b of BUCKETS) {
      // A rule that still wants periods found fewer than it asked for: the oldest stays too.
      if ((left.get(b.rule) ?? 0) > 0 && (p[b.rule] ?? 0) > 0) keep(oldest.id, `oldest ${b.rule}`);
    }
  }
  return kept;
}

function decision(b: BackupRecord, action: Decision['action'], reasons: string[]): Decision {
  return {
    id: b.id,
    source: sourceName(b),
    level: b.level,
    status: b.status,
    startedAt: b.startedAt,
    action,
    reasons,
  };
}

/**
 * The policy applied to every source: backups that finished are kept by the
 * rules, and each kept one keeps its whole chain (its bases, reason "base
 * of N"); failed ones are forgotten (no rule keeps a backup that is not
 * whole; they only hold tapes); running and already forgotten ones are left.
 */
export function planPolicy(all: readonly BackupRecord[], p: KeepPolicy): ForgetPlan {
  const live = all.filter((b) => b.forgottenAt === null);
  const bySource = new Map<string, BackupRecord[]>();
  for (const b of live) {
    const k = sourceKey(b);
    bySource.set(k, [...(bySource.get(k) ?? []), b]);
  }
  const decisions: Decision[] = [];
  const forget: number[] = [];
  for (const group of bySource.values()) {
    const kept = applyPolicy(
      group.filter((b) => b.status === 'done'),
      p,
    );
    // A kept incremental keeps the backups it was cut against, down to its full backup.
    for (const id of [...kept.keys()]) {
      const b = group.find((x) => x.id === id)!;
      for (const base of chainOf(all, b).backups) {
        if (base.id !== id) kept.set(base.id, [...(kept.get(base.id) ?? []), `base of ${id}`]);
      }
    }
    for (const b of [...group].sort((x, y) => y.startedAt - x.startedAt || y.id - x.id)) {
      if (b.status === 'running') decisions.push(decision(b, 'keep', ['running']));
      else if (kept.has(b.id)) decisions.push(decision(b, 'keep', [...new Set(kept.get(b.id))]));
      else {
        decisions.push(
          decision(b, 'forget', [
            b.status === 'failed' ? 'failed: not whole, no rule keeps it' : 'no rule keeps it',
          ]),
        );
        forget.push(b.id);
      }
    }
  }
  return { decisions, forget };
}

/**
 * Forgetting these backups by id. A base whose dependants (incrementals cut
 * against it) are not forgotten too is refused, naming them, unless
 * `withDependants`: then they are forgotten with it.
 */
export function planIds(
  all: readonly BackupRecord[],
  ids: readonly number[],
  withDependants: boolean,
): ForgetPlan {
  const byId = new Map(all.map((b) => [b.id, b]));
  const chosen = new Map<number, string[]>();
  for (const id of ids) {
    const b = byId.get(id);
    if (!b) throw new ForgetError(`there is no backup ${id} in the catalog (see 'ndmp backups')`);
    if (b.status === 'running') {
      throw new ForgetError(
        `backup ${id} is running: let it end (or, if its DMA died, any ndmp command closes it as failed) and forget it then`,
      );
    }
    chosen.set(id, ['asked for']);
  }
  for (const id of ids) {
    const deps = dependantsOf(all, byId.get(id)!).filter((d) => d.forgottenAt === null && !chosen.has(d.id));
    if (deps.length === 0) continue;
    if (!withDependants) {
      throw new DependantsError(
        `backup ${id} is the base of ${deps.map((d) => `${d.id} (level ${d.level})`).join(', ')}, ` +
          `which would be left without it: forget ${deps.length > 1 ? 'them' : 'it'} too ` +
          `(give --with-dependants, or name ${deps.length > 1 ? 'them' : 'it'}), or keep ${id}`,
      );
    }
    for (const d of deps) chosen.set(d.id, [...(chosen.get(d.id) ?? []), `depends on ${id}`]);
  }
  const decisions: Decision[] = [];
  const forget: number[] = [];
  for (const [id, reasons] of [...chosen].sort((a, b) => b[0] - a[0])) {
    const b = byId.get(id)!;
    if (b.forgottenAt !== null) {
      decisions.push(decision(b, 'forget', ['already forgotten']));
      continue;
    }
    decisions.push(decision(b, 'forget', reasons));
    forget.push(id);
  }
  return { decisions, forget };
}

export async function forget(catalog: Catalog, plan: ForgetPlan, dryRun: boolean): Promise<void> {
  if (!dryRun && plan.forget.length > 0) await catalog.forgetBackups(plan.forget, Date.now());
}

export interface PruneReport {
  dryRun: boolean;
  /** The forgotten backups deleted from the catalog. */
  backups: Array<{ id: number; source: string; files: number; bytes: number }>;
  /** File rows deleted with them. */
  files: number;
  /** Stream bytes they held on tape. */
  bytes: number;
  /** Tapes made recyclable: all their backups were forgotten. */
  recycled: Array<{ tapeServer: string; barcode: string; pool: string; backups: number[] }>;
  /** Tapes that keep forgotten backups' data, because kept (or running) backups are on them too. */
  held: Array<{ tapeServer: string; barcode: string; keptBackups: number[] }>;
}

/**
 * Deletes the forgotten backups (their file rows and tape parts) and makes
 * recyclable every tape all of whose backups are forgotten. A tape that
 * also holds a kept or running backup stays as it is (its forgotten data
 * goes when all of it is forgotten).
 */
export async function prune(catalog: Catalog, dryRun: boolean): Promise<PruneReport> {
  const all = await catalog.listBackups();
  const records = await catalog.listTapes();
  // Tape → the backups on it, keyed as the tapes table is (tape server key, barcode).
  const onTape = new Map<
    string,
    { tapeServer: string; barcode: string; pool: string; backups: BackupRecord[] }
  >();
  for (const b of [...all].sort((x, y) => x.id - y.id)) {
    for (const t of b.tapes) {
      const tapeServer = tapeServerKey(b.tapeServerId, b.tapeServer);
      const barcode = t.barcode ?? t.device;
      const key = `${tapeServer}\0${barcode}`;
      let e = onTape.get(key);
      if (!e) onTape.set(key, (e = { tapeServer, barcode, pool: b.pool, backups: [] }));
      if (!e.backups.includes(b)) e.backups.push(b);
    }
  }
  const gone = all.filter((b) => b.forgottenAt !== null && b.status !== 'running');
  const report: PruneReport = {
    dryRun,
    backups: gone.map((b) => ({ id: b.id, source: sourceName(b), files: b.files, bytes: b.bytes })),
    files: gone.reduce((n, b) => n + b.files, 0),
    bytes: gone.reduce((n, b) => n + b.bytes, 0),
    recycled: [],
    held: [],
  };
  const recycle: TapeRecord[] = [];
  for (const e of onTape.values()) {
    const forgotten = e.backups.filter((b) => b.forgottenAt !== null);
    if (forgotten.length === 0) continue;
    const kept = e.backups.filter((b) => b.forgottenAt === null || b.status === 'running');
    if (kept.length > 0) {
      report.held.push({ tapeServer: e.tapeServer, barcode: e.barcode, keptBackups: kept.map((b) => b.id) });
      continue;
    }
    const rec = records.find((r) => r.tapeServer === e.tapeServer && r.barcode === e.barcode);
    const pool = rec?.pool ?? e.pool;
    report.recycled.push({
      tapeServer: e.tapeServer,
      barcode: e.barcode,
      pool,
      backups: e.backups.map((b) => b.id),
    });
    recycle.push({
      tapeServer: e.tapeServer,
      barcode: e.barcode,
      pool,
      state: 'recyclable',
      updatedAt: Date.now(),
    });
  }
  if (dryRun) return report;
  // The tapes first: a prune cut short leaves them recyclable with their backups still listed
  // (forgotten), never backups deleted whose tapes are not free.
  for (const t of recycle) await catalog.putTape(t);
  for (const b of gone) await catalog.deleteBackup(b.id);
  return report;
}
