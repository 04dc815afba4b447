// Serves the web app (web/dist, built by `npm run build:web`) at `/`: hashed assets cached for a
// year, index.html revalidated every time, and index.html for any other GET path that is not an
// API (client-side routes like /drive/isos). Path traversal is refused; when the bundle is
// missing, `/` says so and how to build it.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { extname, resolve, sep } from 'node:path';

const TYPES: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.webmanifest': 'application/manifest+json; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.gif': 'image/gif',
  '.webp': 'image/webp',
  '.avif': 'image/avif',
  '.ico': 'image/x-icon',
  '.woff2': 'font/woff2',
  '.woff': 'font/woff',
  '.txt': 'text/plain; charset=utf-8',
  '.wasm': 'application/wasm',
};

const IMMUTABLE = 'public, max-age=31536000, immutable';
const SHORT = 'public, max-age=3600';
const NO_CACHE = 'no-cache';

/** The page may talk only to this origin; inline scripts are not allowed. */
const CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self' 'unsafe-inline'",
  "img-src 'self' data: blob:",
  "connect-src 'self'",
  "font-src 'self'",
  "object-src 'none'",
  "base-uri 'self'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

export const NOT_BUILT_NOTE = `Ferry is running, but its web app is not built.

Build it from the Ferry folder with:

  npm run build:web

(\`npm install\` builds it too), then reload this page. The APIs work without it:
/api/v4/... (Cloudreve v4) and the path-style download API.
`;

/** Paths that belong to an API: an unknown one is a 404, never the app. */
function isApiPath(path: string, reserved: readonly string[]): boolean {
  if (path === '/api' || path.startsWith('/api/')) return true;
  return reserved.some(
    (base) => base !== '/' && base !== '' && (path === base || path.startsWith(base + '/')),
  );
}

/** Maps a request path to a file under `root`, or null when it is unsafe or not a plain relative path. */
function fileFor(root: string, urlPath: string): string | null {
  let decoded: string;
  try {
    decoded = decodeURIComponent(urlPath);
  } catch {
    return null;
  }
  if (decoded.includes('\0') || decoded.includes('\\')) return null;
  const segments = decoded.split('/').filter((s) => s !== '');
  if (segments.some((s) => s === '..' || s === '.')) return null;
  if (segments.length === 0) return null;
  const full = resolve(root, ...segments);
  return full.startsWith(root + sep) ? full : null;
}

export function registerWebApp(
  app: FastifyInstance,
  distDir: string,
  options: { reservedPrefixes?: readonly string[] } = {},
): void {
  const root = resolve(distDir);
  const index = resolve(root, 'index.html');
  const reserved = options.reservedPrefixes ?? [];

  const sendFile = async (
    request: FastifyRequest,
    reply: FastifyReply,
    path: string,
    cacheControl: string,
  ): Promise<boolean> => {
    let info;
    try {
      info = await stat(path);
    } catch {
      return false;
    }
    if (!info.isFile()) return false;
    const etag = `W/"${info.size.toString(16)}-${Math.floor(info.mtimeMs).toString(16)}"`;
    reply.headers({
      'content-type': TYPES[extname(path).toLowerCase()] ?? 'application/octet-stream',
      'cache-control': cacheControl,
      etag,
      'last-modified': info.mtime.toUTCString(),
      'x-content-type-options': 'nosniff',
    });
    if (path === index) {
      reply.headers({
        'content-security-policy': CSP,
        'referrer-policy': 'same-origin',
        'x-frame-options': 'DENY',
      });
    }
    const match = request.headers['if-none-match'];
    if (typeof match === 'string' && match.split(/\s*,\s*/).includes(etag)) {
      await reply.code(304).send();
      return true;
    }
    reply.code(200).header('content-length', String(info.size));
    // On HEAD, node writes the headers (with the length) and no body.
    await reply.send(createReadStream(path));
    return true;
  };

  const notBuilt = (reply: FastifyReply) =>
    reply.code(503).header('cache-control', NO_CACHE).type('text/plain; charset=utf-8').send(NOT_BUILT_NOTE);

  const serveIndex = async (request: FastifyRequest, reply: FastifyReply) => {
    if (!(await sendFile(request, reply, index, NO_CACHE))) return notBuilt(reply);
    return reply;
  };

  const notFound = (reply: FastifyReply) =>
    reply.code(404).header('cache-control', NO_CACHE).type('text/plain; charset=utf-8').send('Not Found');

  const serve = async (request: FastifyRequest, reply: FastifyReply) => {
    const path = (request.raw.url ?? '/').split('?', 1)[0]!;
    if (request.method !== 'GET' && request.method !== 'HEAD') return notFound(reply);
    if (path === '/' || path === '/index.html') return serveIndex(request, reply);
    if (isApiPath(path, reserved)) return notFound(reply);
    const file = fileFor(root, path);
    if (file === null) return notFound(reply);
    const hashed = path.startsWith('/assets/');
    if (await sendFile(request, reply, file, hashed ? IMMUTABLE : SHORT)) return reply;
    // A missing asset is a 404 (so a stale page fails loudly); anything else is a client-side route.
    if (hashed || extname(path) !== '') return notFound(reply);
    return serveIndex(request, reply);
  };

  app.get('/', serve);
  app.get('/assets/*', serve);
  // Client-side routes (/drive/..., /tasks) and the bundle's other files reach the root
  // not-found handler: the API faces keep their own (more specific) ones.
  app.setNotFoundHandler(serve);
}
