// The drive: breadcrumbs, a paged listing, folders, uploads with progress, rename, move, delete,
// and links for a selection (one per file, or one zip).
import { useCallback, useEffect, useRef, useState } from 'react';
import { api, uploadFile, uriOf, type FileItem, type FileList } from '../api.ts';
import { Link, type Navigate } from '../App.tsx';
import { Dialog } from '../components/Dialog.tsx';
import { PathPicker } from '../components/PathPicker.tsx';
import { Progress } from '../components/Progress.tsx';
import { bytes, date, percent } from '../format.ts';
import { Icon } from '../components/Icon.tsx';

const PAGE = 100;

interface Upload {
  id: number;
  name: string;
  size: number;
  sent: number;
  error?: string;
  done?: boolean;
}

type Modal =
  | { kind: 'mkdir' }
  | { kind: 'rename'; file: FileItem }
  | { kind: 'move'; files: FileItem[] }
  | { kind: 'delete'; files: FileItem[] }
  | { kind: 'links'; links: Array<{ name: string; url: string }>; zip: boolean; expires?: string };

export function Drive(props: { segments: string[]; navigate: Navigate }) {
  const { segments, navigate } = props;
  const uri = uriOf(segments);
  const [files, setFiles] = useState<FileItem[]>([]);
  const [next, setNext] = useState<string | undefined>();
  const [loading, setLoading] = useState(true);
  const [error, setError] = useState('');
  const [selected, setSelected] = useState<Set<string>>(new Set());
  const [modal, setModal] = useState<Modal | null>(null);
  const [uploads, setUploads] = useState<Upload[]>([]);
  const [status, setStatus] = useState('');
  const fileInput = useRef<HTMLInputElement>(null);
  const uploadSeq = useRef(0);

  const load = useCallback(
    async (token?: string) => {
      setLoading(true);
      setError('');
      try {
        const q = `/file?uri=${encodeURIComponent(uri)}&page_size=${PAGE}${token ? `&next_page_token=${encodeURIComponent(token)}` : ''}`;
        const page = await api<FileList>('GET', q);
        setFiles((prev) => (token ? [...prev, ...page.files] : page.files));
        setNext(page.pagination.next_token);
      } catch (e) {
        setError((e as Error).message);
        if (!token) setFiles([]);
      } finally {
        setLoading(false);
      }
    },
    [uri],
  );

  useEffect(() => {
    setSelected(new Set());
    void load();
  }, [load]);

  const chosen = files.filter((f) => selected.has(f.id));
  const toggle = (id: string) =>
    setSelected((prev) => {
      const s = new Set(prev);
      if (s.has(id)) s.delete(id);
      else s.add(id);
      return s;
    });
  const allChecked = files.length > 0 && files.every((f) => selected.has(f.id));

  const act = async (what: () => Promise<unknown>, done: string) => {
    try {
      await what();
      setStatus(done);
      setModal(null);
      setSelected(new Set());
      await load();
    } catch (e) {
      setError((e as Error).message);
    }
  };

  const startUploads = (list: FileList_) => {
    const items = [...list];
    for (const file of items) {
      const id = ++uploadSeq.current;
      setUploads((u) => [...u, { id, name: file.name, size: file.size, sent: 0 }]);
      const update = (patch: Partial<Upload>) =>
        setUploads((u) => u.map((x) => (x.id === id ? { ...x, ...patch } : x)));
      uploadFile(segments, file, (sent) => update({ sent }))
        .then(() => {
          update({ done: true, sent: file.size });
          setStatus(`Uploaded ${file.name}`);
          void load();
          setTimeout(() => setUploads((u) => u.filter((x) => x.id !== id)), 4000);
        })
        .catch((e: Error) => update({ error: e.message }));
    }
  };

  const links = async (zip: boolean) => {
    try {
      const result = await api<{ urls: Array<{ url: string }>; expires?: string }>('POST', '/file/url', {
        uris: chosen.map((f) => f.path),
        download: true,
        ...(zip ? { archive: true } : {}),
      });
      setModal({
        kind: 'links',
        zip,
        expires: result.expires,
        links: zip
          ? [{ name: 'archive.zip', url: result.urls[0]?.url ?? '' }]
          : result.urls.map((u, i) => ({ name: chosen[i]?.name ?? `file ${i + 1}`, url: u.url })),
      });
    } catch (e) {
      setError((e as Error).message);
    }
  };

  return (
    <section className="page">
      <div className="page-head">
        <nav aria-label="Breadcrumbs" className="crumbs">
          <ol>
            <li>
              <Link to="/drive" navigate={navigate} current={segments.length === 0}>
                My files
              </Link>
            </li>
            {segments.map((seg, i) => (
              <li key={i}>
                <Link
                  to={
                    '/drive/' +
                    segments
                      .slice(0, i + 1)
                      .map(encodeURIComponent)
                      .join('/')
                  }
                  navigate={navigate}
                  current={i === segments.length - 1}
                >
                  {seg}
                </Link>
              </li>
            ))}
          </ol>
        </nav>
        <div className="toolbar">
          <button type="button" className="btn" onClick={() => setModal({ kind: 'mkdir' })}>
            New folder
          </button>
          <button type="button" className="btn" onClick={() => fileInput.current?.click()}>
            Upload
          </button>
          <input
            ref={fileInput}
            type="file"
            multiple
            hidden
            aria-label="Files to upload"
            onChange={(e) => {
              if (e.target.files?.length) startUploads(e.target.files);
              e.target.value = '';
            }}
          />
          <Link
            to={`/new?dst=${encodeURIComponent(segments.join('/'))}`}
            navigate={navigate}
            className="btn primary"
          >
            Download here
          </Link>
        </div>
      </div>

      <div className="sr-only" aria-live="polite">
        {status}
      </div>
      {error && (
        <p className="error banner" role="alert">
          {error}{' '}
          <button type="button" className="link" onClick={() => setError('')}>
            Dismiss
          </button>
        </p>
      )}

      {uploads.length > 0 && (
        <ul className="uploads" aria-label="Uploads">
          {uploads.map((u) => (
            <li key={u.id} className="upload">
              <div className="row-between">
                <span className="truncate">{u.name}</span>
                <span className="muted" aria-live="polite">
                  {u.error ? 'failed' : u.done ? 'done' : `${percent(u.sent, u.size)} %`}
                </span>
              </div>
              <Progress
                value={u.done ? 100 : percent(u.sent, u.size)}
                label={`Upload of ${u.name}`}
                tone={u.error ? 'error' : u.done ? 'ok' : undefined}
              />
              {u.error && <p className="error small">{u.error}</p>}
            </li>
          ))}
        </ul>
      )}

      {chosen.length > 0 && (
        <div className="selection-bar" role="toolbar" aria-label="Selection">
          <span>{chosen.length} selected</span>
          <button type="button" className="btn small" onClick={() => void links(false)}>
            Download links
          </button>
          <button type="button" className="btn small" onClick={() => void links(true)}>
            Download as zip
          </button>
          <button
            type="button"
            className="btn small"
            onClick={() => setModal({ kind: 'move', files: chosen })}
          >
            Move
          </button>
          {chosen.length === 1 && (
            <button
              type="button"
              className="btn small"
              onClick={() => setModal({ kind: 'rename', file: chosen[0]! })}
            >
              Rename
            </button>
          )}
          <button
            type="button"
            className="btn small danger"
            onClick={() => setModal({ kind: 'delete', files: chosen })}
          >
            Delete
          </button>
          <button type="button" className="btn small ghost" onClick={() => setSelected(new Set())}>
            Clear
          </button>
        </div>
      )}

      <div className="table-wrap">
        <table className="files">
          <caption className="sr-only">Files in /{segments.join('/')}</caption>
          <thead>
            <tr>
              <th scope="col" className="check">
                <input
                  type="checkbox"
                  aria-label="Select all"
                  checked={allChecked}
                  onChange={() => setSelected(allChecked ? new Set() : new Set(files.map((f) => f.id)))}
                />
              </th>
              <th scope="col">Name</th>
              <th scope="col" className="num">
                Size
              </th>
              <th scope="col" className="date">
                Modified
              </th>
            </tr>
          </thead>
          <tbody>
            {files.map((f) => (
              <tr key={f.id} className={selected.has(f.id) ? 'selected' : undefined}>
                <td className="check">
                  <input
                    type="checkbox"
                    aria-label={`Select ${f.name}`}
                    checked={selected.has(f.id)}
                    onChange={() => toggle(f.id)}
                  />
                </td>
                <td className="name">
                  {f.type === 1 ? (
                    <Link
                      to={'/drive/' + [...segments, f.name].map(encodeURIComponent).join('/')}
                      navigate={navigate}
                    >
                      <Icon name="folder" className="ficon folder" />
                      {f.name}
                    </Link>
                  ) : (
                    <button
                      type="button"
                      className="link file-name"
                      onClick={() => {
                        setSelected(new Set([f.id]));
                        void (async () => {
                          try {
                            const r = await api<{ urls: Array<{ url: string }> }>('POST', '/file/url', {
                              uris: [f.path],
                            });
                            if (r.urls[0]) window.open(r.urls[0].url, '_blank', 'noopener');
                          } catch (e) {
                            setError((e as Error).message);
                          }
                        })();
                      }}
                      title="Open"
                    >
                      <Icon name="file" className="ficon" />
                      {f.name}
                    </button>
                  )}
                  <span className="meta-mobile muted">
                    {f.type === 1 ? 'Folder' : bytes(f.size)} · {date(f.updated_at)}
                  </span>
                </td>
                <td className="num">{f.type === 1 ? '—' : bytes(f.size)}</td>
                <td className="date">{date(f.updated_at)}</td>
              </tr>
            ))}
          </tbody>
        </table>
        {!loading && files.length === 0 && !error && (
          <div className="empty">
            <p>This folder is empty.</p>
            <p className="muted">Upload files, or start a remote download into it.</p>
          </div>
        )}
      </div>
      <div className="list-foot" aria-live="polite">
        {loading && <span className="muted">Loading…</span>}
        {!loading && next && (
          <button type="button" className="btn" onClick={() => void load(next)}>
            Load more
          </button>
        )}
      </div>

      {modal?.kind === 'mkdir' && (
        <NameDialog
          title="New folder"
          label="Folder name"
          initial=""
          onClose={() => setModal(null)}
          onSubmit={(name) =>
            act(
              () =>
                api('POST', '/file/create', {
                  uri: uriOf([...segments, name]),
                  type: 'folder',
                  err_on_conflict: true,
                }),
              `Created ${name}`,
            )
          }
        />
      )}
      {modal?.kind === 'rename' && (
        <NameDialog
          title={`Rename ${modal.file.name}`}
          label="New name"
          initial={modal.file.name}
          onClose={() => setModal(null)}
          onSubmit={(name) =>
            act(
              () => api('POST', '/file/rename', { uri: modal.file.path, new_name: name }),
              `Renamed to ${name}`,
            )
          }
        />
      )}
      {modal?.kind === 'move' && (
        <PathPicker
          title={`Move ${modal.files.length} item${modal.files.length === 1 ? '' : 's'} to…`}
          mode="folder"
          start={segments}
          exclude={modal.files.filter((f) => f.type === 1).map((f) => f.path)}
          onClose={() => setModal(null)}
          onPick={(dst) =>
            void act(
              () => api('POST', '/file/move', { uris: modal.files.map((f) => f.path), dst: uriOf(dst) }),
              'Moved',
            )
          }
        />
      )}
      {modal?.kind === 'delete' && (
        <Dialog
          title="Delete for good?"
          onClose={() => setModal(null)}
          submitLabel="Delete"
          onSubmit={() =>
            void act(() => api('DELETE', '/file', { uris: modal.files.map((f) => f.path) }), 'Deleted')
          }
        >
          <p>
            {modal.files.length === 1 ? (
              <strong>{modal.files[0]!.name}</strong>
            ) : (
              `${modal.files.length} items`
            )}{' '}
            will be deleted permanently (there is no trash).
          </p>
        </Dialog>
      )}
      {modal?.kind === 'links' && (
        <LinksDialog links={modal.links} zip={modal.zip} onClose={() => setModal(null)} />
      )}
    </section>
  );
}

type FileList_ = ArrayLike<File> & Iterable<File>;

function NameDialog(props: {
  title: string;
  label: string;
  initial: string;
  onClose: () => void;
  onSubmit: (name: string) => Promise<void>;
}) {
  const [name, setName] = useState(props.initial);
  const [busy, setBusy] = useState(false);
  const valid = name.trim() !== '' && !name.includes('/') && name !== '.' && name !== '..';
  return (
    <Dialog
      title={props.title}
      onClose={props.onClose}
      submitDisabled={!valid}
      busy={busy}
      submitLabel="Save"
      onSubmit={() => {
        setBusy(true);
        void props.onSubmit(name.trim()).finally(() => setBusy(false));
      }}
    >
      <label htmlFor="name-input">{props.label}</label>
      <input
        id="name-input"
        autoFocus
        value={name}
        onChange={(e) => setName(e.target.value)}
        onFocus={(e) => {
          const dot = e.target.value.lastIndexOf('.');
          e.target.setSelectionRange(0, dot > 0 ? dot : e.target.value.length);
        }}
      />
    </Dialog>
  );
}

function LinksDialog(props: {
  links: Array<{ name: string; url: string }>;
  zip: boolean;
  onClose: () => void;
}) {
  const [copied, setCopied] = useState('');
  const copy = async (text: string, what: string) => {
    try {
      await navigator.clipboard.writeText(text);
      setCopied(`Copied ${what}`);
    } catch {
      setCopied('Copy failed: select the link and copy it by hand');
    }
  };
  return (
    <Dialog title={props.zip ? 'Zip download link' : 'Download links'} onClose={props.onClose} wide>
      <p className="muted small">Signed links: anyone with a link can download until it expires.</p>
      <ul className="links">
        {props.links.map((l, i) => (
          <li key={i}>
            <a href={l.url} target="_blank" rel="noopener noreferrer" className="truncate">
              {l.name}
            </a>
            <input
              readOnly
              value={l.url}
              aria-label={`Link for ${l.name}`}
              onFocus={(e) => e.target.select()}
            />
            <button type="button" className="btn small" onClick={() => void copy(l.url, l.name)}>
              Copy
            </button>
          </li>
        ))}
      </ul>
      {props.links.length > 1 && (
        <button
          type="button"
          className="btn"
          onClick={() => void copy(props.links.map((l) => l.url).join('\n'), 'all links')}
        >
          Copy all
        </button>
      )}
      <p className="muted small" aria-live="polite">
        {copied}
      </p>
    </Dialog>
  );
}
