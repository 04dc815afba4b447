// What a client polling a task sees, through a real server process and a loopback origin:
// GET /workflow/progress/{id} during a download (bytes, speed, per-file entries), the task's
// `error` after a retry that succeeded, and unknown fields in POST /workflow/download.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startOrigin, type Origin } from '../helpers/origin.ts';
import { startServer, waitFor, type TestServer } from '../helpers/server.ts';

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
