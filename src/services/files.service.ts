// The user's file tree: folders and files addressed by path, blobs shared copy-on-write,
// quota accounting, and the commit step that makes a finished upload or download visible.
import { sql, type Kysely, type Selectable, type Transaction } from 'kysely';
import { isUniqueViolation } from '../db/errors.ts';
import { AppError, BatchError } from '../domain/errors.ts';
import { parseFileUri } from '../domain/file-uri.ts';
import type { DB, FilesTable } from '../db/schema.ts';
import type { ServiceContext } from './context.ts';
import { DiskSpace, isDiskFull } from './disk-space.ts';
import { reservedBytes } from './quota.ts';
import type { Actor } from './users.service.ts';

export type FileRow = Selectable<FilesTable>;
export const FILE = 0;
export const FOLDER = 1;

export interface Located {
  file: FileRow;
  /** path segments from the owner's root */
  segments: string[];
  /** search parameters of the URI (only when the caller allowed them) */
  search?: URLSearchParams | null;
}

export interface ListOptions {
  page?: number;
  pageSize?: number;
  orderBy?: 'name' | 'size' | 'updated_at' | 'created_at';
  orderDirection?: 'asc' | 'desc';
  nextPageToken?: string;
}

const MAX_NAME_BYTES = 255;

/** Names users choose: refused (not repaired) when unsafe. */
export function validateName(name: unknown): string {
  if (typeof name !== 'string') throw new AppError('ILLEGAL_NAME');
  if (
    name.length === 0 ||
    name === '.' ||
    name === '..' ||
    Buffer.byteLength(name) > MAX_NAME_BYTES ||
    /[/\\\u0000-\u001f\u007f]/.test(name) ||
    name.trim().length === 0
  ) {
    throw new AppError('ILLEGAL_NAME');
  }
  return name;
}

/** "a.txt" → "a (1).txt", "a (2).txt"... */
export function numberedName(name: string, n: number): string {
  const dot = name.lastIndexOf('.');
  return dot > 0 ? `${name.slice(0, dot)} (${n})${name.slice(dot)}` : `${name} (${n})`;
}

type Db = Kysely<DB> | Transaction<DB>;

/** Where a keyset page ended: order, direction, and the last row's type, sort value and id. */
interface PageCursor {
  b: NonNullable<ListOptions['orderBy']>;
  d: NonNullable<ListOptions['orderDirection']>;
  t: number;
  v: string | number;
  i: number;
}

function encodePageToken(cursor: PageCursor): string {
  return Buffer.from(JSON.stringify(cursor)).toString('base64');
}

function decodePageToken(token: string): PageCursor | { o: number } {
  try {
    const d = JSON.parse(Buffer.from(token, 'base64').toString('utf8')) as Record<string, unknown>;
    if ('o' in d) {
      if (typeof d.o === 'number' && Number.isSafeInteger(d.o) && d.o >= 0) return { o: d.o };
    } else if (
      (d.b === 'name' ? typeof d.v === 'string' : Number.isSafeInteger(d.v)) &&
      ['name', 'size', 'updated_at', 'created_at'].includes(d.b as string) &&
      (d.d === 'asc' || d.d === 'desc') &&
      (d.t === FILE || d.t === FOLDER) &&
      Number.isSafeInteger(d.i)
    ) {
      return d as unknown as PageCursor;
    }
  } catch {
    // fall through
  }
  throw new AppError('PARAM_INVALID', 'Invalid next_page_token');
}

export class FilesService {
  private readonly ctx: ServiceContext;
  /** Told the ids of blobs this process deleted (the link cache drops their URLs). */
  private readonly blobsDeletedListeners: Array<(ids: readonly number[]) => void> = [];
  /** Free space on the data dir; new uploads and tasks require it above the floor. */
  readonly disk: DiskSpace;

  constructor(ctx: ServiceContext) {
    this.ctx = ctx;
    this.disk = new DiskSpace(ctx.config.dataDir, ctx.config.minFreeSpace);
  }

  onBlobsDeleted(listener: (ids: readonly number[]) => void): void {
    this.blobsDeletedListeners.push(listener);
  }

  async root(ownerId: number, db: Db = this.ctx.db): Promise<FileRow> {
    const row = await db
      .selectFrom('files')
      .selectAll()
      .where('owner_id', '=', ownerId)
      .where('parent_id', 'is', null)
      .executeTakeFirst();
    if (!row) throw new AppError('PATH_NOT_EXIST');
    return row;
  }

  async child(parentId: number, name: string, db: Db = this.ctx.db): Promise<FileRow | undefined> {
    return db
      .selectFrom('files')
      .selectAll()
      .where('parent_id', '=', parentId)
      .where('name', '=', name)
      .executeTakeFirst();
  }

  async resolve(ownerId: number, segments: readonly string[], db: Db = this.ctx.db): Promise<FileRow> {
    let current = await this.root(ownerId, db);
    for (const name of segments) {
      if (current.type !== FOLDER) throw new AppError('PATH_NOT_EXIST');
      const next = await this.child(current.id, name, db);
      if (!next) throw new AppError('PATH_NOT_EXIST');
      current = next;
    }
    return current;
  }

  /** The owner whose tree a URI addresses: the caller, or (admins only) another user. */
  ownerFor(actor: Actor, fsId: string | null): number {
    if (fsId === null) return actor.user.id;
    const id = this.ctx.ids.decode('user', fsId);
    if (id === actor.user.id) return id;
    if (id !== null && actor.group.is_admin) return id;
    throw new AppError('FORBIDDEN', 'You cannot access this filesystem');
  }

  async locate(actor: Actor, uri: unknown, allowSearch = false): Promise<Located> {
    const parsed = parseFileUri(uri, allowSearch);
    const owner = this.ownerFor(actor, parsed.fsId);
    return {
      file: await this.resolve(owner, parsed.segments),
      segments: parsed.segments,
      search: parsed.search,
    };
  }

  async locateFolder(actor: Actor, uri: unknown): Promise<Located> {
    const located = await this.locate(actor, uri);
    if (located.file.type !== FOLDER) throw new AppError('PATH_NOT_EXIST', 'Not a folder');
    return located;
  }

  /** Segments of a file's path, walking up its parents. */
  async pathOf(file: FileRow): Promise<string[]> {
    const segments: string[] = [];
    let current: FileRow | undefined = file;
    while (current && current.parent_id !== null) {
      segments.unshift(current.name);
      current = await this.ctx.db
        .selectFrom('files')
        .selectAll()
        .where('id', '=', current.parent_id)
        .executeTakeFirst();
    }
    return segments;
  }

  async getById(ownerId: number, id: number): Promise<FileRow | undefined> {
    return this.ctx.db
      .selectFrom('files')
      .selectAll()
      .where('id', '=', id)
      .where('owner_id', '=', ownerId)
      .executeTakeFirst();
  }

  /**
   * One page of a folder, folders first, then files, each in `orderBy` order with the id as
   * tie-breaker. With `page` (offset mode) it counts the folder for `total`; without it
   * (cursor mode, what Cloudreve clients use) it pages by keyset: the token holds the last
   * row's (type, sort value, id), so a deep page costs what the first one does (an index range
   * scan per type, see migration 0003) and nothing is counted (`total` is -1).
   */
  async list(
    folder: FileRow,
    options: ListOptions,
  ): Promise<{
    files: FileRow[];
    nextOffset: number | null;
    /** Opaque token for the next page, or undefined on the last page. */
    nextToken: string | undefined;
    total: number;
    offset: number;
    pageSize: number;
  }> {
    const pageSize = Math.min(Math.max(options.pageSize || 100, 1), 2000);
    const orderBy = options.orderBy ?? 'name';
    const direction = options.orderDirection ?? 'asc';
    // Names sort by code point on both dialects (PostgreSQL would otherwise follow the
    // database's locale, and the same folder would list differently on SQLite).
    const orderColumn =
      orderBy === 'name' && this.ctx.dialect === 'postgres' ? sql<string>`name collate "C"` : orderBy;
    let offset = (options.page ?? 0) * pageSize;
    let cursor: PageCursor | undefined;
    if (options.nextPageToken) {
      const decoded = decodePageToken(options.nextPageToken);
      if ('o' in decoded) offset = decoded.o;
      else if (decoded.b !== orderBy || decoded.d !== direction)
        throw new AppError('PARAM_INVALID', 'Invalid next_page_token');
      else cursor = decoded;
    }

    if (options.page === undefined && offset === 0) {
      // Keyset: folders (type 1), then files (type 0), each an ordered range of one index.
      const want = pageSize + 1;
      const rows: FileRow[] = [];
      const types = cursor === undefined || cursor.t === FOLDER ? [FOLDER, FILE] : [FILE];
      for (const type of types) {
        let query = this.ctx.db
          .selectFrom('files')
          .selectAll()
          .where('parent_id', '=', folder.id)
          .where('type', '=', type);
        if (cursor !== undefined && cursor.t === type) {
          const after = direction === 'asc' ? sql.raw('>') : sql.raw('<');
          const column = typeof orderColumn === 'string' ? sql.ref(orderColumn) : orderColumn;
          query = query.where(sql<boolean>`(${column}, id) ${after} (${cursor.v}, ${cursor.i})`);
        }
        rows.push(
          ...(await query
            .orderBy(orderColumn, direction)
            .orderBy('id', direction)
            .limit(want - rows.length)
            .execute()),
        );
        if (rows.length >= want) break;
      }
      const files = rows.slice(0, pageSize);
      const last = files.at(-1);
      const more = rows.length > pageSize && last !== undefined;
      return {
        files,
        nextOffset: null,
        nextToken: more
          ? encodePageToken({ b: orderBy, d: direction, t: last.type, v: last[orderBy], i: last.id })
          : undefined,
        total: -1,
        offset: 0,
        pageSize,
      };
    }

    const rows = await this.ctx.db
      .selectFrom('files')
      .selectAll()
      .where('parent_id', '=', folder.id)
      .orderBy('type', 'desc')
      .orderBy(orderColumn, direction)
      .orderBy('id', direction)
      .limit(pageSize + 1)
      .offset(offset)
      .execute();
    const more = rows.length > pageSize;
    let total = -1;
    if (options.page !== undefined) {
      const counted = await this.ctx.db
        .selectFrom('files')
        .select((eb) => eb.fn.countAll<number>().as('n'))
        .where('parent_id', '=', folder.id)
        .executeTakeFirstOrThrow();
      total = Number(counted.n);
    }
    return {
      files: rows.slice(0, pageSize),
      nextOffset: more ? offset + pageSize : null,
      nextToken: more ? FilesService.pageToken(offset + pageSize) : undefined,
      total,
      offset,
      pageSize,
    };
  }

  /** An offset-mode page token (also still accepted in cursor mode). */
  static pageToken(offset: number): string {
    return Buffer.from(JSON.stringify({ o: offset })).toString('base64');
  }

  /** Walks to `segments`, creating missing folders. Fails when a file is in the way. */
  async mkdirp(ownerId: number, segments: readonly string[]): Promise<FileRow> {
    let current = await this.root(ownerId);
    for (const raw of segments) {
      const name = validateName(raw);
      let next = await this.child(current.id, name);
      if (!next) {
        const now = this.ctx.clock.now();
        try {
          next = await this.ctx.db
            .insertInto('files')
            .values({
              owner_id: ownerId,
              parent_id: current.id,
              name,
              type: FOLDER,
              size: 0,
              blob_id: null,
              created_at: now,
              updated_at: now,
            })
            .returningAll()
            .executeTakeFirstOrThrow();
        } catch (e) {
          // Lost a race with a concurrent create of the same folder: use theirs.
          if (!isUniqueViolation(e)) throw e;
          next = await this.child(current.id, name);
          if (!next) throw e;
        }
      }
      if (next.type !== FOLDER) throw new AppError('OBJECT_EXISTS', `"${name}" is a file`);
      current = next;
    }
    return current;
  }

  /** POST /file/create: same name and type returns the existing object unless errOnConflict. */
  async create(
    actor: Actor,
    uri: unknown,
    type: 'file' | 'folder',
    errOnConflict: boolean,
  ): Promise<Located> {
    const parsed = parseFileUri(uri);
    const owner = this.ownerFor(actor, parsed.fsId);
    if (parsed.segments.length === 0) throw new AppError('ROOT_PROTECTED');
    const name = validateName(parsed.segments.at(-1));
    const parent = await this.mkdirp(owner, parsed.segments.slice(0, -1));
    const existing = await this.child(parent.id, name);
    const wanted = type === 'folder' ? FOLDER : FILE;
    if (existing) {
      if (existing.type !== wanted || errOnConflict) throw new AppError('OBJECT_EXISTS');
      return { file: existing, segments: parsed.segments };
    }
    const now = this.ctx.clock.now();
    try {
      const file = await this.ctx.db
        .insertInto('files')
        .values({
          owner_id: owner,
          parent_id: parent.id,
          name,
          type: wanted,
          size: 0,
          blob_id: null,
          created_at: now,
          updated_at: now,
        })
        .returningAll()
        .executeTakeFirstOrThrow();
      return { file, segments: parsed.segments };
    } catch (e) {
      // Only a real name clash (lost a race) is the user's conflict; any other failure is ours.
      if (isUniqueViolation(e)) throw new AppError('OBJECT_EXISTS');
      throw e;
    }
  }

  async rename(actor: Actor, uri: unknown, newName: unknown): Promise<Located> {
    const located = await this.locate(actor, uri);
    if (located.file.parent_id === null) throw new AppError('ROOT_PROTECTED');
    const name = validateName(newName);
    if (name === located.file.name) return located;
    const clash = await this.child(located.file.parent_id, name);
    if (clash) throw new AppError('OBJECT_EXISTS');
    try {
      const file = await this.ctx.db
        .updateTable('files')
        .set({ name, updated_at: this.ctx.clock.now() })
        .where('id', '=', located.file.id)
        .returningAll()
        .executeTakeFirstOrThrow();
      return { file, segments: [...located.segments.slice(0, -1), name] };
    } catch (e) {
      // Only a real name clash (lost a race) is the user's conflict; any other failure is ours.
      if (isUniqueViolation(e)) throw new AppError('OBJECT_EXISTS');
      throw e;
    }
  }

  /** Reserves quota for `bytes`; false when it would go over the group's quota. */
  async reserve(ownerId: number, bytes: number, db: Db = this.ctx.db): Promise<boolean> {
    if (bytes <= 0) return true;
    const result = await db
      .updateTable('users')
      .set((eb) => ({ storage_used: eb('storage_used', '+', bytes) }))
      .where('id', '=', ownerId)
      .where((eb) =>
        eb(
          eb('storage_used', '+', bytes),
          '<=',
          eb.selectFrom('groups').select('groups.quota_bytes').whereRef('groups.id', '=', 'users.group_id'),
        ),
      )
      .executeTakeFirst();
    return Number(result.numUpdatedRows) === 1;
  }

  async release(ownerId: number, bytes: number, db: Db = this.ctx.db): Promise<void> {
    if (bytes <= 0) return;
    await db
      .updateTable('users')
      .set((eb) => ({ storage_used: eb('storage_used', '-', bytes) }))
      .where('id', '=', ownerId)
      .execute();
  }

  /**
   * The quota, the stored bytes, and the bytes reserved by open upload sessions and running
   * downloads (`exceptTask`: leave out the task that asks, it is about to size itself).
   */
  async remaining(
    ownerId: number,
    options: { exceptTask?: number; db?: Db } = {},
  ): Promise<{ total: number; used: number; reserved: number; sessions: number }> {
    const db = options.db ?? this.ctx.db;
    const row = await db
      .selectFrom('users')
      .innerJoin('groups', 'groups.id', 'users.group_id')
      .select(['users.storage_used', 'groups.quota_bytes'])
      .where('users.id', '=', ownerId)
      .executeTakeFirstOrThrow();
    const held = await reservedBytes(db, ownerId, this.ctx.clock.now(), options.exceptTask);
    return {
      total: row.quota_bytes,
      used: row.storage_used,
      reserved: held.uploads + held.tasks,
      sessions: held.sessions,
    };
  }

  /**
   * Makes stored bytes visible as a file in `folderId`. Quota is charged in the same
   * transaction. onConflict 'rename' picks "name (n).ext"; 'error' throws OBJECT_EXISTS.
   */
  async commitBlob(
    ownerId: number,
    folderId: number,
    name: string,
    blob: { storageKey: string; size: number },
    onConflict: 'rename' | 'error',
    /** Runs first in the same transaction; false aborts the commit (e.g. the task was canceled). */
    guard?: (tx: Transaction<DB>) => Promise<boolean>,
    /** Runs last in the same transaction, with the new file (e.g. to record where it landed). */
    afterInsert?: (tx: Transaction<DB>, file: FileRow) => Promise<void>,
  ): Promise<FileRow> {
    const now = this.ctx.clock.now();
    return this.ctx.db.transaction().execute(async (tx) => {
      if (guard && !(await guard(tx))) throw new AppError('CONFLICT', 'The task is no longer running');
      const folder = await tx
        .selectFrom('files')
        .select(['id', 'type'])
        .where('id', '=', folderId)
        .where('owner_id', '=', ownerId)
        .executeTakeFirst();
      if (!folder || folder.type !== FOLDER)
        throw new AppError('PATH_NOT_EXIST', 'The destination folder no longer exists');
      if (!(await this.reserve(ownerId, blob.size, tx))) throw new AppError('INSUFFICIENT_CAPACITY');
      const blobRow = await tx
        .insertInto('blobs')
        .values({ storage_key: blob.storageKey, size: blob.size, ref_count: 1, created_at: now })
        .returning('id')
        .executeTakeFirstOrThrow();
      let candidate = name;
      for (let n = 1; ; n++) {
        const clash = await this.child(folderId, candidate, tx);
        if (!clash) break;
        if (onConflict === 'error') throw new AppError('OBJECT_EXISTS');
        if (n > 10_000) throw new AppError('OBJECT_EXISTS');
        candidate = numberedName(name, n);
      }
      const file = await tx
        .insertInto('files')
        .values({
          owner_id: ownerId,
          parent_id: folderId,
          name: candidate,
          type: FILE,
          size: blob.size,
          blob_id: blobRow.id,
          created_at: now,
          updated_at: now,
        })
        .returningAll()
        .executeTakeFirstOrThrow();
      if (afterInsert) await afterInsert(tx, file);
      return file;
    });
  }

  /** Every file under `folder` with its path relative to it (folders included, for empty ones). */
  async walk(folder: FileRow, limit = 100_000): Promise<Array<{ file: FileRow; path: string[] }>> {
    const out: Array<{ file: FileRow; path: string[] }> = [];
    const queue: Array<{ id: number; path: string[] }> = [{ id: folder.id, path: [] }];
    while (queue.length) {
      const { id, path } = queue.shift()!;
      const children = await this.ctx.db
        .selectFrom('files')
        .selectAll()
        .where('parent_id', '=', id)
        .orderBy('name')
        .execute();
      for (const child of children) {
        const childPath = [...path, child.name];
        out.push({ file: child, path: childPath });
        if (out.length > limit) throw new AppError('PARAM_INVALID', 'Too many files');
        if (child.type === FOLDER) queue.push({ id: child.id, path: childPath });
      }
    }
    return out;
  }

  async move(actor: Actor, uris: unknown[], dst: unknown, copy: boolean): Promise<void> {
    const target = await this.locateFolder(actor, dst);
    const failures = new Map<string, AppError>();
    for (const uri of uris) {
      try {
        const source = await this.locate(actor, uri);
        if (source.file.parent_id === null) throw new AppError('ROOT_PROTECTED');
        if (source.file.owner_id !== target.file.owner_id) throw new AppError('FORBIDDEN');
        if (copy) await this.copyInto(source.file, target.file);
        else await this.moveInto(source.file, target.file);
      } catch (e) {
        failures.set(
          String(uri),
          e instanceof AppError ? e : new AppError('INTERNAL', undefined, { cause: e }),
        );
      }
    }
    if (failures.size) throw new BatchError(failures);
  }

  /** Refuses `folder` being `file` itself or inside it. */
  private async refuseIntoItself(file: FileRow, folder: FileRow, verb: 'move' | 'copy'): Promise<void> {
    let cursor: FileRow | undefined = folder;
    while (cursor) {
      if (cursor.id === file.id) throw new AppError('PARAM_INVALID', `Cannot ${verb} a folder into itself`);
      cursor =
        cursor.parent_id === null
          ? undefined
          : await this.ctx.db
              .selectFrom('files')
              .selectAll()
              .where('id', '=', cursor.parent_id)
              .executeTakeFirst();
    }
  }

  private async moveInto(file: FileRow, folder: FileRow): Promise<void> {
    if (file.parent_id === folder.id) return;
    await this.refuseIntoItself(file, folder, 'move');
    if (await this.child(folder.id, file.name)) throw new AppError('OBJECT_EXISTS');
    try {
      await this.ctx.db
        .updateTable('files')
        .set({ parent_id: folder.id, updated_at: this.ctx.clock.now() })
        .where('id', '=', file.id)
        .execute();
    } catch (e) {
      // Only a real name clash (lost a race) is the user's conflict; any other failure is ours.
      if (isUniqueViolation(e)) throw new AppError('OBJECT_EXISTS');
      throw e;
    }
  }

  private async copyInto(file: FileRow, folder: FileRow): Promise<void> {
    // Copying a folder into itself would nest a copy of it in it, one more level per call.
    if (file.type === FOLDER) await this.refuseIntoItself(file, folder, 'copy');
    const items = file.type === FOLDER ? await this.walk(file) : [];
    const bytes = file.size + items.reduce((sum, i) => sum + i.file.size, 0);
    const now = this.ctx.clock.now();
    await this.ctx.db.transaction().execute(async (tx) => {
      if (await this.child(folder.id, file.name, tx)) throw new AppError('OBJECT_EXISTS');
      if (!(await this.reserve(file.owner_id, bytes, tx))) throw new AppError('INSUFFICIENT_CAPACITY');
      const cloneOne = async (source: FileRow, parentId: number): Promise<number> => {
        if (source.blob_id !== null) {
          await tx
            .updateTable('blobs')
            .set((eb) => ({ ref_count: eb('ref_count', '+', 1) }))
            .where('id', '=', source.blob_id)
            .execute();
        }
        const row = await tx
          .insertInto('files')
          .values({
            owner_id: source.owner_id,
            parent_id: parentId,
            name: source.name,
            type: source.type,
            size: source.size,
            blob_id: source.blob_id,
            created_at: now,
            updated_at: now,
          })
          .returning('id')
          .executeTakeFirstOrThrow();
        return row.id;
      };
      const newRoot = await cloneOne(file, folder.id);
      const idMap = new Map<number, number>([[file.id, newRoot]]);
      for (const item of items) {
        const parentId = idMap.get(item.file.parent_id!)!;
        idMap.set(item.file.id, await cloneOne(item.file, parentId));
      }
    });
  }

  /** Permanent delete of files and folders (recursively); bytes go when no file uses them. */
  async delete(actor: Actor, uris: unknown[]): Promise<void> {
    const failures = new Map<string, AppError>();
    for (const uri of uris) {
      try {
        const located = await this.locate(actor, uri);
        if (located.file.parent_id === null) throw new AppError('ROOT_PROTECTED');
        await this.deleteTree(located.file);
      } catch (e) {
        failures.set(
          String(uri),
          e instanceof AppError ? e : new AppError('INTERNAL', undefined, { cause: e }),
        );
      }
    }
    if (failures.size) throw new BatchError(failures);
  }

  async deleteTree(file: FileRow): Promise<void> {
    const items = file.type === FOLDER ? await this.walk(file) : [];
    const all = [file, ...items.map((i) => i.file)];
    let deleted: { keys: string[]; blobIds: number[] };
    try {
      deleted = await this.deleteRows(file, all);
    } catch (e) {
      // SQLite rolls back a transaction that hit SQLITE_FULL itself, and Kysely's own rollback
      // then fails with "no transaction is active", hiding the cause: ask the disk too.
      if (!isDiskFull(e) && !(await this.disk.nearlyFull())) throw e;
      // The database (SQLite in the data dir) cannot write on a full disk: free the bytes only
      // these files use first, then write the rows. The files are going away either way.
      for (const key of await this.soleBlobKeys(all))
        await this.ctx.storage.delete(key).catch(() => undefined);
      deleted = await this.deleteRows(file, all);
    }
    if (deleted.blobIds.length) for (const listener of this.blobsDeletedListeners) listener(deleted.blobIds);
    for (const key of deleted.keys) await this.ctx.storage.delete(key).catch(() => undefined);
  }

  /** Storage keys of blobs referenced only by `files` (what deleting them makes unreferenced). */
  private async soleBlobKeys(files: FileRow[]): Promise<string[]> {
    const uses = new Map<number, number>();
    for (const f of files) if (f.blob_id !== null) uses.set(f.blob_id, (uses.get(f.blob_id) ?? 0) + 1);
    const ids = [...uses.keys()];
    const keys: string[] = [];
    for (let i = 0; i < ids.length; i += 500) {
      const rows = await this.ctx.db
        .selectFrom('blobs')
        .select(['id', 'storage_key', 'ref_count'])
        .where('id', 'in', ids.slice(i, i + 500))
        .execute();
      for (const b of rows) if (b.ref_count <= (uses.get(b.id) ?? 0)) keys.push(b.storage_key);
    }
    return keys;
  }

  /** Deletes the rows of `file` and its tree, releases the quota; returns the blobs now unreferenced. */
  private async deleteRows(file: FileRow, all: FileRow[]): Promise<{ keys: string[]; blobIds: number[] }> {
    const deletedIds: number[] = [];
    const orphanKeys = await this.ctx.db.transaction().execute(async (tx) => {
      const keys: string[] = [];
      deletedIds.length = 0;
      let bytes = 0;
      for (const f of all) {
        bytes += f.size;
        if (f.blob_id === null) continue;
        const blob = await tx
          .updateTable('blobs')
          .set((eb) => ({ ref_count: eb('ref_count', '-', 1) }))
          .where('id', '=', f.blob_id)
          .returning(['id', 'storage_key', 'ref_count'])
          .executeTakeFirst();
        if (blob && blob.ref_count <= 0) {
          keys.push(blob.storage_key);
          deletedIds.push(blob.id);
        }
      }
      // Children first (deepest last in walk order), then the item itself.
      const ids = all.map((f) => f.id).reverse();
      for (let i = 0; i < ids.length; i += 500) {
        await tx
          .deleteFrom('files')
          .where('id', 'in', ids.slice(i, i + 500))
          .execute();
      }
      if (keys.length) await tx.deleteFrom('blobs').where('storage_key', 'in', keys).execute();
      await this.release(file.owner_id, bytes, tx);
      return keys;
    });
    return { keys: orphanKeys, blobIds: deletedIds };
  }

  async blobOf(
    file: FileRow,
  ): Promise<
    { id: number; storage_key: string; size: number; created_at: number; nonce: string } | undefined
  > {
    if (file.blob_id === null) return undefined;
    return this.ctx.db
      .selectFrom('blobs')
      .select(['id', 'storage_key', 'size', 'created_at', 'nonce'])
      .where('id', '=', file.blob_id)
      .executeTakeFirst();
  }

  /** Storage keys, nonces and known CRC-32s of blobs, by id (for archives). */
  async blobsForArchive(
    ids: readonly number[],
  ): Promise<Map<number, { key: string; crc32: number | null; nonce: string }>> {
    const out = new Map<number, { key: string; crc32: number | null; nonce: string }>();
    const unique = [...new Set(ids)];
    for (let i = 0; i < unique.length; i += 500) {
      const rows = await this.ctx.db
        .selectFrom('blobs')
        .select(['id', 'storage_key', 'crc32', 'nonce'])
        .where('id', 'in', unique.slice(i, i + 500))
        .execute();
      for (const row of rows) out.set(row.id, { key: row.storage_key, crc32: row.crc32, nonce: row.nonce });
    }
    return out;
  }

  /**
   * Keeps CRC-32s an archive computed (blob id → nonce and CRC); blobs never change, so they
   * stay right. The nonce must match too: a blob deleted while its archive streamed must not
   * hand its CRC to a later row under the same id.
   */
  async rememberCrcs(crcs: ReadonlyMap<number, { nonce: string; crc: number }>): Promise<void> {
    const all = [...crcs];
    for (let i = 0; i < all.length; i += 500) {
      const batch = all.slice(i, i + 500);
      const cases = sql.join(
        batch.map(([id, { crc }]) => sql`when ${id} then cast(${crc} as bigint)`),
        sql` `,
      );
      await this.ctx.db
        .updateTable('blobs')
        .set({ crc32: sql<number>`case id ${cases} end` })
        .where(
          'id',
          'in',
          batch.map(([id]) => id),
        )
        .where(
          'nonce',
          'in',
          batch.map(([, { nonce }]) => nonce),
        )
        .where('crc32', 'is', null)
        .execute();
    }
  }
}
