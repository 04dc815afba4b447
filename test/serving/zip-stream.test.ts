// zipStream over real HTTP, unpacked with the real `unzip`; zipLength against real archives;
// error, abort and laziness behaviour; ZIP64 (forced on a small archive, and for real with a
// lazily generated 4 GiB + 1 entry that never touches the disk).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { crc32 } from 'node:zlib';
import Fastify, { type FastifyInstance } from 'fastify';
import { LocalDiskDriver } from '../../src/storage/local.driver.ts';
import { writeZip, ZipNamer, zipLength, zipStream, type ZipEntry } from '../../src/http/zip-stream.ts';
import type { BlobReader } from '../../src/storage/port.ts';
import {
  collect,
  listen,
  random,
  readCentralDirectory,
  sha256,
  synthetic,
  tempDir,
  walk,
} from './helpers.ts';

const execFileAsync = promisify(execFile);
const unzip = (args: string[], cwd: string) =>
  execFileAsync('/usr/bin/unzip', args, { cwd, env: { ...process.env, LC_ALL: 'C.UTF-8', LANG: 'C.UTF-8' } });

const MiB = 1024 * 1024;
const mtime = new Date('2024-05-06T07:08:10Z');

/** An in-memory file entry that records how many of its kind are open at once. */
function memoryEntry(
  path: string,
  data: Buffer,
  tracker?: { active: number; max: number; opened: string[] },
): ZipEntry {
  return {
    path,
    size: data.length,
    modifiedAt: mtime,
    open: async () => {
      if (tracker) {
        tracker.active++;
        tracker.max = Math.max(tracker.max, tracker.active);
        tracker.opened.push(path);
      }
      const stream = Readable.from([data], { objectMode: false });
      stream.once('close', () => {
        if (tracker) tracker.active--;
      });
      return stream;
    },
  };
}

describe('zipStream over HTTP', { timeout: 120_000 }, () => {
  let app: FastifyInstance;
  let base: string;
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let driver: LocalDiskDriver;
  const files = new Map<string, Buffer>(); // storage key → bytes
  const tracker = { active: 0, max: 0, opened: [] as string[] };
  const destroyed: Readable[] = [];

  // [caller path, storage key | null for folders, expected extracted path]
  const layout: [string, string | null, string][] = [
    ['readme.txt', 'k1', 'readme.txt'],
    ['nested/deep/inner.bin', 'k2', 'nested/deep/inner.bin'],
    ['日本語/ファイル.txt', 'k3', '日本語/ファイル.txt'],
    ['naïve café.mp3', 'k4', 'naïve café.mp3'],
    ['../../etc/passwd', 'k5', 'etc/passwd'],
    ['a\\b', 'k6', 'a_b'],
    ['/abs/path.txt', 'k7', 'abs/path.txt'],
    ['C:\\windows\\win.ini', 'k8', 'C__windows_win.ini'],
    ['ctrl\x07\u202Ename.txt', 'k9', 'ctrl__name.txt'],
    ['readme.txt', 'k10', 'readme (1).txt'],
    ['README.TXT', 'k11', 'README (2).TXT'],
    ['empty.txt', 'k12', 'empty.txt'],
    ['empty-folder', null, 'empty-folder/'],
    ['nested', null, 'nested/'],
    ['nested/', null, ''],
    ['../..', null, ''],
    ['nested', 'k13', 'nested (1)'],
    ['./dot/./x.txt', 'k14', 'dot/x.txt'],
  ];

  const entries = (): ZipEntry[] =>
    layout.map(([path, key]): ZipEntry => {
      if (key === null) return { path, folder: true, modifiedAt: mtime };
      return {
        path,
        size: files.get(key)?.length ?? -1,
        modifiedAt: mtime,
        open: async () => {
          tracker.active++;
          tracker.max = Math.max(tracker.max, tracker.active);
          tracker.opened.push(path);
          const stream = await driver.read(`z/${key}`);
          stream.once('close', () => {
            tracker.active--;
            destroyed.push(stream);
          });
          return stream;
        },
      };
    });

  before(async () => {
    dir = await tempDir('zip');
    driver = new LocalDiskDriver(join(dir.path, 'store'));
    await mkdir(join(dir.path, 'store', 'z'), { recursive: true });
    for (const [i, [, key]] of layout.entries()) {
      if (key === null) continue;
      const data = key === 'k12' ? Buffer.alloc(0) : random(key === 'k2' ? MiB + 3 : 1000 + i * 777);
      files.set(key, data);
      await writeFile(join(dir.path, 'store', 'z', key), data);
    }

    // After a client abort, an earlier keep-alive socket can keep app.close() waiting for
    // fastify's 72 s keepAliveTimeout; tests do not need graceful connection draining.
    app = Fastify({ forceCloseConnections: true });
    app.get<{ Querystring: { fail?: string; nolength?: string } }>('/zip', async (request, reply) => {
      let list = entries();
      const fail = request.query.fail;
      if (fail === 'open') {
        list.splice(2, 0, {
          path: 'x',
          size: 5,
          modifiedAt: mtime,
          open: () => Promise.reject(new Error('gone')),
        });
      } else if (fail === 'stream') {
        list.splice(2, 0, {
          path: 'x',
          size: 2 * MiB,
          modifiedAt: mtime,
          open: async () =>
            Readable.from(
              (async function* () {
                yield Buffer.alloc(MiB);
                throw new Error('disk on fire');
              })(),
            ),
        });
      } else if (fail === 'short') {
        // Declares 20 bytes, delivers 10 (e.g. the file shrank since it was listed).
        const short: ZipEntry = {
          path: 'short.bin',
          size: 20,
          modifiedAt: mtime,
          open: async () => Readable.from([Buffer.alloc(10)]),
        };
        list = [short, ...list];
      }
      reply.header('content-type', 'application/zip');
      reply.header('content-disposition', 'attachment; filename="files.zip"');
      if (request.query.nolength === undefined) reply.header('content-length', String(zipLength(list)));
      return reply.send(zipStream(list));
    });
    app.get('/ping', async () => 'pong');
    base = await listen(app);
  });

  after(async () => {
    await app.close();
    await dir[Symbol.asyncDispose]();
  });

  test('download with curl, unpack with unzip: names, contents, nothing outside, Content-Length exact', async () => {
    tracker.max = 0;
    tracker.opened.length = 0;
    await using work = await tempDir('unzip');
    const archive = join(work.path, 'files.zip');
    const { stdout: headers } = await execFileAsync('curl', ['-sS', '-D', '-', '-o', archive, `${base}/zip`]);
    const length = /content-length: (\d+)/i.exec(headers)?.[1];
    const bytes = await readFile(archive);
    assert.equal(Number(length), bytes.length);
    assert.equal(zipLength(entries()), bytes.length);

    await unzip(['-q', archive, '-d', 'out'], work.path);
    const out = join(work.path, 'out');
    assert.deepEqual(await readdir(work.path), ['files.zip', 'out']); // nothing escaped

    const expectedFiles = layout.filter(([, key]) => key !== null);
    const expectedDirs = ['abs/', 'dot/', 'empty-folder/', 'etc/', 'nested/', 'nested/deep/', '日本語/'];
    const expected = [...expectedFiles.map(([, , name]) => name), ...expectedDirs].sort();
    assert.deepEqual(await walk(out), expected);
    for (const [, key, name] of expectedFiles) {
      const data = files.get(key ?? '');
      assert.ok(data);
      assert.equal(sha256(await readFile(join(out, name))), sha256(data), name);
    }

    // Every entry: UTF-8 flag (bit 11), stored (method 0), names as planned, in order.
    const cd = readCentralDirectory(bytes);
    assert.deepEqual(
      cd.entries.map((e) => e.name),
      layout.filter(([, , name]) => name !== '').map(([, , name]) => name),
    );
    for (const entry of cd.entries) {
      assert.ok(entry.flags & 0x0800, `${entry.name} lacks the UTF-8 flag`);
      assert.equal(entry.method, 0);
    }
    assert.equal(cd.zip64Eocd, false);
    // Files were opened lazily, one at a time, each exactly once.
    assert.equal(tracker.max, 1);
    assert.equal(tracker.opened.length, expectedFiles.length);
    // unzip -l shows the UTF-8 names.
    const { stdout: listing } = await unzip(['-l', archive], work.path);
    assert.match(listing, /日本語\/ファイル\.txt/);
    assert.match(listing, /naïve café\.mp3/);
  });

  test('fetch without Content-Length (chunked) gives the same archive', async () => {
    const withLength = Buffer.from(await (await fetch(`${base}/zip`)).arrayBuffer());
    const res = await fetch(`${base}/zip?nolength`);
    assert.equal(res.headers.get('content-length'), null);
    const chunked = Buffer.from(await res.arrayBuffer());
    assert.equal(chunked.length, withLength.length);
    assert.deepEqual(
      readCentralDirectory(chunked).entries.map((e) => [e.name, e.crc32]),
      readCentralDirectory(withLength).entries.map((e) => [e.name, e.crc32]),
    );
  });

  for (const fail of ['open', 'stream', 'short']) {
    for (const nolength of [false, true]) {
      test(`failure mid-archive (${fail}${nolength ? ', chunked' : ''}): the client sees a broken download`, async () => {
        const res = await fetch(`${base}/zip?fail=${fail}${nolength ? '&nolength' : ''}`);
        assert.equal(res.status, 200);
        await assert.rejects(res.arrayBuffer());
        assert.equal(await (await fetch(`${base}/ping`)).text(), 'pong');
      });
    }
  }

  test('client abort mid-archive: open file closed, later entries never opened', async () => {
    tracker.opened.length = 0;
    const before = destroyed.length;
    const controller = new AbortController();
    const res = await fetch(`${base}/zip`, { signal: controller.signal });
    const reader = res.body?.getReader();
    assert.ok(reader);
    let received = 0;
    // Read into the 1 MiB entry (#2), then hang up.
    while (received < 200_000) {
      const chunk = (await reader.read()) as { done: boolean; value?: Uint8Array };
      if (chunk.done || !chunk.value) break;
      received += chunk.value.length;
    }
    controller.abort();
    await reader.read().catch(() => undefined);
    const deadline = Date.now() + 5000;
    while (tracker.active > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.equal(tracker.active, 0);
    assert.ok(destroyed.length > before);
    assert.ok(tracker.opened.length < layout.length - 4, `opened ${tracker.opened.length}`);
    assert.equal(await (await fetch(`${base}/ping`)).text(), 'pong');
  });
});

describe('zipStream in-process', { timeout: 120_000 }, () => {
  const archive = async (entries: ZipEntry[], options?: { forceZip64?: boolean }) =>
    collect(zipStream(entries, options));

  test('zipLength equals the real archive length in many shapes', async () => {
    const longName = (i: number) => `folder-${i % 7}/${'x'.repeat(60)}-${i}.dat`;
    const shapes: [string, ZipEntry[], boolean][] = [
      ['empty', [], false],
      [
        'folders only',
        [
          { path: 'a', folder: true, modifiedAt: mtime },
          { path: 'a/b', folder: true, modifiedAt: mtime },
        ],
        false,
      ],
      ['mixed', [memoryEntry('x/y.txt', random(1000)), memoryEntry('z', Buffer.alloc(0))], false],
      [
        'mixed, forced zip64',
        [memoryEntry('x/y.txt', random(1000)), { path: 'd', folder: true, modifiedAt: mtime }],
        true,
      ],
      // > 64 KiB of central directory (yazl's own size prediction is off by 76 bytes here).
      [
        '1500 entries',
        Array.from({ length: 1500 }, (_, i) => memoryEntry(longName(i), random(i % 50))),
        false,
      ],
    ];
    for (const [label, entries, forceZip64] of shapes) {
      const bytes = await archive(entries, { forceZip64 });
      assert.equal(zipLength(entries, { forceZip64 }), bytes.length, label);
      assert.equal(readCentralDirectory(bytes).entries.length, entries.length, label);
    }
  });

  test('65,535+ entries switch to ZIP64 end records and zipLength follows', async () => {
    const data = Buffer.from('z');
    const entries = Array.from({ length: 0x10000 }, (_, i) => memoryEntry(`f${i}`, data));
    const started = performance.now();
    const bytes = await archive(entries);
    const cd = readCentralDirectory(bytes);
    assert.equal(cd.zip64Eocd, true);
    assert.equal(cd.entries.length, 0x10000);
    assert.equal(zipLength(entries), bytes.length);
    assert.ok(performance.now() - started < 60_000);
  });

  test('forced ZIP64 on a small archive: unzip -t accepts it', async () => {
    await using work = await tempDir('zip64');
    const entries = [memoryEntry('a.txt', random(5000)), memoryEntry('日本/b.bin', random(70_000))];
    const bytes = await archive(entries, { forceZip64: true });
    const cd = readCentralDirectory(bytes);
    assert.equal(cd.zip64Eocd, true);
    assert.ok(cd.entries.every((e) => e.zip64Extra));
    await writeFile(join(work.path, 'z.zip'), bytes);
    const { stdout } = await unzip(['-t', 'z.zip'], work.path);
    assert.match(stdout, /No errors detected/);
  });

  test('a real > 4 GiB entry (generated zeros, never on disk) gets ZIP64 records', async (t) => {
    const size = 2 ** 32 + 1;
    const tailData = random(1000);
    const entries: ZipEntry[] = [
      { path: 'big.bin', size, modifiedAt: mtime, open: async () => synthetic(size, 0, true) },
      memoryEntry('after.txt', tailData),
    ];
    const TAIL = 64 * 1024;
    let tail: Buffer = Buffer.alloc(0);
    let total = 0;
    const started = performance.now();
    await pipeline(
      zipStream(entries),
      new Writable({
        highWaterMark: MiB,
        write(chunk: Buffer, _encoding, callback) {
          total += chunk.length;
          tail =
            chunk.length >= TAIL
              ? chunk.subarray(chunk.length - TAIL)
              : Buffer.concat([tail, chunk]).subarray(-TAIL);
          callback();
        },
      }),
    );
    t.diagnostic(`4 GiB + 1 through zipStream in ${((performance.now() - started) / 1000).toFixed(1)} s`);
    assert.equal(total, zipLength(entries));
    const cd = readCentralDirectory(Buffer.from(tail), total);
    assert.equal(cd.zip64Eocd, true);
    const [big, small] = cd.entries;
    assert.ok(big && small);
    assert.equal(big.zip64Extra, true);
    assert.equal(big.uncompressedSize, size);
    assert.equal(big.compressedSize, size);
    const zeros = Buffer.alloc(MiB);
    let crc = 0;
    for (let i = 0; i < 4096; i++) crc = crc32(zeros, crc);
    assert.equal(big.crc32, crc32(Buffer.alloc(1), crc));
    // The second entry starts past 4 GiB, so its offset needs ZIP64 too.
    assert.equal(small.zip64Extra, true);
    assert.ok(small.localHeaderOffset > 2 ** 32);
    assert.equal(small.crc32, crc32(tailData));
  });

  test('abort signal destroys the output with the reason and closes the open entry', async () => {
    const controller = new AbortController();
    let source: Readable | undefined;
    const out = zipStream(
      [
        {
          path: 'slow',
          size: 10 * MiB,
          modifiedAt: mtime,
          open: async () => (source = synthetic(10 * MiB)),
        },
      ],
      { signal: controller.signal },
    );
    const reason = new Error('user cancelled');
    out.once('data', () => controller.abort(reason));
    await assert.rejects(collect(out), (e) => e === reason);
    assert.ok(source?.destroyed);
  });

  test('already-aborted signal: output errors, nothing opened', async () => {
    let opened = false;
    const out = zipStream(
      [
        {
          path: 'a',
          size: 1,
          modifiedAt: mtime,
          open: async () => ((opened = true), Readable.from([Buffer.from('a')])),
        },
      ],
      { signal: AbortSignal.abort() },
    );
    await assert.rejects(collect(out));
    assert.equal(opened, false);
  });

  test('async iterable input and iterator failure', async () => {
    async function* good(): AsyncGenerator<ZipEntry> {
      yield memoryEntry('one', Buffer.from('1'));
      await new Promise((r) => setTimeout(r, 10));
      yield memoryEntry('two', Buffer.from('22'));
    }
    const bytes = await collect(zipStream(good()));
    assert.deepEqual(
      readCentralDirectory(bytes).entries.map((e) => e.name),
      ['one', 'two'],
    );
    async function* bad(): AsyncGenerator<ZipEntry> {
      yield memoryEntry('one', Buffer.from('1'));
      throw new Error('db went away');
    }
    await assert.rejects(collect(zipStream(bad())), /db went away/);
  });
});

describe('writeZip with positional readers', () => {
  /** Entries whose bytes come through BlobReaders, counting how many are open at once. */
  function readerEntries(
    datas: Buffer[],
    tracker: { open: number; max: number; opened: number },
  ): ZipEntry[] {
    return datas.map((data, i) => ({
      path: `r/${i}.bin`,
      size: data.length,
      modifiedAt: mtime,
      open: () => Promise.reject(new Error('the stream form must not be used')),
      openReader: async (): Promise<BlobReader> => {
        tracker.open++;
        tracker.opened++;
        tracker.max = Math.max(tracker.max, tracker.open);
        let closed = false;
        return {
          read: async (buffer, length, position) => {
            // Short reads (at most 70,000 bytes) exercise the writer's read loop.
            const n = Math.max(0, Math.min(length, 70_000, data.length - position));
            data.copy(buffer, 0, position, position + n);
            return n;
          },
          close: async () => {
            if (!closed) tracker.open--;
            closed = true;
          },
        };
      },
    }));
  }

  test('byte-identical to the stream form; a few readers ahead at most; all closed', async () => {
    const datas = Array.from({ length: 30 }, (_, i) => random(i === 7 ? 3 * MiB + 5 : 1 + i * 9_999));
    const tracker = { open: 0, max: 0, opened: 0 };
    const viaReaders = await collect(zipStream(readerEntries(datas, tracker)));
    const viaStreams = await collect(zipStream(datas.map((d, i) => memoryEntry(`r/${i}.bin`, d))));
    assert.equal(sha256(viaReaders), sha256(viaStreams));
    assert.equal(viaReaders.length, zipLength(readerEntries(datas, { open: 0, max: 0, opened: 0 })));
    assert.equal(tracker.opened, datas.length);
    assert.equal(tracker.open, 0);
    assert.ok(tracker.max >= 2 && tracker.max <= 5, `at most 5 open at once, saw ${tracker.max}`);
  });

  test('a sink that fails, or an abort: readers opened ahead are all closed, later ones never opened', async () => {
    const datas = Array.from({ length: 50 }, () => random(300_000));
    for (const how of ['sink', 'abort'] as const) {
      const tracker = { open: 0, max: 0, opened: 0 };
      const controller = new AbortController();
      let chunks = 0;
      await assert.rejects(
        writeZip(
          readerEntries(datas, tracker),
          {
            write(_chunk, done) {
              chunks++;
              if (chunks === 3 && how === 'sink') return done(new Error('socket gone'));
              if (chunks === 3) controller.abort(new Error('client went away'));
              setImmediate(() => done());
            },
          },
          { signal: controller.signal },
        ),
        how === 'sink' ? /socket gone/ : /client went away/,
      );
      assert.equal(tracker.open, 0, how);
      assert.ok(tracker.opened < 15, `${how}: opened ${tracker.opened} of 50`);
    }
  });

  test('a known CRC-32 is used as given; computed ones are reported once each', async () => {
    const datas = [random(5000), random(7000), Buffer.alloc(0)];
    const entries = readerEntries(datas, { open: 0, max: 0, opened: 0 });
    entries[0] = { ...entries[0]!, crc32: 0x12345678 } as ZipEntry;
    const reported: Array<[string, number]> = [];
    const chunks: Buffer[] = [];
    await writeZip(
      entries,
      { write: (chunk, done) => (chunks.push(chunk), done()) },
      { onCrc: (entry, crc) => reported.push([entry.path, crc]) },
    );
    const cd = readCentralDirectory(Buffer.concat(chunks));
    assert.deepEqual(
      cd.entries.map((e) => e.crc32),
      [0x12345678, crc32(datas[1]!), 0],
    );
    assert.deepEqual(reported, [['r/1.bin', crc32(datas[1]!)]]); // not the known one, not the empty one
  });

  test('a reader that comes up short breaks the archive', async () => {
    const entry = readerEntries([random(1000)], { open: 0, max: 0, opened: 0 })[0]!;
    await assert.rejects(
      collect(zipStream([{ ...entry, size: 5000 } as ZipEntry])),
      /unexpected number of bytes/,
    );
  });
});

test('ZipNamer: sanitising and de-duplication', () => {
  const namer = new ZipNamer();
  const file = (path: string) => namer.name({ path, size: 0, modifiedAt: mtime });
  const folder = (path: string) => namer.name({ path, folder: true, modifiedAt: mtime });
  assert.equal(file('a/b.txt'), 'a/b.txt');
  assert.equal(file('A/B.TXT'), 'a/B (1).TXT');
  assert.equal(file('a'), 'a (1)');
  assert.equal(folder('a'), 'a');
  assert.equal(folder('A/'), undefined);
  assert.equal(file('.hidden'), '.hidden');
  assert.equal(file('.hidden'), '.hidden (1)');
  assert.equal(file(''), 'unnamed');
  assert.equal(file('../..'), 'unnamed (1)');
  assert.equal(file('x\r\ny\u0000z'), 'x__y_z');
  assert.equal(file('D:/x'), 'D_/x');
  assert.equal(folder('/'), undefined);
  const long = `${'é'.repeat(300)}.mkv`;
  const cut = file(long) ?? '';
  assert.ok(Buffer.byteLength(cut) <= 255);
  assert.ok(cut.endsWith('é.mkv'));
});
