// Jobs on a torrent that an external daemon (aria2, qBittorrent) downloads, independent of which
// daemon it is. The daemon-specific part is a `RemoteTorrent` adapter (add paused, poll a
// snapshot, select files, start, remove); this module does the rest the same way for both:
//
// - one remote download per info-hash, shared by every job on that swarm (a daemon refuses a
//   second add of the same torrent); the daemon fetches the union of the jobs' selections; each
//   job has its own progress, onFileComplete calls, seeding goal and cancel;
// - the daemon writes into a store folder that belongs to the shared download (never a job's
//   staging folder, which the caller deletes when that job ends); a selected file that is
//   complete is hard-linked (copied across file systems) into the job's staging folder under its
//   sanitized relative path and handed to onFileComplete;
// - every path the daemon reports is resolved inside the store folder first (hostile torrents);
// - a daemon that does not answer is retried on every poll; when it stays silent longer than the
//   bound, the jobs fail with a retryable DAEMON failure instead of hanging.

import { copyFile, link, lstat, mkdir, rm, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { sanitizeFileName } from '../../domain/file-name.ts';
import { containedPath } from '../bittorrent/file-store.ts';
import { sanitizeTorrentPaths } from '../bittorrent/paths.ts';
import {
  DownloadFailure,
  type DownloadControl,
  type DownloadedFile,
  type DownloadJob,
  type DownloadOutcome,
  type DownloadProgress,
} from '../port.ts';

/** The daemon gave no usable answer (connection refused, timeout). Retried until the bound. */
export class DaemonUnreachable extends Error {}

export interface RemoteFile {
  /** Path relative to the store folder as the daemon reports it, '/'-separated. */
  relPath: string;
  length: number;
  completed: number;
  selected: boolean;
}

export interface RemoteSnapshot {
  /**
   * metadata: a magnet's info dictionary is not there yet; ready: files known (maybe paused);
   * done: the daemon finished (every selected file complete) and stopped; error: it failed.
   */
  phase: 'metadata' | 'ready' | 'done' | 'error';
  name?: string;
  /** Multi-file torrent (files live under a folder named like the torrent). */
  multi?: boolean;
  /** In torrent order; index = 0-based file index. Empty until metadata. */
  files: RemoteFile[];
  speed: number;
  uploadSpeed: number;
  /** Bytes uploaded since the remote download was added. */
  uploaded: number;
  peers: number;
  /** Standard base64 bitfield, MSB of byte 0 = piece 0. */
  pieces?: string;
  numPieces?: number;
  /** Set when phase is 'error'. */
  failure?: DownloadFailure;
}

/** What the shared download needs from a daemon. Throw DaemonUnreachable for "no answer". */
export interface RemoteTorrent {
  /** Polls the daemon. Throw a DownloadFailure when the download vanished or cannot go on. */
  poll(): Promise<RemoteSnapshot>;
  /** Makes the daemon fetch exactly these files (0-based); an empty list pauses. */
  select(indexes: number[]): Promise<void>;
  /** Starts (unpauses) the download once the selection is set. */
  start(): Promise<void>;
  /** Removes the download from the daemon (data is deleted by the caller). Best effort. */
  remove(): Promise<void>;
}

export interface SharedOptions {
  infoHash: string;
  displayName: string;
  storeDir: string;
  pollIntervalMs: number;
  daemonTimeoutMs: number;
  noPeersTimeoutMs: number;
  /** Daemon name for messages ("aria2", "qBittorrent"). */
  daemon: string;
  /** Called once the shared download is gone (removed from the daemon and its folder deleted). */
  onGone(removal: Promise<void>): void;
}

// ---------------------------------------------------------------------------------------------

/** One remote download, shared by every job on its info-hash. */
export class SharedRemoteTorrent {
  readonly o: SharedOptions;
  readonly jobs = new Set<RemoteJob>();
  remote: RemoteTorrent | null = null;
  snapshot: RemoteSnapshot | null = null;
  /** Sanitized relative names, once files are known. */
  names: string[] = [];
  ready = false;
  /** No new job may join (finished, failed or being removed). */
  closed = false;
  #gone = false;
  #started = false;
  #selection: string | null = null;
  #selectionDirty = true;
  #timer: NodeJS.Timeout | null = null;
  #polling = false;
  #unreachableSince = 0;
  #lastError = '';

  constructor(options: SharedOptions) {
    this.o = options;
  }

  /** Starts polling the download the daemon now has. */
  attach(remote: RemoteTorrent): void {
    if (this.#gone) {
      // Every job left (canceled) while the torrent was being added.
      void remote
        .remove()
        .catch(() => undefined)
        .then(() => rm(this.o.storeDir, { recursive: true, force: true }))
        .catch(() => undefined);
      return;
    }
    this.remote = remote;
    this.#timer = setInterval(() => void this.#tick(), this.o.pollIntervalMs);
    void this.#tick();
  }

  get displayName(): string {
    const n = this.snapshot?.name;
    return n === undefined || n === '' ? this.o.displayName : sanitizeFileName(n, this.o.infoHash);
  }

  join(job: RemoteJob): void {
    this.jobs.add(job);
    this.#selectionDirty = true;
    if (this.ready) queueMicrotask(() => job.onReady());
  }

  leave(job: RemoteJob): Promise<void> {
    if (!this.jobs.delete(job)) return Promise.resolve();
    if (this.jobs.size > 0) {
      this.selectionChanged();
      return Promise.resolve();
    }
    return this.#destroy();
  }

  selectionChanged(): void {
    this.#selectionDirty = true;
    void this.#tick();
  }

  abortAll(failure: DownloadFailure): void {
    this.closed = true;
    for (const job of [...this.jobs]) job.fail(failure);
    void this.#destroy();
  }

  isComplete(index: number): boolean {
    const s = this.snapshot;
    const f = s?.files[index];
    if (s === null || f === undefined) return false;
    if (s.phase === 'done' && f.selected) return true;
    return f.completed >= f.length && (f.selected || f.length === 0);
  }

  /** Absolute path of a file in the store; throws when the daemon's path leaves the store. */
  storePath(index: number): string {
    const f = this.snapshot?.files[index];
    if (f === undefined || f.relPath === '') throw new Error(`file ${index} has no path yet`);
    return containedPath(this.o.storeDir, f.relPath);
  }

  #setNames(s: RemoteSnapshot): void {
    const name = s.name ?? this.o.displayName;
    const multi = s.multi ?? s.files.length > 1;
    const raws = s.files.map((f) => {
      const segs = f.relPath.split('/').filter((p) => p !== '');
      return multi ? segs.slice(1) : segs;
    });
    this.names = sanitizeTorrentPaths(name, raws, multi);
  }

  async #tick(): Promise<void> {
    const remote = this.remote;
    if (this.#polling || this.#gone || remote === null) return;
    this.#polling = true;
    try {
      const s = await remote.poll();
      this.#unreachableSince = 0;
      if (this.#gone) return;
      this.snapshot = s;
      if (s.phase === 'error') {
        this.abortAll(s.failure ?? new DownloadFailure('NETWORK', `${this.o.daemon} reported an error`));
        return;
      }
      if (!this.ready && s.phase !== 'metadata' && s.files.length > 0) {
        this.#setNames(s);
        this.ready = true;
        for (const job of [...this.jobs]) job.onReady();
      }
      if (this.ready && s.phase !== 'done') {
        const wanted = new Set<number>();
        for (const job of this.jobs) for (const i of job.wanted) wanted.add(i);
        // Keep files that are already complete selected: narrowing a selection makes some
        // daemons restart the download, and dropping a finished file gains nothing.
        s.files.forEach((f, i) => {
          if (f.selected && this.isComplete(i)) wanted.add(i);
        });
        const desired = [...wanted].sort((a, b) => a - b);
        const key = desired.join(',');
        if (this.#selectionDirty || key !== this.#selection) {
          const current = s.files
            .map((f, i) => (f.selected ? i : -1))
            .filter((i) => i >= 0)
            .join(',');
          if (key !== current || !this.#started) await remote.select(desired);
          this.#selection = key;
          this.#selectionDirty = false;
        }
        if (!this.#started && desired.length > 0) {
          await remote.start();
          this.#started = true;
        }
      }
      if (s.phase === 'done') this.closed = true;
      for (const job of [...this.jobs]) job.onSnapshot(s);
    } catch (err) {
      if (this.#gone) return;
      if (err instanceof DownloadFailure) {
        this.abortAll(err);
        return;
      }
      const now = Date.now();
      if (this.#unreachableSince === 0) this.#unreachableSince = now;
      this.#lastError = err instanceof Error ? err.message : String(err);
      if (!(err instanceof DaemonUnreachable)) {
        // The daemon answered but refused something (bad option, unknown torrent): no point
        // in polling on.
        this.abortAll(
          new DownloadFailure('DAEMON', `${this.o.daemon} failed: ${this.#lastError}`, {
            retryable: true,
            cause: err,
          }),
        );
        return;
      }
      if (now - this.#unreachableSince > this.o.daemonTimeoutMs) {
        this.abortAll(
          new DownloadFailure(
            'DAEMON',
            `${this.o.daemon} unreachable for ${Math.round((now - this.#unreachableSince) / 1000)} s: ${this.#lastError}`,
            { retryable: true, cause: err },
          ),
        );
      }
    } finally {
      this.#polling = false;
    }
  }

  #destroy(): Promise<void> {
    if (this.#gone) return Promise.resolve();
    this.#gone = true;
    this.closed = true;
    if (this.#timer !== null) clearInterval(this.#timer);
    const remote = this.remote;
    const removal = (async () => {
      if (remote !== null) {
        await Promise.race([
          remote.remove().catch(() => undefined),
          new Promise((r) => setTimeout(r, 1500).unref()),
        ]);
      }
      await rm(this.o.storeDir, { recursive: true, force: true }).catch(() => undefined);
    })();
    this.o.onGone(removal);
    return removal;
  }
}

// ---------------------------------------------------------------------------------------------

type Stage = 'metadata' | 'downloading' | 'seeding';

/** One job (one user's task) on a shared remote download. */
export class RemoteJob {
  readonly job: DownloadJob;
  readonly shared: SharedRemoteTorrent;
  readonly wanted = new Set<number>();
  stage: Stage = 'metadata';
  readonly #completed = new Set<number>();
  readonly #delivered: DownloadedFile[] = [];
  #deliveries: Promise<void> = Promise.resolve();
  #pending = 0;
  #settled = false;
  #resolve!: (o: DownloadOutcome) => void;
  #reject!: (e: DownloadFailure) => void;
  #timeout: NodeJS.Timeout | null = null;
  #onAbort: (() => void) | null = null;
  #uploadedBase = 0;
  #seedingSince = 0;
  #lastActivity = Date.now();
  #lastCompleted = -1;

  constructor(job: DownloadJob, shared: SharedRemoteTorrent) {
    this.job = job;
    this.shared = shared;
  }

  start(): Promise<DownloadOutcome> {
    const promise = new Promise<DownloadOutcome>((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    this.#onAbort = () => this.fail(new DownloadFailure('CANCELED', 'download canceled'));
    this.job.signal.addEventListener('abort', this.#onAbort, { once: true });
    if (this.job.timeoutMs > 0) {
      this.#timeout = setTimeout(
        () =>
          this.fail(
            new DownloadFailure('TIMEOUT', `download did not finish within ${this.job.timeoutMs} ms`),
          ),
        this.job.timeoutMs,
      );
    }
    this.shared.join(this);
    this.#emit();
    return promise;
  }

  onReady(): void {
    if (this.#settled || this.stage !== 'metadata') return;
    const files = this.shared.snapshot?.files ?? [];
    const initial = this.job.selectedFiles ?? files.map((_, i) => i);
    for (const i of initial) if (Number.isInteger(i) && i >= 0 && i < files.length) this.wanted.add(i);
    const total = this.#total();
    if (this.job.maxBytes > 0 && total > this.job.maxBytes) {
      this.fail(
        new DownloadFailure(
          'TOO_LARGE',
          `selected files are ${total} bytes, over the limit of ${this.job.maxBytes}`,
        ),
      );
      return;
    }
    this.stage = 'downloading';
    this.#uploadedBase = this.shared.snapshot?.uploaded ?? 0;
    this.#lastActivity = Date.now();
    this.shared.selectionChanged();
    this.job.attachControl?.(this.#control());
    this.#emit();
  }

  onSnapshot(s: RemoteSnapshot): void {
    if (this.#settled) return;
    const now = Date.now();
    const completed = s.files.reduce((sum, f) => sum + f.completed, 0);
    if (s.peers > 0 || completed !== this.#lastCompleted || s.phase === 'done') this.#lastActivity = now;
    this.#lastCompleted = completed;
    if (this.stage !== 'metadata') this.#checkComplete(s);
    if (this.#settled) return;
    if (s.phase === 'done' && this.stage === 'downloading' && this.#pending === 0) {
      const missing = [...this.wanted].filter((i) => !this.#completed.has(i));
      if (missing.length > 0) {
        this.fail(
          new DownloadFailure(
            'DAEMON',
            `${this.shared.o.daemon} finished the torrent without file(s) ${missing.join(', ')}; retry`,
            { retryable: true },
          ),
        );
        return;
      }
    }
    if (this.stage === 'seeding') this.#checkSeeding(s);
    const noPeers = this.shared.o.noPeersTimeoutMs;
    if (this.stage !== 'seeding' && !this.#settled && now - this.#lastActivity > noPeers) {
      this.fail(
        new DownloadFailure(
          'NO_PEERS',
          this.stage === 'metadata'
            ? `no metadata: no peer answered for ${Math.round(noPeers / 1000)} s`
            : `no peers and no data for ${Math.round(noPeers / 1000)} s`,
          { retryable: true },
        ),
      );
      return;
    }
    this.#emit();
  }

  #control(): DownloadControl {
    return {
      selectFiles: async (changes) => {
        if (this.#settled || this.stage !== 'downloading') return;
        const files = this.shared.snapshot?.files ?? [];
        const next = new Set(this.wanted);
        for (const c of changes) {
          if (!Number.isInteger(c.index) || c.index < 0 || c.index >= files.length) continue;
          if (c.download) next.add(c.index);
          else next.delete(c.index);
        }
        const total = [...next].reduce((s, i) => s + (files[i]?.length ?? 0), 0);
        if (this.job.maxBytes > 0 && total > this.job.maxBytes) {
          throw new DownloadFailure(
            'TOO_LARGE',
            `selected files are ${total} bytes, over the limit of ${this.job.maxBytes}`,
          );
        }
        if (this.shared.closed && [...next].some((i) => !this.wanted.has(i) && !this.shared.isComplete(i))) {
          throw new DownloadFailure('DAEMON', `${this.shared.o.daemon} already finished this torrent`);
        }
        this.wanted.clear();
        for (const i of next) this.wanted.add(i);
        this.shared.selectionChanged();
        const s = this.shared.snapshot;
        if (s !== null) this.#checkComplete(s);
        this.#emit();
      },
    };
  }

  #checkComplete(s: RemoteSnapshot): void {
    for (const i of [...this.wanted].sort((a, b) => a - b)) {
      if (this.#completed.has(i) || !this.shared.isComplete(i)) continue;
      this.#completed.add(i);
      this.#deliver(i, s.files[i]?.length ?? 0);
    }
    this.#maybeFinish();
  }

  #deliver(index: number, size: number): void {
    this.#pending++;
    this.#deliveries = this.#deliveries
      .then(async () => {
        if (this.#settled) return;
        const name = this.shared.names[index];
        if (name === undefined) return;
        const stagingPath = containedPath(this.job.stagingDir, name);
        await mkdir(dirname(stagingPath), { recursive: true });
        await rm(stagingPath, { force: true });
        if (size === 0) {
          await writeFile(stagingPath, '');
        } else {
          const source = this.shared.storePath(index);
          const st = await lstat(source);
          if (!st.isFile()) throw new DownloadFailure('DISK', `${name} is not a regular file in the store`);
          if (st.size !== size) {
            throw new DownloadFailure('DISK', `${name} is ${st.size} bytes on disk, expected ${size}`, {
              retryable: true,
            });
          }
          try {
            await link(source, stagingPath);
          } catch (err) {
            const code = (err as NodeJS.ErrnoException).code;
            if (code !== 'EXDEV' && code !== 'EPERM' && code !== 'EMLINK') throw err;
            await copyFile(source, stagingPath);
          }
        }
        if (this.#settled) return;
        const file = { index, name, stagingPath, size };
        await this.job.onFileComplete?.(file);
        this.#delivered.push(file);
      })
      .catch((err: unknown) => {
        if (err instanceof DownloadFailure) this.fail(err);
        else
          this.fail(
            new DownloadFailure(
              'DISK',
              `could not hand over a file: ${err instanceof Error ? err.message : String(err)}`,
              {
                cause: err,
              },
            ),
          );
      })
      .finally(() => {
        this.#pending--;
        this.#maybeFinish();
      });
  }

  #maybeFinish(): void {
    if (this.#settled || this.stage !== 'downloading' || this.#pending > 0) return;
    for (const i of this.wanted) if (!this.#completed.has(i)) return;
    const seeding = this.job.seeding;
    if (
      seeding !== undefined &&
      (seeding.ratio > 0 || seeding.seconds > 0) &&
      this.#total() > 0 &&
      this.shared.snapshot?.phase !== 'done'
    ) {
      this.stage = 'seeding';
      this.#seedingSince = Date.now();
      this.#emit();
      return;
    }
    this.#succeed();
  }

  #checkSeeding(s: RemoteSnapshot): void {
    const seeding = this.job.seeding;
    if (seeding === undefined) return;
    const uploaded = s.uploaded - this.#uploadedBase;
    const ratioReached = seeding.ratio > 0 && uploaded / Math.max(1, this.#total()) >= seeding.ratio;
    const timeReached = seeding.seconds > 0 && Date.now() - this.#seedingSince >= seeding.seconds * 1000;
    // The daemon stopped seeding by itself (its own limits, or another job's settings).
    if (ratioReached || timeReached || s.phase === 'done') this.#succeed();
  }

  #succeed(): void {
    if (this.#settled) return;
    this.#emit();
    const files = [...this.#delivered].sort((a, b) => (a.index ?? 0) - (b.index ?? 0));
    const name = this.shared.displayName;
    void this.#settle().then(() => this.#resolve({ name, files }));
  }

  fail(failure: DownloadFailure): void {
    if (this.#settled) return;
    void this.#settle().then(() => this.#reject(failure));
  }

  async #settle(): Promise<void> {
    this.#settled = true;
    if (this.#timeout !== null) clearTimeout(this.#timeout);
    if (this.#onAbort !== null) this.job.signal.removeEventListener('abort', this.#onAbort);
    await this.shared.leave(this);
  }

  #total(): number {
    const files = this.shared.snapshot?.files ?? [];
    let total = 0;
    for (const i of this.wanted) total += files[i]?.length ?? 0;
    return total;
  }

  #emit(): void {
    try {
      this.job.onProgress(this.#progress());
    } catch {
      // a progress consumer's bug must not break the download
    }
  }

  #progress(): DownloadProgress {
    const shared = this.shared;
    const s = shared.snapshot;
    const base = {
      hash: shared.o.infoHash,
      speed: s?.speed ?? 0,
      uploadSpeed: s?.uploadSpeed ?? 0,
      uploaded: Math.max(0, (s?.uploaded ?? 0) - this.#uploadedBase),
      peers: s?.peers ?? 0,
      connections: s?.peers ?? 0,
    };
    if (s === null || !shared.ready) {
      return { ...base, name: shared.displayName, stage: 'metadata', total: null, downloaded: 0, files: [] };
    }
    const chosen =
      this.stage === 'metadata' ? new Set(this.job.selectedFiles ?? s.files.map((_, i) => i)) : this.wanted;
    let downloaded = 0;
    let total = 0;
    const files = s.files.map((f, index) => {
      const done = this.#completed.has(index) || shared.isComplete(index);
      const got = done ? f.length : Math.min(f.length, f.completed);
      const selected = chosen.has(index);
      if (selected) {
        downloaded += got;
        total += f.length;
      }
      return {
        index,
        name: shared.names[index] ?? `file ${index}`,
        size: f.length,
        progress: f.length === 0 ? (done ? 1 : 0) : Math.min(1, got / f.length),
        selected,
      };
    });
    return {
      ...base,
      name: shared.displayName,
      stage: this.stage === 'metadata' ? 'downloading' : this.stage,
      total,
      downloaded,
      ...(s.pieces !== undefined ? { pieces: s.pieces } : {}),
      ...(s.numPieces !== undefined ? { numPieces: s.numPieces } : {}),
      files,
    };
  }
}

/** Hex bitfield (aria2) → standard base64 with exactly ceil(numPieces / 8) bytes. */
export function hexBitfieldToBase64(hex: string, numPieces: number): string {
  const bytes = Buffer.from(hex.length % 2 === 0 ? hex : `${hex}0`, 'hex');
  const out = Buffer.alloc(Math.ceil(numPieces / 8));
  bytes.copy(out, 0, 0, out.length);
  const spare = out.length * 8 - numPieces;
  if (spare > 0 && out.length > 0) out[out.length - 1] = (out[out.length - 1] ?? 0) & (0xff << spare);
  return out.toString('base64');
}

// ---------------------------------------------------------------------------------------------

export interface PoolOptions {
  daemon: string;
  pollIntervalMs: number;
  daemonTimeoutMs: number;
  noPeersTimeoutMs: number;
  storeDir(infoHash: string): string;
  /** Turns an error thrown while adding into a DownloadFailure. */
  addFailure(err: unknown): DownloadFailure;
}

/** The shared downloads of one daemon, by info-hash. */
export class RemoteTorrentPool {
  readonly #o: PoolOptions;
  readonly #torrents = new Map<string, SharedRemoteTorrent>();
  readonly #removing = new Map<string, Promise<void>>();

  constructor(options: PoolOptions) {
    this.#o = options;
  }

  get size(): number {
    return this.#torrents.size;
  }

  /**
   * Runs `job` on the shared download of `infoHash`, creating it with `add` (which must add
   * the torrent paused, into `storeDir`) when there is none.
   */
  async run(
    job: DownloadJob,
    source: { infoHash: string; displayName: string },
    add: (storeDir: string) => Promise<RemoteTorrent>,
  ): Promise<DownloadOutcome> {
    const { infoHash } = source;
    for (;;) {
      if (job.signal.aborted) throw new DownloadFailure('CANCELED', 'download canceled');
      const existing = this.#torrents.get(infoHash);
      if (existing !== undefined && !existing.closed) return new RemoteJob(job, existing).start();
      // A finished (or failing) download of the same swarm is on its way out: wait for it.
      const removal = this.#removing.get(infoHash);
      if (existing === undefined && removal === undefined) break;
      const aborted = new Promise<void>((r) =>
        job.signal.addEventListener('abort', () => r(), { once: true }),
      );
      await Promise.race([removal ?? new Promise((r) => setTimeout(r, 200)), aborted]);
      if (removal === undefined) await new Promise((r) => setTimeout(r, 50));
    }
    const storeDir = this.#o.storeDir(infoHash);
    const shared = new SharedRemoteTorrent({
      infoHash,
      displayName: sanitizeFileName(source.displayName, infoHash),
      storeDir,
      pollIntervalMs: this.#o.pollIntervalMs,
      daemonTimeoutMs: this.#o.daemonTimeoutMs,
      noPeersTimeoutMs: this.#o.noPeersTimeoutMs,
      daemon: this.#o.daemon,
      onGone: (removal) => {
        if (this.#torrents.get(infoHash) === shared) this.#torrents.delete(infoHash);
        const tracked = removal.finally(() => {
          if (this.#removing.get(infoHash) === tracked) this.#removing.delete(infoHash);
        });
        this.#removing.set(infoHash, tracked);
      },
    });
    this.#torrents.set(infoHash, shared);
    const promise = new RemoteJob(job, shared).start();
    try {
      await mkdir(storeDir, { recursive: true });
      const remote = await add(storeDir);
      shared.attach(remote);
    } catch (err) {
      shared.abortAll(this.#o.addFailure(err));
    }
    return promise;
  }

  /** Fails every job (CANCELED) and waits until their downloads are removed. */
  async close(): Promise<void> {
    for (const t of [...this.#torrents.values()])
      t.abortAll(new DownloadFailure('CANCELED', 'engine closed'));
    await Promise.all([...this.#removing.values()]);
  }
}
