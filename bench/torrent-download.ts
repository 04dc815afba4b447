// Benchmark: Ferry's built-in BitTorrent engine (webtorrent) vs plain aria2c as the leecher, both
// fetching one torrent from a loopback aria2c seeder (opentracker on 127.0.0.1, DHT/LPD/PEX off).
//
//   npx node bench/torrent-download.ts               # 256 MiB, 3 runs each
//   npx node bench/torrent-download.ts --size 64     # quick
//   options: --size MiB, --runs N, --piece KiB (default 256), --only ferry,aria2c
//
// Each run starts from an empty folder and is timed from start to "every file complete" (Ferry:
// download() resolving; aria2c: the process exiting with --seed-time=0). The first run of each
// contestant is checked byte for byte (outside the timing). aria2c leechers each bind their own
// 127.0.0.x address. Prints a markdown table, writes bench/results/torrent-download.json, and
// deletes every temporary file.

import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Aria2Downloader } from '../src/downloaders/aria2/aria2.downloader.ts';
import { startAria2Daemon } from '../src/downloaders/aria2/aria2.rpc.ts';
import { BitTorrentDownloader } from '../src/downloaders/bittorrent/bittorrent.downloader.ts';
import type { DownloadJob } from '../src/downloaders/port.ts';
import { OutboundPolicy } from '../src/net/address-policy.ts';
import { freePort, startSwarm, type Swarm } from '../test/helpers/swarm.ts';

const MiB = 1024 * 1024;
const here = dirname(fileURLToPath(import.meta.url));

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? (process.argv[i + 1] ?? fallback) : fallback;
}

type Contestant = 'ferry' | 'ferry-aria2' | 'aria2c';

interface RunResult {
  seconds: number;
  mibps: number;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? (s[mid] ?? 0) : ((s[mid - 1] ?? 0) + (s[mid] ?? 0)) / 2;
}

async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest('hex');
}

async function verify(dir: string, swarm: Swarm): Promise<void> {
  for (const f of swarm.files) {
    const got = await sha256File(join(dir, swarm.name, ...f.path.split('/')));
    if (got !== f.sha256) throw new Error(`content mismatch in ${f.path}`);
  }
}

async function runFerry(swarm: Swarm, work: string, check: boolean): Promise<number> {
  const stagingDir = join(work, 'staging');
  await mkdir(stagingDir, { recursive: true });
  const bt = new BitTorrentDownloader({
    policy: new OutboundPolicy({ allowNetworks: ['127.0.0.0/8'] }),
    dataDir: join(work, 'data'),
    trackers: true,
    dht: false,
    pex: false,
    lsd: false,
    listenPort: 0,
  });
  const job: DownloadJob = {
    source: { kind: 'torrent', torrentFile: swarm.torrentFile },
    stagingDir,
    connections: 1,
    speedLimit: 0,
    timeoutMs: 0,
    maxBytes: 0,
    signal: new AbortController().signal,
    onProgress: () => undefined,
    checkpoint: async () => undefined,
  };
  const t0 = performance.now();
  await bt.download(job);
  const seconds = (performance.now() - t0) / 1000;
  await bt.close();
  if (check) await verify(stagingDir, swarm);
  return seconds;
}

/** Ferry driving an aria2c daemon through its aria2 downloader (JSON-RPC), as `--torrent-downloader aria2` does. */
async function runFerryAria2(swarm: Swarm, work: string, check: boolean): Promise<number> {
  const stagingDir = join(work, 'staging');
  await mkdir(stagingDir, { recursive: true });
  const daemon = await startAria2Daemon({ dir: join(work, 'daemon'), secret: 'bench-secret' });
  const aria2 = new Aria2Downloader({
    rpcUrl: daemon.rpcUrl,
    secret: daemon.secret,
    policy: new OutboundPolicy({ allowNetworks: ['127.0.0.0/8'] }),
    dataDir: join(work, 'swarms'),
  });
  const job: DownloadJob = {
    source: { kind: 'torrent', torrentFile: swarm.torrentFile },
    stagingDir,
    connections: 1,
    speedLimit: 0,
    timeoutMs: 0,
    maxBytes: 0,
    signal: new AbortController().signal,
    onProgress: () => undefined,
    checkpoint: async () => undefined,
  };
  try {
    const t0 = performance.now();
    await aria2.download(job);
    const seconds = (performance.now() - t0) / 1000;
    if (check) await verify(stagingDir, swarm);
    return seconds;
  } finally {
    await aria2.close();
    await daemon.stop();
  }
}

async function runAria2(swarm: Swarm, work: string, address: string, check: boolean): Promise<number> {
  const dir = join(work, 'aria2');
  await mkdir(dir, { recursive: true });
  const torrentPath = join(work, 'bench.torrent');
  await writeFile(torrentPath, swarm.torrentFile);
  const port = await freePort(address);
  const t0 = performance.now();
  await new Promise<void>((resolve, reject) => {
    const child = spawn(
      'aria2c',
      [
        `--dir=${dir}`,
        '--seed-time=0',
        '--enable-dht=false',
        '--enable-dht6=false',
        '--bt-enable-lpd=false',
        '--enable-peer-exchange=false',
        `--listen-port=${port}`,
        `--interface=${address}`,
        `--bt-external-ip=${address}`,
        '--disable-ipv6=true',
        '--enable-rpc=false',
        '--file-allocation=none',
        '--bt-save-metadata=false',
        '--auto-save-interval=0',
        '--summary-interval=0',
        '--console-log-level=error',
        '--check-integrity=false',
        '--allow-overwrite=true',
        '--no-conf=true',
        torrentPath,
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.on('close', (code) =>
      code === 0 ? resolve() : reject(new Error(`aria2c exited ${code}: ${err}`)),
    );
  });
  const seconds = (performance.now() - t0) / 1000;
  if (check) await verify(dir, swarm);
  return seconds;
}

async function main(): Promise<void> {
  const sizeMiB = Number(arg('size', '256'));
  const runs = Number(arg('runs', '3'));
  const pieceKiB = Number(arg('piece', '256'));
  const only = arg('only', 'ferry,ferry-aria2,aria2c').split(',') as Contestant[];
  const notes: string[] = [];

  process.stderr.write(`building a ${sizeMiB} MiB torrent and starting the seeder...\n`);
  const swarm = await startSwarm({
    name: 'bench',
    pieceLength: pieceKiB * 1024,
    files: [{ path: 'payload.bin', size: sizeMiB * MiB }],
  });
  const results: Partial<Record<Contestant, { runs: RunResult[]; medianMiBps: number }>> = {};
  const work = await mkdtemp(join(tmpdir(), 'ferry-bench-bt-'));
  try {
    for (const who of only) {
      const list: RunResult[] = [];
      for (let i = 0; i < runs; i++) {
        const runDir = join(work, `${who}-${i}`);
        await mkdir(runDir, { recursive: true });
        const seconds =
          who === 'ferry'
            ? await runFerry(swarm, runDir, i === 0)
            : who === 'ferry-aria2'
              ? await runFerryAria2(swarm, runDir, i === 0)
              : await runAria2(swarm, runDir, `127.0.0.${11 + i}`, i === 0);
        await rm(runDir, { recursive: true, force: true });
        const mibps = sizeMiB / seconds;
        list.push({ seconds, mibps });
        process.stderr.write(`${who} run ${i + 1}: ${seconds.toFixed(2)} s, ${mibps.toFixed(1)} MiB/s\n`);
      }
      results[who] = { runs: list, medianMiBps: Math.round(median(list.map((r) => r.mibps)) * 10) / 10 };
    }
  } finally {
    await swarm.close();
    await rm(work, { recursive: true, force: true });
  }
  const leftovers = (await readdir(tmpdir())).filter(
    (n) => n.startsWith('ferry-bench-bt-') || n.startsWith('ferry-swarm-'),
  );
  if (leftovers.length > 0) notes.push(`temp folders left by other runs: ${leftovers.join(', ')}`);
  notes.push(
    'seeder: aria2c on 127.0.0.1 (check-integrity on, seed-ratio 0); tracker: opentracker on 127.0.0.1; DHT/LPD/PEX off',
    'ferry: built-in BitTorrent engine (webtorrent 3, TCP only, utp off), timed from download() to resolve (.torrent bytes, no metadata fetch); the file is hard-linked into staging',
    'ferry-aria2: Ferry driving an aria2c daemon over JSON-RPC (its aria2 downloader), timed from download() to resolve; the daemon starts before the clock',
    'aria2c: a second aria2c process as leecher with --seed-time=0, each run on its own 127.0.0.x, timed from spawn to exit',
  );

  const doc = {
    date: new Date().toISOString(),
    node: process.version,
    sizeMiB,
    pieceKiB,
    runs,
    cpus: (await import('node:os')).cpus().length,
    notes,
    results,
  };
  await mkdir(join(here, 'results'), { recursive: true });
  await writeFile(join(here, 'results', 'torrent-download.json'), `${JSON.stringify(doc, null, 2)}\n`);
  const rows = (Object.keys(results) as Contestant[]).map((who) => {
    const r = results[who];
    return `| ${who} | ${r?.runs.map((x) => x.mibps.toFixed(1)).join(' / ')} | **${r?.medianMiBps.toFixed(1)}** |`;
  });
  process.stdout.write(
    [
      `### BitTorrent download, ${sizeMiB} MiB from a loopback aria2c seeder (${pieceKiB} KiB pieces, ${runs} runs)`,
      '',
      '| leecher | runs (MiB/s) | median MiB/s |',
      '|---|---|---|',
      ...rows,
      '',
    ].join('\n'),
  );
}

await main();
