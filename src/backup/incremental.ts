// Incremental backups: dump levels 0–9 (LEVEL, UPDATE) and token incrementals
// (BASE_DATE / DUMP_DATE, docs/protocol.md §9.3), and the state they keep.
//
// A level-N backup (N in 1..9) holds what changed since the most recent
// recorded backup of the same FILESYSTEM at a lower level; a BASE_DATE backup,
// what changed since the backup that returned that token as DUMP_DATE. In such
// an incremental stream (see engine.ts):
// - every directory is in the stream, header only, with its whole listing in a
//   `GNU.dumpdir` record (Y: in this stream, N: unchanged, D: a directory), so
//   a restore can delete what is gone (restore.ts);
// - a file, symlink, ... is in it when max(mtime, ctime) >= the base's start
//   time minus CLOCK_SLACK_NS (the kernel stamps files from a coarse clock that
//   lags the real one by up to a tick; the slack only ever adds entries);
// - a directory whose (path, dev, ino) was not in the base's directory
//   snapshot is new or renamed: everything below it is in the stream, whatever
//   its times (a renamed directory's children keep theirs).
// The change test relies on the file system updating a file's ctime when it
// is renamed or linked (Linux's local file systems all do).
//
// State, under the server's state dir (all written atomically: a temp file,
// fsync, rename; mode 0600; one lock file serializes plans and commits of
// every session thread):
//
//   dumpdates   "# ..." comments, then one line per FILESYSTEM and level:
//                 <realpath as a JSON string> <level> <start ns> <start ISO-8601> <token>
//               e.g. "/srv/home" 1 1732492800123456789 2024-11-25T00:00:00.123456789Z 8589934592
//               The ns field is the one read; the ISO-8601 text is for people.
//   tokens      one line per DUMP_DATE token handed out (the newest TOKENS_KEPT per FILESYSTEM):
//                 <realpath as a JSON string> <token> <start ns> <start ISO-8601> <level or ->
//   snapshots/<fsid>.<token>   the directory snapshot of that backup (fsid: 16 hex
//               digits of the SHA-256 of the realpath); kept while a line of
//               either file names it. Format: see DirSnapshot.encode.
//
// A token is (sequence << 32) | (start time in seconds, low 32 bits); the
// sequence counts the FILESYSTEM's backups. The records keep the start time in ns.

import { envFlag } from '../util/env-flag.js';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import zlib from 'node:zlib';
import { CodedError } from '../util/coded-error.js';
import { decodeName, encodeName } from '../util/byte-name.js';

/** A problem with the environment or the state; its message is for the backup administrator as is. */
export class IncrementalError extends CodedError {
  override name = 'IncrementalError';
  readonly code = 'INCREMENTAL';
}

/** Subtracted from a base's start time for the change test (see the top of this file). */
export const CLOCK_SLACK_NS = 1_000_000_000n;
/** Tokens kept per FILESYSTEM (older ones are forgotten unless dumpdates still names them). */
export const TOKENS_KEPT = 16;

const NS_PER_S = 1_000_000_000n;
const U64_MAX = (1n << 64n) - 1n;

/** One backup as the state files record it. */
export interface BackupRecord {
  /** Realpath of the backed-up directory (the FILESYSTEM). */
  readonly root: string;
  /** Its dump level; null for a BASE_DATE backup (tokens file only). */
  readonly level: number | null;
  /** When it started (ns since the epoch), taken before its walk began. */
  readonly startedAt: bigint;
  /** Its DUMP_DATE token. */
  readonly token: bigint;
}

/** What a backup is, decided before it starts (planIncremental). */
export interface IncrementalPlan {
  /** Realpath of the backup root. */
  readonly root: string;
  /** LEVEL (0 when absent). */
  readonly level: number;
  /** BASE_DATE when given (0n: a full backup that still returns a DUMP_DATE); else null. */
  readonly baseDate: bigint | null;
  /** Whether a successful backup is recorded (UPDATE, default y). */
  readonly update: boolean;
  /** Entries with max(mtime, ctime) >= since (ns) are in the stream; null: a full backup. */
  readonly since: bigint | null;
  /** This backup's start (ns since the epoch). */
  readonly startedAt: bigint;
  /** Something for the DMA's log (e.g. a level done as a full backup), or null. */
  readonly warning: string | null;
  /** Whether directories carry GNU.dumpdir records (level >= 1 or a BASE_DATE token). */
  readonly dumpdirs: boolean;
  /** The backup this one is relative to; null for a full one. */
  readonly base: BackupRecord | null;
  /** The EXCLUDE patterns, as given. */
  readonly excludes: readonly string[];
  /** The dumpdates line this backup writes when it succeeds (null: none, e.g. a BASE_DATE incremental). */
  readonly dumpdatesLevel: number | null;
  /**
   * True when the directory at `rel` ('.' = root) with this (dev, ino) was not
   * in the base's snapshot (new or renamed: dump everything below it), or when
   * there is no base.
   */
  isNewDirectory(rel: string, dev: bigint, ino: bigint): boolean;
}

/**
 * The directories of one backup: each one's path relative to the root ('.'
 * for the root) and its (dev, ino). The engine adds them as it walks; a loaded
 * one answers has().
 */
export class DirSnapshot {
  private readonly paths: string[] = [];
  private readonly ids: bigint[] = [];
  private index: Map<string, bigint> | null = null;

  add(rel: string, dev: bigint, ino: bigint): void {
    this.paths.push(rel);
    this.ids.push(dev, ino);
    this.index = null;
  }

  get size(): number {
    return this.paths.length;
  }

  /** Whether the directory `rel` was there with this (dev, ino). */
  has(rel: string, dev: bigint, ino: bigint): boolean {
    if (!this.index) {
      // path -> dev * 2^64 + ino: one bigint per directory (a path may repeat
      // only in a snapshot made by hand: the last one wins).
      this.index = new Map();
      for (let i = 0; i < this.paths.length; i++)
        this.index.set(this.paths[i]!, (this.ids[2 * i]! << 64n) | this.ids[2 * i + 1]!);
    }
    return this.index.get(rel) === ((dev << 64n) | ino);
  }

  /**
   * The file: gzip of a text head and binary records.
   *   "ndmpd-snapshot 1\n" <meta as one JSON line> "\n"
   *   per directory, in walk order: varint dev, varint ino, varint bytes shared
   *   with the previous path's bytes, varint length of the rest, the rest. A
   *   path is its exact bytes (docs/names.md), not UTF-8 re-encoded, so a name
   *   that is not UTF-8 is the same directory in the next incremental; the
   *   JSON head escapes such a root's lone surrogates (\udcXX), which
   *   JSON.parse gives back as they were.
   * Varints are LEB128 (7 bits a byte, low first). 100,000 directories with
   * 60-byte paths take about 1 MB.
   */
  encode(meta: SnapshotMeta): Buffer {
    const w = new ByteWriter();
    w.bytes(Buffer.from(`ndmpd-snapshot 1\n${JSON.stringify({ ...meta, dirs: this.paths.length })}\n`));
    let prev: Buffer = Buffer.alloc(0);
    for (let i = 0; i < this.paths.length; i++) {
      const p = encodeName(this.paths[i]!);
      let shared = 0;
      const max = Math.min(p.length, prev.length);
      while (shared < max && p[shared] === prev[shared]) shared++;
      w.varint(this.ids[2 * i]!);
      w.varint(this.ids[2 * i + 1]!);
      w.varint(BigInt(shared));
      w.varint(BigInt(p.length - shared));
      w.bytes(p.subarray(shared));
      prev = p;
    }
    return zlib.gzipSync(w.done(), { level: 6 });
  }

  /** Reads what encode() wrote; throws on anything else. */
  static decode(file: Buffer): { meta: SnapshotMeta; snapshot: DirSnapshot } {
    const b = zlib.gunzipSync(file);
    const magic = 'ndmpd-snapshot 1\n';
    if (b.toString('latin1', 0, magic.length) !== magic) throw new Error('not an ndmpd snapshot');
    const nl = b.indexOf(0x0a, magic.length);
    if (nl < 0) throw new Error('snapshot head without its end');
    const head = JSON.parse(b.toString('utf8', magic.length, nl)) as SnapshotMeta & { dirs: number };
    const meta = checkMeta(head);
    const count = head.dirs;
    if (!Number.isSafeInteger(count) || count < 0) throw new Error('snapshot: bad directory count');
    const r = new ByteReader(b, nl + 1);
    const snap = new DirSnapshot();
    let prev: Buffer = Buffer.alloc(0);
    for (let i = 0; i < count; i++) {
      const dev = r.varint();
      const ino = r.varint();
      const shared = Number(r.varint());
      const rest = Number(r.varint());
      if (shared > prev.length) throw new Error('snapshot: bad shared prefix');
      const p = Buffer.concat([prev.subarray(0, shared), r.take(rest)]);
      snap.add(decodeName(p), dev, ino);
      prev = p;
    }
    if (!r.atEnd) throw new Error('snapshot: bytes after the last directory');
    return { meta, snapshot: snap };
  }
}

/** What a snapshot file says about its backup. */
export interface SnapshotMeta {
  readonly root: string;
  /** ns since the epoch, as a decimal string. */
  readonly startedAt: string;
  readonly level: number | null;
  readonly token: string;
  readonly excludes: readonly string[];
}

function checkMeta(m: unknown): SnapshotMeta {
  const o = m as Record<string, unknown>;
  if (
    typeof o !== 'object' ||
    o === null ||
    typeof o['root'] !== 'string' ||
    typeof o['startedAt'] !== 'string' ||
    !/^\d+$/.test(o['startedAt']) ||
    typeof o['token'] !== 'string' ||
    !/^\d+$/.test(o['token']) ||
    !(o['level'] === null || (typeof o['level'] === 'number' && Number.isInteger(o['level']))) ||
    !Array.isArray(o['excludes']) ||
    !(o['excludes'] as unknown[]).every((x) => typeof x === 'string')
  ) {
    throw new Error('snapshot: bad head');
  }
  return {
    root: o['root'],
    startedAt: o['startedAt'],
    level: o['level'] as number | null,
    token: o['token'],
    excludes: o['excludes'] as string[],
  };
}

class ByteWriter {
  private buf = Buffer.allocUnsafe(64 * 1024);
  private n = 0;
  private room(k: number): void {
    if (this.n + k <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.n + k));
    this.buf.copy(next, 0, 0, this.n);
    this.buf = next;
  }
  bytes(b: Uint8Array): void {
    this.room(b.length);
    this.buf.set(b, this.n);
    this.n += b.length;
  }
  varint(v: bigint): void {
    this.room(10);
    if (v < 0n || v > U64_MAX) throw new RangeError(`snapshot: ${v} is not a 64-bit unsigned number`);
    do {
      let byte = Number(v & 0x7fn);
      v >>= 7n;
      if (v > 0n) byte |= 0x80;
      this.buf[this.n++] = byte;
    } while (v > 0n);
  }
  done(): Buffer {
    return this.buf.subarray(0, this.n);
  }
}

class ByteReader {
  constructor(
    private readonly b: Buffer,
    private at: number,
  ) {}
  get atEnd(): boolean {
    return this.at === this.b.length;
  }
  varint(): bigint {
    let v = 0n;
    for (let shift = 0n; shift < 70n; shift += 7n) {
      if (this.at >= this.b.length) throw new Error('snapshot: truncated');
      const c = this.b[this.at++]!;
      v |= BigInt(c & 0x7f) << shift;
      if ((c & 0x80) === 0) {
        if (v > U64_MAX) break;
        return v;
      }
    }
    throw new Error('snapshot: bad number');
  }
  take(n: number): Buffer {
    if (n > this.b.length - this.at) throw new Error('snapshot: truncated');
    const out = this.b.subarray(this.at, this.at + n);
    this.at += n;
    return out;
  }
}

// ---------------------------------------------------------------------------
// Environment

/** LEVEL: absent = 0; one digit 0..9; anything else is an error. */
export function parseLevel(value: string | undefined): number {
  if (value === undefined) return 0;
  const v = value.trim();
  if (!/^[0-9]$/.test(v)) throw new IncrementalError(`LEVEL=${value}: levels 0 to 9 are offered`);
  return Number(v);
}

/** UPDATE: a no (n, no, false ...) = do not record; anything else, or absent, = record. */
export function parseUpdate(value: string | undefined): boolean {
  return envFlag(value) !== false;
}

/** BASE_DATE: a decimal 64-bit token. */
function parseToken(value: string): bigint {
  const v = value.trim();
  if (!/^\d{1,20}$/.test(v) || BigInt(v) > U64_MAX) {
    throw new IncrementalError(
      `BASE_DATE=${value}: not a token (a decimal number this server returned as DUMP_DATE)`,
    );
  }
  return BigInt(v);
}

/** Wall-clock now in ns (ms precision, rounded down: an earlier start only adds entries to the next incremental). */
export function nowNs(): bigint {
  return BigInt(Date.now()) * 1_000_000n;
}

/** The token of the `seq`-th backup of a FILESYSTEM started at `startedAt` (ns). */
export function makeToken(seq: bigint, startedAt: bigint): bigint {
  return (seq << 32n) | ((startedAt / NS_PER_S) & 0xffff_ffffn);
}

/**
 * Decides what a backup of `root` (absolute, confined: util/confine.ts) is from its environment (LEVEL, BASE_DATE,
 * UPDATE, FILES, EXCLUDE) and the state under `stateDir`, and loads the base's
 * directory snapshot. Synchronous; call it on the thread that runs the
 * backup (the plan holds the snapshot and is not meant to be posted). Throws
 * IncrementalError for an environment it cannot serve.
 */
export function planIncremental(
  env: readonly { name: string; value: string }[],
  root: string,
  stateDir: string,
  now: bigint = nowNs(),
): IncrementalPlan {
  const one = (name: string) => env.find((p) => p.name === name)?.value;
  const level = parseLevel(one('LEVEL'));
  const baseRaw = one('BASE_DATE');
  let update = parseUpdate(one('UPDATE'));
  const files = env.some((p) => p.name === 'FILES' && p.value.trim() !== '');
  const excludes = env.filter((p) => p.name === 'EXCLUDE').map((p) => p.value);
  // The dumpdates key. `root` comes confined (util/confine.ts: the export's
  // real path and, below it, components that are no symbolic link), so it is
  // canonical as it is; realpath here would follow a link planted meanwhile.
  if (!isAbsolute(root)) throw new IncrementalError(`FILESYSTEM ${root}: not an absolute path`);
  const real = resolve(root);
  const warnings: string[] = [];
  let baseDate: bigint | null = null;
  let base: BackupRecord | null = null;
  let baseSnap: DirSnapshot | null = null;
  let dumpdatesLevel: number | null = level;
  let dumpdirs = level > 0;

  const loadBase = (rec: BackupRecord, what: string, mustLoad: boolean): void => {
    let loaded: { meta: SnapshotMeta; snapshot: DirSnapshot };
    try {
      loaded = DirSnapshot.decode(fs.readFileSync(snapshotPath(stateDir, rec.root, rec.token)));
      if (loaded.meta.root !== rec.root || BigInt(loaded.meta.token) !== rec.token)
        throw new Error('it is of another backup');
    } catch (e) {
      const why = `the directory snapshot of ${what} cannot be read (${(e as Error).message})`;
      if (mustLoad) throw new IncrementalError(`${why}; make a full backup`);
      warnings.push(`${why}; this backup is a full one`);
      return;
    }
    if (!sameSet(loaded.meta.excludes, excludes)) {
      // Paths excluded then and included now would be in neither backup.
      warnings.push(`EXCLUDE differs from that of ${what}; this backup is a full one`);
      return;
    }
    base = rec;
    baseSnap = loaded.snapshot;
  };

  withLock(stateDir, () => {
    const state = readState(stateDir, warnings);
    if (baseRaw !== undefined) {
      const token = parseToken(baseRaw);
      if (level > 0) {
        throw new IncrementalError(
          `BASE_DATE and LEVEL=${level} together: ask for a token incremental (BASE_DATE) or a level, not both`,
        );
      }
      baseDate = token;
      if (token === 0n) return; // illumos: 0 = a full backup (with a DUMP_DATE)
      if (files)
        throw new IncrementalError('BASE_DATE with FILES: incremental backups are of a whole FILESYSTEM');
      dumpdatesLevel = null;
      dumpdirs = true;
      const rec =
        state.tokens.find((r) => r.root === real && r.token === token) ??
        state.dumpdates.find((r) => r.root === real && r.token === token);
      if (!rec) {
        throw new IncrementalError(
          `BASE_DATE=${baseRaw}: no backup of ${real} with this token is recorded ` +
            `(the last ${TOKENS_KEPT} are kept); make a full backup`,
        );
      }
      loadBase(rec, `BASE_DATE=${baseRaw}`, true);
      return;
    }
    if (level === 0) return;
    if (files)
      throw new IncrementalError(`LEVEL=${level} with FILES: incremental backups are of a whole FILESYSTEM`);
    let best: BackupRecord | null = null;
    for (const r of state.dumpdates) {
      if (r.root === real && r.level! < level && (!best || r.startedAt > best.startedAt)) best = r;
    }
    if (!best) {
      warnings.push(`LEVEL=${level}: no backup of ${real} at a lower level is recorded; this one is full`);
      return;
    }
    loadBase(best, `the level-${best.level} backup of ${isoOf(best.startedAt)}`, false);
  });

  if (files && update) {
    // A FILES backup holds part of the FILESYSTEM: as a base it would hide the rest.
    update = false;
    warnings.push('a FILES backup is not recorded for incrementals (UPDATE=y ignored)');
  }
  const snap = baseSnap as DirSnapshot | null;
  const b = base as BackupRecord | null;
  return {
    root: real,
    level,
    baseDate,
    update,
    since: b ? b.startedAt - CLOCK_SLACK_NS : null,
    startedAt: now,
    warning: warnings.length > 0 ? warnings.join('; ') : null,
    dumpdirs,
    base: b,
    excludes,
    dumpdatesLevel,
    isNewDirectory: (rel, dev, ino) => !snap || !snap.has(rel, dev, ino),
  };
}

/**
 * Records a backup that completed: its snapshot, its token and (for a level
 * backup) its dumpdates line, when plan.update; prunes old tokens and
 * snapshots. Returns what DATA_GET_ENV adds: DUMP_DATE=<token> (nothing when
 * UPDATE=n). Throws on disk trouble (then nothing is recorded, or only a
 * snapshot file no line names, which the next commit removes).
 */
export function commitIncremental(
  plan: IncrementalPlan,
  snapshot: DirSnapshot,
  stateDir: string,
): { name: string; value: string }[] {
  if (!plan.update) return [];
  const snapDir = join(stateDir, 'snapshots');
  fs.mkdirSync(snapDir, { recursive: true, mode: 0o700 });
  let token = 0n;
  withLock(stateDir, () => {
    const ignored: string[] = [];
    const state = readState(stateDir, ignored);
    let seq = 0n;
    for (const r of [...state.tokens, ...state.dumpdates]) {
      if (r.root === plan.root && r.token >> 32n > seq) seq = r.token >> 32n;
    }
    seq += 1n;
    if (seq > 0xffff_ffffn) throw new IncrementalError(`no DUMP_DATE token is left for ${plan.root}`);
    token = makeToken(seq, plan.startedAt);
    const rec: BackupRecord = {
      root: plan.root,
      level: plan.dumpdatesLevel,
      startedAt: plan.startedAt,
      token,
    };
    const meta: SnapshotMeta = {
      root: plan.root,
      startedAt: plan.startedAt.toString(),
      level: plan.dumpdatesLevel,
      token: token.toString(),
      excludes: plan.excludes,
    };
    writeAtomic(snapshotPath(stateDir, plan.root, token), snapshot.encode(meta));

    // Tokens: this one, and the newest TOKENS_KEPT of this FILESYSTEM.
    const mine = [...state.tokens.filter((r) => r.root === plan.root), rec].sort((a, b) =>
      a.token < b.token ? -1 : a.token > b.token ? 1 : 0,
    );
    const tokens = [...state.tokens.filter((r) => r.root !== plan.root), ...mine.slice(-TOKENS_KEPT)];
    writeAtomic(join(stateDir, 'tokens'), formatTokens(tokens));

    let dumpdates = state.dumpdates;
    if (rec.level !== null) {
      dumpdates = [...dumpdates.filter((r) => !(r.root === plan.root && r.level === rec.level)), rec];
      writeAtomic(join(stateDir, 'dumpdates'), formatDumpdates(dumpdates));
    }

    // Snapshots no line names any more (and leftovers of interrupted writes) go.
    const keep = new Set(
      [...tokens, ...dumpdates].filter((r) => r.root === plan.root).map((r) => snapshotName(r.root, r.token)),
    );
    const prefix = `${fsid(plan.root)}.`;
    for (const name of fs.readdirSync(snapDir)) {
      if ((name.startsWith(prefix) && !keep.has(name)) || name.includes('.tmp-')) {
        fs.rmSync(join(snapDir, name), { force: true });
      }
    }
  });
  return [{ name: 'DUMP_DATE', value: token.toString() }];
}

// ---------------------------------------------------------------------------
// State files

/** The records of `<stateDir>/dumpdates` (level backups; lines that cannot be read are left out). */
export function readDumpdates(stateDir: string, problems: string[] = []): BackupRecord[] {
  return readState(stateDir, problems).dumpdates;
}

/** The records of `<stateDir>/tokens`. */
export function readTokens(stateDir: string, problems: string[] = []): BackupRecord[] {
  return readState(stateDir, problems).tokens;
}

function readState(
  stateDir: string,
  problems: string[],
): { dumpdates: BackupRecord[]; tokens: BackupRecord[] } {
  return {
    dumpdates: readLines(join(stateDir, 'dumpdates'), problems, (rest) => {
      // <level> <ns> <iso> <token>
      const m = /^([0-9]) (\d+) \S+ (\d+)$/.exec(rest);
      return m ? { level: Number(m[1]), startedAt: BigInt(m[2]!), token: BigInt(m[3]!) } : null;
    }),
    tokens: readLines(join(stateDir, 'tokens'), problems, (rest) => {
      // <token> <ns> <iso> <level or ->
      const m = /^(\d+) (\d+) \S+ ([0-9]|-)$/.exec(rest);
      return m
        ? { token: BigInt(m[1]!), startedAt: BigInt(m[2]!), level: m[3] === '-' ? null : Number(m[3]) }
        : null;
    }),
  };
}

/**
 * Lines of `"<realpath>" <rest>`; a line that does not parse is left out with
 * a note in `problems`. Leaving one out can only make a later base older (more
 * in the incremental) or absent (a full backup): never a missed change.
 */
function readLines(
  path: string,
  problems: string[],
  rest: (text: string) => { level: number | null; startedAt: bigint; token: bigint } | null,
): BackupRecord[] {
  let text: string;
  try {
    text = fs.readFileSync(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw new IncrementalError(`${path} cannot be read: ${(e as Error).message}`);
  }
  const out: BackupRecord[] = [];
  text.split('\n').forEach((line, i) => {
    if (line.trim() === '' || line.startsWith('#')) return;
    const m = /^("(?:[^"\\]|\\.)*") (.*)$/.exec(line);
    let root: unknown = null;
    try {
      if (m) root = JSON.parse(m[1]!);
    } catch {
      root = null;
    }
    const r = m && typeof root === 'string' ? rest(m[2]!) : null;
    if (!r || r.token > U64_MAX) {
      problems.push(`${path}:${i + 1} cannot be read; ignored`);
      return;
    }
    out.push({ root: root as string, ...r });
  });
  return out;
}

function formatDumpdates(recs: readonly BackupRecord[]): string {
  const sorted = [...recs].sort((a, b) => (a.root < b.root ? -1 : a.root > b.root ? 1 : a.level! - b.level!));
  return (
    '# ndmpd dumpdates: the last backup of each FILESYSTEM at each level (written by ndmpd).\n' +
    '# <realpath as a JSON string> <level> <start, ns since the epoch> <start, ISO-8601> <DUMP_DATE token>\n' +
    sorted
      .map((r) => `${JSON.stringify(r.root)} ${r.level} ${r.startedAt} ${isoOf(r.startedAt)} ${r.token}\n`)
      .join('')
  );
}

function formatTokens(recs: readonly BackupRecord[]): string {
  return (
    '# ndmpd tokens: DUMP_DATE tokens handed out, for BASE_DATE (written by ndmpd).\n' +
    '# <realpath as a JSON string> <token> <start, ns since the epoch> <start, ISO-8601> <level or ->\n' +
    recs
      .map(
        (r) =>
          `${JSON.stringify(r.root)} ${r.token} ${r.startedAt} ${isoOf(r.startedAt)} ${r.level ?? '-'}\n`,
      )
      .join('')
  );
}

/** ISO-8601 with all nine digits of the ns: 2024-11-25T00:00:00.123456789Z. */
export function isoOf(ns: bigint): string {
  const ms = ns / 1_000_000n;
  const base = new Date(Number(ms)).toISOString(); // ...T00:00:00.123Z
  const frac = (((ns % NS_PER_S) + NS_PER_S) % NS_PER_S).toString().padStart(9, '0');
  return `${base.slice(0, 19)}.${frac}Z`;
}

function fsid(root: string): string {
  return createHash('sha256').update(encodeName(root)).digest('hex').slice(0, 16);
}

function snapshotName(root: string, token: bigint): string {
  return `${fsid(root)}.${token}`;
}

function snapshotPath(stateDir: string, root: string, token: bigint): string {
  return join(stateDir, 'snapshots', snapshotName(root, token));
}

function sameSet(a: readonly string[], b: readonly string[]): boolean {
  const x = [...new Set(a)].sort();
  const y = [...new Set(b)].sort();
  return x.length === y.length && x.every((v, i) => v === y[i]);
}

/** Writes `path` whole or not at all: a temp file beside it, fsync, rename, fsync of the directory. */
export function writeAtomic(path: string, data: string | Uint8Array): void {
  const tmp = `${path}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  const fd = fs.openSync(tmp, 'wx', 0o600);
  try {
    try {
      fs.writeFileSync(fd, data);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, path);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    throw e;
  }
  try {
    const dfd = fs.openSync(join(path, '..'), 'r');
    try {
      fs.fsyncSync(dfd);
    } finally {
      fs.closeSync(dfd);
    }
  } catch {
    /* a directory that cannot be fsynced: the rename is done all the same */
  }
}

// ---------------------------------------------------------------------------
// The lock: session threads plan and commit at the same time; one lock file
// (O_EXCL) serializes them. A lock older than LOCK_STALE_MS is one a crashed
// process left.

const LOCK_WAIT_MS = 10_000;
const LOCK_STALE_MS = 60_000;
const sleeper = new Int32Array(new SharedArrayBuffer(4));

function withLock<T>(stateDir: string, fn: () => T): T {
  fs.mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  const lock = join(stateDir, 'incremental.lock');
  const until = Date.now() + LOCK_WAIT_MS;
  for (;;) {
    try {
      fs.closeSync(fs.openSync(lock, 'wx', 0o600));
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    try {
      if (Date.now() - fs.statSync(lock).mtimeMs > LOCK_STALE_MS) {
        fs.rmSync(lock, { force: true });
        continue;
      }
    } catch {
      continue; // gone meanwhile
    }
    if (Date.now() > until) throw new IncrementalError(`${lock} is held by another backup; try again`);
    Atomics.wait(sleeper, 0, 0, 5);
  }
  try {
    return fn();
  } finally {
    fs.rmSync(lock, { force: true });
  }
}
