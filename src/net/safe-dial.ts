// Safe outbound dialing: every host a download touches is checked against the OutboundPolicy,
// resolved once, and pinned, so the socket can only ever connect to an address that was checked
// (no DNS-rebinding window between check and connect). Redirects are followed by hand, each hop
// re-checked. Literal-IP URLs never reach DNS, so they are checked here directly.

import { lookup as dnsLookup } from 'node:dns/promises';
import type { LookupAddress } from 'node:dns';
import type { IncomingHttpHeaders } from 'node:http';
import { Agent, type Dispatcher } from 'undici';
import { DownloadFailure } from '../downloaders/port.ts';
import { canonicalIp, isIpLiteral, normalizeHostname, type OutboundPolicy } from './address-policy.ts';

export interface ResolvedAddress {
  address: string;
  family: 4 | 6;
}

/** Resolves a host name to all of its addresses (tests inject a fake one). */
export type Resolver = (hostname: string) => Promise<ResolvedAddress[]>;

export const systemResolver: Resolver = async (hostname) => {
  const all = await dnsLookup(hostname, { all: true, order: 'verbatim' });
  return all.map((a) => ({ address: a.address, family: a.family === 6 ? 6 : 4 }));
};

/** Parses a user-supplied source URL: http or https only, with a host, no credentials-only junk. */
export function parseSourceUrl(raw: string, base?: URL): URL {
  let url: URL;
  try {
    url = base === undefined ? new URL(raw) : new URL(raw, base);
  } catch (cause) {
    throw new DownloadFailure('INVALID_URL', `not a valid URL: ${truncate(raw)}`, { cause });
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new DownloadFailure('INVALID_URL', `unsupported URL scheme ${url.protocol} (only http and https)`);
  }
  if (url.hostname === '') throw new DownloadFailure('INVALID_URL', `URL has no host: ${truncate(raw)}`);
  return url;
}

function truncate(s: string): string {
  return s.length > 200 ? `${s.slice(0, 200)}…` : s;
}

export interface SafeDialerOptions {
  policy: OutboundPolicy;
  /** Sockets per origin (segmented downloads use one per connection). */
  connections?: number;
  resolve?: Resolver;
  /** Redirect hops followed per request; default 10. */
  maxRedirects?: number;
  connectTimeoutMs?: number;
  /** Certificates trusted for https (Node's roots plus `--ca-file`); absent = Node's defaults. */
  ca?: readonly string[];
}

export interface SafeRequestOptions {
  headers: Record<string, string>;
  signal: AbortSignal;
  method?: 'GET' | 'HEAD';
}

export interface SafeResponse {
  /** The URL that finally answered, after redirects. */
  url: URL;
  statusCode: number;
  headers: IncomingHttpHeaders;
  body: Dispatcher.ResponseData['body'];
}

/** Marks the error the pinned lookup raises for a host nobody checked; never expected in practice. */
export class UncheckedHostError extends Error {
  readonly code = 'FERRY_UNCHECKED_HOST';
}

const REDIRECTS = new Set([301, 302, 303, 307, 308]);
const CREDENTIAL_HEADERS = new Set(['authorization', 'cookie', 'proxy-authorization']);

/**
 * One dialer per download job: an undici Agent whose DNS lookup only answers from the table of
 * addresses this dialer checked, plus a redirect-following `request`.
 */
export class SafeDialer {
  readonly agent: Agent;
  readonly #policy: OutboundPolicy;
  readonly #resolve: Resolver;
  readonly #maxRedirects: number;
  readonly #connectTimeoutMs: number;
  readonly #ca: readonly string[] | undefined;
  readonly #pinned = new Map<string, ResolvedAddress[]>();
  readonly #pending = new Map<string, Promise<void>>();

  constructor(options: SafeDialerOptions) {
    this.#policy = options.policy;
    this.#resolve = options.resolve ?? systemResolver;
    this.#maxRedirects = options.maxRedirects ?? 10;
    this.#connectTimeoutMs = options.connectTimeoutMs ?? 15_000;
    this.#ca = options.ca;
    const pinned = this.#pinned;
    this.agent = new Agent({
      connections: options.connections ?? 1,
      pipelining: 1,
      allowH2: false, // one TCP connection per segment is the whole point
      headersTimeout: 0, // the engine runs its own stall watchdog
      bodyTimeout: 0,
      keepAliveTimeout: 10_000,
      connect: {
        timeout: this.#connectTimeoutMs,
        ...(options.ca === undefined ? {} : { ca: [...options.ca] }),
        lookup: (
          hostname: string,
          opts: { all?: boolean },
          cb: (err: Error | null, address: string | LookupAddress[], family?: number) => void,
        ) => {
          const addrs = pinned.get(normalizeHostname(hostname));
          if (addrs === undefined || addrs.length === 0) {
            cb(new UncheckedHostError(`refusing to connect to unchecked host ${hostname}`), '', 4);
            return;
          }
          if (opts.all === true) cb(null, addrs);
          else cb(null, addrs[0]?.address ?? '', addrs[0]?.family ?? 4);
        },
      },
    });
  }

  /**
   * Checks a URL's scheme and host against the policy and, for names, resolves and pins the
   * addresses that pass. Throws DownloadFailure INVALID_URL / SOURCE_BLOCKED.
   */
  async checkUrl(url: URL): Promise<void> {
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      throw new DownloadFailure(
        'INVALID_URL',
        `unsupported URL scheme ${url.protocol} (only http and https)`,
      );
    }
    const host = normalizeHostname(url.hostname);
    const decision = this.#policy.checkHost(host);
    if (!decision.ok) throw new DownloadFailure('SOURCE_BLOCKED', `source refused: ${decision.reason}`);
    if (isIpLiteral(host)) {
      // WHATWG URL already normalised odd IPv4 spellings; canonicalIp re-checks anyway.
      const ip = canonicalIp(host) ?? host;
      const d = this.#policy.checkAddress(ip);
      if (!d.ok) throw new DownloadFailure('SOURCE_BLOCKED', `source refused: ${d.reason}`);
      return;
    }
    if (this.#pinned.has(host)) return;
    let pending = this.#pending.get(host);
    if (pending === undefined) {
      pending = this.#pin(host);
      this.#pending.set(host, pending);
      pending.catch(() => this.#pending.delete(host));
    }
    await pending;
  }

  /**
   * The addresses a connection to `url` may use: checks the URL like `checkUrl` (resolving and
   * pinning a name once), then returns the pinned addresses that passed the policy, or the
   * literal IP itself. Callers that open their own sockets must connect to these and nothing else.
   */
  async addressesFor(url: URL): Promise<ResolvedAddress[]> {
    await this.checkUrl(url);
    const host = normalizeHostname(url.hostname);
    if (isIpLiteral(host)) {
      const ip = canonicalIp(host) ?? host;
      return [{ address: ip, family: ip.includes(':') ? 6 : 4 }];
    }
    const addrs = this.#pinned.get(host);
    if (addrs === undefined || addrs.length === 0) {
      throw new UncheckedHostError(`refusing to connect to unchecked host ${host}`);
    }
    return addrs;
  }

  /** Connect timeout for sockets opened on behalf of this dialer, ms. */
  get connectTimeoutMs(): number {
    return this.#connectTimeoutMs;
  }

  /** Certificates sockets opened on behalf of this dialer trust (undefined: Node's defaults). */
  get ca(): readonly string[] | undefined {
    return this.#ca;
  }

  async #pin(host: string): Promise<void> {
    let addrs: ResolvedAddress[];
    try {
      addrs = await this.#resolve(host);
    } catch (cause) {
      const code = (cause as { code?: string }).code;
      if (code === 'ENOTFOUND' || code === 'ENODATA') {
        throw new DownloadFailure('NETWORK', `host ${host} not found (DNS)`, { cause });
      }
      throw new DownloadFailure('NETWORK', `DNS lookup for ${host} failed: ${String(code ?? cause)}`, {
        retryable: true,
        cause,
      });
    }
    if (addrs.length === 0) throw new DownloadFailure('NETWORK', `host ${host} has no addresses`);
    // Keep only the addresses that pass; connecting only to those defeats "one public, one
    // private" answers. Refuse when none passes.
    const passed: ResolvedAddress[] = [];
    const reasons: string[] = [];
    for (const a of addrs) {
      const d = this.#policy.checkResolvedAddress(host, a.address);
      if (d.ok) passed.push(a);
      else reasons.push(d.reason);
    }
    if (passed.length === 0) {
      throw new DownloadFailure('SOURCE_BLOCKED', `source refused: ${reasons[0] ?? `host ${host}`}`);
    }
    this.#pinned.set(host, passed);
  }

  /**
   * GET (or HEAD) `url` through the pinned agent, following up to maxRedirects redirects by hand
   * (each hop checked; credentials dropped when the origin changes). The caller owns the body.
   */
  async request(start: URL, options: SafeRequestOptions): Promise<SafeResponse> {
    let url = start;
    let headers = { ...options.headers };
    for (let hop = 0; ; hop++) {
      await this.checkUrl(url);
      const res = await this.agent.request({
        origin: url.origin,
        path: `${url.pathname}${url.search}`,
        method: options.method ?? 'GET',
        headers,
        signal: options.signal,
      });
      const location = res.headers.location;
      if (!REDIRECTS.has(res.statusCode) || location === undefined) {
        return { url, statusCode: res.statusCode, headers: res.headers, body: res.body };
      }
      res.body.dump({ limit: 64 * 1024 }).catch(() => undefined);
      if (hop >= this.#maxRedirects) {
        throw new DownloadFailure('HTTP_ERROR', `too many redirects (more than ${this.#maxRedirects})`);
      }
      const next = parseSourceUrl(Array.isArray(location) ? (location[0] ?? '') : location, url);
      if (next.origin !== url.origin) {
        headers = Object.fromEntries(
          Object.entries(headers).filter(([k]) => !CREDENTIAL_HEADERS.has(k.toLowerCase())),
        );
      }
      url = next;
    }
  }

  async close(): Promise<void> {
    await this.agent.destroy();
  }
}
