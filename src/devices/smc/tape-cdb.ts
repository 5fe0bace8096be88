// What TAPE_EXECUTE_CDB answers for a drive (docs/smc.md §5): enough for a
// DMA to identify the drive and match it to a drive element of the changer
// (INQUIRY with VPD 80h/83h carrying the same serial and T10 identifier as
// READ ELEMENT STATUS's DVCID), and whether a cartridge is loaded. Anything
// else — READ, WRITE, SPACE, LOCATE… — is refused as an opcode not served:
// tape motion goes through TAPE_READ/WRITE/MTIO so TAPE_GET_STATE stays exact.

import { Opcode, parseCdb } from './cdb.js';
import { checkCondition, good, runCommand } from './command.js';
import type { ScsiNexus, ScsiRequest, ScsiResult } from './command.js';
import { CheckCondition } from './errors.js';
import { PeripheralDeviceType } from './inquiry.js';
import { answerCommon, pendingUnitAttention } from './common-commands.js';
import { SENSE } from './sense.js';
import type { TapeDriveState } from './state.js';

/** The opcodes a drive serves through TAPE_EXECUTE_CDB. */
export const TAPE_OPCODES: ReadonlySet<number> = new Set([
  Opcode.TEST_UNIT_READY,
  Opcode.REQUEST_SENSE,
  Opcode.INQUIRY,
]);

function command(drive: TapeDriveState, req: ScsiRequest, nexus: ScsiNexus | undefined): ScsiResult {
  const cdb = parseCdb(req.cdb, TAPE_OPCODES);
  switch (cdb.op) {
    case 'TEST_UNIT_READY': {
      const attention = pendingUnitAttention(nexus);
      if (attention) return attention;
      // An ejected cartridge still sits in the drive but is not ready (docs/smc.md §5).
      return drive.mediumLoaded()
        ? good(req)
        : checkCondition(SENSE.MEDIUM_NOT_PRESENT, 'no cartridge loaded');
    }
    case 'REQUEST_SENSE':
    case 'INQUIRY':
      return answerCommon(cdb, req, nexus, PeripheralDeviceType.SEQUENTIAL_ACCESS, drive.identity)!;
    default:
      // TAPE_OPCODES lets nothing else through parseCdb.
      throw new CheckCondition(SENSE.INVALID_COMMAND_OPERATION_CODE, `${cdb.op} is not served for a drive`);
  }
}

/** Executes one drive CDB (TAPE_EXECUTE_CDB). Same contract as executeChangerCdb. */
export function executeTapeCdb(drive: TapeDriveState, req: ScsiRequest, nexus?: ScsiNexus): ScsiResult {
  return runCommand(() => command(drive, req, nexus));
}
