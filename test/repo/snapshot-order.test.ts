import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { previousEntries } from '../../src/backup/plan.js';
import { IntegrityError } from '../../src/errors.js';
import { createLogger } from '../../src/log.js';
import { forget } from '../../src/maintenance/forget.js';
import {
  inTakenOrder,
  listInTakenOrder,
  listSnapshots,
  newManifest,
  sealSnapshot,
  type SnapshotInfo,
} from '../../src/repo/snapshot.js';
import { pickSnapshot } from '../../restore/open.js';
import { makeTestRepo, type TestRepo } from '../helpers/repo.js';

const log = createLogger({ level: 'silent' });
const SOURCES = [{ kind: 'couchdb', name: 'db' }];

/**
 * Two snapshots taken in the same second (backups take less than one now): the later one by the manifest's
 * millisecond has the smaller ID, so the name (second, then ID) puts the earlier one last. Every command
 * must call the later one the latest.
 */
describe('snapshots of the same second: one order, by the manifest time', () => {
  let t: TestRepo;
  let older: string;
  let earlier: string;
  let later: string;

  before(async () => {
    t = await makeTestRepo();
    const store = t.stores[0]!;
    const put = async (time: string, tags: string[]) => {
      const s = await sealSnapshot(t.repo, newManifest(t.repo, SOURCES, { time, tags }));
      await store.put(s.key, s.bytes);
      return s.id;
    };
    older = await put('2026-11-26T03:59:59.000Z', []);
    // The ID is the object's hash: draw until the later one sorts first by ID.
    for (let n = 0; ; n++) {
      const e = await sealSnapshot(
        t.repo,
        newManifest(t.repo, SOURCES, { time: '2026-11-26T04:00:00.100Z', tags: [`e${n}`] }),
      );
      const l = await sealSnapshot(
        t.repo,
        newManifest(t.repo, SOURCES, { time: '2026-11-26T04:00:00.900Z', tags: [`l${n}`] }),
      );
      if (l.id.localeCompare(e.id) < 0) {
        for (const s of [e, l]) await store.put(s.key, s.bytes);
        earlier = e.id;
        later = l.id;
        break;
      }
    }
  });
  after(() => t.close());

  test('the names alone put the earlier one last (the case this is about)', async () => {
    const names = await listSnapshots(t.stores[0]!);
    assert.deepEqual(
      names.map((s) => s.id),
      [older, later, earlier],
    );
  });

  test('listInTakenOrder: oldest first to the millisecond', async () => {
    const list = await listInTakenOrder(t.repo, t.stores[0]!);
    assert.deepEqual(
      list.map((s) => s.id),
      [older, earlier, later],
    );
    assert.equal(list[2]!.time.toISOString(), '2026-11-26T04:00:00.900Z');
  });

  test('restore (and dump, drill): "latest" is the later one; --at between the two takes the earlier', async () => {
    assert.equal((await pickSnapshot(t.repo, { snapshot: 'latest' })).info.id, later);
    assert.equal((await pickSnapshot(t.repo, {})).info.id, later);
    assert.equal((await pickSnapshot(t.repo, { at: new Date('2026-11-26T04:00:00.500Z') })).info.id, earlier);
  });

  test('backup: the parent and the previous entries come from the later one', async () => {
    const prev = await previousEntries(t.repo, t.stores, ['db'], log);
    assert.equal(prev.latest, later);
    assert.equal(prev.bySource.db!.snapshot, later);
  });

  test('forget --keep-last 1 keeps the later one: the same answer as "latest"', async () => {
    const r = await forget(
      t.repo,
      { last: 1, hourly: 0, daily: 0, weekly: 0, monthly: 0, yearly: 0 },
      { dryRun: true, logger: log },
    );
    assert.deepEqual(
      r.decisions.filter((d) => d.keep).map((d) => d.id),
      [later],
    );
  });

  test('a snapshot of the same second that cannot be read sorts before the readable ones', async () => {
    const info = (id: string, ms: number): SnapshotInfo => ({
      id,
      key: `snapshots/x-${id}`,
      time: new Date(Date.UTC(2026, 10, 26, 4, 0, 0, ms)),
    });
    const list = [info('b', 0), info('a', 0), info('c', 0), info('0', 0)];
    const times: Record<string, string | undefined> = {
      a: '2026-11-26T04:00:00.300Z',
      b: '2026-11-26T04:00:00.200Z',
      // A manifest whose time is of another second (renamed) does not move it.
      '0': '2026-11-26T04:00:01.999Z',
    };
    const ordered = await inTakenOrder(list, async (i) => {
      if (i.id === 'c') throw new IntegrityError('forged');
      return times[i.id];
    });
    assert.deepEqual(
      ordered.map((s) => s.id),
      ['0', 'c', 'b', 'a'],
    );
  });
});
