// Benchmark: memory and CPU of the server process per active download. A real Ferry server
// (SQLite, `--max-concurrent-tasks N --download-connections 2`) downloads N files at once from a
// throttled loopback origin in a child process; /proc/<pid>/status VmRSS and /proc/<pid>/stat
// utime+stime of the server are sampled every 250 ms while all N are running.
//
//   npx node bench/footprint.ts                    # 200 downloads of 8 MiB at 128 KiB/s per connection
//   npx node bench/footprint.ts --downloads 50 --size 2    # quick
//
// Writes bench/results/footprint.json. Loopback only, bounded by --timeout seconds.
import { spawn } from 'node:child_process';
import { readFile, mkdir, writeFile } from 'node:fs/promises';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { startServer } from '../test/helpers/server.ts';

const MiB = 1024 * 1024;
const KiB = 1024;

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? (process.argv[i + 1] ?? fallback) : fallback;
}

if (process.argv[2] === '--serve') {
  const { startOrigin } = await import('../test/helpers/origin.ts');
  const origin = await startOrigin();
  const size = Number(process.argv[3]);
  const throttle = Number(process.argv[4]);
  const count = Number(process.argv[5]);
  for (let i = 0; i < count; i++) origin.route(`/f${i}.bin`, { size, seed: i + 1, throttle });
  process.stdout.write(`${origin.port}\n`);
  process.stdin.resume();
  process.stdin.on('end', () => void origin.close().then(() => process.exit(0)));
} else {
  await main();
}

async function sample(pid: number): Promise<{ rssKiB: number; cpuTicks: number }> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const rssKiB = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // fields[11], [12] = utime, stime (fields 14 and 15 of the full line)
  const cpuTicks = Number(fields[11]) + Number(fields[12]);
  return { rssKiB, cpuTicks };
}

async function main(): Promise<void> {
  const downloads = Number(arg('downloads', '200'));
  const sizeMiB = Number(arg('size', '8'));
  const throttleKiB = Number(arg('throttle', '128'));
  const timeout = Number(arg('timeout', '300'));
  const ticksPerSecond = 100; // CLK_TCK on Linux
  const origin = spawn(
    process.execPath,
    [import.meta.filename, '--serve', String(sizeMiB * MiB), String(throttleKiB * KiB), String(downloads)],
    { stdio: ['pipe', 'pipe', 'inherit'] },
  );
  const port = await new Promise<number>((resolve, reject) => {
    createInterface({ input: origin.stdout }).once('line', (l) => resolve(Number(l)));
    origin.once('exit', () => reject(new Error('origin exited')));
  });
  const server = await startServer({
    args: [
      '--max-concurrent-tasks',
      String(downloads),
      '--download-connections',
      '2',
      '--allow-network',
      '127.0.0.1/32',
      '--torrent-downloader',
      'none',
    ],
  });
  try {
    const pid = await serverPid(server.port);
    const { access } = await server.signIn();
    const made = await server.api('POST', '/file/create', {
      token: access,
      body: { uri: 'cloudreve://my/fp', type: 'folder' },
    });
    if (made.body.code !== 0) throw new Error(`create folder: ${JSON.stringify(made.body)}`);
    // Let the process settle, then take the idle baseline.
    await new Promise((r) => setTimeout(r, 2000));
    const idle = await sample(pid);
    const sources = Array.from({ length: downloads }, (_, i) => `http://127.0.0.1:${port}/f${i}.bin`);
    // Group limits may cap sources per request: send in batches.
    for (let i = 0; i < sources.length; i += 50) {
      const r = await server.api('POST', '/workflow/download', {
        token: access,
        body: { dst: 'cloudreve://my/fp', src: sources.slice(i, i + 50) },
      });
      if (r.body.code !== 0) throw new Error(`create: ${JSON.stringify(r.body).slice(0, 300)}`);
    }
    const t0 = performance.now();
    const start = await sample(pid);
    let peakRss = 0;
    /** Where the memory is while all run: V8 heap, Buffers (external), from the server's /metrics. */
    let heapWhileAll: Record<string, number> | undefined;
    let mallocPeak = 0;
    const rssWhileAll: number[] = [];
    let maxProcessing = 0;
    let done = 0;
    let lastCheck = 0;
    let allRunning = false;
    let allRunningFrom: { t: number; ticks: number } | undefined;
    let allRunningTo: { t: number; ticks: number } | undefined;
    for (;;) {
      await new Promise((r) => setTimeout(r, 250));
      const s = await sample(pid);
      peakRss = Math.max(peakRss, s.rssKiB);
      const now = performance.now();
      if (now - lastCheck > 1000) {
        lastCheck = now;
        const rows = await server.sql<{ status: string; n: number }>(
          'SELECT status, COUNT(*) AS n FROM tasks GROUP BY status',
        );
        const by = Object.fromEntries(rows.map((r) => [r.status, Number(r.n)]));
        const processing = by.processing ?? 0;
        maxProcessing = Math.max(maxProcessing, processing);
        done = (by.completed ?? 0) + (by.error ?? 0) + (by.canceled ?? 0);
        allRunning = processing === downloads;
        if (allRunning) {
          allRunningFrom ??= { t: now, ticks: s.cpuTicks };
          allRunningTo = { t: now, ticks: s.cpuTicks };
        }
        mallocPeak = Math.max(mallocPeak, await mallocHeapMiB(pid));
        if (done >= downloads) break;
      }
      if (allRunning) rssWhileAll.push(s.rssKiB);
      if (allRunning && heapWhileAll === undefined) heapWhileAll = await heapOf(server.url);
      if (now - t0 > timeout * 1000) throw new Error(`timed out with ${done}/${downloads} done`);
    }
    const end = await sample(pid);
    const seconds = (performance.now() - t0) / 1000;
    const errors = await server.sql<{ n: number }>(
      "SELECT COUNT(*) AS n FROM tasks WHERE status <> 'completed'",
    );
    const failed = Number(errors[0]?.n ?? 0);
    const cpuSeconds = (end.cpuTicks - start.cpuTicks) / ticksPerSecond;
    const steadyCpu =
      allRunningFrom && allRunningTo && allRunningTo.t > allRunningFrom.t
        ? (allRunningTo.ticks - allRunningFrom.ticks) /
          ticksPerSecond /
          ((allRunningTo.t - allRunningFrom.t) / 1000)
        : cpuSeconds / seconds;
    const rssMiB = (k: number) => Number((k / 1024).toFixed(1));
    const sortedAll = [...rssWhileAll].sort((a, b) => a - b);
    const steadyRss = sortedAll[Math.floor(sortedAll.length / 2)] ?? peakRss;
    const results = {
      [`${downloads} concurrent downloads (${sizeMiB} MiB each, 2 connections, ${throttleKiB} KiB/s per connection)`]:
        {
          'peak RSS': { runs: [{ seconds, value: rssMiB(peakRss) }], median: rssMiB(peakRss), unit: 'MiB' },
          'idle RSS (before)': {
            runs: [{ seconds: 0, value: rssMiB(idle.rssKiB) }],
            median: rssMiB(idle.rssKiB),
            unit: 'MiB',
          },
          'RSS per active download (peak − idle) / N': {
            runs: [{ seconds, value: Number(((peakRss - idle.rssKiB) / downloads).toFixed(0)) }],
            median: Number(((peakRss - idle.rssKiB) / downloads).toFixed(0)),
            unit: 'KiB',
          },
          'CPU while all run (cores)': {
            runs: [{ seconds, value: Number(steadyCpu.toFixed(3)) }],
            median: Number(steadyCpu.toFixed(3)),
            unit: 'cores',
          },
          'CPU per active download': {
            runs: [{ seconds, value: Number(((steadyCpu * 1000) / downloads).toFixed(2)) }],
            median: Number(((steadyCpu * 1000) / downloads).toFixed(2)),
            unit: 'millicores',
          },
          'CPU per MiB downloaded': {
            runs: [{ seconds, value: Number(((cpuSeconds * 1000) / (downloads * sizeMiB)).toFixed(2)) }],
            median: Number(((cpuSeconds * 1000) / (downloads * sizeMiB)).toFixed(2)),
            unit: 'ms',
          },
        },
    };
    const notes = [
      `peak RSS ${rssMiB(peakRss)} MiB (target < 300 MB) — ${peakRss * 1024 < 300e6 ? 'met' : 'not met'}; steady RSS while all ${downloads} ran: ${rssMiB(steadyRss)} MiB; most tasks processing at once: ${maxProcessing}`,
      `${downloads - failed}/${downloads} completed in ${seconds.toFixed(1)} s; server CPU ${cpuSeconds.toFixed(1)} s in total`,
      ...(heapWhileAll
        ? [
            `while all ran (server /metrics): V8 heap used ${heapWhileAll.heapUsed} MiB of ${heapWhileAll.heapTotal} MiB, external ${heapWhileAll.external} MiB; largest glibc malloc heap ([heap] in /proc/pid/smaps, sampled each second) ${mallocPeak} MiB`,
          ]
        : []),
      'Where it went (heaptrack, then one change at a time): almost all native memory was ArrayBuffer backing stores — 801 BatchWriter buffers of 1 MiB and the undici probe body carrying each first segment (a fresh 64 KiB buffer per socket read). Now the first segment goes over the raw HTTP/1.1 client like the others when the probe would be cut anyway, BatchWriter starts at one 64 KiB buffer and grows only for fast links, and connections share one read scratch buffer: 505 → 335 MiB peak, CPU per MiB 11.1 → 6.2 ms. Left: idle RSS is already ~177 MiB (the node binary ~53 MiB, V8 heap pages ~60 MiB), V8 heap pages grow 40–60 MiB under load, and a stream of 87,368- and 32 KiB-byte allocations heaptrack could not attribute to JS frames is not traced yet.',
    ];
    const doc = {
      date: new Date().toISOString(),
      node: process.version,
      cpus: cpus().length,
      downloads,
      sizeMiB,
      throttleKiBPerConnection: throttleKiB,
      notes,
      results,
    };
    const json = JSON.stringify(doc, null, 2);
    process.stdout.write(`${json}\n`);
    await mkdir(join(import.meta.dirname, 'results'), { recursive: true });
    await writeFile(join(import.meta.dirname, 'results', 'footprint.json'), `${json}\n`);
  } finally {
    await server.stop();
    origin.stdin.end();
  }
}

/** The pid of the process listening on 127.0.0.1:port (from /proc/net/tcp and fd links). */
/** Heap figures (MiB) from the server's Prometheus default metrics. */
async function heapOf(base: string): Promise<Record<string, number>> {
  const text = await (await fetch(`${base}/metrics`)).text();
  const metric = (name: string): number => {
    const line = text.split('\n').find((l) => l.startsWith(name));
    return Math.round(Number(line?.split(' ').at(-1) ?? NaN) / 1048576);
  };
  return {
    heapUsed: metric('nodejs_heap_size_used_bytes'),
    heapTotal: metric('nodejs_heap_size_total_bytes'),
    external: metric('nodejs_external_memory_bytes'),
  };
}

/** Resident size of the process's brk heap (glibc malloc's main arena), MiB. */
async function mallocHeapMiB(pid: number): Promise<number> {
  const smaps = await readFile(`/proc/${pid}/smaps`, 'utf8');
  let inHeap = false;
  let kib = 0;
  for (const line of smaps.split('\n')) {
    if (/^[0-9a-f]+-[0-9a-f]+ /.test(line)) inHeap = line.trimEnd().endsWith('[heap]');
    else if (inHeap && line.startsWith('Rss:')) kib += Number(line.split(/\s+/)[1]);
  }
  return Math.round(kib / 1024);
}

async function serverPid(port: number): Promise<number> {
  const { readdir, readlink } = await import('node:fs/promises');
  const tcp = await readFile('/proc/net/tcp', 'utf8');
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  const line = tcp.split('\n').find((l) => {
    const cols = l.trim().split(/\s+/);
    return cols[1]?.endsWith(`:${hexPort}`) && cols[3] === '0A';
  });
  const inode = line?.trim().split(/\s+/)[9];
  if (!inode) throw new Error('listening socket not found');
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      for (const fd of await readdir(`/proc/${entry}/fd`)) {
        if ((await readlink(`/proc/${entry}/fd/${fd}`).catch(() => '')) === `socket:[${inode}]`)
          return Number(entry);
      }
    } catch {
      // not ours to read, or gone
    }
  }
  throw new Error('server pid not found');
}
