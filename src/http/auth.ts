// Resolves the caller from the Authorization header once per request.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { AppError } from '../domain/errors.ts';
import type { AuthService } from '../services/auth.service.ts';
import type { Actor } from '../services/users.service.ts';

declare module 'fastify' {
  interface FastifyRequest {
    actor: Actor | null;
    /** Why a presented token was not accepted (wrong type, banned user); raised only where login is required. */
    authError: AppError | null;
  }
}

export function addAuthentication(app: FastifyInstance, auth: AuthService): void {
  app.decorateRequest('actor', null);
  app.decorateRequest('authError', null);
  app.addHook('onRequest', async (request) => {
    try {
      request.actor = await auth.authenticate(request.headers.authorization);
    } catch (e) {
      // Like Cloudreve, a bad token fails the request — except where a client signs in again
      // or fetches signed content: a stale token must not lock a user out.
      if (!(e instanceof AppError)) throw e;
      const route = request.routeOptions.url ?? '';
      if (!/\/session\/|\/file\/(content|archive)\//.test(route)) throw e;
      request.authError = e;
    }
  });
}

export function requireActor(request: FastifyRequest): Actor {
  if (request.authError) throw request.authError;
  if (!request.actor) throw new AppError('LOGIN_REQUIRED');
  return request.actor;
}
