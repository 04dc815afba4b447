// Opens the metadata database: an embedded SQLite file by default, PostgreSQL when the URL
// says so. Both run the same migrations and the same queries through Kysely.
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import SQLite from 'better-sqlite3';
import pg from 'pg';
import {
  Kysely,
  Migrator,
  PostgresDialect,
  SqliteDialect,
  type Migration,
  type SqliteDatabase,
  type SqliteStatement,
} from 'kysely';
import type { DB } from './schema.ts';
import * as initial from './migrations/0001_initial.ts';
import * as taskFiles from './migrations/0002_task_files.ts';
import * as fileListIndexes from './migrations/0003_file_list_indexes.ts';
import * as blobCrc32 from './migrations/0004_blob_crc32.ts';
import * as idsNeverReused from './migrations/0005_ids_never_reused.ts';
import * as sessions from './migrations/0006_sessions.ts';
import * as taskRuns from './migrations/0010_task_runs.ts';
import * as webhooks from './migrations/0011_webhooks.ts';
import * as taskPause from './migrations/0012_task_pause.ts';

export type Dialect = 'sqlite' | 'postgres';

export interface Database {
  db: Kysely<DB>;
  dialect: Dialect;
  close(): Promise<void>;
}

// PostgreSQL returns bigint (int8) as strings to be safe past 2^53; our ids, sizes and
// millisecond times stay far below that, so numbers are what the code wants.
pg.types.setTypeParser(20, (value) => Number(value));

export function dialectOf(url: string): Dialect {
  return /^postgres(ql)?:\/\//i.test(url) ? 'postgres' : 'sqlite';
}

export async function openDatabase(url: string, options: { poolSize?: number } = {}): Promise<Database> {
  const dialect = dialectOf(url);
  let db: Kysely<DB>;
  if (dialect === 'postgres') {
    const pool = new pg.Pool({
      connectionString: url,
      max: options.poolSize ?? 10,
      // An unreachable database (a partition, a silent host) must fail requests within a
      // bound, not hang them: connecting (or waiting for a pooled client) and each query's
      // answer are both time-limited. A timed-out query stays the client's active one, so a
      // late answer cannot be mistaken for the next query's.
      connectionTimeoutMillis: 5000,
      query_timeout: 15_000,
    });
    // A dropped idle connection must not crash the process; the next query reconnects.
    pool.on('error', () => {});
    // Nor may one that drops while checked out between two queries (inside a transaction, or
    // after a query timed out): pg-pool removes its idle listener on checkout, and an 'error'
    // with no listener kills the process. The query in flight still fails, and the pool drops
    // the broken client when it comes back.
    pool.on('connect', (client) => client.on('error', () => {}));
    db = new Kysely<DB>({ dialect: new PostgresDialect({ pool }) });
  } else {
    const file = url.replace(/^sqlite:(\/\/)?/i, '');
    if (file !== ':memory:') mkdirSync(dirname(file), { recursive: true });
    const sqlite = new SQLite(file);
    // busy_timeout first so the CLI can write while the server runs; WAL lets readers
    // proceed during writes; NORMAL sync is durable across process crashes in WAL mode.
    sqlite.pragma('busy_timeout = 10000');
    sqlite.pragma('journal_mode = WAL');
    sqlite.pragma('synchronous = NORMAL');
    sqlite.pragma('foreign_keys = ON');
    db = new Kysely<DB>({ dialect: new SqliteDialect({ database: withStatementCache(sqlite) }) });
  }
  await migrate(db, dialect);
  return { db, dialect, close: () => db.destroy() };
}

/**
 * Kysely prepares every query anew; on a hot path (a signed-link read is one blob lookup) the
 * prepare cost more than the query (bench/serving.ts profile). Statements are reused by SQL
 * text; a statement still iterating (a streamed query) is never handed out twice.
 */
function withStatementCache(sqlite: SQLite.Database, max = 256): SqliteDatabase {
  const cache = new Map<string, SQLite.Statement>();
  return {
    close: () => sqlite.close(),
    prepare(sql: string): SqliteStatement {
      let statement = cache.get(sql);
      if (statement === undefined || statement.busy) {
        statement = sqlite.prepare(sql);
        if (cache.size >= max) cache.delete(cache.keys().next().value as string);
        cache.set(sql, statement);
      }
      return statement;
    },
  };
}

async function migrate(db: Kysely<DB>, dialect: Dialect): Promise<void> {
  const bind = (m: {
    up: (db: Kysely<unknown>, d: Dialect) => Promise<void>;
    down: (db: Kysely<unknown>) => Promise<void>;
  }): Migration => ({
    up: (k) => m.up(k, dialect),
    down: (k) => m.down(k),
  });
  const migrations: Record<string, Migration> = {
    '0001_initial': bind(initial),
    '0002_task_files': bind(taskFiles),
    '0003_file_list_indexes': bind(fileListIndexes),
    '0004_blob_crc32': bind(blobCrc32),
    '0005_ids_never_reused': bind(idsNeverReused),
    '0006_sessions': bind(sessions),
    '0010_task_runs': bind(taskRuns),
    '0011_webhooks': bind(webhooks),
    '0012_task_pause': bind(taskPause),
  };
  // Kysely takes an advisory lock on PostgreSQL, so several nodes can start at once.
  const migrator = new Migrator({ db, provider: { getMigrations: async () => migrations } });
  const { error } = await migrator.migrateToLatest();
  if (error) throw error instanceof Error ? error : new Error(`migration failed: ${JSON.stringify(error)}`);
}
