// LOCAL data connections (docs/protocol.md §7.6): the data service and the mover of
// one session, driven over one control connection, exchange the stream
// through a byte ring in shared memory between the data thread and the drive
// thread. The main thread only allocates the ring and introduces the two; no
// stream byte passes through it.

import { SpscRing } from '../ring/spsc-ring.js';
import { dataOf } from './data/client.js';
import type { Session } from './session.js';
import { driveOf } from './tape/client.js';

/** Ring size: a few hundred records of the usual sizes, enough to ride out short stalls. */
const LOCAL_RING_BYTES = 8 * 1024 * 1024;

/** DATA_CONNECT(LOCAL): the mover must be listening LOCAL. */
export async function connectDataToMover(s: Session): Promise<void> {
  const sab = SpscRing.allocate(LOCAL_RING_BYTES);
  const data = dataOf(s);
  await data.call('dataAttachLocal', { sab, listening: false });
  try {
    await driveOf(s).drive.call('moverAttachLocal', { sab, connectMode: null });
  } catch (e) {
    await data.call('dataDetachLocal', {});
    throw e;
  }
}

/** MOVER_CONNECT(LOCAL): the data service must be listening LOCAL. */
export async function connectMoverToData(s: Session, mode: number): Promise<void> {
  const sab = SpscRing.allocate(LOCAL_RING_BYTES);
  const drive = driveOf(s).drive;
  await drive.call('moverAttachLocal', { sab, connectMode: mode });
  try {
    await dataOf(s).call('dataAttachLocal', { sab, listening: true });
  } catch (e) {
    await drive.call('moverDetachLocal', {});
    throw e;
  }
}
