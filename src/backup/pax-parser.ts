// The pax parser (docs/pax.md "The parser"): a push parser for restores and
// tests. Any chunking, bounded memory, PaxFormatError with the stream offset
// on anything malformed.

import { decodeName } from '../util/byte-name.js';
import {
  ACL_XATTRS,
  BLOCK,
  CHKSUM,
  DEFAULT_MAX_EXTENDED_HEADER,
  DEVMAJOR,
  DEVMINOR,
  GID,
  GNAME,
  LINKNAME,
  LINKNAME_LEN,
  MAGIC,
  MAX_SAFE_N,
  MAX_SIZE,
  MODE,
  MTIME,
  NAME,
  NAME_LEN,
  PREFIX,
  PREFIX_LEN,
  PaxFormatError,
  SIZE,
  TF_EXTENDED,
  TF_GLOBAL,
  TYPEFLAG,
  TYPES_BY_FLAG,
  UID,
  UNAME,
  paddingAfter,
} from './pax-layout.js';
import type { DumpdirEntry, PaxEntry, PaxSparse, PaxTime, PaxXattr } from './pax-layout.js';

export interface ParsedEntry extends PaxEntry {
  /** Offset of the entry's first header block: its `x` header if it has one. */
  headerOffset: bigint;
  /** Offset of its data (just after the ustar block; a sparse file's map starts there). */
  dataOffset: bigint;
  /**
   * Bytes of the archive after the ustar block, before the padding: `size`
   * for a dense file, the map and the data regions for a sparse one (whose
   * `size` is its real size). Where the entry ends on tape: a DAR read of a
   * sparse file must not ask for its holes.
   */
  archivedSize: bigint;
}

export interface PaxHandlers {
  onEntry(e: ParsedEntry): void;
  /**
   * A slice of the entry's data; the view is valid during the call only. `at`
   * is the file offset of `data[0]`: consecutive for a dense file, a region's
   * place in a sparse one (the file is `e.size` long; the rest are holes).
   */
  onData(e: ParsedEntry, data: Uint8Array, at: bigint): void;
  onEnd?(): void;
}

/**
 * Values from extended headers. `null` = deleted by an empty value (POSIX: the
 * field reverts to the ustar value); `undefined` = not given.
 */
interface Overrides {
  path?: string | null;
  linkpath?: string | null;
  size?: bigint | null;
  uid?: number | null;
  gid?: number | null;
  uname?: string | null;
  gname?: string | null;
  mtime?: PaxTime | null;
  atime?: PaxTime | null;
  ctime?: PaxTime | null;
  devmajor?: number | null;
  devminor?: number | null;
  // Only from an entry's own x header (never global):
  dumpdir?: DumpdirEntry[] | null;
  aclAccess?: string | null;
  aclDefault?: string | null;
  xattrs?: PaxXattr[];
  sparseMajor?: number;
  sparseMinor?: number;
  sparseName?: string;
  sparseRealSize?: bigint;
}
type OverrideKey = keyof Overrides;

const enum State {
  Header,
  /** One zero block seen: the next must be zero too. */
  Zero1,
  ExtData,
  /** A sparse file's map, before its data. */
  SparseMap,
  Data,
  Pad,
  Done,
  Failed,
}

const XATTR_PREFIX = 'SCHILY.xattr.';

/** An ustar name's typical GNU sparse 1.0 form, for an archive without `GNU.sparse.name`. */
const SPARSE_STORED_NAME = /^(?:(.*)\/)?GNUSparseFile\.[0-9]+\/([^/]+)$/;

/** Length of a NUL-terminated field. */
function fieldLen(b: Uint8Array, at: number, len: number): number {
  for (let i = 0; i < len; i++) if (b[at + i] === 0) return i;
  return len;
}
export class PaxParser {
  private readonly maxExt: number;
  private readonly base: number;
  private pos = 0; // bytes consumed
  private state = State.Header;
  private readonly block = new Uint8Array(BLOCK);
  private blockFill = 0;
  private ext = new Uint8Array(0);
  private extFill = 0;
  private extSize = 0;
  private extGlobal = false;
  private extDataAt = 0;
  private pending: Overrides | null = null;
  private pendingAt = 0;
  private globals: Overrides = {};
  private cur: ParsedEntry | null = null;
  private left = 0; // bytes left of the entry's data (a sparse file's map included), or of the padding
  private archived = 0; // the entry's bytes after its ustar block (its size field)
  // Data: the regions of the current entry and where in the file the next byte goes.
  private regions: readonly { offset: bigint; length: bigint }[] = [];
  private region = 0;
  private regionLeft = 0;
  private fileAt = 0n;
  // SparseMap: the numbers read so far and the one being read.
  private mapNums: bigint[] = [];
  private mapWant = -1; // numbers the map holds (2 per region + the count), once the count is read
  private mapCur = 0n;
  private mapDigits = 0;
  private mapRead = 0; // map bytes consumed
  private mapPad = -1; // padding bytes left after the map's last line, once known
  private readonly maxRegions: number;

  constructor(opts?: {
    /** Largest `x`/`g` header body accepted (default DEFAULT_MAX_EXTENDED_HEADER). */
    maxExtendedHeader?: number;
    /** Stream offset of the first byte pushed, when parsing from a seek point (default 0). */
    startOffset?: bigint;
  }) {
    this.maxExt = opts?.maxExtendedHeader ?? DEFAULT_MAX_EXTENDED_HEADER;
    // A map line is at least two bytes: a bound of the same order as the extended header's.
    this.maxRegions = Math.max(1024, Math.floor(this.maxExt / 16));
    this.base = Number(opts?.startOffset ?? 0n);
  }

  /** Bytes consumed so far (stops at the end of the end-of-archive marker: what follows it is ignored). */
  get offset(): bigint {
    return BigInt(this.base + this.pos);
  }

  /** True once the end-of-archive marker was seen. */
  get ended(): boolean {
    return this.state === State.Done;
  }

  private fail(message: string, at: number): never {
    this.state = State.Failed;
    throw new PaxFormatError(message, this.base + at);
  }

  push(chunk: Uint8Array, handlers: PaxHandlers): void {
    if (this.state === State.Failed) throw new PaxFormatError('parser used after an error', this.offset);
    let i = 0;
    const n = chunk.length;
    while (i < n) {
      switch (this.state) {
        case State.Done:
          return;
        case State.Header:
        case State.Zero1: {
          if (this.blockFill === 0 && n - i >= BLOCK) {
            i += BLOCK;
            this.pos += BLOCK;
            this.header(chunk, i - BLOCK, this.pos - BLOCK, handlers);
          } else {
            const take = Math.min(BLOCK - this.blockFill, n - i);
            this.block.set(chunk.subarray(i, i + take), this.blockFill);
            this.blockFill += take;
            i += take;
            this.pos += take;
            if (this.blockFill === BLOCK) {
              this.blockFill = 0;
              this.header(this.block, 0, this.pos - BLOCK, handlers);
            }
          }
          break;
        }
        case State.ExtData: {
          const take = Math.min(this.extSize - this.extFill, n - i);
          this.ext.set(chunk.subarray(i, i + take), this.extFill);
          this.extFill += take;
          i += take;
          this.pos += take;
          if (this.extFill === this.extSize) this.extDone();
          break;
        }
        case State.SparseMap:
          i = this.sparseMap(chunk, i, handlers);
          break;
        case State.Data: {
          while (this.regionLeft === 0) {
            const r = this.regions[++this.region]!; // the sums were checked: a region is left
            this.fileAt = r.offset;
            this.regionLeft = Number(r.length);
          }
          const take = Math.min(this.regionLeft, n - i);
          this.left -= take;
          this.regionLeft -= take;
          this.pos += take;
          const e = this.cur!;
          const at = this.fileAt;
          this.fileAt += BigInt(take);
          if (this.left === 0) this.startPad(this.archived);
          i += take;
          handlers.onData(e, chunk.subarray(i - take, i), at);
          break;
        }
        case State.Pad: {
          const take = Math.min(this.left, n - i);
          this.left -= take;
          i += take;
          this.pos += take;
          if (this.left === 0) this.state = State.Header;
          break;
        }
        default:
          throw new PaxFormatError('parser in a bad state', this.offset);
      }
    }
  }

  /** Declares the end of the stream; throws PaxFormatError unless it ended at the end-of-archive marker. */
  end(): void {
    switch (this.state) {
      case State.Done:
        return;
      case State.Header:
        if (this.blockFill > 0) this.fail('stream ends inside a header block', this.pos);
        if (this.pending) this.fail('stream ends after an extended header', this.pos);
        this.fail('stream ends without the end-of-archive marker', this.pos);
      // fall through (fail never returns)
      case State.Zero1:
        this.fail('stream ends after a single zero block (end of archive is two)', this.pos);
      // fall through
      case State.ExtData:
        this.fail('stream ends inside an extended header', this.pos);
      // fall through
      case State.SparseMap:
      case State.Data:
      case State.Pad:
        this.fail(`stream ends inside the data of ${this.cur?.path ?? 'an entry'}`, this.pos);
      // fall through
      default:
        throw new PaxFormatError('parser used after an error', this.offset);
    }
  }

  /**
   * Bytes that surely follow in the stream before the parser has finished
   * what it is in and read the next header block: reading exactly this many
   * never goes past the end-of-archive marker (Direct Access Recovery reads a
   * region no further than it must: past the tape file's end, a DMA would
   * take the mover's EOF pause for the end of the job). 0 once ended.
   */
  get need(): number {
    switch (this.state) {
      case State.Header:
      case State.Zero1:
        return BLOCK - this.blockFill;
      case State.ExtData:
        return this.extSize - this.extFill + paddingAfter(BigInt(this.extSize)) + BLOCK;
      case State.SparseMap:
      case State.Data:
        return this.left + paddingAfter(BigInt(this.archived)) + BLOCK;
      case State.Pad:
        return this.left + BLOCK;
      default:
        return 0;
    }
  }

  private startPad(size: number): void {
    const pad = size % BLOCK === 0 ? 0 : BLOCK - (size % BLOCK);
    this.left = pad;
    this.state = pad > 0 ? State.Pad : State.Header;
  }

  /** One 512-byte header block at `b[o..o+512)`, stream offset `at`. */
  private header(b: Uint8Array, o: number, at: number, handlers: PaxHandlers): void {
    let zero = true;
    for (let k = o; k < o + BLOCK; k++) {
      if (b[k] !== 0) {
        zero = false;
        break;
      }
    }
    if (zero) {
      if (this.pending) this.fail('extended header followed by the end-of-archive marker', at);
      if (this.state === State.Zero1) {
        this.state = State.Done;
        handlers.onEnd?.();
      } else this.state = State.Zero1;
      return;
    }
    if (this.state === State.Zero1) this.fail('a single zero block inside the archive', at - BLOCK);

    // Checksum: unsigned sum with the checksum field as spaces.
    let sum = 8 * 0x20;
    for (let k = o; k < o + CHKSUM; k++) sum += b[k]!;
    for (let k = o + CHKSUM + 8; k < o + BLOCK; k++) sum += b[k]!;
    const stored = this.octal(b, o + CHKSUM, 8, 'chksum', at, false);
    if (stored !== sum) this.fail(`bad header checksum (stored ${stored}, computed ${sum})`, at);

    // Magic: POSIX "ustar\0" "00", or GNU's "ustar  \0".
    const m = o + MAGIC;
    const ustar =
      b[m] === 0x75 && b[m + 1] === 0x73 && b[m + 2] === 0x74 && b[m + 3] === 0x61 && b[m + 4] === 0x72;
    const posix = ustar && b[m + 5] === 0 && b[m + 6] === 0x30 && b[m + 7] === 0x30;
    const gnu = ustar && b[m + 5] === 0x20 && b[m + 6] === 0x20 && b[m + 7] === 0;
    if (!posix && !gnu) this.fail('not a ustar header (bad magic)', at);

    const flag = b[o + TYPEFLAG]!;
    if (flag === TF_EXTENDED || flag === TF_GLOBAL) {
      const size = this.octal(b, o + SIZE, 12, 'size', at, true);
      if (size > this.maxExt)
        this.fail(`extended header of ${size} bytes exceeds the limit of ${this.maxExt}`, at);
      if (flag === TF_EXTENDED && !this.pending) {
        this.pending = {};
        this.pendingAt = at;
      }
      this.extGlobal = flag === TF_GLOBAL;
      this.extSize = size;
      this.extFill = 0;
      this.extDataAt = at + BLOCK;
      if (this.ext.length < size) this.ext = new Uint8Array(Math.max(size, Math.min(this.maxExt, 4096)));
      if (size === 0) this.extDone();
      else this.state = State.ExtData;
      return;
    }
    const type = TYPES_BY_FLAG[flag];
    if (type === undefined)
      this.fail(`unsupported typeflag ${JSON.stringify(String.fromCharCode(flag))}`, at);

    const x = this.pending ?? {};
    const g = this.globals;
    // ustar field < global (g) < extended (x); an x value of null falls back to the ustar field.
    const pick = <K extends OverrideKey>(k: K): Overrides[K] => {
      const v = x[k];
      if (v === null) return undefined;
      return v !== undefined ? v : g[k];
    };

    // Path: x/g `path`, else prefix '/' name.
    let path = pick('path');
    if (path == null) {
      const nl = this.pathField(b, o + NAME, NAME_LEN, 'name', at);
      const pl = this.pathField(b, o + PREFIX, PREFIX_LEN, 'prefix', at);
      const name = decodeName(b, o + NAME, o + NAME + nl);
      path = pl > 0 ? `${decodeName(b, o + PREFIX, o + PREFIX + pl)}/${name}` : name;
    }
    // GNU sparse 1.0: the real name is a record; the ustar name is <dir>/GNUSparseFile.<n>/<base>.
    const sparse = x.sparseMajor !== undefined || x.sparseMinor !== undefined;
    if (sparse) {
      if (x.sparseMajor !== 1 || x.sparseMinor !== 0)
        this.fail(
          `GNU sparse format ${x.sparseMajor ?? '?'}.${x.sparseMinor ?? '?'} is not supported (1.0 is)`,
          at,
        );
      if (type !== 'file') this.fail(`GNU sparse records on a ${type}`, at);
      if (x.sparseRealSize === undefined) this.fail('GNU sparse file without GNU.sparse.realsize', at);
      if (x.sparseName !== undefined) path = x.sparseName;
      else {
        const m = SPARSE_STORED_NAME.exec(path);
        if (m) path = m[1] === undefined ? m[2]! : `${m[1]}/${m[2]}`;
      }
    }
    if (type === 'dir') while (path.length > 1 && path.endsWith('/')) path = path.slice(0, -1);
    if (path.length === 0) this.fail('empty path', at);

    let size = 0;
    if (type !== 'fifo' && type !== 'chardev' && type !== 'blockdev') {
      const big = pick('size');
      if (big == null) size = this.octal(b, o + SIZE, 12, 'size', at, true);
      else if (big > MAX_SAFE_N)
        this.fail(`an entry of ${big} bytes in the archive (this parser's limit: 2^53−1)`, at);
      else size = Number(big);
    }
    const mode = this.octal(b, o + MODE, 8, 'mode', at, true) & 0o7777;
    const uid = pick('uid') ?? this.octal(b, o + UID, 8, 'uid', at, true);
    const gid = pick('gid') ?? this.octal(b, o + GID, 8, 'gid', at, true);
    const uname = pick('uname') ?? decodeName(b, o + UNAME, o + UNAME + fieldLen(b, o + UNAME, 32));
    const gname = pick('gname') ?? decodeName(b, o + GNAME, o + GNAME + fieldLen(b, o + GNAME, 32));
    const mtime = pick('mtime') ?? { sec: BigInt(this.octal(b, o + MTIME, 12, 'mtime', at, true)), nsec: 0 };

    const e: ParsedEntry = {
      path,
      type,
      size: sparse ? x.sparseRealSize! : BigInt(size),
      mode,
      uid,
      gid,
      uname,
      gname,
      mtime,
      headerOffset: BigInt(this.base + (this.pending ? this.pendingAt : at)),
      dataOffset: BigInt(this.base + at + BLOCK),
      archivedSize: BigInt(size),
    };
    const atime = pick('atime');
    if (atime != null) e.atime = atime;
    const ctime = pick('ctime');
    if (ctime != null) e.ctime = ctime;
    if (type === 'symlink' || type === 'hardlink') {
      let target = pick('linkpath');
      if (target == null) {
        const ll = this.pathField(b, o + LINKNAME, LINKNAME_LEN, 'linkname', at);
        target = decodeName(b, o + LINKNAME, o + LINKNAME + ll);
      }
      if (target.length === 0) this.fail(`${type} ${path} without a target`, at);
      e.linkTarget = target;
    }
    if (type === 'chardev' || type === 'blockdev') {
      e.devMajor = pick('devmajor') ?? this.octal(b, o + DEVMAJOR, 8, 'devmajor', at, true);
      e.devMinor = pick('devminor') ?? this.octal(b, o + DEVMINOR, 8, 'devminor', at, true);
    }
    // A dumpdir only means something on a directory, and only from its own x header.
    const dumpdir = x.dumpdir;
    if (type === 'dir' && dumpdir) e.dumpdir = dumpdir;
    // ACLs and xattrs: only from the entry's own x header. GNU tar --xattrs also
    // writes the ACLs' binary xattrs; with their text at hand they are dropped.
    if (x.aclAccess != null) e.aclAccess = x.aclAccess;
    if (type === 'dir' && x.aclDefault != null) e.aclDefault = x.aclDefault;
    if (x.xattrs !== undefined) {
      const xs = x.xattrs.filter(
        (a) =>
          !ACL_XATTRS.has(a.name) ||
          (a.name === 'system.posix_acl_access' ? e.aclAccess === undefined : e.aclDefault === undefined),
      );
      if (xs.length > 0) e.xattrs = xs;
    }

    this.pending = null;
    this.cur = e;
    this.archived = size;
    this.left = size;
    if (sparse) {
      this.mapNums = [];
      this.mapWant = -1;
      this.mapCur = 0n;
      this.mapDigits = 0;
      this.mapRead = 0;
      this.mapPad = -1;
      if (size === 0) this.fail('GNU sparse file without its map', at + BLOCK);
      this.state = State.SparseMap; // onEntry once the map is read
      return;
    }
    this.regions = [{ offset: 0n, length: BigInt(size) }];
    this.region = 0;
    this.regionLeft = size;
    this.fileAt = 0n;
    this.state = size > 0 ? State.Data : State.Header;
    handlers.onEntry(e);
  }

  /**
   * Consumes a sparse file's map from `chunk[i..)`: the region count, then each
   * region's offset and length, one decimal number a line, the whole padded to
   * a block. Returns where it stopped.
   */
  private sparseMap(chunk: Uint8Array, i: number, handlers: PaxHandlers): number {
    const n = chunk.length;
    while (i < n && this.left > 0) {
      if (this.mapPad >= 0) {
        const take = Math.min(this.mapPad, n - i, this.left);
        this.mapPad -= take;
        this.left -= take;
        this.pos += take;
        i += take;
        if (this.mapPad === 0) {
          this.sparseMapDone(handlers);
          return i;
        }
        continue;
      }
      const c = chunk[i]!;
      const at = this.pos;
      i++;
      this.pos++;
      this.left--;
      this.mapRead++;
      if (c >= 0x30 && c <= 0x39) {
        if (++this.mapDigits > 19) this.fail('GNU sparse map number too long', at);
        this.mapCur = this.mapCur * 10n + BigInt(c - 0x30);
        continue;
      }
      if (c !== 0x0a || this.mapDigits === 0) this.fail('malformed GNU sparse map', at);
      if (this.mapWant < 0) {
        if (this.mapCur > BigInt(this.maxRegions))
          this.fail(`GNU sparse map of ${this.mapCur} regions exceeds the limit of ${this.maxRegions}`, at);
        this.mapWant = Number(this.mapCur) * 2;
      } else this.mapNums.push(this.mapCur);
      this.mapCur = 0n;
      this.mapDigits = 0;
      if (this.mapNums.length === this.mapWant) {
        this.mapPad = (BLOCK - (this.mapRead % BLOCK)) % BLOCK;
        if (this.mapPad === 0) {
          this.sparseMapDone(handlers);
          return i;
        }
      }
    }
    if (this.left === 0 && this.state === State.SparseMap)
      this.fail('GNU sparse map runs past the entry', this.pos);
    return i;
  }

  /** The map is read: check it against the entry's sizes and go on to its data. */
  private sparseMapDone(handlers: PaxHandlers): void {
    const e = this.cur!;
    const at = Number(e.dataOffset) - this.base;
    const map: { offset: bigint; length: bigint }[] = [];
    let end = 0n;
    let data = 0n;
    let unaligned = -1n;
    for (let k = 0; k < this.mapNums.length; k += 2) {
      const offset = this.mapNums[k]!;
      const length = this.mapNums[k + 1]!;
      if (offset < end) this.fail('GNU sparse map regions out of order or overlapping', at);
      // GNU tar reads each region from a block boundary: only the last may end inside a block.
      if (length > 0n) {
        if (unaligned >= 0n)
          this.fail(
            `GNU sparse map data region of ${unaligned} bytes before the last is not a multiple of 512`,
            at,
          );
        if (length % 512n !== 0n) unaligned = length;
      }
      end = offset + length;
      if (end > e.size) this.fail(`GNU sparse map region ends at ${end}, past the real size ${e.size}`, at);
      data += length;
      map.push({ offset, length });
    }
    if (data !== BigInt(this.left))
      this.fail(`GNU sparse map holds ${data} bytes of data, the entry ${this.left}`, at);
    this.mapNums = [];
    const sparse: PaxSparse = { realSize: e.size, map };
    e.sparse = sparse;
    this.regions = map;
    this.region = -1;
    this.regionLeft = 0;
    this.fileAt = 0n;
    if (this.left > 0) this.state = State.Data;
    else this.startPad(this.archived);
    handlers.onEntry(e);
  }

  /** Length of a NUL-terminated path field; bytes after the NUL must be NUL too. */
  private pathField(b: Uint8Array, at: number, len: number, what: string, hdr: number): number {
    const l = fieldLen(b, at, len);
    for (let k = l + 1; k < len; k++) if (b[at + k] !== 0) this.fail(`NUL inside the ${what} field`, hdr);
    return l;
  }

  /**
   * An octal field: optional leading spaces, octal digits, then only NULs/spaces.
   * An empty field is 0 when `emptyOk`. GNU base-256 (high bit set) is rejected.
   */
  private octal(b: Uint8Array, at: number, len: number, what: string, hdr: number, emptyOk: boolean): number {
    const end = at + len;
    let k = at;
    if (b[k]! & 0x80) this.fail(`base-256 ${what} field is not supported`, hdr);
    while (k < end && b[k] === 0x20) k++;
    let v = 0;
    let digits = 0;
    for (; k < end; k++) {
      const c = b[k]!;
      if (c < 0x30 || c > 0x37) break;
      v = v * 8 + (c - 0x30);
      digits++;
    }
    for (; k < end; k++) {
      const c = b[k]!;
      if (c !== 0 && c !== 0x20) this.fail(`bad octal in the ${what} field`, hdr);
    }
    if (digits === 0 && !emptyOk) this.fail(`empty ${what} field`, hdr);
    return v;
  }

  /** The body of an x or g header is complete: parse its records. */
  private extDone(): void {
    const into = this.extGlobal ? this.globals : this.pending!;
    const b = this.ext;
    const size = this.extSize;
    let p = 0;
    while (p < size) {
      const at = this.extDataAt + p;
      let q = p;
      let len = 0;
      while (q < size && b[q]! >= 0x30 && b[q]! <= 0x39 && len <= size) len = len * 10 + (b[q++]! - 0x30);
      if (q === p || q >= size || b[q] !== 0x20) this.fail('malformed extended header record length', at);
      if (len > size - p || len < q - p + 4) this.fail(`bad extended header record length ${len}`, at);
      const end = p + len;
      if (b[end - 1] !== 0x0a) this.fail('extended header record does not end with a newline', at);
      const ks = q + 1;
      let eq = ks;
      while (eq < end - 1 && b[eq] !== 0x3d) eq++;
      if (eq === ks || eq >= end - 1) this.fail('extended header record without keyword=value', at);
      // Keys are ASCII but for xattr names, which are bytes: latin1 keeps every byte.
      const key = Buffer.from(b.buffer, b.byteOffset + ks, eq - ks).toString('latin1');
      this.record(into, key, b.subarray(eq + 1, end - 1), at);
      p = end;
    }
    this.startPad(size);
  }

  private record(into: Overrides, key: string, v: Uint8Array, at: number): void {
    const own = into !== this.globals; // an entry's own x header
    let k: OverrideKey;
    switch (key) {
      case 'path':
      case 'linkpath':
      case 'uname':
      case 'gname':
      case 'size':
      case 'uid':
      case 'gid':
      case 'mtime':
      case 'atime':
      case 'ctime':
        k = key;
        break;
      case 'SCHILY.devmajor':
        k = 'devmajor';
        break;
      case 'SCHILY.devminor':
        k = 'devminor';
        break;
      case 'GNU.dumpdir':
        // Never from a global header: a dumpdir names one directory's contents.
        if (own) into.dumpdir = v.length === 0 ? null : this.dumpdir(v, at);
        return;
      case 'SCHILY.acl.access':
        if (own) into.aclAccess = v.length === 0 ? null : decodeName(v);
        return;
      case 'SCHILY.acl.default':
        if (own) into.aclDefault = v.length === 0 ? null : decodeName(v);
        return;
      case 'GNU.sparse.major':
      case 'GNU.sparse.minor': {
        const n = this.decimal(v, key, at, 9n);
        if (own) into[key === 'GNU.sparse.major' ? 'sparseMajor' : 'sparseMinor'] = Number(n);
        return;
      }
      case 'GNU.sparse.name':
        if (v.length === 0 || v.includes(0)) this.fail(`bad ${key}`, at);
        if (own) into.sparseName = decodeName(v);
        return;
      case 'GNU.sparse.realsize': {
        const n = this.decimal(v, key, at, MAX_SIZE);
        if (own) into.sparseRealSize = n;
        return;
      }
      case 'GNU.sparse.size':
      case 'GNU.sparse.numblocks':
      case 'GNU.sparse.offset':
      case 'GNU.sparse.numbytes':
      case 'GNU.sparse.map':
        this.fail(`GNU sparse format 0.x is not supported (${key}; 1.0 is)`, at);
      // fall through (fail never returns)
      default:
        if (key.startsWith(XATTR_PREFIX)) {
          if (own) this.xattr(into, key, v, at);
          return;
        }
        if (key.startsWith('GNU.sparse.')) this.fail(`unknown GNU sparse keyword ${key}`, at);
        return; // charset, comment, hdrcharset (names are bytes either way), LIBARCHIVE.*, ...: ignored
    }
    if (v.length === 0) {
      // POSIX: an empty value deletes the keyword (a global is deleted; an x
      // header's falls back to the ustar field).
      if (!own) delete into[k];
      else into[k] = null;
      return;
    }
    switch (k) {
      case 'path':
      case 'linkpath':
        // hdrcharset=BINARY or UTF-8: the bytes are the name either way (docs/pax.md "Names").
        if (v.includes(0)) this.fail(`NUL in ${key}`, at);
        into[k] = decodeName(v);
        return;
      case 'uname':
      case 'gname':
        into[k] = decodeName(v);
        return;
      case 'size':
        into.size = this.decimal(v, key, at, MAX_SIZE);
        return;
      case 'uid':
      case 'gid':
      case 'devmajor':
      case 'devminor':
        into[k] = Number(this.decimal(v, key, at, MAX_SAFE_N));
        return;
      default:
        into[k] = this.time(v, key, at);
    }
  }

  /** A non-negative decimal integer no larger than `max`. */
  private decimal(v: Uint8Array, key: string, at: number, max: bigint): bigint {
    if (v.length === 0) this.fail(`${key} is not a non-negative decimal integer`, at);
    for (let j = 0; j < v.length; j++) {
      const c = v[j]!;
      if (c < 0x30 || c > 0x39) this.fail(`${key} is not a non-negative decimal integer`, at);
    }
    const n =
      v.length > 19 ? max + 1n : BigInt(Buffer.from(v.buffer, v.byteOffset, v.length).toString('latin1'));
    if (n > max) this.fail(`${key} is too large (at most ${max})`, at);
    return n;
  }

  /**
   * `SCHILY.xattr.<name>=<value>`: the name's bytes with `%25` for '%' and
   * `%3D` for '=' (GNU tar's escapes: a key cannot hold '='), the value raw.
   */
  private xattr(into: Overrides, key: string, v: Uint8Array, at: number): void {
    const raw = Buffer.from(key.slice(XATTR_PREFIX.length), 'latin1');
    const out = Buffer.allocUnsafe(raw.length);
    let n = 0;
    for (let j = 0; j < raw.length; j++) {
      const c = raw[j]!;
      if (c === 0x25 && j + 2 < raw.length && raw[j + 1] === 0x32 && raw[j + 2] === 0x35) {
        out[n++] = 0x25;
        j += 2;
      } else if (c === 0x25 && j + 2 < raw.length && raw[j + 1] === 0x33 && (raw[j + 2]! | 0x20) === 0x64) {
        out[n++] = 0x3d;
        j += 2;
      } else out[n++] = c;
    }
    if (n === 0) this.fail('SCHILY.xattr record without a name', at);
    const name = decodeName(out, 0, n);
    const list = (into.xattrs ??= []);
    const value = Buffer.from(v); // the header buffer is reused
    const old = list.findIndex((a) => a.name === name);
    if (old >= 0) list[old] = { name, value };
    else list.push({ name, value });
  }

  /**
   * A `GNU.dumpdir` value: entries of a flag (Y, N or D), a name and a NUL,
   * then one more NUL. A name must be one path component: a restore deletes
   * what a dumpdir leaves out, so a name that could point elsewhere is an error.
   */
  private dumpdir(v: Uint8Array, at: number): DumpdirEntry[] {
    const out: DumpdirEntry[] = [];
    const seen = new Set<string>();
    let j = 0;
    for (;;) {
      if (j >= v.length) this.fail('GNU.dumpdir does not end with an empty entry', at);
      const c = v[j]!;
      if (c === 0) break;
      if (c !== 0x59 && c !== 0x4e && c !== 0x44) {
        this.fail(
          `GNU.dumpdir entry with flag ${JSON.stringify(String.fromCharCode(c))} (only Y, N and D are supported)`,
          at,
        );
      }
      const start = j + 1;
      let end = start;
      while (end < v.length && v[end] !== 0) end++;
      if (end >= v.length) this.fail('GNU.dumpdir entry without its NUL', at);
      const name = decodeName(v, start, end);
      if (name === '' || name === '.' || name === '..' || name.includes('/'))
        this.fail(`GNU.dumpdir name ${JSON.stringify(name)} is not a single path component`, at);
      if (seen.has(name)) this.fail(`GNU.dumpdir names ${JSON.stringify(name)} twice`, at);
      seen.add(name);
      out.push({ name, flag: c === 0x59 ? 'Y' : c === 0x4e ? 'N' : 'D' });
      j = end + 1;
    }
    if (j !== v.length - 1) this.fail('GNU.dumpdir has bytes after its end', at);
    return out;
  }

  /** A pax time: [-]digits[.digits], the real number of seconds (so "-1.5" is sec −2, nsec 5e8). */
  private time(v: Uint8Array, key: string, at: number): PaxTime {
    let j = 0;
    const neg = v[0] === 0x2d;
    if (neg) j++;
    const ws = j;
    while (j < v.length && v[j]! >= 0x30 && v[j]! <= 0x39) j++;
    const we = j;
    let frac = 0;
    let fd = 0;
    if (j < v.length && v[j] === 0x2e) {
      j++;
      const fs = j;
      for (; j < v.length && v[j]! >= 0x30 && v[j]! <= 0x39; j++) {
        if (fd < 9) {
          frac = frac * 10 + (v[j]! - 0x30);
          fd++;
        }
      }
      if (j === fs) this.fail(`bad ${key}`, at);
    }
    if (j !== v.length || we === ws || we - ws > 19) this.fail(`bad ${key}`, at);
    for (; fd < 9; fd++) frac *= 10;
    let sec = 0n;
    for (let k = ws; k < we; k++) sec = sec * 10n + BigInt(v[k]! - 0x30);
    if (!neg) return { sec, nsec: frac };
    if (frac === 0) return { sec: -sec, nsec: 0 };
    return { sec: -sec - 1n, nsec: 1e9 - frac };
  }
}
