// The two programs as an operator runs them: ndmpd's start-up checks and
// generated credentials, the config file, and `ndmp query` end to end.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, mkdirSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { NDMPD_BIN, NDMP_BIN, freePort, startNdmpd } from '../helpers/ndmpd-process.js';
import type { NdmpdProcess } from '../helpers/ndmpd-process.js';
import { parse as parseToml } from 'smol-toml';

const run = promisify(execFile);

async function runNode(
  args: string[],
  env: NodeJS.ProcessEnv = {},
): Promise<{ code: number; out: string; err: string }> {
  try {
    const r = await run(process.execPath, args, { env: { ...process.env, ...env }, timeout: 20_000 });
    return { code: 0, out: r.stdout, err: r.stderr };
  } catch (e) {
    const x = e as { code: number; stdout: string; stderr: string };
    return { code: x.code, out: x.stdout, err: x.stderr };
  }
}

describe('ndmpd start-up', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(os.tmpdir(), 'ndmpd-cli-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('--help documents every flag', async () => {
    const r = await runNode([NDMPD_BIN, '--help']);
    assert.equal(r.code, 0);
    for (const flag of [
      '--listen',
      '--state-dir',
      '--export',
      '--auth-file',
      '--config',
      '--log-level',
      '--max-connections',
    ]) {
      assert.ok(r.out.includes(flag), `${flag} missing from --help`);
    }
  });

  test('refuses an auth file readable by group or others, and says how to fix it', async () => {
    const auth = join(dir, 'open-auth');
    writeFileSync(auth, 'u:p\n');
    chmodSync(auth, 0o644);
    const r = await runNode([
      NDMPD_BIN,
      '--auth-file',
      auth,
      '--state-dir',
      join(dir, 's1'),
      '--listen',
      '127.0.0.1:0',
    ]);
    assert.equal(r.code, 2);
    assert.match(r.err, /mode 644/);
    assert.match(r.err, /chmod 600/);
  });

  test('refuses an export that does not exist, and a malformed listen address', async () => {
    let r = await runNode([NDMPD_BIN, '--export', `x=${join(dir, 'nope')}`, '--check-config']);
    assert.equal(r.code, 2);
    assert.match(r.err, /export 'x'.*does not exist/);
    r = await runNode([NDMPD_BIN, '--listen', 'localhost', '--check-config']);
    assert.equal(r.code, 2);
    assert.match(r.err, /not HOST:PORT/);
  });

  test('bad numbers and log levels are refused with one line, exit 2', async () => {
    for (const args of [
      ['--pre-auth-timeout', 'abc'],
      ['--pre-auth-timeout', '-5'],
      ['--pre-auth-timeout', '3000000'],
      ['--max-connections', '0'],
      ['--log-level', 'verbose'],
    ]) {
      const r = await runNode([NDMPD_BIN, ...args, '--check-config']);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.err}`);
      assert.equal(r.err.trim().split('\n').length, 1, r.err);
      assert.ok(r.err.includes(args[0]!.slice(2)), r.err);
    }
  });

  test('config file: TOML settings, flags win, unknown keys refused', async () => {
    const exp = join(dir, 'exp');
    mkdirSync(exp, { recursive: true });
    const cfg = join(dir, 'ndmpd.toml');
    writeFileSync(cfg, `listen = "127.0.0.1:12345"\nstate-dir = "${dir}/st"\n[export]\nhome = "${exp}"\n`);
    let r = await runNode([NDMPD_BIN, '--config', cfg, '--check-config', '--listen', '127.0.0.1:23456']);
    assert.equal(r.code, 0, r.err);
    const resolved = parseToml(r.out) as {
      listen: string;
      'state-dir': string;
      export: Record<string, string>;
    };
    assert.equal(resolved.listen, '127.0.0.1:23456');
    assert.equal(resolved['state-dir'], `${dir}/st`);
    assert.deepEqual({ ...resolved.export }, { home: exp });
    writeFileSync(cfg, 'lisen = "x"\n');
    r = await runNode([NDMPD_BIN, '--config', cfg, '--check-config']);
    assert.equal(r.code, 2);
    assert.match(r.err, /unknown setting 'lisen'/);
  });

  test('config file: the [history] table and its flags; bad values refused with the setting named', async () => {
    const cfg = join(dir, 'history.toml');
    writeFileSync(
      cfg,
      `[history]\nmode = "lockstep"\nstallTimeout = 20\nthreads = 2\nspool-max = "512MiB"\nspool-min-free = "2G"\n`,
    );
    let r = await runNode([NDMPD_BIN, '--config', cfg, '--check-config', '--history-max-delay', '10']);
    assert.equal(r.code, 0, r.err);
    const resolved = parseToml(r.out) as { history: Record<string, unknown> };
    assert.deepEqual(
      { ...resolved.history },
      {
        mode: 'lockstep',
        threads: 2,
        'stall-timeout': 20,
        'max-delay': 10,
        'spool-max': '512M',
        'spool-min-free': '2G',
        // The history warnings' defaults (docs/operations.md, "History warnings").
        'warn-spool': '64M',
        'warn-lag-share': 0.15,
        'warn-lag-after': 30,
      },
    );
    r = await runNode([
      NDMPD_BIN,
      '--check-config',
      '--history-mode',
      'worker',
      '--history-stall-timeout',
      '5',
    ]);
    assert.equal(r.code, 0, r.err);
    assert.deepEqual(
      { ...(parseToml(r.out) as { history: object }).history },
      {
        mode: 'worker',
        threads: 1,
        'stall-timeout': 5,
        'max-delay': 50,
        'spool-max': '4G',
        'spool-min-free': 'auto',
        'warn-spool': '64M',
        'warn-lag-share': 0.15,
        'warn-lag-after': 30,
      },
    );
    r = await runNode([
      NDMPD_BIN,
      '--check-config',
      '--history-spool-max',
      '0',
      '--history-spool-min-free',
      '0',
    ]);
    assert.equal(r.code, 0, r.err);
    const zero = (parseToml(r.out) as { history: Record<string, unknown> }).history;
    assert.equal(zero['spool-max'], 0, '0: no spool');
    assert.equal(zero['spool-min-free'], 0, '0: no floor');
    r = await runNode([NDMPD_BIN, '--check-config', '--history-spool-max', 'lots']);
    assert.equal(r.code, 2);
    assert.match(r.err, /history.spool-max must be a size from 0 to 1P/);
    writeFileSync(cfg, `[history]\nmode = "sometimes"\n`);
    r = await runNode([NDMPD_BIN, '--config', cfg, '--check-config']);
    assert.equal(r.code, 2);
    assert.match(r.err, /history.mode must be worker or lockstep/);
    writeFileSync(cfg, `[history]\nspeed = 1\n`);
    r = await runNode([NDMPD_BIN, '--config', cfg, '--check-config']);
    assert.equal(r.code, 2);
    assert.match(r.err, /unknown setting 'history.speed'/);
    // The shipped example parses.
    r = await runNode([NDMPD_BIN, '--config', join(process.cwd(), 'ndmpd.example.toml'), '--check-config']);
    assert.equal(r.code, 0, r.err);
  });

  test('first start without an auth file writes one (0600) and says where; ndmp query can use it', async () => {
    const state = join(dir, 'fresh-state');
    const port = await freePort();
    const child = spawn(
      process.execPath,
      [
        NDMPD_BIN,
        '--state-dir',
        state,
        '--listen',
        `127.0.0.1:${port}`,
        '--log-format',
        'json',
        '--export',
        `d=${dir}`,
      ],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let out = '';
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    try {
      for (let i = 0; i < 100 && !out.includes('listening for DMAs'); i++)
        await new Promise((r) => setTimeout(r, 50));
      const authFile = join(state, 'auth');
      assert.ok(out.includes(authFile), 'the log says where the credentials are');
      assert.equal(statSync(authFile).mode & 0o777, 0o600);
      const line = readFileSync(authFile, 'utf8')
        .split('\n')
        .find((l) => l.startsWith('ndmp:'));
      assert.ok(line && line.length > 'ndmp:'.length + 16, 'a long random password');
      assert.equal(out.includes(line.slice(5)), false, 'the password is not logged');
      const q = await runNode([
        NDMP_BIN,
        'query',
        `127.0.0.1:${port}`,
        '--user',
        'ndmp',
        '--password-file',
        authFile,
      ]);
      assert.equal(q.code, 0, q.err);
      assert.match(q.out, /Backup type tar/);
    } finally {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    }
  });
});

describe('ndmp query against a running ndmpd', () => {
  let p: NdmpdProcess;
  let pwFile: string;
  before(async () => {
    p = await startNdmpd();
    pwFile = join(p.dir, 'pw');
    writeFileSync(pwFile, `${p.password}\n`, { mode: 0o600 });
  });
  after(async () => p.stop());

  for (const [label, extra] of [
    ['v4 MD5', []],
    ['v4 TEXT', ['--auth', 'text']],
    ['v3 MD5', ['--v3']],
  ] as const) {
    test(`text output, ${label}`, async () => {
      const r = await runNode([
        NDMP_BIN,
        'query',
        `127.0.0.1:${p.port}`,
        '-u',
        p.user,
        '-p',
        pwFile,
        ...extra,
      ]);
      assert.equal(r.code, 0, r.err);
      assert.match(r.out, new RegExp(`NDMPv${extra.includes('--v3' as never) ? 3 : 4}`));
      assert.match(r.out, /vendor\s+ndmpd project/);
      assert.match(r.out, /auth types\s+TEXT MD5/);
      assert.match(r.out, /addr types\s+LOCAL TCP/);
      assert.match(r.out, /Backup type tar/);
      assert.ok(r.out.includes(`File system ${p.exportDir}`));
      // The default library has two drives, listed with their serials.
      assert.match(r.out, /NDMPD-VTL.*drive0/s);
      assert.match(r.out, /drive1/);
    });
  }

  test('--json carries the same facts, sizes as numbers', async () => {
    const r = await runNode([NDMP_BIN, 'query', `127.0.0.1:${p.port}`, '-u', p.user, '-p', pwFile, '--json']);
    assert.equal(r.code, 0, r.err);
    const j = JSON.parse(r.out) as {
      version: number;
      fileSystems: Array<{ fsLogicalDevice: string; totalSize: number }>;
      butypes: Array<{ butypeName: string }>;
    };
    assert.equal(j.version, 4);
    assert.equal(j.butypes[0]!.butypeName, 'tar');
    assert.equal(j.fileSystems[0]!.fsLogicalDevice, p.exportDir);
    const st = (await import('node:fs')).statfsSync(p.exportDir);
    assert.equal(j.fileSystems[0]!.totalSize, st.blocks * st.bsize);
  });

  test('a wrong password: exit 1 with the NDMP error name; no server: exit 3', async () => {
    let r = await runNode([NDMP_BIN, 'query', `127.0.0.1:${p.port}`, '-u', p.user], {
      NDMP_PASSWORD: 'wrong',
    });
    assert.equal(r.code, 1);
    assert.match(r.err, /NDMP_NOT_AUTHORIZED_ERR/);
    r = await runNode([NDMP_BIN, 'query', `127.0.0.1:${await freePort()}`, '-u', p.user, '-p', pwFile]);
    assert.equal(r.code, 3);
    assert.match(r.err, /cannot connect/);
    // No password anywhere: not given, not in the environment, no ndmpd auth file on this host.
    r = await runNode([NDMP_BIN, 'query', `127.0.0.1:${p.port}`, '-u', p.user], {
      NDMP_PASSWORD: '',
      NDMPD_STATE_DIR: join(p.dir, 'no-ndmpd-here'),
    });
    assert.equal(r.code, 2);
    assert.match(r.err, /password-file/);
  });
});
