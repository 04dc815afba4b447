// The shell: session, a tiny history router, navigation, and the live task stream shared by the
// pages (one SSE connection per tab).
import { useCallback, useEffect, useMemo, useState, type MouseEvent, type ReactNode } from 'react';
import {
  api,
  followTaskEvents,
  hasPermission,
  onSignedOut,
  PERMISSION,
  resume,
  signOut,
  type Task,
  type User,
} from './api.ts';
import { SignIn } from './pages/SignIn.tsx';
import { Drive } from './pages/Drive.tsx';
import { NewDownload } from './pages/NewDownload.tsx';
import { Tasks } from './pages/Tasks.tsx';
import { Settings } from './pages/Settings.tsx';
import { Admin } from './pages/Admin.tsx';
import { Icon } from './components/Icon.tsx';

export type Navigate = (to: string, replace?: boolean) => void;

function usePath(): [string, Navigate] {
  const [path, setPath] = useState(() => location.pathname + location.search);
  useEffect(() => {
    const onPop = () => setPath(location.pathname + location.search);
    window.addEventListener('popstate', onPop);
    return () => window.removeEventListener('popstate', onPop);
  }, []);
  const navigate = useCallback<Navigate>((to, replace = false) => {
    if (replace) history.replaceState(null, '', to);
    else history.pushState(null, '', to);
    setPath(to);
    window.scrollTo(0, 0);
  }, []);
  return [path, navigate];
}

export function Link(props: {
  to: string;
  navigate: Navigate;
  children: ReactNode;
  className?: string;
  current?: boolean;
}) {
  const onClick = (e: MouseEvent<HTMLAnchorElement>) => {
    if (e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
    e.preventDefault();
    props.navigate(props.to);
  };
  return (
    <a
      href={props.to}
      onClick={onClick}
      className={props.className}
      aria-current={props.current ? 'page' : undefined}
    >
      {props.children}
    </a>
  );
}

/** Active tasks by id, kept current by the event stream; finished ones are announced once. */
export interface LiveTasks {
  tasks: Map<string, Task>;
  connected: boolean;
  /** bumps whenever a task reaches a final state, so lists of finished tasks reload */
  finishedTick: number;
}

function useLiveTasks(enabled: boolean): LiveTasks {
  const [tasks, setTasks] = useState<Map<string, Task>>(new Map());
  const [connected, setConnected] = useState(false);
  const [finishedTick, setFinishedTick] = useState(0);
  useEffect(() => {
    if (!enabled) return;
    let live = true;
    // The stream starts with every active task; the list call fills in before it connects.
    api<{ tasks: Task[] }>('GET', '/workflow?page_size=100&category=downloading')
      .then((page) => {
        if (!live) return;
        setTasks((prev) => {
          const next = new Map(prev);
          for (const t of page.tasks) if (!next.has(t.id)) next.set(t.id, t);
          return next;
        });
      })
      .catch(() => undefined);
    const handle = followTaskEvents(
      (task) => {
        setTasks((prev) => {
          const next = new Map(prev);
          next.set(task.id, task);
          return next;
        });
        if (['completed', 'error', 'canceled'].includes(task.status)) setFinishedTick((n) => n + 1);
      },
      (up) => setConnected(up),
    );
    return () => {
      live = false;
      handle.close();
      setTasks(new Map());
    };
  }, [enabled]);
  return { tasks, connected, finishedTick };
}

const NAV = [
  { to: '/drive', label: 'Drive', icon: 'drive' as const },
  { to: '/new', label: 'New download', icon: 'plus' as const },
  { to: '/tasks', label: 'Tasks', icon: 'download' as const },
  { to: '/settings', label: 'Settings', icon: 'gear' as const },
];

export function App() {
  const [path, navigate] = usePath();
  const [user, setUser] = useState<User | null>(null);
  const [checking, setChecking] = useState(true);

  useEffect(() => {
    resume()
      .then((u) => setUser(u))
      .finally(() => setChecking(false));
    return onSignedOut(() => setUser(null));
  }, []);

  const live = useLiveTasks(user !== null);
  const isAdmin = user ? hasPermission(user.group.permission, PERMISSION.admin) : false;
  const running = useMemo(
    () =>
      [...live.tasks.values()].filter((t) => ['queued', 'processing', 'suspending'].includes(t.status))
        .length,
    [live.tasks],
  );
  // The tab title counts unfinished tasks, so a background tab shows when they are done.
  useEffect(() => {
    document.title = user && running > 0 ? `(${running}) Ferry` : 'Ferry';
  }, [running, user]);

  if (checking)
    return (
      <div className="center-screen" aria-busy="true">
        <p className="muted">Loading…</p>
      </div>
    );
  if (!user)
    return (
      <SignIn
        onSignedIn={(u) => {
          setUser(u);
          if (path.startsWith('/login') || path === '/') navigate('/drive', true);
        }}
      />
    );

  const pathname = path.split('?')[0]!;
  const section = '/' + (pathname.split('/')[1] ?? '');
  let page: ReactNode;
  if (section === '/drive' || pathname === '/' || section === '/login') {
    const segments = pathname
      .split('/')
      .slice(2)
      .filter(Boolean)
      .map((s) => {
        try {
          return decodeURIComponent(s);
        } catch {
          return s;
        }
      });
    page = <Drive segments={section === '/drive' ? segments : []} navigate={navigate} />;
  } else if (section === '/new') {
    const params = new URLSearchParams(path.split('?')[1] ?? '');
    const dst = params.get('dst');
    // `/new?url=…` (repeatable) prefills the links, e.g. from a bookmarklet or another app.
    page = (
      <NewDownload
        navigate={navigate}
        initialDst={dst ? dst.split('/').filter(Boolean) : []}
        initialSources={params.getAll('url').join('\n')}
      />
    );
  } else if (section === '/tasks') {
    page = (
      <Tasks
        live={live}
        tab={pathname === '/tasks/finished' ? 'finished' : 'downloading'}
        navigate={navigate}
      />
    );
  } else if (section === '/settings') {
    page = <Settings user={user} />;
  } else if (section === '/admin' && isAdmin) {
    page = <Admin />;
  } else {
    page = (
      <section className="page">
        <h1>Not found</h1>
        <p>
          Nothing lives at <code>{pathname}</code>.{' '}
          <Link to="/drive" navigate={navigate}>
            Back to the drive
          </Link>
        </p>
      </section>
    );
  }
  const items = isAdmin ? [...NAV, { to: '/admin', label: 'Admin', icon: 'shield' as const }] : NAV;

  return (
    <div className="shell">
      <a className="skip" href="#main">
        Skip to content
      </a>
      <header className="topbar">
        <Link to="/drive" navigate={navigate} className="brand">
          <span className="brand-mark" aria-hidden="true">
            <Icon name="ship" size={16} />
          </span>
          Ferry
        </Link>
        <nav aria-label="Main" className="nav">
          {items.map((item) => (
            <Link
              key={item.to}
              to={item.to}
              navigate={navigate}
              className="nav-item"
              current={
                section === item.to || (item.to === '/drive' && (pathname === '/' || section === '/login'))
              }
            >
              <Icon name={item.icon} className="nav-icon" />
              <span className="nav-label">{item.label}</span>
              {item.to === '/tasks' && running > 0 && (
                <span className="badge" aria-label={`${running} active`}>
                  {running}
                </span>
              )}
            </Link>
          ))}
        </nav>
        <div className="account">
          <span className="account-email" title={user.email}>
            {user.email}
          </span>
          <button type="button" className="btn ghost small" onClick={() => void signOut()}>
            Sign out
          </button>
        </div>
      </header>
      <main id="main" tabIndex={-1}>
        {page}
      </main>
    </div>
  );
}
