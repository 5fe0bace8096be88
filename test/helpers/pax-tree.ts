// A file tree with every kind of entry the pax encoder must handle, and a tiny
// archiver that walks a tree with lstat/readFile and writes a pax stream with
// src/backup/pax-encoder.ts (as the backup will, minus the NDMP plumbing).

import { execFileSync } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  closeSync,
  ftruncateSync,
  linkSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  symlinkSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';

import type { PaxEntry, PaxTime, PaxType } from '../../src/backup/pax-layout.js';
import { encodeHeader } from '../../src/backup/pax-encoder.js';
import { END_OF_ARCHIVE, paddingAfter } from '../../src/backup/pax-layout.js';
import { decodeName, encodeName } from '../../src/util/byte-name.js';

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

// ---------------------------------------------------------------------------
// Issue 13's tree (docs/pax.md): everything Linux holds that a pax entry must
// carry, as entries with their data, an archive of them by our encoder, and
// the same tree made on disk (as root, on a file system with 64-bit times).

/** An entry and its data: a file's content, or a sparse file's regions back to back. */
export interface SpecItem {
  entry: PaxEntry;
  data?: Buffer;
}

const GIB = 1n << 30n;
const at = (sec: bigint, nsec: number): PaxTime => ({ sec, nsec });
export const T1901 = at(-2_177_452_800n, 123_456_789); // 1901-01-01T00:00:00.123456789Z
export const T1969_5 = at(-15_778_800n, 500_000_000); // mid-1969
export const T2038 = at(2_147_483_648n, 999_999_999); // a second past the 32-bit end
export const T2200 = at(7_258_118_400n, 1); // 2200-01-01
export const ACL_ACCESS = 'user::rw-\nuser:nobody:rw-\ngroup::r--\nmask::rw-\nother::r--\n';
export const ACL_DEFAULT = 'user::rwx\nuser:nobody:r-x\ngroup::r-x\nmask::r-x\nother::r-x\n';
export const XATTR_BINARY = Buffer.from([0, 1, 0x0a, 0x3d, 0x0a, 0xff, 0, 0x25]);
/** A Latin-1 name: "café" whose é is the one byte 0xe9. */
export const LATIN1 = 'caf\udce9';

/** The tree, parents before children, hard links after their first path. */
export function issue13Spec(): SpecItem[] {
  const base = { uid: 0, gid: 0, uname: 'root', gname: 'root', size: 0n };
  const dir = (path: string, extra: Partial<PaxEntry> = {}): SpecItem => ({
    entry: { ...base, path, type: 'dir', mode: 0o755, mtime: T2200, ...extra },
  });
  const file = (path: string, data: Buffer, extra: Partial<PaxEntry> = {}): SpecItem => ({
    entry: { ...base, path, type: 'file', mode: 0o644, size: BigInt(data.length), mtime: T2038, ...extra },
    data,
  });
  const sparse = (path: string, map: { offset: bigint; length: bigint }[]): SpecItem => {
    const n = map.reduce((a, r) => a + r.length, 0n);
    const data = content(Number(n), 13);
    for (let i = 0; i < data.length; i++) if (data[i] === 0) data[i] = 1; // every data page holds data
    return {
      entry: {
        ...base,
        path,
        type: 'file',
        mode: 0o600,
        size: GIB,
        sparse: { realSize: GIB, map },
        mtime: T1969_5,
      },
      data,
    };
  };
  // About 3 KB of path: 12 components of 250 bytes under t13/long.
  const longDirs = Array.from({ length: 12 }, (_, i) => `${String(i).padStart(2, '0')}${'l'.repeat(248)}`);
  const items: SpecItem[] = [dir('t13')];
  // A default ACL on a directory without children (what is made in it would inherit it).
  items.push(dir('t13/acl-dir', { aclDefault: ACL_DEFAULT, mtime: T1969_5 }));
  items.push(dir('t13/long'));
  let p = 't13/long';
  for (const c of longDirs) {
    p = `${p}/${c}`;
    items.push(dir(p, { mtime: T1901 }));
  }
  items.push(
    file(`${p}/leaf`, Buffer.from('at the end of ~3 KB\n')),
    file(`t13/${LATIN1}`, Buffer.from('a Latin-1 name\n'), { mtime: T1901 }),
    file('t13/new\nline', Buffer.from('a newline in the name\n'), { mtime: T1969_5 }),
    {
      entry: {
        ...base,
        path: 't13/link',
        type: 'symlink',
        mode: 0o777,
        mtime: T2038,
        linkTarget: `\udcff\udcfe/${LATIN1}`,
      },
    },
    file('t13/xattrs', Buffer.from('xattrs and an ACL\n'), {
      mode: 0o664, // group bits = the ACL's mask
      xattrs: [
        { name: 'user.binary', value: XATTR_BINARY },
        { name: 'user.a=b%c', value: Buffer.from('name with = and %') },
        { name: 'user.empty', value: Buffer.alloc(0) },
      ],
      aclAccess: ACL_ACCESS,
      mtime: T2200,
    }),
    // 1 GiB, three data regions, the last up to the end.
    sparse('t13/sparse', [
      { offset: 0n, length: 4096n },
      { offset: GIB / 2n, length: 8192n },
      { offset: GIB - 4096n, length: 4096n },
    ]),
    // 1 GiB ending in a hole.
    sparse('t13/sparse-hole', [
      { offset: 4096n, length: 4096n },
      { offset: 1n << 20n, length: 4096n },
      { offset: GIB, length: 0n },
    ]),
    // Linux's largest device numbers (12-bit major, 20-bit minor).
    {
      entry: {
        ...base,
        path: 't13/dev',
        type: 'blockdev',
        mode: 0o600,
        mtime: T1901,
        devMajor: 4095,
        devMinor: 2 ** 20 - 1,
      },
    },
    {
      entry: {
        ...base,
        path: `t13/hard-${LATIN1}\udcff`,
        type: 'hardlink',
        mode: 0o644,
        mtime: T1901,
        linkTarget: `t13/${LATIN1}`,
      },
    },
  );
  return items;
}

/** A time as touch -d @... takes it: the real number of seconds (sec −2 nsec 5e8 is "-1.5"). */
function realSeconds(t: PaxTime): string {
  const total = t.sec * 1_000_000_000n + BigInt(t.nsec);
  const neg = total < 0n;
  const a = neg ? -total : total;
  return `${neg ? '-' : ''}${a / 1_000_000_000n}.${String(a % 1_000_000_000n).padStart(9, '0')}`;
}

/** Our encoder's archive of `items`. */
export function specArchive(items: readonly SpecItem[]): Buffer {
  const parts: Buffer[] = [];
  for (const { entry, data } of items) {
    parts.push(encodeHeader(entry));
    if (data && data.length > 0) parts.push(data, Buffer.alloc(paddingAfter(BigInt(data.length))));
  }
  parts.push(END_OF_ARCHIVE);
  return Buffer.concat(parts);
}

const ASCII = /^[\x20-\x7e\n]*$/; // a name that can go through a command's argv as is

/**
 * Makes `items` under `root` (as root: mknod, ACLs). Times are set where the
 * path can be passed to touch (every name but the non-UTF-8 ones).
 */
export function makeSpecTree(root: string, items: readonly SpecItem[]): void {
  const abs = (p: string): Buffer => encodeName(`${root}/${p}`);
  for (const { entry: e, data } of items) {
    const a = abs(e.path);
    if (e.type === 'dir') mkdirSync(a);
    else if (e.type === 'symlink') symlinkSync(encodeName(e.linkTarget!), a);
    else if (e.type === 'hardlink') linkSync(abs(e.linkTarget!), a);
    else if (e.type === 'blockdev')
      execFileSync('mknod', [`${root}/${e.path}`, 'b', String(e.devMajor), String(e.devMinor)]);
    else if (e.sparse) {
      const fd = openSync(a, 'w');
      ftruncateSync(fd, Number(e.sparse.realSize));
      let off = 0;
      for (const r of e.sparse.map) {
        writeSync(fd, data!, off, Number(r.length), Number(r.offset));
        off += Number(r.length);
      }
      closeSync(fd);
    } else writeFileSync(a, data ?? Buffer.alloc(0));
    if (e.type !== 'symlink' && e.type !== 'hardlink') chmodSync(a, e.mode);
    const path = `${root}/${e.path}`;
    for (const x of e.xattrs ?? [])
      execFileSync('setfattr', ['-n', x.name, '-v', `0x${x.value.toString('hex')}`, path]);
    if (e.aclAccess) execFileSync('setfacl', ['-M', '-', path], { input: e.aclAccess });
    if (e.aclDefault) execFileSync('setfacl', ['-d', '-M', '-', path], { input: e.aclDefault });
  }
  // Times last, children before their directories.
  for (const { entry: e } of [...items].reverse()) {
    if (e.type === 'hardlink' || !ASCII.test(e.path)) continue;
    touch(`${root}/${e.path}`, `@${realSeconds(e.mtime)}`);
  }
}

/** A file's extended attributes as getfattr reads them (names sorted; the ACLs' own left out). */
export function readXattrs(path: string): { name: string; value: Buffer }[] {
  const out = execFileSync('getfattr', ['--absolute-names', '-d', '-m', '-', '-e', 'hex', path], {
    encoding: 'latin1',
  });
  const list: { name: string; value: Buffer }[] = [];
  for (const line of out.split('\n')) {
    const m = /^([^#=][^=]*)(?:=(.*))?$/.exec(line);
    if (!m) continue;
    // getfattr writes '=' and other special bytes of a name as \ooo.
    const name = decodeName(
      Buffer.from(
        m[1]!.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))),
        'latin1',
      ),
    );
    if (name.startsWith('system.posix_acl_')) continue;
    const v = m[2] ?? '';
    list.push({
      name,
      value: v === '' || v === '""' ? Buffer.alloc(0) : Buffer.from(v.replace(/^0x/, ''), 'hex'),
    });
  }
  return list.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** A file's access or default ACL in getfacl's text (what GNU tar --acls writes), or undefined when it has none beyond the mode. */
export function readAcl(path: string, kind: 'access' | 'default'): string | undefined {
  const out = execFileSync('getfacl', ['--absolute-names', '--omit-header', `--${kind}`, path], {
    encoding: 'utf8',
  });
  const text = out.replace(/\n+$/, '\n');
  if (text === '\n') return undefined;
  if (kind === 'access' && !/^(user|group):[^:]+:/m.test(text)) return undefined; // the mode only
  return text;
}
