// The one-process scheduler: claims runnable tasks from the tasks table and runs them here.
// Fair share: among users with runnable tasks, the one with the fewest running goes first,
// so one user's thousand URLs cannot starve another user's one. Leases let a restarted or
// crashed process hand its tasks back.
import { randomUUID } from 'node:crypto';
import type { Kysely } from 'kysely';
import type { DB } from '../db/schema.ts';
import type { Clock } from '../lib/clock.ts';
import { SHUTDOWN, type TaskRunner } from '../services/task-runner.ts';
import type { TaskRow, TasksService } from '../services/tasks.service.ts';
import type { Scheduler } from './port.ts';

const LEASE_MS = 30_000;
const TICK_MS = 1000;

export class InProcessScheduler implements Scheduler {
  private readonly db: Kysely<DB>;
  private readonly clock: Clock;
  private readonly tasks: TasksService;
  private readonly runner: TaskRunner;
  private readonly maxConcurrent: number;
  /** This process's lease owner id: a new one per start, so a restart reclaims old leases. */
  readonly lease = `${process.pid}-${randomUUID()}`;
  private readonly runningPromises = new Map<number, Promise<void>>();
  private timer: NodeJS.Timeout | undefined;
  private heartbeat: NodeJS.Timeout | undefined;
  private pumping = false;
  private again = false;
  private stopped = false;

  constructor(deps: {
    db: Kysely<DB>;
    clock: Clock;
    tasks: TasksService;
    runner: TaskRunner;
    maxConcurrent: number;
  }) {
    this.db = deps.db;
    this.clock = deps.clock;
    this.tasks = deps.tasks;
    this.runner = deps.runner;
    this.maxConcurrent = deps.maxConcurrent;
  }

  async start(): Promise<void> {
    // Tasks this node was running when it last stopped (or died) go back to the queue and
    // resume from their checkpoints.
    const now = this.clock.now();
    await this.db
      .updateTable('tasks')
      .set({ status: 'queued', lease_owner: null, lease_expires_at: null, updated_at: now })
      .where((eb) =>
        eb.or([
          eb('status', '=', 'processing'),
          // seeding tasks (suspending without a resume time) were running here too
          eb.and([eb('status', '=', 'suspending'), eb('resume_time', 'is', null)]),
        ]),
      )
      .where((eb) =>
        eb.or([
          eb('node_id', '=', this.tasks.nodeId),
          eb('lease_expires_at', '<', now),
          eb('lease_expires_at', 'is', null),
        ]),
      )
      .execute();
    await this.runner.sweepLeftovers().catch(() => undefined);
    this.timer = setInterval(() => this.wake(), TICK_MS);
    this.heartbeat = setInterval(() => void this.renewLeases(), LEASE_MS / 3);
    this.wake();
  }

  wake(): void {
    if (this.stopped) return;
    if (this.pumping) {
      this.again = true;
      return;
    }
    this.pumping = true;
    void this.pump()
      .catch(() => undefined) // a database hiccup: the next tick tries again
      .finally(() => {
        this.pumping = false;
        if (this.again) {
          this.again = false;
          this.wake();
        }
      });
  }

  private async pump(): Promise<void> {
    while (!this.stopped && this.runningPromises.size < this.maxConcurrent) {
      const next = await this.pickNext();
      if (!next) return;
      const now = this.clock.now();
      const claimed = await this.tasks.transition(next.id, 'processing', {
        lease_owner: this.lease,
        lease_expires_at: now + LEASE_MS,
        node_id: this.tasks.nodeId,
        started_at: next.started_at ?? now,
        resume_time: null,
      });
      if (!claimed) continue; // someone canceled or claimed it first
      this.launch(claimed);
    }
  }

  private launch(task: TaskRow): void {
    const controller = new AbortController();
    this.tasks.running.set(task.id, controller);
    const done = this.runner
      .run(task, this.lease, controller)
      .catch(() => this.requeue(task.id))
      .finally(() => {
        this.tasks.running.delete(task.id);
        this.runningPromises.delete(task.id);
        this.wake();
      });
    this.runningPromises.set(task.id, done);
  }

  /**
   * The runner could not record the outcome (the database was unreachable while it landed or
   * failed the task): hand the task back to the queue as soon as the database answers, so it
   * runs again (resuming from its checkpoint) instead of staying 'processing' until a restart.
   */
  private async requeue(taskId: number): Promise<void> {
    while (!this.stopped) {
      try {
        await this.tasks.transition(
          taskId,
          'queued',
          { lease_owner: null, lease_expires_at: null, resume_time: null },
          this.lease,
        );
        return; // queued again, or no longer ours (canceled, claimed elsewhere)
      } catch {
        await new Promise((resolve) => setTimeout(resolve, 2000));
      }
    }
  }

  /** The oldest runnable task of the user with the fewest running tasks, within group limits. */
  private async pickNext(): Promise<TaskRow | undefined> {
    const now = this.clock.now();
    const candidates = await this.db
      .selectFrom('tasks')
      .selectAll()
      .where((eb) =>
        eb.or([
          eb('status', '=', 'queued'),
          eb.and([eb('status', '=', 'suspending'), eb('resume_time', '<=', now)]),
        ]),
      )
      .where('id', 'not in', [0, ...this.runningPromises.keys()])
      .orderBy('id')
      .limit(500)
      .execute();
    if (candidates.length === 0) return undefined;
    const owners = [...new Set(candidates.map((c) => c.owner_id))];
    const runningCounts = await this.db
      .selectFrom('tasks')
      .innerJoin('users', 'users.id', 'tasks.owner_id')
      .innerJoin('groups', 'groups.id', 'users.group_id')
      .select(['tasks.owner_id', 'groups.max_concurrent_tasks', (eb) => eb.fn.countAll<number>().as('n')])
      .where('tasks.status', '=', 'processing')
      .where('tasks.owner_id', 'in', owners)
      .groupBy(['tasks.owner_id', 'groups.max_concurrent_tasks'])
      .execute();
    const limits = await this.db
      .selectFrom('users')
      .innerJoin('groups', 'groups.id', 'users.group_id')
      .select(['users.id', 'groups.max_concurrent_tasks'])
      .where('users.id', 'in', owners)
      .execute();
    const running = new Map(runningCounts.map((r) => [r.owner_id, Number(r.n)]));
    const limit = new Map(limits.map((l) => [l.id, l.max_concurrent_tasks]));
    let best: TaskRow | undefined;
    let bestLoad = Infinity;
    for (const owner of owners) {
      const load = running.get(owner) ?? 0;
      const max = limit.get(owner) ?? 0;
      if (max > 0 && load >= max) continue;
      if (load < bestLoad) {
        bestLoad = load;
        best = candidates.find((c) => c.owner_id === owner);
      }
    }
    return best;
  }

  private async renewLeases(): Promise<void> {
    const ids = [...this.runningPromises.keys()];
    if (ids.length === 0) return;
    await this.db
      .updateTable('tasks')
      .set({ lease_expires_at: this.clock.now() + LEASE_MS })
      .where('id', 'in', ids)
      .where('lease_owner', '=', this.lease)
      .execute()
      .catch(() => undefined);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    clearInterval(this.heartbeat);
    for (const controller of this.tasks.running.values()) controller.abort(SHUTDOWN);
    await Promise.allSettled([...this.runningPromises.values()]);
  }
}
