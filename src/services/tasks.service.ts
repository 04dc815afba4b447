// Remote-download tasks: creation with the seed's validation, listing, cancel, file
// selection, and the live event feed. Running them is the scheduler's and runner's job.
import { EventEmitter } from 'node:events';
import { randomUUID } from 'node:crypto';
import { rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { TasksRepository } from '../db/tasks.repository.ts';
import { hasFlag, NodeCapability } from '../domain/boolset.ts';
import { AppError } from '../domain/errors.ts';
import { parseFileUri } from '../domain/file-uri.ts';
import type { ChecksumAlgorithm, FileChoice, StoredSelection, Task, TaskOptions } from '../domain/task.ts';
import { ACTIVE_STATUSES, FINISHED_STATUSES } from '../domain/task-state.ts';
import type { DownloadControl } from '../downloaders/port.ts';
import type { OutboundPolicy } from '../net/address-policy.ts';
import type { ServiceContext } from './context.ts';
import { FOLDER, type FilesService } from './files.service.ts';
import type { Actor } from './users.service.ts';
import { assertTaskRoom } from './task-limits.ts';

export interface CreateTaskInput {
  dst: unknown;
  src?: unknown;
  src_file?: unknown;
  preferred_node_id?: unknown;
  options?: Omit<TaskOptions, 'face' | 'srcFileId'> & { selectFiles?: unknown };
  face: TaskOptions['face'];
  /** path face: create the destination folder when missing */
  createDst?: boolean;
  /** the request's correlation id (kept in the task's options for its logs) */
  correlationId?: string;
}

export interface TaskEvent {
  ownerId: number;
  task: Task;
}

/** A control for the node running a task: cancel or pause it, or change its file selection. */
export type TaskControl =
  | { op: 'cancel'; id: number }
  | { op: 'pause'; id: number }
  | { op: 'select'; id: number; files?: FileChoice[] };

/** Why a running task's controller was aborted: the user paused it. */
export const PAUSE = 'pause';

/** A task the user paused (and has not resumed). */
export function isPaused(task: Pick<Task, 'status' | 'paused_at'>): boolean {
  return task.status === 'suspending' && task.paused_at !== null;
}

/**
 * Scaled out (pgboss scheduler): carries task changes and controls to the other nodes.
 * Unset in one-process mode, which pays nothing for it.
 */
export interface TaskSignals {
  changed(taskId: number): void;
  control(message: TaskControl): Promise<void>;
}

const ALLOWED_HEADERS = new Set([
  'cookie',
  'referer',
  'user-agent',
  'authorization',
  'accept',
  'accept-language',
  'origin',
]);

export function normalizeHeaders(input: unknown): Record<string, string> | undefined {
  if (input === undefined || input === null) return undefined;
  if (typeof input !== 'object' || Array.isArray(input))
    throw new AppError('PARAM_INVALID', 'headers must be an object of name → value');
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(input as Record<string, unknown>)) {
    const lower = name.toLowerCase();
    if (!ALLOWED_HEADERS.has(lower))
      throw new AppError(
        'PARAM_INVALID',
        `header "${name}" is not allowed (Cookie, Referer, User-Agent, Authorization, Accept, Accept-Language, Origin)`,
      );
    if (typeof value !== 'string' || value.length > 8192 || /[\r\n\0]/.test(value))
      throw new AppError('PARAM_INVALID', `header "${name}" has an invalid value`);
    out[lower] = value;
  }
  return out;
}

export function parseChecksum(input: unknown): TaskOptions['checksum'] {
  if (input === undefined || input === null || input === '') return undefined;
  if (typeof input !== 'string')
    throw new AppError('PARAM_INVALID', 'checksum must be "sha256:<hex>", "sha1:<hex>" or "md5:<hex>"');
  const match = /^(sha256|sha-256|sha1|sha-1|md5)[:=]([0-9a-fA-F]+)$/.exec(input.trim());
  const algorithm = match ? (match[1]!.replace('-', '') as ChecksumAlgorithm) : undefined;
  const lengths: Record<ChecksumAlgorithm, number> = { sha256: 64, sha1: 40, md5: 32 };
  if (!match || !algorithm || match[2]!.length !== lengths[algorithm]) {
    throw new AppError('PARAM_INVALID', 'checksum must be "sha256:<hex>", "sha1:<hex>" or "md5:<hex>"');
  }
  return { algorithm, hex: match[2]!.toLowerCase() };
}

/** The creation-time file choice (Ferry extension): 0-based file indexes. */
export function normalizeSelection(input: unknown): number[] | undefined {
  if (input === undefined || input === null) return undefined;
  if (
    !Array.isArray(input) ||
    input.length > 100_000 ||
    input.some((i) => !Number.isSafeInteger(i) || (i as number) < 0)
  ) {
    throw new AppError('PARAM_INVALID', 'select_files must be an array of file indexes');
  }
  return [...new Set(input as number[])].sort((a, b) => a - b);
}

export class TasksService {
  private readonly ctx: ServiceContext;
  private readonly files: FilesService;
  readonly events = new EventEmitter<{ task: [TaskEvent] }>();
  /** Running tasks' abort controllers, so cancel reaches them at once. */
  readonly running = new Map<number, AbortController>();
  /** Set by the app when a BitTorrent downloader is configured. */
  torrentSupported = false;
  /** Live controls of running multi-file tasks (file selection), by task id. */
  readonly controls = new Map<number, DownloadControl>();
  /** Set by the app: wakes the scheduler when work appears (with the tasks just created). */
  onWork: (created?: Task[]) => void = () => {};
  /** Set by a scaled-out scheduler. */
  signals: TaskSignals | undefined;
  readonly nodeId: number;

  private readonly policy: OutboundPolicy;
  private readonly repo: TasksRepository;

  constructor(
    ctx: ServiceContext,
    repo: TasksRepository,
    files: FilesService,
    policy: OutboundPolicy,
    nodeId: number,
  ) {
    this.ctx = ctx;
    this.repo = repo;
    this.files = files;
    this.policy = policy;
    this.nodeId = nodeId;
    this.events.setMaxListeners(0);
  }

  stagingDir(taskId: number): string {
    return join(this.ctx.config.dataDir, 'staging', 'tasks', String(taskId));
  }

  emit(task: Task): void {
    this.events.emit('task', { ownerId: task.owner_id, task });
    this.signals?.changed(task.id);
  }

  async create(
    actor: Actor,
    input: CreateTaskInput,
  ): Promise<{ tasks: Task[]; failures: Map<string, AppError> }> {
    if (!this.ctx.config.allowDownload || !actor.group.allow_remote_download) {
      throw new AppError('GROUP_NOT_ALLOWED', 'Group not allowed to download files');
    }
    const srcList = input.src === undefined || input.src === null ? [] : input.src;
    if (!Array.isArray(srcList) || srcList.some((s) => typeof s !== 'string'))
      throw new AppError('PARAM_INVALID', 'src must be an array of strings');
    const sources = (srcList as string[]).map((s) => s.trim()).filter((s) => s.length > 0);
    const srcFile = typeof input.src_file === 'string' ? input.src_file : '';
    if (input.src_file !== undefined && input.src_file !== null && typeof input.src_file !== 'string')
      throw new AppError('PARAM_INVALID', 'Invalid source files');
    if (!srcFile && sources.length === 0) throw new AppError('PARAM_INVALID', 'No source files');
    if (srcFile && sources.length > 0) throw new AppError('PARAM_INVALID', 'Invalid source files');
    await this.files.disk.require(); // refuse new work while the data dir is low on space
    let dstSegments: string[];
    let owner: number;
    try {
      const parsed = parseFileUri(input.dst);
      dstSegments = parsed.segments;
      owner = this.files.ownerFor(actor, parsed.fsId);
    } catch (e) {
      throw new AppError(e instanceof AppError ? e.code : 'PARAM_INVALID', 'Invalid destination');
    }
    let dstFolder;
    try {
      dstFolder = input.createDst
        ? await this.files.mkdirp(owner, dstSegments)
        : await this.files.resolve(owner, dstSegments);
      if (dstFolder.type !== FOLDER) throw new AppError('PATH_NOT_EXIST');
    } catch (e) {
      if (!(e instanceof AppError)) throw e; // a database failure is not a bad destination
      throw new AppError(e.code, 'Invalid destination');
    }
    const limit = actor.group.max_sources_per_request;
    if (limit > 0 && sources.length > limit) throw new AppError('TOO_MANY_SOURCES', '');
    let srcFileId: number | undefined;
    if (srcFile) {
      if (!this.torrentSupported) {
        throw new AppError(
          'FEATURE_DISABLED',
          'Torrent files need a BitTorrent downloader, which is not configured',
        );
      }
      try {
        parseFileUri(srcFile);
      } catch {
        throw new AppError('PARAM_INVALID', 'Invalid source file uri');
      }
      try {
        const located = await this.files.locate(actor, srcFile);
        if (located.file.type === FOLDER) throw new AppError('PATH_NOT_EXIST');
        srcFileId = located.file.id;
      } catch (e) {
        throw new AppError(e instanceof AppError ? e.code : 'PATH_NOT_EXIST', 'Invalid source file');
      }
    }
    let preferredNodeId: number | null = null;
    if (
      input.preferred_node_id !== undefined &&
      input.preferred_node_id !== null &&
      input.preferred_node_id !== ''
    ) {
      preferredNodeId =
        typeof input.preferred_node_id === 'string'
          ? this.ctx.ids.decode('node', input.preferred_node_id)
          : null;
      if (preferredNodeId === null) throw new AppError('PARAM_INVALID', 'Failed to parse object ID');
      const node = await this.ctx.db
        .selectFrom('nodes')
        .select(['id', 'name', 'status', 'capabilities'])
        .where('id', '=', preferredNodeId)
        .executeTakeFirst();
      if (!node) throw new AppError('NOT_FOUND', 'Node not found');
      if (node.status !== 'active') throw new AppError('NODE_OFFLINE', `Node "${node.name}" is offline`);
      if (!hasFlag(node.capabilities, NodeCapability.remoteDownload))
        throw new AppError('NODE_OFFLINE', `Node "${node.name}" does not run remote downloads`);
    }

    const options: TaskOptions = { face: input.face };
    if (input.options?.filename) options.filename = input.options.filename;
    const headers = normalizeHeaders(input.options?.headers);
    if (headers) options.headers = headers;
    if (input.options?.checksum) options.checksum = input.options.checksum;
    if (input.options?.connections !== undefined) {
      const n = Number(input.options.connections);
      if (!Number.isSafeInteger(n) || n < 1 || n > 64)
        throw new AppError('PARAM_INVALID', 'connections must be 1-64');
      options.connections = n;
    }
    if (input.options?.timeout !== undefined) options.timeout = input.options.timeout;
    if (srcFileId !== undefined) options.srcFileId = srcFileId;
    if (input.correlationId) options.correlation_id = input.correlationId;
    if (preferredNodeId !== null) options.preferredNodeId = preferredNodeId;
    const selection = normalizeSelection(input.options?.selectFiles);

    await assertTaskRoom(this.repo, owner, srcFile ? 1 : sources.length, this.ctx.config.maxUnfinishedTasks);
    const tasks: Task[] = [];
    const failures = new Map<string, AppError>();
    const dst = input.dst as string;
    const entries = srcFile
      ? [{ key: srcFile, src: '', srcFile }]
      : sources.map((src) => ({ key: src, src, srcFile: '' }));
    for (const { key, src, srcFile: file } of entries) {
      try {
        if (src) this.checkSource(src);
        const row = await this.repo.create({
          owner_id: owner,
          public_id: randomUUID(),
          src,
          src_file: file,
          dst,
          dst_folder_id: dstFolder.id,
          options,
          selection: selection ?? null,
          node_id: this.nodeId,
        });
        tasks.push(row);
        this.emit(row);
      } catch (e) {
        failures.set(
          key,
          e instanceof AppError
            ? e
            : new AppError('CREATE_TASK_FAILED', 'Failed to create task', { cause: e }),
        );
      }
    }
    if (tasks.length) this.onWork(tasks);
    return { tasks, failures };
  }

  /**
   * Refuses sources that can never work before a task exists: unsupported schemes, and hosts
   * the domain lists or the address policy refuse without DNS (literal IPs, localhost names).
   * Names are checked again, after resolution, when the engine connects.
   */
  private checkSource(src: string): void {
    if (src.length > 8192) throw new AppError('SOURCE_INVALID', 'Source URL is too long');
    let url: URL;
    try {
      url = new URL(src);
    } catch {
      throw new AppError('SOURCE_INVALID', `Invalid source URL: ${src.slice(0, 200)}`);
    }
    if (url.protocol === 'magnet:') {
      if (!this.torrentSupported) {
        throw new AppError(
          'FEATURE_DISABLED',
          'Magnet links need a BitTorrent downloader, which is not configured',
        );
      }
      if (!/[?&]xt=urn:btih:([0-9a-f]{40}|[a-z2-7]{32})(&|$)/i.test(src)) {
        throw new AppError('SOURCE_INVALID', 'Invalid magnet link: it needs xt=urn:btih:<info-hash>');
      }
      return;
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:')
      throw new AppError('SOURCE_INVALID', `Unsupported URL scheme ${url.protocol} (http and https only)`);
    const decision = this.policy.checkHost(url.hostname);
    if (!decision.ok)
      throw new AppError('SOURCE_BLOCKED', `Source address is not allowed: ${decision.reason}`);
  }

  async get(actor: Actor, taskId: number): Promise<Task> {
    const task = await this.find(actor, taskId);
    if (!task) throw new AppError('NOT_FOUND', 'Task not found');
    return task;
  }

  /** The actor's task, or undefined. */
  async find(actor: Actor, taskId: number): Promise<Task | undefined> {
    return this.repo.findOwned(actor.user.id, taskId);
  }

  /** Task counts by status and node, every user's (for /metrics). */
  async countByStatusAndNode(): Promise<Array<{ status: string; node_id: number; n: number }>> {
    return this.repo.countByStatusAndNode();
  }

  async getByPublicId(ownerId: number, publicId: string): Promise<Task | undefined> {
    return this.repo.findByPublicId(ownerId, publicId);
  }

  async list(
    ownerId: number,
    category: 'general' | 'downloading' | 'downloaded',
    pageSize: number,
    nextPageToken?: string,
  ): Promise<{ tasks: Task[]; nextToken?: string }> {
    if (category === 'general') return { tasks: [] };
    if (category === 'downloading') {
      // Cloudreve returns every active task at once; bounded here so a flood cannot exhaust memory.
      const tasks = await this.repo.listOwned(ownerId, {
        statuses: ACTIVE_STATUSES,
        order: 'desc',
        limit: 10_000,
        remoteDownloadsOnly: true,
      });
      return { tasks };
    }
    let cursor: number | null = null;
    if (nextPageToken) {
      try {
        const decoded = JSON.parse(Buffer.from(nextPageToken, 'base64').toString('utf8')) as { id?: unknown };
        cursor = typeof decoded.id === 'string' ? this.ctx.ids.decode('task', decoded.id) : null;
      } catch {
        cursor = null;
      }
      if (cursor === null) throw new AppError('DB_ERROR', 'Failed to query tasks');
    }
    const rows = await this.repo.listOwned(ownerId, {
      statuses: FINISHED_STATUSES,
      order: 'desc',
      limit: pageSize + 1,
      remoteDownloadsOnly: true,
      ...(cursor !== null ? { beforeId: cursor } : {}),
    });
    const more = rows.length > pageSize;
    const tasks = rows.slice(0, pageSize);
    const last = tasks.at(-1);
    return {
      tasks,
      ...(more && last
        ? {
            nextToken: Buffer.from(JSON.stringify({ id: this.ctx.ids.encode('task', last.id) })).toString(
              'base64',
            ),
          }
        : {}),
    };
  }

  /** Recent history for the path face: finished tasks, newest first. */
  async history(ownerId: number, limit = 1000): Promise<Task[]> {
    return this.repo.listOwned(ownerId, { statuses: FINISHED_STATUSES, order: 'desc', limit });
  }

  async active(ownerId: number): Promise<Task[]> {
    return this.repo.listOwned(ownerId, { statuses: ACTIVE_STATUSES, order: 'asc', limit: 10_000 });
  }

  /** Cancel in every phase: status first (so no runner commits), then stop the transfer and clean up. */
  async cancel(actor: Actor, taskId: number): Promise<void> {
    const task = await this.get(actor, taskId);
    const row = await this.repo.cancel(task.id);
    if (!row) throw new AppError('NOT_FOUND', 'Task not found');
    this.emit(row);
    const controller = this.running.get(task.id);
    if (controller) controller.abort();
    else {
      // Scaled out, another node may be running it: tell it (it cleans its staging up).
      await this.signals?.control({ op: 'cancel', id: task.id }).catch(() => undefined);
      if (!this.signals || task.status !== 'processing')
        await rm(this.stagingDir(task.id), { recursive: true, force: true });
    }
    this.onWork();
  }

  /**
   * Pauses a queued, running or retry-waiting task: the status first (so nothing claims it),
   * then its runner stops, saving its checkpoint; the staging data stays, across restarts too.
   */
  async pause(actor: Actor, taskId: number): Promise<Task> {
    const task = await this.get(actor, taskId);
    if (isPaused(task)) return task;
    const row = await this.repo.pause(task.id);
    if (!row) {
      throw new AppError(
        'CONFLICT',
        task.phase === 'seeding' || task.phase === 'transfer'
          ? 'The task is seeding or saving to the drive and cannot be paused'
          : 'Only an active task can be paused',
      );
    }
    this.emit(row);
    const controller = this.running.get(task.id);
    if (controller) controller.abort(PAUSE);
    else if (row.lease_owner)
      await this.signals?.control({ op: 'pause', id: task.id }).catch(() => undefined);
    return row;
  }

  /** Resumes a paused task: back to the queue, from its checkpoint. */
  async resume(actor: Actor, taskId: number): Promise<Task> {
    const task = await this.get(actor, taskId);
    const row = isPaused(task) ? await this.repo.resume(task.id) : undefined;
    if (!row) throw new AppError('CONFLICT', 'The task is not paused');
    this.emit(row);
    if (row.status === 'queued') this.onWork([row]);
    return row;
  }

  /**
   * Starts a failed or canceled task again, as a new task with every option of the original
   * (file name, headers, checksum, connections, timeout, selection). A transfer the network broke
   * kept its partial data: it moves over, and the engine resumes from it while the source is
   * unchanged (ETag / Last-Modified; otherwise it starts over).
   */
  async retry(actor: Actor, taskId: number, correlationId?: string): Promise<Task> {
    if (!this.ctx.config.allowDownload || !actor.group.allow_remote_download)
      throw new AppError('GROUP_NOT_ALLOWED', 'Group not allowed to download files');
    const old = await this.get(actor, taskId);
    if (old.status !== 'error' && old.status !== 'canceled')
      throw new AppError('CONFLICT', 'Only a failed or canceled task can be retried');
    await this.files.disk.require();
    await assertTaskRoom(this.repo, old.owner_id, 1, this.ctx.config.maxUnfinishedTasks);
    const checkpoint = await this.repo.takeCheckpoint(old.id);
    const { correlation_id: _, ...options } = old.options;
    const row = await this.repo.create({
      owner_id: old.owner_id,
      public_id: randomUUID(),
      src: old.src,
      src_file: old.src_file,
      dst: old.dst,
      dst_folder_id: old.dst_folder_id,
      options: { ...options, ...(correlationId ? { correlation_id: correlationId } : {}) },
      selection: old.selection,
      node_id: this.nodeId,
      checkpoint,
    });
    // Without its partial file the engine sees a checkpoint it cannot use and starts over.
    if (checkpoint !== null)
      await rename(this.stagingDir(old.id), this.stagingDir(row.id)).catch(() => undefined);
    this.emit(row);
    this.onWork([row]);
    return row;
  }

  /**
   * PATCH /workflow/download/{id}: only the listed files change. Allowed while the task is
   * active, also before metadata arrives (kept in the task and applied when it does).
   */
  async selectFiles(
    actor: Actor,
    taskId: number,
    files: Array<{ index: number; download?: boolean }>,
  ): Promise<void> {
    const task = await this.get(actor, taskId);
    if (task.status !== 'processing' && task.status !== 'suspending' && task.status !== 'queued') {
      throw new AppError('NOT_FOUND', 'Task not in processing state');
    }
    if (task.phase === 'transfer' || task.phase === 'seeding')
      throw new AppError('NOT_FOUND', 'Task not in monitoring loop');
    if (!isTorrentTask(task)) {
      throw new AppError(
        'INTERNAL',
        'Failed to set download files: an HTTP download has exactly one file, nothing to select',
      );
    }
    const known = task.download_status?.files;
    let selection: Set<number>;
    if (Array.isArray(task.selection)) selection = new Set(task.selection);
    else if (known?.length) selection = new Set(known.map((f) => f.index));
    else selection = new Set<number>();
    const allUntilKnown = !Array.isArray(task.selection) && !known?.length;
    for (const change of files) {
      if (!Number.isSafeInteger(change.index) || change.index < 0)
        throw new AppError('PARAM_INVALID', `Invalid file index ${change.index}`);
      if (known?.length && !known.some((f) => f.index === change.index))
        throw new AppError('PARAM_INVALID', `No file with index ${change.index}`);
      if (change.download === false) selection.delete(change.index);
      else selection.add(change.index);
    }
    // Before metadata, "all but these" cannot be listed yet: remember exclusions instead (on
    // top of those an earlier choice made).
    let stored: StoredSelection = [...selection].sort((a, b) => a - b);
    if (allUntilKnown) {
      const earlier = task.selection && !Array.isArray(task.selection) ? task.selection : undefined;
      const exclude = new Set(earlier?.exclude);
      const include = new Set(earlier?.include);
      for (const f of files) {
        (f.download === false ? exclude : include).add(f.index);
        (f.download === false ? include : exclude).delete(f.index);
      }
      stored = { exclude: [...exclude], include: [...include] };
    }
    await this.repo.saveSelection(task.id, stored);
    const control = this.controls.get(task.id);
    if (!control && this.signals) {
      const changes = files.map((f) => ({ index: f.index, download: f.download !== false }));
      await this.signals.control({ op: 'select', id: task.id, files: changes }).catch(() => undefined);
    }
    if (control) {
      try {
        await control.selectFiles(files.map((f) => ({ index: f.index, download: f.download !== false })));
      } catch (e) {
        throw new AppError('INTERNAL', 'Failed to set download files', { cause: e });
      }
    }
  }
}

export function isTorrentTask(task: Pick<Task, 'src' | 'src_file'>): boolean {
  return task.src_file !== '' || /^magnet:/i.test(task.src) || /\.torrent($|[?#])/i.test(task.src);
}
