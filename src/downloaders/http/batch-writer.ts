// Positional, batched file writes for one connection: received bytes fill a buffer (read
// straight into it by the raw HTTP/1.1 client, or copied in from a stream), and a full or old
// batch goes out with one positional write. One write in flight per connection, so ranges reach
// the disk in order; no per-chunk allocation, and nothing a chunk allocated outlives it (so the
// GC stays cheap).
//
// Memory follows the rate: a writer starts with one small buffer and, while a write is in
// flight, waits for it (writes to the page cache take well under a millisecond) instead of
// filling a second one. Only a connection that fills its batch quickly gets a bigger batch and
// a second buffer to fill while the first is written, up to `batchBytes`. Hundreds of slow
// connections so cost a fraction of what two full-size buffers each would (bench/footprint.ts).

import type { FileHandle } from 'node:fs/promises';
import { DownloadFailure } from '../port.ts';

/** A clock the owner advances now and then (cheaper than reading the time for every chunk). */
export interface CoarseClock {
  now: number;
}

/** Batch size a writer starts with (when `batchBytes` is larger). */
export const MIN_BATCH_BYTES = 64 * 1024;

export class BatchWriter {
  readonly #fh: FileHandle;
  /** Largest batch. */
  readonly #max: number;
  /** Current batch size: grows (doubles) while batches fill quickly, up to #max. */
  #size: number;
  /** Receives bytes. */
  #filling: Buffer | null = null;
  /** Being written (the write in flight). */
  #writing: Buffer | null = null;
  /** Free for the next batch. */
  #idle: Buffer | null = null;
  /** A second buffer may be filled while one is written (set once the batch size grew). */
  #double = false;
  /** Bytes queued in #filling. */
  #fill = 0;
  /** File offset of #filling[0]. */
  #start = 0;
  #inflight: Promise<void> | null = null;
  #error: DownloadFailure | null = null;
  #waiters: (() => void)[] = [];
  readonly #clock: CoarseClock | null;
  readonly #maxAgeMs: number;
  /** `clock.now` when the first byte of the current batch arrived. */
  #born = 0;
  /** `clock.now` when the previous batch went out. */
  #lastBatch = -Infinity;
  /** Called with the file offset up to which bytes are on disk (page cache), in order. */
  onWritten: (end: number) => void = () => undefined;

  /**
   * `maxAgeMs` (with a clock): a batch is also written once its first byte is that old, so a slow
   * connection does not keep received bytes in memory (where a crash loses them) for long.
   */
  constructor(fh: FileHandle, batchBytes: number, clock: CoarseClock | null = null, maxAgeMs = 500) {
    this.#fh = fh;
    this.#max = Math.max(4096, batchBytes);
    this.#size = Math.min(this.#max, MIN_BATCH_BYTES);
    this.#double = this.#size === this.#max;
    this.#clock = clock;
    this.#maxAgeMs = maxAgeMs;
  }

  /** Why a write failed (every later call keeps failing), or null. */
  get error(): DownloadFailure | null {
    return this.#error;
  }

  /** Starts a contiguous run at file offset `position`. Queued bytes must have been drained or discarded. */
  begin(position: number, onWritten: (end: number) => void): void {
    if (this.#fill !== 0) throw new Error('BatchWriter.begin with bytes queued');
    this.#start = position;
    this.onWritten = onWritten;
  }

  /**
   * Free room for at most `max` bytes at the end of the queue, or null when there is none until
   * the write in flight ends (the batch is full, or a one-buffer writer's buffer is being
   * written; see `whenFree`). Fill it, then `commit`.
   */
  space(max: number): Buffer | null {
    if (max <= 0 || !this.#hasRoom()) return null;
    let buf = this.#filling;
    if (buf === null) {
      const idle = this.#idle;
      this.#idle = null;
      buf = idle !== null && idle.length === this.#size ? idle : Buffer.allocUnsafe(this.#size);
      this.#filling = buf;
    }
    return buf.subarray(this.#fill, this.#fill + Math.min(buf.length - this.#fill, max));
  }

  /** Room can be handed out now: the batch is not full, or there is none yet and it may start. */
  #hasRoom(): boolean {
    if (this.#error !== null) return false;
    if (this.#filling !== null) return this.#fill < this.#filling.length;
    return this.#writing === null || this.#double;
  }

  /** The current batch is full (it waits for the write in flight when it could not go yet). */
  #full(): boolean {
    return this.#filling !== null && this.#fill >= this.#filling.length;
  }

  /** `n` bytes were placed at the start of the room `space` returned last. */
  commit(n: number): void {
    const clock = this.#clock;
    if (this.#fill === 0 && clock !== null) this.#born = clock.now;
    this.#fill += n;
    if (this.#full()) {
      // Full well before it would have gone out by age, counted from the previous batch (a bursty
      // slow source fills a batch at once, then waits): the next batches may be bigger.
      const now = clock?.now ?? 0;
      if (this.#size < this.#max && (clock === null || now - this.#lastBatch < this.#maxAgeMs / 2)) {
        this.#size = Math.min(this.#max, this.#size * 2);
        this.#double = true;
      }
      this.#lastBatch = now;
      this.#rotate();
    } else if (this.#stale()) {
      this.#lastBatch = clock?.now ?? 0;
      this.#rotate();
    }
  }

  #stale(): boolean {
    return this.#clock !== null && this.#fill > 0 && this.#clock.now - this.#born >= this.#maxAgeMs;
  }

  /** Copies all of `chunk` in, waiting for room when needed. */
  async push(chunk: Buffer): Promise<void> {
    let off = 0;
    while (off < chunk.length) {
      const room = this.space(chunk.length - off);
      if (room === null) {
        await this.whenFree();
        continue;
      }
      const k = chunk.copy(room, 0, off, off + room.length);
      off += k;
      this.commit(k);
    }
  }

  /** Resolves when there is room again (immediately if there is); rejects after a failed write. */
  whenFree(): Promise<void> {
    if (this.#error !== null) return Promise.reject(this.#error);
    if (this.#hasRoom()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.#waiters.push(() => (this.#error === null ? resolve() : reject(this.#error)));
    });
  }

  /** Calls `fn` once when there is room again or a write failed (for callers that cannot await). */
  onFree(fn: () => void): void {
    if (this.#error !== null || this.#hasRoom()) queueMicrotask(fn);
    else this.#waiters.push(fn);
  }

  /** Starts writing the filled batch when no write is in flight (else the write's end does it). */
  #rotate(): void {
    if (this.#inflight !== null || this.#fill === 0 || this.#filling === null) return;
    const buf = this.#filling;
    const n = this.#fill;
    const start = this.#start;
    this.#filling = null;
    this.#writing = buf;
    this.#fill = 0;
    this.#start = start + n;
    this.#inflight = this.#write(buf, n, start);
  }

  async #write(buf: Buffer, n: number, start: number): Promise<void> {
    try {
      let off = 0;
      while (off < n) {
        const { bytesWritten } = await this.#fh.write(buf, off, n - off, start + off);
        if (bytesWritten <= 0) throw new Error('write wrote nothing');
        off += bytesWritten;
      }
      this.onWritten(start + n);
    } catch (cause) {
      const code = (cause as { code?: string }).code ?? 'EIO';
      this.#error ??= new DownloadFailure('DISK', `writing the staging file failed (${code})`, { cause });
    }
    this.#inflight = null;
    this.#writing = null;
    this.#idle ??= buf;
    // Only a full batch is rotated here: a partial one may have room handed out for a read in
    // progress (the raw client reads straight into it); stale partial batches go at the next commit.
    if (this.#error === null && this.#full()) this.#rotate();
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) w();
  }

  /** Writes everything queued and waits until it is on disk (page cache). */
  async drain(): Promise<void> {
    for (;;) {
      while (this.#inflight !== null) await this.#inflight;
      if (this.#error !== null) throw this.#error;
      if (this.#fill === 0) return;
      this.#rotate();
    }
  }

  /** Forgets queued bytes (after a failure that will be retried from the flushed offset). */
  discard(): void {
    this.#fill = 0;
  }
}
