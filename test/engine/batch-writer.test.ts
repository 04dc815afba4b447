// BatchWriter against a real file: whatever the chunk sizes or the rate, the bytes land at their
// offsets exactly.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, open, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BatchWriter, type CoarseClock } from '../../src/downloaders/http/batch-writer.ts';

async function withFile(fn: (path: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'ferry-batch-'));
  try {
    await fn(join(dir, 'part'));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

test('fast writer: chunks of every size land byte-exact across batch boundaries, flushes in order', async () => {
  await withFile(async (path) => {
    const data = randomBytes(5 * 1024 * 1024 + 333);
    const fh = await open(path, 'w');
    try {
      const writer = new BatchWriter(fh, 1024 * 1024);
      const flushed: number[] = [];
      writer.begin(0, (end) => flushed.push(end));
      let off = 0;
      let step = 1;
      while (off < data.length) {
        const n = Math.min(step, data.length - off);
        await writer.push(data.subarray(off, off + n));
        off += n;
        step = (step * 7 + 13) % 300_000; // 1 byte up to ~300 KiB, crossing every boundary
      }
      await writer.drain();
      assert.deepEqual(
        flushed,
        [...flushed].sort((a, b) => a - b),
        'flushed offsets only grow',
      );
      assert.equal(flushed.at(-1), data.length);
    } finally {
      await fh.close();
    }
    assert.ok((await readFile(path)).equals(data));
  });
});

test('slow writer: small batches written by age, at an offset, and a second run after drain', async () => {
  await withFile(async (path) => {
    const data = randomBytes(400 * 1024);
    const fh = await open(path, 'w');
    const clock: CoarseClock = { now: 0 };
    try {
      const writer = new BatchWriter(fh, 1024 * 1024, clock, 100);
      const flushed: number[] = [];
      writer.begin(1000, (end) => flushed.push(end));
      for (let off = 0; off < 200 * 1024; off += 4096) {
        await writer.push(data.subarray(off, off + 4096));
        clock.now += 10; // 4 KiB every 10 ms: a batch goes out every 100 ms, long before it fills
        await new Promise((r) => setTimeout(r, 1)); // let the write in flight finish, as on a network
      }
      await writer.drain();
      assert.ok(flushed.length >= 5, `age flushes happened (${flushed.length})`);
      assert.equal(flushed.at(-1), 1000 + 200 * 1024);
      // A second contiguous run elsewhere in the file.
      writer.begin(1000 + 200 * 1024, () => undefined);
      await writer.push(data.subarray(200 * 1024));
      await writer.drain();
    } finally {
      await fh.close();
    }
    const onDisk = await readFile(path);
    assert.ok(onDisk.subarray(1000).equals(data));
    assert.ok(onDisk.subarray(0, 1000).equals(Buffer.alloc(1000)));
  });
});
