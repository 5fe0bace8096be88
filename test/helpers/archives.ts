// Hand-made pax archives for tests: honest and hostile entries alike.

import { END_OF_ARCHIVE, paddingAfter } from '../../src/backup/pax-layout.js';
import { encodeHeader } from '../../src/backup/pax-encoder.js';
import type { PaxEntry } from '../../src/backup/pax-layout.js';

/** An entry with ordinary attributes (0644 files, 0755 directories, owner 0, a fixed mtime). */
export function entry(path: string, type: PaxEntry['type'], extra: Partial<PaxEntry> = {}): PaxEntry {
  return {
    path,
    type,
    size: 0n,
    mode: type === 'dir' ? 0o755 : 0o644,
    uid: 0,
    gid: 0,
    uname: '',
    gname: '',
    mtime: { sec: 1_600_000_000n, nsec: 0 },
    ...extra,
  };
}

/** A stream of entries (files get `content`), with the end-of-archive marker. */
export function archive(items: { e: PaxEntry; content?: string }[]): Buffer {
  const parts: Buffer[] = [];
  for (const { e, content } of items) {
    const data = Buffer.from(content ?? '');
    parts.push(Buffer.from(encodeHeader({ ...e, size: BigInt(data.length) })));
    if (data.length) parts.push(data, Buffer.alloc(paddingAfter(BigInt(data.length))));
  }
  parts.push(END_OF_ARCHIVE);
  return Buffer.concat(parts);
}
