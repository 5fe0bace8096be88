// The per-file cost of confinement (docs/security.md, "While the tree
// changes"): the walk's lstat by path against through its directory's
// descriptor, and the reader's open by path against the open in its
// directory's descriptor (/proc/self/fd/N/name) plus the fstat check.
// Best of --runs passes, interleaved, over every file of a tree:
//
//   node dist/bench/confine-calls.js --dir /tmp/ndmpd-bench/small-x1/tree

import fs from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: { dir: { type: 'string' }, runs: { type: 'string', default: '5' } },
});
if (!values.dir) throw new Error('--dir DIR: a tree to read (e.g. a bench corpus)');
const dirs: [string, string[]][] = [];
const walk = (d: string): void => {
  const ents = fs.readdirSync(d, { withFileTypes: true });
  dirs.push([d, ents.filter((e) => e.isFile()).map((e) => e.name)]);
  for (const e of ents) if (e.isDirectory()) walk(join(d, e.name));
};
walk(values.dir);
const n = dirs.reduce((a, [, f]) => a + f.length, 0);
const C = fs.constants;
const OF = C.O_RDONLY | C.O_NOFOLLOW | C.O_NONBLOCK;
const OD = C.O_RDONLY | C.O_DIRECTORY | C.O_NOFOLLOW;
const inDirs = (each: (fd: number, proc: string, name: string) => void): void => {
  for (const [d, files] of dirs) {
    const fd = fs.openSync(d, OD);
    const proc = `/proc/self/fd/${fd}/`;
    for (const f of files) each(fd, proc, f);
    fs.closeSync(fd);
  }
};
const variants: Record<string, () => void> = {
  'walk: lstat(path)': () => {
    for (const [d, files] of dirs) for (const f of files) fs.lstatSync(`${d}/${f}`, { bigint: true });
  },
  'walk: lstat(/proc/self/fd/N/name)': () =>
    inDirs((_fd, proc, f) => fs.lstatSync(proc + f, { bigint: true })),
  'read: open(path) + close': () => {
    for (const [d, files] of dirs) for (const f of files) fs.closeSync(fs.openSync(`${d}/${f}`, 'r'));
  },
  'read: open(/proc/self/fd/N/name) + fstat + close': () =>
    inDirs((_fd, proc, f) => {
      const x = fs.openSync(proc + f, OF);
      fs.fstatSync(x, { bigint: true });
      fs.closeSync(x);
    }),
};
const best: Record<string, number> = {};
for (let r = 0; r < Number(values.runs); r++) {
  for (const [k, fn] of Object.entries(variants)) {
    const t = performance.now();
    fn();
    best[k] = Math.min(best[k] ?? Infinity, ((performance.now() - t) * 1000) / n);
  }
}
console.log(`${n} files in ${dirs.length} directories; µs per file, best of ${values.runs}`);
for (const [k, us] of Object.entries(best)) console.log(`  ${k.padEnd(50)} ${us.toFixed(2)}`);
