// Free space on the data dir (database file, staging, local blobs). Below the configured floor
// the server refuses new work — upload sessions and tasks — with a clear error and /readyz says
// so, leaving room for what is already running, for the database, and for deletes to go through.
import { statfs } from 'node:fs/promises';
import { AppError } from '../domain/errors.ts';

export interface DiskState {
  /** Bytes available to the server's user; null when the file system cannot say. */
  free: number | null;
  /** The configured floor (0 = off). */
  min: number;
  low: boolean;
}

export class DiskSpace {
  readonly #dir: string;
  readonly #min: number;

  constructor(dir: string, min: number) {
    this.#dir = dir;
    this.#min = min;
  }

  async state(): Promise<DiskState> {
    if (this.#min <= 0) return { free: null, min: 0, low: false };
    let free: number | null = null;
    try {
      const s = await statfs(this.#dir);
      free = s.bavail * s.bsize;
    } catch {
      // A data dir statfs cannot read (gone, not mounted yet) is not taken for a full one.
    }
    return { free, min: this.#min, low: free !== null && free < this.#min };
  }

  /** Whether the data dir has (almost) no space left at all, whatever the floor. */
  async nearlyFull(): Promise<boolean> {
    try {
      const s = await statfs(this.#dir);
      return s.bavail * s.bsize < 1024 * 1024;
    } catch {
      return false;
    }
  }

  /** Throws LOW_DISK_SPACE when free space is under the floor. */
  async require(): Promise<void> {
    const s = await this.state();
    if (s.low) {
      throw new AppError(
        'LOW_DISK_SPACE',
        `The server is low on disk space (${s.free} bytes free, needs ${s.min}); new uploads and downloads are refused until space is freed`,
      );
    }
  }
}

/** A write that failed because the disk (or a quota on it) is full. */
export function isDiskFull(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT' || code === 'SQLITE_FULL';
}
