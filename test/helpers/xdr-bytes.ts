// A tiny XDR byte builder for tests, written from RFC 4506 and docs/protocol.md §1.3
// alone: big-endian words, every item padded with zeros to 4 bytes, u_quad as a
// {high, low} pair, fixed opaques without a length word. It deliberately shares
// no code with src/wire, so golden bytes built with it check the codec rather
// than repeat it.

export class Bytes {
  private readonly parts: number[] = [];

  /** One 4-byte big-endian word (`u_long`, enum, `u_short`, `u_char`, `bool`). */
  u32(v: number): this {
    if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new Error(`builder: bad u32 ${v}`);
    this.parts.push(Math.floor(v / 0x1000000) & 0xff, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff);
    return this;
  }

  /** A signed 32-bit word (`short`), two's complement. */
  i32(v: number): this {
    if (!Number.isInteger(v) || v < -0x80000000 || v > 0x7fffffff) throw new Error(`builder: bad i32 ${v}`);
    return this.u32(v < 0 ? v + 0x100000000 : v);
  }

  /** `ndmp_u_quad`: the high word, then the low word. */
  quad(v: bigint): this {
    if (v < 0n || v >= 1n << 64n) throw new Error(`builder: bad quad ${v}`);
    return this.u32(Number(v >> 32n)).u32(Number(v & 0xffffffffn));
  }

  /** Raw bytes followed by zero padding to a multiple of 4, no length word. */
  fixed(v: Uint8Array): this {
    for (const x of v) this.parts.push(x);
    for (let i = v.length; i % 4 !== 0; i++) this.parts.push(0);
    return this;
  }

  /** `opaque x<>`: length word, bytes, zero padding. */
  opaque(v: Uint8Array): this {
    return this.u32(v.length).fixed(v);
  }

  /** `string x<>`: the UTF-8 bytes as an `opaque<>`. */
  str(s: string): this {
    return this.opaque(new TextEncoder().encode(s));
  }

  /** Bytes appended as they are (an already built fragment, no padding added). */
  raw(v: Uint8Array | Bytes): this {
    const src = v instanceof Bytes ? v.bytes() : v;
    for (const x of src) this.parts.push(x);
    return this;
  }

  /** Bytes given in hex; spaces are ignored. */
  hex(h: string): this {
    return this.raw(fromHex(h));
  }

  bytes(): Buffer {
    return Buffer.from(this.parts);
  }
}

export function b(): Bytes {
  return new Bytes();
}

export function fromHex(h: string): Buffer {
  const clean = h.replace(/\s+/g, '');
  if (!/^(?:[0-9a-f]{2})*$/i.test(clean)) throw new Error(`builder: bad hex '${h}'`);
  return Buffer.from(clean, 'hex');
}

/** The 24-byte `ndmp_header` (docs/protocol.md §2.1). */
export function headerBytes(
  sequence: number,
  timeStamp: number,
  messageType: number,
  messageCode: number,
  replySequence: number,
  errorCode: number,
): Buffer {
  return b()
    .u32(sequence)
    .u32(timeStamp)
    .u32(messageType)
    .u32(messageCode)
    .u32(replySequence)
    .u32(errorCode)
    .bytes();
}

/** One record as a single last fragment: mark `0x80000000 | length`, then the payload. */
export function singleFragment(payload: Uint8Array): Buffer {
  return b()
    .u32(0x80000000 + payload.length)
    .raw(payload)
    .bytes();
}

/** A fragment mark (RFC 5531 §11): bit 31 = last fragment, bits 0..30 = length. */
export function mark(length: number, last: boolean): Buffer {
  return b()
    .u32((last ? 0x80000000 : 0) + length)
    .bytes();
}

/** xorshift32: a deterministic PRNG so random tests replay identically. */
export function xorshift32(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s;
  };
}

/** A request record as a DMA sends it: one last fragment holding the header and raw body bytes. */
export function requestRecord(
  sequence: number,
  messageCode: number,
  body: Uint8Array = Buffer.alloc(0),
): Buffer {
  const header = headerBytes(sequence, Math.floor(Date.now() / 1000), 0, messageCode, 0, 0);
  return singleFragment(Buffer.concat([header, body]));
}
