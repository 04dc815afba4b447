// The built-in BitTorrent engine against a real loopback swarm (mktorrent + opentracker +
// aria2c, see test/helpers/swarm.ts). DHT, PEX and LSD are off; only 127.0.0.1 is contacted.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, relative, resolve, sep } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  BitTorrentDownloader,
  type BitTorrentDownloaderOptions,
} from '../../src/downloaders/bittorrent/bittorrent.downloader.ts';
import {
  DownloadFailure,
  type DownloadControl,
  type DownloadedFile,
  type DownloadJob,
  type DownloadProgress,
  type TorrentSource,
} from '../../src/downloaders/port.ts';
import { OutboundPolicy } from '../../src/net/address-policy.ts';
import { BRaw, decode, decodeWithSpans, encode } from '../../src/downloaders/bittorrent/bencode.ts';
import {
  parseMagnet,
  parseTorrentFile,
  rebuildTorrentFile,
} from '../../src/downloaders/bittorrent/metainfo.ts';
import { sanitizeTorrentPaths } from '../../src/downloaders/bittorrent/paths.ts';
import { allowedTrackers } from '../../src/downloaders/bittorrent/torrent-source.ts';
import { HOSTILE_PATHS, startSwarm, type Swarm } from '../helpers/swarm.ts';

const LOOPBACK = new OutboundPolicy({ allowNetworks: ['127.0.0.1/32'] });
const MiB = 1024 * 1024;

let root: string;
let swarm: Swarm;

function engine(extra: Partial<BitTorrentDownloaderOptions> = {}): BitTorrentDownloader {
  return new BitTorrentDownloader({
    policy: LOOPBACK,
    dataDir: join(root, `data-${Math.random().toString(36).slice(2)}`),
    trackers: true,
    dht: false,
    pex: false,
    lsd: false,
    listenPort: 0,
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

async function harness(source: TorrentSource, extra: Partial<DownloadJob> = {}): Promise<Harness> {
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
    // What the engine relies on: the file is complete and readable when this is called.
    onFileComplete: async (file) => {
      completed.push({ ...file, sha256: await sha256File(file.stagingPath) });
    },
    attachControl: (c) => attach(c),
    ...extra,
  };
  return { job, progress, completed, controller, control };
}

async function listFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (e.isFile()) out.push(relative(dir, join(e.parentPath, e.name)).split(sep).join('/'));
  }
  return out.sort();
}

function indexOf(path: string): number {
  const i = swarm.files.findIndex((f) => f.path === path);
  assert.ok(i >= 0, path);
  return i;
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

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'ferry-bt-test-'));
  swarm = await startSwarm({
    name: 'Ferry Test Set',
    pieceLength: 32 * 1024,
    files: [
      { path: 'readme.txt', size: 1_234 },
      { path: 'video/big.bin', size: 6 * MiB + 77 },
      { path: 'video/extra.bin', size: 2 * MiB + 5 },
      { path: 'docs/manual.pdf', size: 300_001 },
      { path: 'docs/empty.txt', size: 0 },
      { path: 'z-last.bin', size: 500_000 },
    ],
  });
});

after(async () => {
  await swarm.close();
  await rm(root, { recursive: true, force: true });
});

describe('BitTorrent engine (webtorrent) on a loopback swarm', () => {
  it('magnet: metadata stage first, then every file byte-exact, landed one by one', async () => {
    const bt = engine();
    const h = await harness({ kind: 'torrent', magnet: swarm.magnet });
    const t0 = Date.now();
    const outcome = await bt.download(h.job);

    const first = h.progress[0];
    assert.equal(first?.stage, 'metadata');
    assert.equal(first?.name, 'Ferry Test Set'); // the magnet's dn
    assert.equal(first?.hash, swarm.infoHash);
    assert.deepEqual(first?.files, []);
    assert.equal(first?.total, null);
    assert.ok(h.progress.some((p) => p.stage === 'downloading'));

    assert.equal(outcome.name, 'Ferry Test Set');
    assert.equal(outcome.files.length, swarm.files.length);
    for (const f of outcome.files) {
      const expected = swarm.files[f.index ?? -1];
      assert.ok(expected);
      assert.equal(f.name, `Ferry Test Set/${expected.path}`);
      assert.equal(f.size, expected.size);
      assert.equal(await sha256File(f.stagingPath), expected.sha256, f.name);
      assert.ok(resolve(f.stagingPath).startsWith(resolve(h.job.stagingDir) + sep));
    }
    // onFileComplete: once per file, each readable and complete at the time of the call.
    assert.deepEqual(h.completed.map((c) => c.index).sort(), swarm.files.map((_, i) => i).sort());
    for (const c of h.completed) assert.equal(c.sha256, swarm.files[c.index]?.sha256);

    const last = h.progress.at(-1);
    assert.ok(last);
    const total = swarm.files.reduce((s, f) => s + f.size, 0);
    assert.equal(last.total, total);
    assert.equal(last.downloaded, total);
    assert.ok(last.numPieces !== undefined && last.numPieces === Math.ceil(total / (32 * 1024)));
    const bits = Buffer.from(last.pieces ?? '', 'base64');
    assert.equal(bits.length, Math.ceil(last.numPieces / 8));
    for (let i = 0; i < last.numPieces; i++) assert.ok((bits[i >> 3] ?? 0) & (0x80 >> (i & 7)), `piece ${i}`);
    assert.deepEqual(
      last.files.map((f) => [f.index, f.name, f.size, f.progress, f.selected]),
      swarm.files.map((f, i) => [i, `Ferry Test Set/${f.path}`, f.size, 1, true]),
    );
    // Never more than ~4 progress reports a second (a few forced ones at stage changes).
    assert.ok(h.progress.length >= 2);
    assert.ok(h.progress.length <= ((Date.now() - t0) / 1000) * 4 + 6, `${h.progress.length} reports`);
    await waitUntil(() => bt.activeTorrents === 0, 5000);
  });

  it('.torrent URL: fetched from 127.0.0.1 through the outbound policy', async () => {
    let requests = 0;
    const server = createServer((req, res) => {
      requests++;
      res.writeHead(200, { 'content-type': 'application/x-bittorrent' });
      res.end(swarm.torrentFile);
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/set.torrent`;
      const bt = engine();
      const h = await harness({ kind: 'torrent', torrentUrl: url });
      const outcome = await bt.download(h.job);
      assert.equal(requests, 1);
      assert.equal(outcome.files.length, swarm.files.length);
      for (const f of outcome.files)
        assert.equal(await sha256File(f.stagingPath), swarm.files[f.index ?? -1]?.sha256);
    } finally {
      server.close();
    }
  });

  it('.torrent bytes with files deselected at start: those never arrive, the rest match byte for byte', async () => {
    const bt = engine();
    const wantedPaths = ['readme.txt', 'docs/manual.pdf', 'docs/empty.txt'];
    const wanted = wantedPaths.map(indexOf);
    const h = await harness({ kind: 'torrent', torrentFile: swarm.torrentFile }, { selectedFiles: wanted });
    const outcome = await bt.download(h.job);

    assert.deepEqual(outcome.files.map((f) => f.index).sort(), [...wanted].sort());
    for (const f of outcome.files)
      assert.equal(await sha256File(f.stagingPath), swarm.files[f.index ?? -1]?.sha256);
    assert.deepEqual(
      (await listFiles(h.job.stagingDir)).sort(),
      wantedPaths.map((p) => `Ferry Test Set/${p}`).sort(),
    );
    assert.deepEqual(h.completed.map((c) => c.index).sort(), [...wanted].sort());
    const last = h.progress.at(-1);
    assert.ok(last);
    assert.equal(
      last.total,
      wanted.reduce((s, i) => s + (swarm.files[i]?.size ?? 0), 0),
    );
    // Unwanted files: at most the boundary pieces they share with wanted ones.
    for (const f of last.files) {
      assert.equal(f.selected, wanted.includes(f.index));
      if (!f.selected)
        assert.ok(f.progress * f.size <= 2 * 32 * 1024, `${f.name} got ${f.progress * f.size} bytes`);
    }
  });

  it('deselecting a file during the download stops it; the others still complete', async () => {
    // 1 MiB/s so the 6 MiB file is still in flight when the user changes their mind.
    const bt = engine({ downloadLimit: MiB });
    const big = indexOf('video/big.bin');
    const h = await harness({ kind: 'torrent', torrentFile: swarm.torrentFile });
    const outcome = bt.download(h.job);
    const control = await h.control;
    await waitUntil(() => (h.progress.at(-1)?.files[big]?.progress ?? 0) > 0);
    await control.selectFiles([{ index: big, download: false }]);
    const result = await outcome;

    const got = result.files.map((f) => f.index).sort();
    assert.deepEqual(
      got,
      swarm.files.map((_, i) => i).filter((i) => i !== big),
    );
    for (const f of result.files)
      assert.equal(await sha256File(f.stagingPath), swarm.files[f.index ?? -1]?.sha256);
    assert.ok(!h.completed.some((c) => c.index === big));
    const last = h.progress.at(-1);
    assert.equal(last?.files[big]?.selected, false);
    assert.ok((last?.files[big]?.progress ?? 1) < 1);
    assert.ok(!existsSync(join(h.job.stagingDir, 'Ferry Test Set', 'video', 'big.bin')));
  });

  it('cancel: rejects with CANCELED within a second, the torrent and its store go away', async () => {
    const dataDir = join(root, 'cancel-data');
    const bt = engine({ downloadLimit: 512 * 1024, dataDir });
    const h = await harness({ kind: 'torrent', magnet: swarm.magnet });
    const outcome = bt.download(h.job);
    await waitUntil(() => (h.progress.at(-1)?.downloaded ?? 0) > 64 * 1024);
    assert.equal(bt.activeTorrents, 1);
    const t0 = Date.now();
    h.controller.abort();
    const failure = await rejection(outcome);
    assert.equal(failure.failure, 'CANCELED');
    assert.ok(Date.now() - t0 < 1000, `took ${Date.now() - t0} ms`);
    assert.equal(bt.activeTorrents, 0);
    await bt.close();
    assert.ok(!existsSync(join(dataDir, 'torrents', swarm.infoHash)), 'store folder removed');
    const reports = h.progress.length;
    await sleep(600);
    assert.equal(h.progress.length, reports, 'no progress after cancel');
  });

  it('two jobs on the same info-hash share one torrent; each gets its own files', async () => {
    const bt = engine({ downloadLimit: 4 * MiB });
    const a = await harness(
      { kind: 'torrent', magnet: swarm.magnet },
      { selectedFiles: [indexOf('readme.txt'), indexOf('video/extra.bin')] },
    );
    const b = await harness(
      { kind: 'torrent', torrentFile: swarm.torrentFile },
      { selectedFiles: [indexOf('video/extra.bin'), indexOf('z-last.bin')] },
    );
    const pa = bt.download(a.job);
    const pb = bt.download(b.job);
    await waitUntil(() => a.progress.length > 0 && b.progress.length > 0);
    assert.equal(bt.activeTorrents, 1);
    const [ra, rb] = await Promise.all([pa, pb]);
    assert.deepEqual(
      ra.files.map((f) => f.index).sort(),
      [indexOf('readme.txt'), indexOf('video/extra.bin')].sort(),
    );
    assert.deepEqual(
      rb.files.map((f) => f.index).sort(),
      [indexOf('video/extra.bin'), indexOf('z-last.bin')].sort(),
    );
    for (const f of [...ra.files, ...rb.files]) {
      assert.equal(await sha256File(f.stagingPath), swarm.files[f.index ?? -1]?.sha256);
    }
    // Each job's progress is over its own selection.
    assert.equal(
      a.progress.at(-1)?.total,
      swarm.files[indexOf('readme.txt')]!.size + swarm.files[indexOf('video/extra.bin')]!.size,
    );
    assert.equal(
      b.progress.at(-1)?.total,
      swarm.files[indexOf('video/extra.bin')]!.size + swarm.files[indexOf('z-last.bin')]!.size,
    );
    assert.ok(ra.files.every((f) => f.stagingPath.startsWith(a.job.stagingDir)));
    assert.ok(rb.files.every((f) => f.stagingPath.startsWith(b.job.stagingDir)));
    await waitUntil(() => bt.activeTorrents === 0, 5000);
  });

  it('canceling one of two jobs on a shared torrent leaves the other running to completion', async () => {
    const bt = engine({ downloadLimit: 2 * MiB });
    const a = await harness({ kind: 'torrent', magnet: swarm.magnet });
    const b = await harness(
      { kind: 'torrent', magnet: swarm.magnet },
      { selectedFiles: [indexOf('z-last.bin'), indexOf('readme.txt')] },
    );
    const pa = bt.download(a.job);
    const pb = bt.download(b.job);
    await waitUntil(() => (a.progress.at(-1)?.downloaded ?? 0) > 0);
    a.controller.abort();
    assert.equal((await rejection(pa)).failure, 'CANCELED');
    assert.equal(bt.activeTorrents, 1, 'the torrent stays for the other job');
    const rb = await pb;
    assert.deepEqual(
      rb.files.map((f) => f.index).sort(),
      [indexOf('z-last.bin'), indexOf('readme.txt')].sort(),
    );
    for (const f of rb.files)
      assert.equal(await sha256File(f.stagingPath), swarm.files[f.index ?? -1]?.sha256);
    await waitUntil(() => bt.activeTorrents === 0, 5000);
  });

  it('selection over maxBytes: TOO_LARGE before any data is fetched', async () => {
    const bt = engine();
    const h = await harness({ kind: 'torrent', torrentFile: swarm.torrentFile }, { maxBytes: 1 * MiB });
    const failure = await rejection(bt.download(h.job));
    assert.equal(failure.failure, 'TOO_LARGE');
    assert.deepEqual(await listFiles(h.job.stagingDir), []);
    assert.equal(h.progress.at(-1)?.downloaded ?? 0, 0);
  });

  it('seeding: stays in the seeding stage for the configured time, then resolves', async () => {
    const bt = engine();
    const small = indexOf('readme.txt');
    const h = await harness(
      { kind: 'torrent', torrentFile: swarm.torrentFile },
      { selectedFiles: [small], seeding: { ratio: 100, seconds: 1.2 } },
    );
    const t0 = Date.now();
    const outcome = await bt.download(h.job);
    assert.equal(outcome.files.length, 1);
    assert.ok(h.progress.some((p) => p.stage === 'seeding'));
    const seedingAt = h.progress.find((p) => p.stage === 'seeding');
    assert.ok(seedingAt);
    assert.ok(Date.now() - t0 >= 1200);
  });

  it('a magnet nobody answers: NO_PEERS after the configured wait', async () => {
    const bt = engine({ noPeersTimeoutMs: 1500 });
    const h = await harness({ kind: 'torrent', magnet: `magnet:?xt=urn:btih:${'ab'.repeat(20)}&dn=ghost` });
    const failure = await rejection(bt.download(h.job));
    assert.equal(failure.failure, 'NO_PEERS');
    assert.equal(h.progress[0]?.name, 'ghost');
    assert.equal(h.progress[0]?.stage, 'metadata');
  });

  it('a .torrent URL on a refused address: SOURCE_BLOCKED without connecting', async () => {
    let connections = 0;
    const server: Server = createServer((_req, res) => res.end('x'));
    server.on('connection', () => connections++);
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    try {
      const port = (server.address() as AddressInfo).port;
      const bt = engine({ policy: new OutboundPolicy() });
      for (const url of [`http://127.0.0.1:${port}/x.torrent`, `http://localhost:${port}/x.torrent`]) {
        const h = await harness({ kind: 'torrent', torrentUrl: url });
        const failure = await rejection(bt.download(h.job));
        assert.equal(failure.failure, 'SOURCE_BLOCKED', url);
      }
      assert.equal(connections, 0);
      assert.equal(bt.activeTorrents, 0);
    } finally {
      server.close();
    }
  });
});

describe('BitTorrent engine: a torrent with hostile file paths', () => {
  let hostile: Swarm;
  before(async () => {
    hostile = await startSwarm({
      name: '../Hostile',
      files: [],
      hostileTorrent: true,
      pieceLength: 16 * 1024,
    });
  });
  after(async () => {
    await hostile.close();
  });

  it('writes nothing outside the staging folder and the engine store; names come out sanitized', async () => {
    const sandbox = await mkdtemp(join(root, 'sandbox-'));
    const dataDir = join(sandbox, 'data');
    const stagingDir = join(sandbox, 'deep', 'staging');
    const bt = engine({ dataDir });
    const h = await harness({ kind: 'torrent', torrentFile: hostile.torrentFile }, { stagingDir });
    const seenInStore: string[] = [];
    const storeDir = join(dataDir, 'torrents', hostile.infoHash);
    h.job.onFileComplete = async (file) => {
      seenInStore.push(...(await listFiles(storeDir)));
      h.completed.push({ ...file, sha256: await sha256File(file.stagingPath) });
    };
    const outcome = await bt.download(h.job);
    await bt.close();

    assert.equal(outcome.files.length, HOSTILE_PATHS.length);
    for (const f of outcome.files) {
      assert.equal(await sha256File(f.stagingPath), hostile.files[f.index ?? -1]?.sha256, f.name);
      assert.ok(resolve(f.stagingPath).startsWith(resolve(stagingDir) + sep), f.stagingPath);
      for (const seg of f.name.split('/')) {
        assert.ok(seg !== '' && seg !== '.' && seg !== '..', f.name);
        assert.ok(!/[\u0000-\u001f\\]/.test(seg), JSON.stringify(f.name));
        assert.ok(Buffer.byteLength(seg) <= 255, f.name);
      }
    }
    const names = outcome.files.map((f) => f.name);
    assert.equal(new Set(names.map((n) => n.toLowerCase())).size, names.length, 'no two files share a name');
    // Everything written lives in the staging folder or the engine's store; nothing else.
    const everything = await listFiles(sandbox);
    for (const p of everything) assert.ok(p.startsWith('deep/staging/') || p.startsWith('data/torrents/'), p);
    assert.deepEqual((await listFiles(stagingDir)).sort(), [...names].sort());
    for (const p of seenInStore) assert.ok(!p.includes('..'), p);
    assert.ok(!existsSync(join(root, 'escape-up.txt')) && !existsSync(join(sandbox, 'escape-up.txt')));
    assert.ok(!existsSync(join(sandbox, 'deep', 'escape-up.txt')));
    assert.ok(!existsSync(join(tmpdir(), 'escape-up.txt')));
    assert.ok(!existsSync('/etc/absolute.txt'));
    const st = await stat(stagingDir);
    assert.ok(st.isDirectory());
    // The names a user sees, for the record.
    console.log(`hostile torrent names:\n  ${names.map((n) => JSON.stringify(n)).join('\n  ')}`);
  });
});

describe('BitTorrent engine: pure parts', () => {
  it('sanitizes torrent paths segment by segment and de-duplicates', () => {
    const names = sanitizeTorrentPaths(
      'Set',
      [
        ['..', '..', 'x.txt'],
        ['/abs', 'y'],
        ['a\\b\\c.txt'],
        ['CON'],
        ['d.txt'],
        ['D.TXT'],
        ['d.txt'],
        ['.', ''],
        ['d.txt', 'e'],
      ],
      true,
    );
    assert.deepEqual(names, [
      'Set/x.txt',
      'Set/abs/y',
      'Set/a/b/c.txt',
      'Set/CON_',
      'Set/d.txt',
      'Set/D (1).TXT',
      'Set/d (2).txt',
      'Set/file 8',
      'Set/d (3).txt/e',
    ]);
    assert.deepEqual(sanitizeTorrentPaths('../../etc/passwd', [['ignored']], false), ['_.._etc_passwd']); // one harmless segment
  });

  it('reads magnets (hex and base32 info-hashes) and refuses non-BitTorrent ones', () => {
    const hex = 'c12fe1c06bba254a9dc9f519b335aa7c1367a88a';
    const m = parseMagnet(
      `magnet:?xt=urn:btih:${hex.toUpperCase()}&dn=Some%20Name&tr=udp%3A%2F%2Ft%3A1&x.pe=1.2.3.4:5`,
    );
    assert.deepEqual(m, { infoHash: hex, name: 'Some Name', trackers: ['udp://t:1'], peers: ['1.2.3.4:5'] });
    assert.equal(parseMagnet('magnet:?xt=urn:btih:YEX6DQDLXISUVHOJ6UM3GNNKPQJWPKEK').infoHash, hex);
    assert.throws(() => parseMagnet('magnet:?xt=urn:sha1:abc'), DownloadFailure);
    assert.throws(() => parseMagnet('https://example.invalid/'), DownloadFailure);
  });

  it('bencode round-trips and keeps the original info bytes when rewriting trackers', () => {
    const value = { b: [1, -2, Buffer.from('x')], a: 'text', n: 0 };
    assert.deepEqual(encode(value).toString(), 'd1:a4:text1:bli1ei-2e1:xe1:ni0ee');
    assert.throws(() => decode(Buffer.from('i01e')));
    assert.throws(() => decode(Buffer.from('d1:a')));
    // A non-canonical info dictionary (keys out of order) keeps its hash.
    const info = Buffer.from('d6:lengthi3e4:name1:x12:piece lengthi16384e6:pieces20:aaaaaaaaaaaaaaaaaaaae');
    const raw = Buffer.concat([Buffer.from('d8:url-list11:http://x/y/4:info'), info, Buffer.from('e')]);
    const parsed = parseTorrentFile(raw);
    assert.equal(parsed.infoHash, createHash('sha1').update(info).digest('hex'));
    const rebuilt = rebuildTorrentFile(parsed.infoBytes, ['http://127.0.0.1:1/announce']);
    const span = decodeWithSpans(rebuilt).infoSpan;
    assert.ok(span);
    assert.deepEqual(rebuilt.subarray(span[0], span[1]), info);
    assert.ok(!rebuilt.includes('url-list'), 'web seeds dropped');
    assert.equal(encode(new BRaw(info)).length, info.length);
  });

  it('keeps only tracker hosts the outbound policy allows', async () => {
    const resolve = async (host: string) =>
      host === 'tracker.example'
        ? [{ address: '93.184.216.34', family: 4 as const }]
        : [{ address: '10.0.0.1', family: 4 as const }];
    const kept = await allowedTrackers(
      [
        'http://127.0.0.1:1/announce',
        'udp://tracker.example:80',
        'http://internal.example/announce',
        'http://localhost:1/announce',
        'wss://tracker.example',
        'file:///etc/passwd',
      ],
      new OutboundPolicy(),
      resolve,
    );
    assert.deepEqual(kept, ['udp://tracker.example:80']);
    assert.deepEqual(await allowedTrackers(['http://127.0.0.1:1/announce'], LOOPBACK, resolve), [
      'http://127.0.0.1:1/announce',
    ]);
  });
});
