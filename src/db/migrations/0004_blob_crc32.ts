// The CRC-32 of a blob's bytes, filled in the first time the blob goes into a zip archive
// (zip entries need it, and computing it was a third of the work of archiving small files;
// bench/serving.ts). Blobs never change, so it stays right. Null until then.
import type { Kysely } from 'kysely';
import type { Dialect } from '../database.ts';

export async function up(db: Kysely<unknown>, dialect: Dialect): Promise<void> {
  // An unsigned 32-bit value: bigint on PostgreSQL, whose integer is signed.
  await db.schema
    .alterTable('blobs')
    .addColumn('crc32', dialect === 'postgres' ? 'bigint' : 'integer')
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('blobs').dropColumn('crc32').execute();
}
