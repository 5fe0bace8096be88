// The medium changer's command handling (docs/smc.md §4): CDB bytes in,
// status, data-in and sense out, against a ChangerState the caller
// supplies. Pure: no NDMP, no sockets, no files. Every outcome is a SCSI
// one — an opcode not served is CHECK CONDITION / INVALID COMMAND OPERATION
// CODE, never an NDMP error (ndmjob gives up on NDMP errors, docs/smc.md §6).
//
//   ScsiRequest ─► parseCdb ─► command ─► ChangerState (media, move, inventory)
//                     │           │
//                     └─ CheckCondition ─► CHECK CONDITION + fixed sense
//                                 └─► GOOD + data cut to min(dataInLen, allocation, produced)

import { Opcode, parseCdb } from './cdb.js';
import type { Cdb } from './cdb.js';
import { checkCondition, good, runCommand } from './command.js';
import type { ScsiNexus, ScsiRequest, ScsiResult } from './command.js';
import { CheckCondition } from './errors.js';
import { ElementType } from './element-map.js';
import type { ElementMap } from './element-map.js';
import { readElementStatusData } from './element-status.js';
import { PeripheralDeviceType } from './inquiry.js';
import { answerCommon, pendingUnitAttention } from './common-commands.js';
import { modeSenseData } from './mode-pages.js';
import { SENSE, atField } from './sense.js';
import type { Sense } from './sense.js';
import type { ChangerRefusal, ChangerState } from './state.js';

/** The opcodes a changer serves. */
export const CHANGER_OPCODES: ReadonlySet<number> = new Set([
  Opcode.TEST_UNIT_READY,
  Opcode.REQUEST_SENSE,
  Opcode.INITIALIZE_ELEMENT_STATUS,
  Opcode.INQUIRY,
  Opcode.MODE_SENSE_6,
  Opcode.PREVENT_ALLOW_MEDIUM_REMOVAL,
  Opcode.POSITION_TO_ELEMENT,
  Opcode.INITIALIZE_ELEMENT_STATUS_WITH_RANGE,
  Opcode.MODE_SENSE_10,
  Opcode.MOVE_MEDIUM,
  Opcode.READ_ELEMENT_STATUS,
]);

/** The sense each refusal of the state is reported with (docs/smc.md §4.6). */
export const REFUSAL_SENSE: Readonly<Record<ChangerRefusal['reason'], Sense>> = Object.freeze({
  'drive-in-use': SENSE.MEDIUM_REMOVAL_PREVENTED,
  'import-export-open': SENSE.MEDIUM_NOT_PRESENT_TRAY_OPEN,
  'backend-failure': SENSE.INTERNAL_TARGET_FAILURE,
});

function refused(r: ChangerRefusal): ScsiResult {
  return checkCondition(REFUSAL_SENSE[r.reason], `${r.reason}: ${r.detail}`);
}

function invalidElementAddress(byte: number, why: string): CheckCondition {
  return new CheckCondition(atField(SENSE.INVALID_ELEMENT_ADDRESS, byte), why);
}

/** Address 0 names the default transport; any other must be the transport's own (docs/smc.md §2). */
function checkTransport(map: ElementMap, address: number, byte: number): void {
  if (address !== 0 && map.lookup(address)?.type !== ElementType.MEDIUM_TRANSPORT) {
    throw invalidElementAddress(byte, `${address} is not a medium transport element`);
  }
}

/** MOVE MEDIUM, checked in the order of docs/smc.md §4.6. */
function moveMedium(
  state: ChangerState,
  req: ScsiRequest,
  cdb: Extract<Cdb, { op: 'MOVE_MEDIUM' }>,
): ScsiResult {
  const map = state.elementMap;
  checkTransport(map, cdb.transportElementAddress, 2);
  const holdsMedia = (a: number): boolean => {
    const t = map.lookup(a)?.type;
    return t === ElementType.STORAGE || t === ElementType.IMPORT_EXPORT || t === ElementType.DATA_TRANSFER;
  };
  if (!holdsMedia(cdb.sourceAddress)) {
    throw invalidElementAddress(
      4,
      `source ${cdb.sourceAddress} is not a slot, drive or import/export element`,
    );
  }
  if (!holdsMedia(cdb.destinationAddress)) {
    throw invalidElementAddress(
      6,
      `destination ${cdb.destinationAddress} is not a slot, drive or import/export element`,
    );
  }
  // Cartridges are single-sided: there is no other side to turn to.
  if (cdb.invert) throw new CheckCondition(atField(SENSE.INVALID_FIELD_IN_CDB, 10, 0), 'MOVE MEDIUM: Invert');
  const media = state.media();
  if (!media.has(cdb.sourceAddress)) {
    return checkCondition(SENSE.MEDIUM_SOURCE_ELEMENT_EMPTY, `source ${cdb.sourceAddress} is empty`);
  }
  // A move onto itself is done before it starts.
  if (cdb.sourceAddress === cdb.destinationAddress) return good(req);
  if (media.has(cdb.destinationAddress)) {
    return checkCondition(
      SENSE.MEDIUM_DESTINATION_ELEMENT_FULL,
      `destination ${cdb.destinationAddress} is full`,
    );
  }
  const refusal = state.move(cdb.sourceAddress, cdb.destinationAddress);
  return refusal === null ? good(req) : refused(refusal);
}

function positionToElement(
  state: ChangerState,
  req: ScsiRequest,
  cdb: Extract<Cdb, { op: 'POSITION_TO_ELEMENT' }>,
): ScsiResult {
  checkTransport(state.elementMap, cdb.transportElementAddress, 2);
  if (state.elementMap.lookup(cdb.destinationAddress) === null) {
    throw invalidElementAddress(4, `destination ${cdb.destinationAddress} is not an element`);
  }
  if (cdb.invert)
    throw new CheckCondition(atField(SENSE.INVALID_FIELD_IN_CDB, 8, 0), 'POSITION TO ELEMENT: Invert');
  // The virtual picker has nowhere to travel: nothing moves.
  return good(req);
}

function initializeElementStatus(
  state: ChangerState,
  req: ScsiRequest,
  cdb: Extract<Cdb, { op: 'INITIALIZE_ELEMENT_STATUS' | 'INITIALIZE_ELEMENT_STATUS_WITH_RANGE' }>,
): ScsiResult {
  // A range only narrows what the initiator needs re-read; the inventory of
  // a folder is one scan, so the whole library is taken again (docs/smc.md §4.7).
  if (cdb.op === 'INITIALIZE_ELEMENT_STATUS_WITH_RANGE' && cdb.range) {
    if (state.elementMap.lookup(cdb.startingElementAddress) === null) {
      throw invalidElementAddress(2, `starting element ${cdb.startingElementAddress} is not an element`);
    }
  }
  const refusal = state.initializeElementStatus();
  return refusal === null ? good(req) : refused(refusal);
}

function command(state: ChangerState, req: ScsiRequest, nexus: ScsiNexus | undefined): ScsiResult {
  const cdb = parseCdb(req.cdb, CHANGER_OPCODES);
  switch (cdb.op) {
    case 'TEST_UNIT_READY':
      // The changer is always ready, but for a pending unit attention.
      return pendingUnitAttention(nexus) ?? good(req);
    case 'REQUEST_SENSE':
    case 'INQUIRY':
      return answerCommon(cdb, req, nexus, PeripheralDeviceType.MEDIUM_CHANGER, state.identity)!;
    case 'MODE_SENSE':
      return good(req, modeSenseData(cdb, state.elementMap), cdb.allocationLength);
    case 'READ_ELEMENT_STATUS':
      // CURDATA asks not to move anything to learn the status: nothing ever moves for it here.
      return good(
        req,
        readElementStatusData(cdb, state.elementMap, state.drives, state.media()),
        cdb.allocationLength,
      );
    case 'MOVE_MEDIUM':
      return moveMedium(state, req, cdb);
    case 'INITIALIZE_ELEMENT_STATUS':
    case 'INITIALIZE_ELEMENT_STATUS_WITH_RANGE':
      return initializeElementStatus(state, req, cdb);
    case 'PREVENT_ALLOW_MEDIUM_REMOVAL':
      state.preventMediumRemoval = cdb.prevent;
      return good(req);
    case 'POSITION_TO_ELEMENT':
      return positionToElement(state, req, cdb);
  }
}

/**
 * Executes one changer CDB. Synchronous; it calls `state` at most once per
 * method. `nexus` is the calling connection's pending sense, if the server
 * keeps one. Throws only on a broken state (SmcStateError), never for
 * anything the CDB says.
 */
export function executeChangerCdb(state: ChangerState, req: ScsiRequest, nexus?: ScsiNexus): ScsiResult {
  return runCommand(() => command(state, req, nexus));
}
