// The cost of the tape image's data CRCs (docs/tape-image.md, "Data CRCs"):
// zlib.crc32 on records as the drive thread writes them, and a VirtualTape
// writing a few hundred MiB in 64-record batches, with that CRC share. Prints
// figures, asserts nothing.
//
//   node dist/bench/crc-cost.js [--mib 256] [--record-kib 64] [--runs 5]

import fs from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { crc32 } from 'node:zlib';
import { createTapeImage, openTapeImage } from '../src/devices/tape-image.js';

const { values } = parseArgs({
  options: {
    mib: { type: 'string', default: '256' },
    'record-kib': { type: 'string', default: '64' },
    runs: { type: 'string', default: '5' },
  },
});
const MiB = 1024 * 1024;
const total = Number(values.mib) * MiB;
const rs = Number(values['record-kib']) * 1024;
const runs = Number(values.runs);
const batch = 64; // records per write, as the mover takes them from its ring
const data = Buffer.alloc(batch * rs);
for (let i = 0; i < data.length; i += 4) data.writeUInt32LE((i * 2654435761) >>> 0, i);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

const crcRates: number[] = [];
for (let r = 0; r < runs; r++) {
  const t0 = process.hrtime.bigint();
  let sink = 0;
  for (let done = 0; done < total; done += rs)
    sink ^= crc32(data.subarray(done % data.length, (done % data.length) + rs));
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  if (sink === 0.5) console.log(''); // keep the loop
  crcRates.push(total / MiB / s);
}

const dir = fs.mkdtempSync(join(os.tmpdir(), 'crc-cost-'));
const writeRates: number[] = [];
try {
  for (let r = 0; r < runs; r++) {
    const path = join(dir, `T${r}`);
    createTapeImage(path, { capacity: BigInt(total * 2) });
    const t = openTapeImage(path, { readOnly: false, cache: 'keep' });
    const t0 = process.hrtime.bigint();
    for (let done = 0; done < total; done += data.length) t.writeRecords(data, rs);
    const s = Number(process.hrtime.bigint() - t0) / 1e9;
    t.close();
    fs.rmSync(path);
    fs.rmSync(`${path}.idx`);
    writeRates.push(total / MiB / s);
  }
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}
const crc = median(crcRates);
const write = median(writeRates);
console.log(
  `crc32 on ${rs / 1024} KiB records: ${crc.toFixed(0)} MiB/s (${((rs / MiB / crc) * 1e6).toFixed(1)} µs a record; ` +
    `runs ${crcRates.map((x) => x.toFixed(0)).join(', ')}); load average ${os.loadavg()[0]!.toFixed(1)}`,
);
console.log(
  `VirtualTape.writeRecords, ${total / MiB} MiB in ${batch}-record writes, CRCs included: ${write.toFixed(0)} MiB/s ` +
    `(runs ${writeRates.map((x) => x.toFixed(0)).join(', ')}); the CRC's share: ${((write / crc) * 100).toFixed(0)}% of the write time`,
);
