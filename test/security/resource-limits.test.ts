// Resource limits a signed-in user could otherwise exhaust (issue 18, findings 3 and 7): quota
// counts reserved bytes (open upload sessions and running downloads), open sessions per user are
// capped, idle sessions expire and lose their bytes, and an oversized .torrent is refused from its
// metadata before any engine verifies or allocates anything. A real server on 127.0.0.1.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { encode } from '../../src/downloaders/bittorrent/bencode.ts';
import { finished } from '../faults/helpers.ts';
import { startOrigin, type Origin } from '../helpers/origin.ts';
import { startServer, uploadFile, waitFor, type TestServer } from '../helpers/server.ts';

const MB = 1_000_000;
const GiB = 1024 ** 3;

/** Peak resident memory of a process (VmHWM), in bytes. */
async function peakRss(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kb = /^VmHWM:\s+(\d+) kB/m.exec(status)?.[1];
  assert.ok(kb, 'VmHWM readable');
  return Number(kb) * 1024;
}

/** Every regular file under `dir` with its size. */
async function filesUnder(dir: string): Promise<Array<{ path: string; size: number }>> {
  const out: Array<{ path: string; size: number }> = [];
  for (const e of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (!e.isFile()) continue;
    const path = join(e.parentPath, e.name);
    out.push({ path, size: (await stat(path)).size });
  }
  return out;
}

/** A signed-in user of the User group, whose group quota is set to `quota` bytes. */
async function quotaUser(server: TestServer, email: string, quota: number): Promise<string> {
  await server.addUser(email, 'quota-password-1');
  await server.sql('UPDATE groups SET quota_bytes = ? WHERE id = 2', [quota]);
  return (await server.signIn(email, 'quota-password-1')).access;
}

describe('an oversized .torrent (finding 7)', () => {
  let server: TestServer;
  before(async () => {
    server = await startServer({ args: ['--no-bt-dht', '--no-bt-pex', '--no-bt-lsd'] });
  });
  after(async () => {
    await server?.stop();
  });

  test('a 100 GiB .torrent with a 20 MB quota fails TOO_LARGE from its metadata, allocating nothing', async () => {
    const token = await quotaUser(server, 'torrent@example.com', 20 * MB);
    // Hand-bencoded: one 100 GiB file in 16 MiB pieces whose hashes match no data anywhere.
    const pieceLength = 16 * 1024 * 1024;
    const length = 100 * GiB;
    const torrent = encode({
      info: {
        name: 'huge.bin',
        length,
        'piece length': pieceLength,
        pieces: Buffer.alloc(Math.ceil(length / pieceLength) * 20, 7),
      },
    });
    await uploadFile(server, token, 'cloudreve://my/huge.torrent', torrent);
    const peakBefore = await peakRss(server.pid());
    const r = await server.api<Array<{ id: string }>>('POST', '/workflow/download', {
      token,
      body: { dst: 'cloudreve://my', src_file: 'cloudreve://my/huge.torrent' },
    });
    assert.equal(r.body.code, 0, JSON.stringify(r.body));
    const done = await finished(server, token, r.body.data![0]!.id, 120_000);
    assert.equal(done.status, 'error', JSON.stringify(done));
    const [row] = await server.sql<{ failure: string }>('SELECT failure FROM tasks ORDER BY id DESC');
    assert.equal(row?.failure, 'TOO_LARGE');
    // Before the fix the engine verified 6 400 missing pieces first: ~500 MiB of memory.
    const grown = (await peakRss(server.pid())) - peakBefore;
    assert.ok(grown < 64 * 1024 * 1024, `peak memory grew by ${grown} bytes`);
    const big = (await filesUnder(server.dataDir)).filter((f) => f.size > 20 * MB);
    assert.deepEqual(big, [], 'no large staging or store file');
  });
});

/** Opens an upload session; returns the whole answer (code 0 = opened). */
async function openSession(server: TestServer, token: string, uri: string, size: number) {
  return server.api<{ session_id: string; chunk_size: number }>('PUT', '/file/upload', {
    token,
    body: { uri, size },
  });
}

async function used(server: TestServer, token: string): Promise<number> {
  const r = await server.api<{ used: number }>('GET', '/user/capacity', { token });
  assert.equal(r.body.code, 0, JSON.stringify(r.body));
  return r.body.data!.used;
}

async function sendChunk(server: TestServer, token: string, session: string, index: number, body: Buffer) {
  const res = await fetch(`${server.url}/api/v4/file/upload/${session}/${index}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/octet-stream' },
    body,
  });
  return (await res.json()) as { code: number; msg: string };
}

describe('reserved bytes count against the quota (finding 3)', () => {
  let server: TestServer;
  let origin: Origin;
  before(async () => {
    origin = await startOrigin();
    server = await startServer({
      args: ['--allow-network', '127.0.0.1/32', '--task-retries', '0'],
    });
  });
  after(async () => {
    await server?.stop();
    await origin?.close();
  });

  test('unfinished upload sessions reserve their declared size; over the quota → 40051', async () => {
    const token = await quotaUser(server, 'sessions@example.com', 20 * MB);
    const first = await openSession(server, token, 'cloudreve://my/a.bin', 15 * MB);
    assert.equal(first.body.code, 0, JSON.stringify(first.body));
    assert.equal(await used(server, token), 15 * MB, 'capacity shows the reserved bytes');
    // Before the fix every one of these was accepted (200 × 19 MB against a 20 MB quota).
    const second = await openSession(server, token, 'cloudreve://my/b.bin', 15 * MB);
    assert.equal(second.body.code, 40051, JSON.stringify(second.body));
    const concurrent = await Promise.all(
      [0, 1, 2, 3].map((i) => openSession(server, token, `cloudreve://my/c${i}.bin`, 2 * MB)),
    );
    assert.equal(concurrent.filter((r) => r.body.code === 0).length, 2, 'exactly what fits: 2 × 2 MB');
    assert.ok(concurrent.every((r) => r.body.code === 0 || r.body.code === 40051));
    // Cancelling gives the reservation back.
    const cancel = await server.api('DELETE', '/file/upload', {
      token,
      body: { id: first.body.data!.session_id, uri: 'cloudreve://my/a.bin' },
    });
    assert.equal(cancel.body.code, 0, JSON.stringify(cancel.body));
    assert.equal(await used(server, token), 4 * MB);
    assert.equal((await openSession(server, token, 'cloudreve://my/b.bin', 15 * MB)).body.code, 0);
  });

  test('open sessions per user are capped (default 10)', async () => {
    const token = (await server.signIn()).access;
    const answers = [];
    for (let i = 0; i < 12; i++)
      answers.push(await openSession(server, token, `cloudreve://my/s${i}.bin`, 1));
    assert.deepEqual(
      answers.map((r) => r.body.code),
      [...Array<number>(10).fill(0), 40026, 40026],
    );
    assert.match(answers[10]!.body.msg, /unfinished uploads/);
  });

  test('a running download holds its size: an upload that would overrun the quota is refused', async () => {
    const token = await quotaUser(server, 'running@example.com', 20 * MB);
    const src = origin.route('/slow-15mb.bin', { size: 15 * MB, ranges: false, throttle: 256 * 1024 });
    const r = await server.api<Array<{ id: string }>>('POST', '/workflow/download', {
      token,
      body: { dst: 'cloudreve://my', src: [src] },
    });
    assert.equal(r.body.code, 0, JSON.stringify(r.body));
    const id = r.body.data![0]!.id;
    await waitFor(
      async () => {
        const t = await server.api<{ summary?: { props: { download: { total: number } | null } } }>(
          'GET',
          `/workflow/${id}`,
          { token },
        );
        return (t.body.data?.summary?.props.download?.total ?? 0) > 0 || undefined;
      },
      30_000,
      'the download to know its size',
    );
    assert.equal(await used(server, token), 15 * MB);
    const upload = await openSession(server, token, 'cloudreve://my/up.bin', 10 * MB);
    assert.equal(upload.body.code, 40051, JSON.stringify(upload.body));
    assert.equal((await openSession(server, token, 'cloudreve://my/up.bin', 4 * MB)).body.code, 0);
    await server.api('DELETE', `/workflow/download/${id}`, { token });
  });
});

describe('idle upload sessions (finding 3)', () => {
  let idleServer: TestServer;
  before(async () => {
    // Long enough for the first chunk to arrive on a loaded machine, short enough to wait out.
    idleServer = await startServer({ args: ['--upload-session-idle', '6'] });
  });
  after(async () => {
    await idleServer?.stop();
  });

  test('an idle session expires and its bytes are removed', async () => {
    const token = await quotaUser(idleServer, 'idle@example.com', 100 * MB);
    const size = 26 * 1024 * 1024; // two chunks: 25 MiB stays on disk after chunk 0
    const open = await openSession(idleServer, token, 'cloudreve://my/idle.bin', size);
    assert.equal(open.body.code, 0, JSON.stringify(open.body));
    const { session_id, chunk_size } = open.body.data!;
    assert.equal((await sendChunk(idleServer, token, session_id, 0, Buffer.alloc(chunk_size, 1))).code, 0);
    const part = join(idleServer.dataDir, 'staging', 'uploads', `${session_id}.part`);
    assert.equal((await stat(part)).size, chunk_size);
    assert.equal(await used(idleServer, token), size);
    // --upload-session-idle 6: gone a few seconds later, bytes and reservation.
    await waitFor(
      async () => (await stat(part).catch(() => null)) === null || undefined,
      60_000,
      'the idle session to be swept',
    );
    assert.equal(await used(idleServer, token), 0);
    const late = await sendChunk(idleServer, token, session_id, 1, Buffer.alloc(size - chunk_size, 2));
    assert.equal(late.code, 40011, JSON.stringify(late));
  });
});
