// An in-memory library behind the pure SCSI module's ChangerState, for the
// unit tests: cartridges by element address, drives a test can mark as open
// by a tape session, and failures a test can arrange. It follows the
// provenance rules of docs/smc.md §4.5 ("Source address") so tests can check
// what READ ELEMENT STATUS reports after a series of moves.

import { ElementMap, ElementType } from '../../src/devices/smc/element-map.js';
import type { DeviceIdentity } from '../../src/devices/smc/inquiry.js';
import type { ChangerRefusal, ChangerState, ElementContents } from '../../src/devices/smc/state.js';

export interface MemoryChangerOptions {
  drives?: number;
  slots?: number;
  importExport?: number;
  /** Cartridges at the start: address → contents (or just the barcode). */
  media?: Record<number, string | ElementContents>;
}

export const CHANGER_IDENTITY: DeviceIdentity = Object.freeze({
  vendor: 'NDMPVTL',
  product: 'VIRTUAL-CHANGER',
  revision: '0001',
  serial: 'NDMCHG0001',
  naa: Uint8Array.of(0x30, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77),
});

/** Drive i: serial NDMDRV000i, as the examples of docs/smc.md use. */
export function driveIdentity(i: number): DeviceIdentity {
  return Object.freeze({
    vendor: 'NDMPVTL',
    product: 'VIRTUAL-TAPE',
    revision: '0001',
    serial: `NDMDRV${String(i).padStart(4, '0')}`,
  });
}

export class MemoryChanger implements ChangerState {
  readonly elementMap: ElementMap;
  readonly identity: DeviceIdentity = CHANGER_IDENTITY;
  readonly drives: readonly DeviceIdentity[];
  preventMediumRemoval = false;
  /** Drive element addresses a tape session holds open. */
  readonly openDrives = new Set<number>();
  /** The next move or inventory fails with this, once. */
  failNext: ChangerRefusal | null = null;
  /** Every call the module made, in order. */
  readonly calls: string[] = [];
  private readonly where = new Map<number, ElementContents>();

  constructor(opts: MemoryChangerOptions = {}) {
    this.elementMap = new ElementMap({
      drives: opts.drives ?? 2,
      slots: opts.slots ?? 3,
      importExport: opts.importExport ?? 1,
    });
    this.drives = Array.from({ length: this.elementMap.dataTransfer.count }, (_, i) => driveIdentity(i));
    for (const [a, c] of Object.entries(opts.media ?? {})) {
      this.where.set(Number(a), typeof c === 'string' ? { volumeTag: c, sourceAddress: null } : c);
    }
  }

  media(): ReadonlyMap<number, ElementContents> {
    this.calls.push('media');
    return new Map(this.where);
  }

  /** The barcode at an address, or null when empty (for assertions). */
  at(address: number): string | null | undefined {
    return this.where.has(address) ? this.where.get(address)!.volumeTag : undefined;
  }

  contents(address: number): ElementContents | undefined {
    return this.where.get(address);
  }

  move(source: number, destination: number): ChangerRefusal | null {
    this.calls.push(`move ${source} ${destination}`);
    if (this.failNext) {
      const f = this.failNext;
      this.failNext = null;
      return f;
    }
    if (this.openDrives.has(source) || this.openDrives.has(destination)) {
      return { reason: 'drive-in-use', detail: 'a tape session has the drive open' };
    }
    const c = this.where.get(source)!;
    const fromType = this.elementMap.lookup(source)!.type;
    const toType = this.elementMap.lookup(destination)!.type;
    // Provenance: the slot a cartridge left is kept until it lands in a slot;
    // one that came in through the import/export element has none.
    let sourceAddress: number | null;
    if (toType === ElementType.STORAGE) sourceAddress = null;
    else if (fromType === ElementType.STORAGE) sourceAddress = source;
    else if (fromType === ElementType.IMPORT_EXPORT) sourceAddress = null;
    else sourceAddress = c.sourceAddress;
    this.where.delete(source);
    this.where.set(destination, { volumeTag: c.volumeTag, sourceAddress });
    return null;
  }

  initializeElementStatus(): ChangerRefusal | null {
    this.calls.push('initialize');
    if (this.failNext) {
      const f = this.failNext;
      this.failNext = null;
      return f;
    }
    return null;
  }
}
