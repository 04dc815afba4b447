// What every service receives: the database, id codec, configuration and secrets.
import type { Kysely } from 'kysely';
import type { Config } from '../config/config.ts';
import type { DB } from '../db/schema.ts';
import type { Dialect } from '../db/database.ts';
import type { IdCodec } from '../domain/ids.ts';
import type { Clock } from '../lib/clock.ts';
import type { StorageDriver } from '../storage/port.ts';

export interface ServiceContext {
  db: Kysely<DB>;
  dialect: Dialect;
  ids: IdCodec;
  config: Config;
  clock: Clock;
  storage: StorageDriver;
  /** HMAC/JWT key material, from <data-dir>/secret.key */
  secret: Buffer;
}
