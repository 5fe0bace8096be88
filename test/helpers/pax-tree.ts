// A file tree with every kind of entry the pax encoder must handle, and a tiny
// archiver that walks a tree with lstat/readFile and writes a pax stream with
// src/backup/pax-encoder.ts (as the backup will, minus the NDMP plumbing).

import { execFileSync } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  linkSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';

import type { PaxEntry, PaxTime, PaxType } from '../../src/backup/pax-layout.js';
import { encodeHeader } from '../../src/backup/pax-encoder.js';
import { END_OF_ARCHIVE, paddingAfter } from '../../src/backup/pax-layout.js';

/** Deterministic, distinct content: `n` bytes from seed `seed`. */
export function content(n: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  let x = seed * 2654435761 + 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x & 0xff;
  }
  return b;
}

export const FILE_SIZES = [0, 1, 511, 512, 513, 100000];
/** A single 200-byte component: fits no ustar split, so the path goes to the x header. */
export const LONG_COMPONENT = 'c'.repeat(200);
/** About 3000 bytes of nested directories (each component < 255 bytes). */
export const DEEP_DIR = Array.from(
  { length: 15 },
  (_, i) => `${String(i).padStart(2, '0')}${'d'.repeat(198)}`,
).join('/');
export const HIGH_UID = 3_000_000;

function touch(path: string, spec: string, flags: string[] = []): void {
  execFileSync('touch', [...flags, '-h', '-d', spec, path]);
}

/**
 * Builds the test tree under `root` (which must exist and be empty). Returns
 * whether files could be given a uid above the ustar limit (needs root).
 */
export function buildTree(root: string): { highUid: boolean } {
  FILE_SIZES.forEach((n, i) => writeFileSync(join(root, `f${n}`), content(n, i + 1)));
  mkdirSync(join(root, 'sub', 'deeper'), { recursive: true });
  mkdirSync(join(root, 'dir ü'));
  writeFileSync(join(root, 'dir ü', 'ファイル name.txt'), 'unicode\n');
  writeFileSync(join(root, 'sub', 'deeper', 'x y.txt'), content(2000, 99));
  writeFileSync(join(root, LONG_COMPONENT), 'long name\n');
  mkdirSync(join(root, DEEP_DIR), { recursive: true });
  writeFileSync(join(root, DEEP_DIR, 'leaf.txt'), 'deep\n');
  // Hard link pair, symlinks (one with a target over 100 bytes), a fifo.
  writeFileSync(join(root, 'hard1'), content(700, 7));
  linkSync(join(root, 'hard1'), join(root, 'sub', 'hard2'));
  symlinkSync('f513', join(root, 'link'));
  symlinkSync(`${'t'.repeat(150)}/${'u'.repeat(150)}`, join(root, 'longlink'));
  execFileSync('mkfifo', [join(root, 'pipe')]);
  // Special modes.
  writeFileSync(join(root, 'setuid'), '#!/bin/sh\n');
  chmodSync(join(root, 'setuid'), 0o4755);
  writeFileSync(join(root, 'setgid'), '#!/bin/sh\n');
  chmodSync(join(root, 'setgid'), 0o2755);
  mkdirSync(join(root, 'sticky'));
  chmodSync(join(root, 'sticky'), 0o1777);
  writeFileSync(join(root, 'private'), 'secret\n');
  chmodSync(join(root, 'private'), 0o600);
  // Times: nanoseconds, the epoch, before the epoch.
  touch(join(root, 'f1'), '@1700000000.123456789');
  touch(join(root, 'f0'), '@0');
  touch(join(root, 'f511'), '@-1.5');
  touch(join(root, 'link'), '@1500000000.000000001');
  let highUid = false;
  writeFileSync(join(root, 'owned'), 'high uid\n');
  try {
    chownSync(join(root, 'owned'), HIGH_UID, HIGH_UID + 1);
    highUid = true;
  } catch {
    // not root: the file keeps our uid
  }
  // Directory times last: creating entries above changed them.
  touch(join(root, 'sub'), '@1600000000.5');
  touch(join(root, 'sticky'), '@1600000001');
  return { highUid };
}

function idNames(file: string): Map<number, string> {
  const m = new Map<number, string>();
  try {
    for (const line of readFileSync(file, 'utf8').split('\n')) {
      const f = line.split(':');
      if (f.length >= 3 && !m.has(Number(f[2]))) m.set(Number(f[2]), f[0]!);
    }
  } catch {
    // no such file: numeric ids only
  }
  return m;
}

const toTime = (ns: bigint): PaxTime => {
  const sec = ns >= 0n ? ns / 1_000_000_000n : -((-ns + 999_999_999n) / 1_000_000_000n);
  return { sec, nsec: Number(ns - sec * 1_000_000_000n) };
};

export interface WalkedEntry {
  entry: PaxEntry;
  abs: string;
}

/** Entries of the tree under `root`, depth first, names sorted by bytes, hard links after their first path. */
export function walkTree(root: string): WalkedEntry[] {
  const users = idNames('/etc/passwd');
  const groups = idNames('/etc/group');
  const seen = new Map<string, string>(); // dev:ino -> first path
  const out: WalkedEntry[] = [];
  const visit = (rel: string): void => {
    const abs = join(root, rel);
    const st = lstatSync(abs, { bigint: true });
    let type: PaxType;
    if (st.isDirectory()) type = 'dir';
    else if (st.isSymbolicLink()) type = 'symlink';
    else if (st.isFIFO()) type = 'fifo';
    else if (st.isCharacterDevice()) type = 'chardev';
    else if (st.isBlockDevice()) type = 'blockdev';
    else type = 'file';
    const entry: PaxEntry = {
      path: rel,
      type,
      size: type === 'file' ? st.size : 0n,
      mode: Number(st.mode & 0o7777n),
      uid: Number(st.uid),
      gid: Number(st.gid),
      uname: users.get(Number(st.uid)) ?? '',
      gname: groups.get(Number(st.gid)) ?? '',
      mtime: toTime(st.mtimeNs),
    };
    if (type === 'symlink') entry.linkTarget = readlinkSync(abs);
    if (type === 'file' && st.nlink > 1n) {
      const key = `${st.dev}:${st.ino}`;
      const first = seen.get(key);
      if (first !== undefined) {
        entry.type = 'hardlink';
        entry.size = 0n;
        entry.linkTarget = first;
      } else seen.set(key, rel);
    }
    out.push({ entry, abs });
    if (type === 'dir') {
      const names = readdirSync(abs).sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
      for (const n of names) visit(`${rel}/${n}`);
    }
  };
  const top = readdirSync(root).sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
  for (const n of top) visit(n);
  return out;
}

/** A pax archive of the walked entries: headers, data, padding, END_OF_ARCHIVE. */
export function archive(walked: readonly WalkedEntry[]): Buffer {
  const parts: Buffer[] = [];
  for (const { entry, abs } of walked) {
    parts.push(encodeHeader(entry));
    if (entry.type === 'file' && entry.size > 0n) {
      parts.push(readFileSync(abs));
      parts.push(Buffer.alloc(paddingAfter(entry.size)));
    }
  }
  parts.push(END_OF_ARCHIVE);
  return Buffer.concat(parts);
}
