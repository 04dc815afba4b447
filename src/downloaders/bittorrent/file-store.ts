// The chunk store webtorrent writes pieces through (abstract-chunk-store interface: get / put /
// close / destroy with callbacks). It replaces webtorrent's default fs-chunk-store, which joins
// the torrent's own paths onto the download folder (`..` walks out of it). Here every file path
// is one of our sanitized relative paths, resolved under the store root and checked to stay
// inside it; files are created only when a piece touching them is written.

import { mkdir, open, type FileHandle } from 'node:fs/promises';
import { dirname, isAbsolute, relative, resolve, sep } from 'node:path';

export interface StoreFile {
  /** Sanitized relative path, '/'-separated. */
  name: string;
  length: number;
  /** Byte offset of the file in the torrent's concatenated content. */
  offset: number;
}

type Callback<T = void> = (err: Error | null, value?: T) => void;

interface OpenFile extends StoreFile {
  path: string;
  handle: Promise<FileHandle> | null;
}

/** Absolute path of `name` under `root`; throws if it would leave `root`. */
export function containedPath(root: string, name: string): string {
  const abs = resolve(root, ...name.split('/'));
  const rel = relative(root, abs);
  if (rel === '' || rel.startsWith('..') || isAbsolute(rel) || rel.split(sep).includes('..')) {
    throw new Error(`path escapes the download folder: ${name}`);
  }
  return abs;
}

export class TorrentFileStore {
  readonly chunkLength: number;
  readonly root: string;
  readonly #files: OpenFile[];
  readonly #length: number;
  closed = false;

  constructor(chunkLength: number, root: string, files: StoreFile[]) {
    this.chunkLength = chunkLength;
    this.root = resolve(root);
    this.#files = files.map((f) => ({ ...f, path: containedPath(this.root, f.name), handle: null }));
    this.#length = files.reduce((s, f) => s + f.length, 0);
  }

  #handle(file: OpenFile, create: boolean): Promise<FileHandle | null> {
    if (file.handle !== null) return file.handle;
    const opening = (async () => {
      let h: FileHandle;
      try {
        h = await open(file.path, 'r+');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || !create) throw err;
        await mkdir(dirname(file.path), { recursive: true });
        h = await open(file.path, 'w+');
      }
      if (this.closed) {
        await h.close();
        throw new Error('Storage is closed');
      }
      return h;
    })();
    if (!create) {
      // Don't remember a failed read-only open: the file may be created by a later write.
      return opening.then(
        async (h) => {
          if (file.handle === null) {
            file.handle = Promise.resolve(h);
            return h;
          }
          await h.close();
          return file.handle;
        },
        (err: NodeJS.ErrnoException) => {
          if (err.code === 'ENOENT') return null;
          throw err;
        },
      );
    }
    file.handle = opening;
    opening.catch(() => {
      if (file.handle === opening) file.handle = null;
    });
    return opening;
  }

  /** Files overlapping torrent bytes [start, end), with the overlap in file coordinates. */
  *#targets(start: number, end: number): Generator<{ file: OpenFile; from: number; to: number; at: number }> {
    for (const file of this.#files) {
      if (file.length === 0) continue;
      const a = Math.max(start, file.offset);
      const b = Math.min(end, file.offset + file.length);
      if (a < b) yield { file, from: a - file.offset, to: b - file.offset, at: a - start };
    }
  }

  put(index: number, buf: Uint8Array, cb: Callback = () => {}): void {
    if (this.closed) {
      queueMicrotask(() => cb(new Error('Storage is closed')));
      return;
    }
    const start = index * this.chunkLength;
    const end = Math.min(start + buf.length, this.#length);
    const writes = [...this.#targets(start, end)].map(async ({ file, from, to, at }) => {
      const h = await this.#handle(file, true);
      if (h === null) throw new Error(`cannot open ${file.name}`);
      let done = 0;
      while (done < to - from) {
        const { bytesWritten } = await h.write(buf, at + done, to - from - done, from + done);
        done += bytesWritten;
      }
    });
    Promise.all(writes).then(
      () => cb(null),
      (err: Error) => cb(err),
    );
  }

  get(index: number, opts: unknown, cb?: Callback<Uint8Array>): void {
    const callback = (typeof opts === 'function' ? opts : cb) as Callback<Uint8Array>;
    const o = (typeof opts === 'object' && opts !== null ? opts : {}) as { offset?: number; length?: number };
    if (this.closed) {
      queueMicrotask(() => callback(new Error('Storage is closed')));
      return;
    }
    const pieceStart = index * this.chunkLength;
    const pieceLen = Math.min(this.chunkLength, this.#length - pieceStart);
    const offset = o.offset ?? 0;
    const length = o.length ?? pieceLen - offset;
    const start = pieceStart + offset;
    const out = Buffer.alloc(Math.max(0, length));
    const reads = [...this.#targets(start, start + length)].map(async ({ file, from, to, at }) => {
      const h = await this.#handle(file, false);
      if (h === null) throw new Error(`missing ${file.name}`);
      let done = 0;
      while (done < to - from) {
        const { bytesRead } = await h.read(out, at + done, to - from - done, from + done);
        if (bytesRead === 0) throw new Error(`short read in ${file.name}`);
        done += bytesRead;
      }
    });
    Promise.all(reads).then(
      () => callback(null, out),
      (err: Error) => callback(err),
    );
  }

  close(cb: Callback = () => {}): void {
    this.closed = true;
    const handles = this.#files.map((f) => f.handle).filter((h) => h !== null);
    for (const f of this.#files) f.handle = null;
    Promise.allSettled(handles.map(async (h) => (await h).close())).then(
      () => cb(null),
      () => cb(null),
    );
  }

  destroy(cb: Callback = () => {}): void {
    this.close(cb);
  }
}
