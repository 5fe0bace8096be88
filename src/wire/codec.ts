// The NDMP message: a 24-byte header plus a body, one per record (docs/protocol.md §2).
// This module compiles the message table (messages.ts) into one lookup per
// protocol version and turns messages into framed bytes and back.

import type { NdmpVersion } from './constants.js';
import type { MessageType } from './constants.js';
import { XdrDecodeError } from './errors.js';
import { LAST_FRAGMENT } from './framing.js';
import type { MessageDef } from './messages.js';
import { ALL_MESSAGES } from './messages.js';
import type { Codec } from './schema.js';
import { VOCABULARY } from './structures.js';
import { XdrReader, XdrWriter } from './xdr.js';

export const HEADER_SIZE = 24;

export interface Header {
  /** Per-sender counter from 1, bumped for every message that side sends, posts included. */
  sequence: number;
  /** Seconds since 1970-01-01 UTC. */
  timeStamp: number;
  messageType: MessageType;
  messageCode: number;
  /** In a reply: the sequence of the request answered; 0 otherwise. */
  replySequence: number;
  /** In a reply: non-zero means no body follows. 0 in requests and posts. */
  errorCode: number;
}

/** One message definition compiled for one protocol version. */
export interface CompiledMessage<Req = unknown, Rep = unknown> {
  readonly def: MessageDef<Req, Rep>;
  readonly version: NdmpVersion;
  readonly body: Codec<Req>;
  readonly reply: Codec<Rep> | null;
}

function compile(version: NdmpVersion): ReadonlyMap<number, CompiledMessage> {
  const table = new Map<number, CompiledMessage>();
  const vocab = VOCABULARY[version];
  for (const def of ALL_MESSAGES) {
    if (!def.versions.includes(version)) continue;
    if (table.has(def.code)) throw new Error(`duplicate message code 0x${def.code.toString(16)}`);
    table.set(def.code, {
      def,
      version,
      body: def.request(vocab),
      reply: def.reply ? def.reply(vocab) : null,
    });
  }
  return table;
}

const TABLES: Readonly<Record<NdmpVersion, ReadonlyMap<number, CompiledMessage>>> = {
  3: compile(3),
  4: compile(4),
};

/** The message with this code in this version, or undefined if the version has none. */
export function lookup(version: NdmpVersion, code: number): CompiledMessage | undefined {
  return TABLES[version].get(code);
}

/** The compiled form of a known definition in a version (throws if the version lacks it). */
export function compiled<Req, Rep>(
  version: NdmpVersion,
  def: MessageDef<Req, Rep>,
): CompiledMessage<Req, Rep> {
  const c = TABLES[version].get(def.code);
  if (!c || c.def !== (def as MessageDef)) throw new Error(`${def.name} does not exist in NDMP v${version}`);
  return c as CompiledMessage<Req, Rep>;
}

export function decodeHeader(record: Buffer): Header {
  if (record.length < HEADER_SIZE) {
    throw new XdrDecodeError(`record of ${record.length} bytes is shorter than the 24-byte header`);
  }
  const r = new XdrReader(record, 0, HEADER_SIZE);
  return {
    sequence: r.u32(),
    timeStamp: r.u32(),
    messageType: r.u32() as MessageType,
    messageCode: r.u32(),
    replySequence: r.u32(),
    errorCode: r.u32(),
  };
}

/**
 * Decodes a body that follows the header. Bytes left over after the body are
 * ignored: peers have been seen padding records (docs/protocol.md §1.2).
 */
export function decodeBody<T>(codec: Codec<T>, record: Buffer): T {
  return codec.decode(new XdrReader(record, HEADER_SIZE));
}

/**
 * Encodes header and body into one framed record (record mark included),
 * ready to be written to a socket. A null body is an empty one, as replies
 * with a header-level error have.
 */
export function encodeMessage<T>(header: Header, codec: Codec<T> | null, body: T | null): Buffer {
  const w = new XdrWriter(128);
  w.u32(0); // record mark, patched below
  w.u32(header.sequence)
    .u32(header.timeStamp)
    .u32(header.messageType)
    .u32(header.messageCode)
    .u32(header.replySequence)
    .u32(header.errorCode);
  if (codec && body !== null) codec.encode(w, body);
  const out = w.finish();
  // One last fragment holding the whole message (fine for every known peer).
  w.patchU32(0, (LAST_FRAGMENT | (out.length - 4)) >>> 0);
  return out;
}

export function nowSeconds(): number {
  return Math.floor(Date.now() / 1000) >>> 0;
}
