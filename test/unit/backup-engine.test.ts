// The backup engine's per-file trouble, made to happen at a known moment (from
// the history hook of an earlier file): a file that vanishes after the
// directory was listed is left out with a warning; one that shrinks after its
// header was written is padded with zeros to its recorded size, with a
// warning; the stream stays a valid archive with every later offset true. Both
// ways of running: one thread, and walker + reader thread (LOCAL backups).

import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';

import { BackupEngine, timeOfNs } from '../../src/backup/engine.js';
import { setTimesNs } from '../../src/util/native-fs.js';
import type { BackedUpEntry, StreamSink } from '../../src/backup/engine.js';
import { PaxParser } from '../../src/backup/pax-parser.js';
import { withReaderThread } from '../helpers/reader-pipe.js';

function makeTree(): string {
  const root = fs.mkdtempSync(join(os.tmpdir(), 'engine-trouble-'));
  fs.writeFileSync(join(root, 'a'), 'first');
  fs.writeFileSync(join(root, 'b'), Buffer.alloc(100_000, 0x62));
  fs.writeFileSync(join(root, 'c'), 'gone soon');
  fs.writeFileSync(join(root, 'd'), 'last');
  return root;
}

/** Parses the archive: name → { size, content, header offset }. */
function parse(stream: Buffer): Map<string, { size: number; content: Buffer; at: bigint }> {
  const out = new Map<string, { size: number; content: Buffer; at: bigint }>();
  const chunks = new Map<string, Buffer[]>();
  new PaxParser().push(stream, {
    onEntry: (e) => {
      out.set(e.path, { size: Number(e.size), content: Buffer.alloc(0), at: e.headerOffset });
      chunks.set(e.path, []);
    },
    onData: (e, d) => chunks.get(e.path)!.push(Buffer.from(d)),
  });
  for (const [p, c] of chunks) out.get(p)!.content = Buffer.concat(c);
  return out;
}

/** While 'a' is being backed up: c disappears, b shrinks to 10 bytes. */
function trouble(root: string): (e: BackedUpEntry) => void {
  return (e) => {
    if (e.path !== 'a') return;
    fs.unlinkSync(join(root, 'c'));
    fs.truncateSync(join(root, 'b'), 10);
  };
}

function check(stream: Buffer, warnings: string[], offsets: Map<string, bigint | null> | null): void {
  const entries = parse(stream);
  assert.deepEqual([...entries.keys()].sort(), ['.', 'a', 'b', 'd']);
  const b = entries.get('b')!;
  assert.equal(b.size, 100_000, 'b keeps the size its header says');
  assert.deepEqual(b.content, Buffer.concat([Buffer.alloc(10, 0x62), Buffer.alloc(99_990)]));
  assert.equal(entries.get('d')!.content.toString(), 'last');
  for (const [p, e] of entries) {
    if (offsets) assert.equal(offsets.get(p.replace(/\/$/, '') || '.'), e.at, `fh_info of ${p}`);
  }
  assert.ok(
    warnings.some((w) => /^c: vanished; skipped/.test(w)),
    warnings.join('\n'),
  );
  assert.ok(
    warnings.some((w) => /^b: shrank while being read/.test(w)),
    warnings.join('\n'),
  );
}

test('one thread: a vanished file is left out, a shrunk one padded; warnings; offsets true', async () => {
  const root = makeTree();
  try {
    const parts: Buffer[] = [];
    const sink: StreamSink = {
      write: async (c) => void parts.push(Buffer.from(c)),
      end: async () => undefined,
    };
    const warnings: string[] = [];
    const offsets = new Map<string, bigint | null>();
    const hook = trouble(root);
    const r = await new BackupEngine({ root, files: [], excludes: [] }, sink, {
      aborted: () => false,
      warn: (t) => warnings.push(t),
      entry: (e) => {
        offsets.set(e.path, e.headerOffset);
        hook(e);
      },
    }).run();
    assert.equal(r.warnings, 2);
    check(Buffer.concat(parts), warnings, offsets);
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});

test('walker + reader thread (which opens the files): the same trouble gives the same archive and warnings', async () => {
  const root = makeTree();
  try {
    const warnings: string[] = [];
    const hook = trouble(root);
    const { result: r, archive } = await withReaderThread(
      (pipe, sink) =>
        new BackupEngine(
          { root, files: [], excludes: [] },
          sink,
          {
            aborted: () => false,
            warn: (t) => warnings.push(t),
            // With a reader thread the entry hook is record(): the reader completes positions (history.test.ts checks them).
            record: (e) => {
              hook(e);
              return null;
            },
          },
          pipe,
        ).run(),
      (w) => warnings.push(w),
    );
    // The reader's warnings arrive as messages: give them a moment.
    for (let i = 0; i < 50 && warnings.length < 2; i++) await new Promise((res) => setTimeout(res, 10));
    assert.equal(r.warnings, 2, warnings.join('\n'));
    check(archive, warnings, null);
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});

test('times before 1970 with nanoseconds, and far after 2038, are backed up exactly (the backup does not fail)', async () => {
  const root = fs.mkdtempSync(join(os.tmpdir(), 'engine-times-'));
  try {
    const cases: Record<string, { sec: bigint; nsec: number }> = {
      old: { sec: -315619200n, nsec: 123_456_789 },
      'just-before-epoch': { sec: -1n, nsec: 999_999_999 },
      'year-2200': { sec: 7_258_118_400n, nsec: 5 },
    };
    for (const [name, t] of Object.entries(cases)) {
      fs.writeFileSync(join(root, name), name);
      setTimesNs(join(root, name), t, t);
    }
    const parts: Buffer[] = [];
    const sink: StreamSink = {
      write: async (c) => void parts.push(Buffer.from(c)),
      end: async () => undefined,
    };
    const warnings: string[] = [];
    const r = await new BackupEngine({ root, files: [], excludes: [] }, sink, {
      aborted: () => false,
      warn: (t) => warnings.push(t),
    }).run();
    assert.equal(r.warnings, 0, warnings.join('\n'));
    const seen = new Map<string, { sec: bigint; nsec: number }>();
    new PaxParser().push(Buffer.concat(parts), {
      onEntry: (e) => void seen.set(e.path, { sec: e.mtime.sec, nsec: e.mtime.nsec }),
      onData: () => undefined,
    });
    for (const [name, t] of Object.entries(cases)) assert.deepEqual(seen.get(name), t, name);
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});

test('timeOfNs rounds seconds down, so nanoseconds are never negative', () => {
  assert.deepEqual(timeOfNs(-1_500_000_000n), { sec: -2n, nsec: 500_000_000 });
  assert.deepEqual(timeOfNs(-1_000_000_000n), { sec: -1n, nsec: 0 });
  assert.deepEqual(timeOfNs(1_500_000_000n), { sec: 1n, nsec: 500_000_000 });
});
