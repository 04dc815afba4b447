// How many unfinished tasks (queued, running or paused) one user may hold: without a cap one
// user could queue thousands in a second and fill the database and the scheduler's queue.
// Checked before a batch is created; concurrent requests may overshoot it by their batch.
import type { Kysely } from 'kysely';
import type { DB } from '../db/schema.ts';
import { AppError } from '../domain/errors.ts';
import { ACTIVE_STATUSES } from '../domain/task-state.ts';

export async function assertTaskRoom(db: Kysely<DB>, ownerId: number, adding: number, cap: number) {
  if (cap <= 0) return;
  const row = await db
    .selectFrom('tasks')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .where('owner_id', '=', ownerId)
    .where('status', 'in', ACTIVE_STATUSES)
    .executeTakeFirstOrThrow();
  const held = Number(row.n);
  if (held + adding > cap)
    throw new AppError(
      'TOO_MANY_TASKS',
      `Too many unfinished tasks: ${held} queued or running, at most ${cap} per user; wait for some to finish or cancel them`,
      { details: { held, cap } },
    );
}
