// How a job gets the tape it wants into something TAPE_OPEN can open
// (docs/dma.md, "Tapes in a changer"). A tape server whose
// CONFIG_GET_SCSI_INFO lists a medium changer gets its tapes moved by it:
// the tape goes into a free drive, the drive is checked to hold that very
// tape, the job opens the drive, and the tape goes back to its slot after.
// The changer is driven over a connection of its own (the robot's): a
// connection has one device open at a time, and the job's has the tape.
// A server without a changer has its tapes opened as it names them
// (ndmpd's library: `tapes/BARCODE`), as before.
//
// The catalog records barcodes, never drive names: a drive holds a different
// tape each time, and a restore must find the tape wherever it is now.

import { ErrorCode, M, NdmpError } from '../wire/index.js';
import type { NdmpClient } from './client.js';
import { ChangerError, MediumChanger, driveElementFor, findTape, homeFor } from './changer.js';
import type { ElementStatus } from './changer.js';
import { listTapeServer } from './media.js';
import type { Drive } from './media.js';
import { CodedError } from '../util/coded-error.js';

/** A tape as the catalog knows it: its barcode where it has one, else the device it was opened as. */
export interface TapeRef {
  readonly device: string;
  readonly barcode: string | null;
}

/** The tape a job asked for is not where it can be loaded, or the drive holds another one. */
export class TapeNotAvailableError extends CodedError {
  readonly code = 'DMA_TAPE_NOT_AVAILABLE';
  constructor(message: string) {
    super(message);
    this.name = 'TapeNotAvailableError';
  }
}

/** How long a job waits for a changer another connection holds (it moves a tape, then lets go). */
const CHANGER_BUSY_WAIT_MS = 120_000;
const CHANGER_BUSY_RETRY_MS = 500;

export class TapeLoader {
  /** The drive element a tape was loaded into by us, to be put back (null: nothing loaded by us). */
  private loaded: { drive: ElementStatus; barcode: string } | null = null;

  /** The robot's connection, made on first use and kept for the job. */
  private robot: NdmpClient | null = null;

  private constructor(
    private readonly connectRobot: () => Promise<NdmpClient>,
    /** The changer's SCSI device, or null: the server has none. */
    private readonly changerDevice: string | null,
    private readonly drives: readonly Drive[],
    private readonly say: (text: string) => void,
  ) {}

  /**
   * The loader for `tape`'s server: through its changer when it lists one,
   * driven over a second connection to the same server (`connectRobot`).
   */
  static async forServer(
    tape: NdmpClient,
    connectRobot: () => Promise<NdmpClient>,
    say: (text: string) => void = () => {},
  ): Promise<TapeLoader> {
    const device = await changerDevice(tape);
    if (device === null) return new TapeLoader(connectRobot, null, [], say);
    const { drives } = await listTapeServer(tape);
    return new TapeLoader(connectRobot, device, drives, say);
  }

  /** Ends the robot's connection (a tape still loaded stays where it is: unmount() first). */
  async close(): Promise<void> {
    const r = this.robot;
    this.robot = null;
    await r?.close().catch(() => undefined);
  }

  /** Tapes go through a changer. */
  get viaChanger(): boolean {
    return this.changerDevice !== null;
  }

  /**
   * The barcodes the changer holds (slots, drives, import/export), after it
   * took inventory (so a tape made since its last one counts); null without
   * a changer. A tape outside it cannot be loaded: a job picks among these.
   */
  async inChanger(): Promise<Set<string> | null> {
    if (!this.viaChanger) return null;
    return this.withChanger(async (c) => {
      await c.inventory();
      const els = await c.elements();
      return new Set(els.filter((e) => e.full && e.volumeTag !== null).map((e) => e.volumeTag!));
    });
  }

  /**
   * `fn` with the changer open, closed again after: other jobs (and DMAs)
   * share the changer, and a server lets one connection have it at a time.
   * A changer another connection holds is waited for, boundedly.
   */
  private async withChanger<T>(fn: (c: MediumChanger) => Promise<T>): Promise<T> {
    const device = this.changerDevice!;
    const deadline = Date.now() + CHANGER_BUSY_WAIT_MS;
    let c: MediumChanger;
    this.robot ??= await this.connectRobot();
    for (;;) {
      try {
        c = await MediumChanger.open(this.robot, device);
        break;
      } catch (e) {
        const busy = e instanceof NdmpError && e.ndmpError === ErrorCode.NDMP_DEVICE_BUSY_ERR;
        if (!busy || Date.now() > deadline) {
          if (busy) {
            throw new TapeNotAvailableError(
              `the changer ${device} was in use by another connection for ${CHANGER_BUSY_WAIT_MS / 1000} s; run the job again`,
            );
          }
          throw e;
        }
        await new Promise((r) => setTimeout(r, CHANGER_BUSY_RETRY_MS));
      }
    }
    try {
      return await fn(c);
    } finally {
      await c.close().catch(() => undefined);
    }
  }

  /**
   * Opens `t` with `open(device)` (TAPE_OPEN and what follows). Through a
   * changer: `t.barcode` is loaded into a free drive (or the drive that
   * already holds it) and checked there, and the drive opened while the
   * changer is still ours, so no other connection moves the tape away in
   * between (a server refuses to move a tape out of a drive that is open).
   * Call unmount() once the tape is closed.
   */
  async mount<T>(t: TapeRef, open: (device: string) => Promise<T>): Promise<T> {
    if (!this.viaChanger || t.barcode === null) return open(t.device);
    const barcode = t.barcode;
    return this.withChanger(async (c) => {
      const device = await this.load(c, barcode);
      try {
        return await open(device);
      } catch (e) {
        // Not opened: the tape goes back now, not at a later unmount().
        await this.putBack(c);
        throw e;
      }
    });
  }

  private async load(changer: MediumChanger, barcode: string): Promise<string> {
    let els = await changer.elements();
    let at = findTape(els, barcode);
    if (!at) {
      // Put in behind the changer's back (a new tape, a hand-made link): its inventory finds it.
      await changer.inventory();
      els = await changer.elements();
      at = findTape(els, barcode);
    }
    if (!at) {
      throw new TapeNotAvailableError(
        `tape ${barcode} is in none of the changer ${changer.device}'s slots and drives: ` +
          `put it in (its import/export element, or 'ndmpd tape' on the server) and run the job again`,
      );
    }
    let drive: ElementStatus;
    if (at.kind === 'drive') {
      drive = at;
    } else {
      const free =
        els.find((e) => e.kind === 'drive' && !e.full && this.deviceOf(els, e) !== null) ??
        (await this.emptyADrive(changer, els));
      if (!free) {
        throw new TapeNotAvailableError(
          `no drive of the changer ${changer.device} is free to load tape ${barcode} into: ` +
            `every drive holds a tape another job has open; wait for one to end and run the job again`,
        );
      }
      els = await changer.elements();
      await changer.move(at.address, free.address, els);
      this.say(`loaded tape ${barcode} from element ${at.address} into drive element ${free.address}`);
      els = await changer.elements();
      drive = els.find((e) => e.address === free.address)!;
    }
    // What is in the drive now is what will be read or written: it must be the tape asked for.
    if (!drive.full || drive.volumeTag !== barcode) {
      throw new TapeNotAvailableError(
        `drive element ${drive.address} holds ${drive.full ? `tape ${drive.volumeTag ?? 'without a barcode'}` : 'no tape'}, ` +
          `not tape ${barcode}: the library changed under this job; run it again`,
      );
    }
    const device = this.deviceOf(els, drive);
    if (device === null) {
      throw new TapeNotAvailableError(
        `tape ${barcode} is in drive element ${drive.address}, which matches none of the drives the server lists`,
      );
    }
    // Only what we moved goes back: a tape that was in its drive already stays there.
    this.loaded = at.kind === 'drive' ? null : { drive, barcode };
    return device;
  }

  /** Puts the tape mount() loaded back into a slot (its own when it is free). Never throws: says why. */
  async unmount(): Promise<void> {
    const l = this.loaded;
    if (!l || !this.viaChanger) return;
    try {
      await this.withChanger((changer) => this.putBack(changer));
    } catch (e) {
      if (!(e instanceof ChangerError || e instanceof NdmpError || e instanceof TapeNotAvailableError))
        throw e;
      this.say(`tape ${l.barcode} could not be unloaded: ${e.message}`);
    }
  }

  /**
   * No drive is empty: the first whose tape the changer will take out (one
   * that no session has open: the server refuses to move the others, with
   * MEDIUM REMOVAL PREVENTED) is emptied into a slot. Null when none can be.
   */
  private async emptyADrive(
    changer: MediumChanger,
    els: readonly ElementStatus[],
  ): Promise<ElementStatus | null> {
    for (const d of els) {
      if (d.kind !== 'drive' || !d.full || this.deviceOf(els, d) === null) continue;
      const home = homeFor(els, d);
      if (!home) return null;
      try {
        await changer.move(d.address, home.address, els);
      } catch (e) {
        const inUse = e instanceof ChangerError && e.sense?.asc === 0x53 && e.sense.ascq === 0x02;
        if (inUse) continue;
        throw e;
      }
      this.say(
        `unloaded tape ${d.volumeTag ?? '(no barcode)'} from drive element ${d.address} into slot ${home.address}`,
      );
      return d;
    }
    return null;
  }

  /** Moves the tape load() put in a drive back to a slot (its own when free). */
  private async putBack(changer: MediumChanger): Promise<void> {
    const l = this.loaded;
    this.loaded = null;
    if (!l) return;
    const els = await changer.elements();
    const drive = els.find((e) => e.address === l.drive.address);
    if (!drive?.full || drive.volumeTag !== l.barcode) return;
    const home = homeFor(els, drive);
    if (!home) {
      this.say(`tape ${l.barcode} stays in drive element ${drive.address}: every slot is full`);
      return;
    }
    await changer.move(drive.address, home.address, els);
    this.say(`unloaded tape ${l.barcode} into slot ${home.address}`);
  }

  /**
   * The tape device a drive element is: the server's drive whose serial its
   * DVCID identifier carries, else (a changer without identifiers) the drive
   * listed in the same place as the element among the drive elements.
   */
  private deviceOf(els: readonly ElementStatus[], drive: ElementStatus): string | null {
    for (const d of this.drives) {
      if (d.serial && driveElementFor(els, d.serial)?.address === drive.address) return d.device;
    }
    if (els.some((e) => e.kind === 'drive' && e.identifier !== null)) return null;
    const i = els.filter((e) => e.kind === 'drive').findIndex((e) => e.address === drive.address);
    return this.drives[i]?.device ?? null;
  }
}

/** The medium changer CONFIG_GET_SCSI_INFO lists first, or null when the server lists none. */
async function changerDevice(tape: NdmpClient): Promise<string | null> {
  try {
    const { scsiInfo } = await tape.call(M.CONFIG_GET_SCSI_INFO, {});
    return scsiInfo.flatMap((m) => m.caplist.map((c) => c.device))[0] ?? null;
  } catch (e) {
    // A server without a SCSI service has no changer for us.
    if (e instanceof NdmpError) return null;
    throw e;
  }
}
