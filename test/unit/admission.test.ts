// The pieces the listener's admission rules are built from: peer addresses and
// their keys, the allow-list, and the per-address back-off for failed logins.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { AddressError, AllowList, normalizeAddress, parseCidr, peerKey } from '../../src/util/address.js';
import { AuthBackoff } from '../../src/services/auth-backoff.js';

describe('peer addresses', () => {
  test('IPv4-mapped IPv6 peers are their IPv4 address; IPv6 peers are keyed by /64', () => {
    assert.equal(normalizeAddress('::ffff:10.1.2.3'), '10.1.2.3');
    assert.equal(normalizeAddress('::FFFF:127.0.0.1'), '127.0.0.1');
    assert.equal(normalizeAddress('2001:DB8::1'), '2001:db8::1');
    assert.equal(peerKey('10.1.2.3'), '10.1.2.3');
    assert.equal(peerKey('::ffff:10.1.2.3'), '10.1.2.3');
    assert.equal(peerKey('2001:db8:1:2:aaaa::1'), '2001:db8:1:2::/64');
    assert.equal(peerKey('2001:db8:1:2:bbbb:cccc:dddd:eeee'), '2001:db8:1:2::/64');
    assert.equal(peerKey('::1'), '0:0:0:0::/64');
    assert.notEqual(peerKey('2001:db8:1:3::1'), peerKey('2001:db8:1:2::1'));
  });

  test('CIDRs: a bare address is a /32 or /128; bad ones are refused with the reason', () => {
    assert.deepEqual(parseCidr('10.0.0.0/8'), { address: '10.0.0.0', prefix: 8, family: 'ipv4' });
    assert.deepEqual(parseCidr('192.0.2.7'), { address: '192.0.2.7', prefix: 32, family: 'ipv4' });
    assert.deepEqual(parseCidr('::1'), { address: '::1', prefix: 128, family: 'ipv6' });
    assert.deepEqual(parseCidr('fd00::/8'), { address: 'fd00::', prefix: 8, family: 'ipv6' });
    for (const bad of ['10.0.0.0/33', 'example.com', '10.0.0/8', '::1/129', '10.0.0.0/', '10.0.0.0/x']) {
      assert.throws(() => parseCidr(bad), AddressError, bad);
    }
  });

  test('allow-list: admits by CIDR, IPv4 and IPv6, mapped peers too; empty admits all', () => {
    const list = new AllowList(['10.0.0.0/8', '192.0.2.7', '::1/128', 'fd00::/8']);
    assert.equal(list.allows('10.200.1.1'), true);
    assert.equal(list.allows('::ffff:10.200.1.1'), true);
    assert.equal(list.allows('11.0.0.1'), false);
    assert.equal(list.allows('192.0.2.7'), true);
    assert.equal(list.allows('192.0.2.8'), false);
    assert.equal(list.allows('::1'), true);
    assert.equal(list.allows('fd12:3456::9'), true);
    assert.equal(list.allows('fe80::1'), false);
    assert.equal(list.allows(''), false);
    assert.equal(new AllowList([]).allows('203.0.113.5'), true);
  });
});

describe('failed-login back-off', () => {
  test('each failure doubles the penalty up to the cap; other addresses are untouched', () => {
    let now = 1_000_000;
    const b = new AuthBackoff(
      { freeFailures: 0, initialMs: 1000, maxMs: 8000, quietMs: 60_000, maxAddresses: 100 },
      () => now,
    );
    assert.equal(b.penaltyLeft('10.0.0.1'), 0);
    assert.deepEqual(
      [1, 2, 3, 4, 5].map(() => {
        const p = b.failed('10.0.0.1');
        now += p;
        return p;
      }),
      [1000, 2000, 4000, 8000, 8000],
    );
    now -= 3000;
    assert.equal(b.penaltyLeft('10.0.0.1'), 3000);
    assert.equal(b.penaltyLeft('::ffff:10.0.0.1'), 3000, 'the mapped spelling is the same host');
    assert.equal(b.penaltyLeft('10.0.0.2'), 0);
    // One log line per window: the first refusal says so, the others do not.
    assert.equal(b.firstRefusalOfWindow('10.0.0.1'), true);
    assert.equal(b.firstRefusalOfWindow('10.0.0.1'), false);
    assert.equal(b.firstRefusalOfWindow('10.0.0.2'), false, 'no penalty, nothing to log');
  });

  test('a right password forgives; a quiet address is forgotten; the table is bounded', () => {
    let now = 0;
    const b = new AuthBackoff(
      { freeFailures: 0, initialMs: 1000, maxMs: 60_000, quietMs: 10_000, maxAddresses: 3 },
      () => now,
    );
    b.failed('10.0.0.1');
    b.succeeded('10.0.0.1');
    assert.equal(b.penaltyLeft('10.0.0.1'), 0);
    b.failed('10.0.0.1');
    now += 10_001;
    assert.equal(b.penaltyLeft('10.0.0.1'), 0);
    assert.equal(b.failed('10.0.0.1'), 1000, 'starts afresh after the quiet period');
    for (let i = 2; i <= 50; i++) b.failed(`10.0.0.${i}`);
    assert.equal(b.size, 3);
    assert.ok(b.penaltyLeft('10.0.0.50') > 0, 'the latest are kept');
    assert.equal(b.penaltyLeft('10.0.0.1'), 0, 'the least recent went first');
  });

  test('a cap of 0 turns it off', () => {
    const b = new AuthBackoff({
      freeFailures: 0,
      initialMs: 1000,
      maxMs: 0,
      quietMs: 10_000,
      maxAddresses: 3,
    });
    assert.equal(b.failed('10.0.0.1'), 0);
    assert.equal(b.penaltyLeft('10.0.0.1'), 0);
  });
});

describe('failed-login back-off: free failures', () => {
  test('the first few failures of an address cost no penalty; the next ones double from the initial one', () => {
    let now = 0;
    const b = new AuthBackoff(
      { freeFailures: 3, initialMs: 1000, maxMs: 60_000, quietMs: 60_000, maxAddresses: 10 },
      () => now,
    );
    const penalties = [1, 2, 3, 4, 5, 6].map(() => {
      const p = b.failed('10.0.0.7');
      now += p + 1;
      return p;
    });
    assert.deepEqual(penalties, [0, 0, 0, 1000, 2000, 4000]);
    b.succeeded('10.0.0.7');
    assert.equal(b.failed('10.0.0.7'), 0, 'a right password forgives the count too');
  });
});
