// One SCSI command's request and result as NDMP carries them (EXECUTE_CDB,
// docs/smc.md §1): CDB and data-out in; status, data-in and autosense out.
// The NDMP `error` is not decided here: whatever the CDB, the command was
// delivered, so the reply's error is NDMP_NO_ERR and the outcome is in
// `status` and `sense`.

import { CheckCondition } from './errors.js';
import { SENSE, encodeFixedSense } from './sense.js';
import type { Sense } from './sense.js';

/** SAM status codes. */
export const ScsiStatus = {
  GOOD: 0x00,
  CHECK_CONDITION: 0x02,
  BUSY: 0x08,
  RESERVATION_CONFLICT: 0x18,
} as const;
export type ScsiStatus = (typeof ScsiStatus)[keyof typeof ScsiStatus];

export interface ScsiRequest {
  readonly cdb: Uint8Array;
  /** The most data-in bytes the DMA accepts (EXECUTE_CDB's datain_len). */
  readonly dataInLen: number;
  /** EXECUTE_CDB's dataout; no command served here takes a parameter list, so it is never read. */
  readonly dataOut: Uint8Array;
}

export interface ScsiResult {
  readonly status: ScsiStatus;
  /** At most min(dataInLen, the CDB's allocation length, the bytes produced). */
  readonly dataIn: Uint8Array;
  /** 18 bytes of fixed-format sense with CHECK CONDITION (autosense), else empty. */
  readonly sense: Uint8Array;
  /** Why the command ended as it did, for the server's log (never sent). */
  readonly detail?: string;
}

/**
 * What one initiator's connection holds between commands (its I_T nexus):
 * a unit attention the server wants it to see, e.g. after a reset. Only
 * TEST UNIT READY and REQUEST SENSE report it (docs/smc.md §3.3); both
 * clear it.
 */
export interface ScsiNexus {
  pendingSense: Sense | null;
}

export function newNexus(): ScsiNexus {
  return { pendingSense: null };
}

const EMPTY = new Uint8Array(0);

/** GOOD, with `data` cut to what both the DMA and the CDB allow (docs/smc.md §1). */
export function good(req: ScsiRequest, data: Uint8Array = EMPTY, allocationLength = 0): ScsiResult {
  const dataInLen = Number.isFinite(req.dataInLen) && req.dataInLen > 0 ? Math.floor(req.dataInLen) : 0;
  const n = Math.min(dataInLen, allocationLength, data.length);
  return { status: ScsiStatus.GOOD, dataIn: n === data.length ? data : data.subarray(0, n), sense: EMPTY };
}

/** CHECK CONDITION with `sense` as autosense, no data. */
export function checkCondition(sense: Sense, detail: string): ScsiResult {
  return { status: ScsiStatus.CHECK_CONDITION, dataIn: EMPTY, sense: encodeFixedSense(sense), detail };
}

/** Runs a command body, turning the CheckCondition it throws into its result; other errors pass. */
export function runCommand(body: () => ScsiResult): ScsiResult {
  try {
    return body();
  } catch (e) {
    if (e instanceof CheckCondition) return checkCondition(e.sense, e.message);
    throw e;
  }
}

/** REQUEST SENSE: the pending sense (cleared) or NO SENSE, always fixed format (docs/smc.md §4.3). */
export function requestSense(
  req: ScsiRequest,
  nexus: ScsiNexus | undefined,
  allocationLength: number,
): ScsiResult {
  const pending = nexus?.pendingSense ?? null;
  if (nexus) nexus.pendingSense = null;
  return good(req, encodeFixedSense(pending ?? SENSE.NO_SENSE), allocationLength);
}
