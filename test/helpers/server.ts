// Starts a real Ferry server process for end-to-end tests: a temp data dir, a free port on
// 127.0.0.1, and — when FERRY_TEST_DB=postgres — a throwaway PostgreSQL database.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import SQLite from 'better-sqlite3';

export const ROOT = join(import.meta.dirname, '..', '..');
export const ADMIN_EMAIL = 'admin@example.com';
export const ADMIN_PASSWORD = 'admin-password-1';
export const dialect = process.env.FERRY_TEST_DB === 'postgres' ? 'postgres' : 'sqlite';
const PG_ADMIN_URL = process.env.FERRY_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.listen(0, '127.0.0.1', () => {
      const address = srv.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      srv.close(() => resolve(port));
    });
    srv.on('error', reject);
  });
}

export async function createThrowawayDatabase(): Promise<{ url: string; drop(): Promise<void> }> {
  const name = `ferry_test_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: PG_ADMIN_URL });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = PG_ADMIN_URL.replace(/\/[^/]*$/, `/${name}`);
  return {
    url,
    drop: async () => {
      const c = new pg.Client({ connectionString: PG_ADMIN_URL });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await c.end();
    },
  };
}

export interface ApiResult<T = unknown> {
  status: number;
  headers: Headers;
  body: {
    code: number;
    data?: T;
    msg: string;
    aggregated_error?: Record<string, { code: number; msg: string }>;
    correlation_id?: string;
  };
}

export interface TestServer {
  url: string;
  port: number;
  dataDir: string;
  databaseUrl: string;
  /** Cloudreve-face JSON call. */
  api<T = unknown>(
    method: string,
    path: string,
    options?: { token?: string; body?: unknown; headers?: Record<string, string> },
  ): Promise<ApiResult<T>>;
  signIn(email?: string, password?: string): Promise<{ access: string; refresh: string; userId: string }>;
  /** Runs `ferry <args>` against this server's data dir / database. */
  cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }>;
  addUser(email: string, password: string, group?: 'admin' | 'user'): Promise<void>;
  /**
   * Runs one SQL statement directly on the server's database (bypassing the API), with `?`
   * placeholders on both dialects. Returns the rows (empty for statements without rows).
   */
  sql<R = Record<string, unknown>>(text: string, params?: unknown[]): Promise<R[]>;
  /** The server process's id (for /proc/<pid>/fd checks). */
  pid(): number;
  /** SIGKILL, then start again on the same data (and port). */
  crashAndRestart(): Promise<void>;
  stop(): Promise<void>;
  output(): string;
}

export interface ServerOptions {
  args?: string[];
  env?: Record<string, string>;
  /** Variables removed from the server's environment (e.g. FERRY_ADMIN_PASSWORD for a generated one). */
  unsetEnv?: string[];
}

function spawnFerry(args: string[], env: Record<string, string>, unset: string[] = []): ChildProcess {
  const full: Record<string, string | undefined> = { ...process.env, ...env };
  for (const name of unset) delete full[name];
  return spawn(process.execPath, [join(ROOT, 'src', 'main.ts'), ...args], {
    cwd: ROOT,
    env: full,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

export async function startServer(options: ServerOptions = {}): Promise<TestServer> {
  const dataDir = await mkdtemp(join(tmpdir(), 'ferry-test-'));
  const db = dialect === 'postgres' ? await createThrowawayDatabase() : undefined;
  const databaseUrl = db?.url ?? join(dataDir, 'ferry.db');
  const port = await freePort();
  const env: Record<string, string> = {
    FERRY_ADMIN_EMAIL: ADMIN_EMAIL,
    FERRY_ADMIN_PASSWORD: ADMIN_PASSWORD,
    FERRY_DATA_DIR: dataDir,
    FERRY_DATABASE_URL: databaseUrl,
    FERRY_LOG_LEVEL: 'warn',
    // The free-space floor (256 MiB by default) is tested on its own (test/faults/full-disk);
    // elsewhere a CI machine with little free disk must not refuse every task.
    FERRY_MIN_FREE_SPACE: '0',
    ...options.env,
  };
  const serveArgs = ['serve', '--host', '127.0.0.1', '--port', String(port), ...(options.args ?? [])];
  let child: ChildProcess;
  let log = '';
  const url = `http://127.0.0.1:${port}`;

  const launch = async () => {
    child = spawnFerry(serveArgs, env, options.unsetEnv);
    child.stdout!.on('data', (d: Buffer) => (log += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (log += d.toString()));
    // Generous: under a loaded CI machine a start can take tens of seconds.
    const deadline = Date.now() + 90_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`ferry exited early (${child.exitCode}):\n${log}`);
      try {
        const res = await fetch(`${url}/healthz`);
        if (res.ok) return;
      } catch {
        // not up yet
      }
      if (Date.now() > deadline) {
        // Never leave a half-started server behind: it would keep the test process alive.
        child.kill('SIGKILL');
        throw new Error(`ferry did not start:\n${log}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  await launch();

  const exited = (c: ChildProcess) =>
    new Promise<void>((resolve) =>
      c.exitCode !== null || c.signalCode !== null ? resolve() : c.once('exit', () => resolve()),
    );

  const server: TestServer = {
    url,
    port,
    dataDir,
    databaseUrl,
    pid: () => child.pid ?? -1,
    async api<T>(
      method: string,
      path: string,
      opts: { token?: string; body?: unknown; headers?: Record<string, string> } = {},
    ) {
      const headers: Record<string, string> = { ...opts.headers };
      if (opts.token) headers.authorization = `Bearer ${opts.token}`;
      if (opts.body !== undefined) headers['content-type'] = 'application/json';
      const res = await fetch(`${url}/api/v4${path}`, {
        method,
        headers,
        redirect: 'manual',
        ...(opts.body !== undefined ? { body: JSON.stringify(opts.body) } : {}),
      });
      const text = await res.text();
      let body: ApiResult<T>['body'];
      try {
        body = JSON.parse(text) as ApiResult<T>['body'];
      } catch {
        body = { code: -999, msg: text };
      }
      return { status: res.status, headers: res.headers, body };
    },
    async signIn(email = ADMIN_EMAIL, password = ADMIN_PASSWORD) {
      const r = await server.api<{
        user: { id: string };
        token: { access_token: string; refresh_token: string };
      }>('POST', '/session/token', { body: { email, password } });
      if (r.body.code !== 0 || !r.body.data) throw new Error(`sign-in failed: ${JSON.stringify(r.body)}`);
      return {
        access: r.body.data.token.access_token,
        refresh: r.body.data.token.refresh_token,
        userId: r.body.data.user.id,
      };
    },
    async cli(args: string[]) {
      const c = spawnFerry(args, env, options.unsetEnv);
      let stdout = '';
      let stderr = '';
      c.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
      c.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
      const code = await new Promise<number>((resolve) => c.on('exit', (n) => resolve(n ?? 1)));
      return { code, stdout, stderr };
    },
    async addUser(email, password, group = 'user') {
      const r = await server.cli(['user', 'add', email, '--password', password, '--group', group]);
      if (r.code !== 0) throw new Error(`user add failed: ${r.stderr}`);
    },
    async sql<R>(text: string, params: unknown[] = []): Promise<R[]> {
      if (dialect === 'postgres') {
        const c = new pg.Client({ connectionString: databaseUrl });
        await c.connect();
        try {
          let n = 0;
          const result = await c.query(
            text.replace(/\?/g, () => `$${++n}`),
            params,
          );
          return result.rows as R[];
        } finally {
          await c.end();
        }
      }
      const c = new SQLite(databaseUrl);
      try {
        c.pragma('busy_timeout = 10000');
        const statement = c.prepare(text);
        if (statement.reader) return statement.all(...params) as R[];
        statement.run(...params);
        return [];
      } finally {
        c.close();
      }
    },
    async crashAndRestart() {
      child.kill('SIGKILL');
      await exited(child);
      await launch();
    },
    async stop() {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited(child);
      clearTimeout(timer);
      await db?.drop().catch(() => undefined);
      await rm(dataDir, { recursive: true, force: true });
    },
    output: () => log,
  };
  return server;
}

/** Polls until `check` returns a value (not undefined), or fails after `timeoutMs`. */
export async function waitFor<T>(
  check: () => Promise<T | undefined>,
  timeoutMs = 30_000,
  what = 'condition',
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Uploads bytes through an upload session (chunked when the server asks for it). */
export async function uploadFile(
  server: TestServer,
  token: string,
  uri: string,
  content: Buffer,
): Promise<void> {
  const session = await server.api<{ session_id: string; chunk_size: number }>('PUT', '/file/upload', {
    token,
    body: { uri, size: content.length },
  });
  if (session.body.code !== 0 || !session.body.data)
    throw new Error(`upload session failed: ${JSON.stringify(session.body)}`);
  const { session_id, chunk_size } = session.body.data;
  const size = chunk_size || content.length;
  const chunks = Math.max(1, Math.ceil(content.length / (size || 1)));
  for (let i = 0; i < chunks; i++) {
    const part = content.subarray(i * size, (i + 1) * size);
    const res = await fetch(`${server.url}/api/v4/file/upload/${session_id}/${i}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/octet-stream' },
      body: part,
    });
    const body = (await res.json()) as { code: number; msg: string };
    if (body.code !== 0) throw new Error(`chunk ${i} failed: ${JSON.stringify(body)}`);
  }
}

export interface TestWorker {
  name: string;
  /** Sends a signal (SIGKILL to simulate a dead node). */
  kill(signal?: NodeJS.Signals): void;
  /** Resolves with the exit code once the process has exited. */
  exited(): Promise<number | null>;
  /** SIGTERM (clean stop: tasks go back to the queue, the node goes offline). */
  stop(): Promise<void>;
  output(): string;
}

/**
 * Starts `ferry worker --name <name>` against a server's database and data dir (a shared
 * staging area, as on one machine), and waits until it runs tasks. Throws with its output when
 * it exits first (e.g. it refuses the database).
 */
export async function startWorker(
  server: TestServer,
  name: string,
  options: { args?: string[]; env?: Record<string, string> } = {},
): Promise<TestWorker> {
  const child = spawnFerry(['worker', '--name', name, ...(options.args ?? [])], {
    FERRY_DATA_DIR: server.dataDir,
    FERRY_DATABASE_URL: server.databaseUrl,
    FERRY_LOG_LEVEL: 'warn',
    ...options.env,
  });
  let log = '';
  child.stdout!.on('data', (d: Buffer) => (log += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (log += d.toString()));
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const deadline = Date.now() + 90_000;
  while (!log.includes('running tasks')) {
    if (child.exitCode !== null) throw new Error(`ferry worker exited early (${child.exitCode}):\n${log}`);
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`ferry worker did not start:\n${log}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    name,
    kill: (signal = 'SIGKILL') => void child.kill(signal),
    exited: () => exit,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exit;
      clearTimeout(timer);
    },
    output: () => log,
  };
}
