// Screenshots of the web app's main pages at desktop (1280×800) and phone (390×844) width, plus
// the tasks page in dark mode, into docs/screenshots/ (or the folder given as first argument).
//
//   npx node scripts/screenshots.ts [out-dir]
//
// Starts its own server (throwaway data dir) and loopback origin, fills a demo drive (folders,
// uploads, finished / failed / running downloads, an API token), then drives Debian's Chromium
// (apt-get install chromium) with playwright-core. The browser tests call `shootAll` too.
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { startOrigin, type Origin } from '../test/helpers/origin.ts';
import {
  ADMIN_EMAIL,
  ADMIN_PASSWORD,
  ROOT,
  startServer,
  uploadFile,
  waitFor,
  type TestServer,
} from '../test/helpers/server.ts';

export const CHROMIUM = process.env.FERRY_CHROMIUM ?? '/usr/bin/chromium';
export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
];

export function launchChromium(): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true });
}

export const SIZES = {
  desktop: { width: 1280, height: 800 },
  phone: { width: 390, height: 844 },
} as const;

/** Signs in through the form. */
export async function signInUi(page: Page, base: string, email = ADMIN_EMAIL, password = ADMIN_PASSWORD) {
  await page.goto(base + '/');
  await page.getByLabel('E-mail').fill(email);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('navigation', { name: 'Breadcrumbs' }).waitFor();
}

/** One PNG per page and size; returns the written paths. */
export async function shootAll(browser: Browser, base: string, outDir: string): Promise<string[]> {
  await mkdir(outDir, { recursive: true });
  const written: string[] = [];
  const shots: Array<[string, keyof typeof SIZES, 'light' | 'dark']> = [];
  for (const size of Object.keys(SIZES) as Array<keyof typeof SIZES>) {
    for (const name of ['signin', 'drive', 'new-download', 'tasks', 'tasks-finished', 'settings', 'admin'])
      shots.push([name, size, 'light']);
  }
  shots.push(['tasks', 'desktop', 'dark']);
  shots.push(['drive', 'phone', 'dark']);
  const bySize = new Map<string, typeof shots>();
  for (const s of shots) {
    const key = `${s[1]}:${s[2]}`;
    bySize.set(key, [...(bySize.get(key) ?? []), s]);
  }
  for (const [key, list] of bySize) {
    const [size, scheme] = key.split(':') as [keyof typeof SIZES, 'light' | 'dark'];
    const context = await browser.newContext({
      viewport: SIZES[size],
      colorScheme: scheme,
      deviceScaleFactor: 1,
    });
    const page = await context.newPage();
    const file = (name: string) => join(outDir, `${name}-${size}${scheme === 'dark' ? '-dark' : ''}.png`);
    const names = list.map((s) => s[0]);
    if (names.includes('signin')) {
      await page.goto(base + '/');
      await page.getByLabel('E-mail').waitFor();
      await page.screenshot({ path: file('signin') });
      written.push(file('signin'));
    }
    await signInUi(page, base);
    const visit = async (name: string, path: string, ready: () => Promise<unknown>) => {
      if (!names.includes(name)) return;
      await page.goto(base + path);
      await ready();
      await page.waitForTimeout(300);
      await page.screenshot({ path: file(name), fullPage: size === 'phone' });
      written.push(file(name));
    };
    await visit('drive', '/drive', () => page.locator('table.files tbody tr, .empty').first().waitFor());
    await visit('new-download', '/new', async () => {
      await page.getByLabel('Links').fill('https://mirror.example.org/debian-12.iso\nmagnet:?xt=urn:btih:…');
      await page.getByText('Advanced').click();
    });
    await visit('tasks', '/tasks', () => page.locator('li.task, .empty').first().waitFor());
    await visit('tasks-finished', '/tasks/finished', () => page.locator('li.task, .empty').first().waitFor());
    await visit('settings', '/settings', () =>
      page.locator('table.tokens, p:has-text("No tokens yet.")').first().waitFor(),
    );
    await visit('admin', '/admin', () => page.getByRole('heading', { name: 'Nodes' }).waitFor());
    await context.close();
  }
  return written;
}

/** A drive that looks used: folders, uploads, finished, failed and running downloads, a token. */
export async function seedDemo(server: TestServer, origin: Origin): Promise<void> {
  const { access: token } = await server.signIn();
  for (const folder of ['ISOs', 'Movies', 'Music', 'Papers'])
    await server.api('POST', '/file/create', {
      token,
      body: { uri: `cloudreve://my/${folder}`, type: 'folder' },
    });
  await uploadFile(server, token, 'cloudreve://my/notes.txt', Buffer.from('Things to fetch this week.\n'));
  await uploadFile(server, token, 'cloudreve://my/Papers/raft.pdf', Buffer.alloc(412_345, 7));
  const quick = [
    origin.route('/releases/debian-12.7.0-amd64-netinst.iso', { size: 6 * 1024 * 1024, seed: 3 }),
    origin.route('/media/big-buck-bunny-1080p.mp4', { size: 9 * 1024 * 1024, seed: 4 }),
  ];
  const created = await server.api<Array<{ id: string }>>('POST', '/workflow/download', {
    token,
    body: { dst: 'cloudreve://my', src: quick },
  });
  const failed = origin.route('/gone/old-release.tar.gz', { status: 404 });
  await server.api('POST', '/workflow/download', {
    token,
    body: { dst: 'cloudreve://my/ISOs', src: [failed] },
  });
  for (const t of created.body.data ?? []) {
    await waitFor(async () => {
      const r = await server.api<{ status: string }>('GET', `/workflow/${t.id}`, { token });
      return r.body.data?.status === 'completed' ? true : undefined;
    });
  }
  // Still running while the pictures are taken.
  const slow = [
    origin.route('/releases/ubuntu-24.04-desktop-amd64.iso', {
      size: 512 * 1024 * 1024,
      seed: 5,
      throttle: 900_000,
    }),
    origin.route('/datasets/openstreetmap-europe.osm.pbf', {
      size: 512 * 1024 * 1024,
      seed: 6,
      throttle: 300_000,
    }),
  ];
  await server.api('POST', '/workflow/download', {
    token,
    body: { dst: 'cloudreve://my/ISOs', src: slow, connections: 4 },
  });
  await server.api('POST', '/user/setting/tokens', { token, body: { name: 'backup script' } });
  await server.api('POST', '/user/setting/tokens', { token, body: { name: 'ferry CLI on laptop' } });
  await new Promise((r) => setTimeout(r, 2500));
}

if (import.meta.main) {
  const outDir = process.argv[2] ?? join(ROOT, 'docs', 'screenshots');
  const origin = await startOrigin();
  const server = await startServer({ args: ['--allow-network', '127.0.0.1/32'] });
  let browser: Browser | undefined;
  try {
    await seedDemo(server, origin);
    browser = await launchChromium();
    for (const path of await shootAll(browser, server.url, outDir)) console.log(path);
  } finally {
    await browser?.close();
    await server.stop();
    await origin.close();
  }
}
