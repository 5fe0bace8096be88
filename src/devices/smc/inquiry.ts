// INQUIRY data for the changer and for its drives (docs/smc.md §4.2, §5):
// standard data, and the vital product data pages a DMA uses to match a
// drive it opened to a drive element of the changer: 80h (unit serial
// number) and 83h (device identification), whose T10 vendor ID designator
// is byte for byte the device identifier READ ELEMENT STATUS gives with DVCID.

import { CheckCondition, SmcStateError } from './errors.js';
import { SENSE, atField } from './sense.js';

/** Peripheral device types (byte 0, qualifier 000b: the device is connected). */
export const PeripheralDeviceType = {
  SEQUENTIAL_ACCESS: 0x01,
  MEDIUM_CHANGER: 0x08,
} as const;
export type PeripheralDeviceType = (typeof PeripheralDeviceType)[keyof typeof PeripheralDeviceType];

/** Vital product data pages served. */
export const VpdPage = {
  SUPPORTED_VPD_PAGES: 0x00,
  UNIT_SERIAL_NUMBER: 0x80,
  DEVICE_IDENTIFICATION: 0x83,
} as const;

/** What a device says about itself. Strings are ASCII; INQUIRY pads them with blanks. */
export interface DeviceIdentity {
  /** T10 vendor identification, up to 8 characters. */
  readonly vendor: string;
  /** Product identification, up to 16 characters. */
  readonly product: string;
  /** Product revision level, up to 4 characters. */
  readonly revision: string;
  /** Unit serial number, 1 to 32 characters, no blanks; stable across restarts. */
  readonly serial: string;
  /** An 8-byte NAA name (the WORLD_WIDE_NAME), listed in page 83h when present. */
  readonly naa?: Uint8Array;
}

/** The length of the standard data returned: 96 bytes, as real devices send (docs/smc.md §4.2). */
export const STANDARD_INQUIRY_LENGTH = 96;

const PRINTABLE = /^[\x20-\x7e]*$/;
const SERIAL = /^[\x21-\x7e]{1,32}$/;

function checkText(what: string, v: string, max: number): void {
  if (typeof v !== 'string' || v.length > max || !PRINTABLE.test(v)) {
    throw new SmcStateError(
      `INQUIRY ${what} must be at most ${max} printable ASCII characters, not ${JSON.stringify(v)}`,
    );
  }
}

/** Throws SmcStateError unless `id` fits the INQUIRY fields. */
export function checkIdentity(id: DeviceIdentity): void {
  checkText('vendor', id.vendor, 8);
  checkText('product', id.product, 16);
  checkText('revision', id.revision, 4);
  if (typeof id.serial !== 'string' || !SERIAL.test(id.serial)) {
    throw new SmcStateError(
      `a unit serial number is 1 to 32 printable ASCII characters without blanks, not ${JSON.stringify(id.serial)}`,
    );
  }
  // 8-byte NAA formats: 2 (IEEE extended), 3 (locally assigned), 5 (IEEE registered).
  if (id.naa !== undefined && (id.naa.length !== 8 || ![2, 3, 5].includes(id.naa[0]! >>> 4))) {
    throw new SmcStateError('an NAA name is 8 bytes with NAA 2, 3 or 5 in its top nibble');
  }
}

/** `s` as ASCII in `width` bytes, blank padded. */
function ascii(out: Uint8Array, at: number, s: string, width: number): void {
  out.fill(0x20, at, at + width);
  for (let i = 0; i < s.length; i++) out[at + i] = s.charCodeAt(i);
}

/** The standard INQUIRY data (docs/smc.md §4.2). */
export function standardInquiryData(type: PeripheralDeviceType, id: DeviceIdentity): Uint8Array {
  checkIdentity(id);
  const out = new Uint8Array(STANDARD_INQUIRY_LENGTH);
  out[0] = type;
  out[1] = 0x80; // RMB: cartridges come and go
  out[2] = 0x05; // VERSION: SPC-3
  out[3] = 0x02; // RESPONSE DATA FORMAT 2
  out[4] = STANDARD_INQUIRY_LENGTH - 5; // ADDITIONAL LENGTH: the bytes after byte 4
  // Bytes 5–7: no optional features; MCHNGR (byte 6 bit 3) stays 0 — the
  // changer is its own device, not a changer embedded in the drive.
  ascii(out, 8, id.vendor, 8);
  ascii(out, 16, id.product, 16);
  ascii(out, 32, id.revision, 4);
  return out;
}

/** The T10 vendor ID based designator: vendor (8) + product (16) + serial; also the DVCID identifier. */
export function t10VendorIdentification(id: DeviceIdentity): Uint8Array {
  checkIdentity(id);
  const out = new Uint8Array(24 + id.serial.length);
  ascii(out, 0, id.vendor, 8);
  ascii(out, 8, id.product, 16);
  ascii(out, 24, id.serial, id.serial.length);
  return out;
}

/** Designation descriptor header: code set, association 0 (the logical unit) | designator type, length. */
function designator(codeSet: number, designatorType: number, body: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + body.length);
  out[0] = codeSet;
  out[1] = designatorType;
  out[3] = body.length;
  out.set(body, 4);
  return out;
}

function vpdPageData(type: PeripheralDeviceType, pageCode: number, body: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + body.length);
  out[0] = type;
  out[1] = pageCode;
  out[2] = body.length >>> 8;
  out[3] = body.length & 0xff;
  out.set(body, 4);
  return out;
}

const CODE_SET_BINARY = 0x01;
const CODE_SET_ASCII = 0x02;
const DESIGNATOR_T10_VENDOR_ID = 0x01;
const DESIGNATOR_NAA = 0x03;

/** A vital product data page, or CHECK CONDITION INVALID FIELD IN CDB for a page not served. */
export function vpdPage(type: PeripheralDeviceType, pageCode: number, id: DeviceIdentity): Uint8Array {
  checkIdentity(id);
  switch (pageCode) {
    case VpdPage.SUPPORTED_VPD_PAGES:
      return vpdPageData(
        type,
        pageCode,
        Uint8Array.of(VpdPage.SUPPORTED_VPD_PAGES, VpdPage.UNIT_SERIAL_NUMBER, VpdPage.DEVICE_IDENTIFICATION),
      );
    case VpdPage.UNIT_SERIAL_NUMBER: {
      const body = new Uint8Array(id.serial.length);
      ascii(body, 0, id.serial, id.serial.length);
      return vpdPageData(type, pageCode, body);
    }
    case VpdPage.DEVICE_IDENTIFICATION: {
      const parts = [designator(CODE_SET_ASCII, DESIGNATOR_T10_VENDOR_ID, t10VendorIdentification(id))];
      if (id.naa !== undefined) parts.push(designator(CODE_SET_BINARY, DESIGNATOR_NAA, id.naa));
      const body = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
      let at = 0;
      for (const p of parts) {
        body.set(p, at);
        at += p.length;
      }
      return vpdPageData(type, pageCode, body);
    }
    default:
      throw new CheckCondition(
        atField(SENSE.INVALID_FIELD_IN_CDB, 2),
        `INQUIRY: vital product data page ${pageCode.toString(16).padStart(2, '0')}h is not served`,
      );
  }
}

/** What INQUIRY returns for a parsed CDB: standard data or one VPD page. */
export function inquiryData(
  type: PeripheralDeviceType,
  id: DeviceIdentity,
  cdb: { readonly evpd: boolean; readonly pageCode: number },
): Uint8Array {
  return cdb.evpd ? vpdPage(type, cdb.pageCode, id) : standardInquiryData(type, id);
}
