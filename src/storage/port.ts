// The storage port: where blob bytes live. Keys are opaque strings chosen by the caller
// (e.g. "blobs/ab/abcdef..."), always relative, never from user input.
import type { Readable } from 'node:stream';

export interface BlobInfo {
  key: string;
  size: number;
  modifiedAt: Date;
}

export interface ByteRange {
  /** inclusive */
  start: number;
  /** inclusive */
  end: number;
}

export class BlobNotFoundError extends Error {
  constructor(key: string) {
    super(`blob not found: ${key}`);
  }
}

/** Positional reads of one blob, for callers that bring their own (reused) buffers. */
export interface BlobReader {
  /** Reads up to `length` bytes at `position` into `buffer`; returns how many (0 at the end). */
  read(buffer: Buffer, length: number, position: number): Promise<number>;
  /** Idempotent. */
  close(): Promise<void>;
}

export interface StorageDriver {
  readonly name: string;
  /** Throws BlobNotFoundError when missing. */
  stat(key: string): Promise<BlobInfo>;
  /** A stream of the whole blob or one inclusive range. Throws BlobNotFoundError when missing. */
  read(key: string, range?: ByteRange): Promise<Readable>;
  /**
   * Optional: positional reads into the caller's buffers (local disk). Serving a large file
   * through reused buffers spares the garbage collector a fresh buffer per chunk, which in a
   * process with a large heap halved throughput (bench/serving.ts). Throws BlobNotFoundError.
   */
  openReader?(key: string): Promise<BlobReader>;
  /**
   * Optional: the blob's file on this machine's disk (local disk), for work done off the main
   * thread (zip archives read on a worker thread). Does not check that the file exists.
   */
  localFile?(key: string): string;
  /**
   * Stores a stream under key. The blob is not visible under `key` until the stream has ended
   * and been flushed; on error or abort nothing is left behind.
   */
  write(key: string, body: Readable, options?: { signal?: AbortSignal }): Promise<BlobInfo>;
  /**
   * Moves a complete local file (e.g. a finished download in staging) into storage under key.
   * Local disk renames it (no copy) when on the same filesystem; same visibility rule as write.
   */
  importFile(key: string, path: string): Promise<BlobInfo>;
  /**
   * Stores a complete local file that must stay where it is (a torrent still seeding from it).
   * Local disk hard-links it (no second copy on disk) and falls back to a copy.
   */
  linkFile(key: string, path: string): Promise<BlobInfo>;
  /** Idempotent. */
  delete(key: string): Promise<void>;
}
