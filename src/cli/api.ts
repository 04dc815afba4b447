// A small client of the Cloudreve face for the `ferry` CLI: JSON calls in the envelope, uploads
// through upload sessions, and the task event stream (SSE) read with fetch.
import { open } from 'node:fs/promises';

export class ClientError extends Error {
  readonly code: number;
  readonly details: Record<string, { code: number; msg: string }> | undefined;
  /** What a partly failed batch (40081) did create. */
  readonly data: unknown;
  constructor(
    message: string,
    code = 0,
    details?: Record<string, { code: number; msg: string }>,
    data?: unknown,
  ) {
    super(message);
    this.code = code;
    this.details = details;
    this.data = data;
  }
}

export interface TaskDto {
  id: string;
  status: string;
  /** Ferry extension: paused by the user */
  paused?: boolean;
  created_at: string;
  updated_at: string;
  error?: string;
  error_history?: string[];
  summary?: {
    phase?: string;
    props: {
      download: null | {
        name: string;
        total: number;
        downloaded: number;
        download_speed: number;
        files?: Array<{ index: number; name: string; size: number; progress: number; selected: boolean }>;
      };
      dst: string;
      src: string;
      src_str: string;
    };
  };
}

interface Envelope<T> {
  code: number;
  data?: T;
  msg: string;
  aggregated_error?: Record<string, { code: number; msg: string }>;
}

export const FINAL_STATUSES = new Set(['completed', 'error', 'canceled']);

export class FerryClient {
  readonly server: string;
  private token: string;

  constructor(server: string, token: string) {
    this.server = server;
    this.token = token;
  }

  setToken(token: string): void {
    this.token = token;
  }

  private headers(extra: Record<string, string> = {}): Record<string, string> {
    return { ...(this.token ? { authorization: `Bearer ${this.token}` } : {}), ...extra };
  }

  async call<T>(method: string, path: string, body?: unknown): Promise<T> {
    let res: Response;
    try {
      res = await fetch(`${this.server}/api/v4${path}`, {
        method,
        headers: this.headers(body !== undefined ? { 'content-type': 'application/json' } : {}),
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      });
    } catch (e) {
      throw new ClientError(`cannot reach ${this.server}: ${(e as Error).message}`);
    }
    let envelope: Envelope<T>;
    try {
      envelope = (await res.json()) as Envelope<T>;
    } catch {
      throw new ClientError(`${this.server} did not answer like a Ferry server (HTTP ${res.status})`);
    }
    if (envelope.code === 401)
      throw new ClientError('not signed in, or the token was revoked: run `ferry login <server>`', 401);
    if (envelope.code !== 0)
      throw new ClientError(
        envelope.msg || `error ${envelope.code}`,
        envelope.code,
        envelope.aggregated_error,
        envelope.data,
      );
    return envelope.data as T;
  }

  /** Uploads a local file into the drive at `uri` (chunked as the server asks); returns the uri. */
  async upload(uri: string, path: string, size: number): Promise<string> {
    const session = await this.call<{ session_id: string; chunk_size: number; uri: string }>(
      'PUT',
      '/file/upload',
      {
        uri,
        size,
      },
    );
    const chunk = session.chunk_size || size;
    const count = Math.max(1, Math.ceil(size / (chunk || 1)));
    const handle = await open(path, 'r');
    try {
      for (let i = 0; i < count; i++) {
        const length = Math.min(chunk, size - i * chunk);
        const buffer = Buffer.alloc(Math.max(0, length));
        if (length > 0) await handle.read(buffer, 0, length, i * chunk);
        const res = await fetch(`${this.server}/api/v4/file/upload/${session.session_id}/${i}`, {
          method: 'POST',
          headers: this.headers({ 'content-type': 'application/octet-stream' }),
          body: buffer,
        });
        const body = (await res.json()) as Envelope<unknown>;
        if (body.code !== 0) throw new ClientError(`upload failed: ${body.msg}`, body.code);
      }
    } finally {
      await handle.close();
    }
    return session.uri || uri;
  }

  /**
   * Follows the task event stream until `signal` aborts, reconnecting with backoff. `onOpen` runs
   * on every (re)connection, once the stream is established.
   */
  async followEvents(
    onTask: (task: TaskDto) => void,
    signal: AbortSignal,
    onOpen: () => Promise<void> | void = () => undefined,
  ): Promise<void> {
    let attempt = 0;
    while (!signal.aborted) {
      try {
        const res = await fetch(`${this.server}/api/v4/workflow/events`, {
          headers: this.headers({ accept: 'text/event-stream' }),
          signal,
        });
        const type = res.headers.get('content-type') ?? '';
        if (!type.startsWith('text/event-stream') || !res.body) {
          const body = (await res.json().catch(() => null)) as Envelope<unknown> | null;
          if (body?.code === 401) throw new ClientError('not signed in: run `ferry login <server>`', 401);
          throw new Error(body?.msg ?? `HTTP ${res.status}`);
        }
        attempt = 0;
        await onOpen();
        const decoder = new TextDecoder();
        let buffer = '';
        for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
          buffer += decoder.decode(chunk, { stream: true });
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
              const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
              if (field === 'event') event = value;
              else if (field === 'data') data.push(value);
            }
            if (event === 'task' && data.length) onTask(JSON.parse(data.join('\n')) as TaskDto);
          }
        }
      } catch (e) {
        if (signal.aborted) return;
        if (e instanceof ClientError) throw e;
      }
      if (signal.aborted) return;
      const delay = Math.min(10_000, 500 * 2 ** Math.min(attempt++, 5));
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, delay);
        signal.addEventListener(
          'abort',
          () => {
            clearTimeout(timer);
            resolve();
          },
          { once: true },
        );
      });
    }
  }
}
