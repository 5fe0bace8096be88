// A LOCAL backup's walker + real reader thread, as the data service wires it
// (src/backup/pipe.ts), with the reader's history records collected: the
// reader fills in each record's fh_info, and a test checks it points at the
// record's own header. The out ring's size is the test's: 64 KiB (big files
// and headers in pieces, as reader-pipe.ts) or 8 MiB (the data service's).
// Also the same backup on one thread, for archives to compare byte for byte.

import { Worker } from 'node:worker_threads';

import { BackupEngine } from '../../src/backup/engine.js';
import type {
  BackedUpEntry,
  BackupHooks,
  BackupResult,
  BackupSpec,
  StreamSink,
} from '../../src/backup/engine.js';
import { FilePipe } from '../../src/backup/pipe.js';
import type { FromReader } from '../../src/backup/reader-thread.js';
import { HistoryControl } from '../../src/history/control.js';
import type { HistoryChannel } from '../../src/history/control.js';
import { OFF, RecordWriter } from '../../src/history/record.js';
import { SpscRing } from '../../src/ring/spsc-ring.js';
import { decodeName } from '../../src/util/byte-name.js';

/** A history record as the reader completed it. */
export interface Completed {
  readonly path: string;
  readonly fhInfo: bigint;
}

export interface Run {
  readonly result: BackupResult;
  readonly archive: Buffer;
  readonly warnings: string[];
  /** Path-model history, in the order the reader appended it (one thread: entry() order). */
  readonly records: Completed[];
}

interface Extra {
  /** Reader runs: each entry before its history record is made (after its header). */
  readonly record?: (e: BackedUpEntry) => void;
  /** One-thread runs: each entry once it is in the stream. */
  readonly entry?: (e: BackedUpEntry) => void;
  readonly directory?: BackupHooks['directory'];
}

function spec(root: string, more: Partial<BackupSpec>): BackupSpec {
  return { root, files: [], excludes: [], ...more };
}

/** Every completed record in `ring` so far. */
function drainHistory(ring: SpscRing, into: Completed[]): void {
  ring.drainRecords((r) => {
    const v = new DataView(r.buffer, r.byteOffset, r.length);
    const nameLen = v.getUint32(OFF.nameLen, true);
    const fh = v.getBigUint64(OFF.fhInfo, true);
    into.push({ path: decodeName(r, OFF.name, OFF.name + nameLen), fhInfo: fh });
  });
}

/**
 * The backup of `root` by the walker and a reader thread with an out ring of
 * `outBytes`. `hooks.record` is called with each entry before its record is
 * made (to change the tree at a known moment: after the walker made the
 * header, before the reader reads the file).
 */
export async function backupWithReader(
  root: string,
  opts: {
    outBytes?: number;
    spec?: Partial<BackupSpec>;
    hooks?: Extra;
    /**
     * The reader gets its job this much later: the walker queues items
     * meanwhile (as far as the work ring holds), so that the reader finds
     * many waiting and lays big batches (files, directories, links mixed).
     */
    holdReaderMs?: number;
  } = {},
): Promise<Run> {
  const reader = new Worker(new URL('../../src/backup/reader-thread.js', import.meta.url));
  const warnings: string[] = [];
  const records: Completed[] = [];
  try {
    reader.on('message', (m: FromReader) => {
      if ('warn' in m) warnings.push(m.warn);
    });
    const out = SpscRing.allocate(opts.outBytes ?? 8 << 20);
    const ring = new SpscRing(out);
    const histRing = SpscRing.allocate(1 << 20);
    const hist = new SpscRing(histRing);
    const history = {
      mode: 'worker',
      ring: histRing,
      doorbell: new SharedArrayBuffer(4),
      control: HistoryControl.allocate(),
      limits: {},
      stallTimeoutMs: 60_000,
    } as unknown as HistoryChannel;
    const { work, control } = FilePipe.allocate();
    const job = { work, out, control, abortFlag: new SharedArrayBuffer(4), history };
    if (opts.holdReaderMs) setTimeout(() => reader.postMessage({ job }), opts.holdReaderMs);
    else reader.postMessage({ job });
    const parts: Buffer[] = [];
    let draining = true;
    const drain = (async () => {
      while (draining || ring.used > 0) {
        drainHistory(hist, records);
        const { first, second } = ring.peek();
        if (first.length + second.length > 0) {
          parts.push(Buffer.from(first), Buffer.from(second));
          ring.consume(first.length + second.length);
        } else await ring.waitDataAsync(10);
      }
    })();
    const sink: StreamSink = { write: async () => undefined, end: async () => void (draining = false) };
    const writer = new RecordWriter();
    const userRecord = opts.hooks?.record;
    const hooks: BackupHooks = {
      aborted: () => false,
      warn: (t) => warnings.push(t),
      ...(opts.hooks?.directory ? { directory: opts.hooks.directory } : {}),
      record: (e: BackedUpEntry) => {
        userRecord?.(e);
        return writer.entry(e.path, e.stat, e.node, null, 0);
      },
    };
    const result = await new BackupEngine(spec(root, opts.spec ?? {}), sink, hooks, new FilePipe(job)).run();
    await drain;
    drainHistory(hist, records);
    // The reader's warnings arrive as messages after its last byte: wait for its count.
    for (let i = 0; i < 200 && warnings.length < result.warnings; i++)
      await new Promise((res) => setTimeout(res, 10));
    return { result, archive: Buffer.concat(parts), warnings, records };
  } finally {
    await reader.terminate();
  }
}

/** The same backup on one thread (no pipe): its archive, warnings and entry() history. */
export async function backupOneThread(
  root: string,
  opts: { spec?: Partial<BackupSpec>; hooks?: Extra } = {},
): Promise<Run> {
  const parts: Buffer[] = [];
  const warnings: string[] = [];
  const records: Completed[] = [];
  const sink: StreamSink = {
    write: async (c) => void parts.push(Buffer.from(c)),
    end: async () => undefined,
  };
  const userEntry = opts.hooks?.entry;
  const hooks: BackupHooks = {
    aborted: () => false,
    warn: (t) => warnings.push(t),
    ...(opts.hooks?.directory ? { directory: opts.hooks.directory } : {}),
    entry: (e) => {
      userEntry?.(e);
      if (e.headerOffset !== null) records.push({ path: e.path, fhInfo: e.headerOffset });
    },
  };
  const result = await new BackupEngine(spec(root, opts.spec ?? {}), sink, hooks).run();
  return { result, archive: Buffer.concat(parts), warnings, records };
}
