// A cap on unfinished tasks per user (--max-unfinished-tasks): a request that would go over it
// is refused whole on both faces, with a clear error, and room comes back as tasks end.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startOrigin, type Origin } from '../helpers/origin.ts';
import { startServer, type TestServer } from '../helpers/server.ts';

let origin: Origin;
let server: TestServer;
let token: string;

before(async () => {
  origin = await startOrigin();
  // The environment variable, not a flag: the server also starts on code without the setting.
  server = await startServer({
    args: ['--allow-network', '127.0.0.1/32', '--max-concurrent-tasks', '1'],
    env: { FERRY_MAX_UNFINISHED_TASKS: '3' },
  });
  token = (await server.signIn()).access;
});
after(async () => {
  await server?.stop();
  await origin?.close();
});

test('a user holds at most --max-unfinished-tasks queued or running tasks', async () => {
  // A trickle of 16 KiB/s for 64 MiB: the running task keeps making progress (no stall timeout
  // ends it) and the others wait behind --max-concurrent-tasks 1, so none finishes here.
  const slow = (n: number) => origin.route(`/slow-${n}.bin`, { size: 64 * 1024 * 1024, throttle: 16 * 1024 });
  const create = (src: string[]) =>
    server.api<Array<{ id: string }>>('POST', '/workflow/download', {
      token,
      body: { dst: 'cloudreve://my', src },
    });
  const first = await create([slow(1), slow(2)]);
  assert.equal(first.body.code, 0, JSON.stringify(first.body));
  // Two more would make four: the whole batch is refused.
  const over = await create([slow(3), slow(4)]);
  assert.equal(over.body.code, 40048, JSON.stringify(over.body));
  assert.match(over.body.msg, /at most 3/);
  const third = await create([slow(5)]);
  assert.equal(third.body.code, 0, JSON.stringify(third.body));
  // The path face refuses with its own envelope.
  const res = await fetch(`${server.url}/files/?download=${encodeURIComponent(slow(6))}`, {
    headers: { authorization: `Bearer ${token}` },
  });
  const body = (await res.json()) as { success: boolean; error: string; message: string };
  assert.equal(res.status, 429, JSON.stringify(body));
  assert.equal(body.success, false);
  assert.equal(body.error, 'TOO_MANY_TASKS');
  assert.match(body.message, /at most 3/);
  // Canceling one makes room again.
  const id = first.body.data![0]!.id;
  assert.equal((await server.api('DELETE', `/workflow/download/${id}`, { token })).body.code, 0);
  const again = await create([slow(7)]);
  assert.equal(again.body.code, 0, JSON.stringify(again.body));
});
