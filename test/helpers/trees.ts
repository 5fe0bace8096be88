// Small trees for backup tests, and a comparison of two trees that checks what
// a restore must keep: type, content, permission bits, mtime to the
// nanosecond, symlink targets, hard links, fifos.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { join } from 'node:path';

/** A tree with one of each kind of entry and awkward names. */
export function makeSampleTree(root: string): void {
  fs.mkdirSync(join(root, 'sub', 'deeper'), { recursive: true });
  fs.mkdirSync(join(root, 'dir ü'), { recursive: true });
  fs.writeFileSync(join(root, 'empty'), '');
  fs.writeFileSync(join(root, 'a.txt'), 'hello\n');
  fs.writeFileSync(
    join(root, 'sub', 'b.bin'),
    Buffer.from(Array.from({ length: 100_003 }, (_, i) => (i * 7) & 0xff)),
  );
  fs.writeFileSync(join(root, 'sub', 'deeper', 'exactly-512'), Buffer.alloc(512, 1));
  fs.writeFileSync(join(root, 'dir ü', 'ファイル name.txt'), 'x');
  fs.writeFileSync(join(root, `${'long-name-'.repeat(12)}.txt`), 'long');
  fs.symlinkSync('a.txt', join(root, 'link'));
  fs.linkSync(join(root, 'a.txt'), join(root, 'hard'));
  execFileSync('mkfifo', [join(root, 'fifo')]);
  fs.chmodSync(join(root, 'sub', 'b.bin'), 0o640);
  fs.chmodSync(join(root, 'sub', 'deeper'), 0o2750);
  // Times with nanoseconds, set last (writing into a directory changes its mtime).
  fs.utimesSync(join(root, 'a.txt'), new Date(1_600_000_000_123), new Date(1_600_000_000_456));
}

interface Seen {
  type: string;
  mode: number;
  mtimeNs: bigint;
  content?: string;
  target?: string;
  ino: bigint;
}

function scan(root: string): Map<string, Seen> {
  const out = new Map<string, Seen>();
  const walk = (rel: string) => {
    const abs = rel ? join(root, rel) : root;
    const st = fs.lstatSync(abs, { bigint: true });
    const type = st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : st.isFIFO() ? 'fifo' : 'file';
    const seen: Seen = { type, mode: Number(st.mode & 0o7777n), mtimeNs: st.mtimeNs, ino: st.ino };
    if (type === 'file') seen.content = fs.readFileSync(abs).toString('base64');
    if (type === 'symlink') seen.target = fs.readlinkSync(abs);
    out.set(rel || '.', seen);
    if (type === 'dir') for (const n of fs.readdirSync(abs).sort()) walk(rel ? `${rel}/${n}` : n);
  };
  walk('');
  return out;
}

/**
 * Asserts `restored` equals `source` entry by entry (hard links: same inode in
 * both). `mtimeToleranceNs`: how far mtimes may differ (our restore sets times
 * through Node, whose utimes takes seconds as a double: ~0.25 µs today).
 */
export function assertSameTree(
  source: string,
  restored: string,
  opts: { mtimeToleranceNs?: bigint } = {},
): void {
  const tolerance = opts.mtimeToleranceNs ?? 0n;
  const a = scan(source);
  const b = scan(restored);
  assert.deepEqual([...b.keys()], [...a.keys()]);
  for (const [path, s] of a) {
    const r = b.get(path)!;
    assert.equal(r.type, s.type, path);
    assert.equal(r.content, s.content, `${path} content`);
    assert.equal(r.target, s.target, `${path} symlink target`);
    // Symlink modes and times are not restored by tar; the root's mtime is the extraction's.
    if (s.type !== 'symlink') assert.equal(r.mode.toString(8), s.mode.toString(8), `${path} mode`);
    if (s.type !== 'symlink' && s.type !== 'dir') {
      const diff = r.mtimeNs > s.mtimeNs ? r.mtimeNs - s.mtimeNs : s.mtimeNs - r.mtimeNs;
      assert.ok(diff <= tolerance, `${path} mtime: ${r.mtimeNs} against ${s.mtimeNs}`);
    }
  }
  // Hard links: paths sharing an inode in the source share one in the restore.
  const byIno = new Map<bigint, string[]>();
  for (const [p, s] of a) if (s.type === 'file') byIno.set(s.ino, [...(byIno.get(s.ino) ?? []), p]);
  for (const paths of byIno.values()) {
    const inodes = new Set(paths.map((p) => b.get(p)!.ino));
    assert.equal(inodes.size, 1, `hard links ${paths.join(', ')} restored as separate files`);
  }
}
