// Signed, expiring download links in Cloudreve's format: the decoded URL path plus the expiry
// are HMAC-SHA256-signed; host and other query keys are not, so ?download can be toggled.
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
  const mac = createHmac('sha256', key).update(`${path}:${expires}`).digest('base64');
  return `${mac.replaceAll('+', '-').replaceAll('/', '_')}:${expires}`;
}

export class LinksService {
  private readonly ctx: ServiceContext;
  private readonly files: FilesService;
  /** A KeyObject, not a Buffer: Node re-imports a Buffer key on every HMAC (~41 µs vs ~5 µs). */
  private readonly key: KeyObject;
  /** (blob, name, download, base) → url, reused until 10 minutes before it expires. */
  private readonly cache = new Map<string, { url: string; expires: number }>();

  constructor(ctx: ServiceContext, files: FilesService) {
    this.ctx = ctx;
    this.files = files;
    this.key = createSecretKey(createHash('sha256').update('links:').update(ctx.secret).digest());
  }

  sign(path: string, expires: number): string {
    return signPath(this.key, path, expires);
  }

  /** Checks a `sign` query value against the request's decoded path (Cloudreve §5.3 order). */
  verify(decodedPath: string, sign: unknown): void {
    if (typeof sign !== 'string' || !sign.includes(':') || sign.endsWith(':'))
      throw new AppError('FORBIDDEN', 'expire timestamp is missing');
    const expiresText = sign.slice(sign.lastIndexOf(':') + 1);
    if (!/^\d{1,15}$/.test(expiresText)) throw new AppError('INVALID_SIGN', 'sign expired');
    const expires = Number(expiresText);
    if (expires !== 0 && expires * 1000 < this.ctx.clock.now())
      throw new AppError('SIGN_EXPIRED', 'signature expired');
    const expected = Buffer.from(this.sign(decodedPath, expires));
    const given = Buffer.from(sign);
    if (expected.length !== given.length || !timingSafeEqual(expected, given))
      throw new AppError('INVALID_SIGN', 'invalid sign');
  }

  private signedUrl(
    base: string,
    path: string,
    escapedPath: string,
    expires: number,
    extra: Record<string, string>,
  ): string {
    const query = new URLSearchParams({ ...extra, sign: this.sign(path, expires) });
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
        const blobId = file.blob_id ?? 0;
        if (request.entity) {
          const wanted = this.ctx.ids.decode('entity', request.entity);
          // An empty file has no blob: its primary_entity is its own id above EMPTY_ENTITY_BASE
          // (links made before that used the hash of 0, still accepted).
          const own = primaryEntityId(file);
          if (wanted === null || (wanted !== own && !(file.blob_id === null && wanted === 0)))
            throw new AppError('ENTITY_NOT_EXIST', 'Entity not exist');
        }
        const speed = actor.group.speed_limit;
        const cacheKey = `${blobId}|${speed}|${file.name}|${request.download ? 1 : 0}|${base}`;
        const cached = request.no_cache ? undefined : this.cache.get(cacheKey);
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
          request.download ? { download: 'true' } : {},
        );
        if (!request.no_cache) this.rememberUrl(cacheKey, url, expires);
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

  private rememberUrl(key: string, url: string, expires: number): void {
    if (this.cache.size > 50_000) this.cache.clear();
    this.cache.set(key, { url, expires });
  }

  private async createArchiveUrl(actor: Actor, request: UrlRequest, base: string, now: number, ttl: number) {
    const ids: number[] = [];
    const failures = new Map<string, AppError>();
    for (const uri of request.uris) {
      try {
        ids.push((await this.files.locate(actor, uri)).file.id);
      } catch (e) {
        failures.set(
          String(uri),
          e instanceof AppError ? e : new AppError('INTERNAL', undefined, { cause: e }),
        );
      }
    }
    if (failures.size && (!request.skip_error || ids.length === 0)) throw new BatchError(failures);
    const id = randomUUID();
    const expires = Math.floor(now / 1000) + ttl;
    await this.ctx.db
      .insertInto('archive_sessions')
      .values({ id, owner_id: actor.user.id, file_ids: JSON.stringify(ids), expires_at: expires * 1000 })
      .execute();
    await this.ctx.db.deleteFrom('archive_sessions').where('expires_at', '<', now).execute();
    const path = `/api/v4/file/archive/${id}/archive.zip`;
    return {
      urls: [{ url: this.signedUrl(base, path, path, expires, {}) }],
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
    const ids = JSON.parse(row.file_ids) as number[];
    const files: FileRow[] = [];
    for (const fileId of ids) {
      // Files deleted since the link was made are left out rather than failing the whole zip.
      const file = await this.files.getById(row.owner_id, fileId);
      if (file) files.push(file);
    }
    return { ownerId: row.owner_id, files };
  }
}
