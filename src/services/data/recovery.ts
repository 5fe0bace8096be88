// A running DATA_START_RECOVER or RECOVER_FILEHIST on the data thread: asks
// for stream bytes (NOTIFY_DATA_READ, which the DMA turns into MOVER_READ),
// reads them from the data connection, and restores files (RestoreEngine) or
// replays their history. Direct Access Recovery asks only for the regions the
// nlist's fh_info values name: the mover spaces the tape to each without
// reading what lies between (docs/protocol.md §8.2, §9.2, draft §3.5.2.4).

import type net from 'node:net';
import { PaxParser } from '../../backup/pax-parser.js';
import { paddingAfter } from '../../backup/pax-layout.js';
import type { ParsedEntry } from '../../backup/pax-parser.js';
import type { PaxTime } from '../../backup/pax-layout.js';
import { RestoreEngine, normalizeArchivePath } from '../../backup/restore.js';
import type { RestoreStatus } from '../../backup/restore.js';
import type { HistoryProducer } from '../../history/producer.js';
import { FLAG_NODE, HistoryModel, RecordWriter } from '../../history/record.js';
import type { HistoryStat } from '../../history/record.js';
import type { SpscRing } from '../../ring/spsc-ring.js';
import { INVALID_U64, RecoveryStatus } from '../../wire/index.js';
import { targetFor, targetPath, within } from './recover-plan.js';
import type { RecoverPlan, RecoverTarget } from './recover-plan.js';
import { CodedError } from '../../util/coded-error.js';
import { escapeName, nameByteLength } from '../../util/byte-name.js';

/** The stream as the data service reads it. */
export interface RecoverSource {
  /** Up to `max` next bytes of the stream (a view valid until the next call); null at its end. */
  read(max: number): Promise<Uint8Array | null>;
  /** Done with the stream: the mover sees the data connection closed. */
  close(): void;
}

export interface RecoverHooks {
  aborted(): boolean;
  /** NOTIFY_DATA_READ: the DMA is to have the mover send these stream bytes next. */
  dataRead(offset: bigint, length: bigint): void;
  /** LOG_FILE (v4 recovery status; the codec turns it into v3's error). */
  logFile(name: string, status: number): void;
  warn(text: string): void;
}

export interface RecoverResult {
  readonly restored: number;
  readonly failed: number;
  /** nlist entries (or, for a whole restore, entries) reported failed by LOG_FILE. */
  readonly failedTargets: number;
  /** Device nodes and fifos not created (RESTORE_SPECIAL=n). */
  readonly withheld: number;
  readonly bytes: bigint;
  readonly aborted: boolean;
}

/** The stream ended where the archive says more follows, or a region came back short. */
export class TruncatedStream extends CodedError {
  readonly code = 'RECOVER_STREAM_TRUNCATED';
}

/** Read size: what one turn of the loop restores before the thread's requests get a look in. */
const READ_BYTES = 256 * 1024;

/** DAR of a directory: the longest window asked for in one NOTIFY_DATA_READ. */
const DIR_WINDOW_MAX = 4n * 1024n * 1024n;

/** What one nlist entry came to, for its LOG_FILE. */
interface TargetOutcome {
  restored: number;
  status: number | null;
}

/** Restores per the plan from `source`. */
export class Recovery {
  private readonly engine: RestoreEngine;
  private readonly outcomes = new Map<RecoverTarget, TargetOutcome>();
  /** DAR: the target whose region is being read; other entries met on the way are left alone. */
  private current: RecoverTarget | null = null;
  /** DAR: where the current region's target ends (its header told), or null while unknown. */
  private regionEnd: bigint | null = null;
  /** DAR: an entry outside the current target began: its region is done. */
  private leftTarget = false;
  /** DAR: the current target is a directory whose whole subtree is restored (RECURSIVE). */
  private subtree = false;
  private firstHeader = true;
  private consumed = 0n;
  private failedTargets = 0;

  constructor(
    private readonly plan: RecoverPlan,
    private readonly source: RecoverSource,
    private readonly hooks: RecoverHooks,
  ) {
    for (const t of plan.targets) this.outcomes.set(t, { restored: 0, status: null });
    this.engine = new RestoreEngine(
      {
        dest: plan.destRoot,
        overwrite: plan.overwrite,
        special: plan.special,
        select: (p) => this.select(p),
        onHeader: (e) => this.onHeader(e),
      },
      {
        warn: (text) => hooks.warn(text),
        entry: (path, status, why) => this.onOutcome(path, status, why),
      },
    );
  }

  /** Stream bytes taken so far (DATA_GET_STATE's bytes_processed). */
  get bytesProcessed(): bigint {
    return this.consumed;
  }

  async run(): Promise<RecoverResult> {
    let aborted: boolean;
    try {
      aborted = this.plan.direct ? await this.runDirect() : await this.runWhole();
    } catch (e) {
      this.engine.abandon();
      throw e;
    } finally {
      this.source.close();
    }
    if (aborted) {
      this.engine.abandon();
      return { restored: 0, failed: 0, failedTargets: 0, withheld: 0, bytes: this.consumed, aborted };
    }
    const r = this.engine.finish();
    this.reportTargets();
    return {
      restored: r.restored,
      failed: r.failed + r.refused,
      failedTargets: this.failedTargets,
      withheld: r.withheld,
      bytes: this.consumed,
      aborted,
    };
  }

  /** The whole stream from its start, to the end-of-archive marker. */
  private async runWhole(): Promise<boolean> {
    this.hooks.dataRead(0n, INVALID_U64);
    while (!this.engine.ended) {
      if (this.hooks.aborted()) return true;
      const chunk = await this.source.read(READ_BYTES);
      if (this.hooks.aborted()) return true;
      if (chunk === null) {
        this.engine.end(); // throws: the stream ends inside the archive
        break;
      }
      this.consumed += BigInt(chunk.length);
      this.engine.push(chunk);
    }
    return false;
  }

  /**
   * Direct Access Recovery: each target's region, in stream order. A file's
   * region is its headers and data. A directory's (RECURSIVE, the default) is
   * its subtree: our backups are depth first (backup/engine.ts), so everything
   * below a directory follows its header as one run of the stream, which ends
   * at the first entry not below it. The backup root's region is the rest of
   * the stream.
   */
  private async runDirect(): Promise<boolean> {
    const order = [...this.plan.targets].sort((a, b) =>
      a.fhInfo! < b.fhInfo! ? -1 : a.fhInfo! > b.fhInfo! ? 1 : 0,
    );
    // Each fh_info names a header in the stream: a window ending at the
    // furthest one never meets the end of the tape file, which a DMA would
    // take for the end of the job while another region is still to come.
    const sure = order.reduce((m, t) => (t.fhInfo! > m ? t.fhInfo! : m), 0n);
    for (let i = 0; i < order.length; i++) {
      const t = order[i]!;
      if (this.hooks.aborted()) return true;
      // A target inside a directory restored before it came back with that directory.
      if (this.done(t)) continue;
      this.current = t;
      this.regionEnd = null;
      this.leftTarget = false;
      this.firstHeader = true;
      this.subtree = false;
      this.engine.seek(t.fhInfo!);
      let pos = t.fhInfo!;
      let read = 0n;
      // Window by window. Until the region is known to be a subtree, each is
      // no longer than the parser surely needs (a header block, an extended
      // header, a file's data, each with the next header block), so nothing
      // past the entry is read but one block, and never anything past the end
      // of the archive. In a subtree each window is a quarter of what the
      // region has read so far (up to DIR_WINDOW_MAX): the windows grow
      // geometrically, so there are few round trips, and what is read past the
      // subtree's end is at most a quarter of the subtree's size.
      while (!this.leftTarget && !this.engine.ended) {
        if (this.regionEnd !== null && pos >= this.regionEnd) break;
        const need = BigInt(this.engine.need);
        if (need === 0n) break;
        const last = !this.moreAfter(order, i);
        let want = need;
        if (this.subtree && t.original === '' && last) {
          want = INVALID_U64; // the whole backup from here: read to its end-of-archive marker
        } else if (this.subtree) {
          let w = read / 4n < DIR_WINDOW_MAX ? read / 4n : DIR_WINDOW_MAX;
          if (pos < sure && pos + w > sure) w = sure - pos;
          if (w > want) want = w;
        }
        this.hooks.dataRead(pos, want);
        // After the last region nothing more is asked for: reading stops the
        // moment the region is over and the rest of the window is never read.
        const r = await this.readRegion(want, last);
        if (r === null) return true;
        pos += r.got;
        read += r.got;
        if (r.streamEnded && !this.leftTarget && !this.engine.ended) {
          // The tape file ended first: a stale fh_info, or the wrong tape.
          if (this.outcomes.get(t)!.restored === 0)
            this.fail(t, RecoveryStatus.NDMP_RECOVERY_FAILED_IO_ERROR);
          break;
        }
        if (r.stoppedEarly) break;
      }
      this.engine.seek(pos); // closes what the region left open
      this.current = null;
    }
    return false;
  }

  /** Whether an nlist entry already has its outcome (restored, or failed). */
  private done(t: RecoverTarget): boolean {
    const o = this.outcomes.get(t)!;
    return o.restored > 0 || o.status !== null;
  }

  /**
   * Whether a region is still to be read after order[i]'s: a target not yet
   * done, and not inside order[i]'s subtree when that is being read (what
   * lies inside it is met in it, or is not in the backup).
   */
  private moreAfter(order: readonly RecoverTarget[], i: number): boolean {
    const t = order[i]!;
    for (let k = i + 1; k < order.length; k++) {
      const u = order[k]!;
      if (this.done(u)) continue;
      if (this.subtree && within(u.original, t.original)) continue;
      return true;
    }
    return false;
  }

  /**
   * Takes the `length` bytes of one NOTIFY_DATA_READ (all-ones: until the
   * stream ends), feeding them to the engine until the target's region is
   * over. The rest of the window is read and dropped, since the mover serves
   * one read at a time, unless `mayStop` (no region follows): then reading
   * stops there. Null on abort.
   */
  private async readRegion(
    length: bigint,
    mayStop: boolean,
  ): Promise<{ got: bigint; streamEnded: boolean; stoppedEarly: boolean } | null> {
    let left = length;
    let got = 0n;
    while (left > 0n) {
      if (this.hooks.aborted()) return null;
      if (mayStop && (this.leftTarget || this.engine.ended))
        return { got, streamEnded: false, stoppedEarly: true };
      let max = left < BigInt(READ_BYTES) ? Number(left) : READ_BYTES;
      // Inside a subtree (the root's aside) no read goes past what the parser
      // surely needs, so the read that meets the first entry outside it takes
      // that entry's header and no more.
      if (this.subtree && this.current?.original !== '' && !this.leftTarget && !this.engine.ended)
        max = Math.min(max, Math.max(1, this.engine.need));
      const chunk = await this.source.read(max);
      if (this.hooks.aborted()) return null;
      if (chunk === null) return { got, streamEnded: true, stoppedEarly: false };
      const n = BigInt(chunk.length);
      left -= n;
      got += n;
      this.consumed += n;
      if (!this.leftTarget && !this.engine.ended) this.engine.push(chunk);
    }
    return { got, streamEnded: false, stoppedEarly: false };
  }

  private onHeader(e: ParsedEntry): void {
    const t = this.current;
    if (!t) return;
    const path = normalizeArchivePath(e.path);
    if (this.firstHeader) {
      this.firstHeader = false;
      if (path !== t.original) {
        this.hooks.warn(
          `${escapeName(t.name)}: the backup holds "${escapeName(e.path)}" at offset ${t.fhInfo}, not this path ` +
            '(an index of another backup?)',
        );
        this.fail(t, RecoveryStatus.NDMP_RECOVERY_FAILED_NOT_FOUND);
        this.leftTarget = true;
        return;
      }
      // A file's region ends with its data; a directory's when something outside it starts.
      if (e.type !== 'dir' || !this.plan.recursive)
        this.regionEnd = e.dataOffset + e.archivedSize + BigInt(paddingAfter(e.archivedSize));
      else this.subtree = true;
      return;
    }
    // Depth first: the first entry not below the directory ends its subtree.
    // Every path is below the root (one that is not a path at all is the
    // engine's to refuse, as in a whole restore).
    if (t.original === '') return;
    if (path === null || !within(path, t.original)) this.leftTarget = true;
  }

  /** Where an archive path is restored (below destRoot), or null to leave it. */
  private select(p: string): string | null {
    if (this.current && (this.leftTarget || !within(p, this.current.original))) return null;
    const t = targetFor(this.plan.targets, p);
    if (!t) return null;
    if (!this.plan.recursive && p !== t.original) return null;
    return targetPath(t, p);
  }

  private onOutcome(path: string, status: RestoreStatus, why: string | undefined): void {
    const norm = normalizeArchivePath(path);
    const t = norm === null ? this.wholeTarget() : targetFor(this.plan.targets, norm);
    if (!t) return;
    const o = this.outcomes.get(t)!;
    if (status === 'restored') {
      o.restored++;
      return;
    }
    // Withheld (RESTORE_SPECIAL=n): a warning (LOG_MESSAGE) for an entry met on the way; an nlist
    // entry that names the special file itself was asked for by name and did not come back.
    if (status === 'withheld') {
      if (t.index >= 0 && norm === t.original) o.status ??= RecoveryStatus.NDMP_RECOVERY_FAILED_PERMISSION;
      return;
    }
    const code = recoveryStatusOf(status, why);
    o.status ??= code;
    // A whole restore has no nlist entry to carry it: each failed entry gets its own LOG_FILE.
    if (t.original === '' && t.index < 0) {
      this.failedTargets++;
      this.hooks.logFile(path, code);
    }
  }

  private wholeTarget(): RecoverTarget | null {
    return this.plan.targets.find((t) => t.original === '') ?? null;
  }

  private fail(t: RecoverTarget, status: number): void {
    this.outcomes.get(t)!.status ??= status;
  }

  /** One LOG_FILE per nlist entry (docs/protocol.md §9.4): what it came to, or not found. */
  private reportTargets(): void {
    for (const t of this.plan.targets) {
      if (t.index < 0) continue;
      const o = this.outcomes.get(t)!;
      let status = o.status;
      if (status === null && o.restored === 0) {
        status = RecoveryStatus.NDMP_RECOVERY_FAILED_NOT_FOUND;
        this.hooks.warn(`${escapeName(t.name)}: not in this backup`);
      }
      if (status !== null && status !== RecoveryStatus.NDMP_RECOVERY_SUCCESSFUL) this.failedTargets++;
      this.hooks.logFile(t.name, status ?? RecoveryStatus.NDMP_RECOVERY_SUCCESSFUL);
    }
  }
}

/** The LOG_FILE status for an entry that was not restored, from what the engine said. */
function recoveryStatusOf(status: RestoreStatus, why: string | undefined): number {
  const text = why ?? '';
  if (status === 'skipped' && text.startsWith('exists'))
    return RecoveryStatus.NDMP_RECOVERY_FAILED_FILE_PATH_EXISTS;
  if (status === 'refused' || /^(EACCES|EPERM|EROFS)\b/.test(text))
    return RecoveryStatus.NDMP_RECOVERY_FAILED_PERMISSION;
  if (/^ENOENT\b/.test(text)) return RecoveryStatus.NDMP_RECOVERY_FAILED_NOT_FOUND;
  if (/^(ENOTDIR|ELOOP)\b|symbolic link|not a directory/.test(text))
    return RecoveryStatus.NDMP_RECOVERY_FAILED_NO_DIRECTORY;
  if (/^ENOMEM\b/.test(text)) return RecoveryStatus.NDMP_RECOVERY_FAILED_OUT_OF_MEMORY;
  if (/^E[A-Z]+\b/.test(text)) return RecoveryStatus.NDMP_RECOVERY_FAILED_IO_ERROR;
  return RecoveryStatus.NDMP_RECOVERY_FAILED_UNDEFINED_ERROR;
}

// ---- RECOVER_FILEHIST: the history of an existing backup, nothing written ----

/**
 * Replays file history from the stream (what `ndmjob -t` asks for): one
 * ENTRY per archive entry at its header's offset; for dir/node history, node
 * numbers are made up per replay (root 2, hard links share their target's),
 * and each entry's name is announced in its directory before its node, in
 * stream order.
 */
export class HistoryReplay {
  private readonly parser = new PaxParser();
  private readonly writer = new RecordWriter();
  private readonly nodes = new Map<string, bigint>();
  private nextNode = 3n;
  private consumed = 0n;
  private entries = 0;
  private readonly found = new Set<RecoverTarget>();

  constructor(
    private readonly plan: RecoverPlan,
    private readonly model: HistoryModel,
    private readonly history: HistoryProducer,
    private readonly source: RecoverSource,
    private readonly hooks: RecoverHooks,
  ) {}

  get bytesProcessed(): bigint {
    return this.consumed;
  }

  async run(): Promise<{ entries: number; bytes: bigint; aborted: boolean }> {
    this.history.write(this.writer.hello(this.model));
    try {
      this.hooks.dataRead(0n, INVALID_U64);
      while (!this.parser.ended) {
        if (this.hooks.aborted() || this.history.failure() !== 0) return this.result(true);
        const chunk = await this.source.read(READ_BYTES);
        if (this.hooks.aborted()) return this.result(true);
        if (chunk === null) {
          this.parser.end(); // throws: the stream ends inside the archive
          break;
        }
        this.consumed += BigInt(chunk.length);
        this.parser.push(chunk, { onEntry: (e) => this.onEntry(e), onData: () => undefined });
      }
    } finally {
      this.source.close();
    }
    for (const t of this.plan.targets) {
      const ok = this.found.has(t);
      if (!ok) this.hooks.warn(`${escapeName(t.name)}: not in this backup`);
      this.hooks.logFile(
        t.name,
        ok ? RecoveryStatus.NDMP_RECOVERY_SUCCESSFUL : RecoveryStatus.NDMP_RECOVERY_FAILED_NOT_FOUND,
      );
    }
    return this.result(false);
  }

  private result(aborted: boolean): { entries: number; bytes: bigint; aborted: boolean } {
    return { entries: this.entries, bytes: this.consumed, aborted };
  }

  private onEntry(e: ParsedEntry): void {
    const path = normalizeArchivePath(e.path);
    if (path === null) {
      this.hooks.warn(`${escapeName(e.path)}: not a path below the backup root; left out of the history`);
      return;
    }
    if (this.plan.targets.length > 0) {
      const t = targetFor(this.plan.targets, path);
      if (!t) return;
      this.found.add(t);
    }
    this.entries++;
    const rel = path === '' ? '.' : path;
    const st = statOf(e);
    if (this.model === HistoryModel.PATH) {
      this.put(this.writer.entry(rel, st, 0n, e.headerOffset, FLAG_NODE), rel);
      return;
    }
    // Dir/node: "." and ".." of the root first (docs/protocol.md §8.3), then each name, then its node.
    if (path === '') {
      this.nodes.set('', 2n);
      this.put(this.writer.dirent('.', 2n, 2n), '.');
      this.put(this.writer.dirent('..', 2n, 2n), '..');
      this.put(this.writer.entry(rel, st, 2n, e.headerOffset, FLAG_NODE), rel);
      return;
    }
    const slash = path.lastIndexOf('/');
    const parent = this.nodeOfDir(slash < 0 ? '' : path.slice(0, slash));
    let node: bigint;
    let flags = FLAG_NODE;
    const linked = e.type === 'hardlink' ? normalizeArchivePath(e.linkTarget ?? '') : null;
    if (linked !== null && this.nodes.has(linked)) {
      node = this.nodes.get(linked)!;
      flags = 0; // one ADD_NODE per node
    } else node = this.nextNode++;
    this.nodes.set(path, node);
    this.put(this.writer.dirent(path.slice(slash + 1), node, parent), path);
    this.put(this.writer.entry(rel, st, node, e.headerOffset, flags), rel);
  }

  /** A directory's node; one the stream never showed (a FILES backup's ancestors) is announced now. */
  private nodeOfDir(dir: string): bigint {
    const known = this.nodes.get(dir);
    if (known !== undefined) return known;
    const slash = dir.lastIndexOf('/');
    const parent = this.nodeOfDir(slash < 0 ? '' : dir.slice(0, slash));
    const node = this.nextNode++;
    this.nodes.set(dir, node);
    this.put(this.writer.dirent(dir.slice(slash + 1), node, parent), dir);
    return node;
  }

  private put(rec: Uint8Array | null, name: string): void {
    if (rec) this.history.write(rec);
    else this.hooks.warn(`${escapeName(name)}: name too long for file history; left out of it`);
  }
}

/** A history record's view of an archive entry. */
function statOf(e: ParsedEntry): HistoryStat {
  const ms = (t: PaxTime | undefined): bigint => (t ? t.sec * 1000n + BigInt(Math.floor(t.nsec / 1e6)) : 0n);
  const typeBits: Record<ParsedEntry['type'], number> = {
    file: 0o100000,
    hardlink: 0o100000,
    dir: 0o040000,
    symlink: 0o120000,
    fifo: 0o010000,
    chardev: 0o020000,
    blockdev: 0o060000,
  };
  const is = (t: ParsedEntry['type'][]) => () => t.includes(e.type);
  return {
    mode: BigInt(typeBits[e.type] | e.mode),
    uid: BigInt(e.uid),
    gid: BigInt(e.gid),
    nlink: 1n,
    mtimeMs: ms(e.mtime),
    atimeMs: ms(e.atime ?? e.mtime),
    ctimeMs: ms(e.ctime ?? e.mtime),
    size: e.type === 'symlink' ? BigInt(nameByteLength(e.linkTarget ?? '')) : e.size,
    isFile: is(['file', 'hardlink']),
    isDirectory: is(['dir']),
    isSymbolicLink: is(['symlink']),
    isFIFO: is(['fifo']),
    isCharacterDevice: is(['chardev']),
    isBlockDevice: is(['blockdev']),
    isSocket: () => false,
  };
}

// ---- sources --------------------------------------------------------------

/** LOCAL: the ring the session's own mover fills. Closing aborts it, which the mover takes as the end. */
export function ringSource(ring: SpscRing, aborted: () => boolean): RecoverSource {
  let held = 0;
  return {
    read: async (max) => {
      if (held > 0) ring.consume(held);
      held = 0;
      for (;;) {
        const { first } = ring.peek();
        if (first.length > 0) {
          held = Math.min(first.length, max);
          return first.subarray(0, held);
        }
        if (ring.ended || aborted()) return null;
        await ring.waitDataAsync(1000);
      }
    },
    close: () => {
      if (held > 0) ring.consume(held);
      held = 0;
      ring.abort();
    },
  };
}

/** Bytes queued from the socket before it is paused. */
const SOCKET_HIGH_WATER = 4 * 1024 * 1024;

/** TCP: the data connection from the mover. Closing half-closes it: the mover sees the end and halts. */
export function socketSource(sock: net.Socket, aborted: () => boolean): RecoverSource {
  const queue: Buffer[] = [];
  let queued = 0;
  let ended = false;
  let wake: (() => void) | null = null;
  const poke = (): void => {
    const w = wake;
    wake = null;
    w?.();
  };
  const onData = (b: Buffer): void => {
    queue.push(b);
    queued += b.length;
    if (queued >= SOCKET_HIGH_WATER) sock.pause();
    poke();
  };
  const onEnd = (): void => {
    ended = true;
    poke();
  };
  sock.on('data', onData);
  sock.on('end', onEnd);
  sock.on('close', onEnd);
  return {
    read: async (max) => {
      for (;;) {
        const head = queue[0];
        if (head) {
          const n = Math.min(head.length, max);
          if (n === head.length) queue.shift();
          else queue[0] = head.subarray(n);
          queued -= n;
          if (queued < SOCKET_HIGH_WATER) sock.resume();
          return head.subarray(0, n);
        }
        if (ended || aborted()) return null;
        await new Promise<void>((r) => {
          wake = r;
          setTimeout(poke, 1000);
        });
      }
    },
    close: () => {
      sock.off('data', onData);
      // The mover may still be sending what was asked: drop it, and let the
      // mover see our end of the connection close.
      sock.resume();
      sock.on('data', () => undefined);
      sock.end();
      setTimeout(() => sock.destroy(), 5000).unref();
    },
  };
}
