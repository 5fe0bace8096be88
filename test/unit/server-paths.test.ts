// Server paths <-> the catalog's paths inside a backup, and find's path
// patterns cut at a backup's source (src/dma/server-paths.ts; docs/dma.md, "Paths").

import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { BackupRecord } from '../../src/catalog/types.js';
import {
  PathOutsideSourceError,
  patternsBelow,
  serverRow,
  toBackupPath,
  toServerPath,
} from '../../src/dma/server-paths.js';
import { parsePattern } from '../../src/catalog/pattern.js';

/** fnmatch(3) without flags, as the catalog matches a path pattern (src/catalog/pattern.ts). */
function fnmatchPath(pattern: string, path: string): boolean {
  const p = parsePattern(pattern);
  if (p.never) return false;
  const esc = (cp: number) => `\\u{${cp.toString(16)}}`;
  const re = p.tokens
    .map((t) =>
      t.kind === 'any'
        ? '[\\s\\S]*'
        : t.kind === 'one'
          ? '[\\s\\S]'
          : t.kind === 'lit'
            ? esc(t.cp)
            : `[${t.negated ? '^' : ''}${t.ranges.map((r) => `${esc(r.lo)}-${esc(r.hi)}`).join('')}]`,
    )
    .join('');
  return new RegExp(`^${re}$`, 'u').test(path);
}

const backup = (path: string) => ({ id: 7, path, server: 'h:10000' }) as BackupRecord;

test('typed server paths become paths inside the backup; outside the source is refused, naming it', () => {
  const b = backup('/usr/share/doc/bash');
  assert.equal(toBackupPath(b, '/usr/share/doc/bash'), '/');
  assert.equal(toBackupPath(b, '/usr/share/doc/bash/'), '/');
  assert.equal(toBackupPath(b, '/usr/share/doc/bash//NEWS.gz'), '/NEWS.gz');
  assert.equal(toBackupPath(b, 'NEWS.gz'), '/NEWS.gz', 'relative: below the source');
  assert.equal(toBackupPath(b, '/usr/share/doc/bash/caf\\xe9'), '/caf\\xe9');
  assert.equal(toBackupPath(b, '/usr/share/doc/bash/back\\slash'), '/back\\\\slash', 'a plain backslash');
  assert.throws(
    () => toBackupPath(b, '/bash'),
    (e: unknown) => {
      assert.ok(e instanceof PathOutsideSourceError);
      assert.match(
        e.message,
        /^\/bash is not in backup 7: it backed up \/usr\/share\/doc\/bash, so give a path below it/,
      );
      return true;
    },
  );
  assert.throws(() => toBackupPath(b, '/usr/share/doc/bashful'), PathOutsideSourceError);
  assert.equal(toBackupPath(backup('/'), '/etc/hosts'), '/etc/hosts');
});

test('rows come out with server paths; the root is named by the source', () => {
  const b = backup('/srv/a');
  assert.equal(toServerPath(b, '/'), '/srv/a');
  assert.equal(toServerPath(b, '/x/y'), '/srv/a/x/y');
  assert.equal(toServerPath(backup('/'), '/x'), '/x');
  const r = { path: '/x/y', dir: '/x', name: 'y' } as never;
  assert.deepEqual(serverRow(b, r), { path: '/srv/a/x/y', dir: '/srv/a/x', name: 'y' });
  assert.deepEqual(serverRow(b, { path: '/', dir: '', name: '' } as never), {
    path: '/srv/a',
    dir: '/srv',
    name: 'a',
  });
});

test('path patterns cut where the source ends match what the whole pattern matches', () => {
  const cases: Array<[string, string, string[]]> = [
    ['/usr/share/doc/bash/*.gz', '/usr/share/doc/bash', ['/*.gz']],
    ['/home/*/notes.txt', '/home/alice', ['*/notes.txt']], // '*' may also span more below
    ['/home/*/notes.txt', '/home', ['/*/notes.txt']],
    ['/home/al?ce/x', '/home/alice', ['/x']],
    ['/home/bob/x', '/home/alice', []],
    ['/srv/a', '/srv/a', ['/']],
    ['/srv/a*', '/srv/a', ['/*']],
    ['/etc/*', '/', ['/etc/*']],
  ];
  for (const [pattern, source, want] of cases) {
    assert.deepEqual(patternsBelow(pattern, source).sort(), want.sort(), `${pattern} below ${source}`);
  }
  // Whatever the cut, a path inside matches a rest exactly when source + path matches the pattern.
  const inside = ['/notes.txt', '/x/notes.txt', '/x', '/', '/a.gz', '/d/a.gz'];
  for (const [pattern, source] of cases) {
    const rests = patternsBelow(pattern, source);
    for (const p of inside) {
      const full = p === '/' ? source : source === '/' ? p : `${source}${p}`;
      assert.equal(
        rests.some((r) => fnmatchPath(r, p)),
        fnmatchPath(pattern, full),
        `${pattern} on ${full} (${JSON.stringify(rests)} on ${p})`,
      );
    }
  }
});
