// The DMA's side of a medium changer reached over NDMP (SCSI_OPEN and
// SCSI_EXECUTE_CDB, docs/smc.md): the CDBs `ndmp` sends to find where each
// tape is and to move one, and the replies read back by their own byte
// counts. It reads the layouts as SMC defines them, not as our server writes
// them, so that it works with any NDMP server's changer and so that its tests
// check the server's replies rather than repeat them.
//
// What a DMA needs of a changer is small: every element with what it holds
// (READ ELEMENT STATUS with volume tags, and the drives' identifiers so that
// a drive element can be matched to the tape device the server names), and
// MOVE MEDIUM. Everything else (element map pages, inventories) is left to the
// changer: READ ELEMENT STATUS says where each element is.

import { M } from '../wire/index.js';
import type { NdmpClient } from './client.js';
import { CodedError } from '../util/coded-error.js';
// The opcodes only: replies are read here by SMC's layouts, not by our server's encoder.
import { Opcode } from '../devices/smc/cdb.js';

/** What an element of the changer is (SMC element type codes 1–4). */
export type ElementKind = 'transport' | 'storage' | 'import-export' | 'drive';

const KIND_BY_CODE: Record<number, ElementKind> = {
  1: 'transport',
  2: 'storage',
  3: 'import-export',
  4: 'drive',
};

/** One element as READ ELEMENT STATUS reports it. */
export interface ElementStatus {
  readonly address: number;
  readonly kind: ElementKind;
  /** It holds a cartridge. */
  readonly full: boolean;
  /** The cartridge's barcode (primary volume tag, trailing blanks off); null when there is none. */
  readonly volumeTag: string | null;
  /** The storage element the cartridge came from (SValid), else null. */
  readonly sourceAddress: number | null;
  /** A drive's device identifier (DVCID) as text, else null. */
  readonly identifier: string | null;
  /** The element is in an abnormal state (Except): its ASC/ASCQ. */
  readonly exception: { readonly asc: number; readonly ascq: number } | null;
}

/** A changer command that did not succeed: the changer's sense, in words. */
export class ChangerError extends CodedError {
  readonly code = 'DMA_CHANGER';
  constructor(
    message: string,
    /** Sense key, ASC and ASCQ when the changer answered CHECK CONDITION. */
    readonly sense: { readonly key: number; readonly asc: number; readonly ascq: number } | null = null,
  ) {
    super(message);
    this.name = 'ChangerError';
  }
}

/** A SCSI command's outcome as SCSI_EXECUTE_CDB returns it. */
export interface ScsiReply {
  /** SCSI status: 0 GOOD, 2 CHECK CONDITION, ... */
  readonly status: number;
  readonly dataIn: Uint8Array;
  /** Sense data (autosense) with CHECK CONDITION, else empty. */
  readonly sense: Uint8Array;
}

/** Sends one CDB and says how it went: over NDMP, or (tests) straight to a changer. */
export type CdbExecutor = (cdb: Uint8Array, dataInLen: number, dataOut?: Uint8Array) => Promise<ScsiReply>;

// ---- CDBs -------------------------------------------------------------------

function put16(b: Uint8Array, at: number, v: number): void {
  b[at] = (v >>> 8) & 0xff;
  b[at + 1] = v & 0xff;
}

function get16(b: Uint8Array, at: number): number {
  return (b[at]! << 8) | b[at + 1]!;
}

function get24(b: Uint8Array, at: number): number {
  return (b[at]! << 16) | (b[at + 1]! << 8) | b[at + 2]!;
}

/** READ ELEMENT STATUS of every element (type 0) from address 0, with volume tags and drive identifiers. */
export function readElementStatusCdb(allocationLength: number, count = 0xffff): Uint8Array {
  const cdb = new Uint8Array(12);
  cdb[0] = Opcode.READ_ELEMENT_STATUS;
  cdb[1] = 0x10; // VolTag; element type code 0: all
  put16(cdb, 2, 0); // starting element address
  put16(cdb, 4, count);
  cdb[6] = 0x01; // DVCID (CURDATA left 0: the changer may check before it answers)
  cdb[7] = (allocationLength >>> 16) & 0xff;
  put16(cdb, 8, allocationLength & 0xffff);
  return cdb;
}

/** MOVE MEDIUM from `source` to `destination` by the transport element `transport`. */
export function moveMediumCdb(transport: number, source: number, destination: number): Uint8Array {
  const cdb = new Uint8Array(12);
  cdb[0] = Opcode.MOVE_MEDIUM;
  put16(cdb, 2, transport);
  put16(cdb, 4, source);
  put16(cdb, 6, destination);
  return cdb;
}

// ---- replies ----------------------------------------------------------------

/**
 * The element status pages of a READ ELEMENT STATUS reply, each descriptor
 * read by its page's own descriptor length, so fields a changer adds that we
 * do not know (alternate tags, longer identifiers) are stepped over.
 * Throws ChangerError when the data is shorter than its own counts say.
 */
export function parseElementStatus(data: Uint8Array): ElementStatus[] {
  if (data.length < 8)
    throw new ChangerError(`READ ELEMENT STATUS returned ${data.length} bytes, less than its header`);
  const reported = get24(data, 5);
  const end = Math.min(data.length, 8 + reported);
  const out: ElementStatus[] = [];
  for (let page = 8; page + 8 <= end;) {
    const kind = KIND_BY_CODE[data[page]! & 0x0f];
    const pVolTag = (data[page + 1]! & 0x80) !== 0;
    const aVolTag = (data[page + 1]! & 0x40) !== 0;
    const descLen = get16(data, page + 2);
    const pageBytes = get24(data, page + 5);
    const pageEnd = page + 8 + pageBytes;
    if (kind === undefined || descLen < 12 || pageEnd > end) {
      throw new ChangerError(
        `READ ELEMENT STATUS: an element status page at byte ${page} does not fit the reply ` +
          `(type ${data[page]! & 0x0f}, descriptors of ${descLen} bytes, ${pageBytes} bytes)`,
      );
    }
    for (let d = page + 8; d + descLen <= pageEnd; d += descLen) {
      const flags = data[d + 2]!;
      let tail = d + 12;
      let volumeTag: string | null = null;
      if (pVolTag) {
        const tag = latin1(data.subarray(tail, tail + 32)).replace(/[ \0]+$/, '');
        volumeTag = tag === '' ? null : tag;
        tail += 36;
      }
      if (aVolTag) tail += 36;
      let identifier: string | null = null;
      // A device identifier, if any, follows the tags: 4 bytes of header, then its length.
      if (kind === 'drive' && tail + 4 <= d + descLen) {
        const idLen = data[tail + 3]!;
        if (idLen > 0 && tail + 4 + idLen <= d + descLen) {
          identifier = latin1(data.subarray(tail + 4, tail + 4 + idLen)).trim();
        }
      }
      out.push({
        address: get16(data, d),
        kind,
        full: (flags & 0x01) !== 0,
        volumeTag,
        sourceAddress: (data[d + 9]! & 0x80) !== 0 ? get16(data, d + 10) : null,
        identifier,
        exception: (flags & 0x04) !== 0 ? { asc: data[d + 4]!, ascq: data[d + 5]! } : null,
      });
    }
    page = pageEnd;
  }
  return out;
}

function latin1(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.length).toString('latin1');
}

const SENSE_KEYS = [
  'NO SENSE',
  'RECOVERED ERROR',
  'NOT READY',
  'MEDIUM ERROR',
  'HARDWARE ERROR',
  'ILLEGAL REQUEST',
  'UNIT ATTENTION',
  'DATA PROTECT',
];

/** What the ASC/ASCQ pairs a changer reports mean, in the words of what a DMA asked. */
const CONDITIONS = new Map<number, string>([
  [0x2000, 'the changer does not know the command'],
  [0x2101, 'no such element address'],
  [0x2400, 'the changer refused a field of the command'],
  [0x3a00, 'no medium'],
  [0x3a02, 'the import/export element is open'],
  [0x3b0d, 'the destination element is full'],
  [0x3b0e, 'the source element is empty'],
  [0x5302, 'medium removal is prevented (a drive in use, or the changer locked)'],
  [0x0401, 'the changer is becoming ready'],
  [0x2800, 'the changer changed state (not ready to ready)'],
  [0x2801, 'the import/export element was opened'],
  [0x2900, 'the changer was reset'],
  [0x4400, 'the changer failed internally'],
]);

/** Fixed- or descriptor-format sense as a line for a person, with its codes. */
export function describeSense(sense: Uint8Array): {
  text: string;
  key: number;
  asc: number;
  ascq: number;
} {
  if (sense.length < 3) return { text: 'no sense data', key: 0, asc: 0, ascq: 0 };
  const descriptor = (sense[0]! & 0x7f) >= 0x72;
  const key = (descriptor ? sense[1]! : sense[2]!) & 0x0f;
  const asc = (descriptor ? sense[2] : sense[12]) ?? 0;
  const ascq = (descriptor ? sense[3] : sense[13]) ?? 0;
  const hex = (n: number) => n.toString(16).toUpperCase().padStart(2, '0');
  const what = CONDITIONS.get((asc << 8) | ascq) ?? `ASC/ASCQ ${hex(asc)}/${hex(ascq)}`;
  return {
    text: `${what} (${SENSE_KEYS[key] ?? `sense key ${key}`}, ${hex(asc)}/${hex(ascq)})`,
    key,
    asc,
    ascq,
  };
}

// ---- the changer ---------------------------------------------------------------

/** READ ELEMENT STATUS's first allocation: enough for a library of a few hundred elements. */
const FIRST_ALLOCATION = 64 * 1024;
/** The most a reply may be (the CDB's 24-bit allocation length). */
const MAX_ALLOCATION = 0xffffff;

/** A changer with an open SCSI connection: what it holds, and moves. */
export class MediumChanger {
  constructor(
    private readonly exec: CdbExecutor,
    /** How messages name it (its SCSI device name). */
    readonly device: string,
    /** READ ELEMENT STATUS's first allocation length (a longer report is asked for again, whole). */
    private readonly firstAllocation = FIRST_ALLOCATION,
    private readonly closer: (() => Promise<void>) | null = null,
  ) {}

  /**
   * SCSI_OPEN of `device` on `client` (the DMA's connection to the tape
   * server, whose SCSI service then belongs to this changer until SCSI_CLOSE
   * or the connection closes).
   */
  static async open(client: NdmpClient, device: string): Promise<MediumChanger> {
    await client.call(M.SCSI_OPEN, { device });
    const exec: CdbExecutor = async (cdb, dataInLen, dataOut) => {
      const r = await client.call(M.SCSI_EXECUTE_CDB, {
        flags: dataInLen > 0 ? 1 : dataOut && dataOut.length > 0 ? 2 : 0,
        timeout: 300_000,
        datainLen: dataInLen,
        cdb: Buffer.from(cdb.buffer, cdb.byteOffset, cdb.length),
        dataout: dataOut ? Buffer.from(dataOut.buffer, dataOut.byteOffset, dataOut.length) : Buffer.alloc(0),
      });
      return { status: r.status, dataIn: r.datain, sense: r.extSense };
    };
    const changer = new MediumChanger(exec, device, FIRST_ALLOCATION, async () => {
      await client.call(M.SCSI_CLOSE, {});
    });
    try {
      await changer.ready();
    } catch (e) {
      await changer.close().catch(() => undefined);
      throw e;
    }
    return changer;
  }

  /** SCSI_CLOSE: the server's changer is free for other connections again. */
  async close(): Promise<void> {
    await this.closer?.();
  }

  /** TEST UNIT READY, once more after a unit attention (a reset or a changed state is news, not failure). */
  async ready(): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      const r = await this.exec(Uint8Array.of(Opcode.TEST_UNIT_READY, 0, 0, 0, 0, 0), 0);
      if (r.status === 0) return;
      const s = describeSense(r.sense);
      if (s.key === 6 && attempt === 0) continue;
      throw this.failed('is not ready', r, s);
    }
  }

  /** Every element and what it holds, in address order. */
  async elements(): Promise<ElementStatus[]> {
    let alloc = this.firstAllocation;
    for (;;) {
      const r = await this.exec(readElementStatusCdb(alloc), alloc);
      if (r.status !== 0) throw this.failed('could not report its elements', r);
      const d = r.dataIn;
      // The header counts all there is; a reply cut at our allocation says how much to ask for.
      const total = d.length >= 8 ? 8 + get24(d, 5) : 0;
      if (total > d.length && d.length === alloc && alloc < MAX_ALLOCATION) {
        alloc = Math.min(MAX_ALLOCATION, total);
        continue;
      }
      return parseElementStatus(d).sort((a, b) => a.address - b.address);
    }
  }

  /** INITIALIZE ELEMENT STATUS: the changer takes inventory again (finds tapes put in behind its back). */
  async inventory(): Promise<void> {
    const r = await this.exec(Uint8Array.of(Opcode.INITIALIZE_ELEMENT_STATUS, 0, 0, 0, 0, 0), 0);
    if (r.status !== 0) throw this.failed('could not take inventory', r);
  }

  /** MOVE MEDIUM from `source` to `destination`, by the first transport element. */
  async move(source: number, destination: number, elements?: readonly ElementStatus[]): Promise<void> {
    const all = elements ?? (await this.elements());
    const transport = all.find((e) => e.kind === 'transport')?.address ?? 0;
    const r = await this.exec(moveMediumCdb(transport, source, destination), 0);
    if (r.status !== 0) throw this.failed(`could not move the tape at ${source} to ${destination}`, r);
  }

  private failed(what: string, r: ScsiReply, s = describeSense(r.sense)): ChangerError {
    if (r.status === 2) {
      return new ChangerError(`the changer ${this.device} ${what}: ${s.text}`, {
        key: s.key,
        asc: s.asc,
        ascq: s.ascq,
      });
    }
    return new ChangerError(`the changer ${this.device} ${what}: SCSI status 0x${r.status.toString(16)}`);
  }
}

/** The element holding the tape `barcode`, or null. */
export function findTape(elements: readonly ElementStatus[], barcode: string): ElementStatus | null {
  return elements.find((e) => e.full && e.volumeTag === barcode) ?? null;
}

/**
 * Where a tape taken out of `drive` goes: the slot it came from when that is
 * empty, else the first empty slot; null when every slot is full.
 */
export function homeFor(elements: readonly ElementStatus[], drive: ElementStatus): ElementStatus | null {
  const slots = elements.filter((e) => e.kind === 'storage');
  const source = slots.find((e) => e.address === drive.sourceAddress && !e.full);
  return source ?? slots.find((e) => !e.full) ?? null;
}

/**
 * The drive element that is the tape device a server lists with `serial`
 * (CONFIG_GET_TAPE_INFO's SERIAL_NUMBER): its DVCID identifier is that serial
 * or ends with it (vendor, product, serial).
 */
export function driveElementFor(elements: readonly ElementStatus[], serial: string): ElementStatus | null {
  if (serial === '') return null;
  return (
    elements.find(
      (e) =>
        e.kind === 'drive' &&
        e.identifier !== null &&
        (e.identifier === serial || e.identifier.endsWith(serial)),
    ) ?? null
  );
}
