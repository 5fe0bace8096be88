// What both stores share: the schema version, paths as (dir, name), the
// checks a row passes before it is stored, and rows read back as the
// interface's records. Both stores hand rows back with the same column names
// and with integers as JS numbers, so one mapping serves both.

import { escapeName, isUtf8Name } from '../util/byte-name.js';
import { CatalogError } from './errors.js';
import type {
  BackupRecord,
  BackupStatus,
  DirListing,
  FileRow,
  FileType,
  TapeRecord,
  TapeSegment,
} from './types.js';

/**
 * Bumped by any change to the tables; a store refuses a catalog newer than it
 * knows and migrates an older one. 2: names and dirs are stored in their
 * printed form (docs/names.md), and PostgreSQL keys a directory by a hash of
 * its path, so a path of any length fits its index. 3: backups name their
 * servers by identity (host id), and the servers table remembers where each
 * one was last reached (docs/dma.md, "Servers").
 */
export const SCHEMA_VERSION = 3;

/** A column schema 3 adds to an existing table: its name and its type in each dialect. */
export interface AddedColumn {
  table: string;
  column: string;
  sqlite: string;
  postgres: string;
}

/**
 * What schema 3 adds to schema 2's tables. New catalogs get these columns in
 * their CREATE TABLE; older ones by ALTER TABLE ADD COLUMN (with the default,
 * which is what an older backup means: an unknown identity).
 */
export const V3_COLUMNS: readonly AddedColumn[] = [
  // CONFIG_GET_HOST_INFO's host id of the data and the tape server; '' when unknown (older backups).
  {
    table: 'backups',
    column: 'server_id',
    sqlite: "TEXT NOT NULL DEFAULT ''",
    postgres: "text NOT NULL DEFAULT ''",
  },
  {
    table: 'backups',
    column: 'tape_server_id',
    sqlite: "TEXT NOT NULL DEFAULT ''",
    postgres: "text NOT NULL DEFAULT ''",
  },
  // Pools and retention (docs/dma.md, "Pools and tapes", "Retention: forget and prune", "A DMA that
  // died"): the pool the backup's tapes belong to ('default' for older backups); when `ndmp forget`
  // forgot it (ms, null: kept); the DMA that runs it (host name and pid, '' and 0 for older backups)
  // and its last heartbeat (ms), by which a backup left running by a DMA that died is found.
  {
    table: 'backups',
    column: 'pool',
    sqlite: "TEXT NOT NULL DEFAULT 'default'",
    postgres: "text NOT NULL DEFAULT 'default'",
  },
  { table: 'backups', column: 'forgotten_at', sqlite: 'INTEGER', postgres: 'bigint' },
  {
    table: 'backups',
    column: 'dma_host',
    sqlite: "TEXT NOT NULL DEFAULT ''",
    postgres: "text NOT NULL DEFAULT ''",
  },
  {
    table: 'backups',
    column: 'dma_pid',
    sqlite: 'INTEGER NOT NULL DEFAULT 0',
    postgres: 'bigint NOT NULL DEFAULT 0',
  },
  { table: 'backups', column: 'heartbeat_at', sqlite: 'INTEGER', postgres: 'bigint' },
];

/** The column definitions V3_COLUMNS adds to `table`, for its CREATE TABLE (a leading comma each). */
export function v3ColumnsSql(table: string, dialect: 'sqlite' | 'postgres'): string {
  return V3_COLUMNS.filter((c) => c.table === table)
    .map((c) => `,\n  ${c.column} ${c[dialect]}`)
    .join('');
}

/**
 * The longest name (one path component, printed form, in UTF-8 bytes) a row
 * may hold. PostgreSQL keeps the name itself in its key (for listDir's name
 * order), and a btree key must fit a third of a page (~2,700 bytes); a Linux
 * name is at most 255 bytes, so 1,020 printed. Both stores refuse the same
 * rows, so they behave alike.
 */
export const MAX_NAME_BYTES = 2048;

/** The path of the entry named `name` in `dir`: the root is ("", ""), top-level entries have dir "/". */
export function pathOf(dir: string, name: string): string {
  if (dir === '') return '/';
  return dir === '/' ? `/${name}` : `${dir}/${name}`;
}

/** The inverse of pathOf; a trailing '/' is ignored ("/a/" is "/a"). */
export function splitPath(path: string): { dir: string; name: string } {
  const p = path.length > 1 && path.endsWith('/') ? path.replace(/\/+$/, '') || '/' : path;
  if (p === '/') return { dir: '', name: '' };
  const i = p.lastIndexOf('/');
  return { dir: i <= 0 ? '/' : p.slice(0, i), name: p.slice(i + 1) };
}

/** A directory as listDir takes it: "/a/b/" is "/a/b". */
export function normalizeDir(dir: string): string {
  return dir.length > 1 ? dir.replace(/\/+$/, '') || '/' : dir;
}

/**
 * The same path computed in SQL (both dialects), for ordering and for path
 * patterns: the path is not stored, the (dir, name) it derives from is.
 */
export const PATH_SQL = `CASE WHEN dir = '' THEN '/' WHEN dir = '/' THEN '/' || name ELSE dir || '/' || name END`;

const safe = Number.isSafeInteger;
const safeOrNull = (v: number | null) => v === null || safe(v);

/**
 * Refuses a row the stores could not keep exactly: an integer beyond 2^53-1
 * (or not an integer) would come back as another number, and a path that
 * disagrees with its (dir, name) could never be looked up.
 */
export function checkRow(r: FileRow): void {
  // Field by field rather than a loop over names: this runs for every row.
  if (!(
    safe(r.size) &&
    safe(r.mode) &&
    safe(r.uid) &&
    safe(r.gid) &&
    safe(r.mtime) &&
    safe(r.atime) &&
    safe(r.ctime) &&
    safeOrNull(r.node) &&
    safeOrNull(r.parent) &&
    safeOrNull(r.fhInfo)
  )) {
    const { size, mode, uid, gid, mtime, atime, ctime, node, parent, fhInfo } = r;
    const bad = Object.entries({ size, mode, uid, gid, mtime, atime, ctime, node, parent, fhInfo }).find(
      ([, v]) => v !== null && !safe(v),
    );
    throw new CatalogError(`${r.path}: ${bad?.[0]} ${bad?.[1]} is not a safe integer`);
  }
  if (pathOf(r.dir, r.name) !== r.path) {
    throw new CatalogError(`file row: path '${r.path}' is not dir '${r.dir}' + name '${r.name}'`);
  }
  if (!printed(r.dir) || !printed(r.name)) {
    // A raw name here is a bug of the caller: history ingest stores escapeName(path).
    throw new CatalogError(
      `file row: '${escapeName(r.path)}' is not in the printed form (docs/names.md): names are stored escaped`,
    );
  }
  if (r.name.length > MAX_NAME_BYTES / 3 && Buffer.byteLength(r.name, 'utf8') > MAX_NAME_BYTES) {
    throw new CatalogError(
      `file row: the name of '${r.path.slice(0, 200)}...' is ${Buffer.byteLength(r.name, 'utf8')} bytes printed, over the catalog's ${MAX_NAME_BYTES}`,
    );
  }
}

// What the printed form never holds: control characters (escapeName writes
// them as \xHH) and lone surrogates (escaped bytes). Valid surrogate pairs
// (characters beyond the BMP) are fine.
// eslint-disable-next-line no-control-regex
const CONTROL = /[\x00-\x1f\x7f-\x9f]/;

/** Whether `s` can be a printed form: well-formed text without control characters. */
export function printed(s: string): boolean {
  return isUtf8Name(s) && !CONTROL.test(s);
}

/** The last row of each (dir, name): a server may send an entry twice, and the later one wins. */
export function lastOfEach(rows: readonly FileRow[]): readonly FileRow[] {
  const last = new Map<string, number>();
  // NUL cannot occur in a file name, so the key is unambiguous.
  rows.forEach((r, i) => last.set(`${r.dir}\0${r.name}`, i));
  return last.size === rows.length ? rows : rows.filter((r, i) => last.get(`${r.dir}\0${r.name}`) === i);
}

/** A `files` row as both stores return it. */
export interface FileDbRow {
  dir: string;
  name: string;
  type: FileType;
  size: number;
  mode: number;
  uid: number;
  gid: number;
  mtime: number;
  atime: number;
  ctime: number;
  node: number | null;
  parent: number | null;
  fh_info: number | null;
}

export const FILE_COLUMNS =
  'dir, name, type, size, mode, uid, gid, mtime, atime, ctime, node, parent, fh_info';

export function fileRow(r: FileDbRow): FileRow {
  return {
    path: pathOf(r.dir, r.name),
    dir: r.dir,
    name: r.name,
    type: r.type,
    size: r.size,
    mode: r.mode,
    uid: r.uid,
    gid: r.gid,
    mtime: r.mtime,
    atime: r.atime,
    ctime: r.ctime,
    node: r.node,
    parent: r.parent,
    fhInfo: r.fh_info,
  };
}

export interface BackupDbRow {
  id: number;
  server: string;
  path: string;
  tape_server: string;
  butype: string;
  level: number;
  history_model: BackupRecord['historyModel'];
  record_size: number;
  env: string;
  started_at: number;
  finished_at: number | null;
  status: BackupStatus;
  halt_reason: string | null;
  bytes: number;
  files: number;
  result_env: string;
  server_id: string;
  tape_server_id: string;
  pool: string;
  forgotten_at: number | null;
  dma_host: string;
  dma_pid: number;
  heartbeat_at: number | null;
}

export const BACKUP_COLUMNS =
  'id, server, path, tape_server, butype, level, history_model, record_size, env, started_at, finished_at, status, halt_reason, bytes, files, result_env, server_id, tape_server_id, pool, forgotten_at, dma_host, dma_pid, heartbeat_at';

export interface TapeDbRow {
  backup_id: number;
  seq: number;
  device: string;
  barcode: string | null;
  tape_file: number;
  stream_offset: number;
  length: number;
}

export const TAPE_COLUMNS = 'backup_id, seq, device, barcode, tape_file, stream_offset, length';

function tapeSegment(t: TapeDbRow): TapeSegment {
  return {
    seq: t.seq,
    device: t.device,
    barcode: t.barcode,
    tapeFile: t.tape_file,
    streamOffset: t.stream_offset,
    length: t.length,
  };
}

/** Backups with their tapes (rows of any backups, in seq order), in the order of `backups`. */
export function backupRecords(backups: readonly BackupDbRow[], tapes: readonly TapeDbRow[]): BackupRecord[] {
  const byBackup = new Map<number, TapeSegment[]>();
  for (const t of tapes) {
    let list = byBackup.get(t.backup_id);
    if (!list) byBackup.set(t.backup_id, (list = []));
    list.push(tapeSegment(t));
  }
  return backups.map((b) => ({
    id: b.id,
    server: b.server,
    path: b.path,
    tapeServer: b.tape_server,
    butype: b.butype,
    level: b.level,
    historyModel: b.history_model,
    recordSize: b.record_size,
    env: JSON.parse(b.env) as Record<string, string>,
    startedAt: b.started_at,
    status: b.status,
    finishedAt: b.finished_at,
    haltReason: b.halt_reason,
    bytes: b.bytes,
    files: b.files,
    resultEnv: JSON.parse(b.result_env) as Record<string, string>,
    serverId: b.server_id,
    tapeServerId: b.tape_server_id,
    pool: b.pool,
    forgottenAt: b.forgotten_at,
    dmaHost: b.dma_host,
    dmaPid: b.dma_pid,
    heartbeatAt: b.heartbeat_at,
    tapes: byBackup.get(b.id) ?? [],
  }));
}

/** find's limit: 1000 unless given; 0 means none (every hit). */
export function findLimit(limit: number | undefined): number {
  const n = limit ?? 1000;
  if (!Number.isSafeInteger(n) || n < 0) throw new CatalogError(`find: limit ${n} is not a count`);
  // Both dialects take any 64-bit LIMIT; this one is beyond any table's rows.
  return n === 0 ? Number.MAX_SAFE_INTEGER : n;
}

/** A `tapes` row as both stores return it. */
export interface TapeRecordDbRow {
  tape_server: string;
  barcode: string;
  pool: string;
  state: TapeRecord['state'];
  updated_at: number;
}

export const TAPE_RECORD_COLUMNS = 'tape_server, barcode, pool, state, updated_at';

export function tapeRecord(r: TapeRecordDbRow): TapeRecord {
  return {
    tapeServer: r.tape_server,
    barcode: r.barcode,
    pool: r.pool,
    state: r.state,
    updatedAt: r.updated_at,
  };
}

// ---- Directory listings (schema 3, point-in-time) ------------------------------
//
// A listing is stored as one text per directory, its names joined by '/',
// which no name holds: one row per directory rather than one per name keeps
// an incremental's listings far smaller than its full backup's rows.

/** A listing's names as stored. */
export function listingText(names: readonly string[]): string {
  return names.join('/');
}

/** The names of a stored listing. */
export function listingNames(text: string): string[] {
  return text === '' ? [] : text.split('/');
}

/** Refuses a listing the stores could not give back as it came (as checkRow does for rows). */
export function checkListing(l: DirListing): void {
  if (!l.dir.startsWith('/') || normalizeDir(l.dir) !== l.dir || !printed(l.dir)) {
    throw new CatalogError(
      `directory listing: '${escapeName(l.dir)}' is not a directory path in the printed form`,
    );
  }
  for (const n of l.names) {
    if (n === '' || n.includes('/') || !printed(n)) {
      throw new CatalogError(
        `directory listing of '${l.dir}': '${escapeName(n)}' is not a name in the printed form (docs/names.md)`,
      );
    }
  }
}
