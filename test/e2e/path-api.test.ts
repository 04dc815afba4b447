// The path-style face (hoody-files compatible): start downloads with GET /{dir}?download=,
// follow them, read history and files — over the same tree and tasks as the Cloudreve face.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { expectedSha256, startOrigin, type Origin } from '../helpers/origin.ts';
import { startServer, waitFor, type TestServer } from '../helpers/server.ts';

interface StartResult {
  download_id?: string;
  filename?: string;
  path?: string;
  success: boolean;
  message?: string;
  error: string | null;
}
interface HistoryEntry {
  id: string;
  filename: string;
  file_path: string;
  directory: string;
  url: string;
  status: string;
  total_bytes: number | null;
  start_time: number;
  end_time: number | null;
  error: string | null;
}

let origin: Origin;
let server: TestServer;
let token: string;

async function get(
  path: string,
  as: string | null = token,
): Promise<{ status: number; body: unknown; headers: Headers; raw: Buffer }> {
  const res = await fetch(`${server.url}/files${path}`, {
    headers: as ? { authorization: `Bearer ${as}` } : {},
  });
  const raw = Buffer.from(await res.arrayBuffer());
  let body: unknown = raw.toString();
  try {
    body = JSON.parse(raw.toString());
  } catch {
    // not JSON
  }
  return { status: res.status, body, headers: res.headers, raw };
}

async function start(dir: string, url: string, extra = '', as = token) {
  return get(`/${dir}?download=${encodeURIComponent(url)}${extra}`, as) as Promise<{
    status: number;
    body: StartResult;
    headers: Headers;
    raw: Buffer;
  }>;
}

async function historyOf(id: string, as = token): Promise<HistoryEntry> {
  return waitFor(
    async () => {
      const h = (await get('/?download_history=', as)).body as { history: HistoryEntry[] };
      return h.history.find((e) => e.id === id);
    },
    60_000,
    `history entry ${id}`,
  );
}

before(async () => {
  origin = await startOrigin();
  server = await startServer({ args: ['--allow-network', '127.0.0.1/32', '--task-retries', '0'] });
  token = (await server.signIn()).access;
});
after(async () => {
  await server?.stop();
  await origin?.close();
});

describe('starting downloads', () => {
  test('success body, active lists, history and file read-back', async () => {
    const size = 8 * 1024 * 1024;
    const src = origin.route('/data.csv', { size, seed: 21, throttle: 256 * 1024 });
    const r = await start('Downloads', src, '&filename=renamed-data.csv');
    assert.equal(r.status, 200);
    assert.match(r.body.download_id!, /^[0-9a-f-]{36}$/);
    assert.deepEqual(
      { ...r.body, download_id: 'x' },
      {
        download_id: 'x',
        filename: 'renamed-data.csv',
        path: 'Downloads/renamed-data.csv',
        success: true,
        message: 'Download started',
        error: null,
      },
    );
    const id = r.body.download_id!;
    const active = await waitFor(async () => {
      const list = (await get('/Downloads?downloads=')).body as { downloads: Array<Record<string, unknown>> };
      const entry = list.downloads.find((d) => d.id === id);
      // The length is known once the first ranged answer is in; wait for both.
      return entry && entry.status === 'downloading' && entry.expected_size !== null ? entry : undefined;
    });
    assert.deepEqual(
      Object.keys(active).sort(),
      [
        'current_size',
        'directory',
        'expected_size',
        'file_path',
        'filename',
        'id',
        'progress_percentage',
        'start_time',
        'status',
        'url',
      ].sort(),
    );
    assert.equal(active.directory, 'Downloads');
    assert.equal(active.expected_size, size);
    assert.equal(typeof active.progress_percentage, 'number');
    const global = (await get('/api/v1/downloads')).body as { downloads: Array<{ id: string }> };
    assert.ok(global.downloads.some((d) => d.id === id));
    const other = (await get('/Elsewhere?downloads=')).body as { downloads: unknown[] };
    assert.equal(other.downloads.length, 0);
    const entry = await historyOf(id);
    assert.equal(entry.status, 'completed');
    assert.equal(entry.total_bytes, size);
    assert.equal(entry.file_path, 'Downloads/renamed-data.csv');
    assert.equal(entry.error, null);
    assert.ok(entry.end_time! >= entry.start_time);
    const file = await get('/Downloads/renamed-data.csv');
    assert.equal(file.status, 200);
    assert.equal(createHash('sha256').update(file.raw).digest('hex'), expectedSha256(size, 21));
    // The same task is visible on the Cloudreve face.
    const tasks = await server.api<{ tasks: Array<{ summary: { props: { src_str: string } } }> }>(
      'GET',
      '/workflow?page_size=100&category=downloaded',
      { token },
    );
    assert.ok(tasks.body.data!.tasks.some((t) => t.summary.props.src_str === src));
  });

  test('Range and HEAD on a downloaded file', async () => {
    const range = await fetch(`${server.url}/files/Downloads/renamed-data.csv`, {
      headers: { authorization: `Bearer ${token}`, range: 'bytes=100-199' },
    });
    assert.equal(range.status, 206);
    assert.equal(range.headers.get('content-range'), `bytes 100-199/${8 * 1024 * 1024}`);
    assert.equal((await range.arrayBuffer()).byteLength, 100);
    const head = await fetch(`${server.url}/files/Downloads/renamed-data.csv`, {
      method: 'HEAD',
      headers: { authorization: `Bearer ${token}` },
    });
    assert.equal(head.status, 200);
    assert.equal(head.headers.get('content-length'), String(8 * 1024 * 1024));
    assert.equal(head.headers.get('accept-ranges'), 'bytes');
    assert.ok(head.headers.get('etag'));
    const hash = await get('/Downloads/renamed-data.csv?hash');
    assert.equal(hash.raw.toString(), expectedSha256(8 * 1024 * 1024, 21));
    assert.equal((await get('/Downloads/nope.bin')).status, 404);
  });

  test('the SDK form ?download=&download=URL and a name from the URL', async () => {
    const src = origin.route('/files/report.pdf', { size: 1000, seed: 22 });
    const res = await get(`/docs?download=&download=${encodeURIComponent(src)}`);
    const body = res.body as StartResult;
    assert.equal(body.success, true, JSON.stringify(body));
    assert.equal(body.filename, 'report.pdf');
    assert.equal(body.path, 'docs/report.pdf');
    assert.equal((await historyOf(body.download_id!)).status, 'completed');
  });

  test('error names of the seed', async () => {
    const invalid = await start('x', 'not a url');
    assert.equal(invalid.status, 400);
    assert.equal(invalid.body.error, 'INVALID_URL');
    assert.equal(invalid.body.success, false);
    assert.equal((await start('x', 'ftp://127.0.0.1/file')).body.error, 'INVALID_URL');

    const missing = await start('x', origin.route('/missing.csv', { status: 404 }));
    assert.equal(missing.body.success, true);
    const failed = await historyOf(missing.body.download_id!);
    assert.deepEqual(
      [failed.status, failed.error, failed.total_bytes],
      ['failed', 'REMOTE_FILE_NOT_FOUND', null],
    );

    const slow = await start(
      'x',
      origin.route('/slow.bin', { size: 10 * 1024 * 1024, throttle: 64 * 1024 }),
      '&timeout=1',
    );
    assert.equal((await historyOf(slow.body.download_id!)).error, 'DOWNLOAD_TIMEOUT');

    const dropped = await start(
      'x',
      origin.route('/dropped.bin', {
        size: 1024 * 1024,
        ranges: false,
        drop: { count: 100, afterBytes: 1000 },
      }),
    );
    assert.equal((await historyOf(dropped.body.download_id!)).error, 'NETWORK_ERROR');

    assert.equal((await get(`/x?download=${encodeURIComponent(origin.url('/a'))}`, null)).status, 401);
  });
});

describe('server flags', () => {
  test('--no-allow-download answers DOWNLOAD_FORBIDDEN and the Cloudreve group code', async () => {
    const s = await startServer({ args: ['--no-allow-download'] });
    try {
      const t = (await s.signIn()).access;
      const res = await fetch(`${s.url}/files/x?download=${encodeURIComponent(origin.url('/a'))}`, {
        headers: { authorization: `Bearer ${t}` },
      });
      assert.equal(res.status, 403);
      assert.deepEqual(await res.json(), { success: false, error: 'DOWNLOAD_FORBIDDEN' });
      const cr = await s.api('POST', '/workflow/download', {
        token: t,
        body: { dst: 'cloudreve://my', src: [origin.url('/a')] },
      });
      assert.equal(cr.body.code, 40007);
    } finally {
      await s.stop();
    }
  });

  test('domain allow and block lists', async () => {
    const s = await startServer({
      args: [
        '--download-block-domain',
        '*.blocked.test',
        '--download-allow-domain',
        'allowed.test',
        '--download-allow-domain',
        '*.allowed.test',
      ],
    });
    try {
      const t = (await s.signIn()).access;
      const call = async (url: string) => {
        const res = await fetch(`${s.url}/files/x?download=${encodeURIComponent(url)}`, {
          headers: { authorization: `Bearer ${t}` },
        });
        return [res.status, ((await res.json()) as StartResult).error];
      };
      assert.deepEqual(await call('http://a.blocked.test/file'), [403, 'DOMAIN_BLOCKED']);
      assert.deepEqual(await call('http://other.test/file'), [403, 'DOMAIN_BLOCKED']);
      // The Cloudreve face refuses such sources one by one, in aggregated_error.
      const cr = await s.api('POST', '/workflow/download', {
        token: t,
        body: { dst: 'cloudreve://my', src: ['http://x.blocked.test/f', 'http://y.allowed.test/g'] },
      });
      assert.equal(cr.body.code, 40081);
      assert.deepEqual(Object.keys(cr.body.aggregated_error!), ['http://x.blocked.test/f']);
      assert.match(cr.body.aggregated_error!['http://x.blocked.test/f']!.msg, /blocked/);
    } finally {
      await s.stop();
    }
  });

  test('loopback in every spelling is refused by default, without contacting it', async () => {
    const s = await startServer();
    try {
      const t = (await s.signIn()).access;
      const port = origin.port;
      const spellings = [
        `http://127.0.0.1:${port}/a`,
        `http://127.1:${port}/a`,
        `http://2130706433:${port}/a`,
        `http://0x7f.0.0.1:${port}/a`,
        `http://0177.0.0.1:${port}/a`,
        `http://localhost:${port}/a`,
        `http://LOCALHOST.:${port}/a`,
        `http://foo.localhost:${port}/a`,
        `http://[::1]:${port}/a`,
        `http://[::ffff:127.0.0.1]:${port}/a`,
        `http://[::ffff:7f00:1]:${port}/a`,
        `http://0.0.0.0:${port}/a`,
      ];
      origin.resetCounters();
      for (const url of spellings) {
        const res = await fetch(`${s.url}/files/x?download=${encodeURIComponent(url)}`, {
          headers: { authorization: `Bearer ${t}` },
        });
        const body = (await res.json()) as StartResult;
        assert.deepEqual([res.status, body.error], [403, 'DOMAIN_BLOCKED'], url);
      }
      // The Cloudreve face refuses each of them in aggregated_error, keyed by the source.
      const cr = await s.api('POST', '/workflow/download', {
        token: t,
        body: { dst: 'cloudreve://my', src: spellings },
      });
      assert.equal(cr.body.code, 40081);
      assert.deepEqual(Object.keys(cr.body.aggregated_error!).sort(), [...spellings].sort());
      assert.equal(origin.requests('/a').length, 0, 'the origin was never contacted');
    } finally {
      await s.stop();
    }
  });
});

test("a second user's history, active list and files stay private", async () => {
  await server.addUser('eve@example.com', 'eve-password');
  const eve = (await server.signIn('eve@example.com', 'eve-password')).access;
  const h = (await get('/?download_history=', eve)).body as { history: unknown[] };
  assert.equal(h.history.length, 0);
  assert.equal(((await get('/api/v1/downloads', eve)).body as { downloads: unknown[] }).downloads.length, 0);
  assert.equal((await get('/Downloads/renamed-data.csv', eve)).status, 404);
});

test('SIGKILL mid-download: the restarted server resumes without refetching finished segments', async () => {
  const size = 24 * 1024 * 1024;
  const src = origin.route('/resume.bin', { size, seed: 23, throttle: 384 * 1024 });
  const r = await start('resume', src, '&timeout=600');
  const id = r.body.download_id!;
  await waitFor(async () => {
    const list = (await get('/resume?downloads=')).body as {
      downloads: Array<{ id: string; current_size: number }>;
    };
    const entry = list.downloads.find((d) => d.id === id);
    return entry && entry.current_size > size * 0.4 ? entry : undefined;
  }, 60_000);
  await server.crashAndRestart();
  const entry = await historyOf(id);
  assert.equal(entry.status, 'completed', JSON.stringify(entry));
  const file = await get('/resume/resume.bin');
  assert.equal(createHash('sha256').update(file.raw).digest('hex'), expectedSha256(size, 23));
  const served = origin.bytesServed('/resume.bin');
  assert.ok(served < size * 1.2, `origin served ${(served / size).toFixed(2)}× the file size`);
});
