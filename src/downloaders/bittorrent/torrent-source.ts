// Turning a job's TorrentSource into what webtorrent is given, under the outbound policy:
// a `.torrent` URL is fetched through SafeDialer (refused addresses stay refused, size-capped),
// tracker URLs are kept only when their host passes the policy, and magnets / .torrent files are
// rewritten without web seeds or metadata URLs (see metainfo.ts).

import { isIpLiteral, normalizeHostname, type OutboundPolicy } from '../../net/address-policy.ts';
import { parseSourceUrl, SafeDialer, systemResolver, type Resolver } from '../../net/safe-dial.ts';
import { toFailure } from '../http/errors.ts';
import { DownloadFailure, type TorrentSource } from '../port.ts';
import {
  buildMagnet,
  parseMagnet,
  parseTorrentFile,
  rebuildTorrentFile,
  type ParsedTorrentFile,
} from './metainfo.ts';

export interface PreparedSource {
  infoHash: string;
  /** What webtorrent.add gets: a cleaned magnet or cleaned .torrent bytes. */
  torrentId: string | Buffer;
  /** Name to show before metadata: the magnet's dn, else the info-hash. */
  displayName: string;
  /** Known up front for .torrent sources. */
  parsed: ParsedTorrentFile | null;
}

export interface SourceOptions {
  policy: OutboundPolicy;
  resolve?: Resolver;
  trackers: boolean;
  maxTorrentFileBytes: number;
  fetchTimeoutMs: number;
  signal: AbortSignal;
  /** The job's size limit (quota left, --max-file-size) and selection: checked on the metadata. */
  maxBytes?: number;
  selectedFiles?: number[];
}

const MAX_TRACKERS = 50;
const TRACKER_DNS_TIMEOUT_MS = 5000;

/** Keeps the tracker URLs (http, https, udp) whose host the policy allows. */
export async function allowedTrackers(
  urls: string[],
  policy: OutboundPolicy,
  resolve: Resolver = systemResolver,
): Promise<string[]> {
  const checks = urls.slice(0, MAX_TRACKERS).map(async (raw): Promise<string | null> => {
    let url: URL;
    try {
      url = new URL(raw);
    } catch {
      return null;
    }
    if (!['http:', 'https:', 'udp:'].includes(url.protocol) || url.hostname === '') return null;
    const host = normalizeHostname(url.hostname);
    if (!policy.checkHost(host).ok) return null;
    if (isIpLiteral(host)) return raw;
    try {
      const addrs = await Promise.race([
        resolve(host),
        new Promise<never>((_, reject) =>
          setTimeout(() => reject(new Error('DNS timeout')), TRACKER_DNS_TIMEOUT_MS).unref(),
        ),
      ]);
      // Every address must pass: the tracker client does its own lookup later.
      if (addrs.length === 0 || !addrs.every((a) => policy.checkResolvedAddress(host, a.address).ok)) {
        return null;
      }
      return raw;
    } catch {
      return null;
    }
  });
  return (await Promise.all(checks)).filter((u): u is string => u !== null);
}

async function fetchTorrentFile(rawUrl: string, o: SourceOptions): Promise<Buffer> {
  const url = parseSourceUrl(rawUrl);
  const dialer = new SafeDialer({ policy: o.policy, resolve: o.resolve, connectTimeoutMs: 15_000 });
  const signal = AbortSignal.any([o.signal, AbortSignal.timeout(o.fetchTimeoutMs)]);
  try {
    const res = await dialer.request(url, {
      headers: { 'user-agent': 'Ferry/0.1', accept: 'application/x-bittorrent, */*;q=0.5' },
      signal,
    });
    if (res.statusCode === 404 || res.statusCode === 410) {
      res.body.dump().catch(() => undefined);
      throw new DownloadFailure('NOT_FOUND', `.torrent URL answered ${res.statusCode}`);
    }
    if (res.statusCode < 200 || res.statusCode > 299) {
      res.body.dump().catch(() => undefined);
      throw new DownloadFailure('HTTP_ERROR', `.torrent URL answered HTTP ${res.statusCode}`, {
        retryable: res.statusCode === 429 || res.statusCode >= 500,
      });
    }
    const declared = Number(res.headers['content-length']);
    if (Number.isFinite(declared) && declared > o.maxTorrentFileBytes) {
      res.body.destroy();
      throw new DownloadFailure('TOO_LARGE', `.torrent file is larger than ${o.maxTorrentFileBytes} bytes`);
    }
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of res.body) {
      const b = chunk as Buffer;
      size += b.length;
      if (size > o.maxTorrentFileBytes) {
        res.body.destroy();
        throw new DownloadFailure('TOO_LARGE', `.torrent file is larger than ${o.maxTorrentFileBytes} bytes`);
      }
      chunks.push(b);
    }
    return Buffer.concat(chunks);
  } catch (err) {
    if (o.signal.aborted) throw new DownloadFailure('CANCELED', 'download canceled');
    if (signal.aborted) {
      throw new DownloadFailure('TIMEOUT', 'fetching the .torrent file timed out', { retryable: true });
    }
    throw toFailure(err);
  } finally {
    await dialer.close().catch(() => undefined);
  }
}

/**
 * Refuses (TOO_LARGE) a selection larger than `maxBytes` from the metadata alone, before any
 * engine is given the torrent: a 100 GiB torrent used to cost a verification pass (CPU and
 * hundreds of MiB) before the same answer. No selection = every file, as the engines start.
 */
export function checkTorrentSize(
  files: ReadonlyArray<{ length: number }>,
  selected: readonly number[] | undefined,
  maxBytes: number | undefined,
): void {
  if (maxBytes === undefined || maxBytes <= 0) return;
  const wanted = selected === undefined ? files.map((_, i) => i) : [...new Set(selected)];
  let total = 0;
  for (const i of wanted) total += files[i]?.length ?? 0;
  if (total > maxBytes) {
    throw new DownloadFailure(
      'TOO_LARGE',
      `selected files are ${total} bytes, over the limit of ${maxBytes}`,
    );
  }
}

/** Reads and cleans a torrent source. Throws DownloadFailure. */
export async function prepareSource(source: TorrentSource, o: SourceOptions): Promise<PreparedSource> {
  let bytes: Buffer | undefined = source.torrentFile;
  if (bytes === undefined && source.torrentUrl !== undefined)
    bytes = await fetchTorrentFile(source.torrentUrl, o);
  if (bytes !== undefined) {
    const parsed = parseTorrentFile(bytes);
    checkTorrentSize(parsed.files, o.selectedFiles, o.maxBytes);
    const trackers = o.trackers ? await allowedTrackers(parsed.trackers, o.policy, o.resolve) : [];
    return {
      infoHash: parsed.infoHash,
      torrentId: rebuildTorrentFile(parsed.infoBytes, trackers),
      displayName: parsed.name,
      parsed,
    };
  }
  if (source.magnet !== undefined) {
    const m = parseMagnet(source.magnet);
    const trackers = o.trackers ? await allowedTrackers(m.trackers, o.policy, o.resolve) : [];
    const peers = m.peers.filter((p) => {
      const host = p.lastIndexOf(':') > 0 ? p.slice(0, p.lastIndexOf(':')) : '';
      return host !== '' && o.policy.checkAddress(host).ok;
    });
    return {
      infoHash: m.infoHash,
      torrentId: buildMagnet({ ...m, trackers, peers }),
      displayName: m.name ?? m.infoHash,
      parsed: null,
    };
  }
  if (source.infoHash !== undefined && /^[0-9a-f]{40}$/i.test(source.infoHash)) {
    const infoHash = source.infoHash.toLowerCase();
    return {
      infoHash,
      torrentId: buildMagnet({ infoHash, trackers: [], peers: [] }),
      displayName: infoHash,
      parsed: null,
    };
  }
  throw new DownloadFailure('INVALID_URL', 'torrent source has no magnet, .torrent URL or .torrent file');
}
