// Tasks: the active ones, live from the event stream; the finished ones, paged. Each card shows
// progress, speed, ETA, size, status and phase, errors, and retry / cancel; torrent tasks open
// to their file list, whose checkboxes change the selection live.
import { useCallback, useEffect, useState } from 'react';
import { api, segmentsOf, type Task, type TorrentFile } from '../api.ts';
import { Link, type LiveTasks, type Navigate } from '../App.tsx';
import { Progress } from '../components/Progress.tsx';
import { bytes, date, duration, eta, percent, speed } from '../format.ts';

const ACTIVE = ['queued', 'processing', 'suspending'];
const FINAL = ['completed', 'error', 'canceled'];

/** The downloader's phase, when it says more than the status. */
const PHASE_LABEL: Record<string, string> = {
  transfer: 'saving to drive',
  seeding: 'seeding',
};

const STATUS_LABEL: Record<string, string> = {
  queued: 'Queued',
  processing: 'Downloading',
  suspending: 'Waiting to retry',
  completed: 'Completed',
  error: 'Failed',
  canceled: 'Canceled',
};

export function Tasks(props: { live: LiveTasks; tab: 'downloading' | 'finished'; navigate: Navigate }) {
  const { live, tab, navigate } = props;
  const [finished, setFinished] = useState<Task[]>([]);
  const [next, setNext] = useState<string | undefined>();
  const [loading, setLoading] = useState(false);
  const [error, setError] = useState('');
  const [notice, setNotice] = useState('');

  const loadFinished = useCallback(async (token?: string) => {
    setLoading(true);
    try {
      const page = await api<{ tasks: Task[]; pagination: { next_token?: string } }>(
        'GET',
        `/workflow?page_size=50&category=downloaded${token ? `&next_page_token=${encodeURIComponent(token)}` : ''}`,
      );
      setFinished((prev) => (token ? [...prev, ...page.tasks] : page.tasks));
      setNext(page.pagination.next_token);
    } catch (e) {
      setError((e as Error).message);
    } finally {
      setLoading(false);
    }
  }, []);

  useEffect(() => {
    if (tab === 'finished') void loadFinished();
  }, [tab, loadFinished, live.finishedTick]);

  const active = [...live.tasks.values()]
    .filter((t) => ACTIVE.includes(t.status))
    .sort((a, b) => b.created_at.localeCompare(a.created_at));
  // Just finished in this session, shown on the Downloading tab until the page changes.
  const recent = [...live.tasks.values()]
    .filter((t) => FINAL.includes(t.status))
    .sort((a, b) => b.updated_at.localeCompare(a.updated_at))
    .slice(0, 5);

  const cancel = async (task: Task) => {
    try {
      await api('DELETE', `/workflow/download/${task.id}`);
      setNotice(`Canceled ${taskName(task)}`);
    } catch (e) {
      setError((e as Error).message);
    }
  };
  const pauseOrResume = async (task: Task) => {
    const action = task.paused ? 'resume' : 'pause';
    try {
      await api('POST', `/workflow/download/${task.id}/${action}`);
      setNotice(`${action === 'pause' ? 'Paused' : 'Resumed'} ${taskName(task)}`);
    } catch (e) {
      setError((e as Error).message);
    }
  };
  const retry = async (task: Task) => {
    try {
      // The server starts it again with all its options (headers, checksum, name, connections).
      await api('POST', `/workflow/download/${task.id}/retry`);
      setNotice(`Started ${taskName(task)} again`);
      navigate('/tasks');
    } catch (e) {
      setError((e as Error).message);
    }
  };

  const list = tab === 'downloading' ? active : finished;
  return (
    <section className="page">
      <div className="page-head">
        <h1>Tasks</h1>
        <span className={`conn ${live.connected ? 'up' : 'down'}`} role="status">
          <span aria-hidden="true">●</span> {live.connected ? 'Live' : 'Reconnecting…'}
        </span>
      </div>
      <div className="tabs" role="tablist" aria-label="Task lists">
        <Link
          to="/tasks"
          navigate={navigate}
          className={`tab ${tab === 'downloading' ? 'on' : ''}`}
          current={tab === 'downloading'}
        >
          Downloading <span className="count">{active.length}</span>
        </Link>
        <Link
          to="/tasks/finished"
          navigate={navigate}
          className={`tab ${tab === 'finished' ? 'on' : ''}`}
          current={tab === 'finished'}
        >
          Finished
        </Link>
      </div>
      <div className="sr-only" aria-live="polite">
        {notice}
      </div>
      {error && (
        <p className="error banner" role="alert">
          {error}{' '}
          <button type="button" className="link" onClick={() => setError('')}>
            Dismiss
          </button>
        </p>
      )}
      <ul className="tasks" aria-label={tab === 'downloading' ? 'Active tasks' : 'Finished tasks'}>
        {list.map((t) => (
          <TaskCard
            key={t.id}
            task={t}
            onCancel={cancel}
            onRetry={retry}
            onPause={pauseOrResume}
            navigate={navigate}
          />
        ))}
      </ul>
      {list.length === 0 && !loading && (
        <div className="empty">
          <p>{tab === 'downloading' ? 'Nothing is downloading.' : 'No finished tasks yet.'}</p>
          {tab === 'downloading' && (
            <Link to="/new" navigate={navigate} className="btn primary">
              New download
            </Link>
          )}
        </div>
      )}
      {tab === 'downloading' && recent.length > 0 && (
        <>
          <h2 className="sub">Just finished</h2>
          <ul className="tasks" aria-label="Just finished">
            {recent.map((t) => (
              <TaskCard
                key={t.id}
                task={t}
                onCancel={cancel}
                onRetry={retry}
                onPause={pauseOrResume}
                navigate={navigate}
              />
            ))}
          </ul>
        </>
      )}
      <div className="list-foot">
        {loading && <span className="muted">Loading…</span>}
        {tab === 'finished' && !loading && next && (
          <button type="button" className="btn" onClick={() => void loadFinished(next)}>
            Load more
          </button>
        )}
      </div>
    </section>
  );
}

function taskName(task: Task): string {
  const p = task.summary?.props;
  if (p?.download?.name) return p.download.name;
  const src = p?.src_str || p?.src || '';
  if (src.startsWith('magnet:')) {
    const dn = /[?&]dn=([^&]+)/.exec(src)?.[1];
    if (dn) {
      try {
        return decodeURIComponent(dn.replace(/\+/g, ' '));
      } catch {
        return dn;
      }
    }
    return 'Magnet link';
  }
  if (src.startsWith('cloudreve://')) return segmentsOf(src).at(-1) ?? src;
  try {
    const url = new URL(src);
    return decodeURIComponent(url.pathname.split('/').filter(Boolean).at(-1) ?? url.host);
  } catch {
    return src || task.id;
  }
}

function TaskCard(props: {
  task: Task;
  onCancel: (t: Task) => Promise<void>;
  onRetry: (t: Task) => Promise<void>;
  onPause: (t: Task) => Promise<void>;
  navigate: Navigate;
}) {
  const { task } = props;
  const d = task.summary?.props.download ?? null;
  const phase = task.summary?.phase;
  const total = d?.total ?? 0;
  const done = task.status === 'completed' ? total : (d?.downloaded ?? 0);
  const pct = task.status === 'completed' ? 100 : percent(done, total);
  const src = task.summary?.props.src_str ?? '';
  const torrent = Boolean(task.summary?.props.src) || /^magnet:/i.test(src) || /\.torrent($|[?#])/i.test(src);
  const files = torrent ? (d?.files ?? []) : [];
  const [open, setOpen] = useState(false);
  const [confirming, setConfirming] = useState(false);
  const name = taskName(task);
  const isActive = ACTIVE.includes(task.status);
  const dstSegments = segmentsOf(task.summary?.props.dst ?? '');
  const tone =
    task.status === 'error'
      ? 'error'
      : task.status === 'completed'
        ? 'ok'
        : task.status === 'canceled'
          ? 'muted'
          : undefined;
  const labelId = `task-${task.id}-name`;

  return (
    <li className={`task card status-${task.status}`} aria-labelledby={labelId} data-task-id={task.id}>
      <div className="row-between">
        <h3 id={labelId} className="task-name truncate" title={name}>
          {name}
        </h3>
        <span className={`pill ${task.paused ? 'paused' : task.status}`}>
          {task.paused ? 'Paused' : (STATUS_LABEL[task.status] ?? task.status)}
          {phase && PHASE_LABEL[phase] && isActive ? ` · ${PHASE_LABEL[phase]}` : ''}
        </span>
      </div>
      <Progress value={pct} label={`Progress of ${name}`} tone={tone} />
      <div className="task-stats" aria-live="polite" aria-atomic="true">
        <span className="pct">{pct.toFixed(1)} %</span>
        <span>
          {bytes(done)} / {total ? bytes(total) : '?'}
        </span>
        {isActive && !task.paused && <span>{speed(d?.download_speed)}</span>}
        {isActive && !task.paused && <span>ETA {eta(total, done, d?.download_speed ?? 0)}</span>}
        {d?.connections ? <span>{d.connections} conn.</span> : null}
        {d?.peers !== undefined && <span>{d.peers} peers</span>}
        {task.status === 'suspending' && task.resume_time ? (
          <span>retry at {new Date(task.resume_time * 1000).toLocaleTimeString()}</span>
        ) : null}
        {!isActive && task.duration ? <span>took {duration(task.duration / 1000)}</span> : null}
      </div>
      <div className="task-meta muted small">
        <span>
          to{' '}
          <Link to={'/drive/' + dstSegments.map(encodeURIComponent).join('/')} navigate={props.navigate}>
            /{dstSegments.join('/')}
          </Link>
        </span>
        <span>· {date(task.created_at)}</span>
        {task.node && <span>· node {task.node.name}</span>}
      </div>
      {task.error && (
        <p className="error small" role={task.status === 'error' ? 'alert' : undefined}>
          {task.error}
        </p>
      )}
      {task.error_history && task.error_history.length > 0 && (
        <details className="history">
          <summary>Error history ({task.error_history.length})</summary>
          <ol>
            {task.error_history.map((e, i) => (
              <li key={i}>{e}</li>
            ))}
          </ol>
        </details>
      )}
      <div className="task-actions">
        {files.length > 0 && (
          <button type="button" className="btn small" aria-expanded={open} onClick={() => setOpen(!open)}>
            {open ? 'Hide files' : `Files (${files.length})`}
          </button>
        )}
        {isActive && phase !== 'seeding' && phase !== 'transfer' && (
          <button type="button" className="btn small" onClick={() => void props.onPause(task)}>
            {task.paused ? 'Resume' : 'Pause'}
          </button>
        )}
        {isActive &&
          (confirming ? (
            <>
              <button
                type="button"
                className="btn small danger"
                onClick={() => {
                  setConfirming(false);
                  void props.onCancel(task);
                }}
              >
                Yes, cancel
              </button>
              <button type="button" className="btn small ghost" onClick={() => setConfirming(false)}>
                Keep
              </button>
            </>
          ) : (
            <button type="button" className="btn small" onClick={() => setConfirming(true)}>
              Cancel
            </button>
          ))}
        {(task.status === 'error' || task.status === 'canceled') && (
          <button type="button" className="btn small" onClick={() => void props.onRetry(task)}>
            Retry
          </button>
        )}
      </div>
      {open && files.length > 0 && <FileSelection task={task} files={files} editable={isActive} />}
    </li>
  );
}

function FileSelection(props: { task: Task; files: TorrentFile[]; editable: boolean }) {
  const { task, files, editable } = props;
  const [pending, setPending] = useState<Map<number, boolean>>(new Map());
  const [error, setError] = useState('');
  const isSelected = (f: TorrentFile) => pending.get(f.index) ?? f.selected;

  // Server updates win once they agree with what we asked for.
  useEffect(() => {
    setPending((prev) => {
      if (prev.size === 0) return prev;
      const next = new Map(prev);
      for (const f of files) if (next.get(f.index) === f.selected) next.delete(f.index);
      return next.size === prev.size ? prev : next;
    });
  }, [files]);

  const apply = async (changes: Array<{ index: number; download: boolean }>) => {
    setError('');
    setPending((prev) => {
      const next = new Map(prev);
      for (const c of changes) next.set(c.index, c.download);
      return next;
    });
    try {
      await api('PATCH', `/workflow/download/${task.id}`, { files: changes });
    } catch (e) {
      setError((e as Error).message);
      setPending(new Map());
    }
  };
  const selectedCount = files.filter(isSelected).length;
  return (
    <div className="file-select">
      <div className="row-between">
        <span className="muted small">
          {selectedCount} of {files.length} selected ·{' '}
          {bytes(files.filter(isSelected).reduce((s, f) => s + f.size, 0))}
        </span>
        {editable && (
          <span>
            <button
              type="button"
              className="link small"
              onClick={() => void apply(files.map((f) => ({ index: f.index, download: true })))}
            >
              All
            </button>{' '}
            ·{' '}
            <button
              type="button"
              className="link small"
              onClick={() => void apply(files.map((f) => ({ index: f.index, download: false })))}
            >
              None
            </button>
          </span>
        )}
      </div>
      {error && (
        <p className="error small" role="alert">
          {error}
        </p>
      )}
      <ul className="torrent-files">
        {files.map((f) => (
          <li key={f.index}>
            <label>
              <input
                type="checkbox"
                checked={isSelected(f)}
                disabled={!editable}
                onChange={(e) => void apply([{ index: f.index, download: e.target.checked }])}
              />
              <span className="truncate" title={f.name}>
                {f.name}
              </span>
              <span className="muted small nowrap">
                {bytes(f.size)} · {Math.round((f.progress ?? 0) * 100)} %
              </span>
            </label>
          </li>
        ))}
      </ul>
    </div>
  );
}
