// The native helper's calls for file history's hand-off (src/util/native-fs.ts,
// docs/history.md, "On the DMA's socket"): the calling thread's CPU clock, and a
// TCP socket's unsent bound (TCP_NOTSENT_LOWAT) and send state (TCP_INFO, SIOCOUTQ).

import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';

import { CONTROL_NOTSENT_BYTES } from '../../src/server/connection.js';
import { setTcpNotsentLowat, tcpSendState, threadCpuNs } from '../../src/util/native-fs.js';

test('threadCpuNs counts this thread’s CPU, not time asleep', async () => {
  const t0 = threadCpuNs();
  assert.ok(t0 > 0);
  await new Promise((r) => setTimeout(r, 100));
  const slept = threadCpuNs() - t0;
  const t1 = threadCpuNs();
  let x = 0;
  for (let i = 0; i < 2e7; i++) x += i % 7;
  const worked = threadCpuNs() - t1;
  assert.ok(x > 0);
  assert.ok(slept < 50e6, `asleep 100 ms, ${slept} ns of CPU`);
  assert.ok(worked > slept, 'a busy loop uses more CPU than a sleep');
});

test('a socket with TCP_NOTSENT_LOWAT keeps little unsent; the rest waits in Node', async (t) => {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const accepted = new Promise<net.Socket>((r) => server.once('connection', r));
  const writer = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
  await new Promise<void>((r) => writer.once('connect', r));
  const reader = await accepted;
  reader.pause(); // a DMA that reads nothing
  t.after(() => {
    writer.destroy();
    reader.destroy();
    server.close();
  });
  const fd = (writer as unknown as { _handle: { fd: number } })._handle.fd;
  assert.equal(typeof fd, 'number');
  assert.equal(setTcpNotsentLowat(fd, CONTROL_NOTSENT_BYTES), true);
  const idle = tcpSendState(fd);
  assert.ok(idle, 'TCP_INFO is readable');
  assert.equal(idle.notsentBytes, 0);
  assert.ok(idle.peerWindow > 0, 'the peer advertises a window');
  // Far more than both kernels' buffers take.
  const total = 16 * 2 ** 20;
  writer.write(Buffer.alloc(total));
  await new Promise((r) => setTimeout(r, 300));
  const st = tcpSendState(fd)!;
  assert.ok(st.unackedBytes >= st.notsentBytes, 'unacknowledged bytes include the unsent ones');
  // The bound, overshot by at most one segment (64 KiB on loopback).
  assert.ok(
    st.notsentBytes <= CONTROL_NOTSENT_BYTES + 64 * 1024,
    `${st.notsentBytes} bytes unsent in the kernel`,
  );
  assert.ok(
    writer.writableLength > total / 2,
    'the rest waits in Node, where a reply can still go ahead of it',
  );
});

test('bad descriptors and arguments: false or null, or a TypeError, never a crash', () => {
  assert.equal(setTcpNotsentLowat(0x7ffffff0, 1024), false);
  assert.equal(tcpSendState(0x7ffffff0), null);
  assert.equal(setTcpNotsentLowat(-1, 1024), false, 'out of range: refused inside, reported as false');
});
