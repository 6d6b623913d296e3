import { test } from 'node:test';
import assert from 'node:assert/strict';
import { applyRetention, isoWeek } from '../../src/maintenance/retention.js';

const at = (iso: string, id = iso, sources = ['skimdb', 'tarballs']) => ({
  id,
  time: new Date(iso),
  sources,
});

test('keeps the newest of each period, for the last N periods that have one, per set of sources', () => {
  const snaps = [
    at('2026-11-20T10:00:00Z'),
    at('2026-11-21T10:00:00Z'),
    at('2026-11-22T09:00:00Z'),
    at('2026-11-22T10:00:00Z'),
    at('2026-11-22T10:30:00Z'),
    at('2026-11-22T11:00:00Z'),
    at('2026-11-22T11:00:00Z', 'other-group', ['skimdb']),
  ];
  const d = applyRetention(snaps, { last: 1, hourly: 2, daily: 2, weekly: 0, monthly: 0, yearly: 0 });
  const kept = d.filter((x) => x.keep).map((x) => x.id);
  assert.deepEqual(
    kept.sort(),
    ['2026-11-21T10:00:00Z', '2026-11-22T10:30:00Z', '2026-11-22T11:00:00Z', 'other-group'].sort(),
  );
  const newest = d.find((x) => x.id === '2026-11-22T11:00:00Z')!;
  assert.deepEqual(newest.reasons, ['last', 'hourly 2026-11-22T11', 'daily 2026-11-22']);
  assert.deepEqual(d.find((x) => x.id === '2026-11-22T10:30:00Z')!.reasons, ['hourly 2026-11-22T10']);
  assert.equal(d.find((x) => x.id === '2026-11-22T10:00:00Z')!.keep, false);
  // A group alone keeps its own newest: groups never steal each other's periods.
  assert.deepEqual(d.find((x) => x.id === 'other-group')!.reasons, [
    'last',
    'hourly 2026-11-22T11',
    'daily 2026-11-22',
  ]);
});

test('weekly uses ISO weeks; a policy that keeps nothing still keeps the newest', () => {
  assert.equal(isoWeek(new Date('2026-01-01T00:00:00Z')), '2026-W01');
  assert.equal(isoWeek(new Date('2027-01-01T00:00:00Z')), '2026-W53');
  const d = applyRetention([at('2026-11-01T00:00:00Z'), at('2026-11-02T00:00:00Z')], {
    last: 0,
    hourly: 0,
    daily: 0,
    weekly: 0,
    monthly: 0,
    yearly: 0,
  });
  assert.deepEqual(
    d.filter((x) => x.keep).map((x) => x.id),
    ['2026-11-02T00:00:00Z'],
  );
});

test('monthly and yearly over a long history keep exactly one per period', () => {
  const snaps = [];
  for (let day = 0; day < 800; day++)
    snaps.push(at(new Date(Date.UTC(2024, 0, 1) + day * 86_400_000).toISOString()));
  const d = applyRetention(snaps, { last: 0, hourly: 0, daily: 7, weekly: 4, monthly: 12, yearly: 3 });
  const kept = d.filter((x) => x.keep);
  // 7 days, plus weeks/months/years not already covered: at most 7 + 4 + 12 + 3.
  assert.ok(kept.length <= 26 && kept.length >= 20, `${kept.length} kept`);
  assert.equal(d.filter((x) => x.reasons.some((r) => r.startsWith('yearly'))).length, 3);
});
