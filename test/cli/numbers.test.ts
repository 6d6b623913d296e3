import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fraction, wholeNumber } from '../../src/cli/numbers.js';
import { UsageError } from '../../src/errors.js';

test('numeric options: whole numbers and fractions, anything else a usage error naming the option', () => {
  const parallel = wholeNumber('--parallel', 1);
  assert.equal(parallel('8'), 8);
  assert.equal(parallel(' 12 '), 12);
  for (const bad of ['0', '-1', '1.5', '8x', '', 'abc', '1e3'])
    assert.throws(
      () => parallel(bad),
      (e: Error) => e instanceof UsageError && /--parallel/.test(e.message),
      bad,
    );
  assert.equal(wholeNumber('--keep-last')('0'), 0);
  const t = fraction('--repack-threshold');
  assert.equal(t('0.3'), 0.3);
  assert.equal(t('1'), 1);
  for (const bad of ['1.1', '-0.1', 'abc', '', 'NaN'])
    assert.throws(
      () => t(bad),
      (e: Error) => e instanceof UsageError && /--repack-threshold/.test(e.message),
      bad,
    );
});
