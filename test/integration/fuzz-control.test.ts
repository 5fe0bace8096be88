// A seeded fuzz run of the control connection (issue 12): hostile headers,
// bodies and framing from test/helpers/fuzz.ts against a live server, before
// and after login, in v3 and v4. The server must stay up, answer every request
// once, in order, well-formed and with an error the spec defines, say nothing
// but NOT_AUTHORIZED to a stranger outside the pre-auth list, close on broken
// framing without garbage, and log no unexpected error. Everything it may touch
// (export, tape library, state) lives in temp dirs.
//
// Longer runs: NDMP_FUZZ_CASES=200000 NDMP_FUZZ_SEED=7 (a failure prints both).

import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';

import { Library } from '../../src/devices/library.js';
import { createLogger } from '../../src/util/log.js';
import type { Header, NdmpVersion } from '../../src/wire/index.js';
import {
  HEADER_SIZE,
  M,
  MessageType,
  RecordFramer,
  XdrReader,
  decodeHeader,
  lookup,
} from '../../src/wire/index.js';
import { fuzzCases, fuzzStream, highestError } from '../helpers/fuzz.js';
import { requestRecord } from '../helpers/xdr-bytes.js';
import type { ExpectedReply, FuzzCase, FuzzOptions } from '../helpers/fuzz.js';
import { PASSWORD, USER, client, startServer } from '../helpers/in-process.js';
import type { TestServer } from '../helpers/in-process.js';

/** The CI run: 30 to 40 s on a shared 2-core machine; the budget is 60 s. */
const DEFAULT_CASES = 8000;
const DEFAULT_SEED = 20261201;
const CASES = Number(process.env.NDMP_FUZZ_CASES ?? DEFAULT_CASES);
const SEED = Number(process.env.NDMP_FUZZ_SEED ?? DEFAULT_SEED) >>> 0;
/** Cases between two health checks of the server. */
const BATCH = 200;
/** Bound on any one answer; a handler that takes longer than this is a finding. */
const ANSWER_MS = 10_000;

const SETTINGS: ReadonlyArray<{ version: NdmpVersion; authed: boolean }> = [
  { version: 4, authed: false },
  { version: 4, authed: true },
  { version: 3, authed: false },
  { version: 3, authed: true },
];

const replay = `replay with NDMP_FUZZ_SEED=${SEED} NDMP_FUZZ_CASES=${CASES}`;

function hexOf(chunks: Buffer[]): string {
  const all = Buffer.concat(chunks);
  const h = all.subarray(0, 256).toString('hex');
  return all.length > 256 ? `${h}... (${all.length} bytes)` : h;
}

/** A strict DMA end: every server record is parsed and checked as it comes. */
class Peer {
  private readonly framer = new RecordFramer(64 * 1024 * 1024);
  private readonly records: Buffer[] = [];
  private waiters: (() => void)[] = [];
  closed = false;
  /** A protocol violation seen on the server's output (garbage framing, a bad post, a sequence gap). */
  violation: string | null = null;
  version: NdmpVersion = 4;
  private lastServerSeq = 0;
  private seq = 0x40000000;

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (d: Buffer) => {
      try {
        for (const r of this.framer.push(d)) this.records.push(r);
      } catch (e) {
        this.violation ??= `server output is not record-marked: ${(e as Error).message}`;
      }
      this.wake();
    });
    socket.on('close', () => {
      this.closed = true;
      if (this.framer.buffered > 0)
        this.violation ??= `${this.framer.buffered} bytes of an unfinished record at close`;
      this.wake();
    });
    socket.on('error', () => undefined);
  }

  static connect(port: number): Promise<Peer> {
    return new Promise((res, rej) => {
      const s = net.connect({ host: '127.0.0.1', port, noDelay: true }, () => res(new Peer(s)));
      s.once('error', rej);
    });
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  private async record(timeoutMs: number): Promise<Buffer | null> {
    const deadline = Date.now() + timeoutMs;
    while (this.records.length === 0) {
      if (this.closed) return null;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no answer from the server within ${timeoutMs} ms`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, left);
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
    return this.records.shift()!;
  }

  /** Checks what every server message must be; returns the header. */
  private check(rec: Buffer): Header {
    assert.ok(rec.length >= HEADER_SIZE, `server record of ${rec.length} bytes has no header`);
    const h = decodeHeader(rec);
    // One counter per sender, +1 for every message, posts included.
    assert.equal(h.sequence, this.lastServerSeq + 1, 'server sequence numbers go up by one');
    this.lastServerSeq = h.sequence;
    if (h.messageType === MessageType.NDMP_MESSAGE_REQUEST) {
      const msg = lookup(this.version, h.messageCode);
      assert.ok(msg && msg.def.kind === 'post', `server sent request 0x${h.messageCode.toString(16)}`);
      assert.equal(h.replySequence, 0, 'a post answers nothing');
      assert.equal(h.errorCode, 0, 'a post has no error');
      const r = new XdrReader(rec, HEADER_SIZE);
      msg.body.decode(r);
      assert.equal(r.remaining, 0, `${msg.def.name}: bytes after the body`);
    } else {
      assert.equal(h.messageType, MessageType.NDMP_MESSAGE_REPLY, 'message_type is REQUEST or REPLY');
    }
    return h;
  }

  /** The next reply (posts in between are checked and skipped), or null if the server closed. */
  async reply(timeoutMs = ANSWER_MS): Promise<{ h: Header; rec: Buffer } | null> {
    for (;;) {
      const rec = await this.record(timeoutMs);
      if (!rec) return null;
      const h = this.check(rec);
      if (h.messageType === MessageType.NDMP_MESSAGE_REPLY) return { h, rec };
    }
  }

  /** Waits for the server to close; only posts may come first. */
  async waitClosed(timeoutMs = ANSWER_MS): Promise<void> {
    const r = await this.reply(timeoutMs);
    assert.equal(r, null, r ? `a reply (to ${r.h.replySequence}) where the server had to close` : '');
  }

  request(code: number, body: Buffer = Buffer.alloc(0)): number {
    const sequence = ++this.seq;
    this.socket.write(requestRecord(sequence, code, body));
    return sequence;
  }

  /** Sends a request of ours and checks it is answered with header error 0. */
  async call(code: number, body?: Buffer): Promise<Buffer> {
    const sequence = this.request(code, body);
    const r = await this.reply();
    assert.ok(r, `the server closed instead of answering 0x${code.toString(16)}`);
    assert.equal(r.h.replySequence, sequence, 'reply to our request');
    assert.equal(r.h.errorCode, 0, `0x${code.toString(16)} answered with header error ${r.h.errorCode}`);
    return r.rec.subarray(HEADER_SIZE);
  }

  destroy(): void {
    this.socket.destroy();
  }
}

function xdrString(s: string): Buffer {
  const b = Buffer.from(s);
  const out = Buffer.alloc(4 + b.length + ((4 - (b.length % 4)) % 4));
  out.writeUInt32BE(b.length, 0);
  b.copy(out, 4);
  return out;
}

function u32(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(v >>> 0, 0);
  return b;
}

/** Checks one reply against what the case expects. */
function checkReply(r: { h: Header; rec: Buffer } | null, exp: ExpectedReply, version: NdmpVersion): void {
  assert.ok(r, `the server closed the connection instead of answering sequence ${exp.sequence}`);
  const { h, rec } = r;
  assert.equal(h.replySequence, exp.sequence, 'reply_sequence names the request answered, in order');
  assert.equal(h.messageCode >>> 0, exp.code >>> 0, "a reply carries its request's code");
  if (exp.headerError !== null) {
    assert.equal(h.errorCode, exp.headerError, 'header-level error');
    assert.equal(rec.length, HEADER_SIZE, 'a header-level error carries no body');
    return;
  }
  assert.equal(h.errorCode, 0, `header error ${h.errorCode} where a reply body was due`);
  const msg = lookup(version, h.messageCode)!;
  assert.ok(msg.reply, `${msg.def.name} has no reply`);
  const rd = new XdrReader(rec, HEADER_SIZE);
  const body = msg.reply.decode(rd) as { error?: number };
  assert.equal(rd.remaining, 0, `${msg.def.name}: bytes after the reply body`);
  assert.ok(typeof body.error === 'number', `${msg.def.name}: reply without error field`);
  assert.ok(
    body.error <= highestError(version),
    `${msg.def.name}: error ${body.error} is not a v${version} error`,
  );
}

describe('fuzzing the control connection', { timeout: 120_000 + CASES * 20 }, () => {
  let dir: string;
  let srv: TestServer;
  const serverErrors: string[] = [];
  let devices: string[];

  before(async () => {
    dir = mkdtempSync(join(os.tmpdir(), 'ndmpd-fuzz-'));
    const lib = Library.open(join(dir, 'library'), { drives: 2, capacity: 4n * 1024n * 1024n });
    const tapes = lib.createTapes({ count: 3, label: 'fuzz' });
    lib.load(tapes[0]!, 'drive0');
    devices = ['drive0', 'drive1', ...tapes.slice(1).map((b) => `tapes/${b}`)];
    // The server's log: only what is worse than a warning is kept, and any of it fails the run.
    const sink = new Writable({
      write(chunk: Buffer, _enc, cb) {
        for (const line of chunk.toString().split('\n')) {
          if (!line) continue;
          const rec = JSON.parse(line) as { level: number; msg?: string };
          if (rec.level >= 50 || /unexpected error|handler failed|cannot encode/.test(rec.msg ?? ''))
            serverErrors.push(line.slice(0, 2000));
        }
        cb();
      },
    });
    const log = createLogger({ level: 'warn', format: 'json', destination: sink });
    srv = await startServer({ maxConnections: 64 }, { library: lib, log, stateDir: join(dir, 'state') });
    // A tiny tree to back up (and to recover into).
    mkdirSync(join(srv.exportDir, 'a', 'b'), { recursive: true });
    writeFileSync(join(srv.exportDir, 'a', 'b', 'f.txt'), 'fuzz\n');
    writeFileSync(join(srv.exportDir, 'top.bin'), Buffer.alloc(3000, 7));
    symlinkSync('a/b/f.txt', join(srv.exportDir, 'link'));
  });

  after(async () => {
    await srv?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('the generator replays: one seed, the same cases', () => {
    for (const setting of SETTINGS) {
      const opts: FuzzOptions = { ...setting, exportPath: '/x', devices: ['drive0'] };
      const a = fuzzCases(SEED, 500, opts);
      assert.deepEqual(fuzzCases(SEED, 500, opts), a);
      assert.notDeepEqual(fuzzCases(SEED + 1, 500, opts).slice(300), a.slice(300));
    }
  });

  for (const [k, setting] of SETTINGS.entries()) {
    const n = Math.ceil(CASES / SETTINGS.length);
    const seed = (SEED + k * 0x9e3779b9) >>> 0;
    const title = `v${setting.version} ${setting.authed ? 'after' : 'before'} login: ${n} cases, seed ${seed}`;
    test(title, async () => {
      const opts: FuzzOptions = { ...setting, exportPath: srv.exportDir, devices };
      const stream = fuzzStream(seed, opts);
      let peer: Peer | null = null;
      let current: FuzzCase | null = null;
      // A session ready for cases: greeted (reply() checks and skips the greeting post),
      // CONNECT_OPEN to the version, logged in when the setting says so.
      const start = async (): Promise<Peer> => {
        const p = await Peer.connect(srv.port);
        p.version = 4;
        await p.call(M.CONNECT_OPEN.code, u32(setting.version));
        p.version = setting.version;
        if (setting.authed)
          await p.call(
            M.CONNECT_CLIENT_AUTH.code,
            Buffer.concat([u32(1), xdrString(USER), xdrString(PASSWORD)]),
          );
        return p;
      };
      const probe = async (p: Peer): Promise<void> => {
        await p.call(M.CONFIG_GET_SERVER_INFO.code);
      };
      try {
        for (let done = 0; done < n;) {
          const batchEnd = Math.min(n, done + BATCH);
          for (; done < batchEnd; done++) {
            current = stream.next().value;
            // A case that ends its connection gets one of its own, so the long-lived session
            // (its tape, mover and data state, and the threads behind them) goes on.
            const p = current.after === 'open' ? (peer ??= await start()) : await start();
            for (const chunk of current.chunks) p.socket.write(chunk);
            for (const exp of current.replies) checkReply(await p.reply(), exp, setting.version);
            switch (current.after) {
              case 'open':
                // Nothing owed: make sure nothing comes either, before the next case.
                if (current.replies.length === 0) await probe(p);
                break;
              case 'closed':
                await p.waitClosed();
                break;
              default:
                // 'stalled' (a record left open) or 'may-close': this connection is done.
                p.destroy();
            }
            assert.equal(p.violation, null);
          }
          current = null;
          if (peer) {
            await probe(peer);
            peer.destroy();
            peer = null;
          }
          // The server is alive: a fresh DMA logs in and is answered.
          const c = await client(srv.port, 'md5', setting.version);
          try {
            assert.equal((await c.call(M.CONFIG_GET_SERVER_INFO, {})).vendorName, 'test vendor');
          } finally {
            c.destroy();
          }
          assert.deepEqual(serverErrors, [], 'the server logged errors');
        }
      } catch (e) {
        const where = current
          ? `\n  case: ${current.label}\n  bytes: ${hexOf(current.chunks)}\n  expected: ${JSON.stringify(current.replies)} then ${current.after}`
          : '';
        (e as Error).message =
          `${(e as Error).message}${where}\n  server errors: ${serverErrors.join('\n')}\n  ${replay}`;
        throw e;
      } finally {
        peer?.destroy();
      }
    });
  }

  test('every fuzz connection is gone afterwards', async () => {
    const deadline = Date.now() + 10_000;
    while (srv.server.connectionCount > 0 && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 50));
    assert.equal(srv.server.connectionCount, 0);
    assert.deepEqual(serverErrors, []);
  });
});
