// Benchmark: API latency with a big database. A real Ferry server process per dialect (SQLite
// file, throwaway PostgreSQL database) with `--tasks` finished tasks and `--files` files in one
// folder, inserted directly with SQL (one INSERT … SELECT from a generated series each).
//
//   npx node bench/scale.ts                        # 100,000 + 100,000, 300 requests per endpoint
//   npx node bench/scale.ts --tasks 20000 --files 20000 --requests 100 --dbs sqlite   # quick
//
// Endpoints, each called sequentially (one keep-alive connection) after a warm-up:
//   GET /api/v4/workflow?category=downloaded&page_size=100           first page / deep page
//   GET /api/v4/file?uri=cloudreve://my/big&page_size=100            first page / deep page
// The deep pages are reached by following next_token (2,000 per step for files) to ~90 % of
// the list. Reports p50/p99 in ms. Writes bench/results/scale.json. Loopback only.
import { spawn } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { cpus } from 'node:os';
import { join } from 'node:path';
import SQLite from 'better-sqlite3';
import pg from 'pg';

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? (process.argv[i + 1] ?? fallback) : fallback;
}

const taskCount = Number(arg('tasks', '100000'));
const fileCount = Number(arg('files', '100000'));
const requests = Number(arg('requests', '300'));

interface Latency {
  runs: Array<{ seconds: number; value: number }>;
  median: number;
  unit: string;
  p99: number;
  mean: number;
}

const quantile = (sorted: number[], q: number): number =>
  sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] ?? 0;

async function child(): Promise<void> {
  const { startServer, dialect } = await import('../test/helpers/server.ts');
  const server = await startServer();
  try {
    const { access } = await server.signIn();
    const made = await server.api('POST', '/file/create', {
      token: access,
      body: { uri: 'cloudreve://my/big', type: 'folder' },
    });
    if (made.body.code !== 0) throw new Error(`create folder: ${JSON.stringify(made.body)}`);
    const [user] = await server.sql<{ id: number }>('SELECT id FROM users ORDER BY id LIMIT 1');
    const ownerId = Number(user!.id);
    const [big] = await server.sql<{ id: number; parent_id: number }>(
      "SELECT id, parent_id FROM files WHERE owner_id = ? AND name = 'big'",
      [ownerId],
    );
    const [node] = await server.sql<{ id: number }>('SELECT id FROM nodes ORDER BY id LIMIT 1');
    const bigId = Number(big!.id);
    const now = Date.now();

    const t0 = performance.now();
    // Series 1..n: names f<i> (so name order differs from id order), sizes and times varied,
    // one folder in fifty; tasks mostly completed, some error/canceled.
    const filesSelect = `SELECT ${ownerId}, ${bigId}, 'f' || i, CASE WHEN i % 50 = 0 THEN 1 ELSE 0 END,
        (i * 7919) % 1000000, NULL, ${now} - i * 1000, ${now} - i * 1000`;
    const tasksSelect = `SELECT ${ownerId}, 'remote_download',
        CASE WHEN i % 20 = 0 THEN 'error' WHEN i % 31 = 0 THEN 'canceled' ELSE 'completed' END, '',
        'bench-' || i, 'https://example.org/file-' || i || '.iso', '', 'cloudreve://my/big', ${bigId},
        '{"face":"cloudreve"}', '{"total":1048576,"downloaded":1048576}', ${Number(node?.id ?? 1)},
        ${now} - i * 1000, ${now} - i * 1000, ${now} - i * 1000 - 5000, ${now} - i * 1000`;
    const fileCols = '(owner_id, parent_id, name, type, size, blob_id, created_at, updated_at)';
    const taskCols =
      '(owner_id, type, status, phase, public_id, src, src_file, dst, dst_folder_id, options, download_status, node_id, created_at, updated_at, started_at, ended_at)';
    if (dialect === 'postgres') {
      const c = new pg.Client({ connectionString: server.databaseUrl });
      await c.connect();
      await c.query(
        `INSERT INTO files ${fileCols} ${filesSelect} FROM generate_series(1, ${fileCount}) AS s(i)`,
      );
      await c.query(
        `INSERT INTO tasks ${taskCols} ${tasksSelect} FROM generate_series(1, ${taskCount}) AS s(i)`,
      );
      await c.query('ANALYZE');
      await c.end();
    } else {
      const db = new SQLite(server.databaseUrl);
      db.pragma('busy_timeout = 10000');
      const series = (n: number) =>
        `WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < ${n})`;
      db.exec(`${series(fileCount)} INSERT INTO files ${fileCols} ${filesSelect} FROM s`);
      db.exec(`${series(taskCount)} INSERT INTO tasks ${taskCols} ${tasksSelect} FROM s`);
      db.close();
    }
    const seedSeconds = (performance.now() - t0) / 1000;

    const get = async (path: string): Promise<{ ms: number; data: Record<string, unknown> }> => {
      const started = performance.now();
      const res = await fetch(`${server.url}/api/v4${path}`, {
        headers: { authorization: `Bearer ${access}` },
      });
      const body = (await res.json()) as { code: number; data: Record<string, unknown> };
      const ms = performance.now() - started;
      if (body.code !== 0) throw new Error(`${path}: ${JSON.stringify(body).slice(0, 300)}`);
      return { ms, data: body.data };
    };
    const tokenOf = (data: Record<string, unknown>): string | undefined =>
      (data.pagination as { next_token?: string }).next_token;

    const fileUri = encodeURIComponent('cloudreve://my/big');
    const filesPath = (size: number, token?: string) =>
      `/file?uri=${fileUri}&page_size=${size}${token ? `&next_page_token=${encodeURIComponent(token)}` : ''}`;
    const tasksPath = (token?: string) =>
      `/workflow?category=downloaded&page_size=100${token ? `&next_page_token=${encodeURIComponent(token)}` : ''}`;

    // Deep tokens: walk to ~90 % of each list.
    let fileToken: string | undefined;
    let walked = 0;
    while (walked < fileCount * 0.9) {
      const r = await get(filesPath(2000, fileToken));
      fileToken = tokenOf(r.data);
      walked += (r.data.files as unknown[]).length;
      if (!fileToken) break;
    }
    let taskToken: string | undefined;
    walked = 0;
    while (walked < taskCount * 0.9) {
      const r = await get(tasksPath(taskToken));
      taskToken = tokenOf(r.data);
      walked += (r.data.tasks as unknown[]).length;
      if (!taskToken) break;
    }
    if (!fileToken || !taskToken) throw new Error('could not reach the deep pages');

    const endpoints: Record<string, string> = {
      'GET /workflow downloaded, first page': tasksPath(),
      'GET /workflow downloaded, deep page (next_token)': tasksPath(taskToken),
      'GET /file 100k-file folder, first page': filesPath(100),
      'GET /file 100k-file folder, deep page (next_token)': filesPath(100, fileToken),
    };
    const out: Record<string, Latency> = {};
    for (const [label, path] of Object.entries(endpoints)) {
      const first = await get(path);
      const count = ((first.data.tasks ?? first.data.files) as unknown[]).length;
      if (count !== 100) throw new Error(`${label}: ${count} items`);
      for (let i = 0; i < 10; i++) await get(path);
      const ms: number[] = [];
      const started = performance.now();
      for (let i = 0; i < requests; i++) ms.push((await get(path)).ms);
      const seconds = (performance.now() - started) / 1000;
      ms.sort((a, b) => a - b);
      const p50 = quantile(ms, 0.5);
      out[label] = {
        runs: [{ seconds: Number(seconds.toFixed(2)), value: Number(p50.toFixed(2)) }],
        median: Number(p50.toFixed(2)),
        unit: 'ms',
        p99: Number(quantile(ms, 0.99).toFixed(2)),
        mean: Number((ms.reduce((a, b) => a + b, 0) / ms.length).toFixed(2)),
      };
      process.stderr.write(`${dialect} ${label}: p50 ${p50.toFixed(1)} ms, p99 ${out[label].p99} ms\n`);
    }
    process.stdout.write(`RESULT ${JSON.stringify({ dialect, seedSeconds, out })}\n`);
  } finally {
    await server.stop();
  }
}

async function main(): Promise<void> {
  const dbs = arg('dbs', 'sqlite,postgres').split(',');
  const byDialect: Record<string, { seedSeconds: number; out: Record<string, Latency> }> = {};
  const notes: string[] = [];
  for (const db of dbs) {
    const proc = spawn(process.execPath, [import.meta.filename, '--child', ...process.argv.slice(2)], {
      env: { ...process.env, FERRY_TEST_DB: db },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let text = '';
    proc.stdout.on('data', (d: Buffer) => (text += d.toString()));
    const code = await new Promise<number>((resolve) => proc.on('exit', (c) => resolve(c ?? 1)));
    const line = text.split('\n').find((l) => l.startsWith('RESULT '));
    if (code !== 0 || !line) {
      notes.push(`${db}: failed (exit ${code})`);
      continue;
    }
    const parsed = JSON.parse(line.slice(7)) as {
      dialect: string;
      seedSeconds: number;
      out: Record<string, Latency>;
    };
    byDialect[db] = parsed;
    notes.push(`${db}: seeded ${taskCount} tasks + ${fileCount} files in ${parsed.seedSeconds.toFixed(1)} s`);
  }
  const results: Record<string, Record<string, Latency>> = {};
  let worst = 0;
  for (const [db, r] of Object.entries(byDialect)) {
    for (const [label, latency] of Object.entries(r.out)) {
      (results[label] ??= {})[db] = latency;
      worst = Math.max(worst, latency.p99);
    }
  }
  notes.push(
    `worst p99 ${worst} ms (target < 50 ms) — ${worst < 50 ? 'met' : 'not met'}; ${requests} sequential requests per row after 10 warm-up requests; the "median" column is p50, "p99" and "mean" in details.`,
  );
  const doc = {
    date: new Date().toISOString(),
    node: process.version,
    cpus: cpus().length,
    tasks: taskCount,
    files: fileCount,
    requestsPerEndpoint: requests,
    notes,
    results,
  };
  const json = JSON.stringify(doc, null, 2);
  process.stdout.write(`${json}\n`);
  await mkdir(join(import.meta.dirname, 'results'), { recursive: true });
  await writeFile(join(import.meta.dirname, 'results', 'scale.json'), `${json}\n`);
}

if (process.argv.includes('--child')) await child();
else await main();
