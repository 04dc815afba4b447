// The one-process scheduler: claims runnable tasks from the tasks table and runs them here.
// Fair share: among users with runnable tasks, the one with the fewest running goes first,
// so one user's thousand URLs cannot starve another user's one. Leases let a restarted or
// crashed process hand its tasks back.
import { randomUUID } from 'node:crypto';
import type { Kysely } from 'kysely';
import type { DB } from '../db/schema.ts';
import type { TasksRepository } from '../db/tasks.repository.ts';
import type { Task } from '../domain/task.ts';
import { SHUTDOWN, type TaskRunner } from '../services/task-runner.ts';
import type { TasksService } from '../services/tasks.service.ts';
import type { Scheduler } from './port.ts';

const LEASE_MS = 30_000;
const TICK_MS = 1000;

export class InProcessScheduler implements Scheduler {
  private readonly db: Kysely<DB>;
  private readonly repo: TasksRepository;
  private readonly tasks: TasksService;
  private readonly runner: TaskRunner;
  private readonly maxConcurrent: number;
  private readonly runningPromises = new Map<number, Promise<void>>();
  /** Each running task's lease token: a fresh one per claim (per run), never per process. */
  private readonly leases = new Map<number, string>();
  private timer: NodeJS.Timeout | undefined;
  private heartbeat: NodeJS.Timeout | undefined;
  private pumping = false;
  private again = false;
  private stopped = false;

  constructor(deps: {
    db: Kysely<DB>;
    repo: TasksRepository;
    tasks: TasksService;
    runner: TaskRunner;
    maxConcurrent: number;
  }) {
    this.db = deps.db;
    this.repo = deps.repo;
    this.tasks = deps.tasks;
    this.runner = deps.runner;
    this.maxConcurrent = deps.maxConcurrent;
  }

  async start(): Promise<void> {
    // Tasks this node was running when it last stopped (or died) go back to the queue and
    // resume from their checkpoints.
    await this.repo.requeueInterrupted(this.tasks.nodeId);
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
      const lease = `${process.pid}-${randomUUID()}`;
      const claimed = await this.repo.claim(next.id, {
        lease,
        leaseMs: LEASE_MS,
        nodeId: this.tasks.nodeId,
      });
      if (!claimed) continue; // someone canceled or claimed it first
      this.launch(claimed, lease);
      this.tasks.emit(claimed); // after launch: the byte metrics take it as the baseline
    }
  }

  private launch(task: Task, lease: string): void {
    const controller = new AbortController();
    this.tasks.running.set(task.id, controller);
    this.leases.set(task.id, lease);
    const done = this.runner
      .run(task, lease, controller)
      .catch(() => this.requeue(task.id, lease))
      .finally(() => {
        this.tasks.running.delete(task.id);
        this.leases.delete(task.id);
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
  private async requeue(taskId: number, lease: string): Promise<void> {
    while (!this.stopped) {
      try {
        const queued = await this.repo.requeue(taskId, lease);
        if (queued) this.tasks.emit(queued);
        return; // queued again, or no longer ours (canceled, claimed elsewhere)
      } catch {
        await new Promise((resolve) => setTimeout(resolve, 2000));
      }
    }
  }

  /** The oldest runnable task of the user with the fewest running tasks, within group limits. */
  private async pickNext(): Promise<Task | undefined> {
    const candidates = await this.repo.runnable([...this.runningPromises.keys()], 500);
    if (candidates.length === 0) return undefined;
    const owners = [...new Set(candidates.map((c) => c.owner_id))];
    const running = await this.repo.countProcessingByOwner(owners);
    const limits = await this.db
      .selectFrom('users')
      .innerJoin('groups', 'groups.id', 'users.group_id')
      .select(['users.id', 'groups.max_concurrent_tasks'])
      .where('users.id', 'in', owners)
      .execute();
    const limit = new Map(limits.map((l) => [l.id, l.max_concurrent_tasks]));
    let best: Task | undefined;
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
    const runs = [...this.leases].map(([id, lease]) => ({ id, lease }));
    await this.repo.renewLeases(runs, LEASE_MS).catch(() => undefined);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    clearInterval(this.heartbeat);
    for (const controller of this.tasks.running.values()) controller.abort(SHUTDOWN);
    await Promise.allSettled([...this.runningPromises.values()]);
  }
}
