// Local-disk storage: blobs are files under <root>. Writes go to a temp file in the same
// tree and are renamed into place after fsync, so a reader never sees half-written data.
import {
  close as closeCallback,
  createReadStream,
  createWriteStream,
  open as openCallback,
  read as readCallback,
} from 'node:fs';
import { promisify } from 'node:util';
import { copyFile, link, mkdir, open, rename, rm, stat } from 'node:fs/promises';
import { randomUUID } from 'node:crypto';
import { dirname, join, resolve, sep } from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Readable } from 'node:stream';
import {
  BlobNotFoundError,
  type BlobInfo,
  type BlobReader,
  type ByteRange,
  type StorageDriver,
} from './port.ts';
import { DescriptorCache } from './descriptor-cache.ts';

const openFd = promisify(openCallback);
const closeFd = promisify(closeCallback);
const isMissing = (e: unknown) => (e as NodeJS.ErrnoException).code === 'ENOENT';

export class LocalDiskDriver implements StorageDriver {
  readonly name = 'local';
  private readonly root: string;
  private readonly tempDir: string;

  /** Shared by openReader; evicted whenever a key's file is replaced or deleted. */
  readonly descriptors = new DescriptorCache(
    (key) => this.openExisting(key),
    (fd) => closeFd(fd).catch(() => undefined),
  );

  constructor(root: string) {
    this.root = resolve(root);
    this.tempDir = join(this.root, '.tmp');
  }

  private pathOf(key: string): string {
    const full = resolve(this.root, key);
    if (!full.startsWith(this.root + sep) || key.includes('\0')) throw new Error(`invalid blob key: ${key}`);
    return full;
  }

  async stat(key: string): Promise<BlobInfo> {
    try {
      const s = await stat(this.pathOf(key));
      return { key, size: s.size, modifiedAt: s.mtime };
    } catch (e) {
      if (isMissing(e)) throw new BlobNotFoundError(key);
      throw e;
    }
  }

  async read(key: string, range?: ByteRange): Promise<Readable> {
    // Open first so a missing blob fails here, not later as a stream error mid-response. A plain
    // descriptor, not a FileHandle: FileHandle-backed streams read ~1.7× slower (bench/serving.ts).
    const fd = await this.openExisting(key);
    // 1 MiB reads: a single stream ran ~1.4× faster than with 256 KiB (fewer thread-pool round
    // trips per byte); a short range still allocates only what it asks for.
    return createReadStream('', {
      fd,
      autoClose: true,
      highWaterMark: 1024 * 1024,
      ...(range ? { start: range.start, end: range.end } : {}),
    });
  }

  async openReader(key: string): Promise<BlobReader> {
    // Readers share a cached descriptor (descriptor-cache.ts): no open/close per Range request.
    const shared = await this.descriptors.acquire(key);
    const fd = shared.fd;
    let closed = false;
    return {
      read: (buffer, length, position) =>
        new Promise<number>((resolve, reject) => {
          if (closed) return reject(new Error('reader closed'));
          readCallback(fd, buffer, 0, length, position, (err, n) => (err ? reject(err) : resolve(n)));
        }),
      close: () => {
        closed = true;
        shared.release();
        return Promise.resolve();
      },
    };
  }

  localFile(key: string): string {
    return this.pathOf(key);
  }

  /** A read-only descriptor of the blob; BlobNotFoundError when it is missing. */
  private async openExisting(key: string): Promise<number> {
    try {
      return await openFd(this.pathOf(key), 'r');
    } catch (e) {
      if (isMissing(e)) throw new BlobNotFoundError(key);
      throw e;
    }
  }

  async write(key: string, body: Readable, options?: { signal?: AbortSignal }): Promise<BlobInfo> {
    const target = this.pathOf(key);
    await mkdir(this.tempDir, { recursive: true });
    const temp = join(this.tempDir, randomUUID());
    try {
      const out = createWriteStream(temp, { flags: 'wx', highWaterMark: 1024 * 1024 });
      await pipeline(body, out, options?.signal ? { signal: options.signal } : {});
      await this.fsyncFile(temp);
      await mkdir(dirname(target), { recursive: true });
      await rename(temp, target);
    } catch (e) {
      await rm(temp, { force: true });
      throw e;
    } finally {
      this.descriptors.evict(key);
    }
    return this.stat(key);
  }

  async importFile(key: string, path: string): Promise<BlobInfo> {
    const target = this.pathOf(key);
    await mkdir(dirname(target), { recursive: true });
    try {
      await rename(path, target);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EXDEV') throw e;
      // Different filesystem: copy in, then drop the original.
      await this.copyIn(path, target);
      await rm(path, { force: true });
    } finally {
      this.descriptors.evict(key);
    }
    return this.stat(key);
  }

  async linkFile(key: string, path: string): Promise<BlobInfo> {
    const target = this.pathOf(key);
    await mkdir(dirname(target), { recursive: true });
    await rm(target, { force: true });
    this.descriptors.evict(key);
    try {
      await link(path, target);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'EXDEV' && code !== 'EPERM' && code !== 'ENOTSUP') throw e;
      await this.copyIn(path, target);
    } finally {
      this.descriptors.evict(key);
    }
    return this.stat(key);
  }

  /** Copies to a temp name in our tree, fsyncs, then renames into place atomically. */
  private async copyIn(path: string, target: string): Promise<void> {
    await mkdir(this.tempDir, { recursive: true });
    const temp = join(this.tempDir, randomUUID());
    try {
      await copyFile(path, temp);
      await this.fsyncFile(temp);
      await rename(temp, target);
    } catch (e) {
      await rm(temp, { force: true });
      throw e;
    }
  }

  async delete(key: string): Promise<void> {
    const path = this.pathOf(key);
    this.descriptors.evict(key);
    await rm(path, { force: true });
  }

  private async fsyncFile(path: string): Promise<void> {
    const fh = await open(path, 'r+');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  }
}
