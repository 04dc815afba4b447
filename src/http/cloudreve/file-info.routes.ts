// GET /file/info and GET /file/thumb as Cloudreve answers them: one file's descriptor, with
// its entities and storage when `extended`, a subtree summary for folders when
// `folder_summary`; thumbnails are never available (no generator), answered the way Cloudreve
// answers a file without one, so clients mark it and do not ask again.
import type { FastifyInstance } from 'fastify';
import { Type, type Static } from 'typebox';
import { AppError } from '../../domain/errors.ts';
import { primaryEntityId } from '../../domain/ids.ts';
import { isoTime } from '../../lib/clock.ts';
import { FOLDER, type FileRow } from '../../services/files.service.ts';
import type { Services } from '../../services/index.ts';
import { requireActor } from '../auth.ts';
import { fileDto } from './dto.ts';
import { ok } from './envelope.ts';

// Go's strconv.ParseBool spellings, as gin binds them.
const Flag = Type.Optional(Type.String({ pattern: '^(1|t|T|TRUE|true|True|0|f|F|FALSE|false|False)?$' }));
const isTrue = (v: string | undefined) => v !== undefined && /^(1|t|true)$/i.test(v);
const InfoQuery = Type.Object({
  uri: Type.Optional(Type.String({ maxLength: 8192 })),
  id: Type.Optional(Type.String({ maxLength: 64 })),
  extended: Flag,
  folder_summary: Flag,
});
const ThumbQuery = Type.Object({ uri: Type.String({ maxLength: 8192 }) });

/** Folder summaries stop counting after this many entries (`completed: false`). */
const SUMMARY_LIMIT = 100_000;

export function registerFileInfoRoutes(app: FastifyInstance, services: Services): void {
  const { files, ctx } = services;
  const ids = ctx.ids;
  const policy = () => ({
    id: ids.encode('policy', 1),
    name: ctx.storage.name === 'local' ? 'Default' : ctx.storage.name,
    type: ctx.storage.name,
    max_size: ctx.config.maxFileSize,
  });

  const summary = async (folder: FileRow) => {
    let entries: Awaited<ReturnType<typeof files.walk>> = [];
    let completed = true;
    try {
      entries = await files.walk(folder, SUMMARY_LIMIT);
    } catch (e) {
      if (!(e instanceof AppError)) throw e;
      completed = false;
    }
    let size = 0;
    let count = 0;
    for (const { file } of entries) {
      if (file.type === FOLDER) continue;
      size += file.size;
      count++;
    }
    return {
      size,
      files: count,
      folders: entries.length - count,
      completed,
      calculated_at: isoTime(ctx.clock.now()),
    };
  };

  app.get('/file/info', { schema: { tags: ['file'], querystring: InfoQuery } }, async (request) => {
    const actor = requireActor(request);
    const q = request.query as Static<typeof InfoQuery>;
    let file: FileRow;
    let segments: string[];
    if (q.uri) {
      // Cloudreve resolves a search URI to its folder here.
      ({ file, segments } = await files.locate(actor, q.uri, true));
    } else if (q.id) {
      const id = ids.decode('file', q.id) ?? ids.decode('folder', q.id);
      const found = id === null ? undefined : await files.getById(actor.user.id, id);
      if (!found) throw new AppError('NOT_FOUND', 'file not found');
      file = found;
      segments = await files.pathOf(found);
    } else {
      throw new AppError('PARAM_INVALID', 'uri is required');
    }
    const dto: Record<string, unknown> = fileDto(file, segments, ids);
    if (isTrue(q.extended)) {
      const entity = primaryEntityId(file);
      dto.extended_info = {
        storage_policy: policy(),
        storage_used: file.type === FOLDER ? 0 : file.size,
        ...(entity === null
          ? {}
          : {
              entities: [
                {
                  id: ids.encode('entity', entity),
                  size: file.size,
                  type: 0,
                  created_at: isoTime(file.updated_at),
                  storage_policy: policy(),
                },
              ],
            }),
      };
    }
    if (isTrue(q.folder_summary) && file.type === FOLDER) dto.folder_summary = await summary(file);
    return ok(dto);
  });

  app.get('/file/thumb', { schema: { tags: ['file'], querystring: ThumbQuery } }, async (request) => {
    const actor = requireActor(request);
    // A missing path answers as missing; an existing file has no thumbnail (40077).
    await files.locate(actor, (request.query as Static<typeof ThumbQuery>).uri);
    throw new AppError('ENTITY_NOT_EXIST', 'Entity not exist');
  });
}
