// The per-file cost of capturing extended attributes and ACLs
// (docs/metadata.md, "Cost"): the walk's one llistxattr per entry, as the
// engine makes it (/proc/self/fd/N/name through the directory's descriptor,
// not followed), against the lstat it makes anyway; and with every file
// holding one user.* attribute, the list plus the lgetxattr. Makes its own
// tree of --files empty files (1000 per directory) under --dir, best of
// --runs passes, interleaved:
//
//   node dist/bench/xattr-calls.js --dir /tmp/ndmpd-xattr-bench --files 100000

import fs from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { lgetxattr, llistxattr, lsetxattr } from '../src/util/native-fs.js';

const { values } = parseArgs({
  options: {
    dir: { type: 'string' },
    files: { type: 'string', default: '100000' },
    runs: { type: 'string', default: '5' },
  },
});
if (!values.dir) throw new Error('--dir DIR: where to make the tree (removed afterwards)');
const total = Number(values.files);
const PER_DIR = 1000;
const root = fs.mkdtempSync(join(values.dir, 'xattr-'));
const dirs: string[] = [];
for (let made = 0, d = 0; made < total; d++) {
  const dir = join(root, String(d));
  fs.mkdirSync(dir);
  dirs.push(dir);
  for (let i = 0; i < PER_DIR && made < total; i++, made++)
    fs.closeSync(fs.openSync(join(dir, `f${i}`), 'w'));
}
const names = (d: string): string[] => fs.readdirSync(d);
const listing = dirs.map((d) => [d, names(d)] as const);
const inDirs = (each: (proc: string, name: string) => void): void => {
  for (const [d, files] of listing) {
    const fd = fs.openSync(d, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
    const proc = `/proc/self/fd/${fd}/`;
    for (const f of files) each(proc, f);
    fs.closeSync(fd);
  }
};
const withValue = { on: false };
const variants: Record<string, () => void> = {
  'lstat(/proc/self/fd/N/name)': () => inDirs((p, f) => fs.lstatSync(p + f, { bigint: true })),
  'llistxattr(/proc/self/fd/N/name)': () =>
    inDirs((p, f) => {
      for (const n of llistxattr(p + f)) if (withValue.on) lgetxattr(p + f, n);
    }),
};
const runs = Number(values.runs);
const report = (label: string): void => {
  const best: Record<string, number> = {};
  for (let r = 0; r < runs; r++) {
    for (const [name, fn] of Object.entries(variants)) {
      const t0 = process.hrtime.bigint();
      fn();
      const ns = Number(process.hrtime.bigint() - t0);
      best[name] = Math.min(best[name] ?? Infinity, ns);
    }
  }
  for (const [name, ns] of Object.entries(best))
    console.log(
      `${label.padEnd(22)} ${name.padEnd(36)} ${(ns / 1e6).toFixed(1).padStart(8)} ms per ${total} files, ${(ns / total).toFixed(0)} ns/file`,
    );
};
try {
  report('no xattrs');
  inDirs((p, f) => lsetxattr(p + f, 'user.tag', Buffer.from('some value')));
  withValue.on = true;
  report('one user.* xattr each');
} finally {
  fs.rmSync(root, { recursive: true });
}
