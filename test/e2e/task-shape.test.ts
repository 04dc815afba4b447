// What a client polling a task sees, through a real server process and a loopback origin:
// GET /workflow/progress/{id} during a download (bytes, speed, per-file entries), the task's
// `error` after a retry that succeeded, and unknown fields in POST /workflow/download.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { startOrigin, type Origin } from '../helpers/origin.ts';
import { freePort, startServer, waitFor, type TestServer } from '../helpers/server.ts';

interface Task {
  id: string;
  status: string;
  error?: string;
  error_history?: string[];
  retry_count?: number;
  summary?: { phase?: string };
}
interface Progress {
  total: number;
  current: number;
  identifier: string;
  speed?: number;
}

let origin: Origin;
let server: TestServer;
let token: string;

before(async () => {
  origin = await startOrigin();
  server = await startServer({ args: ['--allow-network', '127.0.0.1/32', '--http-stall-timeout', '1'] });
  token = (await server.signIn()).access;
});
after(async () => {
  if (process.env.FERRY_TEST_VERBOSE) console.log(server?.output());
  await server?.stop();
  await origin?.close();
});

async function create(src: string, extra: Record<string, unknown> = {}) {
  return server.api<Task[]>('POST', '/workflow/download', {
    token,
    body: { dst: 'cloudreve://my', src: [src], ...extra },
  });
}
const getTask = async (id: string) =>
  (await server.api<Task>('GET', `/workflow/${id}`, { token })).body.data!;
const finished = (id: string) =>
  waitFor(
    async () => {
      const t = await getTask(id);
      return ['completed', 'error', 'canceled'].includes(t.status) ? t : undefined;
    },
    60_000,
    `task ${id} to finish`,
  );

test('progress during an HTTP download: bytes, speed and the file, then {} once finished', async () => {
  const size = 3 * 1024 * 1024;
  const src = origin.route('/progress.bin', { size, seed: 7, throttle: 150_000 });
  const r = await create(src, { connections: 2 });
  assert.equal(r.body.code, 0, JSON.stringify(r.body));
  const id = r.body.data![0]!.id;
  const seen = await waitFor(
    async () => {
      const p = (await server.api<Record<string, Progress>>('GET', `/workflow/progress/${id}`, { token }))
        .body.data!;
      return p.download && p.download.current > 0 && p.download.current < size ? p : undefined;
    },
    30_000,
    'progress with bytes',
  );
  assert.equal(seen.download!.total, size);
  assert.equal(seen.download!.identifier, 'progress.bin');
  assert.ok((seen.download!.speed ?? 0) > 0, JSON.stringify(seen));
  assert.deepEqual(Object.keys(seen).sort(), ['download', 'download_file_0']);
  assert.equal(seen.download_file_0!.identifier, 'progress.bin');
  assert.equal(seen.download_file_0!.total, size);
  const done = await finished(id);
  assert.equal(done.status, 'completed');
  const after = await server.api('GET', `/workflow/progress/${id}`, { token });
  assert.deepEqual(after.body.data, {});
});

test('a task that succeeds after a retry shows no error (the failure stays in error_history), in phase seeding', async () => {
  const port = await freePort(); // refused until the origin below listens there
  const src = `http://127.0.0.1:${port}/late.bin`;
  const r = await create(src);
  assert.equal(r.body.code, 0, JSON.stringify(r.body));
  const id = r.body.data![0]!.id;
  const failed = await waitFor(
    async () => {
      const t = await getTask(id);
      return t.error ? t : undefined;
    },
    10_000,
    'the first failure',
  );
  assert.match(failed.error!, /connection refused/);
  const body = Buffer.alloc(50_000, 7);
  const late = createServer((_req, res) => {
    res.writeHead(200, { 'content-length': body.length });
    res.end(body);
  });
  await new Promise<void>((resolve) => late.listen(port, '127.0.0.1', resolve));
  try {
    const done = await finished(id);
    assert.equal(done.status, 'completed', JSON.stringify(done));
    assert.equal(done.error, undefined, JSON.stringify(done));
    assert.equal(done.retry_count, 1);
    assert.equal(done.error_history?.length, 1);
    assert.match(done.error_history[0]!, /connection refused/);
    assert.equal(done.summary?.phase, 'seeding');
  } finally {
    late.closeAllConnections();
    await new Promise<void>((resolve) => late.close(() => resolve()));
  }
});

test('unknown fields in POST /workflow/download are ignored, as Cloudreve does, and named in a header', async () => {
  const src = origin.route('/unknown-fields.bin', { size: 1000 });
  const r = await create(src, { speed_limit: 1000, 'bad key\n': 1 });
  assert.equal(r.body.code, 0, JSON.stringify(r.body));
  assert.equal(r.headers.get('x-ferry-ignored-fields'), 'speed_limit, ?');
  const known = await create(origin.route('/known-fields.bin', { size: 1000 }), { connections: 2 });
  assert.equal(known.body.code, 0);
  assert.equal(known.headers.get('x-ferry-ignored-fields'), null);
  assert.equal((await finished(r.body.data![0]!.id)).status, 'completed');
});
