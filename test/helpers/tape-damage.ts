// Damage done to tape images on purpose, for the tests of data CRCs and of
// `ndmp verify` (docs/tape-image.md, "Data CRCs"): a byte of a record changed
// behind the index's back, and an image turned back into what a writer from
// before data CRCs made (no CRCs in its entries, no header flag).

import fs from 'node:fs';
import { crc32 } from 'node:zlib';
import { indexPathOf } from '../../src/devices/tape-image.js';

const HEADER_SIZE = 4096;
const ENTRY_SIZE = 32;
const HEADER_FLAGS = 32;
const HEADER_CRC = 368;
const FLAG_DATA_CRCS = 2;

/** Flips the bits of the byte at `offset` of the data file (the index is left as it is). */
export function flipDataByte(dataPath: string, offset: number, mask = 0xff): void {
  const fd = fs.openSync(dataPath, 'r+');
  try {
    const b = Buffer.alloc(1);
    if (fs.readSync(fd, b, 0, 1, offset) !== 1) throw new Error(`${dataPath} has no byte ${offset}`);
    b[0] = b[0]! ^ mask;
    fs.writeSync(fd, b, 0, 1, offset);
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Rewrites the index as a writer before data CRCs left it: entry bytes 13 and
 * 24-27 zero (entry CRCs recomputed), the header's data-CRC flag clear.
 */
export function stripDataCrcs(dataPath: string): void {
  const idx = indexPathOf(dataPath);
  const buf = fs.readFileSync(idx);
  const flags = buf.readUInt32BE(HEADER_FLAGS) & ~FLAG_DATA_CRCS;
  buf.writeUInt32BE(flags, HEADER_FLAGS);
  buf.writeUInt32BE(crc32(buf.subarray(0, HEADER_CRC)), HEADER_CRC);
  for (let at = HEADER_SIZE; at + ENTRY_SIZE <= buf.length; at += ENTRY_SIZE) {
    buf.fill(0, at + 13, at + 16);
    buf.fill(0, at + 24, at + 28);
    buf.writeUInt32BE(crc32(buf.subarray(at, at + 28)), at + 28);
  }
  fs.writeFileSync(idx, buf);
}
