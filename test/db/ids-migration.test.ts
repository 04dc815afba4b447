// Migration 0005 on a database made by the previous release (migrations 0001–0004 with data and
// freed ids): every row is kept, ids are never handed out again, blobs get distinct nonces.
// SQLite tables are rebuilt with AUTOINCREMENT; PostgreSQL keeps its bigserial sequences.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import SQLite from 'better-sqlite3';
import pg from 'pg';
import { Kysely, Migrator, PostgresDialect, SqliteDialect, sql, type Migration } from 'kysely';
import { openDatabase, type Dialect } from '../../src/db/database.ts';
import * as m1 from '../../src/db/migrations/0001_initial.ts';
import * as m2 from '../../src/db/migrations/0002_task_files.ts';
import * as m3 from '../../src/db/migrations/0003_file_list_indexes.ts';
import * as m4 from '../../src/db/migrations/0004_blob_crc32.ts';
import { ID_TABLES, up as rerun } from '../../src/db/migrations/0005_ids_never_reused.ts';
import { createThrowawayDatabase, dialect } from '../helpers/server.ts';

type Up = {
  up: (db: Kysely<unknown>, d: Dialect) => Promise<void>;
  down: (db: Kysely<unknown>) => Promise<void>;
};

/** Opens `url` and migrates it to 0004 only: the schema the previous release left. */
async function previousRelease(url: string): Promise<Kysely<unknown>> {
  let db: Kysely<unknown>;
  if (dialect === 'postgres') {
    db = new Kysely({
      dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: url, max: 2 }) }),
    });
  } else {
    const sqlite = new SQLite(url);
    sqlite.pragma('foreign_keys = ON');
    db = new Kysely({ dialect: new SqliteDialect({ database: sqlite }) });
  }
  const bind = (m: Up): Migration => ({ up: (k) => m.up(k, dialect), down: (k) => m.down(k) });
  const migrations = {
    '0001_initial': bind(m1),
    '0002_task_files': bind(m2),
    '0003_file_list_indexes': bind(m3),
    '0004_blob_crc32': bind(m4),
  };
  const { error } = await new Migrator({
    db,
    provider: { getMigrations: async () => migrations },
  }).migrateToLatest();
  if (error) throw error instanceof Error ? error : new Error(JSON.stringify(error));
  return db;
}

const T = 1_700_000_000_000;

/** Rows as a user of the old release leaves them; the highest blob, file and task are deleted. */
async function fill(db: Kysely<unknown>): Promise<void> {
  const run = (text: string) => sql.raw(text).execute(db);
  await run(
    `insert into groups (name, is_admin, quota_bytes, created_at) values ('admin', 1, 1000, ${T}), ('user', 0, 1000, ${T})`,
  );
  await run(`insert into users (email, nickname, password_hash, group_id, status, created_at, updated_at) values
    ('alice@x', 'alice', 'h', 1, 'active', ${T}, ${T}), ('bob@x', 'bob', 'h', 2, 'active', ${T}, ${T})`);
  await run(
    `insert into api_tokens (user_id, name, token_hash, token_prefix, created_at) values (1, 't', 'hash1', 'fry_x', ${T})`,
  );
  await run(`insert into blobs (storage_key, size, ref_count, created_at, crc32) values
    ('blobs/a', 1, 1, ${T}, 7), ('blobs/task-1-0', 2, 1, ${T}, null), ('blobs/c', 3, 1, ${T}, null)`);
  await run(`insert into files (owner_id, parent_id, name, type, size, blob_id, created_at, updated_at) values
    (1, null, '', 1, 0, null, ${T}, ${T}), (2, null, '', 1, 0, null, ${T}, ${T}),
    (1, 1, 'a.txt', 0, 1, 1, ${T}, ${T}), (1, 1, 'dl.bin', 0, 2, 2, ${T}, ${T}),
    (2, 2, 'c.txt', 0, 3, 3, ${T}, ${T}), (2, 2, 'gone.txt', 0, 3, 3, ${T}, ${T})`);
  await run(
    `insert into nodes (name, type, capabilities, status, last_seen_at, created_at) values ('Master', 'master', 'CA==', 'active', ${T}, ${T})`,
  );
  for (const [id, owner] of [
    [1, 1],
    [2, 2],
    [3, 2],
  ] as const) {
    await run(`insert into tasks (owner_id, type, status, public_id, src, src_file, dst, dst_folder_id, options, node_id, created_at, updated_at)
      values (${owner}, 'remote_download', 'completed', 'pub-${id}', 'http://127.0.0.1/x', '', 'cloudreve://my', 1, '{}', 1, ${T}, ${T})`);
  }
  // Deleted rows whose ids the old release would hand out again: file 6 (still named by an
  // archive session), blob 3's neighbour, task 3 and a later task 9 (its blob key survives).
  await run(
    `insert into archive_sessions (id, owner_id, file_ids, expires_at) values ('s1', 2, '[5, 6]', ${T})`,
  );
  await run(`delete from files where id = 6`);
  await run(`update blobs set ref_count = 1 where id = 3`);
  await run(`delete from tasks where id = 3`);
  await run(
    `insert into blobs (storage_key, size, ref_count, created_at) values ('blobs/task-9-0', 4, 0, ${T})`,
  );
}

/** `after` cut down to the columns `before` had: later migrations may add columns of their own. */
function onlyColumnsOf(
  after: Record<string, unknown[]>,
  before: Record<string, unknown[]>,
): Record<string, unknown[]> {
  const out: Record<string, unknown[]> = {};
  for (const [table, rows] of Object.entries(after)) {
    const columns = Object.keys(before[table]?.[0] ?? {});
    out[table] = rows.map((row) =>
      columns.length ? Object.fromEntries(columns.map((c) => [c, (row as Record<string, unknown>)[c]])) : row,
    );
  }
  return out;
}

async function snapshot(db: Kysely<unknown>): Promise<Record<string, unknown[]>> {
  const out: Record<string, unknown[]> = {};
  for (const table of [...ID_TABLES, 'archive_sessions']) {
    const rows = (await sql.raw<Record<string, unknown>>(`select * from ${table} order by id`).execute(db))
      .rows;
    out[table] = rows.map((r) => {
      const { nonce: _nonce, ...rest } = r;
      return Object.fromEntries(
        Object.entries(rest).map(([k, v]) => [
          k,
          typeof v === 'bigint' || (typeof v === 'string' && /^\d+$/.test(v) && k !== 'value')
            ? Number(v)
            : v,
        ]),
      );
    });
  }
  return out;
}

describe(`migration 0005 on a database of the previous release (${dialect})`, () => {
  let url: string;
  let cleanup: () => Promise<void>;
  before(async () => {
    if (dialect === 'postgres') {
      const pgdb = await createThrowawayDatabase();
      url = pgdb.url;
      cleanup = () => pgdb.drop();
    } else {
      const dir = await mkdtemp(join(tmpdir(), 'ferry-migration-'));
      url = join(dir, 'ferry.db');
      cleanup = () => rm(dir, { recursive: true, force: true });
    }
  });
  after(async () => cleanup?.());

  test('keeps every row, never reuses an id, gives each blob its own nonce', async () => {
    const old = await previousRelease(url);
    await fill(old);
    const before = await snapshot(old);
    await old.destroy();

    const database = await openDatabase(url); // runs 0005 (and every later migration)
    try {
      const db = database.db as unknown as Kysely<unknown>;
      assert.deepEqual(
        onlyColumnsOf(await snapshot(db), before),
        before,
        'every row and column kept as it was',
      );

      const nonces = (await sql<{ nonce: string }>`select nonce from blobs`.execute(db)).rows.map(
        (r) => r.nonce,
      );
      assert.equal(nonces.length, 4);
      assert.equal(new Set(nonces).size, 4, 'distinct nonces');
      for (const n of nonces) assert.match(n, /^[0-9a-f]{32}$/);

      // New rows get ids above every id issued before: file 6 is named by an archive session,
      // task 9 by a storage key, blob 4 and task 3 existed.
      const insertedId = async (text: string): Promise<number> =>
        Number((await sql.raw<{ id: number }>(`${text} returning id`).execute(db)).rows[0]!.id);
      assert.ok(
        (await insertedId(
          `insert into files (owner_id, parent_id, name, type, size, created_at, updated_at) values (1, 1, 'new', 0, 0, ${T}, ${T})`,
        )) > 6,
      );
      assert.ok(
        (await insertedId(
          `insert into blobs (storage_key, size, ref_count, created_at) values ('blobs/new', 1, 1, ${T})`,
        )) > 4,
      );
      const task = `insert into tasks (owner_id, type, status, public_id, src, src_file, dst, dst_folder_id, options, node_id, created_at, updated_at) values (1, 'remote_download', 'queued', 'pub-new', 'x', '', 'd', 1, '{}', 1, ${T}, ${T})`;
      assert.ok((await insertedId(task)) > (dialect === 'sqlite' ? 9 : 3));

      // Free the newest row of each kind and insert again: never the same id.
      const inserts: Record<(typeof ID_TABLES)[number], (n: number) => string> = {
        groups: (n) => `insert into groups (name, quota_bytes, created_at) values ('g${n}', 1, ${T})`,
        users: (n) =>
          `insert into users (email, nickname, password_hash, group_id, status, created_at, updated_at) values ('u${n}@x', 'u', 'h', 1, 'active', ${T}, ${T})`,
        api_tokens: (n) =>
          `insert into api_tokens (user_id, name, token_hash, token_prefix, created_at) values (1, 't', 'h${n}', 'fry_', ${T})`,
        blobs: (n) =>
          `insert into blobs (storage_key, size, ref_count, created_at) values ('blobs/n${n}', 1, 1, ${T})`,
        files: (n) =>
          `insert into files (owner_id, parent_id, name, type, size, created_at, updated_at) values (1, 1, 'n${n}', 0, 0, ${T}, ${T})`,
        nodes: (n) =>
          `insert into nodes (name, type, capabilities, status, last_seen_at, created_at) values ('n${n}', 'slave', 'CA==', 'active', ${T}, ${T})`,
        tasks: (n) => task.replace('pub-new', `pub-${n}`),
      };
      let n = 0;
      for (const table of ID_TABLES) {
        await insertedId(inserts[table](++n));
        const top = Number(
          (await sql.raw<{ n: number }>(`select max(id) as n from ${table}`).execute(db)).rows[0]!.n,
        );
        await sql.raw(`delete from ${table} where id = ${top}`).execute(db);
        const again = await insertedId(inserts[table](++n));
        assert.ok(again > top, `${table}: ${again} after deleting ${top}`);
      }

      if (dialect === 'sqlite') {
        const tables = (
          await sql<{
            name: string;
            sql: string;
          }>`select name, sql from sqlite_master where type = 'table'`.execute(db)
        ).rows;
        for (const name of ID_TABLES) {
          assert.match(tables.find((t) => t.name === name)!.sql, /autoincrement/i, name);
        }
        assert.ok(!tables.some((t) => t.name.endsWith('_rebuilt')));
        // Running it again (a second process that started together, a crash before 0005 was
        // recorded) changes nothing.
        const kept = await snapshot(db);
        await rerun(db, 'sqlite');
        assert.deepEqual(await snapshot(db), kept);
        // The rebuilt tables' own indexes (later migrations may add indexes to other tables).
        const indexes = (
          await sql<{
            name: string;
            tbl_name: string;
          }>`select name, tbl_name from sqlite_master where type = 'index' and sql is not null`.execute(db)
        ).rows
          .filter((r) => (ID_TABLES as readonly string[]).includes(r.tbl_name))
          .map((r) => r.name)
          .sort();
        assert.deepEqual(indexes, [
          'api_tokens_user',
          'files_list_created_at',
          'files_list_name',
          'files_list_size',
          'files_list_updated_at',
          'files_owner_parent',
          'files_parent_name',
          'tasks_owner_status',
          'tasks_status',
        ]);
        // Foreign keys are back on and still cascade.
        assert.equal(
          (await sql<{ foreign_keys: number }>`pragma foreign_keys`.execute(db)).rows[0]!.foreign_keys,
          1,
        );
        await sql`delete from archive_sessions`.execute(db);
        await sql`delete from tasks where owner_id = 2`.execute(db);
        await sql`update files set blob_id = null where owner_id = 2`.execute(db);
        await sql`delete from files where owner_id = 2 and parent_id is not null`.execute(db);
        await sql`delete from users where id = 2`.execute(db);
        assert.equal(
          (await sql<{ n: number }>`select count(*) as n from files where owner_id = 2`.execute(db)).rows[0]!
            .n,
          0,
          'the root folder went with its owner (on delete cascade)',
        );
        await assert.rejects(
          sql`insert into files (owner_id, parent_id, name, type, size, created_at, updated_at) values (99, null, 'x', 1, 0, 1, 1)`.execute(
            db,
          ),
          /FOREIGN KEY/,
        );
      } else {
        for (const name of ID_TABLES) {
          const seq = await sql<{
            s: string | null;
          }>`select pg_get_serial_sequence(${name}, 'id') as s`.execute(db);
          assert.ok(seq.rows[0]!.s, `${name}.id is backed by a sequence`);
        }
      }
    } finally {
      await database.close();
    }
  });
});
