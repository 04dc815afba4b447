// The signed-URL cache of LinksService (real services on a real database): URLs are reused while
// their blob lives, and every cached URL of a blob goes when the blob is deleted (issue 12).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openCore, type Core } from '../../src/app.ts';
import { loadConfig } from '../../src/config/config.ts';
import { createThrowawayDatabase, dialect } from '../helpers/server.ts';

let dir: string;
let core: Core;
let dropDatabase: (() => Promise<void>) | undefined;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ferry-link-cache-'));
  const env: Record<string, string> = { FERRY_DATA_DIR: dir };
  if (dialect === 'postgres') {
    const pgdb = await createThrowawayDatabase();
    env.FERRY_DATABASE_URL = pgdb.url;
    dropDatabase = () => pgdb.drop();
  }
  core = await openCore(loadConfig([], env).config);
});
after(async () => {
  await core?.close();
  await dropDatabase?.();
  await rm(dir, { recursive: true, force: true });
});

test('a blob’s cached URLs are reused while it lives and all dropped when it is deleted', async () => {
  const { users, files, links } = core.services;
  const user = await users.create('cache@example.com', 'cache-password-1');
  const actor = (await users.actor(user.id))!;
  const root = await files.root(user.id);
  const a = await files.commitBlob(
    user.id,
    root.id,
    'a.txt',
    { storageKey: 'blobs/cache-a', size: 1 },
    'error',
  );
  const b = await files.commitBlob(
    user.id,
    root.id,
    'b.txt',
    { storageKey: 'blobs/cache-b', size: 1 },
    'error',
  );
  const url = async (name: string, download = false) =>
    (await links.createUrls(actor, { uris: [`cloudreve://my/${name}`], download }, 'http://127.0.0.1'))
      .urls[0]!.url;

  const first = await url('a.txt');
  assert.equal(await url('a.txt'), first, 'reused from the cache');
  await url('a.txt', true);
  await url('b.txt');
  assert.equal(links.cachedUrls(a.blob_id!), 2);
  assert.equal(links.cachedUrls(b.blob_id!), 1);

  await files.deleteTree(a);
  assert.equal(links.cachedUrls(a.blob_id!), 0, 'every URL of the deleted blob is gone');
  assert.equal(links.cachedUrls(b.blob_id!), 1, 'other blobs keep theirs');
});
