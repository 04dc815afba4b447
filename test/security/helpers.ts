// Shared tools of the adversarial suite: a seeded PRNG, a raw HTTP/1.1 client (so requests can
// carry what fetch refuses to send: invalid UTF-8, lying Content-Length, `..` in the path), the
// envelope checks of both faces, forged JWTs and signed links with the server's own secret, and
// directory walks for containment checks. Every connection goes to 127.0.0.1.
import { createHash, createHmac } from 'node:crypto';
import { readdir, readFile, lstat } from 'node:fs/promises';
import { connect } from 'node:net';
import { join, relative } from 'node:path';

// ---------------------------------------------------------------------------------------------
// PRNG (mulberry32): the same seed gives the same cases, so a failure can be replayed.

export class Rng {
  private state: number;
  constructor(seed: number) {
    this.state = seed >>> 0;
  }
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  bool(p = 0.5): boolean {
    return this.next() < p;
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }
}

// ---------------------------------------------------------------------------------------------
// Raw HTTP

export interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

export interface RawRequest {
  method: string;
  /** Sent verbatim (no normalisation of `..`, no encoding). */
  target: string;
  headers?: Array<[string, string]>;
  body?: Buffer | string;
  /** Send no Content-Length of our own (the caller sets one, or none). */
  noContentLength?: boolean;
  /** Wait this long between head and body (default: 100 ms for bodies over 1 MiB, else 0). */
  bodyDelayMs?: number;
}

function dechunk(data: Buffer): Buffer {
  const parts: Buffer[] = [];
  let pos = 0;
  for (;;) {
    const eol = data.indexOf('\r\n', pos);
    if (eol < 0) break;
    const size = parseInt(data.subarray(pos, eol).toString('latin1'), 16);
    if (!Number.isFinite(size) || size === 0) break;
    parts.push(data.subarray(eol + 2, eol + 2 + size));
    pos = eol + 2 + size + 2;
  }
  return Buffer.concat(parts);
}

/** One request on its own connection (Connection: close); the whole answer, or a thrown error. */
export function rawRequest(port: number, req: RawRequest, timeoutMs = 10_000): Promise<RawResponse> {
  const body = req.body === undefined ? undefined : Buffer.from(req.body);
  const lines = [`${req.method} ${req.target} HTTP/1.1`, `Host: 127.0.0.1:${port}`, 'Connection: close'];
  for (const [k, v] of req.headers ?? []) lines.push(`${k}: ${v}`);
  if (body && !req.noContentLength) lines.push(`Content-Length: ${body.length}`);
  const head = Buffer.from(lines.join('\r\n') + '\r\n\r\n', 'latin1');
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port });
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`timeout: ${req.method} ${req.target.slice(0, 200)}`));
    }, timeoutMs);
    let failure: Error | undefined;
    // An error (EPIPE, ECONNRESET: the server answered and closed while we were still sending)
    // is always followed by 'close', where whatever answer arrived is read.
    socket.on('error', (e) => (failure = e));
    socket.on('data', (d: Buffer) => chunks.push(d));
    socket.on('close', () => {
      clearTimeout(timer);
      const data = Buffer.concat(chunks);
      const end = data.indexOf('\r\n\r\n');
      if (end < 0)
        return reject(
          new Error(
            `no HTTP answer to ${req.method} ${req.target.slice(0, 200)}: ${failure?.message ?? 'closed'}`,
          ),
        );
      const [statusLine, ...headerLines] = data.subarray(0, end).toString('latin1').split('\r\n');
      const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(statusLine ?? '')?.[1]);
      const headers: Record<string, string> = {};
      for (const line of headerLines) {
        const colon = line.indexOf(':');
        if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
      }
      let payload: Buffer = data.subarray(end + 4);
      if (headers['transfer-encoding']?.toLowerCase() === 'chunked') payload = dechunk(payload);
      resolve({ status, headers, body: payload });
    });
    // The server closes after answering (Connection: close). Half-closing early would make it
    // drop the request; only a request whose framing lies is half-closed, so it cannot hang.
    socket.write(head);
    const rest = () => {
      if (socket.destroyed) return;
      if (body) socket.write(body);
      if (req.noContentLength) socket.end();
    };
    // A body over the server's limit is refused from its Content-Length alone: give that
    // answer time to arrive before the body, whose write the server's close would reset.
    const delay = req.bodyDelayMs ?? (body && body.length > 1024 * 1024 ? 100 : 0);
    if (body && delay > 0) setTimeout(rest, delay);
    else rest();
  });
}

// ---------------------------------------------------------------------------------------------
// Envelope checks

/** Cloudreve codes a client mistake must never produce. */
const SERVER_CODES = (code: number) => code === -1 || code >= 50000;

/**
 * Why `res` breaks the rules of the Cloudreve face for a hostile request, or null: HTTP < 500,
 * JSON answers are the envelope {code:number, msg:string} and never a server-failure code.
 * `allowed` lists server codes a route returns by design (spec 6.6: a bad next_page_token → 50001).
 */
export function cloudreveViolation(res: RawResponse, allowed: number[] = [], method = 'GET'): string | null {
  if (!(res.status >= 100 && res.status < 500)) return `HTTP ${res.status}`;
  if (method === 'HEAD') return null;
  const type = res.headers['content-type'] ?? '';
  if (!type.includes('application/json')) {
    // Blob bodies (200/206), empty 204/304/412/416, redirects and the HTTP parser's own bare 400.
    if ([200, 204, 206, 302, 304, 400, 412, 416].includes(res.status)) return null;
    return `HTTP ${res.status} with ${type || 'no content type'}`;
  }
  let body: { code?: unknown; msg?: unknown };
  try {
    body = JSON.parse(res.body.toString('utf8')) as typeof body;
  } catch {
    return 'unparsable JSON';
  }
  if (res.status === 200 && body && 'openapi' in body) return null;
  if (typeof body?.code !== 'number' || typeof body.msg !== 'string')
    return `not the envelope: ${res.body.toString('utf8').slice(0, 200)}`;
  if (SERVER_CODES(body.code) && !allowed.includes(body.code))
    return `code ${body.code}: ${JSON.stringify(body).slice(0, 300)}`;
  return null;
}

/** The path face: HTTP < 500; errors are {success:false, error} JSON or a plain-text 404. */
export function pathViolation(res: RawResponse, method = 'GET'): string | null {
  if (!(res.status >= 100 && res.status < 500))
    return `HTTP ${res.status}: ${res.body.toString().slice(0, 300)}`;
  if (res.status < 400 || method === 'HEAD') return null;
  const type = res.headers['content-type'] ?? '';
  if (res.status === 404 && type.startsWith('text/plain')) return null;
  if ([412, 416].includes(res.status)) return null;
  if (res.status === 400 && type === '') return null; // the HTTP parser's own answer
  if (!type.includes('application/json')) return `HTTP ${res.status} with ${type || 'no content type'}`;
  try {
    const body = JSON.parse(res.body.toString('utf8')) as { success?: unknown; error?: unknown };
    if (body.success !== false || typeof body.error !== 'string')
      return `not the error body: ${res.body.toString().slice(0, 200)}`;
  } catch {
    return 'unparsable JSON';
  }
  return null;
}

// ---------------------------------------------------------------------------------------------
// Forgeries with the server's own secret (read from its data dir, as only a test can)

export async function serverSecret(dataDir: string): Promise<Buffer> {
  return Buffer.from((await readFile(join(dataDir, 'secret.key'), 'utf8')).trim(), 'hex');
}

const b64url = (b: Buffer | string) => Buffer.from(b).toString('base64url');

/** A JWT with any header and payload, HMAC-signed with `key` (or unsigned for alg none). */
export function forgeJwt(
  header: Record<string, unknown>,
  payload: Record<string, unknown>,
  key: Buffer | null,
  hash = 'sha256',
): string {
  const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(payload))}`;
  if (key === null) return `${input}.`;
  return `${input}.${createHmac(hash, key).update(input).digest('base64url')}`;
}

/** The key Ferry signs access/refresh tokens with. */
export const jwtKey = (secret: Buffer) => createHash('sha256').update('jwt:').update(secret).digest();
/** The key Ferry signs links with. */
export const linkKey = (secret: Buffer) => createHash('sha256').update('links:').update(secret).digest();

// ---------------------------------------------------------------------------------------------
// Files on disk

/** Every entry under `dir` (relative paths, '/'-separated), without following symlinks. */
export async function walk(dir: string): Promise<Array<{ path: string; kind: 'file' | 'dir' | 'link' }>> {
  const out: Array<{ path: string; kind: 'file' | 'dir' | 'link' }> = [];
  const visit = async (d: string) => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      const full = join(d, e.name);
      const rel = relative(dir, full).split('\\').join('/');
      const st = await lstat(full);
      if (st.isSymbolicLink()) out.push({ path: rel, kind: 'link' });
      else if (st.isDirectory()) {
        out.push({ path: rel, kind: 'dir' });
        await visit(full);
      } else out.push({ path: rel, kind: 'file' });
    }
  };
  await visit(dir);
  return out;
}

/** Checks that the data dir only holds what Ferry puts there: its database, key, blobs, staging. */
export async function assertDataDirShape(dataDir: string): Promise<void> {
  const allowedTop = /^(blobs|staging|torrents|ferry\.db(-shm|-wal|-journal)?|secret\.key)(\/|$)/;
  for (const entry of await walk(dataDir)) {
    if (entry.kind === 'link') throw new Error(`symlink in the data dir: ${entry.path}`);
    if (!allowedTop.test(entry.path)) throw new Error(`unexpected entry in the data dir: ${entry.path}`);
    if (
      entry.path.startsWith('blobs/') &&
      entry.kind === 'file' &&
      !/^blobs\/(blobs|\.tmp)\/[A-Za-z0-9_-]{1,64}$/.test(entry.path)
    )
      throw new Error(`blob key not made by Ferry: ${entry.path}`);
  }
}

/** Paths where an escaped write named `name` would land (beside and above the data dir, /, /tmp). */
export function escapeCandidates(dataDir: string, name: string): string[] {
  return [join(dataDir, '..', name), join(dataDir, '..', '..', name), join('/', name), join('/tmp', name)];
}
