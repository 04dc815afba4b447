// Benchmark: throughput of the scaled-out deployment with one vs two `ferry worker` nodes. An
// API-only node (`ferry serve --scheduler pgboss --no-run-tasks`) on a throwaway PostgreSQL
// database takes a batch of tasks; the workers (each running up to --concurrency tasks) fetch
// them from a loopback origin that throttles every connection, so a node's task slots — not
// the CPU or the wire — bound its throughput, as with real slow origins. Time runs from the
// create request until every task is completed.
//
//   npx node bench/scaleout.ts                  # 40 files × 2 MiB at 1 MiB/s per connection, 3 runs
//   options: --files N, --size MiB, --throttle MiB/s-per-connection, --concurrency N, --runs N
//
// Needs PostgreSQL on 127.0.0.1:5432 (FERRY_TEST_PG_URL). Writes bench/results/scaleout.json.
import { mkdir, writeFile } from 'node:fs/promises';
import { cpus } from 'node:os';
import { join } from 'node:path';

process.env.FERRY_TEST_DB = 'postgres';
const { startOrigin } = await import('../test/helpers/origin.ts');
const { startServer, startWorker, waitFor } = await import('../test/helpers/server.ts');

const MiB = 1024 * 1024;
function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  const value = i >= 0 ? Number(process.argv[i + 1]) : NaN;
  return Number.isFinite(value) && value > 0 ? value : fallback;
}
const files = arg('files', 40);
const sizeMiB = arg('size', 2);
const throttleMiB = arg('throttle', 1);
const concurrency = arg('concurrency', 4);
const runs = arg('runs', 3);
const size = Math.round(sizeMiB * MiB);
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
};

interface Run {
  seconds: number;
  mibps: number;
  /** tasks per worker name */
  spread: Record<string, number>;
}

const origin = await startOrigin();
const NET = ['--allow-network', '127.0.0.1/32'];
const results: Record<string, { medianMiBps: number; runs: Run[] }> = {};

for (const workerCount of [1, 2]) {
  const label = workerCount === 1 ? '1 worker' : `${workerCount} workers`;
  const server = await startServer({ args: [...NET, '--scheduler', 'pgboss', '--no-run-tasks'] });
  const workers = [];
  try {
    for (let w = 1; w <= workerCount; w++)
      workers.push(
        await startWorker(server, `bench-w${w}`, {
          args: [...NET, '--max-concurrent-tasks', String(concurrency)],
        }),
      );
    const token = (await server.signIn()).access;
    await server.api('POST', '/file/create', {
      token,
      body: { uri: 'cloudreve://my/bench', type: 'folder' },
    });
    const list: Run[] = [];
    for (let run = 0; run < runs; run++) {
      const srcs = Array.from({ length: files }, (_, i) =>
        origin.route(`/w${workerCount}-r${run}-${i}.bin`, {
          size,
          seed: run * 1000 + i,
          throttle: throttleMiB * MiB,
        }),
      );
      const started = performance.now();
      const r = await server.api<Array<{ id: string }>>('POST', '/workflow/download', {
        token,
        body: { dst: 'cloudreve://my/bench', src: srcs, connections: 1 },
      });
      if (r.body.code !== 0) throw new Error(JSON.stringify(r.body));
      await waitFor(
        async () => {
          const rows = await server.sql<{ n: number | string }>(
            "SELECT count(*) AS n FROM tasks WHERE status IN ('completed', 'error', 'canceled')",
          );
          return Number(rows[0]!.n) >= files * (run + 1) ? true : undefined;
        },
        600_000,
        'the batch to finish',
      );
      const seconds = (performance.now() - started) / 1000;
      const failed = await server.sql<{ n: number | string }>(
        "SELECT count(*) AS n FROM tasks WHERE status <> 'completed'",
      );
      if (Number(failed[0]!.n) > 0) throw new Error(`${String(failed[0]!.n)} tasks did not complete`);
      const spreadRows = await server.sql<{ name: string; n: number | string }>(
        `SELECT n.name, count(*) AS n FROM tasks t JOIN nodes n ON n.id = t.node_id
         WHERE t.dst = 'cloudreve://my/bench' AND t.id > ? GROUP BY n.name`,
        [files * run],
      );
      const spread = Object.fromEntries(spreadRows.map((s) => [s.name, Number(s.n)]));
      const mibps = (files * size) / MiB / seconds;
      list.push({ seconds: Number(seconds.toFixed(2)), mibps: Number(mibps.toFixed(2)), spread });
      console.log(
        `${label}, run ${run + 1}: ${seconds.toFixed(2)} s, ${mibps.toFixed(1)} MiB/s ${JSON.stringify(spread)}`,
      );
    }
    results[label] = { medianMiBps: Number(median(list.map((r) => r.mibps)).toFixed(2)), runs: list };
  } finally {
    for (const w of workers) await w.stop();
    await server.stop();
  }
}
await origin.close();

const one = results['1 worker']!.medianMiBps;
const two = results['2 workers']!.medianMiBps;
const ideal = (concurrency * throttleMiB).toFixed(1);
const doc = {
  date: new Date().toISOString(),
  node: process.version,
  cpus: cpus().length,
  files,
  sizeMiB,
  throttleMiBpsPerConnection: throttleMiB,
  tasksPerWorker: concurrency,
  runs,
  notes: [
    `${files} tasks of ${sizeMiB} MiB, one connection each, every connection throttled to ${throttleMiB} MiB/s by the origin; each worker runs up to ${concurrency} tasks (ideal ${ideal} MiB/s per worker).`,
    `two workers vs one: ${(two / one).toFixed(2)}× the throughput (median of ${runs} runs each).`,
    'API node: ferry serve --scheduler pgboss --no-run-tasks; all processes, PostgreSQL and the origin share the machine.',
  ],
  results: { 'scale-out (throttled origin)': results },
};
await mkdir(join(import.meta.dirname, 'results'), { recursive: true });
await writeFile(join(import.meta.dirname, 'results', 'scaleout.json'), JSON.stringify(doc, null, 2) + '\n');
console.log(JSON.stringify(doc, null, 2));
