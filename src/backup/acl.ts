// POSIX ACLs between the form Linux keeps them in and the text pax carries
// (docs/metadata.md, "ACLs"). Linux holds a file's access ACL in the xattr
// `system.posix_acl_access` and a directory's default ACL in
// `system.posix_acl_default`, each a little-endian binary list: a u32 version
// (2), then per entry a u16 tag, a u16 permission set (r=4, w=2, x=1) and a
// u32 id (the uid or gid of a named entry; 0xffffffff for the others). The
// archive holds them as GNU tar 1.34 `--acls` writes them (`SCHILY.acl.access`,
// `SCHILY.acl.default`): libacl's long text form, one entry per line, each
// line ending in '\n', without the "#effective:" comments, and a named entry
// named by its user or group name where the backup host knows one, else by
// its number. Read back, a qualifier that is all digits is that id, anything
// else a name looked up on the restoring host (libacl's order too).

import { CodedError } from '../util/coded-error.js';

/** An ACL that cannot be turned into the other form (corrupt bytes, text that is no ACL, a name this host does not know). */
export class AclFormatError extends CodedError {
  readonly code = 'ACL_FORMAT';
}

/** The xattrs that hold POSIX ACLs on Linux. */
export const ACL_ACCESS_XATTR = 'system.posix_acl_access';
export const ACL_DEFAULT_XATTR = 'system.posix_acl_default';

const VERSION = 2;
const HEADER_BYTES = 4;
const ENTRY_BYTES = 8;
const UNDEFINED_ID = 0xffff_ffff;

/** The entry tags, in the order the kernel requires them (and keeps them). */
const TAG = { userObj: 0x01, user: 0x02, groupObj: 0x04, group: 0x08, mask: 0x10, other: 0x20 } as const;
type Tag = (typeof TAG)[keyof typeof TAG];

const TAG_NAMES: Readonly<Record<number, string>> = {
  [TAG.userObj]: 'user',
  [TAG.user]: 'user',
  [TAG.groupObj]: 'group',
  [TAG.group]: 'group',
  [TAG.mask]: 'mask',
  [TAG.other]: 'other',
};

/** id → name for the text (empty: none known, the number is written). */
export interface AclNames {
  user(uid: number): string;
  group(gid: number): string;
}

/** name → id for the binary form (undefined: this host has no such name). */
export interface AclIds {
  userId(name: string): number | undefined;
  groupId(name: string): number | undefined;
}

interface AclEntry {
  tag: Tag;
  perm: number;
  id: number;
}

function permText(p: number): string {
  return (p & 4 ? 'r' : '-') + (p & 2 ? 'w' : '-') + (p & 1 ? 'x' : '-');
}

/**
 * The text GNU tar writes for an ACL xattr's value. An ACL with the three base
 * entries only is what the mode says; the kernel keeps none for it, but one
 * given is written all the same.
 */
export function aclToText(value: Uint8Array, names: AclNames): string {
  const entries = decodeAcl(value);
  let out = '';
  for (const e of entries) {
    let qualifier = '';
    if (e.tag === TAG.user) qualifier = names.user(e.id) || String(e.id);
    else if (e.tag === TAG.group) qualifier = names.group(e.id) || String(e.id);
    out += `${TAG_NAMES[e.tag]!}:${qualifier}:${permText(e.perm)}\n`;
  }
  return out;
}

function decodeAcl(value: Uint8Array): AclEntry[] {
  const v = new DataView(value.buffer, value.byteOffset, value.byteLength);
  if (value.length < HEADER_BYTES || (value.length - HEADER_BYTES) % ENTRY_BYTES !== 0)
    throw new AclFormatError(`ACL xattr of ${value.length} bytes is not a version-2 POSIX ACL`);
  const version = v.getUint32(0, true);
  if (version !== VERSION) throw new AclFormatError(`ACL xattr has version ${version}, not ${VERSION}`);
  const entries: AclEntry[] = [];
  for (let at = HEADER_BYTES; at < value.length; at += ENTRY_BYTES) {
    const tag = v.getUint16(at, true);
    if (TAG_NAMES[tag] === undefined)
      throw new AclFormatError(`ACL xattr has an entry of unknown tag ${tag}`);
    entries.push({ tag: tag as Tag, perm: v.getUint16(at + 2, true) & 7, id: v.getUint32(at + 4, true) });
  }
  return entries;
}

const TAG_BY_WORD: Readonly<Record<string, 'user' | 'group' | 'mask' | 'other'>> = {
  user: 'user',
  u: 'user',
  group: 'group',
  g: 'group',
  mask: 'mask',
  m: 'mask',
  other: 'other',
  o: 'other',
};

/**
 * The xattr value for an ACL's text (as GNU tar and setfacl write it: long or
 * short form, entries separated by newlines or commas, '#' comments), its
 * entries in the kernel's order. A named entry's qualifier: digits are the id,
 * else a name looked up in `ids`. Named entries without a mask get the one
 * setfacl would compute (the union of the group class). Throws
 * AclFormatError for text that is no valid ACL.
 */
export function aclFromText(text: string, ids: AclIds): Buffer {
  const entries: AclEntry[] = [];
  for (const raw of text.split(/[\n,]/)) {
    const line = raw.replace(/#.*$/, '').trim();
    if (line === '') continue;
    const parts = line.split(':');
    // "default:" prefixes belong to getfacl's combined listing, not to one ACL.
    if (parts.length !== 3)
      throw new AclFormatError(`ACL entry ${JSON.stringify(line)} is not tag:qualifier:perms`);
    const kind = TAG_BY_WORD[parts[0]!.trim()];
    if (kind === undefined) throw new AclFormatError(`ACL entry ${JSON.stringify(line)} has an unknown tag`);
    const qualifier = parts[1]!.trim();
    const perm = parsePerms(parts[2]!.trim(), line);
    if (kind === 'mask' || kind === 'other') {
      if (qualifier !== '')
        throw new AclFormatError(`ACL entry ${JSON.stringify(line)}: ${kind} takes no name`);
      entries.push({ tag: kind === 'mask' ? TAG.mask : TAG.other, perm, id: UNDEFINED_ID });
    } else if (qualifier === '') {
      entries.push({ tag: kind === 'user' ? TAG.userObj : TAG.groupObj, perm, id: UNDEFINED_ID });
    } else {
      const id = idOf(kind, qualifier, ids);
      entries.push({ tag: kind === 'user' ? TAG.user : TAG.group, perm, id });
    }
  }
  entries.sort((a, b) => a.tag - b.tag || a.id - b.id);
  for (let i = 1; i < entries.length; i++) {
    const a = entries[i - 1]!;
    const b = entries[i]!;
    if (a.tag === b.tag && a.id === b.id)
      throw new AclFormatError(
        `ACL has two entries for ${TAG_NAMES[a.tag]!}${a.id === UNDEFINED_ID ? '' : ` ${a.id}`}`,
      );
  }
  const has = (t: Tag): boolean => entries.some((e) => e.tag === t);
  for (const t of [TAG.userObj, TAG.groupObj, TAG.other] as const)
    if (!has(t)) throw new AclFormatError(`ACL has no ${TAG_NAMES[t]!}:: entry`);
  if ((has(TAG.user) || has(TAG.group)) && !has(TAG.mask)) {
    let union = 0;
    for (const e of entries)
      if (e.tag === TAG.user || e.tag === TAG.groupObj || e.tag === TAG.group) union |= e.perm;
    entries.push({ tag: TAG.mask, perm: union, id: UNDEFINED_ID });
    entries.sort((a, b) => a.tag - b.tag || a.id - b.id);
  }
  const out = Buffer.alloc(HEADER_BYTES + entries.length * ENTRY_BYTES);
  out.writeUInt32LE(VERSION, 0);
  entries.forEach((e, i) => {
    const at = HEADER_BYTES + i * ENTRY_BYTES;
    out.writeUInt16LE(e.tag, at);
    out.writeUInt16LE(e.perm, at + 2);
    out.writeUInt32LE(e.id, at + 4);
  });
  return out;
}

function parsePerms(s: string, line: string): number {
  let p = 0;
  for (const c of s) {
    if (c === 'r') p |= 4;
    else if (c === 'w') p |= 2;
    else if (c === 'x') p |= 1;
    else if (c !== '-') throw new AclFormatError(`ACL entry ${JSON.stringify(line)} has bad permissions`);
  }
  if (s.length === 0 || s.length > 3)
    throw new AclFormatError(`ACL entry ${JSON.stringify(line)} has bad permissions`);
  return p;
}

function idOf(kind: 'user' | 'group', qualifier: string, ids: AclIds): number {
  if (/^\d+$/.test(qualifier)) {
    const n = Number(qualifier);
    if (n < UNDEFINED_ID) return n;
    throw new AclFormatError(`ACL ${kind} id ${qualifier} is out of range`);
  }
  const id = kind === 'user' ? ids.userId(qualifier) : ids.groupId(qualifier);
  if (id === undefined)
    throw new AclFormatError(
      `ACL names the ${kind} ${JSON.stringify(qualifier)}, which this host does not know; add it (or restore where it exists)`,
    );
  return id;
}
