// A backup's tree as of the day it was made (docs/dma.md, "Incremental
// chains: point-in-time"). An incremental holds only what changed since its
// base, so its tree is its chain's (src/dma/chain.ts): the full first, then
// each incremental's changes, with what was deleted in between gone.
//
// What the catalog knows of each backup of the chain:
// - a full backup: its rows are its whole tree;
// - an incremental whose history listed every directory whole (dir/node
//   model: FH_ADD_DIR for every name, FH_ADD_NODE only for what is in the
//   stream, docs/protocol.md §8.3 rule 5): its rows (what its stream holds)
//   and each directory's listing (catalog getListing). A name not listed is
//   gone; a directory with no listing of its own was not on the way to a
//   change, so it holds what it held in the backup before;
// - an incremental with path-model history (FH_ADD_FILE): its rows only. Its
//   directories hold their earlier names and its own; what was deleted is not
//   known, and `incomplete` says so.
// Each name listed is then taken from the newest backup of the chain (up to
// the one viewed) that holds it in its stream.

import type { BackupRecord, Catalog, FileRow } from '../catalog/types.js';
import { pathOf, splitPath } from '../catalog/schema.js';
import { chainOf } from './chain.js';
import { WAITS, withBound } from './waits.js';

/** One entry of the tree as of a backup, and the backup of the chain whose stream holds it. */
export interface AsOfEntry {
  row: FileRow;
  from: BackupRecord;
}

const byName = (a: AsOfEntry, b: AsOfEntry): number =>
  a.row.name < b.row.name ? -1 : a.row.name > b.row.name ? 1 : 0;

export class AsOfView {
  /** Backups of the chain whose history did not list directories whole: what they saw deleted still shows. */
  readonly incomplete = new Set<number>();
  /** Names listed without a backup of the chain that holds them (a base deleted from the catalog, say). */
  readonly missing = new Set<string>();
  private readonly rowsOf = new Map<string, Promise<Map<string, FileRow>>>();
  private readonly dirs = new Map<string, Promise<AsOfEntry[]>>();
  private readonly listed = new Map<number, Promise<boolean>>();

  /** `chain`: the full backup first, the one viewed last (chainOf). */
  constructor(
    private readonly catalog: Catalog,
    readonly chain: readonly BackupRecord[],
  ) {}

  /** The view as of `b`, its chain found among `all` (the catalog's backups). */
  static of(catalog: Catalog, all: readonly BackupRecord[], b: BackupRecord): AsOfView {
    return new AsOfView(catalog, chainOf(all, b).backups);
  }

  /** The backup viewed. */
  get backup(): BackupRecord {
    return this.chain[this.chain.length - 1]!;
  }

  private call<T>(p: Promise<T>, what: string): Promise<T> {
    return withBound(
      p,
      WAITS.catalogCallMs,
      `the catalog (${this.catalog.location}) to ${what}`,
      'check the catalog database, then run the command again',
    );
  }

  /** The rows of chain[i] directly in `dir`, by name. */
  private rows(i: number, dir: string): Promise<Map<string, FileRow>> {
    const key = `${i}\0${dir}`;
    let p = this.rowsOf.get(key);
    if (!p) {
      const b = this.chain[i]!;
      p = this.call(this.catalog.listDir(b.id, dir), `list ${dir} of backup ${b.id}`).then(
        (rows) => new Map(rows.map((r) => [r.name, r])),
      );
      this.rowsOf.set(key, p);
    }
    return p;
  }

  private hasListings(i: number): Promise<boolean> {
    const b = this.chain[i]!;
    let p = this.listed.get(b.id);
    if (!p) {
      p = this.call(this.catalog.hasListings(b.id), `read backup ${b.id}'s directory listings`);
      this.listed.set(b.id, p);
    }
    return p;
  }

  /** The names in `dir` as of chain[i]. */
  private async names(i: number, dir: string): Promise<string[]> {
    const rows = await this.rows(i, dir);
    if (i === 0) return [...rows.keys()];
    const b = this.chain[i]!;
    if (await this.hasListings(i)) {
      const listing = await this.call(
        this.catalog.getListing(b.id, dir),
        `read ${dir}'s listing in backup ${b.id}`,
      );
      // Not listed: not on the way to anything changed, so as it was in the backup before.
      return listing ?? this.names(i - 1, dir);
    }
    // No listings (path-model history): earlier names stay, deleted or not.
    this.incomplete.add(b.id);
    const names = new Set(await this.names(i - 1, dir));
    for (const n of rows.keys()) names.add(n);
    return [...names];
  }

  /** The entries directly in directory `dir` (a path inside the backup), sorted by name. */
  listDir(dir: string): Promise<AsOfEntry[]> {
    let p = this.dirs.get(dir);
    if (!p) {
      p = this.resolve(dir);
      this.dirs.set(dir, p);
    }
    return p;
  }

  private async resolve(dir: string): Promise<AsOfEntry[]> {
    const last = this.chain.length - 1;
    const out: AsOfEntry[] = [];
    for (const name of await this.names(last, dir)) {
      let found: AsOfEntry | null = null;
      // The newest backup whose stream holds it.
      for (let j = last; j >= 0 && !found; j--) {
        const r = (await this.rows(j, dir)).get(name);
        if (r) found = { row: r, from: this.chain[j]! };
      }
      if (found) out.push(found);
      else this.missing.add(pathOf(dir, name));
    }
    return out.sort(byName);
  }

  /** The entry of `path` (inside the backup) as of the backup, or null when it was not there then. */
  async lookup(path: string): Promise<AsOfEntry | null> {
    if (path === '/') return (this.root ??= this.findRoot());
    // From the root down: a directory deleted since the full is not looked into.
    const { dir, name } = splitPath(path);
    const parent = await this.lookup(dir);
    if (!parent || parent.row.type !== 'dir') return null;
    return (await this.listDir(dir)).find((e) => e.row.name === name) ?? null;
  }

  private root: Promise<AsOfEntry | null> | undefined;

  private async findRoot(): Promise<AsOfEntry | null> {
    for (let j = this.chain.length - 1; j >= 0; j--) {
      const b = this.chain[j]!;
      const [root] = await this.call(this.catalog.lookup(b.id, ['/']), `look up / in backup ${b.id}`);
      if (root) return { row: root, from: b };
    }
    return null;
  }

  /** `path` and, for a directory, everything below it as of the backup, each directory before its entries. */
  async tree(path: string): Promise<AsOfEntry[] | null> {
    const top = await this.lookup(path);
    if (!top) return null;
    const out: AsOfEntry[] = [top];
    const walk = async (dir: string): Promise<void> => {
      for (const e of await this.listDir(dir)) {
        out.push(e);
        if (e.row.type === 'dir') await walk(e.row.path);
      }
    };
    if (top.row.type === 'dir') await walk(top.row.path);
    return out;
  }
}
