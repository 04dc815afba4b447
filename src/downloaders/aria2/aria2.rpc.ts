// A small JSON-RPC 2.0 client for an aria2 daemon (HTTP POST to http://host:port/jsonrpc), and a
// helper that runs a private aria2c on loopback (tests, and Ferry's "managed aria2" mode).
//
// Errors come in two kinds: `Aria2RpcError` is an answer from aria2 (the daemon is up and said
// no: unknown GID, bad option...); `Aria2UnreachableError` means no answer at all (connection
// refused, timeout, not JSON-RPC), which callers retry with backoff and eventually report as a
// retryable DAEMON failure.

import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdir } from 'node:fs/promises';
import { createServer } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

/** aria2 answered with a JSON-RPC error. */
export class Aria2RpcError extends Error {
  readonly code: number;
  constructor(code: number, message: string) {
    super(message);
    this.code = code;
  }

  /** aria2 says the GID does not exist (removed, or the daemon restarted without a session). */
  get notFound(): boolean {
    return /not found/i.test(this.message);
  }
}

/** No usable answer from the daemon. */
export class Aria2UnreachableError extends Error {}

export interface Aria2File {
  index: string;
  path: string;
  length: string;
  completedLength: string;
  selected: string;
  uris?: Array<{ uri: string; status: string }>;
}

export interface Aria2Status {
  gid: string;
  status: 'active' | 'waiting' | 'paused' | 'error' | 'complete' | 'removed';
  totalLength: string;
  completedLength: string;
  uploadLength?: string;
  downloadSpeed: string;
  uploadSpeed?: string;
  connections?: string;
  numSeeders?: string;
  seeder?: string;
  bitfield?: string;
  numPieces?: string;
  pieceLength?: string;
  infoHash?: string;
  errorCode?: string;
  errorMessage?: string;
  followedBy?: string[];
  following?: string;
  belongsTo?: string;
  dir?: string;
  files?: Aria2File[];
  verifiedLength?: string;
  verifyIntegrityPending?: string;
  bittorrent?: {
    mode?: 'single' | 'multi';
    info?: { name?: string };
    announceList?: string[][];
  };
}

export interface Aria2RpcOptions {
  /** e.g. http://127.0.0.1:6800/jsonrpc */
  url: string;
  secret?: string;
  /** Per-call deadline. Default 10 s. */
  timeoutMs?: number;
}

let nextId = 1;

export class Aria2Rpc {
  readonly url: string;
  readonly #secret: string | undefined;
  readonly #timeoutMs: number;

  constructor(options: Aria2RpcOptions) {
    this.url = options.url;
    this.#secret = options.secret === '' ? undefined : options.secret;
    this.#timeoutMs = options.timeoutMs ?? 10_000;
  }

  /** Calls `method` (e.g. 'aria2.tellStatus'); the secret token goes first. */
  async call<T>(method: string, params: unknown[] = [], signal?: AbortSignal): Promise<T> {
    const all = this.#secret === undefined ? params : [`token:${this.#secret}`, ...params];
    const id = String(nextId++);
    const timeout = AbortSignal.timeout(this.#timeoutMs);
    let res: Response;
    try {
      res = await fetch(this.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ jsonrpc: '2.0', id, method, params: all }),
        signal: signal === undefined ? timeout : AbortSignal.any([signal, timeout]),
      });
    } catch (err) {
      if (signal?.aborted === true) throw err;
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      const why = timeout.aborted
        ? `no answer within ${this.#timeoutMs} ms`
        : (cause?.code ?? cause?.message ?? String(err));
      throw new Aria2UnreachableError(`aria2 at ${this.url} is unreachable (${why})`, { cause: err });
    }
    let body: { result?: T; error?: { code: number; message: string } };
    try {
      body = (await res.json()) as typeof body;
    } catch (err) {
      throw new Aria2UnreachableError(`aria2 at ${this.url} answered HTTP ${res.status} without JSON-RPC`, {
        cause: err,
      });
    }
    if (body.error !== undefined) {
      if (/unauthorized/i.test(body.error.message)) {
        // A wrong secret is an operator problem, not a flaky link: still a daemon failure.
        throw new Aria2UnreachableError(`aria2 at ${this.url} refused the RPC secret (Unauthorized)`);
      }
      throw new Aria2RpcError(body.error.code, body.error.message);
    }
    return body.result as T;
  }

  tellStatus(gid: string, keys?: string[]): Promise<Aria2Status> {
    return this.call<Aria2Status>('aria2.tellStatus', keys === undefined ? [gid] : [gid, keys]);
  }
}

// ---------------------------------------------------------------------------------------------
// A private daemon

export interface Aria2Daemon {
  rpcUrl: string;
  secret: string;
  /** The BitTorrent listen port the daemon was given. */
  listenPort: number;
  process: ChildProcess;
  stop(): Promise<void>;
}

export interface StartAria2Options {
  /** Working folder (default download dir of the daemon). Created if missing. */
  dir: string;
  /** RPC port on 127.0.0.1; default a free one. */
  port?: number;
  secret: string;
  /** BitTorrent listen port; default a free one. */
  listenPort?: number;
  /** More aria2c arguments (tests add `--interface=127.0.0.1`). */
  extraArgs?: string[];
  /** aria2c binary; default `aria2c` on PATH. */
  binary?: string;
}

/** A TCP port that was free on 127.0.0.1 a moment ago. */
export async function freeLoopbackPort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  server.close();
  await once(server, 'close');
  return port;
}

/**
 * Spawns `aria2c` with JSON-RPC on 127.0.0.1 only, DHT / LPD / PEX off, no disk cache (a file
 * handed on as complete must be complete on disk), and waits until it answers. `stop()` ends it
 * (SIGTERM, then SIGKILL after 3 s).
 */
export async function startAria2Daemon(options: StartAria2Options): Promise<Aria2Daemon> {
  await mkdir(options.dir, { recursive: true });
  const port = options.port ?? (await freeLoopbackPort());
  const listenPort = options.listenPort ?? (await freeLoopbackPort());
  const args = [
    '--enable-rpc',
    '--rpc-listen-all=false',
    `--rpc-listen-port=${port}`,
    `--rpc-secret=${options.secret}`,
    '--rpc-max-request-size=32M',
    '--enable-dht=false',
    '--enable-dht6=false',
    '--bt-enable-lpd=false',
    '--enable-peer-exchange=false',
    '--daemon=false',
    '--no-conf=true',
    `--dir=${options.dir}`,
    `--listen-port=${listenPort}`,
    '--disk-cache=0',
    '--file-allocation=none',
    '--max-concurrent-downloads=64',
    '--bt-detach-seed-only=true',
    '--auto-save-interval=0',
    '--summary-interval=0',
    '--console-log-level=warn',
    '--content-disposition-default-utf8=true',
    `--stop-with-process=${process.pid}`,
    ...(options.extraArgs ?? []),
  ];
  const child = spawn(options.binary ?? 'aria2c', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-4000);
  });
  const spawnError = new Promise<never>((_, reject) => {
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`aria2c exited with ${code}: ${stderr}`)));
  });
  spawnError.catch(() => undefined);
  const stop = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = once(child, 'exit');
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
    await exited;
    clearTimeout(timer);
  };
  const rpcUrl = `http://127.0.0.1:${port}/jsonrpc`;
  const rpc = new Aria2Rpc({ url: rpcUrl, secret: options.secret, timeoutMs: 1000 });
  const deadline = Date.now() + 10_000;
  try {
    for (;;) {
      const ready = await Promise.race([
        rpc.call('aria2.getVersion').then(
          () => true,
          () => false,
        ),
        spawnError,
      ]);
      if (ready) break;
      if (Date.now() > deadline) throw new Error(`aria2c did not answer on ${rpcUrl}: ${stderr}`);
      await sleep(50);
    }
  } catch (err) {
    await stop();
    throw err;
  }
  return { rpcUrl, secret: options.secret, listenPort, process: child, stop };
}
