// The token lifecycle over real HTTP: a password change (CLI and API) and "sign out everywhere"
// end access tokens, refresh chains and API tokens; refresh tokens rotate and a reused one
// signs the whole chain out; an API token needs a recent sign-in or the password.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, type TestServer } from '../helpers/server.ts';

let server: TestServer;

before(async () => {
  // No sign-in counts as recent here, so every API token needs the password (the env variable,
  // not a flag, so the server also starts on code that does not know the setting).
  server = await startServer({ env: { FERRY_RECENT_SIGN_IN_MINUTES: '0' } });
});
after(async () => {
  await server?.stop();
});

async function newUser(name: string): Promise<{ email: string; password: string }> {
  const email = `${name}@example.com`;
  const password = `${name}-password-1`;
  await server.addUser(email, password);
  return { email, password };
}

async function apiToken(access: string, password: string): Promise<string> {
  const r = await server.api<{ token: string }>('POST', '/user/setting/tokens', {
    token: access,
    body: { name: 'script', password },
  });
  assert.equal(r.body.code, 0, JSON.stringify(r.body));
  return r.body.data!.token;
}

/** The code /user/me answers with this credential (0 = accepted). */
async function meCode(token: string): Promise<number> {
  return (await server.api('GET', '/user/me', { token })).body.code;
}

async function refreshCode(refresh: string): Promise<number> {
  return (await server.api('POST', '/session/token/refresh', { body: { refresh_token: refresh } })).body.code;
}

describe('a password change ends every credential', () => {
  test('ferry user passwd: access tokens, refresh chains and API tokens stop working', async () => {
    const { email, password } = await newUser('pw-cli');
    const session = await server.signIn(email, password);
    const token = await apiToken(session.access, password);
    assert.equal(await meCode(session.access), 0);
    assert.equal(await meCode(token), 0);
    const r = await server.cli(['user', 'passwd', email, '--password', 'pw-cli-password-2']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await meCode(session.access), 401, 'the access token outlived the password change');
    assert.equal(await meCode(token), 401, 'the API token outlived the password change');
    assert.equal(await refreshCode(session.refresh), 40020);
    const pathFace = await fetch(`${server.url}/files/?download_history=`, {
      headers: { authorization: `Bearer ${token}` },
    });
    assert.equal(pathFace.status, 401);
    const fresh = await server.signIn(email, 'pw-cli-password-2');
    assert.equal(await meCode(fresh.access), 0);
  });

  test('ferry user passwd --keep-api-tokens keeps API tokens and still ends sessions', async () => {
    const { email, password } = await newUser('pw-keep');
    const session = await server.signIn(email, password);
    const token = await apiToken(session.access, password);
    const r = await server.cli([
      'user',
      'passwd',
      email,
      '--password',
      'pw-keep-password-2',
      '--keep-api-tokens',
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await meCode(token), 0);
    assert.equal(await meCode(session.access), 401);
  });

  test('PATCH /user/setting: the current password is checked, then every credential ends', async () => {
    const { email, password } = await newUser('pw-api');
    const session = await server.signIn(email, password);
    const other = await server.signIn(email, password);
    const token = await apiToken(session.access, password);
    const wrong = await server.api('PATCH', '/user/setting', {
      token: session.access,
      body: { current_password: 'not-the-password', new_password: 'pw-api-password-2' },
    });
    assert.equal(wrong.body.code, 40069, JSON.stringify(wrong.body));
    assert.equal(await meCode(session.access), 0, 'a wrong current password changes nothing');
    const half = await server.api('PATCH', '/user/setting', {
      token: session.access,
      body: { new_password: 'pw-api-password-2' },
    });
    assert.equal(half.body.code, 40001);
    const anonymous = await server.api('PATCH', '/user/setting', {
      body: { current_password: password, new_password: 'pw-api-password-2' },
    });
    assert.equal(anonymous.body.code, 401);

    const changed = await server.api('PATCH', '/user/setting', {
      token: session.access,
      body: { current_password: password, new_password: 'pw-api-password-2' },
    });
    assert.equal(changed.body.code, 0, JSON.stringify(changed.body));
    for (const credential of [session.access, other.access, token])
      assert.equal(await meCode(credential), 401, 'a credential outlived the password change');
    for (const refresh of [session.refresh, other.refresh]) assert.equal(await refreshCode(refresh), 40020);
    const old = await server.api('POST', '/session/token', { body: { email, password } });
    assert.equal(old.body.code, 40080);
    await server.signIn(email, 'pw-api-password-2');
  });
});

describe('sign out everywhere', () => {
  test('ferry user signout ends every session and API token of that user only', async () => {
    const { email, password } = await newUser('everywhere');
    const bystander = await newUser('bystander');
    const a = await server.signIn(email, password);
    const b = await server.signIn(email, password);
    const token = await apiToken(a.access, password);
    const theirs = await server.signIn(bystander.email, bystander.password);
    const r = await server.cli(['user', 'signout', email]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /1 API token/);
    for (const credential of [a.access, b.access, token]) assert.equal(await meCode(credential), 401);
    for (const refresh of [a.refresh, b.refresh]) assert.equal(await refreshCode(refresh), 40020);
    assert.equal(await meCode(theirs.access), 0, 'another user is not signed out');
    assert.equal(await refreshCode(theirs.refresh), 0);
    // The password still works: this is a sign-out, not a lock.
    await server.signIn(email, password);
  });

  test('DELETE /user/setting/sessions signs the caller out everywhere; keep_api_tokens keeps tokens', async () => {
    const { email, password } = await newUser('self-out');
    const a = await server.signIn(email, password);
    const b = await server.signIn(email, password);
    const token = await apiToken(a.access, password);
    const r = await server.api('DELETE', '/user/setting/sessions', {
      token: a.access,
      body: { keep_api_tokens: true },
    });
    assert.equal(r.body.code, 0, JSON.stringify(r.body));
    for (const credential of [a.access, b.access]) assert.equal(await meCode(credential), 401);
    assert.equal(await meCode(token), 0);
    const byToken = await server.api('DELETE', '/user/setting/sessions', { token, body: {} });
    assert.equal(byToken.body.code, 0);
    assert.equal(await meCode(token), 401);
  });
});

describe('refresh tokens rotate', () => {
  test('reusing a replaced refresh token signs the whole chain out', async () => {
    const { email, password } = await newUser('rotate');
    const first = await server.signIn(email, password);
    const pairs: Array<{ access_token: string; refresh_token: string }> = [];
    let current = first.refresh;
    for (let i = 0; i < 2; i++) {
      const r = await server.api<{ access_token: string; refresh_token: string }>(
        'POST',
        '/session/token/refresh',
        { body: { refresh_token: current } },
      );
      assert.equal(r.body.code, 0, JSON.stringify(r.body));
      pairs.push(r.body.data!);
      current = r.body.data!.refresh_token;
    }
    // The token just replaced, used again at once, is refused without ending the chain (two
    // tabs refreshing at the same moment).
    assert.equal(await refreshCode(pairs[0]!.refresh_token), 40020);
    assert.equal(await meCode(pairs[1]!.access_token), 0);
    // An older one comes from a copy: the thief and the owner both lose the chain.
    assert.equal(await refreshCode(first.refresh), 40020, 'a used refresh token still refreshes');
    assert.equal(await refreshCode(current), 40020, 'the chain survived the reuse of a refresh token');
    for (const access of [first.access, ...pairs.map((p) => p.access_token)])
      assert.equal(await meCode(access), 401);
    // Another sign-in of the same user is not affected.
    const other = await server.signIn(email, password);
    assert.equal(await refreshCode(other.refresh), 0);
  });
});

describe('creating an API token needs a recent sign-in or the password', () => {
  test('without a recent sign-in the password is required and checked', async () => {
    const { email, password } = await newUser('recent');
    const { access } = await server.signIn(email, password);
    const bare = await server.api('POST', '/user/setting/tokens', { token: access, body: { name: 'x' } });
    assert.equal(bare.body.code, 403, JSON.stringify(bare.body));
    assert.match(bare.body.msg, /password/);
    const wrong = await server.api('POST', '/user/setting/tokens', {
      token: access,
      body: { name: 'x', password: 'not-the-password' },
    });
    assert.equal(wrong.body.code, 40069);
    const token = await apiToken(access, password);
    // An API token is never a recent sign-in: it cannot mint another without the password.
    const chained = await server.api('POST', '/user/setting/tokens', { token, body: { name: 'y' } });
    assert.equal(chained.body.code, 403);
    await apiToken(token, password);
    const listed = await server.api<unknown[]>('GET', '/user/setting/tokens', { token: access });
    assert.equal(listed.body.data!.length, 2);
  });
});
