// Contract tests for Cloudreve's own clients (web app cloudreve/frontend, SDK cloudreve/sdk,
// CLI cloudreve/cli): each test replays the requests those clients send — method, headers,
// body shape — and checks the fields and types they parse from the answer. Written from
// reading the clients' source; no client code is used here.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, uploadFile, type TestServer } from '../helpers/server.ts';

let server: TestServer;
let token: string;
let userId: string;

interface Raw {
  status: number;
  headers: Headers;
  text: string;
  json: { code: number; data?: unknown; msg: string } & Record<string, unknown>;
}

/** One request exactly as a client sends it (raw headers and body string). */
async function send(
  method: string,
  path: string,
  init: { token?: string; headers?: Record<string, string>; body?: string } = {},
): Promise<Raw> {
  const headers: Record<string, string> = { ...init.headers };
  if (init.token) headers.Authorization = `Bearer ${init.token}`;
  const res = await fetch(`${server.url}/api/v4/${path}`, {
    method,
    headers,
    redirect: 'manual',
    ...(init.body !== undefined ? { body: init.body } : {}),
  });
  const text = await res.text();
  let json: Raw['json'];
  try {
    json = JSON.parse(text) as Raw['json'];
  } catch {
    json = { code: -999, msg: text };
  }
  return { status: res.status, headers: res.headers, text, json };
}

const data = (r: Raw) => {
  assert.equal(r.json.code, 0, r.text);
  return r.json.data as Record<string, unknown>;
};

/** SemVer precedence as the CLI applies it (numeric, then prerelease; build ignored). */
function semver(v: string) {
  const m = /^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-([0-9A-Za-z.-]+))?(?:\+([0-9A-Za-z.-]+))?$/.exec(v);
  assert.ok(m, `not canonical SemVer: ${v}`);
  return { main: [Number(m[1]), Number(m[2]), Number(m[3])], pre: m[4] ? m[4].split('.') : [] };
}
function compare(a: string, b: string): number {
  const x = semver(a);
  const y = semver(b);
  for (let i = 0; i < 3; i++) if (x.main[i] !== y.main[i]) return x.main[i]! - y.main[i]!;
  if (!x.pre.length || !y.pre.length) return y.pre.length - x.pre.length;
  for (let i = 0; i < Math.max(x.pre.length, y.pre.length); i++) {
    const p = x.pre[i];
    const q = y.pre[i];
    if (p === undefined || q === undefined) return p === undefined ? -1 : 1;
    if (p === q) continue;
    const np = /^\d+$/.test(p);
    const nq = /^\d+$/.test(q);
    if (np && nq) return Number(p) - Number(q);
    if (np !== nq) return np ? -1 : 1;
    return p < q ? -1 : 1;
  }
  return 0;
}

before(async () => {
  server = await startServer();
  const signed = await server.signIn();
  token = signed.access;
  userId = signed.userId;
});
after(async () => {
  await server?.stop();
});

describe('CLI and SDK: server version', () => {
  test('/site/ping is a canonical SemVer the CLI accepts (>=4.17.0 <5)', async () => {
    const r = await send('GET', 'site/ping');
    assert.equal(r.status, 200);
    assert.equal(r.json.code, 0);
    assert.equal(typeof r.json.data, 'string');
    const version = r.json.data as string;
    assert.ok(!version.endsWith('-pro'));
    assert.ok(compare(version, '4.17.0') >= 0, `${version} < 4.17.0`);
    assert.ok(compare(version, '5.0.0-0') < 0, `${version} >= 5`);
    // The comparator itself: a prerelease sorts below its release.
    assert.ok(compare('4.17.0-ferry', '4.17.0') < 0);
  });
});

describe('sign-in: site/config and session', () => {
  test('SDK config(): basic + login in parallel, no session; booleans and strings only', async () => {
    const [basic, login] = await Promise.all([
      send('GET', 'site/config/basic'),
      send('GET', 'site/config/login'),
    ]);
    const merged = { ...data(basic), ...data(login) };
    for (const key of ['login_captcha', 'reg_captcha', 'forget_captcha', 'register_enabled'])
      if (merged[key] !== undefined) assert.equal(typeof merged[key], 'boolean', key);
    for (const key of ['captcha_type', 'captcha_ReCaptchaKey', 'turnstile_site_id'])
      if (merged[key] !== undefined) assert.equal(typeof merged[key], 'string', key);
    assert.equal(merged.login_captcha ?? false, false, 'the CLI refuses password sign-in with a captcha');
    // Anonymous: the web app keeps this user as its anonymous one.
    const user = data(basic).user as Record<string, unknown>;
    assert.equal(user.anonymous, true);
    assert.equal(typeof user.id, 'string');
  });

  test('basic config with a session carries the signed-in user (refresh-token import)', async () => {
    const r = data(await send('GET', 'site/config/basic', { token }));
    const user = r.user as { id: string; nickname: string; email: string; group: Record<string, unknown> };
    assert.equal(user.id, userId);
    assert.equal(typeof user.nickname, 'string');
    assert.equal(user.email, 'admin@example.com');
    assert.equal(typeof user.group.id, 'string');
    assert.equal(typeof user.group.name, 'string');
    assert.equal(typeof user.group.permission, 'string');
    assert.equal(r.title, 'Ferry');
    assert.match(String(r.logo), /^data:image\/svg\+xml;base64,/);
    assert.equal(typeof JSON.parse(String(r.themes)), 'object');
  });

  test('web app sections: explorer, emojis, app, thumb, vas; any other → basic', async () => {
    const explorer = data(await send('GET', 'site/config/explorer', { token }));
    assert.ok(Array.isArray(explorer.file_viewers), 'SDK decodes file_viewers as an array');
    assert.ok(Array.isArray(JSON.parse(String(explorer.icons))));
    assert.equal(typeof explorer.max_batch_size, 'number');
    assert.equal(explorer.title, undefined);
    assert.equal(
      typeof JSON.parse(String(data(await send('GET', 'site/config/emojis')).emoji_preset)),
      'object',
    );
    assert.deepEqual(data(await send('GET', 'site/config/thumb')).thumb_exts, []);
    for (const section of ['app', 'vas'])
      assert.equal(data(await send('GET', `site/config/${section}`)).title, undefined);
    assert.equal(data(await send('GET', 'site/config/anything-else')).title, 'Ferry');
  });

  test('session/prepare: password sign-in enabled', async () => {
    const r = data(await send('GET', `session/prepare?email=${encodeURIComponent('admin@example.com')}`));
    assert.equal(r.password_enabled, true);
    assert.equal(r.webauthn_enabled, false);
  });

  test('session/oauth/app/{id}: Cloudreve\'s "App not found" (404), which the CLI reports as unsupported', async () => {
    const r = await send('GET', 'session/oauth/app/393a1839-f52e-498e-9972-e77cc2241eee');
    assert.equal(r.status, 200);
    assert.equal(r.json.code, 404);
  });
});

describe('users', () => {
  test('user/info/{id}: redacted public profile, no e-mail; unknown id → 40021', async () => {
    const r = data(await send('GET', `user/info/${userId}`));
    assert.equal(r.id, userId);
    assert.equal(typeof r.nickname, 'string');
    assert.equal(typeof r.created_at, 'string');
    assert.equal(r.email, undefined);
    assert.equal(typeof (r.group as { name: string }).name, 'string');
    assert.equal((await send('GET', 'user/info/nope')).json.code, 40021);
  });

  test('user/avatar/{id}: a generated image for <img> (no session), cacheable; ?nocache=1 is not', async () => {
    const r = await send('GET', `user/avatar/${userId}`);
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type') ?? '', /^image\/svg\+xml/);
    assert.match(r.headers.get('cache-control') ?? '', /public, max-age=\d+/);
    assert.match(r.text, /^<svg /);
    const etag = r.headers.get('etag')!;
    assert.equal(
      (await send('GET', `user/avatar/${userId}`, { headers: { 'If-None-Match': etag } })).status,
      304,
    );
    const fresh = await send('GET', `user/avatar/${userId}?nocache=1&key=3`);
    assert.equal(fresh.status, 200);
    assert.equal(fresh.headers.get('cache-control'), null);
    assert.equal((await send('GET', 'user/avatar/nope')).json.code, 40021);
    // The anonymous user the basic config names has one too.
    const anonymous = (data(await send('GET', 'site/config/basic')).user as { id: string }).id;
    assert.equal((await send('GET', `user/avatar/${anonymous}`)).status, 200);
  });

  test('user/setting: what the Settings page reads; PATCH nick renames, other fields → 40019', async () => {
    const r = data(await send('GET', 'user/setting', { token }));
    for (const key of ['version_retention_enabled', 'passwordless', 'two_fa_enabled', 'disable_view_sync'])
      assert.equal(typeof r[key], 'boolean', key);
    assert.equal(typeof r.share_links_in_profile, 'string');
    assert.equal((await send('GET', 'user/setting')).json.code, 401);
    const json = { token, headers: { 'Content-Type': 'application/json' } };
    assert.equal(
      (await send('PATCH', 'user/setting', { ...json, body: JSON.stringify({ nick: 'Captain' }) })).json.code,
      0,
    );
    assert.equal(
      (data(await send('GET', 'site/config/basic', { token })).user as { nickname: string }).nickname,
      'Captain',
    );
    const theme = await send('PATCH', 'user/setting', {
      ...json,
      body: JSON.stringify({ preferred_theme: '#000000' }),
    });
    assert.equal(theme.json.code, 40019);
  });
});

describe('files: info, thumbnails, entities', () => {
  before(async () => {
    await server.api('POST', '/file/create', {
      token,
      body: { uri: 'cloudreve://my/docs/sub', type: 'folder' },
    });
    await uploadFile(server, token, 'cloudreve://my/docs/a.txt', Buffer.from('hello'));
    await uploadFile(server, token, 'cloudreve://my/docs/sub/b.bin', Buffer.alloc(1000, 7));
  });

  test('SDK info(): file/info?uri&extended=true&folder_summary=true on a file', async () => {
    const uri = 'cloudreve://my/docs/a.txt';
    const r = data(
      await send('GET', `file/info?uri=${encodeURIComponent(uri)}&extended=true&folder_summary=true`, {
        token,
      }),
    );
    assert.equal(r.type, 0);
    assert.equal(r.name, 'a.txt');
    assert.equal(r.path, uri);
    assert.equal(r.size, 5);
    assert.equal(typeof r.primary_entity, 'string');
    const ext = r.extended_info as {
      storage_used: number;
      entities: Array<{ id: string; size: number; type: number }>;
    };
    assert.equal(ext.storage_used, 5);
    assert.equal(ext.entities[0]!.id, r.primary_entity);
    assert.equal(ext.entities[0]!.size, 5);
    assert.equal(r.folder_summary, undefined);
  });

  test('file/info on a folder: no primary_entity, a folder_summary of the subtree', async () => {
    const r = data(
      await send(
        'GET',
        `file/info?uri=${encodeURIComponent('cloudreve://my/docs')}&extended=true&folder_summary=true`,
        { token },
      ),
    );
    assert.equal(r.type, 1);
    assert.equal(r.primary_entity, undefined);
    const s = r.folder_summary as {
      size: number;
      files: number;
      folders: number;
      completed: boolean;
      calculated_at: string;
    };
    assert.deepEqual(
      { size: s.size, files: s.files, folders: s.folders, completed: s.completed },
      { size: 1005, files: 2, folders: 1, completed: true },
    );
    assert.ok(!Number.isNaN(Date.parse(s.calculated_at)));
    // By id, as the web app's share and info dialogs ask.
    const byId = data(await send('GET', `file/info?id=${String(r.id)}`, { token }));
    assert.equal(byId.path, 'cloudreve://my/docs');
    // Another user asking by the same id learns nothing.
    await server.addUser('peer@example.com', 'peer-password-1');
    const peer = (await server.signIn('peer@example.com', 'peer-password-1')).access;
    assert.equal((await send('GET', `file/info?id=${String(r.id)}`, { token: peer })).json.code, 404);
  });

  test('infoIfExists(): a missing path answers 40016 (absent), not an error', async () => {
    const r = await send(
      'GET',
      `file/info?uri=${encodeURIComponent('cloudreve://my/nothing-here')}&extended=true&folder_summary=true`,
      { token },
    );
    assert.ok([404, 40016].includes(r.json.code), r.text);
    assert.equal((await send('GET', 'file/info', { token })).json.code, 40001);
  });

  test('file/thumb: "entity not exist" (40077) for a file without a thumbnail; a missing path is 40016', async () => {
    const r = await send('GET', `file/thumb?uri=${encodeURIComponent('cloudreve://my/docs/a.txt')}`, {
      token,
    });
    assert.equal(r.status, 200);
    assert.equal(r.json.code, 40077);
    const missing = await send('GET', `file/thumb?uri=${encodeURIComponent('cloudreve://my/none.png')}`, {
      token,
    });
    assert.equal(missing.json.code, 40016);
  });

  test('distinct primary_entity per empty file, usable as file/url entity; none for folders', async () => {
    for (const name of ['e1.txt', 'e2.txt'])
      await server.api('POST', '/file/create', {
        token,
        body: { uri: `cloudreve://my/empty/${name}`, type: 'file' },
      });
    const list = data(await send('GET', `file?uri=${encodeURIComponent('cloudreve://my/empty')}`, { token }));
    const entries = list.files as Array<{ name: string; primary_entity?: string }>;
    const [e1, e2] = entries;
    assert.ok(e1?.primary_entity && e2?.primary_entity);
    assert.notEqual(e1.primary_entity, e2.primary_entity);
    assert.equal((list.parent as { primary_entity?: string }).primary_entity, undefined);
    const url = await send('POST', 'file/url', {
      token,
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ uris: ['cloudreve://my/empty/e1.txt'], entity: e1.primary_entity }),
    });
    const link = (data(url).urls as Array<{ url: string }>)[0]!.url;
    const res = await fetch(link);
    assert.equal(res.status, 200);
    assert.equal((await res.arrayBuffer()).byteLength, 0);
    // Another empty file's entity is not this file's.
    const other = await send('POST', 'file/url', {
      token,
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ uris: ['cloudreve://my/empty/e1.txt'], entity: e2.primary_entity }),
    });
    assert.equal(other.json.code, 40081);
  });
});
