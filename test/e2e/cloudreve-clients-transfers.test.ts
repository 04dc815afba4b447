// Contract tests for Cloudreve's clients, part two: chunked uploads as the web app and SDK
// send them, the SDK's body-less jobs.cancel(), file/url with skip_error, and search URIs.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { startOrigin, type Origin } from '../helpers/origin.ts';
import { startServer, uploadFile, waitFor, type TestServer } from '../helpers/server.ts';

let server: TestServer;
let small: TestServer;
let origin: Origin;
let token: string;

interface Json {
  code: number;
  data?: unknown;
  msg: string;
  aggregated_error?: Record<string, { code: number }>;
}

async function send(
  target: TestServer,
  method: string,
  path: string,
  init: { token?: string; headers?: Record<string, string>; body?: string | Buffer } = {},
): Promise<Json> {
  const headers: Record<string, string> = { ...init.headers };
  if (init.token) headers.Authorization = `Bearer ${init.token}`;
  const res = await fetch(`${target.url}/api/v4/${path}`, {
    method,
    headers,
    ...(init.body !== undefined ? { body: init.body } : {}),
  });
  return (await res.json()) as Json;
}

const JSON_HEADERS = { 'Content-Type': 'application/json' };

before(async () => {
  origin = await startOrigin();
  server = await startServer({ args: ['--allow-network', '127.0.0.1/32'] });
  small = await startServer({ args: ['--upload-chunk-size', '65536'] });
  token = (await server.signIn()).access;
});
after(async () => {
  await server?.stop();
  await small?.stop();
  await origin?.close();
});

describe('uploads', () => {
  test('an upload session asks for 25 MiB chunks by default, even for a small file', async () => {
    const r = await send(server, 'PUT', 'file/upload', {
      token,
      headers: JSON_HEADERS,
      body: JSON.stringify({
        uri: 'cloudreve://my/up/small.txt',
        size: 10,
        last_modified: Date.now(),
        mime_type: 'text/plain',
        policy_id: '',
      }),
    });
    assert.equal(r.code, 0, JSON.stringify(r));
    const d = r.data as { chunk_size: number; session_id: string; storage_policy: { type: string } };
    assert.equal(d.chunk_size, 25 * 1024 * 1024);
    assert.equal(typeof d.session_id, 'string');
    assert.equal(d.storage_policy.type, 'local');
  });

  test('the configured chunk size splits a file; chunks as the web app sends them rebuild its bytes', async () => {
    const smallToken = (await small.signIn()).access;
    const content = randomBytes(200_000);
    const created = await send(small, 'PUT', 'file/upload', {
      token: smallToken,
      headers: JSON_HEADERS,
      body: JSON.stringify({
        uri: 'cloudreve://my/big.bin',
        size: content.length,
        last_modified: Date.now(),
      }),
    });
    const { session_id: id, chunk_size: size } = created.data as { session_id: string; chunk_size: number };
    assert.equal(size, 65536);
    const chunks = Math.ceil(content.length / size);
    assert.equal(chunks, 4);
    for (let i = 0; i < chunks; i++) {
      const r = await send(small, 'POST', `file/upload/${id}/${i}`, {
        token: smallToken,
        headers: { 'Content-Type': 'application/octet-stream' },
        body: content.subarray(i * size, (i + 1) * size),
      });
      assert.equal(r.code, 0, `chunk ${i}: ${JSON.stringify(r)}`);
    }
    const url = await send(small, 'POST', 'file/url', {
      token: smallToken,
      headers: JSON_HEADERS,
      body: JSON.stringify({ uris: ['cloudreve://my/big.bin'], download: true }),
    });
    const link = (url.data as { urls: Array<{ url: string }> }).urls[0]!.url;
    const bytes = Buffer.from(await (await fetch(link)).arrayBuffer());
    const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
    assert.equal(sha(bytes), sha(content));
  });
});

describe('request tolerance', () => {
  test('SDK jobs.cancel(): DELETE /workflow/download/{id}, Content-Type: application/json, no body → canceled', async () => {
    const src = origin.route('/slow.bin', { size: 64 * 1024 * 1024, throttle: 256 * 1024 });
    const created = await send(server, 'POST', 'workflow/download', {
      token,
      headers: JSON_HEADERS,
      body: JSON.stringify({ src: [src], dst: 'cloudreve://my' }),
    });
    assert.equal(created.code, 0, JSON.stringify(created));
    const id = (created.data as Array<{ id: string }>)[0]!.id;
    await waitFor(async () => {
      const t = await send(server, 'GET', `workflow/${id}`, { token });
      return (t.data as { status: string } | undefined)?.status === 'processing' ? true : undefined;
    });
    const cancel = await send(server, 'DELETE', `workflow/download/${id}`, { token, headers: JSON_HEADERS });
    assert.equal(cancel.code, 0, JSON.stringify(cancel));
    const status = await waitFor(async () => {
      const t = (await send(server, 'GET', `workflow/${id}`, { token })).data as { status: string };
      return ['canceled', 'error', 'completed'].includes(t.status) ? t.status : undefined;
    });
    assert.equal(status, 'canceled');
  });

  test('a body-less JSON request where a body is required is a binding error (40001), not a JSON error', async () => {
    const r = await send(server, 'DELETE', 'file', { token, headers: JSON_HEADERS });
    assert.equal(r.code, 40001);
    assert.notEqual(r.msg, 'JSON marshall error');
    // Malformed JSON is still refused as such.
    const bad = await send(server, 'DELETE', 'file', { token, headers: JSON_HEADERS, body: '{"uris":' });
    assert.equal(bad.code, 40001);
    assert.equal(bad.msg, 'JSON marshall error');
  });

  test('POST /file/url with skip_error: code 0, the failed slot is {"url": ""}', async () => {
    await uploadFile(server, token, 'cloudreve://my/links/ok.txt', Buffer.from('ok'));
    for (const bad of ['cloudreve://my/links/missing.txt', 'not-a-uri']) {
      const r = await send(server, 'POST', 'file/url', {
        token,
        headers: JSON_HEADERS,
        body: JSON.stringify({ uris: [bad, 'cloudreve://my/links/ok.txt'], skip_error: true }),
      });
      assert.equal(r.code, 0, JSON.stringify(r));
      const urls = (r.data as { urls: Array<{ url: string }> }).urls;
      assert.deepEqual(urls[0], { url: '' });
      assert.match(urls[1]!.url, /^http:\/\/127\.0\.0\.1:\d+\/api\/v4\/file\/content\//);
    }
    const strict = await send(server, 'POST', 'file/url', {
      token,
      headers: JSON_HEADERS,
      body: JSON.stringify({ uris: ['not-a-uri', 'cloudreve://my/links/ok.txt'] }),
    });
    assert.equal(strict.code, 40081);
  });
});

describe('search URIs', () => {
  before(async () => {
    for (const [path, body] of [
      ['s/Note one.txt', 'a'],
      ['s/deep/er/my-Note.md', 'b'],
      ['s/deep/NOTE.TXT', 'c'],
      ['s/photo.PNG', 'd'],
      ['s/other.bin', 'e'],
    ] as const)
      await uploadFile(server, token, `cloudreve://my/${path}`, Buffer.from(body));
  });

  const list = async (uri: string) => {
    const r = await send(server, 'GET', `file?uri=${encodeURIComponent(uri)}&page_size=50`, { token });
    if (r.code !== 0) return { code: r.code, paths: [] as string[] };
    const files = (r.data as { files: Array<{ path: string }> }).files;
    return { code: r.code, paths: files.map((f) => decodeURIComponent(f.path)).sort() };
  };

  test('?name= finds matches at any depth, with full paths; case_folding and name_op_or', async () => {
    assert.deepEqual((await list('cloudreve://my/s?name=Note')).paths, [
      'cloudreve://my/s/Note one.txt',
      'cloudreve://my/s/deep/er/my-Note.md',
    ]);
    assert.deepEqual((await list('cloudreve://my/s?name=note&case_folding')).paths.length, 3);
    assert.deepEqual((await list('cloudreve://my/s?name=photo&name=other&name_op_or')).paths, [
      'cloudreve://my/s/other.bin',
      'cloudreve://my/s/photo.PNG',
    ]);
    assert.deepEqual((await list('cloudreve://my/s?name=*.md')).paths, [
      'cloudreve://my/s/deep/er/my-Note.md',
    ]);
    assert.deepEqual((await list('cloudreve://my/s?name=deep&type=folder')).paths, ['cloudreve://my/s/deep']);
  });

  test("?category=image uses Cloudreve's extension list; unknown categories and metadata filters → 40001", async () => {
    assert.deepEqual((await list('cloudreve://my/s?category=image')).paths, ['cloudreve://my/s/photo.PNG']);
    assert.equal((await list('cloudreve://my/s?category=spaceships')).code, 40001);
    assert.equal((await list('cloudreve://my/s?meta_tag=x')).code, 40001);
  });

  test('a search URI in a mutation is refused, never applied to the whole folder', async () => {
    const r = await send(server, 'DELETE', 'file', {
      token,
      headers: JSON_HEADERS,
      body: JSON.stringify({ uris: ['cloudreve://my/s?name=Note'] }),
    });
    assert.notEqual(r.code, 0);
    assert.equal((await list('cloudreve://my/s')).paths.length, 4);
  });
});
