// Origins that cannot be reached or trusted, through a real server process: a refused
// connection shows on the task within seconds with its retry policy (retry_count, resume_time),
// and ends as NETWORK_ERROR after the task's retries, not after a minute of silent attempts.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { freePort, startServer, waitFor, type TestServer } from '../helpers/server.ts';

interface Task {
  id: string;
  status: string;
  error?: string;
  error_history?: string[];
  retry_count?: number;
  resume_time?: number;
  summary?: { phase?: string };
}

let server: TestServer;
let token: string;

before(async () => {
  server = await startServer({ args: ['--allow-network', '127.0.0.1/32', '--task-retries', '2'] });
  token = (await server.signIn()).access;
});
after(async () => {
  if (process.env.FERRY_TEST_VERBOSE) console.log(server?.output());
  await server?.stop();
});

async function create(src: string): Promise<Task> {
  const r = await server.api<Task[]>('POST', '/workflow/download', {
    token,
    body: { dst: 'cloudreve://my', src: [src] },
  });
  assert.equal(r.body.code, 0, JSON.stringify(r.body));
  return r.body.data![0]!;
}

const getTask = async (id: string) =>
  (await server.api<Task>('GET', `/workflow/${id}`, { token })).body.data!;

test('a refused connection is on the task within seconds, with the retry policy, then ends as NETWORK_ERROR', async () => {
  const port = await freePort(); // nothing listens there
  const src = `http://127.0.0.1:${port}/file.bin`;
  const task = await create(src);
  // Before: the engine retried the connect 6 times (~15 s) per run, 3 runs + backoff ≈ 74 s of
  // "processing" with no error. Now the first failure shows at once, with the next attempt's time.
  const first = await waitFor(
    async () => {
      const t = await getTask(task.id);
      return t.error ? t : undefined;
    },
    5_000,
    'the first failure to show',
  );
  assert.match(first.error!, new RegExp(`could not connect to 127\\.0\\.0\\.1:${port}: connection refused`));
  if (first.status === 'suspending') {
    assert.ok((first.retry_count ?? 0) >= 1, JSON.stringify(first));
    assert.ok(first.resume_time! * 1000 > Date.now() - 60_000, JSON.stringify(first));
  }
  const ended = await waitFor(
    async () => {
      const t = await getTask(task.id);
      return t.status === 'error' ? t : undefined;
    },
    30_000,
    'the task to fail',
  );
  assert.equal(ended.retry_count, 2);
  assert.match(ended.error!, /connection refused/);
  assert.equal(ended.error_history?.length, 2);
  // The path face names it the same way.
  const res = await fetch(`${server.url}/files/?download_history=`, {
    headers: { authorization: `Bearer ${token}` },
  });
  const { history } = (await res.json()) as { history: Array<{ url: string; error: string | null }> };
  assert.equal(history.find((h) => h.url === src)?.error, 'NETWORK_ERROR', JSON.stringify(history));
});
