// File history, as it streams in FH_* posts, into catalog rows. Rows are
// batched into one transaction each; when the catalog falls behind, the
// control connection stops being read, so TCP holds the server's history
// thread back (which spools) instead of this process buffering without bound.
//
// Names arrive as lossless strings (docs/names.md) and are stored in their
// printed form, escapeName(path), converted here and nowhere else: the
// catalog then holds one kind of text in both stores, which their indexes,
// GLOB and regular expressions work on as is, `ndmp ls`/`find` print as is,
// and `ndmp restore` unescapes once to send the exact bytes back. (Converting
// in each store's insert instead would mean two copies of the rule, and rows
// read back in one form but searched in another.)

import { M, FileType as NdmpFileType } from '../wire/index.js';
import type { FhDir, FhFile, FhNode, FileStat } from '../wire/index.js';
import { MAX_NAME_BYTES, splitPath } from '../catalog/schema.js';
import { escapeName } from '../util/byte-name.js';
import type { Catalog, DirListing, FileRow, FileType } from '../catalog/types.js';
import type { NdmpClient } from './client.js';
import { JobWaitError, seconds } from './waits.js';

export interface IngestOptions {
  /** Rows per transaction (default 2,000). */
  batchRows?: number;
  /** Batches written or being written before reading stops (default 4). */
  maxPendingBatches?: number;
  /**
   * Record each directory's listing (FH_ADD_DIR names, in the stream or not):
   * for incrementals, whose unchanged names get no FH_ADD_NODE, so a view as
   * of the backup can tell them from deleted ones (docs/dma.md, "Incremental
   * chains: point-in-time"). Off for full backups: their rows are the listing.
   */
  listings?: boolean;
}

const U64_UNKNOWN = 0xffffffffffffffffn;

function typeOf(ftype: number): FileType {
  switch (ftype) {
    case NdmpFileType.NDMP_FILE_DIR:
      return 'dir';
    case NdmpFileType.NDMP_FILE_REG:
      return 'file';
    case NdmpFileType.NDMP_FILE_SLINK:
      return 'symlink';
    case NdmpFileType.NDMP_FILE_FIFO:
      return 'fifo';
    case NdmpFileType.NDMP_FILE_CSPEC:
      return 'chr';
    case NdmpFileType.NDMP_FILE_BSPEC:
      return 'blk';
    case NdmpFileType.NDMP_FILE_SOCK:
      return 'sock';
    case NdmpFileType.NDMP_FILE_REGISTRY:
      return 'reg';
    default:
      return 'other';
  }
}

/** A u64 the server may leave unknown (all ones) as a number, or null. */
function known(v: bigint): number | null {
  return v === U64_UNKNOWN || v > BigInt(Number.MAX_SAFE_INTEGER) ? null : Number(v);
}

/** "." or "" is the root; anything else gets one leading slash and no trailing one. */
export function normalizeHistoryPath(p: string): string {
  const parts = p.split('/').filter((s) => s !== '' && s !== '.');
  return `/${parts.join('/')}`;
}

/**
 * The catalog's path for a path from the history (a lossless string): its
 * printed form, normalized. escapeName leaves '/' and '.' as they are, so a
 * path's printed form is its printed components joined by '/'.
 */
export function catalogPath(historyPath: string): string {
  return escapeName(normalizeHistoryPath(historyPath));
}

/** Whether the catalog can hold this (printed) name: see MAX_NAME_BYTES. */
function storable(printedName: string): boolean {
  return printedName.length <= MAX_NAME_BYTES / 3 || Buffer.byteLength(printedName, 'utf8') <= MAX_NAME_BYTES;
}

function row(
  path: string,
  st: FileStat | undefined,
  node: bigint,
  fhInfo: bigint,
  parent: number | null,
): FileRow {
  const { dir, name } = splitPath(path);
  return {
    path,
    dir,
    name,
    type: st ? typeOf(st.ftype) : 'other',
    size: st ? (known(st.size) ?? 0) : 0,
    mode: st ? st.fattr & 0o7777 : 0,
    uid: st?.owner ?? 0,
    gid: st?.group ?? 0,
    mtime: st?.mtime ?? 0,
    atime: st?.atime ?? 0,
    ctime: st?.ctime ?? 0,
    node: known(node),
    parent,
    fhInfo: known(fhInfo),
  };
}

function unixName(names: FhFile['names']): string | null {
  for (const n of names) if (n.fsType === 0 && 'unixName' in n) return n.unixName;
  return null;
}

export class HistoryIngest {
  /** Rows the catalog has stored. */
  rows = 0;
  /** History entries received from the server (progress the job can see while the catalog lags). */
  received = 0;
  /** Entries the catalog could not place (a node whose name never came). */
  orphans = 0;
  /** Entries left out because their name is longer than the catalog holds (MAX_NAME_BYTES printed). */
  tooLong = 0;
  model: 'path' | 'dirnode' | 'none' = 'none';

  private batch: FileRow[] = [];
  private readonly batchRows: number;
  private readonly maxPending: number;
  private pending = 0;
  private paused = false;
  private chain: Promise<void> = Promise.resolve();
  private failure: Error | null = null;

  // Path model: directories' nodes, so a row can name its parent's.
  private readonly dirNodes = new Map<string, number>();
  // Dir/node model: each node's names (paths) until its ADD_NODE; every node's first path, kept for directories.
  private root: bigint | null = null;
  private readonly names = new Map<bigint, Array<{ parent: bigint; path: string }>>();
  private readonly dirPaths = new Map<bigint, string>();
  // Listings (opts.listings): the directory being listed (its entries come together, rule 3), and those to write.
  private readonly listings: boolean;
  private listing: (DirListing & { node: bigint }) | null = null;
  private listed: DirListing[] = [];
  private listedNames = 0;

  constructor(
    private readonly client: NdmpClient,
    private readonly catalog: Catalog,
    private readonly backupId: number,
    opts: IngestOptions = {},
  ) {
    this.batchRows = opts.batchRows ?? 2000;
    this.maxPending = opts.maxPendingBatches ?? 4;
    this.listings = opts.listings ?? false;
    client.onPost(M.FH_ADD_FILE, (b) => this.addFiles(b.files));
    client.onPost(M.FH_ADD_DIR, (b) => this.addDirs(b.dirs));
    client.onPost(M.FH_ADD_NODE, (b) => this.addNodes(b.nodes));
  }

  private addFiles(files: FhFile[]): void {
    this.model = 'path';
    this.received += files.length;
    for (const f of files) {
      const name = unixName(f.names);
      if (name === null) {
        this.orphans++;
        continue;
      }
      const path = catalogPath(name);
      const st = f.stats[0];
      const { dir, name: last } = splitPath(path);
      if (!storable(last)) {
        this.tooLong++;
        continue;
      }
      const r = row(path, st, f.node, f.fhInfo, this.dirNodes.get(dir) ?? null);
      if (r.type === 'dir' && r.node !== null) this.dirNodes.set(path, r.node);
      this.push(r);
    }
  }

  private addDirs(dirs: FhDir[]): void {
    this.model = 'dirnode';
    this.received += dirs.length;
    for (const d of dirs) {
      const name = unixName(d.names);
      if (name === null) continue;
      if (this.root === null) {
        // docs/protocol.md §8.3 rule 1: the first entry is the root's ".".
        this.root = d.node;
        this.dirPaths.set(d.node, '/');
      }
      // Every entry of a directory, "." and ".." too, has the directory as its parent (rule 1, 3).
      if (this.listings) this.listingOf(d.parent);
      if (name === '.' || name === '..') continue;
      // A directory's entries come after its own (rule 3), so its path is known by now. Kept for
      // every node, as its type is not known until its ADD_NODE, which may come after its children's.
      const parentPath = this.dirPaths.get(d.parent);
      if (parentPath === undefined) {
        this.orphans++;
        continue;
      }
      const printedName = escapeName(name);
      if (!storable(printedName)) {
        // Its children, if any, become orphans: they have no parent path.
        this.tooLong++;
        continue;
      }
      const path = parentPath === '/' ? `/${printedName}` : `${parentPath}/${printedName}`;
      if (this.listing) {
        this.listing.names.push(printedName);
        // A directory of many names goes in pieces (the store appends them): memory stays bounded.
        if (this.listing.names.length >= this.batchRows) {
          this.listed.push({ dir: this.listing.dir, names: this.listing.names });
          this.listing.names = [];
          this.flushBatch();
        }
      }
      if (!this.dirPaths.has(d.node)) this.dirPaths.set(d.node, path);
      const list = this.names.get(d.node);
      if (list) list.push({ parent: d.parent, path });
      else this.names.set(d.node, [{ parent: d.parent, path }]);
    }
  }

  private addNodes(nodes: FhNode[]): void {
    this.received += nodes.length;
    for (const n of nodes) {
      const st = n.stats[0];
      if (n.node === this.root) {
        this.push(row('/', st, n.node, n.fhInfo, null));
        continue;
      }
      const links = this.names.get(n.node);
      if (!links) {
        this.orphans++;
        continue;
      }
      for (const l of links) this.push(row(l.path, st, n.node, n.fhInfo, known(l.parent)));
      this.names.delete(n.node);
      // A file's path is done with; a directory's stays for its children.
      if (st?.ftype !== NdmpFileType.NDMP_FILE_DIR) this.dirPaths.delete(n.node);
    }
  }

  /**
   * Starts the listing of the directory `node` unless it is the one being
   * listed: a directory's entries come together (docs/protocol.md §8.3 rule 3),
   * so the one before is complete. An empty directory, listed by its "." and
   * "..", gets an empty listing: it was there, with nothing in it.
   */
  private listingOf(node: bigint): void {
    if (this.listing?.node === node) return;
    this.endListing();
    const dir = this.dirPaths.get(node);
    // A directory whose own name never came: its entries are orphans, and so is its listing.
    if (dir !== undefined) this.listing = { node, dir, names: [] };
  }

  private endListing(): void {
    if (!this.listing) return;
    this.listed.push({ dir: this.listing.dir, names: this.listing.names });
    this.listedNames += this.listing.names.length + 1;
    this.listing = null;
    if (this.listedNames >= this.batchRows) this.flushBatch();
  }

  private push(r: FileRow): void {
    this.batch.push(r);
    if (this.batch.length >= this.batchRows) this.flushBatch();
  }

  private flushBatch(): void {
    if (this.batch.length === 0 && this.listed.length === 0) return;
    const rows = this.batch;
    this.batch = [];
    const listed = this.listed;
    this.listed = [];
    this.listedNames = 0;
    this.pending++;
    if (this.pending >= this.maxPending && !this.paused) {
      this.paused = true;
      this.client.pauseReading();
    }
    this.chain = this.chain.then(async () => {
      if (this.failure) return;
      try {
        await this.catalog.addFiles(this.backupId, rows);
        this.rows += rows.length;
        // After the rows, in the same order as they came; only incrementals have any.
        if (listed.length > 0) await this.catalog.addListings(this.backupId, listed);
      } catch (e) {
        this.failure = e as Error;
      } finally {
        this.pending--;
        if (this.paused && this.pending < this.maxPending) {
          this.paused = false;
          this.client.resumeReading();
        }
      }
    });
  }

  /** Whether reading the connection is held back (the catalog is behind): replies wait unread meanwhile. */
  get readingHeld(): boolean {
    return this.paused;
  }

  /**
   * Writes what is batched and waits for every write; throws the catalog's
   * first failure. A long wait is fine while the catalog stores rows; one in
   * which it stores none for `stallMs` ends with a JobWaitError.
   */
  async drain(stallMs: number): Promise<void> {
    this.endListing();
    this.flushBatch();
    let done = false;
    const finished = this.chain.then(() => {
      done = true;
    });
    while (!done) {
      const before = this.rows;
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([finished, new Promise<void>((r) => (timer = setTimeout(r, stallMs)))]);
      clearTimeout(timer);
      if (!done && this.rows === before) {
        throw new JobWaitError(
          `the catalog stored no file history for ${seconds(stallMs)} (${this.rows} rows so far, ${this.pending} batches waiting): ` +
            'check the catalog database (is it up, is its disk full?), then run the backup again',
        );
      }
    }
    if (this.failure) throw this.failure;
  }

  /** The catalog's failure so far, if any (the job aborts the backup on one). */
  get error(): Error | null {
    return this.failure;
  }
}
