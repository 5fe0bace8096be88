// Codec combinators. A message shape is declared once as a tree of these, and
// its encoder, decoder, zero value and TypeScript type all come from that one
// declaration, so encode and decode cannot drift apart.

import { XdrDecodeError } from './errors.js';
import type { XdrReader, XdrWriter } from './xdr.js';

export interface Codec<T> {
  /** Smallest wire size of a value, used to refuse impossible array counts early. */
  readonly minSize: number;
  encode(w: XdrWriter, v: T): void;
  decode(r: XdrReader): T;
  /** The value a reply carries beside a non-zero error: all zeros, empty strings, empty lists. */
  zero(): T;
}

export type Infer<C> = C extends Codec<infer T> ? T : never;

/** `u_long`, `enum`, `u_short`, `u_char`: all one 4-byte XDR word in NDMP. */
export const u32: Codec<number> = {
  minSize: 4,
  encode: (w, v) => void w.u32(v),
  decode: (r) => r.u32(),
  zero: () => 0,
};

/** `short` (signed). */
export const i32: Codec<number> = {
  minSize: 4,
  encode: (w, v) => void w.i32(v),
  decode: (r) => r.i32(),
  zero: () => 0,
};

/** `ndmp_u_quad`: {high, low} on the wire, which is a big-endian uint64. */
export const u64: Codec<bigint> = {
  minSize: 8,
  encode: (w, v) => void w.u64(v),
  decode: (r) => r.u64(),
  zero: () => 0n,
};

export const bool: Codec<boolean> = {
  minSize: 4,
  encode: (w, v) => void w.bool(v),
  decode: (r) => r.bool(),
  zero: () => false,
};

/** `string x<>`: length-prefixed UTF-8 without terminator. */
export const string: Codec<string> = {
  minSize: 4,
  encode: (w, v) => void w.string(v),
  decode: (r) => r.string(),
  zero: () => '',
};

/** `opaque x<>`. */
export const opaque: Codec<Buffer> = {
  minSize: 4,
  encode: (w, v) => void w.opaque(v),
  decode: (r) => r.opaque(),
  zero: () => Buffer.alloc(0),
};

/** `opaque x[n]`: exactly n bytes, no length word. */
export function fixedOpaque(n: number): Codec<Buffer> {
  return {
    minSize: (n + 3) & ~3,
    encode: (w, v) => void w.fixedOpaque(v, n),
    decode: (r) => r.fixedOpaque(n),
    zero: () => Buffer.alloc(n),
  };
}

/** `T x<>`: u32 count, then the elements. */
export function array<T>(item: Codec<T>): Codec<T[]> {
  return {
    minSize: 4,
    encode(w, v) {
      w.u32(v.length);
      for (const e of v) item.encode(w, e);
    },
    decode(r) {
      const n = r.count(item.minSize);
      const out = new Array<T>(n);
      for (let i = 0; i < n; i++) out[i] = item.decode(r);
      return out;
    },
    zero: () => [],
  };
}

type Fields = Record<string, Codec<unknown>>;
export type StructOf<F extends Fields> = { [K in keyof F]: Infer<F[K]> };

/** An XDR struct: fields on the wire in declaration order. */
export function struct<F extends Fields>(fields: F): Codec<StructOf<F>> {
  const entries = Object.entries(fields);
  return {
    minSize: entries.reduce((s, [, c]) => s + c.minSize, 0),
    encode(w, v) {
      const rec = v as Record<string, unknown>;
      for (const [k, c] of entries) {
        const fv = rec[k];
        if (fv === undefined) throw new TypeError(`missing field '${k}'`);
        c.encode(w, fv);
      }
    },
    decode(r) {
      const out: Record<string, unknown> = {};
      for (const [k, c] of entries) out[k] = c.decode(r);
      return out as StructOf<F>;
    },
    zero() {
      const out: Record<string, unknown> = {};
      for (const [k, c] of entries) out[k] = c.zero();
      return out as StructOf<F>;
    },
  };
}

/** An empty body (`void`). */
export const empty: Codec<Record<string, never>> = {
  minSize: 0,
  encode: () => undefined,
  decode: () => ({}),
  zero: () => ({}),
};

/**
 * A discriminated union. Each arm is a struct whose fields sit beside the
 * discriminant in the value: `{ addrType: 1, tcpAddrs: [...] }`. An unknown
 * discriminant is a decode error unless a `fallback` arm is given (XDR
 * `default:`). The value type is declared by the caller, who knows the arms.
 */
export function union<T extends object>(
  tag: string,
  arms: Readonly<Record<number, Codec<object>>>,
  zero: () => T,
  fallback?: Codec<object>,
): Codec<T> {
  const armFor = (d: number): Codec<object> | undefined => arms[d] ?? fallback;
  return {
    minSize: 4,
    encode(w, v) {
      const d = (v as Record<string, unknown>)[tag];
      if (typeof d !== 'number') throw new TypeError(`union tag '${tag}' missing`);
      const arm = armFor(d);
      if (!arm) throw new RangeError(`union '${tag}' has no arm ${d}`);
      w.u32(d);
      arm.encode(w, v);
    },
    decode(r) {
      const d = r.u32();
      const arm = armFor(d);
      if (!arm) throw new XdrDecodeError(`union '${tag}': unknown discriminant ${d}`);
      return { [tag]: d, ...arm.decode(r) } as T;
    },
    zero,
  };
}

/**
 * A wire shape translated to and from the canonical (v4) model at the edge:
 * used where v3 differs from v4, so everything above the wire sees one model.
 */
export function mapped<W, T>(wire: Codec<W>, toCanonical: (w: W) => T, toWire: (t: T) => W): Codec<T> {
  return {
    minSize: wire.minSize,
    encode: (w, v) => wire.encode(w, toWire(v)),
    decode: (r) => toCanonical(wire.decode(r)),
    zero: () => toCanonical(wire.zero()),
  };
}
