// XDR (RFC 4506) as NDMP uses it: big-endian, every item padded to 4 bytes,
// NDMP's `u_long` is 32 bits and its `u_quad` a {high, low} pair (= BE uint64).

import { decodeName, encodeName, NotAByteNameError } from '../util/byte-name.js';
import { XdrDecodeError } from './errors.js';

/**
 * n rounded up to a multiple of 4. Plain arithmetic, not `(n + 3) & ~3`: bit
 * operators work on signed 32-bit values, and a hostile length of 0x7ffffffd
 * or more would round to zero or below and slip past the bounds check.
 */
function padded4(n: number): number {
  return n + ((4 - (n % 4)) % 4);
}

/** No lone surrogate (String#isWellFormed, Node 20; TypeScript's lib here predates it). */
function isWellFormed(s: string): boolean {
  return (s as unknown as { isWellFormed(): boolean }).isWellFormed();
}

/**
 * The bytes of a string holding escaped bytes. A lone surrogate that stands
 * for no byte cannot come from a name (decodeName never makes one); such text
 * (a message built from a broken string) is sent the way node writes it, with
 * U+FFFD, rather than failing the whole reply.
 */
function stringBytes(v: string): Buffer {
  try {
    return encodeName(v);
  } catch (e) {
    if (e instanceof NotAByteNameError) return Buffer.from(v, 'utf8');
    throw e;
  }
}

/**
 * Reads XDR items from one decoded record. Every read checks bounds first and
 * throws XdrDecodeError instead of reading past the end, so a truncated or
 * lying body can never make us allocate or read what is not there.
 */
export class XdrReader {
  private pos: number;

  constructor(
    private readonly buf: Buffer,
    start = 0,
    private readonly end = buf.length,
  ) {
    this.pos = start;
  }

  get offset(): number {
    return this.pos;
  }

  get remaining(): number {
    return this.end - this.pos;
  }

  private need(n: number, what: string): void {
    if (n > this.end - this.pos) {
      throw new XdrDecodeError(`${what}: need ${n} bytes at offset ${this.pos}, have ${this.end - this.pos}`);
    }
  }

  u32(): number {
    this.need(4, 'u32');
    const v = this.buf.readUInt32BE(this.pos);
    this.pos += 4;
    return v;
  }

  i32(): number {
    this.need(4, 'i32');
    const v = this.buf.readInt32BE(this.pos);
    this.pos += 4;
    return v;
  }

  u64(): bigint {
    this.need(8, 'u64');
    const v = this.buf.readBigUInt64BE(this.pos);
    this.pos += 8;
    return v;
  }

  /** XDR `bool`: anything but 0 or 1 is a decode error (RFC 4506 §4.4). */
  bool(): boolean {
    const v = this.u32();
    if (v > 1) throw new XdrDecodeError(`bool: ${v} is neither 0 nor 1`);
    return v === 1;
  }

  /** Fixed-length opaque: n bytes then pad, no length word. Returns a copy. */
  fixedOpaque(n: number): Buffer {
    const padded = padded4(n);
    this.need(padded, `opaque[${n}]`);
    const out = Buffer.from(this.buf.subarray(this.pos, this.pos + n));
    this.pos += padded;
    return out;
  }

  /** Variable-length opaque: u32 length, bytes, pad. Returns a copy. */
  opaque(): Buffer {
    const n = this.u32();
    return this.fixedOpaque(n);
  }

  /**
   * XDR `string`: a byte string (RFC 4506 §4.11), which NDMP uses for file
   * names, paths and env values. Decoded the lossless way (docs/names.md), so
   * bytes that are not UTF-8 survive to the encoder unchanged.
   */
  string(): string {
    const n = this.u32();
    const padded = padded4(n);
    this.need(padded, `string<${n}>`);
    const s = decodeName(this.buf, this.pos, this.pos + n);
    this.pos += padded;
    return s;
  }

  /**
   * Array count, checked against the bytes left: each element takes at least
   * `minElementSize` bytes on the wire, so a count larger than the record could
   * hold is refused before any element array is allocated.
   */
  count(minElementSize: number): number {
    const n = this.u32();
    if (minElementSize > 0 && n > Math.floor(this.remaining / minElementSize)) {
      throw new XdrDecodeError(`array of ${n} elements cannot fit in ${this.remaining} bytes`);
    }
    return n;
  }
}

/**
 * Appends XDR items to a growable buffer. The writer owns its buffer until
 * `finish()` hands out a view of the bytes written.
 */
export class XdrWriter {
  private buf: Buffer;
  private pos = 0;

  constructor(initialSize = 256) {
    this.buf = Buffer.allocUnsafe(Math.max(initialSize, 16));
  }

  get length(): number {
    return this.pos;
  }

  private room(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const next = Buffer.allocUnsafe(size);
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  u32(v: number): this {
    if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new RangeError(`u32 out of range: ${v}`);
    this.room(4);
    this.buf.writeUInt32BE(v, this.pos);
    this.pos += 4;
    return this;
  }

  i32(v: number): this {
    if (!Number.isInteger(v) || v < -0x80000000 || v > 0x7fffffff)
      throw new RangeError(`i32 out of range: ${v}`);
    this.room(4);
    this.buf.writeInt32BE(v, this.pos);
    this.pos += 4;
    return this;
  }

  u64(v: bigint): this {
    if (v < 0n || v > 0xffffffffffffffffn) throw new RangeError(`u64 out of range: ${v}`);
    this.room(8);
    this.buf.writeBigUInt64BE(BigInt.asUintN(64, v), this.pos);
    this.pos += 8;
    return this;
  }

  bool(v: boolean): this {
    return this.u32(v ? 1 : 0);
  }

  private pad(n: number): void {
    const p = (4 - (n & 3)) & 3;
    if (p) {
      this.room(p);
      this.buf.fill(0, this.pos, this.pos + p);
      this.pos += p;
    }
  }

  /** Fixed-length opaque; the value must have exactly n bytes. */
  fixedOpaque(v: Uint8Array, n: number): this {
    if (v.length !== n) throw new RangeError(`opaque[${n}] given ${v.length} bytes`);
    this.room(n);
    this.buf.set(v, this.pos);
    this.pos += n;
    this.pad(n);
    return this;
  }

  opaque(v: Uint8Array): this {
    this.u32(v.length);
    return this.fixedOpaque(v, v.length);
  }

  /**
   * XDR `string` from the lossless form (docs/names.md): an escaped byte goes
   * out as that byte. A string without escapes (nearly all) is written straight
   * in UTF-8 with no copy.
   */
  string(v: string): this {
    if (isWellFormed(v)) {
      const n = Buffer.byteLength(v, 'utf8');
      this.u32(n);
      this.room(n);
      this.buf.write(v, this.pos, n, 'utf8');
      this.pos += n;
      this.pad(n);
      return this;
    }
    return this.opaque(stringBytes(v));
  }

  /** Overwrites a u32 already written at `at` (used for lengths known late). */
  patchU32(at: number, v: number): void {
    this.buf.writeUInt32BE(v, at);
  }

  /** The bytes written so far. The view shares memory with the writer. */
  finish(): Buffer {
    return this.buf.subarray(0, this.pos);
  }
}
