// Ids are never handed out twice (issue 12). SQLite's `integer primary key` without
// AUTOINCREMENT gives the highest freed rowid to the next insert, so a signed link, ETag, task
// id or token naming a deleted row could later name someone else's. SQLite cannot add
// AUTOINCREMENT in place: each table is rebuilt (create new, copy, drop, rename, indexes back)
// with its data and its sequence set at least to the highest id in use or still referenced.
// PostgreSQL's bigserial sequences never go back; only the nonce below is added there.
// The rebuild took 2.5 s for 200,000 files and 200,000 blobs on the 2-core test machine.
//
// Every blob also gets `nonce`, random and never reused, which signed content links and ETags
// bind to: even a restored backup or a manual DELETE cannot make an old link name new bytes.
import { sql, type Kysely } from 'kysely';
import type { Dialect } from '../database.ts';

/** Tables with integer ids, parents before children. */
export const ID_TABLES = ['groups', 'users', 'api_tokens', 'blobs', 'files', 'nodes', 'tasks'] as const;

const NONCE_SQLITE = `"nonce" text not null default (lower(hex(randomblob(16))))`;

export async function up(db: Kysely<unknown>, dialect: Dialect): Promise<void> {
  if (dialect === 'postgres') {
    // A volatile default is evaluated per existing row when the column is added.
    await sql`alter table blobs add column nonce text not null default md5(random()::text || clock_timestamp()::text)`.execute(
      db,
    );
    return;
  }
  // Foreign keys must be off while parents are dropped and renamed (a DROP with them on would
  // cascade into the children); the pragma is a no-op inside a transaction, so it goes first.
  // Kysely runs SQLite migrations on one connection without a transaction of its own.
  await sql`pragma foreign_keys = off`.execute(db);
  try {
    await sql`begin immediate`.execute(db);
    try {
      for (const table of ID_TABLES) await rebuild(db, table);
      const broken = await sql`pragma foreign_key_check`.execute(db);
      if (broken.rows.length > 0)
        throw new Error(`foreign keys broken by the rebuild: ${JSON.stringify(broken.rows)}`);
      await sql`commit`.execute(db);
    } catch (e) {
      await sql`rollback`.execute(db);
      throw e;
    }
  } finally {
    await sql`pragma foreign_keys = on`.execute(db);
  }
}

async function rebuild(db: Kysely<unknown>, table: string): Promise<void> {
  const master = await sql<{
    sql: string;
  }>`select sql from sqlite_master where type = 'table' and name = ${table}`.execute(db);
  const create = master.rows[0]?.sql;
  if (!create) throw new Error(`table ${table} not found`);
  // Already rebuilt (another process got here first, or a crash came before 0005 was recorded).
  if (/\bautoincrement\b/i.test(create)) return;
  const head = /^create table\s+"?\w+"?\s*\(\s*"?id"?\s+integer\s+primary\s+key/i;
  if (!head.test(create)) throw new Error(`unexpected definition of ${table}: ${create}`);
  const indexes = await sql<{
    sql: string;
  }>`select sql from sqlite_master where type = 'index' and tbl_name = ${table} and sql is not null`.execute(
    db,
  );
  const columns = (
    await sql<{ name: string }>`select name from pragma_table_info(${table})`.execute(db)
  ).rows.map((c) => `"${c.name}"`);
  const fresh = `${table}_rebuilt`;
  let definition = create.replace(head, `create table "${fresh}" ("id" integer primary key autoincrement`);
  if (table === 'blobs') definition = definition.replace(/\)\s*$/, `, ${NONCE_SQLITE})`);
  await sql.raw(definition).execute(db);
  const list = columns.join(', ');
  await sql.raw(`insert into "${fresh}" (${list}) select ${list} from "${table}" order by id`).execute(db);
  const floor = await highestIssued(db, table);
  await sql.raw(`drop table "${table}"`).execute(db);
  await sql.raw(`alter table "${fresh}" rename to "${table}"`).execute(db);
  for (const index of indexes.rows) await sql.raw(index.sql).execute(db);
  // The copy set the sequence to the highest id copied; ids known to have been issued above it
  // (still named by archive sessions or storage keys) raise it further.
  await sql`delete from sqlite_sequence where name = ${table}`.execute(db);
  await sql`insert into sqlite_sequence (name, seq) values (${table}, ${floor})`.execute(db);
}

/** The highest id of `table` that is in use or still referenced somewhere. */
async function highestIssued(db: Kysely<unknown>, table: string): Promise<number> {
  const max = async (query: string): Promise<number> => {
    const rows = (await sql.raw<{ n: number | null }>(query).execute(db)).rows;
    return Number(rows[0]?.n ?? 0);
  };
  let floor = await max(`select max(id) as n from "${table}"`);
  if (table === 'files') {
    // Archive sessions list file ids, some of them maybe deleted since.
    floor = Math.max(
      floor,
      await max(
        `select max(cast(value as integer)) as n from archive_sessions, json_each(archive_sessions.file_ids)`,
      ),
    );
  }
  if (table === 'tasks') {
    // Downloads land under `blobs/task-<id>-<index>`.
    floor = Math.max(
      floor,
      await max(
        `select max(cast(substr(storage_key, 12, instr(substr(storage_key, 12), '-') - 1) as integer)) as n from blobs where storage_key like 'blobs/task-%'`,
      ),
    );
  }
  return floor;
}

export async function down(db: Kysely<unknown>): Promise<void> {
  // AUTOINCREMENT stays (it only ever avoids reuse); the nonce goes.
  await db.schema.alterTable('blobs').dropColumn('nonce').execute();
}
