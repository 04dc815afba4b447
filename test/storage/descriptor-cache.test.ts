// The local driver's shared read descriptors (descriptor-cache.ts), checked against this
// process's real open files: shared and kept between readers, closed when the blob is deleted
// (its space is freed) or replaced (nobody reads the old bytes), bounded when many are idle.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readlink, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, test } from 'node:test';
import { LocalDiskDriver } from '../../src/storage/local.driver.ts';
import { BlobNotFoundError, type BlobReader } from '../../src/storage/port.ts';

let root: string;
let driver: LocalDiskDriver;

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'ferry-fdcache-'));
  driver = new LocalDiskDriver(root);
});

after(async () => {
  driver.descriptors.closeAllIdle();
  await rm(root, { recursive: true, force: true });
});

/** How many of this process's descriptors point at files under the driver's root. */
async function openUnderRoot(): Promise<number> {
  let n = 0;
  for (const fd of await readdir('/proc/self/fd')) {
    const target = await readlink(`/proc/self/fd/${fd}`).catch(() => '');
    if (target.startsWith(root)) n++;
  }
  return n;
}

async function readWhole(reader: BlobReader, size: number): Promise<Buffer> {
  const buffer = Buffer.alloc(size);
  let at = 0;
  while (at < size) {
    const n = await reader.read(buffer.subarray(at), size - at, at);
    if (n === 0) break;
    at += n;
  }
  return buffer.subarray(0, at);
}

const settle = () => new Promise((r) => setTimeout(r, 50));

test('readers of one blob share one descriptor, which stays open for the next reader', async () => {
  const data = randomBytes(100_000);
  await driver.write('blobs/shared', Readable.from([data]));
  const a = await driver.openReader('blobs/shared');
  const b = await driver.openReader('blobs/shared');
  assert.equal(await openUnderRoot(), 1);
  assert.deepEqual(await readWhole(a, data.length), data);
  assert.deepEqual(await readWhole(b, data.length), data);
  await a.close();
  await b.close();
  await assert.rejects(a.read(Buffer.alloc(10), 10, 0), /reader closed/);
  assert.equal(await openUnderRoot(), 1);
  const c = await driver.openReader('blobs/shared');
  assert.equal(await openUnderRoot(), 1);
  await c.close();
});

test('deleting a blob closes its descriptor at once, or after its last reader', async () => {
  const data = randomBytes(50_000);
  await driver.write('blobs/gone', Readable.from([data]));
  const idle = await driver.openReader('blobs/gone');
  await idle.close();
  const before = await openUnderRoot();
  await driver.delete('blobs/gone');
  await settle();
  assert.equal(await openUnderRoot(), before - 1);
  await assert.rejects(driver.openReader('blobs/gone'), BlobNotFoundError);

  await driver.write('blobs/busy', Readable.from([data]));
  const busy = await driver.openReader('blobs/busy');
  const count = await openUnderRoot();
  await driver.delete('blobs/busy');
  // The reader already open still reads what it opened; nobody new gets the deleted blob.
  assert.deepEqual(await readWhole(busy, data.length), data);
  await assert.rejects(driver.openReader('blobs/busy'), BlobNotFoundError);
  await busy.close();
  await settle();
  assert.equal(await openUnderRoot(), count - 1);
});

test('a replaced blob is read through a new descriptor, never the old bytes', async () => {
  const first = randomBytes(30_000);
  const second = randomBytes(30_000);
  await driver.write('blobs/replaced', Readable.from([first]));
  const r1 = await driver.openReader('blobs/replaced');
  assert.deepEqual(await readWhole(r1, first.length), first);
  await r1.close();
  await driver.write('blobs/replaced', Readable.from([second]));
  const r2 = await driver.openReader('blobs/replaced');
  assert.deepEqual(await readWhole(r2, second.length), second);
  await r2.close();
  // importFile replaces too.
  await driver.write('staged-source', Readable.from([first]));
  await driver.importFile('blobs/replaced', join(root, 'staged-source'));
  const r3 = await driver.openReader('blobs/replaced');
  assert.deepEqual(await readWhole(r3, first.length), first);
  await r3.close();
});

test('many blobs read once: idle descriptors are bounded', async () => {
  const data = randomBytes(1000);
  for (let i = 0; i < 100; i++) {
    await driver.write(`blobs/many-${i}`, Readable.from([data]));
    const r = await driver.openReader(`blobs/many-${i}`);
    await readWhole(r, data.length);
    await r.close();
  }
  await settle();
  const open = await openUnderRoot();
  assert.ok(open <= 64 + 2, `at most 64 idle descriptors (and this file's earlier ones), saw ${open}`);
  driver.descriptors.closeAllIdle();
  await settle();
  assert.equal(await openUnderRoot(), 0);
});
