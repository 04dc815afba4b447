// The tasks repository on a real database, in-process (no server): every state change's
// allowed and refused sources, the lease guard, the JSON columns, the reads the schedulers
// use. Runs on SQLite and, with FERRY_TEST_DB=postgres, on a throwaway PostgreSQL database.
import { after, before, beforeEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openDatabase, type Database } from '../../src/db/database.ts';
import { TasksRepository } from '../../src/db/tasks.repository.ts';
import type { DownloadStatus, Task } from '../../src/domain/task.ts';
import { canTransition, type TaskStatus } from '../../src/domain/task-state.ts';
import { createThrowawayDatabase, dialect } from '../helpers/server.ts';

const LEASE = 'node-a';
const OTHER = 'node-b';
const T0 = 1_800_000_000_000;

let database: Database;
let repo: TasksRepository;
let cleanup: () => Promise<void>;
let owner: number;
let otherOwner: number;
const clock = { t: T0, now: () => clock.t };

before(async () => {
  if (dialect === 'postgres') {
    const pg = await createThrowawayDatabase();
    database = await openDatabase(pg.url, { poolSize: 4 });
    cleanup = () => pg.drop();
  } else {
    const dir = await mkdtemp(join(tmpdir(), 'ferry-repo-'));
    database = await openDatabase(join(dir, 'ferry.db'));
    cleanup = () => rm(dir, { recursive: true, force: true });
  }
  repo = new TasksRepository(database.db, clock);
  const group = await database.db
    .insertInto('groups')
    .values({
      name: 'users',
      is_admin: 0,
      quota_bytes: 1 << 30,
      allow_remote_download: 1,
      max_sources_per_request: 0,
      max_concurrent_tasks: 0,
      download_connections: 0,
      speed_limit: 0,
      created_at: T0,
    })
    .returning('id')
    .executeTakeFirstOrThrow();
  const user = async (email: string) =>
    (
      await database.db
        .insertInto('users')
        .values({
          email,
          nickname: email,
          password_hash: 'x',
          group_id: group.id,
          status: 'active',
          storage_used: 0,
          credential_version: 0,
          created_at: T0,
          updated_at: T0,
        })
        .returning('id')
        .executeTakeFirstOrThrow()
    ).id;
  owner = await user('a@example.com');
  otherOwner = await user('b@example.com');
});

after(async () => {
  await database.close();
  await cleanup();
});

beforeEach(async () => {
  clock.t = T0;
  await database.db.deleteFrom('tasks').execute();
});

async function newTask(ownerId = owner): Promise<Task> {
  return repo.create({
    owner_id: ownerId,
    public_id: randomUUID(),
    src: 'http://127.0.0.1:9/file.bin',
    src_file: '',
    dst: 'cloudreve://my/downloads',
    dst_folder_id: 1,
    options: { face: 'cloudreve', filename: 'f.bin', connections: 4 },
    selection: null,
    node_id: 1,
  });
}

/** The states a task can be found in, each set up directly on the row. */
const STATES = {
  queued: { status: 'queued', lease_owner: null, resume_time: null },
  processing: { status: 'processing', lease_owner: LEASE, resume_time: null },
  seeding: { status: 'suspending', lease_owner: LEASE, resume_time: null },
  'retry due': { status: 'suspending', lease_owner: null, resume_time: T0 - 1 },
  'retry later': { status: 'suspending', lease_owner: null, resume_time: T0 + 60_000 },
  completed: { status: 'completed', lease_owner: null, resume_time: null },
  error: { status: 'error', lease_owner: null, resume_time: null },
  canceled: { status: 'canceled', lease_owner: null, resume_time: null },
} as const;
type State = keyof typeof STATES;
const ALL = Object.keys(STATES) as State[];

async function taskIn(state: State): Promise<Task> {
  const task = await newTask();
  const s = STATES[state];
  await database.db
    .updateTable('tasks')
    .set({ status: s.status, lease_owner: s.lease_owner, resume_time: s.resume_time })
    .where('id', '=', task.id)
    .execute();
  return (await repo.get(task.id))!;
}

const STATUS: DownloadStatus = {
  name: 'f.bin',
  state: 'downloading',
  total: 100,
  downloaded: 40,
  download_speed: 10,
  uploaded: 0,
  upload_speed: 0,
  connections: 4,
  files: [{ index: 0, name: 'f.bin', size: 100, progress: 0.4, selected: true }],
};

/** Each state change: which states it may start from, what status it leads to. */
const CHANGES: Array<{
  name: string;
  to?: TaskStatus;
  allowed: State[];
  run: (task: Task) => Promise<unknown>;
}> = [
  {
    name: 'claim',
    to: 'processing',
    allowed: ['queued', 'retry due'],
    run: (t) => repo.claim(t.id, { lease: OTHER, leaseMs: 30_000, nodeId: 7 }),
  },
  {
    name: 'cancel',
    to: 'canceled',
    allowed: ['queued', 'processing', 'seeding', 'retry due', 'retry later'],
    run: (t) => repo.cancel(t.id),
  },
  {
    name: 'requeue',
    to: 'queued',
    allowed: ['processing', 'seeding'],
    run: (t) => repo.requeue(t.id, LEASE),
  },
  {
    name: 'startSeeding',
    to: 'suspending',
    allowed: ['processing'],
    run: (t) => repo.startSeeding(t.id, LEASE, STATUS),
  },
  {
    name: 'complete',
    to: 'completed',
    allowed: ['processing', 'seeding'],
    run: (t) => repo.complete(t.id, LEASE, { result_path: 'downloads/f.bin', result_size: 100 }),
  },
  {
    name: 'suspendForRetry',
    to: 'suspending',
    allowed: ['processing'],
    run: (t) =>
      repo.suspendForRetry(t.id, LEASE, {
        retry_count: 1,
        error: 'reset',
        failure: 'NETWORK',
        error_history: ['reset'],
        retryInMs: 2000,
      }),
  },
  {
    name: 'fail',
    to: 'error',
    allowed: ['processing', 'seeding'],
    run: (t) => repo.fail(t.id, LEASE, { error: 'gone', failure: 'NOT_FOUND' }),
  },
  {
    name: 'setPhase',
    allowed: ['processing', 'seeding'],
    run: (t) => repo.setPhase(t.id, LEASE, 'transfer'),
  },
  {
    name: 'saveProgress',
    allowed: ['processing', 'seeding'],
    run: (t) => repo.saveProgress(t.id, LEASE, STATUS),
  },
  {
    name: 'saveCheckpoint',
    allowed: ['processing', 'seeding'],
    run: async (t) => ((await repo.saveCheckpoint(t.id, LEASE, { segments: [[0, 40]] })) ? t : undefined),
  },
  {
    name: 'confirmHeld',
    allowed: ['processing', 'seeding'],
    run: async (t) => ((await repo.confirmHeld(t.id, LEASE)) ? t : undefined),
  },
];

for (const change of CHANGES) {
  test(`${change.name}: allowed from ${change.allowed.join(', ')}; refused from the rest`, async () => {
    for (const state of ALL) {
      const task = await taskIn(state);
      const result = await change.run(task);
      const after = (await repo.get(task.id))!;
      const allowed = change.allowed.includes(state);
      assert.equal(result !== undefined, allowed, `${change.name} from ${state}`);
      if (allowed && change.to) {
        assert.equal(after.status, change.to, `${change.name} from ${state}`);
        // The transition table agrees (the repository's conditions are built from it).
        assert.ok(canTransition(task.status, change.to), `${task.status} → ${change.to}`);
      } else {
        assert.equal(after.status, task.status, `${change.name} from ${state} left it alone`);
      }
    }
  });
}

test('a runner whose lease is not the task’s changes nothing', async () => {
  for (const state of ['processing', 'seeding'] as const) {
    const task = await taskIn(state);
    assert.equal(await repo.setPhase(task.id, OTHER, 'transfer'), undefined);
    assert.equal(await repo.saveProgress(task.id, OTHER, STATUS), undefined);
    assert.equal(await repo.saveCheckpoint(task.id, OTHER, { x: 1 }), false);
    assert.equal(await repo.confirmHeld(task.id, OTHER), false);
    assert.equal(await repo.complete(task.id, OTHER, {}), undefined);
    assert.equal(await repo.fail(task.id, OTHER, { error: 'x', failure: 'NETWORK' }), undefined);
    assert.equal(await repo.requeue(task.id, OTHER), undefined);
    const row = (await repo.get(task.id))!;
    assert.equal(row.status, task.status);
    assert.equal(row.phase, '');
    assert.equal(row.download_status, null);
    assert.equal(row.checkpoint, null);
  }
  const processing = await taskIn('processing');
  assert.equal(await repo.startSeeding(processing.id, OTHER, STATUS), undefined);
  assert.equal(
    await repo.suspendForRetry(processing.id, OTHER, {
      retry_count: 1,
      error: 'x',
      failure: 'NETWORK',
      error_history: [],
      retryInMs: 1,
    }),
    undefined,
  );
});

test('create: a queued task with its options and selection, read back typed', async () => {
  const task = await repo.create({
    owner_id: owner,
    public_id: 'pid-1',
    src: 'magnet:?xt=urn:btih:' + 'a'.repeat(40),
    src_file: '',
    dst: 'cloudreve://my',
    dst_folder_id: 3,
    options: {
      face: 'path',
      headers: { referer: 'http://127.0.0.1/' },
      checksum: { algorithm: 'sha256', hex: 'ab'.repeat(32) },
      preferredNodeId: 2,
    },
    selection: { exclude: [1], include: [] },
    node_id: 1,
  });
  assert.equal(task.status, 'queued');
  assert.equal(task.phase, '');
  assert.equal(task.created_at, T0);
  assert.deepEqual(task.error_history, []);
  assert.deepEqual(task.landed, []);
  assert.equal(task.download_status, null);
  assert.equal(task.checkpoint, null);
  assert.deepEqual(await repo.get(task.id), task);
  assert.deepEqual(task.options, {
    face: 'path',
    headers: { referer: 'http://127.0.0.1/' },
    checksum: { algorithm: 'sha256', hex: 'ab'.repeat(32) },
    preferredNodeId: 2,
  });
  assert.deepEqual(task.selection, { exclude: [1], include: [] });
  assert.deepEqual(await repo.findByPublicId(owner, 'pid-1'), task);
  assert.equal(await repo.findByPublicId(otherOwner, 'pid-1'), undefined);
  assert.equal(await repo.findOwned(otherOwner, task.id), undefined);
});

test('damaged JSON columns read as empty values instead of failing the read', async () => {
  const task = await newTask();
  await database.db
    .updateTable('tasks')
    .set({
      options: '{"face":"path","connections":"many","filename":7',
      download_status: '{"name":5,"downloaded":12,"files":[{"index":-1},{"index":2,"name":"b"}]}',
      error_history: '"not a list"',
      selection: '{"exclude":"x"}',
      landed: '[1,"2"]',
      checkpoint: '{',
    })
    .where('id', '=', task.id)
    .execute();
  const row = (await repo.get(task.id))!;
  assert.deepEqual(row.options, { face: 'cloudreve' });
  assert.deepEqual(row.download_status, {
    name: '',
    state: 'unknown',
    total: 0,
    downloaded: 12,
    download_speed: 0,
    uploaded: 0,
    upload_speed: 0,
    files: [{ index: 2, name: 'b', size: 0, progress: 0, selected: false }],
  });
  assert.deepEqual(row.error_history, []);
  assert.equal(row.selection, null);
  assert.deepEqual(row.landed, []);
  assert.equal(row.checkpoint, null);
});

test('claim: lease, node and start time; a second claim of a running task fails', async () => {
  const task = await newTask();
  clock.t = T0 + 5000;
  const claimed = (await repo.claim(task.id, { lease: LEASE, leaseMs: 30_000, nodeId: 9 }))!;
  assert.equal(claimed.status, 'processing');
  assert.equal(claimed.lease_owner, LEASE);
  assert.equal(claimed.lease_expires_at, T0 + 35_000);
  assert.equal(claimed.node_id, 9);
  assert.equal(claimed.started_at, T0 + 5000);
  assert.equal(claimed.run_count, 1, 'the first run');
  assert.equal(await repo.claim(task.id, { lease: OTHER, leaseMs: 30_000, nodeId: 2 }), undefined);
  // Retried later: the first start time stays.
  clock.t = T0 + 10_000;
  await repo.suspendForRetry(task.id, LEASE, {
    retry_count: 1,
    error: 'reset',
    failure: 'NETWORK',
    error_history: ['reset'],
    retryInMs: 2000,
  });
  assert.equal(await repo.claim(task.id, { lease: OTHER, leaseMs: 30_000, nodeId: 2 }), undefined, 'not due');
  clock.t = T0 + 12_000;
  const again = (await repo.claim(task.id, { lease: OTHER, leaseMs: 30_000, nodeId: 2 }))!;
  assert.equal(again.started_at, T0 + 5000);
  assert.equal(again.resume_time, null);
  assert.equal(again.retry_count, 1);
  assert.deepEqual(again.error_history, ['reset']);
  assert.equal(again.run_count, 2, 'every claim is a new run (its blob keys differ from the last one’s)');
});

test('outcomes write what they say and release the lease', async () => {
  const done = await taskIn('processing');
  clock.t = T0 + 1000;
  const completed = (await repo.complete(done.id, LEASE, {
    download_status: STATUS,
    result_path: 'downloads/f.bin',
    result_size: 100,
    phase: 'transfer',
  }))!;
  assert.equal(completed.ended_at, T0 + 1000);
  assert.equal(completed.phase, 'transfer');
  assert.deepEqual(completed.download_status, STATUS);
  assert.equal(completed.result_path, 'downloads/f.bin');
  assert.equal(completed.result_size, 100);
  assert.equal(completed.lease_owner, null);
  assert.equal(completed.lease_expires_at, null);

  const retried = await taskIn('processing');
  await repo.saveCheckpoint(retried.id, LEASE, { segments: [[0, 10]] });
  const suspended = (await repo.suspendForRetry(retried.id, LEASE, {
    retry_count: 2,
    error: 'reset',
    failure: 'NETWORK',
    error_history: ['a', 'reset'],
    retryInMs: 4000,
  }))!;
  assert.equal(suspended.status, 'suspending');
  assert.equal(suspended.resume_time, T0 + 1000 + 4000);
  assert.deepEqual(suspended.error_history, ['a', 'reset']);
  assert.equal(suspended.failure, 'NETWORK');
  assert.deepEqual(suspended.checkpoint, { segments: [[0, 10]] }, 'a retry resumes from its checkpoint');
  assert.equal(suspended.lease_owner, null);

  const failed = await taskIn('processing');
  await repo.saveCheckpoint(failed.id, LEASE, { segments: [] });
  const ended = (await repo.fail(failed.id, LEASE, { error: 'gone', failure: 'NOT_FOUND' }))!;
  assert.equal(ended.error, 'gone');
  assert.equal(ended.failure, 'NOT_FOUND');
  assert.equal(ended.ended_at, T0 + 1000);
  assert.equal(ended.checkpoint, null);
  assert.equal(ended.lease_owner, null);

  const canceled = (await repo.cancel((await taskIn('retry later')).id))!;
  assert.equal(canceled.resume_time, null);
  assert.equal(canceled.ended_at, T0 + 1000);

  const seeding = (await repo.startSeeding((await taskIn('processing')).id, LEASE, STATUS))!;
  assert.equal(seeding.phase, 'seeding');
  assert.equal(seeding.lease_owner, LEASE, 'a seeding task stays with its runner');
  assert.equal(seeding.resume_time, null);
});

test('progress, checkpoint, landed files, selection and result round-trip', async () => {
  const task = await taskIn('processing');
  clock.t = T0 + 2000;
  const progressed = (await repo.saveProgress(task.id, LEASE, STATUS))!;
  assert.deepEqual(progressed.download_status, STATUS);
  assert.equal(progressed.updated_at, T0 + 2000);
  assert.equal((await repo.setPhase(task.id, LEASE, 'monitor'))!.phase, 'monitor');
  await repo.saveCheckpoint(task.id, LEASE, { etag: '"x"', segments: [[0, 5]] });
  await repo.saveLanded(task.id, [0, 3]);
  await repo.saveSelection(task.id, [0, 3, 4]);
  await repo.saveResult(task.id, 'downloads/t', 12);
  const row = (await repo.get(task.id))!;
  assert.deepEqual(row.checkpoint, { etag: '"x"', segments: [[0, 5]] });
  assert.deepEqual(row.landed, [0, 3]);
  assert.deepEqual(row.selection, [0, 3, 4]);
  assert.equal(row.result_path, 'downloads/t');
  assert.equal(row.result_size, 12);
});

test('renewLeases extends only the leases still held', async () => {
  const mine = await taskIn('processing');
  const seeding = await taskIn('seeding');
  const taken = await taskIn('processing');
  await database.db.updateTable('tasks').set({ lease_owner: OTHER }).where('id', '=', taken.id).execute();
  const other = await taskIn('processing');
  await database.db.updateTable('tasks').set({ lease_owner: OTHER }).where('id', '=', other.id).execute();
  clock.t = T0 + 7000;
  // Each run renews under its own token: `taken` is held by another run now, `other` is ours
  // under the other token.
  const renewed = await repo.renewLeases(
    [
      { id: mine.id, lease: LEASE },
      { id: seeding.id, lease: LEASE },
      { id: taken.id, lease: LEASE },
      { id: other.id, lease: OTHER },
    ],
    30_000,
  );
  assert.deepEqual(
    renewed.sort((a, b) => a - b),
    [mine.id, seeding.id, other.id].sort((a, b) => a - b),
  );
  assert.equal((await repo.get(mine.id))!.lease_expires_at, T0 + 37_000);
  assert.equal((await repo.get(taken.id))!.lease_expires_at, null);
  assert.deepEqual(await repo.renewLeases([], 30_000), []);
});

test('requeueing running tasks: after a restart, after a lapsed lease, a node’s own', async () => {
  const setLease = (id: number, nodeId: number, expires: number | null) =>
    database.db
      .updateTable('tasks')
      .set({ node_id: nodeId, lease_expires_at: expires })
      .where('id', '=', id)
      .execute();
  const make = async (state: State, nodeId: number, expires: number | null) => {
    const t = await taskIn(state);
    await setLease(t.id, nodeId, expires);
    return t.id;
  };
  // This node's (1), another node's live one (2), another node's lapsed one, one without a lease,
  // a seeding one of this node, a retry waiting (not running: never requeued), a finished one.
  const own = await make('processing', 1, T0 + 10_000);
  const live = await make('processing', 2, T0 + 10_000);
  const lapsed = await make('processing', 2, T0 - 1);
  const unleased = await make('processing', 2, null);
  const seeding = await make('seeding', 1, T0 + 10_000);
  const waiting = await make('retry later', 1, null);
  const finished = await make('completed', 1, null);
  const ids = async (tasks: Promise<Task[]>) => (await tasks).map((t) => t.id).sort((a, b) => a - b);
  const statusOf = async (id: number) => (await repo.get(id))!.status;

  assert.deepEqual(await ids(repo.requeueInterrupted(1)), [own, lapsed, unleased, seeding]);
  assert.equal(await statusOf(live), 'processing');
  assert.equal(await statusOf(waiting), 'suspending');
  assert.equal(await statusOf(finished), 'completed');
  const requeued = (await repo.get(own))!;
  assert.equal(requeued.lease_owner, null);
  assert.equal(requeued.lease_expires_at, null);

  await database.db.deleteFrom('tasks').execute();
  const live2 = await make('processing', 2, T0 + 10_000);
  const lapsed2 = await make('seeding', 2, T0 - 1);
  await make('retry due', 2, T0 - 1);
  assert.deepEqual(await ids(repo.requeueLapsed()), [lapsed2]);
  assert.equal(await statusOf(live2), 'processing');

  const ofNode = await make('processing', 5, T0 + 10_000);
  await make('processing', 6, T0 + 10_000);
  assert.deepEqual(await ids(repo.requeueOfNode(5)), [ofNode]);
});

test('reads: runnable in id order without those running here, owners’ lists and counts', async () => {
  const a = await taskIn('queued');
  const b = await taskIn('retry due');
  await taskIn('retry later');
  await taskIn('seeding');
  const c = await taskIn('queued');
  const running = await taskIn('processing');
  const finished = await taskIn('completed');
  const theirs = await newTask(otherOwner);
  assert.deepEqual(
    (await repo.runnable([], 10)).map((t) => t.id),
    [a.id, b.id, c.id, theirs.id],
  );
  assert.deepEqual(
    (await repo.runnable([a.id], 2)).map((t) => t.id),
    [b.id, c.id],
  );
  const active = await repo.listOwned(owner, {
    statuses: ['queued', 'processing', 'suspending'],
    order: 'asc',
    limit: 100,
  });
  assert.ok(!active.some((t) => t.id === finished.id || t.id === theirs.id));
  assert.equal(active.length, 6);
  const page = await repo.listOwned(owner, {
    statuses: ['queued', 'processing', 'suspending', 'completed'],
    order: 'desc',
    limit: 2,
    beforeId: running.id,
  });
  assert.deepEqual(
    page.map((t) => t.id),
    [c.id, c.id - 1],
  );
  assert.deepEqual(await repo.getMany([a.id, theirs.id, 999_999]).then((r) => r.length), 2);
  assert.deepEqual([...(await repo.countProcessingByOwner([owner, otherOwner]))], [[owner, 1]]);
  assert.equal(await repo.countProcessing(otherOwner), 0);
  assert.equal(await repo.countActiveBefore(owner, c.id), 4);
  const counts = await repo.countByStatusAndNode();
  const queued = counts.find((r) => r.status === 'queued');
  assert.equal(queued?.n, 3);
  assert.equal(queued?.node_id, 1);
});

test('inside a transaction: a landing that rolls back leaves the task as it was', async () => {
  const task = await taskIn('processing');
  await assert.rejects(
    database.db.transaction().execute(async (tx) => {
      const done = await repo.in(tx).complete(task.id, LEASE, { phase: 'transfer' });
      assert.equal(done?.status, 'completed');
      await repo.in(tx).saveResult(task.id, 'x', 1);
      throw new Error('the file could not be inserted');
    }),
    /could not be inserted/,
  );
  const row = (await repo.get(task.id))!;
  assert.equal(row.status, 'processing');
  assert.equal(row.result_path, null);
  assert.equal(row.lease_owner, LEASE);
});

test('deleteByOwner removes one owner’s tasks only', async () => {
  await newTask();
  await newTask();
  const theirs = await newTask(otherOwner);
  await repo.deleteByOwner(owner);
  assert.equal((await repo.listOwned(owner, { statuses: ['queued'], order: 'asc', limit: 10 })).length, 0);
  assert.ok(await repo.get(theirs.id));
});

test('a failed task may keep its checkpoint, handed once to its retry', async () => {
  const kept = await taskIn('processing');
  await repo.saveCheckpoint(kept.id, LEASE, { segments: [[0, 40]] });
  const ended = (await repo.fail(kept.id, LEASE, {
    error: 'reset',
    failure: 'NETWORK',
    keepCheckpoint: true,
  }))!;
  assert.equal(ended.status, 'error');
  assert.deepEqual(ended.checkpoint, { segments: [[0, 40]] });

  // Only a finished task gives its checkpoint away, and only once.
  const running = await taskIn('processing');
  await repo.saveCheckpoint(running.id, LEASE, { segments: [[0, 1]] });
  assert.equal(await repo.takeCheckpoint(running.id), null);
  assert.deepEqual((await repo.get(running.id))!.checkpoint, { segments: [[0, 1]] });
  assert.deepEqual(await repo.takeCheckpoint(kept.id), { segments: [[0, 40]] });
  assert.equal(await repo.takeCheckpoint(kept.id), null);
  assert.equal((await repo.get(kept.id))!.checkpoint, null);

  const retry = await repo.create({
    owner_id: owner,
    public_id: randomUUID(),
    src: kept.src,
    src_file: '',
    dst: kept.dst,
    dst_folder_id: 1,
    options: kept.options,
    selection: null,
    node_id: 1,
    checkpoint: { segments: [[0, 40]] },
  });
  assert.equal(retry.status, 'queued');
  assert.deepEqual(retry.checkpoint, { segments: [[0, 40]] });
});

test('pause, settle and resume: from which states, and a paused task is neither claimed nor requeued', async () => {
  const allowed: State[] = ['queued', 'processing', 'retry due', 'retry later'];
  for (const state of ALL) {
    const task = await taskIn(state);
    const paused = await repo.pause(task.id);
    assert.equal(paused !== undefined, allowed.includes(state), `pause from ${state}`);
    if (!paused) continue;
    assert.equal(paused.status, 'suspending');
    assert.equal(paused.paused_at, T0);
    assert.equal(paused.resume_time, null);
    assert.equal(paused.lease_owner, task.lease_owner, 'a runner keeps its lease until it stopped');
  }
  // A paused task is never runnable, and a restart does not hand it back to the queue.
  assert.deepEqual(
    (await repo.runnable([], 100)).map((t) => t.paused_at),
    [],
    'only paused tasks were left runnable, and none of them is',
  );
  const running = await taskIn('processing');
  await repo.pause(running.id);
  const requeued = await repo.requeueInterrupted(1);
  assert.ok(!requeued.some((t) => t.id === running.id), 'a paused task stays paused at a restart');
  assert.equal(await repo.settlePaused(running.id, OTHER), undefined, 'only its runner settles it');
  const settled = (await repo.settlePaused(running.id, LEASE))!;
  assert.equal(settled.lease_owner, null);
  assert.equal(settled.status, 'suspending');

  // Resuming: a released task goes back to the queue; one whose runner has not stopped only
  // loses the pause (its runner requeues it).
  const back = (await repo.resume(settled.id))!;
  assert.deepEqual([back.status, back.paused_at], ['queued', null]);
  assert.equal(await repo.resume(settled.id), undefined, 'not paused any more');
  const held = await taskIn('processing');
  await repo.pause(held.id);
  const lifted = (await repo.resume(held.id))!;
  assert.deepEqual([lifted.status, lifted.paused_at, lifted.lease_owner], ['suspending', null, LEASE]);
  assert.equal((await repo.requeue(held.id, LEASE))?.status, 'queued');
});
