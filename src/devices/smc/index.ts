// The pure SCSI module for the library's changer and drives (docs/smc.md §1).
export { Opcode, PageControl, parseCdb } from './cdb.js';
export type { Cdb } from './cdb.js';
export { ScsiStatus, newNexus } from './command.js';
export type { ScsiNexus, ScsiRequest, ScsiResult } from './command.js';
export { CHANGER_OPCODES, REFUSAL_SENSE, executeChangerCdb } from './changer.js';
export {
  ElementMap,
  ElementType,
  FIRST_ADDRESS,
  MAX_DRIVES,
  MAX_IMPORT_EXPORT,
  MAX_SLOTS,
} from './element-map.js';
export type { Element, ElementMapOptions, ElementRange, ElementTypeCode } from './element-map.js';
export { CheckCondition, ElementMapError, SmcStateError } from './errors.js';
export {
  PeripheralDeviceType,
  STANDARD_INQUIRY_LENGTH,
  VpdPage,
  checkIdentity,
  t10VendorIdentification,
} from './inquiry.js';
export type { DeviceIdentity } from './inquiry.js';
export { ModePage } from './mode-pages.js';
export { FIXED_SENSE_LENGTH, SENSE, SenseKey, atField, encodeFixedSense } from './sense.js';
export type { FieldPointer, Sense } from './sense.js';
export type { ChangerRefusal, ChangerState, ElementContents, TapeDriveState } from './state.js';
export { TAPE_OPCODES, executeTapeCdb } from './tape-cdb.js';
