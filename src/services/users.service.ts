// Accounts and groups: creating users (each with a root folder), changing passwords,
// removing users and their blobs, and the seed data of a fresh database.
import { randomBytes } from 'node:crypto';
import type { Kysely, Selectable, Transaction } from 'kysely';
import { AppError } from '../domain/errors.ts';
import type { DB, GroupsTable, UsersTable } from '../db/schema.ts';
import type { TasksRepository } from '../db/tasks.repository.ts';
import type { ServiceContext } from './context.ts';
import { hashPassword } from './passwords.ts';

export type UserRow = Selectable<UsersTable>;
export type GroupRow = Selectable<GroupsTable>;
export interface Actor {
  user: UserRow;
  group: GroupRow;
  /** How the request proved who it is; absent for actors made inside the server. */
  credential?: {
    kind: 'access' | 'api_token';
    /** when the password was given for this session (ms), null for API tokens */
    authTime: number | null;
    sessionId?: string;
  };
}

export const ADMIN_GROUP_ID = 1;
export const USER_GROUP_ID = 2;
const GiB = 1024 ** 3;

const EMAIL = /^[^\s@]{1,64}@[^\s@]{1,255}$/;

export class UsersService {
  private readonly ctx: ServiceContext;
  private readonly tasks: TasksRepository;
  constructor(ctx: ServiceContext, tasks: TasksRepository) {
    this.tasks = tasks;
    this.ctx = ctx;
  }

  /** Groups and the master node of a fresh database; safe to call on every start. */
  async seed(): Promise<void> {
    const { db, clock } = this.ctx;
    const now = clock.now();
    const existing = await db.selectFrom('groups').select('id').execute();
    if (existing.length === 0) {
      await db
        .insertInto('groups')
        .values([
          {
            name: 'Admin',
            is_admin: 1,
            quota_bytes: 1024 * GiB,
            allow_remote_download: 1,
            max_sources_per_request: 0,
            max_concurrent_tasks: 0,
            download_connections: 0,
            speed_limit: 0,
            created_at: now,
          },
          {
            name: 'User',
            is_admin: 0,
            quota_bytes: 10 * GiB,
            allow_remote_download: 1,
            max_sources_per_request: 100,
            max_concurrent_tasks: 5,
            download_connections: 0,
            speed_limit: 0,
            created_at: now,
          },
        ])
        .execute();
    }
  }

  async count(): Promise<number> {
    const row = await this.ctx.db
      .selectFrom('users')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .executeTakeFirstOrThrow();
    return Number(row.n);
  }

  async create(email: string, password: string, groupName: 'admin' | 'user' = 'user'): Promise<UserRow> {
    const normalized = email.trim().toLowerCase();
    if (!EMAIL.test(normalized)) throw new AppError('PARAM_INVALID', 'Invalid email address');
    if (password.length < 4 || password.length > 128)
      throw new AppError('PARAM_INVALID', 'Password must be 4-128 characters');
    const { db, clock } = this.ctx;
    const passwordHash = await hashPassword(password);
    const now = clock.now();
    return db.transaction().execute(async (tx) => {
      const taken = await tx
        .selectFrom('users')
        .select('id')
        .where('email', '=', normalized)
        .executeTakeFirst();
      if (taken) throw new AppError('EMAIL_EXISTS');
      const user = await tx
        .insertInto('users')
        .values({
          email: normalized,
          nickname: normalized.split('@')[0]!.slice(0, 64),
          password_hash: passwordHash,
          group_id: groupName === 'admin' ? ADMIN_GROUP_ID : USER_GROUP_ID,
          status: 'active',
          storage_used: 0,
          credential_version: 0,
          created_at: now,
          updated_at: now,
        })
        .returningAll()
        .executeTakeFirstOrThrow();
      await tx
        .insertInto('files')
        .values({
          owner_id: user.id,
          parent_id: null,
          name: '',
          type: 1,
          size: 0,
          blob_id: null,
          created_at: now,
          updated_at: now,
        })
        .execute();
      return user;
    });
  }

  async list(): Promise<Array<UserRow & { group_name: string }>> {
    return this.ctx.db
      .selectFrom('users')
      .innerJoin('groups', 'groups.id', 'users.group_id')
      .selectAll('users')
      .select('groups.name as group_name')
      .orderBy('users.id')
      .execute();
  }

  async findByEmail(email: string): Promise<UserRow | undefined> {
    return this.ctx.db
      .selectFrom('users')
      .selectAll()
      .where('email', '=', email.trim().toLowerCase())
      .executeTakeFirst();
  }

  async actor(userId: number): Promise<Actor | null> {
    const user = await this.ctx.db
      .selectFrom('users')
      .selectAll()
      .where('id', '=', userId)
      .executeTakeFirst();
    if (!user) return null;
    const group = await this.ctx.db
      .selectFrom('groups')
      .selectAll()
      .where('id', '=', user.group_id)
      .executeTakeFirstOrThrow();
    return { user, group };
  }

  async setNickname(userId: number, nickname: string): Promise<void> {
    await this.ctx.db
      .updateTable('users')
      .set({ nickname, updated_at: this.ctx.clock.now() })
      .where('id', '=', userId)
      .execute();
  }

  /** Changing the password signs the user out everywhere (see signOutEverywhere). */
  async setPassword(
    email: string,
    password: string,
    options: { keepApiTokens?: boolean } = {},
  ): Promise<void> {
    if (password.length < 4 || password.length > 128)
      throw new AppError('PARAM_INVALID', 'Password must be 4-128 characters');
    const user = await this.findByEmail(email);
    if (!user) throw new AppError('USER_NOT_FOUND');
    const passwordHash = await hashPassword(password);
    await this.ctx.db.transaction().execute(async (tx) => {
      await tx
        .updateTable('users')
        .set({ password_hash: passwordHash, updated_at: this.ctx.clock.now() })
        .where('id', '=', user.id)
        .execute();
      await this.signOutEverywhere(user.id, options, tx);
    });
  }

  /**
   * Ends every session of the user: bumping credential_version refuses their access and
   * refresh tokens on the next request, the session rows are marked signed out, and — unless
   * asked to keep them — their API tokens are revoked too.
   */
  async signOutEverywhere(
    userId: number,
    options: { keepApiTokens?: boolean } = {},
    db: Kysely<DB> | Transaction<DB> = this.ctx.db,
  ): Promise<{ apiTokensRevoked: number }> {
    const now = this.ctx.clock.now();
    const run = async (tx: Kysely<DB> | Transaction<DB>) => {
      await tx
        .updateTable('users')
        .set((eb) => ({ credential_version: eb('credential_version', '+', 1), updated_at: now }))
        .where('id', '=', userId)
        .execute();
      await tx
        .updateTable('sessions')
        .set({ revoked_at: now })
        .where('user_id', '=', userId)
        .where('revoked_at', 'is', null)
        .execute();
      if (options.keepApiTokens) return { apiTokensRevoked: 0 };
      const revoked = await tx
        .updateTable('api_tokens')
        .set({ revoked_at: now })
        .where('user_id', '=', userId)
        .where('revoked_at', 'is', null)
        .executeTakeFirst();
      return { apiTokensRevoked: Number(revoked.numUpdatedRows) };
    };
    return db.isTransaction ? run(db) : db.transaction().execute(run);
  }

  /** Removes the user, their files, tokens and tasks, and the blobs nobody else references. */
  async remove(email: string): Promise<void> {
    const user = await this.findByEmail(email);
    if (!user) throw new AppError('USER_NOT_FOUND');
    const { db, storage } = this.ctx;
    const orphanKeys = await db.transaction().execute(async (tx) => {
      const blobRefs = await tx
        .selectFrom('files')
        .select(['blob_id', (eb) => eb.fn.countAll<number>().as('n')])
        .where('owner_id', '=', user.id)
        .where('blob_id', 'is not', null)
        .groupBy('blob_id')
        .execute();
      const keys: string[] = [];
      for (const ref of blobRefs) {
        const blob = await tx
          .updateTable('blobs')
          .set((eb) => ({ ref_count: eb('ref_count', '-', Number(ref.n)) }))
          .where('id', '=', ref.blob_id!)
          .returning(['id', 'storage_key', 'ref_count'])
          .executeTakeFirst();
        if (blob && blob.ref_count <= 0) keys.push(blob.storage_key);
      }
      await tx.updateTable('files').set({ blob_id: null }).where('owner_id', '=', user.id).execute();
      await tx
        .deleteFrom('files')
        .where('owner_id', '=', user.id)
        .where('parent_id', 'is not', null)
        .execute();
      await tx.deleteFrom('files').where('owner_id', '=', user.id).execute();
      await this.tasks.in(tx).deleteByOwner(user.id);
      await tx.deleteFrom('api_tokens').where('user_id', '=', user.id).execute();
      await tx.deleteFrom('sessions').where('user_id', '=', user.id).execute();
      await tx.deleteFrom('upload_sessions').where('owner_id', '=', user.id).execute();
      await tx.deleteFrom('archive_sessions').where('owner_id', '=', user.id).execute();
      await tx.deleteFrom('users').where('id', '=', user.id).execute();
      if (keys.length) await tx.deleteFrom('blobs').where('storage_key', 'in', keys).execute();
      return keys;
    });
    for (const key of orphanKeys) await storage.delete(key);
  }

  /** Creates the first admin when the database has no user yet. Returns a generated password. */
  async ensureFirstAdmin(
    email: string | undefined,
    password: string | undefined,
  ): Promise<{ email: string; password?: string } | null> {
    if ((await this.count()) > 0) return null;
    const adminEmail = email?.trim() || 'admin@ferry.local';
    // An empty FERRY_ADMIN_PASSWORD means "not set": generate one (it used to be passed on
    // as the password, failing validation and stopping the first start).
    const generated = password ? undefined : randomBytes(12).toString('base64url');
    await this.create(adminEmail, password || generated!, 'admin');
    return generated ? { email: adminEmail, password: generated } : { email: adminEmail };
  }
}
