// Sign-in, token pairs (HS256 JWT as Cloudreve issues them), sign-out that really ends a
// refresh chain, personal API tokens, and throttling of password guessing.
import { createHash, randomBytes, randomUUID, webcrypto } from 'node:crypto';
import { SignJWT, jwtVerify } from 'jose';
import { AppError } from '../domain/errors.ts';
import type { ServiceContext } from './context.ts';
import { dummyPasswordHash, verifyPassword } from './passwords.ts';
import type { Actor, UsersService } from './users.service.ts';

const ACCESS_TTL_S = 3600;
const REFRESH_TTL_S = 14 * 24 * 3600;
const API_TOKEN_PREFIX = 'fry_';

export interface TokenPair {
  access_token: string;
  refresh_token: string;
  access_expires: string;
  refresh_expires: string;
}

/** Failed attempts per key in a sliding window; a success clears the e-mail's counter. */
class AttemptLimiter {
  private readonly failures = new Map<string, number[]>();
  private readonly limit: number;
  private readonly windowMs: number;
  constructor(limit: number, windowMs: number) {
    this.limit = limit;
    this.windowMs = windowMs;
  }
  /** Seconds to wait, or 0 when another attempt is allowed. */
  retryAfter(key: string, now: number): number {
    const recent = (this.failures.get(key) ?? []).filter((t) => now - t < this.windowMs);
    if (recent.length === 0) this.failures.delete(key);
    else this.failures.set(key, recent);
    return recent.length >= this.limit ? Math.ceil((recent[0]! + this.windowMs - now) / 1000) : 0;
  }
  fail(key: string, now: number): void {
    const list = this.failures.get(key) ?? [];
    list.push(now);
    this.failures.set(key, list);
    if (this.failures.size > 100_000) this.failures.clear(); // bounded memory under a flood
  }
  clear(key: string): void {
    this.failures.delete(key);
  }
}

export class AuthService {
  private readonly ctx: ServiceContext;
  private readonly users: UsersService;
  /**
   * Imported once: handed raw bytes, jose imports a WebCrypto key on every sign and verify,
   * which roughly doubled the cost of authenticating a request.
   */
  private readonly key: Promise<webcrypto.CryptoKey>;
  // 10 wrong passwords per account or 30 per client address in 15 minutes.
  private readonly perEmail = new AttemptLimiter(10, 15 * 60_000);
  private readonly perAddress = new AttemptLimiter(30, 15 * 60_000);

  constructor(ctx: ServiceContext, users: UsersService) {
    this.ctx = ctx;
    this.users = users;
    this.key = webcrypto.subtle.importKey(
      'raw',
      createHash('sha256').update('jwt:').update(ctx.secret).digest(),
      { name: 'HMAC', hash: 'SHA-256' },
      false,
      ['sign', 'verify'],
    );
  }

  async signIn(
    email: string,
    password: string,
    clientAddress: string,
  ): Promise<{ actor: Actor; token: TokenPair }> {
    const now = this.ctx.clock.now();
    const emailKey = email.trim().toLowerCase();
    const wait = Math.max(
      this.perEmail.retryAfter(emailKey, now),
      this.perAddress.retryAfter(clientAddress, now),
    );
    if (wait > 0)
      throw new AppError('RATE_LIMITED', `Too many sign-in attempts, try again in ${wait} s`, {
        details: { retryAfter: wait },
      });
    const user = await this.users.findByEmail(emailKey);
    const ok = await verifyPassword(password, user?.password_hash ?? (await dummyPasswordHash()));
    if (!user || !ok) {
      this.perEmail.fail(emailKey, now);
      this.perAddress.fail(clientAddress, now);
      throw new AppError('WRONG_PASSWORD');
    }
    this.perEmail.clear(emailKey);
    if (user.status !== 'active') throw new AppError('USER_BANNED');
    const actor = (await this.users.actor(user.id))!;
    return { actor, token: await this.issue(actor, randomUUID()) };
  }

  private async issue(actor: Actor, rootTokenId: string): Promise<TokenPair> {
    const now = this.ctx.clock.now();
    const sub = this.ctx.ids.encode('user', actor.user.id);
    const accessExp = Math.floor(now / 1000) + ACCESS_TTL_S;
    const refreshExp = Math.floor(now / 1000) + REFRESH_TTL_S;
    // `uc` binds the token to this user row (its creation time), not only to its id: a token of
    // a removed user never signs in a later user who got the same id (restored backup, manual
    // DELETE). Tokens without it (issued before 0005) are refused once; clients sign in again.
    const uc = actor.user.created_at;
    const access = await new SignJWT({ token_type: 'access', uc })
      .setProtectedHeader({ alg: 'HS256' })
      .setSubject(sub)
      .setNotBefore(Math.floor(now / 1000) - 1)
      .setExpirationTime(accessExp)
      .sign(await this.key);
    const refresh = await new SignJWT({
      token_type: 'refresh',
      root_token_id: rootTokenId,
      cv: actor.user.credential_version,
      uc,
      jti: randomUUID(),
    })
      .setProtectedHeader({ alg: 'HS256' })
      .setSubject(sub)
      .setNotBefore(Math.floor(now / 1000) - 1)
      .setExpirationTime(refreshExp)
      .sign(await this.key);
    return {
      access_token: access,
      refresh_token: refresh,
      access_expires: new Date(accessExp * 1000).toISOString(),
      refresh_expires: new Date(refreshExp * 1000).toISOString(),
    };
  }

  private async verify(token: string): Promise<Record<string, unknown> | null> {
    try {
      const { payload } = await jwtVerify(token, await this.key, {
        algorithms: ['HS256'],
        currentDate: new Date(this.ctx.clock.now()),
      });
      return payload;
    } catch {
      return null;
    }
  }

  async refresh(refreshToken: unknown): Promise<TokenPair> {
    const fail = () => new AppError('CREDENTIAL_INVALID', 'Failed to issue token pair');
    if (typeof refreshToken !== 'string') throw fail();
    const claims = await this.verify(refreshToken);
    if (!claims || claims.token_type !== 'refresh' || typeof claims.root_token_id !== 'string') throw fail();
    const userId = this.ctx.ids.decode('user', String(claims.sub));
    if (userId === null) throw fail();
    const revoked = await this.ctx.db
      .selectFrom('revoked_sessions')
      .select('root_token_id')
      .where('root_token_id', '=', claims.root_token_id)
      .executeTakeFirst();
    if (revoked) throw fail();
    const actor = await this.users.actor(userId);
    if (
      !actor ||
      actor.user.status !== 'active' ||
      actor.user.credential_version !== claims.cv ||
      actor.user.created_at !== claims.uc
    )
      throw fail();
    return this.issue(actor, claims.root_token_id);
  }

  async signOut(refreshToken: unknown): Promise<void> {
    const claims = typeof refreshToken === 'string' ? await this.verify(refreshToken) : null;
    if (!claims || claims.token_type !== 'refresh' || typeof claims.root_token_id !== 'string') {
      throw new AppError('CREDENTIAL_INVALID', 'Failed to parse token');
    }
    const now = this.ctx.clock.now();
    await this.ctx.db
      .insertInto('revoked_sessions')
      .values({ root_token_id: claims.root_token_id, expires_at: now + (REFRESH_TTL_S + 10) * 1000 })
      .onConflict((oc) => oc.column('root_token_id').doNothing())
      .execute();
    await this.ctx.db.deleteFrom('revoked_sessions').where('expires_at', '<', now).execute();
  }

  /**
   * Resolves an Authorization header to a signed-in actor. Like Cloudreve, a token that
   * fails to verify makes the caller anonymous (null); a refresh token used as access fails.
   */
  async authenticate(header: string | undefined): Promise<Actor | null> {
    if (!header) return null;
    const match = /^Bearer\s+(\S+)$/i.exec(header.trim());
    const basic = /^Basic\s+(\S+)$/i.exec(header.trim());
    let token = match?.[1];
    if (!token && basic) {
      // WebDAV-style clients: the API token as the Basic password.
      const decoded = Buffer.from(basic[1]!, 'base64').toString('utf8');
      token = decoded.slice(decoded.indexOf(':') + 1);
    }
    if (!token) return null;
    if (token.startsWith(API_TOKEN_PREFIX)) return this.authenticateApiToken(token);
    const claims = await this.verify(token);
    if (!claims) return null;
    if (claims.token_type !== 'access') throw new AppError('CREDENTIAL_INVALID', 'Invalid token type');
    const userId = this.ctx.ids.decode('user', String(claims.sub));
    if (userId === null) throw new AppError('NOT_FOUND', 'User not found');
    const actor = await this.users.actor(userId);
    if (!actor) throw new AppError('NOT_FOUND', 'User not found');
    // Signed for another row under this id (or before 0005): not a credential, the caller is anonymous.
    if (actor.user.created_at !== claims.uc) return null;
    if (actor.user.status !== 'active') throw new AppError('USER_BANNED');
    return actor;
  }

  private async authenticateApiToken(token: string): Promise<Actor | null> {
    const hash = createHash('sha256').update(token).digest('hex');
    const now = this.ctx.clock.now();
    const row = await this.ctx.db
      .selectFrom('api_tokens')
      .selectAll()
      .where('token_hash', '=', hash)
      .executeTakeFirst();
    if (!row || row.revoked_at !== null || (row.expires_at !== null && row.expires_at < now)) return null;
    const actor = await this.users.actor(row.user_id);
    if (!actor || actor.user.status !== 'active') return null;
    // Coarse last-used stamp: at most one write a minute per token.
    if (row.last_used_at === null || now - row.last_used_at > 60_000) {
      await this.ctx.db
        .updateTable('api_tokens')
        .set({ last_used_at: now })
        .where('id', '=', row.id)
        .execute();
    }
    return actor;
  }

  async createApiToken(
    actor: Actor,
    name: string,
    expiresInDays?: number,
  ): Promise<{ id: number; token: string; name: string; created_at: number; expires_at: number | null }> {
    const clean = name.trim();
    if (!clean || clean.length > 100)
      throw new AppError('PARAM_INVALID', 'Token name must be 1-100 characters');
    const count = await this.ctx.db
      .selectFrom('api_tokens')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('user_id', '=', actor.user.id)
      .where('revoked_at', 'is', null)
      .executeTakeFirstOrThrow();
    if (Number(count.n) >= 100) throw new AppError('PARAM_INVALID', 'At most 100 active API tokens');
    const token = API_TOKEN_PREFIX + randomBytes(32).toString('base64url');
    const now = this.ctx.clock.now();
    const expiresAt = expiresInDays ? now + expiresInDays * 86_400_000 : null;
    const row = await this.ctx.db
      .insertInto('api_tokens')
      .values({
        user_id: actor.user.id,
        name: clean,
        token_hash: createHash('sha256').update(token).digest('hex'),
        token_prefix: token.slice(0, 10),
        created_at: now,
        expires_at: expiresAt,
        last_used_at: null,
        revoked_at: null,
      })
      .returning(['id', 'created_at', 'expires_at'])
      .executeTakeFirstOrThrow();
    return { id: row.id, token, name: clean, created_at: row.created_at, expires_at: row.expires_at };
  }

  async listApiTokens(actor: Actor) {
    return this.ctx.db
      .selectFrom('api_tokens')
      .select(['id', 'name', 'token_prefix', 'created_at', 'last_used_at', 'expires_at'])
      .where('user_id', '=', actor.user.id)
      .where('revoked_at', 'is', null)
      .orderBy('id', 'desc')
      .execute();
  }

  async revokeApiToken(actor: Actor, id: number): Promise<void> {
    const result = await this.ctx.db
      .updateTable('api_tokens')
      .set({ revoked_at: this.ctx.clock.now() })
      .where('id', '=', id)
      .where('user_id', '=', actor.user.id)
      .where('revoked_at', 'is', null)
      .executeTakeFirst();
    if (Number(result.numUpdatedRows) === 0) throw new AppError('NOT_FOUND', 'Token not found');
  }
}
