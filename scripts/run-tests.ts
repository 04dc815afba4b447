// Runs the whole test suite twice: on the embedded SQLite and on PostgreSQL (throwaway
// databases on 127.0.0.1:5432). `--sqlite` or `--postgres` runs one; extra args are files.
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

const args = process.argv.slice(2);
const only = args.find((a) => a === '--sqlite' || a === '--postgres');
const files = args.filter((a) => !a.startsWith('--'));

function collect(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return collect(path);
    return name.endsWith('.test.ts') ? [path] : [];
  });
}

const targets = files.length ? files : collect('test').sort();
const dialects = only ? [only.slice(2)] : ['sqlite', 'postgres'];
let failed = false;
for (const dialect of dialects) {
  console.log(`\n=== tests on ${dialect} (${targets.length} files) ===\n`);
  const result = spawnSync(
    process.execPath,
    ['--test', '--test-concurrency=2', '--test-timeout=300000', ...targets],
    {
      stdio: 'inherit',
      env: { ...process.env, FERRY_TEST_DB: dialect },
    },
  );
  if (result.status !== 0) failed = true;
}
process.exit(failed ? 1 : 0);
