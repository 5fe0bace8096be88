// The CPU a LOCAL backup's walker and reader thread spend on a tree, without
// the mover, the tape or file history: the engine and a real reader thread
// (src/backup/pipe.ts) into a ring that this thread drains and discards.
// process.cpuUsage() covers every thread of the process, so on a busy machine
// it still says what the backup's own threads cost (docs/design.md, "Small files").
//
//   node dist/bench/source-cpu.js [--runs N] [--xattrs n] DIR

import { parseArgs } from 'node:util';
import { Worker } from 'node:worker_threads';

import { BackupEngine } from '../src/backup/engine.js';
import { FilePipe } from '../src/backup/pipe.js';
import { SpscRing } from '../src/ring/spsc-ring.js';
import { SERVER_THREADS, sampleThreads, threadCpuMs } from './ndmpd-child.js';

async function once(
  root: string,
  xattrs: boolean,
): Promise<{ wallMs: number; cpuMs: number; bytes: bigint; entries: number }> {
  const reader = new Worker(new URL('../src/backup/reader-thread.js', import.meta.url));
  try {
    const out = SpscRing.allocate(8 << 20);
    const ring = new SpscRing(out);
    const { work, control } = FilePipe.allocate();
    const job = { work, out, control, abortFlag: new SharedArrayBuffer(4), history: null };
    reader.postMessage({ job });
    let draining = true;
    const drain = (async () => {
      while (draining || ring.used > 0) {
        const { first, second } = ring.peek();
        const n = first.length + second.length;
        if (n > 0) ring.consume(n);
        else await ring.waitDataAsync(20);
      }
    })();
    const t0s = sampleThreads(process.pid);
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    const r = await new BackupEngine(
      { root, files: [], excludes: [], xattrs, acls: xattrs },
      { write: async () => undefined, end: async () => void (draining = false) },
      { aborted: () => false, warn: (t) => console.error(t), record: () => null },
      new FilePipe(job),
    ).run();
    await drain;
    const c = process.cpuUsage(c0);
    // This thread is the walker ("main"); the reader is named; "other" is V8's compiler and GC.
    const ms = threadCpuMs(t0s, sampleThreads(process.pid));
    const busy = SERVER_THREADS.filter((n) => ms[n] >= 1).map(
      (n) => `${n.replace('ndmp-', '')} ${ms[n].toFixed(0)} ms`,
    );
    console.log(`  threads: ${busy.join(', ')}`);
    return {
      wallMs: performance.now() - t0,
      cpuMs: (c.user + c.system) / 1000,
      bytes: r.bytes,
      entries: r.entries,
    };
  } finally {
    await reader.terminate();
  }
}

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { runs: { type: 'string', default: '5' }, xattrs: { type: 'string', default: 'y' } },
});
const root = positionals[0];
if (!root) {
  console.error('usage: node dist/bench/source-cpu.js [--runs N] [--xattrs n] DIR');
  process.exit(2);
}
const runs: { wallMs: number; cpuMs: number }[] = [];
await once(root, values.xattrs !== 'n'); // warm-up: JIT, page cache
for (let i = 0; i < Number(values.runs); i++) {
  const r = await once(root, values.xattrs !== 'n');
  runs.push(r);
  console.log(
    `run ${i + 1}: ${r.entries} entries, ${r.bytes} bytes, wall ${r.wallMs.toFixed(0)} ms, cpu ${r.cpuMs.toFixed(0)} ms`,
  );
}
const med = (xs: number[]): number => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
console.log(
  `median: wall ${med(runs.map((r) => r.wallMs)).toFixed(0)} ms, cpu ${med(runs.map((r) => r.cpuMs)).toFixed(0)} ms (walker + reader threads, all of the process)`,
);
