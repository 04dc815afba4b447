// Archive zips as the server builds them from local disk (on its zip worker thread): many files
// byte-exact through the real `unzip`, several archives at once, a client hanging up midway,
// and blobs that vanished or shrank on disk after the link was signed.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, truncate, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { crc32 } from 'node:zlib';
import { startServer, uploadFile, waitFor, type TestServer } from '../helpers/server.ts';
import { readCentralDirectory } from '../serving/helpers.ts';

const run = promisify(execFile);
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

let server: TestServer;
let token: string;
/** name → content of the files in cloudreve://my/many */
const files = new Map<string, Buffer>();

before(async () => {
  server = await startServer();
  token = (await server.signIn()).access;
  for (let i = 0; i < 40; i++) {
    const name = `part-${String(i).padStart(2, '0')}.bin`;
    const content = randomBytes(200_000 + i * 1_111);
    files.set(name, content);
    await uploadFile(server, token, `cloudreve://my/many/${name}`, content);
  }
});

after(async () => {
  await server.stop();
});

async function archiveUrl(uris: string[]): Promise<string> {
  const r = await server.api<{ urls: Array<{ url: string }> }>('POST', '/file/url', {
    token,
    body: { uris, archive: true },
  });
  assert.equal(r.body.code, 0, JSON.stringify(r.body));
  return r.body.data!.urls[0]!.url;
}

async function openFds(): Promise<number> {
  return (await readdir(`/proc/${server.pid()}/fd`)).length;
}

/** Unpacks with unzip and checks every file of `many` byte for byte. */
async function assertWholeArchive(zip: Buffer, expected: Map<string, Buffer>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'ferry-unzip-'));
  try {
    await writeFile(join(dir, 'a.zip'), zip);
    const { stdout } = await run('/usr/bin/unzip', ['-t', join(dir, 'a.zip')]);
    assert.match(stdout, /No errors detected/);
    await run('/usr/bin/unzip', ['-q', join(dir, 'a.zip'), '-d', join(dir, 'out')]);
    for (const [name, content] of expected) {
      assert.equal(sha(await readFile(join(dir, 'out', 'many', name))), sha(content), name);
    }
    assert.equal((await readdir(join(dir, 'out', 'many'))).length, expected.size);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function blobPathOf(name: string): Promise<string> {
  const [row] = await server.sql<{ storage_key: string }>(
    'SELECT b.storage_key FROM files f JOIN blobs b ON b.id = f.blob_id WHERE f.name = ?',
    [name],
  );
  assert.ok(row, name);
  return join(server.dataDir, 'blobs', row.storage_key);
}

describe('archives of local files', () => {
  test('40 files: Content-Length exact, unzip -t clean, every byte right', async () => {
    const res = await fetch(await archiveUrl(['cloudreve://my/many']));
    assert.equal(res.status, 200);
    const zip = Buffer.from(await res.arrayBuffer());
    assert.equal(Number(res.headers.get('content-length')), zip.length);
    assert.equal(readCentralDirectory(zip).entries.length, 41); // the folder and its 40 files
    await assertWholeArchive(zip, files);
  });

  test('the first archive stores the CRC-32 of each blob; the next one uses it and is byte-identical', async () => {
    await server.sql('UPDATE blobs SET crc32 = NULL');
    const url = await archiveUrl(['cloudreve://my/many']);
    const first = Buffer.from(await (await fetch(url)).arrayBuffer());
    const stored = await waitFor(
      async () => {
        const rows = await server.sql<{ name: string; crc32: number | null }>(
          'SELECT f.name, b.crc32 FROM files f JOIN blobs b ON b.id = f.blob_id WHERE f.name LIKE ?',
          ['part-%'],
        );
        return rows.length === files.size && rows.every((r) => r.crc32 !== null) ? rows : undefined;
      },
      5000,
      'CRC-32s stored',
    );
    for (const { name, crc32: crc } of stored) assert.equal(Number(crc), crc32(files.get(name)!), name);
    const second = Buffer.from(await (await fetch(url)).arrayBuffer());
    assert.equal(sha(second), sha(first));
    await assertWholeArchive(second, files);
  });

  test('four archives at once come out identical and whole', async () => {
    const url = await archiveUrl(['cloudreve://my/many']);
    const zips = await Promise.all(
      Array.from({ length: 4 }, async () => Buffer.from(await (await fetch(url)).arrayBuffer())),
    );
    for (const zip of zips.slice(1)) assert.equal(sha(zip), sha(zips[0]!));
    await assertWholeArchive(zips[0]!, files);
  });

  test('a client hanging up midway: every file the archive opened is closed, the next one is whole', async () => {
    const url = await archiveUrl(['cloudreve://my/many']);
    await (await fetch(url)).arrayBuffer(); // the worker is up; its own descriptors are counted
    const baseline = await openFds();
    for (let round = 0; round < 3; round++) {
      const controller = new AbortController();
      const res = await fetch(url, { signal: controller.signal });
      const reader = res.body!.getReader();
      let received = 0;
      while (received < 1_500_000) {
        const chunk = (await reader.read()) as { done: boolean; value?: Uint8Array };
        if (chunk.done || !chunk.value) break;
        received += chunk.value.length;
      }
      controller.abort();
      await reader.read().catch(() => undefined);
      assert.ok(received >= 1_500_000, 'the archive was cut before the client hung up');
    }
    await waitFor(async () => ((await openFds()) <= baseline ? true : undefined), 5000, 'descriptors closed');
    const zip = Buffer.from(await (await fetch(url)).arrayBuffer());
    await assertWholeArchive(zip, files);
  });

  test('a blob gone from disk, or shorter than recorded: a broken download, never a complete-looking zip', async () => {
    for (const [name, damage] of [
      ['part-20.bin', (path: string) => truncate(path, 1000)],
      ['part-30.bin', (path: string) => unlink(path)],
    ] as const) {
      const url = await archiveUrl(['cloudreve://my/many']);
      await damage(await blobPathOf(name));
      const res = await fetch(url);
      assert.equal(res.status, 200); // the headers were out before the entry was reached
      await assert.rejects(res.arrayBuffer(), name);
      // The server keeps serving, and an archive without the damaged file is whole.
      files.delete(name);
      const del = await server.api('DELETE', '/file', {
        token,
        body: { uris: [`cloudreve://my/many/${name}`] },
      });
      assert.equal(del.body.code, 0, JSON.stringify(del.body));
      const again = await fetch(await archiveUrl(['cloudreve://my/many']));
      await assertWholeArchive(Buffer.from(await again.arrayBuffer()), files);
    }
  });
});
