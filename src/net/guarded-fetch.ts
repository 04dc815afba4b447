// The outbound policy for HTTP clients Ferry does not drive itself: the BitTorrent tracker client
// today, webhooks and anything else tomorrow. Every component that opens an HTTP connection on a
// user's behalf and is not the segmented engine (which has SafeDialer) must use `guardedFetch` or
// hand `guardedAgent` to its library as the undici dispatcher. The check sits in the connector,
// so it runs on EVERY socket the agent opens: the first request, each redirect hop that fetch
// follows by itself, and each keep-alive reconnect. A name is resolved once per connect and the
// socket goes to the checked address (no rebinding window); a literal IP is checked as is.

import { isIP } from 'node:net';
import { Agent, buildConnector, Dispatcher1Wrapper, fetch as undiciFetch, type Dispatcher } from 'undici';
import { canonicalIp, isIpLiteral, normalizeHostname, type OutboundPolicy } from './address-policy.ts';
import { systemResolver, type Resolver } from './safe-dial.ts';

/** What a refused connect fails with (fetch wraps it as the `cause` of its TypeError). */
export class OutboundRefusedError extends Error {
  readonly code = 'FERRY_OUTBOUND_REFUSED';
}

export interface GuardedAgentOptions {
  policy: OutboundPolicy;
  resolve?: Resolver;
  connectTimeoutMs?: number;
  /** Sockets per origin. Default 4. */
  connections?: number;
}

/** The address a connection to `hostname` may use, or an OutboundRefusedError. */
export async function checkedAddress(
  policy: OutboundPolicy,
  hostname: string,
  resolve: Resolver = systemResolver,
): Promise<string> {
  const host = normalizeHostname(hostname);
  const decision = policy.checkHost(host);
  if (!decision.ok) throw new OutboundRefusedError(`outbound connection refused: ${decision.reason}`);
  if (isIpLiteral(host)) {
    const ip = canonicalIp(host) ?? host;
    const d = policy.checkAddress(ip);
    if (!d.ok) throw new OutboundRefusedError(`outbound connection refused: ${d.reason}`);
    return ip;
  }
  const addrs = await resolve(host);
  let reason = `host ${host} has no addresses`;
  for (const a of addrs) {
    const d = policy.checkResolvedAddress(host, a.address);
    if (d.ok) return a.address;
    reason = d.reason;
  }
  throw new OutboundRefusedError(`outbound connection refused: ${reason}`);
}

/** An undici Agent whose every connect is checked against `policy` and pinned to the checked address. */
export function guardedAgent(options: GuardedAgentOptions): Agent {
  const resolve = options.resolve ?? systemResolver;
  const base = buildConnector({ timeout: options.connectTimeoutMs ?? 15_000 });
  return new Agent({
    connections: options.connections ?? 4,
    connect: (opts, callback) => {
      checkedAddress(options.policy, opts.hostname, resolve).then(
        (ip) => {
          const name = normalizeHostname(opts.hostname);
          // TLS still names (and verifies) the host, not the address it was pinned to.
          const servername = opts.servername ?? (isIP(name) === 0 ? name : undefined);
          base({ ...opts, hostname: ip, ...(servername === undefined ? {} : { servername }) }, callback);
        },
        (err: unknown) => callback(err instanceof Error ? err : new Error(String(err)), null),
      );
    },
  });
}

/**
 * fetch through a guarded agent: redirects are followed (at most 20, fetch's own limit) and each
 * hop's connection is checked like the first. Returns a function bound to one agent; call
 * `close` when done with it.
 */
export function guardedFetch(options: GuardedAgentOptions): {
  fetch: (input: string | URL, init?: Omit<RequestInit, 'dispatcher'>) => ReturnType<typeof undiciFetch>;
  dispatcher: Dispatcher;
  close(): Promise<void>;
} {
  const agent = guardedAgent(options);
  return {
    // undici's RequestInit and the DOM one differ only in types; the options pass through as is.
    fetch: (input, init) => undiciFetch(input, { ...(init as object), dispatcher: agent }),
    dispatcher: agent,
    close: () => agent.close(),
  };
}

/**
 * The same guard for libraries that call Node's global fetch with a `dispatcher` option (the
 * tracker client does): Node bundles an older undici whose handlers the installed one only
 * accepts through this wrapper.
 */
export function guardedGlobalDispatcher(agent: Agent): Dispatcher {
  return new Dispatcher1Wrapper(agent);
}
