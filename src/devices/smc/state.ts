// What the caller supplies to the pure SCSI module (docs/smc.md §1.1): the
// changer's element map and identities, where each cartridge is, and the
// few actions a command can ask for. The server backs it with the library
// folder; the unit tests with an in-memory library. Every method is
// synchronous and called at most once per command (media() once per READ
// ELEMENT STATUS or MOVE MEDIUM), so one command sees one consistent view.

import type { ElementMap } from './element-map.js';
import type { DeviceIdentity } from './inquiry.js';

/** A cartridge in an element. */
export interface ElementContents {
  /** The barcode, reported as the primary volume tag; null when the cartridge has none. */
  readonly volumeTag: string | null;
  /**
   * The storage element this cartridge last left, reported with SValid; null
   * when it sits in its slot or came in through the import/export element
   * (docs/smc.md §4.5, "Source address").
   */
  readonly sourceAddress: number | null;
  /** Import/export element only: the operator put it there (ImpExp), rather than the robot. */
  readonly placedByOperator?: boolean;
  /** The element is in an abnormal state (Except), with the reason as ASC/ASCQ. */
  readonly exception?: { readonly asc: number; readonly ascq: number };
}

/**
 * Why the state refused a move or an inventory, each reported with its own
 * sense (docs/smc.md §4.6):
 * - `drive-in-use`: a tape session has the source (or destination) drive
 *   open → ILLEGAL REQUEST, MEDIUM REMOVAL PREVENTED (05/53/02);
 * - `import-export-open`: the operator side of the import/export element is
 *   open → NOT READY, MEDIUM NOT PRESENT - TRAY OPEN (02/3A/02);
 * - `backend-failure`: the image files or links could not be changed →
 *   HARDWARE ERROR, INTERNAL TARGET FAILURE (04/44/00).
 */
export interface ChangerRefusal {
  readonly reason: 'drive-in-use' | 'import-export-open' | 'backend-failure';
  /** For the server's log: what happened, in words. */
  readonly detail: string;
}

export interface ChangerState {
  /** The element addresses; never changes while the server runs. */
  readonly elementMap: ElementMap;
  /** The changer's own INQUIRY identity (its serial is CONFIG_GET_SCSI_INFO's SERIAL_NUMBER). */
  readonly identity: DeviceIdentity;
  /**
   * Each drive's identity, in element order: drives[i] is the data transfer
   * element elementMap.dataTransfer.first + i, and the device a DMA reaches as
   * drive i. READ ELEMENT STATUS with DVCID reports it; the drive's own
   * INQUIRY (TAPE_EXECUTE_CDB) must use the same one.
   */
  readonly drives: readonly DeviceIdentity[];
  /** Where the cartridges are now: one entry per full storage, import/export or drive element. */
  media(): ReadonlyMap<number, ElementContents>;
  /**
   * Moves the cartridge at `source` to the empty element `destination`
   * (both storage, import/export or drive elements, already checked). When
   * it returns null the move is complete and durable: media() shows it, and a
   * drive loaded by it can be opened at once. A refusal leaves everything as
   * it was.
   */
  move(source: number, destination: number): ChangerRefusal | null;
  /** INITIALIZE ELEMENT STATUS (with or without range): take inventory again; never moves anything. */
  initializeElementStatus(): ChangerRefusal | null;
  /**
   * PREVENT ALLOW MEDIUM REMOVAL: while true the operator may not take
   * cartridges out of (or put them into) the import/export element. Robot
   * moves are not affected (docs/smc.md §4.8).
   */
  preventMediumRemoval: boolean;
}

/** A drive as TAPE_EXECUTE_CDB sees it (docs/smc.md §5). */
export interface TapeDriveState {
  /** The same identity as the changer's drives[i] for this drive. */
  readonly identity: DeviceIdentity;
  /** A cartridge is loaded and not ejected (TEST UNIT READY is GOOD). */
  mediumLoaded(): boolean;
}
