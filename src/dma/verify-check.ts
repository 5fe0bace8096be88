// What `ndmp verify` checks of a backup stream as it arrives (docs/dma.md,
// "Verifying a backup"): the pax structure (header checksums, sizes, padding,
// the end-of-archive marker: src/backup/pax-parser.ts does those), and every
// entry against the catalog's row for it: name (the catalog's printed form,
// docs/names.md), type, size, mode, mtime, and the row's fh_info (the stream
// offset DAR seeks to) pointing at the entry's first header block. At the end,
// every catalog row must have been met in the stream. Pure: bytes in,
// problems out; verify-job.ts feeds it from the tape.

import { PaxParser } from '../backup/pax-parser.js';
import { PaxFormatError, paddingAfter } from '../backup/pax-layout.js';
import type { PaxType } from '../backup/pax-layout.js';
import type { ParsedEntry } from '../backup/pax-parser.js';
import type { FileRow, FileType } from '../catalog/types.js';
import { catalogPath } from './history-ingest.js';

/** One thing found wrong (or, for a warning, odd) in the stream or the catalog. */
export interface VerifyProblem {
  /** Stable: PAX_FORMAT, TYPE, SIZE, MODE, MTIME, FH_INFO, NOT_IN_STREAM, NOT_IN_CATALOG, DUPLICATE, TRAILING_DATA, UNREAD, TAPE_READ. */
  code: string;
  /** The entry concerned, printed (docs/names.md), or null when none can be named. */
  path: string | null;
  /** Stream offset where it was found (an entry's first header block, or the bad bytes). */
  offset: number | null;
  message: string;
}

/** A catalog row's type for a pax entry's: a hard link is a file's other name. */
const CATALOG_TYPE: Record<PaxType, FileType> = {
  file: 'file',
  hardlink: 'file',
  dir: 'dir',
  symlink: 'symlink',
  fifo: 'fifo',
  chardev: 'chr',
  blockdev: 'blk',
};

/** Names listed when many rows share a problem; the count says the rest. */
const LIST_AT_MOST = 20;

export class StreamCheck {
  readonly problems: VerifyProblem[] = [];
  readonly warnings: VerifyProblem[] = [];
  /** Entries met in the stream. */
  entries = 0;
  /** Stream bytes pushed so far. */
  bytes = 0;

  private readonly rows = new Map<string, FileRow>();
  /** Rows with an fh_info, in stream order: which entry a stream offset lies in, and where to resume. */
  private readonly byOffset: FileRow[];
  private readonly seen = new Set<string>();
  /** Rows whose trouble was reported already (a header that did not parse): not "missing" as well. */
  private readonly reported = new Set<string>();
  private parser: PaxParser;
  /** Bytes to drop before the parser resumes after a format error (the next row's header); null: none. */
  private resumeAt: number | null = null;
  /** Parsing gave up: nothing after `stoppedAt` was checked. */
  private stoppedAt: number | null = null;
  /** The entry being read and where its bytes (padding included) end. */
  private current: { path: string; start: number; end: number } | null = null;
  private ended = false;
  private trailing = false;

  /**
   * `rows` with the paths the user sees (the server's, docs/dma.md "Paths"),
   * `shown` turning a catalog path (the stream's name, printed) into the same.
   */
  constructor(
    rows: readonly FileRow[],
    private readonly shown: (catalogPath: string) => string = (p) => p,
  ) {
    for (const r of rows) this.rows.set(r.path, r);
    this.byOffset = rows.filter((r) => r.fhInfo !== null).sort((a, b) => a.fhInfo! - b.fhInfo!);
    this.parser = new PaxParser();
  }

  private problem(code: string, path: string | null, offset: number | null, message: string): void {
    this.problems.push({ code, path, offset, message });
  }

  /** The catalog row whose entry starts at or before `offset` (the one it lies in, if the catalog is right). */
  rowAt(offset: number): FileRow | null {
    let lo = 0;
    let hi = this.byOffset.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.byOffset[mid]!.fhInfo! <= offset) lo = mid + 1;
      else hi = mid;
    }
    return lo > 0 ? this.byOffset[lo - 1]! : null;
  }

  /** The first row whose entry starts after `offset`. */
  private rowAfter(offset: number): FileRow | null {
    const r = this.rowAt(offset);
    const i = r === null ? 0 : this.byOffset.indexOf(r) + 1;
    return this.byOffset[i] ?? null;
  }

  /**
   * The entries that stream bytes [from, to) belong to, printed: the one being
   * read at `from` (from the stream itself when it got that far, else the
   * catalog's) and any that start inside the range.
   */
  entriesIn(from: number, to: number): string[] {
    const out: string[] = [];
    const cur = this.current;
    if (cur && from >= cur.start && from < cur.end) out.push(cur.path);
    else {
      const r = this.rowAt(from);
      if (r) out.push(r.path);
    }
    for (const r of this.byOffset) {
      if (r.fhInfo! > from && r.fhInfo! < to && !out.includes(r.path)) out.push(r.path);
      if (r.fhInfo! >= to) break;
    }
    return out;
  }

  /** Stream bytes, in order, from stream offset `this.bytes`. */
  push(chunk: Uint8Array): void {
    let at = 0;
    while (at < chunk.length && this.stoppedAt === null) {
      const here = this.bytes + at;
      if (this.ended) {
        // After the end-of-archive marker only zeros belong (the last record's padding).
        if (!this.trailing && chunk.subarray(at).some((b) => b !== 0)) {
          this.trailing = true;
          this.problem(
            'TRAILING_DATA',
            null,
            here,
            `bytes other than zeros after the end-of-archive marker (from stream byte ${here} on)`,
          );
        }
        break;
      }
      if (this.resumeAt !== null) {
        if (here + (chunk.length - at) <= this.resumeAt) break;
        at += this.resumeAt - here;
        this.parser = new PaxParser({ startOffset: BigInt(this.resumeAt) });
        this.resumeAt = null;
        continue;
      }
      const before = Number(this.parser.offset);
      try {
        this.parser.push(chunk.subarray(at), {
          onEntry: (e) => this.onEntry(e),
          onData: () => undefined,
          onEnd: () => {
            this.ended = true;
          },
        });
        // The parser stops consuming at the end of the marker: the rest is checked above.
        at += Number(this.parser.offset) - before;
        if (!this.ended) break;
      } catch (e) {
        if (!(e instanceof PaxFormatError)) throw e;
        this.formatError(e);
      }
    }
    this.bytes += chunk.length;
  }

  /** The stream is structurally broken at e.offset: name the entry, and resume at the next one the catalog knows. */
  private formatError(e: PaxFormatError): void {
    const offset = Number(e.offset);
    const row = this.rowAt(offset);
    const path = row?.path ?? this.current?.path ?? null;
    if (path) this.reported.add(path);
    this.problem(
      'PAX_FORMAT',
      path,
      offset,
      `${e.message}${path ? `, in ${path}` : ''}: the bytes on tape are not what was written`,
    );
    const next = this.rowAfter(offset);
    this.current = null;
    if (next) this.resumeAt = next.fhInfo!;
    else this.stoppedAt = offset;
  }

  private onEntry(e: ParsedEntry): void {
    this.entries++;
    const path = this.shown(catalogPath(e.path));
    const start = Number(e.headerOffset);
    const archived = e.archivedSize;
    this.current = { path, start, end: Number(e.dataOffset + archived) + paddingAfter(archived) };
    if (this.seen.has(path)) {
      this.warnings.push({
        code: 'DUPLICATE',
        path,
        offset: start,
        message: `${path} is in the stream twice (again at stream byte ${start})`,
      });
      return;
    }
    this.seen.add(path);
    const row = this.rows.get(path);
    if (!row) {
      this.warnings.push({
        code: 'NOT_IN_CATALOG',
        path,
        offset: start,
        message: `${path} (stream byte ${start}) is in the stream but not in the catalog`,
      });
      return;
    }
    const type = CATALOG_TYPE[e.type];
    if (row.type !== type) {
      this.problem('TYPE', path, start, `${path}: the stream holds a ${e.type}, the catalog a ${row.type}`);
    }
    // A row without its stats (type 'other': the history gave none) has nothing more to compare.
    if (row.type !== 'other') {
      if (e.type === 'file' && row.type === 'file' && BigInt(row.size) !== e.size) {
        this.problem(
          'SIZE',
          path,
          start,
          `${path}: ${e.size} bytes in the stream, ${row.size} in the catalog`,
        );
      }
      if ((e.mode & 0o7777) !== row.mode) {
        this.problem(
          'MODE',
          path,
          start,
          `${path}: mode ${octal(e.mode & 0o7777)} in the stream, ${octal(row.mode)} in the catalog`,
        );
      }
      if (Number(e.mtime.sec) !== row.mtime) {
        this.problem(
          'MTIME',
          path,
          start,
          `${path}: mtime ${e.mtime.sec} in the stream, ${row.mtime} in the catalog`,
        );
      }
    }
    if (row.fhInfo !== null && row.fhInfo !== start) {
      this.problem(
        'FH_INFO',
        path,
        start,
        `${path}: the catalog's fh_info ${row.fhInfo} does not point at the entry (its header is at ` +
          `stream byte ${start}): a restore by DAR would read the wrong bytes`,
      );
    }
  }

  /**
   * The stream is over: `complete` when all of it was read (else it stopped at
   * `this.bytes`, for the reason the job reports). Checks the end of the
   * archive and that every catalog row was met.
   */
  finish(complete: boolean): void {
    if (complete && this.stoppedAt === null && !this.ended) {
      if (this.resumeAt !== null) {
        this.problem('PAX_FORMAT', null, this.bytes, 'the stream ends before the entry parsing resumed at');
      } else {
        try {
          this.parser.end();
        } catch (e) {
          if (!(e instanceof PaxFormatError)) throw e;
          const path = this.current?.path ?? null;
          this.problem('PAX_FORMAT', path, Number(e.offset), `${e.message}: the stream is cut short`);
        }
      }
    }
    const stopped = complete ? this.stoppedAt : (this.stoppedAt ?? this.bytes);
    // Directories the history named without an entry in the stream (a FILES path's
    // ancestors, no fh_info): the stream needs them only above what it holds.
    const ancestors = new Set<string>();
    for (const p of this.seen) {
      for (let i = p.lastIndexOf('/'); i > 0; i = p.lastIndexOf('/', i - 1)) ancestors.add(p.slice(0, i));
      ancestors.add('/');
    }
    const unread: FileRow[] = [];
    for (const row of this.rows.values()) {
      if (this.seen.has(row.path) || this.reported.has(row.path)) continue;
      if (row.fhInfo === null && row.type === 'dir' && ancestors.has(row.path)) continue;
      if (stopped !== null && (row.fhInfo === null || row.fhInfo >= stopped)) {
        unread.push(row);
        continue;
      }
      this.problem(
        'NOT_IN_STREAM',
        row.path,
        row.fhInfo,
        `${row.path}: in the catalog${row.fhInfo === null ? '' : ` (fh_info ${row.fhInfo})`} but not in the stream`,
      );
    }
    if (unread.length > 0) {
      const names = unread.slice(0, LIST_AT_MOST).map((r) => r.path);
      const more = unread.length > LIST_AT_MOST ? ` and ${unread.length - LIST_AT_MOST} more` : '';
      this.problem(
        'UNREAD',
        null,
        stopped,
        `${unread.length} catalog rows lie past stream byte ${stopped}, where the check stopped, ` +
          `and were not checked: ${names.join(', ')}${more}`,
      );
    }
  }
}

function octal(n: number): string {
  return `0${n.toString(8)}`;
}
