// Server-wide tape counters, in one SharedArrayBuffer every drive thread adds
// to with Atomics as it writes and reads (docs/operations.md, "Monitoring"):
// the metrics endpoint reads them at each scrape without asking a thread, so
// they move while a backup runs. Counting is a wrapper around the tape device
// (countingDevice), so TAPE_WRITE, TAPE_READ and the mover are all counted in
// one place.

import { TapeError } from '../../devices/tape.js';
import type { TapeDevice } from '../../devices/tape.js';

export const TapeCounter = {
  RECORDS_WRITTEN: 0,
  BYTES_WRITTEN: 1,
  RECORDS_READ: 2,
  BYTES_READ: 3,
  FILEMARKS_WRITTEN: 4,
  /** A write that failed otherwise than at the end of the medium (EOM is a tape's normal end, not an error). */
  WRITE_ERRORS: 5,
  READ_ERRORS: 6,
  /** Of those, medium errors: a record failing its data CRC, an unrecoverable read ('media'). */
  MEDIA_ERRORS: 7,
} as const;
const COUNT = 8;

export function allocateTapeCounters(): SharedArrayBuffer {
  return new SharedArrayBuffer(COUNT * 8);
}

/** The counters now, by name of TapeCounter. */
export function readTapeCounters(sab: SharedArrayBuffer): Record<keyof typeof TapeCounter, number> {
  const a = new BigInt64Array(sab);
  const out = {} as Record<keyof typeof TapeCounter, number>;
  for (const [k, i] of Object.entries(TapeCounter))
    out[k as keyof typeof TapeCounter] = Number(Atomics.load(a, i));
  return out;
}

/**
 * `dev`, counting its records and errors into `sab`. Everything else passes
 * through untouched (a Proxy: the device's getters stay its own).
 */
export function countingDevice(dev: TapeDevice, sab: SharedArrayBuffer | null): TapeDevice {
  if (!sab) return dev;
  const a = new BigInt64Array(sab);
  const add = (i: number, n: number): void => void Atomics.add(a, i, BigInt(n));
  const failed = (e: unknown, errors: number): void => {
    if (!(e instanceof TapeError) || e.kind === 'eom') return;
    add(errors, 1);
    if (e.kind === 'media') add(TapeCounter.MEDIA_ERRORS, 1);
  };
  const wrapped: Partial<TapeDevice> = {
    writeRecord(data) {
      try {
        const r = dev.writeRecord(data);
        add(TapeCounter.RECORDS_WRITTEN, 1);
        add(TapeCounter.BYTES_WRITTEN, data.length);
        return r;
      } catch (e) {
        failed(e, TapeCounter.WRITE_ERRORS);
        throw e;
      }
    },
    writeRecords(data, recordSize) {
      try {
        const r = dev.writeRecords(data, recordSize);
        add(TapeCounter.RECORDS_WRITTEN, r.written);
        add(TapeCounter.BYTES_WRITTEN, r.written * recordSize);
        return r;
      } catch (e) {
        failed(e, TapeCounter.WRITE_ERRORS);
        throw e;
      }
    },
    writeFilemarks(count) {
      try {
        const r = dev.writeFilemarks(count);
        add(TapeCounter.FILEMARKS_WRITTEN, count);
        return r;
      } catch (e) {
        failed(e, TapeCounter.WRITE_ERRORS);
        throw e;
      }
    },
    readRecord(target, opts) {
      try {
        const r = dev.readRecord(target, opts);
        if (r.kind === 'record') {
          add(TapeCounter.RECORDS_READ, 1);
          add(TapeCounter.BYTES_READ, r.copied);
        }
        return r;
      } catch (e) {
        failed(e, TapeCounter.READ_ERRORS);
        throw e;
      }
    },
  };
  return new Proxy(dev, {
    get(target, prop, receiver) {
      if (typeof prop === 'string' && prop in wrapped) return wrapped[prop as keyof TapeDevice];
      const v = Reflect.get(target, prop, target) as unknown;
      void receiver;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}
