// The composition root: builds every adapter and service from the configuration and wires
// them together. Nothing else constructs adapters.
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import type { Config } from './config/config.ts';
import { openDatabase, type Database } from './db/database.ts';
import { TasksRepository } from './db/tasks.repository.ts';
import { IdCodec } from './domain/ids.ts';
import { Aria2Downloader } from './downloaders/aria2/aria2.downloader.ts';
import { startAria2Daemon } from './downloaders/aria2/aria2.rpc.ts';
import { BitTorrentDownloader } from './downloaders/bittorrent/bittorrent.downloader.ts';
import { QbittorrentDownloader } from './downloaders/qbittorrent/qbittorrent.downloader.ts';
import { HttpDownloader } from './downloaders/http/http.downloader.ts';
import type { Downloader } from './downloaders/port.ts';
import { MASTER_CAPABILITIES } from './http/cloudreve/dto.ts';
import { buildServer } from './http/server.ts';
import { systemClock } from './lib/clock.ts';
import { OutboundPolicy } from './net/address-policy.ts';
import { InProcessScheduler } from './scheduler/in-process.scheduler.ts';
import type { Scheduler } from './scheduler/port.ts';
import { AuthService } from './services/auth.service.ts';
import type { ServiceContext } from './services/context.ts';
import { FilesService } from './services/files.service.ts';
import type { Services } from './services/index.ts';
import { LinksService } from './services/links.service.ts';
import { TaskRunner } from './services/task-runner.ts';
import { TasksService } from './services/tasks.service.ts';
import { UploadsService } from './services/uploads.service.ts';
import { UsersService } from './services/users.service.ts';
import { WebhooksService } from './services/webhooks.service.ts';
import { LocalDiskDriver } from './storage/local.driver.ts';
import { loadCaFiles } from './net/ca-files.ts';
import type { StorageDriver } from './storage/port.ts';

/** The signing secret lives in the data dir, created once with owner-only permissions. */
async function loadSecret(dataDir: string): Promise<Buffer> {
  const path = join(dataDir, 'secret.key');
  try {
    return Buffer.from((await readFile(path, 'utf8')).trim(), 'hex');
  } catch {
    const secret = randomBytes(32);
    try {
      await writeFile(path, secret.toString('hex') + '\n', { mode: 0o600, flag: 'wx' });
      return secret;
    } catch {
      // Another process created it first: use theirs.
      return Buffer.from((await readFile(path, 'utf8')).trim(), 'hex');
    }
  }
}

async function setting(database: Database, key: string, create: () => string): Promise<string> {
  const row = await database.db
    .selectFrom('settings')
    .select('value')
    .where('key', '=', key)
    .executeTakeFirst();
  if (row) return row.value;
  await database.db
    .insertInto('settings')
    .values({ key, value: create() })
    .onConflict((oc) => oc.column('key').doNothing())
    .execute();
  return (
    await database.db.selectFrom('settings').select('value').where('key', '=', key).executeTakeFirstOrThrow()
  ).value;
}

export interface Core {
  services: Services;
  /** The tasks table's owner, for the runner and the schedulers. */
  taskRepo: TasksRepository;
  database: Database;
  close(): Promise<void>;
}

/**
 * Database, storage and services, without the server or the scheduler (the CLI uses this).
 * `registerNode`: a worker registers its own node row; tasks it claims record that id.
 */
export async function openCore(
  config: Config,
  options: { registerNode?: (db: Database['db']) => Promise<number> } = {},
): Promise<Core> {
  await mkdir(config.dataDir, { recursive: true });
  const secret = await loadSecret(config.dataDir);
  // Adapters that pull in large libraries (the AWS SDK, pg-boss, webtorrent) are loaded only
  // when configured: the embedded default starts with a much smaller heap (docs/BENCHMARKS.md).
  let storage: StorageDriver;
  if (config.storage === 's3') {
    const { S3Driver } = await import('./storage/s3.driver.ts');
    const s3 = new S3Driver({
      endpoint: config.s3Endpoint,
      region: config.s3Region,
      bucket: config.s3Bucket,
      accessKeyId: config.s3AccessKey,
      secretAccessKey: config.s3SecretKey,
      forcePathStyle: config.s3ForcePathStyle,
      prefix: config.s3Prefix,
    });
    await s3.check(); // fail fast on a wrong bucket or keys
    storage = s3;
  } else {
    storage = new LocalDiskDriver(join(config.dataDir, 'blobs'));
  }
  const database = await openDatabase(config.databaseUrl);
  const salt = await setting(database, 'hash_id_salt', () => randomBytes(32).toString('base64url'));
  const ctx: ServiceContext = {
    db: database.db,
    dialect: database.dialect,
    ids: new IdCodec(salt),
    config,
    clock: systemClock,
    storage,
    secret,
  };
  const taskRepo = new TasksRepository(database.db, systemClock);
  const users = new UsersService(ctx, taskRepo);
  await users.seed();
  const now = systemClock.now();
  await database.db
    .insertInto('nodes')
    .values({
      name: 'Master',
      type: 'master',
      capabilities: MASTER_CAPABILITIES,
      status: 'active',
      last_seen_at: now,
      created_at: now,
    })
    .onConflict((oc) => oc.column('name').doNothing())
    .execute();
  const master = await database.db
    .selectFrom('nodes')
    .select('id')
    .where('name', '=', 'Master')
    .executeTakeFirstOrThrow();
  const files = new FilesService(ctx);
  const policy = new OutboundPolicy({
    allowNetworks: config.allowNetworks,
    allowDomains: config.downloadAllowDomains,
    blockDomains: config.downloadBlockDomains,
  });
  const tasks = new TasksService(
    ctx,
    taskRepo,
    files,
    policy,
    options.registerNode ? await options.registerNode(database.db) : master.id,
  );
  const webhooks = new WebhooksService(ctx, policy, tasks);
  const services: Services = {
    ctx,
    users,
    auth: new AuthService(ctx, users),
    files,
    uploads: new UploadsService(ctx, files),
    links: new LinksService(ctx, files),
    tasks,
    policy,
    webhooks,
  };
  return {
    services,
    taskRepo,
    database,
    close: async () => {
      await webhooks.stop();
      await database.close();
    },
  };
}

/** The downloaders this node has and the runner that drives them (API nodes and workers alike). */
export async function buildRunner(
  config: Config,
  services: Services,
  taskRepo: TasksRepository,
): Promise<{ runner: TaskRunner; close(): Promise<void> }> {
  const built = await buildDownloaders(config, services);
  services.tasks.torrentSupported = built.downloaders.some((d) =>
    d.canHandle({ kind: 'torrent', magnet: 'magnet:?xt=urn:btih:' }),
  );
  const runner = new TaskRunner({
    ctx: services.ctx,
    repo: taskRepo,
    tasks: services.tasks,
    files: services.files,
    users: services.users,
    downloaders: built.downloaders,
    seeding: { ratio: config.seedRatio, seconds: config.seedTime },
  });
  return { runner, close: () => built.close() };
}

export interface App extends Core {
  server: FastifyInstance;
  scheduler: Scheduler;
}

export async function createApp(config: Config): Promise<App> {
  const core = await openCore(config);
  const { services } = core;
  const built = await buildRunner(config, services, core.taskRepo);
  const runner = built.runner;
  const scheduler =
    config.scheduler === 'pgboss'
      ? await (
          await import('./scheduler/pgboss.scheduler.ts')
        ).PgBossScheduler.forApiNode(config, services, core.taskRepo, runner)
      : new InProcessScheduler({
          db: services.ctx.db,
          repo: core.taskRepo,
          tasks: services.tasks,
          runner,
          maxConcurrent: config.maxConcurrentTasks,
        });
  services.tasks.onWork = (created) => scheduler.wake(created);
  services.webhooks.start();
  const server = await buildServer(services, { logLevel: config.logLevel });
  runner.log = server.log;
  // Often enough that an idle upload's bytes go soon after it expires (at most every 10 min).
  const sweepMs = Math.min(600_000, Math.max(1000, (config.uploadSessionIdle * 1000) / 4));
  const sweep = setInterval(() => void services.uploads.sweep().catch(() => undefined), sweepMs);
  void services.uploads.sweep().catch(() => undefined); // leftovers of the last run
  return {
    ...core,
    server,
    scheduler,
    close: async () => {
      clearInterval(sweep);
      await scheduler.stop();
      await built.close();
      await server.close();
      await core.close();
    },
  };
}

/**
 * The downloaders this node runs, in order of preference for a source. HTTP: the built-in
 * segmented engine. BitTorrent: the built-in engine unless configured otherwise — on this
 * project's benchmark it fetched a loopback swarm about 2× faster than aria2c (docs/BENCHMARKS.md).
 */
export async function buildDownloaders(
  config: Config,
  services: Services,
): Promise<{ downloaders: Downloader[]; close(): Promise<void> }> {
  const caFiles = loadCaFiles(config.caFiles);
  const downloaders: Downloader[] = [
    new HttpDownloader({
      policy: services.policy,
      globalSpeedLimit: config.globalSpeedLimit,
      stallTimeoutMs: Math.round(config.httpStallTimeout * 1000),
      ...(caFiles === undefined ? {} : { ca: caFiles }),
    }),
  ];
  const closers: Array<() => Promise<void>> = [];
  // aria2 for HTTP and/or BitTorrent: the configured daemon, or one Ferry starts for itself.
  if (config.httpDownloader === 'aria2' || config.torrentDownloader === 'aria2') {
    let rpcUrl = config.aria2RpcUrl;
    let secret = config.aria2Secret;
    if (!rpcUrl) {
      secret = randomBytes(16).toString('hex');
      const daemon = await startAria2Daemon({
        dir: join(config.dataDir, 'staging', 'aria2'),
        secret,
        ...(config.btListenPort ? { listenPort: config.btListenPort } : {}),
        extraArgs: [
          `--enable-dht=${String(config.btDht)}`,
          `--bt-enable-lpd=${String(config.btLsd)}`,
          `--enable-peer-exchange=${String(config.btPex)}`,
          ...(config.btDownloadLimit ? [`--max-overall-download-limit=${config.btDownloadLimit}`] : []),
          ...(config.btUploadLimit ? [`--max-overall-upload-limit=${config.btUploadLimit}`] : []),
        ],
      });
      rpcUrl = daemon.rpcUrl;
      closers.push(() => daemon.stop());
    }
    const aria2 = new Aria2Downloader({
      rpcUrl,
      ...(secret ? { secret } : {}),
      policy: services.policy,
      dataDir: join(config.dataDir, 'staging', 'aria2-swarms'),
    });
    closers.unshift(() => aria2.close());
    // An HTTP source goes to the first downloader that can handle it.
    if (config.httpDownloader === 'aria2') downloaders.unshift(aria2);
    if (config.torrentDownloader === 'aria2') downloaders.push(aria2);
  }
  if (config.torrentDownloader === 'qbittorrent') {
    const qbittorrent = new QbittorrentDownloader({
      url: config.qbittorrentUrl,
      username: config.qbittorrentUsername,
      password: config.qbittorrentPassword,
      policy: services.policy,
      dataDir: join(config.dataDir, 'staging', 'qbittorrent'),
    });
    downloaders.push(qbittorrent);
    closers.push(() => qbittorrent.close());
  }
  if (config.torrentDownloader === 'builtin' || config.torrentDownloader === 'auto') {
    const bittorrent = new BitTorrentDownloader({
      policy: services.policy,
      dataDir: join(config.dataDir, 'staging'),
      trackers: config.btTrackers,
      dht: config.btDht,
      pex: config.btPex,
      lsd: config.btLsd,
      listenPort: config.btListenPort,
      ...(config.btDownloadLimit ? { downloadLimit: config.btDownloadLimit } : {}),
      ...(config.btUploadLimit ? { uploadLimit: config.btUploadLimit } : {}),
    });
    downloaders.push(bittorrent);
    closers.push(() => bittorrent.close());
  }
  return {
    downloaders,
    close: async () => {
      for (const close of closers) await close().catch(() => undefined);
    },
  };
}
