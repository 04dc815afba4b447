// Attacks on authentication: forged and tampered JWTs (alg none, algorithm confusion, swapped
// claims, other keys, expiry), refresh chains after sign-out, revoked/expired API tokens,
// tampered or transplanted signed links and archive links, password guessing per account and
// per address, and credentials in places they must not be read from (query strings, cookies).
// Complements test/e2e/accounts.test.ts and test/e2e/links.test.ts, which cover the basics.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, randomBytes } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { startServer, uploadFile, type TestServer } from '../helpers/server.ts';
import { forgeJwt, jwtKey, linkKey, rawRequest, serverSecret } from './helpers.ts';

let server: TestServer;
let alice: { access: string; refresh: string; userId: string };
let bob: { access: string; refresh: string; userId: string };
let key: Buffer;
let secret: Buffer;
/** Alice's row's creation time: tokens carry it as `uc` (bound to the row, not only its id). */
let aliceCreated: number;

const now = () => Math.floor(Date.now() / 1000);

async function me(token: string | null, extra: Record<string, string> = {}, query = '') {
  const res = await fetch(`${server.url}/api/v4/user/me${query}`, {
    headers: { ...(token === null ? {} : { authorization: `Bearer ${token}` }), ...extra },
  });
  return (await res.json()) as { code: number; data?: { id: string }; msg: string };
}

/** POST /session/token from a chosen loopback address (the socket's, which the server counts). */
function signInFrom(
  localAddress: string,
  email: string,
  password: string,
): Promise<{ code: number; retryAfter: string | undefined }> {
  const body = JSON.stringify({ email, password });
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      {
        host: '127.0.0.1',
        port: server.port,
        localAddress,
        method: 'POST',
        path: '/api/v4/session/token',
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
      },
      (res) => {
        let text = '';
        res.on('data', (d: Buffer) => (text += d.toString()));
        res.on('end', () =>
          resolve({
            code: (JSON.parse(text) as { code: number }).code,
            retryAfter: res.headers['retry-after'],
          }),
        );
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

async function pathFace(
  token: string | null,
  query = '?download_history=',
  extra: Record<string, string> = {},
) {
  const res = await fetch(`${server.url}/files/${query}`, {
    headers: { ...(token === null ? {} : { authorization: `Bearer ${token}` }), ...extra },
  });
  return res.status;
}

before(async () => {
  server = await startServer();
  await server.addUser('alice@example.com', 'alice-password-1');
  await server.addUser('bob@example.com', 'bob-password-1');
  alice = await server.signIn('alice@example.com', 'alice-password-1');
  bob = await server.signIn('bob@example.com', 'bob-password-1');
  secret = await serverSecret(server.dataDir);
  key = jwtKey(secret);
  const [row] = await server.sql<{ created_at: number }>('SELECT created_at FROM users WHERE email = ?', [
    'alice@example.com',
  ]);
  aliceCreated = Number(row!.created_at);
});
after(async () => {
  await server?.stop();
});

describe('JWT forgeries', () => {
  test('a token made with the real key and claims is accepted (the harness forges correctly)', async () => {
    // An access token names its session and credential version; copy those from a real one.
    const real = JSON.parse(Buffer.from(alice.access.split('.')[1]!, 'base64url').toString()) as object;
    const token = forgeJwt(
      { alg: 'HS256' },
      { ...real, token_type: 'access', sub: alice.userId, uc: aliceCreated, nbf: now() - 5, exp: now() + 60 },
      key,
    );
    assert.equal((await me(token)).data?.id, alice.userId);
  });

  test('every tampered or forged access token is anonymous on both faces', async () => {
    const claims = {
      token_type: 'access',
      sub: alice.userId,
      uc: aliceCreated,
      nbf: now() - 5,
      exp: now() + 600,
    };
    const { uc: _uc, ...unbound } = claims;
    const [h, p, s] = alice.access.split('.') as [string, string, string];
    const payload = JSON.parse(Buffer.from(p, 'base64url').toString()) as Record<string, unknown>;
    const swapped = Buffer.from(JSON.stringify({ ...payload, sub: bob.userId })).toString('base64url');
    const elevated = Buffer.from(JSON.stringify({ ...payload, is_admin: true, group: 'admin' })).toString(
      'base64url',
    );
    const other = randomBytes(32);
    const vectors: Array<[string, string]> = [
      ['alg none', forgeJwt({ alg: 'none' }, claims, null)],
      ['alg None', forgeJwt({ alg: 'None' }, claims, null)],
      ['alg NONE with a signature', forgeJwt({ alg: 'NONE' }, claims, key).replace(/\.[^.]*$/, '.xyz')],
      ['alg HS256, no signature', `${forgeJwt({ alg: 'HS256' }, claims, null)}`],
      ['HS512 with the real key', forgeJwt({ alg: 'HS512' }, claims, key, 'sha512')],
      ['HS384 with the real key', forgeJwt({ alg: 'HS384' }, claims, key, 'sha384')],
      ['RS256 header, HMAC signature (alg confusion)', forgeJwt({ alg: 'RS256' }, claims, key)],
      ['ES256 header, HMAC signature', forgeJwt({ alg: 'ES256' }, claims, key)],
      ['another secret', forgeJwt({ alg: 'HS256' }, claims, other)],
      // Issue 12: the real key, but not bound to Alice's row (as before 0005), or to another row.
      ['no user-row binding (uc)', forgeJwt({ alg: 'HS256' }, unbound, key)],
      ['another row’s creation time', forgeJwt({ alg: 'HS256' }, { ...claims, uc: aliceCreated + 1 }, key)],
      ['the raw secret instead of the derived key', forgeJwt({ alg: 'HS256' }, claims, secret)],
      [
        'embedded jwk with the attacker key',
        forgeJwt({ alg: 'HS256', jwk: { kty: 'oct', k: other.toString('base64url') } }, claims, other),
      ],
      [
        'kid pointing at a file',
        forgeJwt({ alg: 'HS256', kid: '../../../../dev/null' }, claims, Buffer.alloc(0)),
      ],
      ['empty key', forgeJwt({ alg: 'HS256' }, claims, Buffer.alloc(0))],
      ['sub swapped, signature kept', `${h}.${swapped}.${s}`],
      ['admin claims added, signature kept', `${h}.${elevated}.${s}`],
      ['signature stripped', `${h}.${p}.`],
      ['signature of another token', `${h}.${p}.${bob.access.split('.')[2]}`],
      ['expired', forgeJwt({ alg: 'HS256' }, { ...claims, exp: now() - 10 }, key)],
      ['not yet valid', forgeJwt({ alg: 'HS256' }, { ...claims, nbf: now() + 3600 }, key)],
      ['two dots only', '..'],
      ['four parts', `${alice.access}.x`],
      ['padding added', `${alice.access}==`],
      ['base64 (not base64url) signature', `${h}.${p}.${Buffer.from(s, 'base64url').toString('base64')}x`],
    ];
    for (const [what, token] of vectors) {
      const r = await me(token);
      assert.notEqual(r.code, 0, `${what} was accepted`);
      assert.ok([401, 40020, 404].includes(r.code), `${what}: ${JSON.stringify(r)}`);
      assert.equal(await pathFace(token), 401, `${what} on the path face`);
    }
  });

  test('a forged token for a user that does not exist, or a refresh token as access, is refused', async () => {
    const ghost = forgeJwt(
      { alg: 'HS256' },
      { token_type: 'access', sub: 'zzzzzzzz', nbf: now() - 5, exp: now() + 60 },
      key,
    );
    assert.notEqual((await me(ghost)).code, 0);
    assert.notEqual((await me(alice.refresh)).code, 0);
    assert.notEqual(await pathFace(alice.refresh), 200);
  });
});

describe('refresh chains', () => {
  test('after sign-out no refresh token of the chain works, old or rotated; other chains live on', async () => {
    const session = await server.signIn('alice@example.com', 'alice-password-1');
    const rotated = await server.api<{ refresh_token: string }>('POST', '/session/token/refresh', {
      body: { refresh_token: session.refresh },
    });
    assert.equal(rotated.body.code, 0);
    const second = rotated.body.data!.refresh_token;
    // Bob cannot sign Alice out of anything but a chain whose token he holds; here he uses his own.
    assert.equal(
      (await server.api('DELETE', '/session/token', { body: { refresh_token: second } })).body.code,
      0,
    );
    for (const token of [session.refresh, second]) {
      const r = await server.api('POST', '/session/token/refresh', { body: { refresh_token: token } });
      assert.equal(r.body.code, 40020, JSON.stringify(r.body));
    }
    // A refresh token forged for the revoked chain with a fresh jti is refused too: the root id counts.
    const payload = JSON.parse(Buffer.from(second.split('.')[1]!, 'base64url').toString()) as Record<
      string,
      unknown
    >;
    const forged = forgeJwt({ alg: 'HS256' }, { ...payload, jti: 'new', exp: now() + 600 }, key);
    assert.equal(
      (await server.api('POST', '/session/token/refresh', { body: { refresh_token: forged } })).body.code,
      40020,
    );
    // Alice's other sign-in is untouched.
    const other = await server.api('POST', '/session/token/refresh', {
      body: { refresh_token: alice.refresh },
    });
    assert.equal(other.body.code, 0);
    alice.refresh = (other.body.data as { refresh_token: string }).refresh_token;
  });

  test("an access token can't refresh, and a refresh token of a removed user is dead", async () => {
    await server.addUser('temp@example.com', 'temp-password-1');
    const temp = await server.signIn('temp@example.com', 'temp-password-1');
    assert.equal(
      (await server.api('POST', '/session/token/refresh', { body: { refresh_token: temp.access } })).body
        .code,
      40020,
    );
    assert.equal((await server.cli(['user', 'remove', 'temp@example.com'])).code, 0);
    assert.equal(
      (await server.api('POST', '/session/token/refresh', { body: { refresh_token: temp.refresh } })).body
        .code,
      40020,
    );
    assert.notEqual((await me(temp.access)).code, 0, 'the access token of a removed user');
  });
});

describe('API tokens', () => {
  test('revoked, expired, altered, other-user and banned-user tokens are refused on both faces', async () => {
    const make = async (as: string, name: string) =>
      (
        await server.api<{ id: string; token: string }>('POST', '/user/setting/tokens', {
          token: as,
          body: { name },
        })
      ).body.data!;
    const revoked = await make(alice.access, 'to revoke');
    const expired = await make(alice.access, 'to expire');
    const kept = await make(alice.access, 'kept');
    assert.equal(
      (await server.api('DELETE', `/user/setting/tokens/${revoked.id}`, { token: alice.access })).body.code,
      0,
    );
    await server.sql('UPDATE api_tokens SET expires_at = ? WHERE id = ?', [
      Date.now() - 1000,
      Number(expired.id),
    ]);
    // Bob cannot revoke Alice's token by id, and trying does not hurt it.
    const bobTry = await server.api('DELETE', `/user/setting/tokens/${kept.id}`, { token: bob.access });
    assert.equal(bobTry.body.code, 404);
    assert.equal((await me(kept.token)).data?.id, alice.userId);
    const basic = (t: string) => `Basic ${Buffer.from(`alice:${t}`).toString('base64')}`;
    const vectors: Array<[string, string]> = [
      ['revoked', revoked.token],
      ['expired', expired.token],
      ['altered last char', kept.token.slice(0, -1) + (kept.token.endsWith('A') ? 'B' : 'A')],
      ['upper-cased', kept.token.toUpperCase()],
      ['prefix only', kept.token.slice(0, 10)],
      ['with a suffix', `${kept.token}x`],
    ];
    for (const [what, token] of vectors) {
      assert.equal((await me(token)).code, 401, what);
      assert.equal(await pathFace(token), 401, `${what} on the path face`);
      assert.equal(
        await pathFace(null, '?download_history=', { authorization: basic(token) }),
        401,
        `${what} as Basic`,
      );
    }
    // A banned user's tokens stop working at once; unbanned they work again.
    const aliceId = (
      await server.sql<{ id: number }>('SELECT id FROM users WHERE email = ?', ['alice@example.com'])
    )[0]!.id;
    await server.sql("UPDATE users SET status = 'manual_banned' WHERE id = ?", [aliceId]);
    try {
      assert.notEqual((await me(kept.token)).code, 0, 'API token of a banned user');
      assert.notEqual((await me(alice.access)).code, 0, 'access token of a banned user');
      assert.equal(await pathFace(kept.token), 401);
    } finally {
      await server.sql("UPDATE users SET status = 'active' WHERE id = ?", [aliceId]);
    }
    assert.equal((await me(kept.token)).data?.id, alice.userId);
  });
});

describe('credentials where they must not be read from', () => {
  test('tokens in query strings, cookies or other headers are ignored', async () => {
    const api = (
      await server.api<{ token: string }>('POST', '/user/setting/tokens', {
        token: alice.access,
        body: { name: 'query test' },
      })
    ).body.data!.token;
    for (const token of [alice.access, api]) {
      for (const q of ['token', 'access_token', 'authorization', 'auth', 'api_key', 'sign', 'jwt']) {
        const value = encodeURIComponent(q === 'authorization' ? `Bearer ${token}` : token);
        assert.equal((await me(null, {}, `?${q}=${value}`)).code, 401, `?${q}=`);
        assert.equal(await pathFace(null, `?download_history=&${q}=${value}`), 401, `path face ?${q}=`);
      }
      for (const [name, value] of [
        ['cookie', `token=${token}; access_token=${token}; Authorization=Bearer%20${token}`],
        ['x-token', token],
        ['x-api-key', token],
        ['x-access-token', token],
        ['proxy-authorization', `Bearer ${token}`],
      ] as const) {
        assert.equal((await me(null, { [name]: value })).code, 401, name);
        assert.equal(await pathFace(null, '?download_history=', { [name]: value }), 401, `path face ${name}`);
      }
    }
  });

  test('a session never replaces a link signature', async () => {
    await uploadFile(server, alice.access, 'cloudreve://my/own.txt', Buffer.from('alice own\n'));
    const r = await server.api<{ urls: Array<{ url: string }> }>('POST', '/file/url', {
      token: alice.access,
      body: { uris: ['cloudreve://my/own.txt'] },
    });
    const url = new URL(r.body.data!.urls[0]!.url);
    url.searchParams.delete('sign');
    const res = await fetch(url, { headers: { authorization: `Bearer ${alice.access}` } });
    assert.equal(((await res.json()) as { code: number }).code, 403);
  });
});

describe('signed links', () => {
  let url: URL;
  let bobUrl: URL;
  before(async () => {
    await uploadFile(server, alice.access, 'cloudreve://my/link/a.txt', Buffer.from('alice link\n'));
    await uploadFile(server, bob.access, 'cloudreve://my/b.txt', Buffer.from('bob link\n'));
    const a = await server.api<{ urls: Array<{ url: string }> }>('POST', '/file/url', {
      token: alice.access,
      body: { uris: ['cloudreve://my/link/a.txt'] },
    });
    url = new URL(a.body.data!.urls[0]!.url);
    const b = await server.api<{ urls: Array<{ url: string }> }>('POST', '/file/url', {
      token: bob.access,
      body: { uris: ['cloudreve://my/b.txt'] },
    });
    bobUrl = new URL(b.body.data!.urls[0]!.url);
  });

  // Raw requests: fetch would normalise `..` segments away before sending.
  const code = async (target: string) => {
    const res = await rawRequest(server.port, {
      method: 'GET',
      target: target.replace(/^https?:\/\/[^/]+/, ''),
    });
    if (res.status !== 200 || !(res.headers['content-type'] ?? '').includes('json')) return res.status;
    return (JSON.parse(res.body.toString()) as { code: number }).code;
  };
  const with_ = (path: string, sign: string) => `${url.origin}${path}?sign=${encodeURIComponent(sign)}`;

  test('forged with the real link key it works; any other key, transplant or path trick fails', async () => {
    const expires = now() + 600;
    // Ferry's links sign the path, the expiry and the blob's nonce (issue 12).
    const [blob] = await server.sql<{ nonce: string }>(
      'SELECT b.nonce FROM blobs b JOIN files f ON f.blob_id = b.id WHERE f.name = ?',
      ['a.txt'],
    );
    const nonce = blob!.nonce;
    const signWith = (k: Buffer, path: string, exp = expires, binding: string | null = nonce) =>
      `${createHmac('sha256', k)
        .update(binding === null ? `${path}:${exp}` : `${path}:${exp}:${binding}`)
        .digest('base64')
        .replaceAll('+', '-')
        .replaceAll('/', '_')}:${exp}`;
    const path = decodeURIComponent(url.pathname);
    assert.equal(await code(with_(url.pathname, signWith(linkKey(secret), path))), 200, 'real key');
    const aliceSign = url.searchParams.get('sign')!;
    const bobSign = bobUrl.searchParams.get('sign')!;
    const vectors: Array<[string, string]> = [
      ['other key', with_(url.pathname, signWith(randomBytes(32), path))],
      [
        'the real key without the nonce (Cloudreve’s input)',
        with_(url.pathname, signWith(linkKey(secret), path, expires, null)),
      ],
      [
        'the real key with another nonce',
        with_(url.pathname, signWith(linkKey(secret), path, expires, '0'.repeat(32))),
      ],
      ['the JWT key', with_(url.pathname, signWith(jwtKey(secret), path))],
      ['the raw secret', with_(url.pathname, signWith(secret, path))],
      ["Bob's sign on Alice's path", with_(url.pathname, bobSign)],
      ["Alice's sign on Bob's path", with_(bobUrl.pathname, aliceSign)],
      [
        "Bob's entity, Alice's name and sign",
        with_(url.pathname.replace(/content\/[^/]+/, `content/${bobUrl.pathname.split('/')[5]}`), aliceSign),
      ],
      ['speed 0 → 1', with_(url.pathname.replace('/0/', '/1/'), aliceSign)],
      ['speed 0 → 00', with_(url.pathname.replace('/0/', '/00/'), aliceSign)],
      ['trailing slash', with_(`${url.pathname}/`, aliceSign)],
      ['extra segment', with_(`${url.pathname}/x`, aliceSign)],
      ['dot segment', with_(url.pathname.replace('/a.txt', '/x/../a.txt'), aliceSign)],
      ['double slash', with_(url.pathname.replace('/content/', '/content//'), aliceSign)],
      [
        'archive path with a content sign',
        with_('/api/v4/file/archive/00000000-0000-0000-0000-000000000000/archive.zip', aliceSign),
      ],
      [
        'expires pushed with the old mac',
        with_(url.pathname, aliceSign.replace(/:\d+$/, `:${now() + 999_999}`)),
      ],
      ['never-expiring 0 with the old mac', with_(url.pathname, aliceSign.replace(/:\d+$/, ':0'))],
      ['never-expiring 0 with another key', with_(url.pathname, signWith(randomBytes(32), path, 0))],
    ];
    for (const [what, target] of vectors) {
      const c = await code(target);
      assert.notEqual(c, 200, `${what} served the file`);
      assert.ok([403, 40005, 40071, 404].includes(c), `${what}: ${c}`);
    }
    // Percent-encoding a character of the name does not change what was signed (the decoded
    // path) and serves the same file: no other file can be reached that way.
    const res = await fetch(with_(url.pathname.replace('a.txt', 'a%2Etxt'), aliceSign));
    assert.equal(await res.text(), 'alice link\n');
  });

  test('archive links: swapped session ids, expired sessions and deleted files', async () => {
    const zipOf = async (token: string, uris: string[]) =>
      new URL(
        (
          await server.api<{ urls: Array<{ url: string }> }>('POST', '/file/url', {
            token,
            body: { uris, archive: true },
          })
        ).body.data!.urls[0]!.url,
      );
    const a = await zipOf(alice.access, ['cloudreve://my/link']);
    const b = await zipOf(bob.access, ['cloudreve://my/b.txt']);
    const sessionOf = (u: URL) => u.pathname.split('/')[5]!;
    const swapped = `${a.origin}${a.pathname.replace(sessionOf(a), sessionOf(b))}${a.search}`;
    assert.equal(await code(swapped), 40071, "Alice's sign on Bob's session");
    assert.equal(
      await code(`${b.origin}${b.pathname.replace(sessionOf(b), sessionOf(a))}${b.search}`),
      40071,
    );
    // Bob cannot create an archive of Alice's files.
    const denied = await server.api('POST', '/file/url', {
      token: bob.access,
      body: { uris: [`cloudreve://${alice.userId}@my/link`], archive: true },
    });
    assert.notEqual(denied.body.code, 0);
    // An expired session is gone even with a valid sign.
    await server.sql('UPDATE archive_sessions SET expires_at = ? WHERE id = ?', [
      Date.now() - 1000,
      sessionOf(b),
    ]);
    assert.equal(await code(b.toString()), 404);
    // Files deleted after the link was made are not in the zip.
    assert.equal(await code(a.toString()), 200);
    await server.api('DELETE', '/file', {
      token: alice.access,
      body: { uris: ['cloudreve://my/link/a.txt'] },
    });
    const zip = Buffer.from(await (await fetch(a)).arrayBuffer());
    assert.ok(!zip.includes(Buffer.from('alice link')), 'deleted bytes are not served');
  });
});

describe('password guessing', () => {
  test('per account: e-mail case variants share the counter, X-Forwarded-For does not reset it', async () => {
    const email = 'guess@example.com';
    await server.addUser(email, 'guess-password-1');
    const variants = [email, email.toUpperCase(), 'Guess@Example.com', 'gUESS@example.COM'];
    for (let i = 0; i < 10; i++) {
      const r = await server.api('POST', '/session/token', {
        body: { email: variants[i % variants.length], password: `wrong-${i}` },
        headers: { 'x-forwarded-for': `203.0.113.${i}`, 'x-real-ip': `198.51.100.${i}` },
      });
      assert.equal(r.body.code, 40080, `attempt ${i}`);
    }
    const locked = await server.api('POST', '/session/token', {
      body: { email, password: 'guess-password-1' },
      headers: { 'x-forwarded-for': '192.0.2.1' },
    });
    assert.equal(locked.body.code, 40026);
    // The lock is per account: Bob still signs in from the same address.
    assert.equal(
      (
        await server.api('POST', '/session/token', {
          body: { email: 'bob@example.com', password: 'bob-password-1' },
        })
      ).body.code,
      0,
    );
  });

  test('per address: guessing across many accounts locks the address out, whatever headers say', async () => {
    const s = await startServer();
    try {
      await s.addUser('real@example.com', 'real-password-1');
      for (let i = 0; i < 30; i++) {
        const r = await s.api('POST', '/session/token', {
          body: { email: `nobody${i}@example.com`, password: 'wrong-password' },
          headers: { 'x-forwarded-for': `203.0.113.${i}`, forwarded: `for=198.51.100.${i}` },
        });
        assert.equal(r.body.code, 40080, `attempt ${i}`);
      }
      const r = await s.api('POST', '/session/token', {
        body: { email: 'real@example.com', password: 'real-password-1' },
        headers: { 'x-forwarded-for': '192.0.2.77' },
      });
      assert.equal(r.body.code, 40026, JSON.stringify(r.body));
      assert.ok(Number(r.headers.get('retry-after')) > 0);
    } finally {
      await s.stop();
    }
  });

  test('an attacker at one address cannot lock the owner out from another', async () => {
    const email = 'owner@example.com';
    await server.addUser(email, 'owner-password-1');
    for (let i = 0; i < 12; i++) await signInFrom('127.0.0.2', email, `wrong-${i}`);
    const attacker = await signInFrom('127.0.0.2', email, 'owner-password-1');
    assert.equal(attacker.code, 40026, 'the guessing address is held back, even with the right password');
    assert.ok(Number(attacker.retryAfter) > 0);
    const owner = await signInFrom('127.0.0.1', email, 'owner-password-1');
    assert.equal(owner.code, 0, 'the owner was locked out by guesses from another address');
  });

  test('guesses spread over many addresses delay new addresses, not one the owner used', async () => {
    const email = 'spread@example.com';
    await server.addUser(email, 'spread-password-1');
    assert.equal((await signInFrom('127.0.0.1', email, 'spread-password-1')).code, 0);
    // 100 failures on the account from 10 addresses (each under its own limits).
    for (let a = 10; a < 20; a++)
      for (let i = 0; i < 10; i++) await signInFrom(`127.0.0.${a}`, email, `wrong-${a}-${i}`);
    assert.equal((await signInFrom('127.0.0.50', email, 'spread-password-1')).code, 40026);
    assert.equal((await signInFrom('127.0.0.1', email, 'spread-password-1')).code, 0);
  });
});
