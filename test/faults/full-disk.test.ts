// A full disk (issue 18, finding 4), on a small tmpfs mounted as the data dir (the SQLite file
// too; PostgreSQL lives elsewhere): a chunk write that hits ENOSPC leaves no partial bytes,
// cancelling an upload and deleting a file work on a full disk, and below the free-space floor
// /readyz says so and new uploads and tasks are refused with a clear error. Needs root to mount;
// a failed mount fails the test.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, open, rm, rmdir, stat, statfs } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { dialect, startServer, uploadFile, type TestServer } from '../helpers/server.ts';

const MiB = 1024 * 1024;

async function freeBytes(dir: string): Promise<number> {
  const s = await statfs(dir);
  return s.bavail * s.bsize;
}

/** Writes `path` until the file system says ENOSPC (another program filling the disk). */
async function fillDisk(path: string): Promise<void> {
  const fh = await open(path, 'a');
  try {
    for (const size of [MiB, 4096, 512]) {
      const block = Buffer.alloc(size, 0xab);
      for (;;) {
        try {
          await fh.write(block);
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code === 'ENOSPC') break;
          throw e;
        }
      }
    }
  } finally {
    await fh.close();
  }
}

/**
 * POSTs a chunk with node:http, so an answer that arrives before the whole body was sent (the
 * server refusing mid-chunk, then closing) is still read.
 */
function sendChunk(
  server: TestServer,
  token: string,
  session: string,
  index: number,
  body: Buffer,
): Promise<{ code: number; msg: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      `${server.url}/api/v4/file/upload/${session}/${index}`,
      {
        method: 'POST',
        headers: {
          authorization: `Bearer ${token}`,
          'content-type': 'application/octet-stream',
          'content-length': body.length,
        },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (text += d));
        res.on('end', () => {
          try {
            resolve(JSON.parse(text) as { code: number; msg: string });
          } catch {
            reject(new Error(`not JSON: ${text}`));
          }
        });
        res.on('error', reject);
      },
    );
    req.on('error', (e) => {
      reject(e); // after an answer, a no-op
    });
    req.end(body);
  });
}

async function openSession(server: TestServer, token: string, uri: string, size: number) {
  return server.api<{ session_id: string; chunk_size: number }>('PUT', '/file/upload', {
    token,
    body: { uri, size },
  });
}

describe('full disk (48 MiB tmpfs data dir)', () => {
  let server: TestServer | undefined;
  let mountDir = '';
  let mounted = false;
  before(async () => {
    mountDir = await mkdtemp(join(tmpdir(), 'ferry-full-'));
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=48m', 'tmpfs', mountDir], { stdio: 'pipe' });
    mounted = true;
    server = await startServer({
      args: ['--data-dir', mountDir, '--min-free-space', String(8 * MiB), '--allow-network', '127.0.0.1/32'],
      // SQLite in the data dir, as in a default install; PostgreSQL stays where it is.
      env: dialect === 'sqlite' ? { FERRY_DATABASE_URL: join(mountDir, 'ferry.db') } : {},
    });
  });
  after(async () => {
    if (process.env.FERRY_TEST_VERBOSE) console.log(server?.output());
    await server?.stop();
    if (mounted) execFileSync('umount', [mountDir]);
    await rmdir(mountDir).catch(() => undefined);
  });

  test('ENOSPC mid-chunk leaves no bytes; cancel and delete work on a full disk', async () => {
    const token = (await server!.signIn()).access;
    await uploadFile(server!, token, 'cloudreve://my/keep.bin', Buffer.alloc(4 * MiB, 7));
    const big = await openSession(server!, token, 'cloudreve://my/big.bin', 30 * MiB);
    const over = await openSession(server!, token, 'cloudreve://my/over.bin', 20 * MiB);
    assert.equal(big.body.code, 0, JSON.stringify(big.body));
    assert.equal(over.body.code, 0, JSON.stringify(over.body));
    const { session_id: bigId, chunk_size } = big.body.data!;
    assert.equal((await sendChunk(server!, token, bigId, 0, Buffer.alloc(chunk_size, 1))).code, 0);

    // ~18 MiB left: a 20 MiB chunk hits ENOSPC part-way.
    const before = await freeBytes(mountDir);
    const failed = await sendChunk(server!, token, over.body.data!.session_id, 0, Buffer.alloc(20 * MiB, 2));
    assert.notEqual(failed.code, 0);
    assert.match(failed.msg, /space/i, JSON.stringify(failed));
    const overPart = join(mountDir, 'staging', 'uploads', `${over.body.data!.session_id}.part`);
    assert.equal((await stat(overPart)).size, 0, 'the partial chunk is gone');
    assert.ok((await freeBytes(mountDir)) >= before - MiB, 'its space is free again');

    // Another program fills the disk; cancelling the 25 MiB upload must still work.
    await fillDisk(join(mountDir, 'filler-1'));
    const cancel = await server!.api('DELETE', '/file/upload', {
      token,
      body: { id: bigId, uri: 'cloudreve://my/big.bin' },
    });
    assert.equal(cancel.body.code, 0, JSON.stringify(cancel.body));
    await assert.rejects(stat(join(mountDir, 'staging', 'uploads', `${bigId}.part`)));

    // Full again; deleting a file must work too (and free its bytes).
    await fillDisk(join(mountDir, 'filler-2'));
    const del = await server!.api('DELETE', '/file', { token, body: { uris: ['cloudreve://my/keep.bin'] } });
    assert.equal(del.body.code, 0, JSON.stringify(del.body));
    const list = await server!.api<{ files: Array<{ name: string }> }>(
      'GET',
      `/file?uri=${encodeURIComponent('cloudreve://my')}`,
      { token },
    );
    assert.equal(list.body.code, 0, JSON.stringify(list.body));
    assert.ok(!list.body.data!.files.some((f) => f.name === 'keep.bin'));
    await rm(join(mountDir, 'filler-1'));
    await rm(join(mountDir, 'filler-2'));
  });

  test('below --min-free-space: /readyz 503 and new uploads and tasks refused, until space is back', async () => {
    const token = (await server!.signIn()).access;
    assert.equal((await fetch(`${server!.url}/readyz`)).status, 200);
    const filler = join(mountDir, 'filler-3');
    const fh = await open(filler, 'w');
    await fh.write(Buffer.alloc(Math.max(0, (await freeBytes(mountDir)) - 4 * MiB), 0xcd));
    await fh.close();
    const ready = await fetch(`${server!.url}/readyz`);
    assert.equal(ready.status, 503);
    assert.equal(((await ready.json()) as { reason: string }).reason, 'low disk space');
    const upload = await openSession(server!, token, 'cloudreve://my/late.bin', 1000);
    assert.equal(upload.body.code, 50004, JSON.stringify(upload.body));
    assert.match(upload.body.msg, /low on disk space/);
    const task = await server!.api('POST', '/workflow/download', {
      token,
      body: { dst: 'cloudreve://my', src: ['http://127.0.0.1:9/x.bin'] },
    });
    assert.equal(task.body.code, 50004, JSON.stringify(task.body));
    const path = await fetch(
      `${server!.url}/files/dl?download=${encodeURIComponent('http://127.0.0.1:9/y')}`,
      {
        headers: { authorization: `Bearer ${token}` },
      },
    );
    assert.equal(path.status, 507);
    assert.match(((await path.json()) as { message: string }).message, /low on disk space/);
    await rm(filler);
    assert.equal((await fetch(`${server!.url}/readyz`)).status, 200);
    assert.equal((await openSession(server!, token, 'cloudreve://my/late.bin', 1000)).body.code, 0);
  });
});
