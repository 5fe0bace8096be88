// The tree issue 13 is checked with, and a byte-exact description of a tree to
// compare a restore against: names and symlink targets as bytes (Buffer paths
// throughout: a string path would be UTF-8 encoded), types, permission bits,
// owners, sizes, mtimes to the nanosecond, contents, hard-link groups, every
// extended attribute and ACL (getfattr/getfacl, the attr and acl packages'
// own readers), and which files are sparse.

import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';

const b = (s: string): Buffer => Buffer.from(s, 'utf8');
const cat = (...parts: Array<Buffer | string>): Buffer =>
  Buffer.concat(parts.map((p) => (typeof p === 'string' ? b(p) : p)));

/** Latin-1 and other bytes that are not UTF-8. */
export const LATIN1_DIR = Buffer.from('caf\xe9', 'latin1');
export const LATIN1_FILE = Buffer.from('na\xefve.txt', 'latin1');
export const BAD_TARGET = Buffer.from([0xff, 0xfe, 0x2d, 0x74, 0x67, 0x74]);
export const SPARSE_SIZE = 1024 * 1024 * 1024;

/**
 * Builds the tree under `root` (an existing directory): Latin-1 names, a
 * name with a newline, a symlink to a non-UTF-8 target, a path of about 3 KB,
 * times before 1970 and in 2200 with nanoseconds, user.* xattrs with binary
 * values, an access ACL and a default ACL, a 1 GiB sparse file with 12 KiB of
 * data, hard links across Latin-1 names. Times are set last.
 */
export function makeFidelityTree(root: string): void {
  const r = b(`${root}/`);
  const dir = cat(r, LATIN1_DIR);
  fs.mkdirSync(dir);
  fs.writeFileSync(cat(dir, '/', LATIN1_FILE), 'latin-1 names\n');
  fs.mkdirSync(cat(dir, '/sub', Buffer.from([0xff])));
  fs.writeFileSync(cat(dir, '/sub', Buffer.from([0xff]), '/deep.txt'), 'below a 0xff name\n');
  fs.linkSync(cat(dir, '/', LATIN1_FILE), cat(r, 'hard-', Buffer.from([0xe9])));
  fs.writeFileSync(cat(r, 'line\nbreak.txt'), 'a newline in the name\n');
  fs.writeFileSync(cat(r, 'back\\slash'), 'a backslash in the name\n');
  fs.symlinkSync(BAD_TARGET, cat(r, 'bad-target-link'));
  // About 3 KB of path: 14 directories of 200 bytes, then a file.
  let deep = cat(r, 'long');
  fs.mkdirSync(deep);
  for (let i = 0; i < 14; i++) {
    deep = cat(deep, '/', `${String(i).padStart(2, '0')}${'d'.repeat(198)}`);
    fs.mkdirSync(deep);
  }
  fs.writeFileSync(cat(deep, '/end.txt'), 'at the end of a long path\n');
  fs.writeFileSync(cat(r, 'old.txt'), 'before 1970\n');
  fs.writeFileSync(cat(r, 'future.txt'), 'in 2200\n');
  fs.writeFileSync(cat(r, 'xattr.bin'), 'attributes\n');
  execFileSync('setfattr', ['-n', 'user.binary', '-v', '0x00ff0a410d00', `${root}/xattr.bin`]);
  execFileSync('setfattr', ['-n', 'user.text', '-v', 'plain text', `${root}/xattr.bin`]);
  execFileSync('setfattr', ['-n', 'user.big', '-v', `0x${'5a'.repeat(4000)}`, `${root}/xattr.bin`]);
  fs.writeFileSync(cat(r, 'acl.txt'), 'access ACL\n');
  execFileSync('setfacl', ['-m', 'u:65534:r--,g:65534:rw-', `${root}/acl.txt`]);
  fs.mkdirSync(cat(r, 'acldir'));
  execFileSync('setfacl', ['-d', '-m', 'u:65534:rwx,o::---', `${root}/acldir`]);
  execFileSync('setfacl', ['-m', 'u:65534:r-x', `${root}/acldir`]);
  fs.writeFileSync(cat(r, 'acldir/inherits.txt'), 'made under a default ACL\n');
  // 1 GiB, 12 KiB of data: at the start, in the middle, at the very end.
  const fd = fs.openSync(cat(r, 'sparse.img'), 'w');
  fs.writeSync(fd, Buffer.alloc(4096, 0x61), 0, 4096, 0);
  fs.writeSync(fd, Buffer.alloc(4096, 0x62), 0, 4096, SPARSE_SIZE / 2);
  fs.writeSync(fd, Buffer.alloc(4096, 0x63), 0, 4096, SPARSE_SIZE - 4096);
  fs.closeSync(fd);
  // A file that ends in a hole.
  const fd2 = fs.openSync(cat(r, 'hole-at-end.img'), 'w');
  fs.writeSync(fd2, Buffer.alloc(4096, 0x64), 0, 4096, 0);
  fs.ftruncateSync(fd2, 64 * 1024 * 1024);
  fs.closeSync(fd2);
  // Times last: writing into a directory changes its mtime. GNU touch takes ns.
  execFileSync('touch', ['-h', '-d', '@-315619200.123456789', `${root}/old.txt`]);
  execFileSync('touch', ['-h', '-d', '@7258118400.987654321', `${root}/future.txt`]);
  execFileSync('touch', ['-h', '-d', '@-1.5', `${root}/acl.txt`]);
}

export interface EntryFacts {
  type: string;
  mode: string;
  uid: number;
  gid: number;
  size: bigint;
  mtimeNs: bigint;
  content?: string;
  target?: string;
  /** The first path (hex, sorted) of its hard-link group, for files with more than one link. */
  linkGroup?: string;
  /** Allocated bytes well under the size. */
  sparse?: boolean;
}

/**
 * Every entry below `root`, keyed by its relative path's bytes in hex ('' is
 * the root itself, whose times and mode a restore into a fresh directory
 * does not own, so it is left out).
 */
export function describeTree(root: string): Map<string, EntryFacts> {
  const out = new Map<string, EntryFacts>();
  const inodes = new Map<bigint, string[]>();
  const walk = (rel: Buffer): void => {
    const abs = rel.length === 0 ? b(root) : cat(b(`${root}/`), rel);
    const st = fs.lstatSync(abs, { bigint: true });
    const type = st.isDirectory()
      ? 'dir'
      : st.isSymbolicLink()
        ? 'symlink'
        : st.isFIFO()
          ? 'fifo'
          : st.isFile()
            ? 'file'
            : 'other';
    const key = rel.toString('hex');
    if (rel.length > 0) {
      const f: EntryFacts = {
        type,
        mode: (st.mode & 0o7777n).toString(8),
        uid: Number(st.uid),
        gid: Number(st.gid),
        size: type === 'dir' ? 0n : st.size,
        // Symlink times are not kept by tar either; directories' are checked.
        mtimeNs: type === 'symlink' ? 0n : st.mtimeNs,
      };
      if (type === 'symlink') {
        f.mode = '';
        f.target = (fs.readlinkSync(abs, { encoding: 'buffer' }) as Buffer).toString('hex');
      }
      if (type === 'file') {
        f.content = hashFile(abs, st.size);
        f.sparse = st.blocks * 512n < st.size / 2n;
        if (st.nlink > 1n) inodes.set(st.ino, [...(inodes.get(st.ino) ?? []), key]);
      }
      out.set(key, f);
    }
    if (type === 'dir') {
      const names = fs.readdirSync(abs, { encoding: 'buffer' }) as Buffer[];
      for (const n of names.sort(Buffer.compare)) walk(rel.length === 0 ? n : cat(rel, '/', n));
    }
  };
  walk(Buffer.alloc(0));
  for (const keys of inodes.values()) {
    const first = keys.sort()[0]!;
    for (const k of keys) out.get(k)!.linkGroup = first;
  }
  return out;
}

/** Content hash without reading a sparse file's holes as data into memory at once. */
function hashFile(path: Buffer, size: bigint): string {
  const h = createHash('sha256');
  const fd = fs.openSync(path, 'r');
  try {
    const chunk = Buffer.allocUnsafe(4 * 1024 * 1024);
    let at = 0;
    while (BigInt(at) < size) {
      const n = fs.readSync(fd, chunk, 0, chunk.length, at);
      if (n <= 0) break;
      h.update(chunk.subarray(0, n));
      at += n;
    }
  } finally {
    fs.closeSync(fd);
  }
  return h.digest('hex');
}

/**
 * Every extended attribute and ACL below `dir`, as getfattr and getfacl print
 * them (names escaped their way), keyed by file and sorted, so two trees
 * compare regardless of listing order.
 */
export function attributesOf(dir: string): { xattrs: Record<string, string>; acls: Record<string, string> } {
  const byFile = (text: string): Record<string, string> => {
    const out: Record<string, string> = {};
    for (const block of text.split(/\n\n+/)) {
      const lines = block.split('\n').filter((l) => l.length > 0);
      const head = lines.findIndex((l) => l.startsWith('# file: '));
      if (head < 0) continue;
      const file = lines[head]!.slice('# file: '.length);
      const rest = lines
        .filter((l, i) => i !== head && !l.startsWith('# owner:') && !l.startsWith('# group:'))
        .sort();
      if (file === '.' || rest.length === 0) continue;
      out[file] = rest.join('\n');
    }
    return out;
  };
  const xattrs = execFileSync('getfattr', ['-R', '-P', '-h', '-d', '-m', '-', '-e', 'hex', '.'], {
    cwd: dir,
    maxBuffer: 64 * 1024 * 1024,
  }).toString('latin1');
  const acls = execFileSync('getfacl', ['-R', '-P', '-s', '-p', '.'], {
    cwd: dir,
    maxBuffer: 64 * 1024 * 1024,
  }).toString('latin1');
  const x = byFile(xattrs);
  // The ACLs are compared as getfacl shows them, not as their system.* xattrs' bytes.
  for (const [k, v] of Object.entries(x)) {
    const kept = v
      .split('\n')
      .filter((l) => !l.startsWith('system.posix_acl_'))
      .join('\n');
    if (kept.length > 0) x[k] = kept;
    else delete x[k];
  }
  return { xattrs: x, acls: byFile(acls) };
}
