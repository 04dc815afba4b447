import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AppError } from '../../src/domain/errors.ts';
import { EMPTY_ENTITY_BASE, primaryEntityId } from '../../src/domain/ids.ts';
import type { FileRow } from '../../src/services/files.service.ts';
import { matchesSearch, nameMatches, parseSearch } from '../../src/services/search.ts';

const file = (name: string, type = 0, size = 10): FileRow =>
  ({ id: 1, name, type, size, created_at: 5000, updated_at: 9000, blob_id: null }) as unknown as FileRow;

test('names match as Cloudreve matches them: substring, "quoted", * wildcard', () => {
  assert.ok(nameMatches('Note', 'My Note.txt', false));
  assert.ok(!nameMatches('note', 'My Note.txt', false));
  assert.ok(nameMatches('note', 'My Note.txt', true));
  assert.ok(nameMatches('"e.t"', 'Note.txt', false));
  assert.ok(nameMatches('*.png', 'a.png', false));
  assert.ok(!nameMatches('*.png', 'a.png.bak', false));
  assert.ok(nameMatches('*.PNG', 'a.png', true));
  // Neither starting nor ending with a wildcard: matched anywhere.
  assert.ok(nameMatches('a*c', 'xxabcxx', false));
  // Regular-expression characters are literal.
  assert.ok(!nameMatches('a.c*', 'abc', false));
  assert.ok(nameMatches('(1)', 'file (1).txt', false));
});

test('filters combine: all names (or any with name_op_or), category, type, size and times', () => {
  const q = (s: string) => parseSearch(new URLSearchParams(s));
  assert.ok(matchesSearch(q('name=My&name=Note'), file('My Note.txt')));
  assert.ok(!matchesSearch(q('name=My&name=Other'), file('My Note.txt')));
  assert.ok(matchesSearch(q('name=My&name=Other&name_op_or'), file('My Note.txt')));
  assert.ok(matchesSearch(q('name=Other&name=Note&use_or'), file('My Note.txt')));
  assert.ok(matchesSearch(q('category=image'), file('a.JPG')));
  assert.ok(!matchesSearch(q('category=image'), file('a.jpg', 1)));
  assert.ok(!matchesSearch(q('category=video'), file('a.jpg')));
  assert.ok(matchesSearch(q('type=folder'), file('d', 1)));
  assert.ok(!matchesSearch(q('type=file'), file('d', 1)));
  assert.ok(matchesSearch(q('size_gte=10&size_lte=10'), file('a')));
  assert.ok(!matchesSearch(q('size_gte=11'), file('a')));
  assert.ok(matchesSearch(q('created_gte=5&updated_lte=9'), file('a')));
  assert.ok(!matchesSearch(q('updated_gte=10'), file('a')));
});

test('unsupported search parameters are refused, not ignored', () => {
  for (const bad of [
    'meta_tag=x',
    'exact_meta_a=b',
    'category=spaceships',
    'type=link',
    'size_gte=abc',
    'sort=x',
  ]) {
    assert.throws(
      () => parseSearch(new URLSearchParams(bad)),
      (e: unknown) => e instanceof AppError && e.code === 'PARAM_INVALID',
      bad,
    );
  }
});

test('primary entity: the blob, a distinct id per empty file, none for folders', () => {
  assert.equal(primaryEntityId({ type: 0, id: 7, blob_id: 42 }), 42);
  assert.equal(primaryEntityId({ type: 0, id: 7, blob_id: null }), EMPTY_ENTITY_BASE + 7);
  assert.notEqual(
    primaryEntityId({ type: 0, id: 7, blob_id: null }),
    primaryEntityId({ type: 0, id: 8, blob_id: null }),
  );
  assert.equal(primaryEntityId({ type: 1, id: 7, blob_id: null }), null);
});
