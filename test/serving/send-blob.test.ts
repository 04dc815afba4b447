// sendBlob over real HTTP on 127.0.0.1: full/HEAD, every Range form, conditionals,
// Content-Disposition with hostile names, empty and > 4 GiB blobs, client aborts, throttling.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { connect } from 'node:net';
import { once } from 'node:events';
import { promisify } from 'node:util';
import { writeFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import Fastify, { type FastifyInstance } from 'fastify';
import { LocalDiskDriver } from '../../src/storage/local.driver.ts';
import { contentDisposition, parseRangeHeader, sendBlob, type BlobToSend } from '../../src/http/send-blob.ts';
import { contentTypeFor } from '../../src/http/mime.ts';
import { listen, parseMultipart, random, synthetic, tempDir } from './helpers.ts';

const execFileAsync = promisify(execFile);

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;

describe('sendBlob over HTTP', { timeout: 60_000 }, () => {
  let app: FastifyInstance;
  let base: string;
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let driver: LocalDiskDriver;
  const data = random(3 * MiB + 123);
  const big = random(32 * MiB);
  const oneMiB = random(MiB);
  let opens = 0;
  const opened: Readable[] = [];
  /** Positional readers handed out (?reader=1), and whether each was closed. */
  const readers: Array<{ closed: boolean; reads: number }> = [];

  const etagOf = (size: number, mtime: Date) => `"${size.toString(16)}-${mtime.getTime().toString(16)}"`;

  before(async () => {
    dir = await tempDir('send');
    driver = new LocalDiskDriver(dir.path);
    await mkdir(join(dir.path, 'b'), { recursive: true });
    await writeFile(join(dir.path, 'b', 'data'), data);
    await writeFile(join(dir.path, 'b', 'big'), big);
    await writeFile(join(dir.path, 'b', 'mib'), oneMiB);
    await writeFile(join(dir.path, 'b', 'empty'), '');

    // After a client abort, an earlier keep-alive socket can keep app.close() waiting for
    // fastify's 72 s keepAliveTimeout; tests do not need graceful connection draining.
    app = Fastify({ forceCloseConnections: true });
    const blobFor = async (key: string, query: Record<string, string | undefined>): Promise<BlobToSend> => {
      if (key === 'huge') {
        // 5 GiB + 7 that exists only as a generator: byte i is i % 251.
        const size = 5 * GiB + 7;
        return {
          size,
          modifiedAt: new Date('2024-01-02T03:04:05Z'),
          etag: '"huge"',
          fileName: 'huge.iso',
          open: async (range) => {
            opens++;
            const start = range?.start ?? 0;
            const end = range?.end ?? size - 1;
            return synthetic(end - start + 1, start);
          },
        };
      }
      const info = await driver.stat(`b/${key}`);
      return {
        size: info.size,
        modifiedAt: info.modifiedAt,
        etag:
          query.weak === '1' ? `W/${etagOf(info.size, info.modifiedAt)}` : etagOf(info.size, info.modifiedAt),
        fileName: query.name ?? 'video.mp4',
        ...(query.disposition ? { disposition: query.disposition as BlobToSend['disposition'] } : {}),
        ...(query.cache ? { cacheControl: query.cache } : {}),
        ...(query.speed ? { speedLimit: Number(query.speed) } : {}),
        ...(query.type ? { contentType: query.type } : {}),
        open: async (range) => {
          opens++;
          const stream = await driver.read(`b/${key}`, range);
          opened.push(stream);
          return stream;
        },
        ...(query.reader === '1'
          ? {
              openReader: async () => {
                const inner = await driver.openReader(`b/${key}`);
                const seen = { closed: false, reads: 0 };
                readers.push(seen);
                return {
                  read: (buffer: Buffer, length: number, position: number) => {
                    seen.reads++;
                    return inner.read(buffer, length, position);
                  },
                  close: async () => {
                    seen.closed = true;
                    await inner.close();
                  },
                };
              },
            }
          : {}),
        // ?claim=N: the database says N bytes, the file holds fewer (a truncated blob).
        ...(query.claim ? { size: Number(query.claim) } : {}),
      };
    };
    type Req = { Params: { key: string }; Querystring: Record<string, string | undefined> };
    app.get<Req>('/blob/:key', async (request, reply) =>
      sendBlob(request, reply, await blobFor(request.params.key, request.query)),
    );
    app.route<Req>({
      method: ['GET', 'HEAD'],
      url: '/explicit/:key',
      handler: async (request, reply) =>
        sendBlob(request, reply, await blobFor(request.params.key, request.query)),
    });
    app.get('/ping', async () => 'pong');
    base = await listen(app);
  });

  after(async () => {
    await app.close();
    await dir[Symbol.asyncDispose]();
  });

  const get = (path: string, headers: Record<string, string> = {}, method = 'GET') =>
    fetch(base + path, { method, headers });

  test('full GET: bytes and headers', async () => {
    const res = await get('/blob/data');
    assert.equal(res.status, 200);
    const body = Buffer.from(await res.arrayBuffer());
    assert.ok(body.equals(data));
    const info = await driver.stat('b/data');
    assert.equal(res.headers.get('accept-ranges'), 'bytes');
    assert.equal(res.headers.get('content-length'), String(data.length));
    assert.equal(res.headers.get('etag'), etagOf(info.size, info.modifiedAt));
    assert.equal(res.headers.get('last-modified'), info.modifiedAt.toUTCString());
    assert.equal(res.headers.get('content-type'), 'video/mp4');
    assert.equal(res.headers.get('x-content-type-options'), 'nosniff');
    assert.equal(res.headers.get('content-disposition'), 'attachment; filename="video.mp4"');
    assert.equal(res.headers.get('cache-control'), null);
  });

  test('options: inline, none, cache-control, explicit content type (control chars dropped)', async () => {
    let res = await get('/blob/data?disposition=inline&cache=private%2C%20max-age%3D60&name=a.pdf');
    await res.arrayBuffer();
    assert.equal(res.headers.get('content-disposition'), 'inline; filename="a.pdf"');
    assert.equal(res.headers.get('content-type'), 'application/pdf');
    assert.equal(res.headers.get('cache-control'), 'private, max-age=60');
    res = await get('/blob/data?disposition=none&type=text%2Fx-custom%0D%0AX-Evil%3A%201');
    await res.arrayBuffer();
    assert.equal(res.headers.get('content-disposition'), null);
    assert.equal(res.headers.get('content-type'), 'text/x-customX-Evil: 1');
    assert.equal(res.headers.get('x-evil'), null);
  });

  for (const route of ['/blob', '/explicit']) {
    test(`HEAD (${route === '/blob' ? 'automatic' : 'explicit'} route): headers only, blob never opened`, async () => {
      const before = opens;
      const res = await get(`${route}/data`, {}, 'HEAD');
      assert.equal(res.status, 200);
      assert.equal(res.headers.get('content-length'), String(data.length));
      assert.equal(res.headers.get('accept-ranges'), 'bytes');
      assert.equal(res.headers.get('content-type'), 'video/mp4');
      assert.equal((await res.arrayBuffer()).byteLength, 0);
      const ranged = await get(`${route}/data`, { range: 'bytes=10-19' }, 'HEAD');
      assert.equal(ranged.status, 206);
      assert.equal(ranged.headers.get('content-length'), '10');
      assert.equal(ranged.headers.get('content-range'), `bytes 10-19/${data.length}`);
      const multi = await get(`${route}/data`, { range: 'bytes=0-0,5-5' }, 'HEAD');
      assert.equal(multi.status, 206);
      assert.match(multi.headers.get('content-type') ?? '', /^multipart\/byteranges; boundary=/);
      assert.equal(opens, before);
    });
  }

  test('HEAD with curl shows the real Content-Length', async () => {
    const { stdout } = await execFileAsync('curl', ['-sS', '-I', `${base}/blob/data`]);
    assert.match(stdout, /^HTTP\/1\.1 200/);
    assert.match(stdout, new RegExp(`content-length: ${data.length}\\r?\\n`, 'i'));
  });

  test('single ranges: a-b, a-, -n, end past EOF, spaces and case', async () => {
    const size = data.length;
    const cases: [string, number, number][] = [
      ['bytes=0-99', 0, 99],
      ['bytes=100-', 100, size - 1],
      ['bytes=-500', size - 500, size - 1],
      ['bytes=-99999999', 0, size - 1],
      [`bytes=${size - 10}-99999999999`, size - 10, size - 1],
      ['Bytes= 7-7 ', 7, 7],
      ['bytes=,5-9,', 5, 9],
    ];
    for (const [range, start, end] of cases) {
      const res = await get('/blob/data', { range });
      assert.equal(res.status, 206, range);
      assert.equal(res.headers.get('content-range'), `bytes ${start}-${end}/${size}`, range);
      assert.equal(res.headers.get('content-length'), String(end - start + 1), range);
      assert.equal(res.headers.get('content-type'), 'video/mp4');
      const body = Buffer.from(await res.arrayBuffer());
      assert.ok(body.equals(data.subarray(start, end + 1)), range);
    }
  });

  test('single range with curl -r', async () => {
    const { stdout } = await execFileAsync('curl', ['-sS', '-r', '1000-1999', `${base}/blob/data`], {
      encoding: 'buffer',
    });
    assert.ok(stdout.equals(data.subarray(1000, 2000)));
  });

  test('several ranges: multipart/byteranges with exact Content-Length and per-part headers', async () => {
    const size = data.length;
    const res = await get('/blob/data', { range: 'bytes=0-9, 50-59, -5' });
    assert.equal(res.status, 206);
    const type = res.headers.get('content-type') ?? '';
    const boundary = /^multipart\/byteranges; boundary=(\S+)$/.exec(type)?.[1];
    assert.ok(boundary, type);
    const body = Buffer.from(await res.arrayBuffer());
    assert.equal(res.headers.get('content-length'), String(body.length));
    const parts = parseMultipart(body, boundary);
    const expected: [number, number][] = [
      [0, 9],
      [50, 59],
      [size - 5, size - 1],
    ];
    assert.equal(parts.length, expected.length);
    for (const [i, [start, end]] of expected.entries()) {
      const part = parts[i];
      assert.ok(part);
      assert.equal(part.headers['content-type'], 'video/mp4');
      assert.equal(part.headers['content-range'], `bytes ${start}-${end}/${size}`);
      assert.ok(part.data.equals(data.subarray(start, end + 1)));
    }
  });

  test('overlapping and adjacent ranges are coalesced', async () => {
    const size = data.length;
    let res = await get('/blob/data', { range: 'bytes=100-109,0-9,5-14' });
    const boundary = /boundary=(\S+)/.exec(res.headers.get('content-type') ?? '')?.[1];
    assert.ok(boundary);
    const parts = parseMultipart(Buffer.from(await res.arrayBuffer()), boundary);
    assert.deepEqual(
      parts.map((p) => p.headers['content-range']),
      [`bytes 0-14/${size}`, `bytes 100-109/${size}`],
    );
    res = await get('/blob/data', { range: 'bytes=0-9,10-19,0-0,-0' });
    assert.equal(res.status, 206);
    assert.equal(res.headers.get('content-range'), `bytes 0-19/${size}`);
    assert.ok(Buffer.from(await res.arrayBuffer()).equals(data.subarray(0, 20)));
    // An amplification attempt: the same range many times is one range.
    res = await get('/blob/data', { range: `bytes=${Array(500).fill('0-999').join(',')}` });
    assert.equal(res.status, 206);
    assert.equal(res.headers.get('content-length'), '1000');
    await res.arrayBuffer();
  });

  test('more than 20 disjoint ranges: ignored, full 200', async () => {
    const ranges = Array.from({ length: 25 }, (_, i) => `${i * 100}-${i * 100 + 9}`).join(',');
    const res = await get('/blob/data', { range: `bytes=${ranges}` });
    assert.equal(res.status, 200);
    assert.equal((await res.arrayBuffer()).byteLength, data.length);
  });

  test('unsatisfiable range: 416 with Content-Range: bytes */size', async () => {
    for (const range of [`bytes=${data.length}-`, 'bytes=99999999-99999999', 'bytes=-0']) {
      const res = await get('/blob/data', { range });
      assert.equal(res.status, 416, range);
      assert.equal(res.headers.get('content-range'), `bytes */${data.length}`);
      await res.arrayBuffer();
    }
  });

  test('malformed Range headers are ignored: full 200', async () => {
    for (const range of [
      'bytes=abc',
      'bytes=5-1',
      'items=0-1',
      'bytes=',
      'bytes=-',
      'bytes=1-2-3',
      '0-1',
      'bytes=0x10-',
    ]) {
      const res = await get('/blob/data', { range });
      assert.equal(res.status, 200, range);
      assert.equal((await res.arrayBuffer()).byteLength, data.length, range);
    }
  });

  test('If-None-Match (weak comparison) → 304 with validators; mismatch → 200', async () => {
    const info = await driver.stat('b/data');
    const etag = etagOf(info.size, info.modifiedAt);
    for (const inm of [etag, `W/${etag}`, `"nope", ${etag}`, '*']) {
      const res = await get('/blob/data', { 'if-none-match': inm });
      assert.equal(res.status, 304, inm);
      assert.equal(res.headers.get('etag'), etag);
      assert.equal(res.headers.get('last-modified'), info.modifiedAt.toUTCString());
      assert.equal((await res.arrayBuffer()).byteLength, 0);
    }
    const res = await get('/blob/data', { 'if-none-match': '"other"' });
    assert.equal(res.status, 200);
    await res.arrayBuffer();
    // HEAD follows the same rules.
    const head = await get('/blob/data', { 'if-none-match': etag }, 'HEAD');
    assert.equal(head.status, 304);
  });

  test('If-Modified-Since → 304 when not modified, ignored when If-None-Match is present', async () => {
    const info = await driver.stat('b/data');
    const lastModified = info.modifiedAt.toUTCString();
    let res = await get('/blob/data', { 'if-modified-since': lastModified });
    assert.equal(res.status, 304);
    res = await get('/blob/data', {
      'if-modified-since': new Date(info.modifiedAt.getTime() - 60_000).toUTCString(),
    });
    assert.equal(res.status, 200);
    await res.arrayBuffer();
    res = await get('/blob/data', { 'if-modified-since': lastModified, 'if-none-match': '"other"' });
    assert.equal(res.status, 200);
    await res.arrayBuffer();
    res = await get('/blob/data', { 'if-modified-since': 'garbage' });
    assert.equal(res.status, 200);
    await res.arrayBuffer();
  });

  test('If-Match / If-Unmodified-Since failures → 412', async () => {
    const info = await driver.stat('b/data');
    const etag = etagOf(info.size, info.modifiedAt);
    let res = await get('/blob/data', { 'if-match': '"other"' });
    assert.equal(res.status, 412);
    assert.equal(res.headers.get('etag'), etag);
    await res.arrayBuffer();
    res = await get('/blob/data', { 'if-match': `W/${etag}` }); // strong comparison
    assert.equal(res.status, 412);
    res = await get('/blob/data', { 'if-match': `"x", ${etag}` });
    assert.equal(res.status, 200);
    await res.arrayBuffer();
    res = await get('/blob/data', { 'if-match': '*' });
    assert.equal(res.status, 200);
    await res.arrayBuffer();
    const earlier = new Date(info.modifiedAt.getTime() - 60_000).toUTCString();
    res = await get('/blob/data', { 'if-unmodified-since': earlier });
    assert.equal(res.status, 412);
    res = await get('/blob/data', { 'if-unmodified-since': info.modifiedAt.toUTCString() });
    assert.equal(res.status, 200);
    await res.arrayBuffer();
    // A weak ETag never satisfies If-Match.
    res = await get('/blob/data?weak=1', { 'if-match': `W/${etag}` });
    assert.equal(res.status, 412);
  });

  test('If-Range: matching ETag/date → 206; mismatch, weak tag or other date → full 200', async () => {
    const info = await driver.stat('b/data');
    const etag = etagOf(info.size, info.modifiedAt);
    const range = 'bytes=0-9';
    const check = async (ifRange: string, status: number, query = '') => {
      const res = await get(`/blob/data${query}`, { range, 'if-range': ifRange });
      assert.equal(res.status, status, ifRange);
      assert.equal((await res.arrayBuffer()).byteLength, status === 206 ? 10 : data.length);
    };
    await check(etag, 206);
    await check(info.modifiedAt.toUTCString(), 206);
    await check('"changed"', 200);
    await check(`W/${etag}`, 200);
    await check(new Date(info.modifiedAt.getTime() - 1000).toUTCString(), 200);
    await check(`W/${etag}`, 200, '?weak=1');
    await check('not a date', 200);
  });

  test('hostile file names cannot break Content-Disposition', async () => {
    const names = [
      'evil"\r\nSet-Cookie: pwned=1.txt',
      'naïve café.mp3',
      '日本語/ファイル.txt',
      'invoice\u202Efdp.exe',
      'back\\slash "quoted".txt',
      '100%.txt',
      '../../etc/passwd',
      "it's (1) *.txt",
      '',
    ];
    for (const name of names) {
      const res = await get(`/blob/data?name=${encodeURIComponent(name)}`, {}, 'HEAD');
      assert.equal(res.status, 200, name);
      assert.equal(res.headers.get('set-cookie'), null);
      const value = res.headers.get('content-disposition') ?? '';
      assert.match(
        value,
        /^attachment; filename="[\x20-\x7e]*"(; filename\*=UTF-8''[A-Za-z0-9!#$&+\-.^_`|~%]+)?$/,
        name,
      );
      const fallback = /filename="([^"]*)"/.exec(value)?.[1] ?? '';
      assert.doesNotMatch(fallback, /["\\/]/);
      const star = /filename\*=UTF-8''(.*)$/.exec(value)?.[1];
      const shown = star === undefined ? fallback : decodeURIComponent(star);
      assert.doesNotMatch(shown, /[\r\n\u202e/\\\uD800-\uDFFF]/u, name);
    }
    assert.equal(
      contentDisposition('attachment', 'naïve café.mp3'),
      `attachment; filename="na_ve caf_.mp3"; filename*=UTF-8''na%C3%AFve%20caf%C3%A9.mp3`,
    );
    assert.equal(
      contentDisposition('inline', 'evil"\r\nX: y'),
      `inline; filename="evil___X: y"; filename*=UTF-8''evil%22__X%3A%20y`,
    );
    assert.equal(
      contentDisposition('attachment', '日本語.txt').split('filename*=')[1],
      "UTF-8''%E6%97%A5%E6%9C%AC%E8%AA%9E.txt",
    );
    assert.equal(contentDisposition('attachment', "a'(b)*.txt"), `attachment; filename="a'(b)*.txt"`);
    assert.equal(contentDisposition('attachment', ''), 'attachment; filename="download"');
    // Lone surrogates (cannot arrive over HTTP, but can come from a database) must not throw.
    assert.equal(
      contentDisposition('attachment', '\uD800lone.txt'),
      `attachment; filename="_lone.txt"; filename*=UTF-8''%EF%BF%BDlone.txt`,
    );
  });

  test('zero-byte blob: 200 with Content-Length 0; ranges', async () => {
    let res = await get('/blob/empty');
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-length'), '0');
    assert.equal((await res.arrayBuffer()).byteLength, 0);
    res = await get('/blob/empty', {}, 'HEAD');
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-length'), '0');
    res = await get('/blob/empty', { range: 'bytes=0-' });
    assert.equal(res.status, 416);
    assert.equal(res.headers.get('content-range'), 'bytes */0');
    res = await get('/blob/empty', { range: 'bytes=-10' });
    assert.equal(res.status, 200);
    assert.equal((await res.arrayBuffer()).byteLength, 0);
  });

  test('blobs over 4 GiB: lengths and ranges are 64-bit clean', async () => {
    const size = 5 * GiB + 7;
    let res = await get('/blob/huge', {}, 'HEAD');
    assert.equal(res.headers.get('content-length'), String(size));
    assert.equal(res.headers.get('content-type'), 'application/x-iso9660-image');
    const start = 4 * GiB + 100;
    res = await get('/blob/huge', { range: `bytes=${start}-${start + 999}` });
    assert.equal(res.status, 206);
    assert.equal(res.headers.get('content-range'), `bytes ${start}-${start + 999}/${size}`);
    const body = Buffer.from(await res.arrayBuffer());
    assert.equal(body.length, 1000);
    for (let i = 0; i < body.length; i++) assert.equal(body[i], (start + i) % 251);
    res = await get('/blob/huge', { range: 'bytes=-3' });
    assert.equal(res.headers.get('content-range'), `bytes ${size - 3}-${size - 1}/${size}`);
    assert.deepEqual(
      [...Buffer.from(await res.arrayBuffer())],
      [0, 1, 2].map((i) => (size - 3 + i) % 251),
    );
  });

  const waitFor = async (predicate: () => boolean, what: string) => {
    const deadline = Date.now() + 5000;
    while (!predicate()) {
      if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };

  for (const [label, path, headers] of [
    ['plain', '/blob/big', {}],
    ['throttled', '/blob/big?speed=1048576', {}],
    ['multipart', '/blob/big', { range: 'bytes=0-99,1000-33554000' }],
  ] as const) {
    test(`client abort mid-body (${label}): file stream destroyed, server keeps serving`, async () => {
      const first = opened.length;
      const controller = new AbortController();
      const res = await fetch(base + path, { headers, signal: controller.signal });
      const reader = res.body?.getReader();
      assert.ok(reader);
      await reader.read();
      controller.abort();
      await reader.read().catch(() => undefined);
      await waitFor(
        () => opened.length > first && opened.slice(first).every((s) => s.destroyed),
        'stream cleanup',
      );
      const ping = await fetch(`${base}/ping`);
      assert.equal(await ping.text(), 'pong');
    });
  }

  test('positional reader: whole body and ranges across 1 MiB chunks are byte-exact; reader closed', async () => {
    const first = readers.length;
    let res = await get('/blob/big?reader=1');
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-length'), String(big.length));
    assert.equal(res.headers.get('etag') !== null, true);
    assert.ok(Buffer.from(await res.arrayBuffer()).equals(big));
    for (const [a, b] of [
      [0, 0],
      [MiB - 1, MiB],
      [123, 3 * MiB + 7],
      [big.length - 10, big.length - 1],
    ] as const) {
      res = await get('/blob/big?reader=1', { range: `bytes=${a}-${b}` });
      assert.equal(res.status, 206);
      assert.equal(res.headers.get('content-range'), `bytes ${a}-${b}/${big.length}`);
      assert.ok(Buffer.from(await res.arrayBuffer()).equals(big.subarray(a, b + 1)), `bytes ${a}-${b}`);
    }
    await waitFor(() => readers.slice(first).every((r) => r.closed), 'readers closed');
    assert.equal(readers.length - first, 5);
    // HEAD and a throttled body never take the positional path.
    await (await get('/blob/big?reader=1', {}, 'HEAD')).arrayBuffer();
    const slow = await get(`/blob/data?reader=1&speed=${64 * MiB}`);
    assert.ok(Buffer.from(await slow.arrayBuffer()).equals(data));
    assert.equal(readers.length - first, 5);
  });

  test('positional reader: a client abort mid-body closes the reader, server keeps serving', async () => {
    const first = readers.length;
    const controller = new AbortController();
    const res = await fetch(`${base}/blob/big?reader=1`, { signal: controller.signal });
    const body = res.body?.getReader();
    assert.ok(body);
    await body.read();
    controller.abort();
    await body.read().catch(() => undefined);
    await waitFor(
      () => readers.length > first && readers.slice(first).every((r) => r.closed),
      'reader closed',
    );
    assert.ok(readers[first]!.reads < big.length / MiB, 'stopped reading after the abort');
    const ping = await fetch(`${base}/ping`);
    assert.equal(await ping.text(), 'pong');
  });

  test('positional reader: a blob shorter than its recorded size breaks the download, never a short 200', async () => {
    const first = readers.length;
    const res = await get(`/blob/data?reader=1&claim=${data.length + 5 * MiB}`);
    assert.equal(res.status, 200);
    await assert.rejects(res.arrayBuffer());
    await waitFor(() => readers.slice(first).every((r) => r.closed), 'reader closed');
    const ping = await fetch(`${base}/ping`);
    assert.equal(await ping.text(), 'pong');
  });

  test('client closes the socket right after the request: no crash', async () => {
    const first = opened.length;
    const socket = connect(Number(new URL(base).port), '127.0.0.1');
    await once(socket, 'connect');
    socket.write('GET /blob/big HTTP/1.1\r\nHost: x\r\n\r\n');
    await once(socket, 'data');
    socket.destroy();
    await waitFor(
      () => opened.length > first && opened.slice(first).every((s) => s.destroyed),
      'stream cleanup',
    );
    // Half a request, then gone.
    const s2 = connect(Number(new URL(base).port), '127.0.0.1');
    await once(s2, 'connect');
    s2.write('GET /blob/big HTTP/1.1\r\nHost: x\r\nRange: bytes=0-');
    await new Promise((r) => setTimeout(r, 50));
    s2.destroy();
    const ping = await fetch(`${base}/ping`);
    assert.equal(await ping.text(), 'pong');
  });

  test('speed limit: 1 MiB at 512 KiB/s takes well over a second', async () => {
    const started = performance.now();
    const res = await get(`/blob/mib?speed=${512 * KiB}`);
    const body = Buffer.from(await res.arrayBuffer());
    const seconds = (performance.now() - started) / 1000;
    assert.ok(body.equals(oneMiB));
    assert.ok(seconds >= 1.5, `took ${seconds.toFixed(2)} s`);
  });
});

describe('parseRangeHeader', () => {
  test('forms and edge cases', () => {
    assert.deepEqual(parseRangeHeader('bytes=0-0', 10), [{ start: 0, end: 0 }]);
    assert.deepEqual(parseRangeHeader('bytes=-20', 10), [{ start: 0, end: 9 }]);
    assert.deepEqual(parseRangeHeader('bytes=9-', 10), [{ start: 9, end: 9 }]);
    assert.deepEqual(parseRangeHeader('bytes=10-, 0-1', 10), [{ start: 0, end: 1 }]);
    assert.equal(parseRangeHeader('bytes=10-', 10), 'unsatisfiable');
    assert.equal(parseRangeHeader('bytes=0-', 0), 'unsatisfiable');
    assert.equal(parseRangeHeader('bytes=-5', 0), undefined);
    assert.equal(parseRangeHeader('bytes=1-0', 10), undefined);
    assert.equal(parseRangeHeader('bytes=a', 10), undefined);
    assert.equal(parseRangeHeader('none', 10), undefined);
    assert.deepEqual(parseRangeHeader('bytes=4294967296-4294967300', 5 * GiB), [
      { start: 4294967296, end: 4294967300 },
    ]);
  });
});

test('contentTypeFor', () => {
  assert.equal(contentTypeFor('MOVIE.MKV'), 'video/x-matroska');
  assert.equal(contentTypeFor('notes.txt'), 'text/plain; charset=utf-8');
  assert.equal(contentTypeFor('noext'), 'application/octet-stream');
  assert.equal(contentTypeFor('trailing.'), 'application/octet-stream');
  assert.equal(contentTypeFor('x.constructor'), 'application/octet-stream');
  assert.equal(contentTypeFor('x.__proto__'), 'application/octet-stream');
});
