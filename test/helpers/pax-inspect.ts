// Reading pax archives in tests independently of the parser: an entry without
// the parser's stream positions, and the raw records of an x header.

import assert from 'node:assert/strict';
import { BLOCK } from '../../src/backup/pax-layout.js';
import type { PaxEntry } from '../../src/backup/pax-layout.js';
import type { ParsedEntry } from '../../src/backup/pax-parser.js';

/** A parsed entry as the PaxEntry it was made from: positions left out. */
export const strip = (e: ParsedEntry): PaxEntry => {
  // eslint-disable-next-line @typescript-eslint/no-unused-vars
  const { headerOffset, dataOffset, archivedSize, ...rest } = e;
  return rest;
};

/** The records of the x header at the start of `h`, raw bytes (empty: no x header). */
export function xRecords(h: Uint8Array): Map<string, Buffer> {
  const m = new Map<string, Buffer>();
  if (h[156] !== 0x78) return m;
  const size = parseInt(Buffer.from(h.subarray(124, 135)).toString('latin1'), 8);
  const body = Buffer.from(h.subarray(BLOCK, BLOCK + size));
  let p = 0;
  while (p < body.length) {
    const sp = body.indexOf(0x20, p);
    const len = Number(body.toString('latin1', p, sp));
    const rec = body.subarray(sp + 1, p + len - 1);
    const eq = rec.indexOf(0x3d);
    assert.equal(body[p + len - 1], 0x0a, 'a record ends in a newline');
    m.set(rec.toString('latin1', 0, eq), Buffer.from(rec.subarray(eq + 1)));
    p += len;
  }
  return m;
}
