// Fixed-format sense data and the conditions a virtual changer and drive
// report (docs/smc.md §3). Only the fixed format (response code 70h) is ever
// built: ndmjob reads the sense key, ASC and ASCQ at fixed offsets and
// misreads descriptor-format sense (docs/smc.md §6).

/** SPC sense keys (byte 2, bits 3–0 of fixed-format sense data). */
export const SenseKey = {
  NO_SENSE: 0x0,
  NOT_READY: 0x2,
  MEDIUM_ERROR: 0x3,
  HARDWARE_ERROR: 0x4,
  ILLEGAL_REQUEST: 0x5,
  UNIT_ATTENTION: 0x6,
  DATA_PROTECT: 0x7,
} as const;
export type SenseKey = (typeof SenseKey)[keyof typeof SenseKey];

/**
 * Where in the CDB the offending field is: the sense-key specific bytes of an
 * ILLEGAL REQUEST (SKSV, C/D = 1). `byte` is the field's most significant
 * byte; `bit`, for a field narrower than a byte, its most significant bit.
 */
export interface FieldPointer {
  readonly byte: number;
  readonly bit?: number;
}

export interface Sense {
  readonly key: SenseKey;
  /** Additional sense code. */
  readonly asc: number;
  /** Additional sense code qualifier. */
  readonly ascq: number;
  readonly field?: FieldPointer;
}

function sense(key: SenseKey, asc: number, ascq: number): Sense {
  return Object.freeze({ key, asc, ascq });
}

/**
 * Every condition this module reports, named as SPC/SMC name the ASC/ASCQ
 * pair (docs/smc.md §3, the table there says when each is used).
 */
export const SENSE = Object.freeze({
  NO_SENSE: sense(SenseKey.NO_SENSE, 0x00, 0x00),
  // ILLEGAL REQUEST: the command cannot be carried out as asked.
  INVALID_COMMAND_OPERATION_CODE: sense(SenseKey.ILLEGAL_REQUEST, 0x20, 0x00),
  PARAMETER_LIST_LENGTH_ERROR: sense(SenseKey.ILLEGAL_REQUEST, 0x1a, 0x00),
  INVALID_ELEMENT_ADDRESS: sense(SenseKey.ILLEGAL_REQUEST, 0x21, 0x01),
  INVALID_FIELD_IN_CDB: sense(SenseKey.ILLEGAL_REQUEST, 0x24, 0x00),
  LOGICAL_UNIT_NOT_SUPPORTED: sense(SenseKey.ILLEGAL_REQUEST, 0x25, 0x00),
  INVALID_FIELD_IN_PARAMETER_LIST: sense(SenseKey.ILLEGAL_REQUEST, 0x26, 0x00),
  SAVING_PARAMETERS_NOT_SUPPORTED: sense(SenseKey.ILLEGAL_REQUEST, 0x39, 0x00),
  MEDIUM_DESTINATION_ELEMENT_FULL: sense(SenseKey.ILLEGAL_REQUEST, 0x3b, 0x0d),
  MEDIUM_SOURCE_ELEMENT_EMPTY: sense(SenseKey.ILLEGAL_REQUEST, 0x3b, 0x0e),
  MEDIUM_REMOVAL_PREVENTED: sense(SenseKey.ILLEGAL_REQUEST, 0x53, 0x02),
  // NOT READY: the device or an element cannot be used now.
  LOGICAL_UNIT_BECOMING_READY: sense(SenseKey.NOT_READY, 0x04, 0x01),
  MEDIUM_NOT_PRESENT: sense(SenseKey.NOT_READY, 0x3a, 0x00),
  MEDIUM_NOT_PRESENT_TRAY_OPEN: sense(SenseKey.NOT_READY, 0x3a, 0x02),
  // UNIT ATTENTION: something changed behind the initiator's back.
  NOT_READY_TO_READY_CHANGE: sense(SenseKey.UNIT_ATTENTION, 0x28, 0x00),
  IMPORT_OR_EXPORT_ELEMENT_ACCESSED: sense(SenseKey.UNIT_ATTENTION, 0x28, 0x01),
  POWER_ON_RESET_OCCURRED: sense(SenseKey.UNIT_ATTENTION, 0x29, 0x00),
  // The back end (image files, symlinks) failed.
  INTERNAL_TARGET_FAILURE: sense(SenseKey.HARDWARE_ERROR, 0x44, 0x00),
  WRITE_PROTECTED: sense(SenseKey.DATA_PROTECT, 0x27, 0x00),
} satisfies Record<string, Sense>);

/** `s` with a pointer to the CDB field at fault. */
export function atField(s: Sense, byte: number, bit?: number): Sense {
  return Object.freeze({ ...s, field: bit === undefined ? { byte } : { byte, bit } });
}

/** Length of the sense data built here: the 18 bytes of fixed format with an additional length of 10. */
export const FIXED_SENSE_LENGTH = 18;

/**
 * The 18 bytes of fixed-format sense data for `s` (docs/smc.md §3.1):
 * current error, no INFORMATION, the key, ASC/ASCQ and, when the fault is a
 * CDB field, the sense-key specific field pointer.
 */
export function encodeFixedSense(s: Sense): Uint8Array {
  const out = new Uint8Array(FIXED_SENSE_LENGTH);
  out[0] = 0x70; // current error, VALID = 0 (bytes 3–6 carry nothing)
  out[2] = s.key & 0x0f;
  out[7] = FIXED_SENSE_LENGTH - 8; // additional sense length: the bytes after byte 7
  out[12] = s.asc;
  out[13] = s.ascq;
  if (s.field !== undefined) {
    // SKSV | C/D (the field is in the CDB) | BPV when a bit is named.
    out[15] = 0x80 | 0x40 | (s.field.bit !== undefined ? 0x08 | (s.field.bit & 0x07) : 0);
    out[16] = (s.field.byte >>> 8) & 0xff;
    out[17] = s.field.byte & 0xff;
  }
  return out;
}
