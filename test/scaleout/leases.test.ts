// Scale-out leases with real worker processes on PostgreSQL (pg-boss): every claim is one run
// with its own lease token. A worker whose database went away for longer than the lease never
// runs a task twice at once when it comes back (origin connections per task stay within the
// task's budget), and a stale run that reaches landing cannot delete the blob the winning run
// committed. PostgreSQL only: the scaled-out modes refuse SQLite (test/scaleout/multi-node).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
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
import { createTasks, driveFiles, finished, MiB, readBack, sha256, type Task } from '../faults/helpers.ts';
import { startTcpProxy, type TcpProxy } from '../faults/tcp-proxy.ts';

const LEASE_S = 4;
const NET = ['--allow-network', '127.0.0.1/32', '--task-retries', '3', '--lease-seconds', String(LEASE_S)];

interface RunningTask extends Task {
  node?: { name: string };
  summary?: Task['summary'] & { phase?: string };
}

if (dialect === 'postgres') {
  let origin: Origin;
  before(async () => {
    origin = await startOrigin();
  });
  after(async () => {
    await origin?.close();
  });

  describe('a worker cut off from its database for longer than the lease', () => {
    let server: TestServer;
    let proxy: TcpProxy;
    let worker: TestWorker | undefined;
    after(async () => {
      if (process.env.FERRY_TEST_VERBOSE) console.log(server?.output(), worker?.output());
      await worker?.stop();
      await server?.stop();
      await proxy?.close();
    });

    test('never runs a task twice at once: connections per task stay within its budget', async () => {
      server = await startServer({ args: [...NET, '--scheduler', 'pgboss', '--no-run-tasks'] });
      const target = new URL(server.databaseUrl);
      proxy = await startTcpProxy(Number(target.port || 5432), target.hostname);
      const viaProxy = new URL(server.databaseUrl);
      viaProxy.port = String(proxy.port);
      worker = await startWorker(server, 'w-outage', {
        args: [...NET, '--max-concurrent-tasks', '4'],
        env: { FERRY_DATABASE_URL: viaProxy.toString() },
      });
      const token = (await server.signIn()).access;
      await server.api('POST', '/file/create', {
        token,
        body: { uri: 'cloudreve://my/out', type: 'folder' },
      });
      const size = 8 * MiB;
      const paths = [0, 1, 2].map((i) => `/outage-${i}.bin`);
      const srcs = paths.map((p, i) => origin.route(p, { size, seed: 900 + i, throttle: 192 * 1024 }));
      const tasks = await createTasks(server, token, srcs, 'cloudreve://my/out', { connections: 2 });
      await waitFor(
        async () => (paths.every((p) => origin.bytesServed(p) > 512 * 1024) ? true : undefined),
        30_000,
        'every task to be downloading',
      );
      // Away for 2.5 leases: the API node's supervision puts the tasks back in the queue.
      proxy.cut('reset');
      await sleep(LEASE_S * 2500);
      proxy.restore();
      for (const [i, t] of tasks.entries()) {
        const done = await finished(server, token, t.id, 120_000);
        assert.equal(done.status, 'completed', JSON.stringify(done));
        const body = await readBack(server, token, `cloudreve://my/out/outage-${i}.bin`);
        assert.equal(sha256(body), expectedSha256(size, 900 + i));
      }
      for (const p of paths)
        assert.ok(
          origin.maxConcurrent(p) <= 2,
          `${p}: ${origin.maxConcurrent(p)} connections at once (budget 2)`,
        );
      const names = (await driveFiles(server)).filter((f) => f.folder === 'out').map((f) => f.name);
      assert.deepEqual(names.sort(), ['outage-0.bin', 'outage-1.bin', 'outage-2.bin'], 'one file per task');
    });
  });

  describe('a stale run that reaches landing', () => {
    let server: TestServer;
    let s3: LocalS3;
    const workers: TestWorker[] = [];
    after(async () => {
      if (process.env.FERRY_TEST_VERBOSE) console.log(server?.output(), ...workers.map((w) => w.output()));
      for (const w of workers) {
        w.kill('SIGCONT');
        await w.stop();
      }
      await server?.stop();
      await s3?.stop();
    });

    test('cannot delete or overwrite the blob the winning run landed', async () => {
      s3 = await startS3();
      const storage = [
        ...['--storage', 's3', '--s3-endpoint', s3.endpoint, '--s3-bucket', s3.bucket],
        ...['--s3-access-key', s3.accessKey, '--s3-secret-key', s3.secretKey],
      ];
      server = await startServer({ args: [...NET, ...storage, '--scheduler', 'pgboss', '--no-run-tasks'] });
      for (const name of ['s1', 's2'])
        workers.push(await startWorker(server, name, { args: [...NET, ...storage] }));
      const token = (await server.signIn()).access;
      await server.api('POST', '/file/create', { token, body: { uri: 'cloudreve://my/st', type: 'folder' } });
      // Large enough that moving it into the object store takes a while: the stale run is
      // frozen (SIGSTOP) in the middle of that, after its lease check and before its commit.
      const size = 48 * MiB;
      const src = origin.route('/stale.bin', { size, seed: 950 });
      const [task] = await createTasks(server, token, [src], 'cloudreve://my/st', { connections: 4 });
      const landing = await waitFor(
        async () => {
          const t = (await server.api<RunningTask>('GET', `/workflow/${task!.id}`, { token })).body.data;
          return t?.summary?.phase === 'transfer' && t.status === 'processing' ? t : undefined;
        },
        60_000,
        'the task to be landing',
      );
      const stale = workers.find((w) => w.name === landing.node?.name)!;
      stale.kill('SIGSTOP');
      // The lease lapses; the other worker takes the task over and lands it.
      const done = (await finished(server, token, task!.id, 60_000)) as RunningTask;
      assert.equal(done.status, 'completed', JSON.stringify(done));
      assert.notEqual(done.node?.name, stale.name, 'the other worker finished it');
      stale.kill('SIGCONT');
      // The stale run wakes up and ends its landing (its commit is refused).
      await sleep(LEASE_S * 1500);
      const body = await readBack(server, token, 'cloudreve://my/st/stale.bin');
      assert.equal(sha256(body), expectedSha256(size, 950), 'the landed file is intact');
      const files = (await driveFiles(server)).filter((f) => f.folder === 'st');
      assert.deepEqual(
        files.map((f) => f.name),
        ['stale.bin'],
        'exactly one file',
      );
    });
  });

  describe('a worker holding pinned tasks (preferred_node_id) stops or dies', () => {
    let server: TestServer;
    const workers = new Map<string, TestWorker>();
    let token = '';
    before(async () => {
      server = await startServer({ args: [...NET, '--scheduler', 'pgboss', '--no-run-tasks'] });
      token = (await server.signIn()).access;
      await server.api('POST', '/file/create', {
        token,
        body: { uri: 'cloudreve://my/pin', type: 'folder' },
      });
      workers.set(
        'keeper',
        await startWorker(server, 'keeper', { args: [...NET, '--max-concurrent-tasks', '8'] }),
      );
    });
    after(async () => {
      if (process.env.FERRY_TEST_VERBOSE)
        console.log(server?.output(), ...[...workers.values()].map((w) => w.output()));
      for (const w of workers.values()) await w.stop();
      await server?.stop();
    });

    for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
      test(`${signal}: its running and waiting pinned tasks all complete on the other worker within lease + 10 s`, async () => {
        const name = `pinned-${signal.toLowerCase()}`;
        const victim = await startWorker(server, name, { args: [...NET, '--max-concurrent-tasks', '2'] });
        workers.set(name, victim);
        const nodes = (
          await server.api<Array<{ id: string; name: string }>>('GET', '/user/setting/nodes', { token })
        ).body.data!;
        const pinnedTo = nodes.find((n) => n.name === name)!.id;
        const size = 2 * MiB;
        const paths = [0, 1, 2, 3].map((i) => `/${name}-${i}.bin`);
        const srcs = paths.map((p, i) => origin.route(p, { size, seed: 1000 + i, throttle: 256 * 1024 }));
        // Two run on the victim, two wait in its own queue.
        const tasks = await createTasks(server, token, srcs, 'cloudreve://my/pin', {
          connections: 2,
          preferred_node_id: pinnedTo,
        });
        await waitFor(
          async () =>
            paths.filter((p) => origin.bytesServed(p) > 256 * 1024).length >= 2 ? true : undefined,
          30_000,
          'two pinned tasks to be downloading on the victim',
        );
        const killedAt = Date.now();
        victim.kill(signal);
        await victim.exited();
        workers.delete(name);
        for (const [i, t] of tasks.entries()) {
          const left = LEASE_S * 1000 + 10_000 - (Date.now() - killedAt);
          const done = (await finished(server, token, t.id, Math.max(0, left))) as RunningTask;
          assert.equal(done.status, 'completed', JSON.stringify(done));
          assert.equal(done.node?.name, 'keeper');
          const body = await readBack(server, token, `cloudreve://my/pin/${name}-${i}.bin`);
          assert.equal(sha256(body), expectedSha256(size, 1000 + i));
        }
      });
    }
  });

  describe('an API node that runs tasks beside a worker', () => {
    let server: TestServer;
    let worker: TestWorker | undefined;
    after(async () => {
      await worker?.stop();
      await server?.stop();
    });

    test('the worker cleans abandoned staging at start; /metrics counts each of the node’s own bytes once', async () => {
      server = await startServer({ args: [...NET, '--scheduler', 'pgboss', '--max-concurrent-tasks', '2'] });
      // Partials of a task that no longer exists, left by an earlier run of some node.
      const abandoned = join(server.dataDir, 'staging', 'tasks', '987654');
      await mkdir(abandoned, { recursive: true });
      await writeFile(join(abandoned, 'part.bin'), Buffer.alloc(256 * 1024));
      worker = await startWorker(server, 'w-metrics', { args: [...NET, '--max-concurrent-tasks', '2'] });
      assert.equal(existsSync(abandoned), false, 'the worker removed the abandoned partials');
      // A worker whose data dir has another secret.key would sign links nobody else accepts.
      const otherDir = await mkdtemp(join(tmpdir(), 'ferry-other-'));
      try {
        await writeFile(join(otherDir, 'secret.key'), randomBytes(32).toString('hex') + '\n', {
          mode: 0o600,
        });
        await assert.rejects(
          startWorker(server, 'w-stranger', { args: NET, env: { FERRY_DATA_DIR: otherDir } }),
          /secret\.key differs from the API node's/,
        );
      } finally {
        await rm(otherDir, { recursive: true, force: true });
      }
      const token = (await server.signIn()).access;
      await server.api('POST', '/file/create', { token, body: { uri: 'cloudreve://my/m', type: 'folder' } });
      const size = 512 * 1024;
      const srcs = Array.from({ length: 6 }, (_, i) =>
        origin.route(`/metrics-${i}.bin`, { size, seed: 1100 + i, throttle: 256 * 1024 }),
      );
      const tasks = await createTasks(server, token, srcs, 'cloudreve://my/m', { connections: 1 });
      let own = 0;
      for (const t of tasks) {
        const done = (await finished(server, token, t.id)) as RunningTask;
        assert.equal(done.status, 'completed', JSON.stringify(done));
        if (done.node?.name === 'Master') own += size;
      }
      assert.ok(own > 0 && own < 6 * size, `both nodes ran tasks (API node: ${own / size})`);
      await sleep(1500); // late (relayed) events of the last completions
      const text = await (await fetch(`${server.url}/metrics`)).text();
      const counted = Number(/^ferry_downloaded_bytes_total (\d+)/m.exec(text)?.[1]);
      assert.equal(counted, own, 'bytes of the API node’s own tasks, each once');
    });
  });
}
