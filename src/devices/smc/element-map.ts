// The element address map (docs/smc.md §2): one medium transport, the
// import/export elements, the drives (data transfer elements) and the
// storage slots, each type at its own contiguous run of addresses. DMAs
// read the map from mode page 1Dh and compute drive i as first + i and
// slot n as first + n − 1, so a run must never have holes, and the map must
// never change while the server runs.

import { ElementMapError } from './errors.js';

/** SMC element type codes (READ ELEMENT STATUS byte 1, element status pages). */
export const ElementType = {
  ALL: 0,
  MEDIUM_TRANSPORT: 1,
  STORAGE: 2,
  IMPORT_EXPORT: 3,
  DATA_TRANSFER: 4,
} as const;
export type ElementType = (typeof ElementType)[keyof typeof ElementType];
/** The type of a real element (ALL is only a selector). */
export type ElementTypeCode = Exclude<ElementType, typeof ElementType.ALL>;

/** A run of elements of one type. */
export interface ElementRange {
  readonly type: ElementTypeCode;
  readonly first: number;
  readonly count: number;
}

/** One element: its address, type and index in its run (drive i, slot n − 1). */
export interface Element {
  readonly address: number;
  readonly type: ElementTypeCode;
  readonly index: number;
}

export interface ElementMapOptions {
  /** Data transfer elements, drive0..drive(N−1). */
  readonly drives: number;
  /** Storage elements. */
  readonly slots: number;
  /** Import/export elements (default 1). */
  readonly importExport?: number;
}

/** First addresses of each run (docs/smc.md §2: the HP-style layout). */
export const FIRST_ADDRESS = Object.freeze({
  MEDIUM_TRANSPORT: 1,
  IMPORT_EXPORT: 10,
  DATA_TRANSFER: 500,
  STORAGE: 1000,
});
/** The largest counts that keep the runs disjoint and inside 16-bit addresses. */
export const MAX_IMPORT_EXPORT = 16;
export const MAX_DRIVES = FIRST_ADDRESS.STORAGE - FIRST_ADDRESS.DATA_TRANSFER;
export const MAX_SLOTS = 0x10000 - FIRST_ADDRESS.STORAGE;

function checkCount(what: string, n: number, min: number, max: number): void {
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new ElementMapError(`a changer has ${min} to ${max} ${what}, not ${n}`);
  }
}

export class ElementMap {
  readonly mediumTransport: ElementRange;
  readonly importExport: ElementRange;
  readonly dataTransfer: ElementRange;
  readonly storage: ElementRange;
  /** Every run, ascending by first address: the order READ ELEMENT STATUS reports them in. */
  readonly ranges: readonly ElementRange[];

  constructor(opts: ElementMapOptions) {
    const importExport = opts.importExport ?? 1;
    checkCount('drives', opts.drives, 1, MAX_DRIVES);
    checkCount('slots', opts.slots, 1, MAX_SLOTS);
    checkCount('import/export elements', importExport, 0, MAX_IMPORT_EXPORT);
    const range = (type: ElementTypeCode, first: number, count: number): ElementRange =>
      Object.freeze({ type, first, count });
    this.mediumTransport = range(ElementType.MEDIUM_TRANSPORT, FIRST_ADDRESS.MEDIUM_TRANSPORT, 1);
    this.importExport = range(ElementType.IMPORT_EXPORT, FIRST_ADDRESS.IMPORT_EXPORT, importExport);
    this.dataTransfer = range(ElementType.DATA_TRANSFER, FIRST_ADDRESS.DATA_TRANSFER, opts.drives);
    this.storage = range(ElementType.STORAGE, FIRST_ADDRESS.STORAGE, opts.slots);
    this.ranges = Object.freeze([this.mediumTransport, this.importExport, this.dataTransfer, this.storage]);
    Object.freeze(this);
  }

  /** The run of one element type. */
  rangeOf(type: ElementTypeCode): ElementRange {
    switch (type) {
      case ElementType.MEDIUM_TRANSPORT:
        return this.mediumTransport;
      case ElementType.STORAGE:
        return this.storage;
      case ElementType.IMPORT_EXPORT:
        return this.importExport;
      case ElementType.DATA_TRANSFER:
        return this.dataTransfer;
    }
  }

  /** The element at `address`, or null when no element has that address. */
  lookup(address: number): Element | null {
    for (const r of this.ranges) {
      if (address >= r.first && address < r.first + r.count) {
        return { address, type: r.type, index: address - r.first };
      }
    }
    return null;
  }

  /** The address of element `index` of a type (drive i, slot n − 1), or null past the run's end. */
  address(type: ElementTypeCode, index: number): number | null {
    const r = this.rangeOf(type);
    return Number.isInteger(index) && index >= 0 && index < r.count ? r.first + index : null;
  }

  /** The elements of a type (ALL: every type), ascending by address. */
  elements(type: ElementType = ElementType.ALL): Element[] {
    const out: Element[] = [];
    for (const r of this.ranges) {
      if (type !== ElementType.ALL && r.type !== type) continue;
      for (let i = 0; i < r.count; i++) out.push({ address: r.first + i, type: r.type, index: i });
    }
    return out;
  }
}
