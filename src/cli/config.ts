// Where `ferry login` keeps the server and API token: $FERRY_CONFIG_DIR, else
// $XDG_CONFIG_HOME/ferry, else ~/.config/ferry — config.json, readable by the user only.
import { chmod, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';

export interface ClientConfig {
  server: string;
  token: string;
}

export function configDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.FERRY_CONFIG_DIR) return env.FERRY_CONFIG_DIR;
  const xdg = env.XDG_CONFIG_HOME;
  return join(xdg && xdg.startsWith('/') ? xdg : join(homedir(), '.config'), 'ferry');
}

export function configPath(env: NodeJS.ProcessEnv = process.env): string {
  return join(configDir(env), 'config.json');
}

export async function readClientConfig(env: NodeJS.ProcessEnv = process.env): Promise<ClientConfig | null> {
  // FERRY_SERVER + FERRY_TOKEN in the environment win (CI, one-off scripts).
  if (env.FERRY_SERVER && env.FERRY_TOKEN)
    return { server: normalizeServer(env.FERRY_SERVER), token: env.FERRY_TOKEN };
  let text: string;
  try {
    text = await readFile(configPath(env), 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
  const parsed = JSON.parse(text) as Partial<ClientConfig>;
  if (typeof parsed.server !== 'string' || typeof parsed.token !== 'string') return null;
  return { server: parsed.server, token: parsed.token };
}

export async function writeClientConfig(
  config: ClientConfig,
  env: NodeJS.ProcessEnv = process.env,
): Promise<string> {
  const dir = configDir(env);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const path = configPath(env);
  const temp = `${path}.${process.pid}.tmp`;
  await writeFile(temp, JSON.stringify(config, null, 2) + '\n', { mode: 0o600 });
  await chmod(temp, 0o600);
  await rename(temp, path);
  return path;
}

/** `host:port`, `http://host/`, `https://host/base/` → an origin-and-path URL without trailing slash. */
export function normalizeServer(input: string): string {
  let value = input.trim();
  if (!/^https?:\/\//i.test(value)) value = `http://${value}`;
  const url = new URL(value);
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw new Error(`not an http(s) server: ${input}`);
  return `${url.protocol}//${url.host}${url.pathname.replace(/\/+$/, '')}`;
}
