// Browses the drive in a dialog to pick a folder (destinations, move) or a .torrent file.
import { useEffect, useState } from 'react';
import { api, uriOf, type FileItem, type FileList } from '../api.ts';
import { Dialog } from './Dialog.tsx';
import { Icon } from './Icon.tsx';

export function PathPicker(props: {
  title: string;
  mode: 'folder' | 'torrent';
  start?: string[];
  /** folders that cannot be chosen (moving a folder into itself) */
  exclude?: string[];
  onPick: (segments: string[]) => void;
  onClose: () => void;
}) {
  const [path, setPath] = useState<string[]>(props.start ?? []);
  const [items, setItems] = useState<FileItem[] | null>(null);
  const [error, setError] = useState('');
  const [chosenFile, setChosenFile] = useState<string | null>(null);

  useEffect(() => {
    let live = true;
    setItems(null);
    setError('');
    setChosenFile(null);
    api<FileList>('GET', `/file?uri=${encodeURIComponent(uriOf(path))}&page_size=500`)
      .then((list) => live && setItems(list.files))
      .catch((e: Error) => live && setError(e.message));
    return () => {
      live = false;
    };
  }, [path]);

  const shown = (items ?? []).filter((f) =>
    props.mode === 'folder' ? f.type === 1 : f.type === 1 || /\.torrent$/i.test(f.name),
  );
  const here = '/' + path.join('/');
  const excluded = props.exclude?.includes(uriOf(path)) ?? false;
  const canPick = props.mode === 'folder' ? !excluded : chosenFile !== null;

  return (
    <Dialog
      title={props.title}
      onClose={props.onClose}
      submitLabel={props.mode === 'folder' ? `Choose ${here}` : 'Use this torrent'}
      submitDisabled={!canPick}
      onSubmit={() => props.onPick(props.mode === 'folder' ? path : [...path, chosenFile!])}
    >
      <nav className="picker-crumbs" aria-label="Folder path">
        <button type="button" className="link" onClick={() => setPath([])}>
          My files
        </button>
        {path.map((seg, i) => (
          <span key={i}>
            {' / '}
            <button type="button" className="link" onClick={() => setPath(path.slice(0, i + 1))}>
              {seg}
            </button>
          </span>
        ))}
      </nav>
      {error && (
        <p className="error" role="alert">
          {error}
        </p>
      )}
      {items === null && !error && <p className="muted">Loading…</p>}
      <ul className="picker-list">
        {path.length > 0 && (
          <li>
            <button type="button" className="picker-item" onClick={() => setPath(path.slice(0, -1))}>
              <Icon name="up" /> Up one level
            </button>
          </li>
        )}
        {shown.map((f) => (
          <li key={f.id}>
            {f.type === 1 ? (
              <button type="button" className="picker-item" onClick={() => setPath([...path, f.name])}>
                <Icon name="folder" /> {f.name}
              </button>
            ) : (
              <button
                type="button"
                className={`picker-item ${chosenFile === f.name ? 'chosen' : ''}`}
                aria-pressed={chosenFile === f.name}
                onClick={() => setChosenFile(f.name)}
              >
                <Icon name="magnet" /> {f.name}
              </button>
            )}
          </li>
        ))}
        {items !== null && shown.length === 0 && (
          <li className="muted">
            {props.mode === 'folder' ? 'No sub-folders.' : 'No folders or .torrent files.'}
          </li>
        )}
      </ul>
    </Dialog>
  );
}
