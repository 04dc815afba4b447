// The engine's own HTTP/1.1 client for segment requests: the strict response-head parser, the
// connection against a raw `net` server on 127.0.0.1 (hand-written bytes, so every malformed
// answer can be produced), and the engine on top of it (bad Content-Range, malformed answers,
// early close, redirects, pinned addresses, TLS name checks). Loopback only.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { once } from 'node:events';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import * as tls from 'node:tls';
import {
  GO,
  Http1Connection,
  HttpProtocolError,
  MAX_HEAD_BYTES,
  PAUSE,
  parseResponseHead,
  serializeRequest,
  type BodySink,
  type Verdict,
} from '../../src/downloaders/http/http1-connection.ts';
import { HttpDownloader, type HttpDownloaderOptions } from '../../src/downloaders/http/http.downloader.ts';
import { DownloadFailure, type DownloadJob, type DownloadOutcome } from '../../src/downloaders/port.ts';
import { OutboundPolicy } from '../../src/net/address-policy.ts';
import { contentRange, expectedSha256, startOrigin, type Origin } from '../helpers/origin.ts';

const MiB = 1024 * 1024;
const LOOPBACK = new OutboundPolicy({ allowNetworks: ['127.0.0.1/32'] });
const LOCAL = [{ address: '127.0.0.1', family: 4 as const }];

// ---------------------------------------------------------------------------------------------
// A raw server: each request (method, path, headers) goes to the current handler, which writes
// whatever bytes it likes to the socket.

interface RawRequest {
  path: string;
  headers: Record<string, string>;
  index: number;
}
type Handler = (req: RawRequest, socket: Socket) => void | Promise<void>;

interface RawServer {
  port: number;
  handler: Handler;
  requests: RawRequest[];
  connections: number;
  close(): Promise<void>;
}

async function startRaw(): Promise<RawServer> {
  const sockets = new Set<Socket>();
  const state: RawServer = {
    port: 0,
    handler: (_req, s) => {
      s.destroy();
    },
    requests: [],
    connections: 0,
    close: async () => {
      for (const s of sockets) s.destroy();
      server.close();
      await once(server, 'close');
    },
  };
  const server: Server = createServer((socket) => {
    state.connections++;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    let buf = '';
    socket.on('data', (d: Buffer) => {
      buf += d.toString('latin1');
      for (;;) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        const head = buf.slice(0, end).split('\r\n');
        buf = buf.slice(end + 4);
        const [, path = '/'] = (head[0] ?? '').split(' ');
        const headers: Record<string, string> = {};
        for (const line of head.slice(1)) {
          const i = line.indexOf(':');
          headers[line.slice(0, i).toLowerCase()] = line.slice(i + 1).trim();
        }
        const req = { path, headers, index: state.requests.length };
        state.requests.push(req);
        void Promise.resolve(state.handler(req, socket)).catch(() => socket.destroy());
      }
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  state.port = (server.address() as AddressInfo).port;
  return state;
}

/** Serves `size` bytes of seed content with proper 206 answers (optionally with a twist). */
function rangeHandler(
  size: number,
  seed: number,
  twist?: (req: RawRequest, start: number, end: number) => string | null,
): (req: RawRequest, socket: Socket) => void {
  return (req, socket) => {
    const m = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
    const start = m ? Number(m[1]) : 0;
    const end = m && m[2] !== '' ? Number(m[2]) + 1 : size;
    const body = contentRange(seed, start, end);
    const custom = twist?.(req, start, end) ?? null;
    const head =
      custom ??
      `HTTP/1.1 206 Partial Content\r\ncontent-range: bytes ${start}-${end - 1}/${size}\r\n` +
        `content-length: ${end - start}\r\netag: "v1"\r\n\r\n`;
    socket.write(head, 'latin1');
    if (!head.includes('\r\ncontent-length: 0\r\n')) socket.write(body);
  };
}

/** Collects a body into one Buffer (optionally pausing after every read). */
function collector(
  limit: number,
  pauseEvery = false,
): { sink: BodySink; data: () => Buffer; conn?: Http1Connection } {
  const out = Buffer.alloc(limit);
  let fill = 0;
  const holder: { sink: BodySink; data: () => Buffer; conn?: Http1Connection } = {
    sink: {
      space: (max) => (fill < limit ? out.subarray(fill, fill + Math.min(max, 1000)) : null),
      commit: (n): Verdict => {
        fill += n;
        if (pauseEvery) {
          setTimeout(() => holder.conn?.resume(), 1);
          return PAUSE;
        }
        return GO;
      },
    },
    data: () => out.subarray(0, fill),
  };
  return holder;
}

let raw: RawServer;
let origin: Origin;
let root: string;

before(async () => {
  raw = await startRaw();
  origin = await startOrigin();
  root = await mkdtemp(join(tmpdir(), 'ferry-h1-test-'));
});
after(async () => {
  await raw.close();
  await origin.close();
  await rm(root, { recursive: true, force: true });
});

function signal(): AbortSignal {
  return new AbortController().signal;
}

async function connect(port = raw.port, host = '127.0.0.1'): Promise<Http1Connection> {
  return Http1Connection.open(new URL(`http://${host}:${port}/f`), LOCAL, {
    timeoutMs: 2000,
    signal: signal(),
  });
}

async function rejectsWith(
  p: Promise<unknown>,
  pattern: RegExp,
  type?: new (...a: never[]) => Error,
): Promise<void> {
  await assert.rejects(p, (err: Error) => {
    if (type !== undefined)
      assert.ok(err instanceof type, `expected ${type.name}, got ${err.constructor.name}: ${err.message}`);
    assert.match(err.message, pattern);
    return true;
  });
}

// ---------------------------------------------------------------------------------------------

describe('response head parser', () => {
  test('a plain 206 head', () => {
    const h = parseResponseHead(
      'HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-9/100\r\nContent-Length: 10\r\nX-A: 1\r\nx-a:  2 ',
    );
    assert.equal(h.status, 206);
    assert.equal(h.contentLength, 10);
    assert.equal(h.headers['content-range'], 'bytes 0-9/100');
    assert.equal(h.headers['x-a'], '1, 2');
    assert.equal(h.close, false);
    assert.equal(h.transferEncoding, false);
  });

  test('keep-alive rules: Connection: close, HTTP/1.0, empty reason phrase', () => {
    assert.equal(parseResponseHead('HTTP/1.1 200 OK\r\nConnection: Close').close, true);
    assert.equal(parseResponseHead('HTTP/1.0 200 OK').close, true);
    assert.equal(parseResponseHead('HTTP/1.0 200 OK\r\nConnection: keep-alive').close, false);
    assert.equal(parseResponseHead('HTTP/1.1 204').status, 204);
    assert.equal(parseResponseHead('HTTP/1.1 204 ').status, 204);
  });

  test('malformed status lines are refused', () => {
    for (const line of [
      'HTTP/1.1 20 OK',
      'HTTP/1.1 2000 OK',
      'HTTP/1.1 200OK',
      'HTTP/2 200 OK',
      'HTTP/1.2 200 OK',
      'http/1.1 200 OK',
      'ICY 200 OK',
      ' HTTP/1.1 200 OK',
      'HTTP/1.1  200 OK',
      'HTTP/1.1 099 Weird',
      'HTTP/1.1 200 O\x00K',
      '',
    ]) {
      assert.throws(() => parseResponseHead(line), HttpProtocolError, JSON.stringify(line));
    }
  });

  test('malformed header lines are refused', () => {
    for (const head of [
      'HTTP/1.1 200 OK\nContent-Length: 1', // bare LF
      'HTTP/1.1 200 OK\r\nA: b\rc', // bare CR
      'HTTP/1.1 200 OK\r\nA: b\r\n continued', // obs-fold
      'HTTP/1.1 200 OK\r\nNo colon here',
      'HTTP/1.1 200 OK\r\n: empty name',
      'HTTP/1.1 200 OK\r\nBad Name: x',
      'HTTP/1.1 200 OK\r\nBad(Name): x',
      'HTTP/1.1 200 OK\r\nA: nul\x00inside',
      'HTTP/1.1 200 OK\r\nA: b\r\n\r\nB: c', // empty line inside the head
      'HTTP/1.1 200 OK\r\nContent-Length: 10\r\nContent-Length: 11',
      'HTTP/1.1 200 OK\r\nContent-Length: 10, 11',
      'HTTP/1.1 200 OK\r\nContent-Length: -1',
      'HTTP/1.1 200 OK\r\nContent-Length: 0x10',
      'HTTP/1.1 200 OK\r\nContent-Length: 1e3',
      'HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999',
    ]) {
      assert.throws(() => parseResponseHead(head), HttpProtocolError, JSON.stringify(head));
    }
    // identical repeats are fine
    assert.equal(
      parseResponseHead('HTTP/1.1 200 OK\r\nContent-Length: 7\r\ncontent-length: 7').contentLength,
      7,
    );
  });

  test('request serialisation refuses header injection', () => {
    const url = new URL('http://127.0.0.1:8080/a%20b?x=1#frag');
    const text = serializeRequest(url, { range: 'bytes=0-9', 'user-agent': 'Ferry' });
    assert.match(text, /^GET \/a%20b\?x=1 HTTP\/1\.1\r\nhost: 127\.0\.0\.1:8080\r\n/);
    assert.ok(text.endsWith('connection: keep-alive\r\n\r\n'));
    assert.throws(() => serializeRequest(url, { cookie: 'a=1\r\nX-Evil: 1' }), DownloadFailure);
    assert.throws(() => serializeRequest(url, { 'bad name': 'x' }), DownloadFailure);
    assert.throws(() => serializeRequest(url, { a: 'snow\u2603man' }), DownloadFailure);
  });
});

describe('connection against a raw server', () => {
  test('a body straight into the sink, then keep-alive reuse on the same socket', async () => {
    const size = 300_000;
    raw.handler = rangeHandler(size, 5);
    const before = raw.connections;
    const conn = await connect();
    for (const [a, b] of [
      [0, 99_999],
      [100_000, size - 1],
    ] as const) {
      const head = await conn.request({ range: `bytes=${a}-${b}` }, signal());
      assert.equal(head.status, 206);
      const c = collector(b - a + 1);
      assert.equal(await conn.readBody(c.sink), true);
      assert.ok(c.data().equals(contentRange(5, a, b + 1)));
      assert.equal(conn.reusable, true);
    }
    assert.equal(raw.connections - before, 1, 'one connection for both requests');
    conn.destroy();
  });

  test('a head dribbled one byte at a time, with 100 Continue and 103 first; pause/resume', async () => {
    raw.handler = async (_req, socket) => {
      const body = contentRange(6, 0, 5000);
      const text =
        'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n' +
        'HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-4999/5000\r\nContent-Length: 5000\r\n\r\n';
      for (const ch of text) {
        socket.write(ch, 'latin1');
        await sleep(0);
      }
      socket.write(body);
    };
    const conn = await connect();
    const head = await conn.request({}, signal());
    assert.equal(head.status, 206);
    const c = collector(5000, true);
    c.conn = conn;
    assert.equal(await conn.readBody(c.sink), true);
    assert.ok(c.data().equals(contentRange(6, 0, 5000)));
    conn.destroy();
  });

  test('a head larger than 64 KiB is refused', async () => {
    raw.handler = (_req, socket) => {
      socket.write('HTTP/1.1 206 Partial Content\r\n');
      const line = `X-Filler: ${'a'.repeat(1000)}\r\n`;
      for (let i = 0; i < Math.ceil(MAX_HEAD_BYTES / line.length) + 1; i++) socket.write(line);
      socket.write('Content-Length: 0\r\n\r\n');
    };
    const conn = await connect();
    await rejectsWith(conn.request({}, signal()), /larger than 65536/, HttpProtocolError);
  });

  test('a malformed status line is refused', async () => {
    raw.handler = (_req, socket) => {
      socket.write('HTTP/1.1 2O6 Partial\r\nContent-Length: 0\r\n\r\n');
    };
    await rejectsWith((await connect()).request({}, signal()), /malformed status line/, HttpProtocolError);
  });

  test('chunked or length-less bodies are refused', async () => {
    raw.handler = (_req, socket) => {
      socket.write(
        'HTTP/1.1 206 Partial\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n5\r\nhello\r\n0\r\n\r\n',
      );
    };
    let conn = await connect();
    await conn.request({}, signal());
    await rejectsWith(conn.readBody(collector(100).sink), /Transfer-Encoding/, HttpProtocolError);
    assert.equal(conn.reusable, false);

    raw.handler = (_req, socket) => {
      socket.end('HTTP/1.1 206 Partial\r\n\r\nhello');
    };
    conn = await connect();
    await conn.request({}, signal());
    await rejectsWith(conn.readBody(collector(100).sink), /without Content-Length/, HttpProtocolError);
  });

  test('early close: before the head, and in the middle of the body', async () => {
    raw.handler = (_req, socket) => {
      socket.end('HTTP/1.1 206 Partial\r\nContent-Le');
    };
    await rejectsWith(
      (await connect()).request({}, signal()),
      /before a complete response head/,
      DownloadFailure,
    );

    raw.handler = (_req, socket) => {
      socket.write('HTTP/1.1 206 Partial\r\nContent-Length: 100000\r\n\r\n');
      socket.end(Buffer.alloc(40_000, 1));
    };
    const conn = await connect();
    await conn.request({}, signal());
    await rejectsWith(
      conn.readBody(collector(100_000).sink),
      /closed early \(60000 body bytes missing\)/,
      DownloadFailure,
    );
  });

  test('bytes beyond Content-Length: the body is kept, the connection is not reused', async () => {
    raw.handler = (_req, socket) => {
      socket.write('HTTP/1.1 206 Partial\r\nContent-Length: 5\r\n\r\nhelloEXTRA');
    };
    const conn = await connect();
    await conn.request({}, signal());
    const c = collector(100);
    assert.equal(await conn.readBody(c.sink), true);
    assert.equal(c.data().toString(), 'hello');
    assert.equal(conn.reusable, false);
  });

  test('abort destroys the socket and rejects with the reason', async () => {
    raw.handler = (_req, socket) => {
      socket.write('HTTP/1.1 206 Partial\r\nContent-Length: 100\r\n\r\nabc');
    };
    const conn = await connect();
    const ctl = new AbortController();
    await conn.request({}, ctl.signal);
    const p = conn.readBody(collector(100).sink);
    ctl.abort(new Error('stop now'));
    await rejectsWith(p, /stop now/);
    assert.equal(conn.reusable, false);
  });
});

// ---------------------------------------------------------------------------------------------

let dirSeq = 0;
async function job(url: string, overrides: Partial<DownloadJob> = {}): Promise<DownloadJob> {
  const stagingDir = join(root, `job-${++dirSeq}`);
  await mkdir(stagingDir);
  return {
    source: { kind: 'http', url },
    stagingDir,
    connections: 4,
    speedLimit: 0,
    timeoutMs: 0,
    maxBytes: 0,
    signal: new AbortController().signal,
    onProgress: () => undefined,
    checkpoint: async () => undefined,
    ...overrides,
  };
}

function engine(options: Partial<HttpDownloaderOptions> = {}): HttpDownloader {
  return new HttpDownloader({
    policy: LOOPBACK,
    stallTimeoutMs: 2000,
    minSegmentSize: 64 * 1024,
    retry: { baseDelayMs: 10, maxDelayMs: 50, attempts: 3 },
    ...options,
  });
}

async function sha256File(path: string): Promise<string> {
  return createHash('sha256')
    .update(await readFile(path))
    .digest('hex');
}

async function failure(p: Promise<DownloadOutcome>): Promise<DownloadFailure> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof DownloadFailure, String(err));
    return err;
  }
  assert.fail('the download succeeded');
}

describe('engine segments over the raw client', () => {
  test('byte-exact over a raw range server, one connection per worker', async () => {
    const size = 2 * MiB + 777;
    raw.handler = rangeHandler(size, 7);
    raw.requests = [];
    const before = raw.connections;
    const out = await engine().download(await job(`http://127.0.0.1:${raw.port}/exact.bin`));
    assert.equal(await sha256File(out.files[0]?.stagingPath ?? ''), expectedSha256(size, 7));
    assert.ok(raw.connections - before <= 5, `${raw.connections - before} connections for 4 workers + probe`);
  });

  test('a wrong Content-Range on segment requests restarts, then fails, never keeps bad bytes', async () => {
    const size = 1 * MiB;
    raw.handler = rangeHandler(size, 8, (req, start, end) =>
      req.index === 0 || start === 0
        ? null
        : `HTTP/1.1 206 Partial\r\ncontent-range: bytes ${start + 1}-${end}/${size}\r\ncontent-length: ${end - start}\r\n\r\n`,
    );
    raw.requests = [];
    const f = await failure(engine().download(await job(`http://127.0.0.1:${raw.port}/badrange.bin`)));
    assert.equal(f.failure, 'HTTP_ERROR');
    assert.match(f.message, /different range/);
  });

  test('Content-Length disagreeing with Content-Range, malformed answers, early closes: retried, then a clear failure', async () => {
    const size = 1 * MiB;
    const twists: ((start: number, end: number) => string)[] = [
      (s, e) =>
        `HTTP/1.1 206 Partial\r\ncontent-range: bytes ${s}-${e - 1}/${size}\r\ncontent-length: ${e - s - 1}\r\n\r\n`,
      () => 'HTTP/1.1 206 Partial\r\nbroken header\r\n\r\n',
      () => `HTTP/1.1 206 Partial\r\nX-Big: ${'b'.repeat(70_000)}\r\n\r\n`,
    ];
    // Framing that disagrees is a network-level failure; a malformed head is the origin's fault
    // and fails the task without task-level retries (HTTP_ERROR, not retryable).
    const expected = ['NETWORK', 'HTTP_ERROR', 'HTTP_ERROR'];
    for (const [i, twist] of twists.entries()) {
      // Each round has its own path, and its first request there is the probe: a late request
      // of the round before (a connection still opening when that download failed) is not.
      const path = `/twist-${i}.bin`;
      let probed = false;
      raw.handler = rangeHandler(size, 9, (req, start, end) => {
        if (req.path !== path) return null;
        if (!probed) return ((probed = true), null);
        return twist(start, end);
      });
      raw.requests = [];
      const f = await failure(engine().download(await job(`http://127.0.0.1:${raw.port}${path}`)));
      assert.equal(f.failure, expected[i], f.message);
      if (f.failure === 'HTTP_ERROR') assert.equal(f.retryable, false);
    }
    // A body cut short is retried from where it stopped and completes.
    let cut = 0;
    raw.handler = (req, socket) => {
      if (req.index > 0 && cut < 3) {
        cut++;
        const m = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
        const start = Number(m?.[1] ?? 0);
        const end = m?.[2] ? Number(m[2]) + 1 : size;
        socket.write(
          `HTTP/1.1 206 Partial\r\ncontent-range: bytes ${start}-${end - 1}/${size}\r\ncontent-length: ${end - start}\r\n\r\n`,
        );
        socket.end(contentRange(9, start, start + Math.floor((end - start) / 3)));
        return;
      }
      rangeHandler(size, 9)(req, socket);
    };
    const out = await engine().download(await job(`http://127.0.0.1:${raw.port}/cut.bin`));
    assert.equal(await sha256File(out.files[0]?.stagingPath ?? ''), expectedSha256(size, 9));
    assert.equal(cut, 3);
  });

  test('a redirect on a segment request is followed the checked way', async () => {
    const size = 1 * MiB;
    const serve = rangeHandler(size, 10);
    raw.handler = (req, socket) => {
      if (req.index > 0 && req.path === '/moving.bin') {
        socket.write('HTTP/1.1 302 Found\r\nlocation: /moved.bin\r\ncontent-length: 0\r\n\r\n');
        return;
      }
      serve(req, socket);
    };
    raw.requests = [];
    const out = await engine().download(await job(`http://127.0.0.1:${raw.port}/moving.bin`));
    assert.equal(await sha256File(out.files[0]?.stagingPath ?? ''), expectedSha256(size, 10));
    assert.ok(raw.requests.some((r) => r.path === '/moved.bin'));

    raw.handler = (req, socket) => {
      if (req.index > 0) {
        socket.write('HTTP/1.1 302 Found\r\nlocation: http://10.0.0.1/x\r\ncontent-length: 0\r\n\r\n');
        return;
      }
      serve(req, socket);
    };
    raw.requests = [];
    const f = await failure(engine().download(await job(`http://127.0.0.1:${raw.port}/evil.bin`)));
    assert.equal(f.failure, 'SOURCE_BLOCKED');
  });

  test('segment connections go only to the checked, pinned address (no new lookups)', async () => {
    const lookups: string[] = [];
    const resolve = async (host: string): Promise<{ address: string; family: 4 | 6 }[]> => {
      lookups.push(host);
      return [
        { address: '10.0.0.1', family: 4 },
        { address: '127.0.0.1', family: 4 },
      ];
    };
    const connects: string[] = [];
    const onConnect = (m: unknown): void => {
      connects.push((m as { address: string }).address);
    };
    subscribe('ferry:http1:connect', onConnect);
    try {
      const url = origin.route('/pinned.bin', { size: 4 * MiB, seed: 12 });
      const out = await engine({ resolve }).download(
        await job(url.replace('127.0.0.1', 'mixed.test'), { connections: 8 }),
      );
      assert.equal(await sha256File(out.files[0]?.stagingPath ?? ''), expectedSha256(4 * MiB, 12));
      assert.deepEqual(lookups, ['mixed.test']);
      assert.ok(connects.length >= 4, `raw connects: ${connects.join(', ')}`);
      assert.deepEqual([...new Set(connects)], ['127.0.0.1']);
    } finally {
      unsubscribe('ferry:http1:connect', onConnect);
    }
  });

  test('speed limit and stall recovery still hold on the raw path', async () => {
    const url = origin.route('/raw-limit.bin', { size: 2 * MiB, seed: 13 });
    const t0 = performance.now();
    const out = await engine().download(await job(url, { speedLimit: 1 * MiB }));
    const took = performance.now() - t0;
    assert.ok(took >= 1500, `took ${took.toFixed(0)} ms`);
    assert.equal(await sha256File(out.files[0]?.stagingPath ?? ''), expectedSha256(2 * MiB, 13));

    const url2 = origin.route('/raw-stall.bin', {
      size: 4 * MiB,
      seed: 14,
      stall: { count: 3, afterBytes: 200_000 },
    });
    const out2 = await engine({ stallTimeoutMs: 300 }).download(await job(url2));
    assert.equal(await sha256File(out2.files[0]?.stagingPath ?? ''), expectedSha256(4 * MiB, 14));
  });
});

// ---------------------------------------------------------------------------------------------

function makeCert(dir: string): { key: string; cert: string } | null {
  try {
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:prime256v1',
        '-nodes',
        '-days',
        '1',
        '-subj',
        '/CN=ferry-test.local',
        '-addext',
        'subjectAltName=DNS:ferry-test.local',
        '-keyout',
        join(dir, 'key.pem'),
        '-out',
        join(dir, 'cert.pem'),
      ],
      { stdio: 'ignore' },
    );
  } catch {
    return null;
  }
  return {
    key: execFileSync('cat', [join(dir, 'key.pem')]).toString(),
    cert: execFileSync('cat', [join(dir, 'cert.pem')]).toString(),
  };
}

describe('TLS', () => {
  test('the certificate is checked against the URL host name, not the pinned address', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'ferry-tls-'));
    const pair = makeCert(dir);
    if (pair === null) {
      t.skip('openssl not available');
      return;
    }
    const server = tls.createServer({ key: pair.key, cert: pair.cert }, (socket) => {
      socket.on('error', () => undefined);
      socket.once('data', () => {
        const body = contentRange(15, 0, 100_000);
        socket.write(
          'HTTP/1.1 206 Partial\r\ncontent-range: bytes 0-99999/100000\r\ncontent-length: 100000\r\n\r\n',
        );
        socket.write(body);
      });
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const port = (server.address() as AddressInfo).port;
    const defaults = tls.getCACertificates('default');
    tls.setDefaultCACertificates([...defaults, pair.cert]);
    try {
      const good = await Http1Connection.open(new URL(`https://ferry-test.local:${port}/f`), LOCAL, {
        timeoutMs: 2000,
        signal: signal(),
      });
      assert.equal((await good.request({}, signal())).status, 206);
      const c = collector(100_000);
      assert.equal(await good.readBody(c.sink), true);
      assert.ok(c.data().equals(contentRange(15, 0, 100_000)));
      good.destroy();

      await assert.rejects(
        Http1Connection.open(new URL(`https://other-name.local:${port}/f`), LOCAL, {
          timeoutMs: 2000,
          signal: signal(),
        }),
        (err: Error & { code?: string }) => {
          assert.equal(err.code, 'ERR_TLS_CERT_ALTNAME_INVALID', err.message);
          return true;
        },
      );
      // an IP-literal URL is checked against the IP (the cert has none)
      await assert.rejects(
        Http1Connection.open(new URL(`https://127.0.0.1:${port}/f`), LOCAL, {
          timeoutMs: 2000,
          signal: signal(),
        }),
        /IP: 127\.0\.0\.1 is not in the cert's list/,
      );
    } finally {
      tls.setDefaultCACertificates(defaults);
      server.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
