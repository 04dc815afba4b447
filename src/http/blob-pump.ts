// Writes a byte range of a blob to a raw HTTP response through a small pool of reused 1 MiB
// buffers. A piped file stream allocates a fresh buffer per chunk; at 1 GiB/s that is a
// thousand external allocations a second, and in a server with a large heap the collections
// they trigger cost most of the throughput (bench/serving.ts: 0.2× → 1.2× nginx). A buffer goes
// back to the pool only after the socket's write callback, when nothing refers to it.
import type { ServerResponse } from 'node:http';
import type { BlobReader } from '../storage/port.ts';
import { giveBack, POOLED_CHUNK, takeBuffer } from './buffer-pool.ts';

/** Chunks handed to the socket at once per response: one being sent while the next is read. */
const IN_FLIGHT = 2;

/**
 * Sends bytes [start, end) of `reader` as the body of `res` (headers already written), then
 * ends it. Resolves when the response closes — finished, aborted by the client, or destroyed
 * because the blob could not be read (the client then sees a broken download, never a short
 * file presented as complete). The reader is always closed.
 */
export function pumpBlob(res: ServerResponse, reader: BlobReader, start: number, end: number): Promise<void> {
  let position = start;
  let inFlight = 0;
  let reading = false;
  let stopped = false;

  const fail = (err: Error): void => {
    stopped = true;
    res.destroy(err);
  };

  const next = (): void => {
    if (stopped || reading || inFlight >= IN_FLIGHT) return;
    if (position >= end) {
      if (inFlight === 0) {
        stopped = true;
        res.end();
      }
      return;
    }
    reading = true;
    const length = Math.min(POOLED_CHUNK, end - position);
    const buffer = takeBuffer(length);
    reader.read(buffer, length, position).then(
      (n) => {
        reading = false;
        if (stopped) return giveBack(buffer);
        if (n <= 0) {
          giveBack(buffer);
          return fail(new Error(`blob ended at byte ${position}, before ${end}`));
        }
        position += n;
        inFlight++;
        res.write(n === buffer.length ? buffer : buffer.subarray(0, n), () => {
          inFlight--;
          giveBack(buffer);
          next();
        });
        next();
      },
      (err: unknown) => {
        reading = false;
        giveBack(buffer);
        fail(err instanceof Error ? err : new Error(String(err)));
      },
    );
  };

  return new Promise<void>((resolve) => {
    res.once('close', () => {
      stopped = true;
      void reader.close().then(() => resolve());
    });
    next();
  });
}
