// Parsing of the CDBs this module serves (docs/smc.md §4): each field by the
// name the standard gives it, reserved bits checked. A CDB that breaks a rule
// ends in CHECK CONDITION, thrown as CheckCondition with a pointer to the
// field at fault; nothing here looks at the changer's state.

import { CheckCondition } from './errors.js';
import { SENSE, atField } from './sense.js';

/** Operation codes (byte 0). */
export const Opcode = {
  TEST_UNIT_READY: 0x00,
  REQUEST_SENSE: 0x03,
  INITIALIZE_ELEMENT_STATUS: 0x07,
  INQUIRY: 0x12,
  MODE_SENSE_6: 0x1a,
  PREVENT_ALLOW_MEDIUM_REMOVAL: 0x1e,
  POSITION_TO_ELEMENT: 0x2b,
  INITIALIZE_ELEMENT_STATUS_WITH_RANGE: 0x37,
  MODE_SENSE_10: 0x5a,
  MOVE_MEDIUM: 0xa5,
  READ_ELEMENT_STATUS: 0xb8,
} as const;
export type Opcode = (typeof Opcode)[keyof typeof Opcode];

/** MODE SENSE page control (byte 2, bits 7–6). */
export const PageControl = { CURRENT: 0, CHANGEABLE: 1, DEFAULT: 2, SAVED: 3 } as const;
export type PageControl = (typeof PageControl)[keyof typeof PageControl];

export type Cdb =
  | { readonly op: 'TEST_UNIT_READY' }
  | { readonly op: 'REQUEST_SENSE'; readonly desc: boolean; readonly allocationLength: number }
  | {
      readonly op: 'INQUIRY';
      readonly evpd: boolean;
      readonly pageCode: number;
      readonly allocationLength: number;
    }
  | {
      readonly op: 'MODE_SENSE';
      readonly cdbLength: 6 | 10;
      readonly dbd: boolean;
      readonly llbaa: boolean;
      readonly pageControl: PageControl;
      readonly pageCode: number;
      readonly subpageCode: number;
      readonly allocationLength: number;
    }
  | {
      readonly op: 'READ_ELEMENT_STATUS';
      readonly volTag: boolean;
      /** 0 all, 1–4 one type (checked: 5–15 are refused here). */
      readonly elementTypeCode: number;
      readonly startingElementAddress: number;
      readonly numberOfElements: number;
      readonly curData: boolean;
      readonly dvcid: boolean;
      readonly allocationLength: number;
    }
  | {
      readonly op: 'MOVE_MEDIUM';
      readonly transportElementAddress: number;
      readonly sourceAddress: number;
      readonly destinationAddress: number;
      readonly invert: boolean;
    }
  | { readonly op: 'INITIALIZE_ELEMENT_STATUS' }
  | {
      readonly op: 'INITIALIZE_ELEMENT_STATUS_WITH_RANGE';
      readonly range: boolean;
      readonly fast: boolean;
      readonly startingElementAddress: number;
      readonly numberOfElements: number;
    }
  | { readonly op: 'PREVENT_ALLOW_MEDIUM_REMOVAL'; readonly prevent: boolean }
  | {
      readonly op: 'POSITION_TO_ELEMENT';
      readonly transportElementAddress: number;
      readonly destinationAddress: number;
      readonly invert: boolean;
    };

function invalidField(byte: number, bit: number | undefined, why: string): CheckCondition {
  return new CheckCondition(atField(SENSE.INVALID_FIELD_IN_CDB, byte, bit), why);
}

/** The most significant bit set in `v` (v ≠ 0). */
function topBit(v: number): number {
  return 31 - Math.clz32(v);
}

/** Reads one CDB's fields, refusing set reserved bits (docs/smc.md §4, "Strict fields"). */
class CdbFields {
  constructor(
    private readonly cdb: Uint8Array,
    private readonly name: string,
  ) {}

  u8(i: number): number {
    return this.cdb[i]!;
  }

  u16(i: number): number {
    return (this.cdb[i]! << 8) | this.cdb[i + 1]!;
  }

  u24(i: number): number {
    return (this.cdb[i]! << 16) | (this.cdb[i + 1]! << 8) | this.cdb[i + 2]!;
  }

  bit(i: number, bit: number): boolean {
    return (this.cdb[i]! & (1 << bit)) !== 0;
  }

  /** The bits of `mask` in byte `i` are reserved and must be zero. */
  reserved(i: number, mask = 0xff): void {
    const set = this.cdb[i]! & mask;
    if (set !== 0) {
      throw invalidField(
        i,
        mask === 0xff ? undefined : topBit(set),
        `${this.name}: reserved bits set in byte ${i}`,
      );
    }
  }

  /**
   * Byte 1's reserved bits. Bits 7–5 were the LUN in SCSI-2 and old
   * initiators still fill them; one device answers per NDMP device name, so
   * they are ignored rather than refused.
   */
  byte1Reserved(mask: number): void {
    this.reserved(1, mask & 0x1f);
  }

  /**
   * The CONTROL byte: bits 7–6 are vendor specific (some libraries use them
   * to open the I/O port on MOVE MEDIUM; nothing to do here), NACA and the
   * obsolete FLAG/LINK bits are not supported, the rest is reserved.
   */
  control(i: number): void {
    this.reserved(i, 0x3f);
  }
}

/** CDB length of each opcode served. */
const CDB_LENGTH: ReadonlyMap<number, number> = new Map([
  [Opcode.TEST_UNIT_READY, 6],
  [Opcode.REQUEST_SENSE, 6],
  [Opcode.INITIALIZE_ELEMENT_STATUS, 6],
  [Opcode.INQUIRY, 6],
  [Opcode.MODE_SENSE_6, 6],
  [Opcode.PREVENT_ALLOW_MEDIUM_REMOVAL, 6],
  [Opcode.POSITION_TO_ELEMENT, 10],
  [Opcode.INITIALIZE_ELEMENT_STATUS_WITH_RANGE, 10],
  [Opcode.MODE_SENSE_10, 10],
  [Opcode.MOVE_MEDIUM, 12],
  [Opcode.READ_ELEMENT_STATUS, 12],
]);

function hex2(v: number): string {
  return v.toString(16).padStart(2, '0');
}

/**
 * Parses `cdb` if its opcode is one of `accepted` (a drive and a changer
 * serve different sets, and 2Bh means LOCATE to a drive). Throws
 * CheckCondition: INVALID COMMAND OPERATION CODE for any other opcode (an
 * empty CDB included), INVALID FIELD IN CDB for a CDB shorter than its
 * command, for bytes past the command's length that are not zero, and for
 * any field the command does not allow (docs/smc.md §4).
 */
export function parseCdb(cdb: Uint8Array, accepted: ReadonlySet<number>): Cdb {
  if (cdb.length === 0) {
    throw new CheckCondition(SENSE.INVALID_COMMAND_OPERATION_CODE, 'empty CDB');
  }
  const opcode = cdb[0]!;
  const length = CDB_LENGTH.get(opcode);
  if (length === undefined || !accepted.has(opcode)) {
    throw new CheckCondition(
      SENSE.INVALID_COMMAND_OPERATION_CODE,
      `opcode ${hex2(opcode)}h is not supported`,
    );
  }
  // A short CDB cannot come off a real bus (the opcode fixes the length);
  // over NDMP it can, and its missing fields are invalid (docs/smc.md §4).
  if (cdb.length < length) {
    throw new CheckCondition(
      SENSE.INVALID_FIELD_IN_CDB,
      `opcode ${hex2(opcode)}h takes a ${length}-byte CDB, not ${cdb.length} bytes`,
    );
  }
  // Padding after the command is tolerated only if it says nothing.
  for (let i = length; i < cdb.length; i++) {
    if (cdb[i] !== 0) throw invalidField(i, undefined, `byte ${i} past the ${length}-byte CDB is not zero`);
  }
  switch (opcode) {
    case Opcode.TEST_UNIT_READY: {
      const f = new CdbFields(cdb, 'TEST UNIT READY');
      f.byte1Reserved(0xff);
      f.reserved(2);
      f.reserved(3);
      f.reserved(4);
      f.control(5);
      return { op: 'TEST_UNIT_READY' };
    }
    case Opcode.REQUEST_SENSE: {
      const f = new CdbFields(cdb, 'REQUEST SENSE');
      f.byte1Reserved(0xfe);
      f.reserved(2);
      f.reserved(3);
      f.control(5);
      return { op: 'REQUEST_SENSE', desc: f.bit(1, 0), allocationLength: f.u8(4) };
    }
    case Opcode.INQUIRY: {
      const f = new CdbFields(cdb, 'INQUIRY');
      f.byte1Reserved(0xfc);
      f.control(5);
      // CMDDT (command support data) is obsolete since SPC-3.
      if (f.bit(1, 1)) throw invalidField(1, 1, 'INQUIRY: CMDDT is not supported');
      const evpd = f.bit(1, 0);
      const pageCode = f.u8(2);
      // Standard data has no pages (docs/smc.md §4.2).
      if (!evpd && pageCode !== 0) {
        throw invalidField(2, undefined, 'INQUIRY: a page code without EVPD');
      }
      return { op: 'INQUIRY', evpd, pageCode, allocationLength: f.u16(3) };
    }
    case Opcode.MODE_SENSE_6:
    case Opcode.MODE_SENSE_10: {
      const six = opcode === Opcode.MODE_SENSE_6;
      const f = new CdbFields(cdb, six ? 'MODE SENSE(6)' : 'MODE SENSE(10)');
      f.byte1Reserved(six ? 0xf7 : 0xe7);
      if (!six) {
        f.reserved(4);
        f.reserved(5);
        f.reserved(6);
      }
      f.control(six ? 5 : 9);
      return {
        op: 'MODE_SENSE',
        cdbLength: six ? 6 : 10,
        dbd: f.bit(1, 3),
        llbaa: !six && f.bit(1, 4),
        pageControl: (f.u8(2) >>> 6) as PageControl,
        pageCode: f.u8(2) & 0x3f,
        subpageCode: f.u8(3),
        allocationLength: six ? f.u8(4) : f.u16(7),
      };
    }
    case Opcode.READ_ELEMENT_STATUS: {
      const f = new CdbFields(cdb, 'READ ELEMENT STATUS');
      f.reserved(6, 0xfc);
      f.reserved(10);
      f.control(11);
      const elementTypeCode = f.u8(1) & 0x0f;
      if (elementTypeCode > 4) {
        throw invalidField(1, 3, `READ ELEMENT STATUS: element type code ${elementTypeCode} does not exist`);
      }
      return {
        op: 'READ_ELEMENT_STATUS',
        volTag: f.bit(1, 4),
        elementTypeCode,
        startingElementAddress: f.u16(2),
        numberOfElements: f.u16(4),
        curData: f.bit(6, 1),
        dvcid: f.bit(6, 0),
        allocationLength: f.u24(7),
      };
    }
    case Opcode.MOVE_MEDIUM: {
      const f = new CdbFields(cdb, 'MOVE MEDIUM');
      f.byte1Reserved(0xff);
      f.reserved(8);
      f.reserved(9);
      f.reserved(10, 0xfe);
      f.control(11);
      return {
        op: 'MOVE_MEDIUM',
        transportElementAddress: f.u16(2),
        sourceAddress: f.u16(4),
        destinationAddress: f.u16(6),
        invert: f.bit(10, 0),
      };
    }
    case Opcode.INITIALIZE_ELEMENT_STATUS: {
      const f = new CdbFields(cdb, 'INITIALIZE ELEMENT STATUS');
      f.byte1Reserved(0xff);
      f.reserved(2);
      f.reserved(3);
      f.reserved(4);
      f.control(5);
      return { op: 'INITIALIZE_ELEMENT_STATUS' };
    }
    case Opcode.INITIALIZE_ELEMENT_STATUS_WITH_RANGE: {
      const f = new CdbFields(cdb, 'INITIALIZE ELEMENT STATUS WITH RANGE');
      f.byte1Reserved(0xfc);
      f.reserved(4);
      f.reserved(5);
      f.reserved(8);
      f.control(9);
      return {
        op: 'INITIALIZE_ELEMENT_STATUS_WITH_RANGE',
        range: f.bit(1, 0),
        fast: f.bit(1, 1),
        startingElementAddress: f.u16(2),
        numberOfElements: f.u16(6),
      };
    }
    case Opcode.PREVENT_ALLOW_MEDIUM_REMOVAL: {
      const f = new CdbFields(cdb, 'PREVENT ALLOW MEDIUM REMOVAL');
      f.byte1Reserved(0xff);
      f.reserved(2);
      f.reserved(3);
      f.reserved(4, 0xfc);
      f.control(5);
      // 00b allow, 01b prevent; the other two values are obsolete for a changer.
      const prevent = f.u8(4) & 0x03;
      if (prevent > 1)
        throw invalidField(4, 1, `PREVENT ALLOW MEDIUM REMOVAL: PREVENT ${prevent} is obsolete`);
      return { op: 'PREVENT_ALLOW_MEDIUM_REMOVAL', prevent: prevent === 1 };
    }
    case Opcode.POSITION_TO_ELEMENT: {
      const f = new CdbFields(cdb, 'POSITION TO ELEMENT');
      f.byte1Reserved(0xff);
      f.reserved(6);
      f.reserved(7);
      f.reserved(8, 0xfe);
      f.control(9);
      return {
        op: 'POSITION_TO_ELEMENT',
        transportElementAddress: f.u16(2),
        destinationAddress: f.u16(4),
        invert: f.bit(8, 0),
      };
    }
  }
  // CDB_LENGTH and the switch list the same opcodes.
  throw new CheckCondition(SENSE.INVALID_COMMAND_OPERATION_CODE, `opcode ${hex2(opcode)}h is not supported`);
}
