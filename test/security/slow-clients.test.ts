// Slow clients over raw TCP on loopback: a body or headers trickled byte by byte are cut off
// with 408 once --request-timeout / --headers-timeout pass, while an upload slower than that
// timeout and a download read slowly complete; one address holds at most
// --max-connections-per-ip connections. Every loop here is bounded in count and time.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { startServer, uploadFile, type TestServer } from '../helpers/server.ts';

/** A socket to the server from a chosen loopback address, once connected. */
function open(port: number, localAddress = '127.0.0.1'): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port, localAddress }, () => resolve(socket));
    socket.once('error', reject);
  });
}

interface Trickle {
  /** bytes written before the server closed the connection */
  sent: number;
  answer: string;
  closedByServer: boolean;
}

/**
 * Writes `head` at once, then `rest` one byte every `everyMs`, until the server closes the
 * connection or `limitMs` passes (then the client gives up and closes it itself).
 */
async function trickle(port: number, head: string, rest: string, everyMs: number, limitMs: number) {
  const socket = await open(port);
  return new Promise<Trickle>((resolve) => {
    let answer = '';
    let sent = 0;
    let closedByServer = true;
    socket.on('data', (d: Buffer) => (answer += d.toString('latin1')));
    socket.on('error', () => undefined);
    socket.write(head);
    const timer = setInterval(() => {
      if (sent < rest.length && !socket.destroyed) socket.write(rest[sent++]!);
    }, everyMs);
    const giveUp = setTimeout(() => {
      closedByServer = false;
      socket.destroy();
    }, limitMs);
    socket.on('close', () => {
      clearInterval(timer);
      clearTimeout(giveUp);
      resolve({ sent, answer, closedByServer });
    });
  });
}

describe('timeouts for receiving a request', () => {
  let server: TestServer;
  before(async () => {
    // Environment variables, not flags: the server also starts on code without these settings.
    server = await startServer({ env: { FERRY_REQUEST_TIMEOUT: '2', FERRY_HEADERS_TIMEOUT: '2' } });
  });
  after(async () => {
    await server?.stop();
  });

  test('20 anonymous sign-ins trickling their bodies are answered 408 and closed', async () => {
    const body = JSON.stringify({ email: 'admin@example.com', password: 'x'.repeat(100) });
    const head =
      'POST /api/v4/session/token HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n' +
      `Content-Length: ${body.length}\r\n\r\n`;
    // One byte every 250 ms would need ~30 s; the client gives up after 20 s.
    const results = await Promise.all(
      Array.from({ length: 20 }, () => trickle(server.port, head, body, 250, 20_000)),
    );
    for (const r of results) {
      assert.ok(r.closedByServer, `the server kept a trickling body open (${r.sent} bytes sent)`);
      assert.ok(r.sent < body.length, 'the body was complete before the cut');
      assert.match(r.answer, /^HTTP\/1\.1 408 /);
      assert.match(r.answer, /"code":408/);
    }
    // The server still answers everyone else.
    assert.equal((await server.api('GET', '/site/ping')).body.code, 0);
  });

  test('trickled headers are answered 408 and closed', async () => {
    const headers = 'GET /files/ HTTP/1.1\r\nHost: 127.0.0.1\r\n' + 'X-Slow: ' + 'a'.repeat(200) + '\r\n\r\n';
    const r = await trickle(server.port, '', headers, 100, 20_000);
    assert.ok(r.closedByServer, 'the server kept trickling headers open');
    assert.ok(r.sent < headers.length);
    assert.match(r.answer, /^HTTP\/1\.1 408 /);
  });

  test('an upload chunk sent slower than the timeout completes; so does a download read slowly', async () => {
    const { access } = await server.signIn();
    const content = Buffer.alloc(256 * 1024);
    for (let i = 0; i < content.length; i++) content[i] = (i * 7) & 255;
    const session = await server.api<{ session_id: string }>('PUT', '/file/upload', {
      token: access,
      body: { uri: 'cloudreve://my/slow.bin', size: content.length },
    });
    assert.equal(session.body.code, 0, JSON.stringify(session.body));
    const socket = await open(server.port);
    let answer = '';
    socket.on('data', (d: Buffer) => (answer += d.toString('latin1')));
    const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
    socket.write(
      `POST /api/v4/file/upload/${session.body.data!.session_id}/0 HTTP/1.1\r\nHost: 127.0.0.1\r\n` +
        `Authorization: Bearer ${access}\r\nContent-Type: application/octet-stream\r\n` +
        `Content-Length: ${content.length}\r\nConnection: close\r\n\r\n`,
    );
    // 32 KiB every 500 ms: about 4 s, twice the request timeout.
    for (let offset = 0; offset < content.length; offset += 32 * 1024) {
      socket.write(content.subarray(offset, offset + 32 * 1024));
      await new Promise((r) => setTimeout(r, 500));
    }
    await closed;
    assert.match(answer, /^HTTP\/1\.1 200 /);
    assert.match(answer, /"code":0/, answer);

    // A 4 MiB download whose reader stops for 3 s keeps going to the last byte.
    const big = Buffer.alloc(4 * 1024 * 1024, 9);
    await uploadFile(server, access, 'cloudreve://my/big.bin', big);
    const url = await server.api<{ urls: Array<{ url: string }> }>('POST', '/file/url', {
      token: access,
      body: { uris: ['cloudreve://my/big.bin'], download: true },
    });
    const path = new URL(url.body.data!.urls[0]!.url).pathname + new URL(url.body.data!.urls[0]!.url).search;
    const reader = await open(server.port);
    let received = 0;
    let paused = false;
    const done = new Promise<void>((resolve) => reader.on('close', () => resolve()));
    reader.on('data', (d: Buffer) => {
      received += d.length;
      if (!paused) {
        paused = true;
        reader.pause();
        setTimeout(() => reader.resume(), 3000);
      }
    });
    reader.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`);
    await done;
    assert.ok(received > big.length, `received ${received} bytes of ${big.length} + headers`);
  });
});

describe('connections per address', () => {
  test('one address holds at most --max-connections-per-ip; others are not affected', async () => {
    const server = await startServer({ env: { FERRY_MAX_CONNECTIONS_PER_IP: '5' } });
    const sockets: Socket[] = [];
    try {
      for (let i = 0; i < 5; i++) sockets.push(await open(server.port, '127.0.0.3'));
      const extra = await open(server.port, '127.0.0.3');
      const answer = await new Promise<string>((resolve) => {
        let text = '';
        extra.on('data', (d: Buffer) => (text += d.toString('latin1')));
        extra.on('error', () => undefined);
        extra.on('close', () => resolve(text));
        extra.write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n');
        setTimeout(() => extra.destroy(), 10_000);
      });
      assert.match(answer, /^HTTP\/1\.1 503 /, `the sixth connection was served: ${answer.slice(0, 80)}`);
      // Another address is served while these are open.
      assert.equal((await fetch(`${server.url}/healthz`)).status, 200);
      // Closing one frees a place.
      sockets.pop()!.destroy();
      await new Promise((r) => setTimeout(r, 200));
      const again = await open(server.port, '127.0.0.3');
      const ok = await new Promise<string>((resolve) => {
        let text = '';
        again.on('data', (d: Buffer) => (text += d.toString('latin1')));
        again.on('close', () => resolve(text));
        again.write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n');
      });
      assert.match(ok, /^HTTP\/1\.1 200 /);
    } finally {
      for (const s of sockets) s.destroy();
      await server.stop();
    }
  });
});
