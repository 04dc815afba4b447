// The built-in BitTorrent engine, on webtorrent 3 (TCP peers; WebRTC stubbed out, uTP off by
// default). No external daemon.
//
// One webtorrent client per engine, created when the first job starts and destroyed when the
// last torrent leaves (so an idle server and a finished test hold no sockets). One torrent per
// info-hash: jobs for the same swarm (two users adding the same magnet) share it. Each job keeps
// its own selection, progress, onFileComplete calls and seeding goal; the torrent fetches the
// union of the selections and goes away when its last job leaves.
//
// Where data lives: webtorrent writes pieces into `<dataDir>/torrents/<infohash>/` (the shared
// store, which outlives any single job; after a crash the next run re-verifies what is there
// and resumes). Every path in it is our sanitized path (paths.ts) written through our own chunk
// store (file-store.ts), which refuses anything resolving outside that folder; webtorrent's
// default store would follow `..` in a hostile torrent. When a file a job selected is complete
// and verified, it is hard-linked (copied across file systems) into `job.stagingDir` under the
// same sanitized relative path, handed to onFileComplete, and stays there after the store is
// removed. The store folder is deleted when the torrent's last job leaves.
//
// Outbound policy: the .torrent URL goes through SafeDialer; tracker hosts must pass the policy,
// and HTTP(S) announces run on the guarded agent (net/guarded-fetch.ts: every connect, every
// redirect hop checked and pinned);
// peers whose address the policy refuses are never dialled (webtorrent's `blocked` hook); web
// seeds, `xs=` metadata URLs, UPnP and NAT-PMP are off; DHT, PEX and LSD only when switched on.

import { copyFile, link, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { Agent } from 'undici';
import type WebTorrent from 'webtorrent';
import { sanitizeFileName } from '../../domain/file-name.ts';
import type { OutboundPolicy } from '../../net/address-policy.ts';
import { guardedAgent, guardedGlobalDispatcher } from '../../net/guarded-fetch.ts';
import type { Resolver } from '../../net/safe-dial.ts';
import {
  DownloadFailure,
  type DownloadControl,
  type DownloadedFile,
  type DownloadJob,
  type DownloadOutcome,
  type DownloadProgress,
  type DownloadSource,
  type Downloader,
} from '../port.ts';
import { decode, isDict } from './bencode.ts';
import { containedPath, TorrentFileStore } from './file-store.ts';
import { parseInfo, type TorrentInfo } from './metainfo.ts';
import { sanitizeTorrentPaths } from './paths.ts';
import { checkTorrentSize, prepareSource, type PreparedSource } from './torrent-source.ts';

export interface BitTorrentDownloaderOptions {
  policy: OutboundPolicy;
  /** Root for the shared torrent stores (`<dataDir>/torrents/<infohash>/`). Default: OS temp dir. */
  dataDir?: string;
  trackers: boolean;
  dht: boolean;
  pex: boolean;
  lsd: boolean;
  /** TCP port for incoming peers; 0 = random. */
  listenPort: number;
  /** Engine-wide limits in bytes/s; absent or 0 = none. */
  downloadLimit?: number;
  uploadLimit?: number;
  /** uTP transport. Default false: webtorrent's uTP is slow against TCP-only peers and keeps the process alive ~30 s after destroy. */
  utp?: boolean;
  /** No metadata, or no peer and no data, for this long → NO_PEERS. Default 10 min. */
  noPeersTimeoutMs?: number;
  /** Largest .torrent file fetched from a URL. Default 10 MiB. */
  maxTorrentFileBytes?: number;
  /** Deadline for fetching a .torrent URL. Default 60 s. */
  torrentFetchTimeoutMs?: number;
  /** Progress period (at most 4/s). Default 250 ms. */
  progressIntervalMs?: number;
  /** DNS resolver for the .torrent URL and tracker checks (tests inject one). */
  resolve?: Resolver;
}

type Stage = 'metadata' | 'downloading' | 'seeding';

function failureOf(err: unknown, fallback: 'NETWORK' | 'DISK' = 'NETWORK'): DownloadFailure {
  if (err instanceof DownloadFailure) return err;
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  const message = err instanceof Error ? err.message : String(err);
  if (code === 'ENOSPC' || code === 'EDQUOT' || code === 'EIO' || code === 'EROFS' || code === 'EACCES') {
    return new DownloadFailure('DISK', `write failed (${code}): ${message}`, { cause: err });
  }
  if (code === 'EADDRINUSE') {
    return new DownloadFailure('NETWORK', `BitTorrent port in use: ${message}`, {
      retryable: true,
      cause: err,
    });
  }
  return new DownloadFailure(fallback, `BitTorrent: ${message}`, {
    retryable: fallback === 'NETWORK',
    cause: err,
  });
}

// ---------------------------------------------------------------------------------------------

export class BitTorrentDownloader implements Downloader {
  readonly name = 'bittorrent';
  readonly #o: Required<Omit<BitTorrentDownloaderOptions, 'resolve' | 'downloadLimit' | 'uploadLimit'>> &
    Pick<BitTorrentDownloaderOptions, 'resolve' | 'downloadLimit' | 'uploadLimit'>;
  #client: WebTorrent.Instance | null = null;
  /** Resolves when the previous client finished closing (its port is free again). */
  #clientClosed: Promise<void> = Promise.resolve();
  /** The tracker client's guarded agent, closed with the client. */
  #agent: Agent | null = null;
  readonly #torrents = new Map<string, SharedTorrent>();
  /** Store folders being removed, by info-hash: a new torrent for that hash waits for it. */
  readonly #removing = new Map<string, Promise<void>>();

  constructor(options: BitTorrentDownloaderOptions) {
    this.#o = {
      dataDir: join(tmpdir(), 'ferry-bittorrent'),
      utp: false,
      noPeersTimeoutMs: 10 * 60_000,
      maxTorrentFileBytes: 10 * 1024 * 1024,
      torrentFetchTimeoutMs: 60_000,
      progressIntervalMs: 250,
      ...options,
    };
    this.#o.progressIntervalMs = Math.max(250, this.#o.progressIntervalMs);
  }

  canHandle(source: DownloadSource): boolean {
    return (
      source.kind === 'torrent' &&
      (source.magnet !== undefined ||
        source.torrentUrl !== undefined ||
        source.torrentFile !== undefined ||
        source.infoHash !== undefined)
    );
  }

  /** Torrents currently in the client (for tests and diagnostics). */
  get activeTorrents(): number {
    return this.#client?.torrents.length ?? 0;
  }

  /** Folder holding the shared store of a torrent. */
  storeDir(infoHash: string): string {
    return join(this.#o.dataDir, 'torrents', infoHash);
  }

  async download(job: DownloadJob): Promise<DownloadOutcome> {
    if (job.source.kind !== 'torrent') throw new DownloadFailure('INVALID_URL', 'not a torrent source');
    if (job.signal.aborted) throw new DownloadFailure('CANCELED', 'download canceled');
    const prepared = await prepareSource(job.source, {
      policy: this.#o.policy,
      maxBytes: job.maxBytes,
      ...(job.selectedFiles ? { selectedFiles: job.selectedFiles } : {}),
      resolve: this.#o.resolve,
      trackers: this.#o.trackers,
      maxTorrentFileBytes: this.#o.maxTorrentFileBytes,
      fetchTimeoutMs: this.#o.torrentFetchTimeoutMs,
      signal: job.signal,
    });
    if (job.signal.aborted) throw new DownloadFailure('CANCELED', 'download canceled');
    let shared = this.#torrents.get(prepared.infoHash);
    // Joining a torrent whose metadata is known: refuse an oversized selection before joining.
    if (shared?.info) checkTorrentSize(shared.info.files, job.selectedFiles, job.maxBytes);
    if (shared === undefined) {
      shared = new SharedTorrent(this, prepared);
      this.#torrents.set(prepared.infoHash, shared);
      shared.start(this.#removing.get(prepared.infoHash));
    }
    const run = new JobRun(job, shared, this.#o.noPeersTimeoutMs, this.#o.progressIntervalMs);
    return run.start();
  }

  /** Destroys every torrent and the client (jobs still running fail with CANCELED). */
  async close(): Promise<void> {
    for (const t of [...this.#torrents.values()])
      t.abortAll(new DownloadFailure('CANCELED', 'engine closed'));
    await Promise.all([...this.#removing.values()]);
    await this.#clientClosed;
  }

  // --- used by SharedTorrent -----------------------------------------------------------------

  /** @internal */
  async client(): Promise<WebTorrent.Instance> {
    await this.#clientClosed;
    if (this.#client !== null && !this.#client.destroyed) return this.#client;
    // Loaded on the first torrent, not at start-up: webtorrent and its dependencies are a large
    // share of an idle server's memory.
    const { default: WebTorrentClient } = await import('webtorrent');
    if (this.#client !== null && !this.#client.destroyed) return this.#client; // another caller won the race
    const o = this.#o;
    // HTTP(S) announces go through the guarded agent: the tracker client uses fetch, which
    // follows redirects and resolves names again by itself; the agent checks every connect.
    const agent = guardedAgent({
      policy: o.policy,
      ...(o.resolve === undefined ? {} : { resolve: o.resolve }),
    });
    const dispatcher = guardedGlobalDispatcher(agent);
    const client = new WebTorrentClient({
      torrentPort: o.listenPort,
      dht: o.dht,
      lsd: o.lsd,
      utPex: o.pex,
      tracker: o.trackers ? { proxyOpts: { httpAgent: dispatcher, httpsAgent: dispatcher } } : false,
      natUpnp: false,
      natPmp: false,
      webSeeds: false,
      utp: o.utp,
      downloadLimit: o.downloadLimit !== undefined && o.downloadLimit > 0 ? o.downloadLimit : -1,
      uploadLimit: o.uploadLimit !== undefined && o.uploadLimit > 0 ? o.uploadLimit : -1,
    });
    const policy = o.policy;
    client.blocked = { contains: (ip: string) => !policy.checkAddress(ip).ok };
    client.on('error', (err: unknown) => {
      const failure = failureOf(err);
      for (const t of [...this.#torrents.values()]) if (t.client === client) t.abortAll(failure);
    });
    this.#client = client;
    this.#agent = agent;
    return client;
  }

  /** @internal */
  onTorrentGone(shared: SharedTorrent, removal: Promise<void>): void {
    if (this.#torrents.get(shared.infoHash) === shared) this.#torrents.delete(shared.infoHash);
    const tracked = removal.finally(() => {
      if (this.#removing.get(shared.infoHash) === tracked) this.#removing.delete(shared.infoHash);
    });
    this.#removing.set(shared.infoHash, tracked);
    const client = this.#client;
    if (this.#torrents.size === 0 && client !== null) {
      const agent = this.#agent;
      this.#client = null;
      this.#agent = null;
      this.#clientClosed = new Promise<void>((resolve) => {
        try {
          client.destroy(() => resolve());
        } catch {
          resolve();
        }
      }).then(() => agent?.destroy().catch(() => undefined));
    }
  }
}

// ---------------------------------------------------------------------------------------------

/** One torrent in the client, shared by every job on its info-hash. */
class SharedTorrent {
  readonly infoHash: string;
  readonly storeDir: string;
  readonly #engine: BitTorrentDownloader;
  readonly #prepared: PreparedSource;
  readonly jobs = new Set<JobRun>();
  client: WebTorrent.Instance | null = null;
  torrent: WebTorrent.Torrent | null = null;
  info: TorrentInfo | null = null;
  /** Sanitized relative path of each file. */
  names: string[] = [];
  ready = false;
  #gone = false;
  /** Per piece: verified (as far as we have counted). */
  #have: Uint8Array | null = null;
  /** Per file: pieces still missing. */
  #missing: number[] = [];
  #pieceRanges: Array<[number, number] | null> = [];

  constructor(engine: BitTorrentDownloader, prepared: PreparedSource) {
    this.#engine = engine;
    this.#prepared = prepared;
    this.infoHash = prepared.infoHash;
    this.storeDir = engine.storeDir(prepared.infoHash);
    if (prepared.parsed !== null) this.#setInfo(prepared.parsed);
  }

  #setInfo(info: TorrentInfo): void {
    this.info = info;
    this.names = sanitizeTorrentPaths(
      info.name,
      info.files.map((f) => f.raw),
      info.multi,
    );
    this.#pieceRanges = info.files.map((f) =>
      f.length === 0
        ? null
        : [Math.floor(f.offset / info.pieceLength), Math.floor((f.offset + f.length - 1) / info.pieceLength)],
    );
  }

  /** Sanitized display name of the torrent. */
  get displayName(): string {
    return this.info === null ? this.#prepared.displayName : sanitizeFileName(this.info.name, this.infoHash);
  }

  start(previousRemoval: Promise<void> | undefined): void {
    void (async () => {
      try {
        if (previousRemoval !== undefined) await previousRemoval;
        const client = await this.#engine.client();
        if (this.#gone) return;
        this.client = client;
        // webtorrent constructs the store with `new`; a function constructor that returns an
        // object hands back that object.
        const makeStore = (chunkLength: number, opts: WebTorrent.ChunkStoreOptions): TorrentFileStore =>
          this.#makeStore(chunkLength, opts);
        function Store(chunkLength: number, opts: WebTorrent.ChunkStoreOptions): TorrentFileStore {
          return makeStore(chunkLength, opts);
        }
        const torrent = client.add(this.#prepared.torrentId, {
          path: this.storeDir,
          store: Store,
          deselect: true,
        });
        this.torrent = torrent;
        torrent.on('error', (err: unknown) => this.abortAll(failureOf(err)));
        torrent.on('warning', () => undefined);
        // A magnet's metadata arrived: webtorrent verifies (and allocates per piece) right after
        // this event unless the torrent is destroyed in it, so oversized jobs are refused here.
        torrent.on('metadata', () => this.#onMetadata());
        torrent.on('ready', () => this.#onReady());
        torrent.on('verified', (index: number) => this.#onVerified(index));
      } catch (err) {
        this.abortAll(failureOf(err));
      }
    })();
  }

  #makeStore(chunkLength: number, opts: WebTorrent.ChunkStoreOptions): TorrentFileStore {
    try {
      if (this.info === null) {
        const meta = opts.torrent.metadata;
        const top = meta === null ? undefined : decode(Buffer.from(meta));
        if (!isDict(top) || !isDict(top.info)) throw new Error('metadata has no info dictionary');
        this.#setInfo(parseInfo(top.info, this.infoHash));
      }
      const info = this.info;
      if (info === null || info.files.length !== opts.files.length || info.total !== opts.length) {
        throw new Error('metadata does not match the torrent');
      }
      return new TorrentFileStore(
        chunkLength,
        this.storeDir,
        info.files.map((f, i) => ({
          name: this.names[i] ?? `file ${i}`,
          length: f.length,
          offset: f.offset,
        })),
      );
    } catch (err) {
      // Never throw into webtorrent (it would become an unhandled rejection): fail the jobs and
      // give it a store that holds nothing.
      queueMicrotask(() =>
        this.abortAll(
          new DownloadFailure('INVALID_URL', `bad torrent metadata: ${String(err)}`, { cause: err }),
        ),
      );
      return new TorrentFileStore(chunkLength, this.storeDir, []);
    }
  }

  #onMetadata(): void {
    const info = this.info;
    if (info === null) return;
    for (const job of [...this.jobs]) {
      try {
        checkTorrentSize(info.files, job.job.selectedFiles, job.job.maxBytes);
      } catch (err) {
        job.fail(failureOf(err)); // the last job leaving destroys the torrent before verification
      }
    }
  }

  #onReady(): void {
    const torrent = this.torrent;
    const info = this.info;
    if (torrent === null || info === null || this.#gone) return;
    const have = new Uint8Array(info.numPieces);
    for (let i = 0; i < info.numPieces; i++) have[i] = torrent.bitfield?.get(i) === true ? 1 : 0;
    this.#have = have;
    this.#missing = this.#pieceRanges.map((r) => {
      if (r === null) return 0;
      let m = 0;
      for (let p = r[0]; p <= r[1]; p++) if (have[p] === 0) m++;
      return m;
    });
    this.ready = true;
    for (const job of [...this.jobs]) job.onReady();
  }

  #onVerified(index: number): void {
    const have = this.#have;
    const info = this.info;
    if (have === null || info === null || have[index] === 1) return;
    have[index] = 1;
    const changed: number[] = [];
    // Files are ordered by offset: find those overlapping the piece.
    const start = index * info.pieceLength;
    const end = start + info.pieceLength;
    let lo = 0;
    let hi = info.files.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if ((info.files[mid]?.offset ?? 0) <= start) lo = mid;
      else hi = mid - 1;
    }
    for (let i = lo; i < info.files.length; i++) {
      const f = info.files[i];
      if (f === undefined || f.offset >= end) break;
      const r = this.#pieceRanges[i];
      if (r === null || r === undefined || index < r[0] || index > r[1]) continue;
      this.#missing[i] = (this.#missing[i] ?? 1) - 1;
      if (this.#missing[i] === 0) changed.push(i);
    }
    if (changed.length > 0) for (const job of [...this.jobs]) job.onFilesComplete(changed);
  }

  isComplete(file: number): boolean {
    return this.ready && this.#missing[file] === 0;
  }

  fileDownloaded(file: number): number {
    const f = this.info?.files[file];
    if (f === undefined) return 0;
    if (this.isComplete(file)) return f.length;
    const wt = this.torrent?.files[file];
    return wt === undefined ? 0 : Math.min(f.length, Math.max(0, wt.downloaded));
  }

  /** Standard base64 of the piece bitfield (MSB of byte 0 = piece 0). */
  piecesBase64(): string | undefined {
    const have = this.#have;
    if (have === null) return undefined;
    const out = Buffer.alloc(Math.ceil(have.length / 8));
    for (let i = 0; i < have.length; i++)
      if (have[i] === 1) out[i >> 3] = (out[i >> 3] ?? 0) | (0x80 >> (i & 7));
    return out.toString('base64');
  }

  /** Makes the torrent fetch the union of its jobs' wanted files (and nothing else). */
  updateSelection(): void {
    const torrent = this.torrent;
    const info = this.info;
    if (!this.ready || torrent === null || info === null || torrent.destroyed || info.numPieces === 0) return;
    const wanted = new Set<number>();
    for (const job of this.jobs) for (const i of job.wanted) if (!this.isComplete(i)) wanted.add(i);
    // Deselecting file by file would also drop the boundary pieces a wanted neighbour needs, so
    // clear everything and select the union again.
    torrent.deselect(0, info.numPieces - 1);
    for (const i of [...wanted].sort((a, b) => a - b)) {
      const r = this.#pieceRanges[i];
      if (r !== null && r !== undefined) torrent.select(r[0], r[1]);
    }
  }

  join(job: JobRun): void {
    this.jobs.add(job);
    if (this.ready) queueMicrotask(() => job.onReady());
  }

  leave(job: JobRun): void {
    if (!this.jobs.delete(job)) return;
    if (this.jobs.size > 0) {
      this.updateSelection();
      return;
    }
    this.#destroy();
  }

  abortAll(failure: DownloadFailure): void {
    for (const job of [...this.jobs]) job.fail(failure);
    if (!this.#gone) this.#destroy();
  }

  #destroy(): void {
    if (this.#gone) return;
    this.#gone = true;
    const torrent = this.torrent;
    const storeDir = this.storeDir;
    const removal = new Promise<void>((resolve) => {
      if (torrent === null || torrent.destroyed) {
        resolve();
        return;
      }
      // Wire sockets are destroyed synchronously in here; the callback waits for the tracker
      // "stopped" announce and the store to close. Don't wait on a slow tracker forever.
      const timer = setTimeout(resolve, 5000);
      timer.unref();
      try {
        torrent.destroy({ destroyStore: false }, () => {
          clearTimeout(timer);
          resolve();
        });
      } catch {
        clearTimeout(timer);
        resolve();
      }
    }).then(() => rm(storeDir, { recursive: true, force: true }).catch(() => undefined));
    this.#engine.onTorrentGone(this, removal);
  }
}

// ---------------------------------------------------------------------------------------------

/** One job (one user's task) on a shared torrent. */
class JobRun {
  readonly job: DownloadJob;
  readonly shared: SharedTorrent;
  readonly #noPeersTimeoutMs: number;
  readonly #progressIntervalMs: number;
  stage: Stage = 'metadata';
  readonly wanted = new Set<number>();
  readonly #completed = new Set<number>();
  readonly #delivered: DownloadedFile[] = [];
  #deliveries: Promise<void> = Promise.resolve();
  #pendingDeliveries = 0;
  #settled = false;
  #resolve!: (o: DownloadOutcome) => void;
  #reject!: (e: DownloadFailure) => void;
  readonly #timers: NodeJS.Timeout[] = [];
  #onAbort: (() => void) | null = null;
  #lastActivity = Date.now();
  #lastReceived = 0;
  #uploadedBase = 0;
  #seedingSince = 0;
  #lastEmit = 0;

  constructor(job: DownloadJob, shared: SharedTorrent, noPeersTimeoutMs: number, progressIntervalMs: number) {
    this.job = job;
    this.shared = shared;
    this.#noPeersTimeoutMs = noPeersTimeoutMs;
    this.#progressIntervalMs = progressIntervalMs;
  }

  start(): Promise<DownloadOutcome> {
    const promise = new Promise<DownloadOutcome>((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    const job = this.job;
    this.#onAbort = () => this.fail(new DownloadFailure('CANCELED', 'download canceled'));
    job.signal.addEventListener('abort', this.#onAbort, { once: true });
    this.#timers.push(setInterval(() => this.#tick(), this.#progressIntervalMs));
    if (job.timeoutMs > 0) {
      this.#timers.push(
        setTimeout(
          () => this.fail(new DownloadFailure('TIMEOUT', `BitTorrent download exceeded ${job.timeoutMs} ms`)),
          job.timeoutMs,
        ),
      );
    }
    this.shared.join(this);
    this.#emit(true);
    return promise;
  }

  // --- events from the shared torrent --------------------------------------------------------

  onReady(): void {
    if (this.#settled || this.stage !== 'metadata') return;
    const info = this.shared.info;
    if (info === null) return;
    const all = info.files.map((_, i) => i);
    const initial = this.job.selectedFiles ?? all;
    for (const i of initial) if (Number.isInteger(i) && i >= 0 && i < info.files.length) this.wanted.add(i);
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
    this.#uploadedBase = this.shared.torrent?.uploaded ?? 0;
    this.#lastActivity = Date.now();
    this.shared.updateSelection();
    this.job.attachControl?.(this.#control());
    this.#checkComplete([...this.wanted]);
    this.#emit(true);
  }

  onFilesComplete(files: number[]): void {
    if (this.#settled || this.stage === 'metadata') return;
    this.#checkComplete(files);
  }

  // --- control ---------------------------------------------------------------------------------

  #control(): DownloadControl {
    return {
      selectFiles: async (changes) => {
        if (this.#settled || this.stage !== 'downloading') return;
        const info = this.shared.info;
        if (info === null) return;
        const next = new Set(this.wanted);
        for (const c of changes) {
          if (!Number.isInteger(c.index) || c.index < 0 || c.index >= info.files.length) continue;
          if (c.download) next.add(c.index);
          else next.delete(c.index);
        }
        const total = [...next].reduce((s, i) => s + (info.files[i]?.length ?? 0), 0);
        if (this.job.maxBytes > 0 && total > this.job.maxBytes) {
          throw new DownloadFailure(
            'TOO_LARGE',
            `selected files are ${total} bytes, over the limit of ${this.job.maxBytes}`,
          );
        }
        this.wanted.clear();
        for (const i of next) this.wanted.add(i);
        this.shared.updateSelection();
        this.#checkComplete([...this.wanted]);
        this.#emit(true);
      },
    };
  }

  // --- completion --------------------------------------------------------------------------------

  #checkComplete(candidates: number[]): void {
    for (const i of candidates.sort((a, b) => a - b)) {
      if (!this.wanted.has(i) || this.#completed.has(i) || !this.shared.isComplete(i)) continue;
      this.#completed.add(i);
      this.#deliver(i);
    }
    this.#maybeFinish();
  }

  #deliver(index: number): void {
    this.#pendingDeliveries++;
    this.#deliveries = this.#deliveries
      .then(async () => {
        if (this.#settled) return;
        const info = this.shared.info;
        const name = this.shared.names[index];
        const entry = info?.files[index];
        if (info === null || name === undefined || entry === undefined) return;
        const stagingPath = containedPath(this.job.stagingDir, name);
        await mkdir(dirname(stagingPath), { recursive: true });
        await rm(stagingPath, { force: true });
        if (entry.length === 0) {
          await writeFile(stagingPath, '');
        } else {
          const source = containedPath(this.shared.storeDir, name);
          try {
            await link(source, stagingPath);
          } catch (err) {
            const code = (err as NodeJS.ErrnoException).code;
            if (code !== 'EXDEV' && code !== 'EPERM' && code !== 'EMLINK') throw err;
            await copyFile(source, stagingPath);
          }
        }
        if (this.#settled) return;
        const file = { index, name, stagingPath, size: entry.length };
        await this.job.onFileComplete?.(file);
        this.#delivered.push(file);
      })
      .catch((err: unknown) => this.fail(failureOf(err, 'DISK')))
      .finally(() => {
        this.#pendingDeliveries--;
        this.#maybeFinish();
      });
  }

  #maybeFinish(): void {
    if (this.#settled || this.stage !== 'downloading' || this.#pendingDeliveries > 0) return;
    for (const i of this.wanted) if (!this.#completed.has(i)) return;
    const seeding = this.job.seeding;
    if (seeding !== undefined && (seeding.ratio > 0 || seeding.seconds > 0) && this.#total() > 0) {
      this.stage = 'seeding';
      this.#seedingSince = Date.now();
      this.#emit(true);
      this.#checkSeeding();
      return;
    }
    this.#succeed();
  }

  #checkSeeding(): void {
    const seeding = this.job.seeding;
    if (this.#settled || this.stage !== 'seeding' || seeding === undefined) return;
    const uploaded = (this.shared.torrent?.uploaded ?? 0) - this.#uploadedBase;
    const ratioReached = seeding.ratio > 0 && uploaded / Math.max(1, this.#total()) >= seeding.ratio;
    const timeReached = seeding.seconds > 0 && Date.now() - this.#seedingSince >= seeding.seconds * 1000;
    if (ratioReached || timeReached) this.#succeed();
  }

  #succeed(): void {
    if (this.#settled) return;
    this.#emit(true);
    this.#settle();
    const files = [...this.#delivered].sort((a, b) => (a.index ?? 0) - (b.index ?? 0));
    this.#resolve({ name: this.shared.displayName, files });
  }

  fail(failure: DownloadFailure): void {
    if (this.#settled) return;
    this.#settle();
    this.#reject(failure);
  }

  #settle(): void {
    this.#settled = true;
    for (const t of this.#timers) clearTimeout(t);
    if (this.#onAbort !== null) this.job.signal.removeEventListener('abort', this.#onAbort);
    this.shared.leave(this);
  }

  // --- periodic work -------------------------------------------------------------------------------

  #tick(): void {
    if (this.#settled) return;
    const torrent = this.shared.torrent;
    const now = Date.now();
    const received = torrent?.received ?? 0;
    // Checking data already on disk (a resumed torrent) is not "waiting for peers".
    const verifying = !this.shared.ready && this.shared.info !== null && torrent !== null;
    if (verifying || (torrent?.numPeers ?? 0) > 0 || received !== this.#lastReceived)
      this.#lastActivity = now;
    this.#lastReceived = received;
    if (this.stage !== 'seeding' && now - this.#lastActivity > this.#noPeersTimeoutMs) {
      this.fail(
        new DownloadFailure(
          'NO_PEERS',
          this.stage === 'metadata'
            ? `no metadata: no peer answered for ${Math.round(this.#noPeersTimeoutMs / 1000)} s`
            : `no peers and no data for ${Math.round(this.#noPeersTimeoutMs / 1000)} s`,
          { retryable: true },
        ),
      );
      return;
    }
    if (this.stage === 'seeding') this.#checkSeeding();
    this.#emit(false);
  }

  #total(): number {
    const files = this.shared.info?.files ?? [];
    let total = 0;
    for (const i of this.wanted) total += files[i]?.length ?? 0;
    return total;
  }

  #emit(force: boolean): void {
    if (this.#settled && !force) return;
    const now = Date.now();
    if (now - this.#lastEmit < 250 && !force) return;
    this.#lastEmit = now;
    try {
      this.job.onProgress(this.#progress());
    } catch {
      // a progress consumer's bug must not break the download
    }
  }

  #progress(): DownloadProgress {
    const shared = this.shared;
    const torrent = shared.torrent;
    const info = shared.info;
    const peers = torrent?.numPeers ?? 0;
    const base = {
      hash: shared.infoHash,
      speed: torrent?.downloadSpeed ?? 0,
      uploadSpeed: torrent?.uploadSpeed ?? 0,
      uploaded: Math.max(0, (torrent?.uploaded ?? 0) - this.#uploadedBase),
      peers,
      connections: peers,
    };
    if (info === null) {
      return { ...base, name: shared.displayName, stage: 'metadata', total: null, downloaded: 0, files: [] };
    }
    if (this.stage === 'metadata') {
      // Metadata known (a .torrent, or a magnet whose metadata arrived) while webtorrent checks
      // what is already on disk: show the files and the selection that is about to apply.
      const chosen = new Set(this.job.selectedFiles ?? info.files.map((_, i) => i));
      const files = info.files.map((f, index) => ({
        index,
        name: shared.names[index] ?? `file ${index}`,
        size: f.length,
        progress: 0,
        selected: chosen.has(index),
      }));
      const total = files.reduce((s, f) => s + (f.selected ? f.size : 0), 0);
      return {
        ...base,
        name: shared.displayName,
        stage: 'downloading',
        total,
        downloaded: 0,
        numPieces: info.numPieces,
        files,
      };
    }
    let downloaded = 0;
    const files = info.files.map((f, index) => {
      const got = this.#completed.has(index) ? f.length : shared.fileDownloaded(index);
      const selected = this.wanted.has(index);
      if (selected) downloaded += got;
      return {
        index,
        name: shared.names[index] ?? `file ${index}`,
        size: f.length,
        progress: f.length === 0 ? (shared.isComplete(index) ? 1 : 0) : Math.min(1, got / f.length),
        selected,
      };
    });
    return {
      ...base,
      name: shared.displayName,
      stage: this.stage,
      total: this.#total(),
      downloaded,
      pieces: shared.piecesBase64(),
      numPieces: info.numPieces,
      files,
    };
  }
}
