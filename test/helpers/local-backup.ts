// The steps of a LOCAL backup onto a fresh tape of a test library, as the
// integration tests drive it over a real session.

import type { Library } from '../../src/devices/library.js';
import type { NdmpClient } from '../../src/dma/client.js';
import { AddrType, INVALID_U64, M, MoverMode, TapeOpenMode } from '../../src/wire/index.js';
import type { Pval } from '../../src/wire/index.js';

/**
 * A LOCAL backup with `env` on a fresh tape of `lib`, the mover's window
 * `windowLength` long; returns the tape once the backup has started.
 */
export async function startLocalBackup(
  c: NdmpClient,
  lib: Library,
  env: Pval[],
  windowLength = INVALID_U64,
): Promise<string> {
  const [barcode] = lib.createTapes({ count: 1 });
  const tape = lib.tapePath(barcode!);
  await c.call(M.TAPE_OPEN, { device: tape, mode: TapeOpenMode.NDMP_TAPE_RDWR_MODE });
  await c.call(M.MOVER_SET_WINDOW, { offset: 0n, length: windowLength });
  await c.call(M.MOVER_LISTEN, {
    mode: MoverMode.NDMP_MOVER_MODE_READ,
    addrType: AddrType.NDMP_ADDR_LOCAL,
  });
  await c.call(M.DATA_CONNECT, { addr: { addrType: AddrType.NDMP_ADDR_LOCAL } });
  await c.call(M.DATA_START_BACKUP, { butypeName: 'tar', env });
  return tape;
}
