// The catalog in one SQLite file: the default, for a DMA on one machine.
// better-sqlite3 is synchronous; each call here runs to its end before it
// returns its promise. That blocks the event loop for one batch of rows (a
// few milliseconds for 2,000), cheaper than a thread hop per batch.

import fs from 'node:fs';
import { dirname, resolve } from 'node:path';
import Database from 'better-sqlite3';
import { escapeName } from '../util/byte-name.js';
import { CatalogError, reason, wrap } from './errors.js';
import { parsePattern, toSqliteGlob } from './pattern.js';
import {
  BACKUP_COLUMNS,
  FILE_COLUMNS,
  PATH_SQL,
  SCHEMA_VERSION,
  TAPE_COLUMNS,
  TAPE_RECORD_COLUMNS,
  V3_COLUMNS,
  backupRecords,
  checkListing,
  checkRow,
  fileRow,
  findLimit,
  listingNames,
  listingText,
  normalizeDir,
  splitPath,
  tapeRecord,
  v3ColumnsSql,
} from './schema.js';
import type { BackupDbRow, FileDbRow, TapeDbRow, TapeRecordDbRow } from './schema.js';
import type {
  BackupRecord,
  BackupResult,
  Catalog,
  DirListing,
  FileRow,
  FindOptions,
  FoundFile,
  KnownServer,
  NewBackup,
  TapeRecord,
  TapeSegment,
} from './types.js';

// Schema 3's new tables (also made by the migration from 2).
const V3_TABLES = `
CREATE TABLE IF NOT EXISTS servers (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  address TEXT NOT NULL,
  seen_at INTEGER NOT NULL
) STRICT;
-- The tapes of the pools, by the tape server's identity and barcode (docs/dma.md, "Pools and tapes").
CREATE TABLE IF NOT EXISTS tapes (
  tape_server TEXT NOT NULL,
  barcode TEXT NOT NULL,
  pool TEXT NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('appendable', 'full', 'recyclable')),
  updated_at INTEGER NOT NULL,
  PRIMARY KEY (tape_server, barcode)
) WITHOUT ROWID, STRICT;
-- Point-in-time: each directory's full listing in a dir/node incremental, its
-- names joined by '/' (schema.ts listingText; docs/dma.md, "Incremental chains").
CREATE TABLE IF NOT EXISTS dir_listings (
  backup_id INTEGER NOT NULL,
  dir TEXT NOT NULL,
  names TEXT NOT NULL,
  PRIMARY KEY (backup_id, dir)
) WITHOUT ROWID, STRICT;
`;

// STRICT: a value of the wrong type is an error, not silently stored as text
// or a float. WITHOUT ROWID: files are kept in (backup, dir, name) order, so
// a directory's entries are one range of the table, read in name order.
// AUTOINCREMENT: the id of a deleted backup is never given again, so an id
// in a log or a script keeps naming one backup. files has no foreign key: a
// check per row cost ~4% of the ingest rate (bench/catalog.ts); addFiles
// checks the backup once per batch and deleteBackup deletes its rows.
const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS backups (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  server TEXT NOT NULL,
  path TEXT NOT NULL,
  tape_server TEXT NOT NULL,
  butype TEXT NOT NULL,
  level INTEGER NOT NULL,
  history_model TEXT NOT NULL,
  record_size INTEGER NOT NULL,
  env TEXT NOT NULL,
  started_at INTEGER NOT NULL,
  finished_at INTEGER,
  status TEXT NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'done', 'failed')),
  halt_reason TEXT,
  bytes INTEGER NOT NULL DEFAULT 0,
  files INTEGER NOT NULL DEFAULT 0,
  result_env TEXT NOT NULL DEFAULT '{}'${v3ColumnsSql('backups', 'sqlite')}
) STRICT;
CREATE TABLE IF NOT EXISTS backup_tapes (
  backup_id INTEGER NOT NULL REFERENCES backups (id) ON DELETE CASCADE,
  seq INTEGER NOT NULL,
  device TEXT NOT NULL,
  barcode TEXT,
  tape_file INTEGER NOT NULL,
  stream_offset INTEGER NOT NULL,
  length INTEGER NOT NULL,
  PRIMARY KEY (backup_id, seq)
) WITHOUT ROWID, STRICT;
CREATE TABLE IF NOT EXISTS files (
  backup_id INTEGER NOT NULL,
  dir TEXT NOT NULL,
  name TEXT NOT NULL,
  type TEXT NOT NULL,
  size INTEGER NOT NULL,
  mode INTEGER NOT NULL,
  uid INTEGER NOT NULL,
  gid INTEGER NOT NULL,
  mtime INTEGER NOT NULL,
  atime INTEGER NOT NULL,
  ctime INTEGER NOT NULL,
  node INTEGER,
  parent INTEGER,
  fh_info INTEGER,
  PRIMARY KEY (backup_id, dir, name)
) WITHOUT ROWID, STRICT;
${V3_TABLES}`;

type Args = unknown[];

export class SqliteCatalog implements Catalog {
  readonly location: string;
  private readonly db: Database.Database;
  private readonly addRows: (backupId: number, rows: readonly FileRow[]) => void;

  /** Opens (creating it and its folder, 0700, if need be) the catalog file `file`. */
  constructor(file: string) {
    const path = resolve(file);
    this.location = `sqlite:${path}`;
    try {
      fs.mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
      // The catalog names every file of every backup: only its owner reads it.
      // SQLite gives its -wal and -shm files the same mode.
      fs.closeSync(fs.openSync(path, 'a', 0o600));
      this.db = new Database(path);
    } catch (e) {
      throw new CatalogError(`cannot open the catalog ${this.location}: ${reason(e)}`, { cause: e });
    }
    try {
      // Only a new file takes it (before WAL is on). 16 KiB pages ingested
      // ~10% faster than 4 KiB ones in bench/catalog.ts: fewer splits and a
      // shallower tree for the long (backup, dir, name) keys.
      this.db.pragma('page_size = 16384');
      this.db.pragma('journal_mode = WAL');
      // In WAL mode NORMAL loses at most the last transactions on power loss, never consistency.
      this.db.pragma('synchronous = NORMAL');
      this.db.pragma('foreign_keys = ON');
      this.db.pragma('busy_timeout = 10000');
      this.migrate();
    } catch (e) {
      this.db.close();
      throw new CatalogError(`cannot open the catalog ${this.location}: ${reason(e)}`, { cause: e });
    }
    this.addRows = this.prepareAddRows();
  }

  private migrate(): void {
    // IMMEDIATE: two processes opening a new file at once do not both create it.
    this.db
      .transaction(() => {
        this.db.exec(SCHEMA);
        this.db
          .prepare(`INSERT INTO meta (key, value) VALUES ('schema_version', ?) ON CONFLICT DO NOTHING`)
          .run(String(SCHEMA_VERSION));
        const { value } = this.db.prepare(`SELECT value FROM meta WHERE key = 'schema_version'`).get() as {
          value: string;
        };
        if (Number(value) > SCHEMA_VERSION) {
          throw new CatalogError(
            `the catalog's schema version is ${value}, newer than this program's (${SCHEMA_VERSION}): upgrade ndmp`,
          );
        }
        // In this transaction: a migration that fails leaves the catalog as it was.
        if (Number(value) < 2) this.migrateFrom1();
        if (Number(value) < 3) this.migrateFrom2();
        if (Number(value) < SCHEMA_VERSION) {
          this.db
            .prepare(`UPDATE meta SET value = ? WHERE key = 'schema_version'`)
            .run(String(SCHEMA_VERSION));
        }
      })
      .immediate();
  }

  /**
   * Schema 1 stored names as they came (UTF-8 text; SQLite keeps any length
   * in its key, so the tables stay as they are). Schema 2 stores them
   * printed: the rows whose dir or name escapeName changes (a backslash or a
   * control character) move out and come back escaped. Moving them rather
   * than updating in place: an update row by row could meet a not yet
   * escaped row that holds its new key.
   */
  private migrateFrom1(): void {
    this.db.function('ndmp_escape_name', { deterministic: true }, (s: unknown) => escapeName(s as string));
    const changed = `ndmp_escape_name(dir) <> dir OR ndmp_escape_name(name) <> name`;
    const rest = FILE_COLUMNS.replace(/^dir, name, /, '');
    this.db.exec(`
      CREATE TEMP TABLE ndmp_moved AS SELECT backup_id, ${FILE_COLUMNS} FROM files WHERE ${changed};
      DELETE FROM files WHERE ${changed};
      INSERT INTO files (backup_id, ${FILE_COLUMNS})
        SELECT backup_id, ndmp_escape_name(dir), ndmp_escape_name(name), ${rest} FROM ndmp_moved;
      DROP TABLE ndmp_moved;
    `);
  }

  /** Schema 3: the columns V3_COLUMNS names (with their defaults) and the new tables. */
  private migrateFrom2(): void {
    const have = (table: string) =>
      new Set(
        (this.db.prepare(`PRAGMA table_info(${table})`).all() as { name: string }[]).map((c) => c.name),
      );
    for (const c of V3_COLUMNS) {
      // Idempotent, so a half-done migration by an older build cannot stop this one.
      if (!have(c.table).has(c.column))
        this.db.exec(`ALTER TABLE ${c.table} ADD COLUMN ${c.column} ${c.sqlite}`);
    }
    this.db.exec(V3_TABLES);
  }

  private prepareAddRows(): (backupId: number, rows: readonly FileRow[]) => void {
    // Named parameters: both statements take the same object, a FileRow plus its backup.
    const insert = this.db.prepare(
      `INSERT INTO files (backup_id, ${FILE_COLUMNS})
       VALUES (@backupId, @dir, @name, @type, @size, @mode, @uid, @gid, @mtime, @atime, @ctime, @node, @parent, @fhInfo)
       ON CONFLICT DO NOTHING`,
    );
    const update = this.db.prepare(
      `UPDATE files SET type = @type, size = @size, mode = @mode, uid = @uid, gid = @gid, mtime = @mtime,
         atime = @atime, ctime = @ctime, node = @node, parent = @parent, fh_info = @fhInfo
       WHERE backup_id = @backupId AND dir = @dir AND name = @name`,
    );
    const count = this.db.prepare(`UPDATE backups SET files = files + ? WHERE id = ?`);
    return this.db.transaction((backupId: number, rows: readonly FileRow[]) => {
      // Insert-or-update in two steps rather than an upsert, so the count of
      // new rows (for backups.files) is known without counting the table.
      let added = 0;
      for (const r of rows) {
        const params = { ...r, backupId };
        if (insert.run(params).changes === 1) added++;
        else update.run(params);
      }
      if (count.run(added, backupId).changes === 0) throw new CatalogError(`no backup ${backupId}`);
    });
  }

  private run<T>(what: string, f: () => T): Promise<T> {
    try {
      return Promise.resolve(f());
    } catch (e) {
      return Promise.reject(wrap(`catalog ${what}`, e));
    }
  }

  beginBackup(b: NewBackup): Promise<number> {
    return this.run('beginBackup', () => {
      const r = this.db
        .prepare(
          `INSERT INTO backups (server, path, tape_server, butype, level, history_model, record_size, env, started_at,
             server_id, tape_server_id, pool, dma_host, dma_pid, heartbeat_at)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
        )
        .run(
          b.server,
          b.path,
          b.tapeServer,
          b.butype,
          b.level,
          b.historyModel,
          b.recordSize,
          JSON.stringify(b.env),
          b.startedAt,
          b.serverId ?? '',
          b.tapeServerId ?? '',
          b.pool ?? 'default',
          b.dmaHost ?? '',
          b.dmaPid ?? 0,
          b.startedAt,
        );
      return Number(r.lastInsertRowid);
    });
  }

  addFiles(backupId: number, rows: readonly FileRow[]): Promise<void> {
    return this.run('addFiles', () => {
      if (rows.length === 0) return;
      rows.forEach(checkRow);
      this.addRows(backupId, rows);
    });
  }

  addTapeSegment(backupId: number, seg: TapeSegment): Promise<void> {
    return this.run('addTapeSegment', () => {
      // A segment given again (its length known only later) replaces the first.
      this.db
        .prepare(
          `INSERT INTO backup_tapes (${TAPE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)
           ON CONFLICT (backup_id, seq) DO UPDATE SET device = excluded.device, barcode = excluded.barcode,
             tape_file = excluded.tape_file, stream_offset = excluded.stream_offset, length = excluded.length`,
        )
        .run(backupId, seg.seq, seg.device, seg.barcode, seg.tapeFile, seg.streamOffset, seg.length);
    });
  }

  finishBackup(backupId: number, r: BackupResult): Promise<void> {
    return this.run('finishBackup', () => {
      const u = this.db
        .prepare(
          `UPDATE backups SET status = ?, halt_reason = ?, bytes = ?, result_env = ?, finished_at = ? WHERE id = ?`,
        )
        .run(r.status, r.haltReason, r.bytes, JSON.stringify(r.resultEnv), r.finishedAt, backupId);
      if (u.changes === 0) throw new CatalogError(`no backup ${backupId}`);
    });
  }

  private backups(where: string, args: Args): BackupRecord[] {
    const rows = this.db
      .prepare(`SELECT ${BACKUP_COLUMNS} FROM backups ${where} ORDER BY id DESC`)
      .all(args) as BackupDbRow[];
    const tapes = this.db
      .prepare(
        `SELECT ${TAPE_COLUMNS} FROM backup_tapes WHERE backup_id IN (SELECT id FROM backups ${where}) ORDER BY backup_id, seq`,
      )
      .all(args) as TapeDbRow[];
    return backupRecords(rows, tapes);
  }

  listBackups(): Promise<BackupRecord[]> {
    return this.run('listBackups', () => this.db.transaction(() => this.backups('', []))());
  }

  getBackup(id: number): Promise<BackupRecord | null> {
    return this.run(
      'getBackup',
      () => this.db.transaction(() => this.backups('WHERE id = ?', [id]))()[0] ?? null,
    );
  }

  listDir(backupId: number, dir: string): Promise<FileRow[]> {
    return this.run('listDir', () =>
      (
        this.db
          .prepare(`SELECT ${FILE_COLUMNS} FROM files WHERE backup_id = ? AND dir = ? ORDER BY name`)
          .all(backupId, normalizeDir(dir)) as FileDbRow[]
      ).map(fileRow),
    );
  }

  lookup(backupId: number, paths: readonly string[]): Promise<FileRow[]> {
    return this.run('lookup', () => {
      const one = this.db.prepare(
        `SELECT ${FILE_COLUMNS} FROM files WHERE backup_id = ? AND dir = ? AND name = ?`,
      );
      const out: FileRow[] = [];
      for (const path of new Set(paths)) {
        const { dir, name } = splitPath(path);
        const r = one.get(backupId, dir, name) as FileDbRow | undefined;
        if (r) out.push(fileRow(r));
      }
      return out;
    });
  }

  streamOffsets(backupId: number): Promise<Float64Array> {
    return this.run('streamOffsets', () => {
      const st = this.db
        .prepare(`SELECT fh_info FROM files WHERE backup_id = ? AND fh_info IS NOT NULL`)
        .pluck();
      // Filled as rows come (8 bytes a row), sorted in place: no array of boxed numbers in between.
      const { files } = (this.db.prepare(`SELECT files FROM backups WHERE id = ?`).get(backupId) as
        { files: number } | undefined) ?? { files: 0 };
      let out = new Float64Array(files);
      let n = 0;
      for (const v of st.iterate(backupId) as IterableIterator<number>) {
        if (n === out.length) {
          const grown = new Float64Array(Math.max(16, out.length * 2));
          grown.set(out);
          out = grown;
        }
        out[n++] = v;
      }
      return out.subarray(0, n).sort();
    });
  }

  find(pattern: string, opts: FindOptions = {}): Promise<FoundFile[]> {
    return this.run('find', () => {
      const p = parsePattern(pattern);
      const limit = findLimit(opts.limit);
      if (p.never || limit === 0) return [];
      const args: Args = [toSqliteGlob(p)];
      let where = `${p.path ? PATH_SQL : 'name'} GLOB ?`;
      if (opts.backupId !== undefined) {
        where += ' AND backup_id = ?';
        args.push(opts.backupId);
      }
      args.push(limit);
      const rows = this.db
        .prepare(
          `SELECT backup_id, ${FILE_COLUMNS} FROM files WHERE ${where} ORDER BY backup_id DESC, ${PATH_SQL} LIMIT ?`,
        )
        .all(args) as Array<FileDbRow & { backup_id: number }>;
      return rows.map((r) => ({ backupId: r.backup_id, ...fileRow(r) }));
    });
  }

  tapesInUse(): Promise<Set<string>> {
    return this.run('tapesInUse', () => {
      const rows = this.db.prepare(`SELECT DISTINCT device, barcode FROM backup_tapes`).all() as Array<{
        device: string;
        barcode: string | null;
      }>;
      const out = new Set<string>();
      for (const r of rows) {
        out.add(r.device);
        if (r.barcode !== null) out.add(r.barcode);
      }
      return out;
    });
  }

  deleteBackup(id: number): Promise<void> {
    return this.run('deleteBackup', () => {
      // backup_tapes goes by its foreign key; files has none.
      this.db.transaction(() => {
        this.db.prepare(`DELETE FROM backups WHERE id = ?`).run(id);
        this.db.prepare(`DELETE FROM files WHERE backup_id = ?`).run(id);
        this.db.prepare(`DELETE FROM dir_listings WHERE backup_id = ?`).run(id);
      })();
    });
  }

  noteServer(k: KnownServer): Promise<void> {
    return this.run('noteServer', () => {
      this.db
        .prepare(
          `INSERT INTO servers (id, name, address, seen_at) VALUES (?, ?, ?, ?)
           ON CONFLICT (id) DO UPDATE SET name = excluded.name, address = excluded.address, seen_at = excluded.seen_at`,
        )
        .run(k.id, k.name, k.address, k.seenAt);
    });
  }

  listServers(): Promise<KnownServer[]> {
    return this.run('listServers', () =>
      (
        this.db.prepare(`SELECT id, name, address, seen_at FROM servers ORDER BY seen_at DESC, id`).all() as {
          id: string;
          name: string;
          address: string;
          seen_at: number;
        }[]
      ).map((r) => ({ id: r.id, name: r.name, address: r.address, seenAt: r.seen_at })),
    );
  }

  listTapes(): Promise<TapeRecord[]> {
    return this.run('listTapes', () =>
      (
        this.db
          .prepare(`SELECT ${TAPE_RECORD_COLUMNS} FROM tapes ORDER BY tape_server, barcode`)
          .all() as TapeRecordDbRow[]
      ).map(tapeRecord),
    );
  }

  putTape(t: TapeRecord): Promise<void> {
    return this.run('putTape', () => {
      this.db
        .prepare(
          `INSERT INTO tapes (${TAPE_RECORD_COLUMNS}) VALUES (?, ?, ?, ?, ?)
           ON CONFLICT (tape_server, barcode) DO UPDATE SET pool = excluded.pool, state = excluded.state,
             updated_at = excluded.updated_at`,
        )
        .run(t.tapeServer, t.barcode, t.pool, t.state, t.updatedAt);
    });
  }

  removeTapeSegment(backupId: number, seq: number): Promise<void> {
    return this.run('removeTapeSegment', () => {
      this.db.prepare(`DELETE FROM backup_tapes WHERE backup_id = ? AND seq = ?`).run(backupId, seq);
    });
  }

  heartbeat(backupId: number, at: number, bytes: number): Promise<void> {
    return this.run('heartbeat', () => {
      this.db
        .prepare(`UPDATE backups SET heartbeat_at = ?, bytes = ? WHERE id = ? AND status = 'running'`)
        .run(at, bytes, backupId);
    });
  }

  forgetBackups(ids: readonly number[], at: number): Promise<void> {
    return this.run('forgetBackups', () => {
      const one = this.db.prepare(
        `UPDATE backups SET forgotten_at = ? WHERE id = ? AND forgotten_at IS NULL`,
      );
      this.db.transaction(() => ids.forEach((id) => one.run(at, id)))();
    });
  }

  failAbandoned(backupId: number, reason: string, at: number): Promise<boolean> {
    return this.run(
      'failAbandoned',
      () =>
        this.db
          .prepare(
            `UPDATE backups SET status = 'failed', halt_reason = ?, finished_at = ? WHERE id = ? AND status = 'running'`,
          )
          .run(reason, at, backupId).changes === 1,
    );
  }

  // ---- Point-in-time (schema 3) ----

  addListings(backupId: number, listings: readonly DirListing[]): Promise<void> {
    return this.run('addListings', () => {
      if (listings.length === 0) return;
      listings.forEach(checkListing);
      const exists = this.db.prepare(`SELECT 1 FROM backups WHERE id = ?`);
      // A directory listed again appends its names (a server may list one directory in pieces).
      const put = this.db.prepare(
        `INSERT INTO dir_listings (backup_id, dir, names) VALUES (?, ?, ?)
         ON CONFLICT (backup_id, dir) DO UPDATE SET names = CASE
           WHEN names = '' THEN excluded.names WHEN excluded.names = '' THEN names
           ELSE names || '/' || excluded.names END`,
      );
      this.db.transaction(() => {
        if (!exists.get(backupId)) throw new CatalogError(`no backup ${backupId}`);
        for (const l of listings) put.run(backupId, l.dir, listingText(l.names));
      })();
    });
  }

  getListing(backupId: number, dir: string): Promise<string[] | null> {
    return this.run('getListing', () => {
      const r = this.db
        .prepare(`SELECT names FROM dir_listings WHERE backup_id = ? AND dir = ?`)
        .get(backupId, normalizeDir(dir)) as { names: string } | undefined;
      return r ? listingNames(r.names) : null;
    });
  }

  hasListings(backupId: number): Promise<boolean> {
    return this.run(
      'hasListings',
      () =>
        this.db.prepare(`SELECT 1 FROM dir_listings WHERE backup_id = ? LIMIT 1`).get(backupId) !== undefined,
    );
  }

  close(): Promise<void> {
    return this.run('close', () => {
      if (this.db.open) this.db.close();
    });
  }
}
