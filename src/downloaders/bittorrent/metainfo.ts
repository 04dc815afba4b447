// Reading what a user hands us as a torrent source — magnet links and .torrent files — and
// rewriting them into the form webtorrent gets: only the info-hash (or the original info
// dictionary, byte for byte), a display name, the trackers the outbound policy allows, and
// nothing that would make webtorrent fetch a URL by itself (web seeds `ws=`/`url-list`,
// `xs=`/`as=` metadata sources). Pure code apart from the types.

import { createHash } from 'node:crypto';
import { DownloadFailure } from '../port.ts';
import {
  asBuffer,
  asInt,
  asList,
  BencodeError,
  BRaw,
  decodeWithSpans,
  encode,
  isDict,
  type BDict,
  type BEncodable,
  type BValue,
} from './bencode.ts';

export interface TorrentFileEntry {
  /** Raw path segments as the torrent carries them (decoded as UTF-8). */
  raw: string[];
  length: number;
  offset: number;
}

export interface TorrentInfo {
  infoHash: string;
  name: string;
  multi: boolean;
  files: TorrentFileEntry[];
  pieceLength: number;
  numPieces: number;
  total: number;
}

export interface ParsedTorrentFile extends TorrentInfo {
  /** The original bencoded info dictionary. */
  infoBytes: Buffer;
  trackers: string[];
}

export interface MagnetLink {
  infoHash: string;
  name?: string;
  trackers: string[];
  /** x.pe peer addresses (host:port). */
  peers: string[];
}

function text(b: BValue | undefined): string | undefined {
  const buf = asBuffer(b);
  return buf === undefined ? undefined : buf.toString('utf8');
}

function invalid(message: string, cause?: unknown): DownloadFailure {
  return new DownloadFailure('INVALID_URL', message, cause === undefined ? undefined : { cause });
}

/** Reads the info dictionary (from a .torrent or from metadata fetched by magnet). */
export function parseInfo(info: BDict, infoHash: string): TorrentInfo {
  const pieceLength = asInt(info['piece length']);
  const pieces = asBuffer(info.pieces);
  if (pieceLength === undefined || pieceLength <= 0 || pieces === undefined || pieces.length % 20 !== 0) {
    throw invalid('torrent info has no valid piece length / pieces');
  }
  const name = text(info['name.utf-8']) ?? text(info.name) ?? infoHash;
  const list = asList(info.files);
  const files: TorrentFileEntry[] = [];
  let offset = 0;
  if (list !== undefined) {
    for (const f of list) {
      if (!isDict(f)) throw invalid('torrent file entry is not a dictionary');
      const length = asInt(f.length);
      const path = asList(f['path.utf-8']) ?? asList(f.path) ?? [];
      if (length === undefined || length < 0) throw invalid('torrent file entry has no valid length');
      files.push({ raw: path.map((p) => text(p) ?? ''), length, offset });
      offset += length;
    }
  } else {
    const length = asInt(info.length);
    if (length === undefined || length < 0) throw invalid('torrent has neither files nor a length');
    files.push({ raw: [name], length, offset: 0 });
    offset = length;
  }
  const numPieces = pieces.length / 20;
  if (numPieces !== Math.ceil(offset / pieceLength) && !(offset === 0 && numPieces === 0)) {
    throw invalid('torrent piece count does not match its length');
  }
  return { infoHash, name, multi: list !== undefined, files, pieceLength, numPieces, total: offset };
}

/** Parses .torrent bytes. Throws DownloadFailure INVALID_URL on anything malformed. */
export function parseTorrentFile(buf: Buffer): ParsedTorrentFile {
  let decoded;
  try {
    decoded = decodeWithSpans(buf);
  } catch (cause) {
    throw invalid(
      `not a torrent file: ${cause instanceof BencodeError ? cause.message : String(cause)}`,
      cause,
    );
  }
  const top = decoded.value;
  if (!isDict(top) || !isDict(top.info) || decoded.infoSpan === null) {
    throw invalid('not a torrent file: no info dictionary');
  }
  const infoBytes = buf.subarray(decoded.infoSpan[0], decoded.infoSpan[1]);
  const infoHash = createHash('sha1').update(infoBytes).digest('hex');
  const trackers: string[] = [];
  const announce = text(top.announce);
  if (announce !== undefined) trackers.push(announce);
  for (const tier of asList(top['announce-list']) ?? []) {
    for (const t of asList(tier) ?? []) {
      const url = text(t);
      if (url !== undefined) trackers.push(url);
    }
  }
  return { ...parseInfo(top.info, infoHash), infoBytes, trackers: [...new Set(trackers)] };
}

const BASE32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

function base32ToHex(s: string): string | null {
  let bits = '';
  for (const ch of s.toUpperCase()) {
    const v = BASE32.indexOf(ch);
    if (v < 0) return null;
    bits += v.toString(2).padStart(5, '0');
  }
  let hex = '';
  for (let i = 0; i + 4 <= bits.length && hex.length < 40; i += 4)
    hex += parseInt(bits.slice(i, i + 4), 2).toString(16);
  return hex.length === 40 ? hex : null;
}

/** Parses a magnet link (BitTorrent v1 info-hash, hex or base32). Throws INVALID_URL. */
export function parseMagnet(uri: string): MagnetLink {
  if (!/^magnet:\?/i.test(uri)) throw invalid('not a magnet link');
  const params = new URLSearchParams(uri.slice(uri.indexOf('?') + 1));
  let infoHash: string | null = null;
  for (const xt of params.getAll('xt')) {
    const m = /^urn:btih:([0-9a-z]+)$/i.exec(xt);
    if (!m?.[1]) continue;
    const v = m[1];
    if (/^[0-9a-f]{40}$/i.test(v)) infoHash = v.toLowerCase();
    else if (v.length === 32) infoHash = base32ToHex(v);
    if (infoHash !== null) break;
  }
  if (infoHash === null) throw invalid('magnet link has no BitTorrent v1 info-hash (xt=urn:btih:...)');
  const dn = params.get('dn');
  return {
    infoHash,
    name: dn === null || dn === '' ? undefined : dn,
    trackers: [...new Set(params.getAll('tr'))],
    peers: params.getAll('x.pe'),
  };
}

/** A magnet link carrying only what webtorrent should use. */
export function buildMagnet(m: MagnetLink): string {
  let uri = `magnet:?xt=urn:btih:${m.infoHash}`;
  if (m.name !== undefined) uri += `&dn=${encodeURIComponent(m.name)}`;
  for (const t of m.trackers) uri += `&tr=${encodeURIComponent(t)}`;
  for (const p of m.peers) uri += `&x.pe=${encodeURIComponent(p)}`;
  return uri;
}

/** A .torrent with the original info dictionary and only the given trackers (no web seeds). */
export function rebuildTorrentFile(infoBytes: Buffer, trackers: string[]): Buffer {
  const out: Record<string, BEncodable> = { info: new BRaw(infoBytes) };
  if (trackers.length > 0) {
    out.announce = trackers[0] ?? '';
    out['announce-list'] = trackers.map((t) => [t]);
  }
  return encode(out);
}
