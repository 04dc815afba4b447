// Server configuration: flags > FERRY_* environment variables > a JSON config file > defaults.
// Pure apart from reading the config file; every invalid value is reported at once.
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { LIMIT_FLAGS, limitDefaults, limitProblems, type LimitsConfig } from './limits.ts';

export interface Config extends LimitsConfig {
  host: string;
  port: number;
  dataDir: string;
  databaseUrl: string;
  /** Base URL for links we hand out; empty = derived from the request's Host. */
  siteUrl: string;
  pathApiBase: string;
  allowDownload: boolean;
  downloadAllowDomains: string[];
  downloadBlockDomains: string[];
  allowNetworks: string[];
  /** PEM files whose certificates the HTTP engine trusts besides Node's roots. */
  caFiles: string[];
  downloadConnections: number;
  /** Tasks running at once on this node. */
  maxConcurrentTasks: number;
  /** bytes/s across all downloads of this node; 0 = unlimited */
  globalSpeedLimit: number;
  /** Largest single download in bytes; 0 = only the user's quota limits it. */
  maxFileSize: number;
  /** Chunk size upload sessions ask Cloudreve clients for (bytes), like a storage policy's. */
  uploadChunkSize: number;
  /** Unfinished upload sessions one user may hold open; 0 = no cap. */
  maxUploadSessions: number;
  /** An upload session that receives no chunk for this long expires and loses its bytes (s). */
  uploadSessionIdle: number;
  /** Below this much free space (bytes) on the data dir, new uploads and tasks are refused and /readyz says so; 0 = off. */
  minFreeSpace: number;
  /** Retries of a failed task before it errors for good. */
  taskRetries: number;
  /** How long a signed link lives (s). */
  linkTtl: number;
  logLevel: string;
  /** Which downloader runs HTTP sources: the built-in segmented engine or aria2. */
  httpDownloader: string;
  /** Which downloader runs BitTorrent sources: auto, builtin, aria2, qbittorrent, none. */
  torrentDownloader: string;
  /** aria2 JSON-RPC endpoint; empty = Ferry starts its own aria2c when it needs one. */
  aria2RpcUrl: string;
  aria2Secret: string;
  qbittorrentUrl: string;
  qbittorrentUsername: string;
  qbittorrentPassword: string;
  /**
   * Lets aria2 and qBittorrent run although they connect by themselves (redirects, trackers,
   * peers) without the outbound policy: an explicit opt-out of SSRF protection for them.
   */
  allowUnguardedDownloaders: boolean;
  /** An HTTP connection that receives nothing for this long (s) is dropped and its range retried. */
  httpStallTimeout: number;
  btListenPort: number;
  btDht: boolean;
  btPex: boolean;
  btLsd: boolean;
  btTrackers: boolean;
  /** bytes/s, 0 = unlimited */
  btDownloadLimit: number;
  btUploadLimit: number;
  /** Seed after completion until this upload ratio (0 = no ratio goal). */
  seedRatio: number;
  /** Seed after completion for this many seconds (0 = no time goal); both 0 = no seeding. */
  seedTime: number;
  /** Where blobs live: local (data-dir/blobs) or s3 (an S3-compatible bucket). */
  storage: string;
  s3Endpoint: string;
  s3Region: string;
  s3Bucket: string;
  s3AccessKey: string;
  s3SecretKey: string;
  s3ForcePathStyle: boolean;
  /** Prepended to every object key, e.g. "ferry/". */
  s3Prefix: string;
  /** in-process (this process runs every task) or pgboss (tasks go to worker nodes through pg-boss) */
  scheduler: string;
  /** Whether this process runs tasks itself (off: an API-only node; workers run them). */
  runTasks: boolean;
  /** How long a running task's lease lasts without renewal before another node takes it over (s). */
  leaseSeconds: number;
}

interface FlagSpec {
  type: 'string' | 'boolean';
  multiple?: boolean;
  key: keyof Config | 'config';
  kind: 'string' | 'int' | 'number' | 'bool' | 'list';
  help: string;
}

export const FLAGS: Record<string, FlagSpec> = {
  host: { type: 'string', key: 'host', kind: 'string', help: 'address to listen on (0.0.0.0)' },
  port: { type: 'string', key: 'port', kind: 'int', help: 'port to listen on (5212)' },
  'data-dir': {
    type: 'string',
    key: 'dataDir',
    kind: 'string',
    help: 'folder for the database, blobs and secrets (./data)',
  },
  'database-url': {
    type: 'string',
    key: 'databaseUrl',
    kind: 'string',
    help: 'postgres://... or a SQLite file (data-dir/ferry.db)',
  },
  config: {
    type: 'string',
    key: 'config',
    kind: 'string',
    help: 'JSON file with any of these settings (camelCase keys)',
  },
  'site-url': {
    type: 'string',
    key: 'siteUrl',
    kind: 'string',
    help: 'public base URL used in signed links (from Host when empty)',
  },
  'path-api-base': {
    type: 'string',
    key: 'pathApiBase',
    kind: 'string',
    help: 'base path of the path-style API (/files)',
  },
  'allow-download': {
    type: 'boolean',
    key: 'allowDownload',
    kind: 'bool',
    help: 'allow remote downloads (on; --no-allow-download turns it off)',
  },
  'download-allow-domain': {
    type: 'string',
    multiple: true,
    key: 'downloadAllowDomains',
    kind: 'list',
    help: 'only these source domains (repeatable, *.example.com)',
  },
  'download-block-domain': {
    type: 'string',
    multiple: true,
    key: 'downloadBlockDomains',
    kind: 'list',
    help: 'refuse these source domains (repeatable, *.example.com)',
  },
  'allow-network': {
    type: 'string',
    multiple: true,
    key: 'allowNetworks',
    kind: 'list',
    help: 'open an address range refused by default (repeatable CIDR)',
  },
  'ca-file': {
    type: 'string',
    multiple: true,
    key: 'caFiles',
    kind: 'list',
    help: 'also trust the CA certificates in this PEM file for HTTPS downloads (repeatable)',
  },
  'download-connections': {
    type: 'string',
    key: 'downloadConnections',
    kind: 'int',
    help: 'connections per HTTP download (8)',
  },
  'max-concurrent-tasks': {
    type: 'string',
    key: 'maxConcurrentTasks',
    kind: 'int',
    help: 'tasks running at once on this node (10)',
  },
  'global-speed-limit': {
    type: 'string',
    key: 'globalSpeedLimit',
    kind: 'int',
    help: 'bytes/s across all downloads, 0 = unlimited',
  },
  'max-file-size': {
    type: 'string',
    key: 'maxFileSize',
    kind: 'int',
    help: 'largest download in bytes, 0 = quota only',
  },
  'upload-chunk-size': {
    type: 'string',
    key: 'uploadChunkSize',
    kind: 'int',
    help: 'chunk size of upload sessions in bytes (26214400 = 25 MiB)',
  },
  'max-upload-sessions': {
    type: 'string',
    key: 'maxUploadSessions',
    kind: 'int',
    help: 'unfinished upload sessions per user, 0 = no cap (10)',
  },
  'upload-session-idle': {
    type: 'string',
    key: 'uploadSessionIdle',
    kind: 'int',
    help: 'seconds without a chunk before an upload session expires (3600)',
  },
  'min-free-space': {
    type: 'string',
    key: 'minFreeSpace',
    kind: 'int',
    help: 'bytes free on the data dir below which new uploads and tasks are refused, 0 = off (268435456)',
  },
  'task-retries': { type: 'string', key: 'taskRetries', kind: 'int', help: 'retries of a failed task (3)' },
  'link-ttl': {
    type: 'string',
    key: 'linkTtl',
    kind: 'int',
    help: 'lifetime of signed links in seconds (3600)',
  },
  'log-level': {
    type: 'string',
    key: 'logLevel',
    kind: 'string',
    help: 'fatal|error|warn|info|debug (info)',
  },
  'http-downloader': {
    type: 'string',
    key: 'httpDownloader',
    kind: 'string',
    help: 'builtin|aria2 (builtin)',
  },
  'torrent-downloader': {
    type: 'string',
    key: 'torrentDownloader',
    kind: 'string',
    help: 'auto|builtin|aria2|qbittorrent|none (auto: aria2 when aria2c is installed, else builtin)',
  },
  'aria2-rpc-url': {
    type: 'string',
    key: 'aria2RpcUrl',
    kind: 'string',
    help: 'aria2 JSON-RPC URL (empty: Ferry runs its own aria2c)',
  },
  'aria2-secret': { type: 'string', key: 'aria2Secret', kind: 'string', help: 'aria2 RPC secret' },
  'qbittorrent-url': {
    type: 'string',
    key: 'qbittorrentUrl',
    kind: 'string',
    help: 'qBittorrent Web UI URL',
  },
  'qbittorrent-username': {
    type: 'string',
    key: 'qbittorrentUsername',
    kind: 'string',
    help: 'qBittorrent user',
  },
  'qbittorrent-password': {
    type: 'string',
    key: 'qbittorrentPassword',
    kind: 'string',
    help: 'qBittorrent password',
  },
  'bt-listen-port': {
    type: 'string',
    key: 'btListenPort',
    kind: 'int',
    help: 'BitTorrent listen port (0 = random)',
  },
  'allow-unguarded-downloaders': {
    type: 'boolean',
    key: 'allowUnguardedDownloaders',
    kind: 'bool',
    help: 'allow aria2/qBittorrent, which follow redirects and dial trackers and peers without the outbound (SSRF) policy (off)',
  },
  'http-stall-timeout': {
    type: 'string',
    key: 'httpStallTimeout',
    kind: 'number',
    help: 'seconds without data before an HTTP connection is dropped and its range retried (20)',
  },
  'bt-dht': { type: 'boolean', key: 'btDht', kind: 'bool', help: 'BitTorrent DHT (on; --no-bt-dht)' },
  'bt-pex': {
    type: 'boolean',
    key: 'btPex',
    kind: 'bool',
    help: 'BitTorrent peer exchange (on; --no-bt-pex)',
  },
  'bt-lsd': {
    type: 'boolean',
    key: 'btLsd',
    kind: 'bool',
    help: 'BitTorrent local peer discovery (on; --no-bt-lsd)',
  },
  'bt-trackers': {
    type: 'boolean',
    key: 'btTrackers',
    kind: 'bool',
    help: 'announce to trackers (on; --no-bt-trackers)',
  },
  'bt-download-limit': {
    type: 'string',
    key: 'btDownloadLimit',
    kind: 'int',
    help: 'BitTorrent download bytes/s (0 = unlimited)',
  },
  'bt-upload-limit': {
    type: 'string',
    key: 'btUploadLimit',
    kind: 'int',
    help: 'BitTorrent upload bytes/s (0 = unlimited)',
  },
  'seed-ratio': {
    type: 'string',
    key: 'seedRatio',
    kind: 'number',
    help: 'seed finished torrents to this ratio (0 = off)',
  },
  'seed-time': {
    type: 'string',
    key: 'seedTime',
    kind: 'int',
    help: 'seed finished torrents this many seconds (0 = off)',
  },
  storage: { type: 'string', key: 'storage', kind: 'string', help: 'blob storage: local|s3 (local)' },
  's3-endpoint': {
    type: 'string',
    key: 's3Endpoint',
    kind: 'string',
    help: 'S3 endpoint URL, e.g. http://minio:9000 (empty = AWS)',
  },
  's3-region': { type: 'string', key: 's3Region', kind: 'string', help: 'S3 region (us-east-1)' },
  's3-bucket': { type: 'string', key: 's3Bucket', kind: 'string', help: 'S3 bucket (must exist)' },
  's3-access-key': { type: 'string', key: 's3AccessKey', kind: 'string', help: 'S3 access key id' },
  's3-secret-key': { type: 'string', key: 's3SecretKey', kind: 'string', help: 'S3 secret access key' },
  's3-force-path-style': {
    type: 'boolean',
    key: 's3ForcePathStyle',
    kind: 'bool',
    help: 'path-style S3 URLs (on; --no-s3-force-path-style for virtual hosts)',
  },
  's3-prefix': { type: 'string', key: 's3Prefix', kind: 'string', help: 'prefix of every object key' },
  scheduler: {
    type: 'string',
    key: 'scheduler',
    kind: 'string',
    help: 'in-process|pgboss (in-process; pgboss hands tasks to `ferry worker` nodes, PostgreSQL only)',
  },
  'run-tasks': {
    type: 'boolean',
    key: 'runTasks',
    kind: 'bool',
    help: 'run tasks in this process (on; --no-run-tasks: API only, needs --scheduler pgboss)',
  },
  'lease-seconds': {
    type: 'string',
    key: 'leaseSeconds',
    kind: 'int',
    help: "a dead node's tasks move to another node after this many seconds (30)",
  },
  ...LIMIT_FLAGS,
};

export function defaults(): Config {
  return {
    host: '0.0.0.0',
    port: 5212,
    dataDir: './data',
    databaseUrl: '',
    siteUrl: '',
    pathApiBase: '/files',
    allowDownload: true,
    downloadAllowDomains: [],
    downloadBlockDomains: [],
    allowNetworks: [],
    caFiles: [],
    downloadConnections: 8,
    maxConcurrentTasks: 10,
    globalSpeedLimit: 0,
    maxFileSize: 0,
    uploadChunkSize: 25 * 1024 * 1024,
    maxUploadSessions: 10,
    uploadSessionIdle: 3600,
    minFreeSpace: 256 * 1024 * 1024,
    taskRetries: 3,
    linkTtl: 3600,
    logLevel: 'info',
    httpDownloader: 'builtin',
    torrentDownloader: 'auto',
    aria2RpcUrl: '',
    aria2Secret: '',
    qbittorrentUrl: '',
    qbittorrentUsername: 'admin',
    qbittorrentPassword: '',
    allowUnguardedDownloaders: false,
    httpStallTimeout: 20,
    btListenPort: 0,
    btDht: true,
    btPex: true,
    btLsd: true,
    btTrackers: true,
    btDownloadLimit: 0,
    btUploadLimit: 0,
    seedRatio: 0,
    seedTime: 0,
    storage: 'local',
    s3Endpoint: '',
    s3Region: 'us-east-1',
    s3Bucket: '',
    s3AccessKey: '',
    s3SecretKey: '',
    s3ForcePathStyle: true,
    s3Prefix: '',
    scheduler: 'in-process',
    runTasks: true,
    leaseSeconds: 30,
    ...limitDefaults(),
  };
}

export class ConfigError extends Error {}

/** Parses argv (after the subcommand) and env into a Config; returns leftover positionals. */
export function loadConfig(
  argv: string[],
  env: NodeJS.ProcessEnv = process.env,
  extraOptions: Record<string, { type: 'string' | 'boolean'; multiple?: boolean; short?: string }> = {},
): { config: Config; positionals: string[]; extra: Record<string, unknown> } {
  const options: Record<string, { type: 'string' | 'boolean'; multiple?: boolean; short?: string }> = {
    ...extraOptions,
  };
  for (const [name, spec] of Object.entries(FLAGS)) {
    options[name] = spec.multiple ? { type: spec.type, multiple: true } : { type: spec.type };
  }
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options, allowPositionals: true, allowNegative: true, strict: true });
  } catch (e) {
    throw new ConfigError((e as Error).message);
  }
  const values = parsed.values as Record<string, unknown>;
  const problems: string[] = [];
  const config = defaults();
  const raw: Partial<Record<string, unknown>> = {};

  const configFile = (values.config as string | undefined) ?? env.FERRY_CONFIG;
  if (configFile) {
    try {
      const fromFile = JSON.parse(readFileSync(configFile, 'utf8')) as unknown;
      if (typeof fromFile !== 'object' || fromFile === null || Array.isArray(fromFile))
        throw new Error('expected a JSON object');
      const known = new Set<string>(Object.values(FLAGS).map((spec) => spec.key));
      for (const [key, value] of Object.entries(fromFile)) {
        // A typo must not silently fall back to a default.
        if (!known.has(key) || key === 'config')
          problems.push(`--config ${configFile}: unknown setting "${key}"`);
        else raw[key] = value;
      }
    } catch (e) {
      problems.push(`--config ${configFile}: ${(e as Error).message}`);
    }
  }
  for (const [name, spec] of Object.entries(FLAGS)) {
    if (spec.key === 'config') continue;
    const envValue = env[`FERRY_${name.toUpperCase().replaceAll('-', '_')}`];
    if (envValue !== undefined && envValue !== '') {
      raw[spec.key] =
        spec.kind === 'list'
          ? envValue
              .split(',')
              .map((s) => s.trim())
              .filter(Boolean)
          : envValue;
    }
    if (values[name] !== undefined) raw[spec.key] = values[name];
  }
  for (const [name, spec] of Object.entries(FLAGS)) {
    if (spec.key === 'config' || raw[spec.key] === undefined) continue;
    const value = raw[spec.key];
    const target = config as unknown as Record<string, unknown>;
    switch (spec.kind) {
      case 'string':
        target[spec.key] = String(value);
        break;
      case 'int': {
        // Plain decimal digits only: Number() would also take '', '1e3', '0x10' and ' '.
        const text = String(value).trim();
        const n = typeof value === 'number' ? value : /^\d{1,16}$/.test(text) ? Number(text) : NaN;
        if (!Number.isSafeInteger(n) || n < 0)
          problems.push(`--${name}: expected a non-negative integer, got ${String(value)}`);
        else target[spec.key] = n;
        break;
      }
      case 'number': {
        const text = String(value).trim();
        const n = typeof value === 'number' ? value : /^\d{1,9}(\.\d{1,6})?$/.test(text) ? Number(text) : NaN;
        if (!Number.isFinite(n) || n < 0)
          problems.push(`--${name}: expected a non-negative number, got ${String(value)}`);
        else target[spec.key] = n;
        break;
      }
      case 'bool':
        if (typeof value === 'boolean') target[spec.key] = value;
        else if (/^(1|true|yes|on)$/i.test(String(value))) target[spec.key] = true;
        else if (/^(0|false|no|off)$/i.test(String(value))) target[spec.key] = false;
        else problems.push(`--${name}: expected true or false, got ${String(value)}`);
        break;
      case 'list':
        target[spec.key] = Array.isArray(value) ? value.map(String) : [String(value)];
        break;
    }
  }
  if (config.port > 65535) problems.push(`--port: ${config.port} is not a port`);
  if (config.downloadConnections < 1 || config.downloadConnections > 64)
    problems.push('--download-connections: 1..64');
  if (config.maxConcurrentTasks < 1) problems.push('--max-concurrent-tasks: at least 1');
  if (config.uploadChunkSize < 64 * 1024 || config.uploadChunkSize > 5 * 1024 ** 3)
    problems.push('--upload-chunk-size: 65536 to 5368709120 bytes');
  if (
    !config.pathApiBase.startsWith('/') ||
    config.pathApiBase.length < 2 ||
    config.pathApiBase.startsWith('/api')
  ) {
    problems.push('--path-api-base: a path like /files (not / and not under /api)');
  }
  config.pathApiBase = config.pathApiBase.replace(/\/+$/, '');
  if (config.siteUrl && !/^https?:\/\/[^/?#\s]+(\/[^?#\s]*)?$/i.test(config.siteUrl))
    problems.push(`--site-url: expected http(s)://host[:port][/path], got ${config.siteUrl}`);
  if (!['builtin', 'aria2'].includes(config.httpDownloader))
    problems.push('--http-downloader: builtin or aria2');
  if (!['auto', 'builtin', 'aria2', 'qbittorrent', 'none'].includes(config.torrentDownloader)) {
    problems.push('--torrent-downloader: auto, builtin, aria2, qbittorrent or none');
  }
  if (config.torrentDownloader === 'qbittorrent' && !config.qbittorrentUrl) {
    problems.push('--torrent-downloader qbittorrent needs --qbittorrent-url');
  }
  // aria2 and qBittorrent open their own connections: they follow redirects (to loopback, to
  // the LAN, out of --download-allow-domain) and announce to trackers without the outbound
  // policy. Ferry cannot put a check on each of their connects, so it refuses them unless the
  // operator opts out of SSRF protection for them by name.
  const unguarded = [
    ...(config.httpDownloader === 'aria2' ? ['--http-downloader aria2'] : []),
    ...(['aria2', 'qbittorrent'].includes(config.torrentDownloader)
      ? [`--torrent-downloader ${config.torrentDownloader}`]
      : []),
  ];
  if (unguarded.length > 0 && !config.allowUnguardedDownloaders) {
    problems.push(
      `${unguarded.join(' and ')}: this daemon follows redirects and contacts trackers without Ferry's outbound (SSRF) policy; ` +
        'add --allow-unguarded-downloaders to run it anyway (see docs/SECURITY.md), or use the built-in engines',
    );
  }
  if (!(config.httpStallTimeout >= 0.1 && config.httpStallTimeout <= 3600))
    problems.push('--http-stall-timeout: 0.1..3600 seconds');
  if (config.btListenPort > 65535) problems.push(`--bt-listen-port: ${config.btListenPort} is not a port`);
  if (!['local', 's3'].includes(config.storage)) problems.push('--storage: local or s3');
  if (config.storage === 's3' && !config.s3Bucket) problems.push('--storage s3 needs --s3-bucket');
  if (config.s3Endpoint && !/^https?:\/\/[^/?#\s]+(\/[^?#\s]*)?$/i.test(config.s3Endpoint))
    problems.push(`--s3-endpoint: expected http(s)://host[:port], got ${config.s3Endpoint}`);
  if (!config.s3AccessKey !== !config.s3SecretKey)
    problems.push('--s3-access-key and --s3-secret-key go together');
  if (!['in-process', 'pgboss'].includes(config.scheduler))
    problems.push('--scheduler: in-process or pgboss');
  if (config.leaseSeconds < 3) problems.push('--lease-seconds: at least 3');
  if (config.uploadSessionIdle < 1) problems.push('--upload-session-idle: at least 1 second');
  problems.push(...limitProblems(config));
  if (problems.length) throw new ConfigError(problems.join('\n'));

  config.dataDir = resolve(config.dataDir);
  if (!config.databaseUrl) config.databaseUrl = join(config.dataDir, 'ferry.db');
  if (config.scheduler === 'pgboss' && !/^postgres(ql)?:\/\//i.test(config.databaseUrl)) {
    throw new ConfigError(
      '--scheduler pgboss needs a PostgreSQL database (--database-url postgres://...): pg-boss keeps its queues there',
    );
  }
  if (!config.runTasks && config.scheduler !== 'pgboss') {
    throw new ConfigError('--no-run-tasks needs --scheduler pgboss: otherwise nothing would run the tasks');
  }
  config.siteUrl = config.siteUrl.replace(/\/+$/, '');
  const extra: Record<string, unknown> = {};
  for (const name of Object.keys(extraOptions)) extra[name] = values[name];
  return { config, positionals: parsed.positionals, extra };
}

export function flagsHelp(): string {
  return Object.entries(FLAGS)
    .map(
      ([name, spec]) =>
        `  --${name.padEnd(24)} ${spec.help}  [FERRY_${name.toUpperCase().replaceAll('-', '_')}]`,
    )
    .join('\n');
}
