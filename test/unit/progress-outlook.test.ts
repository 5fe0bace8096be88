// The progress lines' arithmetic: the whole from the server's estimate (or a
// size known beforehand), the percentage, and the ETA (the server's first).

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { duration, outlook } from '../../src/cli/progress.js';

const MiB = 1024 * 1024;

test("the whole is done + the estimate left; the ETA is the server's when it gives one", () => {
  const o = outlook(
    { bytes: 495 * MiB, bytesRemaining: 4905 * MiB, files: 10, tape: 'NDM001', secondsRemaining: 600 },
    50,
  );
  assert.equal(o.total, 5400 * MiB);
  assert.equal(o.percent!.toFixed(1), '9.2');
  assert.equal(o.etaS, 600);
});

test("without the server's time, the ETA is what is left at the rate so far", () => {
  const o = outlook({ bytes: 100 * MiB, bytesRemaining: 300 * MiB, files: 0, tape: '' }, 10);
  assert.equal(o.etaS, 30);
});

test('a size known beforehand (a whole restore) stands in for the estimate; nothing known: nothing shown', () => {
  const r = outlook({ bytes: 50, bytesRemaining: null, bytesTotal: 200, files: 0, tape: '' }, 1);
  assert.deepEqual([r.total, r.percent], [200, 25]);
  // Past the size given (padding, a tape's last record): 100%, never more.
  assert.equal(
    outlook({ bytes: 300, bytesRemaining: null, bytesTotal: 200, files: 0, tape: '' }, 1).percent,
    100,
  );
  assert.deepEqual(outlook({ bytes: 50, bytesRemaining: null, files: 0, tape: '' }, 1), {
    total: null,
    percent: null,
    etaS: null,
  });
});

test('durations read as people say them', () => {
  assert.equal(duration(42), '42 s');
  assert.equal(duration(600), '10 min');
  assert.equal(duration(2 * 3600 + 5 * 60), '2 h 5 min');
});
