// The file tree over real HTTP: create, list, rename, move/copy, delete, chunked uploads and quota.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { IdCodec } from '../../src/domain/ids.ts';
import { startServer, uploadFile, type ApiResult, type TestServer } from '../helpers/server.ts';

interface FileDto {
  type: number;
  id: string;
  name: string;
  size: number;
  path: string;
  created_at: string;
  updated_at: string;
  primary_entity?: string;
  owned: boolean;
  capability: string;
  metadata: unknown;
}
interface ListDto {
  files: FileDto[];
  parent: FileDto;
  pagination: {
    page: number;
    page_size: number;
    total_items?: number;
    next_token?: string;
    is_cursor?: boolean;
  };
  props: { capability: string; max_page_size: number; order_by_options: string[] };
  mixed_type: boolean;
  storage_policy: { id: string; type: string };
}

const MiB = 1024 * 1024;
let server: TestServer;
let token: string;
let other: string;

before(async () => {
  server = await startServer();
  await server.addUser('files@example.com', 'files-password-1');
  await server.addUser('other@example.com', 'other-password-1');
  token = (await server.signIn('files@example.com', 'files-password-1')).access;
  other = (await server.signIn('other@example.com', 'other-password-1')).access;
});
after(async () => {
  await server?.stop();
});

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

function create(uri: string, type: 'file' | 'folder', extra: Record<string, unknown> = {}) {
  return server.api<FileDto>('POST', '/file/create', { token, body: { uri, type, ...extra } });
}

async function list(uri: string, query: Record<string, string | number> = {}, as = token) {
  const params = new URLSearchParams({
    uri,
    ...Object.fromEntries(Object.entries(query).map(([k, v]) => [k, String(v)])),
  });
  return server.api<ListDto>('GET', `/file?${params.toString()}`, { token: as });
}

async function names(uri: string, as = token): Promise<string[]> {
  const r = await list(uri, { page_size: 2000 }, as);
  assert.equal(r.body.code, 0, JSON.stringify(r.body));
  return r.body.data!.files.map((f) => f.name);
}

async function capacity(as = token): Promise<number> {
  const r = await server.api<{ used: number }>('GET', '/user/capacity', { token: as });
  return r.body.data!.used;
}

async function download(uri: string, as = token): Promise<Buffer> {
  const r = await server.api<{ urls: Array<{ url: string }> }>('POST', '/file/url', {
    token: as,
    body: { uris: [uri] },
  });
  assert.equal(r.body.code, 0, JSON.stringify(r.body));
  const res = await fetch(r.body.data!.urls[0]!.url);
  assert.equal(res.status, 200);
  return Buffer.from(await res.arrayBuffer());
}

async function storedBlobs(): Promise<number> {
  const entries = await readdir(join(server.dataDir, 'blobs'), {
    recursive: true,
    withFileTypes: true,
  }).catch(() => []);
  return entries.filter((e) => e.isFile() && !e.parentPath.includes('.tmp')).length;
}

function assertBatch(r: ApiResult, keys: Record<string, number>) {
  assert.equal(r.body.code, 40081, JSON.stringify(r.body));
  assert.deepEqual(
    Object.fromEntries(Object.entries(r.body.aggregated_error ?? {}).map(([k, v]) => [k, v.code])),
    keys,
  );
}

async function chunk(sessionId: string, index: number, body: Uint8Array, as = token) {
  const res = await fetch(`${server.url}/api/v4/file/upload/${sessionId}/${index}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${as}`, 'content-type': 'application/octet-stream' },
    body,
  });
  assert.equal(res.status, 200);
  return (await res.json()) as { code: number; msg: string };
}

describe('create', () => {
  test('folders and files, missing parents created, paths encoded (spec 4.3)', async () => {
    const r = await create('cloudreve://my/c/deep/er/new%20folder', 'folder');
    assert.equal(r.body.code, 0, JSON.stringify(r.body));
    const folder = r.body.data!;
    assert.equal(folder.type, 1);
    assert.equal(folder.name, 'new folder');
    assert.equal(folder.size, 0);
    assert.equal(folder.path, 'cloudreve://my/c/deep/er/new%20folder');
    assert.equal(folder.owned, true);
    assert.deepEqual(await names('cloudreve://my/c/deep'), ['er']);

    const f = await create("cloudreve://my/c/Luke's%20AMA%20(1)%40x.txt", 'file');
    assert.equal(f.body.code, 0, JSON.stringify(f.body));
    assert.equal(f.body.data!.type, 0);
    assert.equal(f.body.data!.name, "Luke's AMA (1)@x.txt");
    assert.equal(f.body.data!.path, "cloudreve://my/c/Luke's%20AMA%20(1)%40x.txt");
    assert.equal(f.body.data!.size, 0);
    // An empty file downloads as zero bytes.
    assert.equal((await download("cloudreve://my/c/Luke's%20AMA%20(1)%40x.txt")).length, 0);
  });

  test('same name and type returns the existing object; err_on_conflict and other type → 40004', async () => {
    const first = await create('cloudreve://my/c/dup', 'folder');
    const again = await create('cloudreve://my/c/dup', 'folder');
    assert.equal(again.body.code, 0);
    assert.equal(again.body.data!.id, first.body.data!.id);
    const strict = await create('cloudreve://my/c/dup', 'folder', { err_on_conflict: true });
    assert.equal(strict.body.code, 40004, JSON.stringify(strict.body));
    const asFile = await create('cloudreve://my/c/dup', 'file');
    assert.equal(asFile.body.code, 40004);
    const f1 = await create('cloudreve://my/c/dup.txt', 'file');
    const f2 = await create('cloudreve://my/c/dup.txt', 'file');
    assert.equal(f2.body.data!.id, f1.body.data!.id);
    assert.equal((await create('cloudreve://my/c/dup.txt', 'folder')).body.code, 40004);
    // A file in the way of a parent folder.
    assert.equal((await create('cloudreve://my/c/dup.txt/child', 'folder')).body.code, 40004);
    assert.equal((await names('cloudreve://my/c')).filter((n) => n.startsWith('dup')).length, 2);
  });

  test('illegal names → 40052, the root → 40053, bad URIs → 40001', async () => {
    const long = 'é'.repeat(150); // 300 bytes
    for (const uri of [
      'cloudreve://my/c/bad%01name',
      'cloudreve://my/c/tab%09',
      'cloudreve://my/c/' + encodeURIComponent(long),
      'cloudreve://my/c/' + 'a'.repeat(300),
      'cloudreve://my/c/back%5Cslash',
      'cloudreve://my/c/%20%20',
    ]) {
      const r = await create(uri, 'file');
      assert.equal(r.body.code, 40052, `${uri}: ${JSON.stringify(r.body)}`);
    }
    assert.equal((await create('cloudreve://my/c/x%01/y', 'folder')).body.code, 40052);
    assert.equal((await create('cloudreve://my', 'folder')).body.code, 40053);
    assert.equal((await create('cloudreve://my/a/..', 'folder')).body.code, 40053);
    for (const uri of ['not a uri', 'http://my/x', 'cloudreve://my/%zz']) {
      const r = await create(uri, 'folder');
      assert.equal(r.body.code, 40001, uri);
    }
    const noType = await server.api('POST', '/file/create', { token, body: { uri: 'cloudreve://my/x' } });
    assert.equal(noType.body.code, 40001);
    assert.equal(noType.body.correlation_id, undefined);
    // 255 bytes is still fine.
    assert.equal((await create('cloudreve://my/c/' + 'b'.repeat(255), 'file')).body.code, 0);
    assert.ok(!(await names('cloudreve://my/c')).some((n) => n.includes('\u0001')));
  });

  test('login required', async () => {
    const r = await server.api('POST', '/file/create', { body: { uri: 'cloudreve://my/x', type: 'folder' } });
    assert.equal(r.body.code, 401);
  });
});

describe('list', () => {
  test('folders first, name order, cursor and offset pagination', async () => {
    const folders = ['zeta', 'Alpha', 'beta', 'Gamma'];
    const files = Array.from({ length: 21 }, (_, i) => `file-${String(i).padStart(2, '0')}.txt`);
    for (const n of folders) assert.equal((await create(`cloudreve://my/l/${n}`, 'folder')).body.code, 0);
    for (const n of files) assert.equal((await create(`cloudreve://my/l/${n}`, 'file')).body.code, 0);
    const expected = [...[...folders].sort(), ...files];

    const first = await list('cloudreve://my/l', { page_size: 10 });
    assert.equal(first.body.code, 0);
    const data = first.body.data!;
    assert.deepEqual(
      data.files.map((f) => f.name),
      expected.slice(0, 10),
    );
    assert.equal(data.pagination.is_cursor, true);
    assert.equal(data.pagination.page_size, 10);
    assert.ok(data.pagination.next_token);
    assert.equal(data.parent.path, 'cloudreve://my/l');
    assert.equal(data.parent.type, 1);
    assert.equal(data.parent.name, 'l');
    assert.equal(data.mixed_type, false);
    assert.deepEqual(data.props.order_by_options, ['name', 'size', 'updated_at', 'created_at']);
    assert.equal(data.files[0]!.path, `cloudreve://my/l/${expected[0]}`);
    assert.equal(data.files[0]!.capability, data.props.capability);
    // Ids are hash ids of the right kind (spec 8).
    const [salt] = await server.sql<{ value: string }>('SELECT value FROM settings WHERE key = ?', [
      'hash_id_salt',
    ]);
    const ids = new IdCodec(salt!.value);
    assert.ok(ids.decode('folder', data.files[0]!.id)! > 0);
    assert.ok(ids.decode('file', data.files.at(-1)!.id)! > 0);
    assert.ok(ids.decode('folder', data.parent.id)! > 0);
    // Folders have no primary entity (Cloudreve omits it).
    assert.equal(data.files[0]!.type, 1);
    assert.equal(data.files[0]!.primary_entity, undefined);
    assert.equal(ids.decode('policy', data.storage_policy.id), 1);
    assert.equal(data.storage_policy.type, 'local');

    const seen: string[] = [];
    let next: string | undefined;
    let pages = 0;
    do {
      const r = await list('cloudreve://my/l', { page_size: 10, ...(next ? { next_page_token: next } : {}) });
      assert.equal(r.body.code, 0, JSON.stringify(r.body));
      seen.push(...r.body.data!.files.map((f) => f.name));
      next = r.body.data!.pagination.next_token;
      pages++;
    } while (next && pages < 10);
    assert.equal(pages, 3);
    assert.deepEqual(seen, expected);

    const page2 = await list('cloudreve://my/l', { page: 1, page_size: 10 });
    assert.equal(page2.body.code, 0);
    assert.deepEqual(
      page2.body.data!.files.map((f) => f.name),
      expected.slice(10, 20),
    );
    assert.equal(page2.body.data!.pagination.page, 1);
    assert.equal(page2.body.data!.pagination.total_items, 25);
    assert.equal(page2.body.data!.pagination.is_cursor, undefined);
    const last = await list('cloudreve://my/l', { page: 2, page_size: 10 });
    assert.deepEqual(
      last.body.data!.files.map((f) => f.name),
      expected.slice(20),
    );
    assert.equal(last.body.data!.pagination.next_token, undefined);
    const beyond = await list('cloudreve://my/l', { page: 9, page_size: 10 });
    assert.deepEqual(beyond.body.data!.files, []);

    const capped = await list('cloudreve://my/l', { page_size: 5000 });
    assert.equal(capped.body.code, 0, 'page_size is capped at max_page_size, not refused');
    assert.equal(capped.body.data!.pagination.page_size, 2000);
    assert.equal(capped.body.data!.files.length, 25);

    const desc = await list('cloudreve://my/l', { order_direction: 'desc', page_size: 100 });
    assert.deepEqual(
      desc.body.data!.files.map((f) => f.name),
      [...[...folders].sort().reverse(), ...[...files].reverse()],
    );
  });

  test('order by size keeps folders first', async () => {
    await uploadFile(server, token, 'cloudreve://my/s/big.bin', Buffer.alloc(300));
    await uploadFile(server, token, 'cloudreve://my/s/small.bin', Buffer.alloc(10));
    await uploadFile(server, token, 'cloudreve://my/s/mid.bin', Buffer.alloc(100));
    await create('cloudreve://my/s/sub', 'folder');
    const asc = await list('cloudreve://my/s', { order_by: 'size' });
    assert.deepEqual(
      asc.body.data!.files.map((f) => [f.name, f.size]),
      [
        ['sub', 0],
        ['small.bin', 10],
        ['mid.bin', 100],
        ['big.bin', 300],
      ],
    );
    const desc = await list('cloudreve://my/s', { order_by: 'size', order_direction: 'desc' });
    assert.deepEqual(
      desc.body.data!.files.map((f) => f.name),
      ['sub', 'big.bin', 'mid.bin', 'small.bin'],
    );
  });

  test('errors: missing folder → 40016, a file → 40016, bad token/params → 40001, anonymous → 401', async () => {
    assert.equal((await list('cloudreve://my/nope')).body.code, 40016);
    await create('cloudreve://my/e/f.txt', 'file');
    assert.equal((await list('cloudreve://my/e/f.txt')).body.code, 40016);
    const badQueries: Array<Record<string, string | number>> = [
      { next_page_token: 'garbage' },
      { next_page_token: Buffer.from('{"o":-1}').toString('base64') },
      { page: -1 },
      { page: 'x' },
      { order_by: 'owner' },
      { order_direction: 'up' },
    ];
    for (const q of badQueries) {
      const r = await list('cloudreve://my/e', q);
      assert.equal(r.status, 200);
      assert.equal(r.body.code, 40001, `${JSON.stringify(q)}: ${JSON.stringify(r.body)}`);
    }
    assert.equal((await server.api('GET', '/file', { token })).body.code, 40001);
    assert.equal((await list('cloudreve://my', {}, '')).body.code, 401);
    assert.equal((await list('cloudreve://trash')).body.code, 403);
  });
});

describe('rename', () => {
  test('renames, refuses conflicts and bad names', async () => {
    await create('cloudreve://my/r/one.txt', 'file');
    await create('cloudreve://my/r/two.txt', 'file');
    await create('cloudreve://my/r/dir/inner.txt', 'file');
    const r = await server.api<FileDto>('POST', '/file/rename', {
      token,
      body: { uri: 'cloudreve://my/r/one.txt', new_name: 'uno 1.txt' },
    });
    assert.equal(r.body.code, 0, JSON.stringify(r.body));
    assert.equal(r.body.data!.name, 'uno 1.txt');
    assert.equal(r.body.data!.path, 'cloudreve://my/r/uno%201.txt');
    const conflict = await server.api('POST', '/file/rename', {
      token,
      body: { uri: 'cloudreve://my/r/uno%201.txt', new_name: 'two.txt' },
    });
    assert.equal(conflict.body.code, 40004);
    const folderClash = await server.api('POST', '/file/rename', {
      token,
      body: { uri: 'cloudreve://my/r/two.txt', new_name: 'dir' },
    });
    assert.equal(folderClash.body.code, 40004);
    for (const new_name of ['..', '.', 'a/b', 'a\\b', 'x\u0000y', 'x\u001fy', 'é'.repeat(150), ' ']) {
      const bad = await server.api('POST', '/file/rename', {
        token,
        body: { uri: 'cloudreve://my/r/two.txt', new_name },
      });
      // NUL is refused for every field before any route runs (40001); other bad names are 40052.
      const expected = new_name.includes('\u0000') ? 40001 : 40052;
      assert.equal(bad.body.code, expected, `${JSON.stringify(new_name)}: ${JSON.stringify(bad.body)}`);
    }
    const empty = await server.api('POST', '/file/rename', {
      token,
      body: { uri: 'cloudreve://my/r/two.txt', new_name: '' },
    });
    assert.equal(empty.body.code, 40001);
    const missing = await server.api('POST', '/file/rename', {
      token,
      body: { uri: 'cloudreve://my/r/none.txt', new_name: 'x' },
    });
    assert.equal(missing.body.code, 40016);
    const root = await server.api('POST', '/file/rename', {
      token,
      body: { uri: 'cloudreve://my', new_name: 'x' },
    });
    assert.equal(root.body.code, 40053);
    // A renamed folder keeps its children.
    const dir = await server.api('POST', '/file/rename', {
      token,
      body: { uri: 'cloudreve://my/r/dir', new_name: 'folder' },
    });
    assert.equal(dir.body.code, 0);
    assert.deepEqual(await names('cloudreve://my/r/folder'), ['inner.txt']);
    assert.deepEqual(await names('cloudreve://my/r'), ['folder', 'two.txt', 'uno 1.txt']);
  });
});

describe('move and copy', () => {
  test('move files and folders; a folder cannot go into itself; per-item failures → 40081', async () => {
    await uploadFile(server, token, 'cloudreve://my/m/src/a.txt', Buffer.from('aaa'));
    await uploadFile(server, token, 'cloudreve://my/m/src/sub/b.txt', Buffer.from('bbbb'));
    await create('cloudreve://my/m/dst', 'folder');
    const ok = await server.api('POST', '/file/move', {
      token,
      body: { uris: ['cloudreve://my/m/src/a.txt', 'cloudreve://my/m/src/sub'], dst: 'cloudreve://my/m/dst' },
    });
    assert.deepEqual(ok.body, { code: 0, msg: '' });
    assert.deepEqual(await names('cloudreve://my/m/dst'), ['sub', 'a.txt']);
    assert.deepEqual(await names('cloudreve://my/m/src'), []);
    assert.equal((await download('cloudreve://my/m/dst/sub/b.txt')).toString(), 'bbbb');

    const self = await server.api('POST', '/file/move', {
      token,
      body: { uris: ['cloudreve://my/m/dst'], dst: 'cloudreve://my/m/dst/sub' },
    });
    assertBatch(self, { 'cloudreve://my/m/dst': 40001 });
    const into = await server.api('POST', '/file/move', {
      token,
      body: { uris: ['cloudreve://my/m/dst'], dst: 'cloudreve://my/m/dst' },
    });
    assertBatch(into, { 'cloudreve://my/m/dst': 40001 });

    // One good, two bad: the good one moves, the bad ones are reported by their URI.
    await create('cloudreve://my/m/src/a.txt', 'file');
    await create('cloudreve://my/m/src/c.txt', 'file');
    const mixed = await server.api('POST', '/file/move', {
      token,
      body: {
        uris: ['cloudreve://my/m/src/c.txt', 'cloudreve://my/m/src/a.txt', 'cloudreve://my/m/src/missing'],
        dst: 'cloudreve://my/m/dst',
      },
    });
    assertBatch(mixed, { 'cloudreve://my/m/src/a.txt': 40004, 'cloudreve://my/m/src/missing': 40016 });
    assert.equal(mixed.body.msg, 'One or more operation failed');
    assert.deepEqual(await names('cloudreve://my/m/dst'), ['sub', 'a.txt', 'c.txt']);
    assert.deepEqual(await names('cloudreve://my/m/src'), ['a.txt']);

    const single = await server.api('POST', '/file/move', {
      token,
      body: { uris: ['cloudreve://my/m/src/zzz'], dst: 'cloudreve://my/m/dst' },
    });
    assertBatch(single, { 'cloudreve://my/m/src/zzz': 40016 });
    assert.equal(single.body.msg, 'Path not exist', 'a single failure keeps its own message');

    const toFile = await server.api('POST', '/file/move', {
      token,
      body: { uris: ['cloudreve://my/m/src/a.txt'], dst: 'cloudreve://my/m/dst/a.txt' },
    });
    assert.equal(toFile.body.code, 40016);
    const noDst = await server.api('POST', '/file/move', {
      token,
      body: { uris: ['cloudreve://my/m/src/a.txt'], dst: 'cloudreve://my/m/none' },
    });
    assert.equal(noDst.body.code, 40016);
    const root = await server.api('POST', '/file/move', {
      token,
      body: { uris: ['cloudreve://my'], dst: 'cloudreve://my/m/dst' },
    });
    assertBatch(root, { 'cloudreve://my': 40053 });
    const empty = await server.api('POST', '/file/move', {
      token,
      body: { uris: [], dst: 'cloudreve://my' },
    });
    assert.equal(empty.body.code, 40001);
  });

  test('copy shares blobs, counts quota, copies folders recursively', async () => {
    const content = randomBytes(5000);
    await uploadFile(server, token, 'cloudreve://my/cp/tree/x.bin', content);
    await uploadFile(server, token, 'cloudreve://my/cp/tree/deep/y.bin', Buffer.from('yy'));
    await create('cloudreve://my/cp/tree/empty', 'folder');
    await create('cloudreve://my/cp/out', 'folder');
    const usedBefore = await capacity();
    const blobsBefore = await storedBlobs();
    const r = await server.api('POST', '/file/move', {
      token,
      body: { uris: ['cloudreve://my/cp/tree'], dst: 'cloudreve://my/cp/out', copy: true },
    });
    assert.deepEqual(r.body, { code: 0, msg: '' });
    assert.equal(await capacity(), usedBefore + 5002, 'a copy counts against the quota');
    assert.equal(await storedBlobs(), blobsBefore, 'a copy does not duplicate bytes');
    assert.deepEqual(await names('cloudreve://my/cp/out/tree'), ['deep', 'empty', 'x.bin']);
    assert.equal(sha(await download('cloudreve://my/cp/out/tree/x.bin')), sha(content));
    assert.deepEqual(await names('cloudreve://my/cp/tree'), ['deep', 'empty', 'x.bin'], 'the source stays');
    for (const dst of ['cloudreve://my/cp/tree', 'cloudreve://my/cp/tree/deep']) {
      const self = await server.api('POST', '/file/move', {
        token,
        body: { uris: ['cloudreve://my/cp/tree'], dst, copy: true },
      });
      assertBatch(self, { 'cloudreve://my/cp/tree': 40001 });
    }
    assert.deepEqual(await names('cloudreve://my/cp/tree/deep'), ['y.bin']);
    const again = await server.api('POST', '/file/move', {
      token,
      body: { uris: ['cloudreve://my/cp/tree'], dst: 'cloudreve://my/cp/out', copy: true },
    });
    assertBatch(again, { 'cloudreve://my/cp/tree': 40004 });
    // Copying a single file next to itself is a conflict; elsewhere it works.
    const file = await server.api('POST', '/file/move', {
      token,
      body: { uris: ['cloudreve://my/cp/tree/x.bin'], dst: 'cloudreve://my/cp', copy: true },
    });
    assert.equal(file.body.code, 0);
    assert.equal(sha(await download('cloudreve://my/cp/x.bin')), sha(content));
  });
});

describe('delete', () => {
  test('recursive delete releases quota; bytes go when the last reference goes', async () => {
    const content = randomBytes(7000);
    await uploadFile(server, token, 'cloudreve://my/d/keep/a.bin', content);
    await uploadFile(server, token, 'cloudreve://my/d/keep/sub/b.bin', Buffer.from('bbb'));
    await create('cloudreve://my/d/copy', 'folder');
    await server.api('POST', '/file/move', {
      token,
      body: { uris: ['cloudreve://my/d/keep/a.bin'], dst: 'cloudreve://my/d/copy', copy: true },
    });
    const used = await capacity();
    const blobs = await storedBlobs();

    const del = await server.api('DELETE', '/file', { token, body: { uris: ['cloudreve://my/d/keep'] } });
    assert.deepEqual(del.body, { code: 0, msg: '' });
    assert.equal(await capacity(), used - 7003);
    assert.equal(await storedBlobs(), blobs - 1, 'b.bin had one reference; a.bin is still used by the copy');
    assert.equal((await list('cloudreve://my/d/keep/sub')).body.code, 40016);
    assert.deepEqual(await names('cloudreve://my/d'), ['copy']);
    assert.equal(sha(await download('cloudreve://my/d/copy/a.bin')), sha(content));

    const last = await server.api('DELETE', '/file', {
      token,
      body: { uris: ['cloudreve://my/d/copy/a.bin'] },
    });
    assert.equal(last.body.code, 0);
    assert.equal(await storedBlobs(), blobs - 2);
    assert.equal(await capacity(), used - 14003);

    const partial = await server.api('DELETE', '/file', {
      token,
      body: { uris: ['cloudreve://my/d/copy', 'cloudreve://my/d/ghost', 'cloudreve://my'] },
    });
    assertBatch(partial, { 'cloudreve://my/d/ghost': 40016, 'cloudreve://my': 40053 });
    assert.deepEqual(await names('cloudreve://my/d'), []);
    const none = await server.api('DELETE', '/file', { token, body: { uris: [] } });
    assert.equal(none.body.code, 40001);
    const tooMany = await server.api('DELETE', '/file', {
      token,
      body: { uris: Array.from({ length: 3001 }, (_, i) => `cloudreve://my/${i}`) },
    });
    assert.equal(tooMany.body.code, 40074);
  });
});

describe('upload', () => {
  test('small single-chunk upload', async () => {
    const content = Buffer.from('hello, ferry\n');
    const s = await server.api<{ session_id: string; chunk_size: number; expires: number; uri: string }>(
      'PUT',
      '/file/upload',
      { token, body: { uri: 'cloudreve://my/u/hello.txt', size: content.length } },
    );
    assert.equal(s.body.code, 0, JSON.stringify(s.body));
    const data = s.body.data!;
    assert.match(data.session_id, /^[0-9a-f-]{36}$/);
    // Like Cloudreve's local policy: 25 MiB chunks whatever the file size.
    assert.equal(data.chunk_size, 25 * MiB);
    // Idle sessions expire after --upload-session-idle (1 h); each chunk extends it, up to 24 h.
    assert.ok(Math.abs(data.expires - (Date.now() / 1000 + 3600)) < 60);
    assert.equal(data.uri, 'cloudreve://my/u/hello.txt');
    assert.equal((await chunk(data.session_id, 0, content)).code, 0);
    assert.equal((await download('cloudreve://my/u/hello.txt')).toString(), 'hello, ferry\n');
    const listed = await list('cloudreve://my/u');
    assert.equal(listed.body.data!.files[0]!.size, content.length);
    // The session is gone once the file is complete.
    assert.equal((await chunk(data.session_id, 0, content)).code, 40011);
    // An existing name cannot be uploaded over.
    const again = await server.api('PUT', '/file/upload', {
      token,
      body: { uri: 'cloudreve://my/u/hello.txt', size: 3 },
    });
    assert.equal(again.body.code, 40004);
  });

  test('zero-byte upload', async () => {
    const s = await server.api<{ session_id: string }>('PUT', '/file/upload', {
      token,
      body: { uri: 'cloudreve://my/u/empty.txt', size: 0 },
    });
    assert.equal(s.body.code, 0);
    assert.equal((await chunk(s.body.data!.session_id, 0, new Uint8Array())).code, 0);
    assert.equal((await download('cloudreve://my/u/empty.txt')).length, 0);
  });

  test('multi-chunk upload over 25 MiB: resend a chunk, wrong length, order, owner', async () => {
    const content = randomBytes(27 * MiB);
    const s = await server.api<{ session_id: string; chunk_size: number }>('PUT', '/file/upload', {
      token,
      body: { uri: 'cloudreve://my/u/big/video.bin', size: content.length, last_modified: Date.now() },
    });
    assert.equal(s.body.code, 0, JSON.stringify(s.body));
    const { session_id: id, chunk_size: size } = s.body.data!;
    assert.equal(size, 25 * MiB);
    const part0 = content.subarray(0, size);
    const part1 = content.subarray(size);

    const early = await chunk(id, 1, part1);
    assert.equal(early.code, 40012, 'chunk 1 before chunk 0');
    const beyond = await chunk(id, 2, part1);
    assert.equal(beyond.code, 40012);
    const short = await chunk(id, 0, part0.subarray(0, 1000));
    assert.equal(short.code, 40013, JSON.stringify(short));
    assert.equal(short.msg, `Invalid Content-Length (expected: ${size})`);
    const foreign = await chunk(id, 0, part0, other);
    assert.equal(foreign.code, 40011);
    assert.equal((await chunk('00000000-0000-4000-8000-000000000000', 0, part0.subarray(0, 10))).code, 40011);
    assert.equal((await chunk('not-a-session', 0, part0.subarray(0, 10))).code, 40011);

    assert.equal((await chunk(id, 0, part0)).code, 0);
    // The connection dropped and the client sends chunk 0 again: fine.
    assert.equal((await chunk(id, 0, part0)).code, 0);
    const longLast = await chunk(id, 1, Buffer.concat([part1, Buffer.alloc(10)]));
    assert.equal(longLast.code, 40013);
    assert.equal((await chunk(id, 1, part1)).code, 0);
    assert.equal(sha(await download('cloudreve://my/u/big/video.bin')), sha(content));
    const listed = await list('cloudreve://my/u/big');
    assert.equal(listed.body.data!.files[0]!.size, 27 * MiB);
  });

  test('a far too large chunk body gets the envelope, not a reset', async () => {
    const s = await server.api<{ session_id: string }>('PUT', '/file/upload', {
      token,
      body: { uri: 'cloudreve://my/u/small.bin', size: 1000 },
    });
    const r = await chunk(s.body.data!.session_id, 0, randomBytes(8 * MiB));
    assert.equal(r.code, 40013);
    assert.equal((await chunk(s.body.data!.session_id, 0, randomBytes(1000))).code, 0);
  });

  test('a chunk without Content-Length → 40013', async () => {
    const s = await server.api<{ session_id: string }>('PUT', '/file/upload', {
      token,
      body: { uri: 'cloudreve://my/u/streamed.bin', size: 4 },
    });
    const res = await fetch(`${server.url}/api/v4/file/upload/${s.body.data!.session_id}/0`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/octet-stream' },
      body: new ReadableStream({
        start(controller) {
          controller.enqueue(new Uint8Array([1, 2, 3, 4]));
          controller.close();
        },
      }),
      duplex: 'half',
    });
    assert.equal(((await res.json()) as { code: number }).code, 40013);
    assert.equal((await chunk(s.body.data!.session_id, 0, new Uint8Array([1, 2, 3, 4]))).code, 0);
  });

  test('the same last chunk sent twice at once: one file, no internal error', async () => {
    const content = randomBytes(2 * MiB);
    const s = await server.api<{ session_id: string }>('PUT', '/file/upload', {
      token,
      body: { uri: 'cloudreve://my/u/twice.bin', size: content.length },
    });
    const results = await Promise.all([0, 1, 2].map(() => chunk(s.body.data!.session_id, 0, content)));
    const codes = results.map((r) => r.code).sort();
    assert.ok(codes.includes(0), JSON.stringify(results));
    for (const c of codes) assert.ok([0, 40004, 40011].includes(c), JSON.stringify(results));
    assert.deepEqual(
      (await names('cloudreve://my/u')).filter((n) => n.startsWith('twice')),
      ['twice.bin'],
    );
    assert.equal(sha(await download('cloudreve://my/u/twice.bin')), sha(content));
  });

  test('cancel; only the owner can cancel', async () => {
    const s = await server.api<{ session_id: string }>('PUT', '/file/upload', {
      token,
      body: { uri: 'cloudreve://my/u/cancel.bin', size: 100 },
    });
    const id = s.body.data!.session_id;
    const foreign = await server.api('DELETE', '/file/upload', {
      token: other,
      body: { id, uri: 'cloudreve://my/u/cancel.bin' },
    });
    assert.equal(foreign.body.code, 40011);
    const c = await server.api('DELETE', '/file/upload', {
      token,
      body: { id, uri: 'cloudreve://my/u/cancel.bin' },
    });
    assert.equal(c.body.code, 0);
    assert.equal((await chunk(id, 0, Buffer.alloc(100))).code, 40011);
    assert.ok(!(await names('cloudreve://my/u')).includes('cancel.bin'));
    const staging = await readdir(join(server.dataDir, 'staging', 'uploads')).catch(() => []);
    assert.ok(!staging.some((n) => n.startsWith(id)), 'staging file removed');
    const twice = await server.api('DELETE', '/file/upload', {
      token,
      body: { id, uri: 'cloudreve://my/u/cancel.bin' },
    });
    assert.equal(twice.body.code, 40011);
    const missing = await server.api('DELETE', '/file/upload', { token, body: { id } });
    assert.equal(missing.body.code, 40001);
  });

  test('session validation', async () => {
    const cases: Array<[unknown, number]> = [
      [{ uri: 'cloudreve://my', size: 1 }, 40053],
      [{ uri: 'cloudreve://my/u/bad%01', size: 1 }, 40052],
      [{ uri: 'cloudreve://my/u/neg', size: -1 }, 40001],
      [{ uri: 'cloudreve://my/u/frac', size: 1.5 }, 40001],
      [{ uri: 'cloudreve://my/u/huge', size: 2 ** 60 }, 40001],
      [{ size: 1 }, 40001],
      [{ uri: 'cloudreve://my/u/hello.txt/x', size: 1 }, 40004],
    ];
    for (const [body, code] of cases) {
      const r = await server.api('PUT', '/file/upload', { token, body });
      assert.equal(r.body.code, code, `${JSON.stringify(body)}: ${JSON.stringify(r.body)}`);
    }
    assert.equal(
      (await server.api('PUT', '/file/upload', { body: { uri: 'cloudreve://my/x', size: 1 } })).body.code,
      401,
    );
  });
});

describe('quota', () => {
  test('uploads and copies beyond the group quota → 40051', async () => {
    // A fresh user in the User group, whose quota is lowered for the test.
    await server.addUser('quota@example.com', 'quota-password-1');
    const q = (await server.signIn('quota@example.com', 'quota-password-1')).access;
    const [row] = await server.sql<{ quota: number }>('SELECT quota_bytes AS quota FROM groups WHERE id = 2');
    await server.sql('UPDATE groups SET quota_bytes = ? WHERE id = 2', [10_000]);
    try {
      const cap = await server.api<{ total: number; used: number }>('GET', '/user/capacity', { token: q });
      assert.deepEqual(cap.body.data, { total: 10_000, used: 0 });
      const tooBig = await server.api('PUT', '/file/upload', {
        token: q,
        body: { uri: 'cloudreve://my/a', size: 10_001 },
      });
      assert.equal(tooBig.body.code, 40051, JSON.stringify(tooBig.body));
      await uploadFile(server, q, 'cloudreve://my/six.bin', randomBytes(6000));
      const rest = await server.api('PUT', '/file/upload', {
        token: q,
        body: { uri: 'cloudreve://my/b', size: 4001 },
      });
      assert.equal(rest.body.code, 40051);
      // Two sessions that each fit but not together: an open session reserves its size, so the
      // second is refused when it is opened.
      const s1 = await server.api<{ session_id: string }>('PUT', '/file/upload', {
        token: q,
        body: { uri: 'cloudreve://my/c1', size: 3000 },
      });
      const s2 = await server.api<{ session_id: string }>('PUT', '/file/upload', {
        token: q,
        body: { uri: 'cloudreve://my/c2', size: 3000 },
      });
      assert.equal(s2.body.code, 40051, JSON.stringify(s2.body));
      assert.equal((await chunk(s1.body.data!.session_id, 0, randomBytes(3000), q)).code, 0);
      const copy = await server.api('POST', '/file/move', {
        token: q,
        body: { uris: ['cloudreve://my/six.bin'], dst: 'cloudreve://my/sub', copy: true },
      });
      assert.equal(copy.body.code, 40016, 'missing destination');
      await server.api('POST', '/file/create', {
        token: q,
        body: { uri: 'cloudreve://my/sub', type: 'folder' },
      });
      const copy2 = await server.api('POST', '/file/move', {
        token: q,
        body: { uris: ['cloudreve://my/six.bin'], dst: 'cloudreve://my/sub', copy: true },
      });
      assertBatch(copy2, { 'cloudreve://my/six.bin': 40051 });
      const used = await server.api<{ used: number }>('GET', '/user/capacity', { token: q });
      assert.equal(used.body.data!.used, 9000);
      assert.deepEqual(await names('cloudreve://my', q), ['sub', 'c1', 'six.bin']);
      assert.deepEqual(await names('cloudreve://my/sub', q), []);
      // Freeing space makes room again.
      await server.api('DELETE', '/file', { token: q, body: { uris: ['cloudreve://my/six.bin'] } });
      await uploadFile(server, q, 'cloudreve://my/again.bin', randomBytes(6500));
    } finally {
      await server.sql('UPDATE groups SET quota_bytes = ? WHERE id = 2', [Number(row!.quota)]);
    }
  });
});
