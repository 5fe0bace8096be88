// The commands the changer and a drive answer alike (docs/smc.md §4.2, §4.3,
// §5): INQUIRY with the device's own type and identity, and REQUEST SENSE,
// in fixed format only.

import type { Cdb } from './cdb.js';
import { checkCondition, good, requestSense } from './command.js';
import type { ScsiNexus, ScsiRequest, ScsiResult } from './command.js';
import { CheckCondition } from './errors.js';
import { inquiryData } from './inquiry.js';
import type { DeviceIdentity, PeripheralDeviceType } from './inquiry.js';
import { SENSE, atField } from './sense.js';

/** INQUIRY or REQUEST SENSE answered for a device of `deviceType`; null for any other command. */
export function answerCommon(
  cdb: Cdb,
  req: ScsiRequest,
  nexus: ScsiNexus | undefined,
  deviceType: PeripheralDeviceType,
  identity: DeviceIdentity,
): ScsiResult | null {
  switch (cdb.op) {
    case 'REQUEST_SENSE':
      // Descriptor format is never sent (docs/smc.md §4.3).
      if (cdb.desc) {
        throw new CheckCondition(
          atField(SENSE.INVALID_FIELD_IN_CDB, 1, 0),
          'REQUEST SENSE: descriptor format',
        );
      }
      return requestSense(req, nexus, cdb.allocationLength);
    case 'INQUIRY':
      return good(req, inquiryData(deviceType, identity, cdb), cdb.allocationLength);
    default:
      return null;
  }
}

/**
 * TEST UNIT READY's first answer on either device: a pending unit attention,
 * reported once and cleared (it is reported nowhere else but REQUEST SENSE,
 * docs/smc.md §3.3); null when there is none.
 */
export function pendingUnitAttention(nexus: ScsiNexus | undefined): ScsiResult | null {
  const pending = nexus?.pendingSense ?? null;
  if (pending === null) return null;
  nexus!.pendingSense = null;
  return checkCondition(pending, 'pending unit attention');
}
