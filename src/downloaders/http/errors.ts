// Turning what can go wrong on the wire into the port's DownloadFailure codes, and the retry
// arithmetic (exponential backoff with jitter, Retry-After).

import { DownloadFailure } from '../port.ts';
import { UncheckedHostError } from '../../net/safe-dial.ts';

/** The origin answered with a status the engine does not accept. */
export class HttpStatusError extends Error {
  readonly status: number;
  /** Retry-After in ms when the origin sent one. */
  readonly retryAfterMs: number | null;
  constructor(status: number, message: string, retryAfterMs: number | null = null) {
    super(message);
    this.status = status;
    this.retryAfterMs = retryAfterMs;
  }
}

/** No bytes arrived on a connection for the stall timeout. */
export class StallError extends Error {}

/** The remote content changed (validator, length, or an ignored If-Range): start over. */
export class ContentChangedError extends Error {}

/** undici/llhttp codes for responses that violate HTTP framing. */
const PROTOCOL_CODES = new Set([
  'FERRY_HTTP_PROTOCOL',
  'UND_ERR_HEADERS_OVERFLOW',
  'HPE_HEADER_OVERFLOW',
  'HPE_INVALID_CONSTANT',
  'HPE_INVALID_HEADER_TOKEN',
  'HPE_INVALID_CONTENT_LENGTH',
  'HPE_UNEXPECTED_CONTENT_LENGTH',
  'HPE_INVALID_TRANSFER_ENCODING',
  'HPE_INVALID_STATUS',
  'HPE_INVALID_VERSION',
  'HPE_CR_EXPECTED',
  'HPE_LF_EXPECTED',
]);

const NETWORK_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENETDOWN',
  'EAI_AGAIN',
  'ENOTFOUND',
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
  'UND_ERR_RES_CONTENT_LENGTH_MISMATCH',
  'UND_ERR_CLOSED',
  'UND_ERR_DESTROYED',
  'UND_ERR_ABORTED',
  'ERR_STREAM_PREMATURE_CLOSE',
  'Z_BUF_ERROR',
  'Z_DATA_ERROR',
]);

function errorCode(err: unknown): string | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string') return code;
  const inner = (err as { errors?: unknown }).errors; // AggregateError from happy eyeballs
  if (Array.isArray(inner)) return errorCode(inner[0]);
  const cause = (err as { cause?: unknown }).cause;
  return cause === undefined ? undefined : errorCode(cause);
}

/** OpenSSL/Node verification codes, in words (Node's own text suggests flags a Ferry user cannot pass). */
const CERTIFICATE_ERRORS: Record<string, string> = {
  DEPTH_ZERO_SELF_SIGNED_CERT: 'its certificate is self-signed',
  SELF_SIGNED_CERT_IN_CHAIN: 'its certificate chain ends in a self-signed CA that is not trusted',
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: 'its certificate is signed by a CA that is not trusted',
  UNABLE_TO_GET_ISSUER_CERT: 'its certificate is signed by a CA that is not trusted',
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: 'its certificate is signed by a CA that is not trusted',
  CERT_UNTRUSTED: 'its certificate is not trusted',
  INVALID_CA: 'its certificate chain holds an invalid CA certificate',
  CERT_SIGNATURE_FAILURE: 'its certificate signature is invalid',
  CERT_HAS_EXPIRED: 'its certificate has expired',
  CERT_NOT_YET_VALID: 'its certificate is not valid yet',
  CERT_REVOKED: 'its certificate was revoked',
  ERR_TLS_CERT_ALTNAME_INVALID: 'its certificate is for another host name',
  HOSTNAME_MISMATCH: 'its certificate is for another host name',
};

/**
 * An untrusted certificate or a failed TLS handshake as a non-retryable TLS failure with a
 * human message, or null. Asking again gets the same certificate, so the task fails at once.
 */
export function tlsFailure(err: unknown, url?: URL): DownloadFailure | null {
  const code = errorCode(err);
  if (code === undefined) return null;
  const host = url === undefined ? 'the origin' : `${url.hostname}${url.port ? `:${url.port}` : ''}`;
  const what = CERTIFICATE_ERRORS[code];
  if (what !== undefined) {
    return new DownloadFailure(
      'TLS',
      `TLS certificate of ${host} not accepted: ${what} (${code}). ` +
        'An administrator can trust its CA with --ca-file.',
      { cause: err },
    );
  }
  if (code.startsWith('ERR_SSL_') || code === 'ERR_TLS_HANDSHAKE_TIMEOUT' || code === 'EPROTO') {
    return new DownloadFailure('TLS', `TLS handshake with ${host} failed (${code})`, { cause: err });
  }
  return null;
}

/** True for failures that make a polite client slow down (fewer connections, longer waits). */
export function isPolitenessSignal(err: unknown): boolean {
  if (err instanceof HttpStatusError) return err.status === 429 || err.status === 503;
  return errorCode(err) === 'ECONNREFUSED';
}

/** Maps any error to a DownloadFailure; `retryable` says whether another attempt may cure it. */
export function toFailure(err: unknown): DownloadFailure {
  if (err instanceof DownloadFailure) return err;
  if (err instanceof UncheckedHostError) return new DownloadFailure('SOURCE_BLOCKED', err.message);
  if (err instanceof HttpStatusError) {
    if (err.status === 404 || err.status === 410) {
      return new DownloadFailure('NOT_FOUND', `origin answered ${err.status}: ${err.message}`);
    }
    const retryable = err.status === 408 || err.status === 429 || err.status >= 500;
    return new DownloadFailure('HTTP_ERROR', `origin answered HTTP ${err.status}: ${err.message}`, {
      retryable,
    });
  }
  if (err instanceof StallError) {
    return new DownloadFailure('NETWORK', err.message, { retryable: true, cause: err });
  }
  if (err instanceof ContentChangedError) {
    return new DownloadFailure('HTTP_ERROR', `remote content changed during the download: ${err.message}`);
  }
  const tls = tlsFailure(err);
  if (tls !== null) return tls;
  const code = errorCode(err);
  const message = err instanceof Error ? err.message : String(err);
  // A malformed answer (oversized or broken head, lying framing) will not get better by asking
  // the same origin again: fail the task now rather than after minutes of task-level retries.
  if (code !== undefined && PROTOCOL_CODES.has(code)) {
    return new DownloadFailure('HTTP_ERROR', `the origin sent a malformed response: ${message}`, {
      cause: err,
    });
  }
  if (code !== undefined && NETWORK_CODES.has(code)) {
    return new DownloadFailure('NETWORK', `network error (${code}): ${message}`, {
      retryable: true,
      cause: err,
    });
  }
  if (code === 'ENOSPC' || code === 'EDQUOT' || code === 'EIO' || code === 'EROFS' || code === 'EACCES') {
    return new DownloadFailure('DISK', `write failed (${code}): ${message}`, { cause: err });
  }
  return new DownloadFailure('NETWORK', `transfer failed: ${message}`, { retryable: true, cause: err });
}

/** What a failed connect (before any answer) means, in words a user reads on the task. */
const CONNECT_FAILURES: Record<string, string> = {
  ECONNREFUSED: 'connection refused',
  ECONNRESET: 'connection reset before an answer',
  ENOTFOUND: 'host name not found',
  EAI_AGAIN: 'host name lookup failed',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
  ENETDOWN: 'network down',
  UND_ERR_CONNECT_TIMEOUT: 'connect timed out',
};

/**
 * A failure to reach the origin at all (refused, reset, DNS, unreachable, connect timeout) as a
 * retryable NETWORK failure naming host and cause, or null for anything else. The probe does not
 * retry these itself: the task's own retry policy (retry_count, resume_time, shown on the task)
 * does, so the user sees the failure within the connect timeout instead of after a minute of
 * silent attempts.
 */
export function connectFailure(err: unknown, url: URL): DownloadFailure | null {
  const code = errorCode(err);
  const what = code === undefined ? undefined : CONNECT_FAILURES[code];
  if (what === undefined) return null;
  const port = url.port || (url.protocol === 'https:' ? '443' : '80');
  return new DownloadFailure('NETWORK', `could not connect to ${url.hostname}:${port}: ${what} (${code})`, {
    retryable: true,
    cause: err,
  });
}

/** Parses Retry-After (seconds or HTTP date) into ms, bounded to [0, maxMs]. */
export function parseRetryAfter(value: string | string[] | undefined, maxMs: number): number | null {
  const v = Array.isArray(value) ? value[0] : value;
  if (v === undefined || v.trim() === '') return null;
  let ms: number;
  if (/^\d+$/.test(v.trim())) ms = Number(v.trim()) * 1000;
  else {
    const date = Date.parse(v);
    if (Number.isNaN(date)) return null;
    ms = date - Date.now();
  }
  return Math.min(maxMs, Math.max(0, ms));
}

/** Exponential backoff with ±50% jitter: base·2^(attempt-1), capped. */
export function backoffMs(attempt: number, baseMs: number, maxMs: number): number {
  const raw = Math.min(maxMs, baseMs * 2 ** Math.max(0, attempt - 1));
  return raw * (0.5 + Math.random());
}
