// Bob probes every endpoint of both faces with Alice's ids and paths: tasks by hash id and by
// path-face download_id, files and entities, upload sessions, archive sessions, API token ids,
// the event stream, and src_file / dst URIs into her drive. Nothing of Alice's is readable or
// changeable, and her things still work afterwards. Extends test/e2e/isolation.test.ts (files,
// links, uploads) to tasks, sessions, tokens and the path face.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startOrigin, type Origin } from '../helpers/origin.ts';
import { startServer, uploadFile, waitFor, type TestServer } from '../helpers/server.ts';
import { rawRequest } from './helpers.ts';

let origin: Origin;
let server: TestServer;
let alice: { access: string; userId: string };
let bob: { access: string; userId: string };
const a: {
  activeTask: string;
  activeDownloadId: string;
  doneTask: string;
  doneDownloadId: string;
  entity: string;
  fileId: string;
  session: string;
  tokenId: string;
  token: string;
} = {} as never;

interface Task {
  id: string;
  status: string;
}

const asBob = (method: string, path: string, body?: unknown) =>
  server.api(method, path, { token: bob.access, ...(body === undefined ? {} : { body }) });

async function bobPath(method: string, target: string) {
  const res = await rawRequest(server.port, {
    method,
    target,
    headers: [['Authorization', `Bearer ${bob.access}`]],
  });
  return { status: res.status, text: res.body.toString() };
}

before(async () => {
  origin = await startOrigin();
  server = await startServer({
    args: [
      '--allow-network',
      '127.0.0.1/32',
      '--task-retries',
      '0',
      '--no-bt-dht',
      '--no-bt-pex',
      '--no-bt-lsd',
      '--no-bt-trackers',
      '--torrent-downloader',
      'builtin',
    ],
  });
  await server.addUser('alice@example.com', 'alice-password-1');
  await server.addUser('bob@example.com', 'bob-password-1');
  alice = await server.signIn('alice@example.com', 'alice-password-1');
  bob = await server.signIn('bob@example.com', 'bob-password-1');
  origin.route('/slow.bin', { size: 8 * 1024 * 1024, throttle: 64 * 1024 });
  origin.route('/quick.bin', { size: 1000 });
  // Alice: one running and one finished task (the finished one started on the path face),
  // a file, an upload session in progress, an API token, a .torrent in her drive.
  const slow = await fetch(
    `${server.url}/files/adir?download=${encodeURIComponent(origin.url('/slow.bin'))}`,
    { headers: { authorization: `Bearer ${alice.access}` } },
  );
  a.activeDownloadId = ((await slow.json()) as { download_id: string }).download_id;
  const quick = await fetch(
    `${server.url}/files/adir?download=${encodeURIComponent(origin.url('/quick.bin'))}`,
    { headers: { authorization: `Bearer ${alice.access}` } },
  );
  a.doneDownloadId = ((await quick.json()) as { download_id: string }).download_id;
  const tasks = async (category: string) =>
    (
      await server.api<{ tasks: Array<Task & { summary?: { props?: { src_str?: string } } }> }>(
        'GET',
        `/workflow?category=${category}&page_size=100`,
        { token: alice.access },
      )
    ).body.data!.tasks;
  a.doneTask = await waitFor(async () => (await tasks('downloaded'))[0]?.id, 30_000, 'quick task');
  a.activeTask = (await tasks('downloading'))[0]!.id;
  await uploadFile(server, alice.access, 'cloudreve://my/adir/secret.txt', Buffer.from('alice secret\n'));
  await uploadFile(server, alice.access, 'cloudreve://my/adir/x.torrent', Buffer.from('d4:infod4:name1:xee'));
  const listed = await server.api<{ files: Array<{ name: string; id: string; primary_entity: string }> }>(
    'GET',
    `/file?uri=${encodeURIComponent('cloudreve://my/adir')}`,
    { token: alice.access },
  );
  const secret = listed.body.data!.files.find((f) => f.name === 'secret.txt')!;
  a.entity = secret.primary_entity;
  a.fileId = secret.id;
  const session = await server.api<{ session_id: string }>('PUT', '/file/upload', {
    token: alice.access,
    body: { uri: 'cloudreve://my/adir/pending.bin', size: 5 },
  });
  a.session = session.body.data!.session_id;
  const token = await server.api<{ id: string; token: string }>('POST', '/user/setting/tokens', {
    token: alice.access,
    body: { name: 'alice script' },
  });
  a.tokenId = token.body.data!.id;
  a.token = token.body.data!.token;
  await uploadFile(server, bob.access, 'cloudreve://my/mine.txt', Buffer.from('bob own\n'));
});
after(async () => {
  await server?.stop();
  await origin?.close();
});

test("Alice's tasks by hash id: not shown, not readable, not cancelable, not selectable", async () => {
  for (const id of [a.activeTask, a.doneTask]) {
    assert.equal((await asBob('GET', `/workflow/${id}`)).body.code, 404, `GET /workflow/${id}`);
    const progress = await asBob('GET', `/workflow/progress/${id}`);
    assert.deepEqual([progress.body.code, progress.body.data], [0, {}], 'progress leaks nothing');
    assert.equal((await asBob('DELETE', `/workflow/download/${id}`)).body.code, 404);
    assert.equal(
      (await asBob('PATCH', `/workflow/download/${id}`, { files: [{ index: 0, download: false }] })).body
        .code,
      404,
    );
  }
  for (const category of ['downloading', 'downloaded', 'general']) {
    const r = await server.api<{ tasks: Task[] }>('GET', `/workflow?category=${category}&page_size=100`, {
      token: bob.access,
    });
    assert.deepEqual(r.body.data!.tasks, [], category);
  }
  // A next_page_token made from Alice's task id pages nothing of hers.
  const token = Buffer.from(JSON.stringify({ id: a.activeTask })).toString('base64');
  const paged = await server.api<{ tasks: Task[] }>(
    'GET',
    `/workflow?category=downloaded&page_size=10&next_page_token=${encodeURIComponent(token)}`,
    { token: bob.access },
  );
  assert.deepEqual(paged.body.data?.tasks ?? [], []);
  const still = await server.api<Task>('GET', `/workflow/${a.activeTask}`, { token: alice.access });
  assert.ok(['queued', 'processing'].includes(still.body.data!.status), still.body.data!.status);
});

test("Alice's downloads on the path face: not listed, not in history, not cancelable", async () => {
  for (const id of [a.activeDownloadId, a.doneDownloadId]) {
    const del = await bobPath('DELETE', `/files/api/v1/downloads/${id}`);
    assert.equal(del.status, 404, del.text);
  }
  for (const target of [
    '/files/api/v1/downloads',
    '/files/adir?downloads=',
    '/files/?downloads=',
    '/files/?download_history=',
  ]) {
    const r = await bobPath('GET', target);
    assert.equal(r.status, 200, target);
    assert.ok(
      !r.text.includes(a.activeDownloadId) && !r.text.includes(a.doneDownloadId),
      `${target}: ${r.text}`,
    );
    assert.ok(!r.text.includes('slow.bin') && !r.text.includes('quick.bin'), target);
  }
  for (const target of [
    '/files/adir/secret.txt',
    '/files/adir/secret.txt?hash',
    '/files/adir',
    '/files/adir?simple',
    '/files/adir/quick.bin?download',
  ]) {
    for (const method of ['GET', 'HEAD']) {
      const r = await bobPath(method, target);
      assert.equal(r.status, 404, `${method} ${target}`);
    }
  }
  const alicesList = await fetch(`${server.url}/files/api/v1/downloads`, {
    headers: { authorization: `Bearer ${alice.access}` },
  });
  assert.ok((await alicesList.text()).includes(a.activeDownloadId), 'Alice still sees her download');
});

test("Alice's files, entities, upload session and API token id", async () => {
  // Her entity cannot be attached to Bob's own file to get a link to her bytes.
  const url = await asBob('POST', '/file/url', { uris: ['cloudreve://my/mine.txt'], entity: a.entity });
  assert.notEqual(url.body.code, 0);
  assert.equal(url.body.aggregated_error?.['cloudreve://my/mine.txt']?.code ?? url.body.code, 40077);
  // Her drive by user-info URI, on every file route.
  const her = `cloudreve://${alice.userId}@my/adir`;
  for (const [method, path, body] of [
    ['POST', '/file/url', { uris: [`${her}/secret.txt`] }],
    ['POST', '/file/url', { uris: [`${her}/secret.txt`], archive: true }],
    ['POST', '/file/create', { uri: `${her}/bob.txt`, type: 'file' }],
    ['POST', '/file/rename', { uri: `${her}/secret.txt`, new_name: 'x' }],
    ['POST', '/file/move', { uris: ['cloudreve://my/mine.txt'], dst: her }],
    ['POST', '/file/move', { uris: [`${her}/secret.txt`], dst: 'cloudreve://my', copy: true }],
    ['DELETE', '/file', { uris: [`${her}/secret.txt`] }],
    ['PUT', '/file/upload', { uri: `${her}/up.bin`, size: 1 }],
    ['POST', '/workflow/download', { dst: her, src: [origin.url('/quick.bin')] }],
    ['POST', '/workflow/download', { dst: 'cloudreve://my', src_file: `${her}/x.torrent` }],
  ] as Array<[string, string, unknown]>) {
    const r = await asBob(method, path, body);
    assert.notEqual(r.body.code, 0, `${method} ${path} ${JSON.stringify(body)}`);
  }
  const list = await asBob('GET', `/file?uri=${encodeURIComponent(her)}`);
  assert.equal(list.body.code, 403);
  // Her upload session: Bob can neither write a chunk nor cancel it.
  const chunk = await fetch(`${server.url}/api/v4/file/upload/${a.session}/0`, {
    method: 'POST',
    headers: { authorization: `Bearer ${bob.access}`, 'content-type': 'application/octet-stream' },
    body: 'bobby',
  });
  assert.equal(((await chunk.json()) as { code: number }).code, 40011);
  assert.equal(
    (await asBob('DELETE', '/file/upload', { id: a.session, uri: 'cloudreve://my/adir/pending.bin' })).body
      .code,
    40011,
  );
  // ... and Alice finishes it.
  const done = await fetch(`${server.url}/api/v4/file/upload/${a.session}/0`, {
    method: 'POST',
    headers: { authorization: `Bearer ${alice.access}`, 'content-type': 'application/octet-stream' },
    body: 'alice',
  });
  assert.equal(((await done.json()) as { code: number }).code, 0);
  // Her API token id: not listed for Bob, not revocable by him, still working.
  const tokens = await server.api<Array<{ id: string }>>('GET', '/user/setting/tokens', {
    token: bob.access,
  });
  assert.ok(!tokens.body.data!.some((t) => t.id === a.tokenId));
  assert.equal((await asBob('DELETE', `/user/setting/tokens/${a.tokenId}`)).body.code, 404);
  const me = await server.api<{ id: string }>('GET', '/user/me', { token: a.token });
  assert.equal(me.body.data!.id, alice.userId);
  // Bob's capacity is his own.
  const cap = await server.api<{ used: number }>('GET', '/user/capacity', { token: bob.access });
  assert.equal(cap.body.data!.used, 'bob own\n'.length);
});

test("the event stream never carries Alice's task changes to Bob", async () => {
  const controller = new AbortController();
  const res = await fetch(`${server.url}/api/v4/workflow/events`, {
    headers: { authorization: `Bearer ${bob.access}` },
    signal: controller.signal,
  });
  let seen = '';
  const reading = (async () => {
    const decoder = new TextDecoder();
    try {
      for await (const chunk of res.body!) seen += decoder.decode(chunk as Uint8Array);
    } catch {
      // aborted
    }
  })();
  // Alice changes things: a new task, a cancel.
  const created = await server.api<Task[]>('POST', '/workflow/download', {
    token: alice.access,
    body: { dst: 'cloudreve://my/adir', src: [origin.url('/quick.bin?again')] },
  });
  assert.equal(created.body.code, 0);
  await server.api('DELETE', `/workflow/download/${a.activeTask}`, { token: alice.access });
  await new Promise((r) => setTimeout(r, 1500));
  controller.abort();
  await reading;
  assert.equal(res.status, 200);
  assert.match(seen, /^retry: /, 'the stream was open');
  assert.ok(!seen.includes('event: task'), `Bob saw: ${seen.slice(0, 300)}`);
  for (const id of [created.body.data![0]!.id, a.activeTask]) assert.ok(!seen.includes(id));
});
