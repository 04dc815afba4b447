// aria2 and qBittorrent as the server's downloaders, chosen in configuration: the same
// scenarios as the built-in engines, through the whole server.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  startQbittorrentDaemon,
  type QbittorrentDaemon,
} from '../../src/downloaders/qbittorrent/qbittorrent.api.ts';
import { expectedSha256, startOrigin, type Origin } from '../helpers/origin.ts';
import { startServer, waitFor, type TestServer } from '../helpers/server.ts';
import { startSwarm, type Swarm } from '../helpers/swarm.ts';

interface Task {
  id: string;
  status: string;
  error?: string;
}

let swarm: Swarm;
let origin: Origin;
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

before(async () => {
  swarm = await startSwarm({
    name: 'External',
    files: [
      { path: 'one.bin', size: 1024 * 1024, seed: 41 },
      { path: 'sub/two.bin', size: 512 * 1024, seed: 42 },
    ],
  });
  origin = await startOrigin();
});
after(async () => {
  await swarm?.close();
  await origin?.close();
});

async function runTo(server: TestServer, token: string, body: Record<string, unknown>): Promise<Task> {
  const r = await server.api<Task[]>('POST', '/workflow/download', { token, body });
  assert.equal(r.body.code, 0, JSON.stringify(r.body));
  const id = r.body.data![0]!.id;
  return waitFor(
    async () => {
      const t = (await server.api<Task>('GET', `/workflow/${id}`, { token })).body.data!;
      return ['completed', 'error', 'canceled'].includes(t.status) ? t : undefined;
    },
    90_000,
    `task ${id}`,
  );
}

async function readBack(server: TestServer, token: string, uri: string): Promise<Buffer> {
  const r = await server.api<{ urls: Array<{ url: string }> }>('POST', '/file/url', {
    token,
    body: { uris: [uri] },
  });
  assert.equal(r.body.code, 0, `${uri}: ${JSON.stringify(r.body)}`);
  return Buffer.from(await (await fetch(r.body.data!.urls[0]!.url)).arrayBuffer());
}

test('aria2 (a daemon Ferry starts itself) runs HTTP and BitTorrent sources', async () => {
  const server = await startServer({
    args: [
      '--allow-network',
      '127.0.0.1/32',
      // aria2 does not apply the outbound policy to redirects and trackers: an explicit opt-out.
      '--allow-unguarded-downloaders',
      '--http-downloader',
      'aria2',
      '--torrent-downloader',
      'aria2',
      '--no-bt-dht',
      '--no-bt-pex',
      '--no-bt-lsd',
    ],
  });
  try {
    const token = (await server.signIn()).access;
    const http = await runTo(server, token, {
      dst: 'cloudreve://my',
      src: [origin.route('/via-aria2.bin', { size: 3_000_000, seed: 43 })],
    });
    assert.equal(http.status, 'completed', http.error);
    assert.equal(
      sha256(await readBack(server, token, 'cloudreve://my/via-aria2.bin')),
      expectedSha256(3_000_000, 43),
    );
    const magnet = await runTo(server, token, { dst: 'cloudreve://my', src: [swarm.magnet] });
    assert.equal(magnet.status, 'completed', magnet.error);
    for (const f of swarm.files) {
      assert.equal(
        sha256(await readBack(server, token, `cloudreve://my/${swarm.name}/${f.path}`)),
        f.sha256,
        f.path,
      );
    }
  } finally {
    await server.stop();
  }
});

test('qBittorrent (Web API v2) runs BitTorrent sources', async () => {
  const profile = await mkdtemp(join(tmpdir(), 'ferry-qbt-'));
  let daemon: QbittorrentDaemon | undefined;
  let server: TestServer | undefined;
  try {
    daemon = await startQbittorrentDaemon({ profileDir: profile });
    server = await startServer({
      args: [
        '--allow-network',
        '127.0.0.1/32',
        '--allow-unguarded-downloaders',
        '--torrent-downloader',
        'qbittorrent',
        '--qbittorrent-url',
        daemon.url,
        '--qbittorrent-username',
        daemon.username,
        // The `=` form: a random password may start with '-', which a separate argument
        // would make look like another flag.
        `--qbittorrent-password=${daemon.password}`,
      ],
    });
    const token = (await server.signIn()).access;
    const done = await runTo(server, token, { dst: 'cloudreve://my', src: [swarm.magnet] });
    assert.equal(done.status, 'completed', done.error);
    for (const f of swarm.files) {
      assert.equal(
        sha256(await readBack(server, token, `cloudreve://my/${swarm.name}/${f.path}`)),
        f.sha256,
        f.path,
      );
    }
  } finally {
    await server?.stop();
    await daemon?.stop();
    await rm(profile, { recursive: true, force: true });
  }
});
