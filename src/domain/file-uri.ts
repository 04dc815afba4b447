// cloudreve:// URIs. Only the `my` filesystem (the user's own drive) is served by Ferry.
import { AppError } from './errors.ts';

export interface FileUri {
  fs: 'my';
  /** a user hash id from the user-info part, or null = the caller */
  fsId: string | null;
  /** decoded path segments, no empty ones, no '.' or '..' */
  segments: string[];
  /** Cloudreve search parameters (`?name=…&category=…`), or null when the URI has none. */
  search: URLSearchParams | null;
}

/**
 * Parses a cloudreve:// URI. A query string is a Cloudreve search; only the callers that can
 * honour one (listing, and reads that Cloudreve resolves to the folder itself) allow it —
 * elsewhere it is refused rather than silently dropped, so `delete cloudreve://my/x?name=a`
 * can never act on all of x.
 */
export function parseFileUri(input: unknown, allowSearch = false): FileUri {
  if (typeof input !== 'string' || input.length === 0)
    throw new AppError('PARAM_INVALID', 'Uri cannot be empty');
  if (input.length > 8192 || /[\u0000-\u001f\u007f]/.test(input))
    throw new AppError('PARAM_INVALID', 'unknown uri');
  let url: URL;
  try {
    url = new URL(input);
  } catch {
    throw new AppError('PARAM_INVALID', 'unknown uri');
  }
  if (url.protocol !== 'cloudreve:') throw new AppError('PARAM_INVALID', 'unknown uri');
  const host = url.host.toLowerCase();
  if (host !== 'my') throw new AppError('FORBIDDEN', `Filesystem "${host}" is not supported`);
  let segments: string[];
  try {
    segments = url.pathname
      .split('/')
      .map((s) => decodeURIComponent(s))
      .flatMap((s) => s.split('/'));
  } catch {
    throw new AppError('PARAM_INVALID', 'unknown uri');
  }
  const clean: string[] = [];
  for (const s of segments) {
    if (s === '' || s === '.') continue;
    if (s === '..') {
      clean.pop();
      continue;
    }
    if (s.includes('\0')) throw new AppError('PARAM_INVALID', 'unknown uri');
    clean.push(s);
  }
  const search = url.search.length > 1 ? url.searchParams : null;
  if (search && !allowSearch)
    throw new AppError('PARAM_INVALID', 'Search URIs are only supported when listing files');
  return {
    fs: 'my',
    fsId: url.username ? decodeURIComponent(url.username) : null,
    segments: clean,
    search,
  };
}

/** Each segment escaped like encodeURIComponent (uppercase hex), '/' between. */
export function formatFileUri(segments: readonly string[]): string {
  return segments.length === 0
    ? 'cloudreve://my'
    : 'cloudreve://my/' + segments.map(encodeURIComponent).join('/');
}
