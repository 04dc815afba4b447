// Remote download through the Cloudreve face, end to end: a real server process fetching from
// a real HTTP origin on 127.0.0.1, results read back through signed links.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { expectedDigest, expectedSha256, startOrigin, type Origin } from '../helpers/origin.ts';
import { ADMIN_EMAIL, startServer, uploadFile, waitFor, type TestServer } from '../helpers/server.ts';

interface Task {
  id: string;
  status: string;
  error?: string;
  error_history?: string[];
  retry_count?: number;
  node?: { id: string; name: string; type: string; capabilities: string };
  summary?: {
    phase?: string;
    props: {
      download: null | {
        name: string;
        total: number;
        downloaded: number;
        download_speed: number;
        files?: Array<{ index: number; name: string; size: number; progress: number; selected: boolean }>;
      };
      dst: string;
      src_str: string;
    };
  };
}

let origin: Origin;
let server: TestServer;
let token: string;

async function createTasks(
  src: string[],
  extra: Record<string, unknown> = {},
  dst = 'cloudreve://my/dl',
  as = token,
) {
  return server.api<Task[]>('POST', '/workflow/download', { token: as, body: { dst, src, ...extra } });
}

async function finished(id: string, as = token, timeoutMs = 60_000): Promise<Task> {
  return waitFor(
    async () => {
      const r = await server.api<Task>('GET', `/workflow/${id}`, { token: as });
      return r.body.data && ['completed', 'error', 'canceled'].includes(r.body.data.status)
        ? r.body.data
        : undefined;
    },
    timeoutMs,
    `task ${id} to finish`,
  );
}

async function readBack(path: string, as = token): Promise<Buffer> {
  const r = await server.api<{ urls: Array<{ url: string }> }>('POST', '/file/url', {
    token: as,
    body: { uris: [path] },
  });
  assert.equal(r.body.code, 0, JSON.stringify(r.body));
  const res = await fetch(r.body.data!.urls[0]!.url);
  return Buffer.from(await res.arrayBuffer());
}

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function listNames(uri: string, as = token): Promise<string[]> {
  const r = await server.api<{ files: Array<{ name: string }> }>(
    'GET',
    `/file?uri=${encodeURIComponent(uri)}`,
    { token: as },
  );
  return r.body.data?.files.map((f) => f.name) ?? [];
}

before(async () => {
  origin = await startOrigin();
  server = await startServer({ args: ['--allow-network', '127.0.0.1/32', '--task-retries', '1'] });
  token = (await server.signIn()).access;
  await server.api('POST', '/file/create', { token, body: { uri: 'cloudreve://my/dl', type: 'folder' } });
});
after(async () => {
  if (process.env.FERRY_TEST_VERBOSE) console.log(server?.output());
  await server?.stop();
  await origin?.close();
});

describe('creating tasks (seed validation)', () => {
  test('one task per non-empty source, queued, with the seed TaskResponse shape', async () => {
    const a = origin.route('/shape-a.bin', { size: 1000 });
    const b = origin.route('/shape-b.bin', { size: 2000 });
    const r = await createTasks([a, '', b]);
    assert.equal(r.body.code, 0, JSON.stringify(r.body));
    assert.equal(r.body.data!.length, 2);
    const t = r.body.data![0]!;
    assert.equal(t.status, 'queued');
    assert.equal((t as unknown as { type: string }).type, 'remote_download');
    assert.deepEqual(t.summary!.props, {
      download: null,
      dst: 'cloudreve://my/dl',
      failed: 0,
      src: '',
      src_str: a,
    });
    assert.equal(t.node, undefined, 'create answers carry no node');
    for (const task of r.body.data!) assert.equal((await finished(task.id)).status, 'completed');
  });

  test('validation errors in the seed order', async () => {
    assert.equal(
      (await server.api('POST', '/workflow/download', { token, body: { src: ['http://x/'] } })).body.code,
      40001,
    );
    const none = await createTasks([]);
    assert.deepEqual([none.body.code, none.body.msg], [40001, 'No source files']);
    const both = await createTasks(['http://127.0.0.1/x'], { src_file: 'cloudreve://my/a.torrent' });
    assert.deepEqual([both.body.code, both.body.msg], [40001, 'Invalid source files']);
    const badDst = await createTasks(['http://127.0.0.1/x'], {}, 'https://example.com/');
    assert.deepEqual([badDst.body.code, badDst.body.msg], [40001, 'Invalid destination']);
    const missing = await createTasks(['http://127.0.0.1/x'], {}, 'cloudreve://my/no/such/folder');
    assert.deepEqual([missing.body.code, missing.body.msg], [40016, 'Invalid destination']);
    const anonymous = await server.api('POST', '/workflow/download', {
      body: { dst: 'cloudreve://my/dl', src: ['http://127.0.0.1/'] },
    });
    assert.equal(anonymous.body.code, 401);
  });
});

describe('transfers', () => {
  test('a 24 MiB file over 16 connections is byte-exact and reported live', async () => {
    const size = 24 * 1024 * 1024;
    const src = origin.route('/big-24.bin', { size, seed: 7, throttle: 512 * 1024 });
    const r = await createTasks([src], { connections: 16 });
    const id = r.body.data![0]!.id;
    // While it runs, the task shows a live download status.
    const live = await waitFor(async () => {
      const t = (await server.api<Task>('GET', `/workflow/${id}`, { token })).body.data;
      return t?.summary?.props.download &&
        t.summary.props.download.downloaded > 0 &&
        t.status === 'processing'
        ? t
        : undefined;
    });
    assert.equal(live.summary!.phase, 'monitor');
    assert.equal(live.summary!.props.download!.total, size);
    assert.equal(live.summary!.props.download!.files![0]!.index, 0);
    assert.equal(live.node!.type, 'master');
    assert.equal(live.node!.capabilities, 'CA==');
    const done = await finished(id);
    assert.equal(done.status, 'completed', JSON.stringify(done));
    assert.ok(
      origin.maxConcurrent('/big-24.bin') >= 4,
      `used ${origin.maxConcurrent('/big-24.bin')} connections`,
    );
    assert.equal(sha256(await readBack('cloudreve://my/dl/big-24.bin')), expectedSha256(size, 7));
    const listed = await server.api<{ tasks: Task[] }>('GET', '/workflow?page_size=100&category=downloaded', {
      token,
    });
    assert.ok(listed.body.data!.tasks.some((t) => t.id === id));
  });

  test('no Content-Length, redirects and Content-Disposition names', async () => {
    const chunked = origin.route('/chunked', { size: 300_000, seed: 3, chunked: true });
    const target = origin.route('/real-target.bin', { size: 50_000, seed: 4 });
    const redirect = origin.route('/go', { redirect: target });
    const named = origin.route('/dl/5', {
      size: 1234,
      seed: 5,
      contentDisposition: `attachment; filename="fallback.txt"; filename*=UTF-8''%E6%97%A5%E6%9C%AC.txt`,
    });
    await server.api('POST', '/file/create', { token, body: { uri: 'cloudreve://my/misc', type: 'folder' } });
    const r = await createTasks([chunked, redirect, named], {}, 'cloudreve://my/misc');
    for (const t of r.body.data!) {
      const done = await finished(t.id);
      assert.equal(done.status, 'completed', `${done.summary?.props.src_str}: ${done.error}`);
    }
    const names = await listNames('cloudreve://my/misc');
    assert.ok(names.includes('chunked'), names.join());
    assert.ok(names.includes('日本.txt'), names.join());
    assert.equal(sha256(await readBack('cloudreve://my/misc/chunked')), expectedSha256(300_000, 3));
    assert.equal(sha256(await readBack('cloudreve://my/misc/日本.txt')), expectedSha256(1234, 5));
    const redirected = names.find((n) => n !== 'chunked' && n !== '日本.txt')!;
    assert.equal(sha256(await readBack(`cloudreve://my/misc/${redirected}`)), expectedSha256(50_000, 4));
  });

  test('a second download of the same name is renamed, not overwritten', async () => {
    await server.api('POST', '/file/create', {
      token,
      body: { uri: 'cloudreve://my/twice', type: 'folder' },
    });
    const src = origin.route('/same-name.bin', { size: 100 });
    for (let i = 0; i < 2; i++) {
      const r = await createTasks([src], {}, 'cloudreve://my/twice');
      assert.equal((await finished(r.body.data![0]!.id)).status, 'completed');
    }
    assert.deepEqual((await listNames('cloudreve://my/twice')).sort(), [
      'same-name (1).bin',
      'same-name.bin',
    ]);
  });

  test('404 fails with a clear error and no file', async () => {
    const src = origin.route('/missing.bin', { status: 404 });
    const r = await createTasks([src]);
    const done = await finished(r.body.data![0]!.id);
    assert.equal(done.status, 'error');
    assert.match(done.error!, /404/);
    assert.ok(!(await listNames('cloudreve://my/dl')).includes('missing.bin'));
  });

  test('transient failures are retried with error history', async () => {
    const src = origin.route('/flaky.bin', {
      size: 10_000,
      seed: 9,
      failFirst: { count: 1, status: 503, retryAfter: 0 },
    });
    const r = await createTasks([src]);
    const done = await finished(r.body.data![0]!.id);
    assert.equal(done.status, 'completed', JSON.stringify(done));
    assert.equal(sha256(await readBack('cloudreve://my/dl/flaky.bin')), expectedSha256(10_000, 9));
  });

  test('expected checksum: a match completes, a mismatch fails and lands nothing', async () => {
    const good = origin.route('/sum-good.bin', { size: 5000, seed: 11 });
    const bad = origin.route('/sum-bad.bin', { size: 5000, seed: 12 });
    const ok = await createTasks([good], { checksum: `sha256:${expectedSha256(5000, 11)}` });
    assert.equal((await finished(ok.body.data![0]!.id)).status, 'completed');
    const wrong = await createTasks([bad], { checksum: `md5:${expectedDigest(5000, 11, 'md5')}` });
    const failed = await finished(wrong.body.data![0]!.id);
    assert.equal(failed.status, 'error');
    assert.match(failed.error!, /mismatch/i);
    assert.ok(!(await listNames('cloudreve://my/dl')).includes('sum-bad.bin'));
    const malformed = await createTasks([good], { checksum: 'sha256:xyz' });
    assert.equal(malformed.body.code, 40001);
  });

  test('request headers are sent to the origin', async () => {
    const src = origin.route('/needs-cookie.bin', { size: 100 });
    const r = await createTasks([src], {
      headers: { Cookie: 'session=abc', Referer: 'https://ref.example/', 'User-Agent': 'ferry-test' },
    });
    assert.equal((await finished(r.body.data![0]!.id)).status, 'completed');
    const seen = origin.requests('/needs-cookie.bin')[0]!.headers;
    assert.equal(seen.cookie, 'session=abc');
    assert.equal(seen.referer, 'https://ref.example/');
    assert.equal(seen['user-agent'], 'ferry-test');
    const bad = await createTasks([src], { headers: { Host: 'evil' } });
    assert.equal(bad.body.code, 40001);
  });
});

describe('cancel', () => {
  test('stops the transfer within a second, deletes staging, status canceled', async () => {
    const size = 64 * 1024 * 1024;
    const src = origin.route('/slow-cancel.bin', { size, throttle: 256 * 1024 });
    const r = await createTasks([src]);
    const id = r.body.data![0]!.id;
    await waitFor(async () => {
      const t = (await server.api<Task>('GET', `/workflow/${id}`, { token })).body.data;
      return t?.summary?.props.download?.downloaded ? t : undefined;
    });
    const cancel = await server.api('DELETE', `/workflow/download/${id}`, { token });
    assert.equal(cancel.body.code, 0, JSON.stringify(cancel.body));
    const t0 = Date.now();
    await waitFor(
      async () => (origin.openSockets() === 0 ? true : undefined),
      3000,
      'origin sockets to close',
    );
    assert.ok(Date.now() - t0 < 1500, `sockets closed after ${Date.now() - t0} ms`);
    const done = await finished(id);
    assert.equal(done.status, 'canceled');
    await waitFor(
      async () => {
        const staging = await readdir(join(server.dataDir, 'staging', 'tasks')).catch(() => []);
        return staging.length === 0 ? true : undefined;
      },
      5000,
      'staging to be empty',
    );
    assert.ok(!(await listNames('cloudreve://my/dl')).includes('slow-cancel.bin'));
    // A finished task cannot be canceled again.
    assert.equal((await server.api('DELETE', `/workflow/download/${id}`, { token })).body.code, 404);
  });

  test('a queued task can be canceled too', async () => {
    const r = await createTasks([origin.route('/never.bin', { size: 10, delayMs: 5000 })]);
    const id = r.body.data![0]!.id;
    assert.equal((await server.api('DELETE', `/workflow/download/${id}`, { token })).body.code, 0);
    assert.equal((await finished(id)).status, 'canceled');
  });

  test('select files on an HTTP task is a clear error', async () => {
    const r = await createTasks([
      origin.route('/select.bin', { size: 10 * 1024 * 1024, throttle: 1024 * 1024 }),
    ]);
    const id = r.body.data![0]!.id;
    await waitFor(async () =>
      (await server.api<Task>('GET', `/workflow/${id}`, { token })).body.data?.status === 'processing'
        ? true
        : undefined,
    );
    const patch = await server.api('PATCH', `/workflow/download/${id}`, {
      token,
      body: { files: [{ index: 0, download: false }] },
    });
    assert.notEqual(patch.body.code, 0);
    assert.match(patch.body.msg, /select/i);
    await server.api('DELETE', `/workflow/download/${id}`, { token });
  });
});

describe('isolation and limits', () => {
  test('another user sees none of my tasks and cannot cancel them', async () => {
    await server.addUser('bob@example.com', 'bob-password');
    const bob = (await server.signIn('bob@example.com', 'bob-password')).access;
    const r = await createTasks([origin.route('/mine.bin', { size: 1000 })]);
    const id = r.body.data![0]!.id;
    await finished(id);
    for (const category of ['downloading', 'downloaded']) {
      const list = await server.api<{ tasks: Task[] }>(
        'GET',
        `/workflow?page_size=100&category=${category}`,
        { token: bob },
      );
      assert.equal(list.body.data!.tasks.length, 0);
    }
    assert.equal((await server.api('GET', `/workflow/${id}`, { token: bob })).body.code, 404);
    assert.equal((await server.api('DELETE', `/workflow/download/${id}`, { token: bob })).body.code, 404);
    const progress = await server.api('GET', `/workflow/progress/${id}`, { token: bob });
    assert.deepEqual(progress.body.data, {});
    // Bob cannot target Alice's folders either.
    const alice = await server.api<{ id: string }>('GET', '/user/me', { token });
    const foreign = await createTasks(
      [origin.route('/x.bin', { size: 1 })],
      {},
      `cloudreve://${alice.body.data!.id}@my/dl`,
      bob,
    );
    assert.notEqual(foreign.body.code, 0);
  });

  test('quota: a download larger than the remaining quota fails and lands nothing', async () => {
    await server.addUser('carol@example.com', 'carol-password');
    const carol = (await server.signIn('carol@example.com', 'carol-password')).access;
    await uploadFile(server, carol, 'cloudreve://my/seed.txt', Buffer.from('hello'));
    // Shrink the User group's quota through the same CLI-visible database.
    await setUserQuota(server, 4096);
    const r = await createTasks(
      [origin.route('/too-big.bin', { size: 64 * 1024 })],
      {},
      'cloudreve://my',
      carol,
    );
    const done = await finished(r.body.data![0]!.id, carol);
    assert.equal(done.status, 'error');
    assert.match(done.error!, /quota|allowed/i);
    assert.ok(!(await listNames('cloudreve://my', carol)).includes('too-big.bin'));
    await setUserQuota(server, 10 * 1024 ** 3);
  });

  test('pagination of finished tasks uses next_token', async () => {
    const list = await server.api<{ tasks: Task[]; pagination: { next_token?: string } }>(
      'GET',
      '/workflow?page_size=10&category=downloaded',
      { token },
    );
    assert.equal(list.body.data!.tasks.length, 10);
    assert.ok(list.body.data!.pagination.next_token);
    const next = await server.api<{ tasks: Task[] }>(
      'GET',
      `/workflow?page_size=10&category=downloaded&next_page_token=${encodeURIComponent(list.body.data!.pagination.next_token)}`,
      { token },
    );
    assert.ok(next.body.data!.tasks.length > 0);
    const firstIds = new Set(list.body.data!.tasks.map((t) => t.id));
    assert.ok(next.body.data!.tasks.every((t) => !firstIds.has(t.id)));
    assert.equal(
      (await server.api('GET', '/workflow?page_size=5&category=downloaded', { token })).body.code,
      40001,
    );
  });
});

test('the event stream pushes task changes to their owner', async () => {
  const controller = new AbortController();
  const res = await fetch(`${server.url}/api/v4/workflow/events`, {
    headers: { authorization: `Bearer ${token}` },
    signal: controller.signal,
  });
  assert.equal(res.headers.get('content-type'), 'text/event-stream; charset=utf-8');
  const seen: Task[] = [];
  const reader = (async () => {
    const decoder = new TextDecoder();
    let buffer = '';
    for await (const chunk of res.body!) {
      buffer += decoder.decode(chunk as Uint8Array, { stream: true });
      let i;
      while ((i = buffer.indexOf('\n\n')) >= 0) {
        const block = buffer.slice(0, i);
        buffer = buffer.slice(i + 2);
        const data = block.split('\n').find((l) => l.startsWith('data: '));
        if (data) seen.push(JSON.parse(data.slice(6)) as Task);
      }
    }
  })().catch(() => undefined);
  const r = await createTasks([
    origin.route('/sse.bin', { size: 4 * 1024 * 1024, throttle: 8 * 1024 * 1024 }),
  ]);
  const id = r.body.data![0]!.id;
  await waitFor(
    async () => (seen.some((t) => t.id === id && t.status === 'completed') ? true : undefined),
    30_000,
    'completed event',
  );
  const statuses = seen.filter((t) => t.id === id).map((t) => t.status);
  assert.ok(statuses.includes('queued') && statuses.includes('processing'), statuses.join());
  controller.abort();
  await reader;
  void ADMIN_EMAIL;
});

async function setUserQuota(s: TestServer, bytes: number): Promise<void> {
  if (s.databaseUrl.startsWith('postgres')) {
    const pg = await import('pg');
    const client = new pg.default.Client({ connectionString: s.databaseUrl });
    await client.connect();
    await client.query('UPDATE groups SET quota_bytes = $1 WHERE id = 2', [bytes]);
    await client.end();
  } else {
    const { default: Database } = await import('better-sqlite3');
    const db = new Database(s.databaseUrl);
    db.pragma('busy_timeout = 5000');
    db.prepare('UPDATE groups SET quota_bytes = ? WHERE id = 2').run(bytes);
    db.close();
  }
}

test("fair share: one user's long queue does not starve another user's single task", async () => {
  const s = await startServer({ args: ['--allow-network', '127.0.0.1/32', '--max-concurrent-tasks', '2'] });
  try {
    const alice = (await s.signIn()).access;
    await s.addUser('dave@example.com', 'dave-password');
    const dave = (await s.signIn('dave@example.com', 'dave-password')).access;
    const slow = Array.from({ length: 12 }, (_, i) =>
      origin.route(`/fair-a-${i}.bin`, { size: 2 * 1024 * 1024, throttle: 512 * 1024 }),
    );
    const many = await s.api<Array<{ id: string }>>('POST', '/workflow/download', {
      token: alice,
      body: { dst: 'cloudreve://my', src: slow, connections: 1 },
    });
    assert.equal(many.body.code, 0);
    const one = await s.api<Array<{ id: string }>>('POST', '/workflow/download', {
      token: dave,
      body: { dst: 'cloudreve://my', src: [origin.route('/fair-b.bin', { size: 1000 })] },
    });
    const daveId = one.body.data![0]!.id;
    await waitFor(
      async () =>
        (await s.api<{ status: string }>('GET', `/workflow/${daveId}`, { token: dave })).body.data?.status ===
        'completed'
          ? true
          : undefined,
      20_000,
    );
    // Dave finished while most of Alice's queue still waits.
    const waiting = await s.api<{ tasks: Array<{ status: string }> }>(
      'GET',
      '/workflow?page_size=100&category=downloading',
      { token: alice },
    );
    assert.ok(
      waiting.body.data!.tasks.length >= 8,
      `alice still has ${waiting.body.data!.tasks.length} active tasks`,
    );
    for (const t of many.body.data!) await s.api('DELETE', `/workflow/download/${t.id}`, { token: alice });
  } finally {
    await s.stop();
  }
});
