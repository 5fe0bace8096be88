// The library folder as the SCSI module's ChangerState (docs/changer.md):
// element addresses of docs/smc.md §2 over the library's places (drive i ↔
// 500 + i, slot n ↔ 1000 + n − 1, mail slot n ↔ 10 + n − 1), what is where
// read from the folder at each command, and moves as renames of the tapes'
// symlinks. One instance per library in the server; every command runs
// synchronously on the main thread, so commands of all sessions are
// serialised, and the server's library lock keeps other processes out.

import { createHash } from 'node:crypto';
import { ElementMap, ElementType } from './smc/element-map.js';
import type { DeviceIdentity } from './smc/inquiry.js';
import type { ChangerRefusal, ChangerState, ElementContents } from './smc/state.js';
import { DRIVE_MODEL, LibraryError } from './library.js';
import type { Library, Place } from './library.js';

/** The name DMAs open the changer by (SCSI_OPEN, CONFIG_GET_SCSI_INFO), as ndmjob's examples use. */
export const CHANGER_DEVICE = 'changer0';
export const CHANGER_VENDOR = 'NDMPD';
export const CHANGER_PRODUCT = 'VTL-CHANGER';
export const DEVICE_REVISION = '0001';

function hashOf(seed: string, what: string): Buffer {
  return createHash('sha256').update(`${seed}\0${what}`).digest();
}

export class LibraryChanger implements ChangerState {
  readonly elementMap: ElementMap;
  readonly identity: DeviceIdentity;
  readonly drives: readonly DeviceIdentity[];
  /** PREVENT ALLOW MEDIUM REMOVAL: kept for the operator side; robot moves ignore it (docs/smc.md §4.8). */
  preventMediumRemoval = false;

  constructor(readonly library: Library) {
    this.elementMap = new ElementMap({
      drives: library.drives().length,
      slots: library.slotCount,
      importExport: library.mailslotCount,
    });
    const h = hashOf(library.serialSeed, CHANGER_DEVICE);
    // NAA 3 (locally assigned) and 60 bits of the hash: stable, and distinct per host and library.
    const naa = Uint8Array.from(h.subarray(0, 8));
    naa[0] = 0x30 | (naa[0]! & 0x0f);
    this.identity = Object.freeze({
      vendor: CHANGER_VENDOR,
      product: CHANGER_PRODUCT,
      revision: DEVICE_REVISION,
      serial: `CHG${h.toString('hex').slice(0, 9).toUpperCase()}`,
      naa,
    });
    // The drives' serials are the library's (CONFIG_GET_TAPE_INFO's SERIAL_NUMBER), so
    // DVCID, the drive's own INQUIRY and the tape info all agree (docs/changer.md §3).
    this.drives = Object.freeze(
      library.drives().map((d) =>
        Object.freeze({
          vendor: CHANGER_VENDOR,
          product: DRIVE_MODEL,
          revision: DEVICE_REVISION,
          serial: d.serial,
        }),
      ),
    );
  }

  /** CONFIG_GET_SCSI_INFO's model: INQUIRY's vendor, product and revision (docs/changer.md §4.1). */
  get model(): string {
    return `${this.identity.vendor} ${this.identity.product} ${this.identity.revision}`;
  }

  /** The NAA name as WORLD_WIDE_NAME prints it: 0x and 16 hex digits. */
  get worldWideName(): string {
    return `0x${Buffer.from(this.identity.naa!).toString('hex')}`;
  }

  /** The place behind an element address that holds media, or null. */
  placeOf(address: number): Place | null {
    const e = this.elementMap.lookup(address);
    if (!e) return null;
    switch (e.type) {
      case ElementType.DATA_TRANSFER:
        return { kind: 'drive', name: this.library.drives()[e.index]!.name, index: e.index };
      case ElementType.STORAGE:
        return { kind: 'slot', number: e.index + 1 };
      case ElementType.IMPORT_EXPORT:
        return { kind: 'mailslot', number: e.index + 1 };
      default:
        return null;
    }
  }

  /** The element address of a place. */
  addressOf(p: Place): number {
    const m = this.elementMap;
    const a =
      p.kind === 'drive'
        ? m.address(ElementType.DATA_TRANSFER, p.index)
        : p.kind === 'slot'
          ? m.address(ElementType.STORAGE, p.number - 1)
          : m.address(ElementType.IMPORT_EXPORT, p.number - 1);
    return a!;
  }

  media(): ReadonlyMap<number, ElementContents> {
    const out = new Map<number, ElementContents>();
    for (const c of this.library.contents()) {
      out.set(this.addressOf(c.place), {
        volumeTag: c.barcode,
        sourceAddress:
          c.sourceSlot === null ? null : this.elementMap.address(ElementType.STORAGE, c.sourceSlot - 1),
      });
    }
    return out;
  }

  move(source: number, destination: number): ChangerRefusal | null {
    const from = this.placeOf(source);
    const to = this.placeOf(destination);
    if (!from || !to)
      return { reason: 'backend-failure', detail: `no place for ${source} or ${destination}` };
    // A tape a session has open never leaves its drive, nor does one arrive
    // under an open drive (docs/smc.md §4.6).
    for (const p of [from, to]) {
      if (p.kind === 'drive' && this.library.driveInUse(p.name)) {
        return {
          reason: 'drive-in-use',
          detail: `${p.name} is open by a tape session (TAPE_CLOSE it first)`,
        };
      }
    }
    const barcode = this.library.at(from);
    if (barcode !== null && this.library.tapeInUse(barcode)) {
      return { reason: 'drive-in-use', detail: `${barcode} is open by a tape session (as tapes/${barcode})` };
    }
    try {
      this.library.move(from, to);
    } catch (e) {
      return { reason: 'backend-failure', detail: (e as Error).message };
    }
    return null;
  }

  initializeElementStatus(): ChangerRefusal | null {
    try {
      this.library.placeOutsiders();
    } catch (e) {
      if (e instanceof LibraryError || (e as NodeJS.ErrnoException).code) {
        return { reason: 'backend-failure', detail: (e as Error).message };
      }
      throw e;
    }
    return null;
  }
}
