// The scheduler port: decides when and where queued tasks run. In one process it is an
// in-process loop over the tasks table; scaled out it is a job queue on PostgreSQL.
import type { Task } from '../domain/task.ts';

export interface Scheduler {
  start(): Promise<void>;
  /** Something changed (tasks were created, one finished): look for work now. */
  wake(created?: readonly Task[]): void;
  /** Stops claiming, aborts running work so it resumes later, waits for it to settle. */
  stop(): Promise<void>;
}
