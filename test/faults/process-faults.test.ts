// Process faults: SIGKILL at seeded random instants during concurrent downloads, a full disk
// (a small tmpfs as the data dir), and an unreachable database (PostgreSQL behind a proxy that
// is cut and restored). After each: every task byte-exact or failed clearly, one file per task,
// no orphan staging file, no orphan blob, and the server answering.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rmdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { expectedSha256, startOrigin, type Origin } from '../helpers/origin.ts';
import { dialect, startServer, waitFor, type TestServer } from '../helpers/server.ts';
import {
  assertNoOrphans,
  createTasks,
  driveFiles,
  failureOf,
  finished,
  MiB,
  readBack,
  settled,
  sha256,
} from './helpers.ts';
import { startTcpProxy, type TcpProxy } from './tcp-proxy.ts';

let origin: Origin;
before(async () => {
  origin = await startOrigin();
});
after(async () => {
  await origin?.close();
});

/** mulberry32: a small seeded PRNG, so a failing kill schedule can be replayed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('SIGKILL during 20 concurrent downloads', () => {
  let server: TestServer;
  after(async () => {
    if (process.env.FERRY_TEST_VERBOSE) console.log(server?.output());
    await server?.stop();
  });

  test('3–5 kills at seeded instants: every task completes byte-exact, once, with no orphans', async () => {
    const seed = Number(process.env.FAULTS_SEED ?? 20_241_123);
    const random = prng(seed);
    server = await startServer({
      args: ['--allow-network', '127.0.0.1/32', '--max-concurrent-tasks', '20', '--task-retries', '5'],
    });
    let token = (await server.signIn()).access;
    await server.api('POST', '/file/create', {
      token,
      body: { uri: 'cloudreve://my/chaos', type: 'folder' },
    });
    // 20 files of 1–6 MiB, throttled per connection so they overlap the kills; some finish
    // between kills, so kills also land in the landing window.
    const files = Array.from({ length: 20 }, (_, i) => ({
      name: `chaos-${i}.bin`,
      size: Math.round((1 + random() * 5) * MiB),
      seed: 500 + i,
    }));
    const srcs = files.map((f) =>
      origin.route(`/${f.name}`, { size: f.size, seed: f.seed, throttle: 256 * 1024 }),
    );
    const tasks = await createTasks(server, token, srcs, 'cloudreve://my/chaos', { connections: 2 });
    assert.equal(tasks.length, 20);
    const kills = 3 + Math.floor(random() * 3);
    const schedule: number[] = [];
    for (let k = 0; k < kills; k++) {
      const wait = Math.round(700 + random() * 2300);
      schedule.push(wait);
      await new Promise((r) => setTimeout(r, wait));
      await server.crashAndRestart();
    }
    token = (await server.signIn()).access;
    const done = await Promise.all(tasks.map((t) => finished(server, token, t.id, 150_000)));
    const context = `seed ${seed}, ${kills} kills after ${schedule.join('/')} ms`;
    for (const [i, d] of done.entries())
      assert.equal(d.status, 'completed', `${files[i]!.name} (${context}): ${JSON.stringify(d)}`);
    const inDrive = (await driveFiles(server)).filter((f) => f.folder === 'chaos');
    assert.deepEqual(
      inDrive.map((f) => f.name).sort(),
      files.map((f) => f.name).sort(),
      `exactly one file per task, no "name (1)" re-landings (${context})`,
    );
    for (const f of files) {
      const body = await readBack(server, token, `cloudreve://my/chaos/${f.name}`);
      assert.equal(sha256(body), expectedSha256(f.size, f.seed), `${f.name} byte-exact (${context})`);
    }
    await settled(server);
    await assertNoOrphans(server);
  });

  test('what a kill inside the landing window leaves behind is cleaned up', async () => {
    // The two landing windows are microseconds wide, so their leftovers are made by hand.
    // 1. Killed between import and commit, the retry then failed for good: the imported blob
    //    (same key) must go when the task errors.
    let token = (await server.signIn()).access;
    const missing = origin.route('/gone-late.bin', { status: 404, delayMs: 2500 });
    const [failing] = await createTasks(server, token, [missing], 'cloudreve://my/chaos');
    const [row] = await waitFor(async () => {
      const rows = await server.sql<{ id: number }>(
        "SELECT id FROM tasks WHERE src = ? AND status = 'processing'",
        [missing],
      );
      return rows.length ? rows : undefined;
    });
    await mkdir(join(server.dataDir, 'blobs', 'blobs'), { recursive: true });
    await writeFile(join(server.dataDir, 'blobs', 'blobs', `task-${row!.id}-0`), randomBytes(4096));
    assert.equal((await finished(server, token, failing!.id)).status, 'error');
    // 2. Killed after the commit, before the clean-up: the staging folder of a completed task;
    //    and one of a task that no longer exists. Both go at the next start.
    const [done] = await server.sql<{ id: number }>(
      "SELECT id FROM tasks WHERE status = 'completed' LIMIT 1",
    );
    const staging = join(server.dataDir, 'staging', 'tasks');
    await mkdir(join(staging, String(done!.id)), { recursive: true });
    await writeFile(join(staging, String(done!.id), '.ferry-http.part'), randomBytes(4096));
    await mkdir(join(staging, '987654'), { recursive: true });
    await writeFile(join(staging, '987654', 'leftover'), 'x');
    await server.crashAndRestart();
    token = (await server.signIn()).access;
    await assertNoOrphans(server);
    const body = await readBack(server, token, 'cloudreve://my/chaos/chaos-0.bin');
    assert.ok(body.length > 0, 'committed files are untouched');
  });
});

// Mounting needs root and a kernel that lets this sandbox mount tmpfs; probed at run time.
function tryMount(dir: string, size: string): string | null {
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir], { stdio: 'pipe' });
    return null;
  } catch (e) {
    return (e as { stderr?: Buffer }).stderr?.toString().trim() || (e as Error).message;
  }
}

describe('disk full (16 MiB tmpfs data dir)', () => {
  let server: TestServer | undefined;
  let mountDir = '';
  let mounted = false;
  let mountError: string | null = null;
  before(async () => {
    mountDir = await mkdtemp(join(tmpdir(), 'ferry-tmpfs-'));
    mountError = process.getuid?.() === 0 ? tryMount(mountDir, '16m') : 'not root';
    mounted = mountError === null;
  });
  after(async () => {
    await server?.stop();
    if (mounted) execFileSync('umount', [mountDir]);
    await rmdir(mountDir).catch(() => undefined);
  });

  test('a task bigger than the free space fails with DISK, lands nothing, and the server stays healthy', async (t) => {
    if (!mounted) {
      t.skip(`cannot mount tmpfs here (${mountError}); the quota/--max-file-size cases cover refusal`);
      return;
    }
    server = await startServer({
      args: [
        '--allow-network',
        '127.0.0.1/32',
        '--task-retries',
        '0',
        '--data-dir',
        mountDir,
        // The free-space floor would refuse these tasks up front; this test is about the write path.
        '--min-free-space',
        '0',
      ],
    });
    const token = (await server.signIn()).access;
    await server.api('POST', '/file/create', { token, body: { uri: 'cloudreve://my/full', type: 'folder' } });
    // With a length (ranged, preallocated staging file) and without (streamed).
    const sized = origin.route('/disk-sized.bin', { size: 24 * MiB, seed: 601 });
    const streamed = origin.route('/disk-streamed.bin', { size: 24 * MiB, seed: 602, chunked: true });
    for (const src of [sized, streamed]) {
      const [task] = await createTasks(server, token, [src], 'cloudreve://my/full');
      const done = await finished(server, token, task!.id, 60_000);
      assert.equal(done.status, 'error', JSON.stringify(done));
      assert.equal(
        (await failureOf(server, src)).failure,
        'DISK',
        JSON.stringify(await failureOf(server, src)),
      );
      // The server answers other requests meanwhile and afterwards.
      assert.equal((await fetch(`${server.url}/readyz`)).status, 200);
      const list: Awaited<ReturnType<TestServer['api']>> = await server.api(
        'GET',
        `/file?uri=${encodeURIComponent('cloudreve://my/full')}`,
        {
          token,
        },
      );
      assert.equal(list.body.code, 0, JSON.stringify(list.body));
    }
    assert.deepEqual(
      (await driveFiles(server)).filter((f) => f.folder === 'full'),
      [],
      'no partial file',
    );
    await assertNoOrphans(server, mountDir);
    // Space is back: tasks that fit succeed, byte-exact.
    const fits = [0, 1].map((i) => origin.route(`/disk-fits-${i}.bin`, { size: 4 * MiB, seed: 603 + i }));
    const tasks = await createTasks(server, token, fits, 'cloudreve://my/full');
    for (const [i, task] of tasks.entries()) {
      assert.equal((await finished(server, token, task.id, 60_000)).status, 'completed');
      const body = await readBack(server, token, `cloudreve://my/full/disk-fits-${i}.bin`);
      assert.equal(sha256(body), expectedSha256(4 * MiB, 603 + i));
    }
    await settled(server);
    await assertNoOrphans(server, mountDir);
  });
});

describe('database unreachable', () => {
  const pgOnly = dialect === 'postgres';
  let server: TestServer | undefined;
  let proxy: TcpProxy | undefined;
  let dbName = '';
  const adminUrl = process.env.FERRY_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
  const target = new URL(adminUrl);

  before(async () => {
    if (!pgOnly) return;
    dbName = `ferry_fault_${randomBytes(6).toString('hex')}`;
    const admin = new pg.Client({ connectionString: adminUrl });
    await admin.connect();
    await admin.query(`CREATE DATABASE ${dbName}`);
    await admin.end();
    proxy = await startTcpProxy(Number(target.port || 5432), target.hostname);
  });
  after(async () => {
    if (process.env.FERRY_TEST_VERBOSE) console.log(server?.output());
    await server?.stop();
    await proxy?.close();
    if (dbName) {
      const admin = new pg.Client({ connectionString: adminUrl });
      await admin.connect();
      await admin.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`);
      await admin.end();
    }
  });

  /** One request with its latency; a network error counts as a failure, not a throw. */
  async function timed(
    url: string,
    init: RequestInit = {},
  ): Promise<{ status: number; body: string; ms: number }> {
    const t0 = Date.now();
    try {
      const res = await fetch(url, { ...init, signal: AbortSignal.timeout(30_000) });
      return { status: res.status, body: await res.text(), ms: Date.now() - t0 };
    } catch (e) {
      return { status: -1, body: String(e), ms: Date.now() - t0 };
    }
  }

  for (const mode of ['reset', 'blackhole'] as const) {
    test(
      `PostgreSQL ${mode === 'reset' ? 'refusing connections' : 'silent (partition)'} for a few seconds: ` +
        'clean 50001 / 503 answers, /readyz 503, then full recovery' +
        (pgOnly ? '' : ' — skipped on SQLite: an embedded database cannot become unreachable'),
      { skip: !pgOnly && 'SQLite is in-process: no database connection to cut (runs on PostgreSQL)' },
      async () => {
        const BOUND_MS = 20_000;
        if (!server) {
          const url = new URL(adminUrl);
          url.port = String(proxy!.port);
          url.pathname = `/${dbName}`;
          server = await startServer({
            args: ['--allow-network', '127.0.0.1/32', '--task-retries', '3'],
            env: { FERRY_DATABASE_URL: url.toString() },
          });
        }
        // The harness's sql() points at its own throwaway database; this server uses ours.
        const direct = new URL(adminUrl);
        direct.pathname = `/${dbName}`;
        const s: TestServer = {
          ...server,
          async sql<R>(text: string, params: unknown[] = []): Promise<R[]> {
            const c = new pg.Client({ connectionString: direct.toString() });
            await c.connect();
            try {
              let n = 0;
              return (
                await c.query(
                  text.replace(/\?/g, () => `$${++n}`),
                  params,
                )
              ).rows as R[];
            } finally {
              await c.end();
            }
          },
        };
        const token = (await s.signIn()).access;
        const folder = `cloudreve://my/db-${mode}`;
        await s.api('POST', '/file/create', { token, body: { uri: folder, type: 'folder' } });
        const size = 6 * MiB;
        const src = origin.route(`/db-${mode}.bin`, {
          size,
          seed: 700 + (mode === 'reset' ? 0 : 1),
          throttle: 256 * 1024,
        });
        const [task] = await createTasks(s, token, [src], folder, { connections: 4 });
        await waitFor(
          async () => (origin.bytesServed(`/db-${mode}.bin`) > 512 * 1024 ? true : undefined),
          20_000,
        );

        // A second, small task that finishes while the database is away: its landing fails
        // and must be retried once the database is back, not left 'processing' forever.
        const quickSrc = origin.route(`/db-${mode}-quick.bin`, {
          size: 768 * 1024,
          seed: 710 + (mode === 'reset' ? 0 : 1),
          throttle: 384 * 1024,
        });
        const [quick] = await createTasks(s, token, [quickSrc], folder, { connections: 1 });
        await waitFor(
          async () => (origin.bytesServed(`/db-${mode}-quick.bin`) > 0 ? true : undefined),
          20_000,
        );
        proxy!.cut(mode);
        const cutAt = Date.now();
        try {
          const auth = { authorization: `Bearer ${token}` };
          // Side by side, as real clients would come: each must end within the bound.
          const [ready, list, create, path, health] = await Promise.all([
            timed(`${s.url}/readyz`),
            timed(`${s.url}/api/v4/file?uri=${encodeURIComponent(folder)}`, { headers: auth }),
            timed(`${s.url}/api/v4/workflow/download`, {
              method: 'POST',
              headers: { ...auth, 'content-type': 'application/json' },
              body: JSON.stringify({ dst: folder, src: [src + '?again'] }),
            }),
            timed(`${s.url}/files/db-${mode}?downloads=`, { headers: auth }),
            timed(`${s.url}/healthz`),
          ]);
          const answers = { ready, list, create, path, health };
          const summary = JSON.stringify(answers, (k, v: unknown) =>
            k === 'body' && typeof v === 'string' ? v.slice(0, 160) : v,
          );
          assert.equal(answers.ready.status, 503, summary);
          for (const name of ['list', 'create'] as const) {
            assert.equal(answers[name].status, 200, summary);
            assert.equal((JSON.parse(answers[name].body) as { code: number }).code, 50001, summary);
          }
          assert.equal(answers.path.status, 503, summary);
          assert.equal(answers.health.status, 200, summary);
          for (const [name, a] of Object.entries(answers))
            assert.ok(a.ms < BOUND_MS, `${name} took ${a.ms} ms: ${summary}`);
          // Keep it down for a few seconds in all.
          const rest = 5000 - (Date.now() - cutAt);
          if (rest > 0) await new Promise((r) => setTimeout(r, rest));
        } finally {
          proxy!.restore();
        }

        await waitFor(
          async () => ((await fetch(`${s.url}/readyz`)).status === 200 ? true : undefined),
          20_000,
          'readyz 200',
        );
        const done = await finished(s, token, task!.id, 90_000);
        assert.equal(done.status, 'completed', JSON.stringify(done));
        const body = await readBack(s, token, `${folder}/db-${mode}.bin`);
        assert.equal(sha256(body), expectedSha256(size, 700 + (mode === 'reset' ? 0 : 1)));
        const quickDone = await finished(s, token, quick!.id, 90_000);
        assert.equal(quickDone.status, 'completed', JSON.stringify(quickDone));
        const quickBody = await readBack(s, token, `${folder}/db-${mode}-quick.bin`);
        assert.equal(sha256(quickBody), expectedSha256(768 * 1024, 710 + (mode === 'reset' ? 0 : 1)));
        const names = (await driveFiles(s)).filter((f) => f.folder === `db-${mode}`).map((f) => f.name);
        assert.deepEqual(names.sort(), [`db-${mode}-quick.bin`, `db-${mode}.bin`]);
        await settled(s);
        await assertNoOrphans(s);
      },
    );
  }
});
