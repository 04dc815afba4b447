// The sign-in throttle's rules on their own: per (account, address) backoff, per address, per
// account for unknown addresses only, IPv6 counted per /64, and a memory bound that never
// forgets the counters holding an attacker back (issue 11: it used to clear them all).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SignInThrottle, addressKey } from '../../src/services/sign-in-throttle.ts';

const T0 = 1_800_000_000_000;

test('an attacker from one address locks only that address out of the account', () => {
  const t = new SignInThrottle();
  for (let i = 0; i < 10; i++) t.fail('admin@x', '198.51.100.7', T0 + i);
  assert.ok(t.retryAfter('admin@x', '198.51.100.7', T0 + 20) > 0);
  assert.equal(t.retryAfter('admin@x', '192.0.2.1', T0 + 20), 0, 'the owner elsewhere is locked out');
  // Backoff: 30 s after the limit, doubling with each further failure, up to 15 minutes.
  assert.equal(t.retryAfter('admin@x', '198.51.100.7', T0 + 9), 30);
  t.fail('admin@x', '198.51.100.7', T0 + 40_000);
  assert.equal(t.retryAfter('admin@x', '198.51.100.7', T0 + 40_000), 60);
});

test('many addresses against one account delay unknown addresses, not the ones it signed in from', () => {
  const t = new SignInThrottle({ perAccount: 20 });
  t.succeed('admin@x', '192.0.2.1', T0);
  for (let i = 0; i < 20; i++) t.fail('admin@x', `203.0.113.${i}`, T0 + i);
  assert.ok(t.retryAfter('admin@x', '203.0.113.200', T0 + 30) > 0);
  assert.equal(t.retryAfter('admin@x', '192.0.2.1', T0 + 30), 0);
});

test('a flood of new keys never wipes the counters of locked pairs', () => {
  const t = new SignInThrottle({ maxKeys: 1000 });
  for (let i = 0; i < 10; i++) t.fail('victim@x', '198.51.100.7', T0 + i);
  // 5 000 one-off failures, each a new (account, address) pair, five times the bound.
  for (let i = 0; i < 5000; i++)
    t.fail(`u${i}@x`, `10.${i >> 16}.${(i >> 8) & 255}.${i & 255}`, T0 + 100 + i);
  assert.ok(t.size <= 1000, `kept ${t.size} keys`);
  assert.ok(t.retryAfter('victim@x', '198.51.100.7', T0 + 6000) > 0, 'the lock was forgotten');
});

test('IPv6 addresses count per /64; IPv4-mapped ones as IPv4', () => {
  assert.equal(addressKey('2001:db8:1:2:aaaa::1'), addressKey('2001:db8:1:2:ffff:1:2:3'));
  assert.notEqual(addressKey('2001:db8:1:2::1'), addressKey('2001:db8:1:3::1'));
  assert.equal(addressKey('2001:0db8:0001:0002::1'), '2001:db8:1:2::/64');
  assert.equal(addressKey('::ffff:127.0.0.1'), '127.0.0.1');
  assert.equal(addressKey('::1'), '0:0:0:0::/64');
  const t = new SignInThrottle();
  for (let i = 0; i < 30; i++) t.fail(`u${i}@x`, `2001:db8:1:2::${i.toString(16)}`, T0 + i);
  assert.ok(t.retryAfter('other@x', '2001:db8:1:2::ffff', T0 + 40) > 0);
});
