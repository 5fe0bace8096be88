// `ndmp restore` of a backup as of its date (docs/dma.md, "Incremental
// chains: point-in-time"). A full backup (or an incremental whose base is not
// in the catalog) restores as it always did: one restore of that backup. An
// incremental restores its chain's tree as of then (src/dma/point-in-time.ts):
// every entry asked for (a directory: everything below it as of then) is
// restored from the backup of the chain whose stream holds it, one restore
// per backup, oldest first, so where two hold a path (a directory, say) the
// newer one is the last written. Those restores name each entry and send
// RECURSIVE=n (the draft's variable, docs/protocol.md §9): a directory comes
// back alone, never with the contents its older backup had, so what was
// deleted since is not brought back.

import type { BackupRecord, FileRow } from '../catalog/types.js';
import { DmaUsageError } from './agent.js';
import { AsOfView } from './point-in-time.js';
import type { AsOfEntry } from './point-in-time.js';
import { runRestore } from './restore-job.js';
import { WAITS, withBound } from './waits.js';
import type { FileOutcome, RestoreJobOptions, RestoreOutcome } from './restore-job.js';

export interface AsOfRestoreOptions extends Omit<RestoreJobOptions, 'rows'> {
  /** The catalog's backups, to find the chain of `backup` in. */
  all: readonly BackupRecord[];
  /** A path inside the backup as messages show it (the server's path: src/dma/server-paths.ts). */
  showPath?: (p: string) => string;
}

export interface AsOfRestoreOutcome extends RestoreOutcome {
  /** The backups read, oldest first, with how many entries each gave. */
  passes: Array<{ backupId: number; entries: number; ok: boolean }>;
}

/**
 * An nlist goes in one message, which a server takes up to some size (ndmpd:
 * 4 MiB, src/wire/framing.ts): a restore names at most this many bytes of
 * paths (each twice: original and destination), and more entries go in more
 * restores of the same backup.
 */
const NLIST_PATH_BYTES = 512 * 1024;

function chunks(rows: readonly FileRow[]): FileRow[][] {
  const out: FileRow[][] = [];
  let cur: FileRow[] = [];
  let bytes = 0;
  for (const r of rows) {
    const n = r.path.length * 2 + 64;
    if (cur.length > 0 && bytes + n > NLIST_PATH_BYTES) {
      out.push(cur);
      cur = [];
      bytes = 0;
    }
    cur.push(r);
    bytes += n;
  }
  if (cur.length > 0) out.push(cur);
  return out;
}

const within = (p: string, top: string) => top === '/' || p === top || p.startsWith(`${top}/`);

export async function restoreAsOf(o: AsOfRestoreOptions): Promise<AsOfRestoreOutcome> {
  const show = o.showPath ?? ((p: string) => p);
  const date = new Date(o.backup.startedAt).toISOString();
  const view = AsOfView.of(o.catalog, o.all, o.backup);
  if (view.chain.length === 1) {
    // A full backup: the paths as it holds them, restored as ever (a directory with its contents).
    const found =
      o.paths.length === 0
        ? []
        : await withBound(
            o.catalog.lookup(o.backup.id, o.paths),
            WAITS.catalogCallMs,
            `the catalog (${o.catalog.location}) to look up ${o.paths.length} paths`,
            'check the catalog database, then run the restore again',
          );
    const byPath = new Map(found.map((r) => [r.path, r]));
    const lost = o.paths.filter((p) => !byPath.has(p));
    if (lost.length > 0) throw new AsOfNotFoundError(o.backup, lost.map(show), date);
    const rows = [...new Set(o.paths)].map((p) => byPath.get(p)!);
    const r = await runRestore({ ...o, rows });
    return { ...r, passes: [{ backupId: o.backup.id, entries: rows.length, ok: r.ok }] };
  }
  const say = (level: 'info' | 'warning', text: string) => o.events?.message?.(level, text);
  const wanted = o.paths.length > 0 ? o.paths : ['/'];
  const entries = new Map<string, AsOfEntry>();
  const missing: string[] = [];
  for (const p of wanted) {
    const tree = await view.tree(p);
    if (!tree) missing.push(p);
    else for (const e of tree) entries.set(e.row.path, e);
  }
  if (missing.length > 0) throw new AsOfNotFoundError(o.backup, missing.map(show), date);
  for (const id of view.incomplete) {
    say(
      'warning',
      `backup ${id} has path-model history, which does not list unchanged names: files deleted before it still show and are restored (back incrementals up with --history dirnode)`,
    );
  }
  if (view.missing.size > 0) {
    say(
      'warning',
      `${view.missing.size} names listed as of backup ${o.backup.id} are in none of its chain's backups, and are not restored (first: ${show([...view.missing][0]!)})`,
    );
  }
  const byBackup = new Map<number, FileRow[]>();
  for (const e of entries.values()) {
    const list = byBackup.get(e.from.id) ?? [];
    list.push(e.row);
    byBackup.set(e.from.id, list);
  }
  const passes: AsOfRestoreOutcome['passes'] = [];
  const outcomes: RestoreOutcome[] = [];
  for (const b of view.chain) {
    const rows = byBackup.get(b.id);
    if (!rows) continue;
    say(
      'info',
      `restoring ${rows.length} entries as of backup ${o.backup.id} from backup ${b.id} (level ${b.level})`,
    );
    let ok = true;
    for (const part of chunks(rows)) {
      const r = await runRestore({
        ...o,
        backup: b,
        rows: part,
        env: [...o.env, { name: 'RECURSIVE', value: 'n' }],
      });
      ok &&= r.ok;
      outcomes.push(r);
      if (o.signal?.aborted) break;
    }
    passes.push({ backupId: b.id, entries: rows.length, ok });
    if (o.signal?.aborted) break;
  }
  // Per path asked for: restored when everything below it was; each entry that failed on its own too.
  const status = new Map<string, FileOutcome>();
  for (const r of outcomes) for (const f of r.files) status.set(f.path, f);
  const failed = [...status.values()].filter((f) => !f.ok);
  const files: FileOutcome[] = [];
  if (o.paths.length > 0) {
    for (const p of wanted) {
      const bad = failed.find((f) => within(f.path, p));
      files.push({ path: p, ok: !bad, status: bad ? bad.status : 'SUCCESSFUL' });
    }
  }
  for (const f of failed) if (!files.some((x) => x.path === f.path)) files.push(f);
  const reasons = outcomes.map((r, i) => (r.reason ? `pass ${i + 1}: ${r.reason}` : null)).filter(Boolean);
  const last = outcomes[outcomes.length - 1];
  const ok = outcomes.length > 0 && outcomes.every((r) => r.ok) && !o.signal?.aborted;
  return {
    ok,
    dar: outcomes.every((r) => r.dar),
    files,
    dataHalt: last?.dataHalt ?? 'NA',
    moverHalt: last?.moverHalt ?? 'NA',
    reason: reasons.length > 0 ? reasons.join('; ') : ok ? null : 'interrupted',
    tapesRead: outcomes.flatMap((r) => r.tapesRead),
    passes,
  };
}

/** Paths asked of an incremental that its tree as of then does not hold. */
export class AsOfNotFoundError extends DmaUsageError {
  constructor(
    readonly backup: BackupRecord,
    /** The paths, as shown (the server's). */
    readonly paths: string[],
    date: string,
  ) {
    super(`not in backup ${backup.id} as of ${date}: ${paths.join(', ')}`);
    this.name = 'AsOfNotFoundError';
  }
}
