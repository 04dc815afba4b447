// Sign-in sessions as rows: one per refresh chain (root_token_id), holding the refresh token
// that may be used next (rotation with reuse detection), when the password was given
// (recent sign-in), and whether the chain was signed out. Access tokens name their session,
// so signing out ends them at once. Replaces revoked_sessions: refresh tokens issued before
// this migration have no row and are refused (their owners sign in once more).
import type { Kysely } from 'kysely';
import type { Dialect } from '../database.ts';

export async function up(db: Kysely<unknown>, dialect: Dialect): Promise<void> {
  const big = dialect === 'postgres' ? 'bigint' : 'integer';
  await db.schema
    .createTable('sessions')
    .addColumn('root_token_id', 'text', (c) => c.primaryKey())
    .addColumn('user_id', big, (c) => c.notNull().references('users.id').onDelete('cascade'))
    .addColumn('current_jti', 'text', (c) => c.notNull())
    .addColumn('previous_jti', 'text')
    .addColumn('rotated_at', big, (c) => c.notNull())
    .addColumn('auth_time', big, (c) => c.notNull())
    .addColumn('expires_at', big, (c) => c.notNull())
    .addColumn('revoked_at', big)
    .execute();
  await db.schema.createIndex('sessions_user').on('sessions').column('user_id').execute();
  await db.schema.dropTable('revoked_sessions').ifExists().execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('sessions').ifExists().execute();
  await db.schema
    .createTable('revoked_sessions')
    .addColumn('root_token_id', 'text', (c) => c.primaryKey())
    .addColumn('expires_at', 'bigint', (c) => c.notNull())
    .execute();
}
