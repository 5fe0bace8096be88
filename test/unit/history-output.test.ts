// HistoryOutput (src/server/history-output.ts): a control connection's file
// history waits for an idle socket and for the DMA's window; other output goes
// ahead of it; NOTIFY_DATA_HALTED (`after`) never does; a message begun is
// finished before anything else; sequence numbers are given as bytes go out.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { HistoryOutput, PEER_BYTES } from '../../src/server/history-output.js';
import type { HistorySocket } from '../../src/server/history-output.js';
import type { TcpSendState } from '../../src/util/native-fs.js';

/** A socket whose buffer and write completions the test drives. */
class FakeSocket implements HistorySocket {
  writableLength = 0;
  /** Everything written, in order: history chunks as their message's first byte, other output as given. */
  readonly wire: { tag: number; bytes: number }[] = [];
  private readonly pending: ((err?: Error | null) => void)[] = [];

  write(chunk: Uint8Array, cb: (err?: Error | null) => void): boolean {
    this.wire.push({ tag: chunk[0]!, bytes: chunk.byteLength });
    this.pending.push(cb);
    return true;
  }

  /** Other output (a reply), written straight to the socket. */
  other(tag: number): void {
    this.wire.push({ tag, bytes: 1 });
  }

  /** Completes every write so far (and any that completing them starts). */
  flush(): void {
    while (this.pending.length > 0) this.pending.shift()!();
  }

  /** The tags of what went out, one per message or reply (slices of one message merged). */
  tags(): number[] {
    const out: number[] = [];
    for (const w of this.wire) if (out.at(-1) !== w.tag) out.push(w.tag);
    return out;
  }
}

/** A message of `n` bytes whose every byte is `tag`. */
const message = (tag: number, n = 1000) => new Uint8Array(n).fill(tag);

function output(sock: FakeSocket, state: () => TcpSendState | null = () => null) {
  const stamped: number[] = [];
  const done: (string | number)[] = [];
  const out = new HistoryOutput(sock, (m) => stamped.push(m[0]!), state);
  const add = (tag: number, n?: number) => out.add(message(tag, n), (err) => done.push(err ? 'err' : tag));
  return { out, stamped, done, add };
}

test('history waits while the socket holds other output, then goes one message at a time', async () => {
  const sock = new FakeSocket();
  const { out, stamped, done, add } = output(sock);
  sock.writableLength = 10;
  add(1);
  add(2);
  assert.deepEqual(sock.wire, [], 'nothing written while the buffer holds a reply');
  assert.deepEqual(stamped, [], 'no sequence number given before the message is written');
  sock.writableLength = 0;
  out.kick();
  assert.deepEqual(sock.tags(), [1], 'one message at a time');
  sock.other(9); // a reply goes ahead of message 2
  sock.flush();
  assert.deepEqual(sock.tags(), [1, 9, 2]);
  sock.flush();
  assert.deepEqual(stamped, [1, 2], 'stamped in the order written');
  assert.deepEqual(done, [1, 2]);
  assert.equal(out.waiting, false);
  out.close();
});

test('a post given to `after` follows every message queued before it; with none queued it goes at once', () => {
  const sock = new FakeSocket();
  const { out, add } = output(sock);
  const posted: string[] = [];
  out.after(() => posted.push('first'));
  assert.deepEqual(posted, ['first']);
  add(1);
  add(2);
  out.after(() => {
    posted.push('halted');
    sock.other(7);
  });
  assert.deepEqual(posted, ['first'], 'not before message 2 has gone');
  sock.flush(); // 1 written → 2 goes → then the post
  assert.deepEqual(sock.tags(), [1, 2, 7]);
  assert.deepEqual(posted, ['first', 'halted']);
  out.close();
});

test("history waits for the DMA's window; a message begun goes out whole before other output", () => {
  const sock = new FakeSocket();
  // The DMA's window: 1 MiB when empty, less what the test says it has not read.
  let unread = 0;
  const state = (): TcpSendState => ({ notsentBytes: 0, peerWindow: 1024 * 1024 - unread, unackedBytes: 0 });
  const { out, add, done } = output(sock, state);
  const sent = (tag: number) => sock.wire.filter((w) => w.tag === tag).reduce((n, w) => n + w.bytes, 0);
  // A DMA that keeps up gets each message whole.
  add(1, 200 * 1024);
  assert.equal(sent(1), 200 * 1024);
  sock.flush();
  // One that has half its share unread gets the other half, a slice of the next message.
  unread = PEER_BYTES / 2;
  add(2, 200 * 1024);
  const first = sent(2);
  assert.ok(first > 0 && first <= PEER_BYTES / 2, `${first} bytes of the message, at most the DMA's share`);
  unread += first;
  sock.flush();
  assert.equal(sent(2), first, 'nothing more while the DMA has not read what it got');
  // A reply now: the message's rest goes first (records do not interleave), then the reply.
  out.beforeOutput();
  sock.other(9);
  assert.deepEqual(sock.tags(), [1, 2, 9]);
  assert.equal(sent(2), 200 * 1024, 'the whole message, once');
  sock.flush();
  assert.deepEqual(done, [1, 2]);
  // The DMA reads it all: the next message goes whole.
  unread = 0;
  add(3, 100 * 1024);
  assert.deepEqual(sock.tags(), [1, 2, 9, 3]);
  sock.flush();
  out.close();
});

test('closing fails waiting history and drops waiting posts', () => {
  const sock = new FakeSocket();
  const { out, add, done } = output(sock);
  add(1);
  add(2);
  let posted = false;
  out.after(() => (posted = true));
  out.close();
  sock.flush();
  // Message 1 was in the socket already: it completes as written; message 2 never went.
  assert.deepEqual(done, ['err', 1]);
  assert.equal(posted, false);
  const late: unknown[] = [];
  out.add(message(3), (err) => late.push(err));
  assert.ok(late[0] instanceof Error, 'after close, a message fails at once');
});
