// Open file descriptors of recently read blobs, shared by the readers of one blob. A 64 KiB
// Range request spent a quarter of its time opening and closing the file (each a thread-pool
// round trip, ~60–90 µs on a VM; bench/serving.ts), and players and multi-connection
// downloaders send many of them for the same file. Descriptors are read with positional reads
// only, so sharing one is safe. An entry is closed once idle for IDLE_MS, when the cache is
// over MAX_IDLE idle entries, or at once when its blob is deleted or replaced (evict): a deleted
// blob's space is freed and a replaced one is never read through the old descriptor again.

const MAX_IDLE = 64;
const IDLE_MS = 5_000;

interface Entry {
  fd: Promise<number>;
  users: number;
  idleSince: number;
  /** Evicted while in use: closed when the last user releases it. */
  doomed: boolean;
}

export interface SharedDescriptor {
  fd: number;
  /** Idempotent. The descriptor stays open for the next reader unless evicted. */
  release(): void;
}

export class DescriptorCache {
  /** In use or idle; Map order is least recently used first. */
  readonly #entries = new Map<string, Entry>();
  #idle = 0;
  #sweeper: NodeJS.Timeout | null = null;
  readonly #open: (key: string) => Promise<number>;
  readonly #close: (fd: number) => Promise<void>;

  constructor(open: (key: string) => Promise<number>, close: (fd: number) => Promise<void>) {
    this.#open = open;
    this.#close = close;
  }

  async acquire(key: string): Promise<SharedDescriptor> {
    let entry = this.#entries.get(key);
    if (entry === undefined) {
      entry = { fd: this.#open(key), users: 0, idleSince: 0, doomed: false };
      const created = entry;
      this.#entries.set(key, created);
      created.fd.catch(() => {
        if (this.#entries.get(key) === created) this.#entries.delete(key);
      });
    } else {
      if (entry.users === 0) this.#idle--;
      // Most recently used goes last.
      this.#entries.delete(key);
      this.#entries.set(key, entry);
    }
    entry.users++;
    const used = entry;
    let fd: number;
    try {
      fd = await used.fd;
    } catch (error) {
      used.users--;
      throw error;
    }
    let released = false;
    return {
      fd,
      release: () => {
        if (released) return;
        released = true;
        this.#release(key, used);
      },
    };
  }

  #release(key: string, entry: Entry): void {
    entry.users--;
    if (entry.users > 0) return;
    if (entry.doomed || this.#entries.get(key) !== entry) {
      void entry.fd.then(this.#close, () => undefined);
      return;
    }
    entry.idleSince = Date.now();
    this.#idle++;
    if (this.#idle > MAX_IDLE) this.#closeIdle(0);
    this.#sweeper ??= setInterval(() => this.#closeIdle(IDLE_MS), IDLE_MS).unref();
  }

  /** Closes idle entries idle for at least `minIdleMs` (0: the least recently used beyond MAX_IDLE). */
  #closeIdle(minIdleMs: number): void {
    const now = Date.now();
    for (const [key, entry] of this.#entries) {
      if (entry.users > 0) continue;
      if (minIdleMs === 0 ? this.#idle <= MAX_IDLE : now - entry.idleSince < minIdleMs) continue;
      this.#entries.delete(key);
      this.#idle--;
      void entry.fd.then(this.#close, () => undefined);
    }
    if (this.#entries.size === 0 && this.#sweeper !== null) {
      clearInterval(this.#sweeper);
      this.#sweeper = null;
    }
  }

  /** The blob at `key` was deleted or replaced: its descriptor is closed (after its last user). */
  evict(key: string): void {
    const entry = this.#entries.get(key);
    if (entry === undefined) return;
    this.#entries.delete(key);
    if (entry.users > 0) {
      entry.doomed = true;
      return;
    }
    this.#idle--;
    void entry.fd.then(this.#close, () => undefined);
  }

  /** Closes everything idle now (tests, shutdown). */
  closeAllIdle(): void {
    for (const key of [...this.#entries.keys()]) if (this.#entries.get(key)?.users === 0) this.evict(key);
  }
}
