// The downloader port: how the task engine asks some transfer machinery (the built-in
// segmented HTTP engine, later BitTorrent, aria2, qBittorrent) to fetch a source into a
// staging folder. The engine owns the task's state; a downloader only moves bytes.

export type FailureCode =
  | 'INVALID_URL' // malformed or unsupported source
  | 'SOURCE_BLOCKED' // refused address or domain (SSRF guard, allow/block lists)
  | 'NOT_FOUND' // origin said 404/410
  | 'HTTP_ERROR' // any other non-success status that retries did not cure
  | 'NETWORK' // connect failure, reset, interrupted transfer
  | 'TLS' // the origin's certificate is not trusted (or the TLS handshake failed): not retried
  | 'TIMEOUT' // overall deadline passed
  | 'TOO_LARGE' // over the allowed size or the user's remaining quota
  | 'CHECKSUM' // expected checksum did not match
  | 'DISK' // local write failed (disk full...)
  | 'NO_PEERS' // BitTorrent: metadata or data never arrived
  | 'DAEMON' // an external downloader (aria2, qBittorrent) is unreachable or failed
  | 'CANCELED'; // the job's signal was aborted

/** A download failure recorded on the task; never reaches HTTP as a 500. */
export class DownloadFailure extends Error {
  readonly failure: FailureCode;
  readonly retryable: boolean;
  constructor(failure: FailureCode, message: string, options?: { retryable?: boolean; cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.failure = failure;
    this.retryable = options?.retryable ?? false;
  }
}

export type ChecksumAlgorithm = 'sha256' | 'sha1' | 'md5';

export interface HttpSource {
  kind: 'http';
  url: string;
  /** Extra request headers the user supplied (Cookie, Referer, User-Agent, Authorization). */
  headers?: Record<string, string>;
}

/** A BitTorrent source: a magnet link, the URL of a .torrent, or the .torrent's bytes. */
export interface TorrentSource {
  kind: 'torrent';
  magnet?: string;
  torrentUrl?: string;
  torrentFile?: Buffer;
  /** Info-hash (hex, lower case) when known up front (magnets, parsed .torrent files). */
  infoHash?: string;
}

export type DownloadSource = HttpSource | TorrentSource;

export interface DownloadFileProgress {
  index: number;
  /** Relative path inside the download, '/'-separated. */
  name: string;
  size: number;
  /** 0..1 */
  progress: number;
  selected: boolean;
}

export interface DownloadProgress {
  name: string;
  /** BitTorrent: 'metadata' while a magnet's metadata is being fetched, 'seeding' after. */
  stage?: 'metadata' | 'downloading' | 'seeding';
  /** BitTorrent extras, shown in summary.props.download. */
  hash?: string;
  uploaded?: number;
  uploadSpeed?: number;
  peers?: number;
  /** standard base64 of the piece bitfield, MSB of byte 0 = piece 0 */
  pieces?: string;
  numPieces?: number;
  /** Total bytes, or null while unknown (no Content-Length). */
  total: number | null;
  downloaded: number;
  /** bytes/s averaged over the last few seconds */
  speed: number;
  connections: number;
  files: DownloadFileProgress[];
}

export interface DownloadedFile {
  /** The file's index in the progress `files` list. */
  index?: number;
  /** Relative path inside the download ('/'-separated, already sanitized). */
  name: string;
  /** Absolute path of the complete file in the staging folder. */
  stagingPath: string;
  size: number;
}

export interface DownloadOutcome {
  name: string;
  files: DownloadedFile[];
}

export interface DownloadJob {
  source: DownloadSource;
  /** A folder that belongs to this job alone; the downloader writes only inside it. */
  stagingDir: string;
  /** Name the user asked for; else the downloader derives one (Content-Disposition, URL path). */
  filename?: string;
  /** Parallel connections for one file (segmented HTTP). */
  connections: number;
  /** Per-task speed limit in bytes/s; 0 = unlimited. */
  speedLimit: number;
  /** Overall deadline in ms from start; 0 = none. */
  timeoutMs: number;
  /** Refuse (TOO_LARGE) when the content is longer than this many bytes. */
  maxBytes: number;
  checksum?: { algorithm: ChecksumAlgorithm; hex: string };
  /** What `checkpoint` saved on an earlier run of this job, to resume from. */
  resume?: unknown;
  signal: AbortSignal;
  /** Called often (at most a few times per second). */
  onProgress(progress: DownloadProgress): void;
  /** Persist resume state (segment map, validators); awaited, so keep calls rare (~1/s). */
  checkpoint(state: unknown): Promise<void>;
  /** Multi-file sources: indexes to fetch; undefined = all. Others are never fetched if avoidable. */
  selectedFiles?: number[];
  /**
   * Multi-file sources: called as soon as one selected file is complete and verified, so it can
   * land in the drive before the rest finish. The file stays readable at stagingPath until the
   * job ends (the local store hard-links it, keeping disk use near 1×).
   */
  onFileComplete?(file: DownloadedFile & { index: number }): Promise<void>;
  /** The downloader hands over live controls once it can take them (e.g. after metadata). */
  attachControl?(control: DownloadControl): void;
  /** After completion, keep seeding until the ratio or the time is reached (0 = no limit on it). */
  seeding?: { ratio: number; seconds: number };
}

export interface DownloadControl {
  /** Only the listed files change; indexes are those of the progress `files` list. */
  selectFiles(changes: Array<{ index: number; download: boolean }>): Promise<void>;
}

export interface Downloader {
  /** 'http' (built-in engine), 'bittorrent' (built-in), 'aria2', 'qbittorrent' */
  readonly name: string;
  canHandle(source: DownloadSource): boolean;
  /** Resolves with the finished files, or rejects with a DownloadFailure. */
  download(job: DownloadJob): Promise<DownloadOutcome>;
}
