import { useState, type FormEvent } from 'react';
import { signIn, type User } from '../api.ts';
import { Icon } from '../components/Icon.tsx';

export function SignIn(props: { onSignedIn: (user: User) => void }) {
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const [error, setError] = useState('');
  const [busy, setBusy] = useState(false);

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError('');
    try {
      props.onSignedIn(await signIn(email, password));
    } catch (err) {
      setError((err as Error).message);
    } finally {
      setBusy(false);
    }
  };

  return (
    <div className="center-screen">
      <main className="signin card">
        <div className="brand big">
          <span className="brand-mark" aria-hidden="true">
            <Icon name="ship" size={20} />
          </span>
          Ferry
        </div>
        <p className="muted">Remote downloads into your own drive.</p>
        <form onSubmit={(e) => void submit(e)} aria-describedby={error ? 'signin-error' : undefined}>
          <label htmlFor="email">E-mail</label>
          <input
            id="email"
            type="email"
            autoComplete="username"
            required
            autoFocus
            value={email}
            onChange={(e) => setEmail(e.target.value)}
          />
          <label htmlFor="password">Password</label>
          <input
            id="password"
            type="password"
            autoComplete="current-password"
            required
            minLength={4}
            value={password}
            onChange={(e) => setPassword(e.target.value)}
          />
          <div aria-live="assertive">
            {error && (
              <p id="signin-error" className="error">
                {error}
              </p>
            )}
          </div>
          <button type="submit" className="btn primary block" disabled={busy}>
            {busy ? 'Signing in…' : 'Sign in'}
          </button>
        </form>
      </main>
    </div>
  );
}
