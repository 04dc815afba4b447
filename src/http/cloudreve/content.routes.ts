// Public (signed) routes: blob content and archive zips. No session: the signature is the
// credential. Its form and expiry are checked before anything is read; its MAC covers the
// decoded path and the nonce of the blob row actually found, so a link can only ever serve the
// blob it was made for, whatever now holds that id.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { Readable } from 'node:stream';
import { AppError } from '../../domain/errors.ts';
import { FOLDER, type FileRow } from '../../services/files.service.ts';
import type { Services } from '../../services/index.ts';
import { ARCHIVE_BINDING, EMPTY_BINDING } from '../../services/links.service.ts';
import { BlobNotFoundError } from '../../storage/port.ts';
import { sendBlob, takeOver } from '../send-blob.ts';
import { zipInWorker, type WorkerZipEntry } from '../zip-offload.ts';
import {
  POOLED_CHUNKS,
  writeZip,
  zipLength,
  type ZipEntry,
  type ZipEntryInfo,
  type ZipSink,
} from '../zip-stream.ts';

const CORS_HEADERS = {
  'access-control-allow-origin': '*',
  'access-control-allow-methods': 'GET, HEAD, OPTIONS',
  'access-control-allow-headers': 'Range, If-Range, If-None-Match, If-Modified-Since, If-Match',
  'access-control-expose-headers': 'Content-Range, Content-Length, Accept-Ranges, Content-Disposition, ETag',
};

/** The path as received, percent-decoded: what the link was signed over. */
function decodedPath(request: FastifyRequest): string {
  const raw = request.raw.url ?? '';
  const path = raw.split('?', 1)[0]!;
  try {
    return decodeURIComponent(path);
  } catch {
    throw new AppError('INVALID_SIGN', 'invalid sign');
  }
}

export function registerContentRoutes(app: FastifyInstance, services: Services): void {
  const { links, files, ctx } = services;
  const openReader = ctx.storage.openReader?.bind(ctx.storage);

  const cors = async (_request: FastifyRequest, reply: FastifyReply) =>
    reply.code(204).headers(CORS_HEADERS).send();
  app.options('/file/content/*', cors);
  app.options('/file/archive/*', cors);

  const serveContent = async (request: FastifyRequest, reply: FastifyReply) => {
    reply.headers({
      'access-control-allow-origin': '*',
      'access-control-expose-headers': CORS_HEADERS['access-control-expose-headers'],
    });
    const query = request.query as Record<string, unknown>;
    links.expiryOf(query.sign);
    const path = decodedPath(request);
    const { entity, speed, name } = request.params as { entity: string; speed: string; name: string };
    const blobId = ctx.ids.decode('entity', entity);
    // No link is ever signed over an entity that does not decode.
    if (blobId === null) throw new AppError('INVALID_SIGN', 'invalid sign');
    const speedLimit = /^\d{1,12}$/.test(speed) ? Number(speed) : 0;
    const download = typeof query.download === 'string' && query.download !== '';
    const common = {
      fileName: name,
      disposition: download ? ('attachment' as const) : ('none' as const),
      cacheControl: 'public, max-age=86400',
      speedLimit,
    };
    if (request.method === 'GET') reply.header('content-security-policy', 'sandbox');
    if (blobId === 0) {
      // An empty file has no blob.
      links.verify(path, query.sign, EMPTY_BINDING);
      return sendBlob(request, reply, {
        ...common,
        size: 0,
        modifiedAt: new Date(0),
        etag: `"${entity}"`,
        open: async () => Readable.from([]),
      });
    }
    const missing = () => reply.code(404).type('text/plain').send('Entity data does not exist.');
    const blob = await ctx.db.selectFrom('blobs').selectAll().where('id', '=', blobId).executeTakeFirst();
    if (!blob) return missing();
    links.verify(path, query.sign, blob.nonce);
    try {
      return await sendBlob(request, reply, {
        ...common,
        size: blob.size,
        modifiedAt: new Date(blob.created_at),
        // The nonce, not just the id: an ETag (and If-Range) of a deleted blob never matches another.
        etag: `"${entity}.${blob.nonce}"`,
        open: (range) => ctx.storage.read(blob.storage_key, range),
        ...(openReader ? { openReader: () => openReader(blob.storage_key) } : {}),
      });
    } catch (e) {
      // The row exists but the bytes are gone from storage (spec 5.4: 404 text/plain).
      if (e instanceof BlobNotFoundError && !reply.sent) return missing();
      throw e;
    }
  };
  app.get('/file/content/:entity/:speed/:name', serveContent);

  app.get('/file/archive/:session/archive.zip', async (request, reply) => {
    links.verify(decodedPath(request), (request.query as Record<string, unknown>).sign, ARCHIVE_BINDING);
    const { session } = request.params as { session: string };
    if (!/^[0-9a-f-]{36}$/i.test(session)) throw new AppError('NOT_FOUND', 'Archive session not exist');
    const { files: roots } = await links.archiveSession(session);
    const entries: Array<{ entry: ZipEntryInfo; file: FileRow }> = [];
    for (const root of roots) {
      if (root.type === FOLDER) {
        entries.push({
          entry: { path: root.name, folder: true, modifiedAt: new Date(root.updated_at) },
          file: root,
        });
        for (const item of await files.walk(root)) {
          const path = [root.name, ...item.path].join('/');
          entries.push({
            entry:
              item.file.type === FOLDER
                ? { path, folder: true, modifiedAt: new Date(item.file.updated_at) }
                : { path, size: item.file.size, modifiedAt: new Date(item.file.updated_at) },
            file: item.file,
          });
        }
      } else {
        entries.push({
          entry: { path: root.name, size: root.size, modifiedAt: new Date(root.updated_at) },
          file: root,
        });
      }
    }
    const blobs = await files.blobsForArchive(
      entries.map((e) => e.file.blob_id).filter((id): id is number => id !== null),
    );
    const blobOf = (file: FileRow) => (file.blob_id === null ? undefined : blobs.get(file.blob_id));
    const storage = ctx.storage;
    const openReader = storage.openReader?.bind(storage);
    const zipEntries: ZipEntry[] = entries.map(({ entry, file }) => {
      if (entry.folder === true) return entry;
      const blob = blobOf(file);
      const key = blob?.key;
      const zipEntry: ZipEntry = {
        path: entry.path,
        size: file.size,
        modifiedAt: new Date(file.updated_at),
        open: async () =>
          key
            ? storage.read(key, file.size > 0 ? { start: 0, end: file.size - 1 } : undefined)
            : Readable.from([]),
        ...(blob?.crc32 == null ? {} : { crc32: blob.crc32 }),
      };
      if (key && openReader) zipEntry.openReader = () => openReader(key);
      return zipEntry;
    });
    // On local disk the archive is built on a worker thread (zip-offload.ts); keys are resolved
    // to paths here, before anything is sent, so a bad one is still an ordinary error.
    const localFile = storage.localFile?.bind(storage);
    const workerEntries: WorkerZipEntry[] | null = localFile
      ? zipEntries.map((entry, i) => {
          const folder = entry.folder === true;
          const blob = folder ? undefined : blobOf(entries[i]!.file);
          return {
            path: entry.path,
            size: folder ? 0 : entry.size,
            modifiedAtMs: entry.modifiedAt.getTime(),
            folder,
            file: blob ? localFile(blob.key) : null,
            crc32: blob?.crc32 ?? null,
          };
        })
      : null;
    const length = zipLength(zipEntries);
    const headers = {
      'content-type': 'application/zip',
      'content-disposition': 'attachment; filename="archive.zip"',
      'content-length': String(length),
      'access-control-allow-origin': '*',
    };
    // The response is written here, not by fastify: the archive goes out in chunks whose memory
    // is reused after each socket write.
    const res = takeOver(reply, 200, headers);
    if (request.method === 'HEAD') {
      res.end();
      return reply;
    }
    const controller = new AbortController();
    let sent = 0;
    // A client may hang up the moment it has every byte, before the writer hears back about the
    // last chunk; that archive is complete, so only an earlier close stops it.
    res.once('close', () => {
      if (sent < length) controller.abort(new Error('client went away'));
    });
    const sink: ZipSink = {
      write: (chunk, done) =>
        void res.write(chunk, (error) => {
          if (!error) sent += chunk.length;
          done(error);
        }),
    };
    /** blob id → nonce and CRC-32 computed by this archive, kept for the next one */
    const computed = new Map<number, { nonce: string; crc: number }>();
    const remember = (index: number, crc: number): void => {
      const id = entries[index]?.file.blob_id;
      const blob = id == null ? undefined : blobs.get(id);
      if (id != null && blob) computed.set(id, { nonce: blob.nonce, crc });
    };
    const written = workerEntries
      ? zipInWorker(workerEntries, sink, { signal: controller.signal }).then((crcs) => {
          for (const [index, crc] of crcs) remember(index, crc);
        })
      : inProcess(zipEntries, sink, controller.signal, remember);
    written.then(
      () => {
        res.end();
        if (computed.size > 0) {
          files.rememberCrcs(computed).catch((error: unknown) => {
            request.log.warn({ err: error }, 'could not store archive CRC-32s');
          });
        }
      },
      (error: unknown) => {
        // Headers are out: a truncated body is how the client learns, never a short "complete" zip.
        if (!controller.signal.aborted) request.log.warn({ err: error }, 'archive failed mid-stream');
        res.destroy();
      },
    );
    return reply;
  });
}

/** Storage without local files (S3): the archive is built here, from streams. */
function inProcess(
  entries: ZipEntry[],
  sink: ZipSink,
  signal: AbortSignal,
  remember: (index: number, crc: number) => void,
): Promise<void> {
  const indexOf = new Map<ZipEntry, number>(entries.map((entry, i) => [entry, i]));
  return writeZip(entries, sink, {
    signal,
    chunks: POOLED_CHUNKS,
    onCrc: (entry, crc) => remember(indexOf.get(entry) ?? -1, crc),
  });
}
