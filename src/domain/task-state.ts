// The task state machine. Public statuses come from the Cloudreve seed; finer steps are the
// summary's phase. Every change is persisted with a compare-and-set on the allowed sources.

export const TASK_STATUSES = [
  'queued',
  'processing',
  'suspending',
  'error',
  'canceled',
  'completed',
] as const;
export type TaskStatus = (typeof TASK_STATUSES)[number];

/**
 * '' not started · metadata fetching a magnet's metadata · monitor downloading · transfer landing
 * files in the drive · seeding
 */
export type TaskPhase = '' | 'metadata' | 'monitor' | 'transfer' | 'seeding';

export const TRANSITIONS = {
  // queued → suspending: paused by the user before it started.
  queued: ['processing', 'canceled', 'error', 'suspending'],
  // processing → queued: the node running it stopped (restart, lease lost) and it will resume.
  processing: ['suspending', 'completed', 'error', 'canceled', 'queued'],
  // suspending: waiting to retry, seeding, or paused by the user (paused_at set, no resume
  // time); it goes back to processing when due, or to queued when the user resumes it.
  suspending: ['processing', 'canceled', 'error', 'completed', 'queued'],
  error: [],
  canceled: [],
  completed: [],
} as const satisfies Record<TaskStatus, readonly TaskStatus[]>;

export function canTransition(from: TaskStatus, to: TaskStatus): boolean {
  return (TRANSITIONS[from] as readonly TaskStatus[]).includes(to);
}

/** Statuses from which `to` may be entered: the WHERE clause of the compare-and-set. */
export function sourcesOf(to: TaskStatus): TaskStatus[] {
  return TASK_STATUSES.filter((from) => canTransition(from, to));
}

export const ACTIVE_STATUSES: readonly TaskStatus[] = ['queued', 'processing', 'suspending'];
export const FINISHED_STATUSES: readonly TaskStatus[] = ['error', 'canceled', 'completed'];

export function isTaskStatus(value: string): value is TaskStatus {
  return (TASK_STATUSES as readonly string[]).includes(value);
}

/** Exponential backoff with full jitter for task-level retries: ~2 s, 4 s, 8 s ... capped at 5 min. */
export function retryDelayMs(retryCount: number, random: () => number = Math.random): number {
  const ceiling = Math.min(300_000, 2000 * 2 ** Math.max(0, retryCount - 1));
  return Math.round(ceiling / 2 + random() * (ceiling / 2));
}
