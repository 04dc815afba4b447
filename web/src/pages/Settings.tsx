// Settings: the password (changing it signs out everywhere, API tokens included) and personal
// API tokens (for scripts and the `ferry` CLI; the password is asked for when the sign-in is old).
import { useEffect, useState } from 'react';
import { api, ApiError, signOut, type ApiToken, type User } from '../api.ts';
import { Dialog } from '../components/Dialog.tsx';
import { date } from '../format.ts';

export function Settings(props: { user: User }) {
  const [tokens, setTokens] = useState<ApiToken[] | null>(null);
  const [error, setError] = useState('');
  const [name, setName] = useState('');
  const [days, setDays] = useState('');
  const [created, setCreated] = useState<{ name: string; token: string } | null>(null);
  const [revoking, setRevoking] = useState<ApiToken | null>(null);
  const [copied, setCopied] = useState('');
  const [status, setStatus] = useState('');
  const [needPassword, setNeedPassword] = useState(false);
  const [password, setPassword] = useState('');
  const [current, setCurrent] = useState('');
  const [next, setNext] = useState('');
  const [pwError, setPwError] = useState('');

  const changePassword = async () => {
    setPwError('');
    try {
      await api('PATCH', '/user/setting', { current_password: current, new_password: next });
      await signOut(); // every session ended on the server, this one too
    } catch (e) {
      setPwError((e as Error).message);
    }
  };

  const load = () =>
    api<ApiToken[]>('GET', '/user/setting/tokens')
      .then(setTokens)
      .catch((e: Error) => setError(e.message));
  useEffect(() => {
    void load();
  }, []);

  const create = async () => {
    setError('');
    try {
      const body: Record<string, unknown> = { name: name.trim() };
      if (days) body.expires_in_days = Number(days);
      if (needPassword) body.password = password;
      const t = await api<{ name: string; token: string }>('POST', '/user/setting/tokens', body);
      setCreated(t);
      setName('');
      setDays('');
      setPassword('');
      void load();
    } catch (e) {
      // 403: the sign-in is too old to make a token without the password.
      if (e instanceof ApiError && e.code === 403) setNeedPassword(true);
      setError((e as Error).message);
    }
  };

  return (
    <section className="page narrow">
      <h1>Settings</h1>
      <div className="card stack">
        <h2>Account</h2>
        <dl className="facts">
          <dt>E-mail</dt>
          <dd>{props.user.email}</dd>
          <dt>Group</dt>
          <dd>{props.user.group.name}</dd>
        </dl>
        <form
          className="token-form"
          onSubmit={(e) => {
            e.preventDefault();
            if (current && next.length >= 4) void changePassword();
          }}
        >
          <div className="field grow">
            <label htmlFor="pw-current">Current password</label>
            <input
              id="pw-current"
              type="password"
              autoComplete="current-password"
              value={current}
              onChange={(e) => setCurrent(e.target.value)}
            />
          </div>
          <div className="field grow">
            <label htmlFor="pw-new">New password</label>
            <input
              id="pw-new"
              type="password"
              autoComplete="new-password"
              minLength={4}
              maxLength={128}
              value={next}
              onChange={(e) => setNext(e.target.value)}
            />
          </div>
          <button type="submit" className="btn" disabled={!current || next.length < 4}>
            Change password
          </button>
        </form>
        <p className="muted small">
          Changing the password signs you out everywhere and revokes your API tokens.
        </p>
        {pwError && (
          <p className="error" role="alert">
            {pwError}
          </p>
        )}
      </div>

      <div className="card stack">
        <h2>API tokens</h2>
        <p className="muted small">
          A token works as <code>Authorization: Bearer fry_…</code> on both APIs, and for the{' '}
          <code>ferry</code> command-line client. It is shown once, when created.
        </p>
        <form
          className="token-form"
          onSubmit={(e) => {
            e.preventDefault();
            if (name.trim()) void create();
          }}
        >
          <div className="field grow">
            <label htmlFor="token-name">Name</label>
            <input
              id="token-name"
              required
              maxLength={100}
              placeholder="backup script"
              value={name}
              onChange={(e) => setName(e.target.value)}
            />
          </div>
          <div className="field">
            <label htmlFor="token-days">Expires after (days)</label>
            <input
              id="token-days"
              type="number"
              min={1}
              max={3650}
              placeholder="never"
              value={days}
              onChange={(e) => setDays(e.target.value)}
            />
          </div>
          {needPassword && (
            <div className="field">
              <label htmlFor="token-password">Your password</label>
              <input
                id="token-password"
                type="password"
                autoComplete="current-password"
                value={password}
                onChange={(e) => setPassword(e.target.value)}
              />
            </div>
          )}
          <button type="submit" className="btn primary" disabled={!name.trim()}>
            Create token
          </button>
        </form>
        {error && (
          <p className="error" role="alert">
            {error}
          </p>
        )}
        <div className="sr-only" aria-live="polite">
          {status}
        </div>
        {tokens === null ? (
          <p className="muted">Loading…</p>
        ) : tokens.length === 0 ? (
          <p className="muted">No tokens yet.</p>
        ) : (
          <div className="table-wrap">
            <table className="tokens">
              <thead>
                <tr>
                  <th scope="col">Name</th>
                  <th scope="col">Token</th>
                  <th scope="col" className="date">
                    Created
                  </th>
                  <th scope="col" className="date">
                    Last used
                  </th>
                  <th scope="col" className="date">
                    Expires
                  </th>
                  <th scope="col">
                    <span className="sr-only">Actions</span>
                  </th>
                </tr>
              </thead>
              <tbody>
                {tokens.map((t) => (
                  <tr key={t.id}>
                    <td>{t.name}</td>
                    <td>
                      <code>{t.prefix}…</code>
                    </td>
                    <td className="date">{date(t.created_at)}</td>
                    <td className="date">{t.last_used_at ? date(t.last_used_at) : 'never'}</td>
                    <td className="date">{t.expires_at ? date(t.expires_at) : 'never'}</td>
                    <td>
                      <button type="button" className="btn small danger" onClick={() => setRevoking(t)}>
                        Revoke
                      </button>
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </div>

      {created && (
        <Dialog title="Your new token" onClose={() => setCreated(null)}>
          <p>
            Copy <strong>{created.name}</strong> now: it will not be shown again.
          </p>
          <div className="copy-row">
            <input
              readOnly
              value={created.token}
              aria-label="New API token"
              className="mono"
              autoFocus
              onFocus={(e) => e.target.select()}
            />
            <button
              type="button"
              className="btn"
              onClick={() =>
                void navigator.clipboard.writeText(created.token).then(
                  () => setCopied('Copied'),
                  () => setCopied('Select the token and copy it by hand'),
                )
              }
            >
              Copy
            </button>
          </div>
          <p className="muted small" aria-live="polite">
            {copied}
          </p>
        </Dialog>
      )}
      {revoking && (
        <Dialog
          title="Revoke token?"
          submitLabel="Revoke"
          onClose={() => setRevoking(null)}
          onSubmit={() => {
            const t = revoking;
            setRevoking(null);
            api('DELETE', `/user/setting/tokens/${t.id}`)
              .then(() => {
                setStatus(`Revoked ${t.name}`);
                return load();
              })
              .catch((e: Error) => setError(e.message));
          }}
        >
          <p>
            Scripts using <strong>{revoking.name}</strong> stop working at once.
          </p>
        </Dialog>
      )}
    </section>
  );
}
