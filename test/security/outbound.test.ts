// Server-side request forgery through both faces, end to end. Every refused vector is first
// checked in-process against the same OutboundPolicy the server builds (so a test can never
// ask the server to contact a non-loopback address: a vector the policy would allow fails here
// before it is sent), then sent to a server started WITHOUT --allow-network: refused before any
// connection, and the loopback origin counts no request. Redirect vectors go through a second
// server that may reach 127.0.0.1 only: the origin redirects into refused ranges (Location names
// them; nothing connects to them — the engine checks each hop before dialing, as
// test/engine/http-engine.test.ts proves), loops, and chains longer than the limit.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { OutboundPolicy } from '../../src/net/address-policy.ts';
import { startOrigin, type Origin } from '../helpers/origin.ts';
import { startServer, waitFor, type TestServer } from '../helpers/server.ts';

let origin: Origin;
let closed: TestServer;
let open: TestServer;
let closedToken: string;
let openToken: string;

interface History {
  id: string;
  status: string;
  error: string | null;
}

before(async () => {
  origin = await startOrigin();
  [closed, open] = await Promise.all([
    startServer({ args: ['--torrent-downloader', 'none', '--task-retries', '0'] }),
    startServer({
      args: ['--allow-network', '127.0.0.1/32', '--torrent-downloader', 'none', '--task-retries', '0'],
    }),
  ]);
  closedToken = (await closed.signIn()).access;
  openToken = (await open.signIn()).access;
});
after(async () => {
  await closed?.stop();
  await open?.stop();
  await origin?.close();
});

/** Asserts the default policy refuses `url`'s host without any lookup; never lets it through. */
function mustBeRefusedOffline(url: string, policy = new OutboundPolicy()) {
  const host = new URL(url).hostname;
  assert.equal(policy.checkHost(host).ok, false, `${url} would be allowed: not sent`);
}

describe('refused before connecting (no --allow-network)', () => {
  test('at least 25 address vectors, through both faces', async (t) => {
    const p = origin.port;
    const vectors = [
      // loopback in every spelling, pointed at the live origin's port: a connect would show
      `http://127.0.0.2:${p}/v`,
      `http://127.255.255.254:${p}/v`,
      `http://0x7f.1:${p}/v`,
      `http://017700000001:${p}/v`,
      `http://0x7f000001:${p}/v`,
      `http://127.0.1:${p}/v`,
      `http://[0:0:0:0:0:0:0:1]:${p}/v`,
      `http://[::1]:${p}/v`,
      `http://[::ffff:127.0.0.1]:${p}/v`,
      `http://[::ffff:7f00:1]:${p}/v`,
      `http://[::127.0.0.1]:${p}/v`,
      `http://[64:ff9b::7f00:1]:${p}/v`,
      `http://[2002:7f00:1::]:${p}/v`,
      `http://[0::ffff:127.0.0.1]:${p}/v`,
      `http://localhost:${p}/v`,
      `http://localhost.:${p}/v`,
      `http://LocalHost:${p}/v`,
      `http://a.b.localhost:${p}/v`,
      `http://localhost.localdomain:${p}/v`,
      `http://user:pw@127.0.0.1:${p}/v`,
      `http://127.0.0.1.:${p}/v`,
      `http://%31%32%37.0.0.1:${p}/v`,
      // other refused ranges (never contacted: refused on the literal)
      'http://0.0.0.0/v',
      'http://0/v',
      'http://[::]/v',
      'http://10.0.0.1/v',
      'http://172.16.0.1/v',
      'http://192.168.0.1/v',
      'http://169.254.169.254/latest/meta-data/',
      'http://[fe80::1]/v',
      'http://[fd00::1]/v',
      'http://100.64.0.1/v',
      'http://224.0.0.1/v',
      'http://255.255.255.255/v',
      'http://240.0.0.1/v',
      'http://192.0.2.1/v',
      'http://198.18.0.1/v',
      'http://[ff02::1]/v',
      'http://[::ffff:10.0.0.1]/v',
      'http://[64:ff9b::a9fe:a9fe]/v',
      'http://0xa9fea9fe/v',
      'https://[::ffff:a9fe:a9fe]/v',
    ];
    for (const v of vectors) mustBeRefusedOffline(v);
    origin.resetCounters();
    for (const v of vectors) {
      const res = await fetch(`${closed.url}/files/ssrf?download=${encodeURIComponent(v)}`, {
        headers: { authorization: `Bearer ${closedToken}` },
      });
      const body = (await res.json()) as { success: boolean; error: string };
      assert.deepEqual([res.status, body.success, body.error], [403, false, 'DOMAIN_BLOCKED'], v);
    }
    await closed.api('POST', '/file/create', {
      token: closedToken,
      body: { uri: 'cloudreve://my/ssrf', type: 'folder' },
    });
    const cr = await closed.api('POST', '/workflow/download', {
      token: closedToken,
      body: { dst: 'cloudreve://my/ssrf', src: vectors },
    });
    assert.equal(cr.body.code, 40081);
    const refused = Object.keys(cr.body.aggregated_error!);
    // Sources are keyed as sent (trimmed); every one is refused.
    assert.equal(refused.length, vectors.length, JSON.stringify(cr.body).slice(0, 500));
    const tasks = await closed.api<{ tasks: unknown[] }>(
      'GET',
      '/workflow?category=downloading&page_size=100',
      {
        token: closedToken,
      },
    );
    assert.deepEqual(tasks.body.data!.tasks, [], 'no task was created');
    assert.equal(origin.requests('/v').length, 0, 'the origin was never contacted');
    t.diagnostic(`${vectors.length} address vectors refused on both faces`);
  });

  test('schemes other than http(s) are refused', async () => {
    for (const v of [
      'file:///etc/passwd',
      'ftp://127.0.0.1/x',
      'gopher://127.0.0.1:70/_x',
      'dict://127.0.0.1:11211/stat',
      'ldap://127.0.0.1/x',
      'data:text/plain,hi',
      'javascript:alert(1)',
      'jar:http://127.0.0.1/x!/y',
    ]) {
      const res = await fetch(`${closed.url}/files/ssrf?download=${encodeURIComponent(v)}`, {
        headers: { authorization: `Bearer ${closedToken}` },
      });
      assert.equal(res.status, 400, v);
      const cr = await closed.api('POST', '/workflow/download', {
        token: closedToken,
        body: { dst: 'cloudreve://my/ssrf', src: [v] },
      });
      assert.equal(cr.body.code, 40081, v);
    }
  });
});

describe('redirects (server may reach 127.0.0.1/32 only)', () => {
  async function historyOf(id: string): Promise<History> {
    return waitFor(
      async () => {
        const res = await fetch(`${open.url}/files/?download_history=`, {
          headers: { authorization: `Bearer ${openToken}` },
        });
        return ((await res.json()) as { history: History[] }).history.find((e) => e.id === id);
      },
      30_000,
      `history ${id}`,
    );
  }
  async function start(url: string): Promise<string> {
    const res = await fetch(`${open.url}/files/redir?download=${encodeURIComponent(url)}`, {
      headers: { authorization: `Bearer ${openToken}` },
    });
    const body = (await res.json()) as { download_id: string; success: boolean; error: string };
    assert.equal(body.success, true, `${url}: ${JSON.stringify(body)}`);
    return body.download_id;
  }

  test('a redirect into a refused range fails the task without following it', async () => {
    const p = origin.port;
    const policy = new OutboundPolicy({ allowNetworks: ['127.0.0.1/32'] });
    const targets = [
      'http://10.0.0.1/x',
      'http://169.254.169.254/latest/meta-data/iam/security-credentials/',
      'http://[fd00::1]/x',
      'http://192.168.1.1/x',
      'http://100.64.0.1/x',
      'http://[::ffff:10.0.0.1]/x',
      'http://0x0a000001/x',
      `http://127.0.0.2:${p}/x`,
      `http://[::1]:${p}/x`,
      `http://0.0.0.0:${p}/x`,
      `http://[::ffff:7f00:2]:${p}/x`,
    ];
    for (const target of targets) mustBeRefusedOffline(target, policy);
    const ids: Array<[string, string, string]> = [];
    for (const [i, target] of targets.entries()) {
      const path = `/redir/${i}`;
      origin.route(path, { redirect: target, redirectStatus: [301, 302, 303, 307, 308][i % 5]! });
      ids.push([await start(origin.url(path)), path, target]);
    }
    // Schemes a redirect may not switch to.
    for (const [i, target] of ['file:///etc/passwd', 'ftp://127.0.0.1/x', 'gopher://127.0.0.1/x'].entries()) {
      const path = `/scheme/${i}`;
      origin.route(path, { redirect: target });
      ids.push([await start(origin.url(path)), path, target]);
    }
    for (const [id, path, target] of ids) {
      const h = await historyOf(id);
      assert.equal(h.status, 'failed', `${target}: ${JSON.stringify(h)}`);
      assert.ok(
        ['DOMAIN_BLOCKED', 'INVALID_URL', 'HTTP_ERROR'].includes(h.error ?? ''),
        `${target}: ${h.error}`,
      );
      assert.equal(origin.requests(path).length, 1, `${path} asked once, not retried around the policy`);
    }
    assert.equal(origin.requests('/x').length, 0, 'nothing on the origin followed a refused redirect');
  });

  test('redirect loops and over-long chains end with an error after a bounded number of hops', async () => {
    origin.route('/loop', { redirect: '/loop' });
    origin.route('/pingpong/a', { redirect: '/pingpong/b' });
    origin.route('/pingpong/b', { redirect: '/pingpong/a' });
    for (let i = 0; i < 30; i++) origin.route(`/chain/${i}`, { redirect: `/chain/${i + 1}` });
    origin.route('/chain/30', { size: 100 });
    origin.resetCounters();
    const loop = await start(origin.url('/loop'));
    const pingpong = await start(origin.url('/pingpong/a'));
    const chain = await start(origin.url('/chain/0'));
    for (const id of [loop, pingpong, chain]) {
      const h = await historyOf(id);
      assert.equal(h.status, 'failed', JSON.stringify(h));
    }
    const hops = origin.requests('/loop').length;
    assert.ok(hops >= 2 && hops <= 25, `loop followed ${hops} times`);
    const pp = origin.requests('/pingpong/a').length + origin.requests('/pingpong/b').length;
    assert.ok(pp <= 25, `ping-pong followed ${pp} times`);
    assert.equal(origin.requests('/chain/30').length, 0, 'the end of a 30-hop chain is never reached');
  });
});
