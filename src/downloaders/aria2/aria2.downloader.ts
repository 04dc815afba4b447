// aria2 as a Downloader: an aria2 daemon, driven over JSON-RPC, fetches HTTP(S) sources and
// BitTorrent sources (magnets, .torrent files, .torrent URLs).
//
// HTTP: aria2.addUri into the job's staging folder (split / max-connection-per-server from
// job.connections, capped at 16 by aria2; headers; speed limit; checksum; `out`), polled with
// tellStatus about twice a second. On completion the file gets its sanitized name in the staging
// folder.
//
// BitTorrent: the source is read and cleaned first (bittorrent/torrent-source.ts: the .torrent
// URL is fetched by us through SafeDialer, tracker URLs are kept only when the outbound policy
// allows their host, web seeds and metadata URLs are dropped), then added paused — magnets with
// `pause-metadata` so that aria2's follow-up download (the GID in `followedBy`) waits for our
// file selection — into a store folder per info-hash; see remote-torrent.ts for selection,
// sharing between jobs on the same swarm, per-file landing and cleanup. aria2's file indexes are
// 1-based; Ferry's are 0-based (index - 1 everywhere).
//
// LIMITS of the outbound guard with aria2 (aria2 connects by itself, Ferry cannot pin its
// sockets). Because of them the server only runs aria2 with --allow-unguarded-downloaders
// (config.ts; docs/SECURITY.md):
// - the URL's host is resolved and every address checked before aria2 gets it, but aria2 does its
//   own DNS lookup later (a rebinding DNS server could answer differently then), and aria2 FOLLOWS
//   HTTP REDIRECTS BY ITSELF to any host, unchecked — aria2 has no option to refuse or inspect
//   them. Operators who need the SSRF guard keep the built-in engines.
// - BitTorrent peers returned by trackers are dialled by aria2 without a policy check (aria2 has
//   no peer IP filter); tracker hosts are checked when the job starts.
// - Files are handed on as soon as aria2 reports them complete: run aria2 with `--disk-cache=0`
//   (startAria2Daemon does) or data may still sit in aria2's cache.

import { lstat, mkdir, readdir, rename, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { sanitizeFileName } from '../../domain/file-name.ts';
import { isIpLiteral, normalizeHostname, type OutboundPolicy } from '../../net/address-policy.ts';
import { parseSourceUrl, systemResolver, type Resolver } from '../../net/safe-dial.ts';
import { containedPath } from '../bittorrent/file-store.ts';
import { prepareSource, type PreparedSource } from '../bittorrent/torrent-source.ts';
import { deriveFileName } from '../http/file-name.ts';
import {
  DownloadFailure,
  type DownloadJob,
  type DownloadOutcome,
  type DownloadProgress,
  type DownloadSource,
  type Downloader,
  type HttpSource,
} from '../port.ts';
import { Aria2Rpc, Aria2RpcError, Aria2UnreachableError, type Aria2Status } from './aria2.rpc.ts';
import {
  DaemonUnreachable,
  hexBitfieldToBase64,
  RemoteTorrentPool,
  type RemoteSnapshot,
  type RemoteTorrent,
} from './remote-torrent.ts';

export { startAria2Daemon, type Aria2Daemon, type StartAria2Options } from './aria2.rpc.ts';

export interface Aria2DownloaderOptions {
  /** e.g. http://127.0.0.1:6800/jsonrpc */
  rpcUrl: string;
  secret?: string;
  policy: OutboundPolicy;
  /** tellStatus period. Default 500 ms. */
  pollIntervalMs?: number;
  /** A job whose daemon stays unreachable this long fails with DAEMON (retryable). Default 60 s. */
  daemonTimeoutMs?: number;
  /** Per-RPC deadline. Default 10 s. */
  rpcTimeoutMs?: number;
  /** Root of the per-info-hash torrent stores (`<dataDir>/<infohash>`). Default: OS temp dir. */
  dataDir?: string;
  /** BitTorrent: no metadata, or no peer and no data, for this long → NO_PEERS. Default 10 min. */
  noPeersTimeoutMs?: number;
  /** Largest .torrent fetched from a URL. Default 10 MiB. */
  maxTorrentFileBytes?: number;
  /** DNS resolver for the checks (tests inject one). */
  resolve?: Resolver;
  userAgent?: string;
}

interface Resolved {
  pollIntervalMs: number;
  daemonTimeoutMs: number;
  dataDir: string;
  noPeersTimeoutMs: number;
  maxTorrentFileBytes: number;
  resolve: Resolver;
  userAgent: string;
}

const CANCELED = (): DownloadFailure => new DownloadFailure('CANCELED', 'download canceled');

/** Maps an aria2 download error (errorCode / errorMessage) to a DownloadFailure. */
export function aria2Failure(code: string | undefined, message: string | undefined): DownloadFailure {
  const n = Number(code ?? '1');
  const text = `aria2: ${message !== undefined && message !== '' ? message : `error ${n}`} (code ${n})`;
  switch (n) {
    case 3:
    case 4:
      return new DownloadFailure('NOT_FOUND', text);
    case 2:
      return new DownloadFailure('TIMEOUT', text, { retryable: true });
    case 9:
    case 13:
    case 14:
    case 15:
    case 16:
    case 17:
    case 18:
      return new DownloadFailure('DISK', text);
    case 22:
    case 23:
    case 24:
    case 8:
      return new DownloadFailure('HTTP_ERROR', text);
    case 29:
      return new DownloadFailure('HTTP_ERROR', text, { retryable: true });
    case 20:
    case 25:
    case 26:
    case 27:
    case 28:
      return new DownloadFailure('INVALID_URL', text);
    case 32:
      return new DownloadFailure('CHECKSUM', text);
    case 12:
    case 11:
      return new DownloadFailure('DAEMON', text, { retryable: true });
    default: // 1 unknown, 5 too slow, 6 network, 19 DNS, 7 shutdown...
      return new DownloadFailure('NETWORK', text, { retryable: true });
  }
}

function daemonFailure(err: unknown, ms: number): DownloadFailure {
  const why = err instanceof Error ? err.message : String(err);
  return new DownloadFailure('DAEMON', `aria2 unreachable for ${Math.round(ms / 1000)} s: ${why}`, {
    retryable: true,
    cause: err,
  });
}

/** aria2 `checksum` option value. */
function checksumOption(c: NonNullable<DownloadJob['checksum']>): string {
  const algo = c.algorithm === 'sha256' ? 'sha-256' : c.algorithm === 'sha1' ? 'sha-1' : 'md5';
  return `${algo}=${c.hex.toLowerCase()}`;
}

function num(v: string | undefined): number {
  const n = Number(v ?? 0);
  return Number.isFinite(n) ? n : 0;
}

// ---------------------------------------------------------------------------------------------

export class Aria2Downloader implements Downloader {
  readonly name = 'aria2';
  readonly rpc: Aria2Rpc;
  readonly #policy: OutboundPolicy;
  readonly #o: Resolved;
  readonly #pool: RemoteTorrentPool;
  readonly #http = new Set<AbortController>();

  constructor(options: Aria2DownloaderOptions) {
    this.rpc = new Aria2Rpc({ url: options.rpcUrl, secret: options.secret, timeoutMs: options.rpcTimeoutMs });
    this.#policy = options.policy;
    this.#o = {
      pollIntervalMs: options.pollIntervalMs ?? 500,
      daemonTimeoutMs: options.daemonTimeoutMs ?? 60_000,
      dataDir: options.dataDir ?? join(tmpdir(), 'ferry-aria2'),
      noPeersTimeoutMs: options.noPeersTimeoutMs ?? 10 * 60_000,
      maxTorrentFileBytes: options.maxTorrentFileBytes ?? 10 * 1024 * 1024,
      resolve: options.resolve ?? systemResolver,
      userAgent: options.userAgent ?? 'Ferry/0.1',
    };
    this.#pool = new RemoteTorrentPool({
      daemon: 'aria2',
      pollIntervalMs: this.#o.pollIntervalMs,
      daemonTimeoutMs: this.#o.daemonTimeoutMs,
      noPeersTimeoutMs: this.#o.noPeersTimeoutMs,
      storeDir: (infoHash) => this.storeDir(infoHash),
      addFailure: (err) =>
        err instanceof DownloadFailure
          ? err
          : err instanceof Aria2RpcError
            ? new DownloadFailure('DAEMON', `aria2 refused the torrent: ${err.message}`, { cause: err })
            : new DownloadFailure('DAEMON', `aria2: ${String(err)}`, { retryable: true, cause: err }),
    });
  }

  canHandle(source: DownloadSource): boolean {
    if (source.kind === 'http') return /^https?:\/\//i.test(source.url);
    return (
      source.magnet !== undefined ||
      source.torrentUrl !== undefined ||
      source.torrentFile !== undefined ||
      source.infoHash !== undefined
    );
  }

  /** Folder aria2 writes a torrent into. */
  storeDir(infoHash: string): string {
    return join(this.#o.dataDir, infoHash);
  }

  async download(job: DownloadJob): Promise<DownloadOutcome> {
    if (job.signal.aborted) throw CANCELED();
    if (job.source.kind === 'http') return this.#downloadHttp(job, job.source);
    return this.#downloadTorrent(job);
  }

  /** Ends every running job (CANCELED) and removes their downloads from aria2. */
  async close(): Promise<void> {
    for (const ctl of this.#http) ctl.abort(CANCELED());
    await this.#pool.close();
  }

  /**
   * Calls aria2, retrying "no answer" with backoff until `daemonTimeoutMs`; then a retryable
   * DAEMON failure. aria2's own refusals (Aria2RpcError) are thrown as they are.
   */
  async callWithRetry<T>(method: string, params: unknown[], signal: AbortSignal): Promise<T> {
    const start = Date.now();
    for (let attempt = 0; ; attempt++) {
      if (signal.aborted) throw CANCELED();
      try {
        return await this.rpc.call<T>(method, params, signal);
      } catch (err) {
        if (signal.aborted) throw CANCELED();
        if (!(err instanceof Aria2UnreachableError)) throw err;
        const elapsed = Date.now() - start;
        if (elapsed >= this.#o.daemonTimeoutMs) throw daemonFailure(err, elapsed);
        const delay = Math.min(5000, 250 * 2 ** attempt, this.#o.daemonTimeoutMs - elapsed);
        await sleep(delay, undefined, { signal }).catch(() => undefined);
      }
    }
  }

  // --- outbound check ------------------------------------------------------------------------

  /**
   * Checks the URL's host and EVERY address it resolves to (aria2 will do its own lookup and may
   * use any of them). Throws INVALID_URL / SOURCE_BLOCKED / NETWORK.
   */
  async checkUrl(url: URL): Promise<void> {
    const host = normalizeHostname(url.hostname);
    const decision = this.#policy.checkHost(host);
    if (!decision.ok) throw new DownloadFailure('SOURCE_BLOCKED', `source refused: ${decision.reason}`);
    if (isIpLiteral(host)) return; // checkHost checked the literal itself
    let addrs;
    try {
      addrs = await this.#o.resolve(host);
    } catch (cause) {
      const code = (cause as { code?: string }).code;
      throw new DownloadFailure('NETWORK', `DNS lookup for ${host} failed: ${String(code ?? cause)}`, {
        retryable: code !== 'ENOTFOUND' && code !== 'ENODATA',
        cause,
      });
    }
    if (addrs.length === 0) throw new DownloadFailure('NETWORK', `host ${host} has no addresses`);
    for (const a of addrs) {
      const d = this.#policy.checkResolvedAddress(host, a.address);
      if (!d.ok) throw new DownloadFailure('SOURCE_BLOCKED', `source refused: ${d.reason}`);
    }
  }

  // --- HTTP ------------------------------------------------------------------------------------

  async #downloadHttp(job: DownloadJob, source: HttpSource): Promise<DownloadOutcome> {
    const url = parseSourceUrl(source.url);
    await this.checkUrl(url);
    if (job.signal.aborted) throw CANCELED();
    const ctl = new AbortController();
    this.#http.add(ctl);
    try {
      return await new Aria2HttpRun(this, job, url, this.#o, AbortSignal.any([job.signal, ctl.signal])).run();
    } finally {
      this.#http.delete(ctl);
    }
  }

  // --- BitTorrent ------------------------------------------------------------------------------

  async #downloadTorrent(job: DownloadJob): Promise<DownloadOutcome> {
    if (job.source.kind !== 'torrent') throw new DownloadFailure('INVALID_URL', 'not a torrent source');
    const prepared = await prepareSource(job.source, {
      policy: this.#policy,
      maxBytes: job.maxBytes,
      ...(job.selectedFiles ? { selectedFiles: job.selectedFiles } : {}),
      resolve: this.#o.resolve,
      trackers: true,
      maxTorrentFileBytes: this.#o.maxTorrentFileBytes,
      fetchTimeoutMs: 60_000,
      signal: job.signal,
    });
    return this.#pool.run(job, prepared, (storeDir) =>
      Aria2Torrent.add(this, prepared, storeDir, job, job.signal),
    );
  }
}

// ---------------------------------------------------------------------------------------------

/** aria2's side of one torrent: the metadata GID of a magnet, then the follow-up GID. */
class Aria2Torrent implements RemoteTorrent {
  readonly #engine: Aria2Downloader;
  readonly #storeDir: string;
  #gid: string;
  readonly #gids = new Set<string>();
  #paused = true;

  private constructor(engine: Aria2Downloader, gid: string, storeDir: string) {
    this.#engine = engine;
    this.#gid = gid;
    this.#gids.add(gid);
    this.#storeDir = storeDir;
  }

  static async add(
    engine: Aria2Downloader,
    prepared: PreparedSource,
    storeDir: string,
    job: DownloadJob,
    signal: AbortSignal,
  ): Promise<Aria2Torrent> {
    const options: Record<string, string> = {
      dir: storeDir,
      'bt-save-metadata': 'false',
      'bt-metadata-only': 'false',
      'follow-torrent': 'true',
      'pause-metadata': 'true',
      'enable-peer-exchange': 'false',
      'bt-enable-lpd': 'false',
      'bt-remove-unselected-file': 'false',
      'check-integrity': 'false',
      'seed-ratio': '0',
    };
    const seeding = job.seeding;
    if (seeding === undefined || (seeding.ratio <= 0 && seeding.seconds <= 0)) {
      options['seed-time'] = '0';
    } else {
      // aria2 stops when either limit is reached; `seed-ratio=0` means "no ratio limit".
      if (seeding.ratio > 0) options['seed-ratio'] = String(seeding.ratio);
      if (seeding.seconds > 0) options['seed-time'] = String(seeding.seconds / 60);
    }
    if (job.speedLimit > 0) options['max-download-limit'] = String(Math.floor(job.speedLimit));
    let gid: string;
    if (typeof prepared.torrentId === 'string') {
      gid = await engine.callWithRetry<string>('aria2.addUri', [[prepared.torrentId], options], signal);
    } else {
      gid = await engine.callWithRetry<string>(
        'aria2.addTorrent',
        [prepared.torrentId.toString('base64'), [], { ...options, pause: 'true' }],
        signal,
      );
    }
    return new Aria2Torrent(engine, gid, storeDir);
  }

  async #call<T>(method: string, params: unknown[]): Promise<T> {
    try {
      return await this.#engine.rpc.call<T>(method, params);
    } catch (err) {
      if (err instanceof Aria2UnreachableError) throw new DaemonUnreachable(err.message, { cause: err });
      if (err instanceof Aria2RpcError && err.notFound) {
        throw new DownloadFailure('DAEMON', 'aria2 lost the download (daemon restarted?)', {
          retryable: true,
          cause: err,
        });
      }
      throw err;
    }
  }

  async poll(): Promise<RemoteSnapshot> {
    let s = await this.#call<Aria2Status>('aria2.tellStatus', [this.#gid]);
    const next = s.followedBy?.[0];
    if (next !== undefined) {
      // The magnet's metadata arrived; aria2 created the real download (paused: pause-metadata).
      const old = this.#gid;
      this.#gid = next;
      this.#gids.add(next);
      this.#paused = true;
      await this.#call('aria2.removeDownloadResult', [old]).catch(() => undefined);
      s = await this.#call<Aria2Status>('aria2.tellStatus', [this.#gid]);
    }
    const base = {
      speed: num(s.downloadSpeed),
      uploadSpeed: num(s.uploadSpeed),
      uploaded: num(s.uploadLength),
      peers: num(s.connections),
    };
    if (s.status === 'error') {
      return { ...base, phase: 'error', files: [], failure: aria2Failure(s.errorCode, s.errorMessage) };
    }
    if (s.status === 'removed') {
      return {
        ...base,
        phase: 'error',
        files: [],
        failure: new DownloadFailure('CANCELED', 'the download was removed in aria2'),
      };
    }
    const files = s.files ?? [];
    const metadata = files.some((f) => f.path.startsWith('[METADATA]')) || s.bittorrent?.info === undefined;
    if (metadata) return { ...base, phase: 'metadata', files: [] };
    const numPieces = num(s.numPieces);
    return {
      ...base,
      phase: s.status === 'complete' ? 'done' : 'ready',
      name: s.bittorrent?.info?.name,
      multi: s.bittorrent?.mode === 'multi',
      files: files
        .slice()
        .sort((a, b) => num(a.index) - num(b.index))
        .map((f) => ({
          relPath: this.#relative(f.path),
          length: num(f.length),
          completed: num(f.completedLength),
          selected: f.selected === 'true',
        })),
      ...(s.bitfield !== undefined && numPieces > 0
        ? { pieces: hexBitfieldToBase64(s.bitfield, numPieces), numPieces }
        : {}),
    };
  }

  /** aria2 reports absolute paths; '' when one is outside the store (never handed on). */
  #relative(path: string): string {
    const root = this.#storeDir.endsWith('/') ? this.#storeDir : `${this.#storeDir}/`;
    if (!path.startsWith(root)) return '';
    const rel = path.slice(root.length);
    try {
      containedPath(this.#storeDir, rel);
    } catch {
      return '';
    }
    return rel;
  }

  async select(indexes: number[]): Promise<void> {
    if (indexes.length === 0) {
      if (!this.#paused) await this.#call('aria2.forcePause', [this.#gid]);
      this.#paused = true;
      return;
    }
    const wasPaused = this.#paused;
    await this.#call('aria2.changeOption', [
      this.#gid,
      { 'select-file': indexes.map((i) => i + 1).join(',') },
    ]);
    if (wasPaused && this.#started) await this.start();
  }

  #started = false;

  async start(): Promise<void> {
    this.#started = true;
    if (!this.#paused) return;
    await this.#call('aria2.unpause', [this.#gid]).catch((err: unknown) => {
      // Already active (e.g. the follow-up started by itself): fine.
      if (!(err instanceof Aria2RpcError)) throw err;
    });
    this.#paused = false;
  }

  async remove(): Promise<void> {
    for (const gid of this.#gids) {
      await this.#engine.rpc.call('aria2.forceRemove', [gid]).catch(() => undefined);
      // forceRemove is asynchronous: the result appears once aria2 has stopped the download.
      for (let i = 0; i < 20; i++) {
        const ok = await this.#engine.rpc.call('aria2.removeDownloadResult', [gid]).then(
          () => true,
          (err: unknown) => err instanceof Aria2RpcError && err.notFound,
        );
        if (ok) break;
        await sleep(50);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------

/** One HTTP(S) job in aria2. */
class Aria2HttpRun {
  readonly #engine: Aria2Downloader;
  readonly #job: DownloadJob;
  readonly #url: URL;
  readonly #o: Resolved;
  readonly #signal: AbortSignal;
  #gid: string | null = null;
  #lastPath = '';

  constructor(engine: Aria2Downloader, job: DownloadJob, url: URL, o: Resolved, signal: AbortSignal) {
    this.#engine = engine;
    this.#job = job;
    this.#url = url;
    this.#o = o;
    this.#signal = signal;
  }

  #guessName(): string {
    return deriveFileName({ url: this.#url });
  }

  async run(): Promise<DownloadOutcome> {
    const job = this.#job;
    const source = job.source as HttpSource;
    const outName =
      job.filename !== undefined && job.filename !== '' ? sanitizeFileName(job.filename) : undefined;
    const headers = Object.entries(source.headers ?? {})
      .filter(([k, v]) => !/[\r\n]/.test(k + v))
      .map(([k, v]) => `${k}: ${v}`);
    if (!Object.keys(source.headers ?? {}).some((k) => k.toLowerCase() === 'user-agent')) {
      headers.push(`User-Agent: ${this.#o.userAgent}`);
    }
    const connections = String(Math.max(1, Math.min(16, Math.floor(job.connections || 1))));
    const options: Record<string, string | string[]> = {
      dir: job.stagingDir,
      split: connections,
      'max-connection-per-server': connections,
      'min-split-size': '1M',
      header: headers,
      'allow-overwrite': 'true',
      'auto-file-renaming': 'false',
      'remote-time': 'false',
      'follow-torrent': 'false',
      'follow-metalink': 'false',
      'content-disposition-default-utf8': 'true',
      'max-tries': '5',
      'retry-wait': '1',
    };
    if (outName !== undefined) options.out = outName;
    if (job.speedLimit > 0) options['max-download-limit'] = String(Math.floor(job.speedLimit));
    if (job.checksum !== undefined) options.checksum = checksumOption(job.checksum);
    await mkdir(job.stagingDir, { recursive: true });
    const timeout = job.timeoutMs > 0 ? AbortSignal.timeout(job.timeoutMs) : null;
    const signal = timeout === null ? this.#signal : AbortSignal.any([this.#signal, timeout]);
    try {
      this.#gid = await this.#engine.callWithRetry<string>(
        'aria2.addUri',
        [[this.#url.href], options],
        signal,
      );
      return await this.#poll(signal, outName);
    } catch (err) {
      await this.#cleanup(true);
      if (this.#signal.aborted) throw CANCELED();
      if (timeout?.aborted === true) {
        throw new DownloadFailure('TIMEOUT', `download did not finish within ${job.timeoutMs} ms`);
      }
      if (err instanceof DownloadFailure) throw err;
      if (err instanceof Aria2RpcError) {
        throw new DownloadFailure('DAEMON', `aria2 refused the download: ${err.message}`, { cause: err });
      }
      throw new DownloadFailure('DAEMON', `aria2: ${String(err)}`, { retryable: true, cause: err });
    }
  }

  async #poll(signal: AbortSignal, outName: string | undefined): Promise<DownloadOutcome> {
    const gid = this.#gid ?? '';
    let unreachableSince = 0;
    for (;;) {
      if (signal.aborted) throw CANCELED();
      let s: Aria2Status;
      try {
        s = await this.#engine.rpc.tellStatus(gid);
        unreachableSince = 0;
      } catch (err) {
        if (signal.aborted) throw CANCELED();
        if (err instanceof Aria2RpcError && err.notFound) {
          throw new DownloadFailure('DAEMON', 'aria2 lost the download (daemon restarted?)', {
            retryable: true,
          });
        }
        if (!(err instanceof Aria2UnreachableError)) throw err;
        const now = Date.now();
        if (unreachableSince === 0) unreachableSince = now;
        if (now - unreachableSince > this.#o.daemonTimeoutMs)
          throw daemonFailure(err, now - unreachableSince);
        await sleep(this.#o.pollIntervalMs, undefined, { signal }).catch(() => undefined);
        continue;
      }
      const file = s.files?.[0];
      if (file !== undefined && file.path !== '') this.#lastPath = file.path;
      const total = num(s.totalLength);
      if (this.#job.maxBytes > 0 && total > this.#job.maxBytes) {
        throw new DownloadFailure(
          'TOO_LARGE',
          `the file is ${total} bytes, more than the allowed ${this.#job.maxBytes}`,
        );
      }
      this.#emit(s, outName);
      if (s.status === 'error') throw aria2Failure(s.errorCode, s.errorMessage);
      if (s.status === 'removed') throw new DownloadFailure('CANCELED', 'the download was removed in aria2');
      if (s.status === 'complete') return this.#finish(s, outName);
      await sleep(this.#o.pollIntervalMs, undefined, { signal }).catch(() => undefined);
    }
  }

  #name(outName: string | undefined): string {
    if (outName !== undefined) return outName;
    if (this.#lastPath !== '') return sanitizeFileName(basename(this.#lastPath));
    return this.#guessName();
  }

  #emit(s: Aria2Status, outName: string | undefined): void {
    const total = num(s.totalLength);
    const downloaded = num(s.completedLength);
    const name = this.#name(outName);
    const known = total > 0 || s.status === 'complete';
    const progress: DownloadProgress = {
      name,
      total: known ? total : null,
      downloaded,
      speed: num(s.downloadSpeed),
      connections: num(s.connections),
      files: [
        {
          index: 0,
          name,
          size: total,
          progress: total > 0 ? Math.min(1, downloaded / total) : s.status === 'complete' ? 1 : 0,
          selected: true,
        },
      ],
    };
    try {
      this.#job.onProgress(progress);
    } catch {
      // ignore consumer bugs
    }
  }

  async #finish(s: Aria2Status, outName: string | undefined): Promise<DownloadOutcome> {
    const path = s.files?.[0]?.path ?? '';
    const stagingDir = this.#job.stagingDir;
    const rel = path.startsWith(`${stagingDir}/`) ? path.slice(stagingDir.length + 1) : '';
    if (rel === '' || rel.includes('/')) {
      throw new DownloadFailure('DISK', `aria2 wrote outside the job's folder: ${path}`);
    }
    const from = containedPath(stagingDir, rel);
    const name = this.#name(outName);
    const to = containedPath(stagingDir, name);
    const st = await lstat(from);
    if (!st.isFile()) throw new DownloadFailure('DISK', `aria2's result is not a regular file: ${rel}`);
    if (from !== to) await rename(from, to);
    await this.#engine.rpc.call('aria2.removeDownloadResult', [this.#gid]).catch(() => undefined);
    this.#gid = null;
    return { name, files: [{ index: 0, name, stagingPath: to, size: st.size }] };
  }

  /** Removes the download from aria2 and its files (partial file, control file) from staging. */
  async #cleanup(deleteFiles: boolean): Promise<void> {
    const gid = this.#gid;
    if (gid === null) return;
    this.#gid = null;
    const rpc = this.#engine.rpc;
    let path = this.#lastPath;
    await rpc.call('aria2.forceRemove', [gid]).catch(() => undefined);
    for (let i = 0; i < 20; i++) {
      const s = await rpc.tellStatus(gid, ['status', 'files']).catch(() => null);
      if (s?.files?.[0]?.path) path = s.files[0].path;
      if (s === null || s.status === 'removed' || s.status === 'error' || s.status === 'complete') break;
      await sleep(50);
    }
    await rpc.call('aria2.removeDownloadResult', [gid]).catch(() => undefined);
    if (!deleteFiles) return;
    const stagingDir = this.#job.stagingDir;
    if (path.startsWith(`${stagingDir}/`)) {
      await rm(path, { force: true }).catch(() => undefined);
      await rm(`${path}.aria2`, { force: true }).catch(() => undefined);
    }
    // Any other control file aria2 left behind in the job's folder.
    for (const f of await readdir(stagingDir).catch(() => [] as string[])) {
      if (f.endsWith('.aria2')) await rm(join(stagingDir, f), { force: true }).catch(() => undefined);
    }
  }
}
