import { test } from 'node:test';
import assert from 'node:assert/strict';
import { encodeBoolset, hasFlag, MY_FS_CAPABILITY } from '../../src/domain/boolset.ts';

const range = (a: number, b: number) => Array.from({ length: b - a + 1 }, (_, i) => a + i);

test('boolset encodes the spec 7.2 vectors', () => {
  assert.equal(encodeBoolset([0, ...range(2, 16)]), '/f8B');
  assert.equal(encodeBoolset([3]), 'CA==');
  assert.equal(encodeBoolset([1, 2, 3, 4]), 'Hg==');
  assert.equal(encodeBoolset([]), '');
  // Order and duplicates do not matter.
  assert.equal(encodeBoolset([16, 0, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 2]), '/f8B');
});

test('boolset decodes flags, bits past the end are false', () => {
  const flags = [0, ...range(2, 16)];
  for (let n = 0; n < 40; n++) assert.equal(hasFlag('/f8B', n), flags.includes(n), `flag ${n}`);
  assert.equal(hasFlag('CA==', 3), true);
  assert.equal(hasFlag('CA==', 2), false);
  assert.equal(hasFlag('', 0), false);
  assert.equal(hasFlag('CA==', 8), false);
});

test('the "my" filesystem capability has download (7), list (9), delete (14) and upload (6)', () => {
  for (const bit of [0, 1, 6, 7, 9, 14]) assert.equal(hasFlag(MY_FS_CAPABILITY, bit), true, `bit ${bit}`);
});
