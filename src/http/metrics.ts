// GET /metrics in the Prometheus text format (prom-client): tasks by status and queue depth per
// node (from the database, cached a few seconds), bytes downloaded and current download speed
// of this process (from the task events), HTTP requests by face and status class, and the
// process' own metrics (RSS, CPU, event loop, GC).
import type { FastifyInstance } from 'fastify';
import { collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client';
import { TASK_STATUSES } from '../domain/task-state.ts';
import type { Services } from '../services/index.ts';
import type { TaskEvent } from '../services/tasks.service.ts';

/** How long a database snapshot of task counts is reused. */
const SNAPSHOT_MS = 5000;

interface Snapshot {
  byStatus: Map<string, number>;
  queuedByNode: Map<string, number>;
}

function faceOf(url: string, pathApiBase: string): string {
  if (url === '/api/v4' || url.startsWith('/api/v4/') || url.startsWith('/api/v4?')) return 'cloudreve';
  if (url === pathApiBase || url.startsWith(`${pathApiBase}/`) || url.startsWith(`${pathApiBase}?`))
    return 'path';
  if (/^\/(metrics|healthz|readyz)(\?|$)/.test(url)) return 'ops';
  return 'web';
}

/**
 * Adds the request counter hook and the /metrics route. Call it on the root instance before
 * the faces are registered, so the hook sees every route.
 */
export function registerMetrics(app: FastifyInstance, services: Services): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const { db } = services.ctx;
  const pathApiBase = services.ctx.config.pathApiBase;

  let cached: { at: number; value: Promise<Snapshot> } | undefined;
  const snapshot = (): Promise<Snapshot> => {
    const now = Date.now();
    if (cached && now - cached.at < SNAPSHOT_MS) return cached.value;
    const value = (async () => {
      const [rows, nodes] = await Promise.all([
        services.tasks.countByStatusAndNode(),
        db.selectFrom('nodes').select(['id', 'name']).execute(),
      ]);
      const names = new Map(nodes.map((n) => [n.id, n.name]));
      const byStatus = new Map<string, number>(TASK_STATUSES.map((s) => [s, 0]));
      const queuedByNode = new Map<string, number>(nodes.map((n) => [n.name, 0]));
      for (const row of rows) {
        const n = Number(row.n);
        byStatus.set(row.status, (byStatus.get(row.status) ?? 0) + n);
        if (row.status === 'queued') {
          const node = (row.node_id !== null && names.get(row.node_id)) || 'unassigned';
          queuedByNode.set(node, (queuedByNode.get(node) ?? 0) + n);
        }
      }
      return { byStatus, queuedByNode };
    })();
    cached = { at: now, value };
    // A failed query is not cached.
    value.catch(() => (cached = undefined));
    return value;
  };

  new Gauge({
    name: 'ferry_tasks',
    help: 'Remote-download tasks by status (all nodes, from the database)',
    labelNames: ['status'],
    registers: [registry],
    async collect() {
      const { byStatus } = await snapshot();
      this.reset();
      for (const [status, n] of byStatus) this.set({ status }, n);
    },
  });
  new Gauge({
    name: 'ferry_queue_depth',
    help: 'Queued tasks per node (from the database)',
    labelNames: ['node'],
    registers: [registry],
    async collect() {
      const { queuedByNode } = await snapshot();
      this.reset();
      for (const [node, n] of queuedByNode) this.set({ node }, n);
    },
  });

  // Bytes and speed of the downloads this process runs, from the progress each task reports.
  const downloaded = new Counter({
    name: 'ferry_downloaded_bytes_total',
    help: 'Bytes downloaded by tasks running in this process (each byte once)',
    registers: [registry],
  });
  // Per active task: bytes already counted, and its speed while it runs. Only tasks running in
  // this process count (an API node also sees other nodes' tasks, relayed for SSE), and a
  // finished task is never counted again (its "completed" can arrive twice: once from the
  // runner, once relayed back from the database).
  const active = new Map<number, { downloaded: number; speed: number }>();
  const finished = new Set<number>();
  const running = services.tasks.running;
  new Gauge({
    name: 'ferry_download_speed_bytes',
    help: 'Current download speed summed over the tasks running in this process, bytes/s',
    registers: [registry],
    collect() {
      let sum = 0;
      for (const [id, t] of active) {
        if (running.has(id)) sum += t.speed;
        else active.delete(id); // its run ended here without a final event (e.g. taken over)
      }
      this.set(sum);
    },
  });
  const onTask = ({ task }: TaskEvent) => {
    if (finished.has(task.id) || !running.has(task.id)) return;
    const status = task.download_status;
    // The first event of a run here (its claim) is the baseline: bytes a resumed task had
    // before (another node's, or an earlier process's) are not this run's.
    const previous = active.get(task.id);
    const bytes = status ? status.downloaded : (previous?.downloaded ?? 0);
    if (previous && bytes > previous.downloaded) downloaded.inc(bytes - previous.downloaded);
    if (task.status === 'completed' || task.status === 'error' || task.status === 'canceled') {
      active.delete(task.id);
      finished.add(task.id);
      if (finished.size > 10_000) finished.delete(finished.values().next().value!);
      return;
    }
    active.set(task.id, {
      downloaded: Math.max(bytes, previous?.downloaded ?? 0),
      speed: task.status === 'processing' && status ? status.download_speed : 0,
    });
  };
  services.tasks.events.on('task', onTask);
  app.addHook('onClose', (_instance, done) => {
    services.tasks.events.off('task', onTask);
    done();
  });

  const requests = new Counter({
    name: 'ferry_http_requests_total',
    help: 'HTTP requests answered, by face (cloudreve, path, web, ops) and status class',
    labelNames: ['face', 'status'],
    registers: [registry],
  });
  app.addHook('onResponse', (request, reply, done) => {
    requests.inc({
      face: faceOf(request.raw.url ?? '/', pathApiBase),
      status: `${Math.floor(reply.statusCode / 100)}xx`,
    });
    done();
  });

  app.get('/metrics', async (_request, reply) => {
    const body = await registry.metrics();
    return reply.header('content-type', registry.contentType).header('cache-control', 'no-store').send(body);
  });
  return registry;
}
