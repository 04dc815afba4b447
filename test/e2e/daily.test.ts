// The daily loop of issue 13, end to end over both faces: honest partial batches, retry with
// every option, and pause / resume that keeps the checkpoint across a restart.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { expectedSha256, startOrigin, type Origin } from '../helpers/origin.ts';
import { startServer, waitFor, type TestServer } from '../helpers/server.ts';

interface Task {
  id: string;
  status: string;
  error?: string;
  resume_time?: number;
  paused?: boolean;
  summary?: {
    phase?: string;
    props: {
      download: null | { name: string; total: number; downloaded: number };
      dst: string;
      src_str: string;
    };
  };
}

let origin: Origin;
let server: TestServer;
let token: string;

before(async () => {
  origin = await startOrigin();
  server = await startServer({ args: ['--allow-network', '127.0.0.1/32', '--task-retries', '0'] });
  token = (await server.signIn()).access;
  await server.api('POST', '/file/create', { token, body: { uri: 'cloudreve://my/dl', type: 'folder' } });
});
after(async () => {
  if (process.env.FERRY_TEST_VERBOSE) console.log(server?.output());
  await server?.stop();
  await origin?.close();
});

async function task(id: string): Promise<Task> {
  const r = await server.api<Task>('GET', `/workflow/${id}`, { token });
  assert.equal(r.body.code, 0, JSON.stringify(r.body));
  return r.body.data!;
}

async function until(id: string, ok: (t: Task) => boolean, what: string, timeoutMs = 60_000): Promise<Task> {
  return waitFor(
    async () => {
      const t = await task(id);
      return ok(t) ? t : undefined;
    },
    timeoutMs,
    `task ${id} ${what}`,
  );
}
const finished = (id: string) =>
  until(id, (t) => ['completed', 'error', 'canceled'].includes(t.status), 'to finish');

async function readBack(path: string): Promise<Buffer> {
  const r = await server.api<{ urls: Array<{ url: string }> }>('POST', '/file/url', {
    token,
    body: { uris: [path] },
  });
  assert.equal(r.body.code, 0, JSON.stringify(r.body));
  return Buffer.from(await (await fetch(r.body.data!.urls[0]!.url)).arrayBuffer());
}
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function pathFace(method: string, path: string, body?: unknown) {
  const res = await fetch(`${server.url}/files${path}`, {
    method,
    headers: {
      authorization: `Bearer ${token}`,
      ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
    },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

describe('partial batches', () => {
  test('Cloudreve: 40081 carries the created tasks in data and every failure in aggregated_error', async () => {
    const good = origin.route('/batch-good.bin', { size: 5000, seed: 31 });
    const bad = ['not a url', 'ftp://127.0.0.1/x', 'http://10.1.2.3/private.bin'];
    const r = await server.api<Task[]>('POST', '/workflow/download', {
      token,
      body: { dst: 'cloudreve://my/dl', src: [bad[0], good, bad[1], bad[2]] },
    });
    assert.equal(r.body.code, 40081, JSON.stringify(r.body));
    assert.deepEqual(Object.keys(r.body.aggregated_error ?? {}).sort(), [...bad].sort());
    assert.equal(r.body.data?.length, 1, 'the created task is listed');
    const created = r.body.data[0]!;
    assert.equal(created.summary!.props.src_str, good);
    assert.equal((await finished(created.id)).status, 'completed');
    assert.equal(sha256(await readBack('cloudreve://my/dl/batch-good.bin')), expectedSha256(5000, 31));
  });

  test('Cloudreve: a batch where everything failed has no data', async () => {
    const r = await server.api('POST', '/workflow/download', {
      token,
      body: { dst: 'cloudreve://my/dl', src: ['nope', 'ftp://127.0.0.1/y'] },
    });
    assert.equal(r.body.code, 40081);
    assert.equal(r.body.data, undefined);
  });

  test('path face: POST /{dir}?downloads= starts the good URLs and names the failed ones', async () => {
    const good = origin.route('/batch-path.bin', { size: 3000, seed: 32 });
    const r = await pathFace('POST', '/batch?downloads=', { urls: [good, 'ftp://127.0.0.1/z'] });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.success, false);
    const downloads = r.body.downloads as Array<{ download_id: string; url: string; path: string }>;
    const errors = r.body.errors as Array<{ url: string; error: string }>;
    assert.deepEqual(
      downloads.map((d) => [d.url, d.path]),
      [[good, 'batch/batch-path.bin']],
    );
    assert.deepEqual(
      errors.map((e) => [e.url, e.error]),
      [['ftp://127.0.0.1/z', 'INVALID_URL']],
    );
    const history = await waitFor(
      async () => {
        const h = await pathFace('GET', '/?download_history=');
        const entries = h.body.history as Array<{ id: string; status: string }>;
        return entries.find((e) => e.id === downloads[0]!.download_id && e.status === 'completed');
      },
      60_000,
      'the batch download to complete',
    );
    assert.ok(history);
    const none = await pathFace('POST', '/batch?downloads=', { urls: ['nope'] });
    assert.equal(none.status, 400);
    assert.deepEqual(none.body.downloads, []);
  });
});

describe('retry keeps every option', () => {
  test('path face: a timed-out cookie download retried resumes from its partial data, same name and checks', async () => {
    const size = 1024 * 1024;
    const path = '/retry-cookie.bin';
    const guarded = { size, seed: 33, requireHeaders: { cookie: 'session=abc' } };
    const url = origin.route(path, { ...guarded, throttle: 256 * 1024 });
    const query = new URLSearchParams({
      download: url,
      filename: 'kept.bin',
      timeout: '2',
      header: 'Cookie: session=abc',
      checksum: `sha256:${expectedSha256(size, 33)}`,
      connections: '1',
    });
    const start = await pathFace('GET', `/retry?${query.toString()}`);
    assert.equal(start.body.success, true, JSON.stringify(start.body));
    const firstId = start.body.download_id as string;
    const history = async () =>
      (await pathFace('GET', '/?download_history=')).body.history as Array<{
        id: string;
        status: string;
        error: string | null;
        file_path: string;
      }>;
    const failed = await waitFor(
      async () => (await history()).find((h) => h.id === firstId),
      60_000,
      'the first run to time out',
    );
    assert.equal(failed.error, 'DOWNLOAD_TIMEOUT');
    const firstRun = origin.bytesServed(path);
    assert.ok(firstRun > 0 && firstRun < size, `first run fetched ${firstRun} bytes`);

    origin.route(path, guarded); // now fast: the retry finishes well within the 2 s timeout
    const again = await pathFace('POST', `/api/v1/downloads/${firstId}/retry`);
    assert.equal(again.status, 200, JSON.stringify(again.body));
    assert.equal(again.body.path, 'retry/kept.bin');
    const retryId = again.body.download_id as string;
    assert.notEqual(retryId, firstId);
    const done = await waitFor(
      async () => (await history()).find((h) => h.id === retryId),
      60_000,
      'the retry to finish',
    );
    assert.equal(done.status, 'completed', JSON.stringify(done));
    assert.equal(done.file_path, 'retry/kept.bin', 'the file name was kept');
    const res = await fetch(`${server.url}/files/retry/kept.bin`, {
      headers: { authorization: `Bearer ${token}` },
    });
    assert.equal(sha256(Buffer.from(await res.arrayBuffer())), expectedSha256(size, 33));

    const requests = origin.requests(path);
    assert.ok(
      requests.every((r) => r.status !== 403 && r.headers.cookie === 'session=abc'),
      'every request of the retry sent the cookie',
    );
    const resumedAt = Number(/^bytes=(\d+)-/.exec(requests[0]!.range ?? '')?.[1] ?? 0);
    assert.ok(resumedAt > 0, `the retry resumed (first range ${requests[0]!.range})`);
    assert.equal(origin.bytesServed(path), size - resumedAt, 'no finished byte was fetched again');
  });

  test('Cloudreve: a canceled task retried keeps its headers, connections and file name', async () => {
    const path = '/retry-cancel.bin';
    const url = origin.route(path, {
      size: 2 * 1024 * 1024,
      seed: 34,
      throttle: 128 * 1024,
      requireHeaders: { referer: 'https://ref.example/' },
    });
    const r = await server.api<Task[]>('POST', '/workflow/download', {
      token,
      body: {
        dst: 'cloudreve://my/dl',
        src: [url],
        headers: { Referer: 'https://ref.example/' },
        connections: 2,
        filename: 'named.bin',
      },
    });
    assert.equal(r.body.code, 0, JSON.stringify(r.body));
    const id = r.body.data![0]!.id;
    const active = await server.api('POST', `/workflow/download/${id}/retry`, { token });
    assert.equal(active.body.code, 409, 'an active task is not retried');
    await until(id, (t) => (t.summary?.props.download?.downloaded ?? 0) > 0, 'to start');
    assert.equal((await server.api('DELETE', `/workflow/download/${id}`, { token })).body.code, 0);
    await until(id, (t) => t.status === 'canceled', 'to be canceled');

    origin.route(path, {
      size: 2 * 1024 * 1024,
      seed: 34,
      requireHeaders: { referer: 'https://ref.example/' },
    });
    const again = await server.api<Task>('POST', `/workflow/download/${id}/retry`, { token });
    assert.equal(again.body.code, 0, JSON.stringify(again.body));
    assert.equal(again.body.data!.summary!.props.src_str, url);
    const done = await finished(again.body.data!.id);
    assert.equal(done.status, 'completed', JSON.stringify(done));
    assert.equal(done.summary!.props.download!.name, 'named.bin');
    assert.equal(sha256(await readBack('cloudreve://my/dl/named.bin')), expectedSha256(2 * 1024 * 1024, 34));
    const requests = origin.requests(path);
    assert.ok(requests.length >= 2, 'two connections');
    assert.ok(requests.every((r) => r.status !== 403));
  });
});

describe('pause and resume', () => {
  test('pause → kill the server → resume: the paused task waits and no finished byte is fetched again', async () => {
    const size = 4 * 1024 * 1024;
    const path = '/pause.bin';
    const url = origin.route(path, { size, seed: 35, throttle: 512 * 1024 });
    const r = await server.api<Task[]>('POST', '/workflow/download', {
      token,
      body: { dst: 'cloudreve://my/dl', src: [url], connections: 1, filename: 'paused.bin' },
    });
    assert.equal(r.body.code, 0, JSON.stringify(r.body));
    const id = r.body.data![0]!.id;
    await until(id, (t) => (t.summary?.props.download?.downloaded ?? 0) >= 1024 * 1024, 'to fetch 1 MiB');

    const paused = await server.api<Task>('POST', `/workflow/download/${id}/pause`, { token });
    assert.equal(paused.body.code, 0, JSON.stringify(paused.body));
    assert.equal(paused.body.data!.status, 'suspending');
    assert.equal(paused.body.data!.paused, true);
    assert.equal(paused.body.data!.resume_time, undefined, 'no resume time: it waits for the user');
    // Its runner stops and lets it go.
    await waitFor(
      async () => {
        const rows = await server.sql<{ lease_owner: string | null }>(
          'SELECT lease_owner FROM tasks WHERE src = ?',
          [url],
        );
        return rows[0]?.lease_owner === null ? true : undefined;
      },
      15_000,
      'the runner to stop',
    );
    const fetchedBeforePause = origin.bytesServed(path);
    assert.ok(fetchedBeforePause < size);

    await server.crashAndRestart();
    await new Promise((resolve) => setTimeout(resolve, 2500));
    const still = await task(id);
    assert.deepEqual([still.status, still.paused], ['suspending', true], 'still paused after the restart');
    assert.equal(origin.bytesServed(path), fetchedBeforePause, 'nothing fetched while paused');
    const pauseTwice = await server.api('POST', `/workflow/download/${id}/pause`, { token });
    assert.equal(pauseTwice.body.code, 0, 'pausing a paused task is a no-op');

    const [row] = await server.sql<{ checkpoint: string }>('SELECT checkpoint FROM tasks WHERE src = ?', [
      url,
    ]);
    const done = (JSON.parse(row!.checkpoint) as { done: Array<[number, number]> }).done.reduce(
      (sum, [a, b]) => sum + (b - a),
      0,
    );
    assert.ok(done >= 1024 * 1024, `the checkpoint holds ${done} bytes`);

    // The path face shows it as paused, and resumes it.
    const list = await pathFace('GET', '/api/v1/downloads');
    const record = (list.body.downloads as Array<{ id: string; url: string; paused?: boolean }>).find(
      (d) => d.url === url,
    );
    assert.equal(record?.paused, true);
    origin.route(path, { size, seed: 35 }); // counters from zero, full speed
    const resumed = await pathFace('POST', `/api/v1/downloads/${record.id}/resume`);
    assert.deepEqual(resumed.body, { success: true });
    const again = await pathFace('POST', `/api/v1/downloads/${record.id}/resume`);
    assert.equal(again.status, 409);

    const final = await finished(id);
    assert.equal(final.status, 'completed', JSON.stringify(final));
    assert.equal(sha256(await readBack('cloudreve://my/dl/paused.bin')), expectedSha256(size, 35));
    assert.equal(origin.bytesServed(path), size - done, 'the resume fetched only the missing bytes');
    const late = await server.api('POST', `/workflow/download/${id}/pause`, { token });
    assert.equal(late.body.code, 409, 'a finished task cannot be paused');
  });

  test('a task paused as soon as it is created fetches nothing until resumed', async () => {
    const path = '/pause-queued.bin';
    // The origin answers late, so the task cannot finish before the pause reaches it.
    const url = origin.route(path, { size: 10_000, seed: 36, delayMs: 2000 });
    const r = await server.api<Task[]>('POST', '/workflow/download', {
      token,
      body: { dst: 'cloudreve://my/dl', src: [url] },
    });
    const id = r.body.data![0]!.id;
    const p = await server.api<Task>('POST', `/workflow/download/${id}/pause`, { token });
    assert.equal(p.body.code, 0, JSON.stringify(p.body));
    await new Promise((resolve) => setTimeout(resolve, 2500));
    const t = await task(id);
    assert.equal(t.paused, true);
    const fetched = origin.bytesServed(path);
    await new Promise((resolve) => setTimeout(resolve, 1500));
    assert.equal(origin.bytesServed(path), fetched, 'a paused task fetches nothing');
    const resumed = await server.api<Task>('POST', `/workflow/download/${id}/resume`, { token });
    assert.equal(resumed.body.code, 0, JSON.stringify(resumed.body));
    assert.equal((await finished(id)).status, 'completed');
  });
});
