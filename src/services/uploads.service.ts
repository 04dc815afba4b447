// Resumable uploads as Cloudreve does them: a session fixes name, size and chunk size; chunks
// are written at their offsets in a staging file; the last chunk commits the file.
//
// Limits (issue 18): a session reserves its declared size against the owner's quota until it
// finishes or expires; one user holds at most `--max-upload-sessions` open sessions; a session
// without a chunk for `--upload-session-idle` seconds expires (24 h at most in any case) and the
// sweep removes its bytes. On a full disk the staging file goes before the row, so cancels and
// sweeps free space even when the database (SQLite in the data dir) cannot write until they do.
import { randomUUID } from 'node:crypto';
import { mkdir, open, readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { AppError } from '../domain/errors.ts';
import { parseFileUri } from '../domain/file-uri.ts';
import type { ServiceContext } from './context.ts';
import { isDiskFull } from './disk-space.ts';
import { FOLDER, validateName, type FilesService, type FileRow } from './files.service.ts';
import type { Actor } from './users.service.ts';
import type { Kysely, Transaction } from 'kysely';
import type { DB } from '../db/schema.ts';

type Db = Kysely<DB> | Transaction<DB>;

const SESSION_TTL_MS = 24 * 3600_000;
const PART = /^([0-9a-f-]{36})\.part$/;

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

  /** When a session used at `now` expires: idle timeout, within the 24 h absolute bound. */
  private expiry(createdAt: number, now: number): number {
    return Math.min(now + this.ctx.config.uploadSessionIdle * 1000, createdAt + SESSION_TTL_MS);
  }

  /** Refuses a new session over the per-user cap or over the quota (stored + reserved). */
  private async admit(owner: number, size: number, db: Db): Promise<void> {
    const { total, used, reserved, sessions } = await this.files.remaining(owner, { db });
    const cap = this.ctx.config.maxUploadSessions;
    if (cap > 0 && sessions >= cap) throw new AppError('TOO_MANY_UPLOAD_SESSIONS');
    if (used + reserved + size > total) throw new AppError('INSUFFICIENT_CAPACITY');
  }

  async createSession(actor: Actor, input: { uri: unknown; size?: unknown; last_modified?: unknown }) {
    const parsed = parseFileUri(input.uri);
    const owner = this.files.ownerFor(actor, parsed.fsId);
    if (parsed.segments.length === 0) throw new AppError('ROOT_PROTECTED');
    const size = input.size === undefined ? 0 : Number(input.size);
    if (!Number.isSafeInteger(size) || size < 0) throw new AppError('PARAM_INVALID', 'Invalid size');
    const name = validateName(parsed.segments.at(-1));
    await this.admit(owner, size, this.ctx.db); // early answer, before any folder is made
    if (this.ctx.config.maxFileSize > 0 && size > this.ctx.config.maxFileSize)
      throw new AppError('FILE_TOO_LARGE');
    await this.files.disk.require();
    const parent = await this.files.mkdirp(owner, parsed.segments.slice(0, -1));
    if (await this.files.child(parent.id, name)) throw new AppError('OBJECT_EXISTS');
    const id = randomUUID();
    const now = this.ctx.clock.now();
    const expiresAt = this.expiry(now, now);
    // Like a Cloudreve storage policy: one chunk size for every session, whatever the file size.
    const chunkSize = this.ctx.config.uploadChunkSize;
    const lastModified =
      typeof input.last_modified === 'number' && Number.isSafeInteger(input.last_modified)
        ? input.last_modified
        : null;
    // Checked again and inserted in one transaction, the owner's row locked (PostgreSQL; SQLite
    // runs one transaction at a time): concurrent requests cannot all pass the same check.
    await this.ctx.db.transaction().execute(async (tx) => {
      if (this.ctx.dialect === 'postgres')
        await tx.selectFrom('users').select('id').where('id', '=', owner).forUpdate().execute();
      await this.admit(owner, size, tx);
      await tx
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
          expires_at: expiresAt,
          created_at: now,
        })
        .execute();
    });
    // The row comes first, so the sweep never takes a new staging file for an orphan.
    try {
      await mkdir(this.stagingDir, { recursive: true });
      const fh = await open(this.stagingPath(id), 'w');
      await fh.close();
    } catch (e) {
      await this.ctx.db.deleteFrom('upload_sessions').where('id', '=', id).execute();
      if (isDiskFull(e)) throw new AppError('LOW_DISK_SPACE', undefined, { cause: e });
      throw e;
    }
    return { id, chunkSize, expires: Math.floor(expiresAt / 1000), uri: input.uri as string };
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
    } catch (e) {
      // A new chunk that did not land whole leaves nothing behind: on a full disk its partial
      // bytes would otherwise stay, and the client resends the chunk anyway.
      if (index >= session.next_index) await fh.truncate(offset).catch(() => undefined);
      if (isDiskFull(e))
        throw new AppError('LOW_DISK_SPACE', 'No space left on the server; the chunk was not stored', {
          cause: e,
        });
      throw e;
    } finally {
      await fh.close();
    }
    await this.ctx.db
      .updateTable('upload_sessions')
      .set({
        next_index: Math.max(session.next_index, index + 1),
        expires_at: this.expiry(session.created_at, this.ctx.clock.now()),
      })
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
    // File first: on a full disk, removing it is what lets the row's delete write.
    await rm(this.stagingPath(id), { force: true });
    await this.ctx.db.deleteFrom('upload_sessions').where('id', '=', id).execute();
  }

  /** Drops expired sessions and their staging files, and staging files no session owns. */
  async sweep(): Promise<void> {
    const names = await readdir(this.stagingDir).catch(() => [] as string[]);
    const expired = await this.ctx.db
      .selectFrom('upload_sessions')
      .select('id')
      .where('expires_at', '<', this.ctx.clock.now())
      .execute();
    for (const { id } of expired) {
      await rm(this.stagingPath(id), { force: true });
      await this.ctx.db.deleteFrom('upload_sessions').where('id', '=', id).execute();
    }
    // Listed before the rows are read, and a row is inserted before its file: a file without a
    // row here was left behind (a failed delete, a crash), not just created.
    const ids = names.flatMap((n) => PART.exec(n)?.[1] ?? []);
    for (let i = 0; i < ids.length; i += 500) {
      const batch = ids.slice(i, i + 500);
      const live = new Set(
        (await this.ctx.db.selectFrom('upload_sessions').select('id').where('id', 'in', batch).execute()).map(
          (r) => r.id,
        ),
      );
      for (const id of batch) if (!live.has(id)) await rm(this.stagingPath(id), { force: true });
    }
  }
}
