// The tapes a tape server offers, as the DMA sees them through
// CONFIG_GET_TAPE_INFO: drives, and (from ndmpd's virtual library) tape
// images with barcode, label and fill.

import { M, NdmpError } from '../wire/index.js';
import type { NdmpClient } from './client.js';
import { TAPE_IMAGE_MODEL } from '../devices/library.js';

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

// Which of these tapes a backup goes on is src/dma/pools.ts's choice (docs/dma.md, "Pools and tapes").
