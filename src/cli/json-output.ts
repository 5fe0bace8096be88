// What `ndmp --json` prints, in one place: every time is an ISO 8601 string
// in UTC (the catalog keeps ms for backups and whole seconds for files;
// people and scripts get one unit), and an error is one JSON object on
// stderr (docs/dma.md, "JSON output").

import type { BackupRecord } from '../catalog/types.js';

/** An instant as ISO 8601 (UTC, ms), or null. */
export function iso(ms: number | null): string | null {
  if (ms === null || !Number.isFinite(ms)) return null;
  const d = new Date(ms);
  return Number.isNaN(d.getTime()) ? null : d.toISOString();
}

/** A backup as JSON: its record with startedAt and finishedAt as ISO strings. */
export function jsonBackup(b: BackupRecord): Omit<BackupRecord, 'startedAt' | 'finishedAt'> & {
  startedAt: string | null;
  finishedAt: string | null;
} {
  return { ...b, startedAt: iso(b.startedAt), finishedAt: iso(b.finishedAt) };
}

/** A failure as `--json` reports it on stderr. */
export interface JsonError {
  error: {
    /** A stable code: the NDMP error's name, or ours (DMA_USAGE, CATALOG, NDMP_CONNECT_FAILED...). */
    code: string;
    message: string;
    /** The exit code ndmp leaves with. */
    exit: number;
  };
}

export function jsonError(code: string, message: string, exit: number): string {
  const e: JsonError = { error: { code, message, exit } };
  return `${JSON.stringify(e)}\n`;
}
