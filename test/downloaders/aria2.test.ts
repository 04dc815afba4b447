// The aria2 downloader against a real aria2c daemon the test starts on loopback (RPC on
// 127.0.0.1, outgoing connections bound to 127.0.0.1, DHT / LPD / PEX off), with a loopback HTTP
// origin (test/helpers/origin.ts) and a loopback swarm (test/helpers/swarm.ts).

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, relative, resolve, sep } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  Aria2Downloader,
  aria2Failure,
  startAria2Daemon,
  type Aria2Daemon,
  type Aria2DownloaderOptions,
} from '../../src/downloaders/aria2/aria2.downloader.ts';
import { freeLoopbackPort } from '../../src/downloaders/aria2/aria2.rpc.ts';
import { encode } from '../../src/downloaders/bittorrent/bencode.ts';
import { hexBitfieldToBase64 } from '../../src/downloaders/aria2/remote-torrent.ts';
import {
  DownloadFailure,
  type DownloadControl,
  type DownloadedFile,
  type DownloadJob,
  type DownloadProgress,
  type DownloadSource,
} from '../../src/downloaders/port.ts';
import { OutboundPolicy } from '../../src/net/address-policy.ts';
import { expectedSha256, startOrigin, type Origin } from '../helpers/origin.ts';
import { startSwarm, type Swarm } from '../helpers/swarm.ts';

const LOOPBACK = new OutboundPolicy({ allowNetworks: ['127.0.0.1/32'] });
const MiB = 1024 * 1024;
const SECRET = 'ferry-test-secret';

let root: string;
let daemon: Aria2Daemon;
let origin: Origin;

function engine(extra: Partial<Aria2DownloaderOptions> = {}): Aria2Downloader {
  return new Aria2Downloader({
    rpcUrl: daemon.rpcUrl,
    secret: SECRET,
    policy: LOOPBACK,
    pollIntervalMs: 200,
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
    connections: 4,
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

async function waitUntil(check: () => boolean, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('timed out waiting');
    await sleep(20);
  }
}

/** GIDs aria2 still knows about (active, waiting/paused, stopped). */
async function aria2Gids(e: Aria2Downloader): Promise<string[]> {
  const keys = ['gid'];
  const active = await e.rpc.call<Array<{ gid: string }>>('aria2.tellActive', [keys]);
  const waiting = await e.rpc.call<Array<{ gid: string }>>('aria2.tellWaiting', [0, 1000, keys]);
  const stopped = await e.rpc.call<Array<{ gid: string }>>('aria2.tellStopped', [0, 1000, keys]);
  return [...active, ...waiting, ...stopped].map((s) => s.gid);
}

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'ferry-aria2-test-'));
  daemon = await startAria2Daemon({
    dir: join(root, 'daemon'),
    secret: SECRET,
    extraArgs: ['--interface=127.0.0.1', '--disable-ipv6=true'],
  });
  origin = await startOrigin();
});

after(async () => {
  await origin.close();
  await daemon.stop();
  await rm(root, { recursive: true, force: true });
});

describe('aria2 downloader: HTTP', () => {
  it('canHandle: HTTP(S) URLs and every torrent source', () => {
    const e = engine();
    assert.equal(e.name, 'aria2');
    assert.equal(e.canHandle({ kind: 'http', url: 'https://example.com/a' }), true);
    assert.equal(e.canHandle({ kind: 'http', url: 'ftp://example.com/a' }), false);
    assert.equal(e.canHandle({ kind: 'torrent', magnet: 'magnet:?xt=urn:btih:' + 'a'.repeat(40) }), true);
    assert.equal(e.canHandle({ kind: 'torrent', torrentFile: Buffer.from('d4:infode') }), true);
    assert.equal(e.canHandle({ kind: 'torrent' }), false);
  });

  it('fetches a file byte for byte with several connections, progress and a sanitized name', async () => {
    const size = 6 * MiB + 123;
    const url = origin.route('/files/some%3Aname.bin', { size, seed: 21 });
    const h = await harness({ kind: 'http', url, headers: { 'X-Ferry-Test': 'yes' } });
    const outcome = await engine().download(h.job);
    assert.equal(outcome.files.length, 1);
    const file = outcome.files[0];
    assert.ok(file);
    assert.equal(file.size, size);
    assert.equal(outcome.name, 'some_name.bin'); // `:` is not allowed in a file name
    assert.equal(file.name, 'some_name.bin');
    assert.equal(file.stagingPath, join(h.job.stagingDir, 'some_name.bin'));
    assert.equal(await sha256File(file.stagingPath), expectedSha256(size, 21));
    assert.deepEqual(await listFiles(h.job.stagingDir), ['some_name.bin']); // no .aria2 left over
    const reqs = origin.requests('/files/some%3Aname.bin');
    assert.ok(reqs.length >= 2, `${reqs.length} requests (segmented)`);
    assert.ok(reqs.every((r) => r.headers['x-ferry-test'] === 'yes'));
    const last = h.progress.at(-1);
    assert.equal(last?.total, size);
    assert.equal(last?.downloaded, size);
    assert.deepEqual(
      last?.files.map((f) => [f.index, f.size, f.progress, f.selected]),
      [[0, size, 1, true]],
    );
  });

  it('uses the name the user asked for, sanitized', async () => {
    const url = origin.route('/named.bin', { size: 100_000, seed: 22 });
    const h = await harness({ kind: 'http', url }, { filename: 'my/report?.pdf' });
    const outcome = await engine().download(h.job);
    assert.equal(outcome.files[0]?.name, 'my_report_.pdf');
    assert.equal(await sha256File(outcome.files[0]?.stagingPath ?? ''), expectedSha256(100_000, 22));
  });

  it('verifies a checksum; a mismatch fails with CHECKSUM', async () => {
    const url = origin.route('/sum.bin', { size: 300_000, seed: 23 });
    const good = await harness(
      { kind: 'http', url },
      { checksum: { algorithm: 'sha256', hex: expectedSha256(300_000, 23) } },
    );
    const outcome = await engine().download(good.job);
    assert.equal(outcome.files[0]?.size, 300_000);

    const bad = await harness(
      { kind: 'http', url },
      { checksum: { algorithm: 'sha256', hex: '0'.repeat(64) } },
    );
    const failure = await rejection(engine().download(bad.job));
    assert.equal(failure.failure, 'CHECKSUM');
  });

  it('404 → NOT_FOUND; 500 → HTTP_ERROR', async () => {
    const nf = await harness({ kind: 'http', url: origin.route('/missing', { status: 404 }) });
    assert.equal((await rejection(engine().download(nf.job))).failure, 'NOT_FOUND');
    const err = await harness({ kind: 'http', url: origin.route('/broken', { status: 500 }) });
    const failure = await rejection(engine().download(err.job));
    assert.equal(failure.failure, 'HTTP_ERROR');
    assert.match(failure.message, /500/);
  });

  it('over maxBytes → TOO_LARGE', async () => {
    const url = origin.route('/big.bin', { size: 4 * MiB, throttle: 2 * MiB });
    const h = await harness({ kind: 'http', url }, { maxBytes: MiB });
    assert.equal((await rejection(engine().download(h.job))).failure, 'TOO_LARGE');
    assert.deepEqual(await listFiles(h.job.stagingDir), []);
  });

  it('cancel: CANCELED within a second, the download leaves aria2 and its files the staging folder', async () => {
    const url = origin.route('/slow.bin', { size: 20 * MiB, seed: 24, throttle: MiB });
    const e = engine();
    const h = await harness({ kind: 'http', url });
    const p = e.download(h.job);
    await waitUntil(() => (h.progress.at(-1)?.downloaded ?? 0) > 100_000);
    const before = await aria2Gids(e);
    assert.equal(before.length, 1);
    const t0 = Date.now();
    h.controller.abort();
    assert.equal((await rejection(p)).failure, 'CANCELED');
    assert.ok(Date.now() - t0 < 1000, `${Date.now() - t0} ms`);
    assert.deepEqual(await aria2Gids(e), []);
    assert.deepEqual(await listFiles(h.job.stagingDir), []);
  });

  it('timeoutMs → TIMEOUT', async () => {
    const url = origin.route('/slower.bin', { size: 20 * MiB, throttle: MiB });
    const h = await harness({ kind: 'http', url }, { timeoutMs: 800 });
    assert.equal((await rejection(engine().download(h.job))).failure, 'TIMEOUT');
  });

  it('a refused address (no allowNetworks) → SOURCE_BLOCKED without contacting the origin', async () => {
    const url = origin.route('/private.bin', { size: 1000 });
    const e = engine({ policy: new OutboundPolicy() });
    for (const u of [url, url.replace('127.0.0.1', 'localhost'), url.replace('127.0.0.1', '2130706433')]) {
      const h = await harness({ kind: 'http', url: u });
      const failure = await rejection(e.download(h.job));
      assert.equal(failure.failure, 'SOURCE_BLOCKED', u);
    }
    // A name that resolves to a refused address (resolver injected).
    const named = engine({
      policy: new OutboundPolicy(),
      resolve: async () => [{ address: '127.0.0.1', family: 4 }],
    });
    const h = await harness({ kind: 'http', url: url.replace('127.0.0.1', 'files.example.com') });
    assert.equal((await rejection(named.download(h.job))).failure, 'SOURCE_BLOCKED');
    assert.deepEqual(origin.requests('/private.bin'), []);
    assert.deepEqual(await aria2Gids(e), []);
  });

  it('daemon unreachable → DAEMON (retryable) after the bound, not a hang', async () => {
    const port = await freeLoopbackPort();
    const e = engine({ rpcUrl: `http://127.0.0.1:${port}/jsonrpc`, daemonTimeoutMs: 1500 });
    const h = await harness({ kind: 'http', url: origin.route('/never.bin', { size: 1000 }) });
    const t0 = Date.now();
    const failure = await rejection(e.download(h.job));
    assert.equal(failure.failure, 'DAEMON');
    assert.equal(failure.retryable, true);
    assert.match(failure.message, /aria2 unreachable/);
    assert.ok(Date.now() - t0 < 6000, `${Date.now() - t0} ms`);
  });

  it('a wrong secret is a DAEMON failure with a clear message', async () => {
    const e = engine({ secret: 'wrong', daemonTimeoutMs: 300 });
    const h = await harness({ kind: 'http', url: origin.route('/secret.bin', { size: 1000 }) });
    const failure = await rejection(e.download(h.job));
    assert.equal(failure.failure, 'DAEMON');
    assert.match(failure.message, /Unauthorized/);
  });

  it('maps aria2 error codes and bitfields', () => {
    assert.equal(aria2Failure('3', 'Resource not found').failure, 'NOT_FOUND');
    assert.equal(aria2Failure('1', 'x').failure, 'NETWORK');
    assert.equal(aria2Failure('6', 'x').failure, 'NETWORK');
    assert.equal(aria2Failure('6', 'x').retryable, true);
    assert.equal(aria2Failure('22', 'status=500').failure, 'HTTP_ERROR');
    assert.equal(aria2Failure('32', '').failure, 'CHECKSUM');
    assert.equal(aria2Failure('9', '').failure, 'DISK');
    // 10 pieces: 0xff, 0xc0 — the spare bits of the last byte are cleared.
    assert.equal(hexBitfieldToBase64('ffff', 10), Buffer.from([0xff, 0xc0]).toString('base64'));
    assert.equal(hexBitfieldToBase64('80', 1), Buffer.from([0x80]).toString('base64'));
  });
});

describe('aria2 downloader: BitTorrent on a loopback swarm', () => {
  let swarm: Swarm;
  const NAME = 'Aria Set';

  before(async () => {
    swarm = await startSwarm({
      name: NAME,
      pieceLength: 32 * 1024,
      files: [
        { path: 'readme.txt', size: 1_234 },
        { path: 'video/big.bin', size: 6 * MiB + 77 },
        { path: 'video/extra.bin', size: 2 * MiB + 5 },
        { path: 'docs/manual.pdf', size: 300_001 },
        { path: 'z-last.bin', size: 500_000 },
      ],
    });
  });

  after(async () => {
    await swarm.close();
  });

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

  it('magnet: metadata stage, then every file byte-exact, landed one by one; 0-based indexes', async () => {
    const e = engine();
    const h = await harness({ kind: 'torrent', magnet: swarm.magnet });
    const outcome = await e.download(h.job);
    const first = h.progress[0];
    assert.equal(first?.stage, 'metadata');
    assert.equal(first?.hash, swarm.infoHash);
    assert.equal(first?.total, null);
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
    assert.equal(Buffer.from(last.pieces ?? '', 'base64').length, Math.ceil(numPieces / 8));
    // The download and its store are gone from aria2 and from disk.
    assert.deepEqual(await aria2Gids(e), []);
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
    assert.deepEqual(h.completed.map((c) => c.index).sort(), [...wanted].sort());
    const last = h.progress.at(-1);
    assert.ok(last);
    assert.equal(
      last.total,
      wanted.reduce((s, i) => s + (swarm.files[i]?.size ?? 0), 0),
    );
    for (const f of last.files) assert.equal(f.selected, wanted.includes(f.index));
  });

  it('.torrent URL: fetched by Ferry through the outbound policy, then handed to aria2', async () => {
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
      // Refused without allowNetworks: never fetched.
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
    const extra = indexOf('video/extra.bin');
    const h = await harness({ kind: 'torrent', torrentFile: swarm.torrentFile }, { speedLimit: 2 * MiB });
    const p = e.download(h.job);
    const control = await h.control;
    await waitUntil(() => (h.progress.at(-1)?.downloaded ?? 0) > 0);
    await control.selectFiles([{ index: big, download: false }]);
    const outcome = await p;
    const indexes = outcome.files.map((f) => f.index);
    assert.ok(!indexes.includes(big));
    assert.ok(indexes.includes(extra));
    assert.equal(outcome.files.length, swarm.files.length - 1);
    await assertAllMatch(outcome, h.job.stagingDir);
    assert.ok(!(await listFiles(h.job.stagingDir)).includes(`${NAME}/video/big.bin`));
    assert.equal(h.progress.at(-1)?.files[big]?.selected, false);
  });

  it('cancel: CANCELED within a second; the download leaves aria2, the store is deleted', async () => {
    const e = engine();
    const h = await harness({ kind: 'torrent', torrentFile: swarm.torrentFile }, { speedLimit: 256 * 1024 });
    const p = e.download(h.job);
    await waitUntil(() => (h.progress.at(-1)?.downloaded ?? 0) > 0);
    assert.equal((await aria2Gids(e)).length, 1);
    const t0 = Date.now();
    h.controller.abort();
    assert.equal((await rejection(p)).failure, 'CANCELED');
    assert.ok(Date.now() - t0 < 1500, `${Date.now() - t0} ms`);
    assert.deepEqual(await aria2Gids(e), []);
    assert.equal(existsSync(e.storeDir(swarm.infoHash)), false);
  });

  it('two jobs on the same info-hash share one aria2 download; canceling one leaves the other', async () => {
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
    assert.equal((await aria2Gids(e)).length, 1);
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
    await waitUntil(() => !existsSync(e.storeDir(swarm.infoHash)), 5000);
    assert.deepEqual(await aria2Gids(e), []);
  });

  it('selection over maxBytes → TOO_LARGE', async () => {
    const h = await harness({ kind: 'torrent', torrentFile: swarm.torrentFile }, { maxBytes: MiB });
    assert.equal((await rejection(engine().download(h.job))).failure, 'TOO_LARGE');
  });

  it('a 100 GiB .torrent over maxBytes → TOO_LARGE before aria2 is given it', async () => {
    // Hand-bencoded; its pieces exist nowhere.
    const length = 100 * 1024 ** 3;
    const pieceLength = 16 * MiB;
    const torrent = encode({
      info: {
        name: 'huge.bin',
        length,
        'piece length': pieceLength,
        pieces: Buffer.alloc(Math.ceil(length / pieceLength) * 20, 7),
      },
    });
    const e = engine();
    const methods: string[] = [];
    const call = e.rpc.call.bind(e.rpc);
    // Records what the engine asks the real daemon; the calls still go through.
    e.rpc.call = <T>(method: string, params?: unknown[], signal?: AbortSignal) => {
      methods.push(method);
      return call<T>(method, params, signal);
    };
    const h = await harness({ kind: 'torrent', torrentFile: torrent }, { maxBytes: 20_000_000 });
    assert.equal((await rejection(e.download(h.job))).failure, 'TOO_LARGE');
    assert.ok(!methods.includes('aria2.addTorrent'), methods.join(', '));
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

  it('a magnet nobody answers: NO_PEERS after the configured wait', async () => {
    const magnet = `magnet:?xt=urn:btih:${'ab'.repeat(20)}&dn=nobody&tr=${encodeURIComponent(swarm.trackerUrl)}`;
    const e = engine({ noPeersTimeoutMs: 1500 });
    const h = await harness({ kind: 'torrent', magnet });
    const failure = await rejection(e.download(h.job));
    assert.equal(failure.failure, 'NO_PEERS');
    assert.equal(failure.retryable, true);
    assert.deepEqual(await aria2Gids(e), []);
  });

  it('daemon unreachable → DAEMON (retryable), also when it goes away mid-download', async () => {
    const port = await freeLoopbackPort();
    const dead = engine({ rpcUrl: `http://127.0.0.1:${port}/jsonrpc`, daemonTimeoutMs: 1000 });
    const h = await harness({ kind: 'torrent', torrentFile: swarm.torrentFile });
    const failure = await rejection(dead.download(h.job));
    assert.equal(failure.failure, 'DAEMON');
    assert.equal(failure.retryable, true);

    // A daemon of our own that dies while the torrent downloads.
    const own = await startAria2Daemon({
      dir: join(root, 'daemon2'),
      secret: SECRET,
      extraArgs: ['--interface=127.0.0.1', '--disable-ipv6=true'],
    });
    try {
      const e = engine({ rpcUrl: own.rpcUrl, daemonTimeoutMs: 1000 });
      const h2 = await harness(
        { kind: 'torrent', torrentFile: swarm.torrentFile },
        { speedLimit: 256 * 1024 },
      );
      const p = e.download(h2.job);
      await waitUntil(() => (h2.progress.at(-1)?.downloaded ?? 0) > 0);
      own.process.kill('SIGKILL');
      const t0 = Date.now();
      const f2 = await rejection(p);
      assert.equal(f2.failure, 'DAEMON');
      assert.equal(f2.retryable, true);
      assert.ok(Date.now() - t0 < 5000);
    } finally {
      await own.stop();
    }
  });

  it('a hostile torrent (.., absolute paths, control characters) is refused by aria2; nothing escapes', async () => {
    const hostile = await startSwarm({ name: 'Hostile', files: [], hostileTorrent: true });
    try {
      const e = engine();
      const h = await harness({ kind: 'torrent', torrentFile: hostile.torrentFile });
      const outcome = await e.download(h.job).then(
        (o) => o,
        (err: unknown) => err,
      );
      if (outcome instanceof DownloadFailure) {
        assert.notEqual(outcome.failure, 'CANCELED');
      } else {
        // Should aria2 ever accept it: every file stays inside the staging folder.
        for (const f of (outcome as { files: DownloadedFile[] }).files) {
          assert.ok(resolve(f.stagingPath).startsWith(resolve(h.job.stagingDir) + sep));
        }
      }
      assert.equal(existsSync(join(root, 'escape-up.txt')), false);
      assert.equal(existsSync(join(tmpdir(), 'escape-up.txt')), false);
      assert.deepEqual(await aria2Gids(e), []);
    } finally {
      await hostile.close();
    }
  });
});
