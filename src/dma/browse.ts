// `ndmp ls` and `ndmp find` with the server's paths (src/dma/server-paths.ts)
// and, for `ls` of an incremental, its tree as of then (src/dma/point-in-time.ts).
// What they return is what `--json` prints: catalog rows with the server's
// paths, each naming the backup it comes from.

import type { BackupRecord, Catalog, FileRow, FoundFile } from '../catalog/types.js';
import { DmaUsageError } from './agent.js';
import { AsOfView } from './point-in-time.js';
import { patternsBelow, serverRow, sourceOf, toBackupPath, toServerPath } from './server-paths.js';
import { WAITS, withBound } from './waits.js';

/** An entry `ndmp ls` shows: the row (server paths) and the backup of the chain whose stream holds it. */
export type ListedEntry = FileRow & { backupId: number };

/** A hit of `ndmp find`: the row (server paths), its backup, and that backup's server and source path. */
export type ServerHit = FoundFile & { server: string; source: string };

function bound<T>(catalog: Catalog, p: Promise<T>, what: string): Promise<T> {
  return withBound(
    p,
    WAITS.catalogCallMs,
    `the catalog (${catalog.location}) to ${what}`,
    'check the catalog database, then run the command again',
  );
}

/**
 * What `ndmp ls B PATH` lists: the entries of the directory PATH (a path on
 * the server; none: the backup's root), or PATH alone when it is not a
 * directory, as of backup `b`: for an incremental, its chain's tree then.
 */
export async function listAsOf(
  catalog: Catalog,
  b: BackupRecord,
  typed: string | undefined,
): Promise<{ entries: ListedEntry[]; view: AsOfView }> {
  const dir = typed === undefined ? '/' : toBackupPath(b, typed);
  const all = await bound(catalog, catalog.listBackups(), 'list the backups');
  const view = AsOfView.of(catalog, all, b);
  const self = await view.lookup(dir);
  if (!self) {
    const when = view.chain.length > 1 ? ` as of ${new Date(b.startedAt).toISOString()}` : '';
    throw new DmaUsageError(
      `${toServerPath(b, dir)} is not in backup ${b.id}${when} (see 'ndmp ls ${b.id}')`,
    );
  }
  // A file: listed alone, as ls does.
  const list = self.row.type === 'dir' ? await view.listDir(dir) : [self];
  return { entries: list.map((e) => ({ ...serverRow(e.from, e.row), backupId: e.from.id })), view };
}

/**
 * `ndmp find PATTERN`: a name pattern is matched in every backup as it is; a
 * path pattern is written with the server's paths, so it is cut for each
 * backup where its source ends (patternsBelow) and matched in that backup.
 * Newest backup first, then path; at most `limit` hits (0: all).
 */
export async function findOnServers(
  catalog: Catalog,
  pattern: string,
  opts: { backupId?: number; limit: number },
): Promise<ServerHit[]> {
  // Forgotten backups are gone for the user (docs/dma.md, "Retention: forget and prune").
  const all = (await bound(catalog, catalog.listBackups(), 'list the backups')).filter(
    (b) => b.forgottenAt === null,
  );
  const byId = new Map(all.map((b) => [b.id, b]));
  // 0: every hit (ndmp find --limit 0).
  const max = opts.limit === 0 ? Number.MAX_SAFE_INTEGER : opts.limit;
  const hit = (h: FoundFile): ServerHit => {
    const b = byId.get(h.backupId)!;
    return { ...serverRow(b, h), server: b.server, source: sourceOf(b) };
  };
  const only = opts.backupId === undefined ? null : byId.get(opts.backupId);
  if (only === undefined)
    throw new DmaUsageError(`there is no backup ${opts.backupId} in ${catalog.location}`);
  const sources = new Set((only ? [only] : all).map(sourceOf));
  if (!pattern.includes('/') || (sources.size === 1 && sources.has('/'))) {
    const hits = await bound(catalog, catalog.find(pattern, { ...opts, limit: max }), `find ${pattern}`);
    return hits.filter((h) => byId.has(h.backupId)).map(hit);
  }
  // A path pattern: one search per backup (newest first: listBackups' order), each with its source cut off.
  const out: ServerHit[] = [];
  for (const b of only ? [only] : all) {
    if (out.length >= max) break;
    const seen = new Set<string>();
    const found: FoundFile[] = [];
    for (const p of patternsBelow(pattern, sourceOf(b))) {
      const limit = max - out.length;
      for (const h of await bound(catalog, catalog.find(p, { backupId: b.id, limit }), `find ${pattern}`)) {
        if (!seen.has(h.path)) found.push(h);
        seen.add(h.path);
      }
    }
    found.sort((x, y) => (x.path < y.path ? -1 : x.path > y.path ? 1 : 0));
    out.push(...found.slice(0, max - out.length).map(hit));
  }
  return out;
}
