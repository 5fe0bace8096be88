// LOCAL data connections (docs/protocol.md §7.6): the data service and the mover of
// one session, driven over one control connection, exchange the stream
// through a byte ring in shared memory between the data thread and the drive
// thread. The main thread only allocates the ring and introduces the two; no
// stream byte passes through it.
//
// The handler of the side that connects passes its own thread; the peer,
// which must be listening LOCAL and so has its thread already, is found in
// the session registry (./registry.ts). So this module imports neither
// service's client, and neither service's handlers import the other's.

import { SpscRing } from '../ring/spsc-ring.js';
import { NdmpError } from '../wire/index.js';
import { recordOf } from './registry.js';
import type { DataClient, DriveClient } from './registry.js';
import type { Session } from './session.js';

/** Ring size: a few hundred records of the usual sizes, enough to ride out short stalls. */
const LOCAL_RING_BYTES = 8 * 1024 * 1024;

/** DATA_CONNECT(LOCAL): the mover must be listening LOCAL. */
export async function connectDataToMover(s: Session, data: DataClient): Promise<void> {
  const sab = SpscRing.allocate(LOCAL_RING_BYTES);
  // The connecting side's own checks come first, as they did when both threads were started here.
  await data.call('dataAttachLocal', { sab, listening: false });
  try {
    // No drive thread: no mover can be listening (a new one starts IDLE); the mover's own refusal.
    const drive = recordOf(s).drive?.drive;
    if (!drive) throw NdmpError.illegalState('the mover is not listening for a LOCAL connection');
    await drive.call('moverAttachLocal', { sab, connectMode: null });
  } catch (e) {
    await data.call('dataDetachLocal', {});
    throw e;
  }
}

/** MOVER_CONNECT(LOCAL): the data service must be listening LOCAL. */
export async function connectMoverToData(s: Session, drive: DriveClient, mode: number): Promise<void> {
  const sab = SpscRing.allocate(LOCAL_RING_BYTES);
  await drive.call('moverAttachLocal', { sab, connectMode: mode });
  try {
    const data = recordOf(s).data?.client;
    if (!data) throw NdmpError.illegalState('the data service is not listening for a LOCAL connection');
    await data.call('dataAttachLocal', { sab, listening: true });
  } catch (e) {
    await drive.call('moverDetachLocal', {});
    throw e;
  }
}
