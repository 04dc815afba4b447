// Serves stored bytes over HTTP the way a good static file server does: validators and
// conditional requests (RFC 9110 §13), byte ranges incl. multipart/byteranges (§14),
// Content-Disposition with an RFC 6266/8187 filename*, HEAD without opening the blob,
// optional throttling. Bodies are always streamed, never buffered.
import { randomBytes } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import { pipeline, Readable } from 'node:stream';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { BlobReader, ByteRange } from '../storage/port.ts';
import { pumpBlob } from './blob-pump.ts';
import { contentTypeFor } from './mime.ts';
import { Throttle } from './throttle.ts';

export type { ByteRange };

export interface BlobToSend {
  /** Bytes; may exceed 4 GiB. */
  size: number;
  modifiedAt: Date;
  /** Entity tag, already quoted: '"abc"' or 'W/"abc"'. An unquoted value is quoted for you. */
  etag: string;
  /** Else guessed from fileName's extension, falling back to application/octet-stream. */
  contentType?: string;
  /** Display name for Content-Disposition (and the type guess). Any characters are safe. */
  fileName: string;
  /** Default 'attachment' (safest: user content is never rendered by the browser unasked). */
  disposition?: 'attachment' | 'inline' | 'none';
  cacheControl?: string;
  /** Bytes per second; 0 or undefined = unlimited. */
  speedLimit?: number;
  /** The whole blob, or one inclusive range of it. Called at most once per range, never for HEAD. */
  open(range?: ByteRange): Promise<Readable>;
  /**
   * Optional positional reader (local disk): unthrottled bodies are then written through reused
   * buffers (see blob-pump.ts) instead of a stream. Called at most once, never for HEAD.
   */
  openReader?: () => Promise<BlobReader>;
}

/** Larger than this (after coalescing) and the Range header is ignored: a plain 200 is cheaper. */
export const MAX_RANGES = 20;

type Headers = Record<string, string>;

export async function sendBlob(
  request: FastifyRequest,
  reply: FastifyReply,
  blob: BlobToSend,
): Promise<FastifyReply> {
  const isHead = request.method === 'HEAD';
  const size = blob.size;
  const etag = normalizeEtag(blob.etag);
  const mtime = blob.modifiedAt.getTime();
  const mtimeSec = Number.isFinite(mtime) ? Math.floor(mtime / 1000) : undefined;

  // Validators go on every response, including 304/412/416.
  const headers: Headers = { 'accept-ranges': 'bytes', etag };
  if (mtimeSec !== undefined) headers['last-modified'] = blob.modifiedAt.toUTCString();
  if (blob.cacheControl) headers['cache-control'] = headerSafe(blob.cacheControl);

  const precondition = evaluatePreconditions(request, etag, mtimeSec);
  if (precondition !== undefined) {
    return sendEmpty(reply.code(precondition).headers(headers), isHead);
  }

  const contentType = (blob.contentType && headerSafe(blob.contentType)) || contentTypeFor(blob.fileName);
  headers['x-content-type-options'] = 'nosniff';
  // Stored bytes are user content: an HTML or SVG file shown inline must not run script in
  // Ferry's origin (the path face serves inline, and ?content-type= may say text/html).
  headers['content-security-policy'] = 'sandbox';
  const disposition = blob.disposition ?? 'attachment';
  if (disposition !== 'none') headers['content-disposition'] = contentDisposition(disposition, blob.fileName);

  let ranges: ByteRange[] | undefined;
  const rangeHeader = headerValue(request, 'range');
  if (
    rangeHeader !== undefined &&
    (isHead || request.method === 'GET') &&
    ifRangeHolds(request, etag, mtimeSec)
  ) {
    const parsed = parseRangeHeader(rangeHeader, size);
    if (parsed === 'unsatisfiable') {
      headers['content-range'] = `bytes */${size}`;
      return sendEmpty(reply.code(416).headers(headers), isHead);
    }
    ranges = parsed;
  }

  if (ranges === undefined) {
    headers['content-type'] = contentType;
    headers['content-length'] = String(size);
    if (isHead || size === 0) return sendEmpty(reply.code(200).headers(headers), isHead);
    // Open before touching the reply: if it throws, the error handler starts from a clean slate.
    // As an explicit range: a file stream that knows where it ends reads exactly the bytes left
    // (no 256 KiB buffer and copy for a short tail, no extra read to find EOF).
    if (pumpable(blob)) return sendPumped(reply, 200, headers, await blob.openReader(), 0, size);
    const body = await blob.open({ start: 0, end: size - 1 });
    return reply.code(200).headers(headers).send(throttled(body, blob.speedLimit));
  }

  if (ranges.length === 1) {
    const range = ranges[0] as ByteRange;
    headers['content-type'] = contentType;
    headers['content-range'] = `bytes ${range.start}-${range.end}/${size}`;
    headers['content-length'] = String(range.end - range.start + 1);
    if (isHead) return sendEmpty(reply.code(206).headers(headers), isHead);
    if (pumpable(blob)) {
      return sendPumped(reply, 206, headers, await blob.openReader(), range.start, range.end + 1);
    }
    const body = await blob.open(range);
    return reply.code(206).headers(headers).send(throttled(body, blob.speedLimit));
  }

  const boundary = randomBytes(12).toString('hex');
  const multipart = multipartBody(blob, ranges, boundary, contentType);
  headers['content-type'] = `multipart/byteranges; boundary=${boundary}`;
  headers['content-length'] = String(multipart.length);
  reply.code(206).headers(headers);
  if (isHead) return sendEmpty(reply, isHead);
  return reply.send(throttled(multipart.stream(), blob.speedLimit));
}

// ---------------------------------------------------------------------------------------------
// Body helpers

/**
 * No body. For HEAD an empty stream rather than nothing: fastify's automatic HEAD route
 * rewrites Content-Length to 0 for an undefined payload, but leaves it alone for a stream.
 */
function sendEmpty(reply: FastifyReply, isHead: boolean): FastifyReply {
  return isHead ? reply.send(Readable.from([])) : reply.send();
}

function pumpable(blob: BlobToSend): blob is BlobToSend & { openReader: () => Promise<BlobReader> } {
  return blob.openReader !== undefined && !(blob.speedLimit !== undefined && blob.speedLimit > 0);
}

/**
 * Takes the response over from fastify (its onResponse hooks still run when it finishes) and
 * pumps the bytes. The reader is opened by the caller first, so a missing blob still reaches
 * the route's error handling with nothing sent.
 */
function sendPumped(
  reply: FastifyReply,
  status: number,
  headers: Headers,
  reader: BlobReader,
  start: number,
  end: number,
): FastifyReply {
  void pumpBlob(takeOver(reply, status, headers), reader, start, end);
  return reply;
}

/**
 * Hijacks the reply and writes the status line with the headers fastify already holds plus
 * `headers`; the caller writes the body to the returned response. onResponse hooks still run.
 */
export function takeOver(reply: FastifyReply, status: number, headers: Headers): ServerResponse {
  const res = reply.raw;
  const all: Record<string, string | number | string[]> = {};
  for (const [name, value] of Object.entries(reply.getHeaders())) if (value !== undefined) all[name] = value;
  reply.hijack();
  res.writeHead(status, { ...all, ...headers });
  return res;
}

function throttled(body: Readable, speedLimit: number | undefined): Readable {
  if (!speedLimit || speedLimit <= 0) return body;
  // pipeline() destroys the source when fastify destroys the throttle on client abort. Errors
  // surface on the returned stream, where fastify handles them; nothing to do here.
  return pipeline(body, new Throttle(speedLimit), () => {});
}

function multipartBody(
  blob: BlobToSend,
  ranges: ByteRange[],
  boundary: string,
  contentType: string,
): { length: number; stream: () => Readable } {
  const size = blob.size;
  const partHeads = ranges.map((r, i) =>
    Buffer.from(
      `${i === 0 ? '' : '\r\n'}--${boundary}\r\n` +
        `Content-Type: ${contentType}\r\n` +
        `Content-Range: bytes ${r.start}-${r.end}/${size}\r\n\r\n`,
    ),
  );
  const trailer = Buffer.from(`\r\n--${boundary}--\r\n`);
  let length = trailer.length;
  for (const [i, r] of ranges.entries()) length += (partHeads[i] as Buffer).length + (r.end - r.start + 1);

  async function* parts(): AsyncGenerator<Buffer> {
    for (const [i, r] of ranges.entries()) {
      yield partHeads[i] as Buffer;
      const part = await blob.open(r);
      try {
        // for-await destroys `part` if we are returned early (client abort → Readable.from
        // calls return() on this generator).
        for await (const chunk of part) yield chunk as Buffer;
      } finally {
        part.destroy();
      }
    }
    yield trailer;
  }
  return { length, stream: () => Readable.from(parts(), { objectMode: false, highWaterMark: 256 * 1024 }) };
}

// ---------------------------------------------------------------------------------------------
// Ranges

/**
 * Parses a Range header against a representation of `size` bytes.
 * Returns the satisfiable ranges sorted and coalesced, 'unsatisfiable' (→ 416), or undefined
 * when the header must be ignored (malformed, other unit, too many ranges, or a suffix range
 * on an empty representation, which 206 cannot express).
 */
export function parseRangeHeader(header: string, size: number): ByteRange[] | 'unsatisfiable' | undefined {
  const eq = header.indexOf('=');
  if (eq < 0 || header.slice(0, eq).trim().toLowerCase() !== 'bytes') return undefined;
  const ranges: ByteRange[] = [];
  let sawSpec = false;
  let emptySuffix = false;
  for (const raw of header.slice(eq + 1).split(',')) {
    const spec = raw.trim();
    if (spec === '') continue; // empty list elements are allowed (RFC 9110 §5.6.1)
    const m = /^(\d*)-(\d*)$/.exec(spec);
    if (!m) return undefined;
    const [, first = '', last = ''] = m;
    sawSpec = true;
    if (first === '') {
      if (last === '') return undefined;
      const suffix = Number(last);
      if (suffix === 0) continue;
      if (size === 0) {
        emptySuffix = true;
        continue;
      }
      ranges.push({ start: Math.max(0, size - suffix), end: size - 1 });
    } else {
      const start = Number(first);
      if (last !== '' && Number(last) < start) return undefined;
      if (start >= size) continue;
      ranges.push({ start, end: last === '' ? size - 1 : Math.min(Number(last), size - 1) });
    }
  }
  if (!sawSpec) return undefined;
  if (ranges.length === 0) return emptySuffix ? undefined : 'unsatisfiable';
  const merged = coalesce(ranges);
  return merged.length > MAX_RANGES ? undefined : merged;
}

/** Sorts and merges overlapping or adjacent ranges, so no byte is sent twice. */
function coalesce(ranges: ByteRange[]): ByteRange[] {
  const sorted = [...ranges].sort((a, b) => a.start - b.start);
  const out: ByteRange[] = [];
  for (const r of sorted) {
    const prev = out[out.length - 1];
    if (prev && r.start <= prev.end + 1) prev.end = Math.max(prev.end, r.end);
    else out.push({ ...r });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Conditional requests (RFC 9110 §13.2.2 order)

function evaluatePreconditions(
  request: FastifyRequest,
  etag: string,
  mtimeSec: number | undefined,
): 304 | 412 | undefined {
  const safe = request.method === 'GET' || request.method === 'HEAD';
  const ifMatch = headerValue(request, 'if-match');
  if (ifMatch !== undefined) {
    if (!etagListMatches(ifMatch, etag, true)) return 412;
  } else {
    const since = parseHttpDate(headerValue(request, 'if-unmodified-since'));
    if (since !== undefined && mtimeSec !== undefined && mtimeSec > since) return 412;
  }
  const ifNoneMatch = headerValue(request, 'if-none-match');
  if (ifNoneMatch !== undefined) {
    if (etagListMatches(ifNoneMatch, etag, false)) return safe ? 304 : 412;
  } else if (safe) {
    const since = parseHttpDate(headerValue(request, 'if-modified-since'));
    // A date in the future is invalid and ignored (§13.1.3).
    if (since !== undefined && mtimeSec !== undefined && since * 1000 <= Date.now() && mtimeSec <= since) {
      return 304;
    }
  }
  return undefined;
}

/** If-Range: an entity tag must match strongly, a date exactly; otherwise send the whole thing. */
function ifRangeHolds(request: FastifyRequest, etag: string, mtimeSec: number | undefined): boolean {
  const value = headerValue(request, 'if-range')?.trim();
  if (value === undefined) return true;
  if (value.startsWith('"') || value.startsWith('W/')) return strongEqual(value, etag);
  const date = parseHttpDate(value);
  return date !== undefined && mtimeSec !== undefined && date === mtimeSec;
}

function etagListMatches(list: string, etag: string, strong: boolean): boolean {
  if (list.trim() === '*') return true;
  for (const m of list.matchAll(/(?:W\/)?"[^"]*"/g)) {
    if (strong ? strongEqual(m[0], etag) : opaque(m[0]) === opaque(etag)) return true;
  }
  return false;
}

function strongEqual(a: string, b: string): boolean {
  return !a.startsWith('W/') && !b.startsWith('W/') && a === b;
}

function opaque(tag: string): string {
  return tag.startsWith('W/') ? tag.slice(2) : tag;
}

function normalizeEtag(etag: string): string {
  if (/^(?:W\/)?"[\x21\x23-\x7e\x80-\xff]*"$/.test(etag)) return etag;
  return `"${etag.replace(/[^\x21\x23-\x7e]/g, '')}"`;
}

/** Whole seconds since the epoch, or undefined when absent or not an HTTP date. */
function parseHttpDate(value: string | undefined): number | undefined {
  // Date.parse alone accepts far too much ("0", "1 2"); every HTTP date starts with a day name.
  if (value === undefined || !/^[A-Za-z]{3,9},? /.test(value.trim())) return undefined;
  const ms = Date.parse(value);
  return Number.isFinite(ms) ? Math.floor(ms / 1000) : undefined;
}

function headerValue(request: FastifyRequest, name: string): string | undefined {
  const v = request.headers[name];
  return Array.isArray(v) ? v.join(', ') : v;
}

// ---------------------------------------------------------------------------------------------
// Header text

/** Drops characters Node would reject in a header value (CTLs) rather than throwing. */
function headerSafe(value: string): string {
  return value.replace(/[\x00-\x08\x0a-\x1f\x7f]/g, '').trim();
}

// C0/C1 controls, path separators, and the bidirectional formatting characters that can
// disguise an extension ("invoice\u202Efdp.exe" displays as "invoiceexe.pdf").
const UNSAFE_IN_NAME = /[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069/\\]/gu;

/**
 * A Content-Disposition value: an ASCII `filename` everyone understands plus, when the name
 * is not plain printable ASCII, an RFC 8187 `filename*` that modern clients prefer.
 */
export function contentDisposition(type: 'attachment' | 'inline', fileName: string): string {
  const name = fileName.toWellFormed().replace(UNSAFE_IN_NAME, '_') || 'download';
  const fallback = name.replace(/[^\x20-\x7e]|["\\%]/gu, '_');
  let value = `${type}; filename="${fallback}"`;
  if (fallback !== name) value += `; filename*=UTF-8''${encodeRfc8187(name)}`;
  return value;
}

function encodeRfc8187(value: string): string {
  // encodeURIComponent leaves !'()* unescaped; of those, ' ( ) * are not attr-chars.
  return encodeURIComponent(value).replace(
    /['()*]/g,
    (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
  );
}
