// What the backup engine captures beyond data (docs/metadata.md), read back
// with our parser, both ways of running (one thread; walker + reader thread):
// xattrs of every namespace root reads on the root, files, directories and a
// symbolic link's own, none for a second hard link, ACLs as text and never as
// xattr records, XATTRS/ACLS off; a sparse file's map and only its regions'
// bytes, at the offsets the parser gives; more xattr bytes than the bound is a
// warning and the file is still backed up. Then the restore engine: a sparse
// entry written with holes and truncated to its real size, xattrs and ACLs set.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';

import { BackupEngine, MAX_XATTR_BYTES } from '../../src/backup/engine.js';
import type { BackupSpec, StreamSink } from '../../src/backup/engine.js';
import { PaxParser } from '../../src/backup/pax-parser.js';
import type { ParsedEntry } from '../../src/backup/pax-parser.js';
import { RestoreEngine } from '../../src/backup/restore.js';
import { dataRegions, lgetxattr, llistxattr, lsetxattr } from '../../src/util/native-fs.js';
import { withReaderThread } from '../helpers/reader-pipe.js';

const KiB = 1024;
const MiB = 1024 * KiB;

/** On tmpfs where there is one: it takes large xattr values and has holes. */
function scratch(): string {
  return fs.mkdtempSync(join(fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir(), 'meta-capture-'));
}

function makeTree(root: string): void {
  lsetxattr(root, 'user.root', Buffer.from('on the root'));
  const f = join(root, 'file');
  fs.writeFileSync(f, 'data');
  lsetxattr(f, 'user.bin', Buffer.from([0, 10, 0, 255]));
  lsetxattr(f, 'trusted.t', Buffer.from('trusted'));
  fs.linkSync(f, join(root, 'hardlink'));
  fs.mkdirSync(join(root, 'dir'));
  lsetxattr(join(root, 'dir'), 'user.d', Buffer.from('dir'));
  execFileSync('setfacl', ['-m', 'u:nobody:rw,d:g:nogroup:r', join(root, 'dir')]);
  fs.symlinkSync('file', join(root, 'link'));
  lsetxattr(join(root, 'link'), 'trusted.l', Buffer.from('link'));
  // 8 MiB, data at 1 MiB (4 KiB) and at 5 MiB (4 KiB + 100 bytes), ending in a hole.
  const s = join(root, 'sparse');
  const fd = fs.openSync(s, 'w');
  fs.writeSync(fd, Buffer.alloc(4 * KiB, 0x61), 0, 4 * KiB, MiB);
  fs.writeSync(fd, Buffer.alloc(4 * KiB + 100, 0x62), 0, 4 * KiB + 100, 5 * MiB);
  fs.ftruncateSync(fd, 8 * MiB);
  fs.closeSync(fd);
}

interface Parsed {
  entry: ParsedEntry;
  /** Data slices with their file offsets. */
  data: { at: bigint; bytes: Buffer }[];
}

function parse(archive: Buffer): Map<string, Parsed> {
  const out = new Map<string, Parsed>();
  new PaxParser().push(archive, {
    onEntry: (e) => void out.set(e.path.replace(/\/$/, '') || '.', { entry: e, data: [] }),
    onData: (e, d, at) => out.get(e.path.replace(/\/$/, '') || '.')!.data.push({ at, bytes: Buffer.from(d) }),
  });
  return out;
}

async function backup(
  root: string,
  how: 'one thread' | 'reader thread',
  extra: Partial<BackupSpec> = {},
): Promise<{ archive: Buffer; warnings: string[] }> {
  const spec: BackupSpec = { root, files: [], excludes: [], ...extra };
  const warnings: string[] = [];
  const hooks = { aborted: () => false, warn: (t: string) => warnings.push(t) };
  if (how === 'one thread') {
    const parts: Buffer[] = [];
    const sink: StreamSink = {
      write: async (c) => void parts.push(Buffer.from(c)),
      end: async () => undefined,
    };
    await new BackupEngine(spec, sink, hooks).run();
    return { archive: Buffer.concat(parts), warnings };
  }
  const { archive } = await withReaderThread(
    (pipe, sink) => new BackupEngine(spec, sink, hooks, pipe).run(),
    (w) => warnings.push(w),
  );
  return { archive, warnings };
}

const xattrsOf = (p: Parsed | undefined): Record<string, string> =>
  Object.fromEntries((p?.entry.xattrs ?? []).map((x) => [x.name, x.value.toString('hex')]));

for (const how of ['one thread', 'reader thread'] as const) {
  test(`${how}: xattrs and ACLs of every kind of entry, a sparse file's regions only`, async () => {
    const root = scratch();
    try {
      makeTree(root);
      const { archive, warnings } = await backup(root, how);
      assert.deepEqual(warnings, []);
      const got = parse(archive);
      assert.deepEqual(xattrsOf(got.get('.')), { 'user.root': Buffer.from('on the root').toString('hex') });
      assert.deepEqual(xattrsOf(got.get('file')), {
        'user.bin': '000a00ff',
        'trusted.t': Buffer.from('trusted').toString('hex'),
      });
      assert.equal(got.get('hardlink')!.entry.type, 'hardlink');
      assert.equal(got.get('hardlink')!.entry.xattrs, undefined);
      assert.deepEqual(xattrsOf(got.get('link')), { 'trusted.l': Buffer.from('link').toString('hex') });
      const dir = got.get('dir')!.entry;
      assert.deepEqual(xattrsOf(got.get('dir')), { 'user.d': Buffer.from('dir').toString('hex') });
      assert.equal(dir.aclAccess, 'user::rwx\nuser:nobody:rw-\ngroup::r-x\nmask::rwx\nother::r-x\n');
      assert.equal(dir.aclDefault, 'user::rwx\ngroup::r-x\ngroup:nogroup:r--\nmask::r-x\nother::r-x\n');
      assert.equal(got.get('file')!.entry.aclAccess, undefined);

      const sparse = got.get('sparse')!;
      assert.equal(sparse.entry.size, BigInt(8 * MiB));
      // The second region widened to a 512-byte block (GNU tar reads each from a block boundary).
      assert.deepEqual(sparse.entry.sparse, {
        realSize: BigInt(8 * MiB),
        map: [
          { offset: BigInt(MiB), length: 4096n },
          { offset: BigInt(5 * MiB), length: 8192n },
          { offset: BigInt(8 * MiB), length: 0n },
        ],
      });
      const at = sparse.data.map((d) => d.at);
      const bytes = Buffer.concat(sparse.data.map((d) => d.bytes));
      assert.equal(bytes.length, 4096 + 8192);
      assert.equal(at[0], BigInt(MiB));
      assert.deepEqual(bytes.subarray(0, 4096), Buffer.alloc(4096, 0x61));
      assert.deepEqual(bytes.subarray(4096, 4096 + 4196), Buffer.alloc(4196, 0x62));
      assert.deepEqual(bytes.subarray(4096 + 4196), Buffer.alloc(8192 - 4196));
      assert.ok(archive.length < 64 * KiB, `archive of ${archive.length} bytes`);
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
    }
  });

  test(`${how}: XATTRS off keeps ACLs, ACLS off keeps xattrs, both off neither`, async () => {
    const root = scratch();
    try {
      makeTree(root);
      const noX = parse((await backup(root, how, { xattrs: false })).archive);
      assert.equal(noX.get('file')!.entry.xattrs, undefined);
      assert.ok(noX.get('dir')!.entry.aclAccess);
      const noA = parse((await backup(root, how, { acls: false })).archive);
      assert.equal(noA.get('dir')!.entry.aclAccess, undefined);
      assert.equal(noA.get('dir')!.entry.aclDefault, undefined);
      assert.ok(noA.get('file')!.entry.xattrs);
      const none = parse((await backup(root, how, { xattrs: false, acls: false })).archive);
      for (const [, p] of none) {
        assert.equal(p.entry.xattrs, undefined);
        assert.equal(p.entry.aclAccess, undefined);
      }
      // The sparse map does not depend on them.
      assert.ok(none.get('sparse')!.entry.sparse);
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
    }
  });
}

test('more xattr bytes than the bound: a warning naming the file and attribute, the file is backed up', async () => {
  const root = scratch();
  try {
    const f = join(root, 'heavy');
    fs.writeFileSync(f, 'still here');
    // tmpfs takes values to 64 KiB: five make more than the bound.
    const value = Buffer.alloc(64 * KiB - 1, 0x78);
    let n = 0;
    for (; n * value.length <= MAX_XATTR_BYTES; n++) lsetxattr(f, `user.v${n}`, value);
    const { archive, warnings } = await backup(root, 'one thread');
    const e = parse(archive).get('heavy')!;
    assert.equal(Buffer.concat(e.data.map((d) => d.bytes)).toString(), 'still here');
    // Each costs its name and value; those past the bound are left out.
    const fit = Math.floor(MAX_XATTR_BYTES / (value.length + 'user.v0'.length));
    assert.ok(fit < n);
    assert.equal(e.entry.xattrs!.length, fit);
    assert.equal(warnings.length, 1);
    assert.match(
      warnings[0]!,
      /^heavy: extended attribute user\.v\d+ not stored \(more than 262144 bytes of attributes\)/,
    );
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});

test('restore: a sparse entry keeps its holes and real size; xattrs and ACLs come back', async () => {
  const root = scratch();
  const dest = scratch();
  try {
    makeTree(root);
    const { archive } = await backup(root, 'one thread');
    const warnings: string[] = [];
    const r = new RestoreEngine({ dest, overwrite: 'always' }, { warn: (t) => warnings.push(t) });
    // In small pieces: the regions' places must survive any chunking.
    for (let i = 0; i < archive.length; i += 1000) r.push(archive.subarray(i, i + 1000));
    const res = r.end();
    assert.deepEqual(warnings, []);
    assert.equal(res.failed, 0);
    const s = join(dest, 'sparse');
    const st = fs.statSync(s);
    assert.equal(st.size, 8 * MiB);
    assert.ok(st.blocks * 512 <= 64 * KiB, `${st.blocks} blocks`);
    const fd = fs.openSync(s, 'r');
    try {
      assert.deepEqual(dataRegions(fd, st.size), [
        { offset: BigInt(MiB), length: 4096n },
        { offset: BigInt(5 * MiB), length: 8192n },
      ]);
    } finally {
      fs.closeSync(fd);
    }
    assert.deepEqual(fs.readFileSync(s), fs.readFileSync(join(root, 'sparse')));
    for (const p of ['file', 'dir', '']) {
      const names = (at: string) =>
        llistxattr(at)
          .map((n) => n.toString())
          .sort();
      assert.deepEqual(names(join(dest, p)), names(join(root, p)), p);
      for (const n of names(join(root, p)))
        assert.deepEqual(lgetxattr(join(dest, p), n), lgetxattr(join(root, p), n), `${p} ${n}`);
    }
    assert.deepEqual(lgetxattr(join(dest, 'link'), 'trusted.l'), Buffer.from('link'));
    const facl = (p: string) =>
      execFileSync('getfacl', ['--omit-header', '--absolute-names', p], { encoding: 'utf8' });
    assert.equal(facl(join(dest, 'dir')), facl(join(root, 'dir')));
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
    fs.rmSync(dest, { recursive: true, force: true });
  }
});
