// NUL is never valid in any parameter of either face: no name, URI, id or token contains one.
// PostgreSQL refuses it in text ("invalid byte sequence"), so without this guard a NUL in an
// id or e-mail became a database error (HTTP 500 / code 5xxxx) instead of a client error.
import type { FastifyInstance } from 'fastify';
import { AppError } from '../domain/errors.ts';

/** True when a string, key or value anywhere in `value` (to a sane depth) holds a NUL. */
export function containsNul(value: unknown, depth = 0): boolean {
  if (typeof value === 'string') return value.includes('\u0000');
  if (value === null || typeof value !== 'object' || depth > 32) return false;
  for (const [key, item] of Object.entries(value)) {
    if (key.includes('\u0000') || containsNul(item, depth + 1)) return true;
  }
  return false;
}

export function addInputGuard(app: FastifyInstance): void {
  app.addHook('preValidation', async (request) => {
    if (containsNul(request.params) || containsNul(request.query) || containsNul(request.body))
      throw new AppError('PARAM_INVALID', 'NUL characters are not allowed');
  });
}
