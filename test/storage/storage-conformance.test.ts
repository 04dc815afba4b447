// One behaviour suite for every StorageDriver: the local-disk driver on a temp folder and the
// S3 driver against s3rver on 127.0.0.1. Whatever the services rely on is checked here.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { LocalDiskDriver } from '../../src/storage/local.driver.ts';
import { BlobNotFoundError, type StorageDriver } from '../../src/storage/port.ts';
import { S3Driver } from '../../src/storage/s3.driver.ts';
import { startS3, type LocalS3 } from './s3rver.ts';

const MiB = 1024 * 1024;
const BIG = randomBytes(12 * MiB);

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** Yields `data` in 1 MiB pieces; throws after `failAfter` bytes, or waits on `gate` there. */
function source(data: Buffer, opts: { failAfter?: number; pauseAt?: number; gate?: Promise<void> } = {}) {
  return Readable.from(
    (async function* () {
      for (let at = 0; at < data.length; at += MiB) {
        if (opts.failAfter !== undefined && at >= opts.failAfter) throw new Error('source broke midway');
        if (opts.pauseAt !== undefined && at === opts.pauseAt) await opts.gate;
        yield data.subarray(at, Math.min(data.length, at + MiB));
      }
    })(),
  );
}

interface Subject {
  driver: StorageDriver;
  /** What a failed write may have left behind: temp files, or multipart uploads never aborted. */
  leftovers(): Promise<string[]>;
  close(): Promise<void>;
}

const subjects: Array<[string, () => Promise<Subject>]> = [
  [
    'local disk',
    async () => {
      const root = await mkdtemp(join(tmpdir(), 'ferry-local-storage-'));
      return {
        driver: new LocalDiskDriver(join(root, 'blobs')),
        leftovers: () => readdir(join(root, 'blobs', '.tmp')).catch(() => []),
        close: () => rm(root, { recursive: true, force: true }),
      };
    },
  ],
  [
    's3 (s3rver)',
    async () => {
      const s3: LocalS3 = await startS3();
      const driver = new S3Driver({
        endpoint: s3.endpoint,
        region: 'us-east-1',
        bucket: s3.bucket,
        accessKeyId: s3.accessKey,
        secretAccessKey: s3.secretKey,
        forcePathStyle: true,
        prefix: 'ferry',
        partSize: 5 * MiB, // parts end at 5 and 10 MiB in the 12 MiB object
      });
      await driver.check();
      // s3rver does not implement AbortMultipartUpload (it answers 405), so count what the
      // driver asks for: every multipart upload started must be completed or aborted.
      const open = new Set<string>();
      driver.client.middlewareStack.add(
        (next, context) => async (args) => {
          const result = await next(args).catch((e: unknown) => {
            if (context.commandName !== 'AbortMultipartUploadCommand') throw e;
            return { output: {} } as never;
          });
          const input = args.input as { UploadId?: string };
          const output = (result as { output: { UploadId?: string } }).output;
          if (context.commandName === 'CreateMultipartUploadCommand' && output.UploadId)
            open.add(output.UploadId);
          if (
            (context.commandName === 'CompleteMultipartUploadCommand' ||
              context.commandName === 'AbortMultipartUploadCommand') &&
            input.UploadId
          )
            open.delete(input.UploadId);
          return result;
        },
        { step: 'initialize', name: 'countMultipartUploads' },
      );
      return { driver, leftovers: async () => [...open], close: () => s3.stop() };
    },
  ],
];

for (const [label, open] of subjects) {
  describe(`StorageDriver conformance: ${label}`, () => {
    let subject: Subject;
    let driver: StorageDriver;
    let work: string;
    before(async () => {
      subject = await open();
      driver = subject.driver;
      work = await mkdtemp(join(tmpdir(), 'ferry-storage-work-'));
    });
    after(async () => {
      await subject.close();
      await rm(work, { recursive: true, force: true });
    });

    test('write, stat, read and delete a small blob under a nested key', async () => {
      const data = Buffer.from('hello, storage\n');
      const before = Date.now();
      const info = await driver.write('blobs/ab/small', Readable.from([data]));
      assert.equal(info.key, 'blobs/ab/small');
      assert.equal(info.size, data.length);
      assert.ok(info.modifiedAt instanceof Date);
      assert.ok(Math.abs(info.modifiedAt.getTime() - before) < 60_000);
      const s = await driver.stat('blobs/ab/small');
      assert.equal(s.size, data.length);
      assert.deepEqual(await readAll(await driver.read('blobs/ab/small')), data);
      assert.deepEqual(
        await readAll(await driver.read('blobs/ab/small', { start: 7, end: 13 })),
        data.subarray(7, 14),
      );
      await driver.delete('blobs/ab/small');
      await assert.rejects(driver.stat('blobs/ab/small'), BlobNotFoundError);
    });

    test('an empty blob', async () => {
      const info = await driver.write('blobs/empty', Readable.from([]));
      assert.equal(info.size, 0);
      assert.equal((await driver.stat('blobs/empty')).size, 0);
      assert.equal((await readAll(await driver.read('blobs/empty'))).length, 0);
      await driver.delete('blobs/empty');
    });

    test('12 MiB: whole read and ranges across the 5 MiB part boundaries are byte-exact', async () => {
      const info = await driver.write('blobs/big', source(BIG));
      assert.equal(info.size, BIG.length);
      assert.ok((await readAll(await driver.read('blobs/big'))).equals(BIG));
      const ranges: Array<[number, number]> = [
        [0, 0],
        [5 * MiB - 1, 5 * MiB],
        [5 * MiB - 100, 10 * MiB + 100],
        [10 * MiB - 1, 10 * MiB - 1],
        [3 * MiB + 17, 11 * MiB + 5],
        [BIG.length - 1, BIG.length - 1],
        [0, BIG.length - 1],
      ];
      for (const [start, end] of ranges) {
        const got = await readAll(await driver.read('blobs/big', { start, end }));
        assert.ok(got.equals(BIG.subarray(start, end + 1)), `range ${start}-${end}`);
      }
      // Several ranged reads at once, as multipart/byteranges and parallel clients do.
      const parallel = await Promise.all(
        [0, 4, 8].map((m) =>
          driver.read('blobs/big', { start: m * MiB, end: (m + 4) * MiB - 1 }).then(readAll),
        ),
      );
      assert.ok(Buffer.concat(parallel).equals(BIG));
    });

    test('a write whose stream fails midway leaves nothing under the key', async () => {
      // Past the first part, so a multipart upload had started.
      await assert.rejects(
        driver.write('blobs/broken', source(BIG, { failAfter: 7 * MiB })),
        /source broke midway/,
      );
      await assert.rejects(driver.stat('blobs/broken'), BlobNotFoundError);
      await assert.rejects(driver.read('blobs/broken'), BlobNotFoundError);
      // Within the first part (a single PUT that never happens).
      await assert.rejects(
        driver.write('blobs/broken2', source(BIG, { failAfter: 2 * MiB })),
        /source broke/,
      );
      await assert.rejects(driver.stat('blobs/broken2'), BlobNotFoundError);
    });

    test('a failed overwrite keeps the previous content', async () => {
      const first = Buffer.from('first version');
      await driver.write('blobs/keep', Readable.from([first]));
      await assert.rejects(driver.write('blobs/keep', source(BIG, { failAfter: 6 * MiB })));
      assert.deepEqual(await readAll(await driver.read('blobs/keep')), first);
      await driver.delete('blobs/keep');
    });

    test('an aborted write leaves nothing under the key', async () => {
      const controller = new AbortController();
      let release!: () => void;
      const gate = new Promise<void>((r) => (release = r));
      const writing = driver.write('blobs/aborted', source(BIG, { pauseAt: 6 * MiB, gate }), {
        signal: controller.signal,
      });
      await new Promise((r) => setTimeout(r, 300));
      controller.abort();
      release();
      await assert.rejects(writing);
      await assert.rejects(driver.stat('blobs/aborted'), BlobNotFoundError);
    });

    test('a blob is not visible while it is being written', async () => {
      let release!: () => void;
      const gate = new Promise<void>((r) => (release = r));
      const writing = driver.write('blobs/slow', source(BIG, { pauseAt: 6 * MiB, gate }));
      await new Promise((r) => setTimeout(r, 500));
      await assert.rejects(driver.stat('blobs/slow'), BlobNotFoundError);
      await assert.rejects(driver.read('blobs/slow'), BlobNotFoundError);
      release();
      assert.equal((await writing).size, BIG.length);
      assert.ok((await readAll(await driver.read('blobs/slow'))).equals(BIG));
      await driver.delete('blobs/slow');
    });

    test('importFile moves a finished file in (the local file is gone)', async () => {
      const path = join(work, 'finished.bin');
      await writeFile(path, BIG);
      const info = await driver.importFile('blobs/imported', path);
      assert.equal(info.size, BIG.length);
      await assert.rejects(stat(path), { code: 'ENOENT' });
      assert.ok((await readAll(await driver.read('blobs/imported'))).equals(BIG));
      const got = await readAll(
        await driver.read('blobs/imported', { start: 5 * MiB - 3, end: 5 * MiB + 2 }),
      );
      assert.ok(got.equals(BIG.subarray(5 * MiB - 3, 5 * MiB + 3)));
      await driver.delete('blobs/imported');
    });

    test('importFile of a missing file fails and stores nothing', async () => {
      await assert.rejects(driver.importFile('blobs/none', join(work, 'does-not-exist')));
      await assert.rejects(driver.stat('blobs/none'), BlobNotFoundError);
    });

    test('linkFile stores a file that stays where it is', async () => {
      const path = join(work, 'seeding.bin');
      const data = BIG.subarray(0, 6 * MiB + 3);
      await writeFile(path, data);
      const info = await driver.linkFile('blobs/linked', path);
      assert.equal(info.size, data.length);
      assert.equal((await stat(path)).size, data.length, 'the source stays');
      assert.ok((await readAll(await driver.read('blobs/linked'))).equals(data));
      // The blob outlives the source (a finished torrent's staging folder is removed later).
      await rm(path);
      assert.ok((await readAll(await driver.read('blobs/linked'))).equals(data));
      await driver.delete('blobs/linked');
    });

    test('positional reader: local disk offers one (S3 streams only); offsets, 0 at the end, idempotent close', async () => {
      // The serving path uses it when present (src/http/blob-pump.ts); S3 reads stay streams.
      if (driver.name !== 'local') return assert.equal('openReader' in driver, false);
      assert.ok(typeof driver.openReader === 'function');
      await driver.write('blobs/positional', source(BIG));
      const reader = await driver.openReader('blobs/positional');
      const buffer = Buffer.alloc(MiB);
      for (const at of [0, 5 * MiB - 3, BIG.length - 100]) {
        const n = await reader.read(buffer, MiB, at);
        const want = Math.min(MiB, BIG.length - at);
        assert.equal(n, want);
        assert.ok(buffer.subarray(0, n).equals(BIG.subarray(at, at + n)), `at ${at}`);
      }
      assert.equal(await reader.read(buffer, MiB, BIG.length), 0);
      await reader.close();
      await reader.close();
      await assert.rejects(reader.read(buffer, 10, 0));
      await assert.rejects(driver.openReader('blobs/missing'), BlobNotFoundError);
      await driver.delete('blobs/positional');
    });

    test('missing blobs: stat and read throw BlobNotFoundError', async () => {
      await assert.rejects(driver.stat('blobs/missing'), BlobNotFoundError);
      await assert.rejects(driver.read('blobs/missing'), BlobNotFoundError);
      await assert.rejects(driver.read('blobs/missing', { start: 0, end: 9 }), BlobNotFoundError);
    });

    test('delete is idempotent', async () => {
      await driver.write('blobs/twice', Readable.from([Buffer.from('x')]));
      await driver.delete('blobs/twice');
      await driver.delete('blobs/twice');
      await driver.delete('blobs/never-was');
      await assert.rejects(driver.stat('blobs/twice'), BlobNotFoundError);
    });

    test('keys that climb out are refused', async () => {
      await assert.rejects(driver.stat('../outside'));
      await assert.rejects(driver.write('blobs/../../outside', Readable.from([Buffer.from('x')])));
    });

    test('leaves no temp files or unfinished multipart uploads behind', async () => {
      assert.deepEqual(await subject.leftovers(), []);
      for (const key of ['blobs/big', 'blobs/broken', 'blobs/aborted']) await driver.delete(key);
      await assert.rejects(driver.stat('blobs/big'), BlobNotFoundError);
    });
  });
}
