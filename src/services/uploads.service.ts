// Resumable uploads as Cloudreve does them: a session fixes name, size and chunk size; chunks
// are written at their offsets in a staging file; the last chunk commits the file.
import { randomUUID } from 'node:crypto';
import { mkdir, open, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { AppError } from '../domain/errors.ts';
import { parseFileUri } from '../domain/file-uri.ts';
import type { ServiceContext } from './context.ts';
import { FOLDER, validateName, type FilesService, type FileRow } from './files.service.ts';
import type { Actor } from './users.service.ts';

const SESSION_TTL_MS = 24 * 3600_000;

export class UploadsService {
  private readonly ctx: ServiceContext;
  private readonly files: FilesService;
  private readonly stagingDir: string;

  constructor(ctx: ServiceContext, files: FilesService) {
    this.ctx = ctx;
    this.files = files;
    this.stagingDir = join(ctx.config.dataDir, 'staging', 'uploads');
  }

  private stagingPath(id: string): string {
    return join(this.stagingDir, `${id}.part`);
  }

  async createSession(actor: Actor, input: { uri: unknown; size?: unknown; last_modified?: unknown }) {
    const parsed = parseFileUri(input.uri);
    const owner = this.files.ownerFor(actor, parsed.fsId);
    if (parsed.segments.length === 0) throw new AppError('ROOT_PROTECTED');
    const size = input.size === undefined ? 0 : Number(input.size);
    if (!Number.isSafeInteger(size) || size < 0) throw new AppError('PARAM_INVALID', 'Invalid size');
    const name = validateName(parsed.segments.at(-1));
    const { total, used } = await this.files.remaining(owner);
    if (used + size > total) throw new AppError('INSUFFICIENT_CAPACITY');
    if (this.ctx.config.maxFileSize > 0 && size > this.ctx.config.maxFileSize)
      throw new AppError('FILE_TOO_LARGE');
    const parent = await this.files.mkdirp(owner, parsed.segments.slice(0, -1));
    if (await this.files.child(parent.id, name)) throw new AppError('OBJECT_EXISTS');
    const id = randomUUID();
    const now = this.ctx.clock.now();
    // Like a Cloudreve storage policy: one chunk size for every session, whatever the file size.
    const chunkSize = this.ctx.config.uploadChunkSize;
    const lastModified =
      typeof input.last_modified === 'number' && Number.isSafeInteger(input.last_modified)
        ? input.last_modified
        : null;
    await mkdir(this.stagingDir, { recursive: true });
    const fh = await open(this.stagingPath(id), 'w');
    await fh.close();
    await this.ctx.db
      .insertInto('upload_sessions')
      .values({
        id,
        owner_id: owner,
        parent_id: parent.id,
        name,
        size,
        chunk_size: chunkSize,
        next_index: 0,
        last_modified: lastModified,
        expires_at: now + SESSION_TTL_MS,
        created_at: now,
      })
      .execute();
    return { id, chunkSize, expires: Math.floor((now + SESSION_TTL_MS) / 1000), uri: input.uri as string };
  }

  private async session(actor: Actor, id: string) {
    const row = await this.ctx.db
      .selectFrom('upload_sessions')
      .selectAll()
      .where('id', '=', id)
      .executeTakeFirst();
    if (
      !row ||
      row.expires_at < this.ctx.clock.now() ||
      (row.owner_id !== actor.user.id && !actor.group.is_admin)
    ) {
      throw new AppError('UPLOAD_SESSION_EXPIRED');
    }
    return row;
  }

  /**
   * Writes chunk `index`. Chunks go in order, but a chunk already written may be sent again
   * (a client resuming after a dropped connection). Returns the file once the last chunk lands.
   */
  async writeChunk(
    actor: Actor,
    id: string,
    index: number,
    contentLength: number,
    body: Readable,
  ): Promise<FileRow | null> {
    const session = await this.session(actor, id);
    const chunkSize = session.chunk_size || session.size;
    const chunks = session.chunk_size ? Math.max(1, Math.ceil(session.size / session.chunk_size)) : 1;
    if (!Number.isSafeInteger(index) || index < 0 || index >= chunks || index > session.next_index)
      throw new AppError('INVALID_CHUNK_INDEX');
    const offset = index * chunkSize;
    const expected = index === chunks - 1 ? session.size - offset : chunkSize;
    if (contentLength !== expected)
      throw new AppError('INVALID_CONTENT_LENGTH', `Invalid Content-Length (expected: ${expected})`);
    const fh = await open(this.stagingPath(id), 'r+').catch(() => {
      throw new AppError('UPLOAD_SESSION_EXPIRED');
    });
    let written = 0;
    try {
      for await (const chunk of body) {
        const buf = chunk as Buffer;
        if (written + buf.length > expected)
          throw new AppError('INVALID_CONTENT_LENGTH', `Invalid Content-Length (expected: ${expected})`);
        await fh.write(buf, 0, buf.length, offset + written);
        written += buf.length;
      }
      if (written !== expected)
        throw new AppError('INVALID_CONTENT_LENGTH', `Invalid Content-Length (expected: ${expected})`);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await this.ctx.db
      .updateTable('upload_sessions')
      .set({ next_index: Math.max(session.next_index, index + 1) })
      .where('id', '=', id)
      .execute();
    if (Math.max(session.next_index, index + 1) < chunks) return null;
    return this.finish(session);
  }

  private async finish(session: {
    id: string;
    owner_id: number;
    parent_id: number;
    name: string;
    size: number;
  }): Promise<FileRow> {
    const path = this.stagingPath(session.id);
    // Gone: a concurrent request with the same last chunk already finished (or canceled) it.
    const actual = await stat(path).then(
      (s) => s.size,
      () => {
        throw new AppError('UPLOAD_SESSION_EXPIRED');
      },
    );
    if (actual !== session.size) throw new AppError('INVALID_CONTENT_LENGTH');
    const parent = await this.ctx.db
      .selectFrom('files')
      .selectAll()
      .where('id', '=', session.parent_id)
      .executeTakeFirst();
    if (!parent || parent.type !== FOLDER) throw new AppError('PATH_NOT_EXIST');
    const key = `blobs/${randomUUID()}`;
    await this.ctx.storage.importFile(key, path).catch((e: unknown) => {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new AppError('UPLOAD_SESSION_EXPIRED');
      throw e;
    });
    try {
      const file = await this.files.commitBlob(
        session.owner_id,
        session.parent_id,
        session.name,
        { storageKey: key, size: session.size },
        'error',
      );
      await this.ctx.db.deleteFrom('upload_sessions').where('id', '=', session.id).execute();
      return file;
    } catch (e) {
      await this.ctx.storage.delete(key);
      await this.ctx.db.deleteFrom('upload_sessions').where('id', '=', session.id).execute();
      throw e;
    }
  }

  async cancel(actor: Actor, id: string): Promise<void> {
    await this.session(actor, id);
    await this.ctx.db.deleteFrom('upload_sessions').where('id', '=', id).execute();
    await rm(this.stagingPath(id), { force: true });
  }

  /** Drops expired sessions and their staging files. */
  async sweep(): Promise<void> {
    const expired = await this.ctx.db
      .selectFrom('upload_sessions')
      .select('id')
      .where('expires_at', '<', this.ctx.clock.now())
      .execute();
    for (const { id } of expired) {
      await this.ctx.db.deleteFrom('upload_sessions').where('id', '=', id).execute();
      await rm(this.stagingPath(id), { force: true });
    }
  }
}
