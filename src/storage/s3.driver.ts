// S3-compatible storage (AWS S3, MinIO, Ceph RGW, Garage, R2…): blobs are objects under
// `<prefix><key>` in one bucket. Objects only appear when their upload completes — a single
// PUT, or a multipart upload's CompleteMultipartUpload — so a reader never sees half-written
// data; a failed or aborted upload is aborted on the server (no orphaned parts kept).
import { createReadStream } from 'node:fs';
import { rm, stat } from 'node:fs/promises';
import { Readable } from 'node:stream';
import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  S3Client,
  S3ServiceException,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { BlobNotFoundError, type BlobInfo, type ByteRange, type StorageDriver } from './port.ts';

export interface S3DriverOptions {
  /** e.g. http://127.0.0.1:9000; empty = AWS's own endpoint for the region. */
  endpoint?: string;
  region: string;
  bucket: string;
  accessKeyId?: string;
  secretAccessKey?: string;
  /** Path-style URLs (endpoint/bucket/key): what MinIO and most self-hosted stores want. */
  forcePathStyle: boolean;
  /** Prepended to every key, e.g. "ferry/". */
  prefix?: string;
  /** Multipart part size in bytes (min 5 MiB); larger files get larger parts (max 10,000 parts). */
  partSize?: number;
  /** Parts uploaded at once per upload. */
  queueSize?: number;
}

const MIN_PART = 5 * 1024 * 1024;
const MAX_PARTS = 10_000;

function isNotFound(e: unknown): boolean {
  if (e instanceof S3ServiceException) {
    return (
      e.$metadata.httpStatusCode === 404 ||
      e.name === 'NotFound' ||
      e.name === 'NoSuchKey' ||
      e.name === 'NoSuchBucket'
    );
  }
  return false;
}

/** The `length` bytes after the first `skip` of `source`; the rest is not read. */
function slice(source: Readable, skip: number, length: number): Readable {
  return Readable.from(
    (async function* () {
      let toSkip = skip;
      let left = length;
      try {
        for await (const chunk of source) {
          let buf = chunk as Buffer;
          if (toSkip > 0) {
            const dropped = Math.min(toSkip, buf.length);
            toSkip -= dropped;
            buf = buf.subarray(dropped);
          }
          if (buf.length === 0) continue;
          if (buf.length >= left) {
            yield buf.subarray(0, left);
            return;
          }
          left -= buf.length;
          yield buf;
        }
      } finally {
        source.destroy();
      }
      if (left > 0) throw new Error('S3 object ended before the requested range');
    })(),
    { objectMode: false },
  );
}

export class S3Driver implements StorageDriver {
  readonly name = 's3';
  readonly client: S3Client;
  private readonly bucket: string;
  private readonly prefix: string;
  private readonly partSize: number;
  private readonly queueSize: number;

  constructor(options: S3DriverOptions) {
    this.bucket = options.bucket;
    const prefix = (options.prefix ?? '').replace(/^\/+/, '');
    this.prefix = prefix && !prefix.endsWith('/') ? `${prefix}/` : prefix;
    this.partSize = Math.max(MIN_PART, options.partSize ?? 8 * 1024 * 1024);
    this.queueSize = Math.max(1, options.queueSize ?? 4);
    this.client = new S3Client({
      region: options.region,
      forcePathStyle: options.forcePathStyle,
      ...(options.endpoint ? { endpoint: options.endpoint } : {}),
      ...(options.accessKeyId && options.secretAccessKey
        ? {
            credentials: {
              accessKeyId: options.accessKeyId,
              secretAccessKey: options.secretAccessKey,
            },
          }
        : {}),
      // Only when the operation requires it: many S3-compatible stores mishandle the SDK's
      // default streaming checksums (aws-chunked trailers) and would store the framing bytes.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      // Each link being served holds one connection for as long as its client reads: allow
      // more than the SDK's 50, and fail a connect that hangs.
      requestHandler: {
        httpAgent: { keepAlive: true, maxSockets: 512 },
        httpsAgent: { keepAlive: true, maxSockets: 512 },
        connectionTimeout: 10_000,
      },
    });
  }

  private objectKey(key: string): string {
    if (
      !key ||
      key.startsWith('/') ||
      key.includes('\0') ||
      key.split('/').some((s) => s === '..' || s === '.')
    )
      throw new Error(`invalid blob key: ${key}`);
    return this.prefix + key;
  }

  /** Fails with a clear message when the bucket cannot be reached (called at startup). */
  async check(): Promise<void> {
    try {
      await this.client.send(new HeadBucketCommand({ Bucket: this.bucket }));
    } catch (e) {
      const status = e instanceof S3ServiceException ? e.$metadata.httpStatusCode : undefined;
      const why = status === 404 ? 'does not exist' : status === 403 ? 'access denied' : (e as Error).message;
      throw new Error(`S3 bucket "${this.bucket}" is not usable: ${why}`, { cause: e });
    }
  }

  async stat(key: string): Promise<BlobInfo> {
    try {
      const head = await this.client.send(
        new HeadObjectCommand({ Bucket: this.bucket, Key: this.objectKey(key) }),
      );
      return { key, size: head.ContentLength ?? 0, modifiedAt: head.LastModified ?? new Date(0) };
    } catch (e) {
      if (isNotFound(e)) throw new BlobNotFoundError(key);
      throw e;
    }
  }

  async read(key: string, range?: ByteRange): Promise<Readable> {
    try {
      const out = await this.client.send(
        new GetObjectCommand({
          Bucket: this.bucket,
          Key: this.objectKey(key),
          ...(range ? { Range: `bytes=${range.start}-${range.end}` } : {}),
        }),
      );
      const body = out.Body;
      if (!body) return Readable.from([]);
      // Node's handler gives an IncomingMessage; other runtimes a web stream.
      const stream =
        body instanceof Readable
          ? body
          : Readable.fromWeb(body.transformToWebStream() as import('node:stream/web').ReadableStream);
      if (!range) return stream;
      // Some stores answer a range with more than asked (a 200 with everything, or s3rver's
      // `bytes=0-0` read as `0-`): cut the answer down to exactly the range.
      const servedStart = Number(/^bytes (\d+)-/.exec(out.ContentRange ?? '')?.[1] ?? 0);
      const length = range.end - range.start + 1;
      if (servedStart === range.start && out.ContentLength === length) return stream;
      if (servedStart > range.start) {
        stream.destroy();
        throw new Error(`S3 answered ${out.ContentRange} to bytes=${range.start}-${range.end}`);
      }
      return slice(stream, range.start - servedStart, length);
    } catch (e) {
      if (isNotFound(e)) throw new BlobNotFoundError(key);
      throw e;
    }
  }

  async write(key: string, body: Readable, options?: { signal?: AbortSignal }): Promise<BlobInfo> {
    await this.upload(key, body, undefined, options?.signal);
    return this.stat(key);
  }

  async importFile(key: string, path: string): Promise<BlobInfo> {
    const info = await this.linkFile(key, path);
    await rm(path, { force: true });
    return info;
  }

  async linkFile(key: string, path: string): Promise<BlobInfo> {
    const { size } = await stat(path);
    await this.upload(key, createReadStream(path, { highWaterMark: 1024 * 1024 }), size);
    return this.stat(key);
  }

  async delete(key: string): Promise<void> {
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.objectKey(key) }));
    } catch (e) {
      if (!isNotFound(e)) throw e;
    }
  }

  /**
   * One upload: a single PUT when the body fits in one part, else a multipart upload that is
   * completed only after every part is stored and aborted on any error.
   */
  private async upload(key: string, body: Readable, size: number | undefined, signal?: AbortSignal) {
    signal?.throwIfAborted();
    const partSize =
      size === undefined ? this.partSize : Math.max(this.partSize, Math.ceil(size / MAX_PARTS));
    const upload = new Upload({
      client: this.client,
      params: { Bucket: this.bucket, Key: this.objectKey(key), Body: body },
      partSize,
      queueSize: this.queueSize,
      leavePartsOnError: false,
    });
    // The SDK keeps reading a source that failed unless told: stop the upload on a source error.
    let sourceError: Error | undefined;
    const onError = (e: unknown) => {
      sourceError ??= e instanceof Error ? e : new Error(String(e));
      void upload.abort();
    };
    const onAbort = () => onError(signal?.reason ?? new Error('aborted'));
    body.once('error', onError);
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      await upload.done();
    } catch (e) {
      throw sourceError ?? e;
    } finally {
      body.off('error', onError);
      signal?.removeEventListener('abort', onAbort);
      body.destroy();
    }
    if (sourceError) {
      // Completed before the error surfaced (cannot normally happen): do not keep it.
      await this.delete(key).catch(() => undefined);
      throw sourceError;
    }
  }
}
