// What a client may hold on the server: headers must arrive within --headers-timeout (Node's
// own check), a request body within --request-timeout (streamed upload chunks of a signed-in
// user get Content-Length / --upload-min-rate more), idle keep-alive connections close after
// --keep-alive-timeout, and one address holds at most --max-connections-per-ip connections.
// Only receiving the request is timed: a long download or an event stream is never cut.
import type { Socket } from 'node:net';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { LimitsConfig } from '../config/limits.ts';
import { addressKey } from '../services/sign-in-throttle.ts';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The handler reads the body as a stream (upload chunks): its time allowance grows with its size. */
    streamedBody?: boolean;
  }
}

/** A raw answer on the socket, in the envelope of the face the request was aimed at, then close. */
function answerAndClose(socket: Socket, url: string, status: number, label: string, message: string): void {
  if (socket.destroyed) return;
  const body = JSON.stringify(
    url.startsWith('/api/v4')
      ? { code: status, msg: message }
      : { success: false, error: label.toUpperCase().replaceAll(' ', '_'), message },
  );
  socket.end(
    `HTTP/1.1 ${status} ${label}\r\nContent-Type: application/json; charset=utf-8\r\n` +
      `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
  // A client that does not read its answer does not keep the socket either.
  setTimeout(() => socket.destroy(), 1000).unref();
}

const timers = new WeakMap<FastifyRequest, NodeJS.Timeout>();

function hasBody(request: FastifyRequest): boolean {
  const length = request.headers['content-length'];
  return request.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}

function armBodyTimer(request: FastifyRequest, ms: number): void {
  const raw = request.raw;
  clearTimeout(timers.get(request));
  if (raw.complete) return;
  const timer = setTimeout(() => {
    if (raw.complete) return;
    request.log.warn({ url: request.url, ip: request.ip }, 'request body not received in time');
    answerAndClose(raw.socket, raw.url ?? '', 408, 'Request Timeout', 'Request body not received in time');
  }, ms);
  timer.unref();
  timers.set(request, timer);
  const clear = () => clearTimeout(timer);
  raw.once('end', clear);
  raw.once('close', clear);
}

export function addRequestLimits(app: FastifyInstance, limits: LimitsConfig): void {
  const server = app.server;
  server.headersTimeout = limits.headersTimeout * 1000;
  // Node's requestTimeout would also cut a long upload; bodies are timed below instead.
  server.requestTimeout = 0;
  server.keepAliveTimeout = limits.keepAliveTimeout * 1000;
  // How often Node looks for connections past headersTimeout (default 30 s).
  (server as { connectionsCheckingInterval?: number }).connectionsCheckingInterval = Math.min(
    30_000,
    Math.max(250, (limits.headersTimeout * 1000) / 4),
  );

  if (limits.maxConnectionsPerIp > 0) {
    const open = new Map<string, number>();
    server.on('connection', (socket: Socket) => {
      const key = addressKey(socket.remoteAddress ?? '');
      const count = (open.get(key) ?? 0) + 1;
      if (count > limits.maxConnectionsPerIp) {
        answerAndClose(socket, '', 503, 'Service Unavailable', 'Too many connections from your address');
        return;
      }
      open.set(key, count);
      socket.once('close', () => {
        const left = (open.get(key) ?? 1) - 1;
        if (left > 0) open.set(key, left);
        else open.delete(key);
      });
    });
  }

  const baseMs = limits.requestTimeout * 1000;
  app.addHook('onRequest', (request, _reply, done) => {
    if (hasBody(request)) armBodyTimer(request, baseMs);
    done();
  });
  // After authentication and before the handler reads a streamed body: a signed-in user's
  // upload chunk may take as long as its size needs at the minimum rate.
  app.addHook('preHandler', (request, _reply, done) => {
    const length = Number(request.headers['content-length']);
    if (
      request.routeOptions.config.streamedBody &&
      request.actor &&
      Number.isSafeInteger(length) &&
      length > 0
    )
      armBodyTimer(request, baseMs + Math.ceil((length / limits.uploadMinRate) * 1000));
    done();
  });
}
