// How many unfinished tasks (queued, running or paused) one user may hold: without a cap one
// user could queue thousands in a second and fill the database and the scheduler's queue.
// Checked before a batch is created; concurrent requests may overshoot it by their batch.
import type { TasksRepository } from '../db/tasks.repository.ts';
import { AppError } from '../domain/errors.ts';

export async function assertTaskRoom(repo: TasksRepository, ownerId: number, adding: number, cap: number) {
  if (cap <= 0) return;
  const held = await repo.countUnfinished(ownerId);
  if (held + adding > cap)
    throw new AppError(
      'TOO_MANY_TASKS',
      `Too many unfinished tasks: ${held} queued or running, at most ${cap} per user; wait for some to finish or cancel them`,
      { details: { held, cap } },
    );
}
