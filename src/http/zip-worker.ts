// The worker thread behind zip-offload.ts: builds archives with writeZip, reading the files with
// plain synchronous calls. Off the main thread a blocking read stalls nobody, and it costs one
// system call where an async read costs three round trips through the thread pool, which on a
// VM was most of the time a 100 KiB entry took (bench/serving.ts).
import { closeSync, openSync, readSync } from 'node:fs';
import { parentPort } from 'node:worker_threads';
import type { BlobReader } from '../storage/port.ts';
import { POOLED_CHUNK } from './buffer-pool.ts';
import { writeZip, type ZipEntry } from './zip-stream.ts';
import type { FromWorker, ToWorker, WorkerZipEntry } from './zip-offload.ts';

const port = parentPort;
if (port === null) throw new Error('zip-worker.ts runs as a worker thread');

/**
 * Output chunk size: each chunk costs a message each way (~50–130 µs on a VM), so larger than the
 * in-process 1 MiB; 2 MiB × IN_FLIGHT (4) bounds an archive at 8 MiB in flight.
 */
const WORKER_CHUNK = 2 * POOLED_CHUNK;
/** Output buffers the main thread has handed back (transferred) after writing them. */
const spare: Buffer[] = [];
const SPARE_MAX = 8;

interface Job {
  controller: AbortController;
  /** `done` callbacks of chunks sent and not yet acknowledged, oldest first. */
  pending: Array<(error?: Error | null) => void>;
}
const jobs = new Map<number, Job>();

const post = (message: FromWorker, transfer: ArrayBuffer[] = []): void => port.postMessage(message, transfer);

function reader(file: string): BlobReader {
  const fd = openSync(file, 'r');
  let open = true;
  return {
    read: (buffer, length, position) => Promise.resolve(readSync(fd, buffer, 0, length, position)),
    close: () => {
      if (open) {
        open = false;
        closeSync(fd);
      }
      return Promise.resolve();
    },
  };
}

function toEntry(e: WorkerZipEntry): ZipEntry {
  const modifiedAt = new Date(e.modifiedAtMs);
  if (e.folder) return { path: e.path, folder: true, modifiedAt };
  const file = e.file;
  return {
    path: e.path,
    size: e.size,
    modifiedAt,
    ...(e.crc32 === null ? {} : { crc32: e.crc32 }),
    // Every entry has a reader (an entry without a blob gets a zero-length one).
    open: () => Promise.reject(new Error('not used')),
    openReader: async () => (file === null ? { read: async () => 0, close: async () => {} } : reader(file)),
  };
}

function start(id: number, entries: WorkerZipEntry[], forceZip64: boolean): void {
  const job: Job = { controller: new AbortController(), pending: [] };
  jobs.set(id, job);
  const zipEntries = entries.map(toEntry);
  const indexOf = new Map(zipEntries.map((entry, index) => [entry, index]));
  const crcs: Array<[number, number]> = [];
  writeZip(
    zipEntries,
    {
      write(chunk, done) {
        job.pending.push(done);
        const buffer = chunk.buffer as ArrayBuffer; // allocUnsafeSlow: a whole, transferable ArrayBuffer
        post({ type: 'chunk', id, buffer, offset: chunk.byteOffset, length: chunk.length }, [buffer]);
      },
    },
    {
      signal: job.controller.signal,
      forceZip64,
      onCrc: (entry, crc) => crcs.push([indexOf.get(entry) ?? -1, crc]),
      chunks: { take: () => spare.pop() ?? Buffer.allocUnsafeSlow(WORKER_CHUNK), giveBack: () => {} },
    },
  )
    .then(
      () => post({ type: 'done', id, crcs }),
      (error: unknown) =>
        post({ type: 'error', id, message: error instanceof Error ? error.message : String(error) }),
    )
    .finally(() => jobs.delete(id));
}

port.on('message', (message: ToWorker) => {
  switch (message.type) {
    case 'start':
      start(message.id, message.entries, message.forceZip64);
      break;
    case 'ack': {
      if (spare.length < SPARE_MAX) spare.push(Buffer.from(message.buffer));
      jobs.get(message.id)?.pending.shift()?.();
      break;
    }
    case 'cancel':
      jobs.get(message.id)?.controller.abort(new Error('cancelled'));
      break;
  }
});
