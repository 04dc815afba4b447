// Pause as a first-class state: a paused task is `suspending` with no resume time and
// `paused_at` set. It keeps its staging data and checkpoint, is never claimed, and is not
// handed back to the queue at a restart; resume clears it.
import type { Kysely } from 'kysely';
import type { Dialect } from '../database.ts';

export async function up(db: Kysely<unknown>, dialect: Dialect): Promise<void> {
  await db.schema
    .alterTable('tasks')
    .addColumn('paused_at', dialect === 'postgres' ? 'bigint' : 'integer')
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('tasks').dropColumn('paused_at').execute();
}
