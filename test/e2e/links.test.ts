// Signed download URLs over real HTTP (spec 5): POST /file/url, blob content with ranges and
// validators, signature checks, expiry, and archive zips unpacked with the real `unzip`.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { startServer, uploadFile, waitFor, type TestServer } from '../helpers/server.ts';

interface UrlData {
  urls: Array<{ url: string; stream_saver_display_name?: string }>;
  expires: string;
}
interface FileDto {
  name: string;
  type: number;
  primary_entity: string;
}

const run = promisify(execFile);
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

let server: TestServer;
let token: string;
const MP3 = randomBytes(200_000);
const TEXT = Buffer.from('0123456789abcdefghijklmnopqrstuvwxyz');
const UTF8_NAME = '遠野ひかる - LOVE 2000 (Taylor’s Version).mp3';

before(async () => {
  server = await startServer();
  await server.addUser('links@example.com', 'links-password-1');
  token = (await server.signIn('links@example.com', 'links-password-1')).access;
  await uploadFile(server, token, 'cloudreve://my/The%20Man.mp3', MP3);
  await uploadFile(server, token, 'cloudreve://my/range.txt', TEXT);
  await uploadFile(
    server,
    token,
    `cloudreve://my/${encodeURIComponent(UTF8_NAME)}`,
    Buffer.from('utf8 name'),
  );
  await server.api('POST', '/file/create', { token, body: { uri: 'cloudreve://my/Folder', type: 'folder' } });
});
after(async () => {
  await server?.stop();
});

function urls(body: Record<string, unknown>, as = token) {
  return server.api<UrlData>('POST', '/file/url', { token: as, body });
}

async function oneUrl(uri: string, extra: Record<string, unknown> = {}): Promise<string> {
  const r = await urls({ uris: [uri], ...extra });
  assert.equal(r.body.code, 0, JSON.stringify(r.body));
  return r.body.data!.urls[0]!.url;
}

async function entityOf(name: string, folder = 'cloudreve://my'): Promise<string> {
  const r = await server.api<{ files: FileDto[] }>('GET', `/file?uri=${encodeURIComponent(folder)}`, {
    token,
  });
  const file = r.body.data!.files.find((f) => f.name === name);
  assert.ok(file, name);
  return file.primary_entity;
}

async function json(res: Response): Promise<{ code: number; msg: string }> {
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /application\/json/);
  return (await res.json()) as { code: number; msg: string };
}

describe('POST /file/url', () => {
  test('one file: URL format of spec 5.2, expires about an hour ahead', async () => {
    const entity = await entityOf('The Man.mp3');
    const r = await urls({ uris: ['cloudreve://my/The%20Man.mp3'] });
    assert.equal(r.status, 200);
    assert.equal(r.body.code, 0, JSON.stringify(r.body));
    assert.equal(r.body.data!.urls.length, 1);
    const url = r.body.data!.urls[0]!.url;
    const m = new RegExp(
      `^${server.url.replaceAll('.', '\\.')}/api/v4/file/content/${entity}/0/The%20Man\\.mp3\\?sign=([A-Za-z0-9_-]{43}%3D)%3A(\\d+)$`,
    ).exec(url);
    assert.ok(m, url);
    const expires = Date.parse(r.body.data!.expires);
    assert.equal(Number(m[2]), expires / 1000);
    assert.ok(Math.abs(expires - (Date.now() + 3600_000)) < 5000, r.body.data!.expires);
    const res = await fetch(url);
    assert.equal(res.status, 200);
    assert.equal(sha(Buffer.from(await res.arrayBuffer())), sha(MP3));
  });

  test('many files: one URL per URI in order, expires is the earliest', async () => {
    // The first URL is cached with an earlier expiry than a fresh one made a second later.
    const first = await urls({ uris: ['cloudreve://my/range.txt'] });
    const firstExpires = Date.parse(first.body.data!.expires);
    await waitFor(async () => (Date.now() >= firstExpires - 3600_000 + 1100 ? true : undefined), 5000);
    // A file nobody asked a URL for yet gets a fresh (later) one.
    await uploadFile(server, token, 'cloudreve://my/later.txt', Buffer.from('later'));
    const r = await urls({ uris: ['cloudreve://my/later.txt', 'cloudreve://my/range.txt'], no_cache: false });
    assert.equal(r.body.code, 0);
    const [a, b] = r.body.data!.urls;
    assert.match(a!.url, /\/later\.txt\?/);
    assert.match(b!.url, /\/range\.txt\?/);
    assert.equal(b!.url, first.body.data!.urls[0]!.url, 'cached URL reused');
    const expiries = r.body.data!.urls.map((u) => Number(/%3A(\d+)$/.exec(u.url)![1]) * 1000);
    assert.ok(expiries[0]! > expiries[1]!, 'the fresh URL expires later');
    assert.equal(Date.parse(r.body.data!.expires), Math.min(...expiries));
    assert.equal(Date.parse(r.body.data!.expires), firstExpires);
  });

  test('no_cache gives a fresh URL; without it the same URL is reused', async () => {
    const cached = await oneUrl('cloudreve://my/range.txt');
    assert.equal(await oneUrl('cloudreve://my/range.txt'), cached);
    const fresh = await waitFor(async () => {
      const u = await oneUrl('cloudreve://my/range.txt', { no_cache: true });
      return u !== cached ? u : undefined;
    }, 5000);
    assert.notEqual(fresh, cached);
    assert.equal(await oneUrl('cloudreve://my/range.txt'), cached, 'no_cache does not replace the cache');
    for (const u of [cached, fresh])
      assert.equal(Buffer.from(await (await fetch(u)).arrayBuffer()).toString(), TEXT.toString());
  });

  test('download:true → attachment, UTF-8 names via filename*', async () => {
    const url = await oneUrl(`cloudreve://my/${encodeURIComponent(UTF8_NAME)}`, { download: true });
    assert.match(url, /\?download=true&sign=/);
    const res = await fetch(url);
    assert.equal(res.status, 200);
    const cd = res.headers.get('content-disposition') ?? '';
    assert.match(cd, /^attachment; filename="[\x20-\x7e]*"; filename\*=UTF-8''/);
    const star = /filename\*=UTF-8''([^;]+)/.exec(cd)![1]!;
    assert.equal(decodeURIComponent(star.replaceAll('+', ' ')), UTF8_NAME);
    assert.equal(await res.text(), 'utf8 name');
    const ascii = await fetch(await oneUrl('cloudreve://my/The%20Man.mp3', { download: true }));
    assert.equal(ascii.headers.get('content-disposition'), 'attachment; filename="The Man.mp3"');
    await ascii.arrayBuffer();
    // Without download there is no Content-Disposition; the query key is not signed.
    const plain = await oneUrl('cloudreve://my/The%20Man.mp3');
    const inline = await fetch(plain);
    assert.equal(inline.headers.get('content-disposition'), null);
    await inline.arrayBuffer();
    const toggled = await fetch(plain.replace('?sign=', '?download=true&sign='));
    assert.equal(toggled.status, 200);
    assert.match(toggled.headers.get('content-disposition') ?? '', /^attachment/);
    await toggled.arrayBuffer();
  });

  test('redirect:true with one URI → 302; with two → JSON', async () => {
    const r = await urls({ uris: ['cloudreve://my/range.txt'], redirect: true });
    assert.equal(r.status, 302);
    const location = r.headers.get('location')!;
    assert.match(location, /\/api\/v4\/file\/content\/\w+\/0\/range\.txt\?sign=/);
    assert.equal(await (await fetch(location)).text(), TEXT.toString());
    const two = await urls({
      uris: ['cloudreve://my/range.txt', 'cloudreve://my/The%20Man.mp3'],
      redirect: true,
    });
    assert.equal(two.status, 200);
    assert.equal(two.body.code, 0);
    assert.equal(two.body.data!.urls.length, 2);
    const failing = await urls({ uris: ['cloudreve://my/none.txt'], redirect: true });
    assert.equal(failing.status, 200);
    assert.equal(failing.body.code, 40081);
  });

  test('entity: the right one works, a wrong one → 40077', async () => {
    const entity = await entityOf('range.txt');
    const url = await oneUrl('cloudreve://my/range.txt', { entity });
    assert.ok(url.includes(`/content/${entity}/`));
    assert.equal(await (await fetch(url)).text(), TEXT.toString());
    // A folder has no entity at all.
    assert.equal(await entityOf('Folder'), undefined);
    for (const wrong of [await entityOf('The Man.mp3'), 'garbage']) {
      const r = await urls({ uris: ['cloudreve://my/range.txt'], entity: wrong });
      assert.equal(r.body.code, 40081, JSON.stringify(r.body));
      assert.equal(r.body.aggregated_error!['cloudreve://my/range.txt']!.code, 40077);
    }
  });

  test('folders → 40077; skip_error gives partial results with code 0; without it → 40081', async () => {
    const uris = ['cloudreve://my/range.txt', 'cloudreve://my/Folder', 'cloudreve://my/missing.bin'];
    const strict = await urls({ uris });
    assert.equal(strict.body.code, 40081);
    assert.equal(strict.body.msg, 'One or more operation failed');
    assert.deepEqual(
      Object.fromEntries(Object.entries(strict.body.aggregated_error!).map(([k, v]) => [k, v.code])),
      { 'cloudreve://my/Folder': 40077, 'cloudreve://my/missing.bin': 40016 },
    );
    assert.match(strict.body.correlation_id ?? '', /^[0-9a-f-]{36}$/);
    assert.equal(strict.body.data, undefined);

    // Like Cloudreve: skip_error drops the errors, the failed slots are {url: ""}.
    const partial = await urls({ uris, skip_error: true });
    assert.equal(partial.body.code, 0);
    const data = partial.body.data!;
    assert.equal(data.urls.length, 3);
    assert.match(data.urls[0]!.url, /range\.txt\?sign=/);
    assert.deepEqual(data.urls[1], { url: '' });
    assert.deepEqual(data.urls[2], { url: '' });
    assert.ok(!Number.isNaN(Date.parse(data.expires)));
    assert.equal(partial.body.aggregated_error, undefined);
    assert.equal(await (await fetch(data.urls[0]!.url)).text(), TEXT.toString());
    const folderOnly = await urls({ uris: ['cloudreve://my/Folder'] });
    assert.equal(folderOnly.body.aggregated_error!['cloudreve://my/Folder']!.code, 40077);
  });

  test('validation: no URIs, too many, bad URIs, anonymous', async () => {
    assert.equal((await urls({ uris: [] })).body.code, 40001);
    assert.equal((await urls({})).body.code, 40001);
    const many = await urls({ uris: Array.from({ length: 3001 }, (_, i) => `cloudreve://my/${i}`) });
    assert.equal(many.body.code, 40074);
    const bad = await urls({ uris: ['nonsense'] });
    assert.equal(bad.body.code, 40081);
    assert.equal(bad.body.aggregated_error!.nonsense!.code, 40001);
    assert.equal((await urls({ uris: ['cloudreve://my/range.txt'] }, '')).body.code, 401);
    assert.equal((await urls({ uris: ['cloudreve://my/range.txt'], download: 'yes' })).body.code, 40001);
  });
});

describe('content', () => {
  let url: string;
  before(async () => {
    url = await oneUrl('cloudreve://my/range.txt');
  });

  test('GET and HEAD with validators and headers of spec 5.4', async () => {
    const entity = await entityOf('range.txt');
    const res = await fetch(url);
    assert.equal(res.status, 200);
    // Cloudreve's ETag is the entity id; Ferry's adds the blob's nonce, so an ETag never
    // matches another blob that later got the same id (issue 12).
    const etag = res.headers.get('etag')!;
    assert.match(etag, new RegExp(`^"${entity}\\.[0-9a-f]{32}"$`));
    assert.ok(!Number.isNaN(Date.parse(res.headers.get('last-modified')!)));
    assert.equal(res.headers.get('accept-ranges'), 'bytes');
    assert.equal(res.headers.get('content-length'), String(TEXT.length));
    assert.match(res.headers.get('content-type')!, /^text\/plain/);
    assert.match(res.headers.get('cache-control')!, /max-age=\d+/);
    assert.equal(res.headers.get('content-security-policy'), 'sandbox');
    assert.equal(await res.text(), TEXT.toString());

    const head = await fetch(url, { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(head.headers.get('content-length'), String(TEXT.length));
    assert.equal(head.headers.get('etag'), etag);
    assert.equal((await head.arrayBuffer()).byteLength, 0);
    const mp3 = await fetch(await oneUrl('cloudreve://my/The%20Man.mp3'), { method: 'HEAD' });
    assert.equal(mp3.headers.get('content-type'), 'audio/mpeg');
    assert.equal(mp3.headers.get('content-length'), String(MP3.length));
  });

  test('ranges: single → 206, multi → multipart/byteranges, unsatisfiable → 416', async () => {
    const single = await fetch(url, { headers: { range: 'bytes=10-19' } });
    assert.equal(single.status, 206);
    assert.equal(single.headers.get('content-range'), `bytes 10-19/${TEXT.length}`);
    assert.equal(single.headers.get('content-length'), '10');
    assert.equal(await single.text(), 'abcdefghij');
    const suffix = await fetch(url, { headers: { range: 'bytes=-3' } });
    assert.equal(suffix.status, 206);
    assert.equal(await suffix.text(), 'xyz');

    const multi = await fetch(url, { headers: { range: 'bytes=0-1,30-35' } });
    assert.equal(multi.status, 206);
    const type = multi.headers.get('content-type')!;
    const boundary = /^multipart\/byteranges; boundary=(\S+)$/.exec(type)?.[1];
    assert.ok(boundary, type);
    const body = await multi.text();
    assert.equal(Buffer.byteLength(body), Number(multi.headers.get('content-length')));
    assert.match(
      body,
      new RegExp(
        `--${boundary}\\r\\nContent-Type: text/plain[^\\r]*\\r\\nContent-Range: bytes 0-1/36\\r\\n\\r\\n01\\r\\n`,
      ),
    );
    assert.match(body, new RegExp(`Content-Range: bytes 30-35/36\\r\\n\\r\\nuvwxyz\\r\\n--${boundary}--`));

    const bad = await fetch(url, { headers: { range: 'bytes=100-200' } });
    assert.equal(bad.status, 416);
    assert.equal(bad.headers.get('content-range'), `bytes */${TEXT.length}`);
    await bad.arrayBuffer();

    // Big file: a range from the middle is byte-exact.
    const big = await fetch(await oneUrl('cloudreve://my/The%20Man.mp3'), {
      headers: { range: 'bytes=100000-149999' },
    });
    assert.equal(big.status, 206);
    assert.equal(sha(Buffer.from(await big.arrayBuffer())), sha(MP3.subarray(100000, 150000)));
  });

  test('conditional requests: If-None-Match → 304, If-Match mismatch → 412, If-Range mismatch → 200', async () => {
    const etag = (await fetch(url, { method: 'HEAD' })).headers.get('etag')!;
    const notModified = await fetch(url, { headers: { 'if-none-match': etag } });
    assert.equal(notModified.status, 304);
    assert.equal(notModified.headers.get('etag'), etag);
    const changed = await fetch(url, { headers: { 'if-none-match': '"other"' } });
    assert.equal(changed.status, 200);
    await changed.arrayBuffer();
    const failed = await fetch(url, { headers: { 'if-match': '"other"' } });
    assert.equal(failed.status, 412);
    await failed.arrayBuffer();
    const ifRange = await fetch(url, { headers: { range: 'bytes=0-1', 'if-range': '"other"' } });
    assert.equal(ifRange.status, 200);
    assert.equal(await ifRange.text(), TEXT.toString());
    const ifRangeOk = await fetch(url, { headers: { range: 'bytes=0-1', 'if-range': etag } });
    assert.equal(ifRangeOk.status, 206);
    await ifRangeOk.arrayBuffer();
  });

  test('CORS: any origin, OPTIONS preflight → 204', async () => {
    const res = await fetch(url, { headers: { origin: 'https://elsewhere.example' } });
    assert.equal(res.headers.get('access-control-allow-origin'), '*');
    assert.match(res.headers.get('access-control-expose-headers') ?? '', /Content-Range/i);
    await res.arrayBuffer();
    const pre = await fetch(url, {
      method: 'OPTIONS',
      headers: {
        origin: 'https://elsewhere.example',
        'access-control-request-method': 'GET',
        'access-control-request-headers': 'range',
      },
    });
    assert.equal(pre.status, 204);
    assert.equal(pre.headers.get('access-control-allow-origin'), '*');
    assert.match(pre.headers.get('access-control-allow-methods') ?? '', /GET/);
    assert.match(pre.headers.get('access-control-allow-headers') ?? '', /range/i);
    // Errors from the signature check are readable cross-origin too.
    const refused = await fetch(url.replace(/sign=./, 'sign=Z'), {
      headers: { origin: 'https://x.example' },
    });
    assert.equal(refused.headers.get('access-control-allow-origin'), '*');
    await refused.arrayBuffer();
  });

  test('tampering is refused with the codes of spec 5.3', async () => {
    const u = new URL(url);
    const sign = u.searchParams.get('sign')!;
    const [mac, expires] = sign.split(':') as [string, string];
    const withSign = (s: string | null, path = u.pathname) => {
      const copy = new URL(u);
      copy.pathname = path;
      if (s === null) copy.searchParams.delete('sign');
      else copy.searchParams.set('sign', s);
      return copy.toString();
    };
    const otherEntity = await entityOf('The Man.mp3');
    const flipped = (mac[0] === 'A' ? 'B' : 'A') + mac.slice(1);
    const cases: Array<[string, string, number, string?]> = [
      ['flipped mac', withSign(`${flipped}:${expires}`), 40071, 'invalid sign'],
      ['altered name', withSign(sign, u.pathname.replace('range.txt', 'range2.txt')), 40071],
      ['altered speed', withSign(sign, u.pathname.replace('/0/', '/1/')), 40071],
      [
        'other entity',
        withSign(sign, u.pathname.replace(/content\/[^/]+\//, `content/${otherEntity}/`)),
        40071,
      ],
      ['later expiry', withSign(`${mac}:${Number(expires) + 1000}`), 40071],
      ['expiry 0', withSign(`${mac}:0`), 40071],
      ['past expiry', withSign(`${mac}:${Math.floor(Date.now() / 1000) - 10}`), 40005, 'signature expired'],
      ['expiry not a number', withSign(`${mac}:soon`), 40071, 'sign expired'],
      ['no expiry', withSign(`${mac}:`), 403, 'expire timestamp is missing'],
      ['no sign', withSign(null), 403, 'expire timestamp is missing'],
      ['empty sign', withSign(''), 403],
      ['garbage', withSign('garbage'), 403],
    ];
    for (const [what, target, code, msg] of cases) {
      const res = await fetch(target);
      const body = await json(res);
      assert.equal(body.code, code, `${what}: ${JSON.stringify(body)}`);
      if (msg) assert.equal(body.msg, msg, what);
    }
    const twice = await fetch(`${url}&sign=${encodeURIComponent(sign)}`);
    assert.notEqual((await json(twice)).code, 0);
    // The untouched URL still works.
    assert.equal((await fetch(url)).status, 200);
  });

  test('a deleted file’s URL stops working; bytes missing on disk → 404 text/plain', async () => {
    await uploadFile(server, token, 'cloudreve://my/gone.txt', Buffer.from('gone'));
    const gone = await oneUrl('cloudreve://my/gone.txt');
    assert.equal(await (await fetch(gone)).text(), 'gone');
    await server.api('DELETE', '/file', { token, body: { uris: ['cloudreve://my/gone.txt'] } });
    const res = await fetch(gone);
    assert.equal(res.status, 404);
    assert.match(res.headers.get('content-type') ?? '', /^text\/plain/);
    assert.equal(await res.text(), 'Entity data does not exist.');

    await uploadFile(server, token, 'cloudreve://my/lost.txt', Buffer.from('lost'));
    const lost = await oneUrl('cloudreve://my/lost.txt');
    const rows = await server.sql<{ storage_key: string }>(
      'SELECT b.storage_key FROM blobs b JOIN files f ON f.blob_id = b.id WHERE f.name = ?',
      ['lost.txt'],
    );
    await rm(join(server.dataDir, 'blobs', rows[0]!.storage_key));
    const missing = await fetch(lost);
    assert.equal(missing.status, 404, await missing.clone().text());
    assert.equal(await missing.text(), 'Entity data does not exist.');
    const missingHead = await fetch(lost, { method: 'HEAD' });
    assert.ok(missingHead.status === 404 || missingHead.status === 200);
  });

  test('empty files have a URL too', async () => {
    await server.api('POST', '/file/create', {
      token,
      body: { uri: 'cloudreve://my/empty.txt', type: 'file' },
    });
    const res = await fetch(await oneUrl('cloudreve://my/empty.txt'));
    assert.equal(res.status, 200);
    // Its own primary_entity is accepted as `entity` too.
    const byEntity = await oneUrl('cloudreve://my/empty.txt', { entity: await entityOf('empty.txt') });
    assert.equal((await fetch(byEntity)).headers.get('content-length'), '0');
    assert.equal(res.headers.get('content-length'), '0');
    assert.equal((await res.arrayBuffer()).byteLength, 0);
  });
});

describe('archive', () => {
  test('one URL streams a zip of files and folders (recursively, UTF-8 names), unpacked by unzip', async () => {
    const files: Record<string, Buffer> = {
      'Album/01 - 新建.mp3': randomBytes(300_000),
      'Album/Disc 2/02 - Ünïcödé ✓.flac': randomBytes(70_000),
      'Album/Disc 2/deeper/notes.txt': Buffer.from('liner notes\n'),
      'Album/empty.txt': Buffer.alloc(0),
      'loose file.bin': randomBytes(12_345),
    };
    for (const [path, content] of Object.entries(files)) {
      await uploadFile(
        server,
        token,
        `cloudreve://my/zip/${path.split('/').map(encodeURIComponent).join('/')}`,
        content,
      );
    }
    await server.api('POST', '/file/create', {
      token,
      body: { uri: 'cloudreve://my/zip/Album/Empty Folder', type: 'folder' },
    });
    const r = await urls({
      uris: ['cloudreve://my/zip/Album', 'cloudreve://my/zip/loose%20file.bin'],
      archive: true,
    });
    assert.equal(r.body.code, 0, JSON.stringify(r.body));
    assert.equal(r.body.data!.urls.length, 1);
    const url = r.body.data!.urls[0]!.url;
    assert.match(url, /\/api\/v4\/file\/archive\/[0-9a-f-]{36}\/archive\.zip\?sign=[\w-]{43}%3D%3A\d+$/);
    const res = await fetch(url);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'application/zip');
    assert.match(res.headers.get('content-disposition') ?? '', /^attachment/);
    const zip = Buffer.from(await res.arrayBuffer());
    assert.equal(Number(res.headers.get('content-length')), zip.length);

    const dir = await mkdtemp(join(tmpdir(), 'ferry-unzip-'));
    try {
      await writeFile(join(dir, 'a.zip'), zip);
      await run('/usr/bin/unzip', ['-q', join(dir, 'a.zip'), '-d', join(dir, 'out')]);
      for (const [path, content] of Object.entries(files)) {
        const got = await readFile(join(dir, 'out', path));
        assert.equal(sha(got), sha(content), path);
      }
      assert.ok((await stat(join(dir, 'out', 'Album', 'Empty Folder'))).isDirectory());
      const all = (await readdir(join(dir, 'out'), { recursive: true, withFileTypes: true }))
        .filter((e) => e.isFile())
        .map((e) => join(e.parentPath, e.name).slice(join(dir, 'out').length + 1))
        .sort();
      assert.deepEqual(all, Object.keys(files).sort());
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
    // The URL can be used again until it expires; HEAD gives the same length.
    const head = await fetch(url, { method: 'HEAD' });
    assert.equal(Number(head.headers.get('content-length')), zip.length);
    await head.arrayBuffer();
    const again = await fetch(url);
    assert.equal(sha(Buffer.from(await again.arrayBuffer())), sha(zip));
  });

  test('archive sign checks, unknown session, missing items', async () => {
    const r = await urls({ uris: ['cloudreve://my/range.txt'], archive: true });
    const url = new URL(r.body.data!.urls[0]!.url);
    const tampered = new URL(url);
    tampered.pathname = tampered.pathname.replace(
      /archive\/[0-9a-f]/,
      (s) => s.slice(0, -1) + (s.endsWith('0') ? '1' : '0'),
    );
    assert.equal((await json(await fetch(tampered))).code, 40071);
    const unsigned = new URL(url);
    unsigned.search = '';
    assert.equal((await json(await fetch(unsigned))).code, 403);

    const missing = await urls({ uris: ['cloudreve://my/range.txt', 'cloudreve://my/nope'], archive: true });
    assert.equal(missing.body.code, 40081);
    assert.equal(missing.body.aggregated_error!['cloudreve://my/nope']!.code, 40016);
  });
});

describe('site URL and expiry (second server)', () => {
  let second: TestServer;
  let t2: string;
  before(async () => {
    second = await startServer({ args: ['--site-url', 'https://files.example.test/', '--link-ttl', '1'] });
    t2 = (await second.signIn()).access;
    await uploadFile(second, t2, 'cloudreve://my/a.txt', Buffer.from('aaa'));
  });
  after(async () => {
    await second?.stop();
  });

  test('use_primary_site_url builds URLs on the configured site URL', async () => {
    const r = await second.api<UrlData>('POST', '/file/url', {
      token: t2,
      body: { uris: ['cloudreve://my/a.txt'], use_primary_site_url: true },
    });
    assert.equal(r.body.code, 0, JSON.stringify(r.body));
    const u = new URL(r.body.data!.urls[0]!.url);
    assert.equal(u.protocol, 'https:');
    assert.equal(u.host, 'files.example.test');
    assert.match(u.pathname, /^\/api\/v4\/file\/content\//);
    // Without it, the URL follows the host the client used.
    const local = await second.api<UrlData>('POST', '/file/url', {
      token: t2,
      body: { uris: ['cloudreve://my/a.txt'] },
    });
    assert.equal(new URL(local.body.data!.urls[0]!.url).origin, second.url);
  });

  test('a request on the configured host gets the configured URL (scheme included)', async () => {
    const body = JSON.stringify({ uris: ['cloudreve://my/a.txt'] });
    const answer = await new Promise<string>((resolve, reject) => {
      const req = httpRequest(
        `${second.url}/api/v4/file/url`,
        {
          method: 'POST',
          headers: {
            host: 'files.example.test',
            authorization: `Bearer ${t2}`,
            'content-type': 'application/json',
            'content-length': Buffer.byteLength(body),
          },
        },
        (res) => {
          let text = '';
          res.on('data', (d: Buffer) => (text += d.toString()));
          res.on('end', () => resolve(text));
        },
      );
      req.on('error', reject);
      req.end(body);
    });
    const parsed = JSON.parse(answer) as { code: number; data: UrlData };
    assert.equal(parsed.code, 0, answer);
    assert.match(parsed.data.urls[0]!.url, /^https:\/\/files\.example\.test\/api\/v4\/file\/content\//);
  });

  test('an expired link is refused with 40005', async () => {
    const r = await second.api<UrlData>('POST', '/file/url', {
      token: t2,
      body: { uris: ['cloudreve://my/a.txt'] },
    });
    const url = r.body.data!.urls[0]!.url;
    const expiresAt = Date.parse(r.body.data!.expires);
    assert.ok(expiresAt - Date.now() <= 1000);
    const code = await waitFor(
      async () => {
        const res = await fetch(url);
        if (res.headers.get('content-type')?.startsWith('application/json')) {
          const body = (await res.json()) as { code: number };
          return body.code;
        }
        await res.arrayBuffer();
        return undefined;
      },
      5000,
      'link expiry',
    );
    assert.equal(code, 40005);
    assert.ok(Date.now() >= expiresAt);
  });
});
