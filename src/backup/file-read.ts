// What the engine's copy loops and the reader thread's share about reading a
// file that may change under the backup.

import fs from 'node:fs';

/**
 * Whether the file still has a byte at `at` (null: at its offset) once its
 * recorded size was copied: it grew while being read. A probe the kernel
 * refuses (EINVAL for an offset at 2^63 - 1, the end of an 8 EiB sparse
 * file) cannot show growth, and must not fail the file: false.
 */
export function grewPast(fd: number, probe: Uint8Array, at: bigint | null): boolean {
  try {
    return fs.readSync(fd, probe, 0, 1, at) > 0;
  } catch {
    return false;
  }
}
