// A checkpoint must never describe a staging file it was not taken from. A run that starts its
// staging file over (the old one is gone, e.g. a finished download was moved into storage just
// before a crash) and then dies before its first checkpoint must not let the next run resume
// the fresh, zero-filled file with the previous run's segment map.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HttpDownloader } from '../../src/downloaders/http/http.downloader.ts';
import { DownloadFailure, type DownloadJob } from '../../src/downloaders/port.ts';
import { OutboundPolicy } from '../../src/net/address-policy.ts';
import { expectedSha256, startOrigin, type Origin } from '../helpers/origin.ts';

const MiB = 1024 * 1024;

let origin: Origin;
let root: string;
before(async () => {
  origin = await startOrigin();
  root = await mkdtemp(join(tmpdir(), 'ferry-stale-checkpoint-'));
});
after(async () => {
  await origin.close();
  await rm(root, { recursive: true, force: true });
});

test('a run killed right after starting its staging file over does not resume the old segment map', async () => {
  const size = 2 * MiB;
  const url = origin.route('/restart.bin', { size, seed: 31, throttle: 1 * MiB });
  const stagingDir = join(root, 'task');
  await mkdir(stagingDir);
  const partPath = join(stagingDir, '.ferry-http.part');
  // What the database holds: the last checkpoint saved before the "process" died.
  let saved: unknown = undefined;
  let dead = false;
  const job = (controller: AbortController, onProgress: () => void = () => undefined): DownloadJob => ({
    source: { kind: 'http', url },
    stagingDir,
    connections: 2,
    speedLimit: 0,
    timeoutMs: 0,
    maxBytes: 0,
    ...(saved !== undefined ? { resume: saved } : {}),
    signal: controller.signal,
    onProgress,
    checkpoint: async (state) => {
      if (!dead) saved = structuredClone(state);
    },
  });
  const engine = (): HttpDownloader =>
    new HttpDownloader({
      policy: new OutboundPolicy({ allowNetworks: ['127.0.0.1/32'] }),
      retry: { baseDelayMs: 20, maxDelayMs: 200, attempts: 5 },
      checkpointIntervalMs: 60_000, // no timed checkpoint inside the short second run
    });

  // 1. A full download: its last checkpoint claims every byte. The file is then moved away (the
  //    runner imported it into storage) and the process dies before the task is marked done.
  const first = await engine().download(job(new AbortController()));
  await rm(first.files[0]?.stagingPath ?? '');

  // 2. The next run finds no staging file, starts a fresh (preallocated) one, and is killed
  //    before its first timed checkpoint: nothing it would save after the kill reaches the DB.
  const ctl = new AbortController();
  const second = engine().download(
    job(ctl, () => {
      if (!dead && existsSync(partPath)) {
        dead = true;
        ctl.abort();
      }
    }),
  );
  await assert.rejects(second, (e) => e instanceof DownloadFailure && e.failure === 'CANCELED');
  assert.ok(dead, 'the second run created its staging file');

  // 3. The run after that resumes from whatever the database holds: the file must be right.
  dead = false;
  const third = await engine().download(job(new AbortController()));
  const body = await readFile(third.files[0]?.stagingPath ?? '');
  assert.equal(body.length, size);
  assert.equal(createHash('sha256').update(body).digest('hex'), expectedSha256(size, 31));
});
