// Origin faults through the whole server: a real server process downloading from a loopback
// origin that drops, stalls, lies about lengths, changes content mid-download, compresses,
// never ends, or sends enormous headers. Each case ends with the right bytes in the drive or a
// clear failure — never a partial file — and the storage invariants hold afterwards.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { contentRange, expectedSha256, startOrigin, type Origin } from '../helpers/origin.ts';
import { startServer, type TestServer } from '../helpers/server.ts';
import {
  assertNoOrphans,
  createTasks,
  driveFiles,
  failureOf,
  finished,
  MiB,
  readBack,
  settled,
  sha256,
} from './helpers.ts';
import { startRawOrigin, type RawOrigin } from './raw-origin.ts';

const MAX_FILE = 48 * MiB;
let origin: Origin;
let raw: RawOrigin;
let server: TestServer;
let token: string;

before(async () => {
  origin = await startOrigin();
  raw = await startRawOrigin({ size: 1, seed: 1 });
  server = await startServer({
    args: [
      '--allow-network',
      '127.0.0.1/32',
      '--task-retries',
      '0',
      '--max-file-size',
      String(MAX_FILE),
      '--http-stall-timeout',
      '1.5',
    ],
  });
  token = (await server.signIn()).access;
  await server.api('POST', '/file/create', { token, body: { uri: 'cloudreve://my/dl', type: 'folder' } });
});
after(async () => {
  if (process.env.FERRY_TEST_VERBOSE) console.log(server?.output());
  await server?.stop();
  await origin?.close();
  await raw?.close();
});

/** Runs one source to its end; returns the task and the drive files carrying `name`. */
async function run(src: string, name: string, timeoutMs = 90_000) {
  const t0 = Date.now();
  const [task] = await createTasks(server, token, [src]);
  const done = await finished(server, token, task!.id, timeoutMs);
  if (process.env.FAULTS_DEBUG) console.log(name, done.status, done.error, Date.now() - t0, 'ms');
  const files = (await driveFiles(server)).filter((f) => f.name === name);
  return { done, files };
}

async function assertExact(name: string, size: number, seed: number): Promise<void> {
  const body = await readBack(server, token, `cloudreve://my/dl/${name}`);
  assert.equal(body.length, size, `${name}: size`);
  assert.equal(sha256(body), expectedSha256(size, seed), `${name}: sha-256`);
}

test('dropped connections mid-body: ranged and single-stream downloads end byte-exact', async () => {
  const size = 12 * MiB;
  const a = origin.route('/drop-ranged.bin', { size, seed: 101, drop: { count: 6, afterBytes: 400_000 } });
  const b = origin.route('/drop-single.bin', {
    size: 6 * MiB,
    seed: 102,
    ranges: false,
    drop: { count: 2, afterBytes: 1_500_000 },
  });
  const [ra, rb] = await Promise.all([run(a, 'drop-ranged.bin'), run(b, 'drop-single.bin')]);
  assert.equal(ra.done.status, 'completed', JSON.stringify(ra.done));
  assert.equal(rb.done.status, 'completed', JSON.stringify(rb.done));
  await assertExact('drop-ranged.bin', size, 101);
  await assertExact('drop-single.bin', 6 * MiB, 102);
});

test('stalled connections are dropped after the stall timeout and the download finishes', async () => {
  const size = 8 * MiB;
  const a = origin.route('/stall-ranged.bin', { size, seed: 103, stall: { count: 3, afterBytes: 300_000 } });
  const b = origin.route('/stall-single.bin', {
    size: 4 * MiB,
    seed: 104,
    ranges: false,
    stall: { count: 1, afterBytes: 1_000_000 },
  });
  const t0 = Date.now();
  const [ra, rb] = await Promise.all([run(a, 'stall-ranged.bin'), run(b, 'stall-single.bin')]);
  assert.equal(ra.done.status, 'completed', JSON.stringify(ra.done));
  assert.equal(rb.done.status, 'completed', JSON.stringify(rb.done));
  assert.ok(Date.now() - t0 < 45_000, `stalls cost ${Date.now() - t0} ms`);
  await assertExact('stall-ranged.bin', size, 103);
  await assertExact('stall-single.bin', 4 * MiB, 104);
});

test('the ETag changes mid-download: the new version whole, or a clear failure — never a mix', async () => {
  const size = 16 * MiB;
  // Request 1 is the probe; later segment requests see version 2 (seed 109, new ETag).
  const src = origin.route('/changing.bin', { size, seed: 108, changeAfterRequests: 3, throttle: 4 * MiB });
  const { done, files } = await run(src, 'changing.bin', 120_000);
  if (done.status === 'completed') {
    assert.equal(files.length, 1);
    const body = await readBack(server, token, 'cloudreve://my/dl/changing.bin');
    const got = sha256(body);
    assert.ok(
      got === expectedSha256(size, 109) || got === expectedSha256(size, 108),
      'one whole version of the file, not a mix of two',
    );
  } else {
    assert.equal(done.status, 'error', JSON.stringify(done));
    assert.deepEqual(files, []);
  }
});

test('gzip content-encoding is decoded: the stored file is the original bytes', async () => {
  const size = 3 * MiB;
  const src = origin.route('/gz-text.bin', { size, seed: 110, gzip: true });
  const { done } = await run(src, 'gz-text.bin');
  assert.equal(done.status, 'completed', JSON.stringify(done));
  await assertExact('gz-text.bin', size, 110);
});

test('an endless body is cut at --max-file-size: TOO_LARGE, no file, the origin stops sending', async () => {
  const src = origin.route('/endless.bin', { size: 2 ** 40, seed: 111, chunked: true });
  const { done, files } = await run(src, 'endless.bin', 120_000);
  assert.equal(done.status, 'error', JSON.stringify(done));
  assert.equal((await failureOf(server, src)).failure, 'TOO_LARGE');
  assert.deepEqual(files, []);
  const served = origin.bytesServed('/endless.bin');
  await new Promise((r) => setTimeout(r, 500));
  assert.ok(origin.bytesServed('/endless.bin') - served < MiB, 'the server closed the endless stream');
  assert.ok(served < MAX_FILE * 3, `read ${served} bytes for a ${MAX_FILE} byte limit`);
  // A declared length over the limit is refused before any body is read.
  const big = origin.route('/declared-huge.bin', { size: 2 ** 40, seed: 112 });
  const r2 = await run(big, 'declared-huge.bin');
  assert.equal(r2.done.status, 'error');
  assert.equal((await failureOf(server, big)).failure, 'TOO_LARGE');
  // Refused on the headers: what the origin got rid of is what loopback socket buffers hold
  // (several MiB once the kernel has grown them), never a download; and it stops there.
  const declaredServed = origin.bytesServed('/declared-huge.bin');
  assert.ok(declaredServed < 16 * MiB, `the origin sent ${declaredServed} bytes`);
  await new Promise((r) => setTimeout(r, 500));
  assert.ok(origin.bytesServed('/declared-huge.bin') - declaredServed < MiB, 'the connection was closed');
});

// Cases that end in a failure wait out the engine's retries and backoff (tens of seconds
// each), so they run side by side.
describe('origin faults that must fail clearly', { concurrency: true }, () => {
  test('a stall on every response fails the task clearly, with no file', async () => {
    const src = origin.route('/stall-always.bin', {
      size: 2 * MiB,
      seed: 105,
      stall: { count: 1_000, afterBytes: 0 },
    });
    const { done, files } = await run(src, 'stall-always.bin', 120_000);
    assert.equal(done.status, 'error', JSON.stringify(done));
    const f = await failureOf(server, src);
    assert.ok(f.failure === 'NETWORK' || f.failure === 'TIMEOUT', JSON.stringify(f));
    assert.deepEqual(files, []);
  });

  test('a few bytes then a stall on every connection: the task fails within a bounded time', async () => {
    // Each answer sends 100 bytes and then nothing. That trickle must not count as progress that
    // keeps the range alive: before, each attempt's bytes reset its failure count and the task
    // held its slot until the whole file had trickled in (~13 min at the default stall timeout).
    const src = origin.route('/stall-trickle.bin', {
      size: 2 * MiB,
      seed: 111,
      stall: { count: 1_000_000, afterBytes: 100 },
    });
    const { done, files } = await run(src, 'stall-trickle.bin', 100_000);
    assert.equal(done.status, 'error', JSON.stringify(done));
    const f = await failureOf(server, src);
    assert.ok(f.failure === 'NETWORK' || f.failure === 'TIMEOUT', JSON.stringify(f));
    assert.deepEqual(files, []);
  });

  test('Content-Length claims more bytes than sent: a clear failure, never a short file', async () => {
    const src = origin.route('/liar-more.bin', {
      size: 1 * MiB,
      seed: 106,
      claimLength: 3 * MiB,
      ranges: false,
    });
    const { done, files } = await run(src, 'liar-more.bin', 120_000);
    assert.equal(done.status, 'error', JSON.stringify(done));
    assert.ok(done.error, 'the failure carries a message');
    assert.deepEqual(files, []);
  });

  test('Content-Length claims fewer bytes than sent: exactly the declared bytes, or a clear failure', async () => {
    const declared = 1 * MiB;
    const src = origin.route('/liar-less.bin', {
      size: 3 * MiB,
      seed: 107,
      claimLength: declared,
      ranges: false,
    });
    const { done, files } = await run(src, 'liar-less.bin', 120_000);
    if (done.status === 'completed') {
      assert.equal(files.length, 1);
      const body = await readBack(server, token, 'cloudreve://my/dl/liar-less.bin');
      assert.equal(body.length, declared);
      assert.ok(body.equals(contentRange(107, 0, declared)), 'the declared prefix, byte-exact');
    } else {
      assert.equal(done.status, 'error', JSON.stringify(done));
      assert.deepEqual(files, []);
    }
  });

  test('huge response headers: the right bytes or a clear failure, and an endless head is cut off', async () => {
    const size = 2 * MiB;
    // 8 KiB of extra headers: within every client's limit, must download byte-exact.
    raw.set({ size, seed: 113, junk: { count: 8, each: 1000 } });
    const ok = await run(raw.url('/hdr-ok.bin'), 'hdr-ok.bin');
    assert.equal(ok.done.status, 'completed', JSON.stringify(ok.done));
    await assertExact('hdr-ok.bin', size, 113);
    // 1 MiB of headers: over any sane limit — a clear failure, no file.
    raw.set({ size, seed: 114, junk: { count: 1024, each: 1024 } });
    const big = await run(raw.url('/hdr-big.bin'), 'hdr-big.bin', 120_000);
    if (big.done.status === 'completed') await assertExact('hdr-big.bin', size, 114);
    else {
      assert.equal(big.done.status, 'error', JSON.stringify(big.done));
      assert.deepEqual(big.files, []);
    }
    // Headers that never end (the origin gives up after 64 MiB): the client must stop reading.
    raw.set({ size, seed: 115, endlessHeaders: { maxBytes: 64 * MiB } });
    const endless = await run(raw.url('/hdr-endless.bin'), 'hdr-endless.bin', 120_000);
    assert.equal(endless.done.status, 'error', JSON.stringify(endless.done));
    assert.deepEqual(endless.files, []);
    const perRequest = raw.headerBytes() / Math.max(1, raw.requests());
    assert.ok(perRequest < 4 * MiB, `read ${Math.round(perRequest)} header bytes per request`);
  });
});

test('after every fault: no partial file, no orphan staging folder, no orphan blob; server healthy', async () => {
  await settled(server);
  await assertNoOrphans(server);
  for (const f of await driveFiles(server)) assert.ok(f.size > 0, `${f.name} is not empty`);
  assert.equal((await fetch(`${server.url}/readyz`)).status, 200);
});
