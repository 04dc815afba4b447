// How many times a task was claimed. Each claim is one run with its own lease token; the run
// number makes the run's blob storage keys unique (`blobs/task-<id>-<index>-r<run>`), so a
// stale run that reaches landing can only touch its own keys, never the winner's blob, and the
// start-up sweep can still find every key a task's runs may have imported.
import type { Kysely } from 'kysely';
import type { Dialect } from '../database.ts';

export async function up(db: Kysely<unknown>, _dialect: Dialect): Promise<void> {
  await db.schema
    .alterTable('tasks')
    .addColumn('run_count', 'integer', (c) => c.notNull().defaultTo(0))
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('tasks').dropColumn('run_count').execute();
}
