// Scale-out: one API node (`ferry serve --scheduler pgboss --no-run-tasks`) and two
// `ferry worker` processes on one PostgreSQL database, blobs on an S3-protocol server (s3rver) and
// one data dir (a shared staging area),
// fetching from a throttled loopback origin. On the SQLite pass the file checks that the
// scaled-out modes refuse a SQLite database with a clear error.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { expectedSha256, startOrigin, type Origin } from '../helpers/origin.ts';
import { startS3, type LocalS3 } from '../storage/s3rver.ts';
import {
  dialect,
  startServer,
  startWorker,
  waitFor,
  type TestServer,
  type TestWorker,
} from '../helpers/server.ts';

interface Node {
  id: string;
  name: string;
  type: string;
  capabilities: string;
}
interface Task {
  id: string;
  status: string;
  error?: string;
  node?: Node;
  summary?: { phase?: string; props: { download: null | { total: number; downloaded: number } } };
}

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

if (dialect !== 'postgres') {
  test('ferry worker and --scheduler pgboss refuse a SQLite database with a clear error', async () => {
    const server = await startServer();
    try {
      await assert.rejects(startWorker(server, 'w1'), (e: Error) => {
        assert.match(e.message, /ferry worker needs the PostgreSQL database/);
        assert.match(e.message, /SQLite file cannot be shared/);
        return true;
      });
      const serve = await server.cli(['serve', '--scheduler', 'pgboss', '--port', '0']);
      assert.equal(serve.code, 1);
      assert.match(serve.stderr, /--scheduler pgboss needs a PostgreSQL database/);
      const apiOnly = await server.cli(['serve', '--no-run-tasks', '--port', '0']);
      assert.equal(apiOnly.code, 1);
      assert.match(apiOnly.stderr, /--no-run-tasks needs --scheduler pgboss/);
      const nameless = await server.cli(['worker']);
      assert.equal(nameless.code, 1);
    } finally {
      await server.stop();
    }
  });
} else {
  const LEASE_S = 4;
  // Every node gets the same settings; blobs live on an S3-protocol server (added in before()).
  const NET = ['--allow-network', '127.0.0.1/32', '--task-retries', '1', '--lease-seconds', String(LEASE_S)];
  let s3: LocalS3 | undefined;
  let origin: Origin;
  let server: TestServer;
  let token: string;
  const workers = new Map<string, TestWorker>();

  const create = (src: string[], extra: Record<string, unknown> = {}) =>
    server.api<Task[]>('POST', '/workflow/download', {
      token,
      body: { dst: 'cloudreve://my/dl', src, ...extra },
    });
  const get = async (id: string) => (await server.api<Task>('GET', `/workflow/${id}`, { token })).body.data!;
  const finished = (id: string, timeoutMs = 60_000) =>
    waitFor(
      async () => {
        const t = await get(id);
        return ['completed', 'error', 'canceled'].includes(t.status) ? t : undefined;
      },
      timeoutMs,
      `task ${id} to finish`,
    );
  const readBack = async (path: string): Promise<Buffer> => {
    const r = await server.api<{ urls: Array<{ url: string }> }>('POST', '/file/url', {
      token,
      body: { uris: [path] },
    });
    assert.equal(r.body.code, 0, JSON.stringify(r.body));
    return Buffer.from(await (await fetch(r.body.data!.urls[0]!.url)).arrayBuffer());
  };
  const listNames = async (): Promise<string[]> => {
    const r = await server.api<{ files: Array<{ name: string }> }>(
      'GET',
      `/file?uri=${encodeURIComponent('cloudreve://my/dl')}`,
      { token },
    );
    return r.body.data?.files.map((f) => f.name) ?? [];
  };
  const nodes = async () => (await server.api<Node[]>('GET', '/user/setting/nodes', { token })).body.data!;

  before(async () => {
    origin = await startOrigin();
    s3 = await startS3();
    NET.push(
      '--storage',
      's3',
      '--s3-endpoint',
      s3.endpoint,
      '--s3-bucket',
      s3.bucket,
      '--s3-access-key',
      s3.accessKey,
      '--s3-secret-key',
      s3.secretKey,
    );
    server = await startServer({ args: [...NET, '--scheduler', 'pgboss', '--no-run-tasks'] });
    token = (await server.signIn()).access;
    await server.api('POST', '/file/create', { token, body: { uri: 'cloudreve://my/dl', type: 'folder' } });
    for (const name of ['w1', 'w2']) {
      workers.set(name, await startWorker(server, name, { args: [...NET, '--max-concurrent-tasks', '4'] }));
    }
  });
  after(async () => {
    if (process.env.FERRY_TEST_VERBOSE) {
      console.log(server?.output());
      for (const w of workers.values()) console.log(`--- ${w.name}\n${w.output()}`);
    }
    for (const w of workers.values()) await w.stop();
    await server?.stop();
    await origin?.close();
    await s3?.stop();
  });

  describe('worker nodes on pg-boss', () => {
    test('workers register as slave nodes with the remote-download capability; the API-only node has none', async () => {
      const list = await nodes();
      const byName = new Map(list.map((n) => [n.name, n]));
      for (const name of ['w1', 'w2']) {
        assert.equal(byName.get(name)?.type, 'slave');
        assert.equal(byName.get(name)?.capabilities, 'CA==', 'bit 3 = remote download');
      }
      assert.equal(byName.get('Master')?.capabilities, '', '--no-run-tasks: the API node runs none');
      // A second worker with a live node's name is refused.
      await assert.rejects(startWorker(server, 'w1', { args: NET }), /already running/);
    });

    test('20 tasks spread across both workers, every file byte-exact', async () => {
      const size = 384 * 1024;
      const srcs = Array.from({ length: 20 }, (_, i) =>
        origin.route(`/spread-${i}.bin`, { size, seed: 100 + i, throttle: 512 * 1024 }),
      );
      const started = Date.now();
      const r = await create(srcs);
      assert.equal(r.body.code, 0, JSON.stringify(r.body));
      const first = await waitFor(
        async () => {
          const t = await get(r.body.data![0]!.id);
          return t.status !== 'queued' ? t : undefined;
        },
        10_000,
        'the first task to start',
      );
      assert.ok(
        Date.now() - started < 3000,
        `a task starts within about a second (${Date.now() - started} ms)`,
      );
      assert.ok(first.status === 'processing' || first.status === 'completed');
      const ran = new Map<string, number>();
      for (const t of r.body.data!) {
        const done = await finished(t.id);
        assert.equal(done.status, 'completed', JSON.stringify(done));
        assert.ok(done.node, 'a finished task names the node that ran it');
        ran.set(done.node.name, (ran.get(done.node.name) ?? 0) + 1);
      }
      assert.ok((ran.get('w1') ?? 0) > 0 && (ran.get('w2') ?? 0) > 0, JSON.stringify([...ran]));
      assert.equal(ran.get('Master'), undefined, 'the API-only node ran nothing');
      for (let i = 0; i < 20; i++)
        assert.equal(
          sha256(await readBack(`cloudreve://my/dl/spread-${i}.bin`)),
          expectedSha256(size, 100 + i),
        );
    });

    test('preferred_node_id: honoured; unknown, offline or incapable nodes are refused', async () => {
      const w2 = (await nodes()).find((n) => n.name === 'w2')!;
      const srcs = Array.from({ length: 4 }, (_, i) =>
        origin.route(`/pref-${i}.bin`, { size: 100_000, seed: 200 + i }),
      );
      const r = await create(srcs, { preferred_node_id: w2.id });
      assert.equal(r.body.code, 0, JSON.stringify(r.body));
      for (const t of r.body.data!) {
        const done = await finished(t.id);
        assert.equal(done.status, 'completed');
        assert.equal(done.node?.name, 'w2');
      }
      const unknown = await create([srcs[0]!], { preferred_node_id: 'zzzzzz' });
      assert.notEqual(unknown.body.code, 0);
      const master = (await nodes()).find((n) => n.name === 'Master')!;
      const incapable = await create([srcs[0]!], { preferred_node_id: master.id });
      assert.equal(incapable.body.code, 50010);
      assert.match(incapable.body.msg, /does not run remote downloads/);
    });

    test('the API node streams a worker\u2019s progress over SSE', async () => {
      const src = origin.route('/sse.bin', { size: 1024 * 1024, seed: 300, throttle: 400 * 1024 });
      const controller = new AbortController();
      const res = await fetch(`${server.url}/api/v4/workflow/events`, {
        headers: { authorization: `Bearer ${token}` },
        signal: controller.signal,
      });
      const r = await create([src], { connections: 1 });
      const id = r.body.data![0]!.id;
      const seen: Task[] = [];
      const decoder = new TextDecoder();
      let buffer = '';
      try {
        for await (const chunk of res.body!) {
          buffer += decoder.decode(chunk as Uint8Array, { stream: true });
          let end;
          while ((end = buffer.indexOf('\n\n')) >= 0) {
            const block = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            const data = block.split('\n').find((l) => l.startsWith('data: '));
            if (!data) continue;
            const task = JSON.parse(data.slice(6)) as Task;
            if (task.id === id) seen.push(task);
          }
          if (seen.some((t) => t.status === 'completed')) break;
        }
      } finally {
        controller.abort();
      }
      const progress = seen.filter(
        (t) =>
          t.status === 'processing' &&
          (t.summary?.props.download?.downloaded ?? 0) > 0 &&
          (t.summary?.props.download?.downloaded ?? 0) < 1024 * 1024,
      );
      assert.ok(
        progress.length >= 1,
        `partial progress events: ${JSON.stringify(seen.map((t) => t.status))}`,
      );
      assert.equal((await get(id)).node?.type, 'slave');
    });

    test('cancel reaches the worker running the task within a second', async () => {
      const src = origin.route('/cancel.bin', { size: 8 * 1024 * 1024, seed: 400, throttle: 256 * 1024 });
      const r = await create([src], { connections: 1 });
      const id = r.body.data![0]!.id;
      const running = await waitFor(
        async () => {
          const t = await get(id);
          return t.status === 'processing' && (t.summary?.props.download?.downloaded ?? 0) > 0
            ? t
            : undefined;
        },
        15_000,
        'the task to be downloading',
      );
      assert.equal(running.node?.type, 'slave');
      assert.ok(origin.openSockets() > 0);
      const t0 = Date.now();
      const cancel = await server.api('DELETE', `/workflow/download/${id}`, { token });
      assert.equal(cancel.body.code, 0, JSON.stringify(cancel.body));
      await waitFor(
        async () => (origin.openSockets() === 0 ? true : undefined),
        5000,
        'origin sockets to close',
      );
      const elapsed = Date.now() - t0;
      assert.ok(elapsed < 1000, `the remote node dropped the transfer in ${elapsed} ms`);
      assert.equal((await finished(id)).status, 'canceled');
      assert.ok(!(await listNames()).includes('cancel.bin'));
    });

    test('a worker killed mid-task: its lease lapses and the other worker finishes it, no duplicate file', async () => {
      const size = 6 * 1024 * 1024;
      const src = origin.route('/killed.bin', { size, seed: 500, throttle: 1024 * 1024 });
      const r = await create([src], { connections: 1 });
      const id = r.body.data![0]!.id;
      const running = await waitFor(
        async () => {
          const t = await get(id);
          return t.status === 'processing' && (t.summary?.props.download?.downloaded ?? 0) > 1536 * 1024
            ? t
            : undefined;
        },
        20_000,
        'the task to be well under way',
      );
      const victim = workers.get(running.node!.name)!;
      const survivor = [...workers.values()].find((w) => w !== victim)!;
      victim.kill('SIGKILL');
      await victim.exited();
      workers.delete(victim.name);
      const done = await finished(id, 60_000);
      assert.equal(done.status, 'completed', JSON.stringify(done));
      assert.equal(done.node?.name, survivor.name);
      assert.equal(sha256(await readBack('cloudreve://my/dl/killed.bin')), expectedSha256(size, 500));
      const names = (await listNames()).filter((n) => n.startsWith('killed'));
      assert.deepEqual(names, ['killed.bin'], 'exactly one file');
      // The shared staging area let the survivor resume from the partial data.
      const ranges = origin.requests('/killed.bin').map((q) => q.range ?? '');
      assert.ok(
        ranges.some((range) => /^bytes=[1-9]\d*-/.test(range)),
        `a resumed request: ${JSON.stringify(ranges)}`,
      );
      assert.ok(
        origin.bytesServed('/killed.bin') < size * 1.5,
        `${origin.bytesServed('/killed.bin')} bytes served`,
      );
    });
  });
}
