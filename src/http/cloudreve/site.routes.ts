// Site, session and user routes that Cloudreve's own clients (web app, SDK, CLI) call before
// and around sign-in: ping, site/config/{section}, session/prepare, the CLI's OAuth
// application lookup, public user info and avatars, and the settings page.
import { createHash } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { Type, type Static } from 'typebox';
import { AppError } from '../../domain/errors.ts';
import type { IdCodec } from '../../domain/ids.ts';
import { isoTime } from '../../lib/clock.ts';
import type { Services } from '../../services/index.ts';
import type { Actor } from '../../services/users.service.ts';
import { requireActor } from '../auth.ts';
import { userDto } from './dto.ts';
import { ok } from './envelope.ts';

/**
 * The Cloudreve version Ferry answers to /site/ping. Clients compare it by SemVer: the CLI wants
 * >=4.17.0 <5, where a prerelease such as 4.17.0-ferry would sort below 4.17.0; build metadata
 * (+ferry) is ignored by the comparison, so the server still names itself.
 */
export const CLOUDREVE_VERSION = '4.17.0+ferry';

/** Ferry's mark, inline so it shows wherever the web app is served from. */
const LOGO =
  'data:image/svg+xml;base64,' +
  Buffer.from(
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><rect width="32" height="32" rx="7" fill="#0f766e"/>' +
      '<path d="M6 19h20l-3 6H9z" fill="#fff"/><path d="M16 5v11m0 0-4-4m4 4 4-4" stroke="#fff" stroke-width="2.5" ' +
      'fill="none" stroke-linecap="round" stroke-linejoin="round"/></svg>',
  ).toString('base64');

const SectionParams = Type.Object({ section: Type.String({ maxLength: 64 }) });
const PrepareQuery = Type.Object({ email: Type.Optional(Type.String({ maxLength: 320 })) });
const UserIdParams = Type.Object({ id: Type.String({ maxLength: 64 }) });
const AvatarQuery = Type.Object({
  nocache: Type.Optional(Type.String({ maxLength: 16 })),
  key: Type.Optional(Type.String({ maxLength: 64 })),
});
const AppParams = Type.Object({ app_id: Type.String({ maxLength: 128 }) });
const PatchSettingBody = Type.Object({
  nick: Type.Optional(Type.String({ minLength: 1, maxLength: 255 })),
  current_password: Type.Optional(Type.String({ minLength: 4, maxLength: 128 })),
  new_password: Type.Optional(Type.String({ minLength: 4, maxLength: 128 })),
  keep_api_tokens: Type.Optional(Type.Boolean()),
});
const SUPPORTED_SETTINGS = new Set(['nick', 'current_password', 'new_password', 'keep_api_tokens']);

/** The anonymous user Cloudreve puts in the basic config of a request without a session. */
function anonymousUser(ids: IdCodec) {
  return {
    id: ids.encode('user', 0),
    nickname: '',
    created_at: isoTime(0),
    anonymous: true,
    group: { id: ids.encode('group', 3), name: 'Anonymous' },
  };
}

/** What anyone may learn about a user (Cloudreve's redacted user). */
function publicUser(actor: Actor, ids: IdCodec) {
  return {
    id: ids.encode('user', actor.user.id),
    nickname: actor.user.nickname,
    created_at: isoTime(actor.user.created_at),
    group: { id: ids.encode('group', actor.group.id), name: actor.group.name },
  };
}

/**
 * A default avatar: a 5×5 mirrored pattern from a hash of the public user id. Nothing
 * user-controlled goes into the SVG.
 */
export function defaultAvatar(seed: string): string {
  const hash = createHash('sha256').update(`ferry-avatar:${seed}`).digest();
  const hue = Math.round((hash.readUInt16BE(0) / 65536) * 360);
  const cells: string[] = [];
  for (let row = 0; row < 5; row++) {
    for (let col = 0; col < 3; col++) {
      if ((hash[2 + row * 3 + col]! & 1) === 0) continue;
      for (const x of new Set([col, 4 - col]))
        cells.push(`<rect x="${40 + x * 24}" y="${40 + row * 24}" width="24" height="24"/>`);
    }
  }
  return (
    `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 200 200" width="200" height="200">` +
    `<rect width="200" height="200" fill="hsl(${hue},35%,92%)"/>` +
    `<g fill="hsl(${hue},55%,45%)">${cells.join('')}</g></svg>`
  );
}

export function registerSiteRoutes(app: FastifyInstance, services: Services): void {
  const { users, auth, ctx } = services;
  const ids = ctx.ids;

  const userById = async (hashId: string): Promise<Actor> => {
    const id = ids.decode('user', hashId);
    const actor = id === null ? null : await users.actor(id);
    if (!actor) throw new AppError('USER_NOT_FOUND');
    return actor;
  };

  app.get('/site/ping', { schema: { tags: ['site'] } }, async () => ok(CLOUDREVE_VERSION));

  // Like Cloudreve's router: these sections have their own fields, any other is `basic`.
  app.get('/site/config/:section', { schema: { tags: ['site'], params: SectionParams } }, async (request) => {
    switch ((request.params as Static<typeof SectionParams>).section) {
      case 'login':
        // Registration is by the operator (`ferry user add`); no captcha, no passkeys.
        return ok({});
      case 'explorer':
        return ok({
          max_batch_size: 3000,
          file_viewers: [],
          icons: '[]',
          thumbnail_width: 400,
          thumbnail_height: 300,
        });
      case 'emojis':
        return ok({ emoji_preset: '{}' });
      case 'app':
      case 'vas':
        return ok({});
      case 'thumb':
        // No thumbnail generator: clients ask for no thumbnails.
        return ok({ thumb_exts: [] });
      default:
        return ok({
          title: 'Ferry',
          themes:
            '{"#0f766e":{"light":{"palette":{"primary":{"main":"#0f766e"},"secondary":{"main":"#f59e0b"}}},"dark":{"palette":{"primary":{"main":"#5eead4"},"secondary":{"main":"#fbbf24"}}}}}',
          default_theme: '#0f766e',
          user: request.actor ? userDto(request.actor, ids) : anonymousUser(ids),
          logo: LOGO,
          logo_light: LOGO,
          app_version: CLOUDREVE_VERSION,
        });
    }
  });

  // Which sign-in methods an address may use: always the password, nothing else.
  app.get('/session/prepare', { schema: { tags: ['session'], querystring: PrepareQuery } }, async () =>
    ok({ webauthn_enabled: false, password_enabled: true }),
  );

  // Ferry has no OAuth applications; Cloudreve's own answer for an unknown one is code 404,
  // which the CLI reports as "this server does not provide the built-in CLI OAuth application".
  app.get('/session/oauth/app/:app_id', { schema: { tags: ['session'], params: AppParams } }, async () => {
    throw new AppError('NOT_FOUND', 'App not found');
  });

  app.get('/user/info/:id', { schema: { tags: ['user'], params: UserIdParams } }, async (request) =>
    ok(publicUser(await userById((request.params as Static<typeof UserIdParams>).id), ids)),
  );

  app.get(
    '/user/avatar/:id',
    { schema: { tags: ['user'], params: UserIdParams, querystring: AvatarQuery } },
    async (request, reply) => {
      const hashId = (request.params as Static<typeof UserIdParams>).id;
      // The anonymous user of the basic config (id 0) has an avatar too.
      const seed =
        ids.decode('user', hashId) === 0 ? hashId : ids.encode('user', (await userById(hashId)).user.id);
      const etag = `"${createHash('sha256').update(seed).digest('hex').slice(0, 16)}"`;
      reply
        .header('Content-Type', 'image/svg+xml')
        .header('X-Content-Type-Options', 'nosniff')
        .header('Content-Security-Policy', "default-src 'none'; style-src 'unsafe-inline'; sandbox")
        .header('ETag', etag);
      if (!(request.query as Static<typeof AvatarQuery>).nocache)
        reply.header('Cache-Control', 'public, max-age=86400');
      if (request.headers['if-none-match'] === etag) return reply.code(304).send();
      return reply.send(defaultAvatar(seed));
    },
  );

  app.get('/user/setting', { schema: { tags: ['user'] } }, async (request) => {
    requireActor(request);
    return ok({
      version_retention_enabled: false,
      passwordless: false,
      two_fa_enabled: false,
      disable_view_sync: false,
      share_links_in_profile: '',
    });
  });

  // The nickname and the password (Cloudreve's current_password + new_password, which signs the
  // user out everywhere) can change; everything else the settings page offers (2FA, passkeys,
  // theme, language, view sync) Ferry does not keep.
  app.patch('/user/setting', { schema: { tags: ['user'], body: PatchSettingBody } }, async (request) => {
    const actor = requireActor(request);
    const raw = (request.body ?? {}) as Record<string, unknown>;
    const unsupported = Object.keys(raw).filter((k) => !SUPPORTED_SETTINGS.has(k));
    const body = raw as Static<typeof PatchSettingBody>;
    const passwordChange = body.current_password !== undefined || body.new_password !== undefined;
    if (unsupported.length || (body.nick === undefined && !passwordChange))
      throw new AppError(
        'FEATURE_DISABLED',
        `Not supported by this server: ${unsupported.join(', ').slice(0, 200) || 'no setting given'}`,
      );
    if ((body.current_password === undefined) !== (body.new_password === undefined))
      throw new AppError('PARAM_INVALID', 'current_password and new_password go together');
    if (body.nick !== undefined) {
      const nick = body.nick.trim();
      if (!nick || /[\u0000-\u001f\u007f]/.test(nick))
        throw new AppError('PARAM_INVALID', 'Invalid nickname');
      await users.setNickname(actor.user.id, nick);
    }
    if (body.current_password !== undefined && body.new_password !== undefined)
      await auth.changePassword(
        actor,
        body.current_password,
        body.new_password,
        request.ip,
        body.keep_api_tokens === true,
      );
    return ok();
  });
}
