// What a backup costs once its session's threads are warm: the small corpus
// backed up (history off) by N sessions of one backup each, as bench/backup.ts
// and most DMAs do it, then by one session running N backups in turn. Each
// session starts its own data, drive and reader threads, so each of its first
// backups pays for loading their modules and for V8 compiling the hot code
// (on background threads: "other" below); a later backup in the same session
// pays neither. The difference is the per-session cost; what is left is the
// per-file cost (docs/design.md, "Small files").
//
//   node dist/bench/warm-session.js [--runs N] [--corpus small|mixed|large]

import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

import { NdmpClient } from '../src/dma/client.js';
import { AddrType, INVALID_U64, M, MoverMode, TapeMtioOp, TapeOpenMode } from '../src/wire/index.js';
import { CORPUS_NAMES, benchDir, ensureCorpus } from './corpus.js';
import type { CorpusName } from './corpus.js';
import {
  Ndmpd,
  PASSWORD,
  SERVER_THREADS,
  USER,
  killChildren,
  makeRunDir,
  sampleThreads,
  threadCpuMs,
} from './ndmpd-child.js';

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '4' },
    corpus: { type: 'string', default: 'small' },
  },
});
const runs = Number(values.runs);
const corpusName = values.corpus as CorpusName;
if (!CORPUS_NAMES.includes(corpusName)) throw new Error(`--corpus must be one of ${CORPUS_NAMES.join(', ')}`);

const base = benchDir();
mkdirSync(base, { recursive: true });
const { runDir, authFile } = makeRunDir(base);
const corpus = ensureCorpus(corpusName, 1, (l) => console.log(`  ${l}`));
const server = await Ndmpd.start({ stateDir: join(runDir, 'state'), authFile, root: corpus.root, extra: [] });

/** One backup on an open session (tape open): its job time and the server's CPU per thread. */
async function backup(c: NdmpClient): Promise<string> {
  await c.call(M.TAPE_MTIO, { tapeOp: TapeMtioOp.NDMP_MTIO_REW, count: 1 });
  await c.call(M.MOVER_SET_RECORD_SIZE, { len: 10240 });
  await c.call(M.MOVER_SET_WINDOW, { offset: 0n, length: INVALID_U64 });
  await c.call(M.MOVER_LISTEN, { mode: MoverMode.NDMP_MOVER_MODE_READ, addrType: AddrType.NDMP_ADDR_LOCAL });
  await c.call(M.DATA_CONNECT, { addr: { addrType: AddrType.NDMP_ADDR_LOCAL } });
  const halted = new Promise<void>((r) => c.onPost(M.NOTIFY_DATA_HALTED, () => r()));
  const before = sampleThreads(server.child.pid);
  const t0 = performance.now();
  await c.call(M.DATA_START_BACKUP, {
    butypeName: 'tar',
    env: [
      { name: 'FILESYSTEM', value: corpus.root },
      { name: 'HIST', value: 'n' },
      { name: 'TYPE', value: 'tar' },
    ],
  });
  await halted;
  const ms = performance.now() - t0;
  const cpu = threadCpuMs(before, sampleThreads(server.child.pid));
  await c.call(M.DATA_STOP, {});
  await c.call(M.MOVER_STOP, {});
  const total = SERVER_THREADS.reduce((s, n) => s + cpu[n], 0);
  const parts = SERVER_THREADS.filter((n) => n !== 'ndmp-history').map(
    (n) => `${n.replace('ndmp-', '')} ${cpu[n].toFixed(0)}`,
  );
  return `${(ms / 1000).toFixed(3)} s, server cpu ${total.toFixed(0)} ms = ${parts.join(', ')}`;
}

async function session(backups: number, label: (i: number) => string): Promise<void> {
  const c = await NdmpClient.connect({ host: '127.0.0.1', port: server.port, timeoutMs: 60_000 });
  await c.open(4);
  await c.authText(USER, PASSWORD);
  server.freshTape('drive0');
  await c.call(M.TAPE_OPEN, { device: 'drive0', mode: TapeOpenMode.NDMP_TAPE_RDWR_MODE });
  for (let i = 0; i < backups; i++) console.log(`  ${label(i)}: ${await backup(c)}`);
  await c.call(M.TAPE_CLOSE, {});
  await c.close();
}

try {
  console.log(
    `warm sessions: the ${corpusName} corpus (${corpus.files.toLocaleString('en-US')} files), history off, LOCAL; server CPU per thread in ms`,
  );
  await session(1, () => 'warm-up session');
  for (let i = 0; i < runs; i++) await session(1, () => `session ${i + 1} of ${runs}, its only backup`);
  await session(runs, (i) => `one session, backup ${i + 1} of ${runs}`);
} finally {
  await server.stop();
  killChildren();
  rmSync(runDir, { recursive: true, force: true });
}
