// The backup engine of a session thread: walks a tree, reads its files and
// writes a POSIX pax stream to a sink (the data connection, or the byte ring to
// this server's own mover). Synchronous file calls (this runs on a worker
// thread, where they are the fast path: docs/design.md, "Measured in a prototype"),
// file data read straight into the stream buffer, one buffer reused for the
// whole backup. Between buffers it awaits the sink, which is also where a
// DMA's abort and GET_STATE get their turn.
//
// Per-file trouble (vanished, unreadable, changed while read) is reported and
// the backup goes on (restic's policy; docs/protocol.md §7.1).
//
// Names are bytes (docs/names.md): every name and path here is the lossless
// string of the bytes the file system holds (ConfinedDir lists and opens with
// Buffers), so a name that is not UTF-8 is walked, stored and reported like
// any other; warnings name files by their printed form (escapeName).
//
// Confinement (docs/security.md): the walk never follows a symbolic link. The
// root is opened and checked to be the directory the data service resolved;
// every name below is reached from its directory's descriptor (ConfinedDir),
// each directory opened is checked to be the one lstat'ed, and files are
// opened O_NOFOLLOW in their directory and checked the same way. A FILES entry
// crossing a symbolic link is a warning and skipped; one naming a symbolic
// link backs up the link itself.

import fs from 'node:fs';
import { ConfineError, ConfinedDir, closeBelow, pathComponents, resolveBelow } from '../util/confine.js';
import type { FileId, ResolvedBelow } from '../util/confine.js';
import { ExcludeList } from './glob.js';
import { DirSnapshot } from './incremental.js';
import type { IncrementalPlan } from './incremental.js';
import { OwnerNames } from './owners.js';
import {
  END_OF_ARCHIVE,
  MAX_DUMPDIR_BYTES,
  paddingAfter,
  PaxUnrepresentableError,
  alignSparseMap,
  sparseDataBytes,
} from './pax-layout.js';
import { dumpdirValueLength, encodeHeaderInto, headerBytes } from './pax-encoder.js';
import { FileCopier, describe, idsOf, listDirectory, skipReason, timeOfNs, timesOf } from './file-source.js';
import type { FileStat, ListedEntry } from './file-source.js';
import type { FilePipe } from './pipe.js';
import type { DumpdirEntry, PaxEntry, PaxType, PaxXattr } from './pax-layout.js';
import { decodeName, escapeName } from '../util/byte-name.js';
import { CodedError } from '../util/coded-error.js';
import { dataRegions, lgetxattr, llistxattr } from '../util/native-fs.js';
import type { DataRegion } from '../util/native-fs.js';
import { ACL_ACCESS_XATTR, ACL_DEFAULT_XATTR, AclFormatError, aclToText } from './acl.js';

/** Where the stream goes. */
export interface StreamSink {
  /** Takes `chunk`; resolves once the chunk's memory may be reused. Rejects if the peer is gone. */
  write(chunk: Uint8Array): Promise<void>;
  /** No more data: resolves once everything written has been taken. */
  end(): Promise<void>;
}

export interface BackupSpec {
  /** The directory to back up (absolute, already checked to lie inside an export: util/confine.ts). */
  readonly root: string;
  /**
   * The root's identity when it was checked: the backup fails if `root` is
   * another directory by the time it starts (swapped for a symbolic link, say).
   */
  readonly rootId?: FileId;
  /** Paths below root to back up, each with everything under it; empty = all of root. */
  readonly files: readonly string[];
  /** EXCLUDE patterns (see glob.ts). */
  readonly excludes: readonly string[];
  /**
   * Incremental backups (incremental.ts): what goes into the stream, and the
   * directory snapshot to record (snapshot()). Absent: a full backup as ever,
   * no snapshot.
   */
  readonly incremental?: IncrementalPlan;
  /**
   * Extended attributes (user., trusted., security.: every namespace root
   * can read) go with each entry as SCHILY.xattr records; default true, the
   * backup env's XATTRS=n turns them off (docs/metadata.md).
   */
  readonly xattrs?: boolean;
  /** POSIX ACLs (access, and directories' default) as SCHILY.acl records; default true, ACLS=n turns them off. */
  readonly acls?: boolean;
}

/** One entry in the stream, as file history needs it. */
export interface BackedUpEntry {
  /** Relative to the root, '/'-separated; '.' is the root itself. */
  readonly path: string;
  readonly type: PaxType;
  readonly stat: FileStat;
  /** Node number (dir/node history): unique per backup, shared by hard links; the root is 2. */
  readonly node: bigint;
  /** Stream offset of the entry's first header byte (its fh_info); null: not in the stream. */
  readonly headerOffset: bigint | null;
  /** For a hard link: the path it links to (stored once, under that path). */
  readonly linkTarget?: string;
}

/** One name in a directory listing (dir/node history). */
export interface ListedName {
  readonly name: string;
  readonly node: bigint;
}

export interface BackupHooks {
  /** Polled between files and between buffers: true stops the backup. */
  aborted(): boolean;
  /** Per-file trouble, for LOG_MESSAGE and the log. */
  warn(text: string): void;
  /** Each entry once its header and data are in the stream (one thread). */
  entry?(e: BackedUpEntry): void;
  /**
   * With a reader thread (pipe), instead of entry(): the entry's history
   * record, its fh_info left for the reader to fill in; null for none.
   */
  record?(e: BackedUpEntry): Uint8Array | null;
  /**
   * Dir/node history: a directory's names, before its own entry and before
   * anything below it (docs/protocol.md §8.3). `dots` is false when the directory
   * was announced already and only more names follow (FILES backups).
   * Setting it also reports the directories above FILES paths (entry() with
   * headerOffset null), so the DMA can build their paths.
   */
  directory?(node: bigint, parent: bigint, names: readonly ListedName[], dots: boolean): void | Promise<void>;
}

export interface BackupResult {
  readonly entries: number;
  readonly bytes: bigint;
  readonly warnings: number;
  readonly aborted: boolean;
}

/** How long the walk may run without letting the thread's event loop in. */
const YIELD_EVERY_MS = 5;

/** Stream buffer: large writes for the sink, and the await granularity for aborts. */
const BUFFER_BYTES = 256 * 1024;

const ZERO_BLOCK = new Uint8Array(512);

/**
 * With a reader thread, a header longer than this (a directory's, with a big
 * GNU.dumpdir) goes through the work ring in pieces of this size: an item must
 * fit the ring whole.
 */
const PIPE_PIECE = 16 * 1024;

/**
 * Most bytes of extended attributes (names and values) one entry carries:
 * the header must fit the reader thread's work ring whole, and a stream
 * buffer. Linux keeps a value to 64 KiB and most file systems far less per
 * file; what goes beyond is left out with a warning naming the file.
 */
export const MAX_XATTR_BYTES = 256 * 1024;

/** The backup root's node number: NetBackup requires 2 (docs/protocol.md §8.3). */
export const ROOT_NODE = 2n;
const ALL_ONES = 0xffff_ffff_ffff_ffffn;
/** Node numbers for files on other file systems than the root's: above any inode number seen in practice. */
const FOREIGN_NODE_BASE = 1n << 62n;

export class BackupAborted extends CodedError {
  readonly code = 'BACKUP_ABORTED';
}

export class BackupEngine {
  private readonly buf = Buffer.allocUnsafe(BUFFER_BYTES);
  private fill = 0;
  /** Bytes of stream produced so far (flushed or not): the next header's offset. */
  private offset = 0n;
  private flushed = 0n;
  private lastYield = performance.now();
  /** Directories being walked, each with how many of its children are still to come. */
  /**
   * The directories being walked, outermost first: per directory, its
   * children not yet started, and of those the stream bytes of the files
   * (known from their lstat: header plus padded data) and the number of
   * directories (unknown until walked). estimateRemaining reads them.
   */
  private readonly walking: { depth: number; left: number; fileBytesLeft: number; dirsLeft: number }[] = [];
  /** Per depth: stream bytes of the directories (with all below them) finished so far, and their count. */
  private readonly finished: { bytes: number; count: number }[] = [];
  private entries = 0;
  private warnings = 0;
  private readonly excludes: ExcludeList;
  private readonly owners = new OwnerNames();
  private readonly links = new Map<string, string>();
  private rootDev = -1n;
  private rootIno = -1n;
  private rootSt: FileStat | null = null;
  private readonly foreignNodes = new Map<string, bigint>();
  /** FILES backups with dir/node history: directories (and names in them) already announced. */
  private readonly announced = new Set<string>();
  /** Incremental backups: the directories walked (and listed), for the next incremental. */
  private readonly dirs: DirSnapshot | null;
  private readonly wantXattrs: boolean;
  private readonly wantAcls: boolean;

  /**
   * `pipe`: a reader thread puts file data into the stream (LOCAL backups,
   * see pipe.ts); the sink then only ends the stream.
   */
  constructor(
    private readonly spec: BackupSpec,
    private readonly sink: StreamSink,
    private readonly hooks: BackupHooks,
    private readonly pipe: FilePipe | null = null,
  ) {
    this.excludes = new ExcludeList(spec.excludes);
    this.dirs = spec.incremental ? new DirSnapshot() : null;
    this.wantXattrs = spec.xattrs ?? true;
    this.wantAcls = spec.acls ?? true;
  }

  /**
   * Incremental backups: the directories this backup walked, each with its
   * (dev, ino), for commitIncremental once the backup has completed; null
   * without spec.incremental. A directory that could not be listed is left
   * out, so the next incremental dumps it whole.
   */
  snapshot(): DirSnapshot | null {
    return this.dirs;
  }

  /** Stream bytes handed to the sink so far (DATA_GET_STATE's bytes_processed). */
  get bytesProcessed(): bigint {
    return this.pipe ? BigInt(this.pipe.streamed) : this.flushed;
  }

  async run(): Promise<BackupResult> {
    let root: ConfinedDir | null = null;
    try {
      root = ConfinedDir.open(this.spec.root, this.spec.rootId);
      const rootSt = fs.fstatSync(root.fd, { bigint: true });
      this.rootSt = rootSt;
      this.rootDev = rootSt.dev;
      this.rootIno = rootSt.ino;
      if (this.spec.files.length === 0) {
        await this.visit('.', root, '', rootSt, ROOT_NODE);
      } else {
        for (const f of this.spec.files) {
          const r = this.resolveFiles(root, f);
          if (!r) continue;
          try {
            const parent = this.hooks.directory ? await this.announceAncestors(r) : ROOT_NODE;
            if (r.stat.isSocket()) this.warn(`${escapeName(r.rel)}: a socket; not backed up`);
            else await this.visit(r.rel, r.dirs[r.dirs.length - 1]!, r.name, r.stat, parent);
          } finally {
            closeBelow(r);
          }
        }
      }
      if (this.pipe) {
        const put = this.pipe.bytesOut(END_OF_ARCHIVE);
        if (put) await put;
        this.offset += BigInt(END_OF_ARCHIVE.length);
        await this.pipe.end();
        this.warnings += this.pipe.warnings;
        this.entries -= this.pipe.skipped;
        this.offset = BigInt(this.pipe.streamed);
        if (this.hooks.aborted()) throw new BackupAborted();
      } else {
        await this.put(END_OF_ARCHIVE);
        await this.flush();
      }
      await this.sink.end();
      return { entries: this.entries, bytes: this.offset, warnings: this.warnings, aborted: false };
    } catch (e) {
      if (this.pipe) await this.pipe.stop();
      if (e instanceof BackupAborted) {
        return { entries: this.entries, bytes: this.offset, warnings: this.warnings, aborted: true };
      }
      throw e;
    } finally {
      root?.close();
    }
  }

  /**
   * A FILES entry below the root, never through a symbolic link (a warning
   * naming the entry, and skipped); null when it is skipped.
   */
  private resolveFiles(root: ConfinedDir, f: string): ResolvedBelow | null {
    if (pathComponents(f) === null) {
      this.warn(`FILES entry "${escapeName(f)}" is not a path below the backup root; skipped`);
      return null;
    }
    try {
      return resolveBelow(root, f, 'FILES entry');
    } catch (e) {
      if (e instanceof ConfineError) this.warn(`${e.message}; skipped`);
      else this.warn(`${escapeName(normalizeRelative(f) ?? f)}: ${describe(e)}; skipped`);
      return null;
    }
  }

  /** The node number of a file: its inode on the root's file system, else one of our own. */
  nodeOf(st: FileStat): bigint {
    if (st.dev === this.rootDev) {
      if (st.ino === this.rootIno) return ROOT_NODE;
      if (st.ino !== ROOT_NODE && st.ino !== ALL_ONES) return st.ino;
    }
    const key = `${st.dev}:${st.ino}`;
    let n = this.foreignNodes.get(key);
    if (n === undefined) {
      n = FOREIGN_NODE_BASE + BigInt(this.foreignNodes.size);
      this.foreignNodes.set(key, n);
    }
    return n;
  }

  /**
   * Dir/node history for a FILES path: names the directories above it, each
   * once, and the path's own name, so the DMA can build the path (docs/protocol.md
   * §8.3 rule 5). Returns the node of the path's parent directory.
   */
  private async announceAncestors(r: ResolvedBelow): Promise<bigint> {
    const parts = r.rel === '.' ? [] : r.rel.split('/');
    let dirRel = '.';
    let dirNode = ROOT_NODE;
    let dirParent = ROOT_NODE;
    for (let i = 0; i < parts.length; i++) {
      const childRel = dirRel === '.' ? parts[i]! : `${dirRel}/${parts[i]!}`;
      // lstat'ed on the way down by resolveBelow, each from its directory's descriptor.
      const childSt = r.stats[i]!;
      const childNode = this.nodeOf(childSt);
      const fresh = !this.announced.has(dirRel);
      if (fresh || !this.announced.has(childRel)) {
        await this.hooks.directory!(dirNode, dirParent, [{ name: parts[i]!, node: childNode }], fresh);
      }
      if (fresh) {
        this.announced.add(dirRel);
        const dirSt = dirRel === '.' ? this.rootSt : null;
        if (dirSt)
          await this.positionless({ path: '.', type: 'dir', stat: dirSt, node: dirNode, headerOffset: null });
      }
      if (i < parts.length - 1 && !this.announced.has(childRel)) {
        await this.positionless({
          path: childRel,
          type: 'dir',
          stat: childSt,
          node: childNode,
          headerOffset: null,
        });
      }
      this.announced.add(childRel);
      dirParent = dirNode;
      dirNode = childNode;
      dirRel = childRel;
    }
    return dirParent;
  }

  /** History for an entry that is not in the stream (a directory above a FILES path). */
  private async positionless(e: BackedUpEntry): Promise<void> {
    if (!this.pipe) {
      this.hooks.entry?.(e);
      return;
    }
    // Through the reader, in order with everything else; its fh_info stays "none".
    const rec = this.hooks.record?.(e);
    if (rec) await this.pipe.history(rec);
  }

  private warn(text: string): void {
    this.warnings++;
    this.hooks.warn(text);
  }

  /**
   * One path and, for a directory, everything below it (depth first, names
   * sorted). A directory's children are lstat'ed as it is listed, once: the
   * listing gives dir/node history its names and nodes before anything below.
   * The entry is `name` in the directory `at` (name '': `at` itself, the root);
   * `st` its lstat.
   */
  private visit(
    rel: string,
    at: ConfinedDir,
    name: string,
    st: FileStat,
    parent: bigint,
    depth = 0,
    whole = false,
    xattrNames: XattrNames = null,
  ): Promise<void> | void {
    if (this.hooks.aborted()) throw new BackupAborted();
    const node = this.nodeOf(st);
    const start = this.offset;
    if (!st.isDirectory()) {
      // Synchronous when nothing waits (most files with a reader thread): an
      // async call and an await per file cost a small file's backup more than
      // its header (docs/design.md, "Small files").
      const emitted = this.emit(rel, at, name, st, node, xattrNames);
      return emitted;
    }
    return this.visitDirectory(rel, at, name, st, node, parent, depth, whole, xattrNames, start);
  }

  /**
   * A subdirectory to list, checked to be the one lstat'ed; null (a warning)
   * when it cannot be opened: it is backed up without its contents, as one
   * that cannot be listed.
   */
  private openDir(rel: string, at: ConfinedDir, name: string, st: FileStat): ConfinedDir | null {
    try {
      return at.openDir(name, st);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      const why =
        e instanceof ConfineError || code === 'ELOOP' || code === 'ENOTDIR'
          ? 'changed while being backed up (not the directory that was listed)'
          : describe(e);
      this.warn(`${escapeName(rel)}: cannot list the directory (${why}); its contents are not backed up`);
      return null;
    }
  }

  /** A directory: its entry, then everything below it; `start` is the stream offset before it. */
  private async visitDirectory(
    rel: string,
    at: ConfinedDir,
    name: string,
    st: FileStat,
    node: bigint,
    parent: bigint,
    depth: number,
    whole: boolean,
    xattrNames: XattrNames,
    start: bigint,
  ): Promise<void> {
    const dir = name === '' ? at : this.openDir(rel, at, name, st);
    try {
      const listing = dir ? this.list(rel, dir) : { children: [], others: [], listed: false };
      let children = listing.children;
      let dumpdir: DumpdirEntry[] | undefined;
      const inc = this.spec.incremental;
      if (inc) {
        if (listing.listed) this.dirs!.add(rel, st.dev, st.ino);
        // A new or renamed directory comes whole: its children may keep old times.
        whole = whole || inc.since === null || inc.isNewDirectory(rel, st.dev, st.ino);
        const picked = this.pick(listing, whole, inc.since ?? 0n, inc.dumpdirs && listing.listed);
        children = picked.children;
        if (picked.dumpdir) {
          if (dumpdirValueLength(picked.dumpdir) <= MAX_DUMPDIR_BYTES) dumpdir = picked.dumpdir;
          else
            this.warn(
              `${escapeName(rel)}: too many names for one directory listing; what was deleted in it since the base backup stays on restore`,
            );
        }
      }
      if (this.hooks.directory) {
        // The whole listing, in an incremental too: docs/protocol.md §8.3 rule 5 asks for
        // FH_ADD_DIR entries of a directory's whole content, and a DMA needs the names that
        // did not change (they get no FH_ADD_NODE) to tell them from deleted ones
        // (docs/dma.md, "Incremental chains: point-in-time").
        const told = this.hooks.directory(
          node,
          parent,
          listing.children.map((c) => ({ name: c.name, node: this.nodeOf(c.st) })),
          true,
        );
        if (told) await told;
      }
      await this.emit(rel, at, name, st, node, xattrNames, dumpdir);
      const frame = { depth, left: children.length, fileBytesLeft: 0, dirsLeft: 0 };
      for (const c of children) {
        if (c.st.isDirectory()) frame.dirsLeft++;
        else frame.fileBytesLeft += entryBytesEstimate(c.st);
      }
      this.walking.push(frame);
      for (const c of children) {
        frame.left--;
        if (c.st.isDirectory()) frame.dirsLeft--;
        else frame.fileBytesLeft -= entryBytesEstimate(c.st);
        const visited = this.visit(c.rel, dir!, c.name, c.st, node, depth + 1, whole, c.xattrNames);
        if (visited) await visited;
      }
      this.walking.pop();
    } finally {
      if (dir && dir !== at) dir.close();
    }
    this.done(depth, start);
  }

  private done(depth: number, start: bigint): void {
    const f = (this.finished[depth] ??= { bytes: 0, count: 0 });
    f.bytes += Number(this.offset - start);
    f.count++;
  }

  /**
   * Stream bytes still to come, estimated without a second walk: for every
   * directory being walked, the files among its children not yet started
   * (their sizes are known from the listing's lstat), plus its directories
   * not yet started times the average size of the finished directories at
   * their depth (or the nearest depth below that has one; none finished yet:
   * the average of all). Plus what the walk has planned (the stream offset
   * it reached) but the stream has not yet carried: with a reader thread the
   * walk runs ahead of the bytes, and may have ended while they still flow.
   * Null before the walk has started.
   */
  estimateRemaining(): bigint | null {
    if (this.offset === 0n && this.walking.length === 0) return null;
    const planned = this.offset - this.bytesProcessed;
    let all = { bytes: 0, count: 0 };
    for (const f of this.finished) if (f) all = { bytes: all.bytes + f.bytes, count: all.count + f.count };
    let est = 0;
    for (const w of this.walking) {
      est += w.fileBytesLeft;
      if (w.dirsLeft === 0) continue;
      let avg: number | null = null;
      for (let d = w.depth + 1; d < this.finished.length && avg === null; d++) {
        const f = this.finished[d];
        if (f && f.count > 0) avg = f.bytes / f.count;
      }
      avg ??= all.count > 0 ? all.bytes / all.count : 0;
      est += w.dirsLeft * avg;
    }
    return BigInt(Math.round(est)) + (planned > 0n ? planned : 0n);
  }

  /**
   * A directory's entries to back up, sorted, with their lstat; trouble is a
   * warning. `others`: names there that are not backed up (excluded, sockets,
   * not lstat-able but for having vanished), sorted; `listed`: false when the
   * directory could not be read.
   */
  private list(rel: string, dir: ConfinedDir): Listing {
    let listed: ListedEntry[];
    try {
      // One call: every name with its lstat and, when they are backed up, its xattr names (file-source.ts).
      listed = listDirectory(dir, this.wantXattrs || this.wantAcls);
    } catch (e) {
      this.warn(
        `${escapeName(rel)}: cannot list the directory (${describe(e)}); its contents are not backed up`,
      );
      return { children: [], others: [], listed: false };
    }
    listed.sort(byName);
    const out: Child[] = [];
    const others: string[] = [];
    for (const { name, stat, xattrNames } of listed) {
      const childRel = rel === '.' ? name : `${rel}/${name}`;
      if (!this.excludes.empty && this.excludes.excludes(childRel, name)) {
        others.push(name);
        continue;
      }
      if (stat instanceof Error) {
        this.warn(`${escapeName(childRel)}: ${describe(stat)}; skipped`);
        if (stat.code !== 'ENOENT') others.push(name);
        continue;
      }
      if (stat.isSocket()) {
        this.warn(`${escapeName(childRel)}: a socket; not backed up`);
        others.push(name);
        continue;
      }
      out.push({ name, rel: childRel, st: stat, xattrNames });
    }
    return { children: out, others, listed: true };
  }

  /**
   * Incremental backups: the children that go into the stream (directories,
   * and what changed since `since`, or everything when `whole`), and the
   * directory's GNU.dumpdir: every name, sorted, Y (in the stream), N (not:
   * unchanged, or not backed up at all: a restore leaves it alone) or D.
   */
  private pick(
    listing: Listing,
    whole: boolean,
    since: bigint,
    withDumpdir: boolean,
  ): { children: Child[]; dumpdir: DumpdirEntry[] | null } {
    const children: Child[] = [];
    const dumpdir: DumpdirEntry[] | null = withDumpdir ? [] : null;
    // Sorted, so a name twice (a file system handing one name twice) is adjacent: listed once.
    const list = (name: string, flag: DumpdirEntry['flag']): void => {
      if (dumpdir && dumpdir[dumpdir.length - 1]?.name !== name) dumpdir.push({ name, flag });
    };
    const others = listing.others;
    let o = 0;
    for (const c of listing.children) {
      while (o < others.length && others[o]! < c.name) list(others[o++]!, 'N');
      const dir = c.st.isDirectory();
      const changed = (c.st.mtimeNs > c.st.ctimeNs ? c.st.mtimeNs : c.st.ctimeNs) >= since;
      const keep = dir || whole || changed;
      if (keep) children.push(c);
      list(c.name, dir ? 'D' : keep ? 'Y' : 'N');
    }
    while (o < others.length) list(others[o++]!, 'N');
    return { children, dumpdir };
  }

  /**
   * One entry into the stream: its header, its data (or, with a reader thread,
   * the work item that has the reader read it) and its history. Returns a
   * promise only when something has to wait (the work ring or the sink full).
   */
  private emit(
    rel: string,
    at: ConfinedDir,
    name: string,
    st: FileStat,
    node: bigint,
    xattrNames: XattrNames,
    dumpdir?: DumpdirEntry[],
  ): Promise<void> | void {
    const entry = this.describeEntry(rel, st);
    if (dumpdir) entry.dumpdir = dumpdir;
    let fd = -1;
    if (entry.type === 'symlink') {
      try {
        entry.linkTarget = at.readlink(name);
      } catch (e) {
        this.warn(`${escapeName(rel)}: ${describe(e)}; skipped`);
        return;
      }
    } else if (entry.type === 'file') {
      // Hard links after the first are stored as links to it (tar's rule).
      let firstLink: string | null = null;
      if (st.nlink > 1n) {
        const key = `${st.dev}:${st.ino}`;
        const first = this.links.get(key);
        if (first !== undefined) {
          entry.type = 'hardlink';
          entry.size = 0n;
          entry.linkTarget = first;
        } else firstLink = key;
      }
      // With a reader thread, it opens the file (see pipe.ts); a sparse one we
      // open too, for its map, which is part of the header; and the first name
      // of a hard-linked file, so that its other names are links only to a
      // name that is in the stream (one that cannot be opened is left out, and
      // the next name takes its place). The reader opens it again, moments later.
      if (entry.type === 'file' && (!this.pipe || mayBeSparse(st) || firstLink !== null)) {
        try {
          fd = at.openFile(name, st);
        } catch (e) {
          this.warn(`${escapeName(rel)}: ${skipReason(e)}; skipped`);
          return;
        }
      }
      if (firstLink !== null) this.links.set(firstLink, rel);
    }
    // A hard link's attributes are its first name's, stored with that one.
    if (entry.type !== 'hardlink') this.captureAttributes(rel, at, name, entry, xattrNames);
    let regions: readonly DataRegion[] | null = null;
    try {
      if (fd >= 0 && mayBeSparse(st)) regions = this.sparseMap(rel, fd, entry);
      if (fd >= 0 && this.pipe) {
        fs.closeSync(fd);
        fd = -1;
      }
    } catch (e) {
      if (fd >= 0) fs.closeSync(fd);
      throw e;
    }
    // The header's exact size (a directory's listing, xattrs, a sparse map make it long); an
    // entry the format cannot hold is left out with a warning (docs/pax.md).
    let bound: number;
    try {
      bound = headerBytes(entry);
    } catch (e) {
      if (fd >= 0) fs.closeSync(fd);
      if (!(e instanceof PaxUnrepresentableError)) throw e;
      this.warn(`${escapeName(rel)}: ${e.reason}; skipped`);
      return;
    }
    if (this.pipe) return this.emitToPipe(this.pipe, entry, bound, rel, at, name, st, node, regions);
    return this.emitToStream(entry, bound, rel, fd, st, node, regions);
  }

  /**
   * With a reader thread: the header and a work item; the reader puts them
   * into the stream and completes the history record with the entry's
   * position, and we only estimate it.
   */
  private emitToPipe(
    pipe: FilePipe,
    entry: PaxEntry,
    bound: number,
    rel: string,
    at: ConfinedDir,
    name: string,
    st: FileStat,
    node: bigint,
    regions: readonly DataRegion[] | null,
  ): Promise<void> | void {
    const into = bound <= this.buf.length ? this.buf : Buffer.allocUnsafe(bound);
    const n = encodeHeaderInto(entry, into, 0);
    this.offset += BigInt(n);
    this.entries++;
    const header = into.subarray(0, n);
    const record =
      this.hooks.record?.({
        path: rel,
        type: entry.type,
        stat: st,
        node,
        headerOffset: null,
        ...(entry.type === 'hardlink' ? { linkTarget: entry.linkTarget! } : {}),
      }) ?? null;
    if (entry.type === 'file') {
      // What follows the header: a sparse file's regions only.
      const dataBytes = entry.sparse ? sparseDataBytes(entry.sparse) : entry.size;
      this.offset += dataBytes + BigInt(paddingAfter(dataBytes));
      const handed = pipe.file(header, entry.size, rel, at, name, st, record, regions);
      if (handed) return handed.then(() => this.maybeYield());
    } else if (header.length <= PIPE_PIECE) {
      const put = pipe.bytesOut(header, record);
      if (put) return put.then(() => this.maybeYield());
    } else {
      return this.pieces(pipe, header, record);
    }
    return this.maybeYield();
  }

  /** A header too long for one work item: in pieces, the history record with the first (its position is the header's start). */
  private async pieces(pipe: FilePipe, header: Uint8Array, record: Uint8Array | null): Promise<void> {
    for (let at = 0; at < header.length; at += PIPE_PIECE) {
      const put = pipe.bytesOut(header.subarray(at, at + PIPE_PIECE), at === 0 ? record : null);
      if (put) await put;
    }
    await this.maybeYield();
  }

  /** Without a reader thread: header and data into the stream here, then the entry's history. */
  private async emitToStream(
    entry: PaxEntry,
    bound: number,
    rel: string,
    fd: number,
    st: FileStat,
    node: bigint,
    regions: readonly DataRegion[] | null,
  ): Promise<void> {
    try {
      const headerOffset = this.offset;
      if (bound <= this.buf.length) {
        if (this.buf.length - this.fill < bound) await this.flush();
        const n = encodeHeaderInto(entry, this.buf, this.fill);
        this.fill += n;
        this.offset += BigInt(n);
      } else {
        const big = Buffer.allocUnsafe(bound);
        await this.putAll(big.subarray(0, encodeHeaderInto(entry, big, 0)));
      }
      this.entries++;
      // A dense file is one region: exactly its recorded size goes into the stream.
      if (fd >= 0)
        await this.copyRegions(rel, fd, regions ?? [{ offset: 0n, length: entry.size }], entry.size);
      this.hooks.entry?.({
        path: rel,
        type: entry.type,
        stat: st,
        node,
        headerOffset,
        ...(entry.type === 'hardlink' ? { linkTarget: entry.linkTarget! } : {}),
      });
    } finally {
      if (fd >= 0) fs.closeSync(fd);
    }
  }

  private describeEntry(rel: string, st: FileStat): PaxEntry {
    const { mode, uid, gid } = idsOf(st);
    const { mtime, atime } = timesOf(st);
    const entry: PaxEntry = {
      path: rel,
      type: typeOf(st),
      size: st.isFile() ? st.size : 0n,
      mode,
      uid,
      gid,
      uname: this.owners.user(uid),
      gname: this.owners.group(gid),
      mtime,
      atime,
    };
    if (st.isCharacterDevice() || st.isBlockDevice()) {
      const rdev = st.rdev;
      // Linux's dev_t split (glibc major()/minor()).
      entry.devMajor = Number(((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn));
      entry.devMinor = Number((rdev & 0xffn) | ((rdev >> 12n) & ~0xffn));
    }
    return entry;
  }

  /**
   * The entry's extended attributes and ACLs (SCHILY.xattr.*, SCHILY.acl.*),
   * as the backup asks for them. The names come with the directory's listing
   * (file-source.ts; listed here only for the root and FILES paths), the
   * values one lgetxattr each; none at all when both are off. An attribute
   * that vanishes or cannot be read is a warning naming the file, which is
   * backed up all the same. Other system.* attributes are the kernel's views
   * of something else (or of the ACLs) and are not stored.
   */
  private captureAttributes(
    rel: string,
    at: ConfinedDir,
    name: string,
    entry: PaxEntry,
    listed: XattrNames,
  ): void {
    if (!this.wantXattrs && !this.wantAcls) return;
    if (listed !== null && !(listed instanceof Error) && listed.length === 0) return;
    // The root is the directory `at` itself: its /proc/self/fd/N is a link to it, to follow.
    const path = at.at(name);
    const follow = name === '';
    let names: Buffer[];
    try {
      if (listed instanceof Error) throw listed;
      names = listed ?? llistxattr(path, { followSymlinks: follow });
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      // No xattrs on this file system; or the file is gone, which its data read reports.
      if (code === 'EOPNOTSUPP' || code === 'ENOTSUP' || code === 'ENOENT') return;
      this.warn(
        `${escapeName(rel)}: extended attributes not readable (${describe(e)}); backed up without them`,
      );
      return;
    }
    if (names.length === 0) return;
    const xattrs: PaxXattr[] = [];
    let bytes = 0;
    const trouble: string[] = [];
    for (const raw of names) {
      const xname = decodeName(raw);
      const isAccess = xname === ACL_ACCESS_XATTR;
      const isDefault = xname === ACL_DEFAULT_XATTR;
      if (isAccess || isDefault ? !this.wantAcls : xname.startsWith('system.') || !this.wantXattrs) continue;
      let value: Buffer;
      try {
        value = lgetxattr(path, raw, { followSymlinks: follow });
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        trouble.push(
          `${escapeName(xname)} ${code === 'ENODATA' ? 'vanished' : `not readable (${describe(e)})`}`,
        );
        continue;
      }
      if (isAccess || isDefault) {
        try {
          const text = aclToText(value, this.owners);
          if (isAccess) entry.aclAccess = text;
          else entry.aclDefault = text;
        } catch (e) {
          if (!(e instanceof AclFormatError)) throw e;
          trouble.push(`${xname} not stored (${e.message})`);
        }
        continue;
      }
      if (bytes + raw.length + value.length > MAX_XATTR_BYTES) {
        trouble.push(`${escapeName(xname)} not stored (more than ${MAX_XATTR_BYTES} bytes of attributes)`);
        continue;
      }
      bytes += raw.length + value.length;
      xattrs.push({ name: xname, value });
    }
    if (xattrs.length > 0) entry.xattrs = xattrs;
    if (trouble.length > 0)
      this.warn(
        `${escapeName(rel)}: extended attribute ${trouble.join(', ')}; the file is backed up without it`,
      );
  }

  /**
   * A file with fewer blocks than its size: its data regions (dataRegions),
   * set as the entry's GNU 1.0 sparse map when they leave holes out; null when
   * they do not (the file is stored as it is). Its size stays the real one.
   */
  private sparseMap(rel: string, fd: number, entry: PaxEntry): readonly DataRegion[] | null {
    let regions: DataRegion[];
    try {
      regions = dataRegions(fd, entry.size);
    } catch (e) {
      this.warn(`${escapeName(rel)}: holes not found (${describe(e)}); stored whole`);
      return null;
    }
    let data = 0n;
    for (const r of regions) data += r.length;
    if (data >= entry.size) return null;
    // Regions widened to 512-byte blocks where a file system's are not (GNU
    // tar reads each from a block boundary); ending in a hole, an empty
    // region at the real size says so, as GNU tar writes it.
    const sparse = alignSparseMap({ realSize: entry.size, map: regions });
    entry.sparse = sparse;
    return sparse.map.filter((r) => r.length > 0n);
  }

  /**
   * A file's data regions (a dense file's one) into the stream through the
   * one copy loop (file-source.ts FileCopier): exactly their lengths whatever
   * happens to the file meanwhile, then the padding.
   */
  private async copyRegions(
    rel: string,
    fd: number,
    regions: readonly DataRegion[],
    realSize: bigint,
  ): Promise<void> {
    const copier = new FileCopier(fd, regions, realSize);
    while (!copier.done) {
      if (this.fill === this.buf.length) await this.flush();
      const n = copier.step(this.buf, this.fill, this.buf.length - this.fill);
      this.fill += n;
      this.offset += BigInt(n);
    }
    const trouble = copier.finish(rel);
    if (trouble) this.warn(trouble);
    await this.put(ZERO_BLOCK.subarray(0, paddingAfter(copier.total)));
  }

  /** Appends a few bytes (padding, the end marker: at most a few blocks). */
  private async put(bytes: Uint8Array): Promise<void> {
    if (bytes.length === 0) return;
    if (this.buf.length - this.fill < bytes.length) await this.flush();
    this.buf.set(bytes, this.fill);
    this.fill += bytes.length;
    this.offset += BigInt(bytes.length);
  }

  /** Appends bytes of any length (a directory's long header). */
  private async putAll(bytes: Uint8Array): Promise<void> {
    for (let at = 0; at < bytes.length;) {
      if (this.fill === this.buf.length) await this.flush();
      const n = Math.min(bytes.length - at, this.buf.length - this.fill);
      this.buf.set(bytes.subarray(at, at + n), this.fill);
      this.fill += n;
      this.offset += BigInt(n);
      at += n;
    }
  }

  private async flush(): Promise<void> {
    if (this.fill === 0) return;
    if (this.hooks.aborted()) throw new BackupAborted();
    await this.sink.write(this.buf.subarray(0, this.fill));
    this.flushed += BigInt(this.fill);
    this.fill = 0;
    await this.maybeYield();
    if (this.hooks.aborted()) throw new BackupAborted();
  }

  /**
   * A sink with room never really waits, and then this thread's requests
   * (DATA_GET_STATE, DATA_ABORT) would wait for the end of the backup.
   */
  private maybeYield(): Promise<void> | void {
    const now = performance.now();
    if (now - this.lastYield >= YIELD_EVERY_MS) {
      this.lastYield = now;
      return new Promise((r) => setImmediate(r));
    }
  }
}

/** A name of a directory being walked, to back up. */
/**
 * What an entry that is not a directory will take in the stream, roughly: a
 * header block and a pax block, and its data padded to blocks (sparse
 * files and hard links take less; an estimate only).
 */
function entryBytesEstimate(st: FileStat): number {
  return 1024 + (st.isFile() ? Math.ceil(Number(st.size) / 512) * 512 : 0);
}

interface Child {
  readonly name: string;
  readonly rel: string;
  readonly st: FileStat;
  readonly xattrNames: XattrNames;
}

/** Extended attribute names as the listing found them; null: not listed (ask the file). */
type XattrNames = ListedEntry['xattrNames'];

/** Names in the order the walk takes them (code units of the lossless strings, as ever). */
function byName(a: ListedEntry, b: ListedEntry): number {
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

interface Listing {
  readonly children: Child[];
  readonly others: string[];
  readonly listed: boolean;
}

/** Fewer 512-byte blocks allocated than the size needs: holes, maybe (or compression, or inline data). */
function mayBeSparse(st: FileStat): boolean {
  return st.isFile() && st.size > 0n && st.blocks * 512n < st.size;
}

function typeOf(st: FileStat): PaxType {
  if (st.isDirectory()) return 'dir';
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isFIFO()) return 'fifo';
  if (st.isCharacterDevice()) return 'chardev';
  if (st.isBlockDevice()) return 'blockdev';
  return 'file';
}

export { timeOfNs };

/** A FILES entry as a clean relative path, or null if it would leave the root. */
export function normalizeRelative(p: string): string | null {
  const parts = pathComponents(p);
  if (parts === null) return null;
  return parts.length === 0 ? '.' : parts.join('/');
}
