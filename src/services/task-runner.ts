// Runs one claimed task: hands the source to a downloader, mirrors its progress onto the
// task, lands finished files in the drive, and records the outcome. Every status change is
// a compare-and-set, so a cancel or a lost lease always wins over a late runner.
import { mkdir, readdir, rm, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Transaction } from 'kysely';
import type { DB } from '../db/schema.ts';
import { AppError } from '../domain/errors.ts';
import { sanitizeFileName } from '../domain/file-name.ts';
import { FINISHED_STATUSES, retryDelayMs } from '../domain/task-state.ts';
import {
  DownloadFailure,
  type DownloadControl,
  type DownloadedFile,
  type Downloader,
  type DownloadProgress,
  type DownloadSource,
} from '../downloaders/port.ts';
import type { ServiceContext } from './context.ts';
import type { FilesService } from './files.service.ts';
import { isTorrentTask, type TaskOptions, type TaskRow, type TasksService } from './tasks.service.ts';
import type { UsersService } from './users.service.ts';

/** Why a running task's controller was aborted. */
export const SHUTDOWN = 'shutdown';

export interface DownloadStatusJson {
  name: string;
  state: 'downloading' | 'seeding' | 'completed' | 'error' | 'unknown';
  total: number;
  downloaded: number;
  download_speed: number;
  uploaded: number;
  upload_speed: number;
  hash?: string;
  pieces?: string;
  num_pieces?: number;
  /** Ferry extensions */
  connections?: number;
  peers?: number;
  files?: Array<{ index: number; name: string; size: number; progress: number; selected: boolean }>;
  error_message?: string;
}

export function toStatusJson(p: DownloadProgress, state?: DownloadStatusJson['state']): DownloadStatusJson {
  const json: DownloadStatusJson = {
    name: p.name,
    state: state ?? (p.stage === 'seeding' ? 'seeding' : 'downloading'),
    total: p.total ?? 0,
    downloaded: p.downloaded,
    download_speed: Math.round(p.speed),
    uploaded: p.uploaded ?? 0,
    upload_speed: Math.round(p.uploadSpeed ?? 0),
    connections: p.connections,
    files: p.files,
  };
  if (p.hash) json.hash = p.hash;
  if (p.pieces) json.pieces = p.pieces;
  if (p.numPieces) json.num_pieces = p.numPieces;
  if (p.peers !== undefined) json.peers = p.peers;
  return json;
}

/** The stored selection: an explicit list, or (chosen before metadata) exclusions/inclusions. */
type StoredSelection = number[] | { exclude: number[]; include: number[] };

/** Resolves a stored selection against the known file indexes (null = not known yet). */
export function resolveSelection(stored: string | null, indexes: number[] | null): number[] | undefined {
  if (!stored) return undefined;
  const parsed = JSON.parse(stored) as StoredSelection;
  if (Array.isArray(parsed)) return parsed;
  if (!indexes) return undefined;
  const exclude = new Set(parsed.exclude);
  return indexes.filter((i) => !exclude.has(i) || parsed.include.includes(i));
}

/** The slice of a pino logger the runner uses (the server hands it its own). */
export interface TaskLog {
  info(bindings: object, message: string): void;
  child(bindings: object): TaskLog;
}

/** The host of an http(s) source, without credentials; nothing else of the URL is logged. */
function sourceHost(src: string): string | undefined {
  return /^https?:\/\/([^/?#]+)/i.exec(src)?.[1]?.split('@').pop();
}

export interface SeedingPolicy {
  ratio: number;
  seconds: number;
}

export class TaskRunner {
  private readonly ctx: ServiceContext;
  private readonly tasks: TasksService;
  private readonly files: FilesService;
  private readonly users: UsersService;
  private readonly downloaders: Downloader[];
  private readonly seeding: SeedingPolicy | undefined;
  /** Where task runs are logged, with the task id and the creating request's correlation id. */
  log?: TaskLog;

  constructor(deps: {
    ctx: ServiceContext;
    tasks: TasksService;
    files: FilesService;
    users: UsersService;
    downloaders: Downloader[];
    seeding?: SeedingPolicy;
  }) {
    this.ctx = deps.ctx;
    this.tasks = deps.tasks;
    this.files = deps.files;
    this.users = deps.users;
    this.downloaders = deps.downloaders;
    this.seeding =
      deps.seeding && (deps.seeding.ratio > 0 || deps.seeding.seconds > 0) ? deps.seeding : undefined;
  }

  private async sourceOf(task: TaskRow, options: TaskOptions): Promise<DownloadSource> {
    if (task.src_file) {
      const file =
        options.srcFileId === undefined
          ? undefined
          : await this.files.getById(task.owner_id, options.srcFileId);
      const blob = file ? await this.files.blobOf(file) : undefined;
      if (!blob) throw new DownloadFailure('INVALID_URL', 'The .torrent file is no longer in the drive');
      if (blob.size > 10 * 1024 * 1024)
        throw new DownloadFailure('INVALID_URL', 'The .torrent file is larger than 10 MiB');
      const chunks: Buffer[] = [];
      for await (const chunk of await this.ctx.storage.read(blob.storage_key)) chunks.push(chunk as Buffer);
      return { kind: 'torrent', torrentFile: Buffer.concat(chunks) };
    }
    if (/^magnet:/i.test(task.src)) {
      const hash = /xt=urn:btih:([0-9a-f]{40})/i.exec(task.src)?.[1]?.toLowerCase();
      return { kind: 'torrent', magnet: task.src, ...(hash ? { infoHash: hash } : {}) };
    }
    if (
      isTorrentTask(task) &&
      this.downloaders.some((d) => d.canHandle({ kind: 'torrent', torrentUrl: task.src }))
    ) {
      return { kind: 'torrent', torrentUrl: task.src };
    }
    return { kind: 'http', url: task.src, ...(options.headers ? { headers: options.headers } : {}) };
  }

  async run(task: TaskRow, lease: string, controller: AbortController): Promise<void> {
    const options = JSON.parse(task.options) as TaskOptions;
    const log = this.log?.child({
      task_id: task.id,
      ...(options.correlation_id ? { correlation_id: options.correlation_id } : {}),
    });
    log?.info({ src_host: sourceHost(task.src), retry: task.retry_count }, 'task run started');
    const staging = this.tasks.stagingDir(task.id);
    let latest: DownloadProgress | null = null;
    let lastWrite = 0;
    let phase = '';
    let writing: Promise<unknown> = Promise.resolve();
    const writeProgress = (force = false) => {
      const now = this.ctx.clock.now();
      if (!latest || (!force && now - lastWrite < 1000)) return writing;
      lastWrite = now;
      const status = JSON.stringify(toStatusJson(latest));
      writing = writing
        .then(() =>
          this.ctx.db
            .updateTable('tasks')
            .set({ download_status: status, updated_at: now })
            .where('id', '=', task.id)
            .where('status', 'in', ['processing', 'suspending'])
            .where('lease_owner', '=', lease)
            .returningAll()
            .executeTakeFirst(),
        )
        .then((row) => row && this.tasks.emit(row))
        .catch(() => undefined); // progress is best effort; the next write carries it
      return writing;
    };

    try {
      const actor = await this.users.actor(task.owner_id);
      if (!actor) throw new DownloadFailure('CANCELED', 'The task owner no longer exists');
      const source = await this.sourceOf(task, options);
      const downloader = this.downloaders.find((d) => d.canHandle(source));
      if (!downloader)
        throw new DownloadFailure('INVALID_URL', 'No configured downloader can handle this source');
      // Open uploads and the owner's other running downloads hold part of the quota too.
      const { total, used, reserved } = await this.files.remaining(task.owner_id, { exceptTask: task.id });
      const quotaLeft = Math.max(0, total - used - reserved);
      const maxBytes =
        this.ctx.config.maxFileSize > 0 ? Math.min(quotaLeft, this.ctx.config.maxFileSize) : quotaLeft;
      await mkdir(staging, { recursive: true });
      await this.setPhase(
        task.id,
        lease,
        source.kind === 'torrent' && source.magnet ? 'metadata' : 'monitor',
      );
      phase = source.kind === 'torrent' && source.magnet ? 'metadata' : 'monitor';

      const landed = new Set<number>(JSON.parse(task.landed) as number[]);
      let landedSize = 0;
      let landedPath: string[] = [];
      const multiFile = source.kind === 'torrent';
      const land = async (file: DownloadedFile, final: boolean) => {
        const committed = await this.landFile(task, lease, file, latest, final);
        landedPath = await this.files.pathOf(committed);
        landedSize += committed.size;
        if (file.index !== undefined) landed.add(file.index);
        await this.ctx.db
          .updateTable('tasks')
          .set({ landed: JSON.stringify([...landed]) })
          .where('id', '=', task.id)
          .execute();
      };
      const selected = resolveSelection(task.selection, null);

      const outcome = await downloader.download({
        source,
        stagingDir: staging,
        ...(options.filename ? { filename: options.filename } : {}),
        connections:
          options.connections ?? (actor.group.download_connections || this.ctx.config.downloadConnections),
        speedLimit: actor.group.speed_limit,
        timeoutMs: (options.timeout ?? 0) * 1000,
        maxBytes,
        ...(options.checksum ? { checksum: options.checksum } : {}),
        ...(task.checkpoint ? { resume: JSON.parse(task.checkpoint) as unknown } : {}),
        ...(selected ? { selectedFiles: selected } : {}),
        ...(multiFile && this.seeding ? { seeding: this.seeding } : {}),
        signal: controller.signal,
        onProgress: (p) => {
          latest = p;
          if (p.stage === 'downloading' && phase === 'metadata') {
            phase = 'monitor';
            void this.setPhase(task.id, lease, 'monitor').catch(() => undefined);
          }
          if (p.stage === 'seeding' && phase !== 'seeding') {
            phase = 'seeding';
            void this.tasks
              .transition(
                task.id,
                'suspending',
                {
                  phase: 'seeding',
                  resume_time: null,
                  download_status: JSON.stringify(toStatusJson(p, 'seeding')),
                },
                lease,
              )
              .catch(() => undefined);
          }
          void writeProgress();
        },
        checkpoint: async (state) => {
          await this.ctx.db
            .updateTable('tasks')
            .set({ checkpoint: JSON.stringify(state) })
            .where('id', '=', task.id)
            .where('lease_owner', '=', lease)
            .execute();
        },
        attachControl: (control) => {
          this.tasks.controls.set(task.id, control);
          void this.applyStoredSelection(task.id, control, () => latest).catch(() => undefined);
        },
        onFileComplete: async (file) => {
          if (landed.has(file.index)) return;
          await land(file, false);
        },
      });
      await writing;
      if (controller.signal.aborted) throw new DownloadFailure('CANCELED', 'canceled');

      // Land what has not landed yet. The last file of a single-file task lands in the same
      // transaction that completes the task, so a canceled task never publishes a file.
      const remaining = outcome.files.filter((f) => f.index === undefined || !landed.has(f.index));
      if (remaining.length > 0 && phase !== 'seeding') await this.setPhase(task.id, lease, 'transfer');
      for (const [i, file] of remaining.entries()) {
        await land(file, !multiFile && i === remaining.length - 1);
      }
      const now = this.ctx.clock.now();
      const finalStatus = JSON.stringify({
        ...toStatusJson(
          latest ?? {
            name: outcome.name,
            total: landedSize,
            downloaded: landedSize,
            speed: 0,
            connections: 0,
            files: [],
          },
          'completed',
        ),
        download_speed: 0,
        ...(multiFile ? {} : { total: landedSize, downloaded: landedSize }),
      });
      const resultPath =
        multiFile && outcome.files.length > 1 ? landedPath.slice(0, -1).join('/') : landedPath.join('/');
      if (multiFile || remaining.length === 0) {
        const done = await this.tasks.transition(
          task.id,
          'completed',
          {
            ended_at: now,
            download_status: finalStatus,
            checkpoint: null,
            lease_owner: null,
            lease_expires_at: null,
            result_path: resultPath,
            result_size: landedSize,
          },
          lease,
        );
        if (!done) throw new DownloadFailure('CANCELED', 'canceled while landing');
      } else {
        // The landing transaction already recorded result_path/result_size and completed it.
        const done = await this.ctx.db
          .selectFrom('tasks')
          .selectAll()
          .where('id', '=', task.id)
          .executeTakeFirst();
        if (done) this.tasks.emit(done);
      }
      log?.info({ size: landedSize, path: resultPath }, 'task run completed');
      await rm(staging, { recursive: true, force: true });
    } catch (e) {
      await writing;
      const failure = toFailure(e);
      log?.info({ failure: failure.failure, error: failure.message }, 'task run ended without completing');
      await this.fail(task, lease, controller, e);
    } finally {
      this.tasks.controls.delete(task.id);
    }
  }

  /**
   * What a kill can leave behind, swept at start: the staging folder of a task that already
   * finished (killed between the landing commit and the clean-up) or no longer exists, and
   * blobs a finished task imported but never committed (killed between the two).
   */
  async sweepLeftovers(): Promise<void> {
    const root = dirname(this.tasks.stagingDir(0));
    const ids = (await readdir(root).catch(() => [] as string[]))
      .filter((name) => /^\d{1,15}$/.test(name))
      .map(Number);
    for (let i = 0; i < ids.length; i += 500) {
      const batch = ids.slice(i, i + 500);
      const rows = await this.ctx.db
        .selectFrom('tasks')
        .select(['id', 'status', 'download_status'])
        .where('id', 'in', batch)
        .execute();
      const byId = new Map(rows.map((r) => [r.id, r]));
      for (const id of batch) {
        const row = byId.get(id);
        if (row && !(FINISHED_STATUSES as readonly string[]).includes(row.status)) continue;
        if (row) await this.deleteUncommittedBlobs(row);
        await rm(this.tasks.stagingDir(id), { recursive: true, force: true });
      }
    }
  }

  /** Deletes the task's landing keys that no blob row references (imported, never committed). */
  private async deleteUncommittedBlobs(task: Pick<TaskRow, 'id' | 'download_status'>): Promise<void> {
    const indexes = new Set([0]);
    try {
      const status = JSON.parse(task.download_status ?? 'null') as {
        files?: Array<{ index: number }>;
      } | null;
      for (const f of status?.files ?? []) if (Number.isSafeInteger(f.index)) indexes.add(f.index);
    } catch {
      // no usable status: index 0 only
    }
    for (const index of indexes) {
      const key = `blobs/task-${task.id}-${index}`;
      const used = await this.ctx.db
        .selectFrom('blobs')
        .select('id')
        .where('storage_key', '=', key)
        .executeTakeFirst();
      if (!used) await this.ctx.storage.delete(key).catch(() => undefined);
    }
  }

  /** Applies a choice made before the downloader could take it (e.g. before metadata). */
  private async applyStoredSelection(
    taskId: number,
    control: DownloadControl,
    latest: () => DownloadProgress | null,
  ): Promise<void> {
    const row = await this.ctx.db
      .selectFrom('tasks')
      .select('selection')
      .where('id', '=', taskId)
      .executeTakeFirst();
    if (!row?.selection) return;
    const parsed = JSON.parse(row.selection) as StoredSelection;
    if (Array.isArray(parsed)) {
      const files = latest()?.files ?? [];
      const wanted = new Set(parsed);
      if (files.length)
        await control.selectFiles(files.map((f) => ({ index: f.index, download: wanted.has(f.index) })));
    } else {
      await control.selectFiles([
        ...parsed.exclude.map((index) => ({ index, download: false })),
        ...parsed.include.map((index) => ({ index, download: true })),
      ]);
    }
  }

  /**
   * Moves (or, for torrents still seeding, hard-links) one finished file into storage and makes
   * it visible under the destination folder in one transaction with the status check.
   * `completes`: this landing also marks the task completed (single-file tasks).
   */
  private async landFile(
    task: TaskRow,
    lease: string,
    file: DownloadedFile,
    latest: DownloadProgress | null,
    completes: boolean,
  ) {
    const key = `blobs/task-${task.id}-${file.index ?? 0}`;
    const staged = await stat(file.stagingPath).then(
      () => true,
      () => false,
    );
    const multiFile = file.index !== undefined && (latest?.files.length ?? 0) > 1;
    if (staged) {
      if (isTorrentTask(task)) await this.ctx.storage.linkFile(key, file.stagingPath);
      else await this.ctx.storage.importFile(key, file.stagingPath);
    }
    const blob = await this.ctx.storage.stat(key);
    // Where it lands: dst/<torrent name>/<path inside the torrent> for multi-file torrents.
    const segments = file.name
      .split('/')
      .map((s) => sanitizeFileName(s))
      .filter(Boolean);
    const rootName = latest?.name ? sanitizeFileName(latest.name) : '';
    if (multiFile && rootName && segments[0] === rootName && segments.length > 1) segments.shift();
    const folderSegments =
      multiFile && rootName ? [rootName, ...segments.slice(0, -1)] : segments.slice(0, -1);
    const name = segments.at(-1) ?? sanitizeFileName(latest?.name ?? 'download');
    let folderId = task.dst_folder_id;
    if (folderSegments.length) {
      const dst = await this.ctx.db
        .selectFrom('files')
        .selectAll()
        .where('id', '=', task.dst_folder_id)
        .executeTakeFirst();
      if (!dst) throw new AppError('PATH_NOT_EXIST', 'The destination folder no longer exists');
      const base = await this.files.pathOf(dst);
      folderId = (await this.files.mkdirp(task.owner_id, [...base, ...folderSegments])).id;
    }
    // Read before the transaction: on SQLite a query outside it would wait for it forever.
    const landingFolder = completes
      ? await this.ctx.db.selectFrom('files').selectAll().where('id', '=', folderId).executeTakeFirst()
      : undefined;
    const folderPath = landingFolder ? await this.files.pathOf(landingFolder) : [];
    const finalStatus = latest
      ? JSON.stringify({
          ...toStatusJson(latest, 'completed'),
          total: blob.size,
          downloaded: blob.size,
          download_speed: 0,
        })
      : null;
    try {
      return await this.files.commitBlob(
        task.owner_id,
        folderId,
        name,
        { storageKey: key, size: blob.size },
        'rename',
        async (tx: Transaction<DB>) => {
          const now = this.ctx.clock.now();
          const row = await tx
            .updateTable('tasks')
            .set(
              completes
                ? {
                    status: 'completed',
                    phase: 'transfer',
                    ended_at: now,
                    updated_at: now,
                    ...(finalStatus ? { download_status: finalStatus } : {}),
                    checkpoint: null,
                    lease_owner: null,
                    lease_expires_at: null,
                  }
                : { updated_at: now },
            )
            .where('id', '=', task.id)
            .where('status', 'in', ['processing', 'suspending'])
            .where('lease_owner', '=', lease)
            .returning('id')
            .executeTakeFirst();
          return row !== undefined;
        },
        // A completed task's history shows where the file landed, in the same transaction, so
        // no reader ever sees it completed without its path and size.
        completes
          ? async (tx: Transaction<DB>, file) => {
              await tx
                .updateTable('tasks')
                .set({ result_path: [...folderPath, file.name].join('/'), result_size: file.size })
                .where('id', '=', task.id)
                .execute();
            }
          : undefined,
      );
    } catch (e) {
      await this.ctx.storage.delete(key);
      throw e;
    }
  }

  private async setPhase(taskId: number, lease: string, phase: string): Promise<void> {
    const row = await this.ctx.db
      .updateTable('tasks')
      .set({ phase, updated_at: this.ctx.clock.now() })
      .where('id', '=', taskId)
      .where('status', 'in', ['processing', 'suspending'])
      .where('lease_owner', '=', lease)
      .returningAll()
      .executeTakeFirst();
    if (!row) throw new DownloadFailure('CANCELED', 'The task is no longer running here');
    this.tasks.emit(row);
  }

  private async fail(
    task: TaskRow,
    lease: string,
    controller: AbortController,
    error: unknown,
  ): Promise<void> {
    const staging = this.tasks.stagingDir(task.id);
    const now = this.ctx.clock.now();
    const owner = await this.ctx.db
      .selectFrom('tasks')
      .select('lease_owner')
      .where('id', '=', task.id)
      .executeTakeFirst()
      .catch(() => undefined);
    // Our lease lapsed and another node took the task over: the staging area is its now.
    if (owner?.lease_owner && owner.lease_owner !== lease) return;
    if (controller.signal.aborted && controller.signal.reason === SHUTDOWN) {
      // Stopping the server: leave staging and checkpoint, run again after restart.
      await this.tasks.transition(task.id, 'queued', { lease_owner: null, lease_expires_at: null }, lease);
      return;
    }
    const failure = toFailure(error);
    if (failure.failure === 'CANCELED' || controller.signal.aborted) {
      await rm(staging, { recursive: true, force: true });
      return;
    }
    const current = await this.ctx.db
      .selectFrom('tasks')
      .select(['retry_count', 'error_history', 'error'])
      .where('id', '=', task.id)
      .executeTakeFirst();
    const retries = current?.retry_count ?? task.retry_count;
    const history = JSON.parse(current?.error_history ?? '[]') as string[];
    if (failure.retryable && retries < this.ctx.config.taskRetries) {
      history.push(failure.message);
      await this.tasks.transition(
        task.id,
        'suspending',
        {
          retry_count: retries + 1,
          error: failure.message,
          failure: failure.failure,
          error_history: JSON.stringify(history.slice(-20)),
          resume_time: now + retryDelayMs(retries + 1),
          lease_owner: null,
          lease_expires_at: null,
        },
        lease,
      );
      return;
    }
    // Clean up before the task shows as failed, so a finished task never has staging data
    // left (the lease check above made sure the staging area is ours). A cleanup that fails
    // must not keep the task from ending; the startup sweep removes what is left.
    await rm(staging, { recursive: true, force: true }).catch(() => undefined);
    const ended = await this.tasks.transition(
      task.id,
      'error',
      {
        error: failure.message,
        failure: failure.failure,
        ended_at: now,
        checkpoint: null,
        resume_time: null,
        lease_owner: null,
        lease_expires_at: null,
      },
      lease,
    );
    // Only once it is ours and finished: another node may be landing it under a newer lease.
    if (ended) await this.deleteUncommittedBlobs(task).catch(() => undefined);
  }
}

function toFailure(error: unknown): DownloadFailure {
  if (error instanceof DownloadFailure) return error;
  if (error instanceof AppError) {
    if (error.code === 'INSUFFICIENT_CAPACITY')
      return new DownloadFailure('TOO_LARGE', 'Not enough storage quota for this file');
    if (error.code === 'CONFLICT') return new DownloadFailure('CANCELED', error.message);
    return new DownloadFailure('HTTP_ERROR', error.message);
  }
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'ENOSPC' || code === 'EDQUOT')
    return new DownloadFailure('DISK', 'The server ran out of disk space', { cause: error });
  if (code === 'EACCES' || code === 'EROFS' || code === 'EIO')
    return new DownloadFailure('DISK', `Local write failed (${code})`, { cause: error });
  return new DownloadFailure('NETWORK', error instanceof Error ? error.message : String(error), {
    retryable: true,
    cause: error,
  });
}
