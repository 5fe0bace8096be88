// Small helpers for the SCSI module's tests: CDBs and expected data written
// in hex as in docs/smc.md, and sense read back at its fixed offsets (the
// way ndmjob reads it), independently of src/devices/smc/sense.ts.

import assert from 'node:assert/strict';
import type { ScsiRequest, ScsiResult } from '../../src/devices/smc/command.js';

/** Bytes from hex; blanks, newlines and `|` separators are ignored. */
export function hexBytes(h: string): Uint8Array {
  const clean = h.replace(/[\s|]/g, '');
  assert.ok(/^([0-9a-f]{2})*$/i.test(clean), `bad hex: ${h}`);
  return Uint8Array.from(Buffer.from(clean, 'hex'));
}

export function toHex(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.length).toString('hex');
}

/** ASCII text as bytes, blank padded to `width` (no padding without a width). */
export function asciiBytes(s: string, width = s.length): Uint8Array {
  return Uint8Array.from(Buffer.from(s.padEnd(width, ' '), 'latin1'));
}

export function concat(...parts: (Uint8Array | string)[]): Uint8Array {
  return Uint8Array.from(Buffer.concat(parts.map((p) => (typeof p === 'string' ? hexBytes(p) : p))));
}

/** A request with a CDB in hex and room for `dataInLen` bytes (no data-out). */
export function cdbRequest(cdb: string | Uint8Array, dataInLen = 0x10000): ScsiRequest {
  return { cdb: typeof cdb === 'string' ? hexBytes(cdb) : cdb, dataInLen, dataOut: new Uint8Array(0) };
}

/** GOOD with no sense; returns the data-in in hex. */
export function goodData(r: ScsiResult): string {
  assert.equal(r.status, 0x00, `expected GOOD, got status ${r.status} (${r.detail ?? ''})`);
  assert.equal(r.sense.length, 0);
  return toHex(r.dataIn);
}

/**
 * CHECK CONDITION with fixed-format sense `key/asc/ascq` (e.g. '5/3b/0e'),
 * and, when given, the sense-key specific bytes 15–17 in hex.
 */
export function assertCheck(r: ScsiResult, kaq: string, sks = '000000'): void {
  assert.equal(r.status, 0x02, `expected CHECK CONDITION, got ${r.status}`);
  assert.equal(r.dataIn.length, 0);
  assert.equal(r.sense.length, 18);
  const s = r.sense;
  assert.equal(s[0], 0x70, 'fixed format, current error');
  assert.equal(s[7], 10, 'additional sense length');
  const got = `${(s[2]! & 0x0f).toString(16)}/${s[12]!.toString(16).padStart(2, '0')}/${s[13]!.toString(16).padStart(2, '0')}`;
  assert.equal(got, kaq, r.detail);
  assert.equal(toHex(s.subarray(15, 18)), sks, 'sense-key specific bytes');
}
