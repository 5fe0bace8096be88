// Extended attributes, POSIX ACLs and sparse files through a real session
// (docs/metadata.md): a tree on tmpfs (ext4 here keeps at most a block of
// xattrs per file, tmpfs takes 64 KiB values) with user.* xattrs of binary
// values (NUL, newline, 64 KiB), a trusted.* one (on a file and on a symbolic
// link), an access ACL and a directory's access and default ACLs set with
// setfacl, a 1 GiB file holding 12 KiB in three regions and ending in a hole,
// and one ending in data. Backed up by our server to its tape, over TCP (the
// engine's own copy loop) and LOCAL (the reader thread); GNU tar --xattrs
// --acls extracts the tape and our recover restores it: both identical
// (getfattr -d -m- -e hex, getfacl, the data regions and st_blocks, content
// hashes). The tape holds the sparse file's 12 KiB, not its 1 GiB. XATTRS=n
// ACLS=n leave them out; a restore onto ramfs, which takes no xattrs at all,
// warns per file and succeeds.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import { join, relative } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { Library } from '../../src/devices/library.js';
import { dataRegions, lsetxattr } from '../../src/util/native-fs.js';
import {
  AddrType,
  DataHaltReason,
  ErrorCode,
  INVALID_U64,
  M,
  MoverMode,
  NdmpError,
  TapeOpenMode,
} from '../../src/wire/index.js';
import type { HaltedPost, Pval } from '../../src/wire/index.js';
import { client, startServer } from '../helpers/in-process.js';
import type { TestServer } from '../helpers/in-process.js';
import { tapeFileBytes } from '../helpers/tapes.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;

/** The 64 KiB value: every byte value, NULs and newlines included. */
const BIG = Buffer.alloc(64 * KiB);
for (let i = 0; i < BIG.length; i++) BIG[i] = (i * 31 + 7) & 0xff;

function makeTree(tree: string): void {
  fs.mkdirSync(tree);
  const bin = join(tree, 'binary-xattrs');
  fs.writeFileSync(bin, 'data of a file with xattrs\n');
  lsetxattr(bin, 'user.nul', Buffer.from([0, 1, 0, 0xff, 0]));
  lsetxattr(bin, 'user.newline', Buffer.from('line one\nline two\n'));
  lsetxattr(bin, 'user.big', BIG);
  lsetxattr(bin, 'user.empty', Buffer.alloc(0));
  lsetxattr(bin, 'trusted.root-only', Buffer.from('trusted value'));
  fs.symlinkSync('binary-xattrs', join(tree, 'link'));
  lsetxattr(join(tree, 'link'), 'trusted.on-the-link', Buffer.from('link value'));

  const aclFile = join(tree, 'acl-file');
  fs.writeFileSync(aclFile, 'with an access ACL\n');
  execFileSync('setfacl', ['-m', 'u:nobody:rw,g:adm:r,u:4242:x', aclFile]);
  const aclDir = join(tree, 'acl-dir');
  fs.mkdirSync(aclDir);
  execFileSync('setfacl', ['-m', 'u:nobody:rx,d:u:nobody:rwx,d:g:nogroup:rx,d:o::-', aclDir]);
  // Made after the default ACL: it inherits one, which is its own access ACL now.
  fs.writeFileSync(join(aclDir, 'inherited'), 'inside\n');
  lsetxattr(aclDir, 'user.dir-tag', Buffer.from('on a directory'));

  // 1 GiB, 12 KiB of data in three regions, ending in a hole.
  const sparse = join(tree, 'sparse');
  const fd = fs.openSync(sparse, 'w');
  for (const [at, fill] of [
    [1 * MiB, 0x61],
    [300 * MiB + 4 * KiB, 0x62],
    [700 * MiB, 0x63],
  ] as const)
    fs.writeSync(fd, Buffer.alloc(4 * KiB, fill), 0, 4 * KiB, at);
  fs.ftruncateSync(fd, GiB);
  fs.closeSync(fd);
  // Ending in data, with a hole first.
  const tail = join(tree, 'sparse-tail');
  const fd2 = fs.openSync(tail, 'w');
  fs.writeSync(fd2, Buffer.alloc(5000, 0x64), 0, 5000, 64 * MiB - 5000);
  fs.closeSync(fd2);
  lsetxattr(tail, 'user.sparse-and-xattr', Buffer.from('both'));
}

/** What getfattr and getfacl say of every entry, keyed by relative path; regions and hashes of files. */
function describeTree(root: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (dir: string): void => {
    for (const name of fs.readdirSync(dir).sort()) {
      const p = join(dir, name);
      const rel = relative(root, p);
      const st = fs.lstatSync(p);
      const xattrs = execFileSync('getfattr', ['-h', '-d', '-m', '-', '-e', 'hex', '--absolute-names', p], {
        encoding: 'utf8',
      })
        .split('\n')
        .filter((l) => l !== '' && !l.startsWith('# file:'))
        .join('\n');
      let facl = '';
      if (!st.isSymbolicLink())
        facl = execFileSync('getfacl', ['--omit-header', '--numeric', '--absolute-names', p], {
          encoding: 'utf8',
        });
      let data = '';
      if (st.isFile()) {
        const fd = fs.openSync(p, 'r');
        try {
          const regions = dataRegions(fd, st.size);
          const h = createHash('sha256');
          const buf = Buffer.alloc(64 * KiB);
          for (const r of regions) {
            for (let at = r.offset; at < r.offset + r.length;) {
              const n = fs.readSync(
                fd,
                buf,
                0,
                Number(r.offset + r.length - at < 64n * 1024n ? r.offset + r.length - at : 64n * 1024n),
                Number(at),
              );
              h.update(buf.subarray(0, n));
              at += BigInt(n);
            }
          }
          data = `size ${st.size} regions ${regions.map((r) => `${r.offset}+${r.length}`).join(',')} sha256 ${h.digest('hex')}`;
        } finally {
          fs.closeSync(fd);
        }
      }
      out.set(rel, `${(st.mode & 0o7777).toString(8)} ${st.uid}:${st.gid}\n${xattrs}\n${facl}${data}`);
      if (st.isDirectory()) walk(p);
    }
  };
  walk(root);
  return out;
}

function assertSameMetadata(source: string, restored: string): void {
  const a = describeTree(source);
  const b = describeTree(restored);
  assert.deepEqual([...b.keys()], [...a.keys()]);
  for (const [k, v] of a) assert.equal(b.get(k), v, k);
}

/** sha256 of a whole file, holes read as zeros. */
function wholeHash(p: string): string {
  const h = createHash('sha256');
  const fd = fs.openSync(p, 'r');
  const buf = Buffer.alloc(4 * MiB);
  try {
    for (let n; (n = fs.readSync(fd, buf, 0, buf.length, null)) > 0;) h.update(buf.subarray(0, n));
  } finally {
    fs.closeSync(fd);
  }
  return h.digest('hex');
}

describe('xattrs, ACLs and sparse files through a session', { timeout: 240_000 }, () => {
  let srv: TestServer;
  let base: string;
  let fsRoot: string;
  let refusing: string;
  let tree: string;
  let lib: Library;

  before(async () => {
    base = fs.mkdtempSync(join(os.tmpdir(), 'ndmpd-xattrs-'));
    fsRoot = join(base, 'fs');
    fs.mkdirSync(fsRoot);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=256m', 'tmpfs', fsRoot]);
    refusing = join(fsRoot, 'ramfs');
    fs.mkdirSync(refusing);
    // ramfs holds no xattrs of any namespace, ACLs neither: setxattr says EOPNOTSUPP.
    execFileSync('mount', ['-t', 'ramfs', 'ramfs', refusing]);
    tree = join(fsRoot, 'tree');
    makeTree(tree);
    lib = Library.open(join(base, 'library'));
    srv = await startServer({}, { library: lib, exports: [{ name: 'data', path: fsRoot }] });
  });
  after(async () => {
    await srv?.close();
    if (refusing) execFileSync('umount', [refusing]);
    if (fsRoot) execFileSync('umount', [fsRoot]);
    fs.rmSync(base, { recursive: true, force: true });
  });

  /** A backup of the tree to a fresh tape over `addr`; the tape's path and the messages. */
  async function backup(
    how: 'tcp' | 'local',
    extra: Pval[] = [],
  ): Promise<{ tape: string; messages: string[] }> {
    const c = await client(srv.port, 'md5');
    try {
      const [barcode] = lib.createTapes({ count: 1 });
      const tape = lib.tapePath(barcode!);
      const messages: string[] = [];
      c.onPost(M.LOG_MESSAGE, (b) => messages.push(b.entry));
      await c.call(M.TAPE_OPEN, { device: tape, mode: TapeOpenMode.NDMP_TAPE_RDWR_MODE });
      await c.call(M.MOVER_SET_WINDOW, { offset: 0n, length: INVALID_U64 });
      const addrType = how === 'tcp' ? AddrType.NDMP_ADDR_TCP : AddrType.NDMP_ADDR_LOCAL;
      const { connectAddr } = await c.call(M.MOVER_LISTEN, {
        mode: MoverMode.NDMP_MOVER_MODE_READ,
        addrType,
      });
      const data = new Promise<HaltedPost>((r) => c.onPost(M.NOTIFY_DATA_HALTED, r));
      const mover = new Promise<HaltedPost>((r) => c.onPost(M.NOTIFY_MOVER_HALTED, r));
      await c.call(M.DATA_CONNECT, {
        addr: how === 'tcp' ? connectAddr : { addrType: AddrType.NDMP_ADDR_LOCAL },
      });
      const env: Pval[] = [{ name: 'FILESYSTEM', value: tree }, { name: 'HIST', value: 'n' }, ...extra];
      await c.call(M.DATA_START_BACKUP, { butypeName: 'tar', env });
      const halted = await data;
      assert.equal(halted.reason, DataHaltReason.NDMP_DATA_HALT_SUCCESSFUL, messages.join('\n'));
      await mover;
      await c.call(M.DATA_STOP, {});
      await c.call(M.MOVER_STOP, {});
      await c.call(M.TAPE_CLOSE, {});
      return { tape, messages };
    } finally {
      c.destroy();
    }
  }

  /** The whole tape restored to `dest` by our recover (LOCAL); the halt and the messages. */
  async function recover(tape: string, dest: string): Promise<{ halted: HaltedPost; messages: string[] }> {
    const c = await client(srv.port, 'md5');
    try {
      const messages: string[] = [];
      c.onPost(M.LOG_MESSAGE, (b) => messages.push(b.entry));
      c.onPost(M.NOTIFY_DATA_READ, (b) => void c.call(M.MOVER_READ, b).catch(() => undefined));
      c.onPost(M.NOTIFY_MOVER_PAUSED, () => void c.call(M.MOVER_CLOSE, {}).catch(() => undefined));
      const halted = new Promise<HaltedPost>((r) => c.onPost(M.NOTIFY_DATA_HALTED, r));
      await c.call(M.TAPE_OPEN, { device: tape, mode: TapeOpenMode.NDMP_TAPE_READ_MODE });
      await c.call(M.MOVER_SET_WINDOW, { offset: 0n, length: INVALID_U64 });
      await c.call(M.MOVER_LISTEN, {
        mode: MoverMode.NDMP_MOVER_MODE_WRITE,
        addrType: AddrType.NDMP_ADDR_LOCAL,
      });
      await c.call(M.DATA_CONNECT, { addr: { addrType: AddrType.NDMP_ADDR_LOCAL } });
      await c.call(M.DATA_START_RECOVER, {
        env: [{ name: 'PREFIX', value: dest }],
        nlist: [],
        butypeName: 'tar',
      });
      return { halted: await halted, messages };
    } finally {
      c.destroy();
    }
  }

  const sourceHash = (): string => wholeHash(join(tree, 'sparse'));

  for (const how of ['tcp', 'local'] as const) {
    test(`backed up over ${how === 'tcp' ? 'TCP (the engine copies)' : 'LOCAL (the reader thread copies)'}: GNU tar and our recover restore it all`, async () => {
      const { tape, messages } = await backup(how);
      assert.deepEqual(messages, [], 'no warnings');
      const archive = tapeFileBytes(tape, 0);
      // 12 KiB of the sparse file, 5000 bytes of the other, 64 KiB of xattr and headers: far below 1 GiB.
      assert.ok(archive.length < 512 * KiB, `the tape file is ${archive.length} bytes`);
      const text = archive.toString('latin1');
      for (const key of [
        'SCHILY.xattr.user.big=',
        'SCHILY.xattr.trusted.root-only=',
        'SCHILY.acl.access=',
        'SCHILY.acl.default=',
        'GNU.sparse.major=1',
      ])
        assert.ok(text.includes(key), key);
      // The ACLs are never xattr records too.
      assert.ok(!text.includes('SCHILY.xattr.system.'), 'no system.* xattr records');

      // GNU tar, the independent reader.
      const file = join(base, `${how}.tar`);
      fs.writeFileSync(file, archive);
      const byTar = join(fsRoot, `${how}-tar`);
      fs.mkdirSync(byTar);
      execFileSync('tar', ['--xattrs', '--acls', '--xattrs-include=*', '-xpf', file, '-C', byTar]);
      assertSameMetadata(tree, byTar);

      // Our recover.
      const ours = join(fsRoot, `${how}-ours`);
      const { halted, messages: rmsg } = await recover(tape, ours);
      assert.equal(halted.reason, DataHaltReason.NDMP_DATA_HALT_SUCCESSFUL, rmsg.join('\n'));
      assert.deepEqual(
        rmsg.filter((m) => /xattr|attribute|ACL/i.test(m)),
        [],
      );
      assertSameMetadata(tree, ours);
      const st = fs.statSync(join(ours, 'sparse'));
      assert.equal(st.size, GiB);
      assert.ok(st.blocks * 512 <= 64 * KiB, `restored sparse file has ${st.blocks} blocks`);
      assert.equal(wholeHash(join(ours, 'sparse')), sourceHash());
      fs.rmSync(byTar, { recursive: true });
      fs.rmSync(ours, { recursive: true });
    });
  }

  test('XATTRS=n and ACLS=n leave them out; the sparse file is still sparse', async () => {
    const { tape } = await backup('tcp', [
      { name: 'XATTRS', value: 'n' },
      { name: 'ACLS', value: 'no' },
    ]);
    const text = tapeFileBytes(tape, 0).toString('latin1');
    assert.ok(!text.includes('SCHILY.xattr'), 'no xattr records');
    assert.ok(!text.includes('SCHILY.acl'), 'no ACL records');
    assert.ok(text.includes('GNU.sparse.major=1'));
    // Only ACLs off: the xattrs stay.
    const { tape: t2 } = await backup('local', [{ name: 'ACLS', value: 'n' }]);
    const t2text = tapeFileBytes(t2, 0).toString('latin1');
    assert.ok(t2text.includes('SCHILY.xattr.user.nul'));
    assert.ok(!t2text.includes('SCHILY.acl'));
  });

  test('XATTRS or ACLS that is neither yes nor no is refused, naming the value', async () => {
    const c = await client(srv.port, 'md5');
    try {
      const [barcode] = lib.createTapes({ count: 1 });
      await c.call(M.TAPE_OPEN, { device: lib.tapePath(barcode!), mode: TapeOpenMode.NDMP_TAPE_RDWR_MODE });
      const { connectAddr } = await c.call(M.MOVER_LISTEN, {
        mode: MoverMode.NDMP_MOVER_MODE_READ,
        addrType: AddrType.NDMP_ADDR_TCP,
      });
      await c.call(M.DATA_CONNECT, { addr: connectAddr });
      for (const [name, value] of [
        ['XATTRS', 'maybe'],
        ['ACLS', 'sometimes'],
      ] as const) {
        await assert.rejects(
          c.call(M.DATA_START_BACKUP, {
            butypeName: 'tar',
            env: [
              { name: 'FILESYSTEM', value: tree },
              { name, value },
            ],
          }),
          (e: unknown) => e instanceof NdmpError && e.ndmpError === ErrorCode.NDMP_ILLEGAL_ARGS_ERR,
        );
        assert.match(srv.logText(), new RegExp(`${name}=${value}: say y`));
      }
    } finally {
      c.destroy();
    }
  });

  test('a target that refuses xattrs and ACLs (ramfs): a warning per file, the restore succeeds', async () => {
    const { tape } = await backup('local');
    const dest = join(refusing, 'out');
    const { halted, messages } = await recover(tape, dest);
    assert.equal(halted.reason, DataHaltReason.NDMP_DATA_HALT_SUCCESSFUL, messages.join('\n'));
    const warned = messages.filter((m) => /restored without the extended attributes/.test(m));
    for (const name of ['binary-xattrs', 'acl-file', 'acl-dir', 'sparse-tail'])
      assert.ok(
        warned.some((m) => m.startsWith(`${name}:`) && /EOPNOTSUPP/.test(m)),
        `${name}: ${messages.join('\n')}`,
      );
    // Everything is there all the same, data and modes included.
    assert.equal(fs.readFileSync(join(dest, 'binary-xattrs'), 'utf8'), 'data of a file with xattrs\n');
    assert.equal(fs.readFileSync(join(dest, 'acl-dir', 'inherited'), 'utf8'), 'inside\n');
    assert.equal(fs.statSync(join(dest, 'sparse')).size, GiB);
    assert.equal(
      fs.lstatSync(join(dest, 'acl-file')).mode & 0o777,
      fs.lstatSync(join(tree, 'acl-file')).mode & 0o777,
    );
    fs.rmSync(dest, { recursive: true });
  });
});
