// A seeded generator of hostile control-connection input, with what a correct
// server answers to each piece of it. It does not talk to a socket and imports
// no test runner: the fuzz test runs its cases against a live server, and a
// memory soak can reuse the same stream.
//
//   fuzzCases(seed, n, opts)  ->  FuzzCase[]       (the same seed gives the same cases)
//   fuzzStream(seed, opts)    ->  endless iterator (same cases, one at a time)
//
// A case is the bytes to write (one socket write per chunk) and the answer:
// the replies in order, each with the header error it must carry (or null for
// header error 0 plus the reply's own body), and what becomes of the
// connection afterwards. The expected answers come from the protocol's rules,
// applied here on their own:
//   - a record shorter than the 24-byte header, or whose message_type is not
//     REQUEST, gets no reply (there is nothing to answer or nobody asked);
//   - before authentication only CONNECT_OPEN, CONNECT_CLIENT_AUTH,
//     CONNECT_CLOSE, CONFIG_GET_AUTH_ATTR and CONFIG_GET_SERVER_INFO are served;
//     everything else, whatever its code, gets a header-level NOT_AUTHORIZED;
//   - after it, a code the version does not have, or a server-to-DMA post,
//     gets a header-level NOT_SUPPORTED;
//   - a body that does not decode as the message's XDR gets a header-level
//     XDR_DECODE_ERR (leftover bytes after a whole body are ignored);
//   - anything else gets its reply body with an error the version defines,
//     except CONNECT_CLOSE, which is never answered and ends the connection;
//   - broken framing (a record over the size limit) ends the connection with
//     no reply; an unfinished record gets nothing until it is finished.
// Whether a body decodes is judged with src/wire's codecs (the one table of
// message shapes); the golden tests check those codecs against the spec.

import type { Codec, MessageDef, NdmpVersion } from '../../src/wire/index.js';
import {
  ALL_MESSAGES,
  DEFAULT_MAX_RECORD_SIZE,
  ErrorCode,
  HEADER_SIZE,
  M,
  MessageType,
  XdrDecodeError,
  XdrReader,
  XdrWriter,
  lookup,
} from '../../src/wire/index.js';
import { GOLDEN_CASES } from './golden-cases.js';
import { mark, xorshift32 } from './xdr-bytes.js';

/** Until a DMA authenticates, records over this size end the connection (the server's rule). */
export const FUZZ_PRE_AUTH_MAX_RECORD = 64 * 1024;

export interface FuzzOptions {
  /** The protocol version the connection runs (the runner sends CONNECT_OPEN with it first). */
  version: NdmpVersion;
  /** Whether the runner logs in before the cases (with credentials the generator never knows). */
  authed: boolean;
  /** An exported directory: backup and recover seeds name it, so they can really start. */
  exportPath?: string;
  /** Tape devices the server has (e.g. `drive0`, `tapes/NDM001`), for TAPE_OPEN seeds. */
  devices?: readonly string[];
  /** The largest record the server reads after login (default: the wire layer's default). */
  maxRecordSize?: number;
}

export interface ExpectedReply {
  /** `reply_sequence` the reply must carry: the request's `sequence`. */
  sequence: number;
  /** `message_code` the reply must carry: the request's. */
  code: number;
  /** A header-level error (a 24-byte reply, no body), or null: header error 0 and the reply body. */
  headerError: number | null;
}

/**
 * What becomes of the connection once the replies are in:
 * - `open`: it stays usable;
 * - `closed`: the server closes it (no reply beyond `replies`);
 * - `may-close`: either (a refused login can be the one that uses up the attempts);
 * - `stalled`: an unfinished record is pending, so the server waits for more:
 *   the runner must give the connection up.
 */
export type FuzzAfter = 'open' | 'closed' | 'may-close' | 'stalled';

export interface FuzzCase {
  /** Where the case comes from, to name it in a failure: `seed/index kind detail`. */
  label: string;
  /** The bytes to write, one write per chunk, in order. */
  chunks: Buffer[];
  /** The replies a correct server sends, in order (posts may arrive between them). */
  replies: ExpectedReply[];
  after: FuzzAfter;
}

/** The requests the spec serves before authentication (docs/protocol.md §5.4, draft §2.11.3); docs/ states the same list. */
export const PRE_AUTH_CODES: ReadonlySet<number> = new Set([
  M.CONNECT_OPEN.code,
  M.CONNECT_CLIENT_AUTH.code,
  M.CONNECT_CLOSE.code,
  M.CONFIG_GET_AUTH_ATTR.code,
  M.CONFIG_GET_SERVER_INFO.code,
]);

/** The highest `ndmp_error` each version defines (v3 stops at CONNECT_ERR). */
export function highestError(version: NdmpVersion): number {
  return version === 3 ? ErrorCode.NDMP_CONNECT_ERR : ErrorCode.NDMP_EXT_DANDN_ILLEGAL_ERR;
}

/** Every code a correct server answers NOT_SUPPORTED to, once logged in, in both versions. */
const FOREIGN_CODES: readonly number[] = [
  // v2-only messages (Amanda's ndmp2.x)
  0x101, 0x600, 0x601, 0x700, 0x701, 0x702,
  // holes between the core codes
  0x000, 0x1ff, 0x208, 0x306, 0x308, 0x405, 0x406, 0x408, 0x40c, 0x500, 0x506, 0x604, 0x706, 0x800, 0x904,
  0xa0a, 0xb00, 0xffff,
  // v4 extension classes: standard, a vendor's sandbox, the test echo, reserved
  0x10000, 0x10001, 0x70100, 0x20500001, 0x20d00000, 0x7ff00000, 0x7fff0000, 0x80000000, 0xffffffff,
  // v3 vendor and prototype ranges
  0xf000, 0xf123, 0xfeff, 0xff00, 0xffff0000,
];

/** Every core code of both versions, posts included. */
const CORE_CODES: readonly number[] = [...new Set(ALL_MESSAGES.map((d) => d.code))];

/** Word values that make decoders take wrong turns: zero, ones, sign bits, near-limits, lengths. */
const INTERESTING_WORDS: readonly number[] = [
  0, 1, 2, 3, 4, 5, 7, 8, 0xf, 0x10, 0x1f, 0x40, 0x7f, 0x80, 0xff, 0x100, 0x3ff, 0x400, 0xfff, 0x1000, 0xffff,
  0x10000, 0xfffff, 0x7ffffff0, 0x7ffffffc, 0x7ffffffd, 0x7fffffff, 0x80000000, 0x80000001, 0xfffffff0,
  0xfffffffc, 0xfffffffe, 0xffffffff,
];

type Rng = () => number;

class Dice {
  private readonly next: Rng;
  constructor(seed: number) {
    this.next = xorshift32(seed);
  }
  /** 0 .. n-1 */
  int(n: number): number {
    return n <= 1 ? 0 : this.next() % n;
  }
  u32(): number {
    return this.next();
  }
  chance(p: number): boolean {
    return this.next() / 0x100000000 < p;
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)]!;
  }
  bytes(n: number): Buffer {
    const b = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) b[i] = this.next() & 0xff;
    return b;
  }
  /** A length that is small most of the time and sometimes not. */
  size(max: number): number {
    const r = this.int(10);
    if (r < 6) return this.int(Math.min(max, 16) + 1);
    if (r < 9) return this.int(Math.min(max, 512) + 1);
    return this.int(max + 1);
  }
}

/** A body value encoded with the version's codec. */
function encodeBody<T>(codec: Codec<T>, value: T): Buffer {
  const w = new XdrWriter(64);
  codec.encode(w, value);
  return Buffer.from(w.finish());
}

/** Request bodies that mean something to the server in `opts`' setting, per message code. */
function meaningfulBodies(opts: FuzzOptions): Map<number, unknown[]> {
  const ex = opts.exportPath ?? '/nonexistent-export';
  const devices = opts.devices?.length ? opts.devices : ['drive0'];
  const local = { addrType: 0 };
  const tcp = { addrType: 1, tcpAddrs: [{ ipAddr: 0x7f000001, port: 9, addrEnv: [] }] };
  const env = (hist: string, level = '0') => [
    { name: 'FILESYSTEM', value: ex },
    { name: 'HIST', value: hist },
    { name: 'LEVEL', value: level },
    { name: 'TYPE', value: 'tar' },
  ];
  const nlist = [
    {
      originalPath: '/',
      destinationPath: `${ex}/restored`,
      name: '',
      otherName: '',
      node: 0xffffffffffffffffn,
      fhInfo: 0xffffffffffffffffn,
    },
  ];
  const m = new Map<number, unknown[]>();
  const add = (def: MessageDef, ...values: unknown[]) => m.set(def.code, values);
  add(M.CONNECT_OPEN, { protocolVersion: 3 }, { protocolVersion: 4 }, { protocolVersion: 2 });
  add(
    M.CONNECT_CLIENT_AUTH,
    // Credentials the server cannot accept: the generator never knows the real ones.
    { authData: { authType: 1, authId: 'dma', authPassword: 'not-the-password' } },
    { authData: { authType: 2, authId: 'dma', authDigest: Buffer.alloc(16, 0x5a) } },
    { authData: { authType: 0 } },
  );
  add(M.CONFIG_GET_AUTH_ATTR, { authType: 0 }, { authType: 1 }, { authType: 2 }, { authType: 3 });
  add(M.CONNECT_SERVER_AUTH, { clientAttr: { authType: 2, challenge: Buffer.alloc(64, 7) } });
  add(M.CONFIG_SET_EXT_LIST, { ndmpSelectedExt: [] }, { ndmpSelectedExt: [{ classId: 0x2050, version: 1 }] });
  add(M.TAPE_OPEN, ...devices.flatMap((device) => [0, 1, 2].map((mode) => ({ device, mode }))), {
    device: 'nosuch',
    mode: 0,
  });
  add(
    M.TAPE_MTIO,
    ...[0, 1, 2, 3, 4, 5, 6, 7, 8].map((tapeOp) => ({ tapeOp, count: 1 })),
    { tapeOp: 0, count: 0xffffffff },
    { tapeOp: 5, count: 3 },
  );
  add(
    M.TAPE_WRITE,
    { dataOut: Buffer.alloc(512, 1) },
    { dataOut: Buffer.alloc(0) },
    { dataOut: Buffer.alloc(10240, 2) },
  );
  add(M.TAPE_READ, { count: 512 }, { count: 0 }, { count: 65536 }, { count: 0xffffffff });
  add(M.MOVER_SET_RECORD_SIZE, { len: 512 }, { len: 10240 }, { len: 0 }, { len: 0xffffffff });
  add(
    M.MOVER_SET_WINDOW,
    { offset: 0n, length: 0xffffffffffffffffn },
    { offset: 0n, length: 10240n },
    { offset: 0xfffffffffffffff0n, length: 0x100n },
  );
  add(M.MOVER_READ, { offset: 0n, length: 512n }, { offset: 0n, length: 0xffffffffffffffffn });
  add(M.MOVER_LISTEN, { mode: 0, addrType: 0 }, { mode: 1, addrType: 0 }, { mode: 0, addrType: 1 });
  add(M.MOVER_CONNECT, { mode: 0, addr: local }, { mode: 1, addr: tcp });
  add(M.DATA_LISTEN, { addrType: 0 }, { addrType: 1 }, { addrType: 3 });
  add(M.DATA_CONNECT, { addr: local }, { addr: tcp });
  add(
    M.DATA_START_BACKUP,
    { butypeName: 'tar', env: env('f') },
    { butypeName: 'tar', env: env('d', '1') },
    { butypeName: 'tar', env: env('n') },
    { butypeName: 'dump', env: env('y') },
  );
  for (const def of [M.DATA_START_RECOVER, M.DATA_START_RECOVER_FILEHIST]) {
    add(def, { env: env('f'), nlist, butypeName: 'tar' }, { env: env('n'), nlist: [], butypeName: 'tar' });
  }
  return m;
}

interface Seed {
  def: MessageDef;
  body: Buffer;
}

/** Valid request bodies for every request of the version: zero values, golden samples, meaningful ones. */
function seedsFor(opts: FuzzOptions): Seed[] {
  const seeds: Seed[] = [];
  const meaningful = meaningfulBodies(opts);
  for (const def of ALL_MESSAGES) {
    if (!def.versions.includes(opts.version)) continue;
    const c = lookup(opts.version, def.code)!;
    seeds.push({ def, body: encodeBody(c.body, c.body.zero()) });
    for (const g of GOLDEN_CASES) {
      if (g.def === def && g.version === opts.version) seeds.push({ def, body: g.request.bytes });
    }
    for (const v of meaningful.get(def.code) ?? []) seeds.push({ def, body: encodeBody(c.body, v as never) });
  }
  return seeds;
}

interface Record_ {
  sequence: number;
  timeStamp: number;
  messageType: number;
  messageCode: number;
  replySequence: number;
  errorCode: number;
  body: Buffer;
}

function recordBytes(r: Record_): Buffer {
  const out = Buffer.allocUnsafe(HEADER_SIZE + r.body.length);
  out.writeUInt32BE(r.sequence >>> 0, 0);
  out.writeUInt32BE(r.timeStamp >>> 0, 4);
  out.writeUInt32BE(r.messageType >>> 0, 8);
  out.writeUInt32BE(r.messageCode >>> 0, 12);
  out.writeUInt32BE(r.replySequence >>> 0, 16);
  out.writeUInt32BE(r.errorCode >>> 0, 20);
  r.body.copy(out, HEADER_SIZE);
  return out;
}

/** Whether `body` decodes as the request of `code`, a code the version has. */
function decodes(version: NdmpVersion, code: number, body: Buffer): boolean {
  const msg = lookup(version, code)!;
  try {
    msg.body.decode(new XdrReader(body));
    return true;
  } catch (e) {
    if (e instanceof XdrDecodeError) return false;
    throw e;
  }
}

/**
 * The answer to one whole record (the payload of a finished record, header
 * included), by the rules in this file's header.
 */
export function expectedAnswer(
  record: Buffer,
  opts: Pick<FuzzOptions, 'version' | 'authed'>,
): { reply: ExpectedReply | null; after: FuzzAfter } {
  if (record.length < HEADER_SIZE) return { reply: null, after: 'open' };
  const sequence = record.readUInt32BE(0);
  const type = record.readUInt32BE(8);
  const code = record.readUInt32BE(12);
  if (type !== MessageType.NDMP_MESSAGE_REQUEST) return { reply: null, after: 'open' };
  const msg = lookup(opts.version, code);
  const answer = (headerError: number | null, after: FuzzAfter = 'open') => ({
    reply: { sequence, code, headerError },
    after,
  });
  if (!opts.authed && !(msg && PRE_AUTH_CODES.has(code))) return answer(ErrorCode.NDMP_NOT_AUTHORIZED_ERR);
  if (!msg || msg.def.kind === 'post') return answer(ErrorCode.NDMP_NOT_SUPPORTED_ERR);
  if (!decodes(opts.version, code, record.subarray(HEADER_SIZE)))
    return answer(ErrorCode.NDMP_XDR_DECODE_ERR);
  if (msg.def.kind === 'request-no-reply') return { reply: null, after: 'closed' };
  // A refused login counts; enough of them and the server hangs up after its reply.
  return answer(null, code === M.CONNECT_CLIENT_AUTH.code ? 'may-close' : 'open');
}

// ---- mutations ---------------------------------------------------------------

type Kind = 'valid' | 'header' | 'body' | 'framing' | 'pipeline';

class CaseMaker {
  private readonly d: Dice;
  private readonly seeds: Seed[];
  private readonly preAuthSeeds: Seed[];
  private readonly maxRecord: number;
  private seq = 1000;
  private index = 0;

  constructor(
    private readonly seed: number,
    private readonly opts: FuzzOptions,
  ) {
    this.d = new Dice(seed);
    this.seeds = seedsFor(opts);
    this.preAuthSeeds = this.seeds.filter((s) => PRE_AUTH_CODES.has(s.def.code));
    this.maxRecord = opts.authed ? (opts.maxRecordSize ?? DEFAULT_MAX_RECORD_SIZE) : FUZZ_PRE_AUTH_MAX_RECORD;
  }

  next(): FuzzCase {
    const i = this.index++;
    // First, every seed as it is and every foreign code once, so that even a short run
    // has sent each message of the version; random cases after that.
    if (i < this.seeds.length) {
      const rec = this.record(this.seeds[i]!);
      return { ...this.single(rec), label: `seed ${this.seed} case ${i} each ${this.name(rec)}` };
    }
    if (i < this.seeds.length + FOREIGN_CODES.length) {
      const rec = this.fromSeed();
      rec.messageCode = FOREIGN_CODES[i - this.seeds.length]!;
      return { ...this.single(rec), label: `seed ${this.seed} case ${i} each ${this.name(rec)}` };
    }
    const r = this.d.int(100);
    const kind: Kind =
      r < 10 ? 'valid' : r < 30 ? 'header' : r < 65 ? 'body' : r < 90 ? 'framing' : 'pipeline';
    const { c, detail } = this.make(kind);
    return { ...c, label: `seed ${this.seed} case ${i} ${kind} ${detail}` };
  }

  private make(kind: Kind): { c: Omit<FuzzCase, 'label'>; detail: string } {
    switch (kind) {
      case 'valid': {
        const rec = this.fromSeed();
        return { c: this.single(rec), detail: this.name(rec) };
      }
      case 'header': {
        const rec = this.fromSeed();
        const what = this.mutateHeader(rec);
        return { c: this.single(rec), detail: `${what} ${this.name(rec)}` };
      }
      case 'body': {
        const rec = this.fromSeed();
        const what = this.mutateBody(rec);
        return { c: this.single(rec), detail: `${what} ${this.name(rec)}` };
      }
      case 'framing':
        return this.framing();
      case 'pipeline':
        return this.pipeline();
    }
  }

  private name(rec: Record_): string {
    const known = lookup(this.opts.version, rec.messageCode);
    return known ? known.def.name : `0x${(rec.messageCode >>> 0).toString(16)}`;
  }

  private fromSeed(): Record_ {
    // Before login most codes meet the gate only: half the time, fuzz what lies behind it.
    const pool = !this.opts.authed && this.d.chance(0.5) ? this.preAuthSeeds : this.seeds;
    return this.record(this.d.pick(pool));
  }

  private record(s: Seed): Record_ {
    return {
      sequence: this.seq++,
      timeStamp: 0x6b05b6a1 + this.seq,
      messageType: MessageType.NDMP_MESSAGE_REQUEST,
      messageCode: s.def.code,
      replySequence: 0,
      errorCode: 0,
      body: s.body,
    };
  }

  /** One record in one fragment in one write, with the answer the rules give. */
  private single(rec: Record_): Omit<FuzzCase, 'label'> {
    const payload = recordBytes(rec);
    const { reply, after } = expectedAnswer(payload, this.opts);
    return {
      chunks: [Buffer.concat([mark(payload.length, true), payload])],
      replies: reply ? [reply] : [],
      after,
    };
  }

  private mutateHeader(rec: Record_): string {
    const d = this.d;
    switch (d.int(7)) {
      case 0:
        rec.messageType = d.pick([1, 2, 3, 0x80000000, 0xffffffff, d.u32()]);
        return `type=${rec.messageType >>> 0}`;
      case 1:
        rec.messageCode = d.pick(CORE_CODES);
        return 'code=core';
      case 2:
        rec.messageCode = d.pick(FOREIGN_CODES);
        return 'code=foreign';
      case 3:
        rec.messageCode = d.chance(0.5) ? d.u32() : (d.pick(CORE_CODES) + d.int(16)) >>> 0;
        return 'code=random';
      case 4:
        rec.replySequence = d.pick([1, rec.sequence, 0xffffffff, d.u32()]);
        return 'reply_sequence';
      case 5:
        rec.errorCode = d.pick([1, 4, 18, 30, 31, 0xffffffff, d.u32()]);
        return 'error_code';
      default:
        rec.sequence = d.pick([0, 1, 0x7fffffff, 0xffffffff, d.u32()]);
        rec.timeStamp = d.u32();
        return 'sequence';
    }
  }

  private mutateBody(rec: Record_): string {
    const d = this.d;
    const body = rec.body;
    switch (d.int(8)) {
      case 0: {
        // Truncation, by length class: empty, mid-word, on a word boundary, one byte short.
        if (body.length === 0) {
          rec.body = d.bytes(d.int(4));
          return 'truncate(empty seed: junk)';
        }
        const words = Math.floor(body.length / 4);
        const at = d.pick([0, d.int(4), 4 * d.int(words + 1), body.length - 1, d.int(body.length)]);
        rec.body = body.subarray(0, Math.min(at, body.length));
        return `truncate@${rec.body.length}/${body.length}`;
      }
      case 1: {
        const extra = d.chance(0.5) ? Buffer.alloc(4 * (1 + d.int(8))) : d.bytes(d.size(2048));
        rec.body = Buffer.concat([body, extra]);
        return `extend+${extra.length}`;
      }
      case 2:
        rec.body = d.bytes(d.size(1024));
        return `random${rec.body.length}`;
      case 3:
      case 4: {
        // Word surgery: lengths, counts, enums and union arms are all words.
        if (body.length < 4) {
          rec.body = Buffer.concat([body, Buffer.from([0xff, 0xff, 0xff, 0xff])]);
          return 'word(short seed)';
        }
        const b = Buffer.from(body);
        const n = 1 + d.int(3);
        const words = Math.floor(b.length / 4);
        const where: number[] = [];
        for (let k = 0; k < n; k++) {
          const w = d.int(words);
          const v = d.chance(0.8) ? d.pick(INTERESTING_WORDS) : d.u32();
          b.writeUInt32BE(v >>> 0, w * 4);
          where.push(w);
        }
        rec.body = b;
        return `words@${where.join(',')}`;
      }
      case 5: {
        // A huge string or array length where a length may be: each word in turn.
        const b = Buffer.from(body.length >= 4 ? body : Buffer.alloc(4));
        const w = d.int(Math.floor(b.length / 4));
        b.writeUInt32BE(
          d.pick([0x7fffffff, 0xffffffff, 0x10000000, b.length - 4 * w + 1, 0x3fffffff]) >>> 0,
          w * 4,
        );
        rec.body = b;
        return `huge-length@${w}`;
      }
      case 6: {
        // Bad enum or union arm: small values past every defined one.
        const b = Buffer.from(body.length >= 4 ? body : Buffer.alloc(4));
        const w = d.int(Math.floor(b.length / 4));
        b.writeUInt32BE(d.pick([4, 5, 8, 9, 31, 99, 0x100, 0xffffffff]), w * 4);
        rec.body = b;
        return `enum@${w}`;
      }
      default: {
        const b = Buffer.from(body.length ? body : Buffer.alloc(4));
        const flips = 1 + d.int(4);
        for (let k = 0; k < flips; k++) b[d.int(b.length)] ^= 1 << d.int(8);
        rec.body = b;
        return `bitflip${flips}`;
      }
    }
  }

  private framing(): { c: Omit<FuzzCase, 'label'>; detail: string } {
    const d = this.d;
    const rec = this.fromSeed();
    if (d.chance(0.3)) this.mutateBody(rec);
    const payload = recordBytes(rec);
    const answer = expectedAnswer(payload, this.opts);
    const whole = { replies: answer.reply ? [answer.reply] : [], after: answer.after };
    switch (d.int(9)) {
      case 0:
      case 1: {
        // Several fragments, some of them empty, then TCP writes cut anywhere.
        const stream = this.fragments(payload, true);
        return { c: { chunks: this.cut(stream), ...whole }, detail: `fragments ${this.name(rec)}` };
      }
      case 2: {
        // The last-fragment bit left unset, then a zero-length last fragment finishes the record.
        const bytes = Buffer.concat([mark(payload.length, false), payload, mark(0, true)]);
        return {
          c: { chunks: this.cut(bytes), ...whole },
          detail: `unset-last+empty-last ${this.name(rec)}`,
        };
      }
      case 3: {
        // The last-fragment bit never comes: the record is unfinished.
        const bytes = Buffer.concat([
          this.fragments(payload, false),
          d.chance(0.5) ? mark(0, false) : Buffer.alloc(0),
        ]);
        return { c: { chunks: this.cut(bytes), replies: [], after: 'stalled' }, detail: 'no-last-fragment' };
      }
      case 4: {
        // Part of a record mark, or a whole one promising more than follows: nothing to answer yet.
        const m = mark(8 + d.int(Math.min(this.maxRecord, 0x10000) - 7), d.chance(0.5));
        const bytes = d.chance(0.5) ? m.subarray(0, 1 + d.int(3)) : Buffer.concat([m, d.bytes(d.int(8))]);
        return { c: { chunks: [bytes], replies: [], after: 'stalled' }, detail: 'partial-mark' };
      }
      case 5: {
        // A record too short to hold a header (empty included): dropped, no reply.
        const short = payload.subarray(0, d.int(HEADER_SIZE));
        const bytes = Buffer.concat([mark(short.length, true), short]);
        return {
          c: { chunks: this.cut(bytes), replies: [], after: 'open' },
          detail: `short-record${short.length}`,
        };
      }
      case 6: {
        // A mark declaring more than the server reads: closed at the mark, before any payload.
        const len = d.pick([
          this.maxRecord + 1,
          this.maxRecord + 4096,
          0x7fffffff,
          (this.maxRecord + 1 + d.int(0x1000000)) & 0x7fffffff,
        ]);
        const bytes = Buffer.concat([mark(len, d.chance(0.5)), d.bytes(d.int(32))]);
        return { c: { chunks: [bytes], replies: [], after: 'closed' }, detail: `oversized-mark ${len}` };
      }
      case 7: {
        // Fragments that each fit but add up past the limit (only sent when the limit is small).
        if (this.maxRecord > FUZZ_PRE_AUTH_MAX_RECORD) {
          const bytes = Buffer.concat([mark(16, false), Buffer.alloc(16), mark(this.maxRecord, true)]);
          return { c: { chunks: [bytes], replies: [], after: 'closed' }, detail: 'fragment-sum-oversized' };
        }
        const half = Math.ceil(this.maxRecord / 2) + 8;
        const bytes = Buffer.concat([
          mark(half, false),
          Buffer.alloc(half),
          mark(half, true),
          Buffer.alloc(16),
        ]);
        return {
          c: { chunks: this.cut(bytes), replies: [], after: 'closed' },
          detail: 'fragment-sum-oversized',
        };
      }
      default: {
        // Split at one byte: a write of one byte, or of the mark alone.
        const bytes = Buffer.concat([mark(payload.length, true), payload]);
        const at = d.pick([1, 2, 3, 4, 5, 27, 28, bytes.length - 1].filter((x) => x > 0 && x < bytes.length));
        const chunks = at === undefined ? [bytes] : [bytes.subarray(0, at), bytes.subarray(at)];
        return { c: { chunks, ...whole }, detail: `split@${at} ${this.name(rec)}` };
      }
    }
  }

  /** Two to four records in one write: answered in order, nothing lost between them. */
  private pipeline(): { c: Omit<FuzzCase, 'label'>; detail: string } {
    const d = this.d;
    const n = 2 + d.int(3);
    const parts: Buffer[] = [];
    const replies: ExpectedReply[] = [];
    const names: string[] = [];
    let after: FuzzAfter = 'open';
    for (let k = 0; k < n; k++) {
      const rec = this.fromSeed();
      if (d.chance(0.3)) this.mutateBody(rec);
      if (d.chance(0.2)) this.mutateHeader(rec);
      const payload = recordBytes(rec);
      const a = expectedAnswer(payload, this.opts);
      parts.push(this.fragments(payload, true));
      names.push(this.name(rec));
      if (a.reply) replies.push(a.reply);
      // After a record that may end the connection nothing else is certain: stop there.
      if (a.after !== 'open') {
        after = a.after;
        break;
      }
    }
    return {
      c: { chunks: this.cut(Buffer.concat(parts)), replies, after },
      detail: `pipeline ${names.join(',')}`,
    };
  }

  /** Record marking of `payload` as 1..4 fragments (some empty); the last one flagged if `finish`. */
  private fragments(payload: Buffer, finish: boolean): Buffer {
    const d = this.d;
    const cuts = new Set<number>();
    const k = d.int(4);
    for (let i = 0; i < k; i++) cuts.add(d.int(payload.length + 1));
    const points = [0, ...[...cuts].sort((a, b) => a - b), payload.length];
    const out: Buffer[] = [];
    for (let i = 0; i + 1 < points.length; i++) {
      const part = payload.subarray(points[i]!, points[i + 1]!);
      if (part.length === 0 && i + 2 < points.length) {
        // An empty fragment in the middle (a duplicate cut point) stays: the framer must skip it.
        out.push(mark(0, false));
        continue;
      }
      const last = finish && i + 2 === points.length;
      out.push(mark(part.length, last), part);
    }
    return Buffer.concat(out);
  }

  /** Cuts a byte stream into 1..5 writes at random points. */
  private cut(bytes: Buffer): Buffer[] {
    const d = this.d;
    if (bytes.length < 2 || d.chance(0.4)) return [bytes];
    const k = 1 + d.int(4);
    const points = [...new Set(Array.from({ length: k }, () => 1 + d.int(bytes.length - 1)))].sort(
      (a, b) => a - b,
    );
    const out: Buffer[] = [];
    let at = 0;
    for (const p of points) {
      out.push(bytes.subarray(at, p));
      at = p;
    }
    out.push(bytes.subarray(at));
    return out;
  }
}

/**
 * An endless stream of cases for one connection setting. Deterministic in
 * `seed` and `opts`; each case is independent of how the previous ones were
 * answered, except that a runner must open a new connection after a case whose
 * `after` is not `open` (and may after any case).
 */
export function* fuzzStream(seed: number, opts: FuzzOptions): Generator<FuzzCase, never, undefined> {
  const g = new CaseMaker(seed >>> 0, opts);
  for (;;) yield g.next();
}

/** The first `n` cases of `fuzzStream(seed, opts)`. */
export function fuzzCases(seed: number, n: number, opts: FuzzOptions): FuzzCase[] {
  const out: FuzzCase[] = [];
  const it = fuzzStream(seed, opts);
  for (let i = 0; i < n; i++) out.push(it.next().value);
  return out;
}
