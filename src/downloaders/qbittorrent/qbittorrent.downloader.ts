// qBittorrent as a Downloader for BitTorrent sources (magnets, .torrent files, .torrent URLs),
// driven over its Web API v2. HTTP sources are not its business (canHandle is false for them).
//
// The source is read and cleaned first (bittorrent/torrent-source.ts: the .torrent URL is fetched
// by Ferry through SafeDialer, tracker URLs are kept only when the outbound policy allows their
// host, web seeds and metadata URLs are dropped). Then the torrent is added into a store folder
// per info-hash: a .torrent paused, a magnet with stopCondition=MetadataReceived, so that no data
// flows before the file priorities (0 = skip) are set. qBittorrent's file ids are 0-based, like
// Ferry's. A file counts as complete when qBittorrent says 100 % AND every piece it spans is
// verified (pieceStates = 2). Selection, per-file landing, sharing one torrent between jobs on
// the same swarm, seeding goals, cancel and daemon failures: see aria2/remote-torrent.ts.
//
// LIMITS: peers handed out by trackers are dialled by qBittorrent without Ferry's outbound policy
// (configure qBittorrent's own IP filter for that); tracker hosts are checked when the job starts,
// but libtorrent follows tracker redirects by itself. So the server only runs it with
// --allow-unguarded-downloaders (config.ts; docs/SECURITY.md).

import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { OutboundPolicy } from '../../net/address-policy.ts';
import type { Resolver } from '../../net/safe-dial.ts';
import { prepareSource, type PreparedSource } from '../bittorrent/torrent-source.ts';
import {
  DaemonUnreachable,
  RemoteTorrentPool,
  type RemoteSnapshot,
  type RemoteTorrent,
} from '../aria2/remote-torrent.ts';
import {
  DownloadFailure,
  type DownloadJob,
  type DownloadOutcome,
  type DownloadSource,
  type Downloader,
} from '../port.ts';
import { QbtApi, QbtApiError, QbtUnreachableError, type QbtFile } from './qbittorrent.api.ts';

export {
  startQbittorrentDaemon,
  qbittorrentPasswordHash,
  type QbittorrentDaemon,
  type StartQbittorrentOptions,
} from './qbittorrent.api.ts';

export interface QbittorrentDownloaderOptions {
  /** Web UI base URL, e.g. http://127.0.0.1:8080 */
  url: string;
  username?: string;
  password?: string;
  policy: OutboundPolicy;
  /** Poll period. Default 500 ms. */
  pollIntervalMs?: number;
  /** A job whose daemon stays unreachable this long fails with DAEMON (retryable). Default 60 s. */
  daemonTimeoutMs?: number;
  /** Per-request deadline. Default 10 s. */
  requestTimeoutMs?: number;
  /**
   * Root of the per-info-hash save paths (`<dataDir>/<infohash>`), as qBittorrent sees the file
   * system (it must be the same one: finished files are hard-linked from there). Default: OS
   * temp dir.
   */
  dataDir?: string;
  /** qBittorrent category for Ferry's torrents (optional; must exist in qBittorrent). */
  category?: string;
  /** No metadata, or no peer and no data, for this long → NO_PEERS. Default 10 min. */
  noPeersTimeoutMs?: number;
  maxTorrentFileBytes?: number;
  resolve?: Resolver;
}

const CANCELED = (): DownloadFailure => new DownloadFailure('CANCELED', 'download canceled');

function unreachable(err: unknown): DaemonUnreachable {
  return new DaemonUnreachable(err instanceof Error ? err.message : String(err), { cause: err });
}

export class QbittorrentDownloader implements Downloader {
  readonly name = 'qbittorrent';
  readonly api: QbtApi;
  readonly #o: QbittorrentDownloaderOptions & { dataDir: string; daemonTimeoutMs: number };
  readonly #pool: RemoteTorrentPool;

  constructor(options: QbittorrentDownloaderOptions) {
    this.api = new QbtApi({
      url: options.url,
      username: options.username,
      password: options.password,
      timeoutMs: options.requestTimeoutMs,
    });
    this.#o = {
      ...options,
      dataDir: options.dataDir ?? join(tmpdir(), 'ferry-qbittorrent'),
      daemonTimeoutMs: options.daemonTimeoutMs ?? 60_000,
    };
    this.#pool = new RemoteTorrentPool({
      daemon: 'qBittorrent',
      pollIntervalMs: options.pollIntervalMs ?? 500,
      daemonTimeoutMs: this.#o.daemonTimeoutMs,
      noPeersTimeoutMs: options.noPeersTimeoutMs ?? 10 * 60_000,
      storeDir: (infoHash) => this.storeDir(infoHash),
      addFailure: (err) => {
        if (err instanceof DownloadFailure) return err;
        if (err instanceof QbtApiError) {
          return new DownloadFailure('DAEMON', `qBittorrent refused the torrent: ${err.message}`, {
            cause: err,
          });
        }
        return new DownloadFailure('DAEMON', `qBittorrent: ${String(err)}`, { retryable: true, cause: err });
      },
    });
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

  /** Save path of a torrent. */
  storeDir(infoHash: string): string {
    return join(this.#o.dataDir, infoHash);
  }

  async download(job: DownloadJob): Promise<DownloadOutcome> {
    if (job.source.kind !== 'torrent') throw new DownloadFailure('INVALID_URL', 'not a torrent source');
    if (job.signal.aborted) throw CANCELED();
    const prepared = await prepareSource(job.source, {
      policy: this.#o.policy,
      maxBytes: job.maxBytes,
      ...(job.selectedFiles ? { selectedFiles: job.selectedFiles } : {}),
      resolve: this.#o.resolve,
      trackers: true,
      maxTorrentFileBytes: this.#o.maxTorrentFileBytes ?? 10 * 1024 * 1024,
      fetchTimeoutMs: 60_000,
      signal: job.signal,
    });
    return this.#pool.run(job, prepared, (storeDir) => this.#add(prepared, storeDir, job));
  }

  /** Fails every running job (CANCELED) and deletes their torrents from qBittorrent. */
  async close(): Promise<void> {
    await this.#pool.close();
  }

  /** Retries "no answer" with backoff until daemonTimeoutMs, then a retryable DAEMON failure. */
  async #retry<T>(fn: () => Promise<T>, signal: AbortSignal): Promise<T> {
    const start = Date.now();
    for (let attempt = 0; ; attempt++) {
      if (signal.aborted) throw CANCELED();
      try {
        return await fn();
      } catch (err) {
        if (signal.aborted) throw CANCELED();
        if (!(err instanceof QbtUnreachableError)) throw err;
        const elapsed = Date.now() - start;
        if (elapsed >= this.#o.daemonTimeoutMs) {
          throw new DownloadFailure(
            'DAEMON',
            `qBittorrent unreachable for ${Math.round(elapsed / 1000)} s: ${err.message}`,
            {
              retryable: true,
              cause: err,
            },
          );
        }
        await new Promise((r) =>
          setTimeout(r, Math.min(5000, 250 * 2 ** attempt, this.#o.daemonTimeoutMs - elapsed)),
        );
      }
    }
  }

  async #add(prepared: PreparedSource, storeDir: string, job: DownloadJob): Promise<RemoteTorrent> {
    const hash = prepared.infoHash;
    const options: Record<string, string> = {
      savepath: storeDir,
      autoTMM: 'false',
      contentLayout: 'Original',
      root_folder: 'true',
      sequentialDownload: 'false',
      skip_checking: 'false',
    };
    if (this.#o.category !== undefined && this.#o.category !== '') options.category = this.#o.category;
    if (job.speedLimit > 0) options.dlLimit = String(Math.floor(job.speedLimit));
    if (typeof prepared.torrentId === 'string') {
      // A paused magnet would never fetch its metadata: stop right after it instead.
      options.paused = 'false';
      options.stopCondition = 'MetadataReceived';
    } else {
      options.paused = 'true';
    }
    const seeding = job.seeding;
    const seeds = seeding !== undefined && (seeding.ratio > 0 || seeding.seconds > 0);
    options.ratioLimit = seeds && seeding.ratio > 0 ? String(seeding.ratio) : '-1';
    options.seedingTimeLimit =
      seeds && seeding.seconds > 0 ? String(Math.max(1, Math.ceil(seeding.seconds / 60))) : '-1';
    const source =
      typeof prepared.torrentId === 'string' ? { urls: prepared.torrentId } : { torrent: prepared.torrentId };
    try {
      await this.#retry(() => this.api.add(source, options), job.signal);
    } catch (err) {
      if (!(err instanceof QbtApiError)) throw err;
      // "Fails.": qBittorrent already has this torrent (e.g. left over from a crashed run).
      // Take it over only when it lives in our store folder.
      const info = await this.#retry(() => this.api.info(hash), job.signal);
      if (info === null || info.save_path.replace(/\/+$/, '') !== storeDir) {
        throw new DownloadFailure(
          'DAEMON',
          info === null ? err.message : 'qBittorrent already has this torrent (added outside Ferry)',
          { cause: err },
        );
      }
    }
    if (seeds) {
      await this.#retry(
        () => this.api.setShareLimits(hash, Number(options.ratioLimit), Number(options.seedingTimeLimit)),
        job.signal,
      ).catch(() => undefined);
    }
    return new QbtTorrent(this.api, hash);
  }
}

// ---------------------------------------------------------------------------------------------

const METADATA_STATES = new Set(['metaDL', 'forcedMetaDL']);

/** qBittorrent's side of one torrent. */
class QbtTorrent implements RemoteTorrent {
  readonly #api: QbtApi;
  readonly #hash: string;
  #files: QbtFile[] = [];
  #pausedByUs = true;
  #started = false;
  #seen = false;

  constructor(api: QbtApi, hash: string) {
    this.#api = api;
    this.#hash = hash;
  }

  async #call<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (err instanceof QbtUnreachableError) throw unreachable(err);
      throw err;
    }
  }

  async poll(): Promise<RemoteSnapshot> {
    const info = await this.#call(() => this.#api.info(this.#hash));
    if (info === null) {
      // Added a moment ago: qBittorrent may list it a little later.
      if (!this.#seen)
        return { phase: 'metadata', files: [], speed: 0, uploadSpeed: 0, uploaded: 0, peers: 0 };
      throw new DownloadFailure('DAEMON', 'qBittorrent lost the torrent (deleted there, or daemon reset)', {
        retryable: true,
      });
    }
    this.#seen = true;
    const base = {
      speed: info.dlspeed,
      uploadSpeed: info.upspeed,
      uploaded: info.uploaded,
      peers: info.num_seeds + info.num_leechs,
      name: info.name,
    };
    if (info.state === 'error' || info.state === 'missingFiles') {
      return {
        ...base,
        phase: 'error',
        files: [],
        failure: new DownloadFailure('DISK', `qBittorrent: torrent in state ${info.state}`, {
          retryable: true,
        }),
      };
    }
    if (METADATA_STATES.has(info.state)) return { ...base, phase: 'metadata', files: [] };
    const files = await this.#call(() => this.#api.files(this.#hash));
    if (files.length === 0) return { ...base, phase: 'metadata', files: [] };
    this.#files = files;
    const states = await this.#call(() => this.#api.pieceStates(this.#hash));
    const bits = Buffer.alloc(Math.ceil(states.length / 8));
    states.forEach((st, i) => {
      if (st === 2) bits[i >> 3] = (bits[i >> 3] ?? 0) | (0x80 >> (i & 7));
    });
    const verified = (range: [number, number] | undefined): boolean => {
      if (range === undefined) return false;
      for (let p = range[0]; p <= range[1]; p++) if (states[p] !== 2) return false;
      return true;
    };
    // qBittorrent stopped by itself after the download: its share limits were reached.
    const done = info.state === 'pausedUP' && this.#started && !this.#pausedByUs && info.progress >= 1;
    return {
      ...base,
      phase: done ? 'done' : 'ready',
      multi: files.length > 1 || (files[0]?.name.includes('/') ?? false),
      files: files.map((f) => {
        const complete = f.progress >= 1 && (f.size === 0 || verified(f.piece_range));
        return {
          relPath: f.name,
          length: f.size,
          completed: complete ? f.size : Math.min(f.size - 1, Math.floor(f.progress * f.size)),
          selected: f.priority > 0,
        };
      }),
      pieces: bits.toString('base64'),
      numPieces: states.length,
    };
  }

  async select(indexes: number[]): Promise<void> {
    const want = new Set(indexes);
    const files = this.#files;
    const on: number[] = [];
    const off: number[] = [];
    files.forEach((f, i) => {
      const id = f.index ?? i;
      if (want.has(i) && f.priority === 0) on.push(id);
      if (!want.has(i) && f.priority !== 0) off.push(id);
    });
    if (indexes.length === 0) {
      await this.#call(() => this.#api.pause(this.#hash));
      this.#pausedByUs = true;
    }
    await this.#call(() => this.#api.filePrio(this.#hash, off, 0));
    await this.#call(() => this.#api.filePrio(this.#hash, on, 1));
    if (indexes.length > 0 && this.#started && this.#pausedByUs) await this.start();
  }

  async start(): Promise<void> {
    this.#started = true;
    await this.#call(() => this.#api.resume(this.#hash));
    this.#pausedByUs = false;
  }

  async remove(): Promise<void> {
    await this.#api.delete(this.#hash, true).catch(() => undefined);
  }
}
