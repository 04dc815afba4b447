import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pathEscape, signPath } from '../../src/services/links.service.ts';

test('sign test vector of spec 5.3', () => {
  const sign = signPath('secret', '/api/v4/file/content/DprI3/0/The Man.mp3', 1749528415);
  assert.equal(sign, '4ic1Kho0TkggmyMCr48CDVMqvaCcEXRYCb-eNYjX_lg=:1749528415');
  const query = new URLSearchParams({ download: 'true', sign }).toString();
  assert.equal(query, 'download=true&sign=4ic1Kho0TkggmyMCr48CDVMqvaCcEXRYCb-eNYjX_lg%3D%3A1749528415');
});

test('sign is base64url with padding, 44 chars before the expiry', () => {
  for (const path of ['/a', '/api/v4/file/content/x/0/新建.txt', '/']) {
    const [mac, expires] = signPath(Buffer.from('k'), path, 0).split(':');
    assert.equal(expires, '0');
    assert.equal(mac!.length, 44);
    assert.match(mac!, /^[A-Za-z0-9_-]{43}=$/);
  }
  assert.notEqual(signPath('secret', '/a', 1), signPath('secret', '/a', 2));
  assert.notEqual(signPath('secret', '/a', 1), signPath('secret', '/b', 1));
});

test('pathEscape escapes like Go url.PathEscape', () => {
  assert.equal(pathEscape('The Man.mp3'), 'The%20Man.mp3');
  assert.equal(
    pathEscape('Taylor Swift - Untouchable (Taylor’s Version).mp3'),
    'Taylor%20Swift%20-%20Untouchable%20%28Taylor%E2%80%99s%20Version%29.mp3',
  );
  assert.equal(pathEscape("a!b'c*d"), 'a%21b%27c%2Ad');
  assert.equal(pathEscape('a/b?c#d'), 'a%2Fb%3Fc%23d');
  assert.equal(decodeURIComponent(pathEscape('遠野ひかる - LOVE 2000.mp3')), '遠野ひかる - LOVE 2000.mp3');
});
