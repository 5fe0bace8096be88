// The ACL codec (src/backup/acl.ts) against the real thing: files given ACLs
// by setfacl, their xattrs read by the addon, compared with the text GNU tar
// --acls writes for them and with getfacl's listing; the text turned back
// into the kernel's exact bytes; and every kind of bad input refused with
// AclFormatError.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';

import {
  ACL_ACCESS_XATTR,
  ACL_DEFAULT_XATTR,
  AclFormatError,
  aclFromText,
  aclToText,
} from '../../src/backup/acl.js';
import { OwnerNames } from '../../src/backup/owners.js';
import { lgetxattr, lsetxattr } from '../../src/util/native-fs.js';

const owners = new OwnerNames();

/** The pax extended-header records of each member of a tar file: name → key → value. */
function paxRecords(tar: Buffer): Map<string, Map<string, string>> {
  const out = new Map<string, Map<string, string>>();
  let pending = new Map<string, string>();
  for (let at = 0; at + 512 <= tar.length;) {
    const block = tar.subarray(at, at + 512);
    if (block.every((b) => b === 0)) break;
    const size = parseInt(block.toString('latin1', 124, 136).replace(/\0.*$/, '').trim() || '0', 8);
    const flag = String.fromCharCode(block[156]!);
    const data = tar.subarray(at + 512, at + 512 + size);
    at += 512 + Math.ceil(size / 512) * 512;
    if (flag === 'x') {
      pending = new Map();
      for (let i = 0; i < data.length;) {
        const sp = data.indexOf(0x20, i);
        const len = Number(data.toString('latin1', i, sp));
        const rec = data.subarray(sp + 1, i + len - 1).toString('utf8');
        const eq = rec.indexOf('=');
        pending.set(rec.slice(0, eq), rec.slice(eq + 1));
        i += len;
      }
      continue;
    }
    const name = block.toString('utf8', 0, 100).replace(/\0.*$/, '');
    out.set(pending.get('path') ?? name, pending);
    pending = new Map();
  }
  return out;
}

function scratch(): string {
  return fs.mkdtempSync(join(os.tmpdir(), 'acl-'));
}

test("the text is GNU tar --acls's, and getfacl's; read back it is the kernel's exact bytes", () => {
  const dir = scratch();
  try {
    fs.writeFileSync(join(dir, 'f'), '');
    fs.mkdirSync(join(dir, 'd'));
    fs.writeFileSync(join(dir, 'numeric'), '');
    execFileSync('setfacl', ['-m', 'u:nobody:rw,g:adm:r,u:0:x,m::r', join(dir, 'f')]);
    execFileSync('setfacl', ['-m', 'u:nobody:rx,d:u:nobody:rwx,d:g:nogroup:r-x,d:o::-', join(dir, 'd')]);
    // Ids no name belongs to: written as numbers.
    execFileSync('setfacl', ['-m', 'u:4242:rwx,g:4343:w', join(dir, 'numeric')]);

    const tar = execFileSync(
      'tar',
      ['--acls', '--format=posix', '-C', dir, '-cf', '-', 'f', 'd', 'numeric'],
      {
        maxBuffer: 1 << 24,
      },
    );
    const records = paxRecords(tar);
    const cases: [string, string, string][] = [
      ['f', ACL_ACCESS_XATTR, 'SCHILY.acl.access'],
      ['d', ACL_ACCESS_XATTR, 'SCHILY.acl.access'],
      ['d', ACL_DEFAULT_XATTR, 'SCHILY.acl.default'],
      ['numeric', ACL_ACCESS_XATTR, 'SCHILY.acl.access'],
    ];
    for (const [name, xattr, key] of cases) {
      const path = join(dir, name);
      const bytes = lgetxattr(path, xattr);
      const ours = aclToText(bytes, owners);
      const theirs = records.get(name === 'd' ? 'd/' : name)?.get(key);
      assert.equal(ours, theirs, `${name} ${key}`);
      // getfacl lists the same entries, the same way (without its header and effective comments).
      const getfacl = execFileSync(
        'getfacl',
        [
          '--omit-header',
          '--no-effective',
          ...(xattr === ACL_DEFAULT_XATTR ? ['--default'] : ['--access']),
          path,
        ],
        { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] },
      );
      assert.equal(ours, getfacl.trimEnd() + '\n', `${name} getfacl`);
      // And back: the very bytes the kernel holds.
      assert.deepEqual(aclFromText(theirs!, owners), bytes, `${name} ${key} back`);
    }
    assert.match(aclToText(lgetxattr(join(dir, 'numeric'), ACL_ACCESS_XATTR), owners), /^user:4242:rwx$/m);
  } finally {
    fs.rmSync(dir, { recursive: true });
  }
});

test('text from elsewhere: short forms, commas, comments, any order, the mask computed; the kernel takes it', () => {
  const dir = scratch();
  try {
    const text = '# a comment\no::r, g:4343:rw,u::rwx\n  u:nobody:r-x\t#effective:r--\ng::r\n';
    const bytes = aclFromText(text, owners);
    const f = join(dir, 'f');
    fs.writeFileSync(f, '');
    lsetxattr(f, ACL_ACCESS_XATTR, bytes);
    const listed = execFileSync('getfacl', ['--omit-header', '--numeric', '--no-effective', f], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    assert.equal(
      listed.trimEnd(),
      ['user::rwx', 'user:65534:r-x', 'group::r--', 'group:4343:rw-', 'mask::rwx', 'other::r--'].join('\n'),
    );
    // Numeric qualifiers are ids whatever names exist.
    const ids = { userId: () => 7, groupId: () => 8 };
    assert.match(
      aclToText(aclFromText('u::rw-,u:1000:r,g::-,o::-', ids), { user: () => '', group: () => '' }),
      /^user:1000:r--$/m,
    );
    // Names go through the lookup.
    const named = aclFromText('u::rw-,u:someone:r,g::-,g:team:w,m::rw,o::-', ids);
    assert.equal(
      aclToText(named, { user: (u) => `u${u}`, group: (g) => `g${g}` }),
      'user::rw-\nuser:u7:r--\ngroup::---\ngroup:g8:-w-\nmask::rw-\nother::---\n',
    );
  } finally {
    fs.rmSync(dir, { recursive: true });
  }
});

test('bad ACLs are refused with AclFormatError, saying what is wrong', () => {
  const none = { userId: () => undefined, groupId: () => undefined };
  const bad: [string, RegExp][] = [
    ['u::rw-,g::r--', /no other:: entry/],
    ['u::rw-,u::r--,g::r--,o::---', /two entries for user/],
    ['u::rw-,g::r--,o::---,x::r', /unknown tag/],
    ['u::rw-,g::r--,o::rwz', /bad permissions/],
    ['u::rw-,g::r--,o::rwxr', /bad permissions/],
    ['u::rw-,g::r--,o:bob:r', /other takes no name/],
    ['u::rw-,g::r--,o::r,u:ghost:r', /user "ghost", which this host does not know/],
    ['u::rw-,g::r--,o::r,g:4294967295:r', /out of range/],
    ['default:user::rwx', /not tag:qualifier:perms/],
  ];
  for (const [text, why] of bad) {
    assert.throws(
      () => aclFromText(text, none),
      (e: unknown) => e instanceof AclFormatError && why.test(e.message),
      text,
    );
  }
  const names = { user: () => '', group: () => '' };
  const corrupt: [Buffer, RegExp][] = [
    [Buffer.alloc(3), /not a version-2/],
    [Buffer.from([2, 0, 0, 0, 1, 0, 6, 0]), /not a version-2/],
    [Buffer.from([1, 0, 0, 0]), /version 1/],
    [Buffer.from([2, 0, 0, 0, 0x40, 0, 6, 0, 0xff, 0xff, 0xff, 0xff]), /unknown tag 64/],
  ];
  for (const [bytes, why] of corrupt) {
    assert.throws(
      () => aclToText(bytes, names),
      (e: unknown) => e instanceof AclFormatError && e.code === 'ACL_FORMAT' && why.test(e.message),
    );
  }
});
