// Incremental backups' bookkeeping (src/backup/incremental.ts) and format:
// LEVEL / BASE_DATE / UPDATE parsing and their errors; dumpdates (the base is
// the most recent lower level; lines rewritten whole, 0600, nothing left
// behind by a failed commit); DUMP_DATE tokens and their pruning; UPDATE=n
// touches nothing; directory snapshots; GNU.dumpdir through our encoder and
// parser (and GNU tar's own), malformed ones refused; a restore's deletions
// (only what the dumpdir leaves out, never through a link, only selected names).

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';

import {
  CLOCK_SLACK_NS,
  DirSnapshot,
  IncrementalError,
  TOKENS_KEPT,
  commitIncremental,
  makeToken,
  parseLevel,
  planIncremental,
  readDumpdates,
  readTokens,
} from '../../src/backup/incremental.js';
import type { IncrementalPlan } from '../../src/backup/incremental.js';
import { END_OF_ARCHIVE, PaxFormatError, PaxUnrepresentableError } from '../../src/backup/pax-layout.js';
import { PaxParser } from '../../src/backup/pax-parser.js';
import { encodeHeader } from '../../src/backup/pax-encoder.js';
import type { DumpdirEntry, PaxEntry } from '../../src/backup/pax-layout.js';
import type { ParsedEntry } from '../../src/backup/pax-parser.js';
import { RestoreEngine } from '../../src/backup/restore.js';

const S = 1_000_000_000n;
/** A start time: `n` seconds after a fixed moment. */
const at = (n: number): bigint => 1_732_492_800n * S + BigInt(n) * S + 123_456_789n;

function tmp(prefix: string): string {
  return fs.mkdtempSync(join(os.tmpdir(), prefix));
}

function env(vars: Record<string, string>): { name: string; value: string }[] {
  return Object.entries(vars).map(([name, value]) => ({ name, value }));
}

/** A plan for `vars`, committed with a one-directory snapshot; returns the plan and DUMP_DATE. */
function backup(
  root: string,
  state: string,
  vars: Record<string, string>,
  now: bigint,
): { plan: IncrementalPlan; dumpDate: string | undefined } {
  const plan = planIncremental(env(vars), root, state, now);
  const snap = new DirSnapshot();
  const st = fs.statSync(root, { bigint: true });
  snap.add('.', st.dev, st.ino);
  const added = commitIncremental(plan, snap, state);
  return { plan, dumpDate: added.find((p) => p.name === 'DUMP_DATE')?.value };
}

/** Every file under `dir` with its content, for "nothing changed" checks. */
function contents(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (d: string) => {
    for (const n of fs.readdirSync(d).sort()) {
      const p = join(d, n);
      if (fs.lstatSync(p).isDirectory()) walk(p);
      else out.set(p, fs.readFileSync(p).toString('base64'));
    }
  };
  if (fs.existsSync(dir)) walk(dir);
  return out;
}

test('LEVEL: absent is 0, one digit 0..9, anything else an error that says what is offered', () => {
  assert.equal(parseLevel(undefined), 0);
  for (let n = 0; n <= 9; n++) assert.equal(parseLevel(String(n)), n);
  assert.throws(() => parseLevel('12'), {
    name: 'IncrementalError',
    message: 'LEVEL=12: levels 0 to 9 are offered',
  });
  for (const bad of ['10', '-1', 'x', 'F', '', '1.0', '０']) {
    assert.throws(() => parseLevel(bad), IncrementalError, bad);
  }
  const root = tmp('inc-level-');
  const state = tmp('inc-level-state-');
  try {
    assert.throws(
      () => planIncremental(env({ LEVEL: 'I' }), root, state),
      /^IncrementalError: LEVEL=I: levels 0 to 9/,
    );
    assert.throws(
      () => planIncremental(env({ LEVEL: '1', FILES: 'a' }), root, state),
      /LEVEL=1 with FILES: incremental backups are of a whole FILESYSTEM/,
    );
    const p = planIncremental(env({ FILES: 'a' }), root, state);
    assert.equal(p.update, false, 'a FILES backup is never a base');
    assert.match(p.warning ?? '', /FILES backup is not recorded/);
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
    fs.rmSync(state, { recursive: true, force: true });
  }
});

test('dumpdates: the base is the most recent lower level; a level without one is full, with a warning', () => {
  const root = fs.realpathSync(tmp('inc-dd-'));
  const state = tmp('inc-dd-state-');
  try {
    const orphan = planIncremental(env({ LEVEL: '3' }), root, state, at(0));
    assert.equal(orphan.since, null);
    assert.equal(orphan.dumpdirs, true, 'a level >= 1 stream carries dumpdirs even when full');
    assert.match(orphan.warning!, /LEVEL=3: no backup of .* at a lower level is recorded; this one is full/);

    const l0 = backup(root, state, {}, at(0)).plan;
    assert.equal(l0.level, 0);
    assert.equal(l0.since, null);
    assert.equal(l0.dumpdirs, false, 'level 0 streams stay as they were');
    const l1 = backup(root, state, { LEVEL: '1' }, at(10)).plan;
    assert.equal(l1.base?.startedAt, at(0));
    assert.equal(l1.since, at(0) - CLOCK_SLACK_NS);
    const l2 = backup(root, state, { LEVEL: '2' }, at(20)).plan;
    assert.equal(l2.base?.level, 1);
    assert.equal(l2.base?.startedAt, at(10));
    // A new level 1 goes back to the 0 ...
    const l1b = backup(root, state, { LEVEL: '1' }, at(30)).plan;
    assert.equal(l1b.base?.level, 0);
    assert.equal(l1b.base?.startedAt, at(0));
    // ... and a 2 after it uses the new 1, not the older 2's base.
    const l2b = planIncremental(env({ LEVEL: '2' }), root, state, at(40));
    assert.equal(l2b.base?.level, 1);
    assert.equal(l2b.base?.startedAt, at(30));
    assert.equal(l2b.warning, null);
    // A 5 uses the newest of 0, 1, 2 (the new 1: newer than the old 2).
    assert.equal(planIncremental(env({ LEVEL: '5' }), root, state, at(40)).base?.startedAt, at(30));

    // One line per FILESYSTEM and level, as documented; the file is private.
    const text = fs.readFileSync(join(state, 'dumpdates'), 'utf8');
    const lines = text.split('\n').filter((l) => l && !l.startsWith('#'));
    assert.equal(lines.length, 3);
    assert.match(
      lines[0]!,
      new RegExp(`^${JSON.stringify(root)} 0 ${at(0)} 2024-11-25T00:00:00\\.123456789Z \\d+$`),
    );
    assert.match(
      lines[1]!,
      new RegExp(`^${JSON.stringify(root)} 1 ${at(30)} 2024-11-25T00:00:30\\.123456789Z \\d+$`),
    );
    assert.equal(fs.statSync(join(state, 'dumpdates')).mode & 0o777, 0o600);
    assert.deepEqual(
      readDumpdates(state).map((r) => [r.level, r.startedAt]),
      [
        [0, at(0)],
        [1, at(30)],
        [2, at(20)],
      ],
    );
    // Another FILESYSTEM has its own levels.
    const other = fs.realpathSync(tmp('inc-dd-other-'));
    try {
      assert.equal(planIncremental(env({ LEVEL: '1' }), other, state).since, null);
    } finally {
      fs.rmSync(other, { recursive: true, force: true });
    }
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
    fs.rmSync(state, { recursive: true, force: true });
  }
});

test('dumpdates are rewritten whole: a commit that fails leaves them as they were, and no temp files', () => {
  const root = tmp('inc-atomic-');
  const state = tmp('inc-atomic-state-');
  try {
    backup(root, state, {}, at(0));
    const before = fs.readFileSync(join(state, 'dumpdates'), 'utf8');
    // The tokens file is written before dumpdates: make its rename fail.
    fs.rmSync(join(state, 'tokens'));
    fs.mkdirSync(join(state, 'tokens', 'in-the-way'), { recursive: true });
    assert.throws(() => backup(root, state, { LEVEL: '1' }, at(10)));
    assert.equal(fs.readFileSync(join(state, 'dumpdates'), 'utf8'), before);
    const leftovers = (d: string): string[] => fs.readdirSync(d).filter((n) => n.includes('.tmp-'));
    assert.deepEqual(leftovers(state), []);
    assert.equal(fs.existsSync(join(state, 'incremental.lock')), false, 'the lock is released');
    // The next commit works and clears the snapshot the failed one left.
    fs.rmSync(join(state, 'tokens'), { recursive: true });
    backup(root, state, { LEVEL: '1' }, at(20));
    assert.equal(readDumpdates(state).length, 2);
    assert.equal(fs.readdirSync(join(state, 'snapshots')).length, 2, 'one snapshot per recorded backup');
    assert.deepEqual(leftovers(join(state, 'snapshots')), []);
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
    fs.rmSync(state, { recursive: true, force: true });
  }
});

test('tokens: DUMP_DATE is (sequence << 32) | seconds; BASE_DATE finds its backup; errors say why', () => {
  const root = fs.realpathSync(tmp('inc-tok-'));
  const state = tmp('inc-tok-state-');
  try {
    const full = backup(root, state, { BASE_DATE: '0' }, at(0));
    assert.equal(full.plan.since, null, 'BASE_DATE=0 is a full backup');
    assert.equal(full.plan.dumpdirs, false);
    assert.equal(full.dumpDate, makeToken(1n, at(0)).toString());
    assert.equal(BigInt(full.dumpDate!) >> 32n, 1n);
    assert.equal(BigInt(full.dumpDate!) & 0xffff_ffffn, at(0) / S);

    const inc = backup(root, state, { BASE_DATE: full.dumpDate! }, at(5));
    assert.equal(inc.plan.base?.token.toString(), full.dumpDate);
    assert.equal(inc.plan.since, at(0) - CLOCK_SLACK_NS, 'the ns start time, not the token seconds');
    assert.equal(inc.plan.dumpdirs, true);
    assert.equal(inc.plan.dumpdatesLevel, null, 'a token incremental is no level');
    assert.equal(BigInt(inc.dumpDate!) >> 32n, 2n);
    assert.equal(readTokens(state).length, 2);
    // BASE_DATE=0 was recorded as the level 0 it is; the token incremental only as a token.
    assert.deepEqual(
      readDumpdates(state).map((r) => r.level),
      [0],
    );
    // A level backup returns a token too, and its sequence goes on.
    const l1 = backup(root, state, { LEVEL: '1' }, at(6));
    assert.equal(BigInt(l1.dumpDate!) >> 32n, 3n);
    assert.equal(l1.plan.base?.startedAt, at(0));

    const plan = (v: Record<string, string>) => planIncremental(env(v), root, state, at(9));
    assert.throws(() => plan({ BASE_DATE: 'yesterday' }), /BASE_DATE=yesterday: not a token/);
    assert.throws(() => plan({ BASE_DATE: '-5' }), IncrementalError);
    assert.throws(() => plan({ BASE_DATE: '18446744073709551616' }), IncrementalError, '2^64');
    assert.throws(
      () => plan({ BASE_DATE: makeToken(99n, at(0)).toString() }),
      /no backup of .* with this token is recorded/,
    );
    assert.throws(() => plan({ BASE_DATE: full.dumpDate!, LEVEL: '1' }), /BASE_DATE and LEVEL=1 together/);
    assert.equal(
      plan({ BASE_DATE: full.dumpDate!, LEVEL: '0' }).base?.startedAt,
      at(0),
      'LEVEL=0 is no conflict',
    );
    // Another FILESYSTEM cannot use this one's token.
    const other = tmp('inc-tok-other-');
    try {
      assert.throws(
        () => planIncremental(env({ BASE_DATE: full.dumpDate! }), other, state),
        /no backup of .* with this token/,
      );
    } finally {
      fs.rmSync(other, { recursive: true, force: true });
    }
    // A token whose snapshot is gone is an error, not a silent full backup.
    for (const n of fs.readdirSync(join(state, 'snapshots'))) {
      if (n.endsWith(`.${inc.dumpDate}`)) fs.rmSync(join(state, 'snapshots', n));
    }
    assert.throws(() => plan({ BASE_DATE: inc.dumpDate! }), /directory snapshot .* cannot be read/);
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
    fs.rmSync(state, { recursive: true, force: true });
  }
});

test('tokens: the newest 16 per FILESYSTEM are kept, with their snapshots and those dumpdates name', () => {
  const root = tmp('inc-prune-');
  const state = tmp('inc-prune-state-');
  try {
    const first = backup(root, state, {}, at(0)).dumpDate!; // level 0: in dumpdates too
    const tokens: string[] = [];
    for (let i = 1; i <= 20; i++) tokens.push(backup(root, state, { BASE_DATE: first }, at(i)).dumpDate!);
    const kept = readTokens(state).map((r) => r.token.toString());
    assert.equal(kept.length, TOKENS_KEPT);
    assert.deepEqual(kept, tokens.slice(-TOKENS_KEPT));
    // The level 0's snapshot stays (dumpdates names it): 16 + 1.
    assert.equal(fs.readdirSync(join(state, 'snapshots')).length, TOKENS_KEPT + 1);
    // Its token still works as a BASE_DATE; a pruned one does not.
    assert.equal(planIncremental(env({ BASE_DATE: first }), root, state).base?.token.toString(), first);
    assert.throws(
      () => planIncremental(env({ BASE_DATE: tokens[0]! }), root, state),
      /no backup .* with this token/,
    );
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
    fs.rmSync(state, { recursive: true, force: true });
  }
});

test('UPDATE=n: nothing in the state dir changes and no DUMP_DATE is returned', () => {
  const root = tmp('inc-noupd-');
  const state = tmp('inc-noupd-state-');
  try {
    backup(root, state, {}, at(0));
    const before = contents(state);
    for (const v of ['n', 'N']) {
      const r = backup(root, state, { LEVEL: '1', UPDATE: v }, at(10));
      assert.equal(r.plan.update, false);
      assert.equal(r.plan.base?.level, 0, 'it is still an incremental');
      assert.equal(r.dumpDate, undefined);
      assert.deepEqual(contents(state), before);
    }
    assert.equal(planIncremental(env({ UPDATE: 'y' }), root, state).update, true);
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
    fs.rmSync(state, { recursive: true, force: true });
  }
});

test('EXCLUDE that differs from the base makes a full backup (what was excluded is in no backup yet)', () => {
  const root = tmp('inc-excl-');
  const state = tmp('inc-excl-state-');
  try {
    backup(root, state, { EXCLUDE: '*.tmp' }, at(0));
    const same = planIncremental(env({ LEVEL: '1', EXCLUDE: '*.tmp' }), root, state, at(1));
    assert.notEqual(same.since, null);
    const other = planIncremental(env({ LEVEL: '1' }), root, state, at(1));
    assert.equal(other.since, null);
    assert.match(other.warning!, /EXCLUDE differs/);
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
    fs.rmSync(state, { recursive: true, force: true });
  }
});

test('directory snapshots: round trip with awkward paths and 64-bit numbers; corruption is refused', () => {
  const snap = new DirSnapshot();
  const paths = [
    '.',
    'a',
    'a/b',
    'a/b c',
    'a/bü',
    'ファイル',
    'x'.repeat(300),
    `${'x'.repeat(300)}/y`,
    'line\nbreak',
  ];
  paths.forEach((p, i) => snap.add(p, BigInt(i) << 40n, (1n << 64n) - 1n - BigInt(i)));
  const meta = { root: '/srv/ü', startedAt: at(0).toString(), level: 1, token: '42', excludes: ['*.o'] };
  const file = snap.encode(meta);
  const back = DirSnapshot.decode(file);
  assert.deepEqual(back.meta, meta);
  assert.equal(back.snapshot.size, paths.length);
  paths.forEach((p, i) => {
    assert.ok(back.snapshot.has(p, BigInt(i) << 40n, (1n << 64n) - 1n - BigInt(i)), p);
    assert.ok(!back.snapshot.has(p, BigInt(i) << 40n, 5n), `${p}: another inode`);
    assert.ok(!back.snapshot.has(p, 77n, (1n << 64n) - 1n - BigInt(i)), `${p}: another device`);
  });
  assert.ok(!back.snapshot.has('a/b/c', 0n, 0n));
  const bad = Buffer.from(file);
  bad[bad.length - 6]! ^= 0xff; // the gzip CRC
  assert.throws(() => DirSnapshot.decode(bad));
  // 100,000 directories stay small.
  const big = new DirSnapshot();
  for (let i = 0; i < 100_000; i++)
    big.add(`projects/p${i >> 10}/src/module-${i}`, 2049n, 1_000_000n + BigInt(i));
  assert.ok(big.encode(meta).length < 1_000_000);
});

// ---------------------------------------------------------------------------
// GNU.dumpdir in pax

const DIR: PaxEntry = {
  path: 'd',
  type: 'dir',
  size: 0n,
  mode: 0o755,
  uid: 0,
  gid: 0,
  uname: 'root',
  gname: 'root',
  mtime: { sec: 1_700_000_000n, nsec: 0 },
};

function parseAll(stream: Uint8Array): ParsedEntry[] {
  const out: ParsedEntry[] = [];
  const p = new PaxParser();
  p.push(stream, { onEntry: (e) => out.push(e), onData: () => undefined });
  p.end();
  return out;
}

function withDumpdir(dumpdir: DumpdirEntry[]): Buffer {
  return Buffer.concat([encodeHeader({ ...DIR, dumpdir }), END_OF_ARCHIVE]);
}

/** The stream of withDumpdir(list) with bytes of the dumpdir value replaced (same length). */
function patched(list: DumpdirEntry[], from: string, to: Buffer): Buffer {
  const b = withDumpdir(list);
  const key = b.indexOf('GNU.dumpdir=');
  const at = b.indexOf(from, key + 12);
  assert.ok(at > 0 && to.length === Buffer.byteLength(from));
  to.copy(b, at);
  return b;
}

test('GNU.dumpdir: encoded as GNU tar writes it, parsed back; only on directories', () => {
  const list: DumpdirEntry[] = [
    { name: 'a b', flag: 'Y' },
    { name: 'sub', flag: 'D' },
    { name: 'unchanged', flag: 'N' },
    { name: 'ファイル', flag: 'Y' },
  ];
  const b = withDumpdir(list);
  assert.ok(b.includes(Buffer.from('GNU.dumpdir=Ya b\0Dsub\0Nunchanged\0Yファイル\0\0\n')));
  const [e] = parseAll(b);
  assert.deepEqual(e!.dumpdir, list);
  assert.deepEqual(parseAll(withDumpdir([]))[0]!.dumpdir, [], 'an empty directory: just the end NUL');
  assert.equal(parseAll(Buffer.concat([encodeHeader(DIR), END_OF_ARCHIVE]))[0]!.dumpdir, undefined);
  // The encoder ignores it on anything but a directory, and refuses names that are not one component.
  assert.deepEqual(
    encodeHeader({ ...DIR, type: 'file', dumpdir: list }),
    encodeHeader({ ...DIR, type: 'file' }),
  );
  for (const name of ['a/b', '.', '..', '', 'nul\0']) {
    assert.throws(
      () => encodeHeader({ ...DIR, dumpdir: [{ name, flag: 'Y' }] }),
      PaxUnrepresentableError,
      JSON.stringify(name),
    );
  }
  // A big listing: the header grows past one x block.
  const many = Array.from({ length: 5000 }, (_, i) => ({ name: `file-${i}`, flag: 'N' as const }));
  assert.deepEqual(parseAll(withDumpdir(many))[0]!.dumpdir, many);
});

test('GNU.dumpdir: malformed values are a PaxFormatError', () => {
  const two: DumpdirEntry[] = [
    { name: 'ab', flag: 'Y' },
    { name: 'cd', flag: 'N' },
  ];
  const cases: [string, Buffer][] = [
    ['a name with /', patched(two, 'ab', Buffer.from('a/'))],
    ['.', patched([{ name: 'x', flag: 'Y' }], 'Yx', Buffer.from('Y.'))],
    ['..', patched(two, 'ab', Buffer.from('..'))],
    ['an unknown flag', patched(two, 'Ncd', Buffer.from('Xcd'))],
    ['a rename record', patched(two, 'Ncd', Buffer.from('Rcd'))],
    ['a name twice', patched(two, 'cd', Buffer.from('ab'))],
    ['no end NUL', patched(two, 'cd\0\0', Buffer.from('cd\0Y'))],
    ['an empty name', patched(two, 'Ncd\0', Buffer.from('N\0\0\0'))],
  ];
  for (const [what, stream] of cases) {
    assert.throws(() => parseAll(stream), PaxFormatError, what);
  }
});

test('GNU.dumpdir: we read the one GNU tar writes in its posix incrementals', (t) => {
  const dir = tmp('inc-gnutar-');
  try {
    fs.mkdirSync(join(dir, 'src', 'sub'), { recursive: true });
    fs.writeFileSync(join(dir, 'src', 'kept'), 'k');
    fs.writeFileSync(join(dir, 'src', 'sub', 'x'), 'x');
    const tar = (args: string[]) =>
      execFileSync('tar', args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    try {
      tar(['--format=posix', '-g', 'snar', '-cf', 'full.tar', '-C', 'src', '.']);
    } catch {
      t.skip('peer missing: GNU tar');
      return;
    }
    // Make the change visible to tar's one-second granularity for the snapshot.
    const old = new Date(Date.now() - 3600_000);
    fs.utimesSync(join(dir, 'src', 'kept'), old, old);
    fs.writeFileSync(join(dir, 'src', 'new'), 'n');
    tar(['--format=posix', '-g', 'snar', '-cf', 'inc.tar', '-C', 'src', '.']);
    const dirs = parseAll(fs.readFileSync(join(dir, 'inc.tar'))).filter((e) => e.type === 'dir');
    const root = dirs.find((e) => e.path === '.' || e.path === './')!;
    assert.ok(root.dumpdir);
    const flags = Object.fromEntries(root.dumpdir.map((d) => [d.name, d.flag]));
    assert.equal(flags['new'], 'Y');
    assert.equal(flags['sub'], 'D');
    assert.ok(flags['kept'] === 'N' || flags['kept'] === 'Y');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

// ---------------------------------------------------------------------------
// Deletions on restore

function dirEntry(path: string, dumpdir?: DumpdirEntry[]): Buffer {
  return encodeHeader({ ...DIR, path, ...(dumpdir ? { dumpdir } : {}) });
}

test('restore: names a dumpdir leaves out are removed (a link, not what it points to); N names stay', () => {
  const base = tmp('inc-purge-');
  const dest = join(base, 'dest');
  const outside = join(base, 'outside');
  try {
    fs.mkdirSync(join(dest, 'gone-dir', 'deep'), { recursive: true });
    fs.writeFileSync(join(dest, 'gone-dir', 'deep', 'f'), 'x');
    fs.mkdirSync(outside);
    fs.writeFileSync(join(outside, 'precious'), 'p');
    fs.symlinkSync(outside, join(dest, 'gone-link'));
    fs.writeFileSync(join(dest, 'gone-file'), 'x');
    fs.writeFileSync(join(dest, 'unchanged'), 'u');
    fs.mkdirSync(join(dest, 'now-a-file'));
    fs.writeFileSync(join(dest, 'now-a-file', 'inner'), 'i');
    fs.mkdirSync(join(dest, 'sub'));
    fs.writeFileSync(join(dest, 'sub', 'old'), 'o');
    const file = (path: string, data: string): Buffer =>
      Buffer.concat([
        encodeHeader({ ...DIR, path, type: 'file', mode: 0o644, size: BigInt(data.length) }),
        Buffer.from(data),
        Buffer.alloc(512 - data.length),
      ]);
    const stream = Buffer.concat([
      dirEntry('.', [
        { name: 'new', flag: 'Y' },
        { name: 'now-a-file', flag: 'Y' },
        { name: 'sub', flag: 'D' },
        { name: 'unchanged', flag: 'N' },
      ]),
      file('new', 'n'),
      file('now-a-file', 'f'),
      dirEntry('sub', []),
      END_OF_ARCHIVE,
    ]);
    const removed: string[] = [];
    const r = new RestoreEngine(
      { dest, overwrite: 'always' },
      { warn: (w) => assert.fail(w), removed: (p) => removed.push(p) },
    );
    r.push(stream);
    const result = r.end();
    assert.deepEqual(fs.readdirSync(dest).sort(), ['new', 'now-a-file', 'sub', 'unchanged']);
    assert.equal(fs.readFileSync(join(dest, 'now-a-file'), 'utf8'), 'f');
    assert.deepEqual(fs.readdirSync(join(dest, 'sub')), []);
    assert.equal(
      fs.readFileSync(join(outside, 'precious'), 'utf8'),
      'p',
      'a link is removed, never followed',
    );
    assert.deepEqual(removed.sort(), ['gone-dir', 'gone-file', 'gone-link', 'now-a-file', 'sub/old']);
    assert.equal(result.removed, 5);

    // overwrite=never and streams without dumpdirs remove nothing.
    fs.writeFileSync(join(dest, 'extra'), 'e');
    for (const [overwrite, s] of [
      ['never', stream],
      ['always', Buffer.concat([dirEntry('.'), END_OF_ARCHIVE])],
    ] as const) {
      const again = new RestoreEngine({ dest, overwrite }, { warn: () => undefined });
      again.push(s);
      assert.equal(again.end().removed, 0);
      assert.ok(fs.existsSync(join(dest, 'extra')), overwrite);
    }
  } finally {
    fs.rmSync(base, { recursive: true, force: true });
  }
});

test('restore with select: only names this restore would put at that very place are removed', () => {
  const dest = tmp('inc-select-');
  try {
    for (const n of ['a', 'b', 'c']) fs.writeFileSync(join(dest, n), n);
    fs.mkdirSync(join(dest, 'elsewhere'));
    fs.writeFileSync(join(dest, 'elsewhere', 'x'), 'x');
    fs.mkdirSync(join(dest, 'moved'));
    fs.writeFileSync(join(dest, 'moved', 'y'), 'y');
    // Archive paths: '.', 'a' (kept); b, c, elsewhere gone. The restore selects
    // b (in place), moves 'elsewhere' to 'moved' and skips c.
    const select = (p: string): string | null =>
      p === '' || p === 'a' || p === 'b'
        ? p
        : p === 'elsewhere'
          ? 'moved'
          : p === 'moved'
            ? 'elsewhere'
            : null;
    const stream = Buffer.concat([dirEntry('.', [{ name: 'a', flag: 'N' }]), END_OF_ARCHIVE]);
    const r = new RestoreEngine({ dest, overwrite: 'always', select }, { warn: () => undefined });
    r.push(stream);
    assert.equal(r.end().removed, 1);
    assert.deepEqual(fs.readdirSync(dest).sort(), ['a', 'c', 'elsewhere', 'moved']);
  } finally {
    fs.rmSync(dest, { recursive: true, force: true });
  }
});
