// The remote-download workflow of the Cloudreve face: create, list, progress, cancel,
// select files.
import type { FastifyInstance } from 'fastify';
import { Type, type Static } from 'typebox';
import { AppError, BatchError } from '../../domain/errors.ts';
import type { Services } from '../../services/index.ts';
import type { Task } from '../../domain/task.ts';
import { parseChecksum } from '../../services/tasks.service.ts';
import { requireActor } from '../auth.ts';
import { ok } from './envelope.ts';
import { taskDto } from './dto.ts';
import { taskProgress } from './progress.ts';

const CreateDownloadBody = Type.Object({
  dst: Type.String({ maxLength: 8192 }),
  src: Type.Optional(Type.Array(Type.String({ maxLength: 8192 }), { maxItems: 10_000 })),
  src_file: Type.Optional(Type.String({ maxLength: 8192 })),
  preferred_node_id: Type.Optional(Type.String({ maxLength: 64 })),
  // Ferry extensions (documented in the README): apply to every source of the request.
  headers: Type.Optional(Type.Record(Type.String({ maxLength: 64 }), Type.String({ maxLength: 8192 }))),
  checksum: Type.Optional(Type.String({ maxLength: 200 })),
  connections: Type.Optional(Type.Integer({ minimum: 1, maximum: 64 })),
  filename: Type.Optional(Type.String({ maxLength: 1024 })),
  select_files: Type.Optional(Type.Array(Type.Integer({ minimum: 0 }), { maxItems: 100_000 })),
});
const SelectFilesBody = Type.Object({
  files: Type.Array(Type.Object({ index: Type.Integer(), download: Type.Optional(Type.Boolean()) }), {
    maxItems: 100_000,
  }),
});
const TaskListQuery = Type.Object({
  page_size: Type.Integer({ minimum: 10, maximum: 100 }),
  category: Type.Union([Type.Literal('general'), Type.Literal('downloading'), Type.Literal('downloaded')]),
  next_page_token: Type.Optional(Type.String({ maxLength: 1024 })),
});

export async function workflowRoutes(app: FastifyInstance, services: Services): Promise<void> {
  const { tasks, ctx } = services;
  const ids = ctx.ids;
  const decodeTaskId = (value: string): number => {
    const id = ids.decode('task', value);
    if (id === null) throw new AppError('PARAM_INVALID', 'Failed to parse object ID');
    return id;
  };
  const nodesById = async (rows: Task[]) => {
    const wanted = [...new Set(rows.map((r) => r.node_id))];
    if (wanted.length === 0)
      return new Map<
        number,
        { id: number; name: string; type: string; capabilities: string; status: string }
      >();
    const nodes = await ctx.db.selectFrom('nodes').selectAll().where('id', 'in', wanted).execute();
    return new Map(nodes.map((n) => [n.id, n]));
  };

  // ---- workflow
  app.post(
    '/workflow/download',
    { schema: { tags: ['workflow'], body: CreateDownloadBody } },
    async (request, reply) => {
      const actor = requireActor(request);
      const body = request.body as Static<typeof CreateDownloadBody>;
      // Unknown fields are ignored, as Cloudreve's own binding does (a newer client's fields must
      // not break it), and named in a header so the ignoring is visible (docs/COMPATIBILITY.md).
      const ignored = Object.keys(body).filter((k) => !Object.hasOwn(CreateDownloadBody.properties, k));
      if (ignored.length > 0) {
        const names = ignored.map((k) => (/^[\w.-]{1,64}$/.test(k) ? k : '?'));
        void reply.header('x-ferry-ignored-fields', names.join(', ').slice(0, 200));
      }
      const checksum = parseChecksum(body.checksum);
      const { tasks: created, failures } = await tasks.create(actor, {
        dst: body.dst,
        src: body.src,
        src_file: body.src_file,
        preferred_node_id: body.preferred_node_id,
        face: 'cloudreve',
        correlationId: request.id,
        options: {
          ...(body.headers ? { headers: body.headers } : {}),
          ...(checksum ? { checksum } : {}),
          ...(body.connections ? { connections: body.connections } : {}),
          ...(body.filename ? { filename: body.filename } : {}),
          ...(body.select_files ? { selectFiles: body.select_files } : {}),
        },
      });
      const data = created.map((t) => taskDto(t, ids));
      // A partial batch still says which tasks were created (Ferry: `data`, see COMPATIBILITY.md).
      if (failures.size) throw new BatchError(failures, data.length ? data : undefined);
      return ok(data);
    },
  );
  app.get('/workflow', { schema: { tags: ['workflow'], querystring: TaskListQuery } }, async (request) => {
    const actor = requireActor(request);
    const q = request.query as Static<typeof TaskListQuery>;
    const page = await tasks.list(actor.user.id, q.category, q.page_size, q.next_page_token);
    const nodes = await nodesById(page.tasks);
    return ok({
      tasks: page.tasks.map((t) => {
        const node = nodes.get(t.node_id);
        return taskDto(t, ids, node && node.status === 'active' ? node : undefined);
      }),
      pagination: {
        page: 0,
        page_size: q.page_size,
        is_cursor: true,
        ...(page.nextToken ? { next_token: page.nextToken } : {}),
      },
    });
  });
  app.get('/workflow/progress/:id', { schema: { tags: ['workflow'] } }, async (request) => {
    const actor = requireActor(request);
    const id = decodeTaskId((request.params as { id: string }).id);
    const task = await tasks.find(actor, id);
    return ok(task ? taskProgress(task) : {});
  });
  app.delete('/workflow/download/:id', { schema: { tags: ['workflow'] } }, async (request) => {
    const actor = requireActor(request);
    await tasks.cancel(actor, decodeTaskId((request.params as { id: string }).id));
    return ok();
  });
  app.patch(
    '/workflow/download/:id',
    { schema: { tags: ['workflow'], body: SelectFilesBody } },
    async (request) => {
      const actor = requireActor(request);
      await tasks.selectFiles(
        actor,
        decodeTaskId((request.params as { id: string }).id),
        (request.body as Static<typeof SelectFilesBody>).files,
      );
      return ok();
    },
  );
  // Ferry extensions: pause and resume (a paused task shows as `suspending` with no
  // resume_time, and `paused: true`).
  app.post('/workflow/download/:id/pause', { schema: { tags: ['workflow'] } }, async (request) => {
    const actor = requireActor(request);
    const id = decodeTaskId((request.params as { id: string }).id);
    return ok(taskDto(await tasks.pause(actor, id), ids));
  });
  app.post('/workflow/download/:id/resume', { schema: { tags: ['workflow'] } }, async (request) => {
    const actor = requireActor(request);
    const id = decodeTaskId((request.params as { id: string }).id);
    return ok(taskDto(await tasks.resume(actor, id), ids));
  });
  // Ferry extension: start a failed or canceled task again with all its options.
  app.post('/workflow/download/:id/retry', { schema: { tags: ['workflow'] } }, async (request) => {
    const actor = requireActor(request);
    const id = decodeTaskId((request.params as { id: string }).id);
    return ok(taskDto(await tasks.retry(actor, id, request.id), ids));
  });
  // Ferry extension: the task's node, for one task (handy for clients and tests).
  app.get('/workflow/:id', { schema: { tags: ['workflow'] } }, async (request) => {
    const actor = requireActor(request);
    const task = await tasks.get(actor, decodeTaskId((request.params as { id: string }).id));
    const node = (await nodesById([task])).get(task.node_id);
    return ok(taskDto(task, ids, node && node.status === 'active' ? node : undefined));
  });
}
