import { test } from 'node:test';
import assert from 'node:assert/strict';
import { IdCodec } from '../../src/domain/ids.ts';

const codec = new IdCodec('example-salt');

test('hashids vectors of spec 8 (salt example-salt)', () => {
  assert.equal(codec.encode('user', 1), 'bPhN');
  assert.equal(codec.encode('task', 1), 'WBhb');
  assert.equal(codec.encode('task', 42), 'VXsN');
  assert.equal(codec.decode('user', 'bPhN'), 1);
  assert.equal(codec.decode('task', 'WBhb'), 1);
  assert.equal(codec.decode('task', 'VXsN'), 42);
});

test('decoding checks the type code and refuses garbage', () => {
  assert.equal(codec.decode('file', 'bPhN'), null, 'a user id is not a file id');
  assert.equal(codec.decode('entity', 'WBhb'), null);
  for (const bad of ['', 'x', '!!!!', 'bPhM', 'a'.repeat(65), 'bPhN ', '\u00e9\u00e9']) {
    assert.equal(codec.decode('user', bad), null, JSON.stringify(bad));
  }
  assert.equal(codec.decode('user', undefined as unknown as string), null);
});

test('round trip over kinds and ids, 0 included', () => {
  for (const kind of ['user', 'file', 'folder', 'group', 'entity', 'node', 'task'] as const) {
    for (const id of [0, 1, 2, 99, 123456, 2 ** 40]) {
      const s = codec.encode(kind, id);
      assert.match(s, /^[A-Za-z0-9]+$/);
      assert.equal(codec.decode(kind, s), id, `${kind} ${id}`);
    }
  }
});

test('a different salt gives different ids that do not decode', () => {
  const other = new IdCodec('another-salt');
  assert.notEqual(other.encode('user', 1), 'bPhN');
  assert.notEqual(other.decode('user', 'bPhN'), 1);
});
