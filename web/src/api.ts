// The Cloudreve v4 face of Ferry, as the web app uses it. The access token lives in memory only;
// the refresh token in localStorage, so a reload signs in again without the password. A `401`
// answer triggers one refresh (shared by concurrent calls) and a retry.

export interface Envelope<T> {
  code: number;
  data?: T;
  msg: string;
  aggregated_error?: Record<string, { code: number; msg: string }>;
}

export interface User {
  id: string;
  email: string;
  nickname: string;
  group: { id: string; name: string; permission: string };
}

export interface TokenPair {
  access_token: string;
  refresh_token: string;
  access_expires: string;
  refresh_expires: string;
}

export interface FileItem {
  type: number; // 0 file, 1 folder
  id: string;
  name: string;
  created_at: string;
  updated_at: string;
  size: number;
  path: string;
}

export interface FileList {
  files: FileItem[];
  parent: FileItem;
  pagination: { page: number; page_size: number; next_token?: string };
}

export interface TorrentFile {
  index: number;
  name: string;
  size: number;
  progress: number;
  selected: boolean;
}

export interface DownloadStatus {
  name: string;
  state: string;
  total: number;
  downloaded: number;
  download_speed: number;
  uploaded?: number;
  upload_speed?: number;
  connections?: number;
  peers?: number;
  files?: TorrentFile[];
}

export interface Task {
  id: string;
  status: 'queued' | 'processing' | 'suspending' | 'error' | 'completed' | 'canceled' | string;
  type: string;
  created_at: string;
  updated_at: string;
  error?: string;
  error_history?: string[];
  retry_count?: number;
  resume_time?: number;
  /** Ferry extension: paused by the user (status suspending, no resume time) */
  paused?: boolean;
  duration?: number;
  node?: { id: string; name: string };
  summary?: {
    phase?: string;
    props: { download: DownloadStatus | null; dst: string; src: string; src_str: string; failed?: number };
  };
}

export interface ApiToken {
  id: string;
  name: string;
  prefix: string;
  created_at: string;
  last_used_at: string | null;
  expires_at: string | null;
}

export interface NodeInfo {
  id: string;
  name: string;
  type: string;
  capabilities: string;
}

export class ApiError extends Error {
  readonly code: number;
  readonly details: Record<string, { code: number; msg: string }> | undefined;
  /** What a partly failed batch (40081) did: e.g. the tasks it created. */
  readonly data: unknown;
  constructor(
    code: number,
    message: string,
    details?: Record<string, { code: number; msg: string }>,
    data?: unknown,
  ) {
    super(message || `Error ${code}`);
    this.code = code;
    this.details = details;
    this.data = data;
  }
}

const REFRESH_KEY = 'ferry.refresh_token';
const BASE = '/api/v4';

let accessToken: string | null = null;
let refreshing: Promise<boolean> | null = null;
const signedOutListeners = new Set<() => void>();

export function onSignedOut(listener: () => void): () => void {
  signedOutListeners.add(listener);
  return () => signedOutListeners.delete(listener);
}

function storeTokens(pair: TokenPair): void {
  accessToken = pair.access_token;
  try {
    localStorage.setItem(REFRESH_KEY, pair.refresh_token);
  } catch {
    // storage may be disabled: the session then lasts as long as the page
  }
}

function storedRefresh(): string | null {
  try {
    return localStorage.getItem(REFRESH_KEY);
  } catch {
    return null;
  }
}

function forget(): void {
  accessToken = null;
  try {
    localStorage.removeItem(REFRESH_KEY);
  } catch {
    // nothing to forget
  }
}

/**
 * Exchanges the stored refresh token for a new pair; false when there is none or it was refused.
 * Refresh tokens are single-use: when another tab used the same one first, its replacement is
 * in storage by now, and that one is tried instead of signing out.
 */
export function refreshSession(): Promise<boolean> {
  if (refreshing) return refreshing;
  const token = storedRefresh();
  if (!token) return Promise.resolve(false);
  refreshing = (async () => {
    try {
      for (let attempt = 0, current = token; attempt < 2; attempt++) {
        const res = await fetch(`${BASE}/session/token/refresh`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ refresh_token: current }),
        });
        const body = (await res.json()) as Envelope<TokenPair>;
        if (body.code === 0 && body.data) {
          storeTokens(body.data);
          return true;
        }
        const newer = storedRefresh();
        if (!newer || newer === current) break;
        current = newer;
      }
      forget();
      return false;
    } catch {
      return false;
    } finally {
      refreshing = null;
    }
  })();
  return refreshing;
}

export function authHeader(): Record<string, string> {
  return accessToken ? { authorization: `Bearer ${accessToken}` } : {};
}

function signedOut(): void {
  forget();
  for (const l of signedOutListeners) l();
}

/** One JSON call in the Cloudreve envelope; throws ApiError on a non-zero code. */
export async function api<T>(method: string, path: string, body?: unknown, retried = false): Promise<T> {
  const headers: Record<string, string> = { ...authHeader() };
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(`${BASE}${path}`, {
    method,
    headers,
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  let envelope: Envelope<T>;
  try {
    envelope = (await res.json()) as Envelope<T>;
  } catch {
    throw new ApiError(res.status, `Unexpected answer (HTTP ${res.status})`);
  }
  if (envelope.code === 401 && !retried) {
    if (await refreshSession()) return api<T>(method, path, body, true);
    signedOut();
  }
  if (envelope.code !== 0)
    throw new ApiError(envelope.code, envelope.msg, envelope.aggregated_error, envelope.data);
  return envelope.data as T;
}

export async function signIn(email: string, password: string): Promise<User> {
  const res = await fetch(`${BASE}/session/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ email, password }),
  });
  const body = (await res.json()) as Envelope<{ user: User; token: TokenPair }>;
  if (body.code !== 0 || !body.data) throw new ApiError(body.code, body.msg);
  storeTokens(body.data.token);
  return body.data.user;
}

export async function signOut(): Promise<void> {
  const token = storedRefresh();
  if (token) {
    await fetch(`${BASE}/session/token`, {
      method: 'DELETE',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ refresh_token: token }),
    }).catch(() => undefined);
  }
  signedOut();
}

/** Restores a session from the stored refresh token (page load). */
export async function resume(): Promise<User | null> {
  if (!(await refreshSession())) return null;
  try {
    return await api<User>('GET', '/user/me');
  } catch {
    return null;
  }
}

// ---- paths: the drive's cloudreve://my URIs <-> segment lists

export function uriOf(segments: readonly string[]): string {
  return segments.length === 0
    ? 'cloudreve://my'
    : 'cloudreve://my/' + segments.map(encodeURIComponent).join('/');
}

export function segmentsOf(uri: string): string[] {
  const rest = uri.replace(/^cloudreve:\/\/[^/]*/, '');
  return rest
    .split('/')
    .filter((s) => s !== '')
    .map((s) => {
      try {
        return decodeURIComponent(s);
      } catch {
        return s;
      }
    });
}

/** Decodes Cloudreve's base64 boolset and tells whether bit `n` is set. */
export function hasPermission(boolset: string, n: number): boolean {
  try {
    const bytes = atob(boolset);
    const byte = bytes.charCodeAt(n >> 3);
    return Number.isFinite(byte) && (byte & (1 << (n & 7))) !== 0;
  } catch {
    return false;
  }
}

export const PERMISSION = { admin: 0, archiveDownload: 4, remoteDownload: 9, selectNode: 13 } as const;

// ---- uploads: an upload session, then each chunk with progress (XMLHttpRequest reports upload progress)

export async function uploadFile(
  folder: readonly string[],
  file: File,
  onProgress: (sent: number) => void,
  signal?: AbortSignal,
): Promise<string> {
  const uri = uriOf([...folder, file.name]);
  const session = await api<{ session_id: string; chunk_size: number; uri: string }>('PUT', '/file/upload', {
    uri,
    size: file.size,
    last_modified: file.lastModified,
    mime_type: file.type || undefined,
  });
  const chunk = session.chunk_size || file.size;
  const count = Math.max(1, Math.ceil(file.size / (chunk || 1)));
  for (let i = 0; i < count; i++) {
    const part = file.slice(i * chunk, Math.min(file.size, (i + 1) * chunk));
    const base = i * chunk;
    await sendChunk(session.session_id, i, part, (loaded) => onProgress(base + loaded), signal);
  }
  onProgress(file.size);
  return session.uri || uri;
}

function sendChunk(
  sessionId: string,
  index: number,
  part: Blob,
  onProgress: (loaded: number) => void,
  signal?: AbortSignal,
  retried = false,
): Promise<void> {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('POST', `${BASE}/file/upload/${encodeURIComponent(sessionId)}/${index}`);
    const auth = authHeader().authorization;
    if (auth) xhr.setRequestHeader('authorization', auth);
    xhr.setRequestHeader('content-type', 'application/octet-stream');
    xhr.upload.onprogress = (e) => onProgress(e.loaded);
    xhr.onerror = () => reject(new ApiError(0, 'Network error while uploading'));
    xhr.onabort = () => reject(new ApiError(0, 'Upload canceled'));
    xhr.onload = () => {
      let body: Envelope<unknown>;
      try {
        body = JSON.parse(xhr.responseText) as Envelope<unknown>;
      } catch {
        reject(new ApiError(xhr.status, `Unexpected answer (HTTP ${xhr.status})`));
        return;
      }
      if (body.code === 401 && !retried) {
        refreshSession().then(
          (ok) =>
            ok
              ? sendChunk(sessionId, index, part, onProgress, signal, true).then(resolve, reject)
              : reject(new ApiError(401, body.msg)),
          reject,
        );
        return;
      }
      if (body.code !== 0) reject(new ApiError(body.code, body.msg));
      else resolve();
    };
    signal?.addEventListener('abort', () => xhr.abort(), { once: true });
    xhr.send(part);
  });
}

// ---- the task event stream: SSE over fetch (EventSource cannot send the Bearer header)

export interface EventStreamHandle {
  close(): void;
}

/**
 * Follows GET /workflow/events, calling `onTask` for each `task` event and `onState` when the
 * connection goes up or down. Reconnects with exponential backoff (1 s … 30 s, with jitter) and
 * refreshes the session when the server answers 401.
 */
export function followTaskEvents(
  onTask: (task: Task) => void,
  onState: (connected: boolean) => void,
): EventStreamHandle {
  let closed = false;
  let controller: AbortController | null = null;
  let attempt = 0;
  let timer: ReturnType<typeof setTimeout> | undefined;

  const schedule = () => {
    if (closed) return;
    const delay = Math.min(30_000, 1000 * 2 ** Math.min(attempt, 5)) * (0.75 + Math.random() * 0.5);
    attempt++;
    timer = setTimeout(() => void connect(), delay);
  };

  const connect = async () => {
    if (closed) return;
    controller = new AbortController();
    try {
      const res = await fetch(`${BASE}/workflow/events`, {
        headers: { ...authHeader(), accept: 'text/event-stream' },
        signal: controller.signal,
        cache: 'no-store',
      });
      const type = res.headers.get('content-type') ?? '';
      if (!type.startsWith('text/event-stream') || !res.body) {
        // An envelope instead of a stream: most likely an expired access token.
        const body = (await res.json().catch(() => null)) as Envelope<unknown> | null;
        if (body?.code === 401) {
          if (await refreshSession()) {
            void connect();
            return;
          }
          signedOut();
          return;
        }
        throw new Error(body?.msg ?? `HTTP ${res.status}`);
      }
      attempt = 0;
      onState(true);
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end: number;
        while ((end = buffer.search(/\r?\n\r?\n/)) >= 0) {
          const raw = buffer.slice(0, end);
          buffer = buffer.slice(end).replace(/^\r?\n\r?\n/, '');
          let event = 'message';
          const data: string[] = [];
          for (const line of raw.split(/\r?\n/)) {
            if (line.startsWith(':')) continue;
            const colon = line.indexOf(':');
            const field = colon < 0 ? line : line.slice(0, colon);
            const val = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
            if (field === 'event') event = val;
            else if (field === 'data') data.push(val);
          }
          if (event === 'task' && data.length) {
            try {
              onTask(JSON.parse(data.join('\n')) as Task);
            } catch {
              // a malformed event is skipped
            }
          }
        }
      }
      onState(false);
      schedule();
    } catch {
      if (closed) return;
      onState(false);
      schedule();
    }
  };

  void connect();
  return {
    close() {
      closed = true;
      clearTimeout(timer);
      controller?.abort();
    },
  };
}
