// A loopback BitTorrent swarm for tests and benchmarks, built from Debian packages: deterministic
// content files in a temp dir, a multi-file torrent made with `mktorrent`, an `opentracker` on
// 127.0.0.1 (Debian's build only tracks whitelisted info-hashes, so it gets a whitelist with ours),
// and an `aria2c` seeder bound to 127.0.0.1 with DHT, LPD and PEX off. Nothing leaves loopback.
//
// `hostileTorrent: true` hand-bencodes a torrent whose file paths are hostile (`..`, absolute
// paths, backslashes, NUL/control characters, `CON`, duplicates, overlong names). aria2c refuses
// such a torrent ("Detected directory traversal directive"), so it is seeded by an in-process
// webtorrent client whose chunk store serves the generated pieces from memory: no file is ever
// created from a hostile path on the seeding side either.

import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import WebTorrent from 'webtorrent';
import { asInt, decode, decodeWithSpans, encode, isDict } from '../../src/downloaders/bittorrent/bencode.ts';
import { contentChunks, contentRange } from './origin.ts';

export interface SwarmFile {
  /** Relative, '/'-separated. */
  path: string;
  size: number;
  /** Content seed (origin.ts generator); default index + 1. */
  seed?: number;
}

export interface Swarm {
  trackerUrl: string;
  /** hex, lower case */
  infoHash: string;
  /** magnet with dn and &tr= */
  magnet: string;
  torrentFile: Buffer;
  name: string;
  /** Files in torrent order. For hostile torrents, `path` is the raw path joined with '/'. */
  files: Array<{ path: string; size: number; sha256: string }>;
  /** host:port of each seeder */
  seederPeers: string[];
  close(): Promise<void>;
}

export interface SwarmOptions {
  name: string;
  files: SwarmFile[];
  /** Bytes, a power of two (default 32 KiB). */
  pieceLength?: number;
  hostileTorrent?: boolean;
  /** Address the seeder binds to (default 127.0.0.1). */
  seederAddress?: string;
}

/** A port that was free a moment ago on 127.0.0.1. */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  const server = createServer();
  server.listen(0, host);
  await once(server, 'listening');
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  server.close();
  await once(server, 'close');
  return port;
}

function fileSeed(file: SwarmFile, index: number): number {
  return file.seed ?? index + 1;
}

async function writeContent(path: string, seed: number, size: number): Promise<string> {
  await mkdir(dirname(path), { recursive: true });
  const hash = createHash('sha256');
  const out = createWriteStream(path);
  for (const chunk of contentChunks(seed, 0, size, 1024 * 1024)) {
    hash.update(chunk);
    if (!out.write(chunk)) await once(out, 'drain');
  }
  out.end();
  await once(out, 'close');
  return hash.digest('hex');
}

function sha256Of(seed: number, size: number): string {
  const hash = createHash('sha256');
  for (const chunk of contentChunks(seed, 0, size, 1024 * 1024)) hash.update(chunk);
  return hash.digest('hex');
}

function run(cmd: string, args: string[], cwd?: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.on('close', (code) =>
      code === 0 ? resolve() : reject(new Error(`${cmd} exited with ${code}: ${err.slice(0, 2000)}`)),
    );
  });
}

async function stopProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
  await exited;
  clearTimeout(timer);
}

function infoHashOf(torrent: Buffer): string {
  const { infoSpan } = decodeWithSpans(torrent);
  if (infoSpan === null) throw new Error('torrent has no info dictionary');
  return createHash('sha1').update(torrent.subarray(infoSpan[0], infoSpan[1])).digest('hex');
}

function percentEncodeBytes(b: Buffer): string {
  return [...b].map((x) => `%${x.toString(16).padStart(2, '0')}`).join('');
}

/** Asks the tracker how many seeders it knows for the info-hash. */
async function scrapeComplete(trackerBase: string, infoHash: string): Promise<number> {
  const url = `${trackerBase}/scrape?info_hash=${percentEncodeBytes(Buffer.from(infoHash, 'hex'))}`;
  const res = await fetch(url);
  const body = decode(Buffer.from(await res.arrayBuffer()));
  if (!isDict(body) || !isDict(body.files)) return 0;
  const entry = body.files[Buffer.from(infoHash, 'hex').toString('latin1')];
  return isDict(entry) ? (asInt(entry.complete) ?? 0) : 0;
}

// ---------------------------------------------------------------------------------------------
// Hostile torrent

/** Raw path segments (as the torrent carries them) of the hostile torrent's files. */
export const HOSTILE_PATHS: string[][] = [
  ['..', '..', 'escape-up.txt'],
  ['/etc', 'absolute.txt'],
  ['C:\\Windows', 'drive.txt'],
  ['dir\\with\\backslashes.txt'],
  ['nul\u0000byte\u0001ctl\u001f.txt'],
  ['CON'],
  ['sub', 'aux.txt'],
  ['dup.txt'],
  ['dup.txt'],
  ['DUP.TXT'],
  [`${'x'.repeat(300)}.bin`],
  ['.', '', 'dots', '..', 'normal.txt'],
  ['dup.txt', 'below-a-file.txt'],
];

interface MemoryStoreOptions {
  pieceLength: number;
  total: number;
  piece(index: number): Buffer;
}

/** A webtorrent chunk store that serves generated pieces and refuses writes. */
function memoryStoreFactory(o: MemoryStoreOptions): unknown {
  return class GeneratedStore {
    readonly chunkLength = o.pieceLength;
    get(index: number, opts: unknown, cb?: (err: Error | null, buf?: Buffer) => void): void {
      const callback = (typeof opts === 'function' ? opts : cb) as (err: Error | null, buf?: Buffer) => void;
      const options = (typeof opts === 'object' && opts !== null ? opts : {}) as {
        offset?: number;
        length?: number;
      };
      const buf = o.piece(index);
      const offset = options.offset ?? 0;
      const length = options.length ?? buf.length - offset;
      queueMicrotask(() => callback(null, buf.subarray(offset, offset + length)));
    }
    put(_index: number, _buf: Buffer, cb?: (err: Error | null) => void): void {
      queueMicrotask(() => cb?.(new Error('read-only store')));
    }
    close(cb?: (err: Error | null) => void): void {
      queueMicrotask(() => cb?.(null));
    }
    destroy(cb?: (err: Error | null) => void): void {
      queueMicrotask(() => cb?.(null));
    }
  };
}

// ---------------------------------------------------------------------------------------------

export async function startSwarm(options: SwarmOptions): Promise<Swarm> {
  const pieceLength = options.pieceLength ?? 32 * 1024;
  const log2 = Math.log2(pieceLength);
  if (!Number.isInteger(log2) || log2 < 14) throw new Error('pieceLength must be a power of two ≥ 16 KiB');
  const seederAddress = options.seederAddress ?? '127.0.0.1';
  const dir = await mkdtemp(join(tmpdir(), 'ferry-swarm-'));
  const children: ChildProcess[] = [];
  let seederClient: WebTorrent.Instance | null = null;
  let closed = false;

  const close = async (): Promise<void> => {
    if (closed) return;
    closed = true;
    await Promise.all(children.map(stopProcess));
    if (seederClient !== null) {
      const c = seederClient;
      await new Promise<void>((resolve) => c.destroy(() => resolve()));
    }
    await rm(dir, { recursive: true, force: true });
  };

  try {
    // Tracker: chrooted into its own world-readable folder, since it drops root for `nobody`.
    const trackerDir = join(dir, 'tracker');
    await mkdir(trackerDir);
    await chmod(dir, 0o755);
    await chmod(trackerDir, 0o755);
    const trackerPort = await freePort();
    const trackerBase = `http://127.0.0.1:${trackerPort}`;
    const trackerUrl = `${trackerBase}/announce`;

    let torrentFile: Buffer;
    let files: Swarm['files'];
    const seedDir = join(dir, 'seed');
    if (options.hostileTorrent === true) {
      ({ torrentFile, files } = buildHostileTorrent(options, pieceLength, trackerUrl));
    } else {
      files = [];
      for (const [i, f] of options.files.entries()) {
        const sha256 = await writeContent(
          join(seedDir, options.name, ...f.path.split('/')),
          fileSeed(f, i),
          f.size,
        );
        files.push({ path: f.path, size: f.size, sha256 });
      }
      const torrentPath = join(dir, 'swarm.torrent');
      await run('mktorrent', [
        '-a',
        trackerUrl,
        '-l',
        String(log2),
        '-n',
        options.name,
        '-o',
        torrentPath,
        '-t',
        '2',
        join(seedDir, options.name),
      ]);
      torrentFile = await readFile(torrentPath);
      files = torrentOrder(torrentFile, files);
    }
    const infoHash = infoHashOf(torrentFile);
    await writeFile(join(trackerDir, 'whitelist.txt'), `${infoHash}\n`, { mode: 0o644 });
    const tracker = spawn(
      'opentracker',
      ['-i', '127.0.0.1', '-p', String(trackerPort), '-d', trackerDir, '-w', 'whitelist.txt'],
      {
        stdio: 'ignore',
      },
    );
    children.push(tracker);
    await waitFor(
      async () => {
        try {
          await scrapeComplete(trackerBase, infoHash);
          return true;
        } catch {
          return false;
        }
      },
      10_000,
      'opentracker did not start',
    );

    const seederPort = await freePort(seederAddress);
    if (options.hostileTorrent === true) {
      seederClient = await seedHostile(torrentFile, options, pieceLength, seederPort);
    } else {
      const torrentPath = join(dir, 'swarm.torrent');
      const aria = spawn(
        'aria2c',
        [
          `--dir=${seedDir}`,
          '--seed-ratio=0',
          '--enable-dht=false',
          '--enable-dht6=false',
          '--bt-enable-lpd=false',
          '--enable-peer-exchange=false',
          `--listen-port=${seederPort}`,
          `--bt-external-ip=${seederAddress}`,
          `--interface=${seederAddress}`,
          '--check-integrity=true',
          '--bt-hash-check-seed=true',
          '--disable-ipv6=true',
          '--enable-rpc=false',
          '--file-allocation=none',
          '--bt-save-metadata=false',
          '--auto-save-interval=0',
          '--summary-interval=0',
          '--console-log-level=error',
          '--bt-max-peers=0',
          '--max-upload-limit=0',
          '--bt-tracker-interval=5',
          '--no-conf=true',
          torrentPath,
        ],
        { stdio: 'ignore' },
      );
      children.push(aria);
    }
    let lastNudge = Date.now();
    await waitFor(
      async () => {
        if ((await scrapeComplete(trackerBase, infoHash)) >= 1) return true;
        // Under load webtorrent's first announce can be lost, and its next one is minutes
        // away: ask it again every few seconds.
        if (seederClient && Date.now() - lastNudge > 3000) {
          lastNudge = Date.now();
          for (const t of seederClient.torrents) {
            (
              t as unknown as { discovery?: { tracker?: { update?: () => void } } }
            ).discovery?.tracker?.update?.();
          }
        }
        return false;
      },
      60_000,
      'seeder never announced',
    );

    const magnet =
      `magnet:?xt=urn:btih:${infoHash}&dn=${encodeURIComponent(options.name)}` +
      `&tr=${encodeURIComponent(trackerUrl)}`;
    return {
      trackerUrl,
      infoHash,
      magnet,
      torrentFile,
      name: options.name,
      files,
      seederPeers: [`${seederAddress}:${seederPort}`],
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}

/** The files in the order the torrent lists them (mktorrent sorts them its own way). */
function torrentOrder(torrent: Buffer, files: Swarm['files']): Swarm['files'] {
  const top = decode(torrent);
  if (!isDict(top) || !isDict(top.info) || !Array.isArray(top.info.files)) return files;
  const byPath = new Map(files.map((f) => [f.path, f]));
  return top.info.files.map((entry) => {
    const parts = isDict(entry) && Array.isArray(entry.path) ? entry.path : [];
    const path = parts.map((p) => (Buffer.isBuffer(p) ? p.toString('utf8') : '')).join('/');
    const f = byPath.get(path);
    if (f === undefined) throw new Error(`torrent lists an unknown file ${path}`);
    return f;
  });
}

async function waitFor(check: () => Promise<boolean>, timeoutMs: number, message: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(message);
    await sleep(100);
  }
}

/** The content of the hostile torrent: every file generated from its own seed, concatenated. */
function hostileLayout(
  options: SwarmOptions,
): Array<{ raw: string[]; size: number; seed: number; offset: number }> {
  const out: Array<{ raw: string[]; size: number; seed: number; offset: number }> = [];
  let offset = 0;
  HOSTILE_PATHS.forEach((raw, i) => {
    const given = options.files[i];
    const size = given?.size ?? 10_000 + i * 1_111;
    const seed = given?.seed ?? 100 + i;
    out.push({ raw, size, seed, offset });
    offset += size;
  });
  return out;
}

function hostileBytes(layout: ReturnType<typeof hostileLayout>, start: number, end: number): Buffer {
  const parts: Buffer[] = [];
  for (const f of layout) {
    const a = Math.max(start, f.offset);
    const b = Math.min(end, f.offset + f.size);
    if (a < b) parts.push(contentRange(f.seed, a - f.offset, b - f.offset));
  }
  return Buffer.concat(parts);
}

function buildHostileTorrent(
  options: SwarmOptions,
  pieceLength: number,
  trackerUrl: string,
): { torrentFile: Buffer; files: Swarm['files'] } {
  const layout = hostileLayout(options);
  const total = layout.reduce((s, f) => s + f.size, 0);
  const pieces: Buffer[] = [];
  for (let o = 0; o < total; o += pieceLength) {
    pieces.push(
      createHash('sha1')
        .update(hostileBytes(layout, o, Math.min(total, o + pieceLength)))
        .digest(),
    );
  }
  const info = {
    name: options.name,
    'piece length': pieceLength,
    pieces: Buffer.concat(pieces),
    files: layout.map((f) => ({ length: f.size, path: f.raw })),
  };
  const torrentFile = encode({ announce: trackerUrl, info });
  const files = layout.map((f) => ({
    path: f.raw.join('/'),
    size: f.size,
    sha256: sha256Of(f.seed, f.size),
  }));
  return { torrentFile, files };
}

async function seedHostile(
  torrentFile: Buffer,
  options: SwarmOptions,
  pieceLength: number,
  port: number,
): Promise<WebTorrent.Instance> {
  const layout = hostileLayout(options);
  const total = layout.reduce((s, f) => s + f.size, 0);
  const client = new WebTorrent({
    dht: false,
    lsd: false,
    utPex: false,
    natUpnp: false,
    natPmp: false,
    webSeeds: false,
    utp: false,
    torrentPort: port,
  });
  const Store = memoryStoreFactory({
    pieceLength,
    total,
    piece: (index) => hostileBytes(layout, index * pieceLength, Math.min(total, (index + 1) * pieceLength)),
  });
  const store = new (Store as new () => unknown)();
  await new Promise<void>((resolve, reject) => {
    client.once('error', reject);
    const t = client.add(
      Buffer.from(torrentFile),
      { preloadedStore: store, skipVerify: true, announce: [] },
      () => resolve(),
    );
    t.once('error', reject);
  });
  return client;
}
