// Builds the HTTP server: one fastify instance, each face in its own encapsulated context
// with its own error envelope.
import Fastify, { LogController, type FastifyInstance } from 'fastify';
import swagger from '@fastify/swagger';
import { randomUUID } from 'node:crypto';
import type { Services } from '../services/index.ts';
import { addAuthentication } from './auth.ts';
import { addInputGuard } from './input-guard.ts';
import { cloudreveRoutes } from './cloudreve/routes.ts';
import { pathApiRoutes } from './path-api/routes.ts';
import { registerMetrics } from './metrics.ts';
import { registerWebApp } from './web-app.ts';
import { addRequestLimits } from './request-limits.ts';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export async function buildServer(
  services: Services,
  options: { logLevel: string },
): Promise<FastifyInstance> {
  // The request line of each connection's current request, for clientErrorHandler.
  const targets = new WeakMap<object, string>();
  const app = Fastify({
    logger: { level: options.logLevel },
    // Clients may pick the correlation id (Cloudreve's X-Cr-Correlation-Id); anything else is ours.
    genReqId: (req) => {
      const given = req.headers['x-cr-correlation-id'];
      return typeof given === 'string' && UUID.test(given) ? given : randomUUID();
    },
    logController: new LogController({ requestIdLogLabel: 'correlation_id', disableRequestLogging: true }),
    bodyLimit: 1024 * 1024,
    return503OnClosing: true,
    forceCloseConnections: true,
    // Malformed URLs (bad percent-encoding, overlong segments) are answered in the envelope of
    // the face they were aimed at, like every other client error.
    frameworkErrors: (error, request, reply) => {
      const url = request.raw.url ?? '';
      const [status, body] = url.startsWith('/api/v4')
        ? [200, { code: 40001, msg: 'Invalid request URL' }]
        : [400, { success: false, error: 'BAD_REQUEST', message: error.message }];
      reply.raw.writeHead(status, { 'content-type': 'application/json; charset=utf-8' });
      reply.raw.end(JSON.stringify(body));
    },
    routerOptions: { ignoreDuplicateSlashes: false, maxParamLength: 4096 },
    // Requests the HTTP parser refuses (lying Content-Length, Content-Length with chunked,
    // oversized headers) get the envelope of the face named in their request line too.
    clientErrorHandler: (error, socket) => {
      if ((error as NodeJS.ErrnoException).code === 'ECONNRESET' || !socket.writable) {
        socket.destroy();
        return;
      }
      const packet = (error as unknown as { rawPacket?: unknown }).rawPacket;
      const raw = Buffer.isBuffer(packet) ? packet.toString('latin1') : '';
      const target = /^[A-Z]+ (\S+)/.exec(raw)?.[1] ?? targets.get(socket) ?? '';
      const code = (error as NodeJS.ErrnoException).code;
      const [status, label] =
        code === 'HPE_HEADER_OVERFLOW'
          ? [431, 'Request Header Fields Too Large']
          : code === 'ERR_HTTP_REQUEST_TIMEOUT' // headers not received within --headers-timeout
            ? [408, 'Request Timeout']
            : [400, 'Bad Request'];
      const body = JSON.stringify(
        target.startsWith('/api/v4')
          ? { code: 40001, msg: label }
          : { success: false, error: 'BAD_REQUEST', message: label },
      );
      socket.end(
        `HTTP/1.1 ${status} ${label}\r\nContent-Type: application/json; charset=utf-8\r\n` +
          `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
      );
    },
  });
  addRequestLimits(app, services.ctx.config);
  app.server.prependListener('request', (req: { socket: object; url?: string }) =>
    targets.set(req.socket, req.url ?? ''),
  );
  app.addHook('onResponse', (request, reply, done) => {
    if (reply.statusCode >= 500)
      request.log.warn({ url: request.url, status: reply.statusCode }, 'server error');
    done();
  });

  registerMetrics(app, services); // before the faces, so its request counter sees them all
  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: {
        title: 'Ferry — Cloudreve v4 compatible API',
        version: '0.1.0',
        description:
          'Remote downloads, files and signed links. Every answer uses the Cloudreve envelope {code, data, msg}.',
      },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
      security: [{ bearer: [] }],
    },
    hideUntagged: true,
  });

  await app.register(
    async (api) => {
      addAuthentication(api, services.auth);
      addInputGuard(api);
      await cloudreveRoutes(api, services);
      api.get('/openapi.json', async () => app.swagger());
    },
    { prefix: '/api/v4' },
  );
  await app.register(
    async (files) => {
      addAuthentication(files, services.auth);
      addInputGuard(files);
      await pathApiRoutes(files, services);
    },
    { prefix: services.ctx.config.pathApiBase },
  );
  registerWebApp(app, `${import.meta.dirname}/../../web/dist`, {
    reservedPrefixes: [services.ctx.config.pathApiBase],
  });
  app.get('/healthz', async () => ({ ok: true }));
  app.get('/readyz', async (_request, reply) => {
    try {
      await services.ctx.db.selectFrom('settings').select('key').limit(1).execute();
    } catch {
      return reply.code(503).send({ ready: false, reason: 'database unavailable' });
    }
    // Low disk: new uploads and tasks are refused, so the node is not ready for new work.
    const disk = await services.files.disk.state();
    if (disk.low)
      return reply.code(503).send({ ready: false, reason: 'low disk space', free: disk.free, min: disk.min });
    return { ready: true };
  });
  return app;
}
