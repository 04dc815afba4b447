// The qBittorrent downloader against a real qbittorrent-nox the test starts (Web UI on 127.0.0.1,
// BitTorrent bound to the loopback interface, DHT / PeX / LSD / UPnP off) and a loopback swarm
// (test/helpers/swarm.ts: opentracker + an aria2c seeder on 127.0.0.1).

import assert from 'node:assert/strict';
import { createHash, pbkdf2Sync } from 'node:crypto';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, relative, resolve, sep } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { freeLoopbackPort } from '../../src/downloaders/aria2/aria2.rpc.ts';
import {
  QbittorrentDownloader,
  qbittorrentPasswordHash,
  startQbittorrentDaemon,
  type QbittorrentDaemon,
  type QbittorrentDownloaderOptions,
} from '../../src/downloaders/qbittorrent/qbittorrent.downloader.ts';
import {
  DownloadFailure,
  type DownloadControl,
  type DownloadedFile,
  type DownloadJob,
  type DownloadProgress,
  type DownloadSource,
} from '../../src/downloaders/port.ts';
import { OutboundPolicy } from '../../src/net/address-policy.ts';
import { startSwarm, type Swarm } from '../helpers/swarm.ts';

const LOOPBACK = new OutboundPolicy({ allowNetworks: ['127.0.0.1/32'] });
const MiB = 1024 * 1024;
const NAME = 'Qbt Set';

let root: string;
let daemon: QbittorrentDaemon;
let swarm: Swarm;

function engine(extra: Partial<QbittorrentDownloaderOptions> = {}): QbittorrentDownloader {
  return new QbittorrentDownloader({
    url: daemon.url,
    username: daemon.username,
    password: daemon.password,
    policy: LOOPBACK,
    pollIntervalMs: 250,
    dataDir: join(root, `store-${Math.random().toString(36).slice(2)}`),
    ...extra,
  });
}

interface Harness {
  job: DownloadJob;
  progress: DownloadProgress[];
  completed: Array<DownloadedFile & { index: number; sha256: string }>;
  controller: AbortController;
  control: Promise<DownloadControl>;
}

async function sha256File(path: string): Promise<string> {
  return createHash('sha256')
    .update(await readFile(path))
    .digest('hex');
}

async function harness(source: DownloadSource, extra: Partial<DownloadJob> = {}): Promise<Harness> {
  const stagingDir = await mkdtemp(join(root, 'staging-'));
  const controller = new AbortController();
  const progress: DownloadProgress[] = [];
  const completed: Harness['completed'] = [];
  let attach!: (c: DownloadControl) => void;
  const control = new Promise<DownloadControl>((r) => (attach = r));
  const job: DownloadJob = {
    source,
    stagingDir,
    connections: 1,
    speedLimit: 0,
    timeoutMs: 0,
    maxBytes: 0,
    signal: controller.signal,
    onProgress: (p) => progress.push(structuredClone(p)),
    checkpoint: async () => undefined,
    onFileComplete: async (file) => {
      completed.push({ ...file, sha256: await sha256File(file.stagingPath) });
    },
    attachControl: (c) => attach(c),
    ...extra,
  };
  return { job, progress, completed, controller, control };
}

async function listFiles(dir: string): Promise<string[]> {
  if (!existsSync(dir)) return [];
  const out: string[] = [];
  for (const e of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (e.isFile()) out.push(relative(dir, join(e.parentPath, e.name)).split(sep).join('/'));
  }
  return out.sort();
}

async function rejection(p: Promise<unknown>): Promise<DownloadFailure> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof DownloadFailure, `expected a DownloadFailure, got ${String(err)}`);
    return err;
  }
  assert.fail('expected the download to fail');
}

async function waitUntil(check: () => boolean | Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('timed out waiting');
    await sleep(20);
  }
}

function indexOf(path: string): number {
  const i = swarm.files.findIndex((f) => f.path === path);
  assert.ok(i >= 0, path);
  return i;
}

async function assertAllMatch(outcome: { files: DownloadedFile[] }, stagingDir: string): Promise<void> {
  for (const f of outcome.files) {
    const expected = swarm.files[f.index ?? -1];
    assert.ok(expected);
    assert.equal(f.name, `${NAME}/${expected.path}`);
    assert.equal(f.size, expected.size);
    assert.equal(await sha256File(f.stagingPath), expected.sha256, f.name);
    assert.ok(resolve(f.stagingPath).startsWith(resolve(stagingDir) + sep));
  }
}

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'ferry-qbt-test-'));
  [daemon, swarm] = await Promise.all([
    startQbittorrentDaemon({ profileDir: join(root, 'profile') }),
    startSwarm({
      name: NAME,
      pieceLength: 32 * 1024,
      files: [
        { path: 'readme.txt', size: 1_234 },
        { path: 'video/big.bin', size: 6 * MiB + 77 },
        { path: 'video/extra.bin', size: 2 * MiB + 5 },
        { path: 'docs/manual.pdf', size: 300_001 },
        { path: 'z-last.bin', size: 500_000 },
      ],
    }),
  ]);
});

after(async () => {
  await swarm.close();
  await daemon.stop();
  await rm(root, { recursive: true, force: true });
});

describe('qBittorrent downloader on a loopback swarm', () => {
  it('canHandle: torrent sources only; the password hash has qBittorrent’s format', () => {
    const e = engine();
    assert.equal(e.name, 'qbittorrent');
    assert.equal(e.canHandle({ kind: 'http', url: 'https://example.com/a' }), false);
    assert.equal(e.canHandle({ kind: 'torrent', magnet: swarm.magnet }), true);
    assert.equal(e.canHandle({ kind: 'torrent', torrentFile: swarm.torrentFile }), true);
    const salt = Buffer.alloc(16, 7);
    const value = qbittorrentPasswordHash('secret', salt);
    const expected = pbkdf2Sync('secret', salt, 100_000, 64, 'sha512').toString('base64');
    assert.equal(value, `@ByteArray(${salt.toString('base64')}:${expected})`);
  });

  it('magnet: metadata stage, then every file byte-exact, landed one by one; 0-based indexes', async () => {
    const e = engine();
    const h = await harness({ kind: 'torrent', magnet: swarm.magnet });
    const outcome = await e.download(h.job);
    assert.equal(h.progress[0]?.stage, 'metadata');
    assert.equal(h.progress[0]?.hash, swarm.infoHash);
    assert.equal(outcome.name, NAME);
    assert.equal(outcome.files.length, swarm.files.length);
    await assertAllMatch(outcome, h.job.stagingDir);
    assert.deepEqual(
      h.completed.map((c) => c.index).sort(),
      swarm.files.map((_, i) => i),
    );
    for (const c of h.completed) assert.equal(c.sha256, swarm.files[c.index]?.sha256);
    const last = h.progress.at(-1);
    assert.ok(last);
    const total = swarm.files.reduce((s, f) => s + f.size, 0);
    assert.equal(last.total, total);
    assert.equal(last.downloaded, total);
    assert.deepEqual(
      last.files.map((f) => [f.index, f.name, f.size, f.progress, f.selected]),
      swarm.files.map((f, i) => [i, `${NAME}/${f.path}`, f.size, 1, true]),
    );
    const numPieces = Math.ceil(total / (32 * 1024));
    assert.equal(last.numPieces, numPieces);
    const bits = Buffer.from(last.pieces ?? '', 'base64');
    assert.equal(bits.length, Math.ceil(numPieces / 8));
    for (let i = 0; i < numPieces; i++) assert.ok((bits[i >> 3] ?? 0) & (0x80 >> (i & 7)), `piece ${i}`);
    // Deleted from qBittorrent, with its files.
    assert.deepEqual(await e.api.hashes(), []);
    assert.equal(existsSync(e.storeDir(swarm.infoHash)), false);
  });

  it('.torrent bytes with files deselected at start: those never land, the rest match byte for byte', async () => {
    const e = engine();
    const wantedPaths = ['readme.txt', 'docs/manual.pdf', 'z-last.bin'];
    const wanted = wantedPaths.map(indexOf);
    const h = await harness({ kind: 'torrent', torrentFile: swarm.torrentFile }, { selectedFiles: wanted });
    const outcome = await e.download(h.job);
    assert.deepEqual(outcome.files.map((f) => f.index).sort(), [...wanted].sort());
    await assertAllMatch(outcome, h.job.stagingDir);
    assert.deepEqual(await listFiles(h.job.stagingDir), wantedPaths.map((p) => `${NAME}/${p}`).sort());
    const last = h.progress.at(-1);
    assert.ok(last);
    assert.equal(
      last.total,
      wanted.reduce((s, i) => s + (swarm.files[i]?.size ?? 0), 0),
    );
    for (const f of last.files) {
      assert.equal(f.selected, wanted.includes(f.index));
      if (!f.selected) assert.ok(f.progress * f.size <= 2 * 32 * 1024, `${f.name}: ${f.progress}`);
    }
  });

  it('.torrent URL: fetched by Ferry through the outbound policy', async () => {
    let requests = 0;
    const server = createServer((_req, res) => {
      requests++;
      res.writeHead(200, { 'content-type': 'application/x-bittorrent' });
      res.end(swarm.torrentFile);
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/set.torrent`;
      const h = await harness(
        { kind: 'torrent', torrentUrl: url },
        { selectedFiles: [indexOf('readme.txt')] },
      );
      const outcome = await engine().download(h.job);
      assert.equal(requests, 1);
      assert.deepEqual(
        outcome.files.map((f) => f.index),
        [indexOf('readme.txt')],
      );
      await assertAllMatch(outcome, h.job.stagingDir);
      const blocked = await harness({ kind: 'torrent', torrentUrl: url });
      const failure = await rejection(engine({ policy: new OutboundPolicy() }).download(blocked.job));
      assert.equal(failure.failure, 'SOURCE_BLOCKED');
      assert.equal(requests, 1);
    } finally {
      server.close();
    }
  });

  it('deselecting a file during the download: it never lands, the others complete', async () => {
    const e = engine();
    const big = indexOf('video/big.bin');
    const h = await harness({ kind: 'torrent', torrentFile: swarm.torrentFile }, { speedLimit: MiB });
    const p = e.download(h.job);
    const control = await h.control;
    await waitUntil(() => (h.progress.at(-1)?.downloaded ?? 0) > 0);
    await control.selectFiles([{ index: big, download: false }]);
    const outcome = await p;
    const indexes = outcome.files.map((f) => f.index);
    assert.ok(!indexes.includes(big));
    assert.equal(outcome.files.length, swarm.files.length - 1);
    await assertAllMatch(outcome, h.job.stagingDir);
    assert.ok(!(await listFiles(h.job.stagingDir)).includes(`${NAME}/video/big.bin`));
  });

  it('cancel: CANCELED within a second; the torrent and its files are deleted', async () => {
    const e = engine();
    const h = await harness({ kind: 'torrent', torrentFile: swarm.torrentFile }, { speedLimit: 256 * 1024 });
    const p = e.download(h.job);
    await waitUntil(() => (h.progress.at(-1)?.downloaded ?? 0) > 0);
    assert.deepEqual(await e.api.hashes(), [swarm.infoHash]);
    const t0 = Date.now();
    h.controller.abort();
    assert.equal((await rejection(p)).failure, 'CANCELED');
    assert.ok(Date.now() - t0 < 1500, `${Date.now() - t0} ms`);
    await waitUntil(async () => (await e.api.hashes()).length === 0, 5000);
    assert.equal(existsSync(e.storeDir(swarm.infoHash)), false);
  });

  it('two jobs on the same info-hash share one torrent; canceling a third leaves them running', async () => {
    const e = engine();
    const a = await harness(
      { kind: 'torrent', torrentFile: swarm.torrentFile },
      { selectedFiles: [indexOf('readme.txt'), indexOf('video/extra.bin')], speedLimit: MiB },
    );
    const b = await harness(
      { kind: 'torrent', magnet: swarm.magnet },
      { selectedFiles: [indexOf('docs/manual.pdf')] },
    );
    const c = await harness(
      { kind: 'torrent', magnet: swarm.magnet },
      { selectedFiles: [indexOf('z-last.bin')] },
    );
    const pa = e.download(a.job);
    await waitUntil(() => a.progress.length > 0);
    const pb = e.download(b.job);
    const pc = e.download(c.job);
    await waitUntil(() => c.progress.some((p) => p.stage === 'downloading'));
    assert.equal((await e.api.hashes()).length, 1);
    c.controller.abort();
    assert.equal((await rejection(pc)).failure, 'CANCELED');
    const [oa, ob] = await Promise.all([pa, pb]);
    assert.deepEqual(
      oa.files.map((f) => f.index).sort(),
      [indexOf('readme.txt'), indexOf('video/extra.bin')].sort(),
    );
    assert.deepEqual(
      ob.files.map((f) => f.index),
      [indexOf('docs/manual.pdf')],
    );
    await assertAllMatch(oa, a.job.stagingDir);
    await assertAllMatch(ob, b.job.stagingDir);
    assert.deepEqual(await listFiles(c.job.stagingDir), []);
    await waitUntil(async () => (await e.api.hashes()).length === 0, 5000);
  });

  it('seeding: stays in the seeding stage for the configured time, then resolves', async () => {
    const h = await harness(
      { kind: 'torrent', torrentFile: swarm.torrentFile },
      { selectedFiles: [indexOf('readme.txt')], seeding: { ratio: 0, seconds: 2 } },
    );
    const t0 = Date.now();
    const outcome = await engine().download(h.job);
    assert.equal(outcome.files.length, 1);
    assert.ok(h.progress.some((p) => p.stage === 'seeding'));
    assert.ok(Date.now() - t0 >= 2000);
  });

  it('selection over maxBytes → TOO_LARGE', async () => {
    const h = await harness({ kind: 'torrent', torrentFile: swarm.torrentFile }, { maxBytes: MiB });
    assert.equal((await rejection(engine().download(h.job))).failure, 'TOO_LARGE');
  });

  it('daemon unreachable → DAEMON (retryable) after the bound, not a hang', async () => {
    const port = await freeLoopbackPort();
    const e = engine({ url: `http://127.0.0.1:${port}`, daemonTimeoutMs: 1000 });
    const h = await harness({ kind: 'torrent', torrentFile: swarm.torrentFile });
    const t0 = Date.now();
    const failure = await rejection(e.download(h.job));
    assert.equal(failure.failure, 'DAEMON');
    assert.equal(failure.retryable, true);
    assert.match(failure.message, /qBittorrent unreachable/);
    assert.ok(Date.now() - t0 < 6000);
  });

  it('a hostile torrent (.., absolute paths, control characters): sanitized names, nothing escapes', async () => {
    const hostile = await startSwarm({ name: 'Hostile', files: [], hostileTorrent: true });
    try {
      // Files 0-6: `..`, absolute, drive letter, backslashes, control characters, CON, sub/aux.
      // (The rest collide on disk — two `dup.txt`, a file below a file — which qBittorrent cannot
      // store; they are not what this test is about.)
      const selected = [0, 1, 2, 3, 4, 5, 6];
      const e = engine();
      const h = await harness(
        { kind: 'torrent', torrentFile: hostile.torrentFile },
        { selectedFiles: selected },
      );
      const outcome = await e.download(h.job);
      assert.deepEqual(
        outcome.files.map((f) => f.index),
        selected,
      );
      for (const f of outcome.files) {
        assert.ok(resolve(f.stagingPath).startsWith(resolve(h.job.stagingDir) + sep), f.stagingPath);
        const segs = f.name.split('/');
        assert.equal(segs[0], 'Hostile');
        for (const seg of segs) {
          assert.ok(seg !== '..' && seg !== '.' && seg !== '', f.name);
          assert.ok(!/[\u0000-\u001f\\:]/.test(seg), f.name);
        }
        assert.equal(await sha256File(f.stagingPath), hostile.files[f.index ?? -1]?.sha256, f.name);
      }
      assert.ok(outcome.files.some((f) => f.name === 'Hostile/CON_'));
      assert.equal(existsSync(join(root, 'escape-up.txt')), false);
      assert.equal(existsSync(join(tmpdir(), 'escape-up.txt')), false);
      await waitUntil(async () => (await e.api.hashes()).length === 0, 5000);
    } finally {
      await hostile.close();
    }
  });

  it('a wrong password is a DAEMON failure (last: qBittorrent bans after repeated failures)', async () => {
    const e = engine({ password: 'wrong', daemonTimeoutMs: 500 });
    const h = await harness({ kind: 'torrent', torrentFile: swarm.torrentFile });
    const failure = await rejection(e.download(h.job));
    assert.equal(failure.failure, 'DAEMON');
    assert.match(failure.message, /login|refused|banned/i);
  });
});
