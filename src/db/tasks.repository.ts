// The tasks repository: the only code that writes the `tasks` table. It turns rows into typed
// `Task`s (JSON columns parsed once, src/domain/task.ts) and offers one method per state change.
// Every status change is a compare-and-set on the sources the transition table allows
// (src/domain/task-state.ts); a runner's writes also name its lease, so a cancel or a node that
// took the task over always wins over a late runner. A method that finds nothing to change
// returns undefined (or false): someone else moved the task first.
import { sql, type Kysely } from 'kysely';
import type { Clock } from '../lib/clock.ts';
import type { DownloadStatus, StoredSelection, Task } from '../domain/task.ts';
import {
  ACTIVE_STATUSES,
  FINISHED_STATUSES,
  sourcesOf,
  type TaskPhase,
  type TaskStatus,
} from '../domain/task-state.ts';
import type { DB } from './schema.ts';
import {
  HELD,
  onANode,
  RELEASED,
  runnableAt,
  toTask,
  type Changes,
  type Condition,
  type NewTask,
  type TaskRowData,
} from './task-rows.ts';

export class TasksRepository {
  private readonly db: Kysely<DB>;
  private readonly clock: Clock;

  constructor(db: Kysely<DB>, clock: Clock) {
    this.db = db;
    this.clock = clock;
  }

  /** The same methods inside a transaction (e.g. landing a file together with its task). */
  in(tx: Kysely<DB>): TasksRepository {
    return new TasksRepository(tx, this.clock);
  }

  // ---- reads

  async get(id: number): Promise<Task | undefined> {
    const row = await this.db.selectFrom('tasks').selectAll().where('id', '=', id).executeTakeFirst();
    return row && toTask(row);
  }

  async getMany(ids: readonly number[]): Promise<Task[]> {
    if (ids.length === 0) return [];
    const rows = await this.db
      .selectFrom('tasks')
      .selectAll()
      .where('id', 'in', [...ids])
      .execute();
    return rows.map(toTask);
  }

  async findOwned(ownerId: number, id: number): Promise<Task | undefined> {
    const row = await this.db
      .selectFrom('tasks')
      .selectAll()
      .where('id', '=', id)
      .where('owner_id', '=', ownerId)
      .executeTakeFirst();
    return row && toTask(row);
  }

  async findByPublicId(ownerId: number, publicId: string): Promise<Task | undefined> {
    const row = await this.db
      .selectFrom('tasks')
      .selectAll()
      .where('public_id', '=', publicId)
      .where('owner_id', '=', ownerId)
      .executeTakeFirst();
    return row && toTask(row);
  }

  /** One owner's tasks in the given statuses, by id; `beforeId` pages backwards. */
  async listOwned(
    ownerId: number,
    q: {
      statuses: readonly TaskStatus[];
      order: 'asc' | 'desc';
      limit: number;
      beforeId?: number;
      remoteDownloadsOnly?: boolean;
    },
  ): Promise<Task[]> {
    let query = this.db.selectFrom('tasks').selectAll().where('owner_id', '=', ownerId);
    if (q.remoteDownloadsOnly) query = query.where('type', '=', 'remote_download');
    query = query.where('status', 'in', [...q.statuses]);
    if (q.beforeId !== undefined) query = query.where('id', '<', q.beforeId);
    const rows = await query.orderBy('id', q.order).limit(q.limit).execute();
    return rows.map(toTask);
  }

  /** Tasks that may be claimed now, oldest first, leaving out `exclude` (running here). */
  async runnable(exclude: readonly number[], limit: number): Promise<Task[]> {
    const rows = await this.db
      .selectFrom('tasks')
      .selectAll()
      .where(runnableAt(this.clock.now()))
      .where('id', 'not in', [0, ...exclude])
      .orderBy('id')
      .limit(limit)
      .execute();
    return rows.map(toTask);
  }

  /** Processing tasks per owner, for the owners given (owners with none are absent). */
  async countProcessingByOwner(owners: readonly number[]): Promise<Map<number, number>> {
    if (owners.length === 0) return new Map();
    const rows = await this.db
      .selectFrom('tasks')
      .select(['owner_id', (eb) => eb.fn.countAll<number | string>().as('n')])
      .where('status', '=', 'processing')
      .where('owner_id', 'in', [...owners])
      .groupBy('owner_id')
      .execute();
    return new Map(rows.map((r) => [r.owner_id, Number(r.n)]));
  }

  async countProcessing(ownerId: number): Promise<number> {
    return (await this.countProcessingByOwner([ownerId])).get(ownerId) ?? 0;
  }

  /** The owner's unfinished tasks: queued, running or waiting for a retry. */
  async countUnfinished(ownerId: number): Promise<number> {
    const row = await this.db
      .selectFrom('tasks')
      .select((eb) => eb.fn.countAll<number | string>().as('n'))
      .where('owner_id', '=', ownerId)
      .where('status', 'in', ACTIVE_STATUSES)
      .executeTakeFirst();
    return Number(row?.n ?? 0);
  }

  /** The owner's active tasks created before `id` (a new job's place in line). */
  async countActiveBefore(ownerId: number, id: number): Promise<number> {
    const row = await this.db
      .selectFrom('tasks')
      .select((eb) => eb.fn.countAll<number | string>().as('n'))
      .where('owner_id', '=', ownerId)
      .where('status', 'in', ['queued', 'processing', 'suspending'])
      .where('id', '<', id)
      .executeTakeFirst();
    return Number(row?.n ?? 0);
  }

  /** Task counts by status and node (for /metrics). */
  async countByStatusAndNode(): Promise<Array<{ status: string; node_id: number; n: number }>> {
    const rows = await this.db
      .selectFrom('tasks')
      .select(['status', 'node_id', (eb) => eb.fn.countAll<number | string>().as('n')])
      .groupBy(['status', 'node_id'])
      .execute();
    return rows.map((r) => ({ status: r.status, node_id: r.node_id, n: Number(r.n) }));
  }

  /**
   * PostgreSQL with pg-boss only: tasks waiting (queued, or suspended with a resume time) since
   * before `updatedBefore` that have no live pg-boss job (a send lost to a crash).
   */
  async waitingWithoutJob(updatedBefore: number, limit: number): Promise<Task[]> {
    const result = await sql<TaskRowData>`
      SELECT t.* FROM tasks t
      WHERE (t.status = 'queued' OR (t.status = 'suspending' AND t.resume_time IS NOT NULL))
        AND t.updated_at < ${updatedBefore}
        AND NOT EXISTS (
          SELECT 1 FROM pgboss.job j
          WHERE j.singleton_key = 'task-' || t.id AND j.state IN ('created', 'retry', 'active'))
      ORDER BY t.id LIMIT ${limit}`.execute(this.db);
    return result.rows.map(toTask);
  }

  // ---- writes

  async create(input: NewTask): Promise<Task> {
    const now = this.clock.now();
    const row = await this.db
      .insertInto('tasks')
      .values({
        owner_id: input.owner_id,
        type: 'remote_download',
        status: 'queued',
        phase: '',
        public_id: input.public_id,
        src: input.src,
        src_file: input.src_file,
        dst: input.dst,
        dst_folder_id: input.dst_folder_id,
        options: JSON.stringify(input.options),
        download_status: null,
        error: null,
        failure: null,
        error_history: '[]',
        retry_count: 0,
        resume_time: null,
        node_id: input.node_id,
        checkpoint: input.checkpoint == null ? null : JSON.stringify(input.checkpoint),
        result_path: null,
        result_size: null,
        failed_files: 0,
        lease_owner: null,
        lease_expires_at: null,
        selection: input.selection ? JSON.stringify(input.selection) : null,
        paused_at: null,
        created_at: now,
        updated_at: now,
        started_at: null,
        ended_at: null,
      })
      .returningAll()
      .executeTakeFirstOrThrow();
    return toTask(row);
  }

  /**
   * The compare-and-set every status change goes through: `to` is entered only from the
   * statuses the transition table allows, only under `lease` when one is given, and only
   * when `extra` holds.
   */
  private async move(
    id: number,
    to: TaskStatus,
    set: Changes,
    lease?: string,
    extra?: Condition,
  ): Promise<Task | undefined> {
    let query = this.db
      .updateTable('tasks')
      .set({ ...set, status: to, updated_at: this.clock.now() })
      .where('id', '=', id)
      .where('status', 'in', sourcesOf(to));
    if (lease !== undefined) query = query.where('lease_owner', '=', lease);
    if (extra) query = query.where(extra);
    const row = await query.returningAll().executeTakeFirst();
    return row && toTask(row);
  }

  /** An update of a task its runner holds (processing or seeding, under `lease`). */
  private async whileHeld(id: number, lease: string, set: Changes): Promise<Task | undefined> {
    const row = await this.db
      .updateTable('tasks')
      .set(set)
      .where('id', '=', id)
      .where('status', 'in', HELD)
      .where('lease_owner', '=', lease)
      .returningAll()
      .executeTakeFirst();
    return row && toTask(row);
  }

  /**
   * queued (or suspended and due) → processing, for this node under a new lease: one run, with
   * a token of its own (never reused by a later run, even on the same node) and the next run
   * number. Both schedulers claim with this; a task claimed, canceled or not yet due is left alone.
   */
  async claim(id: number, by: { lease: string; leaseMs: number; nodeId: number }): Promise<Task | undefined> {
    const now = this.clock.now();
    return this.move(
      id,
      'processing',
      {
        lease_owner: by.lease,
        lease_expires_at: now + by.leaseMs,
        node_id: by.nodeId,
        started_at: sql<number>`coalesce(started_at, ${now})`,
        resume_time: null,
        run_count: sql<number>`run_count + 1`,
      },
      undefined,
      runnableAt(now),
    );
  }

  /** Extends the leases of the runs still holding their tasks; returns the ids renewed. */
  async renewLeases(runs: ReadonlyArray<{ id: number; lease: string }>, leaseMs: number): Promise<number[]> {
    if (runs.length === 0) return [];
    const rows = await this.db
      .updateTable('tasks')
      .set({ lease_expires_at: this.clock.now() + leaseMs })
      .where((eb) => eb.or(runs.map((r) => eb.and([eb('id', '=', r.id), eb('lease_owner', '=', r.lease)]))))
      .returning('id')
      .execute();
    return rows.map((r) => r.id);
  }

  async setPhase(id: number, lease: string, phase: TaskPhase): Promise<Task | undefined> {
    return this.whileHeld(id, lease, { phase, updated_at: this.clock.now() });
  }

  async saveProgress(id: number, lease: string, status: DownloadStatus): Promise<Task | undefined> {
    return this.whileHeld(id, lease, {
      download_status: JSON.stringify(status),
      updated_at: this.clock.now(),
    });
  }

  /** The downloader's resume state. */
  async saveCheckpoint(id: number, lease: string, state: unknown): Promise<boolean> {
    return (await this.whileHeld(id, lease, { checkpoint: JSON.stringify(state) })) !== undefined;
  }

  /**
   * The file indexes already in the drive. Unconditional: the files did land, whoever holds
   * the task now must not land them again.
   */
  async saveLanded(id: number, indexes: readonly number[]): Promise<void> {
    await this.db
      .updateTable('tasks')
      .set({ landed: JSON.stringify(indexes) })
      .where('id', '=', id)
      .execute();
  }

  /** The user's file choice (kept also before the downloader can take it). */
  async saveSelection(id: number, selection: StoredSelection): Promise<void> {
    await this.db
      .updateTable('tasks')
      .set({ selection: JSON.stringify(selection), updated_at: this.clock.now() })
      .where('id', '=', id)
      .execute();
  }

  /** processing → suspending with phase seeding: downloaded, now seeding under the same lease. */
  async startSeeding(id: number, lease: string, status: DownloadStatus): Promise<Task | undefined> {
    return this.move(
      id,
      'suspending',
      { phase: 'seeding', resume_time: null, download_status: JSON.stringify(status) },
      lease,
    );
  }

  /**
   * Landing one file of a task that stays running: true while the runner still holds the task.
   * Run it in the landing transaction, so a cancel that won makes the landing roll back.
   */
  async confirmHeld(id: number, lease: string): Promise<boolean> {
    return (await this.whileHeld(id, lease, { updated_at: this.clock.now() })) !== undefined;
  }

  /**
   * processing/suspending → completed, under the runner's lease; the lease is released. A
   * failure from an earlier attempt is cleared (it stays in error_history).
   */
  async complete(
    id: number,
    lease: string,
    result: {
      download_status?: DownloadStatus | null;
      result_path?: string;
      result_size?: number;
      phase?: TaskPhase;
    },
  ): Promise<Task | undefined> {
    return this.move(
      id,
      'completed',
      {
        ended_at: this.clock.now(),
        error: null,
        failure: null,
        ...(result.phase !== undefined ? { phase: result.phase } : {}),
        ...(result.download_status ? { download_status: JSON.stringify(result.download_status) } : {}),
        ...(result.result_path !== undefined ? { result_path: result.result_path } : {}),
        ...(result.result_size !== undefined ? { result_size: result.result_size } : {}),
        checkpoint: null,
        ...RELEASED,
      },
      lease,
    );
  }

  /** Where a completed task's file landed (written in the landing transaction). */
  async saveResult(id: number, path: string, size: number): Promise<void> {
    await this.db
      .updateTable('tasks')
      .set({ result_path: path, result_size: size })
      .where('id', '=', id)
      .execute();
  }

  /** processing → suspending until `retryInMs` from now, with the failure kept in the history. */
  async suspendForRetry(
    id: number,
    lease: string,
    retry: {
      retry_count: number;
      error: string;
      failure: string;
      error_history: string[];
      retryInMs: number;
    },
  ): Promise<Task | undefined> {
    return this.move(
      id,
      'suspending',
      {
        retry_count: retry.retry_count,
        error: retry.error,
        failure: retry.failure,
        error_history: JSON.stringify(retry.error_history),
        resume_time: this.clock.now() + retry.retryInMs,
        ...RELEASED,
      },
      lease,
    );
  }

  /**
   * → error, under the runner's lease: the failure is final. `keepCheckpoint`: the partial data
   * stays for a retry (a network failure, not a bad file).
   */
  async fail(
    id: number,
    lease: string,
    failure: { error: string; failure: string; keepCheckpoint?: boolean },
  ): Promise<Task | undefined> {
    return this.move(
      id,
      'error',
      {
        error: failure.error,
        failure: failure.failure,
        ended_at: this.clock.now(),
        ...(failure.keepCheckpoint ? {} : { checkpoint: null }),
        resume_time: null,
        ...RELEASED,
      },
      lease,
    );
  }

  /**
   * Hands a finished task's kept checkpoint over to its retry: returns it and clears it here,
   * once (a second caller gets null).
   */
  async takeCheckpoint(id: number): Promise<unknown> {
    const row = await this.get(id);
    if (!row || row.checkpoint === null || !FINISHED_STATUSES.includes(row.status)) return null;
    const taken = await this.db
      .updateTable('tasks')
      .set({ checkpoint: null })
      .where('id', '=', id)
      .where('status', 'in', FINISHED_STATUSES)
      .where('checkpoint', 'is not', null)
      .returning('id')
      .executeTakeFirst();
    return taken ? row.checkpoint : null;
  }

  /** → canceled, whoever holds it: the user's word wins over any runner. */
  async cancel(id: number): Promise<Task | undefined> {
    return this.move(id, 'canceled', { ended_at: this.clock.now(), resume_time: null, ...RELEASED });
  }

  /** processing/suspending → queued, under `lease`: it stopped here and resumes from its checkpoint. */
  async requeue(id: number, lease: string): Promise<Task | undefined> {
    return this.move(id, 'queued', { resume_time: null, ...RELEASED }, lease);
  }

  /**
   * The user pauses: queued, running (not seeding or landing) or waiting to retry → suspending
   * with `paused_at` and no resume time. A runner keeps its lease until it has stopped and
   * saved its checkpoint (`settlePaused`); nothing claims or requeues a paused task.
   */
  async pause(id: number): Promise<Task | undefined> {
    const now = this.clock.now();
    // Entered from the transition table's sources, and from a wait for a retry (suspending
    // stays suspending: not a status change).
    const row = await this.db
      .updateTable('tasks')
      .set({ status: 'suspending', paused_at: now, resume_time: null, updated_at: now })
      .where('id', '=', id)
      .where('status', 'in', [...new Set([...sourcesOf('suspending'), 'suspending' as const])])
      .where('paused_at', 'is', null)
      .where('phase', 'not in', ['seeding', 'transfer'])
      .where((eb) => eb.or([eb('status', '!=', 'suspending'), eb('resume_time', 'is not', null)]))
      .returningAll()
      .executeTakeFirst();
    return row && toTask(row);
  }

  /** The runner of a paused task stopped: it lets the lease go (staging and checkpoint stay). */
  async settlePaused(id: number, lease: string): Promise<Task | undefined> {
    const row = await this.db
      .updateTable('tasks')
      .set({ ...RELEASED, updated_at: this.clock.now() })
      .where('id', '=', id)
      .where('status', '=', 'suspending')
      .where('paused_at', 'is not', null)
      .where('lease_owner', '=', lease)
      .returningAll()
      .executeTakeFirst();
    return row && toTask(row);
  }

  /**
   * The user resumes a paused task: → queued (it resumes from its checkpoint). When its runner
   * has not stopped yet, only the pause is lifted; that runner then hands it back to the queue.
   */
  async resume(id: number): Promise<Task | undefined> {
    const now = this.clock.now();
    const queued = await this.move(
      id,
      'queued',
      { paused_at: null, resume_time: null, ...RELEASED },
      undefined,
      (eb) =>
        eb.and([
          eb('status', '=', 'suspending'),
          eb('paused_at', 'is not', null),
          eb.or([eb('lease_owner', 'is', null), eb('lease_expires_at', '<', now)]),
        ]),
    );
    if (queued) return queued;
    const row = await this.db
      .updateTable('tasks')
      .set({ paused_at: null, updated_at: now })
      .where('id', '=', id)
      .where('status', '=', 'suspending')
      .where('paused_at', 'is not', null)
      .returningAll()
      .executeTakeFirst();
    return row && toTask(row);
  }

  /** Running tasks back to queued where `where` says; they resume from their checkpoints. */
  private async requeueRunning(where: Condition): Promise<Task[]> {
    const rows = await this.db
      .updateTable('tasks')
      .set({ status: 'queued', ...RELEASED, updated_at: this.clock.now() })
      .where('status', 'in', sourcesOf('queued'))
      .where(onANode)
      .where(where)
      .returningAll()
      .execute();
    return rows.map(toTask);
  }

  /** At start, one process: what this node ran, and what any node left with a lapsed or no lease. */
  async requeueInterrupted(nodeId: number): Promise<Task[]> {
    const now = this.clock.now();
    return this.requeueRunning((eb) =>
      eb.or([
        eb('node_id', '=', nodeId),
        eb('lease_expires_at', '<', now),
        eb('lease_expires_at', 'is', null),
      ]),
    );
  }

  /** Supervision: tasks whose node stopped renewing their lease. */
  async requeueLapsed(): Promise<Task[]> {
    const now = this.clock.now();
    return this.requeueRunning((eb) => eb('lease_expires_at', '<', now));
  }

  /** A restarted worker (same unique name) takes its earlier incarnation's tasks back. */
  async requeueOfNode(nodeId: number): Promise<Task[]> {
    return this.requeueRunning((eb) => eb('node_id', '=', nodeId));
  }

  /** Removing a user removes their tasks (inside the removal's transaction). */
  async deleteByOwner(ownerId: number): Promise<void> {
    await this.db.deleteFrom('tasks').where('owner_id', '=', ownerId).execute();
  }
}
