import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  ACTIVE_STATUSES,
  canTransition,
  FINISHED_STATUSES,
  isTaskStatus,
  retryDelayMs,
  sourcesOf,
  TASK_STATUSES,
  type TaskStatus,
} from '../../src/domain/task-state.ts';

// The whole table, written out: a change here must be deliberate.
const ALLOWED: Record<TaskStatus, TaskStatus[]> = {
  queued: ['processing', 'canceled', 'error', 'suspending'], // → suspending: paused before it started
  processing: ['suspending', 'completed', 'error', 'canceled', 'queued'],
  suspending: ['processing', 'canceled', 'error', 'completed', 'queued'],
  error: [],
  canceled: [],
  completed: [],
};

test('transition table', () => {
  for (const from of TASK_STATUSES) {
    for (const to of TASK_STATUSES) {
      assert.equal(canTransition(from, to), ALLOWED[from].includes(to), `${from} → ${to}`);
    }
  }
});

test('finished statuses are terminal and nothing returns to queued from finished', () => {
  for (const from of FINISHED_STATUSES)
    for (const to of TASK_STATUSES) assert.equal(canTransition(from, to), false, `${from} → ${to}`);
  assert.deepEqual([...ACTIVE_STATUSES].sort(), ['processing', 'queued', 'suspending']);
  for (const s of TASK_STATUSES) assert.equal(canTransition(s, s), false, `${s} → itself`);
});

test('sourcesOf is the inverse of the table', () => {
  assert.deepEqual(sourcesOf('processing').sort(), ['queued', 'suspending']);
  assert.deepEqual(sourcesOf('completed').sort(), ['processing', 'suspending']);
  assert.deepEqual(sourcesOf('canceled').sort(), ['processing', 'queued', 'suspending']);
  assert.deepEqual(sourcesOf('queued').sort(), ['processing', 'suspending']);
  assert.deepEqual(sourcesOf('suspending').sort(), ['processing', 'queued']);
});

test('isTaskStatus and retry backoff', () => {
  assert.equal(isTaskStatus('queued'), true);
  assert.equal(isTaskStatus('running'), false);
  assert.equal(
    retryDelayMs(1, () => 0),
    1000,
  );
  assert.equal(
    retryDelayMs(1, () => 1),
    2000,
  );
  assert.equal(
    retryDelayMs(3, () => 1),
    8000,
  );
  assert.equal(
    retryDelayMs(50, () => 1),
    300_000,
  );
  assert.equal(
    retryDelayMs(50, () => 0),
    150_000,
  );
});
