// A small client for the qBittorrent Web API v2 (cookie SID from /api/v2/auth/login), and a
// helper that runs a private qbittorrent-nox on loopback for tests.
//
// `QbtUnreachableError` means no usable answer (connection refused, timeout, 5xx, login refused
// — the last is an operator problem but still "the daemon cannot be used"); `QbtApiError` is a
// definite refusal of one request.

import { spawn, type ChildProcess } from 'node:child_process';
import { pbkdf2Sync, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdir, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

export class QbtUnreachableError extends Error {}

export class QbtApiError extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}

export interface QbtTorrentInfo {
  hash: string;
  name: string;
  state: string;
  size: number;
  total_size: number;
  progress: number;
  dlspeed: number;
  upspeed: number;
  uploaded: number;
  downloaded: number;
  num_seeds: number;
  num_leechs: number;
  save_path: string;
  content_path?: string;
}

export interface QbtFile {
  index?: number;
  name: string;
  size: number;
  progress: number;
  priority: number;
  piece_range?: [number, number];
}

export interface QbtApiOptions {
  /** Web UI base URL, e.g. http://127.0.0.1:8080 */
  url: string;
  username?: string;
  password?: string;
  /** Per-request deadline. Default 10 s. */
  timeoutMs?: number;
}

export class QbtApi {
  readonly base: string;
  readonly #username: string;
  readonly #password: string;
  readonly #timeoutMs: number;
  #sid: string | null = null;
  #login: Promise<void> | null = null;

  constructor(options: QbtApiOptions) {
    this.base = options.url.replace(/\/+$/, '');
    this.#username = options.username ?? 'admin';
    this.#password = options.password ?? '';
    this.#timeoutMs = options.timeoutMs ?? 10_000;
  }

  async #fetch(path: string, init: RequestInit): Promise<Response> {
    const timeout = AbortSignal.timeout(this.#timeoutMs);
    const headers = new Headers(init.headers);
    if (this.#sid !== null) headers.set('cookie', `SID=${this.#sid}`);
    // qBittorrent's CSRF check compares Referer/Origin with the host when they are present.
    headers.set('referer', this.base);
    try {
      const res = await fetch(`${this.base}${path}`, { ...init, headers, signal: timeout });
      if (res.status >= 500) {
        await res.body?.cancel();
        throw new QbtUnreachableError(`qBittorrent at ${this.base} answered HTTP ${res.status}`);
      }
      return res;
    } catch (err) {
      if (err instanceof QbtUnreachableError) throw err;
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      const why = timeout.aborted
        ? `no answer within ${this.#timeoutMs} ms`
        : (cause?.code ?? cause?.message ?? String(err));
      throw new QbtUnreachableError(`qBittorrent at ${this.base} is unreachable (${why})`, { cause: err });
    }
  }

  async login(): Promise<void> {
    this.#login ??= (async () => {
      try {
        const res = await this.#fetch('/api/v2/auth/login', {
          method: 'POST',
          body: new URLSearchParams({ username: this.#username, password: this.#password }),
        });
        const text = await res.text();
        const cookie = res.headers.get('set-cookie') ?? '';
        const m = /SID=([^;]+)/.exec(cookie);
        if (res.status === 403) {
          throw new QbtUnreachableError(
            `qBittorrent at ${this.base} banned this client (too many failed logins)`,
          );
        }
        if (m?.[1] !== undefined) this.#sid = m[1];
        else if (!/^ok/i.test(text)) {
          throw new QbtUnreachableError(
            `qBittorrent at ${this.base} refused the login (${text.trim() || res.status})`,
          );
        }
      } finally {
        this.#login = null;
      }
    })();
    return this.#login;
  }

  /** A request; logs in (again) when qBittorrent answers 403. */
  async request(path: string, init: RequestInit = {}): Promise<Response> {
    let res = await this.#fetch(path, init);
    if (res.status === 403) {
      await res.body?.cancel();
      await this.login();
      res = await this.#fetch(path, init);
      if (res.status === 403) {
        await res.body?.cancel();
        throw new QbtUnreachableError(`qBittorrent at ${this.base} refused access (403) after login`);
      }
    }
    return res;
  }

  async #json<T>(path: string): Promise<T> {
    const res = await this.request(path);
    if (!res.ok)
      throw new QbtApiError(res.status, `${path}: HTTP ${res.status} ${(await res.text()).trim()}`);
    return (await res.json()) as T;
  }

  async #post(path: string, body: URLSearchParams | FormData): Promise<string> {
    const res = await this.request(path, { method: 'POST', body });
    const text = await res.text();
    if (!res.ok) throw new QbtApiError(res.status, `${path}: HTTP ${res.status} ${text.trim()}`);
    return text;
  }

  async version(): Promise<string> {
    const res = await this.request('/api/v2/app/version');
    if (!res.ok) throw new QbtApiError(res.status, `app/version: HTTP ${res.status}`);
    return (await res.text()).trim();
  }

  /** Adds a magnet (`urls`) or a .torrent (`torrent`). qBittorrent answers "Fails." for duplicates. */
  async add(source: { urls: string } | { torrent: Buffer }, options: Record<string, string>): Promise<void> {
    const form = new FormData();
    if ('urls' in source) form.append('urls', source.urls);
    else form.append('torrents', new Blob([new Uint8Array(source.torrent)]), 'source.torrent');
    for (const [k, v] of Object.entries(options)) form.append(k, v);
    const text = await this.#post('/api/v2/torrents/add', form);
    if (!/^ok/i.test(text.trim()))
      throw new QbtApiError(200, `qBittorrent refused the torrent (${text.trim()})`);
  }

  async info(hash: string): Promise<QbtTorrentInfo | null> {
    const list = await this.#json<QbtTorrentInfo[]>(`/api/v2/torrents/info?hashes=${hash}`);
    return list[0] ?? null;
  }

  files(hash: string): Promise<QbtFile[]> {
    return this.#json<QbtFile[]>(`/api/v2/torrents/files?hash=${hash}`);
  }

  pieceStates(hash: string): Promise<number[]> {
    return this.#json<number[]>(`/api/v2/torrents/pieceStates?hash=${hash}`);
  }

  async filePrio(hash: string, ids: number[], priority: number): Promise<void> {
    if (ids.length === 0) return;
    await this.#post(
      '/api/v2/torrents/filePrio',
      new URLSearchParams({ hash, id: ids.join('|'), priority: String(priority) }),
    );
  }

  async pause(hash: string): Promise<void> {
    await this.#post('/api/v2/torrents/pause', new URLSearchParams({ hashes: hash }));
  }

  async resume(hash: string): Promise<void> {
    await this.#post('/api/v2/torrents/resume', new URLSearchParams({ hashes: hash }));
  }

  async setShareLimits(hash: string, ratioLimit: number, seedingTimeLimitMinutes: number): Promise<void> {
    await this.#post(
      '/api/v2/torrents/setShareLimits',
      new URLSearchParams({
        hashes: hash,
        ratioLimit: String(ratioLimit),
        seedingTimeLimit: String(seedingTimeLimitMinutes),
        inactiveSeedingTimeLimit: '-2',
      }),
    );
  }

  async setDownloadLimit(hash: string, bytesPerSecond: number): Promise<void> {
    await this.#post(
      '/api/v2/torrents/setDownloadLimit',
      new URLSearchParams({ hashes: hash, limit: String(bytesPerSecond) }),
    );
  }

  async delete(hash: string, deleteFiles: boolean): Promise<void> {
    await this.#post(
      '/api/v2/torrents/delete',
      new URLSearchParams({ hashes: hash, deleteFiles: String(deleteFiles) }),
    );
  }

  /** Every torrent's hash (tests). */
  async hashes(): Promise<string[]> {
    const list = await this.#json<QbtTorrentInfo[]>('/api/v2/torrents/info');
    return list.map((t) => t.hash);
  }
}

// ---------------------------------------------------------------------------------------------
// A private daemon

/** qBittorrent's `WebUI\Password_PBKDF2` value for a password (PBKDF2-SHA512, 100000 rounds). */
export function qbittorrentPasswordHash(password: string, salt: Buffer = randomBytes(16)): string {
  const hash = pbkdf2Sync(password, salt, 100_000, 64, 'sha512');
  return `@ByteArray(${salt.toString('base64')}:${hash.toString('base64')})`;
}

export interface QbittorrentDaemon {
  url: string;
  username: string;
  password: string;
  process: ChildProcess;
  stop(): Promise<void>;
}

export interface StartQbittorrentOptions {
  profileDir: string;
  /** Web UI port on 127.0.0.1; default a free one. */
  port?: number;
  /** BitTorrent listen port; default a free one. */
  listenPort?: number;
  username?: string;
  password?: string;
  binary?: string;
}

async function freePort(): Promise<number> {
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
 * Writes a qBittorrent.conf (Web UI on 127.0.0.1 with a known password, BitTorrent on the
 * loopback interface only, DHT / PeX / LSD / UPnP / peer-country lookups off, no queueing, legal
 * notice accepted) and runs `qbittorrent-nox --profile=<dir>` until its Web API answers.
 */
export async function startQbittorrentDaemon(options: StartQbittorrentOptions): Promise<QbittorrentDaemon> {
  const port = options.port ?? (await freePort());
  const listenPort = options.listenPort ?? (await freePort());
  const username = options.username ?? 'admin';
  const password = options.password ?? randomBytes(12).toString('base64url');
  const configDir = join(options.profileDir, 'qBittorrent', 'config');
  const downloads = join(options.profileDir, 'downloads');
  await mkdir(configDir, { recursive: true });
  await mkdir(downloads, { recursive: true });
  const conf = [
    '[LegalNotice]',
    'Accepted=true',
    '',
    '[BitTorrent]',
    'Session\\DHTEnabled=false',
    'Session\\PeXEnabled=false',
    'Session\\LSDEnabled=false',
    `Session\\Port=${listenPort}`,
    'Session\\Interface=lo',
    'Session\\InterfaceName=lo',
    'Session\\InterfaceAddress=127.0.0.1',
    'Session\\QueueingSystemEnabled=false',
    'Session\\AnonymousModeEnabled=false',
    `Session\\DefaultSavePath=${downloads}`,
    'Session\\TempPathEnabled=false',
    'Session\\AddExtensionToIncompleteFiles=false',
    'Session\\AddTrackersEnabled=false',
    'Session\\IgnoreLimitsOnLAN=true',
    'Session\\DiskCacheSize=0',
    'Session\\Encryption=0',
    '',
    '[Network]',
    'PortForwardingEnabled=false',
    '',
    '[Preferences]',
    'WebUI\\Enabled=true',
    'WebUI\\Address=127.0.0.1',
    `WebUI\\Port=${port}`,
    'WebUI\\LocalHostAuth=true',
    `WebUI\\Username=${username}`,
    `WebUI\\Password_PBKDF2="${qbittorrentPasswordHash(password)}"`,
    'WebUI\\CSRFProtection=false',
    'WebUI\\HostHeaderValidation=false',
    'WebUI\\UseUPnP=false',
    'Connection\\UPnP=false',
    'Connection\\ResolvePeerCountries=false',
    'General\\UseRandomPort=false',
    'Downloads\\SavePath=' + downloads,
    '',
    '[Application]',
    'FileLogger\\Enabled=false',
    '',
  ].join('\n');
  await writeFile(join(configDir, 'qBittorrent.conf'), conf);
  const child = spawn(
    options.binary ?? 'qbittorrent-nox',
    [`--profile=${options.profileDir}`, `--webui-port=${port}`],
    { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, QBT_LEGAL_NOTICE: '1' } },
  );
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-4000);
  });
  const exited = new Promise<never>((_, reject) => {
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`qbittorrent-nox exited with ${code}: ${stderr}`)));
  });
  exited.catch(() => undefined);
  const stop = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const done = once(child, 'exit');
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    await done;
    clearTimeout(timer);
  };
  const url = `http://127.0.0.1:${port}`;
  const api = new QbtApi({ url, username, password, timeoutMs: 1000 });
  const deadline = Date.now() + 20_000;
  try {
    for (;;) {
      const ready = await Promise.race([
        api.version().then(
          () => true,
          () => false,
        ),
        exited,
      ]);
      if (ready) break;
      if (Date.now() > deadline) throw new Error(`qbittorrent-nox did not answer on ${url}: ${stderr}`);
      await sleep(100);
    }
  } catch (err) {
    await stop();
    throw err;
  }
  return { url, username, password, process: child, stop };
}
