// `ferry worker`: a node that only runs tasks. It registers itself in `nodes` (type slave,
// capabilities with remote download), heartbeats there, takes tasks from pg-boss (the shared
// queue and its own), and marks itself offline when it stops cleanly. A node that dies stops
// heartbeating: after one lease (--lease-seconds) it counts as offline, its tasks' leases lapse
// at the same time so other nodes resume them, and the jobs waiting in its own queue move to the
// shared one.
import type { Kysely } from 'kysely';
import { buildRunner, openCore } from '../app.ts';
import { ConfigError, type Config } from '../config/config.ts';
import { dialectOf } from '../db/database.ts';
import type { DB } from '../db/schema.ts';
import { systemClock } from '../lib/clock.ts';
import {
  heartbeatMs,
  nodeStaleMs,
  PgBossScheduler,
  RUNNER_CAPABILITIES,
  SECRET_FINGERPRINT_KEY,
  secretFingerprint,
} from './pgboss.scheduler.ts';

export interface WorkerNode {
  nodeId: number;
  name: string;
  close(): Promise<void>;
}

/** Registers (or re-activates) the node row; refuses a name another live node is using. */
export async function registerWorkerNode(db: Kysely<DB>, name: string, leaseMs: number): Promise<number> {
  const now = systemClock.now();
  const staleMs = nodeStaleMs(leaseMs);
  const existing = await db.selectFrom('nodes').selectAll().where('name', '=', name).executeTakeFirst();
  if (existing?.type === 'master') throw new ConfigError(`--name ${name}: that is the API node's name`);
  if (existing && existing.status === 'active' && existing.last_seen_at > now - staleMs) {
    throw new ConfigError(
      `a node named "${name}" is already running (seen ${Math.round((now - existing.last_seen_at) / 1000)} s ago); ` +
        `give this one another --name, or wait ${staleMs / 1000} s after the old one died`,
    );
  }
  const row = await db
    .insertInto('nodes')
    .values({
      name,
      type: 'slave',
      capabilities: RUNNER_CAPABILITIES,
      status: 'active',
      last_seen_at: now,
      created_at: now,
    })
    .onConflict((oc) =>
      oc.column('name').doUpdateSet({
        type: 'slave',
        capabilities: RUNNER_CAPABILITIES,
        status: 'active',
        last_seen_at: now,
      }),
    )
    .returning('id')
    .executeTakeFirstOrThrow();
  return row.id;
}

export async function startWorkerNode(config: Config, name: string): Promise<WorkerNode> {
  if (!name || name.length > 64 || !/^[\w.-]+$/.test(name))
    throw new ConfigError('ferry worker needs --name <name> (letters, digits, . _ -; up to 64)');
  if (dialectOf(config.databaseUrl) !== 'postgres') {
    throw new ConfigError(
      `ferry worker needs the PostgreSQL database the API node uses (--database-url postgres://...); ` +
        `got ${config.databaseUrl}: a SQLite file cannot be shared between nodes`,
    );
  }
  const core = await openCore(config, {
    registerNode: (db) => registerWorkerNode(db, name, config.leaseSeconds * 1000),
  });
  const { services } = core;
  const nodeId = services.tasks.nodeId;
  const cluster = await services.ctx.db
    .selectFrom('settings')
    .select('value')
    .where('key', '=', SECRET_FINGERPRINT_KEY)
    .executeTakeFirst();
  if (cluster && cluster.value !== secretFingerprint(services.ctx.secret)) {
    await services.ctx.db.updateTable('nodes').set({ status: 'offline' }).where('id', '=', nodeId).execute();
    await core.close();
    throw new ConfigError(
      `${config.dataDir}/secret.key differs from the API node's: copy the API node's secret.key into this ` +
        `worker's data dir (every node must sign links and tokens with the same secret)`,
    );
  }
  const built = await buildRunner(config, services, core.taskRepo);
  const runner = built.runner;
  const scheduler = new PgBossScheduler({
    databaseUrl: config.databaseUrl,
    db: services.ctx.db,
    repo: core.taskRepo,
    clock: services.ctx.clock,
    tasks: services.tasks,
    runner,
    maxConcurrent: config.maxConcurrentTasks,
    leaseMs: config.leaseSeconds * 1000,
    nodeId,
    relayChanges: false,
    recoverOwnTasks: true,
    onError: (e) => {
      if (config.logLevel === 'debug') console.error('scheduler:', e);
    },
  });
  // A failed write is left to the next beat (or to the other nodes' death check).
  const markNode = async (status: 'active' | 'offline') => {
    await services.ctx.db
      .updateTable('nodes')
      .set({ status, last_seen_at: systemClock.now() })
      .where('id', '=', nodeId)
      .execute()
      .catch(() => undefined);
  };
  const beat = () => markNode('active');
  // Abandoned partials in this node's staging area (tasks that finished or no longer exist,
  // e.g. killed between landing and clean-up); resumable ones of waiting tasks stay.
  await runner.sweepLeftovers().catch(() => undefined);
  await scheduler.start();
  const heartbeat = setInterval(() => void beat(), heartbeatMs(config.leaseSeconds * 1000));
  let closing: Promise<void> | undefined;
  return {
    nodeId,
    name,
    close: () =>
      (closing ??= (async () => {
        clearInterval(heartbeat);
        // Offline first: the tasks this node hands back while stopping go to the shared queue.
        await markNode('offline');
        await scheduler.stop();
        await built.close();
        await services.ctx.db
          .updateTable('nodes')
          .set({ status: 'offline', last_seen_at: systemClock.now() })
          .where('id', '=', nodeId)
          .execute()
          .catch(() => undefined);
        await core.close();
      })()),
  };
}
