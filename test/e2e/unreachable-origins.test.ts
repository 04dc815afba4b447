// Origins that cannot be reached or trusted, through a real server process: a refused
// connection shows on the task within seconds with its retry policy (retry_count, resume_time),
// and ends as NETWORK_ERROR after the task's retries, not after a minute of silent attempts. A
// self-signed HTTPS origin fails once with a named TLS error, and downloads with --ca-file.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort, startServer, waitFor, type TestServer } from '../helpers/server.ts';

interface Task {
  id: string;
  status: string;
  error?: string;
  error_history?: string[];
  retry_count?: number;
  resume_time?: number;
  summary?: { phase?: string };
}

const run = promisify(execFile);

let server: TestServer;
let token: string;

before(async () => {
  server = await startServer({ args: ['--allow-network', '127.0.0.1/32', '--task-retries', '2'] });
  token = (await server.signIn()).access;
});
after(async () => {
  if (process.env.FERRY_TEST_VERBOSE) console.log(server?.output());
  await server?.stop();
});

async function create(src: string): Promise<Task> {
  const r = await server.api<Task[]>('POST', '/workflow/download', {
    token,
    body: { dst: 'cloudreve://my', src: [src] },
  });
  assert.equal(r.body.code, 0, JSON.stringify(r.body));
  return r.body.data![0]!;
}

const getTask = async (id: string) =>
  (await server.api<Task>('GET', `/workflow/${id}`, { token })).body.data!;

test('a refused connection is on the task within seconds, with the retry policy, then ends as NETWORK_ERROR', async () => {
  const port = await freePort(); // nothing listens there
  const src = `http://127.0.0.1:${port}/file.bin`;
  const task = await create(src);
  // Before: the engine retried the connect 6 times (~15 s) per run, 3 runs + backoff ≈ 74 s of
  // "processing" with no error. Now the first failure shows at once, with the next attempt's time.
  const first = await waitFor(
    async () => {
      const t = await getTask(task.id);
      return t.error ? t : undefined;
    },
    5_000,
    'the first failure to show',
  );
  assert.match(first.error!, new RegExp(`could not connect to 127\\.0\\.0\\.1:${port}: connection refused`));
  if (first.status === 'suspending') {
    assert.ok((first.retry_count ?? 0) >= 1, JSON.stringify(first));
    assert.ok(first.resume_time! * 1000 > Date.now() - 60_000, JSON.stringify(first));
  }
  const ended = await waitFor(
    async () => {
      const t = await getTask(task.id);
      return t.status === 'error' ? t : undefined;
    },
    30_000,
    'the task to fail',
  );
  assert.equal(ended.retry_count, 2);
  assert.match(ended.error!, /connection refused/);
  assert.equal(ended.error_history?.length, 2);
  // The path face names it the same way.
  const res = await fetch(`${server.url}/files/?download_history=`, {
    headers: { authorization: `Bearer ${token}` },
  });
  const { history } = (await res.json()) as { history: Array<{ url: string; error: string | null }> };
  assert.equal(history.find((h) => h.url === src)?.error, 'NETWORK_ERROR', JSON.stringify(history));
});

interface Https {
  url: string;
  caFile: string;
  handshakes: () => number;
  close(): Promise<void>;
}

/** A self-signed HTTPS origin on 127.0.0.1 (certificate made here with the openssl CLI). */
async function startHttpsOrigin(body: Buffer): Promise<Https> {
  const dir = await mkdtemp(join(tmpdir(), 'ferry-tls-'));
  const key = join(dir, 'key.pem');
  const cert = join(dir, 'cert.pem');
  await run('openssl', [
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-keyout',
    key,
    '-out',
    cert,
    '-days',
    '2',
    '-subj',
    '/CN=Ferry test origin',
    '-addext',
    'subjectAltName=IP:127.0.0.1',
  ]);
  let handshakes = 0;
  const server = createHttpsServer({ key: await readFile(key), cert: await readFile(cert) }, (req, res) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length });
    res.end(body);
  });
  server.on('tlsClientError', () => handshakes++);
  server.on('secureConnection', () => handshakes++);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `https://127.0.0.1:${port}`,
    caFile: cert,
    handshakes: () => handshakes,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await rm(dir, { recursive: true, force: true });
    },
  };
}

test('a self-signed HTTPS origin: a named TLS failure at once, not retried; trusted with --ca-file', async () => {
  const body = randomBytes(300_000);
  const origin = await startHttpsOrigin(body);
  let trusted: TestServer | undefined;
  try {
    const src = `${origin.url}/self-signed.bin`;
    const task = await create(src);
    const ended = await waitFor(
      async () => {
        const t = await getTask(task.id);
        return t.status === 'error' ? t : undefined;
      },
      10_000,
      'the task to fail',
    );
    assert.match(
      ended.error!,
      /TLS certificate of 127\.0\.0\.1:\d+ not accepted: its certificate is self-signed/,
    );
    assert.match(ended.error!, /--ca-file/);
    assert.doesNotMatch(ended.error!, /use-system-ca|Node\.js/);
    assert.equal(ended.retry_count ?? 0, 0, 'a certificate error is not retried');
    assert.equal(origin.handshakes(), 1);
    const res = await fetch(`${server.url}/files/?download_history=`, {
      headers: { authorization: `Bearer ${token}` },
    });
    const { history } = (await res.json()) as { history: Array<{ url: string; error: string | null }> };
    assert.equal(history.find((h) => h.url === src)?.error, 'TLS_ERROR', JSON.stringify(history));

    // The same origin, trusted through --ca-file: the download completes byte-exact.
    trusted = await startServer({
      args: ['--allow-network', '127.0.0.1/32', '--ca-file', origin.caFile, '--ca-file', origin.caFile],
    });
    const t2 = (await trusted.signIn()).access;
    const r = await trusted.api<Task[]>('POST', '/workflow/download', {
      token: t2,
      body: { dst: 'cloudreve://my', src: [src] },
    });
    assert.equal(r.body.code, 0, JSON.stringify(r.body));
    const done = await waitFor(
      async () => {
        const t = (await trusted!.api<Task>('GET', `/workflow/${r.body.data![0]!.id}`, { token: t2 })).body
          .data!;
        return ['completed', 'error'].includes(t.status) ? t : undefined;
      },
      30_000,
      'the trusted download',
    );
    assert.equal(done.status, 'completed', JSON.stringify(done));
    const url = await trusted.api<{ urls: Array<{ url: string }> }>('POST', '/file/url', {
      token: t2,
      body: { uris: ['cloudreve://my/self-signed.bin'] },
    });
    const got = Buffer.from(await (await fetch(url.body.data!.urls[0]!.url)).arrayBuffer());
    assert.ok(got.equals(body), 'bytes differ');
  } finally {
    await trusted?.stop();
    await origin.close();
  }
});

test('--ca-file naming an unreadable file or one without a certificate stops the server with a clear error', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'ferry-ca-'));
  const empty = join(dir, 'not-a-cert.pem');
  await writeFile(empty, 'hello\n');
  try {
    for (const [file, message] of [
      [join(dir, 'missing.pem'), /--ca-file .*missing\.pem: cannot read it \(ENOENT\)/],
      [empty, /--ca-file .*not-a-cert\.pem: no PEM certificate in it/],
    ] as const) {
      const r = await server.cli(['serve', '--port', '0', '--ca-file', file]);
      assert.notEqual(r.code, 0);
      assert.match(r.stdout + r.stderr, message);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
