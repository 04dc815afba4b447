// The scaled-out scheduler: tasks reach worker nodes through pg-boss queues on the same
// PostgreSQL database — one shared queue ("any node that runs remote downloads") and one per
// node (tasks with a preferred_node_id). A job only says "task N wants to run"; the task row
// stays the truth. A node fetches a job, claims the row with the same compare-and-set and lease
// as the in-process scheduler, completes the job, and runs TaskRunner.run here. Every live node
// supervises: a task whose lease lapsed (its node died) goes back to `queued` and into a queue
// again; another node resumes it from its checkpoint. Wake-ups are NOTIFY-fast (pg-bus.ts) with
// a short polling backstop; cancels, file selections and progress travel on the same bus.
import { createHmac, randomUUID } from 'node:crypto';
import { sql, type Kysely } from 'kysely';
import { PgBoss, type Job } from 'pg-boss';
import type { Config } from '../config/config.ts';
import type { DB } from '../db/schema.ts';
import type { TasksRepository } from '../db/tasks.repository.ts';
import { encodeBoolset, NodeCapability } from '../domain/boolset.ts';
import { selectionChanges, type FileChoice, type Task } from '../domain/task.ts';
import type { Clock } from '../lib/clock.ts';
import { LEASE_LOST, SHUTDOWN, type TaskRunner } from '../services/task-runner.ts';
import type { Services } from '../services/index.ts';
import { PAUSE, type TaskControl, type TasksService } from '../services/tasks.service.ts';
import { CHANNELS, PgBus } from './pg-bus.ts';
import type { Scheduler } from './port.ts';

/**
 * Identifies a signing secret without revealing it. The API node stores its own in `settings`;
 * a worker whose secret.key differs refuses to start (its links and tokens would not verify).
 */
export const SECRET_FINGERPRINT_KEY = 'secret_fingerprint';
export const secretFingerprint = (secret: Buffer): string =>
  createHmac('sha256', secret).update('ferry secret fingerprint').digest('hex').slice(0, 32);

export const SHARED_QUEUE = 'ferry-tasks';
export const nodeQueue = (nodeId: number): string => `ferry-node-${nodeId}`;
/** What a node that runs tasks advertises: bit 3, remote download. */
export const RUNNER_CAPABILITIES = encodeBoolset([NodeCapability.remoteDownload]);
/**
 * A worker node unseen for one lease counts as dead: it renews its tasks' leases and its
 * heartbeat on the same beat (`heartbeatMs`), so its tasks' leases lapse when it is declared
 * dead, not long before or after.
 */
export const nodeStaleMs = (leaseMs: number): number => leaseMs;
/** How often a node heartbeats and renews its leases: three times per lease, at least every 5 s. */
export const heartbeatMs = (leaseMs: number): number =>
  Math.max(250, Math.min(5000, Math.floor(leaseMs / 3)));
const POLL_MS = 1000;
/** Queued tasks older than this without a live job get one again (a send that was lost). */
const ORPHAN_MS = 15_000;

interface JobData {
  taskId: number;
}

export interface PgBossSchedulerOptions {
  databaseUrl: string;
  db: Kysely<DB>;
  repo: TasksRepository;
  clock: Clock;
  tasks: TasksService;
  /** Absent: this process runs no tasks (an API-only node); it still enqueues and supervises. */
  runner?: TaskRunner;
  maxConcurrent: number;
  leaseMs: number;
  /** This node's row in `nodes`: claimed tasks record it, and its own queue is named after it. */
  nodeId: number;
  /** API nodes re-emit other nodes' task changes on their local event feed (SSE). */
  relayChanges: boolean;
  /** A worker node with a unique name: its earlier incarnation's tasks can be taken back at once. */
  recoverOwnTasks?: boolean;
  onError?: (error: unknown) => void;
}

export class PgBossScheduler implements Scheduler {
  private readonly o: PgBossSchedulerOptions;
  private readonly boss: PgBoss;
  private readonly bus: PgBus;
  private readonly runningPromises = new Map<number, Promise<void>>();
  /** Each running task's lease token: a fresh one per claim (per run), never per process. */
  private readonly leases = new Map<number, string>();
  private readonly timers: NodeJS.Timeout[] = [];
  private pumping = false;
  private again = false;
  private stopped = false;
  private started = false;

  constructor(options: PgBossSchedulerOptions) {
    this.o = options;
    this.boss = new PgBoss({
      connectionString: options.databaseUrl,
      schedule: false,
      max: 4,
      application_name: 'ferry-pgboss',
    });
    this.boss.on('error', (error) => this.o.onError?.(error));
    this.boss.on('warning', () => undefined);
    const runs = options.runner !== undefined;
    this.bus = new PgBus(options.databaseUrl, {
      control: (message) => this.onControl(message),
      ...(options.relayChanges ? { changed: (ids: number[]) => void this.relay(ids) } : {}),
      ...(runs
        ? {
            queued: (queue: string) => {
              if (queue === SHARED_QUEUE || queue === nodeQueue(this.o.nodeId)) this.wake();
            },
          }
        : {}),
      reconnected: () => this.wake(),
    });
  }

  /**
   * `ferry serve --scheduler pgboss`: the API node (the Master row) enqueues, supervises and
   * relays other nodes' changes to its event feed; it runs tasks itself unless --no-run-tasks,
   * and advertises the remote-download capability only when it does.
   */
  static async forApiNode(
    config: Config,
    services: Services,
    repo: TasksRepository,
    runner: TaskRunner,
  ): Promise<PgBossScheduler> {
    const { db, clock } = services.ctx;
    await db
      .updateTable('nodes')
      .set({
        capabilities: config.runTasks ? RUNNER_CAPABILITIES : '',
        status: 'active',
        last_seen_at: clock.now(),
      })
      .where('id', '=', services.tasks.nodeId)
      .execute();
    const fingerprint = secretFingerprint(services.ctx.secret);
    await db
      .insertInto('settings')
      .values({ key: SECRET_FINGERPRINT_KEY, value: fingerprint })
      .onConflict((oc) => oc.column('key').doUpdateSet({ value: fingerprint }))
      .execute();
    return new PgBossScheduler({
      databaseUrl: config.databaseUrl,
      db,
      repo,
      clock,
      tasks: services.tasks,
      ...(config.runTasks ? { runner } : {}),
      maxConcurrent: config.maxConcurrentTasks,
      leaseMs: config.leaseSeconds * 1000,
      nodeId: services.tasks.nodeId,
      relayChanges: true,
      onError: (e) => {
        if (config.logLevel === 'debug') console.error('scheduler:', e);
      },
    });
  }

  private get runs(): boolean {
    return this.o.runner !== undefined;
  }

  async start(): Promise<void> {
    await this.boss.start();
    const queueOptions = {
      policy: 'short' as const, // one waiting job per task (singletonKey task-<id>)
      expireInSeconds: 120, // a job is completed right after the claim; this only covers a crash in between
      retryLimit: 10,
      deleteAfterSeconds: 3600,
    };
    await this.boss.createQueue(SHARED_QUEUE, queueOptions);
    await this.boss.createQueue(nodeQueue(this.o.nodeId), queueOptions);
    await this.bus.start();
    this.o.tasks.signals = this.bus;
    this.started = true;
    if (this.o.recoverOwnTasks) await this.recoverOwn();
    const superviseMs = Math.min(5000, Math.max(500, Math.floor(this.o.leaseMs / 3)));
    this.timers.push(setInterval(() => void this.supervise().catch((e) => this.o.onError?.(e)), superviseMs));
    if (this.runs) {
      this.timers.push(setInterval(() => this.wake(), POLL_MS));
      this.timers.push(setInterval(() => void this.renewLeases(), heartbeatMs(this.o.leaseMs)));
    }
    void this.supervise().catch((e) => this.o.onError?.(e));
    this.wake();
  }

  /** New tasks go into a queue; then look for work here. */
  wake(created?: readonly Task[]): void {
    if (this.stopped || !this.started) return;
    if (created?.length) void this.enqueueMany(created).catch((e) => this.o.onError?.(e));
    if (!this.runs) return;
    if (this.pumping) {
      this.again = true;
      return;
    }
    this.pumping = true;
    void this.pump()
      .catch((e) => this.o.onError?.(e)) // a database hiccup: the next tick tries again
      .finally(() => {
        this.pumping = false;
        if (this.again) {
          this.again = false;
          this.wake();
        }
      });
  }

  // ---- enqueueing

  /** The queue a task waits in: its preferred node's while that node is alive, else the shared one. */
  private async queueFor(task: Task): Promise<string> {
    const preferred = task.options.preferredNodeId;
    if (preferred === undefined) return SHARED_QUEUE;
    const node = await this.o.db
      .selectFrom('nodes')
      .select(['type', 'status', 'last_seen_at'])
      .where('id', '=', preferred)
      .executeTakeFirst();
    const alive =
      node?.status === 'active' &&
      (node.type === 'master' || node.last_seen_at > this.o.clock.now() - nodeStaleMs(this.o.leaseMs));
    return alive ? nodeQueue(preferred) : SHARED_QUEUE;
  }

  /**
   * Fair share across users: a job's priority is minus the number of the owner's active tasks
   * ahead of it, so one user's thousand URLs do not starve another user's one.
   */
  private async priorities(tasks: readonly Task[]): Promise<Map<number, number>> {
    const out = new Map<number, number>();
    const byOwner = new Map<number, Task[]>();
    for (const t of tasks) byOwner.set(t.owner_id, [...(byOwner.get(t.owner_id) ?? []), t]);
    for (const [owner, list] of byOwner) {
      list.sort((a, b) => a.id - b.id);
      const base = await this.o.repo.countActiveBefore(owner, list[0]!.id);
      list.forEach((t, i) => out.set(t.id, -Math.min(1_000_000, base + i)));
    }
    return out;
  }

  private async enqueueMany(tasks: readonly Task[], startAfter?: number): Promise<void> {
    const priorities = await this.priorities(tasks);
    const woken = new Set<string>();
    for (const task of tasks) {
      const queue = await this.queueFor(task);
      const deferred = startAfter !== undefined && startAfter > this.o.clock.now();
      await this.boss.send(queue, { taskId: task.id } satisfies JobData, {
        singletonKey: `task-${task.id}`,
        priority: priorities.get(task.id) ?? 0,
        ...(deferred ? { startAfter: new Date(startAfter) } : {}),
      });
      if (!deferred) woken.add(queue);
    }
    for (const queue of woken) {
      await this.bus.notify(CHANNELS.queued, queue).catch(() => undefined);
      if (queue === SHARED_QUEUE || queue === nodeQueue(this.o.nodeId)) this.wake();
    }
  }

  // ---- running

  private async pump(): Promise<void> {
    while (!this.stopped && this.runningPromises.size < this.o.maxConcurrent) {
      const want = this.o.maxConcurrent - this.runningPromises.size;
      const jobs: Array<[string, Job<JobData>]> = (
        await this.boss.fetch<JobData>(nodeQueue(this.o.nodeId), { batchSize: want })
      ).map((j) => [nodeQueue(this.o.nodeId), j]);
      if (jobs.length < want) {
        const shared = await this.boss.fetch<JobData>(SHARED_QUEUE, { batchSize: want - jobs.length });
        jobs.push(...shared.map((j): [string, Job<JobData>] => [SHARED_QUEUE, j]));
      }
      if (jobs.length === 0) return;
      for (const [queue, job] of jobs) {
        if (this.stopped) {
          // Not ours to run any more: back to the queue at once (not after the job expires).
          await this.boss.fail(queue, job.id).catch(() => undefined);
          continue;
        }
        await this.take(job.data.taskId);
        await this.boss.complete(queue, job.id);
      }
    }
  }

  /** Claims the task behind a job (if it still wants to run) and runs it here. */
  private async take(taskId: number): Promise<void> {
    const now = this.o.clock.now();
    if (this.runningPromises.has(taskId)) {
      // Still running here (its lease lapsed, e.g. in a database outage, and supervision put it
      // back in a queue): never a second run on this node. Check the lease now — a lost one
      // stops the old run — and offer the job again shortly; the run that ends re-sends it too.
      void this.renewLeases();
      const again = await this.o.repo.get(taskId);
      if (again) await this.enqueueMany([again], now + 1000);
      return;
    }
    const task = await this.o.repo.get(taskId);
    if (!task) return;
    const runnable =
      task.status === 'queued' ||
      (task.status === 'suspending' && task.resume_time !== null && task.resume_time <= now);
    if (!runnable) return; // done, canceled, or already taken by another node
    if (await this.atGroupLimit(task.owner_id)) {
      // The owner's group runs as many tasks as it may: look again shortly.
      await this.enqueueMany([task], now + 2000);
      return;
    }
    const lease = `${process.pid}-${randomUUID()}`;
    const claimed = await this.o.repo.claim(taskId, {
      lease,
      leaseMs: this.o.leaseMs,
      nodeId: this.o.nodeId,
    });
    if (!claimed) return; // someone canceled or claimed it first
    this.launch(claimed, lease);
    this.o.tasks.emit(claimed); // after launch: this node's byte metrics take it as the baseline
  }

  private async atGroupLimit(ownerId: number): Promise<boolean> {
    const group = await this.o.db
      .selectFrom('users')
      .innerJoin('groups', 'groups.id', 'users.group_id')
      .select('groups.max_concurrent_tasks')
      .where('users.id', '=', ownerId)
      .executeTakeFirst();
    const max = group?.max_concurrent_tasks ?? 0;
    if (max <= 0) return false;
    return (await this.o.repo.countProcessing(ownerId)) >= max;
  }

  private launch(task: Task, lease: string): void {
    const runner = this.o.runner!;
    const controller = new AbortController();
    this.o.tasks.running.set(task.id, controller);
    this.leases.set(task.id, lease);
    const done = runner
      .run(task, lease, controller)
      .catch(() => undefined)
      .then(() => this.afterRun(task.id))
      .catch((e) => this.o.onError?.(e))
      .finally(() => {
        this.o.tasks.running.delete(task.id);
        this.leases.delete(task.id);
        this.runningPromises.delete(task.id);
        this.wake();
      });
    this.runningPromises.set(task.id, done);
  }

  /** A run ended: a task handed back (shutdown) or waiting to retry needs a job again. */
  private async afterRun(taskId: number): Promise<void> {
    const row = await this.o.repo.get(taskId);
    if (!row || row.lease_owner !== null) return;
    if (row.status === 'queued') await this.enqueueMany([row]);
    else if (row.status === 'suspending' && row.resume_time !== null)
      await this.enqueueMany([row], row.resume_time);
  }

  private async renewLeases(): Promise<void> {
    const runs = [...this.leases].map(([id, lease]) => ({ id, lease }));
    if (runs.length === 0) return;
    const renewed = await this.o.repo.renewLeases(runs, this.o.leaseMs).catch(() => undefined);
    if (!renewed) return; // database away: try again next time (the lease may lapse meanwhile)
    const kept = new Set(renewed);
    for (const { id, lease } of runs) {
      if (kept.has(id) || this.leases.get(id) !== lease) continue;
      // Not renewed: the run finished meanwhile, or its lease lapsed (the task was put back in a
      // queue, taken by another run, or ended). Stop it without touching the staging area or
      // storage, which belong to whoever holds the task now.
      const row = await this.o.repo.get(id).catch(() => undefined);
      if (row && row.lease_owner !== lease) this.o.tasks.running.get(id)?.abort(LEASE_LOST);
    }
  }

  // ---- signals

  private onControl(message: TaskControl): void {
    if (!message || typeof message.id !== 'number') return;
    if (message.op === 'cancel') {
      this.o.tasks.running.get(message.id)?.abort();
      return;
    }
    if (message.op === 'pause') {
      this.o.tasks.running.get(message.id)?.abort(PAUSE);
      return;
    }
    if (message.op === 'select') {
      const control = this.o.tasks.controls.get(message.id);
      if (!control) return;
      void (async () => {
        const files = message.files ?? (await this.storedSelection(message.id));
        if (files.length) await control.selectFiles(files);
      })().catch((e) => this.o.onError?.(e));
    }
  }

  /** The whole stored selection as changes (when it was too large for one signal). */
  private async storedSelection(taskId: number): Promise<FileChoice[]> {
    const task = await this.o.repo.get(taskId);
    return selectionChanges(task?.selection ?? null, task?.download_status?.files ?? []);
  }

  /** Other nodes' task changes, re-read and emitted on this node's event feed (SSE). */
  private async relay(ids: number[]): Promise<void> {
    if (ids.length === 0 || this.stopped) return;
    const rows = await this.o.repo.getMany(ids).catch(() => []);
    for (const task of rows) this.o.tasks.events.emit('task', { ownerId: task.owner_id, task });
  }

  // ---- supervision (every node)

  private async supervise(): Promise<void> {
    if (this.stopped) return;
    const now = this.o.clock.now();
    // 1. Tasks whose node stopped renewing their lease: back to the queue, resumed elsewhere.
    const lapsed = await this.o.repo.requeueLapsed();
    for (const task of lapsed) this.o.tasks.emit(task);
    if (lapsed.length) await this.enqueueMany(lapsed);
    // 2. Waiting tasks without a live job (a send lost to a crash or a database hiccup).
    const orphans = await this.o.repo.waitingWithoutJob(now - ORPHAN_MS, 500).catch(() => [] as Task[]);
    const due = orphans.filter((t) => t.status === 'queued' || (t.resume_time ?? 0) <= now);
    const later = orphans.filter((t) => !due.includes(t));
    if (due.length) await this.enqueueMany(due);
    for (const task of later) await this.enqueueMany([task], task.resume_time ?? now);
    // 3. Worker nodes that stopped heartbeating are offline (not offered, not preferred).
    await this.o.db
      .updateTable('nodes')
      .set({ status: 'offline' })
      .where('type', '=', 'slave')
      .where('status', '=', 'active')
      .where('last_seen_at', '<', now - nodeStaleMs(this.o.leaseMs))
      .execute();
    // 4. Jobs waiting in a dead node's own queue (tasks created with preferred_node_id) move to
    //    the shared queue: the preference is a preference, and work never waits for a node
    //    that may not come back.
    const waiting = await sql<{ name: string }>`
      SELECT DISTINCT name FROM pgboss.job
      WHERE name LIKE 'ferry-node-%' AND state IN ('created', 'retry') AND start_after <= now()`.execute(
      this.o.db,
    );
    const withJobs = waiting.rows
      .map((r) => Number(/^ferry-node-(\d+)$/.exec(r.name)?.[1]))
      .filter((id) => Number.isSafeInteger(id) && id !== this.o.nodeId);
    if (withJobs.length === 0) return;
    const live = await this.o.db
      .selectFrom('nodes')
      .select('id')
      .where('id', 'in', withJobs)
      .where('status', '=', 'active')
      .where((eb) =>
        eb.or([eb('type', '=', 'master'), eb('last_seen_at', '>=', now - nodeStaleMs(this.o.leaseMs))]),
      )
      .execute();
    const alive = new Set(live.map((n) => n.id));
    for (const id of withJobs) if (!alive.has(id)) await this.moveToShared(id);
  }

  /** Moves the jobs waiting in a node's own queue to the shared queue. */
  private async moveToShared(nodeId: number): Promise<void> {
    const queue = nodeQueue(nodeId);
    for (;;) {
      const jobs = await this.boss.fetch<JobData>(queue, { batchSize: 100 });
      if (jobs.length === 0) return;
      const tasks = await this.o.repo.getMany(jobs.map((j) => j.data.taskId));
      // queueFor sends them to the shared queue now that the node is not alive.
      if (tasks.length) await this.enqueueMany(tasks);
      await this.boss.complete(
        queue,
        jobs.map((j) => j.id),
      );
    }
  }

  /** A restarted worker (same unique name) takes its earlier incarnation's tasks back at once. */
  private async recoverOwn(): Promise<void> {
    const rows = await this.o.repo.requeueOfNode(this.o.nodeId);
    for (const task of rows) this.o.tasks.emit(task);
    if (rows.length) await this.enqueueMany(rows);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const timer of this.timers) clearInterval(timer);
    for (const controller of this.o.tasks.running.values()) controller.abort(SHUTDOWN);
    await Promise.allSettled([...this.runningPromises.values()]);
    // A worker leaving (already marked offline, so handed-back tasks went to the shared queue):
    // what still waits in its own queue goes there too, instead of waiting for it to return.
    if (this.started && this.o.recoverOwnTasks)
      await this.moveToShared(this.o.nodeId).catch((e) => this.o.onError?.(e));
    // Handed-back tasks got their jobs in afterRun (the bus and pg-boss are still up here).
    this.o.tasks.signals = undefined;
    await this.bus.stop();
    if (this.started) await this.boss.stop({ graceful: false, timeout: 5000 }).catch(() => undefined);
  }
}
