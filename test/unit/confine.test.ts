// Confinement (src/util/confine.ts, docs/security.md): a table of DMA-named
// paths against an export with symbolic links at every position (pointing out
// of the export, into it, nowhere), `..` everywhere, FILES entries below a
// backup root, a directory or file swapped for a link between the lstat and
// the open, and mount points and bind mounts inside the export (root only).

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { BackupEngine } from '../../src/backup/engine.js';
import type { StreamSink } from '../../src/backup/engine.js';
import { PaxParser } from '../../src/backup/pax-parser.js';
import { decodeName, encodeName } from '../../src/util/byte-name.js';
import {
  ConfineError,
  ConfinedDir,
  ConfinedTree,
  closeBelow,
  confineToExport,
  isInside,
  resolveBelow,
} from '../../src/util/confine.js';
import type { ConfineReason } from '../../src/util/confine.js';
import { withReaderThread } from '../helpers/reader-pipe.js';

const SECRET = 'the-secret-outside-the-export';

let base: string;
let exp: string;
let outside: string;

before(() => {
  base = fs.realpathSync(fs.mkdtempSync(join(os.tmpdir(), 'ndmpd-confine-')));
  exp = join(base, 'export');
  outside = join(base, 'outside');
  fs.mkdirSync(join(exp, 'a', 'b', 'c'), { recursive: true });
  fs.mkdirSync(join(outside, 'b', 'c'), { recursive: true });
  fs.writeFileSync(join(outside, 'secret'), SECRET);
  fs.writeFileSync(join(exp, 'a', 'file'), 'inside');
  // Out of the export: absolute and relative; into it: absolute and relative; nowhere.
  fs.symlinkSync(outside, join(exp, 'out'));
  fs.symlinkSync('/', join(exp, 'rootlink'));
  fs.symlinkSync(outside, join(exp, 'a', 'out'));
  fs.symlinkSync('../../outside', join(exp, 'a', 'relout'));
  fs.symlinkSync(outside, join(exp, 'a', 'b', 'out'));
  fs.symlinkSync(join(exp, 'a'), join(exp, 'in'));
  fs.symlinkSync('b', join(exp, 'a', 'relin'));
  fs.symlinkSync('c', join(exp, 'a', 'b', 'lastin'));
  fs.symlinkSync(join(exp, 'nowhere'), join(exp, 'dangling'));
  fs.symlinkSync('nowhere', join(exp, 'a', 'dangling'));
  // The administrator's export path may itself be a symbolic link.
  fs.symlinkSync(exp, join(base, 'export-link'));
});
after(() => fs.rmSync(base, { recursive: true, force: true }));

type Expect = { rel: string; missing?: string[] } | { reason: ConfineReason; message?: RegExp };

describe('confineToExport: absolute DMA paths', () => {
  const cases: [string, string, { allowMissing?: boolean; directory?: boolean }, Expect][] = [
    ['the export itself', '', {}, { rel: '' }],
    ['a directory below', 'a/b/c', { directory: true }, { rel: 'a/b/c' }],
    ['. and empty components dropped', './a//b/./c/', {}, { rel: 'a/b/c' }],
    ['a file (not asked to be a directory)', 'a/file', {}, { rel: 'a/file' }],
    ['a file asked to be a directory', 'a/file', { directory: true }, { reason: 'not-directory' }],
    ['a file in the middle', 'a/file/x', { allowMissing: true }, { reason: 'not-directory' }],
    // Symbolic links at every position, whatever they point at.
    [
      'first component, pointing out (absolute)',
      'out/b',
      {},
      { reason: 'symlink', message: /"out" is a symbolic link; name the directory itself/ },
    ],
    ['first component, the host root', 'rootlink/etc', {}, { reason: 'symlink', message: /"rootlink"/ }],
    ['last component, the host root', 'rootlink', { directory: true }, { reason: 'symlink' }],
    ['middle component, pointing out (absolute)', 'a/out/b/c', {}, { reason: 'symlink', message: /"out"/ }],
    [
      'middle component, pointing out (relative)',
      'a/relout/b',
      {},
      { reason: 'symlink', message: /"relout"/ },
    ],
    ['last component, pointing out', 'a/b/out', {}, { reason: 'symlink' }],
    ['first component, pointing inside (absolute)', 'in/b', {}, { reason: 'symlink', message: /"in"/ }],
    [
      'middle component, pointing inside (relative)',
      'a/relin/c',
      {},
      { reason: 'symlink', message: /"relin"/ },
    ],
    ['last component, pointing inside', 'a/b/lastin', {}, { reason: 'symlink' }],
    ['first component, dangling', 'dangling/x', { allowMissing: true }, { reason: 'symlink' }],
    ['last component, dangling', 'a/dangling', { allowMissing: true }, { reason: 'symlink' }],
    // `..` in every position, even where it would stay inside.
    ['.. first', '../outside', {}, { reason: 'dotdot' }],
    ['.. in the middle', 'a/../a/b', {}, { reason: 'dotdot' }],
    ['.. last', 'a/b/..', {}, { reason: 'dotdot' }],
    // Destinations a restore creates.
    [
      'missing trailing components allowed',
      'a/b/new/deeper',
      { allowMissing: true },
      {
        rel: 'a/b/new/deeper',
        missing: ['new', 'deeper'],
      },
    ],
    ['missing components not allowed', 'a/b/new', {}, { reason: 'missing' }],
  ];
  for (const [what, below, opts, want] of cases) {
    test(what, () => {
      const path = below === '' ? exp : `${exp}/${below}`;
      const run = () => confineToExport(path, [{ path: exp }], { what: 'FILESYSTEM', ...opts });
      if ('rel' in want) {
        const c = run();
        assert.equal(c.root, exp);
        assert.equal(c.rel, want.rel);
        assert.equal(c.path, want.rel === '' ? exp : join(exp, want.rel));
        assert.deepEqual(c.missing, want.missing ?? []);
      } else {
        assert.throws(run, (e: unknown) => {
          assert.ok(e instanceof ConfineError, String(e));
          assert.equal(e.reason, want.reason, e.message);
          assert.equal(e.code, 'NDMPD_CONFINE');
          assert.match(e.message, new RegExp(`^FILESYSTEM ${path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
          if (want.message) assert.match(e.message, want.message);
          return true;
        });
      }
    });
  }

  test('the message names the component, as the DMA is told', () => {
    assert.throws(() => confineToExport(`${exp}/a/out/b`, [{ path: exp }], { what: 'FILESYSTEM' }), {
      message: `FILESYSTEM ${exp}/a/out/b: "out" is a symbolic link; name the directory itself`,
    });
  });

  test('an export configured through a symbolic link: matched by that path and by its real path', () => {
    const link = join(base, 'export-link');
    for (const p of [`${link}/a/b`, `${exp}/a/b`]) {
      const c = confineToExport(p, [{ path: link }], { what: 'PREFIX' });
      assert.equal(c.root, exp);
      assert.equal(c.rel, 'a/b');
      assert.equal(c.exportPath, link);
    }
    // Below the trusted part, links are refused as ever.
    assert.throws(
      () => confineToExport(`${link}/out`, [{ path: link }], { what: 'PREFIX' }),
      /"out" is a symbolic/,
    );
  });

  test('outside every export, relative, or next to an export with a common prefix', () => {
    const reason = (p: string) => {
      try {
        confineToExport(p, [{ path: exp }], { what: 'PREFIX', allowMissing: true });
      } catch (e) {
        return (e as ConfineError).reason;
      }
      return 'accepted';
    };
    assert.equal(reason(outside), 'outside');
    assert.equal(reason('/etc'), 'outside');
    assert.equal(reason(`${exp}-other/x`), 'outside');
    assert.equal(reason('export/a'), 'relative');
  });

  test('isInside is lexical and respects component boundaries', () => {
    assert.equal(isInside('/srv/x', '/srv/x'), true);
    assert.equal(isInside('/srv/x', '/srv/x', { strict: true }), false);
    assert.equal(isInside('/srv/x', '/srv/x/y'), true);
    assert.equal(isInside('/srv/x', '/srv/xy'), false);
    assert.equal(isInside('/', '/etc'), true);
  });
});

describe('resolveBelow: FILES entries below a backup root', () => {
  const cases: [string, string, { type: string } | { reason: ConfineReason } | { errno: string }][] = [
    ['a directory', 'a/b', { type: 'dir' }],
    ['. and empty components', './a//b/', { type: 'dir' }],
    ['the root itself', '.', { type: 'dir' }],
    ['a symbolic link named last: the link itself', 'rootlink', { type: 'symlink' }],
    ['a dangling link named last', 'dangling', { type: 'symlink' }],
    ['crossing a link out (first)', 'rootlink/etc/passwd', { reason: 'symlink' }],
    ['crossing a link out (middle)', 'a/out/secret', { reason: 'symlink' }],
    ['crossing a link inside', 'in/b', { reason: 'symlink' }],
    ['crossing a file', 'a/file/x', { reason: 'not-directory' }],
    ['..', 'a/../a', { reason: 'dotdot' }],
    ['missing', 'a/nope', { errno: 'ENOENT' }],
  ];
  for (const [what, p, want] of cases) {
    test(what, () => {
      const root = ConfinedDir.open(exp);
      try {
        if ('type' in want) {
          const r = resolveBelow(root, p, 'FILES entry');
          try {
            const t = r.stat.isDirectory() ? 'dir' : r.stat.isSymbolicLink() ? 'symlink' : 'file';
            assert.equal(t, want.type);
            assert.equal(r.stats.length, r.rel === '.' ? 0 : r.rel.split('/').length);
          } finally {
            closeBelow(r);
          }
        } else if ('reason' in want) {
          assert.throws(
            () => resolveBelow(root, p, 'FILES entry'),
            (e: unknown) =>
              e instanceof ConfineError && e.reason === want.reason && /^FILES entry /.test(e.message),
          );
        } else {
          assert.throws(() => resolveBelow(root, p, 'FILES entry'), { code: want.errno });
        }
      } finally {
        root.close();
      }
    });
  }
});

describe('swapped between the lstat and the open', () => {
  test('a directory swapped for a link (out or in): refused, never followed', () => {
    const d = fs.mkdtempSync(join(base, 'swap-'));
    fs.mkdirSync(join(d, 'sub'));
    const root = ConfinedDir.open(d);
    try {
      const st = root.lstat('sub');
      fs.renameSync(join(d, 'sub'), join(d, 'sub.old'));
      fs.symlinkSync(outside, join(d, 'sub'));
      // O_NOFOLLOW|O_DIRECTORY on a link: ENOTDIR or ELOOP, never the link's target.
      assert.throws(
        () => root.openDir('sub', st),
        (e: unknown) => /^(ELOOP|ENOTDIR)$/.test(String((e as NodeJS.ErrnoException).code)),
      );
      // Another directory under the same name: not the one listed.
      fs.unlinkSync(join(d, 'sub'));
      fs.mkdirSync(join(d, 'sub'));
      assert.throws(
        () => root.openDir('sub', st),
        (e: unknown) => (e as ConfineError).reason === 'changed',
      );
      // Reopened by path from elsewhere (the reader thread): checked the same way.
      fs.rmdirSync(join(d, 'sub'));
      fs.symlinkSync(join(outside, 'b'), join(d, 'sub'));
      assert.throws(() => ConfinedDir.openVerified(join(d, 'sub'), st));
      fs.unlinkSync(join(d, 'sub'));
      fs.renameSync(join(d, 'sub.old'), join(d, 'sub'));
      root.openDir('sub', st).close();
    } finally {
      root.close();
    }
  });

  test('a file swapped for a link or another file: refused', () => {
    const d = fs.mkdtempSync(join(base, 'swapf-'));
    fs.writeFileSync(join(d, 'f'), 'mine');
    const root = ConfinedDir.open(d);
    try {
      const st = root.lstat('f');
      fs.renameSync(join(d, 'f'), join(d, 'f.old'));
      fs.symlinkSync(join(outside, 'secret'), join(d, 'f'));
      assert.throws(() => root.openFile('f', st), { code: 'ELOOP' });
      fs.unlinkSync(join(d, 'f'));
      fs.writeFileSync(join(d, 'f'), 'other');
      assert.throws(
        () => root.openFile('f', st),
        (e: unknown) => (e as ConfineError).reason === 'changed',
      );
      // A fifo in its place: the open does not hang, and it is not the file listed.
      fs.unlinkSync(join(d, 'f'));
      execFileSync('mkfifo', [join(d, 'f')]);
      assert.throws(
        () => root.openFile('f', st),
        (e: unknown) => (e as ConfineError).reason === 'changed',
      );
    } finally {
      root.close();
    }
  });

  for (const withReader of [false, true]) {
    test(`a backup${withReader ? ' with a reader thread' : ''}: a directory swapped for a link to outside while the walk runs gives no byte of outside`, async () => {
      const root = fs.mkdtempSync(join(base, 'race-'));
      fs.writeFileSync(join(root, 'a'), 'first');
      fs.mkdirSync(join(root, 'd'));
      fs.writeFileSync(join(root, 'd', 'a'), 'd-first');
      fs.writeFileSync(join(root, 'd', 'secret'), 'mine');
      const evil = fs.mkdtempSync(join(base, 'evil-'));
      fs.writeFileSync(join(evil, 'a'), SECRET);
      fs.writeFileSync(join(evil, 'secret'), SECRET);
      // After 'd/a' is seen (the listing of d is done), d becomes a link to `evil`.
      let swapped = false;
      const swap = (path: string) => {
        if (path !== 'd/a' || swapped) return;
        swapped = true;
        fs.renameSync(join(root, 'd'), join(root, 'd.old'));
        fs.symlinkSync(evil, join(root, 'd'));
      };
      const warnings: string[] = [];
      const hooks = { aborted: () => false, warn: (t: string) => warnings.push(t) };
      let stream: Buffer;
      if (withReader) {
        ({ archive: stream } = await withReaderThread(
          (pipe, sink) =>
            new BackupEngine(
              { root, files: [], excludes: [] },
              sink,
              { ...hooks, record: (e) => (swap(e.path), null) },
              pipe,
            ).run(),
          (w) => warnings.push(w),
        ));
      } else {
        const parts: Buffer[] = [];
        const sink: StreamSink = {
          write: async (c) => void parts.push(Buffer.from(c)),
          end: async () => undefined,
        };
        await new BackupEngine({ root, files: [], excludes: [] }, sink, {
          ...hooks,
          entry: (e) => swap(e.path),
        }).run();
        stream = Buffer.concat(parts);
      }
      assert.ok(swapped);
      assert.equal(stream.includes(Buffer.from(SECRET)), false, 'no byte of outside in the stream');
      const contents = new Map<string, string>();
      new PaxParser().push(stream, {
        onEntry: (e) => void contents.set(e.path, ''),
        onData: (e, d) => void contents.set(e.path, contents.get(e.path)! + Buffer.from(d).toString()),
      });
      if (withReader) {
        // The reader opens d again by its path: not the directory listed, so d/secret is left out.
        for (let i = 0; i < 50 && !warnings.some((w) => /^d\/secret: changed/.test(w)); i++)
          await new Promise((r) => setTimeout(r, 10));
        assert.ok(
          warnings.some((w) => /^d\/secret: changed while being backed up/.test(w)),
          warnings.join('\n'),
        );
        assert.equal(contents.has('d/secret'), false);
      } else {
        // One thread reads through d's descriptor: the directory listed, wherever it went.
        assert.equal(contents.get('d/secret'), 'mine');
      }
    });
  }
});

/** Tests that mount need root; under CI they must not pass by being skipped. */
function needRoot(): boolean {
  if (process.getuid?.() === 0) return true;
  if (process.env.CI === 'true') assert.fail('this test mounts file systems and must run as root under CI');
  return false;
}

describe('mount points inside an export are part of it', () => {
  test('a tmpfs and a bind mount inside the export: resolved and backed up across', async (t) => {
    if (!needRoot()) {
      t.diagnostic('not root: mounts not tested');
      return;
    }
    const root = fs.mkdtempSync(join(base, 'mounts-'));
    const tmpfs = join(root, 'tmpfs');
    const bind = join(root, 'bind');
    const bound = fs.mkdtempSync(join(base, 'bound-'));
    fs.mkdirSync(tmpfs);
    fs.mkdirSync(bind);
    fs.writeFileSync(join(bound, 'on-bind'), 'bound');
    const mounted: string[] = [];
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', tmpfs]);
      mounted.push(tmpfs);
      execFileSync('mount', ['--bind', bound, bind]);
      mounted.push(bind);
      fs.writeFileSync(join(tmpfs, 'on-tmpfs'), 'tmp');
      for (const p of [tmpfs, bind]) {
        const c = confineToExport(p, [{ path: root }], { what: 'FILESYSTEM', directory: true });
        assert.equal(c.path, p);
      }
      // The tmpfs is another file system; the bind mount shows the same one elsewhere.
      assert.notEqual(fs.statSync(tmpfs, { bigint: true }).dev, fs.statSync(root, { bigint: true }).dev);
      const parts: Buffer[] = [];
      const sink: StreamSink = {
        write: async (c) => void parts.push(Buffer.from(c)),
        end: async () => undefined,
      };
      const warnings: string[] = [];
      await new BackupEngine({ root, files: [], excludes: [] }, sink, {
        aborted: () => false,
        warn: (w) => warnings.push(w),
      }).run();
      const names: string[] = [];
      new PaxParser().push(Buffer.concat(parts), {
        onEntry: (e) => void names.push(e.path),
        onData: () => undefined,
      });
      assert.ok(names.includes('tmpfs/on-tmpfs'), names.join(' '));
      assert.ok(names.includes('bind/on-bind'), names.join(' '));
      assert.deepEqual(warnings, []);
    } finally {
      for (const m of mounted.reverse()) execFileSync('umount', [m]);
    }
  });
});

describe('names that are not UTF-8 (docs/names.md)', () => {
  // Latin-1 "café" and "ü", a lone 0xff and a newline: bytes node's string paths would turn into U+FFFD.
  const latin = Buffer.from('caf\xe9', 'latin1');
  const sub = Buffer.from('d\xfcr\xff', 'latin1');
  const nl = Buffer.from('new\nline\xe9', 'latin1');
  const j = (...parts: (string | Buffer)[]): Buffer =>
    Buffer.concat(parts.flatMap((p, i) => (i === 0 ? [Buffer.from(p)] : [Buffer.from('/'), Buffer.from(p)])));

  test('list, lstat, readlink, openDir and openFile take and give the exact bytes', () => {
    const d = fs.mkdtempSync(join(base, 'bytes-'));
    fs.writeFileSync(j(d, latin), 'latin');
    fs.mkdirSync(j(d, sub));
    fs.writeFileSync(j(d, sub, nl), 'deep');
    fs.symlinkSync(Buffer.concat([Buffer.from('../'), latin]), j(d, sub, 'ln'));
    const root = ConfinedDir.open(d);
    try {
      const names = root.list().sort();
      assert.deepEqual(names, [decodeName(latin), decodeName(sub)].sort());
      assert.ok(
        names.every((n) => !n.includes('\ufffd')),
        'no U+FFFD',
      );
      assert.deepEqual(encodeName(decodeName(latin)), latin);
      const st = root.lstat(decodeName(latin));
      assert.ok(st.isFile());
      const fd = root.openFile(decodeName(latin), st);
      try {
        assert.equal(fs.readFileSync(fd, 'utf8'), 'latin');
      } finally {
        fs.closeSync(fd);
      }
      const dst = root.lstat(decodeName(sub));
      const dir = root.openDir(decodeName(sub), dst);
      try {
        assert.equal(dir.path, `${d}/${decodeName(sub)}`);
        assert.deepEqual(dir.list().sort(), ['ln', decodeName(nl)].sort());
        assert.deepEqual(encodeName(dir.readlink('ln')), Buffer.concat([Buffer.from('../'), latin]));
        assert.deepEqual(
          dir.at(decodeName(nl)),
          Buffer.concat([Buffer.from(`/proc/self/fd/${dir.fd}/`), nl]),
        );
      } finally {
        dir.close();
      }
      // Opened again by its path (the reader thread's way): the same directory.
      ConfinedDir.openVerified(dir.path, dst).close();
      // resolveBelow through a Latin-1 directory to a name with a newline.
      const r = resolveBelow(root, `${decodeName(sub)}/${decodeName(nl)}`, 'FILES entry');
      try {
        assert.ok(r.stat.isFile());
        assert.equal(r.name, decodeName(nl));
      } finally {
        closeBelow(r);
      }
    } finally {
      root.close();
    }
  });

  test('confineToExport finds a non-UTF-8 path in an export, and messages print it escaped', () => {
    const d = fs.mkdtempSync(join(base, 'bytes-exp-'));
    fs.mkdirSync(j(d, sub, latin), { recursive: true });
    const c = confineToExport(`${d}/${decodeName(sub)}/${decodeName(latin)}`, [{ path: d }], {
      what: 'FILESYSTEM',
    });
    assert.equal(c.rel, `${decodeName(sub)}/${decodeName(latin)}`);
    assert.ok(c.stat.isDirectory());
    fs.symlinkSync('/', j(d, sub, Buffer.from('l\xe9', 'latin1')));
    assert.throws(
      () => confineToExport(`${d}/${decodeName(sub)}/l\udce9/x`, [{ path: d }], { what: 'FILESYSTEM' }),
      (e: unknown) =>
        e instanceof ConfineError &&
        e.reason === 'symlink' &&
        e.message.includes('"l\\xe9" is a symbolic link') &&
        e.message.includes('d\\xfcr\\xff'),
    );
  });

  test('a ConfinedTree makes directories with the exact bytes', () => {
    const d = fs.mkdtempSync(join(base, 'bytes-tree-'));
    const tree = new ConfinedTree(ConfinedDir.open(d));
    try {
      const dir = tree.dir(`${decodeName(sub)}/${decodeName(nl)}`, 0o755);
      fs.writeFileSync(dir.at(decodeName(latin)), 'x');
    } finally {
      tree.close();
    }
    assert.deepEqual(fs.readdirSync(d, { encoding: 'buffer' }), [sub]);
    assert.deepEqual(fs.readdirSync(j(d, sub), { encoding: 'buffer' }), [nl]);
    assert.deepEqual(fs.readdirSync(j(d, sub, nl), { encoding: 'buffer' }), [latin]);
  });
});
