// Ferry extension on the Cloudreve face: a user's webhooks and their delivery log
// (docs/COMPATIBILITY.md › Webhooks).
import type { FastifyInstance } from 'fastify';
import { Type, type Static } from 'typebox';
import { AppError } from '../../domain/errors.ts';
import type { Services } from '../../services/index.ts';
import { requireActor } from '../auth.ts';
import { ok } from './envelope.ts';

const CreateWebhookBody = Type.Object({
  url: Type.String({ maxLength: 2048 }),
  events: Type.Array(Type.String({ maxLength: 32 }), { maxItems: 10 }),
});

export async function webhookRoutes(app: FastifyInstance, services: Services): Promise<void> {
  const { webhooks } = services;
  const idOf = (value: string): number => {
    if (!/^\d{1,15}$/.test(value)) throw new AppError('PARAM_INVALID', 'Invalid webhook id');
    return Number(value);
  };
  app.get('/user/webhooks', { schema: { tags: ['webhooks'] } }, async (request) =>
    ok(await webhooks.list(requireActor(request).user.id)),
  );
  app.post('/user/webhooks', { schema: { tags: ['webhooks'], body: CreateWebhookBody } }, async (request) => {
    const body = request.body as Static<typeof CreateWebhookBody>;
    return ok(await webhooks.create(requireActor(request).user.id, body.url, body.events));
  });
  app.delete('/user/webhooks/:id', { schema: { tags: ['webhooks'] } }, async (request) => {
    await webhooks.remove(requireActor(request).user.id, idOf((request.params as { id: string }).id));
    return ok();
  });
  app.get('/user/webhooks/:id/deliveries', { schema: { tags: ['webhooks'] } }, async (request) =>
    ok(await webhooks.deliveries(requireActor(request).user.id, idOf((request.params as { id: string }).id))),
  );
}
