// A process that writes a virtual tape until it is killed, for the crash-safety
// test (test/unit/tape-image.test.ts). Entry i of the tape is always the same
// (a function of i), so whatever prefix a killed writer leaves can be checked.
//
//   node tape-writer-child.js TAPE [append|overwrite]
//
// append (default): appends at EOD, printing "ready N" once open, then "N"
// after each entry is written (N = entries on the tape), until the data
// reaches MAX_BYTES. overwrite: the same, but every 40 entries it goes back to
// 60% of the tape and writes on from there, so kills also land while the tape
// is being cut (both files truncated) before a write. Entry i is the same
// either way, so the checks do not change.

import { writeSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

import { openTapeImage } from '../../src/devices/tape-image.js';

/** Enough to be mid-stream for any kill the test makes, bounded in case nobody kills us. */
const MAX_BYTES = 2 * 1024 ** 3;

/** Entry i is a filemark every 16 entries, a record otherwise. */
export function isFilemarkAt(i: number): boolean {
  return i % 16 === 15;
}

const mix = (i: number): number => Math.imul(i + 1, 0x9e3779b1) >>> 0;

/** Size of record i: mostly up to 8 KiB, now and then over 1 MiB (a slower write to be killed in). */
export function recordSizeAt(i: number): number {
  return i % 64 === 7 ? 1024 * 1024 + (mix(i) % 4096) : 1 + (mix(i) % 8192);
}

/** The content of record i: an 8-byte pattern naming it, repeated. */
export function recordAt(i: number): Buffer {
  const pattern = Buffer.alloc(8);
  pattern.writeUInt32BE(i, 0);
  pattern.writeUInt32BE(mix(i), 4);
  return Buffer.alloc(recordSizeAt(i), pattern);
}

function main(tapePath: string, overwrite: boolean): void {
  const tape = openTapeImage(tapePath, { readOnly: false });
  tape.seekEod();
  let i = tape.position().entry;
  writeSync(1, `ready ${i}\n`);
  let bytes = 0;
  for (let n = 1; bytes < MAX_BYTES; n++) {
    if (overwrite && n % 40 === 0 && i > 10) {
      i = Math.floor(i * 0.6);
      tape.locate(i);
      // From here on the tape holds at least i entries, whether or not the cut has happened.
      writeSync(1, `${i}\n`);
    }
    if (isFilemarkAt(i)) {
      tape.writeFilemarks(1);
    } else {
      const record = recordAt(i);
      tape.writeRecord(record);
      bytes += record.length;
    }
    i++;
    writeSync(1, `${i}\n`);
  }
  tape.close();
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const tapePath = process.argv[2];
  if (tapePath === undefined) throw new Error('usage: tape-writer-child.js TAPE [append|overwrite]');
  main(tapePath, process.argv[3] === 'overwrite');
}
