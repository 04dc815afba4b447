// The `ferry` client commands, talking to a Ferry server over its Cloudreve face with a personal
// API token: login, add (with live progress from the event stream), tasks, cancel, link, get.
import { createWriteStream } from 'node:fs';
import { readFile, rm, stat, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { basename } from 'node:path';
import { createInterface } from 'node:readline';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { parseArgs } from 'node:util';
import { ClientError, FerryClient, FINAL_STATUSES, type TaskDto } from './api.ts';
import { normalizeServer, readClientConfig, writeClientConfig, configPath } from './config.ts';
import { createProgressView, formatBytes, taskName, taskPercent } from './progress.ts';

export const CLIENT_USAGE = `  ferry login <server> [--email <e>] [--password <pw>]   sign in; stores an API token
  ferry add <url|magnet|file.torrent>... [--to <folder>] [--connections N]
            [--header 'Name: value']... [--checksum sha256:<hex>] [--no-wait]
  ferry tasks [--finished]                  active (and finished) downloads
  ferry cancel <task-id>...
  ferry retry <task-id>...                  start a failed or canceled task again (same options)
  ferry pause <task-id>...                  pause (keeps the partial data, across restarts)
  ferry resume <task-id>...                 resume a paused task where it stopped
  ferry link <path>... [--zip]              signed download URL(s)
  ferry get <path> [-o <file>|-]            download a file (resumes a partial one)`;

export const CLIENT_COMMANDS = new Set([
  'login',
  'add',
  'tasks',
  'cancel',
  'retry',
  'pause',
  'resume',
  'link',
  'get',
]);

class UsageError extends ClientError {}

/** `/a/b`, `a/b`, or a cloudreve:// URI → a cloudreve://my URI. */
export function driveUri(path: string): string {
  if (path.startsWith('cloudreve://')) return path;
  const segments = path.split('/').filter((s) => s !== '' && s !== '.');
  if (segments.includes('..')) throw new UsageError(`".." is not allowed in a drive path: ${path}`);
  return segments.length === 0
    ? 'cloudreve://my'
    : 'cloudreve://my/' + segments.map(encodeURIComponent).join('/');
}

function drivePath(uri: string): string {
  const rest = uri.replace(/^cloudreve:\/\/[^/]*/, '');
  return (
    '/' +
    rest
      .split('/')
      .filter(Boolean)
      .map((s) => decodeURIComponent(s))
      .join('/')
  );
}

async function connect(): Promise<FerryClient> {
  const config = await readClientConfig();
  if (!config)
    throw new UsageError(`not logged in: run \`ferry login <server>\` first (looked in ${configPath()})`);
  return new FerryClient(config.server, config.token);
}

async function prompt(question: string, hidden: boolean): Promise<string> {
  const rl = createInterface({
    input: process.stdin,
    output: process.stderr,
    terminal: process.stdin.isTTY === true,
  });
  if (hidden && process.stdin.isTTY) {
    // Echo nothing of what is typed (the question itself is written before muting).
    const writer = rl as unknown as { _writeToOutput: (s: string) => void };
    process.stderr.write(question);
    writer._writeToOutput = () => undefined;
    question = '';
  }
  try {
    return await new Promise<string>((resolve, reject) => {
      rl.question(question, resolve);
      rl.once('close', () => reject(new UsageError('no input')));
    });
  } finally {
    if (hidden && process.stdin.isTTY) process.stderr.write('\n');
    rl.close();
  }
}

async function login(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { email: { type: 'string' }, password: { type: 'string' }, name: { type: 'string' } },
  });
  const target = positionals[0];
  if (!target || positionals.length > 1)
    throw new UsageError('usage: ferry login <server> [--email e] [--password pw]');
  const server = normalizeServer(target);
  const email = values.email ?? (await prompt('E-mail: ', false)).trim();
  const password = values.password ?? (await prompt('Password: ', true));
  const client = new FerryClient(server, '');
  const signed = await client.call<{
    user: { email: string };
    token: { access_token: string; refresh_token: string };
  }>('POST', '/session/token', { email, password });
  client.setToken(signed.token.access_token);
  const tokenName = (values.name ?? `ferry CLI on ${hostname()}`).slice(0, 100);
  const created = await client.call<{ token: string }>('POST', '/user/setting/tokens', { name: tokenName });
  // The session was only needed to make the token.
  await client
    .call('DELETE', '/session/token', { refresh_token: signed.token.refresh_token })
    .catch(() => undefined);
  const path = await writeClientConfig({ server, token: created.token });
  console.log(`Logged in to ${server} as ${signed.user.email}; API token "${tokenName}" saved in ${path}`);
}

async function isLocalTorrent(source: string): Promise<boolean> {
  if (!/\.torrent$/i.test(source) || /^[a-z][a-z0-9+.-]*:/i.test(source)) return false;
  try {
    return (await stat(source)).isFile();
  } catch {
    return false;
  }
}

function parseHeaderFlags(list: string[] | undefined): Record<string, string> | undefined {
  if (!list?.length) return undefined;
  const headers: Record<string, string> = {};
  for (const item of list) {
    const colon = item.indexOf(':');
    if (colon <= 0) throw new UsageError(`--header wants "Name: value", got "${item}"`);
    headers[item.slice(0, colon).trim()] = item.slice(colon + 1).trim();
  }
  return headers;
}

function describeFailures(e: unknown): string {
  if (e instanceof ClientError && e.details) {
    return Object.entries(e.details)
      .map(([src, inner]) => `  ${src}: ${inner.msg}`)
      .join('\n');
  }
  return (e as Error).message;
}

async function uploadTorrent(client: FerryClient, folder: string, file: string): Promise<string> {
  const { size } = await stat(file);
  const base = basename(file).replace(/\.torrent$/i, '');
  for (let n = 0; n < 20; n++) {
    const name = n === 0 ? `${base}.torrent` : `${base} (${n}).torrent`;
    try {
      return await client.upload(
        `${folder}/${encodeURIComponent(name)}`.replace('cloudreve://my//', 'cloudreve://my/'),
        file,
        size,
      );
    } catch (e) {
      // Taken name: try the next one.
      if (!(e instanceof ClientError) || !/exist|conflict/i.test(e.message)) throw e;
    }
  }
  throw new ClientError(`could not find a free name for ${file} in ${drivePath(folder)}`);
}

async function add(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      to: { type: 'string', short: 't' },
      connections: { type: 'string' },
      header: { type: 'string', multiple: true },
      checksum: { type: 'string' },
      'no-wait': { type: 'boolean' },
    },
  });
  if (positionals.length === 0)
    throw new UsageError('usage: ferry add <url|magnet|file.torrent>... [--to <folder>]');
  const client = await connect();
  const dst = driveUri(values.to ?? '/');
  if (dst !== 'cloudreve://my') await client.call('POST', '/file/create', { uri: dst, type: 'folder' });
  const options: Record<string, unknown> = {};
  if (values.connections) options.connections = Number(values.connections);
  const headers = parseHeaderFlags(values.header);
  if (headers) options.headers = headers;
  if (values.checksum) options.checksum = values.checksum;

  const urls: string[] = [];
  const torrents: string[] = [];
  for (const source of positionals) ((await isLocalTorrent(source)) ? torrents : urls).push(source);

  // Follow the event stream before creating, so no update is missed; buffer until ids are known.
  const wait = values['no-wait'] !== true;
  const latest = new Map<string, TaskDto>();
  const ids: string[] = [];
  let view: ReturnType<typeof createProgressView> | null = null;
  const controller = new AbortController();
  let allDone: () => void = () => undefined;
  const done = new Promise<void>((resolve) => (allDone = resolve));
  const settle = () => {
    if (ids.length > 0 && ids.every((id) => FINAL_STATUSES.has(latest.get(id)?.status ?? ''))) allDone();
  };
  const onTask = (task: TaskDto) => {
    latest.set(task.id, task);
    view?.update(task);
    settle();
  };
  const refresh = async () => {
    for (const id of ids) {
      if (FINAL_STATUSES.has(latest.get(id)?.status ?? '')) continue;
      try {
        onTask(await client.call<TaskDto>('GET', `/workflow/${id}`));
      } catch {
        // the next event or check will tell
      }
    }
  };
  let stream: Promise<void> = Promise.resolve();
  const streamState: { error: Error | null } = { error: null };
  if (wait) {
    let first = true;
    await new Promise<void>((resolve, reject) => {
      stream = client
        .followEvents(onTask, controller.signal, async () => {
          if (first) {
            first = false;
            resolve();
          } else await refresh(); // reconnected: catch up on what the gap hid
        })
        .catch((e: unknown) => {
          const error = e instanceof Error ? e : new Error(String(e));
          streamState.error = error;
          reject(error);
          allDone();
        });
    });
  }

  const failures: string[] = [];
  try {
    if (urls.length) {
      try {
        const created = await client.call<TaskDto[]>('POST', '/workflow/download', {
          dst,
          src: urls,
          ...options,
        });
        for (const t of created) ids.push(t.id);
        for (const t of created) if (!latest.has(t.id)) latest.set(t.id, t);
      } catch (e) {
        failures.push(describeFailures(e));
        // A partly failed batch still lists the tasks it created: follow those.
        const created = e instanceof ClientError && Array.isArray(e.data) ? (e.data as TaskDto[]) : [];
        for (const t of created) ids.push(t.id);
        for (const t of created) if (!latest.has(t.id)) latest.set(t.id, t);
      }
    }
    for (const file of torrents) {
      try {
        const uri = await uploadTorrent(client, dst, file);
        const created = await client.call<TaskDto[]>('POST', '/workflow/download', {
          dst,
          src_file: uri,
          ...options,
        });
        for (const t of created) ids.push(t.id);
        for (const t of created) if (!latest.has(t.id)) latest.set(t.id, t);
      } catch (e) {
        failures.push(`${file}: ${describeFailures(e)}`);
      }
    }
    for (const f of failures) console.error(`error: ${f}`);
    if (ids.length === 0) {
      process.exitCode = 1;
      return;
    }
    if (!wait) {
      for (const id of ids) console.log(id);
      return;
    }
    console.log(
      `Started ${ids.length} task${ids.length === 1 ? '' : 's'} into ${drivePath(dst)}: ${ids.join(' ')}`,
    );
    view = createProgressView(process.stdout, ids);
    for (const id of ids) {
      const t = latest.get(id);
      if (t) view.update(t);
    }
    // A backstop for events lost in transit; the stream is what drives the display.
    const backstop = setInterval(() => void refresh(), 15_000);
    settle();
    await done;
    clearInterval(backstop);
    view.finish();
    if (streamState.error) throw streamState.error;
    let bad = failures.length > 0;
    for (const id of ids) {
      const t = latest.get(id)!;
      const where = drivePath(t.summary?.props.dst ?? dst);
      if (t.status === 'completed') console.log(`✓ ${taskName(t)} → ${where}`);
      else {
        bad = true;
        console.log(`✗ ${taskName(t)}: ${t.status}${t.error ? ` (${t.error})` : ''}`);
      }
    }
    if (bad) process.exitCode = 1;
  } finally {
    controller.abort();
    await stream.catch(() => undefined);
  }
}

function statusLine(t: TaskDto): string {
  const d = t.summary?.props.download;
  const size = d?.total ? formatBytes(d.total) : '-';
  const rate = t.status === 'processing' && d?.download_speed ? `${formatBytes(d.download_speed)}/s` : '';
  return [
    t.id.padEnd(8),
    (t.paused ? 'paused' : t.status).padEnd(10),
    `${taskPercent(t).toFixed(1)}%`.padStart(6),
    size.padStart(10),
    rate.padStart(12),
    ` ${taskName(t)} → ${drivePath(t.summary?.props.dst ?? '')}`,
    t.error ? ` (${t.error})` : '',
  ].join(' ');
}

async function tasks(argv: string[]): Promise<void> {
  const { values } = parseArgs({ args: argv, options: { finished: { type: 'boolean', short: 'f' } } });
  const client = await connect();
  const active = await client.call<{ tasks: TaskDto[] }>(
    'GET',
    '/workflow?page_size=100&category=downloading',
  );
  console.log(`ID       STATUS     PROGRESS     SIZE        SPEED  NAME → FOLDER`);
  if (active.tasks.length === 0) console.log('(nothing downloading)');
  for (const t of active.tasks) console.log(statusLine(t));
  const finished = await client.call<{ tasks: TaskDto[] }>(
    'GET',
    `/workflow?page_size=${values.finished ? 100 : 10}&category=downloaded`,
  );
  if (finished.tasks.length) {
    console.log(values.finished ? '\nfinished:' : '\nrecently finished:');
    for (const t of finished.tasks) console.log(statusLine(t));
  }
}

async function cancel(argv: string[]): Promise<void> {
  const { positionals } = parseArgs({ args: argv, allowPositionals: true, options: {} });
  if (positionals.length === 0) throw new UsageError('usage: ferry cancel <task-id>...');
  const client = await connect();
  let bad = false;
  for (const id of positionals) {
    try {
      await client.call('DELETE', `/workflow/download/${encodeURIComponent(id)}`);
      console.log(`canceled ${id}`);
    } catch (e) {
      bad = true;
      console.error(`error: ${id}: ${(e as Error).message}`);
    }
  }
  if (bad) process.exitCode = 1;
}

async function retry(argv: string[]): Promise<void> {
  const { positionals } = parseArgs({ args: argv, allowPositionals: true, options: {} });
  if (positionals.length === 0) throw new UsageError('usage: ferry retry <task-id>...');
  const client = await connect();
  let bad = false;
  for (const id of positionals) {
    try {
      const task = await client.call<TaskDto>('POST', `/workflow/download/${encodeURIComponent(id)}/retry`);
      console.log(`retried ${id} as ${task.id}`);
    } catch (e) {
      bad = true;
      console.error(`error: ${id}: ${(e as Error).message}`);
    }
  }
  if (bad) process.exitCode = 1;
}

async function pauseOrResume(action: 'pause' | 'resume', argv: string[]): Promise<void> {
  const { positionals } = parseArgs({ args: argv, allowPositionals: true, options: {} });
  if (positionals.length === 0) throw new UsageError(`usage: ferry ${action} <task-id>...`);
  const client = await connect();
  let bad = false;
  for (const id of positionals) {
    try {
      await client.call<TaskDto>('POST', `/workflow/download/${encodeURIComponent(id)}/${action}`);
      console.log(`${action === 'pause' ? 'paused' : 'resumed'} ${id}`);
    } catch (e) {
      bad = true;
      console.error(`error: ${id}: ${(e as Error).message}`);
    }
  }
  if (bad) process.exitCode = 1;
}

async function link(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { zip: { type: 'boolean' } },
  });
  if (positionals.length === 0) throw new UsageError('usage: ferry link <path>... [--zip]');
  const client = await connect();
  const result = await client.call<{ urls: Array<{ url: string }>; expires?: string }>('POST', '/file/url', {
    uris: positionals.map(driveUri),
    ...(values.zip ? { archive: true } : {}),
  });
  for (const u of result.urls) console.log(u.url);
}

async function get(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { output: { type: 'string', short: 'o' } },
  });
  if (positionals.length !== 1) throw new UsageError('usage: ferry get <path> [-o <file>|-]');
  const client = await connect();
  const uri = driveUri(positionals[0]!);
  const result = await client.call<{ urls: Array<{ url: string }> }>('POST', '/file/url', {
    uris: [uri],
    download: true,
  });
  const url = result.urls[0]?.url;
  if (!url) throw new ClientError(`no link for ${positionals[0]}`);
  const output = values.output ?? decodeURIComponent(uri.split('/').at(-1) ?? 'download');
  if (output === '-') {
    const res = await fetch(url);
    if (!res.ok || !res.body) throw new ClientError(`download failed: HTTP ${res.status}`);
    await pipeline(Readable.fromWeb(res.body), process.stdout);
    return;
  }
  let have = 0;
  try {
    have = (await stat(output)).size;
  } catch {
    have = 0;
  }
  // A partial file is resumed only with the ETag it was started under (kept beside it until it
  // is complete), sent as If-Range: if the remote file is another one now, the server sends it
  // whole instead of bytes to append to the old ones.
  const etagFile = `${output}.ferry-etag`;
  const started = have > 0 ? (await readFile(etagFile, 'utf8').catch(() => '')).trim() : '';
  if (have > 0 && !started) {
    // Not left half-done by this command (finished earlier, or someone else's file).
    const head = await fetch(url, { method: 'HEAD' });
    if (head.ok && Number(head.headers.get('content-length')) === have) {
      console.log(`${output} is already complete (${formatBytes(have)})`);
      return;
    }
    have = 0;
  }
  const res = await fetch(url, {
    headers: have > 0 ? { range: `bytes=${have}-`, 'if-range': started } : {},
  });
  if (res.status === 416) {
    // Same file, nothing past what we have: complete if the sizes agree.
    const head = await fetch(url, { method: 'HEAD' });
    const total = Number(head.headers.get('content-length'));
    if (total === have && head.headers.get('etag') === started) {
      await rm(etagFile, { force: true });
      console.log(`${output} is already complete (${formatBytes(have)})`);
      return;
    }
    throw new ClientError(`${output} is larger than the remote file: remove it and try again`);
  }
  if (!res.ok || !res.body) throw new ClientError(`download failed: HTTP ${res.status}`);
  const etag = res.headers.get('etag');
  if (etag && !etag.startsWith('W/')) await writeFile(etagFile, etag);
  else await rm(etagFile, { force: true });
  const resumed = res.status === 206;
  const length = Number(res.headers.get('content-length') ?? 0);
  const total = resumed ? have + length : length;
  let got = resumed ? have : 0;
  const tty = process.stderr.isTTY === true;
  let last = 0;
  const body = Readable.fromWeb(res.body);
  body.on('data', (chunk: Buffer) => {
    got += chunk.length;
    const now = Date.now();
    if (tty && now - last > 200) {
      last = now;
      const pct = total ? ((got / total) * 100).toFixed(1) : '?';
      process.stderr.write(`\r\x1b[2K${output}  ${formatBytes(got)} / ${formatBytes(total)}  ${pct}%`);
    }
  });
  await pipeline(body, createWriteStream(output, { flags: resumed ? 'a' : 'w' }));
  await rm(etagFile, { force: true });
  if (tty) process.stderr.write('\r\x1b[2K');
  console.log(`${resumed ? 'resumed' : 'saved'} ${output} (${formatBytes(got)})`);
}

/** Runs one client command; errors are printed without a stack and set the exit code. */
export async function runClient(command: string, argv: string[]): Promise<void> {
  try {
    switch (command) {
      case 'login':
        return await login(argv);
      case 'add':
        return await add(argv);
      case 'tasks':
        return await tasks(argv);
      case 'cancel':
        return await cancel(argv);
      case 'retry':
        return await retry(argv);
      case 'pause':
      case 'resume':
        return await pauseOrResume(command, argv);
      case 'link':
        return await link(argv);
      case 'get':
        return await get(argv);
      default:
        throw new UsageError(`unknown command ${command}\n${CLIENT_USAGE}`);
    }
  } catch (e) {
    if (e instanceof ClientError || (e as { code?: string }).code?.startsWith?.('ERR_PARSE_ARGS')) {
      console.error(`error: ${(e as Error).message}`);
      process.exitCode = 1;
      return;
    }
    throw e;
  }
}
