// Which nlist entry an archive path belongs to (services/data/recover-plan.ts):
// whole path components, the root holding everything, the longest match winning.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { targetFor, targetPath, within } from '../../src/services/data/recover-plan.js';
import type { RecoverTarget } from '../../src/services/data/recover-plan.js';

test('within: the directory itself and what lies below it, by whole components; the root holds all', () => {
  assert.equal(within('sub', 'sub'), true);
  assert.equal(within('sub/a', 'sub'), true);
  assert.equal(within('sub/deeper/b', 'sub'), true);
  assert.equal(within('subway', 'sub'), false);
  assert.equal(within('su', 'sub'), false);
  assert.equal(within('a/sub', 'sub'), false);
  for (const p of ['', 'a', 'sub/deeper']) assert.equal(within(p, ''), true, p);
  assert.equal(within('', 'sub'), false);
});

test('targetFor: the longest original holding the path; targetPath moves what lies below it', () => {
  const t = (index: number, original: string, targetRel: string): RecoverTarget => ({
    index,
    name: `/${original}`,
    original,
    targetRel,
    fhInfo: null,
  });
  const root = t(0, '', 'out');
  const sub = t(1, 'sub', 'elsewhere/sub');
  const targets = [root, sub];
  assert.equal(targetFor(targets, ''), root);
  assert.equal(targetFor(targets, 'subway'), root);
  assert.equal(targetFor(targets, 'sub'), sub);
  assert.equal(targetFor(targets, 'sub/x'), sub);
  assert.equal(targetPath(root, ''), 'out');
  assert.equal(targetPath(root, 'a/b'), 'out/a/b');
  assert.equal(targetPath(sub, 'sub/x'), 'elsewhere/sub/x');
  assert.equal(targetFor([sub], 'other'), null);
});
