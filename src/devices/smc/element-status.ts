// READ ELEMENT STATUS data (docs/smc.md §4.5): an 8-byte element status
// header, then one element status page per element type, each an 8-byte
// page header and fixed-length element descriptors. The headers count
// everything that matched the CDB; cutting the bytes to the allocation
// length is the caller's business, so a DMA can ask with 8 bytes first and
// learn the size.

import { CheckCondition, SmcStateError } from './errors.js';
import { ElementType } from './element-map.js';
import type { Element, ElementMap, ElementTypeCode } from './element-map.js';
import { t10VendorIdentification } from './inquiry.js';
import type { DeviceIdentity } from './inquiry.js';
import { SENSE, atField } from './sense.js';
import type { ElementContents } from './state.js';

export interface ReadElementStatusCdb {
  readonly volTag: boolean;
  readonly elementTypeCode: number;
  readonly startingElementAddress: number;
  readonly numberOfElements: number;
  readonly dvcid: boolean;
}

/** Primary volume tag: 32-byte volume identifier, 2 reserved, 2-byte sequence number. */
export const VOLUME_TAG_LENGTH = 36;
const VOLUME_IDENTIFIER_LENGTH = 32;
const BARCODE = /^[\x21-\x7e]{1,32}$/;

// Element status bits (descriptor byte 2).
const FULL = 0x01;
const IMP_EXP = 0x02;
const EXCEPT = 0x04;
const ACCESS = 0x08;
const EX_ENAB = 0x10;
const IN_ENAB = 0x20;
/** Descriptor byte 9: the source storage element address is valid. */
const SVALID = 0x80;
/** Page header byte 1: descriptors carry a primary volume tag. */
const PVOLTAG = 0x80;
/** DVCID identifier header: code set ASCII, designator type T10 vendor ID. */
const CODE_SET_ASCII = 0x02;
const DESIGNATOR_T10_VENDOR_ID = 0x01;

function put16(out: Uint8Array, at: number, v: number): void {
  out[at] = v >>> 8;
  out[at + 1] = v & 0xff;
}

function put24(out: Uint8Array, at: number, v: number): void {
  out[at] = (v >>> 16) & 0xff;
  out[at + 1] = (v >>> 8) & 0xff;
  out[at + 2] = v & 0xff;
}

/** Throws SmcStateError unless every cartridge sits in an element that can hold one. */
function checkMedia(map: ElementMap, media: ReadonlyMap<number, ElementContents>): void {
  for (const [address, contents] of media) {
    const e = map.lookup(address);
    if (e === null || e.type === ElementType.MEDIUM_TRANSPORT) {
      throw new SmcStateError(`the changer state puts a cartridge at ${address}, which cannot hold one`);
    }
    if (contents.volumeTag !== null && !BARCODE.test(contents.volumeTag)) {
      throw new SmcStateError(
        `barcode ${JSON.stringify(contents.volumeTag)} at ${address} is not 1 to 32 printable ASCII characters without blanks`,
      );
    }
  }
}

function statusBits(type: ElementTypeCode, contents: ElementContents | undefined): number {
  const full = contents !== undefined ? FULL : 0;
  const except = contents?.exception !== undefined ? EXCEPT : 0;
  switch (type) {
    // The transport never holds a cartridge between commands.
    case ElementType.MEDIUM_TRANSPORT:
      return 0;
    // The virtual picker reaches every element, so Access is always set.
    case ElementType.STORAGE:
    case ElementType.DATA_TRANSFER:
      return ACCESS | except | full;
    case ElementType.IMPORT_EXPORT:
      return IN_ENAB | EX_ENAB | ACCESS | except | (contents?.placedByOperator === true ? IMP_EXP : 0) | full;
  }
}

interface PageLayout {
  readonly type: ElementTypeCode;
  readonly elements: Element[];
  readonly volTag: boolean;
  readonly dvcid: boolean;
  readonly descriptorLength: number;
}

/**
 * The whole READ ELEMENT STATUS data for a parsed CDB. Throws
 * CheckCondition INVALID FIELD IN CDB (pointing at the starting element
 * address) when no element of the requested type is at or above it.
 */
export function readElementStatusData(
  cdb: ReadElementStatusCdb,
  map: ElementMap,
  drives: readonly DeviceIdentity[],
  media: ReadonlyMap<number, ElementContents>,
): Uint8Array {
  checkMedia(map, media);
  if (drives.length !== map.dataTransfer.count) {
    throw new SmcStateError(
      `the changer has ${map.dataTransfer.count} drive elements but ${drives.length} drive identities`,
    );
  }
  const matching = map
    .elements(cdb.elementTypeCode as ElementType)
    .filter((e) => e.address >= cdb.startingElementAddress);
  if (matching.length === 0) {
    throw new CheckCondition(
      atField(SENSE.INVALID_FIELD_IN_CDB, 2),
      `READ ELEMENT STATUS: no element of type ${cdb.elementTypeCode} at or above ${cdb.startingElementAddress}`,
    );
  }
  // NUMBER OF ELEMENTS caps the descriptors; 0 is taken as "no cap" (docs/smc.md §7).
  const chosen = cdb.numberOfElements === 0 ? matching : matching.slice(0, cdb.numberOfElements);

  // One identifier length for the whole drive page: descriptors of a page share one length.
  const identifiers = cdb.dvcid ? drives.map(t10VendorIdentification) : [];
  const identifierLength = identifiers.reduce((n, id) => Math.max(n, id.length), 0);

  // Runs are contiguous and ascending, so consecutive elements of one type form one page.
  const pages: PageLayout[] = [];
  for (const e of chosen) {
    const last = pages[pages.length - 1];
    if (last !== undefined && last.type === e.type) {
      last.elements.push(e);
      continue;
    }
    // The transport page carries no tags: it never holds a cartridge to tag.
    const volTag = cdb.volTag && e.type !== ElementType.MEDIUM_TRANSPORT;
    const dvcid = cdb.dvcid && e.type === ElementType.DATA_TRANSFER;
    const descriptorLength = 12 + (volTag ? VOLUME_TAG_LENGTH : 0) + 4 + (dvcid ? identifierLength : 0);
    pages.push({ type: e.type, elements: [e], volTag, dvcid, descriptorLength });
  }

  const total = 8 + pages.reduce((n, p) => n + 8 + p.descriptorLength * p.elements.length, 0);
  const out = new Uint8Array(total);
  put16(out, 0, chosen[0]!.address); // first element address reported
  put16(out, 2, chosen.length); // number of elements available
  put24(out, 5, total - 8); // byte count of report available (pages only, not this header)
  let at = 8;
  for (const p of pages) {
    out[at] = p.type;
    out[at + 1] = p.volTag ? PVOLTAG : 0;
    put16(out, at + 2, p.descriptorLength);
    put24(out, at + 5, p.descriptorLength * p.elements.length);
    at += 8;
    for (const e of p.elements) {
      writeDescriptor(out, at, p, e, map, media.get(e.address), identifiers);
      at += p.descriptorLength;
    }
  }
  return out;
}

function writeDescriptor(
  out: Uint8Array,
  at: number,
  page: PageLayout,
  e: Element,
  map: ElementMap,
  contents: ElementContents | undefined,
  identifiers: readonly Uint8Array[],
): void {
  put16(out, at, e.address);
  out[at + 2] = statusBits(e.type, contents);
  if (contents?.exception !== undefined) {
    out[at + 4] = contents.exception.asc;
    out[at + 5] = contents.exception.ascq;
  }
  // Bytes 6–7 of a drive: no SCSI bus address or LUN to report (ID Valid = LU Valid = 0).
  // SValid only for a cartridge whose source is a real storage element: a
  // DMA puts the cartridge back there on unload (docs/smc.md §4.5).
  const source = contents?.sourceAddress ?? null;
  if (source !== null && map.lookup(source)?.type === ElementType.STORAGE) {
    out[at + 9] = SVALID;
    put16(out, at + 10, source);
  }
  let tail = at + 12;
  if (page.volTag) {
    const tag = contents?.volumeTag ?? null;
    // Blank padded; all zeros (no tag) for an empty element or a cartridge without a barcode.
    if (tag !== null) {
      out.fill(0x20, tail, tail + VOLUME_IDENTIFIER_LENGTH);
      for (let i = 0; i < tag.length; i++) out[tail + i] = tag.charCodeAt(i);
    }
    tail += VOLUME_TAG_LENGTH;
  }
  if (page.dvcid) {
    const id = identifiers[e.index]!;
    out[tail] = CODE_SET_ASCII;
    out[tail + 1] = DESIGNATOR_T10_VENDOR_ID;
    out[tail + 3] = id.length;
    out.set(id, tail + 4);
  }
  // Otherwise the 4 bytes after the tags stay reserved (zero).
}
