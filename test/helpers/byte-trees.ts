// A tree whose names are not all UTF-8 (docs/names.md), and a comparison of two
// trees done entirely in bytes: readdir and readlink as Buffers, every path
// handed to fs as a Buffer, so a byte turned into U+FFFD anywhere shows.

import assert from 'node:assert/strict';
import fs from 'node:fs';

import { decodeName, escapeName } from '../../src/util/byte-name.js';

/** The names, as Latin-1 text: each character is one byte of the name. */
export const L = {
  /** Latin-1 "café": 0xe9 alone is not UTF-8. */
  dir: 'caf\xe9',
  /** Latin-1 "naïve.txt". */
  file: 'na\xefve.txt',
  /** A newline in a name, and a Latin-1 byte after it. */
  newline: 'line\nbreak \xe9',
  /** A symbolic link whose target is not UTF-8. */
  link: 'l\xefnk',
  /** A hard link beside it, to the Latin-1 file. */
  hard: 'h\xe4rd',
  /** Valid UTF-8 ("grüße"), to sit beside the others. */
  utf8: 'gr\xc3\xbc\xc3\x9fe',
  /** Bytes that are never UTF-8. */
  never: '\xff\xfe',
  /** The file at the bottom of the long path, and a hard link to the Latin-1 file beside it. */
  deepFile: 'f\xfcnf',
  deepHard: 'h\xe4rd-deep',
} as const;

/** Directories of the long path: 14 names of 209 bytes, about 3 KB below the root. */
export const DEEP_LEVELS = 14;
const deepName = (i: number): string => `d\xe9ep-${String(i).padStart(2, '0')}-${'x'.repeat(200)}`;

/** The deep directory's path below the root, as Latin-1 text. */
export function deepPath(): string {
  return Array.from({ length: DEEP_LEVELS }, (_, i) => deepName(i)).join('/');
}

const b = (latin1: string): Buffer => Buffer.from(latin1, 'latin1');
/** `root` (a plain string path) joined with a Latin-1 relative path, as bytes. */
export const at = (root: string, rel: string): Buffer =>
  Buffer.concat([Buffer.from(root), b(rel === '' ? '' : `/${rel}`)]);

/** Makes the tree in `root` (an existing empty directory). */
export function byteTree(root: string): void {
  fs.mkdirSync(at(root, L.dir));
  fs.writeFileSync(at(root, `${L.dir}/${L.file}`), 'na\xefve content\n');
  fs.writeFileSync(at(root, `${L.dir}/ok.txt`), 'ok\n');
  fs.writeFileSync(at(root, L.newline), 'a newline in my name\n');
  fs.symlinkSync(b(`${L.dir}/${L.file}`), at(root, L.link));
  fs.linkSync(at(root, `${L.dir}/${L.file}`), at(root, L.hard));
  fs.mkdirSync(at(root, L.utf8));
  fs.writeFileSync(at(root, `${L.utf8}/${L.never}`), Buffer.from([0, 1, 2, 0xff]));
  fs.mkdirSync(at(root, deepPath()), { recursive: true });
  fs.writeFileSync(at(root, `${deepPath()}/${L.deepFile}`), 'deep\n');
  fs.linkSync(at(root, `${L.dir}/${L.file}`), at(root, `${deepPath()}/${L.deepHard}`));
  fs.chmodSync(at(root, L.newline), 0o640);
  // Times with nanoseconds, set last (making entries in a directory changes its mtime).
  fs.utimesSync(at(root, L.newline), new Date(1_600_000_000_123), new Date(1_600_000_000_456));
}

export interface SeenBytes {
  type: 'dir' | 'file' | 'symlink' | 'other';
  mode: number;
  mtimeNs: bigint;
  nlink: bigint;
  ino: bigint;
  /** File content, hex. */
  content?: string;
  /** Symlink target bytes, hex. */
  target?: string;
}

/** Every entry below `root`, keyed by its path's lossless string ('' = the root itself). */
export function scanBytes(root: string): Map<string, SeenBytes> {
  const out = new Map<string, SeenBytes>();
  const walk = (abs: Buffer, rel: Buffer | null): void => {
    const st = fs.lstatSync(abs, { bigint: true });
    const type = st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : st.isFile() ? 'file' : 'other';
    const seen: SeenBytes = {
      type,
      mode: Number(st.mode & 0o7777n),
      mtimeNs: st.mtimeNs,
      nlink: st.nlink,
      ino: st.ino,
    };
    if (type === 'file') seen.content = fs.readFileSync(abs).toString('hex');
    if (type === 'symlink') seen.target = fs.readlinkSync(abs, { encoding: 'buffer' }).toString('hex');
    out.set(rel === null ? '' : decodeName(rel), seen);
    if (type !== 'dir') return;
    const names = fs.readdirSync(abs, { encoding: 'buffer' }).sort(Buffer.compare);
    for (const n of names) {
      const childRel = rel === null ? n : Buffer.concat([rel, Buffer.from('/'), n]);
      walk(Buffer.concat([abs, Buffer.from('/'), n]), childRel);
    }
  };
  walk(Buffer.from(root), null);
  return out;
}

/**
 * Asserts `restored` holds what `source` does, byte for byte: the same names,
 * types, contents, symlink targets, modes, link counts, mtimes (but the
 * root's and symlinks', which a restore does not own), and paths sharing an
 * inode in the source share one in the restore.
 */
export function sameBytesTree(source: string, restored: string): void {
  const a = scanBytes(source);
  const r = scanBytes(restored);
  assert.deepEqual(
    [...r.keys()].map(escapeName),
    [...a.keys()].map(escapeName),
    'the same names, byte for byte',
  );
  for (const [path, s] of a) {
    const got = r.get(path)!;
    const what = escapeName(path);
    assert.equal(got.type, s.type, what);
    assert.equal(got.content, s.content, `${what} content`);
    assert.equal(got.target, s.target, `${what} symlink target`);
    assert.equal(got.nlink, s.nlink, `${what} link count`);
    if (s.type !== 'symlink') assert.equal(got.mode.toString(8), s.mode.toString(8), `${what} mode`);
    if (path !== '' && s.type !== 'symlink') assert.equal(got.mtimeNs, s.mtimeNs, `${what} mtime`);
  }
  const groups = (m: Map<string, SeenBytes>): string[] => {
    const byIno = new Map<bigint, string[]>();
    for (const [p, s] of m) if (s.type === 'file') byIno.set(s.ino, [...(byIno.get(s.ino) ?? []), p]);
    return [...byIno.values()].map((g) => JSON.stringify(g.sort())).sort();
  };
  assert.deepEqual(groups(r), groups(a), 'hard links group the same paths');
}
