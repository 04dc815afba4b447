// Accounts over real HTTP: sign-in, token pairs, sign-out, throttling, API tokens and the
// `ferry user` CLI against a running server.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { SignJWT, decodeJwt } from 'jose';
import {
  ADMIN_EMAIL,
  ADMIN_PASSWORD,
  startServer,
  uploadFile,
  waitFor,
  type ServerOptions,
  type TestServer,
} from '../helpers/server.ts';

interface Token {
  access_token: string;
  refresh_token: string;
  access_expires: string;
  refresh_expires: string;
}
interface User {
  id: string;
  email: string;
  nickname: string;
  status: string;
  created_at: string;
  group: { id: string; name: string; permission: string };
  language: string;
}

const GiB = 1024 ** 3;
let server: TestServer;

before(async () => {
  server = await startServer();
});
after(async () => {
  await server?.stop();
});

/** The JWT key as the server derives it from <data-dir>/secret.key (to forge expired tokens). */
async function jwtKey(): Promise<Uint8Array> {
  const secret = Buffer.from((await readFile(join(server.dataDir, 'secret.key'), 'utf8')).trim(), 'hex');
  return createHash('sha256').update('jwt:').update(secret).digest();
}

async function blobFiles(): Promise<string[]> {
  try {
    return (await readdir(join(server.dataDir, 'blobs'), { recursive: true, withFileTypes: true }))
      .filter((e) => e.isFile() && !e.parentPath.includes('.tmp'))
      .map((e) => join(e.parentPath, e.name));
  } catch {
    return [];
  }
}

describe('sign-in', () => {
  test('success returns the user and a token pair (spec 2.2)', async () => {
    const r = await server.api<{ user: User; token: Token }>('POST', '/session/token', {
      body: { email: ADMIN_EMAIL, password: ADMIN_PASSWORD },
    });
    assert.equal(r.status, 200);
    assert.equal(r.body.code, 0, JSON.stringify(r.body));
    assert.equal(r.body.msg, '');
    assert.equal(r.body.correlation_id, undefined);
    const { user, token } = r.body.data!;
    assert.match(user.id, /^[A-Za-z0-9]{2,}$/);
    assert.equal(user.email, ADMIN_EMAIL);
    assert.equal(user.nickname, 'admin');
    assert.equal(user.status, 'active');
    assert.ok(!Number.isNaN(Date.parse(user.created_at)));
    assert.equal(user.group.name, 'Admin');
    assert.match(user.group.id, /^[A-Za-z0-9]+$/);
    assert.equal(typeof user.group.permission, 'string');
    // Admin bit 0 and remote download bit 9 are set for the admin group.
    const perm = Buffer.from(user.group.permission, 'base64');
    assert.ok((perm[0]! & 1) !== 0, 'admin bit');
    assert.ok((perm[1]! & 2) !== 0, 'remote download bit');
    assert.equal(user.language, 'en-US');

    assert.match(token.access_token, /^eyJ[\w-]+\.[\w-]+\.[\w-]+$/);
    assert.match(token.refresh_token, /^eyJ[\w-]+\.[\w-]+\.[\w-]+$/);
    const now = Date.now();
    const accessIn = Date.parse(token.access_expires) - now;
    const refreshIn = Date.parse(token.refresh_expires) - now;
    assert.ok(accessIn > 3500_000 && accessIn <= 3601_000, `access expires in ${accessIn} ms`);
    assert.ok(refreshIn > 13 * 86400_000 && refreshIn <= 14 * 86400_000 + 1000, `refresh ${refreshIn}`);
    const claims = decodeJwt(token.access_token);
    assert.equal(claims.token_type, 'access');
    assert.equal(claims.sub, user.id);
    assert.equal(decodeJwt(token.refresh_token).token_type, 'refresh');
    // The e-mail is matched case-insensitively.
    const upper = await server.api('POST', '/session/token', {
      body: { email: ADMIN_EMAIL.toUpperCase(), password: ADMIN_PASSWORD },
    });
    assert.equal(upper.body.code, 0);
  });

  test('wrong password or unknown e-mail → 40080', async () => {
    for (const body of [
      { email: ADMIN_EMAIL, password: 'not-the-password' },
      { email: 'nobody@example.com', password: 'whatever1' },
    ]) {
      const r = await server.api('POST', '/session/token', { body });
      assert.equal(r.status, 200);
      assert.equal(r.body.code, 40080, JSON.stringify(r.body));
      assert.equal(r.body.msg, 'Incorrect password or email address');
      assert.match(r.body.correlation_id ?? '', /^[0-9a-f-]{36}$/);
      assert.equal(r.body.data, undefined);
    }
  });

  test('validation errors → 40001 without correlation_id', async () => {
    const cases: Array<[unknown, RegExp]> = [
      [{ password: 'abcd1234' }, /^Email cannot be empty$/],
      [{ email: ADMIN_EMAIL }, /^Password cannot be empty$/],
      [{ email: ADMIN_EMAIL, password: 'x'.repeat(129) }, /Parameter error/],
      [{ email: ADMIN_EMAIL, password: 'abc' }, /Parameter error/],
      [{ email: 'not-an-email', password: 'abcd1234' }, /Parameter error/],
      [{ email: ADMIN_EMAIL, password: { x: 1 } }, /Parameter error/],
    ];
    for (const [body, msg] of cases) {
      const r = await server.api('POST', '/session/token', { body });
      assert.equal(r.status, 200);
      assert.equal(r.body.code, 40001, JSON.stringify(body));
      assert.match(r.body.msg, msg);
      assert.equal(r.body.correlation_id, undefined, JSON.stringify(r.body));
    }
    const res = await fetch(`${server.url}/api/v4/session/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"email":',
    });
    assert.equal(res.status, 200);
    const body = (await res.json()) as { code: number; msg: string; correlation_id?: string };
    assert.equal(body.code, 40001);
    assert.equal(body.msg, 'JSON marshall error');
    assert.equal(body.correlation_id, undefined);
  });

  test('a client-chosen correlation id is echoed on errors', async () => {
    const id = '0d6c1f7e-3b1a-4f0e-9a55-2f2f6f0b7d11';
    const r = await server.api('GET', '/user/me', { headers: { 'x-cr-correlation-id': id } });
    assert.equal(r.body.code, 401);
    assert.equal(r.body.correlation_id, id);
  });
});

describe('tokens', () => {
  test('refresh returns a new working pair with the same chain', async () => {
    const { refresh } = await server.signIn();
    const r = await server.api<Token>('POST', '/session/token/refresh', { body: { refresh_token: refresh } });
    assert.equal(r.body.code, 0, JSON.stringify(r.body));
    const pair = r.body.data!;
    assert.deepEqual(Object.keys(pair).sort(), [
      'access_expires',
      'access_token',
      'refresh_expires',
      'refresh_token',
    ]);
    assert.notEqual(pair.refresh_token, refresh);
    assert.equal(decodeJwt(pair.refresh_token).root_token_id, decodeJwt(refresh).root_token_id);
    const me = await server.api<User>('GET', '/user/me', { token: pair.access_token });
    assert.equal(me.body.code, 0);
    assert.equal(me.body.data!.email, ADMIN_EMAIL);
    // The new refresh token refreshes too.
    const again = await server.api('POST', '/session/token/refresh', {
      body: { refresh_token: pair.refresh_token },
    });
    assert.equal(again.body.code, 0);
  });

  test('refresh with garbage, an access token, or nothing → 40020 / 40001', async () => {
    const { access } = await server.signIn();
    for (const refresh_token of ['garbage', access, '']) {
      const r = await server.api('POST', '/session/token/refresh', { body: { refresh_token } });
      assert.equal(r.body.code, 40020, refresh_token);
      assert.equal(r.body.msg, 'Failed to issue token pair');
    }
    const missing = await server.api('POST', '/session/token/refresh', { body: {} });
    assert.equal(missing.body.code, 40001);
  });

  test('sign-out ends the whole refresh chain and its access tokens at once', async () => {
    const { access, refresh } = await server.signIn();
    const next = await server.api<Token>('POST', '/session/token/refresh', {
      body: { refresh_token: refresh },
    });
    assert.equal(next.body.code, 0);
    const out = await server.api('DELETE', '/session/token', { body: { refresh_token: refresh } });
    assert.deepEqual(out.body, { code: 0, data: '', msg: '' });
    for (const token of [refresh, next.body.data!.refresh_token]) {
      const r = await server.api('POST', '/session/token/refresh', { body: { refresh_token: token } });
      assert.equal(r.body.code, 40020, 'a refresh token of a signed-out chain keeps working');
    }
    // Not only refresh: every access token of the chain stops working now, not within the hour.
    for (const token of [access, next.body.data!.access_token]) {
      const me = await server.api('GET', '/user/me', { token });
      assert.equal(me.body.code, 401, 'an access token of a signed-out chain keeps working');
    }
    // Signing out twice is harmless; a token that does not parse is refused.
    assert.equal(
      (await server.api('DELETE', '/session/token', { body: { refresh_token: refresh } })).body.code,
      0,
    );
    const bad = await server.api('DELETE', '/session/token', { body: { refresh_token: 'nope' } });
    assert.equal(bad.body.code, 40020);
    assert.equal(bad.body.msg, 'Failed to parse token');
    // Another login of the same user is not affected.
    const other = await server.signIn();
    const r = await server.api('POST', '/session/token/refresh', { body: { refresh_token: other.refresh } });
    assert.equal(r.body.code, 0);
  });

  test('/user/me with and without a token', async () => {
    const { access, userId } = await server.signIn();
    const me = await server.api<User>('GET', '/user/me', { token: access });
    assert.equal(me.body.code, 0);
    assert.equal(me.body.data!.id, userId);
    assert.equal(me.body.data!.email, ADMIN_EMAIL);
    const anon = await server.api('GET', '/user/me');
    assert.equal(anon.status, 200);
    assert.equal(anon.body.code, 401);
    assert.equal(anon.body.msg, 'Login required');
    assert.equal(anon.body.data, undefined);
    assert.match(anon.body.correlation_id ?? '', /^[0-9a-f-]{36}$/);
  });

  test('expired, tampered and garbage access tokens are anonymous → 401 on login-only routes', async () => {
    const { access, userId } = await server.signIn();
    const now = Math.floor(Date.now() / 1000);
    const expired = await new SignJWT({ token_type: 'access' })
      .setProtectedHeader({ alg: 'HS256' })
      .setSubject(userId)
      .setNotBefore(now - 7200)
      .setExpirationTime(now - 3600)
      .sign(await jwtKey());
    const [h, p, s] = access.split('.');
    const flipped = s!.startsWith('A') ? 'B' + s!.slice(1) : 'A' + s!.slice(1);
    const otherPayload = Buffer.from(JSON.stringify({ ...decodeJwt(access), sub: 'bPhN' }), 'utf8').toString(
      'base64url',
    );
    const tampered = [`${h}.${p}.${flipped}`, `${h}.${otherPayload}.${s}`];
    const noneAlg = `${Buffer.from('{"alg":"none"}').toString('base64url')}.${p}.`;
    for (const token of [expired, ...tampered, noneAlg, 'garbage', 'a.b.c']) {
      for (const path of ['/user/me', '/user/capacity', '/user/setting/tokens']) {
        const r = await server.api('GET', path, { token });
        assert.equal(r.status, 200);
        assert.equal(r.body.code, 401, `${path} with ${token.slice(0, 20)}…: ${JSON.stringify(r.body)}`);
      }
      const list = await server.api('GET', '/file?uri=cloudreve%3A%2F%2Fmy', { token });
      assert.equal(list.body.code, 401);
    }
    // The anonymous-friendly routes still answer.
    const ping = await server.api('GET', '/site/ping', { token: 'garbage' });
    assert.equal(ping.body.code, 0);
  });

  test('a refresh token used as an access token → 40020', async () => {
    const { refresh } = await server.signIn();
    for (const path of ['/user/me', '/site/ping']) {
      const r = await server.api('GET', path, { token: refresh });
      assert.equal(r.status, 200);
      assert.equal(r.body.code, 40020, JSON.stringify(r.body));
      assert.equal(r.body.msg, 'Invalid token type');
    }
  });

  test('/site/ping', async () => {
    const r = await server.api<string>('GET', '/site/ping');
    assert.equal(r.body.code, 0);
    assert.equal(typeof r.body.data, 'string');
    assert.ok(r.body.data!.length > 0);
  });
});

describe('users and the CLI', () => {
  test('/user/capacity: 10 GiB for the User group, used follows uploads and deletes', async () => {
    await server.addUser('cap@example.com', 'cap-password-1');
    const { access } = await server.signIn('cap@example.com', 'cap-password-1');
    const empty = await server.api<{ total: number; used: number }>('GET', '/user/capacity', {
      token: access,
    });
    assert.deepEqual(empty.body, { code: 0, data: { total: 10 * GiB, used: 0 }, msg: '' });
    await uploadFile(server, access, 'cloudreve://my/a.bin', Buffer.alloc(12345, 1));
    await uploadFile(server, access, 'cloudreve://my/d/b.bin', Buffer.alloc(100, 2));
    const used = await server.api<{ total: number; used: number }>('GET', '/user/capacity', {
      token: access,
    });
    assert.deepEqual(used.body.data, { total: 10 * GiB, used: 12445 });
    const del = await server.api('DELETE', '/file', {
      token: access,
      body: { uris: ['cloudreve://my/a.bin'] },
    });
    assert.equal(del.body.code, 0);
    const after = await server.api<{ total: number; used: number }>('GET', '/user/capacity', {
      token: access,
    });
    assert.deepEqual(after.body.data, { total: 10 * GiB, used: 100 });
    const admin = await server.signIn();
    const adminCap = await server.api<{ total: number }>('GET', '/user/capacity', { token: admin.access });
    assert.equal(adminCap.body.data!.total, 1024 * GiB);
  });

  test('brute-force sign-in is throttled, even for the right password', async () => {
    const email = 'victim@example.com';
    const password = 'victim-password-1';
    await server.addUser(email, password);
    for (let i = 0; i < 10; i++) {
      const r = await server.api('POST', '/session/token', { body: { email, password: `wrong-${i}` } });
      assert.equal(r.body.code, 40080, `attempt ${i}`);
    }
    const limited = await server.api('POST', '/session/token', { body: { email, password } });
    assert.equal(limited.status, 200);
    assert.notEqual(limited.body.code, 0, 'the right password must be refused while throttled');
    assert.equal(limited.body.code, 40026, JSON.stringify(limited.body));
    const retryAfter = Number(limited.headers.get('retry-after'));
    assert.ok(retryAfter > 0 && retryAfter <= 900, `Retry-After ${limited.headers.get('retry-after')}`);
    // The e-mail is the key whatever its case.
    const upper = await server.api('POST', '/session/token', {
      body: { email: email.toUpperCase(), password },
    });
    assert.equal(upper.body.code, 40026);
    // Other accounts are not locked out by it.
    assert.equal(
      (await server.api('POST', '/session/token', { body: { email: ADMIN_EMAIL, password: ADMIN_PASSWORD } }))
        .body.code,
      0,
    );
  });

  test('ferry user add / list / remove work while the server runs', async () => {
    const add = await server.cli(['user', 'add', 'Carol@Example.com', '--password', 'carol-password-1']);
    assert.equal(add.code, 0, add.stderr);
    const dup = await server.cli(['user', 'add', 'carol@example.com', '--password', 'carol-password-1']);
    assert.notEqual(dup.code, 0);
    assert.match(dup.stderr, /already/i);
    const bad = await server.cli(['user', 'add', 'not-an-email', '--password', 'carol-password-1']);
    assert.notEqual(bad.code, 0);
    const list = await server.cli(['user', 'list']);
    assert.equal(list.code, 0, list.stderr);
    assert.match(list.stdout, /^carol@example\.com\tUser\tactive/m);
    assert.match(list.stdout, new RegExp(`^${ADMIN_EMAIL.replace('.', '\\.')}\\tAdmin`, 'm'));

    const { access } = await server.signIn('carol@example.com', 'carol-password-1');
    await uploadFile(server, access, 'cloudreve://my/own.bin', Buffer.alloc(4096, 7));
    const blobsBefore = await blobFiles();
    const remove = await server.cli(['user', 'remove', 'carol@example.com']);
    assert.equal(remove.code, 0, remove.stderr);
    const blobsAfter = await blobFiles();
    assert.equal(blobsAfter.length, blobsBefore.length - 1, 'the removed user’s bytes are deleted');
    const signIn = await server.api('POST', '/session/token', {
      body: { email: 'carol@example.com', password: 'carol-password-1' },
    });
    assert.equal(signIn.body.code, 40080);
    const me = await server.api('GET', '/user/me', { token: access });
    assert.notEqual(me.body.code, 0, 'a removed user’s token must not work');
    assert.ok(!(await server.cli(['user', 'list'])).stdout.includes('carol@'));
    const missing = await server.cli(['user', 'remove', 'carol@example.com']);
    assert.notEqual(missing.code, 0);
  });

  test('ferry user passwd ends refresh chains and swaps the password', async () => {
    await server.addUser('dave@example.com', 'dave-password-1');
    const { refresh } = await server.signIn('dave@example.com', 'dave-password-1');
    const r = await server.cli(['user', 'passwd', 'dave@example.com', '--password', 'dave-password-2']);
    assert.equal(r.code, 0, r.stderr);
    const refreshed = await server.api('POST', '/session/token/refresh', {
      body: { refresh_token: refresh },
    });
    assert.equal(refreshed.body.code, 40020);
    const old = await server.api('POST', '/session/token', {
      body: { email: 'dave@example.com', password: 'dave-password-1' },
    });
    assert.equal(old.body.code, 40080);
    await server.signIn('dave@example.com', 'dave-password-2');
    const short = await server.cli(['user', 'passwd', 'dave@example.com', '--password', 'abc']);
    assert.notEqual(short.code, 0);
  });
});

describe('API tokens', () => {
  test('create, list, use on both faces, revoke', async () => {
    const { access } = await server.signIn();
    const created = await server.api<{ id: string; name: string; token: string; expires_at: string | null }>(
      'POST',
      '/user/setting/tokens',
      { token: access, body: { name: 'script', expires_in_days: 30 } },
    );
    assert.equal(created.body.code, 0, JSON.stringify(created.body));
    const { id, token } = created.body.data!;
    assert.match(token, /^fry_[\w-]{20,}$/);
    assert.equal(created.body.data!.name, 'script');
    const expiresIn = Date.parse(created.body.data!.expires_at!) - Date.now();
    assert.ok(expiresIn > 29 * 86400_000 && expiresIn <= 30 * 86400_000, String(expiresIn));

    const list = await server.api<Array<{ id: string; name: string; prefix: string; token?: string }>>(
      'GET',
      '/user/setting/tokens',
      { token: access },
    );
    assert.equal(list.body.code, 0);
    const row = list.body.data!.find((t) => t.id === id);
    assert.ok(row, 'the new token is listed');
    assert.equal(row.name, 'script');
    assert.ok(token.startsWith(row.prefix));
    assert.equal(row.token, undefined, 'the secret is shown once only');
    assert.ok(!JSON.stringify(list.body).includes(token));

    const me = await server.api<User>('GET', '/user/me', { token });
    assert.equal(me.body.code, 0);
    assert.equal(me.body.data!.email, ADMIN_EMAIL);
    const history = await fetch(`${server.url}/files/?download_history=`, {
      headers: { authorization: `Bearer ${token}` },
    });
    assert.equal(history.status, 200);
    assert.ok(Array.isArray(((await history.json()) as { history: unknown[] }).history));
    const anonHistory = await fetch(`${server.url}/files/?download_history=`);
    assert.equal(anonHistory.status, 401);

    // Another user cannot revoke it.
    await server.addUser('erin@example.com', 'erin-password-1');
    const erin = await server.signIn('erin@example.com', 'erin-password-1');
    const foreign = await server.api('DELETE', `/user/setting/tokens/${id}`, { token: erin.access });
    assert.notEqual(foreign.body.code, 0);
    assert.equal((await server.api('GET', '/user/me', { token })).body.code, 0);

    const revoked = await server.api('DELETE', `/user/setting/tokens/${id}`, { token: access });
    assert.equal(revoked.body.code, 0);
    assert.equal((await server.api('GET', '/user/me', { token })).body.code, 401);
    const after = await fetch(`${server.url}/files/?download_history=`, {
      headers: { authorization: `Bearer ${token}` },
    });
    assert.equal(after.status, 401);
    const listed = await server.api<Array<{ id: string }>>('GET', '/user/setting/tokens', { token: access });
    assert.ok(!listed.body.data!.some((t) => t.id === id));
    const twice = await server.api('DELETE', `/user/setting/tokens/${id}`, { token: access });
    assert.equal(twice.body.code, 404);
  });

  test('token validation and login requirement', async () => {
    const { access } = await server.signIn();
    for (const body of [{}, { name: '' }, { name: 'x'.repeat(101) }, { name: 'ok', expires_in_days: 0 }]) {
      const r = await server.api('POST', '/user/setting/tokens', { token: access, body });
      assert.equal(r.body.code, 40001, JSON.stringify(body));
    }
    const blank = await server.api('POST', '/user/setting/tokens', { token: access, body: { name: '   ' } });
    assert.equal(blank.body.code, 40001);
    assert.equal((await server.api('POST', '/user/setting/tokens', { body: { name: 'x' } })).body.code, 401);
    const badId = await server.api('DELETE', '/user/setting/tokens/abc', { token: access });
    assert.equal(badId.body.code, 40001);
    assert.equal((await server.api('GET', '/user/me', { token: 'fry_not-a-real-token' })).body.code, 401);
  });
});

for (const [how, options] of [
  ['unset', { unsetEnv: ['FERRY_ADMIN_PASSWORD'], env: { FERRY_ADMIN_EMAIL: 'root@example.com' } }],
  ['empty', { env: { FERRY_ADMIN_PASSWORD: '', FERRY_ADMIN_EMAIL: 'root@example.com' } }],
] as Array<[string, ServerOptions]>) {
  test(`first start with FERRY_ADMIN_PASSWORD ${how} prints a generated password, once`, async () => {
    const fresh = await startServer(options);
    try {
      const match = /password:\s+(\S+)/.exec(fresh.output());
      assert.ok(match, `no generated password in the output:\n${fresh.output()}`);
      const password = match[1]!;
      assert.ok(password.length >= 12);
      const { access } = await fresh.signIn('root@example.com', password);
      const me = await fresh.api<User>('GET', '/user/me', { token: access });
      assert.equal(me.body.data!.group.name, 'Admin');
      await fresh.crashAndRestart();
      await waitFor(async () => ((await fresh.api('GET', '/site/ping')).body.code === 0 ? true : undefined));
      assert.equal(fresh.output().match(/password:\s+\S+/g)?.length, 1, 'printed again on restart');
      await fresh.signIn('root@example.com', password);
    } finally {
      await fresh.stop();
    }
  });
}
