// The first schema: accounts, the file tree with its blobs, upload sessions, tasks and nodes.
// Written with Kysely's portable builder; `idColumn` is the one dialect difference.
import type { Kysely } from 'kysely';
import type { Dialect } from '../database.ts';

export async function up(db: Kysely<unknown>, dialect: Dialect): Promise<void> {
  const big = dialect === 'postgres' ? 'bigint' : 'integer';
  const id = dialect === 'postgres' ? 'bigserial' : 'integer';

  await db.schema
    .createTable('settings')
    .addColumn('key', 'text', (c) => c.primaryKey())
    .addColumn('value', 'text', (c) => c.notNull())
    .execute();

  await db.schema
    .createTable('groups')
    .addColumn('id', id, (c) => c.primaryKey())
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('is_admin', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('quota_bytes', big, (c) => c.notNull())
    .addColumn('allow_remote_download', 'integer', (c) => c.notNull().defaultTo(1))
    .addColumn('max_sources_per_request', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('max_concurrent_tasks', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('download_connections', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('speed_limit', big, (c) => c.notNull().defaultTo(0))
    .addColumn('created_at', big, (c) => c.notNull())
    .execute();

  await db.schema
    .createTable('users')
    .addColumn('id', id, (c) => c.primaryKey())
    .addColumn('email', 'text', (c) => c.notNull().unique())
    .addColumn('nickname', 'text', (c) => c.notNull())
    .addColumn('password_hash', 'text', (c) => c.notNull())
    .addColumn('group_id', big, (c) => c.notNull().references('groups.id'))
    .addColumn('status', 'text', (c) => c.notNull())
    .addColumn('storage_used', big, (c) => c.notNull().defaultTo(0))
    .addColumn('credential_version', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('created_at', big, (c) => c.notNull())
    .addColumn('updated_at', big, (c) => c.notNull())
    .execute();

  await db.schema
    .createTable('api_tokens')
    .addColumn('id', id, (c) => c.primaryKey())
    .addColumn('user_id', big, (c) => c.notNull().references('users.id').onDelete('cascade'))
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('token_hash', 'text', (c) => c.notNull().unique())
    .addColumn('token_prefix', 'text', (c) => c.notNull())
    .addColumn('created_at', big, (c) => c.notNull())
    .addColumn('last_used_at', big)
    .addColumn('expires_at', big)
    .addColumn('revoked_at', big)
    .execute();
  await db.schema.createIndex('api_tokens_user').on('api_tokens').column('user_id').execute();

  await db.schema
    .createTable('revoked_sessions')
    .addColumn('root_token_id', 'text', (c) => c.primaryKey())
    .addColumn('expires_at', big, (c) => c.notNull())
    .execute();

  await db.schema
    .createTable('blobs')
    .addColumn('id', id, (c) => c.primaryKey())
    .addColumn('storage_key', 'text', (c) => c.notNull().unique())
    .addColumn('size', big, (c) => c.notNull())
    .addColumn('ref_count', 'integer', (c) => c.notNull())
    .addColumn('created_at', big, (c) => c.notNull())
    .execute();

  await db.schema
    .createTable('files')
    .addColumn('id', id, (c) => c.primaryKey())
    .addColumn('owner_id', big, (c) => c.notNull().references('users.id').onDelete('cascade'))
    .addColumn('parent_id', big, (c) => c.references('files.id').onDelete('cascade'))
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('type', 'integer', (c) => c.notNull())
    .addColumn('size', big, (c) => c.notNull().defaultTo(0))
    .addColumn('blob_id', big, (c) => c.references('blobs.id'))
    .addColumn('created_at', big, (c) => c.notNull())
    .addColumn('updated_at', big, (c) => c.notNull())
    .execute();
  // Cloudreve's conflict rule: one name per folder, whatever the type.
  await db.schema
    .createIndex('files_parent_name')
    .on('files')
    .columns(['parent_id', 'name'])
    .unique()
    .execute();
  await db.schema.createIndex('files_owner_parent').on('files').columns(['owner_id', 'parent_id']).execute();

  await db.schema
    .createTable('upload_sessions')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('owner_id', big, (c) => c.notNull().references('users.id').onDelete('cascade'))
    .addColumn('parent_id', big, (c) => c.notNull())
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('size', big, (c) => c.notNull())
    .addColumn('chunk_size', big, (c) => c.notNull())
    .addColumn('next_index', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('last_modified', big)
    .addColumn('expires_at', big, (c) => c.notNull())
    .addColumn('created_at', big, (c) => c.notNull())
    .execute();

  await db.schema
    .createTable('nodes')
    .addColumn('id', id, (c) => c.primaryKey())
    .addColumn('name', 'text', (c) => c.notNull().unique())
    .addColumn('type', 'text', (c) => c.notNull())
    .addColumn('capabilities', 'text', (c) => c.notNull())
    .addColumn('status', 'text', (c) => c.notNull())
    .addColumn('last_seen_at', big, (c) => c.notNull())
    .addColumn('created_at', big, (c) => c.notNull())
    .execute();

  await db.schema
    .createTable('tasks')
    .addColumn('id', id, (c) => c.primaryKey())
    .addColumn('owner_id', big, (c) => c.notNull().references('users.id').onDelete('cascade'))
    .addColumn('type', 'text', (c) => c.notNull())
    .addColumn('status', 'text', (c) => c.notNull())
    .addColumn('phase', 'text', (c) => c.notNull().defaultTo(''))
    .addColumn('public_id', 'text', (c) => c.notNull().unique())
    .addColumn('src', 'text', (c) => c.notNull())
    .addColumn('src_file', 'text', (c) => c.notNull())
    .addColumn('dst', 'text', (c) => c.notNull())
    .addColumn('dst_folder_id', big, (c) => c.notNull())
    .addColumn('options', 'text', (c) => c.notNull())
    .addColumn('download_status', 'text')
    .addColumn('error', 'text')
    .addColumn('failure', 'text')
    .addColumn('error_history', 'text', (c) => c.notNull().defaultTo('[]'))
    .addColumn('retry_count', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('resume_time', big)
    .addColumn('node_id', big, (c) => c.notNull())
    .addColumn('checkpoint', 'text')
    .addColumn('result_path', 'text')
    .addColumn('result_size', big)
    .addColumn('failed_files', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('lease_owner', 'text')
    .addColumn('lease_expires_at', big)
    .addColumn('created_at', big, (c) => c.notNull())
    .addColumn('updated_at', big, (c) => c.notNull())
    .addColumn('started_at', big)
    .addColumn('ended_at', big)
    .execute();
  await db.schema
    .createIndex('tasks_owner_status')
    .on('tasks')
    .columns(['owner_id', 'status', 'id'])
    .execute();
  await db.schema.createIndex('tasks_status').on('tasks').columns(['status', 'id']).execute();

  await db.schema
    .createTable('archive_sessions')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('owner_id', big, (c) => c.notNull().references('users.id').onDelete('cascade'))
    .addColumn('file_ids', 'text', (c) => c.notNull())
    .addColumn('expires_at', big, (c) => c.notNull())
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  for (const table of [
    'archive_sessions',
    'tasks',
    'nodes',
    'upload_sessions',
    'files',
    'blobs',
    'revoked_sessions',
    'api_tokens',
    'users',
    'groups',
    'settings',
  ]) {
    await db.schema.dropTable(table).ifExists().execute();
  }
}
