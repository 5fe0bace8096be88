// Wireshark's NDMP dissector as an independent judge of our bytes on the wire.
// capture-session.js runs inside a private network namespace (the dissector
// decodes only TCP port 10000, docs/interop.md), where ndmpd listens on
// 127.0.0.1:10000, dumpcap records real ndmjob query sessions (v4 text, v4 MD5,
// v3 text, and a wrong password), and then tshark, outside, must decode every
// PDU without a malformed packet or an expert error.

import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { REPO_ROOT } from '../helpers/ndmpd-process.js';
import { peers, requirePeers } from '../helpers/peers.js';
import type { CapturedRun } from './capture-session.js';

const NEEDS = ['root', 'unshare', 'tshark', 'ndmjob'] as const;
const CAPTURE_JS = join(REPO_ROOT, 'dist', 'test', 'interop', 'capture-session.js');
const TIMEOUT = { timeout: 120_000 };

/** The messages a `ndmjob -q -D A -T A` session must show, requests and replies alike. */
const EXPECTED_MESSAGES = [
  'CONNECT_OPEN',
  'CONNECT_CLIENT_AUTH',
  'CONFIG_GET_AUTH_ATTR',
  'CONFIG_GET_HOST_INFO',
  'CONFIG_GET_SERVER_INFO',
  'CONFIG_GET_CONNECTION_TYPE',
  'CONFIG_GET_BUTYPE_INFO',
  'CONFIG_GET_FS_INFO',
  'CONFIG_GET_TAPE_INFO',
];
/** The server's greeting; Wireshark 4.0 calls NOTIFY_CONNECTION_STATUS this. */
const GREETING = ['NOTIFY_CONNECTED', 'NOTIFY_CONNECTION_STATUS'];

type Scenario = 'query' | 'tape-mover' | 'backup' | 'changer';

interface Outcome {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs capture-session.js under `unshare -n` in its own process group, killed as a group on timeout. */
function captureInNamespace(
  outDir: string,
  timeoutMs: number,
  scenario: Scenario = 'query',
): Promise<Outcome> {
  const script =
    'ip link set lo up && echo "10001 10999" > /proc/sys/net/ipv4/ip_local_port_range && exec "$1" "$2" "$3" "$4"';
  return new Promise((resolve, reject) => {
    const child = spawn(
      peers.unshare!,
      ['-n', '--', 'sh', '-c', script, 'capture-session', process.execPath, CAPTURE_JS, outDir, scenario],
      { stdio: ['ignore', 'pipe', 'pipe'], detached: true },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const killGroup = (sig: NodeJS.Signals) => {
      try {
        process.kill(-child.pid!, sig);
      } catch {
        /* already gone */
      }
    };
    const timer = setTimeout(() => {
      stderr += `\n[test] capture-session still running after ${timeoutMs} ms: SIGTERM to its process group\n`;
      killGroup('SIGTERM');
      setTimeout(() => killGroup('SIGKILL'), 5_000).unref();
    }, timeoutMs);
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** tshark -r PCAP ARGS...; rejects on a non-zero exit (a bad filter, say). */
function tshark(pcap: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      peers.tshark!,
      ['-r', pcap, ...args],
      { timeout: 60_000, maxBuffer: 64 * 1024 * 1024, encoding: 'utf8' },
      (err, stdout, stderr) => {
        if (err) reject(new Error(`tshark ${args.join(' ')} failed: ${err.message}\n${stderr}`));
        else resolve(stdout);
      },
    );
  });
}

/** A capture of one capture-session scenario and what tshark made of it (filled in by before()). */
interface Capture {
  outDir: string;
  pcap: string;
  /** `tshark -Y ndmp -O ndmp` of the capture. */
  decoded: string;
  pdus: Pdu[];
}

/**
 * Registers, in the current describe, a before() that records `scenario`
 * inside a private network namespace and decodes it, and an after() that
 * removes it. Without the peers it records nothing: every test then skips
 * (or, under CI, fails) on its own.
 */
function capturedSessions(scenario: Scenario, timeoutMs: number): Capture {
  const cap: Capture = { outDir: '', pcap: '', decoded: '', pdus: [] };
  before(
    async () => {
      if (!NEEDS.every((n) => peers[n])) return;
      cap.outDir = mkdtempSync(join(os.tmpdir(), `ndmp-capture-${scenario}-`));
      cap.pcap = join(cap.outDir, 'ndmp.pcap');
      const r = await captureInNamespace(cap.outDir, timeoutMs, scenario);
      assert.equal(
        r.code,
        0,
        `capture-session ${scenario} failed (exit ${r.code}, signal ${r.signal}):\n${r.stderr}\n${r.stdout}`,
      );
      cap.decoded = await tshark(cap.pcap, ['-Y', 'ndmp', '-O', 'ndmp']);
      cap.pdus = parsePdus(cap.decoded);
    },
    { timeout: timeoutMs + 20_000 },
  );
  after(() => {
    if (cap.outDir) rmSync(cap.outDir, { recursive: true, force: true });
  });
  return cap;
}

/** Wireshark's verdict: no malformed packet, no expert note at error level or above. */
async function assertNothingMalformed(pcap: string): Promise<void> {
  const problems = await tshark(pcap, ['-Y', '_ws.malformed || _ws.expert.severity >= error', '-O', 'ndmp']);
  assert.equal(problems.trim(), '', `tshark found problems:\n${problems.slice(0, 5000)}`);
}

describe('tshark decodes ndmjob backups with file history from ndmpd', { timeout: 200_000 }, () => {
  const cap = capturedSessions('backup', 150_000);

  test('every backup ended OKAY', TIMEOUT, (t) => {
    if (!requirePeers(t, [...NEEDS])) return;
    const runs = JSON.parse(readFileSync(join(cap.outDir, 'ndmjob.json'), 'utf8')) as CapturedRun[];
    assert.equal(runs.length, 3);
    for (const r of runs) assert.match(r.output, /Operation ended OKAY/, r.output.slice(-3000));
  });

  test('no packet is malformed or carries an expert error', TIMEOUT, async (t) => {
    if (!requirePeers(t, [...NEEDS])) return;
    await assertNothingMalformed(cap.pcap);
  });

  test(
    'FH_ADD_FILE, FH_ADD_DIR and FH_ADD_NODE decoded, all before each NOTIFY_DATA_HALTED',
    TIMEOUT,
    (t) => {
      if (!requirePeers(t, [...NEEDS])) return;
      const names = [...new Set(cap.pdus.map((p) => p.message))].sort();
      t.diagnostic(`PDUs decoded: ${cap.pdus.length}; messages: ${names.join(' ')}`);
      for (const name of ['FH_ADD_FILE', 'FH_ADD_DIR', 'FH_ADD_NODE', 'NOTIFY_DATA_HALTED']) {
        assert.ok(
          cap.pdus.some((p) => p.message === name),
          `no ${name} decoded; messages seen: ${names.join(' ')}`,
        );
      }
      assert.ok(
        cap.pdus.some((p) => p.message === 'FH_ADD_FILE' && p.version === '3'),
        'a v3 FH_ADD_FILE',
      );
      // Per backup: no history after its NOTIFY_DATA_HALTED (the next backup's starts after DATA_START_BACKUP).
      let halted = false;
      for (const p of cap.pdus) {
        if (p.message === 'DATA_START_BACKUP') halted = false;
        if (p.message === 'NOTIFY_DATA_HALTED') halted = true;
        if (p.message.startsWith('FH_ADD_'))
          assert.ok(!halted, `${p.message} in frame ${p.frame} after DATA_HALTED`);
      }
      assert.deepEqual(
        cap.pdus.filter((p) => p.headerError !== 'NO_ERR'),
        [],
        'header-level errors',
      );
    },
  );
});

interface Pdu {
  frame: number;
  /** The version the dissector decoded with ('?' before CONNECT_OPEN told it). */
  version: string;
  type: string;
  message: string;
  headerError: string;
  bodyError: string | null;
}

/**
 * One entry per NDMP PDU in `tshark -O ndmp` text output. A PDU looks like
 *     Network Data Management Protocol
 *         [Version: 4]
 *         NDMP Header
 *             Type: Reply (1)
 *             Message: CONNECT_OPEN (0x00000900)
 *             Error: NO_ERR (0)
 *         CONNECT_OPEN
 *             Error: NO_ERR (0)
 * (indented 4 more than shown); the first 8-space `Error:` is the header's,
 * a second one the body's.
 */
function parsePdus(text: string): Pdu[] {
  const pdus: Pdu[] = [];
  let frame = 0;
  for (const chunk of text.split(/^(?=Frame \d+:|Network Data Management Protocol$)/m)) {
    const f = /^Frame (\d+):/.exec(chunk);
    if (f) {
      frame = Number(f[1]);
      continue;
    }
    if (!chunk.startsWith('Network Data Management Protocol')) continue;
    // ndmjob sends large records (TAPE_WRITE) in 4000-byte record-marking
    // fragments; the dissector shows each non-last one as bare fragment data
    // and decodes the message once, with the last fragment.
    if (!chunk.includes('NDMP Header') && /Last Fragment: No/.test(chunk)) continue;
    const type = /^ {8}Type: (\S+) \(\d+\)$/m.exec(chunk);
    const message = /^ {8}Message: (\S+) \(0x[0-9a-f]+\)$/m.exec(chunk);
    const errors = [...chunk.matchAll(/^ {8}Error: (\S+) \(\d+\)$/gm)].map((m) => m[1]!);
    const version = /^ {4}\[Version: (\d+)\]$/m.exec(chunk);
    pdus.push({
      frame,
      version: version ? version[1]! : '?',
      type: type ? type[1]! : '(no type)',
      message: message ? message[1]! : '(no message)',
      headerError: errors[0] ?? '(no error field)',
      bodyError: errors[1] ?? null,
    });
  }
  return pdus;
}

describe('tshark decodes real ndmjob sessions with ndmpd', { timeout: 180_000 }, () => {
  const cap = capturedSessions('query', 100_000);

  test('no packet is malformed or carries an expert error', TIMEOUT, async (t) => {
    if (!requirePeers(t, [...NEEDS])) return;
    await assertNothingMalformed(cap.pcap);
    // The filter is not vacuous: the expert-info field is filled in for this
    // capture (TCP's SYN/FIN notes are at 'chat' level), so '>= error' found none.
    const chats = await tshark(cap.pcap, [
      '-Y',
      '_ws.expert.severity >= chat',
      '-T',
      'fields',
      '-e',
      'frame.number',
    ]);
    assert.ok(chats.trim().split('\n').length >= 14, `expert info missing from the capture:\n${chats}`);
  });

  test('the dissector decoded the sessions: > 40 PDUs, every expected message', TIMEOUT, (t) => {
    if (!requirePeers(t, [...NEEDS])) return;
    const names = [...new Set(cap.pdus.map((p) => p.message))].sort();
    t.diagnostic(`PDUs decoded: ${cap.pdus.length}; messages: ${names.join(' ')}`);
    assert.ok(cap.pdus.length > 40, `only ${cap.pdus.length} NDMP PDUs decoded:\n${cap.decoded}`);
    const greetings = cap.pdus.filter((p) => GREETING.includes(p.message));
    // One greeting per connection: 3 × (data + tape) + the wrong-password one.
    assert.equal(greetings.length, 7, `greetings: ${JSON.stringify(greetings)}`);
    for (const g of greetings) assert.equal(g.type, 'Request', `a greeting is a post: ${JSON.stringify(g)}`);
    for (const name of EXPECTED_MESSAGES) {
      const requests = cap.pdus.filter((p) => p.message === name && p.type === 'Request').length;
      const replies = cap.pdus.filter((p) => p.message === name && p.type === 'Reply').length;
      assert.ok(requests > 0, `no ${name} request decoded; messages seen: ${names.join(' ')}`);
      assert.equal(replies, requests, `${name}: ${requests} requests but ${replies} replies`);
    }
    const unknown = cap.pdus.filter(
      (p) => !/^[A-Z][A-Z0-9_]+$/.test(p.message) || !/^(Request|Reply)$/.test(p.type),
    );
    assert.deepEqual(unknown, [], 'PDUs the dissector could not name');
  });

  test('v3 and v4 sessions are decoded in their own version', TIMEOUT, (t) => {
    if (!requirePeers(t, [...NEEDS])) return;
    const v3 = cap.pdus.filter((p) => p.version === '3');
    const v4 = cap.pdus.filter((p) => p.version === '4');
    // The /3t run: two connections, each ~8 PDUs after CONNECT_OPEN(3).
    assert.ok(v3.length >= 10, `v3 PDUs: ${v3.length}`);
    assert.ok(v4.length >= 20, `v4 PDUs: ${v4.length}`);
    assert.ok(
      v3.some((p) => p.message === 'CONFIG_GET_FS_INFO' && p.type === 'Reply'),
      'no v3 CONFIG_GET_FS_INFO reply decoded',
    );
  });

  test('errors on the wire: only the wrong password is refused, in the body', TIMEOUT, (t) => {
    if (!requirePeers(t, [...NEEDS])) return;
    const headerErrors = cap.pdus.filter((p) => p.headerError !== 'NO_ERR');
    assert.deepEqual(headerErrors, [], 'header-level errors');
    const bodyErrors = cap.pdus.filter((p) => p.bodyError !== null && p.bodyError !== 'NO_ERR');
    assert.deepEqual(
      bodyErrors.map((p) => `${p.message} ${p.type} ${p.bodyError}`),
      ['CONNECT_CLIENT_AUTH Reply NOT_AUTHORIZED_ERR'],
    );
    // Every reply has its body error field decoded (v3/v4 replies all start with one).
    const replies = cap.pdus.filter((p) => p.type === 'Reply');
    const noBodyError = replies.filter((p) => p.bodyError === null);
    assert.deepEqual(noBodyError, [], 'replies without a decoded body error');
  });

  test("ndmjob's own view of the captured sessions", TIMEOUT, (t) => {
    if (!requirePeers(t, [...NEEDS])) return;
    const runs = JSON.parse(readFileSync(join(cap.outDir, 'ndmjob.json'), 'utf8')) as CapturedRun[];
    const text = readFileSync(join(cap.outDir, 'ndmjob.txt'), 'utf8');
    assert.deepEqual(
      runs.map((r) => `${r.flags}/${r.password}`),
      ['4t/right', '4m/right', '3t/right', '4t/wrong'],
    );
    for (const r of runs.filter((x) => x.password === 'right')) {
      const v = `NDMPv${r.flags[0]}`;
      assert.match(r.output, new RegExp(`^QR "Data Agent 127\\.0\\.0\\.1 ${v}"$`, 'm'), r.output);
      assert.match(r.output, new RegExp(`^QR "Tape Agent 127\\.0\\.0\\.1 ${v}"$`, 'm'), r.output);
      assert.equal(r.output.match(/^QR " {2}Server info"$/gm)?.length, 2, r.output);
      assert.match(r.output, /^QR " {4}vendor {5}ndmpd project"$/m, r.output);
      assert.match(r.output, /^QR " {2}Backup type info of tar format"$/m, r.output);
      assert.doesNotMatch(r.output, /err|fail/i, r.output);
    }
    const wrong = runs.find((r) => r.password === 'wrong')!;
    assert.match(wrong.output, /#D "err connect-auth-text-failed"/, wrong.output);
    assert.doesNotMatch(wrong.output, /Server info/, wrong.output);
    // ndmjob.txt, for people, holds the same.
    assert.equal(text.match(/Server info/g)?.length, 6, text);
    assert.match(text, /connect-auth-text-failed/);
    assert.doesNotMatch(text, /S3cret-pass/, 'ndmjob.txt shows the password');
  });
});

/** Tape and mover messages the conformance suites must put on the wire (Wireshark's names). */
const TAPE_MOVER_MESSAGES = [
  'TAPE_OPEN',
  'TAPE_CLOSE',
  'TAPE_GET_STATE',
  'TAPE_MTIO',
  'TAPE_WRITE',
  'TAPE_READ',
  'MOVER_GET_STATE',
  'MOVER_LISTEN',
  'MOVER_SET_WINDOW',
  'MOVER_SET_RECORD_SIZE',
  'MOVER_CONTINUE',
  'MOVER_ABORT',
  'MOVER_STOP',
  'MOVER_CLOSE',
];

describe('tshark decodes ndmjob test-tape and test-mover sessions with ndmpd', { timeout: 240_000 }, () => {
  const cap = capturedSessions('tape-mover', 200_000);

  test('ndmjob passed every suite it ran in the capture', TIMEOUT, (t) => {
    if (!requirePeers(t, [...NEEDS])) return;
    const runs = JSON.parse(readFileSync(join(cap.outDir, 'ndmjob.json'), 'utf8')) as CapturedRun[];
    assert.deepEqual(
      runs.map((r) => `${r.suite}/${r.flags}`),
      ['test-tape/4t', 'test-mover/4t', 'test-tape/3t', 'test-mover/3t'],
    );
    for (const r of runs) {
      assert.match(
        r.output,
        new RegExp(`FINAL ${r.suite} Passed -- pass=\\d+ warn=0 fail=0`),
        r.output.slice(-3000),
      );
    }
  });

  test('no packet is malformed or carries an expert error', TIMEOUT, async (t) => {
    if (!requirePeers(t, [...NEEDS])) return;
    await assertNothingMalformed(cap.pcap);
  });

  test('every tape and mover message was decoded, each request answered', TIMEOUT, (t) => {
    if (!requirePeers(t, [...NEEDS])) return;
    const names = [...new Set(cap.pdus.map((p) => p.message))].sort();
    t.diagnostic(`PDUs decoded: ${cap.pdus.length}; messages: ${names.join(' ')}`);
    assert.ok(cap.pdus.length > 1000, `only ${cap.pdus.length} PDUs`);
    for (const name of TAPE_MOVER_MESSAGES) {
      const requests = cap.pdus.filter((p) => p.message === name && p.type === 'Request').length;
      const replies = cap.pdus.filter((p) => p.message === name && p.type === 'Reply').length;
      assert.ok(requests > 0, `no ${name} decoded; messages seen: ${names.join(' ')}`);
      assert.equal(replies, requests, `${name}: ${requests} requests, ${replies} replies`);
    }
    assert.ok(
      cap.pdus.some((p) => /MOVER_HALTED/.test(p.message)),
      'no NOTIFY_MOVER_HALTED decoded',
    );
    assert.ok(
      cap.pdus.some((p) => p.version === '3') && cap.pdus.some((p) => p.version === '4'),
      'both versions',
    );
    // The suites provoke errors on purpose, but always in the body, never in the header.
    assert.deepEqual(
      cap.pdus.filter((p) => p.headerError !== 'NO_ERR'),
      [],
      'header-level errors',
    );
  });
});

/** SCSI messages the changer scenario must put on the wire (Wireshark's names). */
const SCSI_MESSAGES = ['CONFIG_GET_SCSI_INFO', 'SCSI_OPEN', 'SCSI_EXECUTE_CDB', 'SCSI_SET_TARGET'];

describe("tshark decodes ndmjob robot sessions with ndmpd's changer", { timeout: 200_000 }, () => {
  const cap = capturedSessions('changer', 150_000);

  test('ndmjob did what each robot operation asked', TIMEOUT, (t) => {
    if (!requirePeers(t, [...NEEDS])) return;
    const runs = JSON.parse(readFileSync(join(cap.outDir, 'ndmjob.json'), 'utf8')) as CapturedRun[];
    assert.equal(runs.length, 10);
    for (const r of runs) {
      if (r.suite === 'query') assert.match(r.output, /PVolTag\(NDM00\d,#0\)/, r.output);
      else if (r.suite === 'move-empty') assert.match(r.output, /robot move BAD @1007 to @1006/, r.output);
      else assert.match(r.output, /^SESS "Operation complete"$/m, `${r.suite}/${r.flags}:\n${r.output}`);
    }
  });

  test('no packet is malformed or carries an expert error', TIMEOUT, async (t) => {
    if (!requirePeers(t, [...NEEDS])) return;
    await assertNothingMalformed(cap.pcap);
  });

  test('every SCSI message decoded and answered; errors only where the spec puts them', TIMEOUT, (t) => {
    if (!requirePeers(t, [...NEEDS])) return;
    const names = [...new Set(cap.pdus.map((p) => p.message))].sort();
    t.diagnostic(`PDUs decoded: ${cap.pdus.length}; messages: ${names.join(' ')}`);
    for (const name of SCSI_MESSAGES) {
      const requests = cap.pdus.filter((p) => p.message === name && p.type === 'Request').length;
      const replies = cap.pdus.filter((p) => p.message === name && p.type === 'Reply').length;
      assert.ok(requests > 0, `no ${name} decoded; messages seen: ${names.join(' ')}`);
      assert.equal(replies, requests, `${name}: ${requests} requests, ${replies} replies`);
    }
    assert.ok(
      cap.pdus.some((p) => p.message === 'SCSI_SET_TARGET' && p.version === '3'),
      'a v3 SCSI_SET_TARGET',
    );
    assert.deepEqual(
      cap.pdus.filter((p) => p.headerError !== 'NO_ERR'),
      [],
      'header-level errors',
    );
    // A refused move is a SCSI answer (CHECK CONDITION), never an NDMP error.
    assert.deepEqual(
      cap.pdus.filter(
        (p) => p.message.startsWith('SCSI_') && p.bodyError !== null && p.bodyError !== 'NO_ERR',
      ),
      [],
      'SCSI replies with an NDMP error',
    );
    assert.match(cap.decoded, /Status: Check Condition \(2\)/, 'a CHECK CONDITION decoded');
  });

  test(
    "the refused moves' sense, as Wireshark's SCSI dissector reads it: 05/3B/0E, v4 and v3",
    TIMEOUT,
    async (t) => {
      if (!requirePeers(t, [...NEEDS])) return;
      const sense = await tshark(cap.pcap, [
        '-Y',
        'scsi.sns.key',
        '-T',
        'fields',
        '-e',
        'scsi.sns.key',
        '-e',
        'scsi.sns.asc',
        '-e',
        'scsi.sns.ascq',
      ]);
      assert.deepEqual(sense.trim().split('\n'), ['0x05\t0x3b\t0x0e', '0x05\t0x3b\t0x0e']);
    },
  );
});
