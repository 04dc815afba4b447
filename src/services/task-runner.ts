// Runs one claimed task: hands the source to a downloader, mirrors its progress onto the
// task, lands finished files in the drive, and records the outcome. Every status change is
// a compare-and-set, so a cancel or a lost lease always wins over a late runner.
import { mkdir, readdir, rm, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Kysely } from 'kysely';
import type { DB } from '../db/schema.ts';
import type { TasksRepository } from '../db/tasks.repository.ts';
import { AppError } from '../domain/errors.ts';
import { sanitizeFileName } from '../domain/file-name.ts';
import { resolveSelection, selectionChanges, type DownloadStatus, type Task } from '../domain/task.ts';
import { FINISHED_STATUSES, retryDelayMs, type TaskPhase } from '../domain/task-state.ts';
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
import { isPaused, isTorrentTask, PAUSE, type TasksService } from './tasks.service.ts';
import type { UsersService } from './users.service.ts';

/** Why a running task's controller was aborted. */
export const SHUTDOWN = 'shutdown';
/** The run's lease is gone (lapsed, taken over, or the task ended elsewhere): stop, touch nothing. */
export const LEASE_LOST = 'lease-lost';

/**
 * Where a run stores a finished file: unique per run (`run_count` grows with every claim), so a
 * stale run that reaches landing can only import into and delete its own key, never the blob
 * the winning run committed. Run 0 is the key of tasks claimed before runs were counted.
 */
export function runBlobKey(taskId: number, index: number, run: number): string {
  return run > 0 ? `blobs/task-${taskId}-${index}-r${run}` : `blobs/task-${taskId}-${index}`;
}

/** Failures that leave the partial data worth keeping: a retry resumes from it. */
const KEEP_PARTIAL_FAILURES = new Set(['NETWORK', 'TIMEOUT', 'HTTP_ERROR', 'NO_PEERS', 'DAEMON']);
/** How long a failed task's partial data waits for a retry (the startup sweep removes it after). */
export const KEEP_PARTIAL_MS = 7 * 86_400_000;

function keptForRetry(task: Task, now: number): boolean {
  return task.status === 'error' && task.checkpoint !== null && now - (task.ended_at ?? 0) < KEEP_PARTIAL_MS;
}

export function toStatusJson(p: DownloadProgress, state?: DownloadStatus['state']): DownloadStatus {
  const json: DownloadStatus = {
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
  private readonly repo: TasksRepository;
  private readonly tasks: TasksService;
  private readonly files: FilesService;
  private readonly users: UsersService;
  private readonly downloaders: Downloader[];
  private readonly seeding: SeedingPolicy | undefined;
  /** Where task runs are logged, with the task id and the creating request's correlation id. */
  log?: TaskLog;

  constructor(deps: {
    ctx: ServiceContext;
    repo: TasksRepository;
    tasks: TasksService;
    files: FilesService;
    users: UsersService;
    downloaders: Downloader[];
    seeding?: SeedingPolicy;
  }) {
    this.ctx = deps.ctx;
    this.repo = deps.repo;
    this.tasks = deps.tasks;
    this.files = deps.files;
    this.users = deps.users;
    this.downloaders = deps.downloaders;
    this.seeding =
      deps.seeding && (deps.seeding.ratio > 0 || deps.seeding.seconds > 0) ? deps.seeding : undefined;
  }

  private async sourceOf(task: Task): Promise<DownloadSource> {
    if (task.src_file) {
      const file =
        task.options.srcFileId === undefined
          ? undefined
          : await this.files.getById(task.owner_id, task.options.srcFileId);
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
    const headers = task.options.headers;
    return { kind: 'http', url: task.src, ...(headers ? { headers } : {}) };
  }

  async run(task: Task, lease: string, controller: AbortController): Promise<void> {
    const options = task.options;
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
      const status = toStatusJson(latest);
      writing = writing
        .then(() => this.repo.saveProgress(task.id, lease, status))
        .then((row) => row && this.tasks.emit(row))
        .catch(() => undefined); // progress is best effort; the next write carries it
      return writing;
    };

    try {
      const actor = await this.users.actor(task.owner_id);
      if (!actor) throw new DownloadFailure('CANCELED', 'The task owner no longer exists');
      const source = await this.sourceOf(task);
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

      const landed = new Set<number>(task.landed);
      let landedSize = 0;
      let landedPath: string[] = [];
      const multiFile = source.kind === 'torrent';
      const land = async (file: DownloadedFile, final: boolean) => {
        const committed = await this.landFile(task, lease, file, latest, final);
        landedPath = await this.files.pathOf(committed);
        landedSize += committed.size;
        if (file.index !== undefined) landed.add(file.index);
        await this.repo.saveLanded(task.id, [...landed]);
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
        ...(task.checkpoint !== null ? { resume: task.checkpoint } : {}),
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
            void this.repo
              .startSeeding(task.id, lease, toStatusJson(p, 'seeding'))
              .then((row) => row && this.tasks.emit(row))
              .catch(() => undefined);
          }
          void writeProgress();
        },
        checkpoint: async (state) => {
          await this.repo.saveCheckpoint(task.id, lease, state);
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
      const finalStatus: DownloadStatus = {
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
      };
      const resultPath =
        multiFile && outcome.files.length > 1 ? landedPath.slice(0, -1).join('/') : landedPath.join('/');
      if (multiFile || remaining.length === 0) {
        const done = await this.repo.complete(task.id, lease, {
          phase: 'seeding', // where Cloudreve leaves a finished remote download, HTTP or torrent
          download_status: finalStatus,
          result_path: resultPath,
          result_size: landedSize,
        });
        if (!done) throw new DownloadFailure('CANCELED', 'canceled while landing');
        this.tasks.emit(done);
      } else {
        // The landing transaction already recorded result_path/result_size and completed it.
        const done = await this.repo.get(task.id);
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
      const rows = await this.repo.getMany(batch);
      const byId = new Map(rows.map((r) => [r.id, r]));
      for (const id of batch) {
        const row = byId.get(id);
        if (row && !(FINISHED_STATUSES as readonly string[]).includes(row.status)) continue;
        if (row && keptForRetry(row, this.ctx.clock.now())) continue;
        if (row) await this.deleteUncommittedBlobs(row);
        await rm(this.tasks.stagingDir(id), { recursive: true, force: true });
      }
    }
  }

  /**
   * Deletes the landing keys of the task's runs (the last 20, and the key of tasks from before
   * runs were counted) that no blob row references: imported, never committed. Only for a
   * finished task, whose runs can no longer commit.
   */
  private async deleteUncommittedBlobs(
    task: Pick<Task, 'id' | 'download_status' | 'run_count'>,
  ): Promise<void> {
    const indexes = new Set([0]);
    for (const f of task.download_status?.files ?? []) indexes.add(f.index);
    const runs = [0, ...Array.from({ length: Math.min(20, task.run_count) }, (_, i) => task.run_count - i)];
    const keys = [...indexes].flatMap((index) => runs.map((run) => runBlobKey(task.id, index, run)));
    for (const key of keys) {
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
    const row = await this.repo.get(taskId);
    const changes = selectionChanges(row?.selection ?? null, latest()?.files ?? []);
    if (changes.length) await control.selectFiles(changes);
  }

  /**
   * Moves (or, for torrents still seeding, hard-links) one finished file into storage and makes
   * it visible under the destination folder in one transaction with the status check.
   * `completes`: this landing also marks the task completed (single-file tasks).
   */
  private async landFile(
    task: Task,
    lease: string,
    file: DownloadedFile,
    latest: DownloadProgress | null,
    completes: boolean,
  ) {
    const key = runBlobKey(task.id, file.index ?? 0, task.run_count);
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
    const finalStatus: DownloadStatus | null = latest
      ? {
          ...toStatusJson(latest, 'completed'),
          total: blob.size,
          downloaded: blob.size,
          download_speed: 0,
        }
      : null;
    try {
      return await this.files.commitBlob(
        task.owner_id,
        folderId,
        name,
        { storageKey: key, size: blob.size },
        'rename',
        async (tx: Kysely<DB>) =>
          completes
            ? (await this.repo
                .in(tx)
                .complete(task.id, lease, { phase: 'seeding', download_status: finalStatus })) !== undefined
            : this.repo.in(tx).confirmHeld(task.id, lease),
        // A completed task's history shows where the file landed, in the same transaction, so
        // no reader ever sees it completed without its path and size.
        completes
          ? async (tx: Kysely<DB>, file) => {
              await this.repo.in(tx).saveResult(task.id, [...folderPath, file.name].join('/'), file.size);
            }
          : undefined,
      );
    } catch (e) {
      await this.ctx.storage.delete(key);
      throw e;
    }
  }

  private async setPhase(taskId: number, lease: string, phase: TaskPhase): Promise<void> {
    const row = await this.repo.setPhase(taskId, lease, phase);
    if (!row) throw new DownloadFailure('CANCELED', 'The task is no longer running here');
    this.tasks.emit(row);
  }

  private async fail(task: Task, lease: string, controller: AbortController, error: unknown): Promise<void> {
    const staging = this.tasks.stagingDir(task.id);
    // The scheduler found this run's lease gone: whoever holds the task now owns its staging.
    if (controller.signal.aborted && controller.signal.reason === LEASE_LOST) return;
    const owner = await this.repo.get(task.id).catch(() => undefined);
    // Our lease lapsed and another node took the task over: the staging area is its now.
    if (owner?.lease_owner && owner.lease_owner !== lease) return;
    if (owner && isPaused(owner)) {
      // Paused: staging and checkpoint stay; the task waits, without a runner, to be resumed.
      const paused = await this.repo.settlePaused(task.id, lease);
      if (paused) this.tasks.emit(paused);
      return;
    }
    const reason: unknown = controller.signal.reason;
    if (controller.signal.aborted && (reason === SHUTDOWN || reason === PAUSE)) {
      // Stopping the server (or a pause the user lifted before the run stopped): leave staging
      // and checkpoint, run again (after restart).
      const queued = await this.repo.requeue(task.id, lease);
      if (queued) this.tasks.emit(queued);
      return;
    }
    const failure = toFailure(error);
    if (failure.failure === 'CANCELED' || controller.signal.aborted) {
      await rm(staging, { recursive: true, force: true });
      return;
    }
    const current = await this.repo.get(task.id);
    const retries = current?.retry_count ?? task.retry_count;
    const history = [...(current?.error_history ?? [])];
    if (failure.retryable && retries < this.ctx.config.taskRetries) {
      history.push(failure.message);
      const suspended = await this.repo.suspendForRetry(task.id, lease, {
        retry_count: retries + 1,
        error: failure.message,
        failure: failure.failure,
        error_history: history.slice(-20),
        retryInMs: retryDelayMs(retries + 1),
      });
      if (suspended) this.tasks.emit(suspended);
      return;
    }
    // Clean up before the task shows as failed, so a finished task never has staging data
    // left (the lease check above made sure the staging area is ours). A cleanup that fails
    // must not keep the task from ending; the startup sweep removes what is left. A transfer
    // the network broke keeps its partial data for a retry (for KEEP_PARTIAL_MS).
    const keep = KEEP_PARTIAL_FAILURES.has(failure.failure) && current?.checkpoint != null;
    if (!keep) await rm(staging, { recursive: true, force: true }).catch(() => undefined);
    const ended = await this.repo.fail(task.id, lease, {
      error: failure.message,
      failure: failure.failure,
      keepCheckpoint: keep,
    });
    if (ended) this.tasks.emit(ended);
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
