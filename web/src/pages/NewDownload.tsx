// New remote download: many URLs / magnets at once, or a .torrent (uploaded now or picked from
// the drive), into a chosen folder, with the advanced options of Ferry's API.
import { useEffect, useRef, useState, type FormEvent } from 'react';
import { api, ApiError, uploadFile, uriOf, type NodeInfo, type Task } from '../api.ts';
import type { Navigate } from '../App.tsx';
import { PathPicker } from '../components/PathPicker.tsx';
import { Progress } from '../components/Progress.tsx';
import { percent } from '../format.ts';
import { Icon } from '../components/Icon.tsx';

const HEADER_NAMES = [
  'cookie',
  'referer',
  'user-agent',
  'authorization',
  'accept',
  'accept-language',
  'origin',
];

export function parseHeaders(text: string): { headers: Record<string, string>; error?: string } {
  const headers: Record<string, string> = {};
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line) continue;
    const colon = line.indexOf(':');
    if (colon <= 0) return { headers, error: `"${line}" is not "Name: value"` };
    const name = line.slice(0, colon).trim();
    if (!HEADER_NAMES.includes(name.toLowerCase()))
      return { headers, error: `${name} is not allowed (allowed: ${HEADER_NAMES.join(', ')})` };
    headers[name] = line.slice(colon + 1).trim();
  }
  return { headers };
}

export function NewDownload(props: { navigate: Navigate; initialDst: string[]; initialSources?: string }) {
  const [sources, setSources] = useState(props.initialSources ?? '');
  const [dst, setDst] = useState<string[]>(props.initialDst);
  const [torrent, setTorrent] = useState<
    { kind: 'drive'; segments: string[] } | { kind: 'local'; file: File } | null
  >(null);
  const [picker, setPicker] = useState<'dst' | 'torrent' | null>(null);
  const [connections, setConnections] = useState('');
  const [headers, setHeaders] = useState('');
  const [checksum, setChecksum] = useState('');
  const [filename, setFilename] = useState('');
  const [node, setNode] = useState('');
  const [nodes, setNodes] = useState<NodeInfo[]>([]);
  const [busy, setBusy] = useState(false);
  const [uploadPct, setUploadPct] = useState<number | null>(null);
  const [errors, setErrors] = useState<string[]>([]);
  /** Lines of a partly failed batch that did become tasks (the failed ones stay in the box). */
  const [started, setStarted] = useState<string[]>([]);
  const torrentInput = useRef<HTMLInputElement>(null);

  useEffect(() => {
    api<NodeInfo[]>('GET', '/user/setting/nodes')
      .then(setNodes)
      .catch(() => setNodes([]));
  }, []);

  const lines = sources
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
  const canSubmit = (torrent !== null || lines.length > 0) && !busy;

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    if (!canSubmit) return;
    const problems: string[] = [];
    const parsed = parseHeaders(headers);
    if (parsed.error) problems.push(`Headers: ${parsed.error}`);
    const n = connections ? Number(connections) : undefined;
    if (n !== undefined && (!Number.isInteger(n) || n < 1 || n > 64)) problems.push('Connections: 1 to 64');
    const sum = checksum.trim();
    if (sum && !/^(sha256|sha1|md5):[0-9a-f]+$/i.test(sum))
      problems.push('Checksum: write it as sha256:<hex>, sha1:<hex> or md5:<hex>');
    if (problems.length) {
      setErrors(problems);
      return;
    }
    setErrors([]);
    setStarted([]);
    setBusy(true);
    try {
      let srcFile: string | undefined;
      if (torrent?.kind === 'local') {
        setUploadPct(0);
        srcFile = await uploadFile(dst, torrent.file, (sent) =>
          setUploadPct(percent(sent, torrent.file.size)),
        );
      } else if (torrent?.kind === 'drive') {
        srcFile = uriOf(torrent.segments);
      }
      const body: Record<string, unknown> = { dst: uriOf(dst) };
      if (srcFile) body.src_file = srcFile;
      else body.src = lines;
      if (n) body.connections = n;
      if (Object.keys(parsed.headers).length) body.headers = parsed.headers;
      if (sum) body.checksum = sum.toLowerCase();
      if (filename.trim() && !srcFile && lines.length === 1) body.filename = filename.trim();
      if (node) body.preferred_node_id = node;
      await api<Task[]>('POST', '/workflow/download', body);
      props.navigate('/tasks');
    } catch (err) {
      if (err instanceof ApiError && err.details) {
        const failed = err.details;
        setErrors(Object.entries(failed).map(([src, e]) => `${src}: ${e.msg}`));
        // Keep only the lines that failed, so sending again makes no duplicates.
        const created = Array.isArray(err.data) ? (err.data as Task[]) : [];
        if (created.length && !torrent) {
          setStarted(created.map((t) => t.summary?.props.src_str ?? t.id));
          setSources(lines.filter((l) => l in failed).join('\n'));
        }
      } else setErrors([(err as Error).message]);
    } finally {
      setBusy(false);
      setUploadPct(null);
    }
  };

  return (
    <section className="page narrow">
      <h1>New remote download</h1>
      <form onSubmit={(e) => void submit(e)} className="stack">
        <div className="field">
          <label htmlFor="sources">Links</label>
          <textarea
            id="sources"
            rows={6}
            placeholder={'https://example.org/file.iso\nmagnet:?xt=urn:btih:…'}
            value={sources}
            disabled={torrent !== null}
            onChange={(e) => setSources(e.target.value)}
            aria-describedby="sources-help"
            spellCheck={false}
            autoFocus
          />
          <p id="sources-help" className="help">
            One HTTP(S) URL or magnet link per line; each becomes its own task.{' '}
            {lines.length > 0 && (
              <strong>
                {lines.length} link{lines.length === 1 ? '' : 's'}.
              </strong>
            )}
          </p>
        </div>

        <fieldset className="field">
          <legend>…or a .torrent file</legend>
          {torrent ? (
            <div className="chip-row">
              <span className="chip">
                <Icon name="magnet" />{' '}
                {torrent.kind === 'local' ? torrent.file.name : '/' + torrent.segments.join('/')}
              </span>
              <button type="button" className="btn small ghost" onClick={() => setTorrent(null)}>
                Remove
              </button>
            </div>
          ) : (
            <div className="chip-row">
              <button type="button" className="btn small" onClick={() => torrentInput.current?.click()}>
                Upload .torrent…
              </button>
              <button type="button" className="btn small" onClick={() => setPicker('torrent')}>
                Pick from drive…
              </button>
            </div>
          )}
          <input
            ref={torrentInput}
            type="file"
            accept=".torrent,application/x-bittorrent"
            hidden
            aria-label=".torrent file to upload"
            onChange={(e) => {
              const f = e.target.files?.[0];
              if (f) setTorrent({ kind: 'local', file: f });
              e.target.value = '';
            }}
          />
          {uploadPct !== null && <Progress value={uploadPct} label="Upload of the .torrent file" />}
        </fieldset>

        <div className="field">
          <span className="label" id="dst-label">
            Save to
          </span>
          <div className="chip-row">
            <span className="chip" aria-labelledby="dst-label">
              <Icon name="folder" /> /{dst.join('/')}
            </span>
            <button type="button" className="btn small" onClick={() => setPicker('dst')}>
              Change…
            </button>
          </div>
        </div>

        <details className="advanced">
          <summary>Advanced</summary>
          <div className="grid2">
            <div className="field">
              <label htmlFor="connections">Connections per download</label>
              <input
                id="connections"
                type="number"
                min={1}
                max={64}
                inputMode="numeric"
                placeholder="server default"
                value={connections}
                onChange={(e) => setConnections(e.target.value)}
              />
            </div>
            <div className="field">
              <label htmlFor="node">Node</label>
              <select id="node" value={node} onChange={(e) => setNode(e.target.value)}>
                <option value="">Automatic</option>
                {nodes.map((n) => (
                  <option key={n.id} value={n.id}>
                    {n.name} ({n.type})
                  </option>
                ))}
              </select>
            </div>
          </div>
          <div className="field">
            <label htmlFor="headers">Request headers</label>
            <textarea
              id="headers"
              rows={3}
              spellCheck={false}
              placeholder={'Cookie: session=…\nReferer: https://example.org/'}
              value={headers}
              onChange={(e) => setHeaders(e.target.value)}
              aria-describedby="headers-help"
            />
            <p id="headers-help" className="help">
              One "Name: value" per line: Cookie, Referer, User-Agent, Authorization, Accept, Accept-Language,
              Origin.
            </p>
          </div>
          <div className="grid2">
            <div className="field">
              <label htmlFor="checksum">Checksum</label>
              <input
                id="checksum"
                spellCheck={false}
                placeholder="sha256:…"
                value={checksum}
                onChange={(e) => setChecksum(e.target.value)}
                aria-describedby="checksum-help"
              />
              <p id="checksum-help" className="help">
                A mismatch fails the task and keeps nothing.
              </p>
            </div>
            <div className="field">
              <label htmlFor="filename">File name (one link only)</label>
              <input id="filename" value={filename} onChange={(e) => setFilename(e.target.value)} />
            </div>
          </div>
        </details>

        <div aria-live="polite">
          {started.length > 0 && (
            <div className="banner ok" role="status">
              <p>
                Started {started.length} task{started.length === 1 ? '' : 's'}; the{' '}
                {errors.length === 1 ? 'line left below' : 'lines left below'} failed.{' '}
                <button type="button" className="link" onClick={() => props.navigate('/tasks')}>
                  See tasks
                </button>
              </p>
              <ul className="started">
                {started.map((s, i) => (
                  <li key={i} className="truncate" title={s}>
                    {s}
                  </li>
                ))}
              </ul>
            </div>
          )}
        </div>
        <div aria-live="assertive">
          {errors.length > 0 && (
            <ul className="error banner" role="alert">
              {errors.map((e, i) => (
                <li key={i}>{e}</li>
              ))}
            </ul>
          )}
        </div>
        <div className="actions">
          <button type="submit" className="btn primary" disabled={!canSubmit}>
            {busy ? 'Starting…' : 'Start download'}
          </button>
        </div>
      </form>
      {picker === 'dst' && (
        <PathPicker
          title="Save downloads to…"
          mode="folder"
          start={dst}
          onClose={() => setPicker(null)}
          onPick={(s) => {
            setDst(s);
            setPicker(null);
          }}
        />
      )}
      {picker === 'torrent' && (
        <PathPicker
          title="Pick a .torrent file"
          mode="torrent"
          onClose={() => setPicker(null)}
          onPick={(s) => {
            setTorrent({ kind: 'drive', segments: s });
            setPicker(null);
          }}
        />
      )}
    </section>
  );
}
