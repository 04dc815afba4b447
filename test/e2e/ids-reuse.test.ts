// Issue 12: an identifier a client holds (a signed link, an archive link, an ETag, a task id, a
// token) never names a row made after its own was deleted — on SQLite, whose rowids used to be
// handed out again, on PostgreSQL, and across restarts. The "forced" cases make an id recur on
// purpose (as a restored backup or a manual DELETE could) to check the links and ETags are bound
// to the blob itself, not to its id.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { startOrigin, type Origin } from '../helpers/origin.ts';
import { startServer, uploadFile, waitFor, type TestServer } from '../helpers/server.ts';

let server: TestServer;
let origin: Origin;
let alice: string;
let bob: string;

before(async () => {
  origin = await startOrigin();
  server = await startServer({ args: ['--allow-network', '127.0.0.1/32'] });
  await server.addUser('alice@example.com', 'alice-password-1');
  await server.addUser('bob@example.com', 'bob-password-1');
  alice = (await server.signIn('alice@example.com', 'alice-password-1')).access;
  bob = (await server.signIn('bob@example.com', 'bob-password-1')).access;
});
after(async () => {
  await server?.stop();
  await origin?.close();
});

async function linkOf(token: string, name: string, extra: Record<string, unknown> = {}): Promise<string> {
  const r = await server.api<{ urls: Array<{ url: string }> }>('POST', '/file/url', {
    token,
    body: { uris: [`cloudreve://my/${encodeURIComponent(name)}`], ...extra },
  });
  assert.equal(r.body.code, 0, JSON.stringify(r.body));
  return r.body.data!.urls[0]!.url;
}

async function get(url: string, headers: Record<string, string> = {}) {
  const res = await fetch(url, { headers });
  return { status: res.status, headers: res.headers, body: Buffer.from(await res.arrayBuffer()) };
}

async function remove(token: string, name: string): Promise<void> {
  const r = await server.api('DELETE', '/file', {
    token,
    body: { uris: [`cloudreve://my/${encodeURIComponent(name)}`] },
  });
  assert.equal(r.body.code, 0, JSON.stringify(r.body));
}

async function blobIdOf(name: string): Promise<number> {
  const rows = await server.sql<{ blob_id: number }>('SELECT blob_id FROM files WHERE name = ?', [name]);
  assert.equal(rows.length, 1, name);
  return Number(rows[0]!.blob_id);
}

/**
 * Gives the blob `fromId` the id `toId` (freed earlier), as a restored backup or a manual DELETE
 * could: same bytes and storage key, files repointed.
 */
async function forceBlobId(fromId: number, toId: number): Promise<void> {
  const [row] = await server.sql<{ storage_key: string }>('SELECT storage_key FROM blobs WHERE id = ?', [
    fromId,
  ]);
  await server.sql('UPDATE blobs SET storage_key = ? WHERE id = ?', [`${row!.storage_key}.moving`, fromId]);
  await server.sql(
    'INSERT INTO blobs (id, storage_key, size, ref_count, created_at) SELECT ?, ?, size, ref_count, created_at FROM blobs WHERE id = ?',
    [toId, row!.storage_key, fromId],
  );
  await server.sql('UPDATE files SET blob_id = ? WHERE blob_id = ?', [toId, fromId]);
  await server.sql('DELETE FROM blobs WHERE id = ?', [fromId]);
}

/**
 * An old link must answer with an error — a 4xx, or Cloudreve's envelope with a non-zero code
 * (HTTP 200) — and never with the other bytes.
 */
function refusedWithout(answer: { status: number; body: Buffer }, bytes: Buffer, what: string): void {
  assert.ok(!answer.body.includes(bytes), `${what}: the other file's bytes were served`);
  if (answer.status === 200) {
    const envelope = JSON.parse(answer.body.toString('utf8')) as { code: number };
    assert.notEqual(envelope.code, 0, what);
  } else {
    assert.ok(answer.status >= 400, `${what}: HTTP ${answer.status}`);
  }
}

const entityOf = (url: string) => /\/file\/content\/([^/]+)\//.exec(url)![1]!;

describe('a signed content link of a deleted file', () => {
  test('the journey: Alice’s link never serves Bob’s later upload', async () => {
    const report = Buffer.from(`ALICE-REPORT-${randomBytes(8).toString('hex')}`);
    const diary = Buffer.from('BOB-DIARY-CONTENT');
    await uploadFile(server, alice, 'cloudreve://my/report.pdf', report);
    const link = await linkOf(alice, 'report.pdf');
    assert.deepEqual((await get(link)).body, report);
    await remove(alice, 'report.pdf');
    await uploadFile(server, bob, 'cloudreve://my/bob-diary.txt', diary);
    const bobLink = await linkOf(bob, 'bob-diary.txt');
    assert.notEqual(entityOf(bobLink), entityOf(link), 'Bob’s blob got the id of Alice’s deleted one');
    refusedWithout(await get(link), diary, 'Alice’s old link');
    refusedWithout(await get(link, { range: 'bytes=0-3' }), diary.subarray(0, 4), 'Alice’s old link, ranged');
    assert.deepEqual((await get(bobLink)).body, diary);
  });

  test('forced: even when the id recurs, the old link and its ETag name nothing', async () => {
    const old = randomBytes(4096);
    const fresh = randomBytes(4096);
    await uploadFile(server, alice, 'cloudreve://my/forced.bin', old);
    const link = await linkOf(alice, 'forced.bin');
    const first = await get(link);
    assert.deepEqual(first.body, old);
    const etag = first.headers.get('etag')!;
    const oldId = await blobIdOf('forced.bin');
    await remove(alice, 'forced.bin');
    await uploadFile(server, bob, 'cloudreve://my/forced-bob.bin', fresh);
    await forceBlobId(await blobIdOf('forced-bob.bin'), oldId);

    refusedWithout(await get(link), fresh, 'Alice’s link after the id recurred');
    const bobLink = await linkOf(bob, 'forced-bob.bin');
    assert.equal(entityOf(bobLink), entityOf(link), 'the id did recur');
    assert.deepEqual((await get(bobLink)).body, fresh);
    // If-Range with the old ETag: the new bytes whole, never a tail "of the same" file.
    const ranged = await get(bobLink, { range: 'bytes=2048-', 'if-range': etag });
    assert.equal(ranged.status, 200);
    assert.deepEqual(ranged.body, fresh);
    assert.notEqual(ranged.headers.get('etag'), etag);
    const conditional = await get(bobLink, { 'if-none-match': etag });
    assert.equal(conditional.status, 200, 'an old ETag is not a cache hit for new bytes');
  });

  test('with a restart between every step', async () => {
    const secret = Buffer.from(`ALICE-RESTART-${randomBytes(8).toString('hex')}`);
    const other = Buffer.from(`BOB-RESTART-${randomBytes(8).toString('hex')}`);
    await uploadFile(server, alice, 'cloudreve://my/restart.pdf', secret);
    const link = await linkOf(alice, 'restart.pdf');
    await server.crashAndRestart();
    assert.deepEqual((await get(link)).body, secret, 'a link outlives a restart');
    await remove(alice, 'restart.pdf');
    await server.crashAndRestart();
    await uploadFile(server, bob, 'cloudreve://my/restart-bob.txt', other);
    await server.crashAndRestart();
    refusedWithout(await get(link), other, 'Alice’s old link after restarts');
    assert.deepEqual((await get(await linkOf(bob, 'restart-bob.txt'))).body, other);
  });

  test('a new upload under the same name gets a new link; the old one stays dead', async () => {
    const one = Buffer.from(`ONE-${randomBytes(8).toString('hex')}`);
    const two = Buffer.from(`TWO-${randomBytes(8).toString('hex')}`);
    await uploadFile(server, alice, 'cloudreve://my/again.txt', one);
    const first = await linkOf(alice, 'again.txt');
    assert.equal(await linkOf(alice, 'again.txt'), first, 'cached while the blob lives');
    const oldId = await blobIdOf('again.txt');
    await remove(alice, 'again.txt');
    await uploadFile(server, alice, 'cloudreve://my/again.txt', two);
    await forceBlobId(await blobIdOf('again.txt'), oldId);
    const second = await linkOf(alice, 'again.txt');
    assert.notEqual(second, first, 'the cached URL of the deleted blob was handed out again');
    assert.deepEqual((await get(second)).body, two);
    refusedWithout(await get(first), two, 'the first link');
  });
});

describe('an archive link', () => {
  test('never includes files made after its own were deleted', async () => {
    const gone = Buffer.from(`GONE-${randomBytes(8).toString('hex')}`);
    const later = Buffer.from(`LATER-${randomBytes(8).toString('hex')}`);
    const bobs = Buffer.from(`BOBS-${randomBytes(8).toString('hex')}`);
    await uploadFile(server, alice, 'cloudreve://my/zip-me.txt', gone);
    const zip = await linkOf(alice, 'zip-me.txt', { archive: true });
    assert.ok((await get(zip)).body.includes(gone));
    const [oldFile] = await server.sql<{ id: number }>('SELECT id FROM files WHERE name = ?', ['zip-me.txt']);
    await remove(alice, 'zip-me.txt');
    await uploadFile(server, alice, 'cloudreve://my/later.txt', later);
    await uploadFile(server, bob, 'cloudreve://my/bobs.txt', bobs);
    const check = async (what: string) => {
      const answer = await get(zip);
      assert.ok(!answer.body.includes(later), `${what}: Alice’s later file is in the old archive`);
      assert.ok(!answer.body.includes(bobs), `${what}: Bob’s file is in Alice’s old archive`);
    };
    await check('after the delete');
    // Forced: Alice's later file takes the deleted file's id.
    const [laterRow] = await server.sql<{ id: number }>('SELECT id FROM files WHERE name = ?', ['later.txt']);
    await server.sql('UPDATE files SET id = ? WHERE id = ?', [oldFile!.id, laterRow!.id]);
    await check('after the id recurred');
    await server.crashAndRestart();
    await check('after a restart');
  });
});

describe('the path face', () => {
  test('If-Range with the ETag of a deleted file never gives part of the new one', async () => {
    const old = randomBytes(1000);
    const fresh = randomBytes(1000);
    const read = (headers: Record<string, string> = {}) =>
      fetch(`${server.url}/files/ifrange.bin`, { headers: { authorization: `Bearer ${alice}`, ...headers } });
    await uploadFile(server, alice, 'cloudreve://my/ifrange.bin', old);
    const first = await read();
    assert.deepEqual(Buffer.from(await first.arrayBuffer()), old);
    const etag = first.headers.get('etag')!;
    const [oldFile] = await server.sql<{ blob_id: number; updated_at: number }>(
      'SELECT blob_id, updated_at FROM files WHERE name = ?',
      ['ifrange.bin'],
    );
    await remove(alice, 'ifrange.bin');
    await uploadFile(server, alice, 'cloudreve://my/ifrange.bin', fresh);
    // Same name, size, time and (forced) blob id: only the blob itself differs.
    await forceBlobId(await blobIdOf('ifrange.bin'), Number(oldFile!.blob_id));
    await server.sql('UPDATE files SET updated_at = ? WHERE name = ?', [
      Number(oldFile!.updated_at),
      'ifrange.bin',
    ]);
    for (const restart of [false, true]) {
      if (restart) await server.crashAndRestart();
      const ranged = await read({ range: 'bytes=500-', 'if-range': etag });
      assert.equal(ranged.status, 200, `restart ${restart}`);
      assert.deepEqual(Buffer.from(await ranged.arrayBuffer()), fresh);
      const match = await read({ range: 'bytes=500-', 'if-match': etag });
      assert.equal(match.status, 412, 'If-Match with the old ETag');
      await match.arrayBuffer();
    }
  });
});

describe('task ids and tokens', () => {
  test('a removed user’s task id, tokens, token id and upload session never name a later user’s', async () => {
    await server.addUser('carol@example.com', 'carol-password-1');
    const carol = await server.signIn('carol@example.com', 'carol-password-1');
    const create = async (token: string, name: string) => {
      const r = await server.api<Array<{ id: string }>>('POST', '/workflow/download', {
        token,
        body: { dst: 'cloudreve://my', src: [origin.route(`/ids/${name}`, { size: 1000, seed: 3 })] },
      });
      assert.equal(r.body.code, 0, JSON.stringify(r.body));
      const id = r.body.data![0]!.id;
      await waitFor(async () => {
        const t = await server.api<{ status: string }>('GET', `/workflow/${id}`, { token });
        return t.body.data?.status === 'completed' ? true : undefined;
      });
      return id;
    };
    const oldTask = await create(carol.access, 'carol.bin');
    const token = await server.api<{ id: string; token: string }>('POST', '/user/setting/tokens', {
      token: carol.access,
      body: { name: 'carol’s' },
    });
    assert.equal(token.body.code, 0, JSON.stringify(token.body));
    const upload = await server.api<{ session_id: string }>('PUT', '/file/upload', {
      token: carol.access,
      body: { uri: 'cloudreve://my/pending.txt', size: 5 },
    });
    assert.equal(upload.body.code, 0, JSON.stringify(upload.body));
    const r = await server.cli(['user', 'remove', 'carol@example.com']);
    assert.equal(r.code, 0, r.stderr);

    await server.addUser('erin@example.com', 'erin-password-1');
    const erin = await server.signIn('erin@example.com', 'erin-password-1');
    assert.notEqual(erin.userId, carol.userId, 'the new user got the removed user’s id');
    const newTask = await create(erin.access, 'erin.bin');
    assert.notEqual(newTask, oldTask, 'the new task got the removed task’s id');
    const seen = await server.api<{ id: string }>('GET', `/workflow/${oldTask}`, { token: erin.access });
    assert.notEqual(seen.body.code, 0, `the old task id shows a task: ${JSON.stringify(seen.body)}`);
    // The removed user's tokens sign nobody in.
    const me = await server.api<{ email: string }>('GET', '/user/me', { token: carol.access });
    assert.notEqual(me.body.code, 0, JSON.stringify(me.body));
    const refreshed = await server.api('POST', '/session/token/refresh', {
      body: { refresh_token: carol.refresh },
    });
    assert.notEqual(refreshed.body.code, 0, JSON.stringify(refreshed.body));
    const viaApiToken = await server.api('GET', '/user/me', { token: token.body.data!.token });
    assert.notEqual(viaApiToken.body.code, 0, JSON.stringify(viaApiToken.body));
    // API token ids: a new one is never the removed one's, which names nothing of Erin's.
    const erinToken = await server.api<{ id: string }>('POST', '/user/setting/tokens', {
      token: erin.access,
      body: { name: 'erin’s' },
    });
    assert.notEqual(
      erinToken.body.data!.id,
      token.body.data!.id,
      'the new API token got the removed one’s id',
    );
    const revoke = await server.api('DELETE', `/user/setting/tokens/${token.body.data!.id}`, {
      token: erin.access,
    });
    assert.notEqual(revoke.body.code, 0, JSON.stringify(revoke.body));
    // The upload session id is random and went with its user.
    assert.match(upload.body.data!.session_id, /^[0-9a-f-]{36}$/);
    const chunk = await fetch(`${server.url}/api/v4/file/upload/${upload.body.data!.session_id}/0`, {
      method: 'POST',
      headers: { authorization: `Bearer ${erin.access}`, 'content-type': 'application/octet-stream' },
      body: 'hello',
    });
    assert.notEqual(((await chunk.json()) as { code: number }).code, 0);
  });
});
