// GET /workflow/progress/{id}. Cloudreve answers from the running task's in-memory map of
// `{total, current, identifier}` entries: for a remote download that map is empty while aria2 or
// qBittorrent downloads (its progress is only in summary.props.download) and holds `upload`,
// `upload_count` and `upload_single_<worker>` while the finished files are copied into storage.
// Ferry keeps those keys for the landing step and adds what a client polling this endpoint
// wants during the download itself (documented in docs/COMPATIBILITY.md):
//   download              bytes of the whole task, plus `speed` (bytes/s)
//   download_file_<index> bytes of one selected file (one entry, index 0, for an HTTP download)
// A task that is not running (queued, finished) answers `{}`, as Cloudreve's does.
import type { Task } from '../../domain/task.ts';

export interface ProgressEntry {
  total: number;
  current: number;
  identifier: string;
  /** Ferry extension on `download`: bytes/s. */
  speed?: number;
}

export function taskProgress(task: Task): Record<string, ProgressEntry> {
  const status = task.download_status;
  if (status === null || (task.status !== 'processing' && task.status !== 'suspending')) return {};
  const running = task.status === 'processing';
  const out: Record<string, ProgressEntry> = {
    download: {
      total: status.total,
      current: status.downloaded,
      identifier: status.name,
      speed: running ? status.download_speed : 0,
    },
  };
  const files = (status.files ?? []).filter((f) => f.selected);
  if (files.length === 0) {
    out.download_file_0 = { total: status.total, current: status.downloaded, identifier: status.name };
  }
  for (const f of files) {
    out[`download_file_${f.index}`] = {
      total: f.size,
      current: Math.min(f.size, Math.round(f.progress * f.size)),
      identifier: f.name,
    };
  }
  if (task.phase === 'transfer') {
    const landed = new Set(task.landed);
    const all = files.length > 0 ? files : [{ index: 0, size: status.total }];
    out.upload_count = {
      total: all.length,
      current: all.filter((f) => landed.has(f.index)).length,
      identifier: '',
    };
    out.upload = {
      total: all.reduce((n, f) => n + f.size, 0),
      current: all.filter((f) => landed.has(f.index)).reduce((n, f) => n + f.size, 0),
      identifier: '',
    };
  }
  return out;
}
