// A label a DMA wrote on a tape, read back for `ndmpd tape list` and
// CONFIG_GET_TAPE_INFO (docs/tape-image.md, "Labels"). A tape has two kinds
// of label: the one `ndmpd tape create/label` keeps in the image's header
// (the library's own note), and one a DMA writes as the tape's first record,
// as a real tape carries it. Of the second kind we know ndmjob's: a record
// of 512 bytes whose text starts "##ndmjob -m LABEL" (a media label, what
// `-o init-labels` writes) or "##ndmjob -V LABEL" (a volume label), ended by
// a newline.

import fs from 'node:fs';
import { tapeFileExtent } from './tape-image.js';

export interface WrittenLabel {
  /** 'media': ndmjob -m (init-labels); 'volume': ndmjob -V. */
  readonly kind: 'media' | 'volume';
  readonly text: string;
}

/** What is read of a tape's first record: ndmjob reads 512 bytes. */
const LABEL_RECORD = 512;
/** ndmjob keeps at most this much of a label (NDMMEDIA_LABEL_MAX less its NUL). */
const MAX_LABEL = 31;
const PREFIXES: readonly [string, WrittenLabel['kind']][] = [
  ['##ndmjob -m ', 'media'],
  ['##ndmjob -V ', 'volume'],
];

/**
 * The label at the start of the tape image `dataPath`'s first tape file, or
 * null when it has none we know (a blank tape, a backup from its start, a
 * record of another DMA's making). Reads one record's head; never throws for
 * what a tape holds, only for an image that cannot be read at all.
 */
export function readWrittenLabel(dataPath: string): WrittenLabel | null {
  const first = tapeFileExtent(dataPath, 0);
  if (!first || first.records === 0) return null;
  const length = Number(first.end - first.start < LABEL_RECORD ? first.end - first.start : LABEL_RECORD);
  const head = Buffer.alloc(length);
  const fd = fs.openSync(dataPath, 'r');
  let got: number;
  try {
    got = fs.readSync(fd, head, 0, length, Number(first.start));
  } finally {
    fs.closeSync(fd);
  }
  return parseWrittenLabel(head.subarray(0, got));
}

/** The label in a tape's first record, as ndmjob writes it, or null. */
export function parseWrittenLabel(record: Uint8Array): WrittenLabel | null {
  const text = Buffer.from(record.buffer, record.byteOffset, record.length).toString('latin1');
  for (const [prefix, kind] of PREFIXES) {
    if (!text.startsWith(prefix)) continue;
    const rest = text.slice(prefix.length);
    const end = rest.search(/[\n\0]/);
    const label = (end < 0 ? rest : rest.slice(0, end)).slice(0, MAX_LABEL);
    // Printable text only: a record that merely starts like a label is not one.
    if (label === '' || !/^[\x20-\x7e]+$/.test(label)) return null;
    return { kind, text: label };
  }
  return null;
}
