// Signed, expiring download links in Cloudreve's format: the decoded URL path plus the expiry
// are HMAC-SHA256-signed; host and other query keys are not, so ?download can be toggled.
// The MAC also covers what the link names, unseen in the URL: a content link its blob's random
// nonce, so a link checked against whatever row now has that id fails unless it is the same blob.
import {
  createHash,
  createHmac,
  createSecretKey,
  randomUUID,
  timingSafeEqual,
  type KeyObject,
} from 'node:crypto';
import { AppError, BatchError } from '../domain/errors.ts';
import { primaryEntityId } from '../domain/ids.ts';
import type { ServiceContext } from './context.ts';
import { FOLDER, type FilesService, type FileRow } from './files.service.ts';
import type { Actor } from './users.service.ts';

export interface SignedUrl {
  url: string;
  stream_saver_display_name?: string;
}

export interface UrlRequest {
  uris: unknown[];
  download?: boolean | null;
  entity?: string | null;
  skip_error?: boolean | null;
  archive?: boolean | null;
  no_cache?: boolean | null;
}

/** Go's url.PathEscape of one segment: like encodeURIComponent but also escapes !'()*. */
export function pathEscape(segment: string): string {
  return encodeURIComponent(segment).replace(
    /[!'()*]/g,
    (c) => '%' + c.charCodeAt(0).toString(16).toUpperCase(),
  );
}

/** Cloudreve's SignURI: base64url WITH padding of HMAC-SHA256(path + ':' + expires), then ':' + expires. */
export function signPath(key: KeyObject | Buffer | string, path: string, expires: number): string {
  return macOf(key, `${path}:${expires}`, expires);
}

/** What a link binds to when there is no blob: an empty file, an archive (its session id is random). */
export const EMPTY_BINDING = 'empty';
export const ARCHIVE_BINDING = 'archive';

/**
 * Ferry's links: Cloudreve's sign format over `path:expires:binding`. The binding is [0-9a-z]
 * only, so no other path and expiry can give the same input.
 */
export function signBound(key: KeyObject, path: string, expires: number, binding: string): string {
  return macOf(key, `${path}:${expires}:${binding}`, expires);
}

function macOf(key: KeyObject | Buffer | string, input: string, expires: number): string {
  const mac = createHmac('sha256', key).update(input).digest('base64');
  return `${mac.replaceAll('+', '-').replaceAll('/', '_')}:${expires}`;
}

type CachedUrl = { url: string; expires: number };

export class LinksService {
  private readonly ctx: ServiceContext;
  private readonly files: FilesService;
  /** A KeyObject, not a Buffer: Node re-imports a Buffer key on every HMAC (~41 µs vs ~5 µs). */
  private readonly key: KeyObject;
  /**
   * blob id → (nonce, speed, name, download, base) → url, reused until 10 minutes before it
   * expires. A blob's entries go when this process deletes it; the nonce in the key keeps an
   * entry from outliving its blob when another process did.
   */
  private readonly cache = new Map<number, Map<string, CachedUrl>>();
  private cached = 0;

  constructor(ctx: ServiceContext, files: FilesService) {
    this.ctx = ctx;
    this.files = files;
    this.key = createSecretKey(createHash('sha256').update('links:').update(ctx.secret).digest());
    files.onBlobsDeleted((ids) => this.forgetBlobs(ids));
  }

  sign(path: string, expires: number, binding: string): string {
    return signBound(this.key, path, expires, binding);
  }

  /**
   * Checks a `sign` query value's form and expiry (Cloudreve §5.3 order), before anything is
   * read; returns the expiry. `verify` then checks the MAC against the row the link names.
   */
  expiryOf(sign: unknown): number {
    if (typeof sign !== 'string' || !sign.includes(':') || sign.endsWith(':'))
      throw new AppError('FORBIDDEN', 'expire timestamp is missing');
    const expiresText = sign.slice(sign.lastIndexOf(':') + 1);
    if (!/^\d{1,15}$/.test(expiresText)) throw new AppError('INVALID_SIGN', 'sign expired');
    const expires = Number(expiresText);
    if (expires !== 0 && expires * 1000 < this.ctx.clock.now())
      throw new AppError('SIGN_EXPIRED', 'signature expired');
    return expires;
  }

  /** Checks a `sign` against the request's decoded path and what the link is bound to. */
  verify(decodedPath: string, sign: unknown, binding: string): void {
    const expires = this.expiryOf(sign);
    const expected = Buffer.from(this.sign(decodedPath, expires, binding));
    const given = Buffer.from(sign as string);
    if (expected.length !== given.length || !timingSafeEqual(expected, given))
      throw new AppError('INVALID_SIGN', 'invalid sign');
  }

  private signedUrl(
    base: string,
    path: string,
    escapedPath: string,
    expires: number,
    binding: string,
    extra: Record<string, string>,
  ): string {
    const query = new URLSearchParams({ ...extra, sign: this.sign(path, expires, binding) });
    query.sort();
    return `${base}${escapedPath}?${query.toString().replaceAll('+', '%20')}`;
  }

  contentPath(blobId: number, speed: number, name: string): { path: string; escaped: string } {
    const entity = this.ctx.ids.encode('entity', blobId);
    return {
      path: `/api/v4/file/content/${entity}/${speed}/${name}`,
      escaped: `/api/v4/file/content/${entity}/${speed}/${pathEscape(name)}`,
    };
  }

  async createUrls(
    actor: Actor,
    request: UrlRequest,
    base: string,
  ): Promise<{ urls: SignedUrl[]; expires: string }> {
    const ttl = this.ctx.config.linkTtl;
    const now = this.ctx.clock.now();
    if (request.uris.length > 3000) throw new AppError('TOO_MANY_URIS', 'Maximum allowed batch size: 3000');
    if (request.archive) return this.createArchiveUrl(actor, request, base, now, ttl);

    const urls: SignedUrl[] = [];
    const failures = new Map<string, AppError>();
    let earliest = Infinity;
    for (const uri of request.uris) {
      try {
        const { file } = await this.files.locate(actor, uri);
        if (file.type === FOLDER) throw new AppError('ENTITY_NOT_EXIST', 'Entity not exist');
        if (request.entity) {
          const wanted = this.ctx.ids.decode('entity', request.entity);
          // An empty file has no blob: its primary_entity is its own id above EMPTY_ENTITY_BASE
          // (links made before that used the hash of 0, still accepted).
          const own = primaryEntityId(file);
          if (wanted === null || (wanted !== own && !(file.blob_id === null && wanted === 0)))
            throw new AppError('ENTITY_NOT_EXIST', 'Entity not exist');
        }
        const blob = await this.files.blobOf(file);
        if (file.blob_id !== null && !blob) throw new AppError('ENTITY_NOT_EXIST', 'Entity not exist');
        const blobId = blob?.id ?? 0;
        const binding = blob?.nonce ?? EMPTY_BINDING;
        const speed = actor.group.speed_limit;
        const cacheKey = `${binding}|${speed}|${file.name}|${request.download ? 1 : 0}|${base}`;
        const cached = request.no_cache ? undefined : this.cache.get(blobId)?.get(cacheKey);
        if (cached && cached.expires * 1000 - 600_000 > now) {
          urls.push({ url: cached.url });
          earliest = Math.min(earliest, cached.expires);
          continue;
        }
        const expires = Math.floor(now / 1000) + ttl;
        const { path, escaped } = this.contentPath(blobId, speed, file.name);
        const url = this.signedUrl(
          base,
          path,
          escaped,
          expires,
          binding,
          request.download ? { download: 'true' } : {},
        );
        if (!request.no_cache) this.rememberUrl(blobId, cacheKey, url, expires);
        urls.push({ url });
        earliest = Math.min(earliest, expires);
      } catch (e) {
        const error = e instanceof AppError ? e : new AppError('INTERNAL', undefined, { cause: e });
        failures.set(String(uri), error);
        urls.push({ url: '' });
      }
    }
    if (failures.size && !request.skip_error) throw new BatchError(failures);
    if (!Number.isFinite(earliest)) earliest = Math.floor(now / 1000) + ttl;
    const result = { urls, expires: new Date(earliest * 1000).toISOString() };
    // Like Cloudreve, skip_error drops the errors: code 0, a failed item's slot is {url: ""}.
    return result;
  }

  private rememberUrl(blobId: number, key: string, url: string, expires: number): void {
    if (this.cached > 50_000) {
      this.cache.clear();
      this.cached = 0;
    }
    let entries = this.cache.get(blobId);
    if (!entries) this.cache.set(blobId, (entries = new Map<string, CachedUrl>()));
    if (!entries.has(key)) this.cached++;
    entries.set(key, { url, expires });
  }

  /** Drops every cached URL of these blobs (deleted, or about to be). */
  forgetBlobs(ids: readonly number[]): void {
    for (const id of ids) {
      const entries = this.cache.get(id);
      if (!entries) continue;
      this.cached -= entries.size;
      this.cache.delete(id);
    }
  }

  /** How many URLs are cached for a blob (for tests and metrics). */
  cachedUrls(blobId: number): number {
    return this.cache.get(blobId)?.size ?? 0;
  }

  private async createArchiveUrl(actor: Actor, request: UrlRequest, base: string, now: number, ttl: number) {
    // Each file is kept with its creation time: a later file under a reused id is not the same one.
    const picked: Array<[number, number]> = [];
    const failures = new Map<string, AppError>();
    for (const uri of request.uris) {
      try {
        const { file } = await this.files.locate(actor, uri);
        picked.push([file.id, file.created_at]);
      } catch (e) {
        failures.set(
          String(uri),
          e instanceof AppError ? e : new AppError('INTERNAL', undefined, { cause: e }),
        );
      }
    }
    if (failures.size && (!request.skip_error || picked.length === 0)) throw new BatchError(failures);
    const id = randomUUID();
    const expires = Math.floor(now / 1000) + ttl;
    await this.ctx.db
      .insertInto('archive_sessions')
      .values({ id, owner_id: actor.user.id, file_ids: JSON.stringify(picked), expires_at: expires * 1000 })
      .execute();
    await this.ctx.db.deleteFrom('archive_sessions').where('expires_at', '<', now).execute();
    const path = `/api/v4/file/archive/${id}/archive.zip`;
    return {
      urls: [{ url: this.signedUrl(base, path, path, expires, ARCHIVE_BINDING, {}) }],
      expires: new Date(expires * 1000).toISOString(),
    };
  }

  async archiveSession(id: string): Promise<{ ownerId: number; files: FileRow[] }> {
    const row = await this.ctx.db
      .selectFrom('archive_sessions')
      .selectAll()
      .where('id', '=', id)
      .executeTakeFirst();
    if (!row || row.expires_at < this.ctx.clock.now())
      throw new AppError('NOT_FOUND', 'Archive session not exist');
    // [id, created_at] pairs; sessions stored before 0005 hold bare ids (they expire within the TTL).
    const picked = JSON.parse(row.file_ids) as Array<number | [number, number]>;
    const files: FileRow[] = [];
    for (const item of picked) {
      const [fileId, createdAt] = typeof item === 'number' ? [item, null] : item;
      // Files deleted since the link was made are left out rather than failing the whole zip.
      const file = await this.files.getById(row.owner_id, fileId);
      if (file && (createdAt === null || file.created_at === createdAt)) files.push(file);
    }
    return { ownerId: row.owner_id, files };
  }
}
