// Paths as the server has them (docs/dma.md, "Paths"). The catalog keeps each
// row's path inside its backup ("/" is the backup's root, whatever it backed
// up: src/catalog/types.ts FileRow), which is what the file history names
// and what the server's nlist takes. People see and type the absolute path on
// the server instead: the backup's source (BackupRecord.path, the FILESYSTEM
// it backed up, printed) joined with the path inside. This module is the one
// place that converts, at the CLI's boundary: what goes in (`ls`, `restore`
// paths, `find` patterns) and what comes out (rows, hits, restore outcomes).
// Both sides are in the printed form (docs/names.md), so joining and cutting
// are plain text operations: a printed name never holds '/'.

import { parsePattern } from '../catalog/pattern.js';
import type { Token } from '../catalog/pattern.js';
import type { BackupRecord, FileRow } from '../catalog/types.js';
import { DmaUsageError } from './agent.js';
import { normalizeHistoryPath } from './history-ingest.js';
import { typedPath } from './restore-job.js';

/** A path given for a backup that does not lie under what the backup backed up. */
export class PathOutsideSourceError extends DmaUsageError {
  constructor(
    readonly path: string,
    readonly backupId: number,
    readonly source: string,
  ) {
    super(
      `${path} is not in backup ${backupId}: it backed up ${source}, so give a path below it` +
        ` (for example ${source === '/' ? '/etc' : `${source}/...`}), as 'ndmp ls ${backupId}' prints them`,
    );
    this.name = 'PathOutsideSourceError';
  }
}

/** The backup's source path on its server, printed and normalized ("/usr/share/doc/bash"). */
export function sourceOf(b: BackupRecord): string {
  return normalizeHistoryPath(b.path);
}

/** "SERVER:/source", as `ndmp backups` names a backup's source. */
export function sourceLabel(b: BackupRecord): string {
  return `${b.server}:${sourceOf(b)}`;
}

/**
 * The catalog's path inside backup `b` of a path typed on the command line:
 * absolute on the server (printed form, or typed with plain backslashes;
 * docs/names.md), or relative, which is taken below the source. Throws
 * PathOutsideSourceError for a path outside the source.
 */
export function toBackupPath(b: BackupRecord, typed: string): string {
  const src = sourceOf(b);
  if (!typed.startsWith('/')) return typedPath(typed);
  const p = typedPath(typed);
  if (src === '/') return p;
  if (p === src) return '/';
  if (p.startsWith(`${src}/`)) return p.slice(src.length);
  throw new PathOutsideSourceError(p, b.id, src);
}

/** The server's path of the catalog's path `inner` in backup `b`. */
export function toServerPath(b: BackupRecord, inner: string): string {
  const src = sourceOf(b);
  if (inner === '/' || inner === '') return src;
  return src === '/' ? inner : `${src}${inner}`;
}

/** A catalog row with the server's paths (path and dir); the root's name is the source's last name. */
export function serverRow<T extends FileRow>(b: BackupRecord, r: T): T {
  const path = toServerPath(b, r.path);
  if (r.path !== '/') return { ...r, path, dir: toServerPath(b, r.dir) };
  const cut = path.lastIndexOf('/');
  return { ...r, path, dir: path === '/' ? '' : path.slice(0, cut) || '/', name: path.slice(cut + 1) };
}

// ---- find's path patterns ----------------------------------------------------
//
// A pattern with a '/' is matched against the whole path (src/catalog/pattern.ts),
// which people now write as the server has it. The catalog matches its own
// paths, so for each source the pattern is cut where the source ends: the
// tokens still to match once the source's text is consumed (a glob automaton
// run over the source) match the path inside the backup. '*' matches '/', so
// '/home/*/notes.txt' reaches into backups of /home, of /home/alice and of /.

function matches(t: Token, cp: number): boolean {
  switch (t.kind) {
    case 'any':
    case 'one':
      return true;
    case 'lit':
      return t.cp === cp;
    case 'set':
      return t.ranges.some((r) => cp >= r.lo && cp <= r.hi) !== t.negated;
  }
}

/**
 * The patterns (none, one, rarely more) that match, inside a backup of
 * `source`, the paths `pattern` matches on the server. `pattern` must hold a
 * '/' (a path pattern); name patterns need no cutting.
 */
export function patternsBelow(pattern: string, source: string): string[] {
  if (source === '/') return [pattern];
  const p = parsePattern(pattern);
  if (p.never) return [];
  const { tokens, starts } = p;
  const chars = Array.from(pattern);
  const closure = (set: Set<number>): Set<number> => {
    for (const k of set) if (tokens[k]?.kind === 'any') set.add(k + 1);
    return set;
  };
  let states = closure(new Set([0]));
  for (const ch of source) {
    const cp = ch.codePointAt(0)!;
    const next = new Set<number>();
    for (const k of states) {
      const t = tokens[k];
      if (!t || !matches(t, cp)) continue;
      next.add(t.kind === 'any' ? k : k + 1);
    }
    states = closure(next);
    if (states.size === 0) return [];
  }
  const out = new Set<string>();
  for (const k of [...states].sort((a, b) => a - b)) {
    // A '*' just before also matches what follows it from here: its rest covers this one.
    if (k > 0 && tokens[k - 1]!.kind === 'any' && states.has(k - 1)) continue;
    // What is left matches the path inside the backup, which starts with '/'.
    if (k === tokens.length) {
      out.add('/'); // the pattern ends with the source: the backup's root itself
      continue;
    }
    const rest = chars.slice(starts[k]).join('');
    if (rest.includes('/')) {
      out.add(rest);
      continue;
    }
    // Without a '/' the rest would be read as a name pattern: its first token must take the leading '/'.
    const t = tokens[k]!;
    if (t.kind === 'any') out.add(`/${rest}`);
    else if (t.kind === 'one') out.add(`/${chars.slice(starts[k + 1] ?? chars.length).join('')}`);
    else if (matches(t, 0x2f)) out.add(`/${chars.slice(starts[k + 1] ?? chars.length).join('')}`);
  }
  return [...out];
}
