// Reading what a test wrote to a virtual tape, without going through NDMP.

import { closeSync, openSync, readSync } from 'node:fs';
import { tapeFileExtent } from '../../src/devices/tape-image.js';

/** The bytes of tape file `fileNum` of the tape image at `path` (throws if there is none). */
export function tapeFileBytes(path: string, fileNum: number): Buffer {
  const x = tapeFileExtent(path, fileNum);
  if (!x) throw new Error(`${path} has no tape file ${fileNum}`);
  const buf = Buffer.alloc(Number(x.end - x.start));
  const fd = openSync(path, 'r');
  try {
    readSync(fd, buf, 0, buf.length, Number(x.start));
  } finally {
    closeSync(fd);
  }
  return buf;
}
