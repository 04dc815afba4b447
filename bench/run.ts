// `npm run bench`: runs every benchmark in this folder one after another (each runs its
// contestants side by side in one process tree), then writes docs/BENCHMARKS.md from the
// JSON results in bench/results/. `--quick` uses small sizes; `--only name,name` picks some;
// `--report` only re-renders the document from existing results.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';

const root = join(import.meta.dirname, '..');
const args = process.argv.slice(2);
const quick = args.includes('--quick');
const only = args.includes('--only') ? (args[args.indexOf('--only') + 1] ?? '').split(',') : null;

interface Bench {
  name: string;
  script: string;
  args: string[];
  quickArgs: string[];
}

const BENCHES: Bench[] = [
  {
    name: 'http-download',
    script: 'bench/http-download.ts',
    args: ['--size', '512', '--runs', '3'],
    quickArgs: ['--size', '64', '--runs', '1'],
  },
  {
    name: 'torrent-download',
    script: 'bench/torrent-download.ts',
    args: [],
    quickArgs: ['--size', '32', '--runs', '1'],
  },
  {
    name: 'scaleout',
    script: 'bench/scaleout.ts',
    args: ['--files', '40', '--runs', '3'],
    quickArgs: ['--files', '16', '--size', '1', '--runs', '1'],
  },
  {
    name: 'serving',
    script: 'bench/serving.ts',
    args: ['--size', '1024', '--runs', '5', '--seconds', '10', '--files', '1000'],
    quickArgs: ['--size', '128', '--runs', '1', '--seconds', '3', '--files', '200'],
  },
  {
    name: 'scale',
    script: 'bench/scale.ts',
    args: ['--tasks', '100000', '--files', '100000', '--requests', '300'],
    quickArgs: ['--tasks', '20000', '--files', '20000', '--requests', '50'],
  },
  {
    name: 'footprint',
    script: 'bench/footprint.ts',
    args: ['--downloads', '200', '--size', '8', '--throttle', '128'],
    quickArgs: ['--downloads', '50', '--size', '2', '--throttle', '128'],
  },
];

if (!args.includes('--report')) {
  for (const bench of BENCHES) {
    if (only && !only.includes(bench.name)) continue;
    if (!existsSync(join(root, bench.script))) {
      console.log(`skip ${bench.name}: ${bench.script} not present`);
      continue;
    }
    console.log(`\n=== ${bench.name} ===`);
    const result = spawnSync(process.execPath, [bench.script, ...(quick ? bench.quickArgs : bench.args)], {
      cwd: root,
      stdio: 'inherit',
    });
    if (result.status !== 0) console.log(`${bench.name} exited with ${result.status}`);
  }
}

// A contestant measured in MiB/s (medianMiBps, runs[].mibps), or in any other unit (median +
// unit, runs[].value; lowerIsBetter for latencies and sizes, guessed from the unit when absent;
// extra numeric fields such as p99 are shown as details).
interface Contestant {
  medianMiBps?: number;
  median?: number;
  unit?: string;
  lowerIsBetter?: boolean;
  skipped?: string;
  runs?: Array<{ seconds: number; mibps?: number; value?: number }>;
  [key: string]: unknown;
}

const LOWER_IS_BETTER_UNITS = new Set(['ms', 's', 'MiB', 'MB', 'KiB', 'cores', 'millicores']);
const num = (v: number): string => (Math.abs(v) >= 100 ? v.toFixed(0) : Number(v.toFixed(2)).toString());
interface ResultFile {
  date?: string;
  node?: string;
  sizeMiB?: number;
  runs?: number;
  notes?: string[];
  results?: Record<string, Record<string, Contestant>>;
  [key: string]: unknown;
}

const resultsDir = join(root, 'bench', 'results');
const files = existsSync(resultsDir)
  ? readdirSync(resultsDir)
      .filter((f) => f.endsWith('.json'))
      .sort()
  : [];
const lines: string[] = [
  '# Benchmarks',
  '',
  'Produced by `npm run bench` (`node bench/run.ts`), which runs each benchmark in `bench/` with its',
  'anchors side by side in one process tree and renders this page from `bench/results/*.json`.',
  'Numbers are medians of the runs listed; every byte travels over loopback on the machine below.',
  '',
  `Machine: ${cpus().length} × ${cpus()[0]?.model.trim() ?? 'CPU'}, ${Math.round(totalmem() / 1024 ** 3)} GiB RAM, ${process.platform}, Node ${process.version}.`,
  'The 2 cores are shared by the server under test, the origin and the contestants, so absolute',
  'numbers are modest and vary by ±20 % between runs; compare rows of the same table.',
  '',
];
for (const file of files) {
  const data = JSON.parse(readFileSync(join(resultsDir, file), 'utf8')) as ResultFile;
  lines.push(`## ${file.replace(/\.json$/, '')}`, '');
  const meta = Object.entries(data)
    .filter(([k, v]) => k !== 'results' && k !== 'notes' && (typeof v === 'string' || typeof v === 'number'))
    .map(([k, v]) => `${k}: ${String(v)}`);
  if (meta.length) lines.push(meta.join(' · '), '');
  // Results are either { scenario: { contestant: … } } or flat { contestant: … }.
  const raw = data.results ?? {};
  const flat = Object.values(raw).some(
    (v) => 'medianMiBps' in v || 'median' in v || 'runs' in v || 'skipped' in v,
  );
  const scenarios = (flat ? { results: raw } : raw) as Record<string, Record<string, Contestant>>;
  for (const [scenario, contestants] of Object.entries(scenarios)) {
    const all = Object.values(contestants);
    if (all.some((c) => c.median !== undefined)) {
      // Generic units: a row per contestant, its own unit; "vs best" only among equal units.
      const units = new Set(all.map((c) => c.unit ?? ''));
      const lower = all.some((c) => c.lowerIsBetter ?? LOWER_IS_BETTER_UNITS.has(c.unit ?? ''));
      const values = all.map((c) => c.median ?? NaN).filter(Number.isFinite);
      const best = lower ? Math.min(...values) : Math.max(...values);
      lines.push(
        `### ${scenario}`,
        '',
        '| contestant | median | runs | vs best | details |',
        '|---|---|---|---|---|',
      );
      for (const [name, c] of Object.entries(contestants)) {
        if (c.skipped) {
          lines.push(`| ${name} | — | skipped: ${c.skipped} | | |`);
          continue;
        }
        const unit = c.unit ? ` ${c.unit}` : '';
        const runs = (c.runs ?? []).map((r) => num(r.value ?? r.mibps ?? 0)).join(', ');
        const ratio =
          units.size === 1 && c.median !== undefined && best > 0 && all.length > 1
            ? `${(c.median / best).toFixed(2)}×`
            : '';
        const details = Object.entries(c)
          .filter(([k, v]) => typeof v === 'number' && !['median', 'medianMiBps'].includes(k))
          .map(([k, v]) => `${k} ${num(v as number)}${unit}`)
          .join(', ');
        lines.push(
          `| ${name} | ${c.median !== undefined ? num(c.median) : '—'}${unit} | ${runs} | ${ratio} | ${details} |`,
        );
      }
      lines.push('');
      continue;
    }
    const medians = all.map((c) => c.medianMiBps ?? 0);
    const best = Math.max(...medians);
    lines.push(
      `### ${scenario}`,
      '',
      '| contestant | median MiB/s | runs (MiB/s) | vs best |',
      '|---|---|---|---|',
    );
    for (const [name, c] of Object.entries(contestants)) {
      if (c.skipped) {
        lines.push(`| ${name} | — | skipped: ${c.skipped} | |`);
        continue;
      }
      const runs = (c.runs ?? []).map((r) => (r.mibps ?? 0).toFixed(0)).join(', ');
      const ratio = best > 0 && c.medianMiBps ? `${(c.medianMiBps / best).toFixed(2)}×` : '';
      lines.push(`| ${name} | ${c.medianMiBps?.toFixed(1) ?? '—'} | ${runs} | ${ratio} |`);
    }
    lines.push('');
  }
  for (const note of data.notes ?? []) lines.push(`- ${note}`);
  if (data.notes?.length) lines.push('');
}
writeFileSync(join(root, 'docs', 'BENCHMARKS.md'), lines.join('\n'));
console.log('wrote docs/BENCHMARKS.md');
