// The bench's own C programs (bench/ceiling.c, bench/tiny-corpus.c), compiled
// at run time with `cc -O2` into the bench's folder, so no binary is
// committed. A binary's name carries its source's hash: an edited source is
// never run as an old binary.

import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, renameSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** bench/NAME.c, beside this file's source (dist/bench/ → bench/). */
const sourceOf = (name: string) =>
  resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', 'bench', `${name}.c`);

/** The path of bench/NAME.c's binary in `dir`, compiled now if this source has not been. */
export function buildC(name: string, dir: string): string {
  const src = sourceOf(name);
  const hash = createHash('sha256').update(readFileSync(src)).digest('hex').slice(0, 12);
  const bin = join(dir, `${name}-${hash}`);
  if (existsSync(bin)) return bin;
  const tmp = `${bin}.${process.pid}.tmp`;
  const r = spawnSync('cc', ['-O2', '-Wall', '-o', tmp, src], { encoding: 'utf8' });
  if (r.error) throw new Error(`cannot run cc to build ${src}: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`cc -O2 ${src} failed: ${r.stderr.trim()}`);
  renameSync(tmp, bin);
  return bin;
}
