// A token-bucket throttle for outgoing bodies. The bucket starts empty and holds at most
// ~1/8 s worth of bytes, so a client cannot front-load a whole second of data, and large
// chunks are sliced so pacing stays smooth.
import { Transform, type TransformCallback } from 'node:stream';

const MIN_BURST = 16 * 1024;

export class Throttle extends Transform {
  private readonly rate: number;
  private readonly burst: number;
  private tokens = 0;
  private last = performance.now();
  private timer: NodeJS.Timeout | undefined;

  /** @param bytesPerSecond must be > 0 */
  constructor(bytesPerSecond: number) {
    super({ highWaterMark: 1024 * 1024 });
    if (!(bytesPerSecond > 0) || !Number.isFinite(bytesPerSecond)) {
      throw new RangeError(`invalid rate: ${bytesPerSecond}`);
    }
    this.rate = bytesPerSecond;
    this.burst = Math.max(MIN_BURST, Math.floor(bytesPerSecond / 8));
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.pump(chunk, 0, callback);
  }

  private pump(chunk: Buffer, offset: number, callback: TransformCallback): void {
    this.timer = undefined;
    while (offset < chunk.length) {
      const now = performance.now();
      this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) / 1000) * this.rate);
      this.last = now;
      const size = Math.min(this.burst, chunk.length - offset);
      if (this.tokens < size) {
        const waitMs = Math.ceil(((size - this.tokens) / this.rate) * 1000);
        this.timer = setTimeout(() => this.pump(chunk, offset, callback), waitMs);
        return;
      }
      this.tokens -= size;
      this.push(offset === 0 && size === chunk.length ? chunk : chunk.subarray(offset, offset + size));
      offset += size;
    }
    callback();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    callback(error);
  }
}
