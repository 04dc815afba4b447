// One user cannot reach another user's files by any route: listing, links, rename, move, copy,
// delete, upload, guessed URIs or entity ids, or someone else's archive session.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, uploadFile, type ApiResult, type TestServer } from '../helpers/server.ts';

interface UrlData {
  urls: Array<{ url: string }>;
}

let server: TestServer;
let alice: { access: string; userId: string };
let bob: { access: string; userId: string };
let aliceRoot: string;
let aliceEntity: string;
const SECRET = Buffer.from('alice’s secret\n');

before(async () => {
  server = await startServer();
  await server.addUser('alice@example.com', 'alice-password-1');
  await server.addUser('bob@example.com', 'bob-password-1');
  alice = await server.signIn('alice@example.com', 'alice-password-1');
  bob = await server.signIn('bob@example.com', 'bob-password-1');
  aliceRoot = `cloudreve://${alice.userId}@my`;
  await uploadFile(server, alice.access, 'cloudreve://my/secret/doc.txt', SECRET);
  await uploadFile(server, bob.access, 'cloudreve://my/doc.txt', Buffer.from('bob’s own\n'));
  await server.api('POST', '/file/create', {
    token: bob.access,
    body: { uri: 'cloudreve://my/inbox', type: 'folder' },
  });
  const listed = await server.api<{ files: Array<{ name: string; primary_entity: string }> }>(
    'GET',
    `/file?uri=${encodeURIComponent('cloudreve://my/secret')}`,
    { token: alice.access },
  );
  aliceEntity = listed.body.data!.files[0]!.primary_entity;
});
after(async () => {
  await server?.stop();
});

const asBob = <T = unknown>(method: string, path: string, body?: unknown) =>
  server.api<T>(method, path, { token: bob.access, ...(body === undefined ? {} : { body }) });

function refused(r: ApiResult, what: string) {
  assert.equal(r.status, 200, what);
  assert.notEqual(r.body.code, 0, `${what} succeeded: ${JSON.stringify(r.body)}`);
}

function refusedPerItem(r: ApiResult, uri: string, what: string) {
  assert.equal(r.body.code, 40081, `${what}: ${JSON.stringify(r.body)}`);
  assert.equal(r.body.aggregated_error![uri]!.code, 403, what);
}

async function aliceStillHasEverything() {
  const r = await server.api<{ files: Array<{ name: string; size: number }> }>(
    'GET',
    `/file?uri=${encodeURIComponent('cloudreve://my/secret')}`,
    { token: alice.access },
  );
  assert.deepEqual(
    r.body.data!.files.map((f) => [f.name, f.size]),
    [['doc.txt', SECRET.length]],
  );
  const cap = await server.api<{ used: number }>('GET', '/user/capacity', { token: alice.access });
  assert.equal(cap.body.data!.used, SECRET.length);
}

test('cannot list another user’s drive', async () => {
  for (const uri of [aliceRoot, `${aliceRoot}/secret`, `cloudreve://${alice.userId.toLowerCase()}x@my`]) {
    const r = await asBob('GET', `/file?uri=${encodeURIComponent(uri)}`);
    refused(r, uri);
    assert.equal(r.body.code, 403, uri);
    assert.ok(!JSON.stringify(r.body).includes('doc.txt'));
  }
  // Bob's own view of the same path is his own (empty) tree.
  const own = await asBob('GET', `/file?uri=${encodeURIComponent('cloudreve://my/secret')}`);
  assert.equal(own.body.code, 40016);
  const root = await asBob<{ files: Array<{ name: string }> }>('GET', '/file?uri=cloudreve%3A%2F%2Fmy');
  assert.deepEqual(root.body.data!.files.map((f) => f.name).sort(), ['doc.txt', 'inbox']);
  // The path face is per user too.
  const pathFace = await fetch(`${server.url}/files/secret/doc.txt`, {
    headers: { authorization: `Bearer ${bob.access}` },
  });
  assert.equal(pathFace.status, 404);
  await pathFace.arrayBuffer();
});

test('cannot sign URLs for, rename, move, copy or delete another user’s files', async () => {
  const target = `${aliceRoot}/secret/doc.txt`;
  refusedPerItem(await asBob('POST', '/file/url', { uris: [target] }), target, 'url');
  // skip_error (as Cloudreve) answers code 0 with an empty slot: nothing of Alice's leaks.
  const partial = await asBob<UrlData>('POST', '/file/url', {
    uris: [target],
    download: true,
    skip_error: true,
  });
  assert.equal(partial.body.code, 0);
  assert.deepEqual(partial.body.data?.urls, [{ url: '' }]);
  refusedPerItem(
    await asBob('POST', '/file/url', { uris: [`${aliceRoot}/secret`], archive: true }),
    `${aliceRoot}/secret`,
    'archive',
  );

  const rename = await asBob('POST', '/file/rename', { uri: target, new_name: 'mine.txt' });
  refused(rename, 'rename');
  assert.equal(rename.body.code, 403);

  refusedPerItem(
    await asBob('POST', '/file/move', { uris: [target], dst: 'cloudreve://my/inbox' }),
    target,
    'move out',
  );
  refusedPerItem(
    await asBob('POST', '/file/move', { uris: [target], dst: 'cloudreve://my/inbox', copy: true }),
    target,
    'copy out',
  );
  const into = await asBob('POST', '/file/move', {
    uris: ['cloudreve://my/doc.txt'],
    dst: `${aliceRoot}/secret`,
  });
  refused(into, 'move into');
  assert.equal(into.body.code, 403);
  const copyInto = await asBob('POST', '/file/move', {
    uris: ['cloudreve://my/doc.txt'],
    dst: `${aliceRoot}/secret`,
    copy: true,
  });
  assert.equal(copyInto.body.code, 403);

  refusedPerItem(await asBob('DELETE', '/file', { uris: [target] }), target, 'delete');
  refusedPerItem(
    await asBob('DELETE', '/file', { uris: [`${aliceRoot}/secret`] }),
    `${aliceRoot}/secret`,
    'delete folder',
  );

  const inbox = await asBob<{ files: unknown[] }>(
    'GET',
    `/file?uri=${encodeURIComponent('cloudreve://my/inbox')}`,
  );
  assert.deepEqual(inbox.body.data!.files, []);
  await aliceStillHasEverything();
});

test('cannot create in or upload into another user’s drive, nor use their upload session', async () => {
  const create = await asBob('POST', '/file/create', {
    uri: `${aliceRoot}/secret/planted.txt`,
    type: 'file',
  });
  assert.equal(create.body.code, 403);
  const upload = await asBob('PUT', '/file/upload', { uri: `${aliceRoot}/secret/planted.txt`, size: 5 });
  assert.equal(upload.body.code, 403);

  const session = await server.api<{ session_id: string }>('PUT', '/file/upload', {
    token: alice.access,
    body: { uri: 'cloudreve://my/secret/incoming.txt', size: 5 },
  });
  const id = session.body.data!.session_id;
  const res = await fetch(`${server.url}/api/v4/file/upload/${id}/0`, {
    method: 'POST',
    headers: { authorization: `Bearer ${bob.access}`, 'content-type': 'application/octet-stream' },
    body: 'evil!',
  });
  assert.equal(((await res.json()) as { code: number }).code, 40011);
  const cancel = await asBob('DELETE', '/file/upload', { id, uri: 'cloudreve://my/secret/incoming.txt' });
  assert.equal(cancel.body.code, 40011);
  const anon = await fetch(`${server.url}/api/v4/file/upload/${id}/0`, { method: 'POST', body: 'evil!' });
  assert.equal(((await anon.json()) as { code: number }).code, 401);
  // Alice's session is untouched and still completes.
  const ok = await fetch(`${server.url}/api/v4/file/upload/${id}/0`, {
    method: 'POST',
    headers: { authorization: `Bearer ${alice.access}`, 'content-type': 'application/octet-stream' },
    body: 'hello',
  });
  assert.equal(((await ok.json()) as { code: number }).code, 0);
  await server.api('DELETE', '/file', {
    token: alice.access,
    body: { uris: ['cloudreve://my/secret/incoming.txt'] },
  });
  await aliceStillHasEverything();
});

test('cannot read another user’s bytes by guessing entity ids in content URLs', async () => {
  const base = `${server.url}/api/v4/file/content/${aliceEntity}/0/doc.txt`;
  const own = await asBob<UrlData>('POST', '/file/url', { uris: ['cloudreve://my/doc.txt'] });
  const bobUrl = new URL(own.body.data!.urls[0]!.url);
  const bobSign = bobUrl.searchParams.get('sign')!;
  const expires = bobSign.split(':')[1]!;
  for (const [what, url, code] of [
    ['no sign', base, 403],
    ['bob’s sign on alice’s entity', `${base}?sign=${encodeURIComponent(bobSign)}`, 40071],
    ['made-up sign', `${base}?sign=${'A'.repeat(43)}%3D%3A${expires}`, 40071],
    ['never-expiring made-up sign', `${base}?sign=${'A'.repeat(43)}%3D%3A0`, 40071],
  ] as const) {
    const res = await fetch(url);
    const text = await res.text();
    assert.ok(!text.includes('secret'), what);
    assert.equal(res.status, 200, what);
    assert.equal((JSON.parse(text) as { code: number }).code, code, `${what}: ${text}`);
  }
  // Asking for Alice's entity on Bob's own file is refused too.
  const entity = await asBob('POST', '/file/url', { uris: ['cloudreve://my/doc.txt'], entity: aliceEntity });
  assert.equal(entity.body.code, 40081);
  assert.equal(entity.body.aggregated_error!['cloudreve://my/doc.txt']!.code, 40077);
});

test('another user’s archive session is unusable without its sign', async () => {
  const a = await server.api<UrlData>('POST', '/file/url', {
    token: alice.access,
    body: { uris: ['cloudreve://my/secret'], archive: true },
  });
  assert.equal(a.body.code, 0);
  const aliceUrl = new URL(a.body.data!.urls[0]!.url);
  const b = await asBob<UrlData>('POST', '/file/url', { uris: ['cloudreve://my/doc.txt'], archive: true });
  const bobSign = new URL(b.body.data!.urls[0]!.url).searchParams.get('sign')!;

  const unsigned = new URL(aliceUrl);
  unsigned.search = '';
  const borrowed = new URL(aliceUrl);
  borrowed.searchParams.set('sign', bobSign);
  for (const [what, url, code] of [
    ['unsigned', unsigned, 403],
    ['bob’s sign', borrowed, 40071],
  ] as const) {
    const res = await fetch(url);
    assert.equal(res.status, 200, what);
    assert.match(res.headers.get('content-type') ?? '', /json/, what);
    assert.equal(((await res.json()) as { code: number }).code, code, what);
  }
  // Alice's own URL works (it is the credential, whoever holds it).
  const zip = await fetch(aliceUrl);
  assert.equal(zip.status, 200);
  assert.equal(zip.headers.get('content-type'), 'application/zip');
  await zip.arrayBuffer();
});

test('admins may open other drives with the user-info URI; users with a garbage id may not', async () => {
  const admin = await server.signIn();
  const r = await server.api<{ files: Array<{ name: string }> }>(
    'GET',
    `/file?uri=${encodeURIComponent(`${aliceRoot}/secret`)}`,
    {
      token: admin.access,
    },
  );
  assert.equal(r.body.code, 0, JSON.stringify(r.body));
  assert.deepEqual(
    r.body.data!.files.map((f) => f.name),
    ['doc.txt'],
  );
  for (const uri of ['cloudreve://garbage@my', 'cloudreve://%00@my', `cloudreve://${alice.userId}:pw@my`]) {
    const g = await asBob('GET', `/file?uri=${encodeURIComponent(uri)}`);
    refused(g, uri);
    assert.notEqual(g.status, 500);
  }
  // Bob addressing his own drive by id works.
  const self = await asBob('GET', `/file?uri=${encodeURIComponent(`cloudreve://${bob.userId}@my`)}`);
  assert.equal(self.body.code, 0);
});
