// The tapes a tape server offers, as the DMA sees them through
// CONFIG_GET_TAPE_INFO: drives, and (from ndmpd's virtual library) tape
// images with barcode, label and fill. Picking the tape a backup goes on.

import { M, NdmpError } from '../wire/index.js';
import type { NdmpClient } from './client.js';
import { TAPE_IMAGE_MODEL } from '../devices/library.js';
import { DmaUsageError } from './agent.js';

export interface Drive {
  device: string;
  model: string;
  serial: string | null;
}

export interface Medium {
  /** What TAPE_OPEN takes: "tapes/BARCODE". */
  device: string;
  barcode: string;
  label: string;
  capacity: number;
  used: number;
  /** Tape files (filemarks) on it. */
  files: number;
  blank: boolean;
  writeProtected: boolean;
  /** The drive it is loaded in, or null. */
  loadedIn: string | null;
}

export interface TapeServerContents {
  drives: Drive[];
  /** Empty when the server has no library we can see. */
  media: Medium[];
}

export async function listTapeServer(client: NdmpClient): Promise<TapeServerContents> {
  let info;
  try {
    info = (await client.call(M.CONFIG_GET_TAPE_INFO, {})).tapeInfo;
  } catch (e) {
    // A server with no tape service at all: nothing to list.
    if (e instanceof NdmpError) return { drives: [], media: [] };
    throw e;
  }
  const drives: Drive[] = [];
  const media: Medium[] = [];
  for (const model of info) {
    for (const cap of model.caplist) {
      const env = new Map(cap.capability.map((p) => [p.name, p.value]));
      if (model.model === TAPE_IMAGE_MODEL) {
        media.push({
          device: cap.device,
          barcode: env.get('BARCODE') ?? cap.device,
          label: env.get('LABEL') ?? '',
          capacity: Number(env.get('CAPACITY') ?? 0),
          used: Number(env.get('USED') ?? 0),
          files: Number(env.get('FILES') ?? 0),
          blank: env.get('BLANK') === 'y',
          writeProtected: env.get('WRITE_PROTECTED') === 'y',
          loadedIn: env.get('LOADED_IN') || null,
        });
      } else {
        drives.push({ device: cap.device, model: model.model, serial: env.get('SERIAL_NUMBER') ?? null });
      }
    }
  }
  return { drives, media };
}

/**
 * The next tape to write on: blank, writable, not already written by a backup
 * in our catalog, and not one this job has used; and not in a drive unless
 * `inDrives` (a changer's: the job opens the drive, and a drive another
 * session has open answers DEVICE_BUSY, so the job takes another tape; without
 * a changer a drive's tape may be in use by another DMA through that drive).
 * Barcode order, so the choice is predictable.
 */
export function pickFreeTape(
  media: readonly Medium[],
  inUse: ReadonlySet<string>,
  inDrives = false,
): Medium | null {
  return (
    media.find(
      (m) =>
        m.blank &&
        !m.writeProtected &&
        (inDrives || m.loadedIn === null) &&
        !inUse.has(m.barcode) &&
        !inUse.has(m.device),
    ) ?? null
  );
}

/**
 * No tape to write on. `part`: which part of which backup needed it (a
 * backup that spans tapes ran out mid-way); without it, the backup had not
 * started. The message says why each tape of the library was passed over.
 */
export function noFreeTape(
  server: string,
  media: readonly Medium[],
  inUse: ReadonlySet<string> = new Set(),
  part?: { part: number; backupId: number },
  /** Through a changer: the barcodes it holds (the others cannot be loaded). */
  inChanger: ReadonlySet<string> | null = null,
): DmaUsageError {
  if (media.length === 0) return new DmaUsageError(`${server} lists no tapes; give --tape DEVICE`);
  let written = 0;
  let protectedCount = 0;
  let loaded = 0;
  let outside = 0;
  for (const m of media) {
    if (m.writeProtected) protectedCount++;
    else if (!m.blank || inUse.has(m.barcode) || inUse.has(m.device)) written++;
    else if (inChanger && !inChanger.has(m.barcode)) outside++;
    else if (m.loadedIn !== null) loaded++;
  }
  const why = [
    written && `${written} written`,
    protectedCount && `${protectedCount} write-protected`,
    loaded && `${loaded} in a drive`,
    outside && `${outside} blank but outside the changer, whose slots are full`,
  ]
    .filter(Boolean)
    .join(', ');
  const what = part ? `part ${part.part} of backup ${part.backupId}` : 'the backup';
  // Blank tapes the changer cannot reach want room in it, not more tapes.
  const remedy = outside
    ? `make room in the changer (take written tapes out through its import/export element, or give the server more --slots) and run the backup again`
    : `add tapes with 'ndmpd tape create' and run the backup again`;
  return new DmaUsageError(
    `no blank tape left for ${what} (${server}'s library has ${media.length} tapes: ${why}): ${remedy}`,
  );
}
