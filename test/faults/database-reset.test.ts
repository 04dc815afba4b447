// The PostgreSQL adapter when the connection drops under a checked-out client (between two
// queries of a transaction): the query fails, the process lives, the pool recovers. Without an
// error listener on every client this killed the server ('error' event with no listener) —
// found by the partition fault test, pinned here without a server process. Runs in both
// passes of the suite: it always talks to the machine's PostgreSQL, through a loopback proxy.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { openDatabase, type Database } from '../../src/db/database.ts';
import { startTcpProxy, type TcpProxy } from './tcp-proxy.ts';

const adminUrl = process.env.FERRY_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const target = new URL(adminUrl);
const dbName = `ferry_reset_${randomBytes(6).toString('hex')}`;
let proxy: TcpProxy;
let database: Database;

async function admin(sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

before(async () => {
  await admin(`CREATE DATABASE ${dbName}`);
  proxy = await startTcpProxy(Number(target.port || 5432), target.hostname);
  const url = new URL(adminUrl);
  url.port = String(proxy.port);
  url.pathname = `/${dbName}`;
  database = await openDatabase(url.toString());
});

after(async () => {
  await database?.close().catch(() => undefined);
  await proxy?.close();
  await admin(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`);
});

test('a connection reset between two queries of a transaction fails the transaction, not the process', async () => {
  const crashes: unknown[] = [];
  const onUncaught = (e: unknown) => crashes.push(e);
  process.on('uncaughtException', onUncaught);
  try {
    const outcome = await database.db
      .transaction()
      .execute(async (tx) => {
        await tx.selectFrom('settings').select('key').execute();
        proxy.cut('reset'); // the client is checked out with no query in flight
        await sleep(300);
        await tx.selectFrom('settings').select('key').execute();
        return 'committed';
      })
      .catch((e: unknown) => e);
    assert.ok(outcome instanceof Error, `the transaction failed (${String(outcome)})`);
    assert.deepEqual(crashes, [], 'no uncaught error');
  } finally {
    process.off('uncaughtException', onUncaught);
    proxy.restore();
  }
  // The pool dropped the broken client and answers again.
  const rows = await database.db.selectFrom('settings').select('key').execute();
  assert.deepEqual(rows, []);
});
