// ONC RPC record marking (RFC 5531 §11), which carries every NDMP message.
//
//   record   = fragment* last-fragment
//   fragment = u32 mark (bit 31: last fragment; bits 0..30: length) + payload
//
// Peers built on libc xdrrec split messages over ~4000 bytes into several
// fragments, and TCP splits anything anywhere, so the framer reassembles across
// both. It refuses a record whose declared size would exceed `maxRecordSize`
// before it allocates or buffers that record's payload.

import { FramingError } from './errors.js';

/** Bit 31 of a record mark: this fragment ends the record. */
export const LAST_FRAGMENT = 0x80000000;
const LENGTH_MASK = 0x7fffffff;

/** Default cap on one NDMP record: a TAPE_WRITE of a 4 MiB block plus a header's worth of slack. */
export const DEFAULT_MAX_RECORD_SIZE = 4 * 1024 * 1024 + 4096;

export class RecordFramer {
  /** Bytes received but not yet consumed (a partial mark or a partial fragment). */
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  /** Payload of the fragments of the current record that are already complete. */
  private fragments: Buffer[] = [];
  private recordBytes = 0;
  private broken = false;

  constructor(private maxRecordSize = DEFAULT_MAX_RECORD_SIZE) {}

  /** Changes the cap for records not yet started (a server raises it after authentication). */
  setMaxRecordSize(n: number): void {
    this.maxRecordSize = n;
  }

  /**
   * Feeds bytes as they arrive and returns the records they complete, in order.
   * Throws FramingError on an oversized record; after that the framer stays
   * broken (the caller closes the connection). Returned buffers are the
   * caller's; the framer keeps no reference to them.
   */
  push(chunk: Buffer): Buffer[] {
    if (this.broken) throw new FramingError('framer used after a framing error');
    const records: Buffer[] = [];
    if (chunk.length === 0) return records;
    this.pending.push(chunk);
    this.pendingBytes += chunk.length;

    for (;;) {
      if (this.pendingBytes < 4) break;
      const mark = this.peekMark();
      const len = mark & LENGTH_MASK;
      const last = (mark & LAST_FRAGMENT) !== 0;
      if (this.recordBytes + len > this.maxRecordSize) {
        this.broken = true;
        throw new FramingError(
          `record of at least ${this.recordBytes + len} bytes exceeds the maximum of ${this.maxRecordSize}`,
        );
      }
      if (this.pendingBytes < 4 + len) break;
      this.take(4);
      const payload = this.take(len);
      if (len > 0) this.fragments.push(payload);
      this.recordBytes += len;
      if (last) {
        records.push(this.fragments.length === 1 ? this.fragments[0]! : Buffer.concat(this.fragments));
        this.fragments = [];
        this.recordBytes = 0;
      }
    }
    return records;
  }

  /** Bytes held for an incomplete record (for tests and diagnostics). */
  get buffered(): number {
    return this.pendingBytes + this.recordBytes;
  }

  private peekMark(): number {
    const first = this.pending[0]!;
    if (first.length >= 4) return first.readUInt32BE(0);
    // The mark straddles chunks (TCP split it): gather its four bytes.
    let mark = 0;
    let got = 0;
    for (const c of this.pending) {
      for (let i = 0; i < c.length && got < 4; i++, got++) mark = mark * 256 + c[i]!;
      if (got === 4) break;
    }
    return mark;
  }

  /** Removes n bytes from the front of `pending`, copying only when they span chunks. */
  private take(n: number): Buffer {
    this.pendingBytes -= n;
    const first = this.pending[0];
    if (n === 0) return Buffer.alloc(0);
    if (first && first.length >= n) {
      const out = first.subarray(0, n);
      if (first.length === n) this.pending.shift();
      else this.pending[0] = first.subarray(n);
      // Copy out of the socket's chunk so a small record does not pin a large chunk.
      return Buffer.from(out);
    }
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    while (filled < n) {
      const c = this.pending[0]!;
      const want = n - filled;
      if (c.length <= want) {
        c.copy(out, filled);
        filled += c.length;
        this.pending.shift();
      } else {
        c.copy(out, filled, 0, want);
        this.pending[0] = c.subarray(want);
        filled += want;
      }
    }
    return out;
  }
}

/** Frames one message as a single last fragment (fine for every known peer). */
export function frameRecord(payload: Buffer): Buffer {
  if (payload.length > LENGTH_MASK) throw new RangeError(`record too large: ${payload.length}`);
  const out = Buffer.allocUnsafe(4 + payload.length);
  out.writeUInt32BE((LAST_FRAGMENT | payload.length) >>> 0, 0);
  payload.copy(out, 4);
  return out;
}

/** Frames one message as fragments of at most `fragmentSize` bytes, as xdrrec peers do. */
export function frameRecordFragmented(payload: Buffer, fragmentSize: number): Buffer {
  if (fragmentSize <= 0) throw new RangeError('fragmentSize must be positive');
  const parts: Buffer[] = [];
  let off = 0;
  do {
    const len = Math.min(fragmentSize, payload.length - off);
    const mark = Buffer.allocUnsafe(4);
    const last = off + len >= payload.length;
    mark.writeUInt32BE(((last ? LAST_FRAGMENT : 0) | len) >>> 0, 0);
    parts.push(mark, payload.subarray(off, off + len));
    off += len;
  } while (off < payload.length);
  return Buffer.concat(parts);
}
