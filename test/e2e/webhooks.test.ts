// Webhooks end to end: a real server process, a loopback origin, and a loopback receiver that
// checks every delivery's HMAC-SHA256 signature the way the docs tell users to.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, timingSafeEqual } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { startOrigin, type Origin } from '../helpers/origin.ts';
import { startServer, waitFor, type TestServer } from '../helpers/server.ts';

interface Received {
  path: string;
  event: string;
  body: { event: string; delivery_id: number; task: { id: string; status: string; error: string | null } };
  signatureOk: boolean;
}
interface Delivery {
  task_id: string;
  event: string;
  state: string;
  attempts: number;
  last_status: number | null;
  last_error: string | null;
}

let origin: Origin;
let server: TestServer;
let token: string;
let receiver: Server;
let receiverUrl: string;
let secret = '';
let canary: Server;
let canaryUrl = '';
let canaryHits = 0;
const received: Received[] = [];
/** Answers 500 to the first request of each path, to exercise the retry. */
const seenPaths = new Set<string>();

/** What a receiver does: HMAC-SHA256 of `<timestamp>.<raw body>`, compared in constant time, timestamp fresh. */
function verify(raw: string, timestamp: string | undefined, signature: string | undefined): boolean {
  if (!timestamp || !signature || Math.abs(Date.now() / 1000 - Number(timestamp)) > 300) return false;
  const expected = Buffer.from(
    `sha256=${createHmac('sha256', secret).update(`${timestamp}.${raw}`).digest('hex')}`,
  );
  const got = Buffer.from(signature);
  return got.length === expected.length && timingSafeEqual(got, expected);
}

before(async () => {
  origin = await startOrigin();
  receiver = createServer((req, res) => {
    let raw = '';
    req.on('data', (d: Buffer) => (raw += d.toString()));
    req.on('end', () => {
      const first = !seenPaths.has(req.url!);
      seenPaths.add(req.url!);
      received.push({
        path: req.url!,
        event: String(req.headers['x-ferry-event']),
        body: JSON.parse(raw) as Received['body'],
        signatureOk: verify(
          raw,
          req.headers['x-ferry-timestamp'] as string | undefined,
          req.headers['x-ferry-signature'] as string | undefined,
        ),
      });
      if (req.url === '/redirect') {
        res.writeHead(307, { location: canaryUrl }).end();
        return;
      }
      res.writeHead(first && req.url === '/flaky' ? 500 : 204).end();
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
  // Outside --allow-network 127.0.0.1/32: no webhook may ever reach it.
  canary = createServer((_req, res) => {
    canaryHits++;
    res.writeHead(204).end();
  });
  await new Promise<void>((resolve) => canary.listen(0, '127.0.0.2', resolve));
  canaryUrl = `http://127.0.0.2:${(canary.address() as AddressInfo).port}/stolen`;
  receiverUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`;
  server = await startServer({ args: ['--allow-network', '127.0.0.1/32', '--task-retries', '0'] });
  token = (await server.signIn()).access;
});
after(async () => {
  if (process.env.FERRY_TEST_VERBOSE) console.log(server?.output());
  await server?.stop();
  await origin?.close();
  receiver?.closeAllConnections();
  await new Promise<void>((resolve) => receiver?.close(() => resolve()));
  canary?.closeAllConnections();
  await new Promise<void>((resolve) => canary?.close(() => resolve()));
});

async function task(src: string): Promise<string> {
  const r = await server.api<Array<{ id: string }>>('POST', '/workflow/download', {
    token,
    body: { dst: 'cloudreve://my', src: [src] },
  });
  assert.equal(r.body.code, 0, JSON.stringify(r.body));
  return r.body.data![0]!.id;
}

test('completed and failed tasks are delivered signed; a 500 is retried; the log shows each delivery', async () => {
  const made = await server.api<{ id: number; secret: string; events: string[] }>('POST', '/user/webhooks', {
    token,
    body: { url: `${receiverUrl}/flaky`, events: ['completed', 'failed'] },
  });
  assert.equal(made.body.code, 0, JSON.stringify(made.body));
  secret = made.body.data!.secret;
  assert.ok(secret.length >= 32);
  const hookId = made.body.data!.id;
  const listed = await server.api<Array<{ id: number; url: string }>>('GET', '/user/webhooks', { token });
  assert.deepEqual(
    listed.body.data!.map((h) => h.url),
    [`${receiverUrl}/flaky`],
  );
  assert.ok(!JSON.stringify(listed.body.data).includes(secret), 'the secret is shown once, at creation');

  const ok = await task(origin.route('/hooked.bin', { size: 2000 }));
  const deliveries = async () =>
    (await server.api<Delivery[]>('GET', `/user/webhooks/${hookId}/deliveries`, { token })).body.data!;
  const delivered = await waitFor(
    async () => (await deliveries()).find((d) => d.task_id === ok && d.state === 'delivered'),
    20_000,
    'the completed delivery',
  );
  assert.equal(delivered.event, 'completed');
  assert.equal(delivered.attempts, 2, 'the first attempt got 500 and was retried');
  assert.equal(delivered.last_status, 204);
  const forOk = received.filter((r) => r.body.task.id === ok);
  assert.equal(forOk.length, 2);
  assert.ok(
    forOk.every((r) => r.signatureOk),
    'every delivery carries a valid signature',
  );
  assert.equal(forOk[0]!.event, 'task.completed');
  assert.equal(forOk[0]!.body.task.status, 'completed');

  const bad = await task(origin.route('/gone.bin', { status: 404 }));
  await waitFor(
    async () => (await deliveries()).find((d) => d.task_id === bad && d.state === 'delivered'),
    20_000,
    'the failed delivery',
  );
  const forBad = received.find((r) => r.body.task.id === bad)!;
  assert.equal(forBad.event, 'task.failed');
  assert.ok(forBad.signatureOk);
  assert.match(forBad.body.task.error ?? '', /404/);

  // Another user sees none of it; deleting stops deliveries.
  await server.addUser('eve@example.com', 'eve-password-1');
  const eve = (await server.signIn('eve@example.com', 'eve-password-1')).access;
  assert.deepEqual((await server.api('GET', '/user/webhooks', { token: eve })).body.data, []);
  assert.equal((await server.api('DELETE', `/user/webhooks/${hookId}`, { token: eve })).body.code, 404);
  assert.equal(
    (await server.api('GET', `/user/webhooks/${hookId}/deliveries`, { token: eve })).body.code,
    404,
  );
  assert.equal((await server.api('DELETE', `/user/webhooks/${hookId}`, { token })).body.code, 0);
  const before = received.length;
  await task(origin.route('/after-delete.bin', { size: 10 }));
  await new Promise((r) => setTimeout(r, 1500));
  assert.equal(received.length, before, 'no delivery after the webhook was deleted');
});

test('bad webhooks are refused with 40001: unknown event, non-http URL, refused address', async () => {
  for (const body of [
    { url: `${receiverUrl}/x`, events: ['bogus'] },
    { url: `${receiverUrl}/x`, events: [] },
    { url: 'ftp://127.0.0.1/x', events: ['completed'] },
    { url: 'not a url', events: ['completed'] },
    { url: 'http://127.0.0.2:9/x', events: ['completed'] },
    { url: 'http://169.254.169.254/latest', events: ['completed'] },
  ]) {
    const r = await server.api('POST', '/user/webhooks', { token, body });
    assert.equal(r.body.code, 40001, `${JSON.stringify(body)} → ${JSON.stringify(r.body)}`);
  }
});

test('a webhook redirected to a refused address is not followed there (the policy checks every hop)', async () => {
  const made = await server.api<{ id: number; secret: string }>('POST', '/user/webhooks', {
    token,
    body: { url: `${receiverUrl}/redirect`, events: ['completed'] },
  });
  assert.equal(made.body.code, 0, JSON.stringify(made.body));
  const id = await task(origin.route('/redirected.bin', { size: 10 }));
  const attempt = await waitFor(
    async () =>
      (
        await server.api<Delivery[]>('GET', `/user/webhooks/${made.body.data!.id}/deliveries`, { token })
      ).body.data!.find((d) => d.task_id === id && d.attempts >= 1),
    20_000,
    'the first attempt',
  );
  assert.notEqual(attempt.state, 'delivered');
  assert.match(attempt.last_error ?? '', /refused/, JSON.stringify(attempt));
  assert.equal(canaryHits, 0);
  await server.api('DELETE', `/user/webhooks/${made.body.data!.id}`, { token });
});

test('a canceled task is delivered as task.canceled', async () => {
  const made = await server.api<{ id: number; secret: string }>('POST', '/user/webhooks', {
    token,
    body: { url: `${receiverUrl}/canceled`, events: ['canceled'] },
  });
  assert.equal(made.body.code, 0, JSON.stringify(made.body));
  secret = made.body.data!.secret;
  const id = await task(origin.route('/slow.bin', { size: 8 * 1024 * 1024, throttle: 50_000 }));
  await waitFor(
    async () => {
      const t = (await server.api<{ status: string }>('GET', `/workflow/${id}`, { token })).body.data!;
      return t.status === 'processing' ? t : undefined;
    },
    10_000,
    'the task to run',
  );
  assert.equal((await server.api('DELETE', `/workflow/download/${id}`, { token })).body.code, 0);
  const got = await waitFor(
    async () => received.find((r) => r.path === '/canceled' && r.body.task.id === id),
    20_000,
    'the canceled delivery',
  );
  assert.equal(got.event, 'task.canceled');
  assert.ok(got.signatureOk);
  await server.api('DELETE', `/user/webhooks/${made.body.data!.id}`, { token });
});
