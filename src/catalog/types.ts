// The catalog: what the DMA remembers of its backups. One row per file per
// backup (from the file history as it streams), the backups themselves with
// their environment, and the tape segments each backup's stream occupies.
// Two stores implement it (SQLite, PostgreSQL); the DMA sees only this.

/** What a history entry names, from NDMP's ndmp_file_type. */
export type FileType = 'dir' | 'file' | 'symlink' | 'fifo' | 'chr' | 'blk' | 'sock' | 'reg' | 'other';

export interface FileRow {
  /** Path inside the backup, starting with '/': "/a/b/c". The root itself is "/". */
  path: string;
  /** Parent directory's path ("/a/b"); "" for the root itself. */
  dir: string;
  /** Last component ("c"); "" for the root. */
  name: string;
  type: FileType;
  size: number;
  /** Permission bits (fattr), e.g. 0o644. */
  mode: number;
  uid: number;
  gid: number;
  /** Seconds since the epoch (NDMP carries whole seconds). */
  mtime: number;
  atime: number;
  ctime: number;
  /** The server's node number (inode), null when the server gave none. */
  node: number | null;
  /** The parent directory's node, when known. */
  parent: number | null;
  /** Byte offset of the entry in the backup stream (for DAR); null when unknown. */
  fhInfo: number | null;
}

/** A run of the backup stream on one tape: stream bytes [offset, offset+length) are tape file `tapeFile`. */
export interface TapeSegment {
  /** 0, 1, 2... in stream order. */
  seq: number;
  /** What TAPE_OPEN was given (a drive, a tape image name like "tapes/NDM002", a path). */
  device: string;
  /** The library's barcode, when the tape has one. */
  barcode: string | null;
  /** Tape file number (filemarks before it) on that tape. */
  tapeFile: number;
  streamOffset: number;
  length: number;
}

export type BackupStatus = 'running' | 'done' | 'failed';

export interface NewBackup {
  /** The data server, HOST:PORT, where it was reached for this backup. */
  server: string;
  /**
   * The data server's identity: CONFIG_GET_HOST_INFO's host id ('' when
   * unknown). A server that moves keeps it; the catalog's servers table
   * knows where it was reached last (docs/dma.md, "Servers").
   */
  serverId?: string;
  /** The tape server's identity, as serverId. */
  tapeServerId?: string;
  /** FILESYSTEM: the backed-up path on that server. */
  path: string;
  /** The tape server (HOST:PORT), the same as `server` for LOCAL backups. */
  tapeServer: string;
  butype: string;
  level: number;
  /** 'path' (FH_ADD_FILE), 'dirnode' (FH_ADD_DIR + FH_ADD_NODE), or 'none'. */
  historyModel: 'path' | 'dirnode' | 'none';
  recordSize: number;
  /** The environment the backup was started with. */
  env: Record<string, string>;
  /** ms since the epoch. */
  startedAt: number;
  /** The pool its tapes belong to ('default' when not given). */
  pool?: string;
  /** The DMA running it: its host name and pid, by which a backup it left running is found. */
  dmaHost?: string;
  dmaPid?: number;
}

export interface BackupRecord extends NewBackup {
  id: number;
  serverId: string;
  tapeServerId: string;
  status: BackupStatus;
  /** ms since the epoch, null while running. */
  finishedAt: number | null;
  /** Why it ended, as NDMP said it ("SUCCESSFUL", "ABORTED", "CONNECT_ERROR"...), or our own reason. */
  haltReason: string | null;
  /** Stream bytes (the mover's bytes_moved). */
  bytes: number;
  /** Catalog rows. */
  files: number;
  /** DATA_GET_ENV after the backup (DIRECT, DUMP_DATE...). Empty until finished. */
  resultEnv: Record<string, string>;
  tapes: TapeSegment[];
  pool: string;
  /** When `ndmp forget` forgot it (ms since the epoch); null while it is kept. */
  forgottenAt: number | null;
  /** The DMA that ran it ('' and 0 for backups from before schema 3). */
  dmaHost: string;
  dmaPid: number;
  /** The running job's last heartbeat (ms since the epoch); null for backups from before schema 3. */
  heartbeatAt: number | null;
}

export interface BackupResult {
  status: Exclude<BackupStatus, 'running'>;
  haltReason: string;
  bytes: number;
  resultEnv: Record<string, string>;
  finishedAt: number;
}

/** A server the catalog has met: its identity, its host name, and where it answered last. */
export interface KnownServer {
  /** CONFIG_GET_HOST_INFO's host id. */
  id: string;
  /** Its host name, as it gave it. */
  name: string;
  /** HOST:PORT it answered at. */
  address: string;
  /** ms since the epoch. */
  seenAt: number;
}

/** What the catalog records of a tape of a pool (docs/dma.md, "Pools and tapes"). */
export type TapePoolState = 'appendable' | 'full' | 'recyclable';

export interface TapeRecord {
  /** The tape server's identity: its host id (CONFIG_GET_HOST_INFO), or its HOST:PORT when it gives none. */
  tapeServer: string;
  /** The tape's barcode (or, without one, the device it was opened as). */
  barcode: string;
  pool: string;
  state: TapePoolState;
  /** ms since the epoch. */
  updatedAt: number;
}

export interface FoundFile extends FileRow {
  backupId: number;
}

export interface FindOptions {
  backupId?: number;
  /** At most this many rows (default 1000; 0: all). */
  limit?: number;
}

/**
 * The names one directory held at an incremental backup, as its file history
 * listed them (FH_ADD_DIR), whether or not they are in that backup's stream
 * (docs/dma.md, "Incremental chains: point-in-time").
 */
export interface DirListing {
  /** The directory's path inside the backup, printed form ("/" for the root). */
  dir: string;
  /** Its entries' names, printed form, in the order the history gave them. */
  names: string[];
}

export interface Catalog {
  /** Where it lives, for messages ("sqlite:/path" or "postgres://host/db", no password). */
  readonly location: string;
  beginBackup(b: NewBackup): Promise<number>;
  /** Adds rows in one transaction. Rows of one backup may come in many calls. */
  addFiles(backupId: number, rows: readonly FileRow[]): Promise<void>;
  addTapeSegment(backupId: number, seg: TapeSegment): Promise<void>;
  finishBackup(backupId: number, r: BackupResult): Promise<void>;
  /** Newest first. */
  listBackups(): Promise<BackupRecord[]>;
  getBackup(id: number): Promise<BackupRecord | null>;
  /** The entries directly inside `dir` ("/" for the top), sorted by name. */
  listDir(backupId: number, dir: string): Promise<FileRow[]>;
  /** The row of each path that exists in that backup. */
  lookup(backupId: number, paths: readonly string[]): Promise<FileRow[]>;
  /**
   * Shell pattern (*, ?, [...]) matched against the name, or against the
   * whole path when the pattern holds a '/'. Newest backup first, then path.
   */
  find(pattern: string, opts?: FindOptions): Promise<FoundFile[]>;
  /** Barcodes and devices any backup in the catalog has written. */
  tapesInUse(): Promise<Set<string>>;
  /** Removes a backup and its rows. */
  deleteBackup(id: number): Promise<void>;
  /**
   * The stream offsets (fh_info) of a backup's entries that have one,
   * ascending: how far a restore reading the stream has got, in files.
   */
  streamOffsets(backupId: number): Promise<Float64Array>;
  /** Records that the server `id` (host id) named `name` answered at `address` (HOST:PORT) at `seenAt` (ms). */
  noteServer(s: KnownServer): Promise<void>;
  /** The servers the catalog has met, most recently seen first. */
  listServers(): Promise<KnownServer[]>;

  // ---- Pools, retention, a DMA that died (issue 16, items 1 and 2; docs/dma.md, "Pools and
  // tapes", "Retention: forget and prune", "A DMA that died"). ----
  /** Every tape a pool holds, by tape server and barcode. */
  listTapes(): Promise<TapeRecord[]>;
  /** Records a tape's pool and state (one row per tape server and barcode). */
  putTape(t: TapeRecord): Promise<void>;
  /** Removes a tape part recorded at mount on which nothing was written. */
  removeTapeSegment(backupId: number, seq: number): Promise<void>;
  /** A running backup's sign of life: its heartbeat time and the bytes moved so far. */
  heartbeat(backupId: number, at: number, bytes: number): Promise<void>;
  /** Marks backups forgotten at `at` (ms); `ndmp prune` deletes them later. */
  forgetBackups(ids: readonly number[], at: number): Promise<void>;
  /**
   * Closes a backup still 'running' as failed with `reason`, at `at` (ms),
   * keeping its bytes and tapes. False when it is not running (any more).
   */
  failAbandoned(backupId: number, reason: string, at: number): Promise<boolean>;
  // ---- Point-in-time (schema 3, docs/dma.md "Incremental chains: point-in-time") ----
  // Incremental backups with dir/node history record each directory's full
  // listing, so a view as of one of them knows what was deleted. Written only
  // for incrementals, apart from addFiles, so a full backup's ingest is as before.

  /**
   * Adds directory listings of a backup. A directory listed again (in another
   * call) gets the new names appended to those it has.
   */
  addListings(backupId: number, listings: readonly DirListing[]): Promise<void>;
  /** The listing of `dir` in that backup; null when none was recorded. */
  getListing(backupId: number, dir: string): Promise<string[] | null>;
  /** Whether the backup has any listing (its history listed its directories whole). */
  hasListings(backupId: number): Promise<boolean>;

  close(): Promise<void>;
}
