import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  classifyAddress,
  cidrContains,
  OutboundPolicy,
  parseCidr,
  parseIPv4Loose,
  type AddressClass,
} from '../../src/net/address-policy.ts';

// Pure functions only: nothing here opens a socket.

const CLASSES: [string, AddressClass][] = [
  ['127.0.0.1', 'loopback'],
  ['127.1', 'loopback'],
  ['2130706433', 'loopback'],
  ['0x7f.0.0.1', 'loopback'],
  ['0177.0.0.1', 'loopback'],
  ['0x7f000001', 'loopback'],
  ['[::1]', 'loopback'],
  ['::1', 'loopback'],
  ['[::ffff:127.0.0.1]', 'loopback'],
  ['[::ffff:7f00:1]', 'loopback'],
  ['::127.0.0.1', 'loopback'],
  ['64:ff9b::7f00:1', 'loopback'],
  ['64:ff9b::10.0.0.1', 'private'],
  ['2002:7f00:1::', 'loopback'],
  ['2002:a00:1::1', 'private'],
  ['0.0.0.0', 'unspecified'],
  ['0', 'unspecified'],
  ['::', 'unspecified'],
  ['0.1.2.3', 'reserved'],
  ['169.254.169.254', 'link-local'],
  ['100.64.0.1', 'cgnat'],
  ['100.127.255.254', 'cgnat'],
  ['10.0.0.1', 'private'],
  ['10.255.255.255', 'private'],
  ['172.16.0.1', 'private'],
  ['172.31.255.255', 'private'],
  ['192.168.1.1', 'private'],
  ['fd00::1', 'private'],
  ['fc00::1', 'private'],
  ['fec0::1', 'private'],
  ['fe80::1', 'link-local'],
  ['fe80::1%eth0', 'link-local'],
  ['224.0.0.1', 'multicast'],
  ['239.255.255.250', 'multicast'],
  ['ff02::1', 'multicast'],
  ['255.255.255.255', 'broadcast'],
  ['240.0.0.1', 'reserved'],
  ['198.18.0.1', 'benchmarking'],
  ['198.19.255.255', 'benchmarking'],
  ['192.0.2.1', 'documentation'],
  ['198.51.100.7', 'documentation'],
  ['203.0.113.9', 'documentation'],
  ['2001:db8::1', 'documentation'],
  ['2001::1', 'tunnel'],
  ['2001:2::1', 'benchmarking'],
  ['100::1', 'reserved'],
  ['::8.8.8.8', 'reserved'],
  ['192.0.0.8', 'reserved'],
  ['4000::1', 'reserved'],
  ['8.8.8.8', 'public'],
  ['1.1.1.1', 'public'],
  ['172.32.0.1', 'public'],
  ['100.128.0.1', 'public'],
  ['[::ffff:8.8.8.8]', 'public'],
  ['2606:4700:4700::1111', 'public'],
  ['2a00:1450:4001:80b::200e', 'public'],
  ['64:ff9b::808:808', 'public'],
  ['example.com', 'invalid'],
  ['1.2.3.4.5', 'invalid'],
  ['256.1.1.1', 'invalid'],
];

test('classifyAddress table', () => {
  for (const [ip, cls] of CLASSES) assert.equal(classifyAddress(ip), cls, ip);
});

test('parseIPv4Loose follows inet_aton', () => {
  assert.equal(parseIPv4Loose('127.1'), 0x7f000001);
  assert.equal(parseIPv4Loose('0x7f.1'), 0x7f000001);
  assert.equal(parseIPv4Loose('10.0.258'), (10 << 24) + 258);
  assert.equal(parseIPv4Loose('1.2.3.256'), null);
  assert.equal(parseIPv4Loose('08.0.0.1'), null); // 08 is not octal
  assert.equal(parseIPv4Loose('foo.1'), null);
});

test('parseCidr and cidrContains', () => {
  const c = parseCidr('127.0.0.1/32');
  assert.equal(c.family, 4);
  assert.ok(cidrContains(c, '127.0.0.1'));
  assert.ok(cidrContains(c, '::ffff:127.0.0.1'));
  assert.ok(!cidrContains(c, '127.0.0.2'));
  const n = parseCidr('10.1.0.0/16');
  assert.ok(cidrContains(n, '10.1.200.3'));
  assert.ok(!cidrContains(n, '10.2.0.1'));
  const v6 = parseCidr('fd00::/8');
  assert.ok(cidrContains(v6, 'fd12::1'));
  assert.ok(!cidrContains(v6, 'fe80::1'));
  assert.equal(parseCidr('::1').prefix, 128);
  for (const bad of ['10.0.0.0/33', '1.2.3/8', 'fd00::/129', 'x/1', '10.0.0.0/']) {
    assert.throws(() => parseCidr(bad), bad);
  }
});

test('default policy refuses every non-public spelling and accepts public hosts', () => {
  const p = new OutboundPolicy();
  const refused = [
    '127.1',
    '2130706433',
    '0x7f.0.0.1',
    '0177.0.0.1',
    '[::1]',
    '[::ffff:127.0.0.1]',
    '[::ffff:7f00:1]',
    '0.0.0.0',
    '169.254.169.254',
    '100.64.0.1',
    '10.1.2.3',
    '172.16.5.4',
    '192.168.0.10',
    '[fd00::1]',
    '[fe80::1]',
    '224.0.0.1',
    'localhost',
    'LOCALHOST.',
    'foo.localhost',
    'localhost.localdomain',
    '[64:ff9b::7f00:1]',
    '[2002:7f00:1::]',
    '[2001::1]',
    '255.255.255.255',
    '198.18.0.1',
  ];
  for (const h of refused) assert.equal(p.checkHost(h).ok, false, h);
  for (const h of ['example.com', '8.8.8.8', '[2606:4700::1111]', 'cdn.example.org.']) {
    assert.deepEqual(p.checkHost(h), { ok: true }, h);
  }
  assert.equal(p.checkAddress('10.0.0.1').ok, false);
  assert.equal(p.checkAddress('93.184.216.34').ok, true);
  assert.equal(p.checkResolvedAddress('example.com', '127.0.0.1').ok, false);
});

test('allowNetworks opens exactly the listed CIDRs', () => {
  const p = new OutboundPolicy({ allowNetworks: ['127.0.0.1/32', '10.8.0.0/16'] });
  assert.equal(p.checkHost('127.0.0.1').ok, true);
  assert.equal(p.checkHost('127.1').ok, true);
  assert.equal(p.checkHost('[::ffff:127.0.0.1]').ok, true);
  assert.equal(p.checkHost('127.0.0.2').ok, false);
  assert.equal(p.checkHost('[::1]').ok, false);
  assert.equal(p.checkAddress('10.8.3.4').ok, true);
  assert.equal(p.checkAddress('10.9.0.1').ok, false);
  // localhost names pass the name check but every resolved address must be allowed
  assert.equal(p.checkHost('localhost').ok, true);
  assert.equal(p.checkResolvedAddress('localhost', '127.0.0.1').ok, true);
  assert.equal(p.checkResolvedAddress('localhost', '::1').ok, false);
  assert.equal(p.checkResolvedAddress('localhost', '8.8.8.8').ok, false);
});

test('domain allow and block lists; block wins', () => {
  const p = new OutboundPolicy({
    allowDomains: ['example.com', '*.example.org'],
    blockDomains: ['bad.example.org'],
  });
  assert.equal(p.checkHost('example.com').ok, true);
  assert.equal(p.checkHost('EXAMPLE.com.').ok, true);
  assert.equal(p.checkHost('www.example.com').ok, false); // exact only
  assert.equal(p.checkHost('a.b.example.org').ok, true);
  assert.equal(p.checkHost('example.org').ok, false); // wildcard = subdomains only
  assert.equal(p.checkHost('bad.example.org').ok, false);
  assert.equal(p.checkHost('other.net').ok, false);
  assert.equal(p.checkHost('8.8.8.8').ok, false); // not in the allowed domains
  const q = new OutboundPolicy({ blockDomains: ['*.tracker.net'] });
  assert.equal(q.checkHost('x.tracker.net').ok, false);
  assert.equal(q.checkHost('tracker.net').ok, true);
  assert.equal(q.checkHost('ok.net').ok, true);
});
