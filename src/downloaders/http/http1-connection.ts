// A small HTTP/1.1 client connection for the engine's ranged segment GETs: one TCP (or TLS)
// socket to an address the SafeDialer already checked and pinned, `GET` requests answered with a
// Content-Length framed body, keep-alive reuse. It exists because undici's per-chunk path (wasm
// parser copies, a Readable stream and an async iterator per response) costs more CPU than the
// transfer itself on fast links.
//
// The body goes straight into the caller's buffers: the socket's `onread` hook asks the sink for
// free room in its write batch before every read, so the kernel copies the bytes to where they
// are written to the file from — no allocation and no extra copy per chunk. Only the response
// head (and whatever body bytes share its read) passes through a scratch buffer.
//
// Strict by design (this talks to arbitrary servers): the status line and every header line must
// be well formed, the head must fit in 64 KiB, CR and LF only as CRLF, no obs-fold, one
// consistent Content-Length, and a body we read must be framed by Content-Length alone (any
// Transfer-Encoding is refused, as is a missing length). A connection is only reused when the
// previous body was read exactly to its end and the server did not ask to close.

import { channel } from 'node:diagnostics_channel';
import { Socket, connect as netConnect } from 'node:net';
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls';
import type { ResolvedAddress } from '../../net/safe-dial.ts';
import { isIpLiteral } from '../../net/address-policy.ts';
import { DownloadFailure } from '../port.ts';

/** Largest response head (status line + headers + final CRLF) accepted. */
export const MAX_HEAD_BYTES = 64 * 1024;
const SCRATCH_BYTES = 64 * 1024;
const CRLFCRLF = Buffer.from('\r\n\r\n', 'latin1');
/**
 * Where reads that do not go straight into a sink land (response heads, bytes that arrive while
 * paused), shared by all connections: a read's callback runs right after it, on the one JS
 * thread, and copies out whatever it keeps, so no connection ever finds another's bytes in it.
 * (One per connection cost 64 KiB each: 25 MiB for 200 downloads of two connections.)
 */
const SCRATCH = Buffer.allocUnsafe(SCRATCH_BYTES);

/** Published before every connection attempt: `{ hostname, address, port }`. */
export const connectChannel = channel('ferry:http1:connect');

/** The server broke the protocol (malformed or unacceptable response). */
export class HttpProtocolError extends Error {
  readonly code = 'FERRY_HTTP_PROTOCOL';
}

export interface ResponseHead {
  status: number;
  /** Lower-case names; repeated headers joined with ", ". */
  headers: Record<string, string>;
  /** Content-Length, or null when absent. */
  contentLength: number | null;
  /** A Transfer-Encoding header was present. */
  transferEncoding: boolean;
  /** The server will close after this response (Connection: close, or HTTP/1.0). */
  close: boolean;
}

/** What a body is read into (see BodySink.commit). */
export const GO = 0;
export const PAUSE = 1;
export const STOP = 2;
export type Verdict = typeof GO | typeof PAUSE | typeof STOP;

export interface BodySink {
  /** Free room for at most `max` (> 0) body bytes, or null when there is none right now. */
  space(max: number): Buffer | null;
  /**
   * `n` body bytes were placed at the start of the room `space` returned last. GO reads on;
   * PAUSE stops reading until `resume()`; STOP abandons the rest of the body (the connection
   * is closed, `readBody` resolves).
   */
  commit(n: number): Verdict;
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
// Field values: visible ASCII, obs-text, SP and HTAB; no CTLs (so no CR, LF, NUL).
const BAD_VALUE = /[\x00-\x08\x0a-\x1f\x7f]/;
const STATUS_LINE = /^HTTP\/1\.([01]) ([1-9]\d\d)(?: [\t\x20-\x7e\x80-\xff]*)?$/;

/**
 * Parses a response head (latin1 text without the final empty line). Throws HttpProtocolError
 * when anything is malformed.
 */
export function parseResponseHead(text: string): ResponseHead {
  const lines = text.split('\r\n');
  for (const line of lines) {
    if (line.includes('\r') || line.includes('\n'))
      throw new HttpProtocolError('bare CR or LF in the response head');
  }
  const m = STATUS_LINE.exec(lines[0] ?? '');
  if (m === null)
    throw new HttpProtocolError(`malformed status line: ${JSON.stringify((lines[0] ?? '').slice(0, 80))}`);
  const minor = m[1];
  const status = Number(m[2]);
  const headers: Record<string, string> = {};
  const lengths: string[] = [];
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i] ?? '';
    if (line === '') throw new HttpProtocolError('empty line inside the response head');
    if (line.startsWith(' ') || line.startsWith('\t')) {
      throw new HttpProtocolError('obsolete header line folding');
    }
    const colon = line.indexOf(':');
    if (colon <= 0)
      throw new HttpProtocolError(`malformed header line: ${JSON.stringify(line.slice(0, 80))}`);
    const name = line.slice(0, colon);
    if (!TOKEN.test(name))
      throw new HttpProtocolError(`invalid header name: ${JSON.stringify(name.slice(0, 80))}`);
    const value = line.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, '');
    if (BAD_VALUE.test(value)) throw new HttpProtocolError(`invalid characters in header ${name}`);
    const key = name.toLowerCase();
    if (key === 'content-length') lengths.push(value);
    const prev = headers[key];
    headers[key] = prev === undefined ? value : `${prev}, ${value}`;
  }
  let contentLength: number | null = null;
  for (const v of lengths) {
    if (!/^\d{1,15}$/.test(v))
      throw new HttpProtocolError(`invalid Content-Length: ${JSON.stringify(v.slice(0, 40))}`);
    const n = Number(v);
    if (contentLength !== null && n !== contentLength)
      throw new HttpProtocolError('conflicting Content-Length headers');
    contentLength = n;
  }
  const connection = (headers.connection ?? '')
    .toLowerCase()
    .split(',')
    .map((t) => t.trim());
  const close = minor === '0' ? !connection.includes('keep-alive') : connection.includes('close');
  return {
    status,
    headers,
    contentLength,
    transferEncoding: headers['transfer-encoding'] !== undefined,
    close,
  };
}

/** Serialises a GET request; header names/values are validated (no request splitting). */
export function serializeRequest(url: URL, headers: Record<string, string>): string {
  let out = `GET ${url.pathname}${url.search} HTTP/1.1\r\nhost: ${url.host}\r\n`;
  for (const [name, value] of Object.entries(headers)) {
    const key = name.toLowerCase();
    if (key === 'host' || key === 'connection' || key === 'content-length' || key === 'transfer-encoding')
      continue;
    if (!TOKEN.test(name) || BAD_VALUE.test(value) || /[^\x00-\xff]/.test(value)) {
      throw new DownloadFailure('HTTP_ERROR', `invalid request header ${JSON.stringify(name.slice(0, 40))}`);
    }
    out += `${name}: ${value}\r\n`;
  }
  return `${out}connection: keep-alive\r\n\r\n`;
}

type State = 'connecting' | 'idle' | 'head' | 'response' | 'body' | 'closed';

interface Pending<T> {
  resolve: (v: T) => void;
  reject: (err: unknown) => void;
}

export interface ConnectOptions {
  timeoutMs: number;
  signal: AbortSignal;
  /** Certificates trusted for https (Node's roots plus `--ca-file`); absent = Node's defaults. */
  ca?: readonly string[];
}

export class Http1Connection {
  readonly url: URL;
  readonly #socket: Socket;
  readonly #scratch = SCRATCH;
  #state: State = 'connecting';
  /** Why the connection ended (rejects whatever is pending). */
  #error: unknown = null;

  // head
  #headBuf: Buffer | null = null;
  #headLen = 0;
  #head: ResponseHead | null = null;
  #onHead: Pending<ResponseHead> | null = null;

  // body
  #sink: BodySink | null = null;
  #remaining = 0;
  #onBody: Pending<boolean> | null = null;
  /** Bytes received while paused or between head and body: owned copies, fed first on resume. */
  #hold: Buffer[] = [];
  #paused = false;
  /** The room the next read lands in (null: the scratch buffer). */
  #room: Buffer | null = null;
  #spoiled = false;
  #abortSignal: AbortSignal | null = null;

  /** Reads delivered so far (a cheap activity counter for stall watchdogs). */
  reads = 0;

  private constructor(url: URL, address: ResolvedAddress, ca: readonly string[] | undefined) {
    this.url = url;
    const port = Number(url.port) || (url.protocol === 'https:' ? 443 : 80);
    const onread = {
      buffer: (): Buffer => this.#nextBuffer(),
      callback: (n: number, buf: Uint8Array): boolean => this.#onRead(n, buf),
    };
    const host = url.hostname.replace(/^\[|\]$/g, '');
    if (url.protocol === 'https:') {
      // `onread` is supported by tls.connect (when no `socket` is given) but missing from its types.
      const options: ConnectionOptions & { onread: typeof onread } = {
        host: address.address,
        port,
        ...(isIpLiteral(host) ? {} : { servername: host }),
        ALPNProtocols: ['http/1.1'],
        ...(ca === undefined ? {} : { ca: [...ca] }),
        onread,
      };
      this.#socket = tlsConnect(options);
    } else {
      this.#socket = netConnect({ host: address.address, port, family: address.family, onread });
    }
    this.#socket.on('error', (err) => this.destroy(err));
    this.#socket.on('end', () => this.#closed());
    this.#socket.on('close', () => this.#closed());
  }

  /**
   * Connects to the first of `addresses` (already checked against the policy) that answers.
   * `url` gives the port, the Host header and, for https, the name the certificate must match.
   */
  static async open(
    url: URL,
    addresses: readonly ResolvedAddress[],
    opts: ConnectOptions,
  ): Promise<Http1Connection> {
    let last: unknown = new DownloadFailure('NETWORK', `no address to connect to for ${url.hostname}`);
    for (const address of addresses) {
      if (opts.signal.aborted) throw opts.signal.reason;
      if (connectChannel.hasSubscribers) {
        connectChannel.publish({ hostname: url.hostname, address: address.address, port: url.port });
      }
      const conn = new Http1Connection(url, address, opts.ca);
      try {
        await conn.#connected(opts);
        return conn;
      } catch (err) {
        conn.destroy(err);
        last = err;
        if (opts.signal.aborted) throw opts.signal.reason;
      }
    }
    throw last;
  }

  #connected(opts: ConnectOptions): Promise<void> {
    const socket = this.#socket;
    const event = this.url.protocol === 'https:' ? 'secureConnect' : 'connect';
    return new Promise<void>((resolve, reject) => {
      const done = (err: unknown): void => {
        clearTimeout(timer);
        socket.off(event, onOk);
        socket.off('error', done);
        socket.off('close', onClose);
        opts.signal.removeEventListener('abort', onAbort);
        if (err === null) resolve();
        else reject(err instanceof Error ? err : new Error('connect failed', { cause: err }));
      };
      const onOk = (): void => {
        this.#state = 'idle';
        socket.resume(); // flowing; data only ever reaches the onread hook
        done(null);
      };
      const onClose = (): void =>
        done(
          this.#error ??
            new DownloadFailure('NETWORK', 'connection closed while connecting', { retryable: true }),
        );
      const onAbort = (): void => done(opts.signal.reason);
      const timer = setTimeout(
        () =>
          done(Object.assign(new Error(`connect timeout after ${opts.timeoutMs} ms`), { code: 'ETIMEDOUT' })),
        opts.timeoutMs,
      );
      socket.once(event, onOk);
      socket.once('error', done);
      socket.once('close', onClose);
      opts.signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** Idle, open, and the last exchange left it in a clean state. */
  get reusable(): boolean {
    return this.#state === 'idle' && !this.#spoiled && !this.#socket.destroyed;
  }

  /**
   * Sends `GET url` with `headers` and resolves with the response head (1xx answers skipped).
   * After it, call `readBody` to read a Content-Length framed body, or `destroy`.
   */
  request(headers: Record<string, string>, signal: AbortSignal): Promise<ResponseHead> {
    if (!this.reusable)
      return Promise.reject(new DownloadFailure('NETWORK', 'connection not usable', { retryable: true }));
    const text = serializeRequest(this.url, headers);
    this.#state = 'head';
    this.#headLen = 0;
    this.#head = null;
    this.#watch(signal);
    const p = new Promise<ResponseHead>((resolve, reject) => {
      this.#onHead = { resolve, reject };
    });
    this.#socket.write(text, 'latin1');
    return p;
  }

  /**
   * Reads the body of the response just received into `sink`. Resolves true when the whole body
   * was read, false when the sink said STOP (the connection is then closed).
   */
  readBody(sink: BodySink): Promise<boolean> {
    const head = this.#head;
    if (this.#state !== 'response' || head === null) {
      return Promise.reject(new DownloadFailure('NETWORK', 'no response to read', { retryable: true }));
    }
    if (head.transferEncoding) {
      const err = new HttpProtocolError('Transfer-Encoding on a response that must carry a Content-Length');
      this.destroy(err);
      return Promise.reject(err);
    }
    if (head.contentLength === null) {
      const err = new HttpProtocolError('response without Content-Length');
      this.destroy(err);
      return Promise.reject(err);
    }
    this.#sink = sink;
    this.#remaining = head.contentLength;
    this.#state = 'body';
    const p = new Promise<boolean>((resolve, reject) => {
      this.#onBody = { resolve, reject };
    });
    this.resume();
    return p;
  }

  /** Reading stopped after a PAUSE verdict (or a lack of room) goes on. */
  resume(): void {
    if (this.#state === 'closed') return;
    this.#paused = false;
    if (this.#state === 'body' && this.#remaining === 0) this.#finishBody();
    while (this.#hold.length > 0 && !this.#paused && this.#state === 'body') {
      const buf = this.#hold.shift() ?? Buffer.alloc(0);
      this.#feedBody(buf, 0, buf.length);
    }
    if (this.#isClosed || this.#paused) return;
    if (this.#state === 'response') {
      this.#paused = true;
      return;
    }
    this.#socket.resume();
  }

  /** Closes the connection; whatever is pending rejects with `err` (default: closed). */
  destroy(err?: unknown): void {
    if (this.#state === 'closed') return;
    this.#state = 'closed';
    this.#error = err ?? new DownloadFailure('NETWORK', 'connection closed', { retryable: true });
    this.#unwatch();
    this.#socket.destroy();
    this.#hold = [];
    this.#sink = null;
    const h = this.#onHead;
    const b = this.#onBody;
    this.#onHead = null;
    this.#onBody = null;
    h?.reject(this.#error);
    b?.reject(this.#error);
  }

  // -------------------------------------------------------------------------------------------

  #watch(signal: AbortSignal): void {
    this.#unwatch();
    if (signal.aborted) {
      queueMicrotask(() => this.destroy(signal.reason));
      return;
    }
    this.#abortSignal = signal;
    signal.addEventListener('abort', this.#onAbort, { once: true });
  }

  #unwatch(): void {
    this.#abortSignal?.removeEventListener('abort', this.#onAbort);
    this.#abortSignal = null;
  }

  readonly #onAbort = (): void => {
    this.destroy(this.#abortSignal?.reason);
  };

  #closed(): void {
    if (this.#state === 'closed') return;
    const state = this.#state;
    let err: DownloadFailure;
    if (state === 'body') {
      err = new DownloadFailure(
        'NETWORK',
        `connection closed early (${this.#remaining} body bytes missing)`,
        {
          retryable: true,
        },
      );
    } else if (state === 'head') {
      err = new DownloadFailure('NETWORK', 'connection closed before a complete response head', {
        retryable: true,
      });
    } else {
      err = new DownloadFailure('NETWORK', 'connection closed', { retryable: true });
    }
    this.destroy(err);
  }

  /** Where the next read lands: room in the sink while a body streams, else the scratch buffer. */
  #nextBuffer(): Buffer {
    if (this.#state === 'body' && !this.#paused && this.#hold.length === 0 && this.#sink !== null) {
      const room = this.#sink.space(this.#remaining);
      if (room !== null && room.length > 0) {
        this.#room = room;
        return room;
      }
    }
    this.#room = null;
    return this.#scratch;
  }

  #onRead(n: number, buf: Uint8Array): boolean {
    this.reads++;
    if (this.#state === 'closed') return false;
    if (buf === this.#room && this.#room !== null) {
      // Body bytes already where they belong.
      this.#room = null;
      this.#remaining -= n;
      const v = this.#sink?.commit(n) ?? STOP;
      if (this.#remaining === 0) {
        this.#finishBody();
        return !this.#isClosed;
      }
      return this.#verdict(v);
    }
    const scratch = this.#scratch;
    if (this.#state === 'head') return this.#feedHead(scratch, 0, n);
    if (this.#state === 'body' && !this.#paused && this.#hold.length === 0)
      return this.#feedBody(scratch, 0, n);
    if (this.#state === 'body' || this.#state === 'response') {
      // Paused (TLS can deliver decrypted data after a pause): keep a copy for later.
      this.#hold.push(Buffer.from(scratch.subarray(0, n)));
      this.#paused = true;
      return false;
    }
    // Bytes nobody asked for (idle connection): the server is out of step; do not reuse.
    this.#spoiled = true;
    this.destroy(new HttpProtocolError('unexpected data on an idle connection'));
    return false;
  }

  get #isClosed(): boolean {
    return this.#state === 'closed';
  }

  #verdict(v: Verdict): boolean {
    if (v === GO) return true;
    if (v === PAUSE) {
      this.#paused = true;
      return false;
    }
    this.#stopBody();
    return false;
  }

  /** Response head bytes in src[off, off+n). */
  #feedHead(src: Buffer, off: number, n: number): boolean {
    let pos = off;
    const stop = off + n;
    while (pos < stop && this.#state === 'head') {
      let text: string | null = null;
      let next = -1; // offset in src just past the head's final CRLFCRLF
      if (this.#headLen === 0) {
        // Common case: the whole head arrived in one read.
        const view = src.subarray(pos, Math.min(stop, pos + MAX_HEAD_BYTES));
        const i = view.indexOf(CRLFCRLF);
        if (i >= 0) {
          text = view.toString('latin1', 0, i);
          next = pos + i + 4;
        }
      }
      if (text === null) {
        // The head spans reads: gather it (bounded).
        this.#headBuf ??= Buffer.allocUnsafe(MAX_HEAD_BYTES);
        const prev = this.#headLen;
        const take = Math.min(stop - pos, MAX_HEAD_BYTES - prev);
        src.copy(this.#headBuf, prev, pos, pos + take);
        this.#headLen += take;
        const i = this.#headBuf.subarray(0, this.#headLen).indexOf(CRLFCRLF, Math.max(0, prev - 3));
        if (i < 0) {
          if (this.#headLen >= MAX_HEAD_BYTES) {
            this.destroy(new HttpProtocolError(`response head larger than ${MAX_HEAD_BYTES} bytes`));
            return false;
          }
          return true;
        }
        text = this.#headBuf.toString('latin1', 0, i);
        next = pos + (i + 4 - prev);
      }
      pos = next;
      this.#headLen = 0;
      let head: ResponseHead;
      try {
        head = parseResponseHead(text);
      } catch (err) {
        this.destroy(err);
        return false;
      }
      if (head.status === 101) {
        this.destroy(new HttpProtocolError('unexpected 101 Switching Protocols'));
        return false;
      }
      if (head.status < 200) continue; // 100 Continue, 103 Early Hints: the real answer follows
      this.#head = head;
      this.#state = 'response';
      if (head.close) this.#spoiled = true;
      if (pos < stop) this.#hold.push(Buffer.from(src.subarray(pos, stop)));
      this.#paused = true;
      const h = this.#onHead;
      this.#onHead = null;
      h?.resolve(head);
      return false; // readBody resumes
    }
    return true;
  }

  /** Body bytes in src[off, off+n) that must be copied into the sink. */
  #feedBody(src: Buffer, off: number, n: number): boolean {
    let pos = off;
    let left = n;
    if (left > this.#remaining) {
      // More than the promised length: finish the body, but never reuse this connection.
      this.#spoiled = true;
      left = this.#remaining;
    }
    const sink = this.#sink;
    if (sink === null) return false;
    while (left > 0) {
      const room = sink.space(left);
      if (room === null || room.length === 0) {
        this.#hold.push(Buffer.from(src.subarray(pos, pos + left)));
        this.#paused = true;
        return false;
      }
      const k = Math.min(left, room.length);
      src.copy(room, 0, pos, pos + k);
      pos += k;
      left -= k;
      this.#remaining -= k;
      const v = sink.commit(k);
      if (this.#remaining === 0) {
        this.#finishBody();
        return !this.#isClosed;
      }
      if (v !== GO) {
        if (v === PAUSE && left > 0) this.#hold.push(Buffer.from(src.subarray(pos, pos + left)));
        return this.#verdict(v);
      }
    }
    return true;
  }

  #finishBody(): void {
    const b = this.#onBody;
    this.#onBody = null;
    this.#sink = null;
    if (this.#hold.length > 0) this.#spoiled = true; // bytes beyond the body
    this.#hold = [];
    this.#paused = false;
    this.#unwatch();
    if (this.#spoiled) {
      this.#state = 'idle';
      this.destroy();
    } else {
      this.#state = 'idle';
    }
    b?.resolve(true);
  }

  #stopBody(): void {
    const b = this.#onBody;
    this.#onBody = null;
    this.#spoiled = true;
    this.destroy();
    b?.resolve(false);
  }
}
