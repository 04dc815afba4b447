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
