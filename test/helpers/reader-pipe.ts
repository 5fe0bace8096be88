// A LOCAL backup's two threads in a test: a real reader thread (see
// src/backup/pipe.ts) and this thread playing the mover, taking whatever the
// reader publishes into the output ring.

import { Worker } from 'node:worker_threads';

import type { StreamSink } from '../../src/backup/engine.js';
import { FilePipe } from '../../src/backup/pipe.js';
import type { FromReader } from '../../src/backup/reader-thread.js';
import { SpscRing } from '../../src/ring/spsc-ring.js';

/**
 * Runs `backup` with a FilePipe to a fresh reader thread and a sink that only
 * ends the stream; resolves with its result and the archive the reader
 * produced. The reader's warnings go to `warn`. Small rings (64 KiB) make
 * large headers and files go through in pieces.
 */
export async function withReaderThread<T>(
  backup: (pipe: FilePipe, sink: StreamSink) => Promise<T>,
  warn: (text: string) => void,
): Promise<{ result: T; archive: Buffer }> {
  const reader = new Worker(new URL('../../src/backup/reader-thread.js', import.meta.url));
  try {
    reader.on('message', (m: FromReader) => {
      if ('warn' in m) warn(m.warn);
    });
    const out = SpscRing.allocate(1 << 16);
    const ring = new SpscRing(out);
    const { work, control } = FilePipe.allocate(); // the size the data service uses: a header with 256 KiB of xattrs fits;
    const job = { work, out, control, abortFlag: new SharedArrayBuffer(4), history: null };
    reader.postMessage({ job });
    const parts: Buffer[] = [];
    let draining = true;
    const drain = (async () => {
      while (draining || ring.used > 0) {
        const { first, second } = ring.peek();
        if (first.length + second.length > 0) {
          parts.push(Buffer.from(first), Buffer.from(second));
          ring.consume(first.length + second.length);
        } else await ring.waitDataAsync(20);
      }
    })();
    const sink: StreamSink = { write: async () => undefined, end: async () => void (draining = false) };
    const result = await backup(new FilePipe(job), sink);
    await drain;
    return { result, archive: Buffer.concat(parts) };
  } finally {
    await reader.terminate();
  }
}
