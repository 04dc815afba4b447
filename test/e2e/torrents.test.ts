// BitTorrent through the whole server: magnets, .torrent URLs and .torrent files in the drive,
// file selection before and during the download, cancel, and hostile paths — against a
// loopback swarm (opentracker + an aria2c seeder), DHT/PEX/LSD off.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startOrigin, type Origin } from '../helpers/origin.ts';
import { startServer, uploadFile, waitFor, type TestServer } from '../helpers/server.ts';
import { startSwarm, type Swarm } from '../helpers/swarm.ts';

interface Task {
  id: string;
  status: string;
  error?: string;
  summary?: {
    phase?: string;
    props: {
      download: null | {
        name: string;
        hash?: string;
        total: number;
        downloaded: number;
        files?: Array<{ index: number; name: string; size: number; progress: number; selected: boolean }>;
      };
    };
  };
}

const FILES = [
  { path: 'a.bin', size: 3 * 1024 * 1024, seed: 31 },
  { path: 'docs/b.txt', size: 700 * 1024, seed: 32 },
  { path: 'docs/deep/c.bin', size: 2 * 1024 * 1024, seed: 33 },
  { path: 'd.bin', size: 1024 * 1024, seed: 34 },
];

let swarm: Swarm;
let origin: Origin;
let server: TestServer;
let token: string;
let tmp: string;

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function create(body: Record<string, unknown>) {
  return server.api<Task[]>('POST', '/workflow/download', { token, body });
}

async function task(id: string): Promise<Task> {
  return (await server.api<Task>('GET', `/workflow/${id}`, { token })).body.data!;
}

async function finished(id: string): Promise<Task> {
  return waitFor(
    async () => {
      const t = await task(id);
      return ['completed', 'error', 'canceled'].includes(t.status) ? t : undefined;
    },
    90_000,
    `task ${id}`,
  );
}

async function readBack(uri: string): Promise<Buffer> {
  const r = await server.api<{ urls: Array<{ url: string }> }>('POST', '/file/url', {
    token,
    body: { uris: [uri] },
  });
  assert.equal(r.body.code, 0, `${uri}: ${JSON.stringify(r.body)}`);
  return Buffer.from(await (await fetch(r.body.data!.urls[0]!.url)).arrayBuffer());
}

async function names(uri: string): Promise<string[]> {
  const r = await server.api<{ files: Array<{ name: string }> }>(
    'GET',
    `/file?uri=${encodeURIComponent(uri)}`,
    { token },
  );
  return r.body.code === 0 ? r.body.data!.files.map((f) => f.name).sort() : [];
}

async function expectLanded(dst: string, wanted: string[]) {
  for (const file of swarm.files) {
    const uri = `${dst}/${swarm.name}/${file.path}`;
    if (wanted.includes(file.path)) assert.equal(sha256(await readBack(uri)), file.sha256, file.path);
    else {
      const dir = uri.slice(0, uri.lastIndexOf('/'));
      assert.ok(!(await names(dir)).includes(file.path.split('/').at(-1)!), `${file.path} should not land`);
    }
  }
}

before(async () => {
  swarm = await startSwarm({ name: 'Ferry Test Torrent', files: FILES, pieceLength: 64 * 1024 });
  origin = await startOrigin();
  tmp = await mkdtemp(join(tmpdir(), 'ferry-torrent-'));
  server = await startServer({
    args: [
      '--allow-network',
      '127.0.0.1/32',
      '--no-bt-dht',
      '--no-bt-pex',
      '--no-bt-lsd',
      '--torrent-downloader',
      'builtin',
    ],
  });
  token = (await server.signIn()).access;
});
after(async () => {
  await server?.stop();
  await origin?.close();
  await swarm?.close();
  await rm(tmp, { recursive: true, force: true });
});

describe('sources', () => {
  test('a magnet lands every file under dst/<torrent name>/, byte for byte', async () => {
    await server.api('POST', '/file/create', {
      token,
      body: { uri: 'cloudreve://my/magnet', type: 'folder' },
    });
    const r = await create({ dst: 'cloudreve://my/magnet', src: [swarm.magnet] });
    assert.equal(r.body.code, 0, JSON.stringify(r.body));
    const done = await finished(r.body.data![0]!.id);
    assert.equal(done.status, 'completed', done.error);
    // Where Cloudreve leaves a finished remote download, and where an HTTP task ends too.
    assert.equal(done.summary!.phase, 'seeding');
    const status = done.summary!.props.download!;
    assert.equal(status.hash, swarm.infoHash);
    assert.equal(status.files!.length, FILES.length);
    await expectLanded(
      'cloudreve://my/magnet',
      FILES.map((f) => f.path),
    );
  });

  test('a .torrent URL', async () => {
    const file = join(tmp, 'x.torrent');
    await writeFile(file, swarm.torrentFile);
    const url = origin.route('/dl/x.torrent', {
      file: { path: file, size: swarm.torrentFile.length },
      contentType: 'application/x-bittorrent',
    });
    await server.api('POST', '/file/create', {
      token,
      body: { uri: 'cloudreve://my/byurl', type: 'folder' },
    });
    const r = await create({ dst: 'cloudreve://my/byurl', src: [url] });
    const done = await finished(r.body.data![0]!.id);
    assert.equal(done.status, 'completed', done.error);
    await expectLanded(
      'cloudreve://my/byurl',
      FILES.map((f) => f.path),
    );
  });

  test('a .torrent already in the drive (src_file), with files chosen at creation', async () => {
    await uploadFile(server, token, 'cloudreve://my/torrents/test.torrent', swarm.torrentFile);
    await server.api('POST', '/file/create', {
      token,
      body: { uri: 'cloudreve://my/fromdrive', type: 'folder' },
    });
    // Indexes follow the torrent's file order (mktorrent sorts paths).
    const wanted = ['a.bin', 'docs/deep/c.bin'];
    const indexes = swarm.files.flatMap((f, i) => (wanted.includes(f.path) ? [i] : []));
    const r = await create({
      dst: 'cloudreve://my/fromdrive',
      src_file: 'cloudreve://my/torrents/test.torrent',
      select_files: indexes,
    });
    assert.equal(r.body.code, 0, JSON.stringify(r.body));
    assert.equal(r.body.data![0]!.summary!.props.download, null);
    const done = await finished(r.body.data![0]!.id);
    assert.equal(done.status, 'completed', done.error);
    await expectLanded('cloudreve://my/fromdrive', wanted);
  });

  test('seed validation for torrent sources', async () => {
    const both = await create({
      dst: 'cloudreve://my',
      src: [swarm.magnet],
      src_file: 'cloudreve://my/torrents/test.torrent',
    });
    assert.equal(both.body.code, 40001);
    const missing = await create({ dst: 'cloudreve://my', src_file: 'cloudreve://my/nope.torrent' });
    assert.deepEqual([missing.body.code, missing.body.msg], [40016, 'Invalid source file']);
    const bad = await create({ dst: 'cloudreve://my', src: ['magnet:?dn=nohash'] });
    assert.equal(bad.body.code, 40081);
  });
});

describe('during the download', () => {
  test('deselecting a file while downloading keeps it out; cancel cleans up', async () => {
    const slow = await startServer({
      args: [
        '--allow-network',
        '127.0.0.1/32',
        '--no-bt-dht',
        '--no-bt-pex',
        '--no-bt-lsd',
        '--bt-download-limit',
        String(512 * 1024),
      ],
    });
    try {
      const t = (await slow.signIn()).access;
      const r = await slow.api<Task[]>('POST', '/workflow/download', {
        token: t,
        body: { dst: 'cloudreve://my', src: [swarm.magnet] },
      });
      const id = r.body.data![0]!.id;
      // Deselect the last file as soon as the file list is known.
      const running = await waitFor(
        async () => {
          const s = (await slow.api<Task>('GET', `/workflow/${id}`, { token: t })).body.data!;
          return s.summary?.props.download?.files?.length ? s : undefined;
        },
        60_000,
        'file list',
      );
      const last = running.summary!.props.download!.files!.find((f) => f.name.endsWith('d.bin'))!;
      const patch = await slow.api('PATCH', `/workflow/download/${id}`, {
        token: t,
        body: { files: [{ index: last.index, download: false }] },
      });
      assert.equal(patch.body.code, 0, JSON.stringify(patch.body));
      const after = (await slow.api<Task>('GET', `/workflow/${id}`, { token: t })).body.data!;
      assert.equal(after.status === 'processing' || after.status === 'suspending', true);
      // Now cancel: the transfer stops, staging is emptied, the task ends canceled.
      assert.equal((await slow.api('DELETE', `/workflow/download/${id}`, { token: t })).body.code, 0);
      const done = await waitFor(async () => {
        const s = (await slow.api<Task>('GET', `/workflow/${id}`, { token: t })).body.data!;
        return s.status === 'canceled' ? s : undefined;
      });
      assert.equal(done.status, 'canceled');
      await waitFor(
        async () => {
          const left = await readdir(join(slow.dataDir, 'staging', 'tasks')).catch(() => []);
          return left.length === 0 ? true : undefined;
        },
        10_000,
        'staging to be empty',
      );
      const rootNames = await slow
        .api<{ files: Array<{ name: string }> }>(
          'GET',
          `/file?uri=${encodeURIComponent(`cloudreve://my/${swarm.name}`)}`,
          { token: t },
        )
        .then((x) => x.body.data?.files.map((f) => f.name) ?? []);
      assert.ok(!rootNames.includes('d.bin'), 'a deselected file never lands');
    } finally {
      await slow.stop();
    }
  });
});

test('a torrent with hostile paths cannot write outside its folder', async () => {
  const hostile = await startSwarm({ name: 'Hostile', files: [], hostileTorrent: true });
  try {
    await server.api('POST', '/file/create', {
      token,
      body: { uri: 'cloudreve://my/hostile', type: 'folder' },
    });
    const r = await create({ dst: 'cloudreve://my/hostile', src: [hostile.magnet] });
    const done = await finished(r.body.data![0]!.id);
    assert.equal(done.status, 'completed', done.error);
    // Everything landed under dst/<name>/ and nothing escaped into the user's root.
    const root = await names('cloudreve://my');
    for (const escaped of ['etc', 'escape-up.txt', 'Windows'])
      assert.ok(!root.includes(escaped), `${escaped} escaped to the root`);
    const inside = await names('cloudreve://my/hostile');
    assert.equal(inside.length, 1, inside.join());
    // And nothing was written outside the data dir's own folders.
    const dataEntries = (await readdir(server.dataDir)).sort();
    for (const entry of dataEntries)
      assert.ok(
        ['blobs', 'ferry.db', 'ferry.db-shm', 'ferry.db-wal', 'secret.key', 'staging'].includes(entry),
        entry,
      );
  } finally {
    await hostile.close();
  }
});

test('two users adding the same infohash both get their files', async () => {
  await server.addUser('tor2@example.com', 'tor2-password');
  const other = (await server.signIn('tor2@example.com', 'tor2-password')).access;
  const [mine, theirs] = await Promise.all([
    create({ dst: 'cloudreve://my', src: [swarm.magnet] }),
    server.api<Task[]>('POST', '/workflow/download', {
      token: other,
      body: { dst: 'cloudreve://my', src: [swarm.magnet] },
    }),
  ]);
  const myDone = await finished(mine.body.data![0]!.id);
  const theirDone = await waitFor(async () => {
    const t = (await server.api<Task>('GET', `/workflow/${theirs.body.data![0]!.id}`, { token: other })).body
      .data!;
    return ['completed', 'error', 'canceled'].includes(t.status) ? t : undefined;
  }, 90_000);
  assert.equal(myDone.status, 'completed', myDone.error);
  assert.equal(theirDone.status, 'completed', theirDone.error);
  const first = swarm.files[0]!;
  const r = await server.api<{ urls: Array<{ url: string }> }>('POST', '/file/url', {
    token: other,
    body: { uris: [`cloudreve://my/${swarm.name}/${first.path}`] },
  });
  assert.equal(
    sha256(Buffer.from(await (await fetch(r.body.data!.urls[0]!.url)).arrayBuffer())),
    first.sha256,
  );
});

test('seeding after completion shows phase seeding, then completes', async () => {
  const seeding = await startServer({
    args: [
      '--allow-network',
      '127.0.0.1/32',
      '--no-bt-dht',
      '--no-bt-pex',
      '--no-bt-lsd',
      '--seed-time',
      '2',
    ],
  });
  try {
    const t = (await seeding.signIn()).access;
    const r = await seeding.api<Task[]>('POST', '/workflow/download', {
      token: t,
      body: { dst: 'cloudreve://my', src: [swarm.magnet] },
    });
    const id = r.body.data![0]!.id;
    const seen = await waitFor(async () => {
      const s = (await seeding.api<Task>('GET', `/workflow/${id}`, { token: t })).body.data!;
      return s.summary?.phase === 'seeding' || s.status === 'completed' ? s : undefined;
    }, 60_000);
    assert.equal(seen.summary?.phase, 'seeding');
    assert.equal(seen.status, 'suspending');
    const done = await waitFor(async () => {
      const s = (await seeding.api<Task>('GET', `/workflow/${id}`, { token: t })).body.data!;
      return s.status === 'completed' ? s : undefined;
    }, 30_000);
    assert.equal(done.status, 'completed');
  } finally {
    await seeding.stop();
  }
});
