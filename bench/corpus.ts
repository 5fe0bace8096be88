// Deterministic corpora for the backup benchmark (issue 4, "Benchmark"): the
// same names, sizes and bytes on every machine and every run, made by the
// benchmark itself, so figures from different days compare and nobody has to
// ship or fetch a data set.
//
//   small  100,000 files of 1–8 KiB in ~1,000 directories, three levels deep
//   mixed  ~20,000 files, ~2 GiB: mostly small files, some of MiBs, a few of 50–100 MiB
//   large  4 files of 256 MiB
//
// `scale` multiplies the file counts (small, mixed) or the file size (large),
// so a quick run (0.05) keeps the shape of each corpus. A corpus is made once
// under BENCH_DIR (default <tmpdir>/ndmpd-bench) and reused while its manifest
// says it is complete and of the same spec: generating 2 GiB costs more than a
// whole benchmark pass.
//
// The bytes are pseudo-random rather than zeros: nothing in the chain
// compresses today, but a file system or tape image that holes out zero pages
// would make a corpus of zeros measure nothing. Every file takes a slice of one
// reused random buffer at a seeded offset (cheap: generation is bound by the
// write syscalls, not by the PRNG).

import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';

export const CORPUS_NAMES = ['small', 'mixed', 'large'] as const;
export type CorpusName = (typeof CORPUS_NAMES)[number];

/** Bump when the generator's output changes: old corpora are then made again. */
const GENERATOR_VERSION = 1;

const KiB = 1024;
const MiB = 1024 * KiB;

/** A size class: `count` files, sizes uniform in [min, max], or log-uniform when `log`. */
interface SizeClass {
  count: number;
  min: number;
  max: number;
  log?: boolean;
}

/** What a corpus is, fully: two equal specs make the same tree byte for byte. */
interface CorpusSpec {
  version: number;
  name: CorpusName;
  scale: number;
  seed: number;
  dirs: number;
  classes: SizeClass[];
}

export interface Corpus {
  name: CorpusName;
  scale: number;
  /** The tree to back up (the export root). */
  root: string;
  files: number;
  /** Directories below the root (the root itself not counted). */
  dirs: number;
  /** Bytes of file data. */
  bytes: number;
  /** Milliseconds spent generating it now; null if an existing one was reused. */
  generatedMs: number | null;
}

interface Manifest {
  spec: CorpusSpec;
  files: number;
  dirs: number;
  bytes: number;
  complete: true;
}

export function benchDir(): string {
  return process.env.BENCH_DIR || join(os.tmpdir(), 'ndmpd-bench');
}

function specFor(name: CorpusName, scale: number): CorpusSpec {
  const n = (x: number) => Math.max(1, Math.round(x * scale));
  const base = { version: GENERATOR_VERSION, name, scale };
  switch (name) {
    case 'small':
      return {
        ...base,
        seed: 0x5a11,
        dirs: n(1000),
        classes: [{ count: n(100_000), min: 1 * KiB, max: 8 * KiB }],
      };
    case 'mixed': {
      // Shares picked so the expected total is ~2.0 GiB at scale 1: ~18 MiB of
      // tiny files, ~150 MiB small, ~630 MiB medium, ~670 MiB of MiB-sized
      // files and ~600 MiB in the few big ones.
      const count = n(20_000);
      const huge = Math.round(8 * scale);
      const big = Math.round(200 * scale);
      const medium = Math.round(3000 * scale);
      const small = Math.round(7000 * scale);
      const tiny = Math.max(0, count - huge - big - medium - small);
      return {
        ...base,
        seed: 0x313ed,
        dirs: n(1000),
        classes: [
          { count: tiny, min: 0, max: 4 * KiB },
          { count: small, min: 4 * KiB, max: 64 * KiB, log: true },
          { count: medium, min: 64 * KiB, max: 512 * KiB, log: true },
          { count: big, min: 1 * MiB, max: 8 * MiB, log: true },
          { count: huge, min: 50 * MiB, max: 100 * MiB },
        ],
      };
    }
    case 'large': {
      // Four files whatever the scale: the scale shrinks them instead.
      const size = Math.max(64 * KiB, Math.round(256 * MiB * scale));
      return { ...base, seed: 0x1a76e, dirs: 0, classes: [{ count: 4, min: size, max: size }] };
    }
  }
}

/** mulberry32: tiny, fast, and good enough to pick sizes, names and offsets. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

const FILL_BYTES = 16 * MiB;

function randomFill(rand: () => number): Buffer {
  const words = new Uint32Array(FILL_BYTES / 4);
  for (let i = 0; i < words.length; i++) words[i] = rand();
  return Buffer.from(words.buffer);
}

/**
 * Directory paths (relative, root excluded) in breadth-first order with a
 * fanout of about the cube root of the count: ~1,000 directories become 10
 * at the top, 100 below them and the rest a level further down.
 */
function dirLayout(count: number): string[] {
  if (count === 0) return [];
  const fanout = Math.max(2, Math.round(Math.cbrt(count)));
  const out: string[] = [];
  let level = [''];
  for (let depth = 0; out.length < count; depth++) {
    const next: string[] = [];
    for (const parent of level) {
      for (let i = 0; i < fanout && out.length < count; i++) {
        const d = `${parent}${'pqrstu'[depth % 6]}${String(i).padStart(2, '0')}/`;
        out.push(d);
        next.push(d);
      }
    }
    level = next;
  }
  return out;
}

const WORDS = ['report', 'img', 'data', 'notes', 'main', 'index', 'backup', 'log', 'q3-summary', 'x'];
const EXTS = ['txt', 'dat', 'json', 'c', 'jpg', 'md', 'bin', 'csv'];

function sizeOf(c: SizeClass, rand: () => number): number {
  const u = rand() / 2 ** 32;
  if (!c.log || c.min === 0) return Math.floor(c.min + u * (c.max - c.min + 1));
  return Math.floor(Math.exp(Math.log(c.min) + u * (Math.log(c.max) - Math.log(c.min))));
}

/** Writes the tree; returns file and byte counts. */
function generate(spec: CorpusSpec, root: string): { files: number; dirs: number; bytes: number } {
  const rand = prng(spec.seed);
  const fill = randomFill(rand);
  const dirs = dirLayout(spec.dirs);
  mkdirSync(root, { recursive: true });
  for (const d of dirs) mkdirSync(join(root, d));

  // Sizes of all files, then each given a directory at random, then written
  // directory by directory (the order a walk reads them back in, roughly).
  const sizes: number[] = [];
  for (const c of spec.classes) for (let i = 0; i < c.count; i++) sizes.push(sizeOf(c, rand));
  const where: { name: string; size: number }[][] = Array.from({ length: dirs.length + 1 }, () => []);
  let bytes = 0;
  sizes.forEach((size, i) => {
    const d = dirs.length === 0 ? 0 : rand() % (dirs.length + 1);
    const name = `${WORDS[rand() % WORDS.length]}-${i}.${EXTS[rand() % EXTS.length]}`;
    where[d]!.push({ name, size });
    bytes += size;
  });
  const chunk = 1 * MiB;
  where.forEach((list, d) => {
    const dir = d === 0 ? root : join(root, dirs[d - 1]!);
    for (const { name, size } of list) {
      const fd = openSync(join(dir, name), 'w');
      try {
        for (let done = 0; done < size;) {
          const n = Math.min(chunk, size - done);
          const at = rand() % (FILL_BYTES - n + 1);
          done += writeSync(fd, fill, at, n);
        }
      } finally {
        closeSync(fd);
      }
    }
  });
  return { files: sizes.length, dirs: dirs.length, bytes };
}

function readManifest(path: string): Manifest | null {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as Manifest;
  } catch {
    return null;
  }
}

/** Path of a corpus's folder: its tree and manifest live there. */
export function corpusDir(name: CorpusName, scale: number, base = benchDir()): string {
  return join(base, `${name}-x${scale}`);
}

/** The corpus, made now if there is no complete one of the same spec. */
export function ensureCorpus(
  name: CorpusName,
  scale: number,
  say: (line: string) => void = () => {},
): Corpus {
  const spec = specFor(name, scale);
  const dir = corpusDir(name, scale);
  const root = join(dir, 'tree');
  const manifestPath = join(dir, 'manifest.json');
  const m = readManifest(manifestPath);
  if (m?.complete && JSON.stringify(m.spec) === JSON.stringify(spec) && existsSync(root)) {
    return { name, scale, root, files: m.files, dirs: m.dirs, bytes: m.bytes, generatedMs: null };
  }
  // Anything else there (half made, another spec) goes: a partial tree would
  // quietly change what is measured.
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const files = spec.classes.reduce((s, c) => s + c.count, 0);
  say(`generating the ${name} corpus (${files.toLocaleString('en-US')} files) in ${dir} …`);
  const start = performance.now();
  const made = generate(spec, root);
  const generatedMs = performance.now() - start;
  const manifest: Manifest = { spec, ...made, complete: true };
  // Written last, and atomically: its presence is the promise that the tree is whole.
  writeFileSync(`${manifestPath}.tmp`, `${JSON.stringify(manifest, null, 2)}\n`);
  renameSync(`${manifestPath}.tmp`, manifestPath);
  return { name, scale, root, ...made, generatedMs };
}

export function removeCorpus(name: CorpusName, scale: number): void {
  rmSync(corpusDir(name, scale), { recursive: true, force: true });
}
