// Backup throughput (issue 4, "Benchmark"; issue 14, item 6 and its Targets):
// LOCAL backups of the deterministic corpora (bench/corpus.ts) by a real
// `ndmpd` child process to its virtual tape library, against GNU tar `-cf` and
// the bench's own C ceiling (bench/ceiling.c) on the same tree in the same run,
// with file history off, from the history worker (the default) and in lockstep
// mode, each against a DMA that takes history as fast as it comes and one that
// stops reading its control socket for a while after every FH post. Then a DAR
// restore of one file from the mixed corpus's backup (bench/dar.ts), 4
// concurrent sessions with and without one stalled DMA, with --rss the peak
// memory of 1 M- and 5 M-file backups (bench/rss.ts), and last one table of
// issue 14's targets (bench/summary.ts).
//
// What is measured, per run (medians of --runs):
//   data-stream time  DATA_START_BACKUP's reply → NOTIFY_MOVER_HALTED: the tape is busy that long
//   job time          DATA_START_BACKUP's reply → NOTIFY_DATA_HALTED: the DMA has the whole history
//   tape time         DATA_START_BACKUP's reply → the tape image's last write (its mtime, read as
//                     the DMA gets NOTIFY_MOVER_HALTED, before it sends anything; "now" and the
//                     start on the same file clock: bench/ndmpd-child.ts, FileClock)
//   halt latency      the tape's last write → the DMA reading NOTIFY_MOVER_HALTED, same clock
//   history time      how long the slow DMA was not reading, summed (≈ posts × --slow-delay-ms)
//   history CPU       historyThreadCpuMs of the server's "file history ended" log line, per 100k
//                     entries ("n/a" while the server does not log it)
//   peak RSS          the server's VmHWM; the server is restarted per configuration so it is that
//                     configuration's
// GNU tar and the C ceiling write their own files and ndmpd its own tape, with
// the page cache warm (one untimed run first) and one untimed backup per server
// (JIT, first walk). Each run writes a new file: the output is removed and the
// drive's tape swapped for a blank one before the run, untimed. The prototype
// rewrote both in place (docs/design.md, "Measured in a prototype"), but here
// (ext4 mounted with `discard`, a VM disk) freeing the old blocks inside the
// timed write cost GNU tar ~0.8 s per GiB and ndmpd's REW-and-overwrite ~0.3 s:
// it made the baseline 2× slower and the ratio to it flattering. --in-place
// measures that way.
//
//   node dist/bench/backup.js --corpus small --scale 0.1
//   npm run bench -- --corpus small,mixed,large --runs 3 --slow-delay-ms 2
//   node dist/bench/backup.js --corpus small --rss      (adds the 1 M / 5 M-file RSS runs)
//   node dist/bench/backup.js --corpus '' --no-concurrent --rss      (the RSS runs alone)
//
// Options: --corpus LIST, --scale F, --runs N (5), --warmup N (1), --slow-delay-ms MS (auto),
// --no-concurrent, --no-keep (remove the corpora afterwards; kept by default),
// --only-modes off,worker,lockstep, --record-size BYTES (10240),
// --budget-s S (no further runs of a configuration once its runs took this
// long: lockstep against a slow DMA is slow by design), --timeout-s S (one
// backup), --concurrent-hist y|n (n runs the concurrency scenario without
// history, to check it while history is not offered), --in-place, --no-dar,
// --rss (1 M and 5 M files × --scale; off by default, and so in CI).
// BENCH_DIR: where the corpora, the compiled C programs and the server's state
// live (default <tmpdir>/ndmpd-bench).

import { mkdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

import { M } from '../src/wire/index.js';
import type { Baseline } from './baselines.js';
import { ceilingBaseline, tarBaseline } from './baselines.js';
import type { Corpus, CorpusName } from './corpus.js';
import { benchDir, CORPUS_NAMES, ensureCorpus, removeCorpus } from './corpus.js';
import type { DarFigures } from './dar.js';
import { benchDar } from './dar.js';
import type { Figures } from './ndmpd-child.js';
import {
  BackupJob,
  DRIVES,
  Ndmpd,
  SERVER_THREADS,
  historyCpuPer100k,
  killChildren,
  makeRunDir,
} from './ndmpd-child.js';
import { benchRss } from './rss.js';
import { Summary } from './summary.js';

const MODES = ['off', 'worker', 'lockstep'] as const;
type Mode = (typeof MODES)[number];
type Speed = 'fast' | 'slow';

interface Options {
  corpora: CorpusName[];
  scale: number;
  runs: number;
  warmup: number;
  slowDelayMs: number;
  /** Choose slowDelayMs per corpus from the history-off time and the number of posts. */
  autoSlow: boolean;
  concurrent: boolean;
  concurrentHist: 'y' | 'n';
  keep: boolean;
  modes: Set<Mode>;
  recordSize: number;
  budgetMs: number;
  timeoutMs: number;
  freshFiles: boolean;
  /** XATTRS and ACLS of every backup (docs/metadata.md): n measures what capturing them costs. */
  xattrs: 'y' | 'n';
  /** The DAR figure (bench/dar.ts), from the mixed corpus. */
  dar: boolean;
  /** The peak-RSS backups of 1 M and 5 M tiny files (bench/rss.ts); never by default. */
  rss: boolean;
}

function parseOptions(argv: string[], strict: boolean): Options {
  const { values } = parseArgs({
    args: argv,
    strict,
    allowPositionals: true,
    options: {
      corpus: { type: 'string', default: CORPUS_NAMES.join(',') },
      scale: { type: 'string', default: '1' },
      // 5 (as the prototype's 5–7) keeps a full default pass (all corpora, all
      // modes, concurrency) under ~10 minutes on 2 cores once the corpora exist;
      // --budget-s bounds the configurations that are slow by design.
      runs: { type: 'string', default: '5' },
      warmup: { type: 'string', default: '1' },
      // auto: per corpus, so the slow DMA needs 1.5× the history-off backup's time to take all history.
      'slow-delay-ms': { type: 'string', default: 'auto' },
      concurrent: { type: 'boolean', default: true },
      'no-concurrent': { type: 'boolean', default: false },
      'concurrent-hist': { type: 'string', default: 'y' },
      keep: { type: 'boolean', default: true },
      'no-keep': { type: 'boolean', default: false },
      'only-modes': { type: 'string', default: MODES.join(',') },
      'record-size': { type: 'string', default: '10240' },
      'budget-s': { type: 'string', default: '120' },
      'timeout-s': { type: 'string', default: '900' },
      'in-place': { type: 'boolean', default: false },
      xattrs: { type: 'string', default: 'y' },
      dar: { type: 'boolean', default: true },
      'no-dar': { type: 'boolean', default: false },
      rss: { type: 'boolean', default: false },
    },
  });
  const str = (k: string) => String((values as Record<string, unknown>)[k]);
  const num = (k: string, min: number) => {
    const n = Number(str(k));
    if (!Number.isFinite(n) || n < min) throw new Error(`--${k} must be a number ≥ ${min}, not '${str(k)}'`);
    return n;
  };
  const list = <T extends string>(k: string, known: readonly T[]): T[] => {
    const xs = str(k)
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean);
    for (const x of xs) {
      if (!known.includes(x as T)) throw new Error(`--${k}: '${x}' is not one of ${known.join(', ')}`);
    }
    return xs as T[];
  };
  const xattrs = str('xattrs');
  if (xattrs !== 'y' && xattrs !== 'n') throw new Error(`--xattrs must be y or n, not '${xattrs}'`);
  const hist = str('concurrent-hist');
  if (hist !== 'y' && hist !== 'n') throw new Error(`--concurrent-hist must be y or n, not '${hist}'`);
  return {
    corpora: list('corpus', CORPUS_NAMES),
    scale: num('scale', 1e-6),
    runs: Math.max(1, Math.floor(num('runs', 1))),
    warmup: Math.floor(num('warmup', 0)),
    slowDelayMs: str('slow-delay-ms') === 'auto' ? 0 : num('slow-delay-ms', 0),
    autoSlow: str('slow-delay-ms') === 'auto',
    concurrent: values.concurrent !== false && values['no-concurrent'] !== true,
    concurrentHist: hist,
    keep: values.keep !== false && values['no-keep'] !== true,
    modes: new Set(list('only-modes', MODES)),
    recordSize: Math.floor(num('record-size', 512)),
    budgetMs: num('budget-s', 0) * 1000,
    timeoutMs: num('timeout-s', 1) * 1000,
    freshFiles: values['in-place'] !== true,
    xattrs,
    dar: values.dar !== false && values['no-dar'] !== true,
    rss: values.rss === true,
  };
}

// ---- configurations ----------------------------------------------------------

interface Config {
  label: string;
  mode: Mode;
  speed: Speed;
}

const CONFIGS: readonly Config[] = [
  { label: 'history off', mode: 'off', speed: 'fast' },
  { label: 'worker, fast DMA', mode: 'worker', speed: 'fast' },
  { label: 'worker, slow DMA', mode: 'worker', speed: 'slow' },
  { label: 'lockstep, fast DMA', mode: 'lockstep', speed: 'fast' },
  { label: 'lockstep, slow DMA', mode: 'lockstep', speed: 'slow' },
];

interface Row {
  cfg: Config;
  runs: number;
  /** Medians of each figure over the runs. */
  m: Figures | null;
  error: string | null;
  peakRssKiB: number | null;
}

interface Env {
  opts: Options;
  runDir: string;
  stateDir: string;
  authFile: string;
}

/** The median of the finite values (a figure a run could not take is NaN); NaN if none. */
const median = (xs: number[]) => {
  const s = xs.filter(Number.isFinite).sort((a, b) => a - b);
  return s.length ? s[Math.floor(s.length / 2)]! : NaN;
};

function medians(runs: Figures[]): Figures {
  const pick = (k: Exclude<keyof Figures, 'serverCpuMs'>) => median(runs.map((r) => r[k]));
  return {
    dataMs: pick('dataMs'),
    jobMs: pick('jobMs'),
    entries: pick('entries'),
    posts: pick('posts'),
    bytes: pick('bytes'),
    histMs: pick('histMs'),
    dmaCpuMs: pick('dmaCpuMs'),
    tapeMs: pick('tapeMs'),
    haltLatencyMs: pick('haltLatencyMs'),
    historyCpuMs: pick('historyCpuMs'),
    historyEntries: pick('historyEntries'),
    serverCpuMs: Object.fromEntries(
      SERVER_THREADS.map((n) => [n, median(runs.map((r) => r.serverCpuMs[n]))]),
    ) as Figures['serverCpuMs'],
  };
}

const errorText = (e: unknown) => (e instanceof Error ? e.message : String(e));

function serverArgs(mode: Mode): string[] {
  return mode === 'lockstep' ? ['--history-mode', 'lockstep'] : [];
}

/** One configuration: its own server, `runs` backups (fewer past the budget), medians. */
async function runConfig(env: Env, corpus: Corpus, cfg: Config): Promise<Row> {
  const row: Row = { cfg, runs: 0, m: null, error: null, peakRssKiB: null };
  let server: Ndmpd;
  try {
    server = await Ndmpd.start({ ...env, root: corpus.root, extra: serverArgs(cfg.mode) });
  } catch (e) {
    row.error = errorText(e);
    return row;
  }
  const hist = cfg.mode === 'off' ? 'n' : 'y';
  const entries = corpus.files + corpus.dirs;
  const figures: Figures[] = [];
  const began = performance.now();
  const { warmup, runs } = env.opts;
  try {
    // The warm-up runs count against the budget, so a configuration slow by design runs fewer times.
    for (let i = 0; i < warmup + runs; i++) {
      if (i > warmup && performance.now() - began > env.opts.budgetMs) break;
      const mark = server.mark();
      let job: BackupJob | null = null;
      try {
        job = await BackupJob.prepare(server, 'drive0', env.opts, cfg.speed === 'slow');
        if (job.gate) job.gate.delayMs = env.opts.slowDelayMs;
        await job.start(corpus.root, hist);
        const f = await job.finish(env.opts.timeoutMs, entries, hist);
        if (i >= warmup) figures.push(f);
      } catch (e) {
        job?.destroy();
        const logged = server.messagesSince(mark);
        row.error = errorText(e) + (logged.length ? ` [ndmpd: ${logged.slice(0, 3).join(' | ')}]` : '');
        break;
      }
    }
    row.peakRssKiB = server.peakRssKiB();
  } finally {
    await server.stop();
  }
  row.runs = figures.length;
  if (!row.error) row.m = medians(figures);
  return row;
}

// ---- printing ------------------------------------------------------------------

const int = (n: number) => Math.round(n).toLocaleString('en-US');
const secs = (ms: number) => (Number.isFinite(ms) ? (ms / 1000).toFixed(3) : 'n/a');
const mbps = (bytes: number, ms: number) => (bytes / 1e6 / (ms / 1000)).toFixed(0);
const times = (x: number) => (Number.isFinite(x) ? `${x.toFixed(2)}×` : 'n/a');
const mib = (kib: number | null) => (kib === null ? '—' : `${(kib / 1024).toFixed(0)} MiB`);
const msec = (ms: number) => (Number.isFinite(ms) ? `${ms.toFixed(1)} ms` : 'n/a');
const pad = (s: string, n: number) => s.padStart(n);

function printCorpusTable(
  corpus: Corpus,
  opts: Options,
  tar: Baseline,
  ceiling: Baseline | null,
  rows: Row[],
): void {
  const entries = corpus.files + corpus.dirs;
  const gen =
    corpus.generatedMs === null ? 'reused' : `generated in ${(corpus.generatedMs / 1000).toFixed(1)} s`;
  console.log(
    `backup, ${corpus.name} corpus ×${opts.scale}: ${int(corpus.files)} files + ${int(corpus.dirs)} dirs, ` +
      `${(corpus.bytes / 1e6).toFixed(1)} MB (${gen}); LOCAL to a VTL drive, ${opts.recordSize}-byte records, ` +
      `median of ${opts.runs}${opts.freshFiles ? ', fresh files' : ', files rewritten in place'}` +
      `${opts.xattrs === 'n' ? ', XATTRS=n ACLS=n' : ''}; ` +
      `slow DMA: ${opts.slowDelayMs} ms per FH post`,
  );
  console.log(
    `  ${'configuration'.padEnd(22)}${pad('files/s', 10)}${pad('MB/s', 7)}${pad('data s', 9)}${pad('job s', 9)}` +
      `${pad('tape s', 9)}${pad('×tar', 7)}${pad('×C', 7)}${pad('×off', 7)}${pad('FH posts', 10)}${pad('hist s', 8)}` +
      `${pad('halt', 10)}${pad('peak RSS', 10)}`,
  );
  const cMs = ceiling?.ms ?? NaN;
  const base = (label: string, b: Baseline) =>
    console.log(
      `  ${label.padEnd(22)}${pad(int(entries / (b.ms / 1000)), 10)}${pad(mbps(b.bytes, b.ms), 7)}` +
        `${pad(secs(b.ms), 9)}${pad(secs(b.ms), 9)}${pad('', 9)}${pad(times(tar.ms / b.ms), 7)}` +
        `${pad(times(cMs / b.ms), 7)}${pad('', 7)}${pad('', 10)}${pad('', 8)}${pad('', 10)}${pad('—', 10)}`,
    );
  base('GNU tar -cf', tar);
  if (ceiling) base('C ceiling (1 thread)', ceiling);
  else console.log(`  ${'C ceiling (1 thread)'.padEnd(22)}n/a (no C compiler: cc)`);
  const off = rows.find((r) => r.cfg.mode === 'off')?.m ?? null;
  for (const r of rows) {
    const label = (
      r.cfg.label + (r.m && r.runs < opts.runs ? ` (${r.runs} run${r.runs > 1 ? 's' : ''})` : '')
    ).padEnd(22);
    if (!r.m) {
      console.log(`  ${label}n/a (${r.error ?? 'not run'})`);
      continue;
    }
    const m = r.m;
    console.log(
      `  ${label}${pad(int(m.entries / (m.jobMs / 1000)), 10)}${pad(mbps(m.bytes, m.dataMs), 7)}` +
        `${pad(secs(m.dataMs), 9)}${pad(secs(m.jobMs), 9)}${pad(secs(m.tapeMs), 9)}${pad(times(tar.ms / m.jobMs), 7)}` +
        `${pad(times(cMs / m.jobMs), 7)}` +
        `${pad(off ? times(off.dataMs / m.dataMs) : '—', 7)}${pad(r.cfg.mode === 'off' ? '' : int(m.posts), 10)}` +
        `${pad(r.cfg.speed === 'slow' ? secs(m.histMs) : '', 8)}${pad(msec(m.haltLatencyMs), 10)}${pad(mib(r.peakRssKiB), 10)}`,
    );
  }
  console.log(
    '  files/s: files + dirs over the job time; MB/s: stream bytes over the data-stream time; tape s: to the tape’s' +
      ' last write; ×tar, ×C: GNU tar’s, the C ceiling’s time / the job time; ×off: history off’s data-stream time /' +
      ' this one’s; hist s: time the slow DMA was not reading; halt: the tape’s last write → NOTIFY_MOVER_HALTED read' +
      ' by the DMA (file clock, ±4 ms)',
  );
  // Where the server's CPU went: on 2 cores a backup that saturates both is as fast as its total allows.
  for (const r of rows) {
    if (!r.m) continue;
    const c = r.m.serverCpuMs;
    const total = SERVER_THREADS.reduce((s, n) => s + c[n], 0);
    console.log(
      `  ${r.cfg.label}: server cpu ${int(total)} ms = ` +
        SERVER_THREADS.map((n) => `${n.replace('ndmp-', '')} ${int(c[n])}`).join(', '),
    );
  }
  for (const r of rows) {
    if (!r.m || r.cfg.mode === 'off') continue;
    const m = r.m;
    const complete =
      m.entries === entries || m.entries === entries + 1
        ? 'history complete'
        : `HISTORY INCOMPLETE: ${int(m.entries)} entries for ${int(entries)} files + dirs`;
    const perPost = m.posts ? int(m.entries / m.posts) : '—';
    const posts = `${int(m.posts)} post${m.posts === 1 ? '' : 's'}`;
    console.log(
      `  ${r.cfg.label}: ${int(m.entries)} entries in ${posts} (${perPost}/post), ${complete}; DMA cpu ${secs(m.dmaCpuMs)} s` +
        `; history thread cpu ${historyCpuPer100k(m)}` +
        (r.cfg.speed === 'slow'
          ? `; not reading ${secs(m.histMs)} s (nominal ${int(m.posts)} × ${opts.slowDelayMs} ms = ${secs(m.posts * opts.slowDelayMs)} s)`
          : ''),
    );
  }
  const fast = rows.find((r) => r.cfg.mode === 'worker' && r.cfg.speed === 'fast')?.m;
  if (off && fast) {
    console.log(
      `  history on (worker, fast DMA) costs ${((fast.jobMs / off.jobMs - 1) * 100).toFixed(1)}% of job time vs history off`,
    );
  }
  const slow = rows.find((r) => r.cfg.mode === 'worker' && r.cfg.speed === 'slow')?.m;
  if (off && slow) {
    console.log(
      `  worker, slow DMA: the tape's last write at ${secs(slow.tapeMs)} s, ${times(slow.tapeMs / off.tapeMs)} history off's ` +
        `(${secs(off.tapeMs)} s); NOTIFY_MOVER_HALTED read ${msec(slow.haltLatencyMs)} after it (history off: ${msec(off.haltLatencyMs)})`,
    );
  }
  // The slow-DMA targets are about a DMA slower than the backup; say when this one was not.
  if (slow && slow.posts > 0 && slow.histMs < slow.dataMs) {
    console.log(
      `  note: the slow DMA took history faster than the backup made it (${secs(slow.histMs)} s < ${secs(slow.dataMs)} s);` +
        ` --slow-delay-ms ${Math.ceil((2 * slow.dataMs) / slow.posts)} or more makes it the slower side`,
    );
  }
  printTargets(tar, rows);
}

function printTargets(tar: { ms: number }, rows: Row[]): void {
  const get = (mode: Mode, speed: Speed) =>
    rows.find((r) => r.cfg.mode === mode && r.cfg.speed === speed)?.m ?? null;
  const off = get('off', 'fast');
  const wf = get('worker', 'fast');
  const ws = get('worker', 'slow');
  const ls = get('lockstep', 'slow');
  const line = (text: string, ratio: number | null, ok: (x: number) => boolean, more = '') =>
    console.log(
      `    ${text.padEnd(48)}${ratio === null ? 'n/a' : `${times(ratio)}  (${ok(ratio) ? 'met' : 'missed'}${more})`}`,
    );
  console.log('  targets of issue 4 (issue 14’s are in the table at the end):');
  line('worker fast ≥ 1.0× GNU tar', wf ? tar.ms / wf.jobMs : null, (x) => x >= 1.0);
  line(
    'slow DMA: data stream ≤ 1.05× history off',
    ws && off ? ws.dataMs / off.dataMs : null,
    (x) => x <= 1.05,
  );
  line(
    'slow DMA: job ≤ 1.05× max(data, history)',
    ws ? ws.jobMs / Math.max(ws.dataMs, ws.histMs) : null,
    (x) => x <= 1.05,
  );
  line(
    'lockstep slow ≥ data + history',
    ls && off ? ls.jobMs / (off.dataMs + ls.histMs) : null,
    (x) => x >= 1.0,
  );
}

function printDar(d: DarFigures, opts: Options): void {
  const gib = d.streamBytes / 2 ** 30;
  console.log(
    `DAR, mixed corpus ×${opts.scale}: one file of a ${gib.toFixed(2)} GiB backup (${int(d.streamBytes)} stream bytes` +
      `${gib >= 2 ? '' : '; the issue asks for ≥ 2 GiB: run at --scale 1'}): ${d.path}, ${int(d.size)} bytes, fh_info ${d.fhInfo}`,
  );
  console.log(
    `  ${'restore'.padEnd(26)}${pad('mover bytes', 16)}${pad('data bytes', 16)}${pad('time s', 9)}${pad('reads', 7)}`,
  );
  for (const [label, r] of [
    ['DAR (DIRECT=y, fh_info)', d.dar],
    ['whole stream (DIRECT=n)', d.scan],
  ] as const) {
    console.log(
      `  ${label.padEnd(26)}${pad(int(r.moverBytes), 16)}${pad(int(r.dataBytes), 16)}${pad(secs(r.ms), 9)}${pad(int(r.reads), 7)}`,
    );
  }
  console.log(
    `  DAR read ${((d.dar.moverBytes / Math.max(1, d.scan.moverBytes)) * 100).toFixed(3)}% of the whole stream's bytes in ` +
      `${((d.dar.ms / d.scan.ms) * 100).toFixed(1)}% of its time (mover bytes: MOVER_GET_STATE bytes_moved; time: ` +
      `DATA_START_RECOVER's reply → NOTIFY_DATA_HALTED)`,
  );
}

// ---- concurrency -----------------------------------------------------------------

interface ConcurrentResult {
  /** Medians over runs of the mean over sessions 0..2. */
  filesPerS: number;
  mbPerS: number;
  jobMs: number;
  peakRssKiB: number | null;
  stalled: string | null;
}

/**
 * 4 sessions at once to drive0..drive3, history on; with `stall`, the 4th DMA
 * stops reading its control socket right after DATA_START_BACKUP's reply until
 * the other three have halted, then takes what is waiting.
 */
async function runConcurrent(env: Env, corpus: Corpus, stall: boolean): Promise<ConcurrentResult> {
  const hist = env.opts.concurrentHist;
  const entries = corpus.files + corpus.dirs;
  const server = await Ndmpd.start({ ...env, root: corpus.root, extra: [] });
  const per: { files: number; mb: number; job: number }[] = [];
  let stalled: string | null = null;
  try {
    for (let i = 0; i < env.opts.warmup + env.opts.runs; i++) {
      const mark = server.mark();
      const jobs: BackupJob[] = [];
      try {
        for (let d = 0; d < DRIVES; d++) {
          jobs.push(await BackupJob.prepare(server, `drive${d}`, env.opts, stall && d === DRIVES - 1));
        }
        const slowOne = stall ? jobs[DRIVES - 1]! : null;
        slowOne?.gate!.stallAfterReply(M.DATA_START_BACKUP.code);
        await Promise.all(jobs.map((j) => j.start(corpus.root, hist)));
        const others = await Promise.all(
          jobs.slice(0, 3).map((j) => j.finish(env.opts.timeoutMs, entries, hist)),
        );
        slowOne?.gate!.release();
        // The 4th session's own outcome is reported, not a reason to drop the
        // others' figures: a server may rightly halt a DMA that stalled too long.
        const last = await jobs[DRIVES - 1]!.finish(env.opts.timeoutMs, entries, hist).then(
          (f) => f,
          (e: unknown) => errorText(e),
        );
        if (slowOne) {
          stalled =
            typeof last === 'string'
              ? `stalled DMA: ${last}`
              : `stalled DMA: halted SUCCESSFUL ${secs(last.jobMs)} s after its start, ${int(last.entries)} entries for ` +
                `${int(entries)} files + dirs`;
        } else if (typeof last === 'string') {
          throw new Error(`session 4: ${last}`);
        }
        const mean = (f: (x: Figures) => number) => others.reduce((s, x) => s + f(x), 0) / others.length;
        if (i < env.opts.warmup) continue;
        per.push({
          files: mean((x) => x.entries / (x.jobMs / 1000)),
          mb: mean((x) => x.bytes / 1e6 / (x.dataMs / 1000)),
          job: mean((x) => x.jobMs),
        });
      } catch (e) {
        for (const j of jobs) j.destroy();
        const logged = server.messagesSince(mark);
        throw new Error(errorText(e) + (logged.length ? ` [ndmpd: ${logged.slice(0, 3).join(' | ')}]` : ''));
      }
    }
    return {
      filesPerS: median(per.map((p) => p.files)),
      mbPerS: median(per.map((p) => p.mb)),
      jobMs: median(per.map((p) => p.job)),
      peakRssKiB: server.peakRssKiB(),
      stalled,
    };
  } finally {
    await server.stop();
  }
}

async function benchConcurrent(env: Env, corpus: Corpus): Promise<void> {
  const { opts } = env;
  console.log(
    `backup, 4 concurrent sessions (${corpus.name} corpus ×${opts.scale}: ${int(corpus.files)} files each, ` +
      `drive0..drive3, HIST=${opts.concurrentHist}, worker mode, median of ${opts.runs})`,
  );
  console.log(
    `  ${'scenario'.padEnd(22)}${pad('files/s', 10)}${pad('MB/s', 7)}${pad('job s', 9)}${pad('peak RSS', 10)}   (mean of sessions 1–3)`,
  );
  const results: (ConcurrentResult | null)[] = [];
  for (const [stall, label] of [
    [false, 'all 4 fast'],
    [true, 'one DMA stalled'],
  ] as const) {
    try {
      const r = await runConcurrent(env, corpus, stall);
      results.push(r);
      console.log(
        `  ${label.padEnd(22)}${pad(int(r.filesPerS), 10)}${pad(r.mbPerS.toFixed(0), 7)}${pad(secs(r.jobMs), 9)}${pad(mib(r.peakRssKiB), 10)}`,
      );
    } catch (e) {
      results.push(null);
      console.log(`  ${label.padEnd(22)}n/a (${errorText(e)})`);
    }
  }
  const [fast, slow] = results;
  if (fast && slow) {
    const pct = (a: number, b: number) => `${(((b - a) / a) * 100).toFixed(1)}%`;
    console.log(
      `  ${'change'.padEnd(22)}${pad(pct(fast.filesPerS, slow.filesPerS), 10)}${pad(pct(fast.mbPerS, slow.mbPerS), 7)}`,
    );
    if (slow.stalled) console.log(`  ${slow.stalled}`);
    const change = Math.abs(slow.filesPerS - fast.filesPerS) / fast.filesPerS;
    console.log(
      `  target: a stalled DMA changes the others' throughput by < 5%: ${(change * 100).toFixed(1)}% (${change < 0.05 ? 'met' : 'missed'})`,
    );
  } else {
    console.log(`  target: a stalled DMA changes the others' throughput by < 5%: n/a`);
  }
}

// ---- entry -------------------------------------------------------------------

/** The DAR figure: a server of its own that also exports a folder to restore into. */
async function runDar(env: Env, corpus: Corpus): Promise<DarFigures> {
  const restoreDir = join(env.runDir, 'restore');
  mkdirSync(restoreDir, { recursive: true });
  const server = await Ndmpd.start({
    ...env,
    root: corpus.root,
    extra: [],
    exports: [`restore=${restoreDir}`],
  });
  const mark = server.mark();
  try {
    return await benchDar(server, corpus, restoreDir, env.opts);
  } catch (e) {
    const logged = server.messagesSince(mark);
    throw new Error(errorText(e) + (logged.length ? ` [ndmpd: ${logged.slice(0, 3).join(' | ')}]` : ''));
  } finally {
    await server.stop();
  }
}

/**
 * `strict`: refuse unknown options (run alone); from bench/run.ts the other
 * benchmarks' options pass. Returns the issue-14 summary, for the caller to
 * print last.
 */
export async function benchBackup(argv: string[], { strict = false } = {}): Promise<Summary> {
  const opts = parseOptions(argv, strict);
  const base = benchDir();
  mkdirSync(base, { recursive: true });
  const { runDir, authFile } = makeRunDir(base);
  const env: Env = { opts, runDir, stateDir: join(runDir, 'state'), authFile };
  const onSignal = (sig: NodeJS.Signals) => {
    killChildren();
    rmSync(runDir, { recursive: true, force: true });
    process.exit(sig === 'SIGINT' ? 130 : 143);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const say = (line: string) => console.log(`  ${line}`);
  const used = new Set<CorpusName>();
  const summary = new Summary(opts.scale);
  try {
    for (const name of opts.corpora) {
      const corpus = ensureCorpus(name, opts.scale, say);
      used.add(name);
      const tar = tarBaseline(corpus.root, runDir, opts);
      let ceiling: Baseline | null = null;
      try {
        ceiling = ceilingBaseline(base, corpus.root, runDir, opts);
      } catch (e) {
        say(`the C ceiling: ${errorText(e)}`);
      }
      const rows: Row[] = [];
      for (const cfg of CONFIGS) {
        if (!opts.modes.has(cfg.mode)) continue;
        if (opts.autoSlow && cfg.speed === 'slow') {
          const off = rows.find((r) => r.cfg.mode === 'off')?.m;
          const fast = rows.find((r) => r.cfg.mode !== 'off' && r.cfg.speed === 'fast')?.m;
          opts.slowDelayMs =
            off && fast && fast.posts > 0 ? Math.max(1, Math.ceil((1.5 * off.dataMs) / fast.posts)) : 20;
        }
        rows.push(await runConfig(env, corpus, cfg));
      }
      printCorpusTable(corpus, opts, tar, ceiling, rows);
      const pick = (mode: Mode, speed: Speed) =>
        rows.find((r) => r.cfg.mode === mode && r.cfg.speed === speed)?.m ?? null;
      summary.corpora.push({
        name,
        tarMs: tar.ms,
        ceilingMs: ceiling?.ms ?? NaN,
        off: pick('off', 'fast'),
        fast: pick('worker', 'fast'),
        slow: pick('worker', 'slow'),
      });
      if (name === 'mixed' && opts.dar) {
        try {
          summary.dar = await runDar(env, corpus);
          printDar(summary.dar, opts);
        } catch (e) {
          console.log(`DAR, mixed corpus ×${opts.scale}: n/a (${errorText(e)})`);
        }
      }
    }
    if (opts.concurrent) {
      const small = ensureCorpus('small', opts.scale, say);
      used.add('small');
      await benchConcurrent(env, small);
    }
    if (opts.rss) summary.rss = await benchRss(env, opts.scale, opts);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    killChildren();
    rmSync(runDir, { recursive: true, force: true });
    if (!opts.keep) for (const name of used) removeCorpus(name, opts.scale);
  }
  return summary;
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  console.log(
    `machine: ${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, node ${process.version}`,
  );
  try {
    const summary = await benchBackup(process.argv.slice(2), { strict: true });
    summary.print();
  } catch (e) {
    console.error(`bench/backup: ${errorText(e)}`);
    process.exitCode = 2;
  }
}
