// `ndmp backup`: one backup of a server's path onto tapes, its file history
// into the catalog as it streams. It goes on its pool's tapes (docs/dma.md,
// "Pools and tapes"): after the data of an appendable one, else on a blank
// one, else from the start of a recyclable one. When the mover pauses at the
// end of a tape (EOM), the job marks the tape full, closes it, opens the next
// one, and continues; the catalog records each tape's part of the stream,
// which is all a restore needs to find any byte of it again. The part is
// recorded as soon as the tape is mounted and its length kept up to date
// with a heartbeat, so a backup that ends any way (a failure, a server shut
// down, this DMA killed) leaves its tapes known (docs/dma.md, "A DMA that
// died").

import {
  DataHaltReason,
  DataStateUnsupported,
  ErrorCode,
  INVALID_U64,
  M,
  NdmpError,
  MoverHaltReason,
  MoverPauseReason,
} from '../wire/index.js';
import type { Pval } from '../wire/index.js';
import type { BackupRecord, Catalog, TapeSegment } from '../catalog/types.js';
import { connectAgent, formatTarget } from './agent.js';
import type { AgentAddress, Credentials } from './agent.js';
import type { NdmpClient } from './client.js';
import { HistoryIngest } from './history-ingest.js';
import { rememberServer } from './identity.js';
import { JobLink, levelOfLog } from './job.js';
import { TapeLoader } from './loader.js';
import { listTapeServer } from './media.js';
import type { Medium } from './media.js';
import { StallWatch, WAITS, seconds, withBound } from './waits.js';
import { DmaUsageError } from './agent.js';
import { escapeName } from '../util/byte-name.js';
import os from 'node:os';
import {
  DEFAULT_POOL,
  NoTapeError,
  knownTapes,
  noTapeMessage,
  tapeCandidates,
  tapeServerKey,
} from './pools.js';
import type { WriteMode } from './pools.js';
import { HEARTBEAT_MS } from './abandoned.js';

export interface Progress {
  /** Stream bytes so far (DATA_GET_STATE bytes_processed). */
  bytes: number;
  /** The server's estimate of what is left, when it gives one. */
  bytesRemaining: number | null;
  /** The server's estimate of the time left (s), when it gives one. */
  secondsRemaining?: number | null;
  /** What the whole job will move, when known beforehand (a restore of a whole backup: its bytes). */
  bytesTotal?: number | null;
  /** Catalog rows so far. */
  files: number;
  /** The tape being written or read. */
  tape: string;
}

export interface JobEvents {
  progress?(p: Progress): void;
  /** A LOG_MESSAGE from the server, or a note of the job's own (tape changes). */
  message?(level: 'info' | 'warning' | 'error', text: string): void;
}

export interface BackupJobOptions {
  data: AgentAddress & { path: string };
  dataCred: Credentials;
  /** Three-way: the tape server, when it is not the data server. */
  tapeServer?: AgentAddress;
  tapeCred?: Credentials;
  /** TAPE_OPEN's device for the first tape; else the library's first blank tape. */
  device?: string;
  level: number;
  exclude: string[];
  /** 'y': path model (FH_ADD_FILE); 'd': dir/node model. */
  history: 'y' | 'd';
  /** More environment, passed as given. */
  env: Pval[];
  recordSize: number;
  catalog: Catalog;
  events?: JobEvents;
  signal?: AbortSignal;
  /** How often to ask for progress (ms). */
  pollMs?: number;
  /** A backup in which nothing moves (stream bytes, file history, catalog rows) for this long ends (ms). */
  stallMs?: number;
  /** The bound on one tape motion (open, rewind, spacing), which real drives take minutes over (ms). */
  tapeMotionMs?: number;
  /** The pool whose tapes it goes on (default 'default'). */
  pool?: string;
  /** With no tape to write on, wait this long for one (polling the library) before failing (ms; 0: fail at once). */
  waitForTapeMs?: number;
  /** How often the library is asked again while waiting for a tape (ms). */
  tapeWaitPollMs?: number;
}

export interface BackupOutcome {
  backup: BackupRecord;
  ok: boolean;
  /** LOG_MESSAGE warnings and errors. */
  warnings: number;
}

export async function runBackup(o: BackupJobOptions): Promise<BackupOutcome> {
  const data = await connectAgent(o.data, o.dataCred);
  let tape: NdmpClient = data;
  try {
    if (o.tapeServer) tape = await connectAgent(o.tapeServer, o.tapeCred ?? o.dataCred);
    const loader = await TapeLoader.forServer(
      tape,
      () => connectAgent(o.tapeServer ?? o.data, o.tapeCred ?? o.dataCred),
      (text) => o.events?.message?.('info', text),
    );
    try {
      return await new BackupJob(o, new JobLink(data, tape, o.tapeMotionMs), loader).run();
    } finally {
      await loader.close();
    }
  } finally {
    if (tape !== data) await tape.close();
    await data.close();
  }
}

class BackupJob {
  private readonly env: Pval[];
  private media: Medium[] = [];
  private readonly usedHere = new Set<string>();
  private readonly segments: TapeSegment[] = [];
  private current: Omit<TapeSegment, 'length'> | null = null;
  private warnings = 0;
  private failure: string | null = null;
  /** The mover's bytes_moved when last asked: where the current tape's part ends. */
  private bytesMoved = 0;
  private readonly server: string;
  private readonly tapeServer: string;
  /** What the last poll saw the server report (for the stall message). */
  private bytesProcessed = 0;
  private readonly pool: string;
  /** The tape server's key in the catalog's tapes table (its host id, else its address). */
  private tapeKey = '';
  private tapeServerHostId = '';
  private heartbeatTimer: NodeJS.Timeout | null = null;
  private heartbeatBusy = false;

  constructor(
    private readonly o: BackupJobOptions,
    private readonly link: JobLink,
    /** Gets each tape into a drive through the tape server's changer, when it has one. */
    private readonly loader: TapeLoader,
  ) {
    this.pool = o.pool ?? DEFAULT_POOL;
    this.server = formatTarget(o.data);
    this.tapeServer = o.tapeServer ? formatTarget(o.tapeServer) : this.server;
    this.env = [
      { name: 'FILESYSTEM', value: o.data.path },
      { name: 'TYPE', value: 'tar' },
      { name: 'HIST', value: o.history },
      { name: 'LEVEL', value: String(o.level) },
      ...o.exclude.map((value) => ({ name: 'EXCLUDE', value })),
      ...o.env,
    ];
  }

  private say(level: 'info' | 'warning' | 'error', text: string): void {
    this.o.events?.message?.(level, text);
  }

  /** A catalog call, bounded: a catalog that hangs must not hold the drive and the mover. */
  private catalogCall<T>(p: Promise<T>, what: string): Promise<T> {
    return withBound(
      p,
      WAITS.catalogCallMs,
      `the catalog (${this.o.catalog.location}) to ${what}`,
      'check the catalog database (is it up, is its disk full?), then run the backup again',
    );
  }

  /**
   * The next tape to write: the one asked for first, then the pool's
   * (docs/dma.md, "Pools and tapes"). With none, waits for one up to
   * --wait, polling the library, or fails saying what to do.
   */
  private async nextTape(
    backupId: number | null,
  ): Promise<{ device: string; barcode: string | null; chosen: boolean; how: WriteMode }> {
    if (this.usedHere.size === 0 && this.o.device) {
      // A tape by its name or barcode; or a drive, recorded by the tape in it: the catalog must
      // name the tape, which a later restore finds wherever it is, not the drive (docs/dma.md).
      const m =
        this.media.find((x) => x.device === this.o.device || x.barcode === this.o.device) ??
        this.media.find((x) => x.loadedIn === this.o.device);
      const known = m ? (await this.known()).get(m.barcode) : undefined;
      if (known && known.pool !== this.pool) {
        throw new DmaUsageError(
          `tape ${m!.barcode} is in pool ${known.pool}, not ${this.pool}: give --pool ${known.pool}, or another tape`,
        );
      }
      // A tape of the pool asked for by name is written as the pool's tapes are: a recyclable
      // one from its start, any other after its data (nothing on it is written over).
      const how: WriteMode = known?.state === 'recyclable' ? 'recycle' : 'append';
      return m
        ? { device: m.device, barcode: m.barcode, chosen: false, how }
        : { device: this.o.device, barcode: null, chosen: false, how: 'append' };
    }
    const waitMs = this.o.waitForTapeMs ?? 0;
    const deadline = Date.now() + waitMs;
    let said = false;
    for (;;) {
      this.media = (await listTapeServer(this.link.tape)).media;
      const known = await this.known();
      // Through a changer, only the tapes it holds can be loaded (its slots may be full).
      const inChanger = await this.loader.inChanger();
      const opts = { pool: this.pool, skip: this.usedHere, inChanger };
      const [best] = tapeCandidates(this.media, known, opts);
      if (best) {
        if (said) this.say('info', `tape ${best.medium.barcode} is there now; going on`);
        return { device: best.medium.device, barcode: best.medium.barcode, chosen: true, how: best.how };
      }
      const part = backupId === null ? undefined : { part: this.segments.length + 1, backupId };
      const why = noTapeMessage(this.tapeServer, this.media, known, opts, part);
      if (this.media.length === 0 && !inChanger) throw new NoTapeError(why);
      const left = deadline - Date.now();
      if (left <= 0 || this.o.signal?.aborted) {
        throw new NoTapeError(waitMs > 0 ? `${why} [waited ${seconds(waitMs)} for one]` : why);
      }
      if (!said) {
        said = true;
        this.say(
          'info',
          `no tape for pool ${this.pool} on ${this.tapeServer} yet; waiting up to ${seconds(waitMs)} for one ` +
            `(a blank tape, or one of the pool's freed by 'ndmp forget' and 'ndmp prune'), asking the library ` +
            `every ${seconds(this.tapeWaitPollMs)}`,
        );
      }
      await sleep(Math.min(left, this.tapeWaitPollMs), this.o.signal);
    }
  }

  private get tapeWaitPollMs(): number {
    return this.o.tapeWaitPollMs ?? 5000;
  }

  /** What the catalog knows of the tape server's tapes (docs/dma.md, "Pools and tapes"). */
  private async known() {
    const [records, backups] = await this.catalogCall(
      Promise.all([this.o.catalog.listTapes(), this.o.catalog.listBackups()]),
      'list the tapes in use',
    );
    return knownTapes(records, backups, this.tapeServerHostId, this.tapeServer);
  }

  private async mount(streamOffset: number, backupId: number | null): Promise<void> {
    for (;;) {
      const t = await this.nextTape(backupId);
      // Never offered again in this job: a tape that filled without taking a byte must not come back.
      this.usedHere.add(t.device);
      if (t.barcode) this.usedHere.add(t.barcode);
      let tapeFile: number;
      try {
        // A recycled tape is written from its start: ndmpd's tape image (as a real drive) drops
        // what follows a write, so its old tape files are gone (docs/dma.md, "Retention: forget and prune").
        tapeFile = await this.loader.mount(t, (device) =>
          t.how === 'recycle'
            ? this.link.openAt(device, 'write', 0).then(() => 0)
            : this.link.openForAppend(device),
        );
      } catch (e) {
        // Another job has that tape open (a DMA took the same tape a moment earlier, or appends
        // to it now): try the next one.
        if (t.chosen && e instanceof NdmpError && e.ndmpError === ErrorCode.NDMP_DEVICE_BUSY_ERR) {
          this.say('info', `tape ${t.barcode ?? t.device} is busy; taking another`);
          continue;
        }
        throw e;
      }
      this.current = {
        seq: this.segments.length,
        device: t.device,
        barcode: t.barcode,
        tapeFile,
        streamOffset,
      };
      const how = { append: 'after its data', blank: 'a blank tape', recycle: 'recycled, from its start' }[
        t.how
      ];
      this.say(
        'info',
        `writing tape ${t.barcode ?? t.device} (pool ${this.pool}, ${how}), file ${tapeFile}, from stream byte ${streamOffset}`,
      );
      // Recorded at once: whatever ends this backup, the tape is known to hold its data.
      if (backupId !== null) await this.recordMount(backupId);
      return;
    }
  }

  /**
   * Records the mounted tape: its part of the stream (length 0 so far) and
   * its membership of the pool, as appendable. Recorded at mount, not at the
   * end, so that a backup that never reaches its end still names its tapes.
   */
  private async recordMount(backupId: number): Promise<void> {
    if (!this.current) return;
    await this.catalogCall(
      this.o.catalog.addTapeSegment(backupId, { ...this.current, length: 0 }),
      'record a tape part',
    );
    await this.setTapeState('appendable');
  }

  private async setTapeState(state: 'appendable' | 'full'): Promise<void> {
    const c = this.current;
    if (!c) return;
    await this.catalogCall(
      this.o.catalog.putTape({
        tapeServer: this.tapeKey,
        barcode: c.barcode ?? c.device,
        pool: this.pool,
        state,
        updatedAt: Date.now(),
      }),
      'record the tape in its pool',
    );
  }

  /**
   * Ends the current tape part at `bytesMoved`. `counted`: the mover
   * answered at the end, so the count is exact; without it (the tape server
   * went away) the count is the last one seen, a lower bound, and the part
   * stays recorded even when it counted nothing: the tape may hold its data.
   */
  private async closeSegment(bytesMoved: number, backupId: number, counted = true): Promise<void> {
    if (!this.current) return;
    const seg: TapeSegment = {
      ...this.current,
      length: Math.max(0, bytesMoved - this.current.streamOffset),
    };
    this.current = null;
    if (!counted) {
      this.segments.push(seg);
      await this.catalogCall(this.o.catalog.addTapeSegment(backupId, seg), 'record a tape part');
      return;
    }
    if (seg.length <= 0) {
      // Nothing written on it: no part of this backup is there (the tape stays in the pool).
      await this.catalogCall(this.o.catalog.removeTapeSegment(backupId, seg.seq), 'record a tape part');
      return;
    }
    this.segments.push(seg);
    await this.catalogCall(this.o.catalog.addTapeSegment(backupId, seg), 'record a tape part');
  }

  /**
   * The running backup's sign of life, every HEARTBEAT_MS: the heartbeat
   * time, the bytes the mover has moved, and the current tape part's length
   * so far. A later `ndmp` tells a backup whose DMA died by it (docs/dma.md,
   * "A DMA that died"). Failures are left to the next beat: the job's own
   * catalog calls report a broken catalog.
   */
  private startHeartbeat(backupId: number): void {
    const beat = async () => {
      if (this.heartbeatBusy) return;
      this.heartbeatBusy = true;
      try {
        const bytes = this.bytesMoved;
        await this.o.catalog.heartbeat(backupId, Date.now(), bytes);
        const c = this.current;
        if (c && bytes > c.streamOffset) {
          await this.o.catalog.addTapeSegment(backupId, { ...c, length: bytes - c.streamOffset });
        }
      } catch {
        /* the next beat tries again */
      } finally {
        this.heartbeatBusy = false;
      }
    };
    this.heartbeatTimer = setInterval(() => void beat(), HEARTBEAT_MS);
    this.heartbeatTimer.unref();
  }

  private stopHeartbeat(): void {
    if (this.heartbeatTimer) clearInterval(this.heartbeatTimer);
    this.heartbeatTimer = null;
  }

  async run(): Promise<BackupOutcome> {
    const { data, tape } = this.link;
    const { catalog } = this.o;
    this.media = (await listTapeServer(tape)).media;
    if (!this.o.device && this.media.length === 0 && !this.loader.viaChanger) {
      throw new NoTapeError(`${this.tapeServer} lists no tapes; give --tape DEVICE`);
    }

    // The servers by identity, so a restore finds them after they move (docs/dma.md, "Servers").
    const dataWho = await this.catalogCall(
      rememberServer(catalog, data, this.o.data),
      'record the data server',
    );
    const tapeWho = this.link.local
      ? dataWho
      : await this.catalogCall(rememberServer(catalog, tape, this.o.tapeServer!), 'record the tape server');
    this.tapeServerHostId = tapeWho.id;
    this.tapeKey = tapeServerKey(tapeWho.id, this.tapeServer);

    await tape.call(M.MOVER_SET_RECORD_SIZE, { len: this.o.recordSize });
    await this.mount(0, null);

    const id = await this.catalogCall(
      catalog.beginBackup({
        server: this.server,
        serverId: dataWho.id,
        path: escapeName(this.o.data.path), // the catalog holds printed forms only (docs/names.md)
        tapeServer: this.tapeServer,
        tapeServerId: tapeWho.id,
        butype: 'tar',
        level: this.o.level,
        historyModel: this.o.history === 'd' ? 'dirnode' : 'path',
        recordSize: this.o.recordSize,
        env: Object.fromEntries(this.env.map((p) => [p.name, p.value])),
        startedAt: Date.now(),
        pool: this.pool,
        dmaHost: os.hostname(),
        dmaPid: process.pid,
      }),
      'record the new backup',
    );
    // From here a failure of any kind leaves the first tape part recorded (docs/dma.md, "A DMA that died").
    this.startHeartbeat(id);
    try {
      await this.catalogCall(
        catalog.addTapeSegment(id, { ...this.current!, length: 0 }),
        'record a tape part',
      );
    } catch (e) {
      this.stopHeartbeat();
      await this.link.teardown();
      await this.loader.unmount();
      await catalog
        .finishBackup(id, {
          status: 'failed',
          haltReason: (e as Error).message,
          bytes: 0,
          resultEnv: {},
          finishedAt: Date.now(),
        })
        .catch(() => undefined);
      throw e;
    }
    // An incremental's directory listings let `ndmp ls`/`restore` see its tree as of then (docs/dma.md).
    const ingest = new HistoryIngest(data, catalog, id, { listings: this.o.level > 0 });
    data.onPost(M.LOG_MESSAGE, (b) => {
      const level = levelOfLog(b.logType);
      if (level !== 'info') this.warnings++;
      this.say(level, b.entry);
    });

    // From here on the backup is in the catalog, and is finished there whatever happens.
    let thrown: unknown = null;
    let started = false;
    try {
      await this.link.connectStream('backup', { offset: 0n, length: INVALID_U64 });
      await data.call(M.DATA_START_BACKUP, { butypeName: 'tar', env: this.env });
      started = true;
      // The tape joins the pool (a blank one), or is rewritten (a recycled one): appendable.
      await this.setTapeState('appendable');
      await this.monitor(id, ingest);
    } catch (e) {
      thrown = e;
      this.failure ??= (e as Error).message;
    }
    if (!started && thrown instanceof NdmpError) {
      // Refused before anything was written (the error carries the server's reason): no backup
      // happened, so none stays in the list.
      this.stopHeartbeat();
      await this.link.teardown();
      await this.loader.unmount();
      await this.catalogCall(catalog.deleteBackup(id), 'forget the backup that did not start');
      throw thrown;
    }
    const dataHalt = this.link.dataHalt;
    const moverHalt = this.link.moverHalt;
    const ok =
      this.failure === null &&
      dataHalt?.reason === DataHaltReason.NDMP_DATA_HALT_SUCCESSFUL &&
      moverHalt?.reason === MoverHaltReason.NDMP_MOVER_HALT_CONNECT_CLOSED;
    let resultEnv: Record<string, string> = {};
    if (ok) {
      // Without it the backup is still whole; only DIRECT (DAR) and DUMP_DATE are unknown.
      const env = await data.call(M.DATA_GET_ENV, {}).catch(() => null);
      if (env) resultEnv = Object.fromEntries(env.env.map((p) => [p.name, p.value]));
    }
    await this.link.teardown();
    await this.loader.unmount();
    // A tape server that went away cannot say how far its mover got (docs/dma.md, "A DMA that died").
    const counted = this.link.lost() === null;
    await this.closeSegment(this.bytesMoved, id, counted).catch(
      (e: Error) => (this.failure ??= `catalog: ${e.message}`),
    );
    let haltReason = this.failure ?? `data ${dataHalt?.name ?? '?'}, mover ${moverHalt?.name ?? '?'}`;
    if (!counted) {
      haltReason += ` [${this.bytesMoved} bytes counted before the connection was lost: the tapes may hold more]`;
    }
    let drained = true;
    try {
      await ingest.drain(this.o.stallMs ?? WAITS.stallMs);
    } catch (e) {
      drained = false;
      haltReason = `catalog: ${(e as Error).message}`;
    }
    if (ingest.orphans > 0) {
      this.say(
        'warning',
        `${ingest.orphans} history entries named no place in the tree; they are not in the catalog`,
      );
    }
    if (ingest.tooLong > 0) {
      this.say(
        'warning',
        `${ingest.tooLong} history entries have names too long for the catalog; they are in the backup but not in the catalog`,
      );
    }
    const status = ok && drained && !ingest.error ? 'done' : 'failed';
    const text = [dataHalt?.text, moverHalt?.text].filter(Boolean).join('; ');
    // The reason on stderr too: stdout may be --json, or a pipe.
    if (status === 'failed' && !thrown) this.say('error', haltReason);
    this.stopHeartbeat();
    await this.catalogCall(
      catalog.finishBackup(id, {
        status,
        haltReason: status === 'done' || !text ? haltReason : `${haltReason} (${text})`,
        bytes: this.bytesMoved,
        resultEnv,
        finishedAt: Date.now(),
      }),
      'record the end of the backup',
    );
    if (thrown) throw thrown;
    const backup = await this.catalogCall(catalog.getBackup(id), 'read the backup back');
    return { backup: backup!, ok: status === 'done', warnings: this.warnings };
  }

  /**
   * Runs the backup to both halts, changing tapes at EOM. As long as it
   * takes, provided something moves: the server's stream bytes, its file
   * history, the catalog's rows. Nothing for the stall timeout ends it.
   */
  private async monitor(id: number, ingest: HistoryIngest): Promise<void> {
    const { tape } = this.link;
    const pollMs = this.o.pollMs ?? 1000;
    const stall = new StallWatch(this.o.stallMs ?? WAITS.stallMs);
    let lastPoll = 0;
    let dataHaltSeen = 0;
    const abortBoth = async (why: string) => {
      this.failure ??= why;
      await this.link.abort();
    };
    while (!(this.link.dataHalt && this.link.moverHalt)) {
      const gone = this.link.lost();
      if (gone) throw gone;
      if (this.o.signal?.aborted) await abortBoth('interrupted');
      if (ingest.error) await abortBoth(`catalog: ${ingest.error.message}`);
      // One side halted and the other not: a failed data side leaves the mover waiting, and vice versa.
      if (this.link.dataHalt && !this.link.moverHalt && this.link.dataHalt.name !== 'SUCCESSFUL') {
        await abortBoth(`data halted ${this.link.dataHalt.name}`);
      }
      // The mover halts CONNECT_CLOSED as the stream ends, often before the data side has sent its last history.
      if (this.link.moverHalt && !this.link.dataHalt && this.link.moverHalt.name !== 'CONNECT_CLOSED') {
        await abortBoth(`mover halted ${this.link.moverHalt.name}`);
      }
      // Once aborted, or once the data side is done and the mover lingers, both sides get a
      // bounded time to halt (asked, not only awaited as notices).
      if (this.link.dataHalt && dataHaltSeen === 0) dataHaltSeen = Date.now();
      if (this.link.aborted || (dataHaltSeen > 0 && Date.now() - dataHaltSeen > WAITS.haltGraceMs)) {
        const still = await this.link.waitBothHalted(WAITS.haltGraceMs);
        if (still) this.failure ??= still;
        break;
      }

      const pause = this.link.takePause();
      if (pause) {
        const st = await tape.call(M.MOVER_GET_STATE, {});
        this.bytesMoved = Number(st.bytesMoved);
        if (
          pause.reason === MoverPauseReason.NDMP_MOVER_PAUSE_EOM ||
          pause.reason === MoverPauseReason.NDMP_MOVER_PAUSE_EOW
        ) {
          // A mover the server halted meanwhile (an abort of its own: shutting down) refuses the
          // change's requests; the halt, and its reason, is the story, not the refused request.
          await this.changeTape(id, this.bytesMoved, st.bytesMoved).catch((e: Error) =>
            abortBoth(this.link.moverHalt ? `mover halted ${this.link.moverHalt.name}` : e.message),
          );
        } else {
          await abortBoth(`the mover paused ${pause.name}`);
        }
        // A tape change is the job's own wait, not the server's stall.
        stall.reset();
        continue;
      }
      if (Date.now() - lastPoll >= pollMs) {
        lastPoll = Date.now();
        // While the catalog holds reading back, replies would wait unread: no requests then.
        // A request that times out abandons its connection; lost() ends the job at the next turn.
        if (!ingest.readingHeld) await this.poll(ingest).catch(() => undefined);
        stall.note(this.bytesProcessed, this.bytesMoved, ingest.received, ingest.rows);
        if (stall.expired) await abortBoth(this.stallText(stall, ingest));
      }
      await this.link.next(Math.min(pollMs, 250));
    }
    const st = await tape.call(M.MOVER_GET_STATE, {}).catch(() => null);
    if (st) this.bytesMoved = Number(st.bytesMoved);
  }

  /** Why a backup in which nothing moved is ended, and what to do. */
  private stallText(stall: StallWatch, ingest: HistoryIngest): string {
    const quiet = seconds(stall.limitMs);
    if (ingest.readingHeld) {
      return (
        `the catalog (${this.o.catalog.location}) stored no file history for ${quiet} (${ingest.rows} rows so far): ` +
        'check the catalog database, then run the backup again'
      );
    }
    return (
      `nothing moved for ${quiet}: ${this.server} reports no new stream bytes (${this.bytesProcessed} so far, ` +
      `${this.bytesMoved} on tape) and sent no file history; see the server's log for what it waits on, ` +
      'or give --stall-timeout SECONDS if this backup may legitimately go quiet for longer'
    );
  }

  private async changeTape(id: number, bytesMoved: number, offset: bigint): Promise<void> {
    const { tape } = this.link;
    const from = this.current?.barcode ?? this.current?.device;
    // At its end: the pool's next backup goes on another tape (docs/dma.md, "Pools and tapes").
    await this.setTapeState('full');
    await this.closeSegment(bytesMoved, id);
    // The bytes so far with the part just closed: a DMA that dies now leaves them counted.
    await this.catalogCall(this.o.catalog.heartbeat(id, Date.now(), bytesMoved), 'record the bytes so far');
    await tape.call(M.TAPE_CLOSE, {});
    await this.loader.unmount();
    this.say('info', `tape ${from} is full at stream byte ${bytesMoved}`);
    await this.mount(bytesMoved, id);
    // A window starts on a record (draft App. D.8). bytes_moved counts only the payload, so after
    // the stream's last record, padded and written as the tape reached its early warning, it
    // is not a multiple of the record size; the next tape's window starts after that record.
    const rs = BigInt(this.o.recordSize);
    const windowOffset = ((offset + rs - 1n) / rs) * rs;
    await tape.call(M.MOVER_SET_WINDOW, { offset: windowOffset, length: INVALID_U64 });
    await tape.call(M.MOVER_CONTINUE, {});
  }

  /** Asks both sides how far they are: progress for the user, and proof that they are alive. */
  private async poll(ingest: HistoryIngest): Promise<void> {
    const st = await this.link.data.call(M.DATA_GET_STATE, {});
    this.bytesProcessed = Number(st.bytesProcessed);
    const mover = await this.link.tape.call(M.MOVER_GET_STATE, {});
    if (!this.link.moverHalt) this.bytesMoved = Math.max(this.bytesMoved, Number(mover.bytesMoved));
    if (!this.o.events?.progress) return;
    const remainKnown =
      (st.unsupported & DataStateUnsupported.EST_BYTES_REMAIN) === 0 && st.estBytesRemain !== INVALID_U64;
    const timeKnown = (st.unsupported & DataStateUnsupported.EST_TIME_REMAIN) === 0;
    this.o.events.progress({
      bytes: Number(st.bytesProcessed),
      bytesRemaining: remainKnown ? Number(st.estBytesRemain) : null,
      secondsRemaining: timeKnown ? st.estTimeRemain : null,
      files: ingest.rows,
      tape: this.current?.barcode ?? this.current?.device ?? '',
    });
  }
}

/** Waits `ms`, or less when `signal` aborts. */
function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}
