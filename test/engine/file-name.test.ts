import { test } from 'node:test';
import assert from 'node:assert/strict';
import { sanitizeFileName } from '../../src/domain/file-name.ts';
import { deriveFileName, parseContentDisposition } from '../../src/downloaders/http/file-name.ts';

test('sanitizeFileName table', () => {
  const cases: [string, string][] = [
    ['report.pdf', 'report.pdf'],
    ['a/b\\c.txt', 'a_b_c.txt'],
    ['../../etc/passwd', '_.._etc_passwd'],
    ['..', 'download'],
    ['.', 'download'],
    ['...', 'download'],
    ['', 'download'],
    ['   ', 'download'],
    ['  name.txt. . ', 'name.txt'],
    ['.hidden', 'hidden'],
    ['nul\u0000byte\u0007.bin', 'nulbyte.bin'],
    ['line\nbreak.txt', 'linebreak.txt'],
    ['CON', 'CON_'],
    ['con.txt', 'con_.txt'],
    ['NUL.tar.gz', 'NUL_.tar.gz'],
    ['lpt1', 'lpt1_'],
    ['console.txt', 'console.txt'],
    ['what?.txt', 'what_.txt'],
    ['a:b*c"d<e>f|g', 'a_b_c_d_e_f_g'],
    ['naïve café.txt', 'naïve café.txt'],
    ['日本語.zip', '日本語.zip'],
  ];
  for (const [input, expected] of cases)
    assert.equal(sanitizeFileName(input), expected, JSON.stringify(input));
});

test('sanitizeFileName caps at 255 UTF-8 bytes and keeps the extension', () => {
  const long = `${'é'.repeat(300)}.tar`;
  const s = sanitizeFileName(long);
  assert.ok(Buffer.byteLength(s) <= 255);
  assert.ok(s.endsWith('.tar'));
  assert.ok(!s.includes('\ufffd'));
  const noExt = 'x'.repeat(400);
  assert.equal(sanitizeFileName(noExt).length, 255);
});

test('parseContentDisposition', () => {
  assert.equal(parseContentDisposition('attachment; filename="a b.txt"'), 'a b.txt');
  assert.equal(parseContentDisposition('attachment; filename=plain.bin'), 'plain.bin');
  assert.equal(
    parseContentDisposition(`attachment; filename*=UTF-8''na%C3%AFve%20%E2%82%AC.txt`),
    'naïve €.txt',
  );
  assert.equal(
    parseContentDisposition(`attachment; filename="fallback.txt"; filename*=utf-8''r%C3%A9sum%C3%A9.pdf`),
    'résumé.pdf',
  );
  assert.equal(parseContentDisposition(`attachment; filename*=iso-8859-1'en'%A3rates.txt`), '£rates.txt');
  assert.equal(parseContentDisposition('attachment; filename="semi;colon.txt"'), 'semi;colon.txt');
  assert.equal(parseContentDisposition('attachment; filename="esc\\"aped.txt"'), 'esc"aped.txt');
  // raw UTF-8 bytes arrive latin1-decoded
  assert.equal(
    parseContentDisposition(`attachment; filename="${Buffer.from('ü.txt').toString('latin1')}"`),
    'ü.txt',
  );
  assert.equal(parseContentDisposition('inline'), null);
  assert.equal(parseContentDisposition(undefined), null);
});

test('deriveFileName precedence and sanitisation', () => {
  const url = new URL('https://example.com/files/my%20file%2Bv2.iso?sig=1');
  assert.equal(deriveFileName({ url }), 'my file+v2.iso');
  assert.equal(deriveFileName({ url, contentDisposition: 'attachment; filename="cd.bin"' }), 'cd.bin');
  assert.equal(
    deriveFileName({ url, filename: 'mine.iso', contentDisposition: 'attachment; filename="cd.bin"' }),
    'mine.iso',
  );
  assert.equal(
    deriveFileName({ url, contentDisposition: 'attachment; filename="../../x/evil.sh"' }),
    '_.._x_evil.sh',
  );
  assert.equal(deriveFileName({ url: new URL('https://example.com/') }), 'download');
  assert.equal(deriveFileName({ url: new URL('https://example.com/dir/') }), 'dir');
  assert.equal(deriveFileName({ url: new URL('https://example.com/%2e%2e') }), 'download');
  assert.equal(deriveFileName({ url: new URL('https://example.com/bad%E0%A4%A') }), 'bad%E0%A4%A');
});
