// A backup left "running" by a DMA that died (docs/dma.md, "A DMA that
// died"). A running backup records the DMA's host and pid, and the job
// refreshes a heartbeat in the catalog every HEARTBEAT_MS (with the bytes
// moved and its tape part's length so far). Every `ndmp` command that opens
// the catalog closes as failed each running backup whose DMA is gone: on this
// host, a process that no longer exists; on any host, a heartbeat older than
// STALE_MS (a DMA that cannot reach the catalog for that long has lost its
// backup anyway: its catalog calls time out in WAITS.catalogCallMs).

import os from 'node:os';
import type { BackupRecord, Catalog } from '../catalog/types.js';
import { seconds } from './waits.js';

/**
 * How often a running backup's heartbeat (and its bytes and tape part) is
 * written: often enough that a DMA killed mid-tape leaves its count of bytes
 * close to what the mover wrote, one small UPDATE per beat.
 */
export const HEARTBEAT_MS = 2_000;

/**
 * A heartbeat older than this is a dead DMA's: many beats missed, and more
 * than a catalog call's bound (WAITS.catalogCallMs, 120 s) twice over.
 */
export const STALE_MS = 300_000;

/** Whether process `pid` exists on this host (EPERM: it does, another user's). */
export function processAlive(pid: number): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export interface Liveness {
  now: number;
  host: string;
  alive: (pid: number) => boolean;
  staleMs: number;
}

/** Why running backup `b` is abandoned, or null when its DMA may still be at work. */
export function abandonedBecause(b: BackupRecord, l: Liveness): string | null {
  if (b.status !== 'running') return null;
  const last = b.heartbeatAt ?? b.startedAt;
  const quiet = l.now - last;
  if (b.dmaHost === l.host && b.dmaPid > 0 && !l.alive(b.dmaPid)) {
    return `abandoned: the DMA that ran it (ndmp, pid ${b.dmaPid} on ${b.dmaHost}) is gone; its tapes and the ${b.bytes} bytes it had moved are recorded`;
  }
  if (quiet > l.staleMs) {
    const who = b.dmaHost ? `ndmp, pid ${b.dmaPid} on ${b.dmaHost}` : 'a DMA that recorded no host';
    return (
      `abandoned: no heartbeat from the DMA that ran it (${who}) for ${seconds(quiet)} ` +
      `(the bound is ${seconds(l.staleMs)}); its tapes and the ${b.bytes} bytes it had moved are recorded`
    );
  }
  return null;
}

/**
 * Closes as failed each backup whose DMA died, saying so with `say`; returns
 * the ids closed. A backup another process closed a moment earlier is left
 * (failAbandoned only changes a running one).
 */
export async function closeAbandoned(
  catalog: Catalog,
  say: (text: string) => void,
  l: Liveness = { now: Date.now(), host: os.hostname(), alive: processAlive, staleMs: STALE_MS },
): Promise<number[]> {
  const closed: number[] = [];
  for (const b of await catalog.listBackups()) {
    const why = abandonedBecause(b, l);
    if (!why) continue;
    // It ended, as far as anyone can tell, at its last heartbeat.
    if (await catalog.failAbandoned(b.id, why, Math.max(b.heartbeatAt ?? b.startedAt, b.startedAt))) {
      closed.push(b.id);
      say(`backup ${b.id} was left running: closed as failed (${why})`);
    }
  }
  return closed;
}
