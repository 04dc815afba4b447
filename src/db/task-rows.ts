// Rows of the `tasks` table as `Task`s, and the conditions the tasks repository's
// compare-and-sets are made of (each written once, here).
import type { Expression, ExpressionBuilder, Selectable, SqlBool, UpdateObject } from 'kysely';
import {
  parseCheckpoint,
  parseDownloadStatus,
  parseErrorHistory,
  parseIndexList,
  parseOptions,
  parseSelection,
  toTaskPhase,
  toTaskStatus,
  type Task,
} from '../domain/task.ts';
import type { TaskStatus } from '../domain/task-state.ts';
import type { DB, TasksTable } from './schema.ts';

export type TaskRowData = Selectable<TasksTable>;

export function toTask(row: TaskRowData): Task {
  return {
    ...row,
    status: toTaskStatus(row.status),
    phase: toTaskPhase(row.phase),
    options: parseOptions(row.options),
    download_status: parseDownloadStatus(row.download_status),
    error_history: parseErrorHistory(row.error_history),
    checkpoint: parseCheckpoint(row.checkpoint),
    selection: parseSelection(row.selection),
    landed: parseIndexList(row.landed),
  };
}

/** What creating a task takes (the task's own fields, typed once in `Task`); the rest starts empty. */
export type NewTask = Pick<
  Task,
  | 'owner_id'
  | 'public_id'
  | 'src'
  | 'src_file'
  | 'dst'
  | 'dst_folder_id'
  | 'options'
  | 'selection'
  | 'node_id'
> & {
  /** a retry of a failed task starts from that task's checkpoint */
  checkpoint?: unknown;
};

export type Eb = ExpressionBuilder<DB, 'tasks'>;
export type Condition = (eb: Eb) => Expression<SqlBool>;
export type Changes = UpdateObject<DB, 'tasks'>;

/** Statuses in which a runner holds the task (under its lease). */
export const HELD: TaskStatus[] = ['processing', 'suspending'];

/** Waiting to run now: queued, or suspended for a retry whose time has come. */
export const runnableAt = (now: number) => (eb: Eb) =>
  eb.and([
    eb.or([
      eb('status', '=', 'queued'),
      eb.and([eb('status', '=', 'suspending'), eb('resume_time', '<=', now)]),
    ]),
    eb('paused_at', 'is', null),
  ]);

/** Running on some node: processing, or seeding (suspending without a resume time, not paused). */
export const onANode = (eb: Eb) =>
  eb.or([
    eb('status', '=', 'processing'),
    eb.and([eb('status', '=', 'suspending'), eb('resume_time', 'is', null), eb('paused_at', 'is', null)]),
  ]);

export const RELEASED = { lease_owner: null, lease_expires_at: null } as const;
