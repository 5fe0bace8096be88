// Peak memory of very large backups (issue 14, item 6 and its target: ≤ 256
// MiB for 1 M and for 5 M files, fast and slow DMA). Only with --rss: making
// 5 M files takes minutes and several GiB of inodes, so neither `npm run bench`
// by default nor CI runs it.
//
// The corpus is tiny files (0–512 bytes, 1,000 to a directory), made by
// bench/tiny-corpus.c: what a backup holds in memory grows with its entries
// (walk state, history records, the spool's index), not with file bytes, and
// tiny files keep the generation and the backups short. One tree of 5 parts of
// 1 M files each: the 1 M-file backup is part p00 (FILESYSTEM=tree/p00), the
// 5 M-file one the whole tree. It is made once under BENCH_DIR and reused while
// its manifest says it is complete and of the same spec (as bench/corpus.ts).
//
// Each backup gets a fresh server, whose VmHWM is then that backup's peak:
// history on (worker) with a fast DMA, then with a slow one that needs 1.5×
// the fast backup's data-stream time to take all history (so history piles up
// in the server's queue and spool, the memory this is about).

import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';

import { buildC } from './cc.js';
import { benchDir } from './corpus.js';
import type { Figures } from './ndmpd-child.js';
import { BackupJob, Ndmpd } from './ndmpd-child.js';

const GENERATOR_VERSION = 1;
const PARTS = 5;
const PER_DIR = 1000;
const SEED = 0x7195;
/** One backup of 5 M files with a slow DMA takes many minutes on 2 busy cores: bounded, but by an hour. */
const RSS_TIMEOUT_MS = 3_600_000;

interface TinySpec {
  version: number;
  parts: number;
  perPart: number;
  perDir: number;
  seed: number;
}

interface TinyCorpus {
  root: string;
  perPart: number;
  /** Directories of one part (the part's own included). */
  dirsPerPart: number;
  generatedMs: number | null;
}

/** The tiny-file tree for `scale` (1 M files a part at scale 1), made now if need be. */
function ensureTinyCorpus(scale: number, say: (l: string) => void): TinyCorpus {
  const perPart = Math.max(PER_DIR, Math.round(1_000_000 * scale));
  const spec: TinySpec = { version: GENERATOR_VERSION, parts: PARTS, perPart, perDir: PER_DIR, seed: SEED };
  const dir = join(benchDir(), `tiny-x${scale}`);
  const root = join(dir, 'tree');
  const manifest = join(dir, 'manifest.json');
  const dirsPerPart = 1 + Math.ceil(perPart / PER_DIR);
  try {
    const m = JSON.parse(readFileSync(manifest, 'utf8')) as { spec: TinySpec; complete: boolean };
    if (m.complete && JSON.stringify(m.spec) === JSON.stringify(spec) && existsSync(root)) {
      return { root, perPart, dirsPerPart, generatedMs: null };
    }
  } catch {
    /* none yet */
  }
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const bin = buildC('tiny-corpus', benchDir());
  say(
    `generating the tiny-file corpus (${PARTS} × ${perPart.toLocaleString('en-US')} files of 0–512 bytes, ` +
      `${PER_DIR} a directory) in ${dir} …`,
  );
  const t0 = performance.now();
  const r = spawnSync(bin, [root, String(PARTS), String(perPart), String(PER_DIR), String(SEED)], {
    encoding: 'utf8',
    // Bounded: 5 M creations take minutes, not hours.
    timeout: 3_600_000,
  });
  if (r.error) throw new Error(`tiny-corpus: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`tiny-corpus exited with ${r.status}: ${r.stderr.trim()}`);
  const generatedMs = performance.now() - t0;
  writeFileSync(
    `${manifest}.tmp`,
    `${JSON.stringify({ spec, made: r.stdout.trim(), complete: true }, null, 2)}\n`,
  );
  renameSync(`${manifest}.tmp`, manifest);
  return { root, perPart, dirsPerPart, generatedMs };
}

export interface RssResult {
  /** 1 or 5: the 1 M- or the 5 M-file backup (× the scale). */
  millions: number;
  /** Files backed up. */
  files: number;
  speed: 'fast' | 'slow';
  peakRssKiB: number | null;
  figures: Figures | null;
  /** The slow DMA's delay per FH post. */
  delayMs: number;
  error: string | null;
}

const errorText = (e: unknown) => (e instanceof Error ? e.message : String(e));

/** One backup of `fs` on a server of its own; its peak RSS. */
async function oneBackup(
  env: { stateDir: string; authFile: string },
  tree: string,
  fs: string,
  entries: number,
  slowDelayMs: number | null,
  opts: { recordSize: number; xattrs: 'y' | 'n'; timeoutMs: number },
): Promise<{ peakRssKiB: number | null; figures: Figures }> {
  const server = await Ndmpd.start({ ...env, root: tree, extra: [] });
  try {
    const job = await BackupJob.prepare(
      server,
      'drive0',
      { ...opts, freshFiles: true },
      slowDelayMs !== null,
    );
    if (job.gate) job.gate.delayMs = slowDelayMs!;
    try {
      await job.start(fs, 'y');
    } catch (e) {
      job.destroy();
      throw e;
    }
    const figures = await job
      .finish(Math.max(opts.timeoutMs, RSS_TIMEOUT_MS), entries, 'y')
      .catch((e: unknown) => {
        job.destroy();
        const logged = server.messagesSince(0);
        throw new Error(errorText(e) + (logged.length ? ` [ndmpd: ${logged.slice(0, 3).join(' | ')}]` : ''));
      });
    const peakRssKiB = server.peakRssKiB();
    // The tape of millions of entries is GiBs: not kept past its figure.
    server.freshTape('drive0');
    return { peakRssKiB, figures };
  } finally {
    await server.stop();
  }
}

const int = (n: number) => Math.round(n).toLocaleString('en-US');
const secs = (ms: number) => (Number.isFinite(ms) ? (ms / 1000).toFixed(1) : 'n/a');

/** The 1 M- and 5 M-file backups (× scale), fast then slow DMA each; prints as it goes. */
export async function benchRss(
  env: { stateDir: string; authFile: string },
  scale: number,
  opts: { recordSize: number; xattrs: 'y' | 'n'; timeoutMs: number },
): Promise<RssResult[]> {
  const say = (l: string) => console.log(`  ${l}`);
  console.log(
    `peak RSS of very large backups (--rss): tiny files of 0–512 bytes, ${PER_DIR} a directory (file bytes do ` +
      'not change what a backup holds in memory; entries do); worker history; a fresh server per backup (VmHWM)',
  );
  const corpus = ensureTinyCorpus(scale, say);
  if (corpus.generatedMs !== null) say(`generated in ${secs(corpus.generatedMs)} s`);
  const out: RssResult[] = [];
  console.log(
    `  ${'backup'.padEnd(36)}${'data s'.padStart(9)}${'job s'.padStart(9)}${'entries'.padStart(12)}` +
      `${'peak RSS'.padStart(10)}`,
  );
  for (const parts of [1, PARTS]) {
    const files = parts * corpus.perPart;
    // Files and directories; the backup's root may be one more entry.
    const entries = parts * (corpus.perPart + corpus.dirsPerPart);
    const fs = parts === 1 ? join(corpus.root, 'p00') : corpus.root;
    let fastFig: Figures | null = null;
    for (const speed of ['fast', 'slow'] as const) {
      const delayMs =
        speed === 'fast'
          ? 0
          : fastFig && fastFig.posts > 0
            ? Math.max(1, Math.ceil((1.5 * fastFig.dataMs) / fastFig.posts))
            : 20;
      const label = `${int(files)} files, ${speed === 'fast' ? 'fast DMA' : `slow DMA (${delayMs} ms/post)`}`;
      try {
        const r = await oneBackup(env, corpus.root, fs, entries, speed === 'slow' ? delayMs : null, opts);
        if (speed === 'fast') fastFig = r.figures;
        out.push({
          millions: parts,
          files,
          speed,
          peakRssKiB: r.peakRssKiB,
          figures: r.figures,
          delayMs,
          error: null,
        });
        const m = r.figures;
        console.log(
          `  ${label.padEnd(36)}${secs(m.dataMs).padStart(9)}${secs(m.jobMs).padStart(9)}${int(m.entries).padStart(12)}` +
            `${(r.peakRssKiB === null ? '—' : `${(r.peakRssKiB / 1024).toFixed(0)} MiB`).padStart(10)}` +
            (m.entries >= entries && m.entries <= entries + 1
              ? ''
              : `  HISTORY INCOMPLETE (${int(entries)} expected)`),
        );
      } catch (e) {
        out.push({
          millions: parts,
          files,
          speed,
          peakRssKiB: null,
          figures: null,
          delayMs,
          error: errorText(e),
        });
        console.log(`  ${label.padEnd(36)}n/a (${errorText(e)})`);
      }
    }
  }
  return out;
}
