import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { PackInfo } from '../../src/repo/blob-index.js';
import { BlobType } from '../../src/repo/ids.js';
import type { Mark, MarkBody } from '../../src/maintenance/marks.js';
import {
  dueMarks,
  keepReason,
  oldRecords,
  packsToMark,
  sparsePacks,
  type PackState,
} from '../../src/maintenance/prune.js';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const now = new Date('2026-06-01T00:00:00Z');
const ago = (ms: number) => new Date(now.getTime() - ms).toISOString();

function mark(key: string, body: Partial<MarkBody> & Pick<MarkBody, 'kind' | 'time'>): Mark {
  return { key: `marks/${key}`, body: { version: 1, host: 'h', packs: [], repack: [], ...body } };
}

function pack(id: string, type: BlobType, live: number, dead: number): PackState {
  return { info: { id, type, size: live + dead } as PackInfo, live, dead };
}

describe('prune: which packs and marks', () => {
  test('due marks: marked, older than the grace period, not acted on by an execution still under way', () => {
    const grace = HOUR;
    const old = mark('old', { kind: 'marked', time: ago(2 * HOUR) });
    const young = mark('young', { kind: 'marked', time: ago(HOUR / 2) });
    const running = mark('running', { kind: 'marked', time: ago(3 * HOUR) });
    const abandoned = mark('abandoned', { kind: 'marked', time: ago(10 * HOUR) });
    const marks = [
      old,
      young,
      running,
      abandoned,
      mark('exec-running', { kind: 'executed', time: ago(HOUR), of: running.key }),
      // An execution older than max(grace, 6 h) whose mark is still there stopped: its mark is due again.
      mark('exec-abandoned', { kind: 'executed', time: ago(7 * HOUR), of: abandoned.key }),
      mark('forgotten', { kind: 'forgotten', time: ago(DAY) }),
    ];
    assert.deepEqual(
      dueMarks(marks, now, grace).map((m) => m.key),
      [old.key, abandoned.key],
    );
    // A grace period longer than 6 h is the abandonment time too.
    assert.deepEqual(
      dueMarks(marks, now, 8 * HOUR).map((m) => m.key),
      [],
    );
    assert.deepEqual(
      dueMarks(marks, now, 0).map((m) => m.key),
      [old.key, young.key, abandoned.key],
    );
  });

  test('sparse packs: some live, some dead, live share under the threshold; data packs only when rewritable', () => {
    const states = [
      pack('tree-sparse', BlobType.tree, 1, 9),
      pack('tree-full', BlobType.tree, 9, 1),
      pack('tree-dead', BlobType.tree, 0, 10),
      pack('tree-live', BlobType.tree, 10, 0),
      pack('data-sparse', BlobType.data, 1, 9),
    ];
    assert.deepEqual([...sparsePacks(states, 0.5, false)], ['tree-sparse']);
    assert.deepEqual([...sparsePacks(states, 0.5, true)], ['tree-sparse', 'data-sparse']);
    assert.deepEqual([...sparsePacks(states, 0.95, false)], ['tree-sparse', 'tree-full']);
    assert.deepEqual([...sparsePacks(states, 0.1, true)], []);
  });

  test('keep reason: under the minimum storage duration, then under the retention lock, else free to go', () => {
    assert.equal(keepReason(10, 30, 0), 'young');
    assert.equal(keepReason(10, 30, 60), 'young');
    assert.equal(keepReason(40, 30, 60), 'retention');
    assert.equal(keepReason(60, 30, 60), undefined);
    assert.equal(keepReason(Infinity, 365, 365), undefined);
    assert.equal(keepReason(0, 0, 0), undefined);
  });

  test('packs to mark: not already pending, not just deleted by a due mark, unless kept; sparse not unneeded', () => {
    const pending = mark('pending', { kind: 'marked', time: ago(HOUR), packs: ['p1'], repack: ['s1'] });
    const due = mark('due', { kind: 'marked', time: ago(DAY), packs: ['d1', 'k1'], repack: ['s2'] });
    const marks = [pending, due];
    const unneeded = new Set(['p1', 'd1', 'k1', 'n1']);
    const sparse = new Set(['s1', 's2', 's3', 'n1']);
    assert.deepEqual(packsToMark(marks, [due], unneeded, sparse, new Set(['k1']), false), {
      packs: ['k1', 'n1'],
      repack: ['s3'],
    });
    // Kept by this run's execution: marked again even if a pending mark names it.
    assert.deepEqual(packsToMark(marks, [due], unneeded, sparse, new Set(['p1', 's2']), false), {
      packs: ['p1', 'n1'],
      repack: ['s2', 's3'],
    });
    // A dry run acts on nothing: the due marks' packs are counted as to mark.
    assert.deepEqual(packsToMark(marks, [due], unneeded, sparse, new Set(), true), {
      packs: ['d1', 'k1', 'n1'],
      repack: ['s2', 's3'],
    });
  });

  test('old records: execution and forget records older than max(4 x grace, 30 days); marks stay', () => {
    const marks = [
      mark('exec-old', { kind: 'executed', time: ago(31 * DAY) }),
      mark('exec-new', { kind: 'executed', time: ago(29 * DAY) }),
      mark('forgot-old', { kind: 'forgotten', time: ago(31 * DAY) }),
      mark('marked-old', { kind: 'marked', time: ago(100 * DAY) }),
    ];
    assert.deepEqual(
      oldRecords(marks, now, HOUR).map((m) => m.key),
      ['marks/exec-old', 'marks/forgot-old'],
    );
    assert.deepEqual(
      oldRecords(marks, now, 10 * DAY).map((m) => m.key),
      [],
    );
  });
});
