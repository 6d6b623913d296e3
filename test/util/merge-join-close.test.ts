import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mergeJoin } from '../../src/util/ordered.js';

test('mergeJoin closes both inputs when its consumer stops early or fails', async () => {
  const closed: string[] = [];
  async function* gen(name: string, keys: string[]) {
    try {
      for (const k of keys) yield k;
    } finally {
      closed.push(name);
    }
  }
  for await (const pair of mergeJoin(
    gen('a', ['1', '2', '3']),
    gen('b', ['2', '4']),
    (x) => x,
    (x) => x,
    (x, y) => x.localeCompare(y),
  )) {
    if (pair[0] === '2') break;
  }
  assert.deepEqual(closed.sort(), ['a', 'b']);

  closed.length = 0;
  await assert.rejects(async () => {
    for await (const pair of mergeJoin(
      gen('a', ['1', '2']),
      gen('b', ['1']),
      (x) => x,
      (x) => x,
      (x, y) => x.localeCompare(y),
    )) {
      if (pair[0] === '1') throw new Error('consumer failed');
    }
  }, /consumer failed/);
  assert.deepEqual(closed.sort(), ['a', 'b']);
});
