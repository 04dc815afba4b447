// End-to-end tests of the segmented HTTP engine against the scriptable origin on 127.0.0.1.
// Every socket stays on loopback; refused addresses are refused before any connection.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { HttpDownloader, type HttpDownloaderOptions } from '../../src/downloaders/http/http.downloader.ts';
import {
  DownloadFailure,
  type DownloadJob,
  type DownloadOutcome,
  type DownloadProgress,
} from '../../src/downloaders/port.ts';
import { OutboundPolicy } from '../../src/net/address-policy.ts';
import { expectedDigest, expectedSha256, startOrigin, type Origin } from '../helpers/origin.ts';

const MiB = 1024 * 1024;
const LOOPBACK = new OutboundPolicy({ allowNetworks: ['127.0.0.1/32'] });

let origin: Origin;
let root: string;

before(async () => {
  origin = await startOrigin();
  root = await mkdtemp(join(tmpdir(), 'ferry-engine-test-'));
});
after(async () => {
  await origin.close();
  await rm(root, { recursive: true, force: true });
});

function engine(options: Partial<HttpDownloaderOptions> = {}): HttpDownloader {
  return new HttpDownloader({
    policy: LOOPBACK,
    stallTimeoutMs: 2000,
    retry: { baseDelayMs: 20, maxDelayMs: 200, attempts: 5 },
    ...options,
  });
}

interface Harness {
  job: DownloadJob;
  controller: AbortController;
  progress: DownloadProgress[];
  checkpoints: unknown[];
}

let dirSeq = 0;
async function makeJob(url: string, overrides: Partial<DownloadJob> = {}): Promise<Harness> {
  const stagingDir = join(root, `job-${++dirSeq}`);
  const { mkdir } = await import('node:fs/promises');
  await mkdir(stagingDir);
  const controller = new AbortController();
  const progress: DownloadProgress[] = [];
  const checkpoints: unknown[] = [];
  const job: DownloadJob = {
    source: { kind: 'http', url },
    stagingDir,
    connections: 4,
    speedLimit: 0,
    timeoutMs: 0,
    maxBytes: 0,
    signal: controller.signal,
    onProgress: (p) => progress.push(p),
    checkpoint: async (s) => {
      checkpoints.push(structuredClone(s));
    },
    ...overrides,
  };
  return { job, controller, progress, checkpoints };
}

async function sha256File(path: string): Promise<string> {
  return createHash('sha256')
    .update(await readFile(path))
    .digest('hex');
}

async function expectFailure(
  p: Promise<DownloadOutcome>,
  code: DownloadFailure['failure'],
): Promise<DownloadFailure> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof DownloadFailure, `expected DownloadFailure, got ${String(err)}`);
    assert.equal(err.failure, code, err.message);
    return err;
  }
  assert.fail(`expected ${code}, but the download succeeded`);
}

describe('byte-exact downloads', () => {
  test('one connection', async () => {
    const url = origin.route('/one.bin', { size: 8 * MiB, seed: 11 });
    const h = await makeJob(url, { connections: 1 });
    const out = await engine().download(h.job);
    assert.equal(out.name, 'one.bin');
    assert.equal(out.files.length, 1);
    assert.equal(out.files[0]?.size, 8 * MiB);
    assert.equal(await sha256File(out.files[0]?.stagingPath ?? ''), expectedSha256(8 * MiB, 11));
    assert.equal(origin.bytesServed('/one.bin'), 8 * MiB);
  });

  test('sixteen connections', async () => {
    const size = 48 * MiB + 12345; // not a multiple of anything
    // 6 MiB/s per connection: each ~3 MiB segment lasts about half a second, long enough for all
    // sixteen connections to be open at once even on a loaded CI machine (at 24 MiB/s the first
    // segments sometimes finished before the last connections had opened).
    const url = origin.route('/sixteen.bin', { size, seed: 12, throttle: 6 * MiB });
    const h = await makeJob(url, { connections: 16 });
    const out = await engine().download(h.job);
    assert.equal(await sha256File(out.files[0]?.stagingPath ?? ''), expectedSha256(size, 12));
    const ranged = origin.requests('/sixteen.bin').filter((r) => r.status === 206);
    assert.ok(ranged.length >= 16, `expected ≥ 16 range requests, got ${ranged.length}`);
    assert.ok(
      origin.maxConcurrent('/sixteen.bin') >= 8,
      `concurrency ${origin.maxConcurrent('/sixteen.bin')}`,
    );
    assert.ok(origin.bytesServed('/sixteen.bin') < size * 1.2);
    // the staging folder holds the finished file only
    assert.deepEqual(await readdir(h.job.stagingDir), ['sixteen.bin']);
    const last = h.progress.at(-1);
    assert.equal(last?.downloaded, size);
    assert.equal(last?.total, size);
    assert.equal(last?.files[0]?.progress, 1);
  });

  test('falls back to one stream when ranges are refused', async () => {
    const url = origin.route('/noranges.bin', { size: 6 * MiB, seed: 13, ranges: false });
    const h = await makeJob(url, { connections: 8 });
    const out = await engine().download(h.job);
    assert.equal(await sha256File(out.files[0]?.stagingPath ?? ''), expectedSha256(6 * MiB, 13));
    assert.equal(origin.requests('/noranges.bin').length, 1);
  });

  test('falls back to one stream without Content-Length', async () => {
    const url = origin.route('/chunked.bin', { size: 5 * MiB + 7, seed: 14, chunked: true });
    const h = await makeJob(url, { connections: 8 });
    const out = await engine().download(h.job);
    assert.equal(out.files[0]?.size, 5 * MiB + 7);
    assert.equal(await sha256File(out.files[0]?.stagingPath ?? ''), expectedSha256(5 * MiB + 7, 14));
    assert.equal(h.progress[0]?.total ?? null, null);
  });

  test('an empty file', async () => {
    const url = origin.route('/empty.bin', { size: 0 });
    const h = await makeJob(url);
    const out = await engine().download(h.job);
    assert.equal(out.files[0]?.size, 0);
    assert.equal((await readFile(out.files[0]?.stagingPath ?? '')).length, 0);
  });

  test('gzip: decoded when the origin compresses anyway, kept for .gz files', async () => {
    const url = origin.route('/text.dat', { size: 3 * MiB, seed: 15, gzip: true });
    const h = await makeJob(url);
    const out = await engine().download(h.job);
    assert.equal(await sha256File(out.files[0]?.stagingPath ?? ''), expectedSha256(3 * MiB, 15));
    assert.equal(origin.requests('/text.dat')[0]?.headers['accept-encoding'], 'identity');

    const url2 = origin.route('/archive.tar.gz', { size: 1 * MiB, seed: 15, gzip: true });
    const h2 = await makeJob(url2);
    const out2 = await engine().download(h2.job);
    const bytes = await readFile(out2.files[0]?.stagingPath ?? '');
    assert.equal(bytes[0], 0x1f);
    assert.equal(bytes[1], 0x8b);
  });

  test('sends the user headers', async () => {
    const url = origin.route('/headers.bin', { size: 64 * 1024 });
    const h = await makeJob(url, {
      source: { kind: 'http', url, headers: { Cookie: 'a=1', Referer: 'https://example.com/' } },
    });
    await engine({ userAgent: 'FerryTest/1' }).download(h.job);
    const req = origin.requests('/headers.bin')[0];
    assert.equal(req?.headers.cookie, 'a=1');
    assert.equal(req?.headers.referer, 'https://example.com/');
    assert.equal(req?.headers['user-agent'], 'FerryTest/1');
  });
});

describe('resume', () => {
  test('after an abort, only missing ranges are fetched', async () => {
    const size = 16 * MiB;
    const url = origin.route('/resume.bin', { size, seed: 21, throttle: 4 * MiB });
    const first = await makeJob(url, {
      connections: 4,
      onProgress: (p) => {
        if (p.downloaded > size * 0.4) first.controller.abort();
      },
    });
    await expectFailure(engine({ checkpointIntervalMs: 200 }).download(first.job), 'CANCELED');
    const state = first.checkpoints.at(-1) as { done: [number, number][] };
    const doneBytes = state.done.reduce((n, [s, e]) => n + e - s, 0);
    assert.ok(doneBytes > size * 0.3, `checkpoint saved ${doneBytes} bytes`);

    const second = await makeJob(url, { connections: 4, resume: state });
    second.job.stagingDir = first.job.stagingDir;
    const out = await engine().download(second.job);
    assert.equal(await sha256File(out.files[0]?.stagingPath ?? ''), expectedSha256(size, 21));
    const served = origin.bytesServed('/resume.bin');
    assert.ok(served < size * 1.2, `origin served ${(served / size).toFixed(2)}× the size`);
    // the resumed run used If-Range
    const resumed = origin.requests('/resume.bin').filter((r) => r.headers['if-range'] !== undefined);
    assert.ok(resumed.length > 0);
  });

  test('a changed remote file (new ETag) starts over with the new content', async () => {
    const size = 8 * MiB;
    const url = origin.route('/changes.bin', { size, seed: 22, throttle: 4 * MiB });
    const first = await makeJob(url, {
      connections: 2,
      onProgress: (p) => {
        if (p.downloaded > size * 0.3) first.controller.abort();
      },
    });
    await expectFailure(engine({ checkpointIntervalMs: 200 }).download(first.job), 'CANCELED');
    origin.route('/changes.bin', { size, seed: 23 }); // new content, new ETag
    const second = await makeJob(url, { connections: 2, resume: first.checkpoints.at(-1) });
    second.job.stagingDir = first.job.stagingDir;
    const out = await engine().download(second.job);
    assert.equal(await sha256File(out.files[0]?.stagingPath ?? ''), expectedSha256(size, 23));
  });

  test('an ETag that changes mid-download restarts cleanly', async () => {
    const size = 8 * MiB;
    const url = origin.route('/midchange.bin', { size, seed: 24, changeAfterRequests: 3 });
    const h = await makeJob(url, { connections: 8 });
    const out = await engine().download(h.job);
    // after the change the origin serves seed 25; the file must be entirely the new version
    assert.equal(await sha256File(out.files[0]?.stagingPath ?? ''), expectedSha256(size, 25));
  });
});

describe('failures and recovery', () => {
  test('404 → NOT_FOUND, 410 → NOT_FOUND, 403 → HTTP_ERROR with the status', async () => {
    for (const [path, status, code] of [
      ['/missing', 404, 'NOT_FOUND'],
      ['/gone', 410, 'NOT_FOUND'],
      ['/forbidden', 403, 'HTTP_ERROR'],
    ] as const) {
      const url = origin.route(path, { status });
      const h = await makeJob(url);
      const f = await expectFailure(engine().download(h.job), code);
      if (code === 'HTTP_ERROR') assert.match(f.message, /403/);
      assert.equal(origin.requests(path).length, 1, 'no retries for permanent errors');
    }
  });

  test('a persistent 500 fails with HTTP_ERROR after bounded retries', async () => {
    const url = origin.route('/broken', { status: 500 });
    const h = await makeJob(url);
    const f = await expectFailure(engine().download(h.job), 'HTTP_ERROR');
    assert.match(f.message, /500/);
    assert.equal(origin.requests('/broken').length, 5);
  });

  test('a stalled connection is dropped and its range retried', async () => {
    const size = 4 * MiB;
    const url = origin.route('/stall.bin', { size, seed: 31, stall: { count: 2, afterBytes: 300_000 } });
    const h = await makeJob(url, { connections: 4 });
    const out = await engine({ stallTimeoutMs: 400 }).download(h.job);
    assert.equal(await sha256File(out.files[0]?.stagingPath ?? ''), expectedSha256(size, 31));
  });

  test('dropped connections mid-body are recovered (ranged and single stream)', async () => {
    const size = 6 * MiB;
    const url = origin.route('/drop.bin', { size, seed: 32, drop: { count: 3, afterBytes: 500_000 } });
    const h = await makeJob(url, { connections: 4 });
    const out = await engine().download(h.job);
    assert.equal(await sha256File(out.files[0]?.stagingPath ?? ''), expectedSha256(size, 32));

    const url2 = origin.route('/drop-seq.bin', {
      size,
      seed: 33,
      ranges: false,
      drop: { count: 1, afterBytes: 1_000_000 },
    });
    const h2 = await makeJob(url2);
    const out2 = await engine().download(h2.job);
    assert.equal(await sha256File(out2.files[0]?.stagingPath ?? ''), expectedSha256(size, 33));
  });

  test('429 with Retry-After is honoured, then the download succeeds', async () => {
    const url = origin.route('/busy.bin', {
      size: 2 * MiB,
      seed: 34,
      failFirst: { count: 2, status: 429, retryAfter: 1 },
    });
    const h = await makeJob(url, { connections: 4 });
    const t0 = performance.now();
    const out = await engine().download(h.job);
    assert.ok(performance.now() - t0 >= 1500, 'waited for Retry-After');
    assert.equal(await sha256File(out.files[0]?.stagingPath ?? ''), expectedSha256(2 * MiB, 34));
  });

  test('503 on segment requests reduces connections and still completes', async () => {
    const size = 8 * MiB;
    // the probe succeeds, then the next 6 requests get 503
    const url = origin.route('/overload.bin', {
      size,
      seed: 35,
      failFirst: { count: 6, status: 503, after: 1 },
    });
    const h = await makeJob(url, { connections: 8 });
    const out = await engine().download(h.job);
    assert.equal(await sha256File(out.files[0]?.stagingPath ?? ''), expectedSha256(size, 35));
    const statuses = origin.requests('/overload.bin').map((r) => r.status);
    assert.equal(statuses.filter((s) => s === 503).length, 6);
  });

  test('a Content-Length that lies fails clearly instead of keeping a short file', async () => {
    const url = origin.route('/liar.bin', { size: 1 * MiB, claimLength: 2 * MiB, ranges: false });
    const h = await makeJob(url);
    await expectFailure(
      engine({ retry: { attempts: 2, baseDelayMs: 10 }, stallTimeoutMs: 300 }).download(h.job),
      'NETWORK',
    );
    assert.deepEqual(
      (await readdir(h.job.stagingDir)).filter((f) => !f.endsWith('.part')),
      [],
      'no finished file',
    );
  });

  test('overall timeout → TIMEOUT', async () => {
    const url = origin.route('/slow.bin', { size: 4 * MiB, throttle: 256 * 1024 });
    const h = await makeJob(url, { timeoutMs: 400 });
    const t0 = performance.now();
    await expectFailure(engine().download(h.job), 'TIMEOUT');
    assert.ok(performance.now() - t0 < 1500);
  });

  test('cancel rejects with CANCELED and closes every socket within a second', async () => {
    const url = origin.route('/cancel.bin', { size: 32 * MiB, throttle: 1 * MiB });
    const h = await makeJob(url, { connections: 8 });
    const p = engine().download(h.job);
    await sleep(300);
    assert.ok(origin.openSockets() > 0);
    const t0 = performance.now();
    h.controller.abort();
    await expectFailure(p, 'CANCELED');
    assert.ok(performance.now() - t0 < 1000, 'rejected within a second');
    for (let i = 0; i < 20 && origin.openSockets() > 0; i++) await sleep(25);
    assert.equal(origin.openSockets(), 0, 'all sockets closed');
  });

  test('maxBytes: refused up front when the length is known, while streaming when not', async () => {
    const url = origin.route('/big.bin', { size: 8 * MiB });
    const h = await makeJob(url, { maxBytes: 1 * MiB });
    await expectFailure(engine().download(h.job), 'TOO_LARGE');
    assert.ok(origin.bytesServed('/big.bin') < 8 * MiB);

    const url2 = origin.route('/big-chunked.bin', { size: 8 * MiB, chunked: true });
    const h2 = await makeJob(url2, { maxBytes: 1 * MiB });
    await expectFailure(engine().download(h2.job), 'TOO_LARGE');

    const url3 = origin.route('/fits.bin', { size: 1 * MiB });
    const h3 = await makeJob(url3, { maxBytes: 1 * MiB });
    await engine().download(h3.job);
  });

  test('checksum match (segmented sha256, single-stream md5) and mismatch', async () => {
    const size = 4 * MiB;
    const url = origin.route('/sum.bin', { size, seed: 41 });
    const ok = await makeJob(url, {
      checksum: { algorithm: 'sha256', hex: expectedSha256(size, 41).toUpperCase() },
    });
    await engine().download(ok.job);

    const url2 = origin.route('/sum-seq.bin', { size, seed: 41, ranges: false });
    const md5 = await makeJob(url2, { checksum: { algorithm: 'md5', hex: expectedDigest(size, 41, 'md5') } });
    await engine().download(md5.job);

    const bad = await makeJob(url, { checksum: { algorithm: 'sha1', hex: '0'.repeat(40) } });
    await expectFailure(engine().download(bad.job), 'CHECKSUM');
    assert.deepEqual(await readdir(bad.job.stagingDir), [], 'staged file removed');
  });
});

describe('speed limits', () => {
  test('per-task limit: 2 MiB at 1 MiB/s takes at least 1.5 s', async () => {
    const url = origin.route('/limited.bin', { size: 2 * MiB, seed: 51 });
    const h = await makeJob(url, { connections: 4, speedLimit: 1 * MiB });
    const t0 = performance.now();
    const out = await engine().download(h.job);
    const elapsed = performance.now() - t0;
    assert.ok(elapsed >= 1500, `took ${elapsed.toFixed(0)} ms`);
    assert.equal(await sha256File(out.files[0]?.stagingPath ?? ''), expectedSha256(2 * MiB, 51));
  });

  test('global limit is shared by concurrent tasks', async () => {
    const url = origin.route('/global.bin', { size: 1 * MiB, seed: 52 });
    const e = engine({ globalSpeedLimit: 1 * MiB });
    const a = await makeJob(url, { connections: 2 });
    const b = await makeJob(url, { connections: 2 });
    const t0 = performance.now();
    await Promise.all([e.download(a.job), e.download(b.job)]);
    const elapsed = performance.now() - t0;
    assert.ok(elapsed >= 1500, `took ${elapsed.toFixed(0)} ms`);
  });
});

describe('names and progress', () => {
  test('Content-Disposition (plain and RFC 5987), URL path, explicit name', async () => {
    const plain = origin.route('/cd1', {
      size: 1000,
      contentDisposition: 'attachment; filename="report 2024.pdf"',
    });
    const ext = origin.route('/cd2', {
      size: 1000,
      contentDisposition: `attachment; filename="fallback.txt"; filename*=UTF-8''%E6%97%A5%E6%9C%AC%E8%AA%9E.txt`,
    });
    const evil = origin.route('/cd3', {
      size: 1000,
      contentDisposition: 'attachment; filename="../../CON.txt"',
    });
    const pathName = origin.route('/dir/na%C3%AFve%20file.iso', { size: 1000 });
    const noName = origin.route('/', { size: 1000 });
    const cases: [string, string | undefined, string][] = [
      [plain, undefined, 'report 2024.pdf'],
      [ext, undefined, '日本語.txt'],
      [evil, undefined, '_.._CON.txt'],
      [pathName, undefined, 'naïve file.iso'],
      [noName, undefined, 'download'],
      [plain, 'chosen/../name.bin', 'chosen_.._name.bin'],
      [plain, 'NUL', 'NUL_'],
    ];
    for (const [url, filename, expected] of cases) {
      const h = await makeJob(url, filename === undefined ? {} : { filename });
      const out = await engine().download(h.job);
      assert.equal(out.name, expected);
      assert.equal(out.files[0]?.name, expected);
      assert.equal(out.files[0]?.stagingPath, join(h.job.stagingDir, expected));
    }
  });

  test('progress is reported at most about 4 times a second', async () => {
    const size = 8 * MiB;
    const url = origin.route('/progress.bin', { size, throttle: 4 * MiB });
    const h = await makeJob(url, { connections: 2 });
    const t0 = performance.now();
    await engine().download(h.job);
    const seconds = (performance.now() - t0) / 1000;
    assert.ok(h.progress.length >= 2);
    assert.ok(
      h.progress.length <= seconds * 4 + 3,
      `${h.progress.length} reports in ${seconds.toFixed(2)} s`,
    );
    const mid = h.progress.find((p) => p.downloaded > 0 && p.downloaded < size);
    assert.ok(mid !== undefined);
    assert.ok(mid.speed > 0);
    assert.equal(mid.name, 'progress.bin');
    assert.deepEqual(Object.keys(mid.files[0] ?? {}).sort(), [
      'index',
      'name',
      'progress',
      'selected',
      'size',
    ]);
  });
});

describe('outbound safety', () => {
  // Every connection undici attempts, to prove refusals happen before connecting.
  const attempts: string[] = [];
  const onConnect = (message: unknown): void => {
    const m = message as { connectParams?: { hostname?: string } };
    attempts.push(m.connectParams?.hostname ?? '?');
  };
  before(() => subscribe('undici:client:beforeConnect', onConnect));
  after(() => unsubscribe('undici:client:beforeConnect', onConnect));

  test('loopback origin refused when not in allowNetworks, without connecting', async () => {
    attempts.length = 0;
    const url = origin.route('/refused.bin', { size: 1000 });
    const h = await makeJob(url);
    const f = await expectFailure(
      new HttpDownloader({ policy: new OutboundPolicy() }).download(h.job),
      'SOURCE_BLOCKED',
    );
    assert.match(f.message, /loopback/);
    assert.equal(origin.requests('/refused.bin').length, 0);
    assert.equal(attempts.length, 0, attempts.join(', '));
  });

  test('odd spellings of loopback in the URL are refused too', async () => {
    for (const host of [
      '127.1',
      '2130706433',
      '0x7f.0.0.1',
      '0177.0.0.1',
      '[::1]',
      '[::ffff:127.0.0.1]',
      'localhost',
    ]) {
      const h = await makeJob(`http://${host}:${origin.port}/refused.bin`);
      await expectFailure(
        new HttpDownloader({ policy: new OutboundPolicy() }).download(h.job),
        'SOURCE_BLOCKED',
      );
    }
    assert.equal(origin.requests('/refused.bin').length, 0);
  });

  test('redirect chains are followed; a redirect to a refused address is refused before connecting', async () => {
    origin.route('/r1', { redirect: '/r2' });
    origin.route('/r2', { redirect: `${origin.base}/r3`, redirectStatus: 307 });
    origin.route('/r3', { redirect: '/final/file.zip', redirectStatus: 301 });
    origin.route('/final/file.zip', { size: 2 * MiB, seed: 61 });
    const h = await makeJob(origin.url('/r1'));
    const out = await engine().download(h.job);
    assert.equal(out.name, 'file.zip');
    assert.equal(await sha256File(out.files[0]?.stagingPath ?? ''), expectedSha256(2 * MiB, 61));

    attempts.length = 0;
    origin.route('/to-private', { redirect: 'http://10.0.0.1/secret' });
    const h2 = await makeJob(origin.url('/to-private'));
    const f = await expectFailure(engine().download(h2.job), 'SOURCE_BLOCKED');
    assert.match(f.message, /10\.0\.0\.1/);
    assert.ok(!attempts.includes('10.0.0.1'), `connected to ${attempts.join(', ')}`);

    origin.route('/to-metadata', { redirect: 'http://169.254.169.254/latest/meta-data/' });
    await expectFailure(engine().download((await makeJob(origin.url('/to-metadata'))).job), 'SOURCE_BLOCKED');
    origin.route('/to-ftp', { redirect: 'ftp://example.com/file' });
    await expectFailure(engine().download((await makeJob(origin.url('/to-ftp'))).job), 'INVALID_URL');
    origin.route('/loop', { redirect: '/loop' });
    const loop = await expectFailure(
      engine().download((await makeJob(origin.url('/loop'))).job),
      'HTTP_ERROR',
    );
    assert.match(loop.message, /redirect/);
    assert.ok(!attempts.includes('10.0.0.1') && !attempts.includes('169.254.169.254'));
  });

  test('host names: resolved once, refused when resolving to a refused address, pinned otherwise', async () => {
    const lookups: string[] = [];
    const resolve = async (host: string): Promise<{ address: string; family: 4 | 6 }[]> => {
      lookups.push(host);
      if (host === 'evil.test') return [{ address: '10.0.0.1', family: 4 }];
      if (host === 'mixed.test') {
        return [
          { address: '10.0.0.1', family: 4 },
          { address: '127.0.0.1', family: 4 },
        ];
      }
      return [{ address: '127.0.0.1', family: 4 }];
    };
    attempts.length = 0;
    const evil = await makeJob(`http://evil.test:${origin.port}/x`);
    await expectFailure(engine({ resolve }).download(evil.job), 'SOURCE_BLOCKED');
    assert.equal(attempts.length, 0, attempts.join(', '));

    origin.route('/named.bin', { size: 4 * MiB, seed: 62 });
    lookups.length = 0;
    const mixed = await makeJob(`http://mixed.test:${origin.port}/named.bin`, { connections: 4 });
    const out = await engine({ resolve }).download(mixed.job);
    assert.equal(await sha256File(out.files[0]?.stagingPath ?? ''), expectedSha256(4 * MiB, 62));
    assert.deepEqual(lookups, ['mixed.test'], 'one lookup for all connections');
    assert.ok(!attempts.includes('10.0.0.1'));
  });

  test('invalid URLs → INVALID_URL', async () => {
    for (const url of ['not a url', 'ftp://example.com/x', 'file:///etc/passwd', 'javascript:alert(1)']) {
      await expectFailure(engine().download((await makeJob(url)).job), 'INVALID_URL');
    }
  });
});
