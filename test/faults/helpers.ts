// Shared pieces of the fault and load tests: task calls over the Cloudreve face, reading files
// back byte-exact, and the invariants every fault must leave intact — one file per completed
// task, no partial file, no orphan staging folder, no orphan blob.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { waitFor, type TestServer } from '../helpers/server.ts';

export interface Task {
  id: string;
  status: string;
  error?: string;
  summary?: { props: { download: null | { name: string; total: number; downloaded: number } } };
}

export const MiB = 1024 * 1024;
export const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

export async function createTasks(
  server: TestServer,
  token: string,
  src: string[],
  dst = 'cloudreve://my/dl',
  extra: Record<string, unknown> = {},
): Promise<Task[]> {
  const r = await server.api<Task[]>('POST', '/workflow/download', { token, body: { dst, src, ...extra } });
  assert.equal(r.body.code, 0, JSON.stringify(r.body));
  return r.body.data!;
}

export async function finished(
  server: TestServer,
  token: string,
  id: string,
  timeoutMs = 60_000,
): Promise<Task> {
  return waitFor(
    async () => {
      const r = await server.api<Task>('GET', `/workflow/${id}`, { token });
      return r.body.data && ['completed', 'error', 'canceled'].includes(r.body.data.status)
        ? r.body.data
        : undefined;
    },
    timeoutMs,
    `task ${id} to finish`,
  );
}

/** Failure code and message of a task, straight from the database (ids are hashids outside). */
export async function failureOf(
  server: TestServer,
  src: string,
): Promise<{ status: string; failure: string | null; error: string | null }> {
  const rows = await server.sql<{ status: string; failure: string | null; error: string | null }>(
    'SELECT status, failure, error FROM tasks WHERE src = ? ORDER BY id DESC',
    [src],
  );
  assert.ok(rows[0], `no task for ${src}`);
  return rows[0];
}

export async function signedUrl(server: TestServer, token: string, path: string): Promise<string> {
  const r = await server.api<{ urls: Array<{ url: string }> }>('POST', '/file/url', {
    token,
    body: { uris: [path] },
  });
  assert.equal(r.body.code, 0, JSON.stringify(r.body));
  return r.body.data!.urls[0]!.url;
}

export async function readBack(server: TestServer, token: string, path: string): Promise<Buffer> {
  const res = await fetch(await signedUrl(server, token, path));
  assert.equal(res.status, 200);
  return Buffer.from(await res.arrayBuffer());
}

export interface DriveFile {
  name: string;
  folder: string;
  size: number;
  storage_key: string;
}

/** Every file (not folder) in the database with its folder's name and blob key. */
export async function driveFiles(server: TestServer): Promise<DriveFile[]> {
  return server.sql<DriveFile>(
    `SELECT f.name AS name, p.name AS folder, f.size AS size, b.storage_key AS storage_key
       FROM files f JOIN files p ON p.id = f.parent_id JOIN blobs b ON b.id = f.blob_id
      WHERE f.type = 0 ORDER BY f.id`,
  );
}

async function walk(dir: string): Promise<string[]> {
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
  const out: string[] = [];
  for (const e of entries) {
    const path = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await walk(path)));
    else out.push(path);
  }
  return out;
}

/**
 * The storage invariants after any fault, once no task is running: `staging/tasks` holds
 * nothing but the partial data of tasks the network failed (kept for a retry), every file under `blobs/` (the temp folder aside) is referenced by exactly one blob
 * row, every blob row has its bytes on disk with the recorded size, and no blob is unreferenced.
 */
export async function assertNoOrphans(server: TestServer, dataDir = server.dataDir): Promise<void> {
  // A task the network failed keeps its partial data (and checkpoint) for a retry.
  const kept = new Set(
    (
      await server.sql<{ id: number }>(
        "SELECT id FROM tasks WHERE status = 'error' AND checkpoint IS NOT NULL",
      )
    ).map((r) => String(r.id)),
  );
  const staging = (await readdir(join(dataDir, 'staging', 'tasks')).catch(() => [] as string[])).filter(
    (name) => !kept.has(name),
  );
  assert.deepEqual(staging, [], `orphan staging folders: ${staging.join(', ')}`);
  const blobRoot = join(dataDir, 'blobs');
  const onDisk = (await walk(blobRoot)).map((p) => relative(blobRoot, p).split('\\').join('/'));
  const temp = onDisk.filter((k) => k.startsWith('.tmp/'));
  assert.deepEqual(temp, [], 'no leftover temp files in blob storage');
  const rows = await server.sql<{ storage_key: string; size: number; refs: number }>(
    `SELECT b.storage_key AS storage_key, b.size AS size,
            (SELECT COUNT(*) FROM files f WHERE f.blob_id = b.id) AS refs
       FROM blobs b`,
  );
  const keys = rows.map((r) => r.storage_key);
  assert.equal(new Set(keys).size, keys.length, 'one blob row per storage key');
  assert.deepEqual(
    [...onDisk].sort(),
    [...keys].sort(),
    'every stored blob file is referenced by exactly the blobs table',
  );
  for (const r of rows) assert.ok(Number(r.refs) >= 1, `blob ${r.storage_key} is referenced by no file`);
}

/** Waits until no task is queued, processing or waiting for a retry. */
export async function settled(server: TestServer, timeoutMs = 120_000): Promise<void> {
  await waitFor(
    async () => {
      const rows = await server.sql<{ n: number }>(
        "SELECT COUNT(*) AS n FROM tasks WHERE status IN ('queued', 'processing', 'suspending')",
      );
      return Number(rows[0]!.n) === 0 ? true : undefined;
    },
    timeoutMs,
    'every task to settle',
  );
}
