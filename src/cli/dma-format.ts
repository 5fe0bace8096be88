// How `ndmp` prints catalog things for people: backups, directory listings,
// search hits, library contents. (`--json` prints the records themselves.)
// Paths and names are printed as the catalog stores them, in their printed
// form (docs/names.md): one line per entry whatever bytes its name holds.

import type { BackupRecord, FileRow, FoundFile } from '../catalog/types.js';
import type { TapeServerContents } from '../dma/media.js';
import type { ListedTape } from '../dma/pools.js';
import { size } from './query-format.js';
import { iso } from './json-output.js';

/** Columns padded to their widest cell; the last one is not padded. */
export function table(rows: string[][]): string {
  if (rows.length === 0) return '';
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows
    .map((r) =>
      r
        .map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!)))
        .join('  ')
        .trimEnd(),
    )
    .join('\n')
    .concat('\n');
}

export function when(ms: number | null): string {
  if (ms === null) return '-';
  const d = new Date(ms);
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

function tapeList(b: BackupRecord): string {
  return b.tapes.map((t) => `${t.barcode ?? t.device}:${t.tapeFile}`).join(',') || '-';
}

export function formatBackups(list: readonly BackupRecord[]): string {
  if (list.length === 0) return 'no backups in the catalog\n';
  return table([
    ['ID', 'STARTED', 'SOURCE', 'LEVEL', 'STATUS', 'FILES', 'SIZE', 'TAPES'],
    ...list.map((b) => [
      String(b.id),
      when(b.startedAt),
      `${b.server}:${b.path}`,
      String(b.level),
      b.status,
      String(b.files),
      size(b.bytes),
      tapeList(b),
    ]),
  ]);
}

export function formatBackup(b: BackupRecord): string {
  const secs = b.finishedAt === null ? null : (b.finishedAt - b.startedAt) / 1000;
  const rate = secs && secs > 0 ? `, ${size(b.bytes / secs)}/s` : '';
  return (
    `backup ${b.id} of ${b.server}:${b.path} (level ${b.level}): ${b.status}` +
    `${b.haltReason && b.status !== 'done' ? ` (${b.haltReason})` : ''}\n` +
    `  ${b.files} files, ${size(b.bytes)} in ${secs === null ? '?' : secs.toFixed(1)} s${rate}\n` +
    `  tapes: ${b.tapes.map((t) => `${t.barcode ?? t.device} file ${t.tapeFile} (${size(t.length)})`).join(', ') || 'none'}\n`
  );
}

const TYPE_CHAR: Record<string, string> = {
  dir: 'd',
  file: '-',
  symlink: 'l',
  fifo: 'p',
  chr: 'c',
  blk: 'b',
  sock: 's',
};

function modeString(r: FileRow): string {
  const bits = 'rwxrwxrwx';
  let s = TYPE_CHAR[r.type] ?? '?';
  for (let i = 0; i < 9; i++) s += r.mode & (1 << (8 - i)) ? bits[i] : '-';
  return s;
}

export function formatListing(rows: ReadonlyArray<FileRow & { backupId?: number }>): string {
  return table(
    rows.map((r) => [
      modeString(r),
      `${r.uid}:${r.gid}`,
      String(r.size),
      when(r.mtime * 1000),
      // The backup of the chain the entry comes from (docs/dma.md, "Incremental chains: point-in-time").
      ...(r.backupId === undefined ? [] : [`#${r.backupId}`]),
      r.type === 'dir' ? `${r.name}/` : r.name,
    ]),
  );
}

/** A row's times as JSON has them: ISO 8601 strings (the catalog keeps whole seconds). */
type JsonTimes<T> = Omit<T, 'mtime' | 'atime' | 'ctime'> & {
  mtime: string | null;
  atime: string | null;
  ctime: string | null;
};

/**
 * Rows for `--json`: the records, times as ISO 8601 (json-output.ts), each
 * with `plain`, true when its path holds no escape (the text is the path's
 * bytes in UTF-8); when false, the bytes are the path unescaped: `\\` a
 * backslash, `\xHH` the byte HH (docs/names.md).
 */
export function jsonRows<T extends FileRow>(rows: readonly T[]): Array<JsonTimes<T> & { plain: boolean }> {
  return rows.map((r) => ({
    ...r,
    mtime: iso(r.mtime * 1000),
    atime: iso(r.atime * 1000),
    ctime: iso(r.ctime * 1000),
    plain: !r.path.includes('\\'),
  }));
}

export function formatFound(rows: ReadonlyArray<FoundFile & { server?: string; source?: string }>): string {
  return table(
    rows.map((r) => [
      String(r.backupId),
      // Which server's backup of which path (docs/dma.md, "Paths").
      ...(r.server === undefined ? [] : [`${r.server}:${r.source}`]),
      modeString(r),
      String(r.size),
      when(r.mtime * 1000),
      r.path,
    ]),
  );
}

/** A tape as `ndmp tapes` shows it: the server's facts, its state and pool, the cataloged backups on it. */
export type ListedMedium = ListedTape;

export function formatTapes(
  server: string,
  c: { drives: TapeServerContents['drives']; media: ListedMedium[] },
): string {
  let out = `tape server ${server}\n`;
  out += c.drives.length
    ? table([['DRIVE', 'MODEL', 'SERIAL'], ...c.drives.map((d) => [d.device, d.model, d.serial ?? '-'])])
    : 'no drives\n';
  if (c.media.length === 0) return `${out}no tapes listed (only ndmpd's library lists its tapes)\n`;
  // The state (docs/dma.md, "Pools and tapes"), and where the tape is.
  const state = (m: ListedMedium) =>
    [m.state, m.loadedIn ? `in ${m.loadedIn}` : ''].filter(Boolean).join(', ');
  return (
    out +
    table([
      ['BARCODE', 'LABEL', 'USED', 'CAPACITY', 'FILES', 'POOL', 'STATE', 'BACKUPS'],
      ...c.media.map((m) => [
        m.barcode,
        m.label || '-',
        size(m.used),
        size(m.capacity),
        String(m.files),
        m.pool ?? '-',
        state(m),
        m.backups.join(',') || '-',
      ]),
    ])
  );
}
