// Load through the whole server, bounded in count and time: 200 concurrent task creations,
// 100 concurrent downloads (queued behind --max-concurrent-tasks), 50 concurrent Range readers
// of one file, and slow clients trickling a big file while other users keep being answered fast.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { get as httpGet, type IncomingMessage } from 'node:http';
import { join } from 'node:path';
import { contentRange, expectedSha256, startOrigin, type Origin } from '../helpers/origin.ts';
import { startServer, waitFor, type TestServer } from '../helpers/server.ts';
import { assertNoOrphans, createTasks, driveFiles, MiB, settled, signedUrl, type Task } from './helpers.ts';

const MAX_CONCURRENT = 40;
let origin: Origin;
let server: TestServer;
let token: string;

before(async () => {
  origin = await startOrigin();
  server = await startServer({
    args: ['--allow-network', '127.0.0.1/32', '--max-concurrent-tasks', String(MAX_CONCURRENT)],
  });
  token = (await server.signIn()).access;
  for (const name of ['many', 'hundred', 'same', 'big'])
    await server.api('POST', '/file/create', {
      token,
      body: { uri: `cloudreve://my/${name}`, type: 'folder' },
    });
});
after(async () => {
  if (process.env.FERRY_TEST_VERBOSE) console.log(server?.output());
  await server?.stop();
  await origin?.close();
});

/** SHA-256 of a stored blob, read from the data dir (local storage). */
async function blobSha(key: string): Promise<string> {
  return createHash('sha256')
    .update(await readFile(join(server.dataDir, 'blobs', key)))
    .digest('hex');
}

/** Samples the number of processing tasks until stopped; returns the highest seen. */
function watchProcessing(): { stop(): Promise<number> } {
  let max = 0;
  let running = true;
  const loop = (async () => {
    while (running) {
      const rows = await server.sql<{ n: number }>(
        "SELECT COUNT(*) AS n FROM tasks WHERE status = 'processing'",
      );
      max = Math.max(max, Number(rows[0]!.n));
      await new Promise((r) => setTimeout(r, 100));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return max;
    },
  };
}

test('200 concurrent task creations: all succeed, no duplicates, no 5xx, all complete', async () => {
  const srcs = Array.from({ length: 200 }, (_, i) =>
    origin.route(`/many-${i}.bin`, { size: 64 * 1024 + i, seed: 1000 + i }),
  );
  const answers = await Promise.all(
    srcs.map((src) =>
      server.api<Task[]>('POST', '/workflow/download', {
        token,
        body: { dst: 'cloudreve://my/many', src: [src] },
      }),
    ),
  );
  for (const a of answers) {
    assert.ok(a.status < 500, `HTTP ${a.status}`);
    assert.equal(a.body.code, 0, JSON.stringify(a.body));
    assert.equal(a.body.data!.length, 1);
  }
  const ids = answers.map((a) => a.body.data![0]!.id);
  assert.equal(new Set(ids).size, 200, 'distinct task ids');
  const rows = await server.sql<{ n: number }>(
    "SELECT COUNT(*) AS n FROM tasks WHERE dst = 'cloudreve://my/many'",
  );
  assert.equal(Number(rows[0]!.n), 200, 'exactly 200 task rows');
  await settled(server, 120_000);
  const files = (await driveFiles(server)).filter((f) => f.folder === 'many');
  assert.deepEqual(
    files.map((f) => f.name).sort(),
    srcs.map((_, i) => `many-${i}.bin`).sort(),
    'one file per task, no renamed duplicates',
  );
  for (const f of files) {
    const i = Number(/many-(\d+)/.exec(f.name)![1]);
    assert.equal(await blobSha(f.storage_key), expectedSha256(64 * 1024 + i, 1000 + i), f.name);
  }
});

test('100 concurrent downloads queue behind --max-concurrent-tasks and all complete byte-exact', async () => {
  const size = 2 * MiB;
  const srcs = Array.from({ length: 100 }, (_, i) =>
    origin.route(`/hundred-${i}.bin`, { size, seed: 2000 + i, throttle: 512 * 1024 }),
  );
  const watch = watchProcessing();
  const t0 = Date.now();
  const tasks = await createTasks(server, token, srcs, 'cloudreve://my/hundred', { connections: 2 });
  assert.equal(tasks.length, 100);
  await settled(server, 150_000);
  const elapsed = Date.now() - t0;
  const peak = await watch.stop();
  assert.ok(peak <= MAX_CONCURRENT, `at most ${MAX_CONCURRENT} processing at once, saw ${peak}`);
  assert.ok(peak >= 10, `downloads ran side by side (peak ${peak})`);
  const statuses = await server.sql<{ status: string; n: number }>(
    "SELECT status, COUNT(*) AS n FROM tasks WHERE dst = 'cloudreve://my/hundred' GROUP BY status",
  );
  assert.deepEqual(
    statuses.map((s) => [s.status, Number(s.n)]),
    [['completed', 100]],
  );
  const files = (await driveFiles(server)).filter((f) => f.folder === 'hundred');
  assert.equal(files.length, 100);
  for (const f of files) {
    const i = Number(/hundred-(\d+)/.exec(f.name)![1]);
    assert.equal(await blobSha(f.storage_key), expectedSha256(size, 2000 + i), f.name);
  }
  if (process.env.FAULTS_DEBUG) console.log(`100 × 2 MiB in ${elapsed} ms, peak ${peak} processing`);
});

test('20 concurrent downloads of one name into one folder: 20 distinct files, none lost', async () => {
  const src = origin.route('/same.bin', { size: 256 * 1024, seed: 3000 });
  const answers = await Promise.all(
    Array.from({ length: 20 }, () => createTasks(server, token, [src], 'cloudreve://my/same')),
  );
  assert.equal(answers.flat().length, 20);
  await settled(server, 60_000);
  const failed = await server.sql<{ n: number }>(
    "SELECT COUNT(*) AS n FROM tasks WHERE dst = 'cloudreve://my/same' AND status <> 'completed'",
  );
  assert.equal(Number(failed[0]!.n), 0, 'every task completed');
  const files = (await driveFiles(server)).filter((f) => f.folder === 'same');
  assert.equal(files.length, 20);
  assert.equal(new Set(files.map((f) => f.name)).size, 20, 'distinct names (auto-renamed)');
});

test('50 clients reading ranges of the same file concurrently are all byte-exact', async () => {
  const size = 24 * MiB;
  const [task] = await createTasks(
    server,
    token,
    [origin.route('/shared.bin', { size, seed: 4000 })],
    'cloudreve://my/big',
  );
  await settled(server, 60_000);
  assert.ok(task);
  const url = await signedUrl(server, token, 'cloudreve://my/big/shared.bin');
  let seed = 42;
  const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  const reads = Array.from({ length: 50 }, (_, i) => {
    if (i % 10 === 0) return { start: 0, end: size - 1 }; // a few whole-file reads too
    const start = Math.floor(random() * (size - 1));
    const end = Math.min(size - 1, start + Math.floor(random() * 4 * MiB));
    return { start, end };
  });
  const results = await Promise.all(
    reads.map(async ({ start, end }) => {
      const res = await fetch(url, { headers: { range: `bytes=${start}-${end}` } });
      const body = Buffer.from(await res.arrayBuffer());
      return { status: res.status, body, start, end };
    }),
  );
  for (const r of results) {
    assert.ok(
      r.status === 206 || (r.status === 200 && r.start === 0 && r.end === size - 1),
      `status ${r.status}`,
    );
    assert.equal(r.body.length, r.end - r.start + 1);
    assert.ok(r.body.equals(contentRange(4000, r.start, r.end + 1)), `bytes ${r.start}-${r.end}`);
  }
});

test('slow clients trickling a big file do not slow other users down', async () => {
  const url = await signedUrl(server, token, 'cloudreve://my/big/shared.bin');
  // 8 clients that read at about 4 KiB/s: they take their socket's worth and then pause.
  const slow: IncomingMessage[] = [];
  const received = new Array<number>(8).fill(0);
  await Promise.all(
    received.map(
      (_, i) =>
        new Promise<void>((resolve, reject) => {
          httpGet(url, (res) => {
            slow.push(res);
            res.on('data', (chunk: Buffer) => {
              received[i]! += chunk.length;
              res.pause();
              setTimeout(() => res.resume(), Math.ceil((chunk.length / 4096) * 1000));
            });
            res.on('error', () => undefined);
            resolve();
          }).on('error', reject);
        }),
    ),
  );
  // Another user, meanwhile: sign in, list, create a task, get a link, read a small file.
  await server.addUser('other@example.com', 'other-password-1');
  const other = (await server.signIn('other@example.com', 'other-password-1')).access;
  await server.api('POST', '/file/create', {
    token: other,
    body: { uri: 'cloudreve://my/o', type: 'folder' },
  });
  const small = origin.route('/other-small.bin', { size: 32 * 1024, seed: 5000 });
  const [t] = await createTasks(server, other, [small], 'cloudreve://my/o');
  await waitFor(async () => {
    const r = await server.api<Task>('GET', `/workflow/${t!.id}`, { token: other });
    return r.body.data?.status === 'completed' ? true : undefined;
  });
  const otherUrl = await signedUrl(server, other, 'cloudreve://my/o/other-small.bin');
  const latencies: number[] = [];
  const deadline = Date.now() + 6000;
  while (Date.now() < deadline) {
    for (const call of [
      () => server.api('GET', `/file?uri=${encodeURIComponent('cloudreve://my/o')}`, { token: other }),
      () => server.api('GET', '/user/me', { token: other }),
      async () => {
        const res = await fetch(otherUrl);
        assert.equal(
          createHash('sha256')
            .update(Buffer.from(await res.arrayBuffer()))
            .digest('hex'),
          expectedSha256(32 * 1024, 5000),
        );
        return res;
      },
    ]) {
      const t0 = performance.now();
      await call();
      latencies.push(performance.now() - t0);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  const worst = Math.max(...latencies);
  const total = received.reduce((a, b) => a + b, 0);
  for (const res of slow) res.destroy();
  if (process.env.FAULTS_DEBUG)
    console.log(
      `other user's ${latencies.length} requests: worst ${worst.toFixed(0)} ms; slow clients got ${total} bytes`,
    );
  assert.ok(worst < 2000, `another user's request took ${worst.toFixed(0)} ms while slow clients trickled`);
  assert.ok(
    received.every((n) => n > 0 && n < 8 * MiB),
    `slow clients really were slow: ${received.join(', ')}`,
  );
  await settled(server);
  await assertNoOrphans(server);
});
