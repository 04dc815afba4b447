// Sign-in, token pairs (HS256 JWT as Cloudreve issues them), sessions that sign-out, a
// password change or "sign out everywhere" really end (access tokens included), refresh-token
// rotation with reuse detection, personal API tokens, and throttling of password guessing.
import { createHash, randomBytes, randomUUID, webcrypto } from 'node:crypto';
import { SignJWT, jwtVerify } from 'jose';
import { AppError } from '../domain/errors.ts';
import type { ServiceContext } from './context.ts';
import { dummyPasswordHash, verifyPassword } from './passwords.ts';
import { SignInThrottle } from './sign-in-throttle.ts';
import type { Actor, UsersService } from './users.service.ts';

const ACCESS_TTL_S = 3600;
const REFRESH_TTL_S = 14 * 24 * 3600;
const API_TOKEN_PREFIX = 'fry_';
/** A refresh token replaced this recently is a race between two tabs, not a stolen token. */
const REUSE_GRACE_MS = 10_000;

export interface TokenPair {
  access_token: string;
  refresh_token: string;
  access_expires: string;
  refresh_expires: string;
}

export class AuthService {
  private readonly ctx: ServiceContext;
  private readonly users: UsersService;
  /**
   * Imported once: handed raw bytes, jose imports a WebCrypto key on every sign and verify,
   * which roughly doubled the cost of authenticating a request.
   */
  private readonly key: Promise<webcrypto.CryptoKey>;
  private readonly throttle = new SignInThrottle();

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

  /** Throws RATE_LIMITED while this account may not be tried from this address. */
  private checkThrottle(account: string, clientAddress: string, now: number): void {
    const wait = this.throttle.retryAfter(account, clientAddress, now);
    if (wait > 0)
      throw new AppError('RATE_LIMITED', `Too many sign-in attempts, try again in ${wait} s`, {
        details: { retryAfter: wait },
      });
  }

  async signIn(
    email: string,
    password: string,
    clientAddress: string,
  ): Promise<{ actor: Actor; token: TokenPair }> {
    const now = this.ctx.clock.now();
    const emailKey = email.trim().toLowerCase();
    this.checkThrottle(emailKey, clientAddress, now);
    const user = await this.users.findByEmail(emailKey);
    const ok = await verifyPassword(password, user?.password_hash ?? (await dummyPasswordHash()));
    if (!user || !ok) {
      this.throttle.fail(emailKey, clientAddress, now);
      throw new AppError('WRONG_PASSWORD');
    }
    this.throttle.succeed(emailKey, clientAddress, now);
    if (user.status !== 'active') throw new AppError('USER_BANNED');
    const actor = (await this.users.actor(user.id))!;
    await this.ctx.db
      .deleteFrom('sessions')
      .where('user_id', '=', user.id)
      .where('expires_at', '<', now)
      .execute();
    const sid = randomUUID();
    const jti = randomUUID();
    await this.ctx.db
      .insertInto('sessions')
      .values({
        root_token_id: sid,
        user_id: user.id,
        current_jti: jti,
        previous_jti: null,
        rotated_at: now,
        auth_time: now,
        expires_at: now + REFRESH_TTL_S * 1000,
        revoked_at: null,
      })
      .execute();
    return { actor, token: await this.issue(actor, sid, jti, now) };
  }

  private async issue(actor: Actor, sid: string, jti: string, authTime: number): Promise<TokenPair> {
    const now = this.ctx.clock.now();
    const sub = this.ctx.ids.encode('user', actor.user.id);
    const accessExp = Math.floor(now / 1000) + ACCESS_TTL_S;
    const refreshExp = Math.floor(now / 1000) + REFRESH_TTL_S;
    // `uc` binds the token to this user row (its creation time), not only to its id: a token of
    // a removed user never signs in a later user who got the same id (restored backup, manual
    // DELETE). Tokens without it (issued before 0005) are refused once; clients sign in again.
    const uc = actor.user.created_at;
    // Access tokens name their session and the credential version, checked on every request.
    const access = await new SignJWT({
      token_type: 'access',
      sid,
      cv: actor.user.credential_version,
      uc,
      auth_time: Math.floor(authTime / 1000),
    })
      .setProtectedHeader({ alg: 'HS256' })
      .setSubject(sub)
      .setNotBefore(Math.floor(now / 1000) - 1)
      .setExpirationTime(accessExp)
      .sign(await this.key);
    const refresh = await new SignJWT({
      token_type: 'refresh',
      root_token_id: sid,
      cv: actor.user.credential_version,
      uc,
      jti,
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

  /**
   * A new pair for the chain, replacing the refresh token used. Using a refresh token that was
   * already replaced (outside a short grace for two tabs racing) means it was copied: the whole
   * chain is signed out, access tokens included.
   */
  async refresh(refreshToken: unknown): Promise<TokenPair> {
    const fail = () => new AppError('CREDENTIAL_INVALID', 'Failed to issue token pair');
    if (typeof refreshToken !== 'string') throw fail();
    const claims = await this.verify(refreshToken);
    if (
      !claims ||
      claims.token_type !== 'refresh' ||
      typeof claims.root_token_id !== 'string' ||
      typeof claims.jti !== 'string'
    )
      throw fail();
    const userId = this.ctx.ids.decode('user', String(claims.sub));
    if (userId === null) throw fail();
    const now = this.ctx.clock.now();
    const session = await this.ctx.db
      .selectFrom('sessions')
      .selectAll()
      .where('root_token_id', '=', claims.root_token_id)
      .executeTakeFirst();
    if (!session || session.user_id !== userId || session.revoked_at !== null || session.expires_at < now)
      throw fail();
    if (claims.jti !== session.current_jti) {
      const race = claims.jti === session.previous_jti && now - session.rotated_at < REUSE_GRACE_MS;
      if (!race) await this.revokeSession(session.root_token_id);
      throw fail();
    }
    const actor = await this.users.actor(userId);
    if (
      !actor ||
      actor.user.status !== 'active' ||
      actor.user.credential_version !== claims.cv ||
      actor.user.created_at !== claims.uc
    )
      throw fail();
    const jti = randomUUID();
    // Compare-and-set: of two requests with the same token, one rotates.
    const rotated = await this.ctx.db
      .updateTable('sessions')
      .set({
        current_jti: jti,
        previous_jti: claims.jti,
        rotated_at: now,
        expires_at: now + REFRESH_TTL_S * 1000,
      })
      .where('root_token_id', '=', session.root_token_id)
      .where('current_jti', '=', claims.jti)
      .where('revoked_at', 'is', null)
      .executeTakeFirst();
    if (Number(rotated.numUpdatedRows) === 0) throw fail();
    return this.issue(actor, session.root_token_id, jti, session.auth_time);
  }

  private async revokeSession(sid: string): Promise<void> {
    await this.ctx.db
      .updateTable('sessions')
      .set({ revoked_at: this.ctx.clock.now() })
      .where('root_token_id', '=', sid)
      .where('revoked_at', 'is', null)
      .execute();
  }

  /** Ends the refresh token's chain and every access token issued in it. */
  async signOut(refreshToken: unknown): Promise<void> {
    const claims = typeof refreshToken === 'string' ? await this.verify(refreshToken) : null;
    if (!claims || claims.token_type !== 'refresh' || typeof claims.root_token_id !== 'string') {
      throw new AppError('CREDENTIAL_INVALID', 'Failed to parse token');
    }
    await this.revokeSession(claims.root_token_id);
    await this.ctx.db.deleteFrom('sessions').where('expires_at', '<', this.ctx.clock.now()).execute();
  }

  /**
   * The password check of sensitive actions (password change, API tokens without a recent
   * sign-in): throttled like sign-in, so a stolen session cannot guess the password either.
   */
  async checkPassword(actor: Actor, password: string, clientAddress: string): Promise<void> {
    const now = this.ctx.clock.now();
    this.checkThrottle(actor.user.email, clientAddress, now);
    if (!(await verifyPassword(password, actor.user.password_hash))) {
      this.throttle.fail(actor.user.email, clientAddress, now);
      throw new AppError('INCORRECT_PASSWORD');
    }
  }

  /** PATCH /user/setting with current_password + new_password: every session ends. */
  async changePassword(
    actor: Actor,
    current: string,
    next: string,
    clientAddress: string,
    keepApiTokens = false,
  ): Promise<void> {
    await this.checkPassword(actor, current, clientAddress);
    await this.users.setPassword(actor.user.email, next, { keepApiTokens });
  }

  /**
   * Resolves an Authorization header to a signed-in actor. Like Cloudreve, a token that
   * fails to verify makes the caller anonymous (null); a refresh token used as access fails.
   * An access token whose session was signed out, or issued before a password change, is
   * anonymous too.
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
    if (claims.cv !== actor.user.credential_version || typeof claims.sid !== 'string') return null;
    const session = await this.ctx.db
      .selectFrom('sessions')
      .select(['user_id', 'revoked_at'])
      .where('root_token_id', '=', claims.sid)
      .executeTakeFirst();
    if (!session || session.user_id !== userId || session.revoked_at !== null) return null;
    const authTime = typeof claims.auth_time === 'number' ? claims.auth_time * 1000 : null;
    return { ...actor, credential: { kind: 'access', authTime, sessionId: claims.sid } };
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
    return { ...actor, credential: { kind: 'api_token', authTime: null } };
  }

  /**
   * A new API token. It outlives sessions, so it needs a recent sign-in (an access token from
   * a password sign-in in the last --recent-sign-in-minutes) or the password in the request.
   */
  async createApiToken(
    actor: Actor,
    name: string,
    expiresInDays?: number,
    proof?: { password?: string | undefined; clientAddress: string },
  ): Promise<{ id: number; token: string; name: string; created_at: number; expires_at: number | null }> {
    const clean = name.trim();
    if (!clean || clean.length > 100)
      throw new AppError('PARAM_INVALID', 'Token name must be 1-100 characters');
    if (proof?.password !== undefined) {
      await this.checkPassword(actor, proof.password, proof.clientAddress);
    } else {
      const authTime = actor.credential?.kind === 'access' ? actor.credential.authTime : null;
      const windowMs = this.ctx.config.recentSignInMinutes * 60_000;
      if (authTime === null || this.ctx.clock.now() - authTime >= windowMs)
        throw new AppError(
          'RECENT_SIGN_IN_REQUIRED',
          `Creating an API token needs your password, or a sign-in in the last ${this.ctx.config.recentSignInMinutes} minutes`,
        );
    }
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
