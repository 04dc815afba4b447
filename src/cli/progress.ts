// Progress output for the CLI: on a terminal, one bar per task redrawn in place; otherwise plain
// lines (a line per 10 % step and per status change), so logs stay readable.
import type { TaskDto } from './api.ts';

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

export function formatBytes(n: number): string {
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${unit === 0 ? value : value.toFixed(1)} ${UNITS[unit]}`;
}

function formatEta(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds <= 0) return '--';
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

export function taskName(task: TaskDto): string {
  const props = task.summary?.props;
  if (props?.download?.name) return props.download.name;
  const src = props?.src_str || props?.src || '';
  try {
    const url = new URL(src);
    if (url.protocol === 'magnet:') return url.searchParams.get('dn') ?? 'magnet';
    return decodeURIComponent(url.pathname.split('/').filter(Boolean).at(-1) ?? url.host);
  } catch {
    return src || task.id;
  }
}

export function taskPercent(task: TaskDto): number {
  if (task.status === 'completed') return 100;
  const d = task.summary?.props.download;
  if (!d || !d.total) return 0;
  return Math.min(100, (d.downloaded / d.total) * 100);
}

export interface ProgressView {
  update(task: TaskDto): void;
  finish(): void;
}

export function createProgressView(out: NodeJS.WriteStream, ids: string[]): ProgressView {
  const tasks = new Map<string, TaskDto>();
  const tty = out.isTTY === true;
  const lastStep = new Map<string, number>();
  const lastStatus = new Map<string, string>();
  let drawn = 0;
  let timer: NodeJS.Timeout | undefined;

  const line = (id: string, width: number): string => {
    const task = tasks.get(id);
    if (!task) return `${id}  waiting…`;
    const pct = taskPercent(task);
    const d = task.summary?.props.download;
    const barWidth = Math.max(10, Math.min(30, width - 60));
    const filled = Math.round((pct / 100) * barWidth);
    const bar = '█'.repeat(filled) + '░'.repeat(barWidth - filled);
    const name = taskName(task);
    const shortName = name.length > 24 ? name.slice(0, 23) + '…' : name.padEnd(24);
    const sizes = d?.total
      ? `${formatBytes(task.status === 'completed' ? d.total : d.downloaded)}/${formatBytes(d.total)}`
      : '';
    const rate =
      task.status === 'processing' && d?.download_speed
        ? `${formatBytes(d.download_speed)}/s ETA ${formatEta((d.total - d.downloaded) / d.download_speed)}`
        : task.status;
    return `${shortName} ${bar} ${pct.toFixed(1).padStart(5)}% ${sizes} ${rate}`.slice(0, width - 1);
  };

  const draw = () => {
    const width = out.columns || 100;
    if (drawn > 0) out.write(`\x1b[${drawn}A`);
    for (const id of ids) out.write(`\x1b[2K${line(id, width)}\n`);
    drawn = ids.length;
  };

  if (tty) {
    draw();
    timer = setInterval(draw, 250);
  }

  return {
    update(task) {
      if (!ids.includes(task.id)) return;
      tasks.set(task.id, task);
      if (tty) return;
      const pct = taskPercent(task);
      const step = Math.floor(pct / 10);
      const statusChanged = lastStatus.get(task.id) !== task.status;
      if (statusChanged || step > (lastStep.get(task.id) ?? -1)) {
        lastStep.set(task.id, step);
        lastStatus.set(task.id, task.status);
        const d = task.summary?.props.download;
        const size = d?.total ? ` of ${formatBytes(d.total)}` : '';
        out.write(`${task.id} ${task.status} ${pct.toFixed(0)}%${size} ${taskName(task)}\n`);
      }
    },
    finish() {
      if (timer) clearInterval(timer);
      if (tty) draw();
    },
  };
}
