// File-history records (record.ts) → complete NDMP messages: FH_ADD_FILE for
// the path model, FH_ADD_DIR and FH_ADD_NODE for the dir/node model, each a
// record-marked XDR record with many entries (docs/protocol.md §8).
//
// Written by hand rather than through the schema codec (src/wire) because
// this is the hot path of the product: a million entries a second, names
// copied as bytes, no objects per entry. The layouts are those of
// wire/structures.ts (`file`, `dir`, `node`, identical in v3 and v4); a unit
// test decodes this encoder's output with the schema codec to keep them equal.
//
// The header's sequence number and time stamp are left zero: the connection
// that writes the message fills them in (Connection.writeEncoded), since only
// it knows the next sequence number.

import { LAST_FRAGMENT } from '../wire/framing.js';
import { FileType, MessageType } from '../wire/index.js';
import { FLAG_NODE, HistoryModel, OFF, RecordKind } from './record.js';

export const FH_ADD_FILE = 0x703;
export const FH_ADD_DIR = 0x704;
export const FH_ADD_NODE = 0x705;

/** Record mark (4) + NDMP header (24) + array count (4). */
const PREFIX_BYTES = 32;
/** Worst case for one entry: FH_ADD_FILE with a name of 65535 bytes, padded, plus a leading '/'. */
const MAX_ENTRY_BYTES = 84 + 65540;

export interface BatchLimits {
  /** Entries per message (docs/protocol.md §8.5: the classic servers use 1000). */
  readonly maxEntries: number;
  /** Bytes per message, about (an entry that starts below it is finished). */
  readonly maxBytes: number;
}

export const DEFAULT_BATCH_LIMITS: BatchLimits = { maxEntries: 1000, maxBytes: 128 * 1024 };

/** One message being filled: its buffer is reused for the next once sealed. */
class Batch {
  readonly buf: ArrayBuffer;
  readonly out: DataView;
  readonly bytes: Uint8Array;
  count = 0;
  pos = PREFIX_BYTES;

  constructor(
    readonly code: number,
    maxBytes: number,
  ) {
    this.buf = new ArrayBuffer(maxBytes + MAX_ENTRY_BYTES + PREFIX_BYTES);
    this.out = new DataView(this.buf);
    this.bytes = new Uint8Array(this.buf);
  }

  /** The finished message, as a fresh ArrayBuffer of exactly its length; the batch starts over. */
  seal(): ArrayBuffer {
    const o = this.out;
    const len = this.pos;
    o.setUint32(0, (LAST_FRAGMENT | (len - 4)) >>> 0);
    o.setUint32(4, 0); // sequence: the connection sets it
    o.setUint32(8, 0); // time stamp: likewise
    o.setUint32(12, MessageType.NDMP_MESSAGE_REQUEST);
    o.setUint32(16, this.code);
    o.setUint32(20, 0);
    o.setUint32(24, 0);
    o.setUint32(28, this.count);
    this.count = 0;
    this.pos = PREFIX_BYTES;
    return this.buf.slice(0, len);
  }
}

/**
 * Aggregates records into messages. `push` may complete messages, which it
 * hands to `emit`, each a fresh ArrayBuffer of exactly its length (ready to be
 * transferred to another thread).
 *
 * The dir/node model fills two batches, FH_ADD_DIR and FH_ADD_NODE, as the
 * classic servers do (docs/protocol.md §8.5), and sends the DIR batch first
 * whenever the NODE batch goes: every node's ADD_DIR is then on the wire
 * before its ADD_NODE (§8.3 rule 4), the directory entries stay in walk order
 * (rules 1–3), and the two kinds do not break each other's batches.
 */
export class FhEncoder {
  private model: number = HistoryModel.NONE;
  private main: Batch | null = null;
  private dirs: Batch | null = null;
  /** Entries encoded, for the session's counters. */
  entries = 0;

  constructor(
    private readonly limits: BatchLimits,
    private readonly emit: (message: ArrayBuffer) => void,
  ) {}

  /** Entries waiting in open batches. */
  get pending(): number {
    return (this.main?.count ?? 0) + (this.dirs?.count ?? 0);
  }

  /** Encodes one record (a view that is only valid during the call). */
  push(rec: Uint8Array): void {
    const rv = new DataView(rec.buffer, rec.byteOffset, rec.byteLength);
    switch (rec[OFF.kind]) {
      case RecordKind.HELLO:
        this.model = rec[OFF.model]!;
        if (this.model === HistoryModel.PATH) this.main = new Batch(FH_ADD_FILE, this.limits.maxBytes);
        else if (this.model === HistoryModel.DIRNODE) {
          this.main = new Batch(FH_ADD_NODE, this.limits.maxBytes);
          this.dirs = new Batch(FH_ADD_DIR, this.limits.maxBytes);
        }
        return;
      case RecordKind.ENTRY:
        if (this.model === HistoryModel.PATH) this.addFile(this.main!, rec, rv);
        else if (this.model === HistoryModel.DIRNODE && (rec[OFF.flags]! & FLAG_NODE) !== 0)
          this.addNode(this.main!, rec, rv);
        return;
      case RecordKind.DIRENT:
        if (this.model === HistoryModel.DIRNODE) this.addDir(this.dirs!, rec, rv);
        return;
      default:
        throw new Error(`history record of unknown kind ${rec[OFF.kind]}`);
    }
  }

  /** Completes the open batches, directories first. */
  flush(): void {
    this.send(this.dirs);
    this.send(this.main);
  }

  private send(b: Batch | null): void {
    if (!b || b.count === 0) return;
    if (b === this.main) this.send(this.dirs);
    this.emit(b.seal());
  }

  private end(b: Batch): void {
    b.count++;
    this.entries++;
    if (b.count >= this.limits.maxEntries || b.pos >= this.limits.maxBytes) this.send(b);
  }

  /** FH_ADD_FILE entry: names<1> (UNIX, "/" + path), stats<1>, node, fh_info. */
  private addFile(b: Batch, rec: Uint8Array, rv: DataView): void {
    const o = b.out;
    const nameLen = rv.getUint32(OFF.nameLen, true);
    // The root itself is "."; below it, "/a/b" (docs/protocol.md §8.1).
    const isRoot = nameLen === 1 && rec[OFF.name] === 0x2e;
    const wireLen = isRoot ? 1 : nameLen + 1;
    let p = b.pos;
    o.setUint32(p, 1);
    o.setUint32(p + 4, 0); // fs_type UNIX
    o.setUint32(p + 8, wireLen);
    p += 12;
    b.bytes[p] = 0x2f;
    if (!isRoot) b.bytes.set(rec.subarray(OFF.name, OFF.name + nameLen), p + 1);
    p = pad(b, p, wireLen);
    o.setUint32(p, 1);
    p = this.stat(b, rec, rv, p + 4);
    p = u64(b, rv, OFF.node, p);
    b.pos = u64(b, rv, OFF.fhInfo, p);
    this.end(b);
  }

  /** FH_ADD_DIR entry: names<1> (UNIX basename), node, parent. */
  private addDir(b: Batch, rec: Uint8Array, rv: DataView): void {
    const o = b.out;
    const nameLen = rv.getUint32(OFF.nameLen, true);
    let p = b.pos;
    o.setUint32(p, 1);
    o.setUint32(p + 4, 0);
    o.setUint32(p + 8, nameLen);
    p += 12;
    b.bytes.set(rec.subarray(OFF.name, OFF.name + nameLen), p);
    p = pad(b, p, nameLen);
    p = u64(b, rv, OFF.node, p);
    b.pos = u64(b, rv, OFF.parent, p);
    this.end(b);
  }

  /** FH_ADD_NODE entry: stats<1>, node, fh_info. */
  private addNode(b: Batch, rec: Uint8Array, rv: DataView): void {
    b.out.setUint32(b.pos, 1);
    let p = this.stat(b, rec, rv, b.pos + 4);
    p = u64(b, rv, OFF.node, p);
    b.pos = u64(b, rv, OFF.fhInfo, p);
    this.end(b);
  }

  /** ndmp_file_stat (v3 and v4 alike): 11 fields, size a u64. */
  private stat(b: Batch, rec: Uint8Array, rv: DataView, p: number): number {
    const o = b.out;
    const ftype = rec[OFF.ftype]!;
    o.setUint32(p, 0); // unsupported: every field is given
    o.setUint32(p + 4, 0); // fs_type UNIX
    o.setUint32(p + 8, ftype);
    o.setUint32(p + 12, rv.getUint32(OFF.mtime, true));
    o.setUint32(p + 16, rv.getUint32(OFF.atime, true));
    o.setUint32(p + 20, rv.getUint32(OFF.ctime, true));
    o.setUint32(p + 24, rv.getUint32(OFF.uid, true));
    o.setUint32(p + 28, rv.getUint32(OFF.gid, true));
    o.setUint32(p + 32, rv.getUint32(OFF.fattr, true));
    // Directories and specials: the stream holds no bytes for them, and a
    // directory's st_size is a file-system detail; regular files and symlinks
    // give theirs (the link's target length), as tar lists them.
    const sized = ftype === FileType.NDMP_FILE_REG || ftype === FileType.NDMP_FILE_SLINK;
    o.setUint32(p + 36, sized ? rv.getUint32(OFF.size + 4, true) : 0);
    o.setUint32(p + 40, sized ? rv.getUint32(OFF.size, true) : 0);
    o.setUint32(p + 44, rv.getUint32(OFF.links, true));
    return p + 48;
  }
}

function u64(b: Batch, rv: DataView, off: number, p: number): number {
  b.out.setUint32(p, rv.getUint32(off + 4, true));
  b.out.setUint32(p + 4, rv.getUint32(off, true));
  return p + 8;
}

/** Zero-pads an XDR opaque of `len` bytes that starts at `p`; returns the offset after it. */
function pad(b: Batch, p: number, len: number): number {
  const end = p + ((len + 3) & ~3);
  for (let i = p + len; i < end; i++) b.bytes[i] = 0;
  return end;
}
