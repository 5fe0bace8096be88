// How long the restore engine takes to write a whole tree (docs/security.md,
// "While the tree changes": the cost of restoring through directory
// descriptors). The corpus is backed up once to an archive file; each run
// restores that file into a fresh directory and only the restore is timed.
//
//   node dist/bench/restore-time.js --scale 0.2 --runs 3 [--archive FILE]
//
// With --archive an existing archive is reused (or made there), so two builds
// of the engine can be timed on the same bytes.

import fs from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';

import { BackupEngine } from '../src/backup/engine.js';
import { RestoreEngine } from '../src/backup/restore.js';
import { ensureCorpus } from './corpus.js';

const { values } = parseArgs({
  options: {
    scale: { type: 'string', default: '0.2' },
    runs: { type: 'string', default: '3' },
    archive: { type: 'string' },
  },
});
const scale = Number(values.scale);
const runs = Number(values.runs);
const archive = values.archive ?? join(os.tmpdir(), `ndmpd-bench-restore-small-x${scale}.pax`);

if (!fs.existsSync(archive)) {
  const corpus = ensureCorpus('small', scale, (l) => console.log(l));
  const fd = fs.openSync(`${archive}.tmp`, 'w');
  await new BackupEngine(
    { root: corpus.root, files: [], excludes: [] },
    {
      write: async (c) => {
        for (let off = 0; off < c.length;) off += fs.writeSync(fd, c, off, c.length - off);
      },
      end: async () => undefined,
    },
    { aborted: () => false, warn: (w) => console.log(`backup: ${w}`) },
  ).run();
  fs.closeSync(fd);
  fs.renameSync(`${archive}.tmp`, archive);
}

const CHUNK = 256 * 1024;
const times: number[] = [];
for (let i = 0; i < runs; i++) {
  const dest = fs.mkdtempSync(join(os.tmpdir(), 'ndmpd-bench-restore-'));
  const fd = fs.openSync(archive, 'r');
  const buf = Buffer.allocUnsafe(CHUNK);
  let warnings = 0;
  const start = performance.now();
  const r = new RestoreEngine({ dest, overwrite: 'always' }, { warn: () => void warnings++ });
  for (;;) {
    const n = fs.readSync(fd, buf, 0, CHUNK, null);
    if (n === 0) break;
    r.push(buf.subarray(0, n));
  }
  const result = r.end();
  const ms = performance.now() - start;
  fs.closeSync(fd);
  fs.rmSync(dest, { recursive: true, force: true });
  times.push(ms);
  console.log(
    `run ${i + 1}: ${(ms / 1000).toFixed(2)} s, ${result.restored} restored, ${result.failed + result.refused} failed, ${warnings} warnings`,
  );
}
console.log(`best ${(Math.min(...times) / 1000).toFixed(2)} s of ${runs} (${archive})`);
