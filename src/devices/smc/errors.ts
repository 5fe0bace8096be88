// The SCSI layer's errors (docs/contributing.md §6). A CHECK CONDITION is
// not a failure of ours: it is the answer, and `CheckCondition` only carries
// it from a parser to the command's result. The other two are bugs or bad
// configuration in the caller, never turned into sense.

import { CodedError } from '../../util/coded-error.js';
import type { Sense } from './sense.js';

/** The command ends with CHECK CONDITION and this sense (caught by the executors, never escapes them). */
export class CheckCondition extends CodedError {
  readonly code = 'SCSI_CHECK_CONDITION';
  constructor(
    readonly sense: Sense,
    message: string,
  ) {
    super(message);
    this.name = 'CheckCondition';
  }
}

/** An element map that cannot be built (too many drives or slots for the address ranges). */
export class ElementMapError extends CodedError {
  readonly code = 'SMC_ELEMENT_MAP';
  constructor(message: string) {
    super(message);
    this.name = 'ElementMapError';
  }
}

/**
 * The state the caller supplies broke its contract (docs/smc.md §1): an
 * identity string that does not fit INQUIRY, a cartridge at an address that
 * is not a storage, import/export or drive element, a drive without an
 * identity. Thrown out of the executor: it is a bug to fix, not a sense.
 */
export class SmcStateError extends CodedError {
  readonly code = 'SMC_STATE';
  constructor(message: string) {
    super(message);
    this.name = 'SmcStateError';
  }
}
