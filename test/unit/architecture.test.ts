// Rules of the code base that the compiler does not check, checked on the
// source: every error class descends from the one coded base, and no module
// imports itself through others.

import assert from 'node:assert/strict';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { test } from 'node:test';
import { findCycles } from '../helpers/import-cycles.js';
import { REPO_ROOT } from '../helpers/ndmpd-process.js';

const SRC = join(REPO_ROOT, 'src');
const BASE = join(SRC, 'util', 'coded-error.ts');

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...sources(p));
    else if (name.endsWith('.ts')) out.push(p);
  }
  return out.sort();
}

/** Source text without comments, so a comment that mentions `extends Error` or an import does not count. */
function code(path: string): string {
  return readFileSync(path, 'utf8')
    .replace(/\/\*[\s\S]*?\*\//g, '')
    .replace(/^\s*\/\/.*$/gm, '');
}

test('every error class extends the coded base (src/util/coded-error.ts), never Error itself', () => {
  const builtins =
    /\bextends\s+(Error|TypeError|RangeError|SyntaxError|ReferenceError|EvalError|URIError|AggregateError)\b/g;
  const offenders: string[] = [];
  for (const f of sources(SRC)) {
    if (f === BASE) continue;
    for (const m of code(f).matchAll(builtins)) offenders.push(`${relative(REPO_ROOT, f)}: ${m[0]}`);
  }
  assert.deepEqual(
    offenders,
    [],
    'extend CodedError (src/util/coded-error.ts) or a class below it, and give the class a stable `code`',
  );
  assert.match(code(BASE), /export abstract class CodedError extends Error/);
});

/** Each module's relative imports (type-only ones too: a cycle of types is still a cycle of modules). */
function importGraph(): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  const spec = /^\s*(?:import|export)\b[^;'"]*?\bfrom\s+'(\.{1,2}\/[^']+)'|^\s*import\s+'(\.{1,2}\/[^']+)'/gm;
  for (const f of sources(SRC)) {
    const deps: string[] = [];
    for (const m of code(f).matchAll(spec)) {
      deps.push(resolve(dirname(f), (m[1] ?? m[2])!.replace(/\.js$/, '.ts')));
    }
    graph.set(f, deps);
  }
  return graph;
}

test('the import graph finds imports, multi-line ones included', () => {
  const graph = importGraph();
  // A one-line import, and a multi-line one (the module's only import of that file).
  const deps = graph.get(join(SRC, 'services', 'data', 'data-service.ts'))!;
  assert.ok(deps.includes(join(SRC, 'services', 'state-table.ts')));
  const cliDeps = graph.get(join(SRC, 'cli', 'ndmpd.ts'))!;
  assert.ok(cliDeps.includes(join(SRC, 'services', 'credentials.ts')));
});

test('the cycle finder names the cycles of a small graph, and finds none in a tree', () => {
  const g = new Map<string, string[]>([
    ['local-link', ['data/client', 'tape/client']],
    ['data/handlers', ['local-link', 'data/client']],
    ['data/client', ['data/handlers', 'node:fs']],
    ['tape/client', []],
    ['lone', ['lone']],
  ]);
  // The walk starts at local-link: the long cycle back to it, then the short one it passes through.
  assert.deepEqual(findCycles(g).sort(), [
    'data/client -> data/handlers -> data/client',
    'local-link -> data/client -> data/handlers -> local-link',
    'lone -> lone',
  ]);
  g.set('data/client', ['node:fs']);
  g.set('lone', []);
  assert.deepEqual(findCycles(g), []);
});

test('no import cycles under src/', () => {
  const cycles = findCycles(importGraph(), (p) => relative(SRC, p));
  assert.deepEqual(
    cycles,
    [],
    `import cycle(s):\n  ${cycles.join('\n  ')}\nmove what both sides need into a module of its own that neither imports back (e.g. services/registry.ts)`,
  );
});
