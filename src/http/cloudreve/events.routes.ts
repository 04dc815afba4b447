// Ferry extension: GET /api/v4/workflow/events — a Server-Sent Events stream of the caller's
// task changes (each event is a TaskResponse), so clients need not poll.
import type { FastifyInstance } from 'fastify';
import type { Services } from '../../services/index.ts';
import type { TaskEvent } from '../../services/tasks.service.ts';
import { requireActor } from '../auth.ts';
import { taskDto } from './dto.ts';

export function registerEventStream(app: FastifyInstance, services: Services): void {
  const { tasks, ctx } = services;
  app.get('/workflow/events', { schema: { tags: ['workflow'] } }, async (request, reply) => {
    const actor = requireActor(request);
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    res.write('retry: 2000\n\n');
    // Send the current active tasks first, so a client that (re)connects starts complete.
    for (const task of await tasks.active(actor.user.id)) {
      res.write(`event: task\ndata: ${JSON.stringify(taskDto(task, ctx.ids))}\n\n`);
    }
    const onTask = (event: TaskEvent) => {
      if (event.ownerId !== actor.user.id) return;
      // A slow client must not make us buffer without bound: drop updates while it lags.
      if (res.writableLength > 1024 * 1024) return;
      res.write(`event: task\ndata: ${JSON.stringify(taskDto(event.task, ctx.ids))}\n\n`);
    };
    const ping = setInterval(() => res.write(': ping\n\n'), 15_000);
    tasks.events.on('task', onTask);
    request.raw.on('close', () => {
      clearInterval(ping);
      tasks.events.off('task', onTask);
    });
  });
}
