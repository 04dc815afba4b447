// The `ferry` command: `ferry serve` runs the server; `ferry user ...` manages accounts
// against the same data dir or database, also while the server runs.
import { createApp, openCore } from './app.ts';
import { ConfigError, flagsHelp, loadConfig } from './config/config.ts';
import { isAppError } from './domain/errors.ts';
import { CLIENT_USAGE, runClient } from './cli/client.ts';

const USAGE = `Usage:
  ferry serve [flags]                      run the server
  ferry worker --name <name> [flags]       run tasks as a worker node (PostgreSQL, shared pg-boss queues)
  ferry user add <email> --password <pw> [--group admin|user]
  ferry user list
  ferry user passwd <email> --password <pw> [--keep-api-tokens]
  ferry user signout <email> [--keep-api-tokens]   sign the user out everywhere
  ferry user remove <email>

Client (talks to a running Ferry over HTTP with an API token):
${CLIENT_USAGE}

Flags (each also read from FERRY_<NAME>, e.g. FERRY_DATA_DIR):
${flagsHelp()}
`;

async function serve(argv: string[]): Promise<void> {
  const { config } = loadConfig(argv);
  const app = await createApp(config);
  const admin = await app.services.users.ensureFirstAdmin(
    process.env.FERRY_ADMIN_EMAIL,
    process.env.FERRY_ADMIN_PASSWORD,
  );
  if (admin?.password) {
    console.log(
      `\nCreated the first admin account:\n  e-mail:   ${admin.email}\n  password: ${admin.password}\nThis password is shown once. Change it with: ferry user passwd ${admin.email} --password <new>\n`,
    );
  } else if (admin) {
    console.log(`Created the first admin account ${admin.email}.`);
  }
  // A stray rejection in one download must not take every other user's transfer down with it.
  process.on('unhandledRejection', (reason) => app.server.log.error({ err: reason }, 'unhandled rejection'));
  await app.scheduler.start();
  await app.server.listen({ host: config.host, port: config.port });
  console.log(
    `Ferry listening on http://${config.host.includes(':') ? `[${config.host}]` : config.host}:${config.port} (data: ${config.dataDir}, database: ${app.database.dialect})`,
  );
  let closing = false;
  const shutdown = (signal: string) => {
    if (closing) return;
    closing = true;
    console.log(`${signal}: stopping; running downloads resume on the next start`);
    const force = setTimeout(() => process.exit(1), 10_000);
    force.unref();
    app.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on('SIGINT', () => shutdown('SIGINT'));
  process.on('SIGTERM', () => shutdown('SIGTERM'));
}

async function worker(argv: string[]): Promise<void> {
  const { config, extra } = loadConfig(argv, process.env, { name: { type: 'string' } });
  // Only workers need pg-boss; `ferry serve` on SQLite never loads it.
  const { startWorkerNode } = await import('./scheduler/worker-node.ts');
  const node = await startWorkerNode(config, (extra.name as string | undefined) ?? '');
  console.log(`Ferry worker "${node.name}" running tasks (node ${node.nodeId}, data: ${config.dataDir})`);
  process.on('unhandledRejection', (reason) => console.error('unhandled rejection:', reason));
  let closing = false;
  const shutdown = (signal: string) => {
    if (closing) return;
    closing = true;
    console.log(`${signal}: stopping; running tasks go back to the queue`);
    const force = setTimeout(() => process.exit(1), 10_000);
    force.unref();
    node.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on('SIGINT', () => shutdown('SIGINT'));
  process.on('SIGTERM', () => shutdown('SIGTERM'));
}

async function user(argv: string[]): Promise<void> {
  const [action, ...rest] = argv;
  const { config, positionals, extra } = loadConfig(rest, process.env, {
    password: { type: 'string' },
    group: { type: 'string' },
    'keep-api-tokens': { type: 'boolean' },
  });
  const core = await openCore(config);
  try {
    const { users } = core.services;
    const email = positionals[0];
    const password = extra.password as string | undefined;
    const keepApiTokens = extra['keep-api-tokens'] === true;
    switch (action ?? '') {
      case 'add': {
        if (!email || !password)
          throw new ConfigError('usage: ferry user add <email> --password <pw> [--group admin|user]');
        const group = (extra.group as string | undefined) ?? 'user';
        if (group !== 'admin' && group !== 'user') throw new ConfigError('--group must be admin or user');
        const created = await users.create(email, password, group);
        console.log(`added ${created.email} (${group})`);
        break;
      }
      case 'list':
        for (const u of await users.list()) {
          console.log(
            `${u.email}\t${u.group_name}\t${u.status}\tused ${u.storage_used} bytes\tsince ${new Date(u.created_at).toISOString()}`,
          );
        }
        break;
      case 'passwd':
        if (!email || !password) throw new ConfigError('usage: ferry user passwd <email> --password <pw>');
        await users.setPassword(email, password, { keepApiTokens: keepApiTokens });
        console.log(
          `password changed for ${email}; their sessions are signed out${keepApiTokens ? ' (API tokens kept)' : ' and their API tokens revoked'}`,
        );
        break;
      case 'signout': {
        if (!email) throw new ConfigError('usage: ferry user signout <email> [--keep-api-tokens]');
        const found = await users.findByEmail(email);
        if (!found) throw new ConfigError(`no user ${email}`);
        const { apiTokensRevoked } = await users.signOutEverywhere(found.id, { keepApiTokens });
        console.log(`${email} is signed out everywhere; ${apiTokensRevoked} API token(s) revoked`);
        break;
      }
      case 'remove':
        if (!email) throw new ConfigError('usage: ferry user remove <email>');
        await users.remove(email);
        console.log(`removed ${email} and their files`);
        break;
      default:
        throw new ConfigError(USAGE);
    }
  } finally {
    await core.close();
  }
}

async function main(): Promise<void> {
  const [command, ...rest] = process.argv.slice(2);
  switch (command ?? 'help') {
    case 'serve':
      return serve(rest);
    case 'worker':
      return worker(rest);
    case 'user':
      return user(rest);
    case 'login':
    case 'add':
    case 'tasks':
    case 'cancel':
    case 'retry':
    case 'pause':
    case 'resume':
    case 'link':
    case 'get':
      return runClient(command ?? '', rest);
    case 'help':
    case '--help':
    case '-h':
      console.log(USAGE);
      return;
    default:
      throw new ConfigError(`unknown command "${command}"\n\n${USAGE}`);
  }
}

main().catch((error: unknown) => {
  if (error instanceof ConfigError) console.error(error.message);
  else if (isAppError(error)) console.error(`error: ${error.message}`);
  else console.error(error);
  process.exit(1);
});
