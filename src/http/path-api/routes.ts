// The path-style face (hoody-files compatible) under --path-api-base: start a download with
// GET /{dir}?download=URL, follow it with ?downloads= and /api/v1/downloads, read the history
// with /?download_history=, and read files at GET/HEAD /{path}. Same tree, same tasks, same
// Bearer tokens as the Cloudreve face; its own bodies and error names.
import { createHash } from 'node:crypto';
import { lookup } from 'node:dns/promises';
import { Readable } from 'node:stream';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { isDatabaseError } from '../../db/errors.ts';
import { AppError, ErrorCodes, isAppError } from '../../domain/errors.ts';
import { formatFileUri } from '../../domain/file-uri.ts';
import { sanitizeFileName } from '../../domain/file-name.ts';
import type { Task } from '../../domain/task.ts';
import { isIpLiteral } from '../../net/address-policy.ts';
import { FOLDER, type FileRow } from '../../services/files.service.ts';
import type { Services } from '../../services/index.ts';
import { isPaused, parseChecksum } from '../../services/tasks.service.ts';
import type { Actor } from '../../services/users.service.ts';
import { sendBlob } from '../send-blob.ts';

/** FailureCode → the face's error names (the first six are hoody's; the rest are Ferry's). */
const FAILURE_NAMES: Record<string, string> = {
  INVALID_URL: 'INVALID_URL',
  SOURCE_BLOCKED: 'DOMAIN_BLOCKED',
  NOT_FOUND: 'REMOTE_FILE_NOT_FOUND',
  TIMEOUT: 'DOWNLOAD_TIMEOUT',
  NETWORK: 'NETWORK_ERROR',
  TLS: 'TLS_ERROR',
  HTTP_ERROR: 'HTTP_ERROR',
  TOO_LARGE: 'QUOTA_EXCEEDED',
  CHECKSUM: 'CHECKSUM_MISMATCH',
  DISK: 'DISK_ERROR',
  CANCELED: 'CANCELED',
};

type Query = Record<string, string | string[] | undefined>;

/** Duplicate keys are common (the SDK sends ?download=&download=URL): the last non-empty wins. */
function param(query: Query, name: string): string | undefined {
  const value = query[name];
  if (value === undefined) return undefined;
  if (Array.isArray(value)) return [...value].reverse().find((v) => v !== '') ?? '';
  return value;
}
const has = (query: Query, name: string) => query[name] !== undefined;

/** Decodes the whole path (including %2F), collapses slashes and drops '.'/'..' segments. */
function pathSegments(rawPath: string): string[] {
  let decoded: string;
  try {
    decoded = decodeURIComponent(rawPath);
  } catch {
    throw new AppError('PARAM_INVALID', 'Invalid path encoding');
  }
  if (/[\u0000]/.test(decoded)) throw new AppError('PARAM_INVALID', 'Invalid path');
  const out: string[] = [];
  for (const s of decoded.split(/[/\\]+/)) {
    if (s === '' || s === '.') continue;
    if (s === '..') out.pop();
    else out.push(s);
  }
  return out;
}

function nameFromUrl(url: URL): string {
  const last = url.pathname.split('/').filter(Boolean).at(-1) ?? '';
  let decoded = last;
  try {
    decoded = decodeURIComponent(last);
  } catch {
    // keep it encoded
  }
  return sanitizeFileName(decoded, 'download');
}

function directoryOf(task: Task): string {
  try {
    const url = new URL(task.dst);
    return url.pathname
      .split('/')
      .filter(Boolean)
      .map((s) => decodeURIComponent(s))
      .join('/');
  } catch {
    return '';
  }
}

function displayName(task: Task): string {
  if (task.result_path) return task.result_path.split('/').at(-1)!;
  if (task.download_status?.name) return task.download_status.name;
  if (task.options.filename) return task.options.filename;
  try {
    return nameFromUrl(new URL(task.src));
  } catch {
    return 'download';
  }
}

export function activeRecord(task: Task) {
  const status = task.download_status;
  const directory = directoryOf(task);
  const filename = displayName(task);
  const expected = status?.total ? status.total : null;
  const current = status?.downloaded ?? 0;
  return {
    id: task.public_id,
    filename,
    file_path: directory ? `${directory}/${filename}` : filename,
    directory,
    url: task.src,
    status:
      task.status === 'completed'
        ? 'completed'
        : status && (status.downloaded ?? 0) > 0
          ? 'downloading'
          : 'starting',
    current_size: current,
    expected_size: expected,
    progress_percentage: expected ? Math.round((current / expected) * 1000) / 10 : null,
    start_time: Math.floor((task.started_at ?? task.created_at) / 1000),
    // Ferry extension: paused by the user (hoody's status enum has no such value)
    ...(isPaused(task) ? { paused: true } : {}),
  };
}

export function historyRecord(task: Task) {
  const directory = directoryOf(task);
  const filename = displayName(task);
  const completed = task.status === 'completed';
  return {
    id: task.public_id,
    filename,
    file_path: task.result_path ?? (directory ? `${directory}/${filename}` : filename),
    directory,
    url: task.src,
    status: completed ? 'completed' : 'failed',
    total_bytes: completed ? task.result_size : null,
    start_time: Math.floor((task.started_at ?? task.created_at) / 1000),
    end_time: task.ended_at ? Math.floor(task.ended_at / 1000) : null,
    error: completed
      ? null
      : (FAILURE_NAMES[task.failure ?? ''] ?? (task.status === 'canceled' ? 'CANCELED' : 'NETWORK_ERROR')),
  };
}

export async function pathApiRoutes(app: FastifyInstance, services: Services): Promise<void> {
  const { files, tasks, policy, ctx } = services;
  const openReader = ctx.storage.openReader?.bind(ctx.storage);

  app.setErrorHandler((error, request, reply) => {
    if (isAppError(error)) {
      const status = ErrorCodes[error.code].status;
      return reply.code(status).send({ success: false, error: error.code, message: error.message });
    }
    const fe = error as { statusCode?: number; message?: string };
    if (typeof fe.statusCode === 'number' && fe.statusCode >= 400 && fe.statusCode < 500) {
      return reply
        .code(fe.statusCode)
        .send({ success: false, error: 'BAD_REQUEST', message: 'Invalid request' });
    }
    request.log.error({ err: error }, 'path api request failed');
    // The database is down or unreachable (same test as the Cloudreve face's 50001): a 503 the
    // client may retry, not an internal error.
    if (
      isDatabaseError(error) ||
      /ECONNREFUSED|ECONNRESET|terminat|Connection|SQLITE_BUSY|database|Query read timeout|timeout exceeded when trying to connect/i.test(
        String(fe.message),
      )
    )
      return reply.code(503).send({ success: false, error: 'DB_ERROR', message: 'Database error' });
    return reply.code(500).send({ success: false, error: 'INTERNAL_ERROR', message: 'Internal error' });
  });
  app.setNotFoundHandler((_request, reply) => reply.code(404).type('text/plain').send('Not Found'));

  const actorOf = (request: FastifyRequest, reply: FastifyReply): Actor | null => {
    if (request.actor) return request.actor;
    void reply
      .code(401)
      .header('www-authenticate', 'Bearer')
      .send({ success: false, error: 'UNAUTHORIZED', message: 'Authorization: Bearer <token> required' });
    return null;
  };

  const startDownload = async (actor: Actor, segments: string[], query: Query, reply: FastifyReply) => {
    if (!ctx.config.allowDownload || !actor.group.allow_remote_download) {
      return reply.code(403).send({ success: false, error: 'DOWNLOAD_FORBIDDEN' });
    }
    const directory = segments.join('/');
    const source = (param(query, 'download') ?? '').trim();
    const requestedName = param(query, 'filename');
    let url: URL | undefined;
    try {
      url = new URL(source);
      if (url.protocol !== 'http:' && url.protocol !== 'https:') url = undefined;
    } catch {
      url = undefined;
    }
    const guessedName = sanitizeFileName(requestedName || (url ? nameFromUrl(url) : 'file'), 'file');
    const answer = (status: number, body: Record<string, unknown>) =>
      reply.code(status).send({
        download_id: body.download_id ?? crypto.randomUUID(),
        filename: guessedName,
        path: directory ? `${directory}/${guessedName}` : guessedName,
        ...body,
      });
    if (!url || source.length > 8192)
      return answer(400, { success: false, message: 'Download failed', error: 'INVALID_URL' });

    const hostDecision = policy.checkHost(url.hostname);
    if (!hostDecision.ok)
      return answer(403, {
        success: false,
        message: `Download failed: ${hostDecision.reason}`,
        error: 'DOMAIN_BLOCKED',
      });
    if (!isIpLiteral(url.hostname)) {
      // Early answer for names that resolve into refused ranges; the engine checks again
      // (and pins the address) when it connects.
      const addresses = await Promise.race([
        lookup(url.hostname, { all: true }).catch(() => []),
        new Promise<[]>((resolve) => setTimeout(() => resolve([]), 5000)),
      ]);
      for (const { address } of addresses) {
        const decision = policy.checkResolvedAddress(url.hostname, address);
        if (!decision.ok)
          return answer(403, {
            success: false,
            message: `Download failed: ${decision.reason}`,
            error: 'DOMAIN_BLOCKED',
          });
      }
    }
    const timeoutText = param(query, 'timeout');
    const timeout = timeoutText ? Number(timeoutText) : 300;
    if (!Number.isSafeInteger(timeout) || timeout < 1 || timeout > 7 * 86400) {
      return answer(400, {
        success: false,
        message: 'timeout must be a number of seconds (1-604800)',
        error: 'INVALID_PARAMETER',
      });
    }
    const headers: Record<string, string> = {};
    const headerParams =
      query.header === undefined ? [] : Array.isArray(query.header) ? query.header : [query.header];
    for (const h of headerParams) {
      const colon = h.indexOf(':');
      if (colon > 0) headers[h.slice(0, colon).trim()] = h.slice(colon + 1).trim();
    }
    const checksumText =
      param(query, 'checksum') ?? (param(query, 'sha256') ? `sha256:${param(query, 'sha256')}` : undefined);
    const connectionsText = param(query, 'connections');
    let created;
    try {
      const checksum = parseChecksum(checksumText);
      created = await tasks.create(actor, {
        dst: formatFileUri(segments),
        src: [url.href],
        face: 'path',
        createDst: true,
        correlationId: reply.request.id,
        options: {
          ...(requestedName ? { filename: guessedName } : {}),
          timeout,
          ...(Object.keys(headers).length ? { headers } : {}),
          ...(checksum ? { checksum } : {}),
          ...(connectionsText ? { connections: Number(connectionsText) } : {}),
        },
      });
    } catch (e) {
      if (isAppError(e) && (e.code === 'PARAM_INVALID' || e.code === 'SOURCE_INVALID')) {
        return answer(400, { success: false, message: e.message, error: 'INVALID_PARAMETER' });
      }
      if (isAppError(e) && e.code === 'GROUP_NOT_ALLOWED')
        return reply.code(403).send({ success: false, error: 'DOWNLOAD_FORBIDDEN' });
      if (
        isAppError(e) &&
        (e.code === 'PATH_NOT_EXIST' || e.code === 'OBJECT_EXISTS' || e.code === 'ILLEGAL_NAME')
      ) {
        return answer(400, {
          success: false,
          message: `Download failed: ${e.message}`,
          error: 'INVALID_PATH',
        });
      }
      throw e;
    }
    const task = created.tasks[0];
    if (!task) {
      const failure = [...created.failures.values()][0];
      return answer(400, {
        success: false,
        message: failure?.message ?? 'Download failed',
        error: 'INVALID_URL',
      });
    }
    return answer(200, {
      download_id: task.public_id,
      success: true,
      message: 'Download started',
      error: null,
    });
  };

  const readFile = async (request: FastifyRequest, reply: FastifyReply, file: FileRow, query: Query) => {
    if (has(query, 'hash') || has(query, 'sha256')) {
      const hash = createHash('sha256');
      const blob = await files.blobOf(file);
      if (blob)
        for await (const chunk of await ctx.storage.read(blob.storage_key)) hash.update(chunk as Buffer);
      return reply
        .type('text/plain; charset=utf-8')
        .header('cache-control', 'no-cache')
        .send(hash.digest('hex'));
    }
    const blob = await files.blobOf(file);
    const download = has(query, 'download');
    return sendBlob(request, reply, {
      size: blob?.size ?? 0,
      modifiedAt: new Date(file.updated_at),
      // The blob's nonce: an old ETag (If-Range, If-Match) never matches bytes of a later blob.
      etag: `"${file.updated_at.toString(36)}-${file.size.toString(36)}-${(file.blob_id ?? 0).toString(36)}-${blob?.nonce ?? ''}"`,
      fileName: file.name,
      disposition: download ? 'attachment' : 'inline',
      cacheControl: 'no-cache',
      ...(param(query, 'content-type') && /^[\w.+-]+\/[\w.+-]+$/.test(param(query, 'content-type')!)
        ? { contentType: param(query, 'content-type')! }
        : {}),
      open: async (range) => (blob ? ctx.storage.read(blob.storage_key, range) : Readable.from([])),
      ...(blob && openReader ? { openReader: () => openReader(blob.storage_key) } : {}),
    });
  };

  const listDirectory = async (reply: FastifyReply, folder: FileRow, segments: string[], query: Query) => {
    const page = await files.list(folder, { pageSize: 2000 });
    if (has(query, 'simple')) {
      return reply
        .type('text/plain; charset=utf-8')
        .send(
          page.files.map((f) => (f.type === FOLDER ? `${f.name}/` : f.name)).join('\n') +
            (page.files.length ? '\n' : ''),
        );
    }
    return reply.send({
      kind: 'Index',
      href: '/' + segments.join('/'),
      uri_prefix: ctx.config.pathApiBase + '/',
      allow_upload: false,
      allow_delete: false,
      allow_search: false,
      allow_archive: false,
      dir_exists: true,
      paths: page.files.map((f) => ({
        path_type: f.type === FOLDER ? 'Dir' : 'File',
        name: f.name,
        mtime: f.updated_at,
        size: f.size,
        revisions: null,
      })),
    });
  };

  app.get('/api/v1/downloads', async (request, reply) => {
    const actor = actorOf(request, reply);
    if (!actor) return reply;
    return { downloads: (await tasks.active(actor.user.id)).map(activeRecord) };
  });
  // Ferry extension: cancel a download by its download_id.
  app.delete('/api/v1/downloads/:id', async (request, reply) => {
    const actor = actorOf(request, reply);
    if (!actor) return reply;
    const task = await tasks.getByPublicId(actor.user.id, (request.params as { id: string }).id);
    if (!task) return reply.code(404).send({ success: false, error: 'NOT_FOUND' });
    try {
      await tasks.cancel(actor, task.id);
    } catch {
      return reply
        .code(409)
        .send({ success: false, error: 'NOT_ACTIVE', message: 'The download already finished' });
    }
    return { success: true };
  });

  /**
   * Ferry extension: a batch, `POST /{dir}?downloads=` with `{"urls": [...]}` (and optionally
   * `headers`, `connections`, `checksum` for every URL). Answers which URLs became downloads and
   * which failed, and why; 200 when at least one started, else 400.
   */
  const startBatch = async (request: FastifyRequest, reply: FastifyReply) => {
    const actor = actorOf(request, reply);
    if (!actor) return reply;
    const query = request.query as Query;
    if (!has(query, 'downloads')) return reply.code(404).type('text/plain').send('Not Found');
    if (!ctx.config.allowDownload || !actor.group.allow_remote_download)
      return reply.code(403).send({ success: false, error: 'DOWNLOAD_FORBIDDEN' });
    const body = (request.body ?? {}) as {
      urls?: unknown;
      headers?: unknown;
      connections?: unknown;
      checksum?: unknown;
    };
    const urls = body.urls;
    if (!Array.isArray(urls) || urls.length === 0 || urls.some((u) => typeof u !== 'string'))
      return reply.code(400).send({
        success: false,
        error: 'INVALID_PARAMETER',
        message: 'urls must be a non-empty array of URLs',
      });
    const raw = (request.raw.url ?? '/').split('?', 1)[0]!.slice(ctx.config.pathApiBase.length);
    const segments = pathSegments(raw);
    let created;
    try {
      const checksum = parseChecksum(body.checksum);
      created = await tasks.create(actor, {
        dst: formatFileUri(segments),
        src: urls,
        face: 'path',
        createDst: true,
        correlationId: request.id,
        options: {
          timeout: 300,
          ...(body.headers !== undefined ? { headers: body.headers as Record<string, string> } : {}),
          ...(checksum ? { checksum } : {}),
          ...(body.connections !== undefined ? { connections: Number(body.connections) } : {}),
        },
      });
    } catch (e) {
      if (isAppError(e) && (e.code === 'PARAM_INVALID' || e.code === 'TOO_MANY_SOURCES'))
        return reply.code(400).send({ success: false, error: 'INVALID_PARAMETER', message: e.message });
      if (isAppError(e) && e.code === 'GROUP_NOT_ALLOWED')
        return reply.code(403).send({ success: false, error: 'DOWNLOAD_FORBIDDEN' });
      if (
        isAppError(e) &&
        (e.code === 'PATH_NOT_EXIST' || e.code === 'OBJECT_EXISTS' || e.code === 'ILLEGAL_NAME')
      )
        return reply.code(400).send({ success: false, error: 'INVALID_PATH', message: e.message });
      throw e;
    }
    const downloads = created.tasks.map((task) => {
      const record = activeRecord(task);
      return {
        download_id: task.public_id,
        url: task.src,
        filename: record.filename,
        path: record.file_path,
      };
    });
    const errors = [...created.failures].map(([url, e]) => ({
      url,
      error:
        e.code === 'SOURCE_BLOCKED' ? 'DOMAIN_BLOCKED' : e.code === 'SOURCE_INVALID' ? 'INVALID_URL' : e.code,
      message: e.message,
    }));
    return reply
      .code(downloads.length > 0 ? 200 : 400)
      .send({ success: errors.length === 0, downloads, errors });
  };
  app.post('/', startBatch);
  app.post('/*', startBatch);

  // Ferry extensions: pause and resume a download by its download_id (a paused one stays in the
  // active lists with `paused: true`).
  for (const action of ['pause', 'resume'] as const) {
    app.post(`/api/v1/downloads/:id/${action}`, async (request, reply) => {
      const actor = actorOf(request, reply);
      if (!actor) return reply;
      const task = await tasks.getByPublicId(actor.user.id, (request.params as { id: string }).id);
      if (!task) return reply.code(404).send({ success: false, error: 'NOT_FOUND' });
      try {
        await (action === 'pause' ? tasks.pause(actor, task.id) : tasks.resume(actor, task.id));
      } catch (e) {
        if (!(isAppError(e) && e.code === 'CONFLICT')) throw e;
        return reply.code(409).send({
          success: false,
          error: action === 'pause' ? 'NOT_ACTIVE' : 'NOT_PAUSED',
          message: e.message,
        });
      }
      return { success: true };
    });
  }
  // Ferry extension: start a failed or canceled download again, with all its options.
  app.post('/api/v1/downloads/:id/retry', async (request, reply) => {
    const actor = actorOf(request, reply);
    if (!actor) return reply;
    const task = await tasks.getByPublicId(actor.user.id, (request.params as { id: string }).id);
    if (!task) return reply.code(404).send({ success: false, error: 'NOT_FOUND' });
    if (task.status !== 'error' && task.status !== 'canceled')
      return reply.code(409).send({
        success: false,
        error: 'NOT_FINISHED',
        message: 'Only a failed or canceled download can be retried',
      });
    const retried = await tasks.retry(actor, task.id, request.id);
    const record = activeRecord(retried);
    return {
      download_id: retried.public_id,
      filename: record.filename,
      path: record.file_path,
      success: true,
      message: 'Download started',
      error: null,
    };
  });

  const handle = async (request: FastifyRequest, reply: FastifyReply) => {
    const actor = actorOf(request, reply);
    if (!actor) return reply;
    const query = request.query as Query;
    const raw = (request.raw.url ?? '/').split('?', 1)[0]!.slice(ctx.config.pathApiBase.length);
    const segments = pathSegments(raw);

    if (has(query, 'download_history'))
      return { history: (await tasks.history(actor.user.id)).map(historyRecord) };
    if (has(query, 'downloads')) {
      const directory = segments.join('/');
      return {
        downloads: (await tasks.active(actor.user.id))
          .map(activeRecord)
          .filter((r) => r.directory === directory),
      };
    }
    let target: FileRow | undefined;
    try {
      target = await files.resolve(actor.user.id, segments);
    } catch (e) {
      if (!(isAppError(e) && e.code === 'PATH_NOT_EXIST')) throw e;
    }
    if (
      has(query, 'download') &&
      request.method === 'GET' &&
      (!target || target.type === FOLDER) &&
      param(query, 'download') !== ''
    ) {
      return startDownload(actor, segments, query, reply);
    }
    if (!target) return reply.code(404).type('text/plain').send('Not Found');
    if (target.type === FOLDER) {
      if (request.method === 'HEAD') return reply.code(200).send();
      return listDirectory(reply, target, segments, query);
    }
    return readFile(request, reply, target, query);
  };
  app.get('/', handle);
  app.get('/*', handle);
}
