// Folder listings page by keyset (files.service.ts `list`): per type (folders, then files), an
// ordered range of (sort column, id) inside one parent. These indexes match those scans for
// every offered order, so a page of a 100,000-file folder reads ~100 index entries instead of
// sorting the folder. Names are compared by code point on PostgreSQL (collate "C"), as listed.
import { sql, type Kysely } from 'kysely';
import type { Dialect } from '../database.ts';

const COLUMNS = ['name', 'size', 'updated_at', 'created_at'] as const;

export async function up(db: Kysely<unknown>, dialect: Dialect): Promise<void> {
  for (const column of COLUMNS) {
    const sortKey = column === 'name' && dialect === 'postgres' ? sql`name collate "C"` : sql.ref(column);
    await sql`create index ${sql.ref(`files_list_${column}`)} on files (parent_id, type, ${sortKey}, id)`.execute(
      db,
    );
  }
}

export async function down(db: Kysely<unknown>): Promise<void> {
  for (const column of COLUMNS) await db.schema.dropIndex(`files_list_${column}`).execute();
}
