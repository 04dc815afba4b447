// Settings that bound what one client or user can hold: HTTP timeouts and connections per
// address, unfinished tasks per user, and how recent a sign-in must be for sensitive actions.
// Merged into FLAGS and defaults() by config.ts.

export interface LimitsConfig {
  /** s to receive a request's headers (Node's headersTimeout) */
  headersTimeout: number;
  /** s to receive a request body; streamed uploads also get size / uploadMinRate */
  requestTimeout: number;
  /** bytes/s an upload chunk must average (added to requestTimeout by its Content-Length) */
  uploadMinRate: number;
  /** s an idle keep-alive connection stays open */
  keepAliveTimeout: number;
  /** open connections per client address (IPv6: per /64); 0 = unlimited */
  maxConnectionsPerIp: number;
  /** queued + running tasks per user; 0 = unlimited */
  maxUnfinishedTasks: number;
  /** minutes after signing in with the password during which an API token can be made without it */
  recentSignInMinutes: number;
}

export const LIMIT_FLAGS = {
  'headers-timeout': {
    type: 'string',
    key: 'headersTimeout',
    kind: 'int',
    help: 'seconds to receive request headers (20)',
  },
  'request-timeout': {
    type: 'string',
    key: 'requestTimeout',
    kind: 'int',
    help: 'seconds to receive a request body (30; uploads get more by size)',
  },
  'upload-min-rate': {
    type: 'string',
    key: 'uploadMinRate',
    kind: 'int',
    help: 'bytes/s an upload chunk must average (16384)',
  },
  'keep-alive-timeout': {
    type: 'string',
    key: 'keepAliveTimeout',
    kind: 'int',
    help: 'seconds an idle keep-alive connection stays open (72)',
  },
  'max-connections-per-ip': {
    type: 'string',
    key: 'maxConnectionsPerIp',
    kind: 'int',
    help: 'open connections per client address, 0 = unlimited (256)',
  },
  'max-unfinished-tasks': {
    type: 'string',
    key: 'maxUnfinishedTasks',
    kind: 'int',
    help: 'queued + running tasks per user, 0 = unlimited (1000)',
  },
  'recent-sign-in-minutes': {
    type: 'string',
    key: 'recentSignInMinutes',
    kind: 'int',
    help: 'making an API token without the password needs a sign-in this recent (10)',
  },
} as const satisfies Record<string, { type: 'string'; key: keyof LimitsConfig; kind: 'int'; help: string }>;

export function limitDefaults(): LimitsConfig {
  return {
    headersTimeout: 20,
    requestTimeout: 30,
    uploadMinRate: 16384,
    keepAliveTimeout: 72,
    maxConnectionsPerIp: 256,
    maxUnfinishedTasks: 1000,
    recentSignInMinutes: 10,
  };
}

export function limitProblems(c: LimitsConfig): string[] {
  const problems: string[] = [];
  if (c.headersTimeout < 1) problems.push('--headers-timeout: at least 1');
  if (c.requestTimeout < 1) problems.push('--request-timeout: at least 1');
  if (c.uploadMinRate < 1) problems.push('--upload-min-rate: at least 1');
  return problems;
}
