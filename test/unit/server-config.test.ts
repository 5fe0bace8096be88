// ndmpd's connection-slot settings as resolveConfig reads them from the file
// and the flags: defaults, names, and the mistakes it stops the start for.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { ConfigError, readConfigFile, resolveConfig } from '../../src/cli/server-config.js';

const base = { 'state-dir': '/tmp/ndmpd-config-test' };

describe('connection-slot settings', () => {
  test('defaults', () => {
    const c = resolveConfig(base, {});
    assert.equal(c.maxConnections, 64);
    assert.equal(c.maxUnauthenticated, 16);
    assert.equal(c.maxUnauthenticatedPerAddress, 4);
    assert.equal(c.reservedConnections, 8);
    assert.equal(c.idleTimeoutMs, 900_000);
    assert.deepEqual(c.allow, []);
    assert.equal(c.authBackoffMaxMs, 60_000);
  });

  test('file keys, flags win, allow from both; the reserve follows max-connections by default', () => {
    const c = resolveConfig(
      {
        ...base,
        'max-connections': 12,
        'max-unauthenticated-per-address': 2,
        'idle-timeout': 0,
        allow: ['10.0.0.0/8', '::1'],
        'auth-backoff-max': 30,
      },
      { 'idle-timeout': '60', allow: ['::ffff:192.0.2.1'] },
    );
    assert.equal(c.reservedConnections, 1);
    assert.equal(c.maxUnauthenticatedPerAddress, 2);
    assert.equal(c.idleTimeoutMs, 60_000);
    assert.deepEqual(c.allow, ['10.0.0.0/8', '::1/128', '192.0.2.1/32']);
    assert.equal(c.authBackoffMaxMs, 30_000);
    assert.equal(resolveConfig({ ...base, allow: '127.0.0.1' }, {}).allow[0], '127.0.0.1/32');
    assert.equal(resolveConfig(base, { 'reserved-connections': '0' }).reservedConnections, 0);
  });

  test('mistakes are refused with the setting named', () => {
    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [{ allow: ['10.0.0.0/33'] }, /allow: .*prefix length/],
      [{ allow: ['intranet'] }, /allow: 'intranet' is not an IPv4 or IPv6/],
      [{ allow: [8] }, /allow must be a list of CIDRs/],
      [
        { 'max-connections': 4, 'reserved-connections': 4 },
        /reserved-connections \(4\) must be less than max-connections \(4\)/,
      ],
      [{ 'idle-timeout': -1 }, /idle-timeout must be a whole number/],
      [{ 'max-unauthenticated-per-address': 0 }, /max-unauthenticated-per-address must be/],
      [{ 'auth-backoff-max': 'soon' }, /auth-backoff-max must be/],
    ];
    for (const [file, re] of cases) {
      assert.throws(
        () => resolveConfig({ ...base, ...file }, {}),
        (e: unknown) => {
          assert.ok(e instanceof ConfigError);
          assert.match(e.message, re);
          return true;
        },
      );
    }
  });

  test('the TOML file: the keys as ndmpd.example.toml shows them', () => {
    const dir = mkdtempSync(join(os.tmpdir(), 'ndmpd-config-'));
    try {
      const file = join(dir, 'ndmpd.toml');
      writeFileSync(
        file,
        [
          'allow = ["10.0.0.0/8", "192.0.2.17", "::1/128"]',
          'max-connections = 64',
          'max-unauthenticated = 16',
          'max-unauthenticated-per-address = 4',
          'reserved-connections = 8',
          'idle-timeout = 900',
          'auth-backoff-max = 60',
          '[history]',
          'threads = 1',
        ].join('\n'),
      );
      const c = resolveConfig({ ...readConfigFile(file), ...base }, {});
      assert.deepEqual(c.allow, ['10.0.0.0/8', '192.0.2.17/32', '::1/128']);
      assert.equal(c.reservedConnections, 8);
      assert.equal(c.idleTimeoutMs, 900_000);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('metrics-listen and the history warnings (docs/operations.md)', () => {
  const cwd = os.tmpdir();

  test('metrics are off by default; metrics-listen from the file, the flag wins', () => {
    assert.equal(resolveConfig({}, {}, cwd).metrics, null);
    assert.deepEqual(resolveConfig({ 'metrics-listen': '127.0.0.1:9464' }, {}, cwd).metrics, {
      host: '127.0.0.1',
      port: 9464,
    });
    assert.deepEqual(
      resolveConfig({ 'metrics-listen': '127.0.0.1:9464' }, { 'metrics-listen': '[::1]:9500' }, cwd).metrics,
      { host: '::1', port: 9500 },
    );
    assert.throws(() => resolveConfig({}, { 'metrics-listen': 'nope' }, cwd), ConfigError);
    assert.throws(
      () => resolveConfig({}, { listen: '127.0.0.1:10000', 'metrics-listen': '127.0.0.1:10000' }, cwd),
      /a port of its own/,
    );
  });

  test('[history] warn-spool, warn-lag-share, warn-lag-after: defaults, the file, bad values named', () => {
    const d = resolveConfig({}, {}, cwd).history;
    assert.equal(d.warnSpoolBytes, 64 * 2 ** 20);
    assert.equal(d.warnLagShare, 0.15);
    assert.equal(d.warnLagAfterMs, 30_000);
    const dir = mkdtempSync(join(os.tmpdir(), 'ndmpd-cfg-'));
    try {
      const f = join(dir, 'c.toml');
      writeFileSync(
        f,
        'metrics-listen = "127.0.0.1:9464"\n[history]\nwarn-spool = "1GiB"\nwarnLagShare = 0.5\nwarn-lag-after = 5\n',
      );
      const c = resolveConfig(readConfigFile(f), {}, cwd);
      assert.equal(c.history.warnSpoolBytes, 2 ** 30);
      assert.equal(c.history.warnLagShare, 0.5);
      assert.equal(c.history.warnLagAfterMs, 5000);
      assert.equal(c.metrics?.port, 9464);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    assert.throws(
      () => resolveConfig({}, { 'history-warn-lag-share': '1.5' }, cwd),
      /warn-lag-share must be a share/,
    );
    assert.throws(() => resolveConfig({}, { 'history-warn-spool': 'lots' }, cwd), /history\.warn-spool/);
  });
});
