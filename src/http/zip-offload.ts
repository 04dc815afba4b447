// Zip archives of local files built on a worker thread (zip-worker.ts), so the main thread only
// writes the finished 1 MiB chunks to the socket. The chunks' memory is transferred, not copied:
// worker → main to be written, main → worker once the socket has taken it. One worker serves
// every archive (each job waits for its own acknowledgements, so they interleave); it starts on
// the first archive and stops after a minute without one.
import { Worker } from 'node:worker_threads';
import type { ZipSink } from './zip-stream.ts';

/** An archive entry as the worker gets it: plain data, the file's local path instead of a reader. */
export interface WorkerZipEntry {
  path: string;
  size: number;
  modifiedAtMs: number;
  folder: boolean;
  /** Absolute path of the file's bytes; null for folders and files without a blob. */
  file: string | null;
  /** The bytes' CRC-32 when known; else the worker computes it and reports it back. */
  crc32: number | null;
}

export type ToWorker =
  | { type: 'start'; id: number; entries: WorkerZipEntry[]; forceZip64: boolean }
  | { type: 'ack'; id: number; buffer: ArrayBuffer }
  | { type: 'cancel'; id: number };

export type FromWorker =
  | { type: 'chunk'; id: number; buffer: ArrayBuffer; offset: number; length: number }
  | { type: 'done'; id: number; crcs: Array<[index: number, crc: number]> }
  | { type: 'error'; id: number; message: string };

const IDLE_MS = 60_000;

interface Job {
  sink: ZipSink;
  resolve(crcs: Map<number, number>): void;
  reject(error: Error): void;
}

let worker: Worker | null = null;
let idleTimer: NodeJS.Timeout | null = null;
let nextId = 1;
const jobs = new Map<number, Job>();

function failAll(error: Error): void {
  for (const job of jobs.values()) job.reject(error);
  jobs.clear();
}

function getWorker(): Worker {
  if (idleTimer !== null) {
    clearTimeout(idleTimer);
    idleTimer = null;
  }
  if (worker !== null) return worker;
  const w = new Worker(new URL('./zip-worker.ts', import.meta.url));
  w.unref(); // never what keeps the process alive
  w.on('message', (message: FromWorker) => {
    const job = jobs.get(message.id);
    if (message.type === 'chunk') {
      const { id, buffer } = message;
      if (job === undefined) return; // cancelled: let the buffer go
      job.sink.write(Buffer.from(buffer, message.offset, message.length), (error) => {
        if (error) return finish(id, error);
        if (worker === w) w.postMessage({ type: 'ack', id, buffer } satisfies ToWorker, [buffer]);
      });
    } else if (message.type === 'done') {
      finish(message.id, undefined, new Map(message.crcs));
    } else {
      finish(message.id, new Error(message.message));
    }
  });
  const lost = (error: Error): void => {
    if (worker !== w) return;
    worker = null;
    failAll(error);
  };
  w.on('error', (error: Error) => lost(error));
  w.on('exit', (code) => lost(new Error(`zip worker exited (${code})`)));
  worker = w;
  return w;
}

function finish(id: number, error?: Error, crcs = new Map<number, number>()): void {
  const job = jobs.get(id);
  if (job === undefined) return;
  jobs.delete(id);
  if (error) {
    worker?.postMessage({ type: 'cancel', id } satisfies ToWorker);
    job.reject(error);
  } else {
    job.resolve(crcs);
  }
  if (jobs.size === 0 && worker !== null && idleTimer === null) {
    const w = worker;
    idleTimer = setTimeout(() => {
      idleTimer = null;
      if (jobs.size === 0 && worker === w) {
        worker = null;
        void w.terminate();
      }
    }, IDLE_MS);
    idleTimer.unref();
  }
}

/**
 * Writes the archive of `entries` to `sink` (same bytes as writeZip) from the worker. Resolves
 * when the sink has taken the last chunk, with the CRC-32s it computed (entry index → CRC);
 * rejects on the first failure or when `signal` aborts.
 */
export function zipInWorker(
  entries: WorkerZipEntry[],
  sink: ZipSink,
  options: { signal?: AbortSignal; forceZip64?: boolean } = {},
): Promise<Map<number, number>> {
  const { signal } = options;
  if (signal?.aborted)
    return Promise.reject(signal.reason instanceof Error ? signal.reason : new Error('aborted'));
  const id = nextId++;
  const w = getWorker();
  return new Promise<Map<number, number>>((resolve, reject) => {
    const onAbort = (): void => {
      const reason: unknown = signal?.reason;
      finish(id, reason instanceof Error ? reason : new Error('aborted'));
    };
    jobs.set(id, {
      sink,
      resolve: (crcs) => {
        signal?.removeEventListener('abort', onAbort);
        resolve(crcs);
      },
      reject: (error) => {
        signal?.removeEventListener('abort', onAbort);
        reject(error);
      },
    });
    signal?.addEventListener('abort', onAbort, { once: true });
    w.postMessage({ type: 'start', id, entries, forceZip64: options.forceZip64 ?? false } satisfies ToWorker);
  });
}
