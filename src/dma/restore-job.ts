// `ndmp restore`: files of a cataloged backup back onto a server. Named files
// go by Direct Access Recovery when the server offers it and the catalog has
// their fh_info: the server asks for just the regions it needs, and the job
// moves the tape there (another tape when the stream spans several). Without
// DAR, or for a whole backup, the stream is read from its start, tape after
// tape.

import { ButypeAttr, DataHaltReason, INVALID_U64, M, RecoveryStatus, nameOf } from '../wire/index.js';
import type { NlistName, Pval } from '../wire/index.js';
import type { BackupRecord, Catalog, FileRow } from '../catalog/types.js';
import { DmaUsageError, connectAgent } from './agent.js';
import { addressOf, checkIdentity, knownServers, movedHint, rememberServer } from './identity.js';
import type { AgentAddress, Credentials } from './agent.js';
import type { JobEvents } from './backup-job.js';
import type { NdmpClient } from './client.js';
import { escapeName, unescapeName } from '../util/byte-name.js';
import { catalogPath } from './history-ingest.js';
import { TapeLoader } from './loader.js';
import { SegmentReader } from './tape-segments.js';
import { JobLink, levelOfLog } from './job.js';
import { StallWatch, WAITS, seconds, withBound } from './waits.js';

export interface RestoreJobOptions {
  backup: BackupRecord;
  /**
   * Paths inside the backup ("/a/b"), in the printed form `ndmp ls` shows
   * (docs/names.md), or typed with plain backslashes; none: the whole backup.
   */
  paths: string[];
  /**
   * The rows to restore, already looked up (a point-in-time restore gives
   * each backup of a chain its own: src/dma/restore-as-of.ts); `paths` is
   * then not looked up.
   */
  rows?: FileRow[];
  /** Absolute directory on the data server the files go under (their backup paths kept below it); printed form too. */
  to: string;
  /** The data server to restore onto; else the one backed up, where it answered last. */
  dataServer?: AgentAddress;
  /** Where the backup's tape server answers now, when it moved; else where it answered last. */
  tapeServer?: AgentAddress;
  dataCred: Credentials;
  tapeCred?: Credentials;
  /** OVERWRITE for our server: always, never, older. */
  overwrite?: string;
  /** Refuse DAR even when it could be used. */
  noDar?: boolean;
  /** RESTORE_SPECIAL=y: device nodes, fifos and setuid/setgid bits as stored (ndmpd withholds them by default). */
  special?: boolean;
  env: Pval[];
  catalog: Catalog;
  events?: JobEvents;
  signal?: AbortSignal;
  pollMs?: number;
  /** A restore in which nothing moves (stream bytes, LOG_FILEs, reads asked for) for this long ends (ms). */
  stallMs?: number;
  /** The bound on one tape motion (open, rewind, spacing), which real drives take minutes over (ms). */
  tapeMotionMs?: number;
}

export interface FileOutcome {
  path: string;
  ok: boolean;
  /** SUCCESSFUL, FAILED_NOT_FOUND, ... */
  status: string;
}

export interface RestoreOutcome {
  ok: boolean;
  dar: boolean;
  /** Per named path (LOG_FILE); for a whole restore, only the entries the server reported. */
  files: FileOutcome[];
  dataHalt: string;
  moverHalt: string;
  /** Why it failed, when it did. */
  reason: string | null;
  /** Tapes mounted, in order. */
  tapesRead: string[];
}

/**
 * Tape agents whose mover serves MOVER_READ only in whole records: a DAR
 * region shorter than a record never completes there. Amanda's ndmjob tape
 * agent (ndmta_read_quantum) waits for a full record's worth of the read.
 */
const RECORD_GRANULAR_TAPE_AGENTS = ['NDMJOB'];

/**
 * The catalog's (printed) path of a path a person typed: unescapeName reads
 * `\\` and `\xHH` and keeps any other backslash as it is, so both the printed
 * form and a name typed with a plain backslash come to the same name.
 */
export function typedPath(p: string): string {
  return catalogPath(unescapeName(p));
}

/** The rows of `paths` in a backup; every missing name is a usage error. */
export async function resolvePaths(
  catalog: Catalog,
  backup: BackupRecord,
  paths: string[],
): Promise<FileRow[]> {
  const wanted = paths.map(typedPath);
  const rows = await withBound(
    catalog.lookup(backup.id, wanted),
    WAITS.catalogCallMs,
    `the catalog (${catalog.location}) to look up ${wanted.length} paths`,
    'check the catalog database, then run the restore again',
  );
  const found = new Set(rows.map((r) => r.path));
  const missing = wanted.filter((p) => !found.has(p));
  if (missing.length > 0) {
    throw new DmaUsageError(`not in backup ${backup.id}: ${missing.join(', ')}`);
  }
  const byPath = new Map(rows.map((r) => [r.path, r]));
  return wanted.map((p) => byPath.get(p)!);
}

export async function runRestore(o: RestoreJobOptions): Promise<RestoreOutcome> {
  const b = o.backup;
  if (b.tapes.length === 0)
    throw new DmaUsageError(`backup ${b.id} has no tapes recorded (status ${b.status})`);
  if (!o.to.startsWith('/'))
    throw new DmaUsageError(`--to must be an absolute path on the server, not '${o.to}'`);
  const rows = o.rows ?? (o.paths.length > 0 ? await resolvePaths(o.catalog, b, o.paths) : []);
  const known = await knownServers(o.catalog, 'restore');
  // By identity: where the server answered last, unless the user says where it is now (docs/dma.md, "Servers").
  const dataAddr = addressOf(known, b.serverId, b.server, o.dataServer);
  const data = await connectAgent(dataAddr, o.dataCred).catch((e: unknown) => {
    throw movedHint(e, o.dataServer ? null : '--server');
  });
  let tape: NdmpClient = data;
  try {
    const dataWho = await rememberServer(o.catalog, data, dataAddr);
    // Onto another server is what --server is for; without it, the server there must be the one backed up.
    if (!o.dataServer)
      checkIdentity(dataWho, { id: b.serverId }, dataAddr, `backup ${b.id} was made on`, '--server');
    const wasLocal = b.tapeServerId !== '' ? b.tapeServerId === b.serverId : b.tapeServer === b.server;
    // The backup's tapes are on the data server we reached: the stream stays inside it.
    const local =
      !o.tapeServer &&
      wasLocal &&
      (b.tapeServerId !== '' && dataWho.id !== '' ? dataWho.id === b.tapeServerId : !o.dataServer);
    const tapeAddr = local ? dataAddr : addressOf(known, b.tapeServerId, b.tapeServer, o.tapeServer);
    if (!local) {
      tape = await connectAgent(tapeAddr, o.tapeCred ?? o.dataCred).catch((e: unknown) => {
        throw movedHint(e, o.tapeServer ? null : '--tape-server');
      });
      const tapeWho = await rememberServer(o.catalog, tape, tapeAddr);
      checkIdentity(
        tapeWho,
        { id: b.tapeServerId },
        tapeAddr,
        `whose tapes hold backup ${b.id}`,
        '--tape-server',
      );
    }
    const loader = await TapeLoader.forServer(
      tape,
      () => connectAgent(tapeAddr, o.tapeCred ?? o.dataCred),
      (text) => o.events?.message?.('info', text),
    );
    try {
      return await new RestoreJob(o, rows, new JobLink(data, tape, o.tapeMotionMs), loader).run();
    } finally {
      await loader.close();
    }
  } finally {
    if (tape !== data) await tape.close();
    await data.close();
  }
}

class RestoreJob {
  private readonly files = new Map<string, FileOutcome>();
  /** The backup's tape parts: which holds a byte, mounting them, the mover's pauses at their ends. */
  private readonly tapes: SegmentReader;
  private failure: string | null = null;
  private readFailure: string | null = null;
  /** The catalog's stream offsets of the backup's entries, ascending (a whole restore's progress). */
  private offsets: Float64Array | null = null;
  /** NOTIFY_DATA_READs seen: progress of a DAR restore that is positioning the tape. */
  private readsAsked = 0;

  constructor(
    private readonly o: RestoreJobOptions,
    private readonly rows: FileRow[],
    private readonly link: JobLink,
    /** Gets each tape into a drive through the tape server's changer, when it has one. */
    private readonly loader: TapeLoader,
  ) {
    this.tapes = new SegmentReader(o.backup.tapes, link, loader, (text) => this.say('info', text));
  }

  private say(level: 'info' | 'warning' | 'error', text: string): void {
    this.o.events?.message?.(level, text);
  }

  /**
   * DAR needs names, their offsets, a data server that says it can (butype
   * attribute RECOVER_DIRECT), and a tape server that serves any byte range.
   */
  private async canUseDar(): Promise<boolean> {
    if (this.o.noDar || this.rows.length === 0 || this.rows.some((r) => r.fhInfo === null)) return false;
    if (!this.link.local) {
      const info = await this.link.tape.call(M.CONFIG_GET_SERVER_INFO, {}).catch(() => null);
      if (info && RECORD_GRANULAR_TAPE_AGENTS.includes(info.productName)) {
        this.say(
          'info',
          `tape server ${info.productName} reads whole records only: reading the stream from its start`,
        );
        return false;
      }
    }
    try {
      const { butypeInfo } = await this.link.data.call(M.CONFIG_GET_BUTYPE_INFO, {});
      const tar = butypeInfo.find((x) => x.butypeName === this.o.backup.butype);
      return tar !== undefined && (tar.attrs & ButypeAttr.NDMP_BUTYPE_RECOVER_DIRECT) !== 0;
    } catch {
      return false;
    }
  }

  /** --to as the server gets it: the lossless string of what was typed. */
  private get to(): string {
    return unescapeName(this.o.to);
  }

  private nlist(dar: boolean): NlistName[] {
    const to = this.to.replace(/\/+$/, '');
    const v3 = this.link.data.version === 3;
    return this.rows.map((r) => {
      // The catalog holds the printed form; the server gets the exact bytes (as lossless strings).
      const original = unescapeName(r.path);
      const dest = original === '/' ? to || '/' : `${to}${original}`;
      const cut = dest.lastIndexOf('/');
      return {
        originalPath: original,
        // v3's destination_dir + new_name; v4's destination_path (docs/protocol.md §9.2).
        destinationPath: v3 ? dest.slice(0, cut) || '/' : dest,
        name: v3 ? dest.slice(cut + 1) : '',
        otherName: '',
        node: r.node === null ? INVALID_U64 : BigInt(r.node),
        fhInfo: dar && r.fhInfo !== null ? BigInt(r.fhInfo) : INVALID_U64,
      };
    });
  }

  private env(dar: boolean): Pval[] {
    const b = this.o.backup;
    const keep = ['FILESYSTEM', 'TYPE', 'PATHNAME_SEPARATOR'];
    const env: Pval[] = [];
    for (const k of keep) {
      const v = b.resultEnv[k] ?? b.env[k];
      if (v !== undefined) env.push({ name: k, value: v });
    }
    env.push({ name: 'HIST', value: 'n' });
    env.push({ name: 'DIRECT', value: dar ? 'y' : 'n' });
    if (this.rows.length === 0) env.push({ name: 'PREFIX', value: this.to });
    if (this.o.overwrite) env.push({ name: 'OVERWRITE', value: this.o.overwrite });
    if (this.o.special) env.push({ name: 'RESTORE_SPECIAL', value: 'y' });
    return [...env, ...this.o.env];
  }

  /**
   * Entries of a whole restore that the stream has passed the start of: the
   * server reports (LOG_FILE) only what went wrong there, so the count comes
   * from the catalog's stream offsets (docs/dma.md, "Progress").
   */
  private filesBefore(bytes: number): number {
    const at = this.offsets;
    if (!at) return 0;
    let lo = 0;
    let hi = at.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (at[mid]! < bytes) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  async run(): Promise<RestoreOutcome> {
    const { data, tape } = this.link;
    const b = this.o.backup;
    const dar = await this.canUseDar();
    // For progress only: a catalog that cannot say leaves the count to the LOG_FILEs.
    if (this.rows.length === 0 && this.o.events?.progress) {
      this.offsets = await withBound(
        this.o.catalog.streamOffsets(b.id),
        WAITS.catalogCallMs,
        'the catalog to list the stream offsets',
        '',
      ).catch(() => null);
    }
    data.onPost(M.LOG_FILE, (p) => {
      const status = nameOf(RecoveryStatus, p.recoveryStatus).replace('NDMP_RECOVERY_', '');
      const ok = p.recoveryStatus === RecoveryStatus.NDMP_RECOVERY_SUCCESSFUL;
      // The server names the entry by the original_path it was sent: printed, that is the catalog's path.
      const path = escapeName(p.name);
      this.files.set(path, { path, ok, status });
      if (!ok) this.say('warning', `${path}: ${status}`);
    });
    data.onPost(M.LOG_MESSAGE, (p) => this.say(levelOfLog(p.logType), p.entry));
    // Forwarded as they come: the data service says which bytes it needs next (docs/protocol.md §7.5).
    data.onPost(M.NOTIFY_DATA_READ, (p) => {
      this.readsAsked++;
      // A refused read leaves the data server waiting for bytes that never come: end the job.
      tape.call(M.MOVER_READ, p).catch((e: Error) => {
        this.readFailure ??= `MOVER_READ refused: ${e.message}`;
      });
    });

    const first = dar
      ? this.tapes.segmentAt(BigInt(Math.min(...this.rows.map((r) => r.fhInfo!))))!
      : b.tapes[0]!;
    try {
      await tape.call(M.MOVER_SET_RECORD_SIZE, { len: b.recordSize });
      await this.tapes.mount(first);
      await this.link.connectStream('recover', this.tapes.window(first));
      await data.call(M.DATA_START_RECOVER, {
        butypeName: b.butype,
        env: this.env(dar),
        nlist: this.nlist(dar),
      });
      await this.monitor();
    } catch (e) {
      await this.link.teardown();
      await this.loader.unmount();
      throw e;
    }
    const dataHalt = this.link.dataHalt!;
    const moverHalt = this.link.moverHalt!;
    await this.link.teardown();
    await this.loader.unmount();
    const files = this.rows.map(
      (r) => this.files.get(r.path) ?? { path: r.path, ok: false, status: 'NOT_REPORTED' },
    );
    // A whole restore reports only what went wrong.
    if (this.rows.length === 0) files.push(...this.files.values());
    const ok =
      this.failure === null &&
      dataHalt.reason === DataHaltReason.NDMP_DATA_HALT_SUCCESSFUL &&
      files.every((f) => f.ok);
    let reason = this.failure;
    if (!reason && dataHalt.reason !== DataHaltReason.NDMP_DATA_HALT_SUCCESSFUL) {
      reason = `data ${dataHalt.name}${dataHalt.text ? `: ${dataHalt.text}` : ''}`;
    }
    if (!reason && !ok) reason = `${files.filter((f) => !f.ok).length} of ${files.length} files not restored`;
    return {
      ok,
      dar,
      files,
      dataHalt: dataHalt.name,
      moverHalt: moverHalt.name,
      reason,
      tapesRead: this.tapes.tapesRead,
    };
  }

  /**
   * Runs the restore until the data side halts: as long as it takes,
   * provided something moves (stream bytes, LOG_FILEs, reads asked for).
   */
  private async monitor(): Promise<void> {
    const { data, tape } = this.link;
    const pollMs = this.o.pollMs ?? 1000;
    const stall = new StallWatch(this.o.stallMs ?? WAITS.stallMs);
    let lastPoll = 0;
    let bytes = 0;
    const abort = async (why: string) => {
      this.failure ??= why;
      await this.link.abort();
    };
    while (!this.link.dataHalt) {
      const gone = this.link.lost();
      if (gone) throw gone;
      if (this.o.signal?.aborted) await abort('interrupted');
      if (this.readFailure) await abort(this.readFailure);
      if (this.link.moverHalt && !this.link.dataHalt && this.link.moverHalt.name !== 'CONNECT_CLOSED') {
        await abort(`mover halted ${this.link.moverHalt.name}`);
      }
      const pause = this.link.takePause();
      if (pause) {
        await this.tapes.onPause(pause.reason, pause.seekPosition).catch((e: Error) => abort(e.message));
        // A tape change is the job's own wait, not the server's stall.
        stall.reset();
        continue;
      }
      if (this.link.aborted) {
        // Asked to stop: a bounded wait for the halts, then the job ends whatever they did.
        const still = await this.link.waitBothHalted(WAITS.haltGraceMs);
        if (still) this.failure ??= still;
        break;
      }
      if (Date.now() - lastPoll >= pollMs) {
        lastPoll = Date.now();
        // Proof of life as well as progress: a poll that times out abandons its connection,
        // and lost() ends the job at the next turn.
        const st = await data.call(M.DATA_GET_STATE, {}).catch(() => null);
        if (st) bytes = Number(st.bytesProcessed);
        if (st && this.o.events?.progress) {
          this.o.events.progress({
            bytes,
            bytesRemaining: null,
            // A whole restore reads the stream from its start: its size is the backup's.
            bytesTotal: this.rows.length === 0 ? this.o.backup.bytes : null,
            files: Math.max(this.files.size, this.filesBefore(bytes)),
            tape: this.tapes.segment?.barcode ?? this.tapes.segment?.device ?? '',
          });
        }
        stall.note(bytes, this.files.size, this.readsAsked, this.tapes.tapesRead.length);
        if (stall.expired) {
          await abort(
            `nothing moved for ${seconds(stall.limitMs)}: the data server reports no new stream bytes ` +
              `(${bytes} so far) and no file restored; see the server's log for what it waits on, ` +
              'or give --stall-timeout SECONDS if this restore may legitimately go quiet for longer',
          );
        }
      }
      await this.link.next(Math.min(pollMs, 250));
    }
    // The data side is done. Our mover then halts by itself (CONNECT_CLOSED);
    // a mover that still waits for reads is told the stream is over, as ndmjob does.
    if (this.link.dataHalt && !this.link.moverHalt) {
      await this.link.next(500);
      if (!this.link.moverHalt) await tape.call(M.MOVER_CLOSE, {}).catch(() => undefined);
      await this.link.waitBothHalted(WAITS.recoverMoverGraceMs).catch(() => undefined);
    }
    if (!this.link.moverHalt) this.link.moverHalt = { reason: 0, name: 'NA', text: '' };
    // Ended on this side after an abort the data side never answered (this.failure says so).
    if (!this.link.dataHalt) this.link.dataHalt = { reason: 0, name: 'NA', text: '' };
  }
}
