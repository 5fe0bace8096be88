// Direct Access Recovery from a big backup (issue 14, item 6): one file of a
// backup of ≥ 2 GiB restored by DAR (DIRECT=y and the file's fh_info, as
// `ndmp restore` sends from the catalog: src/dma/restore-job.ts), against the
// same file restored by reading the stream from its start (DIRECT=n). Printed:
// the bytes the mover moved from tape to the data service (MOVER_GET_STATE's
// bytes_moved), the bytes the data service processed, and the time from
// DATA_START_RECOVER's reply to NOTIFY_DATA_HALTED.
//
// The DMA is our client driving the messages itself (LOCAL, one server, as the
// backup benchmark does), not `ndmp restore`, so no catalog is needed: the
// file's fh_info comes from the FH_ADD_FILE posts of the backup just made. The
// file picked is the regular file whose fh_info is nearest the middle of the
// stream: a whole-stream read must pass half the backup to reach it.

import { existsSync, lstatSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';

import { NdmpClient } from '../src/dma/client.js';
import {
  AddrType,
  DataHaltReason,
  FileType,
  INVALID_U64,
  M,
  MoverMode,
  RecoveryStatus,
  TapeMtioOp,
  TapeOpenMode,
} from '../src/wire/index.js';
import type { HaltedPost } from '../src/wire/index.js';
import type { Corpus } from './corpus.js';
import type { Ndmpd } from './ndmpd-child.js';
import { BackupJob, PASSWORD, USER, nameOf, sleep } from './ndmpd-child.js';

export interface RecoverFigures {
  /** MOVER_GET_STATE bytes_moved: what the mover read from tape for the data service. */
  moverBytes: number;
  /** DATA_GET_STATE bytes_processed. */
  dataBytes: number;
  /** DATA_START_RECOVER's reply → NOTIFY_DATA_HALTED. */
  ms: number;
  /** NOTIFY_DATA_READs the data service sent (DAR seeks). */
  reads: number;
}

export interface DarFigures {
  /** The backup's stream bytes. */
  streamBytes: number;
  path: string;
  size: number;
  fhInfo: bigint;
  dar: RecoverFigures;
  scan: RecoverFigures;
}

const RECOVER_TIMEOUT_MS = 600_000;

/** The file whose fh_info is nearest the middle of the stream. */
interface Candidate {
  path: string;
  size: number;
  fhInfo: bigint;
}

/**
 * One file back from the tape in `drive` into `dest` (inside an export), by
 * DAR or by reading the stream from the start; checks it came back whole.
 */
async function recoverOne(
  server: Ndmpd,
  drive: string,
  recordSize: number,
  root: string,
  file: Candidate,
  dest: string,
  direct: boolean,
): Promise<RecoverFigures> {
  const c = await NdmpClient.connect({ host: '127.0.0.1', port: server.port, timeoutMs: 60_000 });
  try {
    await c.open(4);
    await c.authText(USER, PASSWORD);
    let reads = 0;
    let refused: string | null = null;
    const statuses: number[] = [];
    let moverHalted: HaltedPost | null = null;
    c.onPost(M.NOTIFY_DATA_READ, (p) => {
      reads++;
      c.call(M.MOVER_READ, p).catch((e: Error) => (refused ??= e.message));
    });
    // The end of the tape file: the stream is over (as ndmjob and `ndmp restore` do it).
    c.onPost(M.NOTIFY_MOVER_PAUSED, () => void c.call(M.MOVER_CLOSE, {}).catch(() => undefined));
    c.onPost(M.NOTIFY_MOVER_HALTED, (b) => (moverHalted = b));
    c.onPost(M.LOG_FILE, (p) => statuses.push(p.recoveryStatus));
    const halted = new Promise<HaltedPost>((r) => c.onPost(M.NOTIFY_DATA_HALTED, r));
    await c.call(M.TAPE_OPEN, { device: drive, mode: TapeOpenMode.NDMP_TAPE_READ_MODE });
    await c.call(M.TAPE_MTIO, { tapeOp: TapeMtioOp.NDMP_MTIO_REW, count: 1 });
    await c.call(M.MOVER_SET_RECORD_SIZE, { len: recordSize });
    await c.call(M.MOVER_SET_WINDOW, { offset: 0n, length: INVALID_U64 });
    await c.call(M.MOVER_LISTEN, {
      mode: MoverMode.NDMP_MOVER_MODE_WRITE,
      addrType: AddrType.NDMP_ADDR_LOCAL,
    });
    await c.call(M.DATA_CONNECT, { addr: { addrType: AddrType.NDMP_ADDR_LOCAL } });
    await c.call(M.DATA_START_RECOVER, {
      butypeName: 'tar',
      env: [
        { name: 'FILESYSTEM', value: root },
        { name: 'TYPE', value: 'tar' },
        { name: 'HIST', value: 'n' },
        { name: 'DIRECT', value: direct ? 'y' : 'n' },
        { name: 'OVERWRITE', value: 'always' },
      ],
      nlist: [
        {
          originalPath: file.path,
          destinationPath: `${dest}${file.path}`,
          name: '',
          otherName: '',
          node: INVALID_U64,
          fhInfo: direct ? file.fhInfo : INVALID_U64,
        },
      ],
    });
    const t0 = performance.now();
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<null>((r) => (timer = setTimeout(() => r(null), RECOVER_TIMEOUT_MS)));
    const h = await Promise.race([halted, late]);
    const ms = performance.now() - t0;
    clearTimeout(timer);
    if (!h) throw new Error(`no NOTIFY_DATA_HALTED ${RECOVER_TIMEOUT_MS / 1000} s after DATA_START_RECOVER`);
    if (h.reason !== DataHaltReason.NDMP_DATA_HALT_SUCCESSFUL) {
      throw new Error(`recover halted ${nameOf(DataHaltReason, h.reason)} ${h.textReason ?? ''}`.trim());
    }
    if (refused) throw new Error(`MOVER_READ refused: ${refused}`);
    const moverBytes = Number((await c.call(M.MOVER_GET_STATE, {})).bytesMoved);
    const dataBytes = Number((await c.call(M.DATA_GET_STATE, {})).bytesProcessed);
    // A mover still waiting for reads is told the stream is over; its halt is waited for (bounded).
    if (!moverHalted) await c.call(M.MOVER_CLOSE, {}).catch(() => undefined);
    for (let i = 0; i < 100 && !moverHalted; i++) await sleep(20);
    await c.call(M.DATA_STOP, {});
    await c.call(M.MOVER_STOP, {}).catch(() => undefined);
    await c.call(M.TAPE_CLOSE, {});
    if (statuses.length !== 1 || statuses[0] !== RecoveryStatus.NDMP_RECOVERY_SUCCESSFUL) {
      throw new Error(
        `LOG_FILE statuses ${statuses.map((s) => nameOf(RecoveryStatus, s)).join(', ') || 'none'}`,
      );
    }
    const back = join(dest, file.path);
    if (!existsSync(back) || lstatSync(back).size !== file.size) {
      throw new Error(`${back} did not come back with its ${file.size} bytes`);
    }
    return { moverBytes, dataBytes, ms, reads };
  } finally {
    await c.close().catch(() => c.destroy());
  }
}

/**
 * A backup of `corpus` with history (fast DMA) to `drive`, then one file of
 * it by DAR and by a whole-stream read into `restoreDir` (an export of `server`).
 */
export async function benchDar(
  server: Ndmpd,
  corpus: Corpus,
  restoreDir: string,
  opts: { recordSize: number; freshFiles: boolean; xattrs: 'y' | 'n'; timeoutMs: number },
): Promise<DarFigures> {
  const drive = 'drive0';
  const files: Candidate[] = [];
  const job = await BackupJob.prepare(server, drive, { ...opts, freshFiles: true }, false);
  job.onFile = (f) => {
    const st = f.stats[0];
    const name = f.names[0];
    if (!st || st.ftype !== FileType.NDMP_FILE_REG || st.size === 0n || !name || !('unixName' in name))
      return;
    if (f.fhInfo === INVALID_U64) return;
    files.push({ path: name.unixName, size: Number(st.size), fhInfo: f.fhInfo });
  };
  try {
    await job.start(corpus.root, 'y');
  } catch (e) {
    job.destroy();
    throw e;
  }
  const backup = await job.finish(opts.timeoutMs, corpus.files + corpus.dirs, 'y');
  const middle = BigInt(Math.floor(backup.bytes / 2));
  const abs = (x: bigint) => (x < 0n ? -x : x);
  const file = files.reduce<Candidate | null>(
    (best, f) => (!best || abs(f.fhInfo - middle) < abs(best.fhInfo - middle) ? f : best),
    null,
  );
  if (!file) throw new Error('the backup posted no regular file with an fh_info');
  const dest = (what: string) => {
    const d = join(restoreDir, what);
    rmSync(d, { recursive: true, force: true });
    mkdirSync(d, { recursive: true });
    return d;
  };
  const dar = await recoverOne(server, drive, opts.recordSize, corpus.root, file, dest('dar'), true);
  const scan = await recoverOne(server, drive, opts.recordSize, corpus.root, file, dest('scan'), false);
  rmSync(restoreDir, { recursive: true, force: true });
  return { streamBytes: backup.bytes, ...file, dar, scan };
}
