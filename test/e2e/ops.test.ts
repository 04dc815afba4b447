// Operations over real HTTP: GET /metrics (Prometheus text with task counts, queue depth,
// download bytes and speed, HTTP requests by face and status class, process metrics) and the
// JSON logs of task runs carrying the task id and the creating request's correlation id.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, test } from 'node:test';
import { startOrigin, type Origin } from '../helpers/origin.ts';
import { startServer, waitFor, type TestServer } from '../helpers/server.ts';

let origin: Origin;
let server: TestServer;
let token: string;

async function metrics(): Promise<string> {
  const res = await fetch(`${server.url}/metrics`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
  return res.text();
}

/** The value of one sample, e.g. value(text, 'ferry_tasks{status="completed"}'). */
function value(text: string, sample: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${sample} `));
  return line === undefined ? undefined : Number(line.slice(sample.length + 1));
}

before(async () => {
  origin = await startOrigin();
  server = await startServer({ args: ['--allow-network', '127.0.0.1/32', '--log-level', 'info'] });
  token = (await server.signIn()).access;
});
after(async () => {
  await server?.stop();
  await origin?.close();
});

test('tasks, queue depth, bytes, speed, requests and process metrics', async () => {
  const before = await metrics();
  for (const status of ['queued', 'processing', 'suspending', 'completed', 'error', 'canceled'])
    assert.equal(value(before, `ferry_tasks{status="${status}"}`), 0, status);
  assert.equal(value(before, 'ferry_queue_depth{node="Master"}'), 0);
  assert.equal(value(before, 'ferry_downloaded_bytes_total'), 0);
  assert.ok(value(before, 'process_resident_memory_bytes')! > 0);
  assert.ok(value(before, 'process_cpu_user_seconds_total')! >= 0);

  // A throttled download shows a speed while it runs, then its bytes.
  const size = 3 * 1024 * 1024;
  const src = origin.route('/slow.bin', { size, throttle: 1024 * 1024 });
  const created = await server.api<Array<{ id: string }>>('POST', '/workflow/download', {
    token,
    body: { dst: 'cloudreve://my', src: [src], connections: 1 },
  });
  assert.equal(created.body.code, 0, JSON.stringify(created.body));
  const id = created.body.data![0]!.id;
  await waitFor(
    async () => ((value(await metrics(), 'ferry_download_speed_bytes') ?? 0) > 0 ? true : undefined),
    20_000,
    'a download speed',
  );
  await waitFor(
    async () => {
      const r = await server.api<{ status: string }>('GET', `/workflow/${id}`, { token });
      return r.body.data?.status === 'completed' ? true : undefined;
    },
    30_000,
    'the download',
  );
  // Task counts come from a snapshot at most 5 s old.
  const text = await waitFor(
    async () => {
      const t = await metrics();
      return value(t, 'ferry_tasks{status="completed"}') === 1 ? t : undefined;
    },
    10_000,
    'the completed count',
  );
  assert.ok(value(text, 'ferry_downloaded_bytes_total')! >= size);
  assert.equal(value(text, 'ferry_download_speed_bytes'), 0);

  // Requests by face and status class.
  assert.equal((await fetch(`${server.url}/files/nothing-here`)).status, 401);
  const after = await metrics();
  assert.ok(value(after, 'ferry_http_requests_total{face="cloudreve",status="2xx"}')! >= 3);
  assert.ok(value(after, 'ferry_http_requests_total{face="path",status="4xx"}')! >= 1);
  assert.ok(value(after, 'ferry_http_requests_total{face="ops",status="2xx"}')! >= 1);
  assert.match(after, /# TYPE ferry_http_requests_total counter/);
  assert.match(after, /# HELP ferry_tasks /);
});

test('task runs log their task id and the correlation id of the request that created them', async () => {
  const correlation = randomUUID();
  const src = origin.route('/logged.bin', { size: 4096 });
  const created = await server.api<Array<{ id: string }>>('POST', '/workflow/download', {
    token,
    body: { dst: 'cloudreve://my', src: [src] },
    headers: { 'x-cr-correlation-id': correlation },
  });
  assert.equal(created.body.code, 0, JSON.stringify(created.body));
  const lines = await waitFor(
    async () => {
      const mine = server
        .output()
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as { msg: string; task_id?: number; correlation_id?: string })
        .filter((l) => l.correlation_id === correlation);
      return mine.some((l) => l.msg === 'task run completed') ? mine : undefined;
    },
    30_000,
    'the task run logs',
  );
  const started = lines.find((l) => l.msg === 'task run started');
  const completed = lines.find((l) => l.msg === 'task run completed');
  assert.ok(started && completed);
  assert.equal(typeof started.task_id, 'number');
  assert.equal(completed.task_id, started.task_id);
  assert.ok(!server.output().includes('logged.bin?'), 'no source URL beyond its host is logged');
});
