// `ndmjob -q` (Amanda's NDMP DMA) against the real ndmpd binary: what an
// operator sees when asking a server what it is, in v4 and v3, with TEXT and
// MD5 logins; wrong passwords refused; failed logins beside a live session
// leave it alone; and a debug log with a message trace never shows a password.
// ndmjob's exit status means nothing (docs/interop.md): every check reads its output.

import assert from 'node:assert/strict';
import { statfsSync } from 'node:fs';
import os from 'node:os';
import { after, before, describe, test } from 'node:test';

import { NdmpClient } from '../../src/dma/client.js';
import { PRODUCT_NAME, VERSION } from '../../src/util/version.js';
import { M } from '../../src/wire/index.js';
import { startNdmpd } from '../helpers/ndmpd-process.js';
import type { NdmpdProcess } from '../helpers/ndmpd-process.js';
import { peers, requirePeers, runNdmjob } from '../helpers/peers.js';

const TIMEOUT = { timeout: 120_000 };
const WRONG_PASSWORDS = ['Wrong-pass-1', 'Wrong-pass-2', 'Wrong-pass-3'];

/** The QR lines ndmjob printed, without the `QR "` and `"` around them. */
function qrLines(output: string): string[] {
  return output
    .split('\n')
    .filter((l) => l.startsWith('QR "'))
    .map((l) => l.slice(4, l.endsWith('"') ? -1 : undefined));
}

/** The lines of the block that starts with `heading` (up to the next blank QR line). */
function block(output: string, heading: string): string[] {
  const lines = qrLines(output);
  const start = lines.findIndex((l) => l.trim() === heading);
  if (start < 0) return [];
  const end = lines.findIndex((l, i) => i > start && l.trim() === '');
  return lines.slice(start + 1, end < 0 ? undefined : end).map((l) => l.trim());
}

/** The value of `key` in a block (`key   value` lines), or undefined. */
function field(lines: string[], key: string): string | undefined {
  const l = lines.find((x) => x.startsWith(`${key} `));
  return l?.slice(key.length).trim();
}

describe('ndmjob -q against ndmpd', { timeout: 300_000 }, () => {
  let p: NdmpdProcess | null = null;

  before(async () => {
    // Without ndmjob every test skips (or, under CI, fails) on its own.
    // Wrong and right logins here all come from 127.0.0.1, some at once: the
    // back-off's free failures (src/services/auth-backoff.ts) keep the right one in.
    if (peers.ndmjob) p = await startNdmpd();
  }, TIMEOUT);

  after(async () => {
    await p?.stop();
  });

  const agent = (flags: string, password: string): string =>
    `${p!.host}:${p!.port}/${flags},${p!.user},${password}`;

  for (const flags of ['4t', '4m', '3t', '3m']) {
    test(`query /${flags}: server, connection, butype and file system info`, TIMEOUT, async (t) => {
      if (!requirePeers(t, ['ndmjob'])) return;
      const v = flags[0] as '3' | '4';
      const r = await runNdmjob(['-q', '-D', agent(flags, p!.password)]);
      const out = r.output;
      assert.ok(!r.timedOut, `ndmjob timed out:\n${out}`);
      assert.doesNotMatch(out, /#D "err/, out);
      assert.ok(
        qrLines(out).includes(`Data Agent ${p!.host} NDMPv${v}`),
        `not an NDMPv${v} session:\n${out}`,
      );

      const host = block(out, 'Host info');
      assert.equal(field(host, 'hostname'), os.hostname(), out);
      assert.equal(field(host, 'os_type'), os.type(), out);
      assert.equal(field(host, 'os_vers'), os.release(), out);

      const server = block(out, 'Server info');
      assert.equal(field(server, 'vendor'), 'ndmpd project', out);
      assert.equal(field(server, 'product'), PRODUCT_NAME, out);
      assert.equal(field(server, 'revision'), VERSION, out);
      assert.equal(field(server, 'auths'), `(2)  NDMP${v}_AUTH_TEXT NDMP${v}_AUTH_MD5`, out);

      const conn = block(out, 'Connection types');
      assert.equal(field(conn, 'addr_types'), `(2)  NDMP${v}_ADDR_LOCAL NDMP${v}_ADDR_TCP`, out);

      const tar = block(out, 'Backup type info of tar format');
      assert.ok(tar.includes('set        TYPE=tar'), `tar butype block:\n${out}`);

      const fs = block(out, `File system ${p!.exportDir}`);
      assert.ok(fs.length > 0, `no "File system ${p!.exportDir}" block:\n${out}`);
      assert.equal(field(fs, 'status'), 'online', out);
      const space = /^(\d+) total, (\d+) used, (\d+) avail$/.exec(field(fs, 'space') ?? '');
      assert.ok(space, `no space line:\n${out}`);
      const [total, used, avail] = space.slice(1).map(Number) as [number, number, number];
      const st = statfsSync(p!.exportDir);
      assert.ok(total > 0, out);
      assert.equal(total, st.blocks * st.bsize, 'total space is not the file system size');
      // used and avail move as the machine writes; they must still be about right.
      const slack = 256 * 1024 * 1024;
      assert.ok(Math.abs(used - (st.blocks - st.bfree) * st.bsize) < slack, `used ${used} vs statfs`);
      assert.ok(Math.abs(avail - st.bavail * st.bsize) < slack, `avail ${avail} vs statfs`);
      const inodes = /^(\d+) total, (\d+) used$/.exec(field(fs, 'inodes') ?? '');
      assert.ok(inodes, `no inodes line:\n${out}`);
      assert.equal(Number(inodes[1]), st.files, 'inode total is not the file system one');
      assert.ok(fs.includes('set        EXPORT_NAME=data'), `export name not in the fs env:\n${out}`);
    });
  }

  for (const flags of ['4t', '4m']) {
    test(`wrong password /${flags} is refused and shows nothing`, TIMEOUT, async (t) => {
      if (!requirePeers(t, ['ndmjob'])) return;
      const r = await runNdmjob(['-q', '-D', agent(flags, WRONG_PASSWORDS[0]!)]);
      const method = flags === '4m' ? 'md5' : 'text';
      assert.ok(!r.timedOut, `ndmjob timed out:\n${r.output}`);
      assert.match(r.output, new RegExp(`#D "err connect-auth-${method}-failed"`), r.output);
      assert.doesNotMatch(r.output, /Server info|Host info|File system/, r.output);
    });
  }

  test('failed logins beside an authenticated session leave it alone', TIMEOUT, async (t) => {
    if (!requirePeers(t, ['ndmjob'])) return;
    const c = await NdmpClient.connect({ host: p!.host, port: p!.port, timeoutMs: 20_000 });
    t.after(() => c.destroy());
    await c.open();
    await c.authMd5(p!.user, p!.password);
    const hostBefore = await c.call(M.CONFIG_GET_HOST_INFO, {});

    // Keep the session busy while the other logins come and go.
    let running = true;
    const busy = (async () => {
      let calls = 0;
      while (running) {
        await c.call(M.CONFIG_GET_SERVER_INFO, {});
        calls++;
      }
      return calls;
    })();
    const [w1, w2, w3, ok] = await Promise.all([
      runNdmjob(['-q', '-D', agent('4t', WRONG_PASSWORDS[0]!)]),
      runNdmjob(['-q', '-D', agent('4m', WRONG_PASSWORDS[1]!)]),
      runNdmjob(['-q', '-D', agent('3t', WRONG_PASSWORDS[2]!)]),
      runNdmjob(['-q', '-D', agent('4m', p!.password)]),
    ]).finally(() => (running = false));
    const calls = await busy;
    t.diagnostic(`calls on the first session while the four ndmjob ran: ${calls}`);

    assert.match(w1!.output, /connect-auth-text-failed/, w1!.output);
    assert.match(w2!.output, /connect-auth-md5-failed/, w2!.output);
    assert.match(w3!.output, /connect-auth-text-failed/, w3!.output);
    for (const w of [w1!, w2!, w3!]) assert.doesNotMatch(w.output, /Server info/, w.output);
    assert.match(ok!.output, /^QR " {2}Server info"$/m, ok!.output);
    assert.doesNotMatch(ok!.output, /#D "err/, ok!.output);

    assert.ok(calls > 0, 'the session made no call while ndmjob ran');
    assert.ok(!c.closed, 'the first session was closed');
    const hostAfter = await c.call(M.CONFIG_GET_HOST_INFO, {});
    assert.deepEqual(hostAfter, hostBefore);
    const server = await c.call(M.CONFIG_GET_SERVER_INFO, {});
    assert.equal(server.vendorName, 'ndmpd project');
    await c.close();
  });

  test('the debug log traces the logins but never shows a password', TIMEOUT, (t) => {
    if (!requirePeers(t, ['ndmjob'])) return;
    const logs = p!.logs();
    // The trace is on and saw the credentials go by, TEXT and MD5 alike ...
    assert.match(logs, /"dir":"in"[^\n]*"ndmp":"NDMP_CONNECT_CLIENT_AUTH"[^\n]*"authType":1/);
    assert.match(logs, /"dir":"in"[^\n]*"ndmp":"NDMP_CONNECT_CLIENT_AUTH"[^\n]*"authType":2/);
    assert.match(logs, /authentication refused/);
    // ... and kept them out.
    for (const secret of [p!.password, ...WRONG_PASSWORDS]) {
      const hits = logs.split('\n').filter((l) => l.includes(secret));
      assert.deepEqual(hits, [], `the log shows the password ${secret}`);
    }
  });
});
