// Pools of tapes (docs/dma.md, "Pools and tapes"). A backup goes to a pool
// ('default' unless `--pool` names another) and appends to the pool's tapes
// until one is full, then goes on to the next: an 11 KiB incremental takes a
// tape file on a tape already in use, not a tape of its own. A tape is known
// to the catalog by its tape server's identity (CONFIG_GET_HOST_INFO's host
// id, or the server's HOST:PORT when it gives none) and its barcode; what the
// server says of it (blank, write-protected, fill) and what the catalog
// says (its pool, appendable/full/recyclable, the backups on it) make its
// state. A tape that is not blank and that the catalog does not know was
// written by something else: it is foreign, and never written on.

import type { BackupRecord, TapePoolState, TapeRecord } from '../catalog/types.js';
import { CodedError } from '../util/coded-error.js';
import { DmaUsageError } from './agent.js';
import type { Medium } from './media.js';

export const DEFAULT_POOL = 'default';

/** A tape's state as `ndmp tapes` shows it and the choice of the next tape reads it. */
export type TapeState = 'blank' | 'foreign' | 'write-protected' | TapePoolState;

/** No tape to write on (none left, or none came in the time `--wait` gave). */
export class NoTapeError extends CodedError {
  readonly code = 'DMA_NO_TAPE';
  constructor(message: string) {
    super(message);
    this.name = 'NoTapeError';
  }
}

/** A pool name: what a person types and a script matches, no spaces or odd characters. */
export function checkPoolName(name: string): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(name)) {
    throw new DmaUsageError(
      `--pool '${name}': a pool name is 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit`,
    );
  }
  return name;
}

/** The catalog's key of a tape server: its host id, or where it answered when it gives none. */
export function tapeServerKey(id: string, address: string): string {
  return id !== '' ? id : address;
}

/** Whether backup `b` was written through the tape server `id` (host id; '' unknown) at `address`. */
export function onTapeServer(b: BackupRecord, id: string, address: string): boolean {
  if (id !== '' && b.tapeServerId !== '') return b.tapeServerId === id;
  return b.tapeServer === address;
}

/** What the catalog knows of one tape. */
export interface KnownTape {
  pool: string;
  state: TapePoolState;
  /** Backups (not yet pruned) with a part on it, oldest first. */
  backups: number[];
}

/**
 * What the catalog knows of the tapes of one tape server, by barcode (or
 * device, for tapes without one): the tapes table, and the tape parts of
 * its backups. A tape a backup wrote that the tapes table lacks (a catalog
 * from before schema 3) is appendable, in that backup's pool.
 */
export function knownTapes(
  records: readonly TapeRecord[],
  backups: readonly BackupRecord[],
  id: string,
  address: string,
): Map<string, KnownTape> {
  const key = tapeServerKey(id, address);
  const out = new Map<string, KnownTape>();
  for (const r of records) {
    if (r.tapeServer === key) out.set(r.barcode, { pool: r.pool, state: r.state, backups: [] });
  }
  const oldestFirst = [...backups].sort((a, b) => a.id - b.id);
  for (const b of oldestFirst) {
    if (!onTapeServer(b, id, address)) continue;
    for (const t of b.tapes) {
      const bc = t.barcode ?? t.device;
      let k = out.get(bc);
      if (!k) out.set(bc, (k = { pool: b.pool, state: 'appendable', backups: [] }));
      if (!k.backups.includes(b.id)) k.backups.push(b.id);
    }
  }
  return out;
}

/** A tape's state from what the server and the catalog say of it. */
export function stateOf(m: Medium, known: KnownTape | undefined): TapeState {
  if (m.writeProtected) return 'write-protected';
  if (known) return known.state;
  return m.blank ? 'blank' : 'foreign';
}

/** How a chosen tape is written: after what it holds, from its start as a new member, or over (recycled). */
export type WriteMode = 'append' | 'blank' | 'recycle';

export interface TapeCandidate {
  medium: Medium;
  how: WriteMode;
}

export interface ChoiceOptions {
  pool: string;
  /** Barcodes and devices not to offer (this job's tapes so far: one that filled must not come back). */
  skip: ReadonlySet<string>;
  /** Through a changer: the barcodes it holds (the others cannot be loaded); null: no changer. */
  inChanger: ReadonlySet<string> | null;
}

/**
 * The tapes a backup of `pool` may go on, best first: the pool's appendable
 * tapes, then blank ones (which join the pool), then the pool's recyclable
 * ones (rewritten from their start). Barcode order within each, so the choice
 * is predictable. Without a changer a tape in a drive is left alone (another
 * DMA may be using it through that drive); through one, a drive another
 * session has open answers DEVICE_BUSY and the job takes the next candidate.
 */
export function tapeCandidates(
  media: readonly Medium[],
  known: ReadonlyMap<string, KnownTape>,
  o: ChoiceOptions,
): TapeCandidate[] {
  const rank: Record<WriteMode, number> = { append: 0, blank: 1, recycle: 2 };
  const out: TapeCandidate[] = [];
  for (const m of media) {
    if (o.skip.has(m.barcode) || o.skip.has(m.device)) continue;
    if (o.inChanger ? !o.inChanger.has(m.barcode) : m.loadedIn !== null) continue;
    const k = known.get(m.barcode);
    const state = stateOf(m, k);
    if (state === 'blank') out.push({ medium: m, how: 'blank' });
    else if (k?.pool !== o.pool) continue;
    else if (state === 'appendable') out.push({ medium: m, how: 'append' });
    else if (state === 'recyclable') out.push({ medium: m, how: 'recycle' });
  }
  return out.sort((a, b) => rank[a.how] - rank[b.how] || (a.medium.barcode < b.medium.barcode ? -1 : 1));
}

/**
 * Why no tape of the library could take the backup, and what to do. `part`:
 * which part of which backup needed it (a backup that spans tapes ran out
 * mid-way); without it, the backup had not started.
 */
export function noTapeMessage(
  server: string,
  media: readonly Medium[],
  known: ReadonlyMap<string, KnownTape>,
  o: ChoiceOptions,
  part?: { part: number; backupId: number },
): string {
  const what = part ? `part ${part.part} of backup ${part.backupId}` : 'the backup';
  if (media.length === 0) return `${server} lists no tapes for ${what}; give --tape DEVICE`;
  const counts = new Map<string, number>();
  const count = (why: string) => counts.set(why, (counts.get(why) ?? 0) + 1);
  let outside = 0;
  for (const m of media) {
    const k = known.get(m.barcode);
    const state = stateOf(m, k);
    if (state === 'full' && (!k || k.pool === o.pool)) count('full');
    else if (o.skip.has(m.barcode) || o.skip.has(m.device)) count('already used by this backup, or busy');
    else if (state === 'foreign') count('foreign (written by something else)');
    else if (state === 'write-protected') count('write-protected');
    else if (k && k.pool !== o.pool) count(`in other pools`);
    else if (o.inChanger && !o.inChanger.has(m.barcode)) {
      outside++;
      count('outside the changer, whose slots are full');
    } else if (!o.inChanger && m.loadedIn !== null) count('in a drive');
    else count(state);
  }
  const why = [...counts].map(([w, n]) => `${n} ${w}`).join(', ');
  // Tapes the changer cannot reach want room in it, not more tapes.
  const remedy = outside
    ? 'make room in the changer (take written tapes out through its import/export element, or give the server more --slots)'
    : `add tapes with 'ndmpd tape create', or free the pool's tapes with 'ndmp forget' and 'ndmp prune'`;
  return (
    `no tape left for ${what} in pool ${o.pool} (${server}'s library has ${media.length} tapes: ${why}): ` +
    `${remedy}, and run the backup again (or give --wait SECONDS to wait for one)`
  );
}

/** A tape as `ndmp tapes` lists it: the server's facts, its state and pool, and the backups on it. */
export type ListedTape = Medium & { state: TapeState; pool: string | null; backups: number[] };

/** The tape server's tapes with what the catalog knows of them. */
export function listedTapes(
  media: readonly Medium[],
  records: readonly TapeRecord[],
  backups: readonly BackupRecord[],
  id: string,
  address: string,
): ListedTape[] {
  const known = knownTapes(records, backups, id, address);
  return media.map((m) => {
    const k = known.get(m.barcode);
    return { ...m, state: stateOf(m, k), pool: k?.pool ?? null, backups: k?.backups ?? [] };
  });
}
