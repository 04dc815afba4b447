// Token-bucket speed limiting shared by any number of connections: each connection "spends" what
// it received and, when the bucket is in debt, waits long enough for the debt to be repaid.

import { setTimeout as sleep } from 'node:timers/promises';

export class TokenBucket {
  #rate: number;
  #capacity: number;
  #tokens: number;
  #last = performance.now();

  /** `bytesPerSecond` > 0. The burst is 100 ms worth of bytes (at least 16 KiB). */
  constructor(bytesPerSecond: number) {
    this.#rate = bytesPerSecond;
    this.#capacity = Math.max(16 * 1024, bytesPerSecond / 10);
    this.#tokens = this.#capacity;
  }

  get rate(): number {
    return this.#rate;
  }

  /** Spends `n` tokens; returns how many ms the caller should wait (0 = go on). */
  consume(n: number): number {
    const now = performance.now();
    this.#tokens = Math.min(this.#capacity, this.#tokens + ((now - this.#last) / 1000) * this.#rate);
    this.#last = now;
    this.#tokens -= n;
    return this.#tokens >= 0 ? 0 : (-this.#tokens / this.#rate) * 1000;
  }
}

/** Spends `n` bytes on every bucket and waits for the longest debt (abortable). */
export async function throttle(
  buckets: readonly TokenBucket[],
  n: number,
  signal: AbortSignal,
): Promise<void> {
  let wait = 0;
  for (const b of buckets) wait = Math.max(wait, b.consume(n));
  if (wait >= 1) await sleep(wait, undefined, { signal });
}
