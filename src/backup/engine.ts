// The backup engine of a session thread: walks a tree, reads its files and
// writes a POSIX pax stream to a sink (the data connection, or the byte ring to
// this server's own mover). Synchronous file calls (this runs on a worker
// thread, where they are the fast path: DESIGN.md, "Measured in a prototype"),
// file data read straight into the stream buffer, one buffer reused for the
// whole backup. Between buffers it awaits the sink, which is also where a
// DMA's abort and GET_STATE get their turn.
//
// Per-file trouble (vanished, unreadable, changed while read) is reported and
// the backup goes on (restic's policy; PROTOCOL.md §7.1).

import fs from 'node:fs';
import { join } from 'node:path';
import { ExcludeList } from './glob.js';
import { OwnerNames } from './owners.js';
import { END_OF_ARCHIVE, MAX_HEADER_BYTES, encodeHeaderInto, paddingAfter } from './pax.js';
import type { PaxEntry, PaxType } from './pax.js';

/** Where the stream goes. */
export interface StreamSink {
  /** Takes `chunk`; resolves once the chunk's memory may be reused. Rejects if the peer is gone. */
  write(chunk: Uint8Array): Promise<void>;
  /** No more data: resolves once everything written has been taken. */
  end(): Promise<void>;
}

export interface BackupSpec {
  /** The directory to back up (absolute, already checked to lie inside an export). */
  readonly root: string;
  /** Paths below root to back up, each with everything under it; empty = all of root. */
  readonly files: readonly string[];
  /** EXCLUDE patterns (see glob.ts). */
  readonly excludes: readonly string[];
}

/** One entry in the stream, as file history needs it. */
export interface BackedUpEntry {
  /** Relative to the root, '/'-separated; '.' is the root itself. */
  readonly path: string;
  readonly type: PaxType;
  readonly stat: fs.BigIntStats;
  /** Stream offset of the entry's first header byte: its fh_info. */
  readonly headerOffset: bigint;
  /** For a hard link: the path it links to (stored once, under that path). */
  readonly linkTarget?: string;
}

export interface BackupHooks {
  /** Polled between files and between buffers: true stops the backup. */
  aborted(): boolean;
  /** Per-file trouble, for LOG_MESSAGE and the log. */
  warn(text: string): void;
  /** Each entry once its header is in the stream. */
  entry?(e: BackedUpEntry): void;
}

export interface BackupResult {
  readonly entries: number;
  readonly bytes: bigint;
  readonly warnings: number;
  readonly aborted: boolean;
}

/** Stream buffer: large writes for the sink, and the await granularity for aborts. */
const BUFFER_BYTES = 256 * 1024;

const ZERO_BLOCK = new Uint8Array(512);

export class BackupAborted extends Error {}

export class BackupEngine {
  private readonly buf = Buffer.allocUnsafe(BUFFER_BYTES);
  private fill = 0;
  /** Bytes of stream produced so far (flushed or not): the next header's offset. */
  private offset = 0n;
  private flushed = 0n;
  private entries = 0;
  private warnings = 0;
  private readonly excludes: ExcludeList;
  private readonly owners = new OwnerNames();
  private readonly links = new Map<string, string>();

  constructor(
    private readonly spec: BackupSpec,
    private readonly sink: StreamSink,
    private readonly hooks: BackupHooks,
  ) {
    this.excludes = new ExcludeList(spec.excludes);
  }

  /** Stream bytes handed to the sink so far (DATA_GET_STATE's bytes_processed). */
  get bytesProcessed(): bigint {
    return this.flushed;
  }

  async run(): Promise<BackupResult> {
    try {
      if (this.spec.files.length === 0) {
        await this.visit('.', this.spec.root);
      } else {
        for (const f of this.spec.files) {
          const rel = normalizeRelative(f);
          if (rel === null) {
            this.warn(`FILES entry ${JSON.stringify(f)} is not a path below the backup root; skipped`);
            continue;
          }
          await this.visit(rel, join(this.spec.root, rel));
        }
      }
      await this.put(END_OF_ARCHIVE);
      await this.flush();
      await this.sink.end();
      return { entries: this.entries, bytes: this.offset, warnings: this.warnings, aborted: false };
    } catch (e) {
      if (e instanceof BackupAborted) {
        return { entries: this.entries, bytes: this.offset, warnings: this.warnings, aborted: true };
      }
      throw e;
    }
  }

  private warn(text: string): void {
    this.warnings++;
    this.hooks.warn(text);
  }

  /** One path and, for a directory, everything below it (depth first, names sorted). */
  private async visit(rel: string, abs: string): Promise<void> {
    if (this.hooks.aborted()) throw new BackupAborted();
    let st: fs.BigIntStats;
    try {
      st = fs.lstatSync(abs, { bigint: true });
    } catch (e) {
      this.warn(`${rel}: ${describe(e)}; skipped`);
      return;
    }
    if (st.isSocket()) {
      this.warn(`${rel}: a socket; not backed up`);
      return;
    }
    await this.emit(rel, abs, st);
    if (!st.isDirectory()) return;
    let names: string[];
    try {
      names = fs.readdirSync(abs).sort();
    } catch (e) {
      this.warn(`${rel}: cannot list the directory (${describe(e)}); its contents are not backed up`);
      return;
    }
    for (const name of names) {
      const childRel = rel === '.' ? name : `${rel}/${name}`;
      if (!this.excludes.empty && this.excludes.excludes(childRel, name)) continue;
      await this.visit(childRel, join(abs, name));
    }
  }

  private async emit(rel: string, abs: string, st: fs.BigIntStats): Promise<void> {
    const entry = this.describeEntry(rel, st);
    let fd = -1;
    if (entry.type === 'symlink') {
      try {
        entry.linkTarget = fs.readlinkSync(abs);
      } catch (e) {
        this.warn(`${rel}: ${describe(e)}; skipped`);
        return;
      }
    } else if (entry.type === 'file') {
      // Hard links after the first are stored as links to it (tar's rule).
      if (st.nlink > 1n) {
        const key = `${st.dev}:${st.ino}`;
        const first = this.links.get(key);
        if (first !== undefined) {
          entry.type = 'hardlink';
          entry.size = 0n;
          entry.linkTarget = first;
        } else this.links.set(key, rel);
      }
      if (entry.type === 'file') {
        try {
          fd = fs.openSync(abs, 'r');
        } catch (e) {
          this.warn(`${rel}: ${describe(e)}; skipped`);
          return;
        }
      }
    }
    try {
      if (this.buf.length - this.fill < MAX_HEADER_BYTES) await this.flush();
      const headerOffset = this.offset;
      const n = encodeHeaderInto(entry, this.buf, this.fill);
      this.fill += n;
      this.offset += BigInt(n);
      this.entries++;
      if (fd >= 0) await this.copyFile(rel, fd, entry.size);
      this.hooks.entry?.({
        path: rel,
        type: entry.type,
        stat: st,
        headerOffset,
        ...(entry.type === 'hardlink' ? { linkTarget: entry.linkTarget! } : {}),
      });
    } finally {
      if (fd >= 0) fs.closeSync(fd);
    }
  }

  private describeEntry(rel: string, st: fs.BigIntStats): PaxEntry {
    const uid = Number(st.uid);
    const gid = Number(st.gid);
    const entry: PaxEntry = {
      path: rel,
      type: typeOf(st),
      size: st.isFile() ? st.size : 0n,
      mode: Number(st.mode & 0o7777n),
      uid,
      gid,
      uname: this.owners.user(uid),
      gname: this.owners.group(gid),
      mtime: { sec: st.mtimeNs / 1_000_000_000n, nsec: Number(st.mtimeNs % 1_000_000_000n) },
      atime: { sec: st.atimeNs / 1_000_000_000n, nsec: Number(st.atimeNs % 1_000_000_000n) },
    };
    if (st.isCharacterDevice() || st.isBlockDevice()) {
      const rdev = st.rdev;
      // Linux's dev_t split (glibc major()/minor()).
      entry.devMajor = Number(((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn));
      entry.devMinor = Number((rdev & 0xffn) | ((rdev >> 12n) & ~0xffn));
    }
    return entry;
  }

  /** Exactly `size` bytes of the file go into the stream, whatever happens to it meanwhile. */
  private async copyFile(rel: string, fd: number, size: bigint): Promise<void> {
    let left = size;
    let shrank = false;
    while (left > 0n) {
      if (this.fill === this.buf.length) await this.flush();
      const want = Number(
        left < BigInt(this.buf.length - this.fill) ? left : BigInt(this.buf.length - this.fill),
      );
      let got = 0;
      if (!shrank) {
        try {
          got = fs.readSync(fd, this.buf, this.fill, want, null);
        } catch (e) {
          this.warn(`${rel}: read failed (${describe(e)}); the rest is zeros in the backup`);
          shrank = true;
        }
        if (got === 0 && !shrank) {
          this.warn(`${rel}: shrank while being read; padded with zeros to its recorded size`);
          shrank = true;
        }
      }
      if (shrank) {
        this.buf.fill(0, this.fill, this.fill + want);
        got = want;
      }
      this.fill += got;
      this.offset += BigInt(got);
      left -= BigInt(got);
    }
    // A file that grew: only the recorded size is in the backup (the header says so).
    if (!shrank) {
      const probe = Buffer.allocUnsafe(1);
      if (fs.readSync(fd, probe, 0, 1, null) > 0)
        this.warn(`${rel}: changed while being read; backed up as first seen`);
    }
    await this.put(ZERO_BLOCK.subarray(0, paddingAfter(size)));
  }

  /** Appends a few bytes (padding, the end marker: at most a few blocks). */
  private async put(bytes: Uint8Array): Promise<void> {
    if (bytes.length === 0) return;
    if (this.buf.length - this.fill < bytes.length) await this.flush();
    this.buf.set(bytes, this.fill);
    this.fill += bytes.length;
    this.offset += BigInt(bytes.length);
  }

  private async flush(): Promise<void> {
    if (this.fill === 0) return;
    if (this.hooks.aborted()) throw new BackupAborted();
    await this.sink.write(this.buf.subarray(0, this.fill));
    this.flushed += BigInt(this.fill);
    this.fill = 0;
    if (this.hooks.aborted()) throw new BackupAborted();
  }
}

function typeOf(st: fs.BigIntStats): PaxType {
  if (st.isDirectory()) return 'dir';
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isFIFO()) return 'fifo';
  if (st.isCharacterDevice()) return 'chardev';
  if (st.isBlockDevice()) return 'blockdev';
  return 'file';
}

/** A FILES entry as a clean relative path, or null if it would leave the root. */
export function normalizeRelative(p: string): string | null {
  const parts: string[] = [];
  for (const part of p.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') return null;
    parts.push(part);
  }
  return parts.length === 0 ? '.' : parts.join('/');
}

function describe(e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  switch (err.code) {
    case 'ENOENT':
      return 'vanished';
    case 'EACCES':
    case 'EPERM':
      return 'permission denied';
    default:
      return err.code ?? err.message;
  }
}
