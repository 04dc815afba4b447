// The task as the code sees it: the `tasks` row with its JSON columns parsed and checked once
// (by the tasks repository, src/db/tasks.repository.ts) into the types below. Pure: nothing of
// the project but the state machine is imported.
import { isTaskStatus, type TaskPhase, type TaskStatus } from './task-state.ts';

export type ChecksumAlgorithm = 'sha256' | 'sha1' | 'md5';

/** `tasks.options`: what the creating request asked for. */
export interface TaskOptions {
  filename?: string;
  headers?: Record<string, string>;
  checksum?: { algorithm: ChecksumAlgorithm; hex: string };
  connections?: number;
  /** seconds; 0 = none */
  timeout?: number;
  /** which face created it: the path face's history shows only its own fields */
  face: 'cloudreve' | 'path';
  /** src_file tasks: the .torrent's file id in the owner's drive */
  srcFileId?: number;
  /** the creating request's correlation id, logged with the task's runs */
  correlation_id?: string;
  /** preferred_node_id, decoded: scaled out, the task waits in that node's queue */
  preferredNodeId?: number;
}

export interface DownloadStatusFile {
  index: number;
  name: string;
  size: number;
  /** 0..1 */
  progress: number;
  selected: boolean;
}

/** `tasks.download_status`: the downloader's last view, shown as Cloudreve's summary.props.download. */
export interface DownloadStatus {
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
  files?: DownloadStatusFile[];
  error_message?: string;
}

/** `tasks.selection`: an explicit list of file indexes, or (chosen before metadata) exclusions/inclusions. */
export type StoredSelection = number[] | { exclude: number[]; include: number[] };

/** One change of a file's selection, as the downloaders' live control takes it. */
export interface FileChoice {
  index: number;
  download: boolean;
}

/** A task: the row's columns under their own names, JSON columns parsed, status and phase typed. */
export interface Task {
  id: number;
  owner_id: number;
  type: string;
  status: TaskStatus;
  phase: TaskPhase;
  /** the path face's download_id (UUID) */
  public_id: string;
  src: string;
  src_file: string;
  dst: string;
  dst_folder_id: number;
  options: TaskOptions;
  download_status: DownloadStatus | null;
  error: string | null;
  /** a FailureCode when status is error (or the last retryable failure while suspending) */
  failure: string | null;
  error_history: string[];
  retry_count: number;
  resume_time: number | null;
  node_id: number;
  /** the downloader's resume state, opaque here (each downloader checks its own) */
  checkpoint: unknown;
  result_path: string | null;
  result_size: number | null;
  failed_files: number;
  lease_owner: string | null;
  lease_expires_at: number | null;
  selection: StoredSelection | null;
  /** file indexes already landed in the drive */
  landed: number[];
  /** how many times the task was claimed: the current (or last) run's number */
  run_count: number;
  /** when the user paused it; null when not paused */
  paused_at: number | null;
  created_at: number;
  updated_at: number;
  started_at: number | null;
  ended_at: number | null;
}

// ---- parsing and checking the JSON columns. A value Ferry did not write (a hand-edited or
// damaged row) never throws: the part that does not check out falls back to "nothing".

const TASK_PHASES: readonly string[] = ['', 'metadata', 'monitor', 'transfer', 'seeding'];

export function toTaskStatus(value: string): TaskStatus {
  if (!isTaskStatus(value)) throw new Error(`unknown task status ${JSON.stringify(value)}`);
  return value;
}

export function toTaskPhase(value: string): TaskPhase {
  return TASK_PHASES.includes(value) ? (value as TaskPhase) : '';
}

function parse(text: string | null): unknown {
  if (text === null || text === '') return null;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return null;
  }
}

const isRecord = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);
const isIndex = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;
const indexList = (v: unknown): number[] | null => (Array.isArray(v) && v.every(isIndex) ? v : null);

export function parseOptions(text: string): TaskOptions {
  const raw = parse(text);
  const o = isRecord(raw) ? raw : {};
  const out: TaskOptions = { face: o.face === 'path' ? 'path' : 'cloudreve' };
  if (typeof o.filename === 'string') out.filename = o.filename;
  if (isRecord(o.headers) && Object.values(o.headers).every((v) => typeof v === 'string'))
    out.headers = o.headers as Record<string, string>;
  const checksum = o.checksum;
  if (
    isRecord(checksum) &&
    (checksum.algorithm === 'sha256' || checksum.algorithm === 'sha1' || checksum.algorithm === 'md5') &&
    typeof checksum.hex === 'string'
  )
    out.checksum = { algorithm: checksum.algorithm, hex: checksum.hex };
  if (Number.isSafeInteger(o.connections)) out.connections = o.connections as number;
  if (typeof o.timeout === 'number' && Number.isFinite(o.timeout)) out.timeout = o.timeout;
  if (Number.isSafeInteger(o.srcFileId)) out.srcFileId = o.srcFileId as number;
  if (typeof o.correlation_id === 'string') out.correlation_id = o.correlation_id;
  if (Number.isSafeInteger(o.preferredNodeId)) out.preferredNodeId = o.preferredNodeId as number;
  return out;
}

const STATES: readonly string[] = ['downloading', 'seeding', 'completed', 'error', 'unknown'];
const num = (v: unknown): number => (typeof v === 'number' && Number.isFinite(v) ? v : 0);

export function parseDownloadStatus(text: string | null): DownloadStatus | null {
  const s = parse(text);
  if (!isRecord(s)) return null;
  const out: DownloadStatus = {
    name: typeof s.name === 'string' ? s.name : '',
    state:
      typeof s.state === 'string' && STATES.includes(s.state)
        ? (s.state as DownloadStatus['state'])
        : 'unknown',
    total: num(s.total),
    downloaded: num(s.downloaded),
    download_speed: num(s.download_speed),
    uploaded: num(s.uploaded),
    upload_speed: num(s.upload_speed),
  };
  if (typeof s.hash === 'string') out.hash = s.hash;
  if (typeof s.pieces === 'string') out.pieces = s.pieces;
  if (typeof s.num_pieces === 'number') out.num_pieces = s.num_pieces;
  if (typeof s.connections === 'number') out.connections = s.connections;
  if (typeof s.peers === 'number') out.peers = s.peers;
  if (Array.isArray(s.files)) {
    out.files = s.files.filter(isRecord).flatMap((f) =>
      isIndex(f.index)
        ? [
            {
              index: f.index,
              name: typeof f.name === 'string' ? f.name : '',
              size: num(f.size),
              progress: num(f.progress),
              selected: f.selected === true,
            },
          ]
        : [],
    );
  }
  if (typeof s.error_message === 'string') out.error_message = s.error_message;
  return out;
}

export function parseSelection(text: string | null): StoredSelection | null {
  const raw = parse(text);
  const list = indexList(raw);
  if (list) return list;
  if (isRecord(raw)) {
    const exclude = indexList(raw.exclude);
    const include = indexList(raw.include);
    if (exclude && include) return { exclude, include };
  }
  return null;
}

export function parseIndexList(text: string | null): number[] {
  return indexList(parse(text)) ?? [];
}

export function parseErrorHistory(text: string | null): string[] {
  const raw = parse(text);
  return Array.isArray(raw) ? raw.filter((e): e is string => typeof e === 'string') : [];
}

export function parseCheckpoint(text: string | null): unknown {
  return parse(text);
}

// ---- selection rules

/** Resolves a stored selection against the known file indexes (null = not known yet). */
export function resolveSelection(
  stored: StoredSelection | null,
  indexes: number[] | null,
): number[] | undefined {
  if (!stored) return undefined;
  if (Array.isArray(stored)) return stored;
  if (!indexes) return undefined;
  const exclude = new Set(stored.exclude);
  return indexes.filter((i) => !exclude.has(i) || stored.include.includes(i));
}

/** The whole stored selection as changes for a live control, given the files known so far. */
export function selectionChanges(
  stored: StoredSelection | null,
  files: ReadonlyArray<{ index: number }>,
): FileChoice[] {
  if (!stored) return [];
  if (!Array.isArray(stored)) {
    return [
      ...stored.exclude.map((index) => ({ index, download: false })),
      ...stored.include.map((index) => ({ index, download: true })),
    ];
  }
  const wanted = new Set(stored);
  return files.map((f) => ({ index: f.index, download: wanted.has(f.index) }));
}
