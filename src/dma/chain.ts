// Incremental chains as the catalog sees them (docs/dma.md, "Incremental
// chains"). A level-N backup (N > 0) holds what changed since its base: the
// most recent earlier backup of the same source (the same data server, by
// identity, and the same path) at a lower level that finished. That is the
// rule the server applies itself when it plans the backup (ndmpd's dumpdates
// record only backups that succeeded: src/backup/incremental.ts), so the
// chain found here is the one the stream was cut against.

import type { BackupRecord } from '../catalog/types.js';

/** Whether two backups are of the same source: one server (by identity when both have one) and one path. */
export function sameSource(a: BackupRecord, b: BackupRecord): boolean {
  if (a.path !== b.path) return false;
  return a.serverId !== '' && b.serverId !== '' ? a.serverId === b.serverId : a.server === b.server;
}

/**
 * The base of `b`: null for a full (level 0) backup, and for an incremental
 * whose base is not in the catalog (deleted from it, or made by another DMA).
 */
export function baseOf(all: readonly BackupRecord[], b: BackupRecord): BackupRecord | null {
  if (b.level === 0) return null;
  let best: BackupRecord | null = null;
  for (const x of all) {
    if (x.id === b.id || x.status !== 'done' || x.level >= b.level || !sameSource(x, b)) continue;
    // Started before b started: the server planned b against the newest such one it had recorded.
    if (x.startedAt >= b.startedAt || (x.finishedAt ?? Infinity) > b.startedAt) continue;
    if (!best || x.startedAt > best.startedAt || (x.startedAt === best.startedAt && x.id > best.id)) best = x;
  }
  return best;
}

export interface Chain {
  /** The full backup first, `b` last; each one the base of the next. */
  backups: BackupRecord[];
  /** Whether it starts with a full backup (false: a base is missing from the catalog). */
  complete: boolean;
}

/** The chain `b` belongs to, from its full backup to `b`. */
export function chainOf(all: readonly BackupRecord[], b: BackupRecord): Chain {
  const backups = [b];
  let cur = b;
  for (;;) {
    const base = baseOf(all, cur);
    if (!base) break;
    backups.unshift(base);
    cur = base;
  }
  return { backups, complete: backups[0]!.level === 0 };
}

/** The backups whose chains include `b` (b's dependants: incrementals cut against it, directly or not). */
export function dependantsOf(all: readonly BackupRecord[], b: BackupRecord): BackupRecord[] {
  return all.filter((x) => x.id !== b.id && chainOf(all, x).backups.some((y) => y.id === b.id));
}
