// The built-in segmented HTTP(S) engine.
//
// One probe GET with `Range: bytes=<first missing>-` decides everything: a 206 with a total means
// ranges work; anything else falls back to one sequential stream. With ranges, the probe's
// answer becomes the first segment's stream when that segment is all of it (no extra round trip);
// when the first segment is shorter, the probe's body is dropped and the engine's own HTTP/1.1
// client fetches every segment, the first too. Ranged downloads are cut into one
// segment per connection; a connection that finishes steals the second half of the largest
// range still in flight (never below `minSegmentSize`), so no connection idles at the tail.
// Bytes go to a preallocated `.part` file with batched positional writes. The segment map and
// validators (ETag / Last-Modified) are checkpointed about once a second; a resumed job asks for
// the missing ranges with If-Range, and starts over if the remote changed.
//
// Compression: we always send `Accept-Encoding: identity`. If an origin still sends a
// Content-Encoding, the length and ranges refer to the encoded bytes, so we use one stream and
// store the decoded content (what a browser saves, and what the user wants: the file, not a
// transport wrapper) — except when the resource is itself a gzip file (name ends in .gz/.tgz or
// the type is application/gzip), where decoding would strip the archive's own compression.

import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import type { IncomingHttpHeaders } from 'node:http';
import { join } from 'node:path';
import { pipeline, type Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { createBrotliDecompress, createGunzip, createInflate } from 'node:zlib';
import type { OutboundPolicy } from '../../net/address-policy.ts';
import { parseSourceUrl, SafeDialer, type Resolver } from '../../net/safe-dial.ts';
import {
  DownloadFailure,
  type DownloadJob,
  type DownloadOutcome,
  type DownloadSource,
  type Downloader,
  type HttpSource,
} from '../port.ts';
import { BatchWriter, type CoarseClock } from './batch-writer.ts';
import {
  GO,
  Http1Connection,
  PAUSE,
  STOP,
  type BodySink,
  type ResponseHead,
  type Verdict,
} from './http1-connection.ts';
import {
  backoffMs,
  connectFailure,
  ContentChangedError,
  HttpStatusError,
  isPolitenessSignal,
  parseRetryAfter,
  StallError,
  tlsFailure,
  toFailure,
} from './errors.ts';
import { deriveFileName } from './file-name.ts';
import { throttle, TokenBucket } from './rate-limiter.ts';
import { Segment, SegmentPlan, type ByteRange } from './segments.ts';

export interface HttpDownloaderOptions {
  policy: OutboundPolicy;
  /** Shared limit for all downloads of this engine, bytes/s; 0 or absent = none. */
  globalSpeedLimit?: number;
  /** A connection that receives nothing for this long is dropped and its range retried. Default 20 s. */
  stallTimeoutMs?: number;
  userAgent?: string;
  /** DNS resolver (tests inject one); default dns.lookup. */
  resolve?: Resolver;
  /** Certificates trusted for https origins (Node's roots plus `--ca-file`); absent = Node's defaults. */
  ca?: readonly string[];
  retry?: {
    /** Failed attempts per range (without 64 KiB of progress between them) before giving up. Default 6. */
    attempts?: number;
    baseDelayMs?: number;
    maxDelayMs?: number;
    /** Retry-After is honoured up to this bound. Default 60 s. */
    maxRetryAfterMs?: number;
  };
  /** Smallest piece a range is split into. Default 1 MiB. */
  minSegmentSize?: number;
  /** A range is split for an idle connection only if it would take longer than this. Default 400 ms. */
  minStealMs?: number;
  /** Upper bound on job.connections. Default 64. */
  maxConnections?: number;
  /** Bytes gathered per connection before one positional write (two such buffers per connection). Default 1 MiB. */
  writeBatchBytes?: number;
  /**
   * Segment requests after the probe use the engine's own HTTP/1.1 client (default true); false
   * sends them through undici like the probe.
   */
  rawSegments?: boolean;
  /** Checkpoint period. Default 1000 ms. */
  checkpointIntervalMs?: number;
  /**
   * A background fdatasync is started whenever this many bytes arrived since the last one, so
   * the sync at the end finds little left to flush. 0 = only checkpoints sync. Default 32 MiB.
   */
  syncEveryBytes?: number;
}

/** What `checkpoint` stores; opaque to callers. */
export interface HttpResumeState {
  v: 1;
  url: string;
  name: string;
  total: number | null;
  ranges: boolean;
  etag: string | null;
  lastModified: string | null;
  /** Finished byte ranges [start, end) of the `.part` file. */
  done: ByteRange[];
}

interface Resolved {
  attempts: number;
  baseDelayMs: number;
  maxDelayMs: number;
  maxRetryAfterMs: number;
  stallTimeoutMs: number;
  minSegmentSize: number;
  minStealMs: number;
  maxConnections: number;
  writeBatchBytes: number;
  checkpointIntervalMs: number;
  userAgent: string;
  rawSegments: boolean;
  syncEveryBytes: number;
}

const PART_FILE = '.ferry-http.part';
const REDIRECTS = new Set([301, 302, 303, 307, 308]);
/** Bytes one attempt on a range must deliver before its failure count starts again. */
const PROGRESS_FORGIVES_BYTES = 64 * 1024;

export class HttpDownloader implements Downloader {
  readonly name = 'http';
  readonly #options: HttpDownloaderOptions;
  readonly #resolved: Resolved;
  readonly #global: TokenBucket | null;

  constructor(options: HttpDownloaderOptions) {
    this.#options = options;
    this.#global =
      options.globalSpeedLimit !== undefined && options.globalSpeedLimit > 0
        ? new TokenBucket(options.globalSpeedLimit)
        : null;
    this.#resolved = {
      attempts: options.retry?.attempts ?? 6,
      baseDelayMs: options.retry?.baseDelayMs ?? 500,
      maxDelayMs: options.retry?.maxDelayMs ?? 15_000,
      maxRetryAfterMs: options.retry?.maxRetryAfterMs ?? 60_000,
      stallTimeoutMs: options.stallTimeoutMs ?? 20_000,
      minSegmentSize: options.minSegmentSize ?? 1024 * 1024,
      minStealMs: options.minStealMs ?? 400,
      maxConnections: options.maxConnections ?? 64,
      writeBatchBytes: options.writeBatchBytes ?? 1024 * 1024,
      checkpointIntervalMs: options.checkpointIntervalMs ?? 1000,
      userAgent: options.userAgent ?? 'Ferry/0.1',
      rawSegments: options.rawSegments ?? true,
      syncEveryBytes: options.syncEveryBytes ?? 32 * 1024 * 1024,
    };
  }

  canHandle(source: DownloadSource): boolean {
    return source.kind === 'http' && /^https?:\/\//i.test(source.url);
  }

  async download(job: DownloadJob): Promise<DownloadOutcome> {
    const run = new DownloadRun(job, this.#options, this.#resolved, this.#global);
    return run.run();
  }
}

// ---------------------------------------------------------------------------------------------

interface ContentRange {
  start: number;
  end: number; // exclusive
  total: number | null;
}

function header(headers: IncomingHttpHeaders, name: string): string | undefined {
  const v = headers[name];
  return Array.isArray(v) ? v[0] : v;
}

function parseContentRange(value: string | undefined): ContentRange | null {
  if (value === undefined) return null;
  const m = /^bytes\s+(\d+)-(\d+)\/(\d+|\*)$/i.exec(value.trim());
  if (!m) return null;
  const start = Number(m[1]);
  const end = Number(m[2]) + 1;
  const total = m[3] === '*' ? null : Number(m[3]);
  if (end <= start || (total !== null && end > total)) return null;
  return { start, end, total };
}

function parseLength(value: string | undefined): number | null {
  if (value === undefined || !/^\d+$/.test(value.trim())) return null;
  return Number(value.trim());
}

function strongEtag(etag: string | null): string | null {
  return etag !== null && !etag.startsWith('W/') ? etag : null;
}

function parseResume(raw: unknown, url: string): HttpResumeState | null {
  if (typeof raw !== 'object' || raw === null) return null;
  const s = raw as Partial<HttpResumeState>;
  if (s.v !== 1 || s.url !== url || s.ranges !== true || typeof s.total !== 'number') return null;
  if (typeof s.name !== 'string' || !Array.isArray(s.done)) return null;
  if (strongEtag(s.etag ?? null) === null && typeof s.lastModified !== 'string') return null;
  const done = s.done.filter(
    (r): r is ByteRange =>
      Array.isArray(r) && r.length === 2 && Number.isSafeInteger(r[0]) && Number.isSafeInteger(r[1]),
  );
  return { ...(s as HttpResumeState), done };
}

function keepEncoded(name: string, contentType: string | undefined): boolean {
  if (/\.(gz|tgz|gzip|br|zst|z)$/i.test(name)) return true;
  return /^application\/(x-)?(gzip|gtar|compressed-tar)/i.test(contentType ?? '');
}

function decoderFor(encoding: string): NodeJS.ReadWriteStream | null {
  switch (encoding) {
    case 'gzip':
    case 'x-gzip':
      return createGunzip();
    case 'deflate':
      return createInflate();
    case 'br':
      return createBrotliDecompress();
    default:
      return null;
  }
}

interface Worker {
  id: number;
  /** An AbortController for the request in flight (the stall watchdog aborts it). */
  ctl: AbortController | null;
  lastActivity: number;
  /** Waiting on purpose (speed limit, backoff): the watchdog leaves it alone. */
  paused: boolean;
  connected: boolean;
  writer: BatchWriter;
  /** The worker's own keep-alive connection for segment requests (raw client). */
  conn: Http1Connection | null;
  /** `conn.reads` when the watchdog last looked (reads since then count as activity). */
  readsSeen: number;
}

interface Probe {
  /** Aborts the probe request (the stall watchdog of whoever reads the body uses it). */
  ctl: AbortController;
  url: URL;
  headers: IncomingHttpHeaders;
  body: Readable;
  status: number;
  range: ContentRange | null;
}

class DownloadRun {
  readonly job: DownloadJob;
  /** The job's source, known to be HTTP (canHandle checked it). */
  readonly source: HttpSource;
  readonly opts: Resolved;
  readonly dialer: SafeDialer;
  /** Aborted on cancel / timeout, with the DownloadFailure as reason. */
  readonly ctl = new AbortController();
  readonly buckets: TokenBucket[] = [];
  readonly partPath: string;
  readonly maxConnections: number;

  fh: FileHandle | null = null;
  url!: URL;
  name = 'download';
  total: number | null = null;
  ranges = false;
  etag: string | null = null;
  lastModified: string | null = null;
  plan: SegmentPlan | null = null;
  downloaded = 0;
  hasher: Hash | null = null;

  // per attempt
  attemptCtl = new AbortController();
  signal: AbortSignal = this.ctl.signal;
  readonly workers = new Set<Worker>();
  #workerSeq = 0;
  #idle: (() => void) | null = null;
  target = 1;
  #lastSlowDown = 0;
  #lastSpeedUp = 0;
  #ticker: NodeJS.Timeout | null = null;
  #checkpointing: Promise<void> | null = null;
  #lastCheckpoint = 0;
  #lastProgress = 0;
  #samples: [number, number][] = [];
  /** Advanced by the ticker; batch writers use it to write out batches that got old. */
  readonly clock: CoarseClock = { now: performance.now() };
  /** Background fdatasync in flight (awaited before the file is closed). */
  #syncing: Promise<void> | null = null;
  /** `downloaded` when the next background sync is due. */
  #nextSyncAt = Infinity;

  constructor(
    job: DownloadJob,
    options: HttpDownloaderOptions,
    resolved: Resolved,
    global: TokenBucket | null,
  ) {
    this.job = job;
    if (job.source.kind !== 'http') throw new DownloadFailure('INVALID_URL', 'not an HTTP source');
    this.source = job.source;
    this.opts = resolved;
    this.maxConnections = Math.max(1, Math.min(Math.floor(job.connections) || 1, resolved.maxConnections));
    this.dialer = new SafeDialer({
      policy: options.policy,
      connections: this.maxConnections,
      ...(options.resolve === undefined ? {} : { resolve: options.resolve }),
      ...(options.ca === undefined ? {} : { ca: options.ca }),
    });
    if (job.speedLimit > 0) this.buckets.push(new TokenBucket(job.speedLimit));
    if (global !== null) this.buckets.push(global);
    this.partPath = join(job.stagingDir, PART_FILE);
  }

  abort(reason: DownloadFailure): void {
    if (!this.ctl.signal.aborted) this.ctl.abort(reason);
  }

  async run(): Promise<DownloadOutcome> {
    const { job } = this;
    if (job.signal.aborted) throw new DownloadFailure('CANCELED', 'download canceled');
    const onAbort = (): void => this.abort(new DownloadFailure('CANCELED', 'download canceled'));
    job.signal.addEventListener('abort', onAbort, { once: true });
    const timer =
      job.timeoutMs > 0
        ? setTimeout(
            () =>
              this.abort(
                new DownloadFailure('TIMEOUT', `download did not finish within ${job.timeoutMs} ms`),
              ),
            job.timeoutMs,
          )
        : null;
    try {
      const start = parseSourceUrl(this.source.url);
      let resume = parseResume(job.resume, this.source.url);
      for (let restart = 0; ; restart++) {
        try {
          return await this.attempt(start, resume);
        } catch (err) {
          if (err instanceof ContentChangedError && restart < 2 && !this.ctl.signal.aborted) {
            resume = null;
            continue;
          }
          throw err;
        }
      }
    } catch (err) {
      const reason: unknown = this.ctl.signal.reason;
      if (this.ctl.signal.aborted && reason instanceof DownloadFailure) throw reason;
      throw toFailure(err);
    } finally {
      if (timer !== null) clearTimeout(timer);
      job.signal.removeEventListener('abort', onAbort);
      this.stopTicker();
      await this.closeFile();
      await this.dialer.close().catch(() => undefined);
    }
  }

  /** Starts a background fdatasync when enough bytes arrived since the last one. */
  maybeSync(): void {
    if (this.downloaded < this.#nextSyncAt || this.#syncing !== null) return;
    const fh = this.fh;
    if (fh === null) return;
    this.#nextSyncAt = this.downloaded + this.opts.syncEveryBytes;
    // Errors are left to the final sync, which reports them.
    this.#syncing = fh.datasync().then(
      () => {
        this.#syncing = null;
      },
      () => {
        this.#syncing = null;
      },
    );
  }

  async closeFile(): Promise<void> {
    if (this.#syncing !== null) await this.#syncing;
    const fh = this.fh;
    this.fh = null;
    if (fh !== null) await fh.close().catch(() => undefined);
  }

  baseHeaders(): Record<string, string> {
    const h: Record<string, string> = { 'user-agent': this.opts.userAgent };
    for (const [k, v] of Object.entries(this.source.headers ?? {})) {
      const key = k.toLowerCase();
      if (['host', 'range', 'if-range', 'accept-encoding', 'connection', 'content-length'].includes(key)) {
        continue;
      }
      h[key] = v;
    }
    h['accept-encoding'] = 'identity';
    return h;
  }

  /** Sleeps `ms` unless the attempt is aborted (then throws). */
  async pause(ms: number): Promise<void> {
    if (ms > 0) await sleep(ms, undefined, { signal: this.signal });
  }

  // -------------------------------------------------------------------------------------------

  async attempt(start: URL, resumeIn: HttpResumeState | null): Promise<DownloadOutcome> {
    this.attemptCtl = new AbortController();
    this.signal = AbortSignal.any([this.ctl.signal, this.attemptCtl.signal]);
    this.plan = null;
    this.downloaded = 0;
    this.hasher = null;
    this.target = this.maxConnections;
    await this.closeFile();

    let resume = resumeIn;
    if (resume !== null) {
      const st = await stat(this.partPath).catch(() => null);
      if (st === null || st.size !== resume.total) resume = null;
    }
    const probe = await this.probe(start, resume);
    if (probe === 'changed') throw new ContentChangedError('the remote file changed since the last run');
    this.url = probe.url;
    const encodingRaw = header(probe.headers, 'content-encoding')?.trim().toLowerCase();
    const encoding =
      encodingRaw === undefined || encodingRaw === 'identity' || encodingRaw === '' ? null : encodingRaw;
    this.etag = header(probe.headers, 'etag') ?? null;
    this.lastModified = header(probe.headers, 'last-modified') ?? null;
    this.name =
      this.job.filename === undefined && resume !== null
        ? resume.name
        : deriveFileName({
            filename: this.job.filename,
            contentDisposition: header(probe.headers, 'content-disposition'),
            url: probe.url,
          });
    let decode = false;
    if (probe.status === 206 && probe.range !== null && probe.range.total !== null && encoding === null) {
      this.ranges = true;
      this.total = probe.range.total;
    } else {
      this.ranges = false;
      decode = encoding !== null && !keepEncoded(this.name, header(probe.headers, 'content-type'));
      this.total = decode
        ? null
        : (probe.range?.total ?? parseLength(header(probe.headers, 'content-length')));
    }
    const { maxBytes } = this.job;
    if (maxBytes > 0 && this.total !== null && this.total > maxBytes) {
      discard(probe.body);
      throw new DownloadFailure(
        'TOO_LARGE',
        `the file is ${this.total} bytes, more than the allowed ${maxBytes}`,
      );
    }

    if (resume === null || !this.ranges) {
      // Starting the staging file over: forget the saved segment map first. Else a crash before
      // this run's first checkpoint leaves the old map (e.g. "all done", saved just before the
      // finished file was moved into storage) next to a new, zero-filled file of the same size,
      // and the next run would resume it and deliver the zeros as the finished file.
      try {
        await this.job.checkpoint(this.state([]));
      } catch (cause) {
        discard(probe.body);
        throw new DownloadFailure('DISK', 'cannot reset the saved download state', {
          cause,
          retryable: true,
        });
      }
    }
    try {
      if (resume !== null && this.ranges) {
        this.fh = await open(this.partPath, 'r+');
      } else {
        this.fh = await open(this.partPath, 'w');
        if (this.total !== null && this.total > 0) await this.fh.truncate(this.total);
      }
    } catch (cause) {
      discard(probe.body);
      throw new DownloadFailure('DISK', `cannot create the staging file: ${(cause as Error).message}`, {
        cause,
      });
    }

    this.#nextSyncAt = this.opts.syncEveryBytes > 0 ? this.downloaded + this.opts.syncEveryBytes : Infinity;
    this.startTicker();
    try {
      if (this.ranges) await this.runRanged(probe, resume?.done ?? []);
      else await this.runSequential(probe, encoding, decode);
    } finally {
      this.stopTicker();
      await this.settleCheckpoint();
    }
    return this.finish();
  }

  /** Sends the probe, with retries for retryable failures. */
  async probe(url: URL, resume: HttpResumeState | null): Promise<Probe | 'changed'> {
    // A fresh probe asks for everything (the size is unknown); a resumed one only for the first
    // missing piece, so nothing is fetched twice when that piece ends.
    const firstPiece =
      resume === null ? undefined : this.newPlan(resume.total ?? 0, resume.done).firstPending();
    const firstMissing = firstPiece?.start ?? 0;
    const rangeEnd = firstPiece === undefined ? '' : String(firstPiece.end - 1);
    const validator = resume === null ? null : (strongEtag(resume.etag) ?? resume.lastModified);
    let useRange = true;
    for (let attempt = 1; ; attempt++) {
      const headers = this.baseHeaders();
      if (useRange) headers.range = `bytes=${firstMissing}-${rangeEnd}`;
      if (validator !== null && useRange) headers['if-range'] = validator;
      let retryAfter: number | null = null;
      const ctl = new AbortController();
      // Nobody watches the probe before its answer arrives: give it the stall timeout itself.
      const timer = setTimeout(
        () => ctl.abort(new StallError(`no answer within ${this.opts.stallTimeoutMs} ms`)),
        this.opts.stallTimeoutMs,
      );
      try {
        const res = await this.dialer.request(url, {
          headers,
          signal: AbortSignal.any([this.signal, ctl.signal]),
        });
        clearTimeout(timer);
        const status = res.statusCode;
        if (status === 206) {
          const range = parseContentRange(header(res.headers, 'content-range'));
          if (range === null || range.start !== firstMissing) {
            discard(res.body);
            throw new HttpStatusError(206, 'unusable Content-Range in the answer to a range request');
          }
          if (resume !== null) {
            const etag = header(res.headers, 'etag') ?? null;
            if (range.total !== resume.total || (strongEtag(resume.etag) !== null && etag !== resume.etag)) {
              discard(res.body);
              return 'changed';
            }
          }
          return { ctl, url: res.url, headers: res.headers, body: res.body, status, range };
        }
        if (status === 200) {
          if (resume !== null && firstMissing > 0) {
            discard(res.body);
            return 'changed';
          }
          return { ctl, url: res.url, headers: res.headers, body: res.body, status, range: null };
        }
        discard(res.body);
        if (status === 416 && useRange) {
          if (resume !== null) return 'changed';
          useRange = false; // e.g. an empty file: ask again without Range
          attempt--;
          continue;
        }
        retryAfter = parseRetryAfter(res.headers['retry-after'], this.opts.maxRetryAfterMs);
        throw new HttpStatusError(status, res.url.href, retryAfter);
      } catch (err) {
        clearTimeout(timer);
        if (this.signal.aborted) throw err;
        const unreachable = ctl.signal.aborted ? null : (tlsFailure(err, url) ?? connectFailure(err, url));
        if (unreachable !== null) throw unreachable;
        const failure = toFailure(ctl.signal.aborted ? ctl.signal.reason : err);
        if (!failure.retryable || attempt >= this.opts.attempts) throw failure;
        if (isPolitenessSignal(err)) this.slowDown();
        const wait =
          err instanceof HttpStatusError && err.retryAfterMs !== null
            ? err.retryAfterMs
            : backoffMs(attempt, this.opts.baseDelayMs, this.opts.maxDelayMs);
        await this.pause(wait);
      }
    }
  }

  // -------------------------------------------------------------------------------------------
  // Ranged mode

  async runRanged(probe: Probe, done: ByteRange[]): Promise<void> {
    const total = this.total ?? 0;
    const plan = this.newPlan(total, done);
    this.plan = plan;
    this.downloaded = plan.doneBytes;
    const start = probe.range?.start ?? 0;
    const first = plan.takeAt(start);
    if (first === null) {
      discard(probe.body);
      if (!plan.complete) throw new ContentChangedError('the probe answered a range that is not missing');
      return;
    }
    const probeEnd = probe.range?.end ?? total;
    if (this.opts.rawSegments && first.end < probeEnd && rawFramed(probe)) {
      // The probe's body would be cut at the end of the first segment anyway (the bytes in
      // flight beyond it are lost either way), so drop it now and fetch the first segment with
      // the raw client like the others: streaming it through undici (a fresh buffer per socket
      // read, a Readable, an async iterator) costs far more memory per connection
      // (bench/footprint.ts: about 60 MiB of RSS at 200 downloads). When the first segment is
      // the whole answer (one connection, a small file) it keeps streaming: nothing is wasted.
      discard(probe.body);
      this.spawn(first);
    } else {
      this.spawn(first, probe.body, probeEnd, probe.ctl);
    }
    while (this.workers.size < this.target && plan.hasWork()) this.spawn();
    await this.allWorkersDone();
    if (this.signal.aborted) throw this.abortError();
    if (!plan.complete) {
      throw new DownloadFailure('NETWORK', 'the download stopped with ranges missing', { retryable: true });
    }
  }

  newPlan(total: number, done: readonly ByteRange[]): SegmentPlan {
    return new SegmentPlan(total, done, this.maxConnections, this.opts.minSegmentSize, this.opts.minStealMs);
  }

  /** A connection's state: its own write batches into the shared staging file. */
  newWorker(fh: FileHandle, ctl: AbortController | null): Worker {
    return {
      id: ++this.#workerSeq,
      ctl,
      lastActivity: performance.now(),
      paused: false,
      connected: false,
      writer: new BatchWriter(
        fh,
        this.opts.writeBatchBytes,
        this.clock,
        Math.max(100, this.opts.checkpointIntervalMs / 2),
      ),
      conn: null,
      readsSeen: 0,
    };
  }

  spawn(seg?: Segment, body?: Readable, requestedEnd?: number, ctl?: AbortController): void {
    const fh = this.fh;
    if (fh === null) return;
    const w = this.newWorker(fh, ctl ?? null);
    this.workers.add(w);
    const first = seg === undefined ? null : { seg, body: body ?? null, end: requestedEnd ?? seg.end };
    this.rangedWorker(w, first)
      .catch((err: unknown) => this.fail(err))
      .finally(() => {
        w.conn?.destroy();
        w.conn = null;
        this.workers.delete(w);
        if (this.workers.size === 0 && this.#idle !== null) this.#idle();
      });
  }

  allWorkersDone(): Promise<void> {
    if (this.workers.size === 0) return Promise.resolve();
    return new Promise((resolve) => {
      this.#idle = () => {
        this.#idle = null;
        resolve();
      };
    });
  }

  /** Why the attempt was aborted, as an Error. */
  abortError(): Error {
    const reason: unknown = this.signal.reason;
    return reason instanceof Error ? reason : new Error(`aborted: ${String(reason)}`);
  }

  /** A failure nobody can cure: stop the attempt. The first one wins. */
  fail(err: unknown): void {
    if (!this.attemptCtl.signal.aborted) this.attemptCtl.abort(err);
  }

  slowDown(): void {
    const now = performance.now();
    if (now - this.#lastSlowDown < 1000) return;
    this.#lastSlowDown = now;
    this.target = Math.max(1, Math.floor(this.target / 2));
  }

  async rangedWorker(
    w: Worker,
    first: { seg: Segment; body: Readable | null; end: number } | null,
  ): Promise<void> {
    const plan = this.plan;
    if (plan === null) return;
    let seg: Segment | null = first?.seg ?? plan.take();
    let body: Readable | null = first?.body ?? null;
    let requestedEnd = first?.end ?? 0;
    while (seg !== null) {
      const s: Segment = seg;
      const before = s.pos;
      const onWritten = (end: number): void => {
        s.flushed = end;
      };
      try {
        if (this.signal.aborted) {
          body?.destroy();
          plan.release(s);
          return;
        }
        if (body === null && this.opts.rawSegments) {
          // The engine's own client; a redirect (segments go to the final URL, so rare) goes the
          // undici way below, which follows and checks it.
          if ((await this.fetchRange(w, s)) === 'redirect') {
            const opened = await this.openRange(w, s);
            body = opened.body;
            requestedEnd = opened.end;
            s.startRate(performance.now());
          }
        } else if (body === null) {
          const opened = await this.openRange(w, s);
          body = opened.body;
          requestedEnd = opened.end;
          s.startRate(performance.now());
        }
        if (body !== null) await this.pump(w, s, body, requestedEnd, onWritten);
        if (s.pos < s.end) {
          throw new DownloadFailure('NETWORK', 'connection closed early', { retryable: true });
        }
        s.failures = 0;
        plan.release(s);
      } catch (err) {
        body?.destroy();
        w.conn?.destroy();
        w.conn = null;
        w.connected = false;
        await w.writer.drain().catch((e: unknown) => {
          this.fail(e);
        });
        w.writer.discard();
        s.pos = s.flushed;
        // Counted before release: the rest of the range waits as a new Segment that inherits it.
        // Only real progress forgives earlier failures: an origin that sends a few bytes on each
        // connection and then stalls would otherwise be retried until the file trickled in.
        if (s.pos - before >= PROGRESS_FORGIVES_BYTES) s.failures = 0;
        s.failures++;
        plan.release(s);
        if (this.signal.aborted) return;
        if (err instanceof ContentChangedError) {
          this.fail(err);
          return;
        }
        const failure = toFailure(err);
        if (!failure.retryable || s.failures >= this.opts.attempts) {
          this.fail(failure);
          return;
        }
        const polite = isPolitenessSignal(err);
        if (polite) this.slowDown();
        const wait =
          err instanceof HttpStatusError && err.retryAfterMs !== null
            ? err.retryAfterMs
            : backoffMs(s.failures, this.opts.baseDelayMs, this.opts.maxDelayMs);
        w.paused = true;
        try {
          await this.pause(wait);
        } catch {
          return;
        } finally {
          w.paused = false;
        }
        if (this.workers.size > this.target) return;
      } finally {
        body = null;
        w.ctl = null;
      }
      seg = plan.take();
    }
  }

  async openRange(w: Worker, seg: Segment): Promise<{ body: Readable; end: number }> {
    w.ctl = new AbortController();
    w.lastActivity = performance.now();
    const headers = this.baseHeaders();
    headers.range = `bytes=${seg.pos}-${seg.end - 1}`;
    const validator = strongEtag(this.etag) ?? this.lastModified;
    if (validator !== null) headers['if-range'] = validator;
    const res = await this.dialer.request(this.url, {
      headers,
      signal: AbortSignal.any([this.signal, w.ctl.signal]),
    });
    if (res.statusCode === 206) {
      const range = parseContentRange(header(res.headers, 'content-range'));
      const etag = header(res.headers, 'etag') ?? null;
      if (range === null || range.total !== this.total || range.start !== seg.pos) {
        discard(res.body);
        throw new ContentChangedError('the origin answered a different range or total size');
      }
      if (this.etag !== null && etag !== null && etag !== this.etag) {
        discard(res.body);
        throw new ContentChangedError(`ETag changed from ${this.etag} to ${etag}`);
      }
      return { body: res.body, end: range.end };
    }
    discard(res.body);
    if (res.statusCode === 200 || res.statusCode === 416) {
      throw new ContentChangedError(`the origin answered ${res.statusCode} to a range request`);
    }
    throw new HttpStatusError(
      res.statusCode,
      res.url.href,
      parseRetryAfter(res.headers['retry-after'], this.opts.maxRetryAfterMs),
    );
  }

  /** Moves bytes from `body` into the file for `seg` until the segment (or the body) ends. */
  async pump(
    w: Worker,
    seg: Segment,
    body: Readable,
    requestedEnd: number,
    onWritten: (end: number) => void,
  ): Promise<void> {
    w.connected = true;
    w.lastActivity = performance.now();
    const limited = this.buckets.length > 0;
    const maxBytes = this.job.maxBytes;
    const checkMax = maxBytes > 0 && this.total === null;
    const writer = w.writer;
    writer.begin(seg.pos, onWritten);
    for await (const raw of body as AsyncIterable<Buffer>) {
      w.lastActivity = performance.now();
      let chunk = raw;
      const room = seg.end - seg.pos;
      if (chunk.length > room) chunk = chunk.subarray(0, room);
      const n = chunk.length;
      if (n > 0) {
        // Copy into the batch (the chunk is garbage right away; no await unless the batch is full).
        for (let off = 0; off < n;) {
          const space = writer.space(n - off);
          if (space === null) {
            await writer.whenFree();
            continue;
          }
          const k = chunk.copy(space, 0, off, off + space.length);
          writer.commit(k);
          off += k;
        }
        seg.pos += n;
        this.downloaded += n;
        if (this.downloaded >= this.#nextSyncAt) this.maybeSync();
        if (this.hasher !== null) this.hasher.update(chunk);
        if (checkMax && this.downloaded > maxBytes) {
          throw new DownloadFailure('TOO_LARGE', `the download exceeded the allowed ${maxBytes} bytes`);
        }
        if (limited) {
          w.paused = true;
          await throttle(this.buckets, n, this.signal);
          w.paused = false;
          w.lastActivity = performance.now();
        }
      }
      if (seg.pos >= seg.end && seg.end < requestedEnd) break;
    }
    await writer.drain();
    w.connected = false;
  }

  /**
   * Fetches the rest of `seg` with the raw HTTP/1.1 client on the worker's keep-alive connection
   * (opened to the pinned, checked address of the final URL) and writes it to the file. Returns
   * 'redirect' when the origin redirects the segment request (then nothing was read).
   */
  async fetchRange(w: Worker, seg: Segment): Promise<'done' | 'redirect'> {
    w.ctl = new AbortController();
    w.lastActivity = performance.now();
    const signal = AbortSignal.any([this.signal, w.ctl.signal]);
    const headers = this.baseHeaders();
    headers.range = `bytes=${seg.pos}-${seg.end - 1}`;
    const validator = strongEtag(this.etag) ?? this.lastModified;
    if (validator !== null) headers['if-range'] = validator;

    let conn = w.conn;
    let head: ResponseHead;
    for (let fresh = false; ;) {
      if (conn === null || !conn.reusable) {
        conn?.destroy();
        conn = null;
        w.conn = null;
        const addresses = await this.dialer.addressesFor(this.url);
        conn = await Http1Connection.open(this.url, addresses, {
          timeoutMs: this.dialer.connectTimeoutMs,
          signal,
          ...(this.dialer.ca === undefined ? {} : { ca: this.dialer.ca }),
        });
        w.conn = conn;
        w.readsSeen = 0;
        fresh = true;
      }
      const readsBefore = conn.reads;
      try {
        head = await conn.request(headers, signal);
        break;
      } catch (err) {
        // A kept-alive connection the server closed just now: one more try on a new one.
        if (fresh || signal.aborted || conn.reads > readsBefore) throw err;
        conn.destroy();
        conn = null;
      }
    }
    w.lastActivity = performance.now();

    if (head.status !== 206) {
      conn.destroy();
      w.conn = null;
      const status = head.status;
      if (REDIRECTS.has(status) && head.headers.location !== undefined) return 'redirect';
      if (status === 200 || status === 416) {
        throw new ContentChangedError(`the origin answered ${status} to a range request`);
      }
      throw new HttpStatusError(
        status,
        this.url.href,
        parseRetryAfter(head.headers['retry-after'], this.opts.maxRetryAfterMs),
      );
    }
    const range = parseContentRange(head.headers['content-range']);
    if (range === null || range.total !== this.total || range.start !== seg.pos) {
      conn.destroy();
      w.conn = null;
      throw new ContentChangedError('the origin answered a different range or total size');
    }
    const etag = head.headers.etag ?? null;
    if (this.etag !== null && etag !== null && etag !== this.etag) {
      conn.destroy();
      w.conn = null;
      throw new ContentChangedError(`ETag changed from ${this.etag} to ${etag}`);
    }
    if (head.contentLength !== range.end - range.start) {
      conn.destroy();
      w.conn = null;
      throw new DownloadFailure(
        'NETWORK',
        `Content-Length ${head.contentLength ?? 'missing'} does not match Content-Range ${range.start}-${range.end - 1}`,
        { retryable: true },
      );
    }

    seg.startRate(performance.now());
    w.connected = true;
    const requestedEnd = range.end;
    const writer = w.writer;
    writer.begin(seg.pos, (end) => {
      seg.flushed = end;
    });
    const buckets = this.buckets;
    const limited = buckets.length > 0;
    let throttleTimer: NodeJS.Timeout | null = null;
    let throttleUntil = 0;
    const c = conn;
    let waiting = false;
    const wake = (): void => {
      waiting = false;
      if (writer.error !== null) c.destroy(writer.error);
      else if (throttleTimer === null) c.resume();
    };
    const waitForRoom = (): void => {
      if (waiting) return;
      waiting = true;
      writer.onFree(wake);
    };
    const sink: BodySink = {
      space: (max) => {
        const room = writer.space(Math.min(max, seg.end - seg.pos));
        if (room === null) waitForRoom();
        return room;
      },
      commit: (n): Verdict => {
        const take = Math.min(n, seg.end - seg.pos); // the tail may have been stolen meanwhile
        if (take > 0) {
          writer.commit(take);
          seg.pos += take;
          this.downloaded += take;
          if (this.downloaded >= this.#nextSyncAt) this.maybeSync();
        }
        if (writer.error !== null) {
          c.destroy(writer.error);
          return STOP;
        }
        if (seg.pos >= seg.end && seg.end < requestedEnd) return STOP;
        if (limited && take > 0) {
          let wait = 0;
          for (const b of buckets) wait = Math.max(wait, b.consume(take));
          if (wait >= 1 || throttleTimer !== null) {
            if (throttleTimer === null) {
              w.paused = true;
              throttleUntil = performance.now() + wait;
              throttleTimer = setTimeout(() => {
                throttleTimer = null;
                w.paused = false;
                w.lastActivity = performance.now();
                wake();
              }, wait);
            }
            return PAUSE;
          }
        }
        if (writer.space(1) === null) {
          waitForRoom();
          return PAUSE;
        }
        return GO;
      },
    };
    try {
      await conn.readBody(sink);
    } finally {
      if (throttleTimer !== null) {
        clearTimeout(throttleTimer);
        throttleTimer = null;
        w.paused = false;
      }
    }
    if (!conn.reusable) w.conn = null;
    await writer.drain();
    w.connected = false;
    // Repay what the speed limit still asks for before the next request.
    const owed = throttleUntil - performance.now();
    if (owed >= 1) {
      w.paused = true;
      try {
        await this.pause(owed);
      } finally {
        w.paused = false;
      }
    }
    return 'done';
  }

  // -------------------------------------------------------------------------------------------
  // Sequential mode (no ranges, unknown length, or content encoding)

  async runSequential(probe: Probe, encoding: string | null, decode: boolean): Promise<void> {
    const fh = this.fh;
    if (fh === null) return;
    const w = this.newWorker(fh, probe.ctl);
    this.workers.add(w);
    try {
      let body: Readable | null = this.decoded(probe.body, decode ? encoding : null);
      for (let attempt = 1; ; attempt++) {
        const seg = new Segment(0, this.total ?? Number.MAX_SAFE_INTEGER);
        this.downloaded = 0;
        this.hasher = this.job.checksum === undefined ? null : createHash(this.job.checksum.algorithm);
        const onWritten = (end: number): void => {
          seg.flushed = end;
        };
        try {
          if (body === null) body = await this.openFull(w, decode ? encoding : null);
          await this.pump(w, seg, body, seg.end, onWritten);
          if (this.total !== null && seg.pos < this.total) {
            throw new DownloadFailure(
              'NETWORK',
              `connection closed after ${seg.pos} of ${this.total} bytes`,
              {
                retryable: true,
              },
            );
          }
          this.total = seg.pos;
          return;
        } catch (err) {
          body?.destroy();
          body = null;
          w.connected = false;
          await w.writer.drain().catch(() => undefined);
          w.writer.discard();
          if (this.signal.aborted) throw err;
          const failure = toFailure(err);
          if (!failure.retryable || attempt >= this.opts.attempts) throw failure;
          if (isPolitenessSignal(err)) this.slowDown();
          // Without ranges the only way on is from the start.
          await fh.truncate(0);
          if (this.total !== null) await fh.truncate(this.total);
          w.paused = true;
          await this.pause(
            err instanceof HttpStatusError && err.retryAfterMs !== null
              ? err.retryAfterMs
              : backoffMs(attempt, this.opts.baseDelayMs, this.opts.maxDelayMs),
          );
          w.paused = false;
        } finally {
          w.ctl = null;
        }
      }
    } finally {
      this.workers.delete(w);
    }
  }

  decoded(body: Readable, encoding: string | null): Readable {
    if (encoding === null) return body;
    const decoder = decoderFor(encoding);
    if (decoder === null) {
      discard(body);
      throw new DownloadFailure('HTTP_ERROR', `unsupported Content-Encoding ${encoding}`);
    }
    return pipeline(body, decoder, () => undefined) as unknown as Readable;
  }

  async openFull(w: Worker, encoding: string | null): Promise<Readable> {
    w.ctl = new AbortController();
    w.lastActivity = performance.now();
    const res = await this.dialer.request(this.url, {
      headers: this.baseHeaders(),
      signal: AbortSignal.any([this.signal, w.ctl.signal]),
    });
    if (res.statusCode !== 200) {
      discard(res.body);
      throw new HttpStatusError(
        res.statusCode,
        res.url.href,
        parseRetryAfter(res.headers['retry-after'], this.opts.maxRetryAfterMs),
      );
    }
    return this.decoded(res.body, encoding);
  }

  // -------------------------------------------------------------------------------------------
  // Ticker: progress, checkpoints, stall watchdog, connection count

  startTicker(): void {
    const period = Math.max(50, Math.min(250, this.opts.stallTimeoutMs / 4));
    this.#lastProgress = 0;
    this.#lastCheckpoint = performance.now();
    this.#samples = [];
    this.#ticker = setInterval(() => this.tick(), period);
    this.tick();
  }

  stopTicker(): void {
    if (this.#ticker !== null) clearInterval(this.#ticker);
    this.#ticker = null;
  }

  tick(): void {
    const now = performance.now();
    this.clock.now = now;
    // Stall watchdog.
    for (const w of this.workers) {
      const reads = w.conn?.reads ?? 0;
      if (reads !== w.readsSeen) {
        w.readsSeen = reads;
        w.lastActivity = now;
      }
      if (!w.paused && w.ctl !== null && now - w.lastActivity > this.opts.stallTimeoutMs) {
        w.ctl.abort(new StallError(`no data for ${this.opts.stallTimeoutMs} ms`));
        w.lastActivity = now;
      }
    }
    // Connections: grow back slowly after a politeness slow-down.
    if (this.ranges && !this.signal.aborted && this.plan !== null) {
      if (
        this.target < this.maxConnections &&
        now - this.#lastSlowDown > 5000 &&
        now - this.#lastSpeedUp > 2000 &&
        this.#lastSlowDown > 0
      ) {
        this.target++;
        this.#lastSpeedUp = now;
      }
      while (this.workers.size < this.target && this.workers.size > 0 && this.plan.hasWork()) this.spawn();
    }
    // Progress.
    this.#samples.push([now, this.downloaded]);
    while (this.#samples.length > 2 && (this.#samples[0]?.[0] ?? now) < now - 3000) this.#samples.shift();
    if (now - this.#lastProgress >= 240) {
      this.#lastProgress = now;
      this.emitProgress(now);
    }
    if (now - this.#lastCheckpoint >= this.opts.checkpointIntervalMs && this.#checkpointing === null) {
      this.#lastCheckpoint = now;
      this.#checkpointing = this.checkpoint().finally(() => {
        this.#checkpointing = null;
      });
    }
  }

  emitProgress(now: number): void {
    const oldest = this.#samples[0];
    const speed =
      oldest !== undefined && now - oldest[0] > 0
        ? ((this.downloaded - oldest[1]) * 1000) / (now - oldest[0])
        : 0;
    let connections = 0;
    for (const w of this.workers) if (w.connected) connections++;
    const size = this.total ?? this.downloaded;
    try {
      this.job.onProgress({
        name: this.name,
        total: this.total,
        downloaded: this.downloaded,
        speed: Math.max(0, Math.round(speed)),
        connections,
        files: [
          {
            index: 0,
            name: this.name,
            size,
            progress: size > 0 ? Math.min(1, this.downloaded / size) : 0,
            selected: true,
          },
        ],
      });
    } catch {
      // a progress listener's bug must not break the transfer
    }
  }

  state(done: ByteRange[]): HttpResumeState {
    return {
      v: 1,
      url: this.source.url,
      name: this.name,
      total: this.total,
      ranges: this.ranges,
      etag: this.etag,
      lastModified: this.lastModified,
      done,
    };
  }

  /** Saves the segment map (only bytes already written count) after syncing the data. */
  async checkpoint(): Promise<void> {
    const fh = this.fh;
    if (fh === null) return;
    const done = this.plan?.snapshot() ?? [];
    try {
      if (this.ranges && done.length > 0) await fh.datasync();
      await this.job.checkpoint(this.state(done));
    } catch {
      // A missed checkpoint only costs re-downloading a little; never fail the transfer for it.
    }
  }

  async settleCheckpoint(): Promise<void> {
    if (this.#checkpointing !== null) await this.#checkpointing;
    await this.checkpoint();
  }

  // -------------------------------------------------------------------------------------------

  async finish(): Promise<DownloadOutcome> {
    if (this.#syncing !== null) await this.#syncing;
    const fh = this.fh;
    if (fh === null) throw new DownloadFailure('DISK', 'the staging file is not open');
    const size = this.total ?? this.downloaded;
    this.emitProgress(performance.now());
    try {
      await fh.datasync();
    } catch (cause) {
      throw new DownloadFailure('DISK', `syncing the staging file failed: ${(cause as Error).message}`, {
        cause,
      });
    }
    await this.closeFile();
    const sum = this.job.checksum;
    if (sum !== undefined) {
      const actual =
        this.hasher !== null
          ? this.hasher.digest('hex')
          : await hashFile(this.partPath, sum.algorithm, this.signal);
      if (actual.toLowerCase() !== sum.hex.trim().toLowerCase()) {
        await rm(this.partPath, { force: true });
        throw new DownloadFailure(
          'CHECKSUM',
          `${sum.algorithm} mismatch: expected ${sum.hex}, got ${actual}`,
        );
      }
    }
    const finalPath = join(this.job.stagingDir, this.name);
    await rename(this.partPath, finalPath);
    return { name: this.name, files: [{ name: this.name, stagingPath: finalPath, size }] };
  }
}

async function hashFile(path: string, algorithm: string, signal: AbortSignal): Promise<string> {
  const h = createHash(algorithm);
  for await (const chunk of createReadStream(path, {
    highWaterMark: 1024 * 1024,
    signal,
  }) as AsyncIterable<Buffer>) {
    h.update(chunk);
  }
  return h.digest('hex');
}

/**
 * The probe's answer is one the raw client would accept for a segment: framed by a
 * Content-Length that matches its Content-Range, no Transfer-Encoding. (Otherwise the first
 * segment keeps streaming through undici, which reads any framing.)
 */
function rawFramed(probe: Probe): boolean {
  const range = probe.range;
  if (range === null || probe.headers['transfer-encoding'] !== undefined) return false;
  return parseLength(header(probe.headers, 'content-length')) === range.end - range.start;
}

/** Drops a response body we will not read. undici emits 'error' on destroy; nobody listens, so
 * without this handler the process would crash on an unhandled 'error' event. */
function discard(body: { on(event: 'error', listener: () => void): unknown; destroy(): unknown }): void {
  body.on('error', () => {});
  body.destroy();
}
