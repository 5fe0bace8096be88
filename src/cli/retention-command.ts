// `ndmp forget` and `ndmp prune` (docs/dma.md, "Retention: forget and
// prune"): the commands, their options and their output (text and --json).
// The decisions are src/dma/retention.ts's; this module only parses and
// prints, and is registered by one line in ndmp.ts.

import { iso } from './json-output.js';
import type { Command } from 'commander';
import type { Catalog } from '../catalog/types.js';
import { DmaUsageError } from '../dma/agent.js';
import { forget, planIds, planPolicy, prune } from '../dma/retention.js';
import type { Decision, KeepPolicy, PruneReport } from '../dma/retention.js';
import { table, when } from './dma-format.js';
import { size } from './query-format.js';

interface CatalogOpts {
  catalog?: string;
  json?: boolean;
}

/** What ndmp.ts lends: its catalog options, its catalog opening, its printing. */
export interface CommandHelpers {
  addCatalogOptions(cmd: Command): Command;
  withCatalog<T>(o: CatalogOpts, f: (c: Catalog) => Promise<T>): Promise<T>;
  print(o: { json?: boolean }, value: unknown, text: () => string): void;
}

const RULES: Array<[keyof KeepPolicy, string]> = [
  ['last', 'the last N backups'],
  ['hourly', 'the last backup of each of the last N hours that have one'],
  ['daily', 'the last backup of each of the last N days that have one'],
  ['weekly', 'the last backup of each of the last N ISO weeks that have one'],
  ['monthly', 'the last backup of each of the last N months that have one'],
  ['yearly', 'the last backup of each of the last N years that have one'],
];

/** A keep count: a whole number, or 'unlimited' (-1, as restic). */
function keepCount(flag: string, v: string): number {
  if (v === 'unlimited') return -1;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 0)
    throw new DmaUsageError(`${flag} ${v}: a count (0 or more), or 'unlimited'`);
  return n;
}

function formatDecisions(ds: readonly Decision[], dryRun: boolean, forgotten: number): string {
  const bySource = new Map<string, Decision[]>();
  for (const d of ds) bySource.set(d.source, [...(bySource.get(d.source) ?? []), d]);
  let out = '';
  for (const [source, list] of bySource) {
    out += `${source}\n`;
    out += table(
      list.map((d) => [
        `  ${d.action}`,
        String(d.id),
        when(d.startedAt),
        `level ${d.level}`,
        d.status,
        d.reasons.join(', '),
      ]),
    );
  }
  const kept = ds.filter((d) => d.action === 'keep').length;
  const verb = dryRun ? 'would forget' : 'forgot';
  out += `${verb} ${forgotten} backup${forgotten === 1 ? '' : 's'}, kept ${kept}`;
  out += forgotten > 0 && !dryRun ? "; 'ndmp prune' deletes them and frees their tapes\n" : '\n';
  return out;
}

function formatPrune(r: PruneReport): string {
  const lines: string[] = [];
  const will = r.dryRun ? 'would delete' : 'deleted';
  for (const b of r.backups)
    lines.push(`${will} backup ${b.id} (${b.source}): ${b.files} files, ${size(b.bytes)}`);
  for (const t of r.recycled) {
    lines.push(
      `${r.dryRun ? 'would recycle' : 'recycled'} tape ${t.barcode} (pool ${t.pool}): every backup on it is forgotten (${t.backups.join(', ')})`,
    );
  }
  for (const t of r.held) {
    lines.push(`tape ${t.barcode} stays in use: backups ${t.keptBackups.join(', ')} on it are kept`);
  }
  const n = r.recycled.length;
  lines.push(
    `${r.dryRun ? 'would prune' : 'pruned'} ${r.backups.length} backup${r.backups.length === 1 ? '' : 's'}, ` +
      `${r.files} file rows, ${size(r.bytes)} on tape; ${n} tape${n === 1 ? '' : 's'} recyclable`,
  );
  return `${lines.join('\n')}\n`;
}

export function registerRetentionCommands(program: Command, h: CommandHelpers): void {
  const f = program
    .command('forget')
    .description(
      "forget backups, by id or by a policy per source (server and path) with restic's keep rules; a kept incremental keeps its chain. 'ndmp prune' then frees their tapes",
    )
    .argument('[ids...]', 'backup ids (see ndmp backups); or none, and --keep-* rules');
  for (const [rule, what] of RULES) {
    f.option(`--keep-${rule} <n>`, `keep ${what} (or 'unlimited')`);
  }
  h.addCatalogOptions(
    f
      .option(
        '--with-dependants',
        'forgetting a backup by id: forget the incrementals cut against it too (else it is refused)',
      )
      .option('-n, --dry-run', 'say what would be forgotten and why, and change nothing'),
  ).action(async (ids: string[], o: CatalogOpts & Record<string, unknown>) => {
    const policy: KeepPolicy = {};
    for (const [rule] of RULES) {
      const key = `keep${rule[0]!.toUpperCase()}${rule.slice(1)}`;
      if (o[key] !== undefined) policy[rule] = keepCount(`--keep-${rule}`, o[key] as string);
    }
    const hasPolicy = Object.values(policy).some((n) => n !== 0);
    if (ids.length > 0 && Object.keys(policy).length > 0) {
      throw new DmaUsageError('give backup ids or --keep-* rules, not both');
    }
    if (ids.length === 0 && !hasPolicy) {
      // restic refuses an empty policy too: it would forget everything.
      throw new DmaUsageError(
        'nothing to forget: give backup ids, or at least one --keep-* rule above 0 (a policy that keeps nothing is refused)',
      );
    }
    const wanted = ids.map((s) => {
      const n = Number(s);
      if (!Number.isSafeInteger(n) || n <= 0)
        throw new DmaUsageError(`'${s}' is not a backup id (see 'ndmp backups')`);
      return n;
    });
    const dryRun = o.dryRun === true;
    await h.withCatalog(o, async (catalog) => {
      const all = await catalog.listBackups();
      const plan = wanted.length ? planIds(all, wanted, o.withDependants === true) : planPolicy(all, policy);
      await forget(catalog, plan, dryRun);
      // JSON times are ISO 8601 (docs/dma.md, "JSON output").
      const decisions = plan.decisions.map((d) => ({ ...d, startedAt: iso(d.startedAt) }));
      h.print(o, { dryRun, forgotten: plan.forget, decisions }, () =>
        formatDecisions(plan.decisions, dryRun, plan.forget.length),
      );
    });
  });

  h.addCatalogOptions(
    program
      .command('prune')
      .description(
        'delete forgotten backups from the catalog (their file rows too) and make recyclable each tape whose backups are all forgotten',
      )
      .option('-n, --dry-run', 'say what would be deleted and recycled, and change nothing'),
  ).action(async (o: CatalogOpts & { dryRun?: boolean }) => {
    await h.withCatalog(o, async (catalog) => {
      const r = await prune(catalog, o.dryRun === true);
      h.print(o, r, () => formatPrune(r));
    });
  });
}
