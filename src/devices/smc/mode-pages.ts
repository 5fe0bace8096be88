// MODE SENSE(6)/(10) for the changer (docs/smc.md §4.4): the element
// address assignment page (1Dh) that every DMA reads to learn the element
// map, plus transport geometry (1Eh) and device capabilities (1Fh), alone or
// all together (3Fh). A changer has no block descriptors: the descriptor
// length is 0 whatever DBD says, which also keeps page 1Dh at offset 4 of a
// MODE SENSE(6) reply, where ndmjob reads it without looking (docs/smc.md §6).

import { CheckCondition } from './errors.js';
import { PageControl } from './cdb.js';
import type { ElementMap } from './element-map.js';
import { SENSE, atField } from './sense.js';

export const ModePage = {
  ELEMENT_ADDRESS_ASSIGNMENT: 0x1d,
  TRANSPORT_GEOMETRY: 0x1e,
  DEVICE_CAPABILITIES: 0x1f,
  ALL_PAGES: 0x3f,
} as const;

/** All subpages (with a page code: that page's subpages; with 3Fh: every page and subpage). */
const ALL_SUBPAGES = 0xff;

function put16(out: Uint8Array, at: number, v: number): void {
  out[at] = v >>> 8;
  out[at + 1] = v & 0xff;
}

/** A page of `length` bytes after its 2-byte header; PS = 0 (nothing can be saved). */
function page(code: number, length: number): Uint8Array {
  const out = new Uint8Array(2 + length);
  out[0] = code;
  out[1] = length;
  return out;
}

function elementAddressAssignment(map: ElementMap): Uint8Array {
  const out = page(ModePage.ELEMENT_ADDRESS_ASSIGNMENT, 0x12);
  const runs = [map.mediumTransport, map.storage, map.importExport, map.dataTransfer];
  runs.forEach((r, i) => {
    put16(out, 2 + 4 * i, r.first);
    put16(out, 4 + 4 * i, r.count);
  });
  return out; // bytes 18–19 reserved
}

function transportGeometry(): Uint8Array {
  // One transport, which does not rotate media (single-sided cartridges).
  return page(ModePage.TRANSPORT_GEOMETRY, 0x02);
}

// Which element types hold media and which moves work, as MOVE MEDIUM checks
// them (docs/smc.md §4.6): storage, import/export and drives hold media and
// any of them can be the source or destination of a move; the transport
// never holds a cartridge between commands and is never a source or a
// destination. Exchange capabilities are all 0: no EXCHANGE MEDIUM.
const STOR_DT = 0x08;
const STOR_IE = 0x04;
const STOR_ST = 0x02;
const HOLDS_MEDIA = STOR_DT | STOR_IE | STOR_ST;

function deviceCapabilities(): Uint8Array {
  const out = page(ModePage.DEVICE_CAPABILITIES, 0x12);
  out[2] = HOLDS_MEDIA;
  // Bytes 4–7: moves from MT, ST, I/E, DT to (bit 3 DT, 2 I/E, 1 ST, 0 MT).
  out[4] = 0;
  out[5] = HOLDS_MEDIA;
  out[6] = HOLDS_MEDIA;
  out[7] = HOLDS_MEDIA;
  return out;
}

/** The page's bytes for page control `pc`: the changeable values are all zero (nothing can be set). */
function pageFor(code: number, map: ElementMap, pc: PageControl): Uint8Array {
  const p =
    code === ModePage.ELEMENT_ADDRESS_ASSIGNMENT
      ? elementAddressAssignment(map)
      : code === ModePage.TRANSPORT_GEOMETRY
        ? transportGeometry()
        : deviceCapabilities();
  if (pc === PageControl.CHANGEABLE) p.fill(0, 2);
  return p;
}

export interface ModeSenseCdb {
  readonly cdbLength: 6 | 10;
  readonly pageControl: PageControl;
  readonly pageCode: number;
  readonly subpageCode: number;
}

/** The whole MODE SENSE parameter data (header + pages), before the allocation length cuts it. */
export function modeSenseData(cdb: ModeSenseCdb, map: ElementMap): Uint8Array {
  // Nothing is saved, so there are no saved values to report.
  if (cdb.pageControl === PageControl.SAVED) {
    throw new CheckCondition(SENSE.SAVING_PARAMETERS_NOT_SUPPORTED, 'MODE SENSE: no saved values');
  }
  let codes: number[];
  if (cdb.pageCode === ModePage.ALL_PAGES) {
    codes = [ModePage.ELEMENT_ADDRESS_ASSIGNMENT, ModePage.TRANSPORT_GEOMETRY, ModePage.DEVICE_CAPABILITIES];
  } else if (
    cdb.pageCode === ModePage.ELEMENT_ADDRESS_ASSIGNMENT ||
    cdb.pageCode === ModePage.TRANSPORT_GEOMETRY ||
    cdb.pageCode === ModePage.DEVICE_CAPABILITIES
  ) {
    codes = [cdb.pageCode];
  } else {
    throw new CheckCondition(
      atField(SENSE.INVALID_FIELD_IN_CDB, 2, 5),
      `MODE SENSE: page ${cdb.pageCode.toString(16).padStart(2, '0')}h is not served`,
    );
  }
  // None of these pages has subpages: subpage 0, or "all subpages".
  if (cdb.subpageCode !== 0 && cdb.subpageCode !== ALL_SUBPAGES) {
    throw new CheckCondition(atField(SENSE.INVALID_FIELD_IN_CDB, 3), 'MODE SENSE: no subpages');
  }
  const pages = codes.map((c) => pageFor(c, map, cdb.pageControl));
  const pagesLength = pages.reduce((n, p) => n + p.length, 0);
  const headerLength = cdb.cdbLength === 6 ? 4 : 8;
  const out = new Uint8Array(headerLength + pagesLength);
  // MODE DATA LENGTH counts the bytes after itself, the whole data whatever
  // the allocation length; medium type, device-specific parameter and block
  // descriptor length stay 0.
  if (cdb.cdbLength === 6) out[0] = out.length - 1;
  else put16(out, 0, out.length - 2);
  let at = headerLength;
  for (const p of pages) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
