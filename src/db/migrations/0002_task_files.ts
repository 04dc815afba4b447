// BitTorrent tasks have many files: which ones the user wants (`selection`) and which have
// already landed in the drive (`landed`), so a restart neither re-lands nor loses a choice.
import type { Kysely } from 'kysely';
import type { Dialect } from '../database.ts';

export async function up(db: Kysely<unknown>, _dialect: Dialect): Promise<void> {
  await db.schema.alterTable('tasks').addColumn('selection', 'text').execute();
  await db.schema
    .alterTable('tasks')
    .addColumn('landed', 'text', (c) => c.notNull().defaultTo('[]'))
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('tasks').dropColumn('landed').execute();
  await db.schema.alterTable('tasks').dropColumn('selection').execute();
}
