// The web app in a real browser (Debian's Chromium, headless, through playwright-core) against a
// real server process, a loopback HTTP origin and a loopback BitTorrent swarm: sign in, add a
// download and watch its bar reach 100 %, read its bytes back through the link the UI hands out,
// cancel from the UI, pick files of a torrent in the UI, phone width and keyboard, screenshots.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { CHROMIUM, launchChromium, shootAll, signInUi } from '../../scripts/screenshots.ts';
import { expectedSha256, startOrigin, type Origin } from '../helpers/origin.ts';
import { ADMIN_EMAIL, ROOT, startServer, waitFor, type TestServer } from '../helpers/server.ts';
import { startSwarm, type Swarm } from '../helpers/swarm.ts';

const DIST = join(ROOT, 'web', 'dist', 'index.html');

let origin: Origin;
let server: TestServer;
let swarm: Swarm;
let browser: Browser;
let context: BrowserContext;
let page: Page;
let token: string;
let tmp: string;

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function listNames(uri: string): Promise<string[]> {
  const r = await server.api<{ files: Array<{ name: string }> }>(
    'GET',
    `/file?uri=${encodeURIComponent(uri)}`,
    {
      token,
    },
  );
  return r.body.data?.files.map((f) => f.name) ?? [];
}

async function taskStatus(id: string): Promise<string> {
  return (await server.api<{ status: string }>('GET', `/workflow/${id}`, { token })).body.data?.status ?? '';
}

/** Fills the new-download form with one source and starts it; returns the task card. */
async function startDownload(source: string, connections?: number) {
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'New download' }).click();
  await page.getByLabel('Links').fill(source);
  if (connections) {
    await page.getByText('Advanced').click();
    await page.getByLabel('Connections per download').fill(String(connections));
  }
  await page.getByRole('button', { name: 'Start download' }).click();
  await page.waitForURL(/\/tasks$/);
}

describe('web app in Chromium', { timeout: 240_000 }, () => {
  before(async () => {
    assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: apt-get install -y chromium`);
    assert.ok(existsSync(DIST), 'web/dist is missing: run `npm run build:web`');
    tmp = await mkdtemp(join(tmpdir(), 'ferry-web-'));
    origin = await startOrigin();
    swarm = await startSwarm({
      name: 'Web Swarm',
      files: [
        { path: 'a.bin', size: 1536 * 1024, seed: 61 },
        { path: 'docs/b.txt', size: 300 * 1024, seed: 62 },
        { path: 'docs/deep/c.bin', size: 1024 * 1024, seed: 63 },
        { path: 'd.bin', size: 1024 * 1024, seed: 64 },
      ],
    });
    server = await startServer({
      args: [
        '--allow-network',
        '127.0.0.1/32',
        '--no-bt-dht',
        '--no-bt-pex',
        '--no-bt-lsd',
        '--bt-download-limit',
        String(384 * 1024),
      ],
    });
    token = (await server.signIn()).access;
    browser = await launchChromium();
    context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    page = await context.newPage();
  });
  after(async () => {
    await browser?.close();
    await server?.stop();
    await swarm?.close();
    await origin?.close();
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  test('serves the app with the right headers and SPA fallback', async () => {
    const index = await fetch(`${server.url}/tasks/finished`);
    assert.equal(index.status, 200);
    assert.equal(index.headers.get('content-type'), 'text/html; charset=utf-8');
    assert.equal(index.headers.get('cache-control'), 'no-cache');
    const html = await index.text();
    const asset = /src="(\/assets\/[^"]+\.js)"/.exec(html)?.[1];
    assert.ok(asset, html);
    const js = await fetch(server.url + asset);
    assert.equal(js.headers.get('content-type'), 'text/javascript; charset=utf-8');
    assert.match(js.headers.get('cache-control') ?? '', /immutable/);
    assert.equal((await fetch(`${server.url}/assets/missing.js`)).status, 404);
    assert.equal((await fetch(`${server.url}/%2e%2e/package.json`)).status, 404);
    assert.equal((await fetch(`${server.url}/assets/..%2f..%2fpackage.json`)).status, 404);
    // The API faces keep their own 404s.
    const api = await fetch(`${server.url}/api/v4/nope`);
    assert.equal(((await api.json()) as { code: number }).code, 404);
  });

  test('sign in: a wrong password is refused, the right one opens the drive and survives a reload', async () => {
    await page.goto(server.url + '/');
    await page.getByLabel('E-mail').fill(ADMIN_EMAIL);
    await page.getByLabel('Password').fill('not-the-password');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByText('Incorrect password or email address').waitFor();
    await signInUi(page, server.url);
    assert.equal(await page.getByRole('link', { name: 'My files' }).getAttribute('aria-current'), 'page');
    await page.reload();
    await page.getByRole('navigation', { name: 'Breadcrumbs' }).waitFor();
  });

  test('add a download: its bar moves live to 100 %, and the link hands back the exact bytes', async () => {
    const size = 4 * 1024 * 1024 + 17;
    const url = origin.route('/web/ubuntu.iso', { size, seed: 51, throttle: 1024 * 1024 });
    // Into a new folder, made with the keyboard (Enter submits the dialog).
    await page.getByRole('button', { name: 'New folder' }).click();
    await page.getByLabel('Folder name').fill('isos');
    await page.keyboard.press('Enter');
    await page.getByRole('link', { name: 'isos' }).click();
    await page.waitForURL(/\/drive\/isos$/);
    await page.getByRole('link', { name: 'Download here' }).click();
    await page.getByText('/isos', { exact: true }).waitFor();
    await page.getByLabel('Links').fill(url);
    await page.getByText('Advanced').click();
    await page.getByLabel('Connections per download').fill('1');
    await page.getByRole('button', { name: 'Start download' }).click();
    await page.waitForURL(/\/tasks$/);

    const bar = page.getByRole('progressbar', { name: 'Progress of ubuntu.iso' });
    const seen = new Set<number>();
    await waitFor(
      async () => {
        const v = Number(await bar.getAttribute('aria-valuenow', { timeout: 20_000 }));
        seen.add(v);
        return v === 100 ? true : undefined;
      },
      60_000,
      'the bar to reach 100 %',
    );
    const partial = [...seen].filter((v) => v > 0 && v < 100);
    assert.ok(partial.length >= 2, `the bar moved through ${[...seen].join(', ')}`);
    await page.locator('li.task', { hasText: 'ubuntu.iso' }).getByText('Completed').waitFor();

    // The link the UI hands out serves the exact bytes; so does the zip of the selection.
    await page.getByRole('link', { name: '/isos' }).first().click();
    await page.getByRole('checkbox', { name: 'Select ubuntu.iso' }).check();
    await page.getByRole('button', { name: 'Download links' }).click();
    const link = await page.getByRole('textbox', { name: 'Link for ubuntu.iso' }).inputValue();
    assert.match(link, /\/api\/v4\/file\/content\//);
    assert.equal(sha256(Buffer.from(await (await fetch(link)).arrayBuffer())), expectedSha256(size, 51));
    await page.keyboard.press('Escape');
    await page.getByRole('dialog').waitFor({ state: 'hidden' });
    await page.getByRole('button', { name: 'Download as zip' }).click();
    const zipLink = await page.getByRole('textbox', { name: 'Link for archive.zip' }).inputValue();
    const zip = Buffer.from(await (await fetch(zipLink)).arrayBuffer());
    assert.equal(zip.subarray(0, 2).toString(), 'PK');
    assert.ok(zip.length > size);
    await page.keyboard.press('Escape');
  });

  test('cancel a running download from the UI', async () => {
    const url = origin.route('/web/slow.bin', { size: 64 * 1024 * 1024, seed: 52, throttle: 200 * 1024 });
    await startDownload(url, 1);
    const card = page.locator('li.task', { hasText: 'slow.bin' });
    await card.getByText(/Downloading/).waitFor();
    const id = await card.getAttribute('data-task-id');
    // Pause and resume from the card.
    await card.getByRole('button', { name: 'Pause' }).click();
    await card.getByText('Paused').waitFor({ timeout: 15_000 });
    assert.equal(
      (await server.api<{ paused?: boolean }>('GET', `/workflow/${id}`, { token })).body.data?.paused,
      true,
    );
    await card.getByRole('button', { name: 'Resume' }).click();
    await card.getByText(/Queued|Downloading/).waitFor({ timeout: 15_000 });
    await card.getByRole('button', { name: 'Cancel' }).click();
    await card.getByRole('button', { name: 'Yes, cancel' }).click();
    await page.locator('li.task', { hasText: 'slow.bin' }).getByText('Canceled').waitFor({ timeout: 15_000 });
    assert.equal(await taskStatus(id!), 'canceled');
    // Finished tab lists it, with a retry button.
    await page.getByRole('link', { name: 'Finished' }).click();
    await page.locator('li.task', { hasText: 'slow.bin' }).getByRole('button', { name: 'Retry' }).click();
    // The retry is a new task from the same source, with the same options (one connection).
    const retried = await waitFor(
      async () => {
        const r = await server.api<{ tasks: Array<{ id: string; summary: { props: { src_str: string } } }> }>(
          'GET',
          '/workflow?page_size=10&category=downloading',
          { token },
        );
        return r.body.data?.tasks.find((t) => t.summary.props.src_str === url);
      },
      15_000,
      'the retried task',
    );
    assert.notEqual(retried.id, id);
    await server.api('DELETE', `/workflow/download/${retried.id}`, { token });
  });

  test('a mixed batch: the form lists the line that started and keeps only the failed ones', async () => {
    const good = origin.route('/web/batch-ok.bin', { size: 4000, seed: 53 });
    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'New download' }).click();
    await page.getByLabel('Links').fill(['ftp://127.0.0.1/bad', good, 'not a url'].join('\n'));
    await page.getByRole('button', { name: 'Start download' }).click();
    const started = page.getByRole('status').filter({ hasText: 'Started 1 task' });
    await started.waitFor();
    await started.getByText(good).waitFor();
    assert.equal(await page.getByLabel('Links').inputValue(), 'ftp://127.0.0.1/bad\nnot a url');
    await page
      .getByRole('alert')
      .getByText(/ftp:\/\/127\.0\.0\.1\/bad/)
      .waitFor();
  });

  test('/new?url= prefills the links; the tab title counts unfinished tasks', async () => {
    const slow = origin.route('/web/title.bin', { size: 64 * 1024 * 1024, seed: 54, throttle: 200 * 1024 });
    const other = 'https://example.org/b.iso';
    await page.goto(`${server.url}/new?url=${encodeURIComponent(slow)}&url=${encodeURIComponent(other)}`);
    assert.equal(await page.getByLabel('Links').inputValue(), `${slow}\n${other}`);
    await page.getByLabel('Links').fill(slow);
    await page.getByRole('button', { name: 'Start download' }).click();
    await page.waitForURL(/\/tasks$/);
    await waitFor(
      async () => (/^\(\d+\) Ferry$/.test(await page.title()) ? true : undefined),
      15_000,
      'a count in the title',
    );
    const id = await page.locator('li.task', { hasText: 'title.bin' }).getAttribute('data-task-id');
    await server.api('DELETE', `/workflow/download/${id}`, { token });
    await waitFor(
      async () => ((await page.title()) === 'Ferry' ? true : undefined),
      15_000,
      'the plain title',
    );
  });

  test('a .torrent uploaded in the UI: unchecking files there keeps them out of the drive', async () => {
    const torrentPath = join(tmp, 'web-swarm.torrent');
    await writeFile(torrentPath, swarm.torrentFile);
    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'New download' }).click();
    await page.locator('input[type=file][aria-label=".torrent file to upload"]').setInputFiles(torrentPath);
    await page.getByText('web-swarm.torrent').waitFor();
    await page.getByRole('button', { name: 'Start download' }).click();
    await page.waitForURL(/\/tasks$/);
    const card = page.locator('li.task', { hasText: 'Web Swarm' });
    await card.getByRole('button', { name: /^Files \(4\)$/ }).click({ timeout: 60_000 });
    await card.getByRole('checkbox', { name: /deep\/c\.bin/ }).uncheck();
    await card.getByRole('checkbox', { name: /^d\.bin|\/d\.bin/ }).uncheck();
    await card.getByText('2 of 4 selected').waitFor();
    const id = await card.getAttribute('data-task-id');
    await waitFor(
      async () => {
        const s = await taskStatus(id!);
        return ['completed', 'error', 'canceled'].includes(s) ? s : undefined;
      },
      90_000,
      'the torrent task to finish',
    ).then((s) => assert.equal(s, 'completed'));
    const top = await listNames(`cloudreve://my/${swarm.name}`);
    assert.ok(top.includes('a.bin'), top.join());
    assert.ok(!top.includes('d.bin'), `d.bin was deselected: ${top.join()}`);
    assert.deepEqual(
      await listNames(`cloudreve://my/${swarm.name}/docs`).then((n) => n.includes('b.txt')),
      true,
    );
    const deep = await listNames(`cloudreve://my/${swarm.name}/docs/deep`);
    assert.ok(!deep.includes('c.bin'), `c.bin was deselected: ${deep.join()}`);
  });

  test('phone width (360 px): no sideways scrolling; dialogs answer Escape and Enter', async () => {
    const phone = await browser.newContext({ viewport: { width: 360, height: 740 } });
    try {
      const p = await phone.newPage();
      await signInUi(p, server.url);
      for (const path of ['/drive', '/new', '/tasks', '/tasks/finished', '/settings', '/admin']) {
        await p.goto(server.url + path);
        await p.locator('main h1, main nav[aria-label="Breadcrumbs"]').first().waitFor();
        const overflow = Number(await p.evaluate('document.documentElement.scrollWidth - window.innerWidth'));
        assert.ok(overflow <= 0, `${path} scrolls sideways by ${overflow}px`);
      }
      await p.goto(server.url + '/drive');
      await p.getByRole('button', { name: 'New folder' }).click();
      await p.getByRole('dialog', { name: 'New folder' }).waitFor();
      await p.keyboard.press('Escape');
      await p.getByRole('dialog').waitFor({ state: 'hidden' });
      // Focus goes back to the button that opened it.
      assert.equal(await p.evaluate('document.activeElement?.textContent'), 'New folder');
      await p.keyboard.press('Enter');
      await p.getByLabel('Folder name').fill('from phone');
      await p.keyboard.press('Enter');
      await p.getByRole('link', { name: 'from phone' }).waitFor();
    } finally {
      await phone.close();
    }
  });

  test('settings: an API token is shown once, listed, then revoked', async () => {
    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Settings' }).click();
    await page.getByLabel('Name').fill('ui test token');
    await page.getByRole('button', { name: 'Create token' }).click();
    const value = await page.getByRole('textbox', { name: 'New API token' }).inputValue();
    assert.match(value, /^fry_/);
    const me = await fetch(`${server.url}/api/v4/user/me`, { headers: { authorization: `Bearer ${value}` } });
    assert.equal(((await me.json()) as { code: number }).code, 0);
    await page.keyboard.press('Escape');
    const row = page.locator('table.tokens tr', { hasText: 'ui test token' });
    await row.getByRole('button', { name: 'Revoke' }).click();
    await page.getByRole('dialog', { name: 'Revoke token?' }).getByRole('button', { name: 'Revoke' }).click();
    await row.waitFor({ state: 'detached' });
    const after = await fetch(`${server.url}/api/v4/user/me`, {
      headers: { authorization: `Bearer ${value}` },
    });
    assert.equal(((await after.json()) as { code: number }).code, 401);
  });

  test('screenshots of every main page at desktop and phone width', async () => {
    const dir = join(tmp, 'shots');
    const written = await shootAll(browser, server.url, dir);
    assert.equal(written.length, 16);
    for (const path of written) {
      const png = await readFile(path);
      assert.equal(png.subarray(1, 4).toString(), 'PNG', path);
    }
  });
});
