// A real Ferry server with `--storage s3` against s3rver on 127.0.0.1: uploads and remote
// downloads land in the bucket (not on local disk), signed links proxy them with Range.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { expectedSha256, startOrigin, type Origin } from '../helpers/origin.ts';
import { startServer, uploadFile, waitFor, type TestServer } from '../helpers/server.ts';
import { startS3, type LocalS3 } from './s3rver.ts';

const MiB = 1024 * 1024;
const PREFIX = 'ferry-e2e/';
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

let s3: LocalS3;
let origin: Origin;
let server: TestServer;
let token: string;
let client: S3Client;

function s3Args(bucket = s3.bucket): string[] {
  return [
    '--storage',
    's3',
    '--s3-endpoint',
    s3.endpoint,
    '--s3-bucket',
    bucket,
    '--s3-access-key',
    s3.accessKey,
    '--s3-secret-key',
    s3.secretKey,
    '--s3-prefix',
    PREFIX,
  ];
}

async function objects(): Promise<Map<string, number>> {
  const out = await client.send(new ListObjectsV2Command({ Bucket: s3.bucket, Prefix: PREFIX }));
  return new Map((out.Contents ?? []).map((o) => [o.Key!, o.Size ?? 0]));
}

async function signedUrl(uri: string): Promise<string> {
  const r = await server.api<{ urls: Array<{ url: string }> }>('POST', '/file/url', {
    token,
    body: { uris: [uri] },
  });
  assert.equal(r.body.code, 0, JSON.stringify(r.body));
  return r.body.data!.urls[0]!.url;
}

async function localBlobs(): Promise<string[]> {
  return readdir(join(server.dataDir, 'blobs'), { recursive: true }).catch(() => []);
}

before(async () => {
  s3 = await startS3();
  origin = await startOrigin();
  client = new S3Client({
    endpoint: s3.endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: s3.accessKey, secretAccessKey: s3.secretKey },
  });
  server = await startServer({ args: [...s3Args(), '--allow-network', '127.0.0.1/32'] });
  token = (await server.signIn()).access;
});
after(async () => {
  if (process.env.FERRY_TEST_VERBOSE) console.log(server?.output());
  await server?.stop();
  await origin?.close();
  client?.destroy();
  await s3?.stop();
});

describe('Ferry with --storage s3', () => {
  const DATA = randomBytes(12 * MiB + 12345);

  test('an upload lands in the bucket and is served byte-exact, whole and by Range', async () => {
    await uploadFile(server, token, 'cloudreve://my/big.bin', DATA);
    const stored = [...(await objects()).values()];
    assert.ok(stored.includes(DATA.length), `an object of ${DATA.length} bytes in ${JSON.stringify(stored)}`);
    assert.deepEqual(await localBlobs(), [], 'nothing on local disk');

    const url = await signedUrl('cloudreve://my/big.bin');
    const whole = await fetch(url);
    assert.equal(whole.status, 200);
    assert.equal(whole.headers.get('content-length'), String(DATA.length));
    assert.equal(whole.headers.get('accept-ranges'), 'bytes');
    assert.equal(sha256(Buffer.from(await whole.arrayBuffer())), sha256(DATA));

    for (const [start, end] of [
      [0, 0],
      [5 * MiB - 10, 5 * MiB + 10],
      [8 * MiB - 1, 10 * MiB + 1],
      [DATA.length - 100, DATA.length - 1],
    ] as const) {
      const res = await fetch(url, { headers: { range: `bytes=${start}-${end}` } });
      assert.equal(res.status, 206);
      assert.equal(res.headers.get('content-range'), `bytes ${start}-${end}/${DATA.length}`);
      assert.ok(
        Buffer.from(await res.arrayBuffer()).equals(DATA.subarray(start, end + 1)),
        `${start}-${end}`,
      );
    }
    // A suffix range and a multipart/byteranges answer.
    const suffix = await fetch(url, { headers: { range: 'bytes=-7' } });
    assert.equal(suffix.status, 206);
    assert.ok(Buffer.from(await suffix.arrayBuffer()).equals(DATA.subarray(DATA.length - 7)));
    const multi = await fetch(url, { headers: { range: 'bytes=0-3,6000000-6000003' } });
    assert.equal(multi.status, 206);
    assert.match(multi.headers.get('content-type') ?? '', /^multipart\/byteranges/);
    const body = Buffer.from(await multi.arrayBuffer());
    assert.ok(body.includes(DATA.subarray(0, 4)) && body.includes(DATA.subarray(6000000, 6000004)));
  });

  test('the path face reads it from S3 too, with Range', async () => {
    const res = await fetch(`${server.url}/files/big.bin`, {
      headers: { authorization: `Bearer ${token}`, range: `bytes=${5 * MiB}-${5 * MiB + 99}` },
    });
    assert.equal(res.status, 206);
    assert.ok(Buffer.from(await res.arrayBuffer()).equals(DATA.subarray(5 * MiB, 5 * MiB + 100)));
  });

  test('a remote download lands in the bucket and reads back byte-exact', async () => {
    const size = 9 * MiB + 7;
    const src = origin.route('/remote.bin', { size, seed: 42 });
    await server.api('POST', '/file/create', { token, body: { uri: 'cloudreve://my/dl', type: 'folder' } });
    const created = await server.api<Array<{ id: string }>>('POST', '/workflow/download', {
      token,
      body: { dst: 'cloudreve://my/dl', src: [src] },
    });
    assert.equal(created.body.code, 0, JSON.stringify(created.body));
    const id = created.body.data![0]!.id;
    const task = await waitFor(
      async () => {
        const r = await server.api<{ status: string; error?: string }>('GET', `/workflow/${id}`, { token });
        return r.body.data && ['completed', 'error', 'canceled'].includes(r.body.data.status)
          ? r.body.data
          : undefined;
      },
      60_000,
      'the download to finish',
    );
    assert.equal(task.status, 'completed', JSON.stringify(task));
    assert.ok([...(await objects()).values()].includes(size), 'the downloaded object is in the bucket');
    assert.deepEqual(await localBlobs(), [], 'nothing on local disk');
    const url = await signedUrl('cloudreve://my/dl/remote.bin');
    assert.equal(sha256(Buffer.from(await (await fetch(url)).arrayBuffer())), expectedSha256(size, 42));
    const part = await fetch(url, { headers: { range: 'bytes=100-199' } });
    assert.equal(part.status, 206);
    assert.equal((await part.arrayBuffer()).byteLength, 100);
    // The staging folder is gone once the file landed.
    const staging = await readdir(join(server.dataDir, 'staging', 'tasks')).catch(() => []);
    assert.deepEqual(staging, []);
  });

  test('deleting the file deletes its object', async () => {
    const before = await objects();
    const del = await server.api('DELETE', '/file', { token, body: { uris: ['cloudreve://my/big.bin'] } });
    assert.equal(del.body.code, 0, JSON.stringify(del.body));
    const now = await objects();
    assert.equal(now.size, before.size - 1);
    assert.ok(![...now.values()].includes(DATA.length));
  });

  test('pointed at a missing bucket, Ferry refuses to start, saying why', async () => {
    const r = await server.cli(['user', 'list', ...s3Args('no-such-bucket')]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /S3 bucket "no-such-bucket" is not usable: does not exist/);
    const noBucket = await server.cli(['user', 'list', '--storage', 's3']);
    assert.equal(noBucket.code, 1);
    assert.match(noBucket.stderr, /--storage s3 needs --s3-bucket/);
  });
});
