import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AppError } from '../../src/domain/errors.ts';
import { formatFileUri, parseFileUri } from '../../src/domain/file-uri.ts';

test('parses the spec 3 examples', () => {
  assert.deepEqual(parseFileUri('cloudreve://my'), { fs: 'my', fsId: null, segments: [], search: null });
  assert.deepEqual(parseFileUri('cloudreve://my/'), { fs: 'my', fsId: null, segments: [], search: null });
  assert.deepEqual(parseFileUri('cloudreve://my/Downloads/Ubuntu%20ISO'), {
    fs: 'my',
    fsId: null,
    segments: ['Downloads', 'Ubuntu ISO'],
    search: null,
  });
  assert.deepEqual(parseFileUri('cloudreve://bPhN@my/x'), {
    fs: 'my',
    fsId: 'bPhN',
    segments: ['x'],
    search: null,
  });
  assert.deepEqual(parseFileUri('cloudreve://MY/a/'), {
    fs: 'my',
    fsId: null,
    segments: ['a'],
    search: null,
  });
});

test('cleans . and .., ignores a fragment, %2F is a separator', () => {
  assert.deepEqual(parseFileUri('cloudreve://my/a/./b/../c').segments, ['a', 'c']);
  assert.deepEqual(parseFileUri('cloudreve://my/../../x').segments, ['x']);
  assert.deepEqual(parseFileUri('cloudreve://my/a%2E%2E/b').segments, ['a..', 'b']);
  assert.deepEqual(parseFileUri('cloudreve://my/dir?name=report', true).segments, ['dir']);
  assert.deepEqual(parseFileUri('cloudreve://my/dir#frag').segments, ['dir']);
  assert.deepEqual(parseFileUri('cloudreve://my/a%2Fb').segments, ['a', 'b']);
  assert.deepEqual(parseFileUri('cloudreve://my/%E6%96%B0%E5%BB%BA').segments, ['新建']);
  assert.deepEqual(parseFileUri('cloudreve://my/a b').segments, ['a b']);
});

function code(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof AppError, String(e));
    return `${e.code}:${e.message}`;
  }
  return 'no error';
}

test('refuses what is not a cloudreve "my" URI', () => {
  assert.match(
    code(() => parseFileUri('')),
    /^PARAM_INVALID:Uri cannot be empty/,
  );
  assert.match(
    code(() => parseFileUri(undefined)),
    /^PARAM_INVALID/,
  );
  assert.match(
    code(() => parseFileUri(42)),
    /^PARAM_INVALID/,
  );
  assert.match(
    code(() => parseFileUri('http://my/a')),
    /^PARAM_INVALID:unknown uri/,
  );
  assert.match(
    code(() => parseFileUri('/my/a')),
    /^PARAM_INVALID:unknown uri/,
  );
  assert.match(
    code(() => parseFileUri('cloudreve://my/%zz')),
    /^PARAM_INVALID/,
  );
  assert.match(
    code(() => parseFileUri('cloudreve://my/a\u0001b')),
    /^PARAM_INVALID/,
  );
  assert.match(
    code(() => parseFileUri('cloudreve://my/%00')),
    /^PARAM_INVALID/,
  );
  assert.match(
    code(() => parseFileUri('cloudreve://trash')),
    /^FORBIDDEN/,
  );
  assert.match(
    code(() => parseFileUri('cloudreve://abc:pw@share/x')),
    /^FORBIDDEN/,
  );
  assert.match(
    code(() => parseFileUri('cloudreve://my/' + 'a'.repeat(9000))),
    /^PARAM_INVALID/,
  );
});

test('formats like encodeURIComponent with uppercase hex (spec 3)', () => {
  assert.equal(formatFileUri([]), 'cloudreve://my');
  assert.equal(formatFileUri(["Luke's AMA (1)@x"]), "cloudreve://my/Luke's%20AMA%20(1)%40x");
  assert.equal(formatFileUri(['新建']), 'cloudreve://my/%E6%96%B0%E5%BB%BA');
  assert.equal(formatFileUri(['Downloads', 'a#b?c%d']), 'cloudreve://my/Downloads/a%23b%3Fc%25d');
});

test('format then parse is the identity on awkward names', () => {
  const names = ['a b', '100%', 'x?y', 'h#sh', 'd:e', 'é', '🙂.txt', "it's (1)", '+plus', '~tilde', 'a..b'];
  for (const n of names) assert.deepEqual(parseFileUri(formatFileUri(['dir', n])).segments, ['dir', n], n);
});

test('a search query is returned where allowed and refused elsewhere', () => {
  const parsed = parseFileUri('cloudreve://my/dir?name=a&name=b&case_folding', true);
  assert.deepEqual(parsed.search?.getAll('name'), ['a', 'b']);
  assert.equal(parsed.search?.has('case_folding'), true);
  assert.equal(parseFileUri('cloudreve://my/dir?', true).search, null);
  assert.match(
    code(() => parseFileUri('cloudreve://my/dir?name=report')),
    /^PARAM_INVALID:Search URIs are only supported when listing files/,
  );
});
