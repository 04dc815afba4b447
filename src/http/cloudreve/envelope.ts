// The Cloudreve envelope {code, data, msg, error, aggregated_error, correlation_id}: HTTP 200
// for results and errors alike, Cloudreve's numeric codes, a correlation id on errors.
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { isDatabaseError } from '../../db/errors.ts';
import { AppError, BatchError, ErrorCodes } from '../../domain/errors.ts';

export interface Envelope {
  code: number;
  data?: unknown;
  msg: string;
  error?: string;
  aggregated_error?: Record<string, Envelope>;
  correlation_id?: string;
}

export const ok = (data?: unknown): Envelope =>
  data === undefined ? { code: 0, msg: '' } : { code: 0, data, msg: '' };

export function errorEnvelope(error: AppError, correlationId: string): Envelope {
  const body: Envelope = {
    code: ErrorCodes[error.code].cloudreve,
    msg: error.message,
    correlation_id: correlationId,
  };
  if (error instanceof BatchError) {
    body.aggregated_error = {};
    for (const [key, inner] of error.failures)
      body.aggregated_error[key] = errorEnvelope(inner, correlationId);
    if (error.data !== undefined) body.data = error.data;
  }
  return body;
}

function capitalize(s: string): string {
  return s.charAt(0).toUpperCase() + s.slice(1);
}

/** Schema failures read like Cloudreve's binding errors ("Dst cannot be empty"), without correlation id. */
function validationMessage(error: FastifyError): string {
  const first = error.validation?.[0];
  if (!first) return 'Parameter error';
  if (first.keyword === 'required') {
    const field = String((first.params as { missingProperty?: string }).missingProperty ?? 'field');
    return `${capitalize(field)} cannot be empty`;
  }
  const path = (first.instancePath || '').replace(/^\//, '').replaceAll('/', '.');
  // Ajv's pattern message would print the regular expression.
  if (first.keyword === 'pattern' || first.keyword === 'format')
    return `Parameter error: ${path ? path + ' ' : ''}is invalid`;
  return `Parameter error: ${path ? path + ' ' : ''}${first.message ?? 'is invalid'}`;
}

export function cloudreveErrorHandler(error: unknown, request: FastifyRequest, reply: FastifyReply) {
  const correlationId = String(request.id);
  if (error instanceof AppError) {
    if (error.code === 'RATE_LIMITED' && typeof error.details?.retryAfter === 'number')
      reply.header('Retry-After', String(error.details.retryAfter));
    return reply.code(200).send(errorEnvelope(error, correlationId));
  }
  const fe = error as FastifyError;
  if (fe.validation) return reply.code(200).send({ code: 40001, msg: validationMessage(fe) });
  if (
    fe.code === 'FST_ERR_CTP_INVALID_JSON_BODY' ||
    fe.code === 'FST_ERR_CTP_EMPTY_JSON_BODY' ||
    fe instanceof SyntaxError
  ) {
    return reply.code(200).send({ code: 40001, msg: 'JSON marshall error' });
  }
  if (fe.code === 'FST_ERR_CTP_BODY_TOO_LARGE')
    return reply.code(200).send({ code: 40001, msg: 'Request body is too large' });
  if (fe.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE' || fe.code === 'FST_ERR_CTP_INVALID_CONTENT_LENGTH') {
    return reply.code(200).send({ code: 40001, msg: 'Unsupported request body' });
  }
  if (typeof fe.statusCode === 'number' && fe.statusCode >= 400 && fe.statusCode < 500) {
    return reply.code(200).send({ code: 40001, msg: 'Parameter error', correlation_id: correlationId });
  }
  const dbDown =
    isDatabaseError(error) ||
    /ECONNREFUSED|ECONNRESET|terminat|Connection|SQLITE_BUSY|database|Query read timeout|timeout exceeded when trying to connect/i.test(
      String(fe.message),
    );
  request.log.error({ err: error }, 'request failed');
  return reply.code(200).send({
    code: dbDown ? 50001 : 50005,
    msg: dbDown ? 'Database error' : 'Internal error',
    correlation_id: correlationId,
  });
}
