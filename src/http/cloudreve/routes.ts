// The Cloudreve v4 face under /api/v4: sessions, users, files, upload, download URLs,
// blob content and archives, and the remote-download workflow. Thin: parse, call a
// service, shape the answer.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { Type, type Static } from 'typebox';
import { AppError } from '../../domain/errors.ts';
import { FOLDER } from '../../services/files.service.ts';
import type { Services } from '../../services/index.ts';
import { requireActor } from '../auth.ts';
import { fileDto, nodeDto, ok, userDto } from './index.ts';
import { cloudreveErrorHandler } from './envelope.ts';
import { registerContentRoutes } from './content.routes.ts';
import { registerEventStream } from './events.routes.ts';
import { workflowRoutes } from './workflow.routes.ts';
import { webhookRoutes } from './webhooks.routes.ts';
import { registerSiteRoutes } from './site.routes.ts';
import { registerFileInfoRoutes } from './file-info.routes.ts';
import { parseSearch, searchFolder } from '../../services/search.ts';

const Nullable = <T extends ReturnType<typeof Type.Boolean> | ReturnType<typeof Type.String>>(t: T) =>
  Type.Optional(Type.Union([t, Type.Null()]));

const SignInBody = Type.Object({
  // Cloudreve's binding: an e-mail address, password of 4-128 characters → 40001 otherwise.
  email: Type.String({ maxLength: 320, pattern: '^[^\\s@]+@[^\\s@]+$' }),
  password: Type.String({ minLength: 4, maxLength: 128 }),
  captcha: Type.Optional(Type.String()),
  ticket: Type.Optional(Type.String()),
});
const RefreshBody = Type.Object({ refresh_token: Type.String({ maxLength: 4096 }) });
const ListQuery = Type.Object({
  uri: Type.String({ maxLength: 8192 }),
  page: Type.Optional(Type.Integer({ minimum: 0, maximum: 1_000_000 })),
  // Larger sizes are capped at max_page_size (2000) by the service, as Cloudreve does.
  page_size: Type.Optional(Type.Integer({ minimum: 0, maximum: 1_000_000 })),
  order_by: Type.Optional(
    Type.Union([
      Type.Literal('name'),
      Type.Literal('size'),
      Type.Literal('updated_at'),
      Type.Literal('created_at'),
    ]),
  ),
  order_direction: Type.Optional(Type.Union([Type.Literal('asc'), Type.Literal('desc')])),
  next_page_token: Type.Optional(Type.String({ maxLength: 1024 })),
});
const CreateFileBody = Type.Object({
  uri: Type.String({ maxLength: 8192 }),
  type: Type.Union([Type.Literal('file'), Type.Literal('folder')]),
  metadata: Type.Optional(Type.Record(Type.String(), Type.String())),
  err_on_conflict: Type.Optional(Type.Boolean()),
});
const RenameBody = Type.Object({
  uri: Type.String({ maxLength: 8192 }),
  new_name: Type.String({ minLength: 1, maxLength: 255 }),
});
const UrisField = Type.Array(Type.String({ maxLength: 8192 }), { minItems: 1, maxItems: 3001 });
const MoveBody = Type.Object({
  uris: UrisField,
  dst: Type.String({ maxLength: 8192 }),
  copy: Type.Optional(Type.Boolean()),
});
const DeleteBody = Type.Object({
  uris: UrisField,
  unlink: Type.Optional(Type.Boolean()),
  skip_soft_delete: Type.Optional(Type.Boolean()),
});
const UploadBody = Type.Object({
  uri: Type.String({ maxLength: 8192 }),
  size: Type.Optional(Type.Integer({ minimum: 0 })),
  policy_id: Type.Optional(Type.String()),
  last_modified: Type.Optional(Type.Integer()),
  mime_type: Type.Optional(Type.String()),
  metadata: Type.Optional(Type.Record(Type.String(), Type.String())),
  entity_type: Type.Optional(Type.String()),
});
const CancelUploadBody = Type.Object({
  id: Type.String({ maxLength: 64 }),
  uri: Type.String({ maxLength: 8192 }),
});
const FileUrlBody = Type.Object({
  uris: UrisField,
  download: Nullable(Type.Boolean()),
  redirect: Nullable(Type.Boolean()),
  entity: Nullable(Type.String({ maxLength: 64 })),
  use_primary_site_url: Nullable(Type.Boolean()),
  skip_error: Nullable(Type.Boolean()),
  archive: Nullable(Type.Boolean()),
  no_cache: Nullable(Type.Boolean()),
});
const TokenBody = Type.Object({
  name: Type.String({ minLength: 1, maxLength: 100 }),
  expires_in_days: Type.Optional(Type.Integer({ minimum: 1, maximum: 3650 })),
  // Needed when the caller did not sign in with the password recently (or uses an API token).
  password: Type.Optional(Type.String({ maxLength: 128 })),
});
// Cloudreve's PATCH /user/setting; only the password change is supported.
const SignOutAllBody = Type.Object({ keep_api_tokens: Type.Optional(Type.Boolean()) });

/**
 * The base of the links we hand out. Like Cloudreve: the configured site URL when asked for
 * (use_primary_site_url) or when the client came in on its host — so its scheme is kept behind
 * a TLS-terminating proxy — otherwise the host the client used.
 */
export function siteBase(request: FastifyRequest, configured: string, forcePrimary = false): string {
  if (configured && forcePrimary) return configured;
  if (configured && !request.headers.host) return configured;
  const host = request.host;
  if (configured) {
    try {
      if (new URL(configured).host.toLowerCase() === host.toLowerCase()) return configured;
    } catch {
      // an unparsable site URL is simply not matched
    }
  }
  // Only a plain host[:port] is trusted to build links from; anything odd falls back.
  if (!/^[A-Za-z0-9.\-:[\]]{1,300}$/.test(host)) return configured || 'http://localhost';
  return `${request.protocol}://${host}`;
}

export async function cloudreveRoutes(app: FastifyInstance, services: Services): Promise<void> {
  const { auth, files, uploads, links, users, ctx } = services;
  const ids = ctx.ids;
  app.setErrorHandler(cloudreveErrorHandler);
  // A body-less request that still says Content-Type: application/json (the SDK's DELETE
  // /workflow/download/{id}) has no body, as in Cloudreve, instead of failing to parse; routes
  // that need a body still refuse it through their schema.
  const parseJson = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    const text = String(body);
    if (text.trim() === '') {
      done(null, undefined);
      return;
    }
    // The default parser answers through `done`; its return value carries nothing.
    void parseJson(request, text, done);
  });
  app.setNotFoundHandler((request, reply) =>
    reply.code(404).send({ code: 404, msg: 'Not found', correlation_id: String(request.id) }),
  );

  // ---- site & session
  registerSiteRoutes(app, services);

  app.post('/session/token', { schema: { tags: ['session'], body: SignInBody } }, async (request) => {
    const body = request.body as Static<typeof SignInBody>;
    const { actor, token } = await auth.signIn(body.email, body.password, request.ip);
    return ok({ user: userDto(actor, ids), token });
  });
  app.post(
    '/session/token/refresh',
    { schema: { tags: ['session'], body: RefreshBody } },
    async (request) => {
      return ok(await auth.refresh((request.body as Static<typeof RefreshBody>).refresh_token));
    },
  );
  app.delete('/session/token', { schema: { tags: ['session'], body: RefreshBody } }, async (request) => {
    await auth.signOut((request.body as Static<typeof RefreshBody>).refresh_token);
    return { code: 0, data: '', msg: '' };
  });

  // ---- user
  app.get('/user/me', { schema: { tags: ['user'] } }, async (request) =>
    ok(userDto(requireActor(request), ids)),
  );
  app.get('/user/capacity', { schema: { tags: ['user'] } }, async (request) => {
    const actor = requireActor(request);
    // Unfinished uploads and running downloads count as used: they hold disk and quota.
    const { total, used, reserved } = await files.remaining(actor.user.id);
    return ok({ total, used: used + reserved });
  });
  app.get('/user/setting/nodes', { schema: { tags: ['user'] } }, async (request) => {
    const actor = requireActor(request);
    if (!actor.group.allow_remote_download) throw new AppError('GROUP_NOT_ALLOWED');
    const nodes = await ctx.db
      .selectFrom('nodes')
      .selectAll()
      .where('status', '=', 'active')
      .orderBy('id')
      .execute();
    return ok(nodes.map((n) => nodeDto(n, ids)));
  });
  // Ferry extension: sign out everywhere (every session; API tokens too unless kept).
  app.delete(
    '/user/setting/sessions',
    { schema: { tags: ['user'], body: Type.Optional(SignOutAllBody) } },
    async (request) => {
      const body = (request.body ?? {}) as Static<typeof SignOutAllBody>;
      await users.signOutEverywhere(requireActor(request).user.id, {
        keepApiTokens: body.keep_api_tokens === true,
      });
      return ok();
    },
  );
  // Ferry extension: personal API tokens for scripts (Authorization: Bearer fry_...).
  app.get('/user/setting/tokens', { schema: { tags: ['user'] } }, async (request) => {
    const rows = await auth.listApiTokens(requireActor(request));
    return ok(
      rows.map((r) => ({
        id: String(r.id),
        name: r.name,
        prefix: r.token_prefix,
        created_at: new Date(r.created_at).toISOString(),
        last_used_at: r.last_used_at ? new Date(r.last_used_at).toISOString() : null,
        expires_at: r.expires_at ? new Date(r.expires_at).toISOString() : null,
      })),
    );
  });
  app.post('/user/setting/tokens', { schema: { tags: ['user'], body: TokenBody } }, async (request) => {
    const body = request.body as Static<typeof TokenBody>;
    const created = await auth.createApiToken(requireActor(request), body.name, body.expires_in_days, {
      password: body.password,
      clientAddress: request.ip,
    });
    return ok({
      id: String(created.id),
      name: created.name,
      token: created.token,
      created_at: new Date(created.created_at).toISOString(),
      expires_at: created.expires_at ? new Date(created.expires_at).toISOString() : null,
    });
  });
  app.delete(
    '/user/setting/tokens/:id',
    { schema: { tags: ['user'], params: Type.Object({ id: Type.String({ pattern: '^[0-9]{1,15}$' }) }) } },
    async (request) => {
      await auth.revokeApiToken(requireActor(request), Number((request.params as { id: string }).id));
      return ok();
    },
  );

  // ---- files
  app.get('/file', { schema: { tags: ['file'], querystring: ListQuery } }, async (request) => {
    const actor = requireActor(request);
    const q = request.query as Static<typeof ListQuery>;
    const { file: folder, segments, search } = await files.locate(actor, q.uri, true);
    if (folder.type !== FOLDER) throw new AppError('PATH_NOT_EXIST', 'Not a folder');
    const options = {
      ...(q.page !== undefined ? { page: q.page } : {}),
      ...(q.page_size ? { pageSize: q.page_size } : {}),
      ...(q.order_by ? { orderBy: q.order_by } : {}),
      ...(q.order_direction ? { orderDirection: q.order_direction } : {}),
      ...(q.next_page_token ? { nextPageToken: q.next_page_token } : {}),
    };
    // A search URI lists the matches anywhere under the folder (see services/search.ts).
    let page: { offset: number; pageSize: number; total: number; nextToken: string | undefined };
    let entries: ReturnType<typeof fileDto>[];
    if (search) {
      const found = await searchFolder(files, folder, parseSearch(search), options);
      page = found;
      entries = found.files.map((e) => fileDto(e.file, [...segments, ...e.path], ids));
    } else {
      const listed = await files.list(folder, options);
      page = listed;
      entries = listed.files.map((f) => fileDto(f, [...segments, f.name], ids));
    }
    const cursorMode = q.page === undefined;
    return ok({
      files: entries,
      parent: fileDto(folder, segments, ids),
      pagination: {
        page: Math.floor(page.offset / page.pageSize),
        page_size: page.pageSize,
        ...(cursorMode ? { is_cursor: true } : { total_items: page.total }),
        ...(page.nextToken !== undefined ? { next_token: page.nextToken } : {}),
      },
      props: {
        capability: 'w8edAQ==',
        max_page_size: 2000,
        order_by_options: ['name', 'size', 'updated_at', 'created_at'],
        order_direction_options: ['asc', 'desc'],
      },
      context_hint: null,
      mixed_type: false,
      storage_policy: {
        id: ids.encode('policy', 1),
        name: ctx.storage.name === 'local' ? 'Default' : ctx.storage.name,
        type: ctx.storage.name,
        max_size: ctx.config.maxFileSize,
      },
    });
  });
  app.post('/file/create', { schema: { tags: ['file'], body: CreateFileBody } }, async (request) => {
    const body = request.body as Static<typeof CreateFileBody>;
    const { file, segments } = await files.create(
      requireActor(request),
      body.uri,
      body.type,
      body.err_on_conflict ?? false,
    );
    return ok(fileDto(file, segments, ids));
  });
  app.post('/file/rename', { schema: { tags: ['file'], body: RenameBody } }, async (request) => {
    const body = request.body as Static<typeof RenameBody>;
    const { file, segments } = await files.rename(requireActor(request), body.uri, body.new_name);
    return ok(fileDto(file, segments, ids));
  });
  app.post('/file/move', { schema: { tags: ['file'], body: MoveBody } }, async (request) => {
    const body = request.body as Static<typeof MoveBody>;
    if (body.uris.length > 3000) throw new AppError('TOO_MANY_URIS', 'Maximum allowed batch size: 3000');
    await files.move(requireActor(request), body.uris, body.dst, body.copy ?? false);
    return ok();
  });
  app.delete('/file', { schema: { tags: ['file'], body: DeleteBody } }, async (request) => {
    const body = request.body as Static<typeof DeleteBody>;
    if (body.uris.length > 3000) throw new AppError('TOO_MANY_URIS', 'Maximum allowed batch size: 3000');
    await files.delete(requireActor(request), body.uris);
    return ok();
  });

  // ---- upload
  app.put('/file/upload', { schema: { tags: ['upload'], body: UploadBody } }, async (request) => {
    const body = request.body as Static<typeof UploadBody>;
    const session = await uploads.createSession(requireActor(request), body);
    return ok({
      session_id: session.id,
      upload_id: session.id,
      chunk_size: session.chunkSize,
      expires: session.expires,
      storage_policy: {
        id: ids.encode('policy', 1),
        name: 'Default',
        type: 'local',
        max_size: ctx.config.maxFileSize,
      },
      uri: session.uri,
      callback_secret: '',
    });
  });
  await app.register(async (raw) => {
    // Chunk bodies are streamed to disk as they arrive, whatever their content type.
    raw.removeAllContentTypeParsers();
    raw.addContentTypeParser('*', (_request, _payload, done) => done(null));
    raw.post(
      '/file/upload/:sessionId/:index',
      {
        config: { streamedBody: true },
        schema: {
          tags: ['upload'],
          params: Type.Object({
            sessionId: Type.String({ maxLength: 64 }),
            index: Type.Integer({ minimum: 0, maximum: 1_000_000 }),
          }),
        },
      },
      async (request) => {
        const actor = requireActor(request);
        const { sessionId, index } = request.params as { sessionId: string; index: number };
        const length = Number(request.headers['content-length']);
        if (!Number.isSafeInteger(length) || length < 0)
          throw new AppError('INVALID_CONTENT_LENGTH', 'Content-Length is required');
        await uploads.writeChunk(actor, sessionId, index, length, request.raw);
        return ok();
      },
    );
  });
  app.delete('/file/upload', { schema: { tags: ['upload'], body: CancelUploadBody } }, async (request) => {
    await uploads.cancel(requireActor(request), (request.body as Static<typeof CancelUploadBody>).id);
    return ok();
  });

  // ---- download URLs
  app.post('/file/url', { schema: { tags: ['file'], body: FileUrlBody } }, async (request, reply) => {
    const body = request.body as Static<typeof FileUrlBody>;
    const actor = requireActor(request);
    const base = siteBase(request, ctx.config.siteUrl, body.use_primary_site_url === true);
    const result = await links.createUrls(actor, body, base);
    if (body.redirect && body.uris.length === 1 && result.urls[0]?.url)
      return reply.redirect(result.urls[0].url, 302);
    return ok(result);
  });
  registerContentRoutes(app, services);
  registerFileInfoRoutes(app, services);

  await workflowRoutes(app, services);
  await webhookRoutes(app, services);
  registerEventStream(app, services);
}
