// Documents generated from the code must match it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { protocolCoverage } from '../../scripts/protocol-coverage.js';
import { REPO_ROOT } from '../helpers/ndmpd-process.js';

test('docs/protocol-coverage.md is what the message and dispatch tables say', () => {
  const onDisk = readFileSync(join(REPO_ROOT, 'docs', 'protocol-coverage.md'), 'utf8');
  assert.equal(
    onDisk,
    protocolCoverage(),
    'regenerate: node dist/scripts/protocol-coverage.js > docs/protocol-coverage.md',
  );
});
