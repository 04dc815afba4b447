#!/usr/bin/env node
// Ferry runs on Node 24 (type stripping, node:sqlite, crypto.argon2). The machine's node may be
// older; the npm package `node` installs Node 24 into node_modules, so re-exec with it when needed.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const major = Number(process.versions.node.split('.')[0]);
const entry = join(root, 'src', 'main.ts');
if (major >= 24) {
  await import(entry);
} else {
  const candidates = [
    join(root, 'node_modules', 'node', 'bin', 'node'),
    join(root, 'node_modules', '.bin', 'node'),
  ];
  const node24 = candidates.find((p) => existsSync(p));
  if (!node24) {
    console.error('ferry needs Node 24 or newer: run `npm install` in the ferry folder first.');
    process.exit(1);
  }
  const result = spawnSync(node24, [entry, ...process.argv.slice(2)], { stdio: 'inherit' });
  process.exit(result.status ?? 1);
}
