// `npm run bench`: prints figures, never asserts them (tests check behaviour,
// benchmarks measure). Each benchmark states its baseline next to its figures.

import os from 'node:os';
import { benchBackup } from './backup.js';
import { benchCatalog } from './catalog.js';
import { benchHistory } from './history.js';
import { benchMoverThroughput } from './mover-throughput.js';
import { benchPax } from './pax.js';
import { benchRing } from './ring.js';
import { benchSoak } from './soak.js';
import { benchTapePositioning } from './tape-positioning.js';

console.log(
  `machine: ${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, node ${process.version}`,
);
benchTapePositioning();
await benchMoverThroughput();
await benchRing();
await benchPax();
await benchHistory();
await benchCatalog(process.argv.slice(2));
const summary = await benchBackup(process.argv.slice(2));
await benchSoak(process.argv.slice(2));
// Last, so one run ends with issue 14's targets and their verdicts.
summary.print();
