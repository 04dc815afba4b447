// A scriptable HTTP origin for tests and benchmarks: a node:http server on 127.0.0.1 (random
// port) that serves deterministic pseudo-random content (AES-CTR keystream, so any byte range is
// cheap to generate and the SHA-256 of the whole is known) with per-path behaviours: Range on/off,
// chunked (no length), redirects, error statuses, 429/503 with Retry-After, stalls and dropped
// connections mid-body, Content-Disposition, changing ETags, gzip, per-connection throttling, and
// counters of requests and bytes served per path. Loopback only.

import { createCipheriv, createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type ServerResponse, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { createGzip } from 'node:zlib';

export interface RouteBehaviour {
  /** Content length in bytes (generated content). Default 1 MiB. */
  size?: number;
  /** Seed of the generated content. Default 1. */
  seed?: number;
  /** Serve this file from disk instead of generated content (size/seed ignored). */
  file?: { path: string; size: number };
  /** Honour Range requests (206). Default true. */
  ranges?: boolean;
  /** Omit Content-Length (chunked transfer); implies no ranges. */
  chunked?: boolean;
  /** ETag to send; default `"<seed>-v<version>"`; false = none. */
  etag?: string | false;
  /** Send Last-Modified; default true. */
  lastModified?: boolean;
  /** After this many requests, the content changes (seed+1) and so does the ETag. */
  changeAfterRequests?: number;
  /** Answer every request with this status and a short body (404, 410, 500...). */
  status?: number;
  /** Redirect to this location (absolute or relative) with `redirectStatus` (default 302). */
  redirect?: string;
  redirectStatus?: number;
  /**
   * `count` requests get `status` (429 or 503) with Retry-After `retryAfter` seconds: the first
   * ones, or the ones right after the first `after` requests.
   */
  failFirst?: { count: number; status: number; retryAfter?: number; after?: number };
  /** The first `count` responses stop sending after `afterBytes` body bytes and hang. */
  stall?: { count: number; afterBytes: number };
  /** The first `count` responses destroy the socket after `afterBytes` body bytes. */
  drop?: { count: number; afterBytes: number };
  /** Send this Content-Disposition header value verbatim. */
  contentDisposition?: string;
  /** Content-Encoding: gzip regardless of Accept-Encoding (no length, no ranges). */
  gzip?: boolean;
  /** Per-response throttle in bytes/s. */
  throttle?: number;
  /** Lie in Content-Length: claim this many bytes (full responses only). */
  claimLength?: number;
  contentType?: string;
  /** Delay before answering, ms. */
  delayMs?: number;
  /** Answer 403 unless the request carries these headers (lower-case names) with these values. */
  requireHeaders?: Record<string, string>;
}

export interface RequestRecord {
  method: string;
  range: string | undefined;
  headers: IncomingHttpHeaders;
  status: number;
}

export interface Origin {
  readonly port: number;
  /** Base URL, e.g. http://127.0.0.1:PORT */
  readonly base: string;
  /** Absolute URL of a path on this origin. */
  url(path: string): string;
  /** Defines (or replaces) the behaviour of a path. Returns its URL. */
  route(path: string, behaviour: RouteBehaviour): string;
  /** Body bytes served on a path since start (or reset). */
  bytesServed(path: string): number;
  /** Requests received on a path. */
  requests(path: string): RequestRecord[];
  /** Highest number of simultaneously open responses on a path. */
  maxConcurrent(path: string): number;
  /** Currently open sockets (to check a client closed them). */
  openSockets(): number;
  resetCounters(): void;
  close(): Promise<void>;
}

const DEFAULT_SIZE = 1024 * 1024;
const CHUNK = 64 * 1024;

function keyFor(seed: number): Buffer {
  return createHash('sha256').update(`ferry-origin-${seed}`).digest().subarray(0, 16);
}

/** Generates bytes [start, end) of the deterministic content for `seed`. */
export function contentRange(seed: number, start: number, end: number): Buffer {
  const block = Math.floor(start / 16);
  const iv = Buffer.alloc(16);
  iv.writeBigUInt64BE(BigInt(block), 8);
  const cipher = createCipheriv('aes-128-ctr', keyFor(seed), iv);
  const skip = start - block * 16;
  const out = cipher.update(Buffer.alloc(end - start + skip));
  return out.subarray(skip);
}

/** Yields the content for `seed` from `start` to `end` (exclusive) in chunks. */
export function* contentChunks(seed: number, start: number, end: number, chunk = CHUNK): Generator<Buffer> {
  for (let pos = start; pos < end; pos += chunk) yield contentRange(seed, pos, Math.min(end, pos + chunk));
}

const shaCache = new Map<string, string>();

/** SHA-256 (hex) of the generated content of `size` bytes for `seed`. */
export function expectedSha256(size: number, seed = 1): string {
  const key = `${size}:${seed}`;
  const cached = shaCache.get(key);
  if (cached !== undefined) return cached;
  const h = createHash('sha256');
  for (const c of contentChunks(seed, 0, size, 1024 * 1024)) h.update(c);
  const hex = h.digest('hex');
  shaCache.set(key, hex);
  return hex;
}

/** Digest of the generated content with any algorithm node:crypto knows. */
export function expectedDigest(size: number, seed: number, algorithm: string): string {
  const h = createHash(algorithm);
  for (const c of contentChunks(seed, 0, size, 1024 * 1024)) h.update(c);
  return h.digest('hex');
}

interface RouteState {
  behaviour: RouteBehaviour;
  requests: RequestRecord[];
  bytes: number;
  open: number;
  maxOpen: number;
  stalls: number;
  drops: number;
  fails: number;
}

function parseRange(header: string | undefined, size: number): { start: number; end: number } | 'bad' | null {
  if (header === undefined) return null;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m) return null; // multi-range or junk: ignore (serve full)
  const [, a = '', b = ''] = m;
  if (a === '' && b === '') return 'bad';
  if (a === '') {
    const n = Number(b);
    if (n === 0) return 'bad';
    return { start: Math.max(0, size - n), end: size };
  }
  const start = Number(a);
  const end = b === '' ? size : Math.min(size, Number(b) + 1);
  if (start >= size || end <= start) return 'bad';
  return { start, end };
}

/** Waits for 'drain' or 'close', removing both listeners afterwards. */
function drainOrClose(res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}

async function writeBody(
  res: ServerResponse,
  st: RouteState,
  chunks: AsyncIterable<Buffer> | Iterable<Buffer>,
  b: RouteBehaviour,
  faults: { stallAt: number | null; dropAt: number | null },
): Promise<void> {
  let sent = 0;
  const t0 = performance.now();
  for await (const raw of chunks) {
    if (res.destroyed) return;
    let chunk = raw;
    const limit = Math.min(faults.stallAt ?? Infinity, faults.dropAt ?? Infinity);
    if (sent + chunk.length > limit) chunk = chunk.subarray(0, Math.max(0, limit - sent));
    if (chunk.length > 0) {
      st.bytes += chunk.length;
      sent += chunk.length;
      if (!res.write(chunk)) await drainOrClose(res);
    }
    if (faults.dropAt !== null && sent >= faults.dropAt) {
      res.socket?.destroy();
      return;
    }
    if (faults.stallAt !== null && sent >= faults.stallAt) {
      await once(res, 'close'); // hang until the client gives up
      return;
    }
    if (b.throttle !== undefined && b.throttle > 0) {
      const due = (sent / b.throttle) * 1000 - (performance.now() - t0);
      if (due > 1) await sleep(due);
    }
  }
  res.end();
}

/** Starts an origin on 127.0.0.1 with a random port. */
export async function startOrigin(): Promise<Origin> {
  const routes = new Map<string, RouteState>();
  const sockets = new Set<Socket>();
  const lastModified = new Date(Date.UTC(2024, 0, 1)).toUTCString();

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    const st = routes.get(path);
    const record: RequestRecord = {
      method: req.method ?? 'GET',
      range: req.headers.range,
      headers: req.headers,
      status: 0,
    };
    const reply = (status: number, headers: Record<string, string | number> = {}, body = ''): void => {
      record.status = status;
      res.writeHead(status, { 'content-length': Buffer.byteLength(body), ...headers });
      res.end(body);
    };
    if (st === undefined) {
      reply(404, {}, 'no such route');
      return;
    }
    st.requests.push(record);
    const b = st.behaviour;
    if (b.delayMs !== undefined) await sleep(b.delayMs);
    if (b.redirect !== undefined) {
      reply(b.redirectStatus ?? 302, { location: b.redirect });
      return;
    }
    if (b.status !== undefined) {
      reply(b.status, {}, `status ${b.status}`);
      return;
    }
    if (b.requireHeaders && Object.entries(b.requireHeaders).some(([k, v]) => req.headers[k] !== v)) {
      reply(403, {}, 'forbidden');
      return;
    }
    if (
      b.failFirst !== undefined &&
      st.fails < b.failFirst.count &&
      st.requests.length > (b.failFirst.after ?? 0)
    ) {
      st.fails++;
      const headers: Record<string, string | number> = {};
      if (b.failFirst.retryAfter !== undefined) headers['retry-after'] = b.failFirst.retryAfter;
      reply(b.failFirst.status, headers, 'slow down');
      return;
    }
    const version = b.changeAfterRequests !== undefined && st.requests.length > b.changeAfterRequests ? 2 : 1;
    const seed = (b.seed ?? 1) + (version - 1);
    const size = b.file?.size ?? b.size ?? DEFAULT_SIZE;
    const etag =
      b.etag === false ? undefined : version === 1 && b.etag !== undefined ? b.etag : `"${seed}-v${version}"`;
    const lm = b.lastModified === false ? undefined : version === 1 ? lastModified : new Date().toUTCString();
    const headers: Record<string, string | number> = {
      'content-type': b.contentType ?? 'application/octet-stream',
    };
    if (etag !== undefined) headers.etag = etag;
    if (lm !== undefined) headers['last-modified'] = lm;
    if (b.contentDisposition !== undefined) headers['content-disposition'] = b.contentDisposition;
    const rangesOn = (b.ranges ?? true) && !b.chunked && !b.gzip;
    if (rangesOn) headers['accept-ranges'] = 'bytes';

    let range = rangesOn ? parseRange(req.headers.range, size) : null;
    const ifRange = req.headers['if-range'];
    if (range !== null && ifRange !== undefined && ifRange !== etag && ifRange !== lm) range = null;
    if (range === 'bad') {
      reply(416, { 'content-range': `bytes */${size}` });
      return;
    }
    const faults = { stallAt: null as number | null, dropAt: null as number | null };
    if (b.stall !== undefined && st.stalls < b.stall.count) {
      st.stalls++;
      faults.stallAt = b.stall.afterBytes;
    }
    if (b.drop !== undefined && st.drops < b.drop.count) {
      st.drops++;
      faults.dropAt = b.drop.afterBytes;
    }
    const start = range?.start ?? 0;
    const end = range?.end ?? size;
    const body: Iterable<Buffer> | AsyncIterable<Buffer> =
      b.file !== undefined
        ? (createReadStream(b.file.path, {
            start,
            end: end - 1,
            highWaterMark: 256 * 1024,
          }) as AsyncIterable<Buffer>)
        : contentChunks(seed, start, end);
    st.open++;
    st.maxOpen = Math.max(st.maxOpen, st.open);
    res.once('close', () => st.open--);
    if (b.gzip) {
      headers['content-encoding'] = 'gzip';
      record.status = 200;
      res.writeHead(200, headers);
      const gz = createGzip();
      const feed = async (): Promise<void> => {
        for (const c of contentChunks(seed, 0, size)) {
          if (!gz.write(c)) await once(gz, 'drain');
        }
        gz.end();
      };
      feed().catch(() => gz.destroy());
      await writeBody(res, st, gz as AsyncIterable<Buffer>, b, faults);
      return;
    }
    if (range !== null) {
      headers['content-range'] = `bytes ${start}-${end - 1}/${size}`;
      headers['content-length'] = end - start;
      record.status = 206;
      res.writeHead(206, headers);
    } else {
      if (!b.chunked) headers['content-length'] = b.claimLength ?? size;
      record.status = 200;
      res.writeHead(200, headers);
    }
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    await writeBody(res, st, body, b, faults);
  };

  const server = createServer({ keepAliveTimeout: 5000 }, (req, res) => {
    handle(req, res).catch(() => res.destroy());
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  const base = `http://127.0.0.1:${port}`;

  const state = (path: string): RouteState | undefined => routes.get(path);
  return {
    port,
    base,
    url: (path) => `${base}${path}`,
    route(path, behaviour) {
      routes.set(path, {
        behaviour,
        requests: [],
        bytes: 0,
        open: 0,
        maxOpen: 0,
        stalls: 0,
        drops: 0,
        fails: 0,
      });
      return `${base}${path}`;
    },
    bytesServed: (path) => state(path)?.bytes ?? 0,
    requests: (path) => state(path)?.requests ?? [],
    maxConcurrent: (path) => state(path)?.maxOpen ?? 0,
    openSockets: () => sockets.size,
    resetCounters() {
      for (const st of routes.values()) {
        st.requests = [];
        st.bytes = 0;
        st.maxOpen = st.open;
        st.stalls = 0;
        st.drops = 0;
        st.fails = 0;
      }
    },
    async close() {
      for (const s of sockets) s.destroy();
      server.close();
      await once(server, 'close').catch(() => undefined);
    },
  };
}
