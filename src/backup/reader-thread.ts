// Entry point of a session's reader thread (see pipe.ts): one pipelined
// backup at a time, each a synchronous run; what goes wrong with a file is
// sent back as a warning for the DMA's log.

import { parentPort } from 'node:worker_threads';
import type { PipeJob } from './pipe.js';
import { PipeReader } from './reader.js';
import { nameThread } from '../util/native-fs.js';

export type ToReader = { readonly job: PipeJob };
export type FromReader = { readonly warn: string } | { readonly done: true } | { readonly ready: true };

const port = parentPort;
if (!port) throw new Error('the reader thread must run as a worker thread');
nameThread('ndmp-reader');

port.on('message', (m: ToReader) => {
  new PipeReader(m.job, (warn) => port.postMessage({ warn } satisfies FromReader)).run();
  port.postMessage({ done: true } satisfies FromReader);
});
// Loaded: the data thread may stop this one now without leaking (see data-service.ts shutdown).
port.postMessage({ ready: true } satisfies FromReader);
