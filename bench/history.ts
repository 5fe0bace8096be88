// The history thread alone (issue 4 target: >= 1 M FH_ADD_FILE entries/s
// encoded and sent to a fast reader): a worker plays the session thread and
// writes records into its ring; the real history thread drains, encodes and
// batches them; the main thread writes each message to a real TCP socket whose
// reader discards what it gets.

import net from 'node:net';
import os from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { HistoryHub, historyDefaults } from '../src/history/hub.js';
import { createLogger } from '../src/util/log.js';

export async function benchHistory(count = 2_000_000): Promise<void> {
  let received = 0;
  const server = net.createServer((s) => s.on('data', (b: Buffer) => (received += b.length)));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  const sock = net.connect(port, '127.0.0.1');
  await new Promise<void>((r) => sock.once('connect', r));
  const log = createLogger({ level: 'silent' });
  const hub = new HistoryHub(historyDefaults(join(os.tmpdir(), 'ndmpd-bench-spool')), log);
  const { channel } = hub.open({
    id: 1,
    log,
    writeEncoded: (m, done) => sock.write(m, (err) => done(err ?? undefined)),
  });
  const w = new Worker(new URL('./history-producer.js', import.meta.url), { workerData: { channel, count } });
  const r = await new Promise<{
    produced: number;
    total: number;
    status: number;
    ringWaits: number;
    makeNs: number;
  }>((res, rej) => {
    w.once('message', res);
    w.once('error', rej);
  });
  await w.terminate();
  console.log('\nhistory thread alone: FH_ADD_FILE to a fast reader over loopback TCP');
  console.log(
    `  ${count.toLocaleString('en')} entries in ${(r.total / 1000).toFixed(2)} s: ` +
      `${(((count / r.total) * 1000) / 1e6).toFixed(2)} M entries/s delivered ` +
      `(${(received / r.total / 1000).toFixed(0)} MB/s on the wire; ring-full waits ${r.ringWaits})   target >= 1 M/s`,
  );
  console.log(`  a session thread spends ${r.makeNs.toFixed(0)} ns making each record from an lstat result`);
  sock.destroy();
  server.close();
  await hub.shutdown();
}

if (import.meta.url === `file://${process.argv[1]}`) await benchHistory(Number(process.argv[2] ?? 2_000_000));
