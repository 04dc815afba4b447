// A small pool of reused 1 MiB buffers for response bodies (blob-pump, zip-stream). Allocating
// a fresh buffer per chunk costs external allocations and the collections they trigger; at
// ~1 GiB/s that was most of the serving throughput (bench/serving.ts). A buffer goes back only
// once the socket's write callback has run, when nothing refers to it any more.

export const POOLED_CHUNK = 1024 * 1024;
/** Idle buffers kept between responses (16 MiB at most); more are left to the collector. */
const POOL_MAX = 16;
const pool: Buffer[] = [];

/** A pooled 1 MiB buffer, or for a short body (a typical Range request) one of its own size. */
export function takeBuffer(length = POOLED_CHUNK): Buffer {
  if (length < POOLED_CHUNK / 2) return Buffer.allocUnsafe(length);
  return pool.pop() ?? Buffer.allocUnsafeSlow(POOLED_CHUNK);
}

/** Returns a buffer from takeBuffer; only pooled-size ones are kept. */
export function giveBack(buffer: Buffer): void {
  if (buffer.length === POOLED_CHUNK && pool.length < POOL_MAX) pool.push(buffer);
}
