// Benchmark: Ferry's segmented HTTP engine vs aria2c (-x16 -s16 -k1M) vs curl (one stream), on a
// file served from disk by a loopback origin running in a child process.
//
//   npx node bench/http-download.ts                # 512 MiB, 3 runs
//   npx node bench/http-download.ts --size 64      # quick
//   options: --size MiB, --runs N, --connections N, --throttle MiB/s-per-connection, --only a,b, --ferry-undici
//
// Scenarios: "unthrottled" (all three) and "throttled" (every connection limited to 4 MiB/s by
// the origin; curl is left out there since one stream would only measure the throttle). Prints
// a JSON document and a markdown table, and writes bench/results/http-download.json. Staging goes
// to a temporary folder under /tmp that is deleted afterwards.
//
// Besides wall-clock speed, every run records the client's CPU time (user + system, including
// Ferry's fdatasync, which curl and aria2c do not do): on a small shared machine the wall clock
// mostly measures the neighbours, CPU per byte measures the client. `--ferry-undici` adds Ferry
// with its segment requests sent through undici (the engine before its own HTTP/1.1 client).

import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { mkdir, mkdtemp, open, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { HttpDownloader } from '../src/downloaders/http/http.downloader.ts';
import { OutboundPolicy } from '../src/net/address-policy.ts';
import { contentChunks, startOrigin } from '../test/helpers/origin.ts';

const MiB = 1024 * 1024;
const here = dirname(fileURLToPath(import.meta.url));

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? (process.argv[i + 1] ?? fallback) : fallback;
}

// ---------------------------------------------------------------------------------------------
// Child mode: the origin.

if (process.argv[2] === '--serve') {
  const file = process.argv[3] ?? '';
  const size = Number(process.argv[4]);
  const throttle = Number(process.argv[5]);
  const origin = await startOrigin();
  origin.route('/file.bin', { file: { path: file, size } });
  origin.route('/throttled.bin', { file: { path: file, size }, throttle });
  process.stdout.write(`${origin.port}\n`);
  process.stdin.resume();
  process.stdin.on('end', () => {
    void origin.close().then(() => process.exit(0));
  });
} else {
  await main();
}

// ---------------------------------------------------------------------------------------------

interface RunResult {
  seconds: number;
  mibps: number;
  /** Client CPU time (user + system), ms. */
  cpuMs: number;
}

type Contestant = 'ferry' | 'ferry-undici' | 'aria2c' | 'curl';

async function makeSource(path: string, size: number): Promise<string> {
  const fh = await open(path, 'w');
  const h = createHash('sha256');
  let pos = 0;
  for (const chunk of contentChunks(7, 0, size, 4 * MiB)) {
    h.update(chunk);
    await fh.write(chunk, 0, chunk.length, pos);
    pos += chunk.length;
  }
  await fh.close();
  return h.digest('hex');
}

async function sha256(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const c of createReadStream(path, { highWaterMark: 4 * MiB }) as AsyncIterable<Buffer>)
    h.update(c);
  return h.digest('hex');
}

/** Runs `cmd` under bash's `time` and resolves with its CPU time (user + system) in ms. */
function runProcess(cmd: string, args: string[]): Promise<number> {
  const quoted = [cmd, ...args].map((a) => `'${a.replaceAll("'", "'\\''")}'`).join(' ');
  return new Promise((resolve, reject) => {
    const child = spawn('bash', ['-c', `TIMEFORMAT='@cpu %U %S'; time ${quoted}`], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.on('exit', (code) => {
      if (code !== 0) {
        reject(new Error(`${cmd} exited ${code}: ${err.slice(0, 500)}`));
        return;
      }
      const m = /@cpu ([\d.]+) ([\d.]+)/.exec(err);
      resolve(m ? (Number(m[1]) + Number(m[2])) * 1000 : NaN);
    });
  });
}

async function main(): Promise<void> {
  const sizeMiB = Number(arg('size', '512'));
  const runs = Number(arg('runs', '3'));
  const connections = Number(arg('connections', '16'));
  const throttleMiB = Number(arg('throttle', '4'));
  const only = arg('only', 'ferry,aria2c,curl').split(',');
  if (process.argv.includes('--ferry-undici')) only.push('ferry-undici');
  const size = sizeMiB * MiB;
  const work = await mkdtemp(join(tmpdir(), 'ferry-bench-'));
  const notes: string[] = [];
  const hasAria = spawnSync('aria2c', ['--version']).status === 0;
  const hasCurl = spawnSync('curl', ['--version']).status === 0;
  if (!hasAria) notes.push('aria2c not installed: skipped');
  if (!hasCurl) notes.push('curl not installed: skipped');

  const source = join(work, 'source.bin');
  process.stderr.write(`generating ${sizeMiB} MiB source…\n`);
  const expected = await makeSource(source, size);

  const child = spawn(
    process.execPath,
    [fileURLToPath(import.meta.url), '--serve', source, String(size), String(throttleMiB * MiB)],
    { stdio: ['pipe', 'pipe', 'inherit'] },
  );
  const port = await new Promise<number>((resolve, reject) => {
    const rl = createInterface({ input: child.stdout });
    rl.once('line', (line) => resolve(Number(line)));
    child.once('exit', () => reject(new Error('origin exited')));
  });
  const base = `http://127.0.0.1:${port}`;

  const policy = new OutboundPolicy({ allowNetworks: ['127.0.0.1/32'] });
  const engine = new HttpDownloader({ policy });
  const undiciEngine = new HttpDownloader({ policy, rawSegments: false });

  const one = async (who: Contestant, path: string, verify: boolean): Promise<RunResult> => {
    const dir = join(work, `out-${who}`);
    await rm(dir, { recursive: true, force: true });
    await mkdir(dir);
    const url = `${base}${path}`;
    const t0 = performance.now();
    const cpu0 = process.cpuUsage();
    let cpuMs: number;
    let file: string;
    if (who === 'ferry' || who === 'ferry-undici') {
      const out = await (who === 'ferry' ? engine : undiciEngine).download({
        source: { kind: 'http', url },
        stagingDir: dir,
        connections,
        speedLimit: 0,
        timeoutMs: 0,
        maxBytes: 0,
        signal: new AbortController().signal,
        onProgress: () => undefined,
        checkpoint: async () => undefined,
      });
      file = out.files[0]?.stagingPath ?? '';
      const cpu = process.cpuUsage(cpu0);
      cpuMs = (cpu.user + cpu.system) / 1000;
    } else if (who === 'aria2c') {
      file = join(dir, 'out.bin');
      cpuMs = await runProcess('aria2c', [
        `-x${connections}`,
        `-s${connections}`,
        '-k1M',
        '--allow-overwrite=true',
        '--auto-file-renaming=false',
        '--console-log-level=error',
        '--summary-interval=0',
        '--download-result=hide',
        '-d',
        dir,
        '-o',
        'out.bin',
        url,
      ]);
    } else {
      file = join(dir, 'out.bin');
      cpuMs = await runProcess('curl', ['-sS', '--fail', '-o', file, url]);
    }
    const seconds = (performance.now() - t0) / 1000;
    const st = await stat(file);
    if (st.size !== size) throw new Error(`${who}: got ${st.size} bytes, expected ${size}`);
    if (verify && (await sha256(file)) !== expected) throw new Error(`${who}: checksum mismatch`);
    await rm(dir, { recursive: true, force: true });
    return { seconds, mibps: sizeMiB / seconds, cpuMs: Math.round(cpuMs) };
  };

  const scenarios: { name: string; path: string; contestants: Contestant[] }[] = [
    { name: 'unthrottled', path: '/file.bin', contestants: ['ferry', 'ferry-undici', 'aria2c', 'curl'] },
    {
      name: `throttled ${throttleMiB} MiB/s per connection`,
      path: '/throttled.bin',
      contestants: ['ferry', 'ferry-undici', 'aria2c'],
    },
  ];
  const results: Record<
    string,
    Record<string, { runs: RunResult[]; medianMiBps: number; medianCpuMs: number }>
  > = {};
  try {
    for (const sc of scenarios) {
      results[sc.name] = {};
      const contestants = sc.contestants.filter(
        (c) => only.includes(c) && (c !== 'aria2c' || hasAria) && (c !== 'curl' || hasCurl),
      );
      const perRun: Record<string, RunResult[]> = {};
      for (let r = 0; r < runs; r++) {
        // Interleave contestants and rotate their order every run, so drift and whatever the
        // previous run leaves behind (freed page cache, dirty pages) affect all alike.
        const order = contestants.map((_, i) => contestants[(i + r) % contestants.length] ?? 'ferry');
        for (const c of order) {
          const res = await one(c, sc.path, r === 0);
          (perRun[c] ??= []).push(res);
          process.stderr.write(
            `${sc.name} ${c} run ${r + 1}: ${res.mibps.toFixed(1)} MiB/s, ${res.cpuMs} ms CPU\n`,
          );
        }
      }
      for (const [c, rs] of Object.entries(perRun)) {
        const median = (xs: number[]): number => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;
        const bucket = results[sc.name];
        if (bucket) {
          bucket[c] = {
            runs: rs,
            medianMiBps: Number(median(rs.map((x) => x.mibps)).toFixed(1)),
            medianCpuMs: median(rs.map((x) => x.cpuMs)),
          };
        }
      }
    }
  } finally {
    child.stdin.end();
    await rm(work, { recursive: true, force: true });
  }

  const doc = {
    date: new Date().toISOString(),
    node: process.version,
    sizeMiB,
    runs,
    connections,
    throttleMiBPerConnection: throttleMiB,
    cpus: (await import('node:os')).cpus().length,
    notes,
    results,
  };
  const json = JSON.stringify(doc, null, 2);
  process.stdout.write(`${json}\n\n`);
  const lines = [
    '| scenario | contestant | median MiB/s | median CPU ms | runs (MiB/s) |',
    '|---|---|---|---|---|',
  ];
  for (const [sc, byC] of Object.entries(results)) {
    for (const [c, r] of Object.entries(byC)) {
      lines.push(
        `| ${sc} | ${c} | ${r.medianMiBps} | ${r.medianCpuMs} | ${r.runs.map((x) => x.mibps.toFixed(1)).join(', ')} |`,
      );
    }
  }
  process.stdout.write(`${lines.join('\n')}\n`);
  const outDir = join(here, 'results');
  if (!existsSync(outDir)) await mkdir(outDir, { recursive: true });
  await writeFile(join(outDir, 'http-download.json'), `${json}\n`);
}
