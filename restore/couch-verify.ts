import { isDeepStrictEqual } from 'node:util';
import pLimit from 'p-limit';
import { docPath, dbPath } from '../src/couchdb/client.js';
import type { DocEntry } from '../src/repo/format/couchdb-listing.js';
import type { CouchDestination } from './couch-http.js';
import type { Check } from './types.js';

/**
 * Verification of a restored database against the snapshot: every document's winning revision and deleted
 * flag (`POST _all_docs` with `keys`, which also answers for deleted documents), the full set of leaf
 * revisions of every document with conflicts (`open_revs=all`), the document and deleted-document counts
 * (`GET /db`; servers that do not report deleted documents are counted through `_all_docs`), and `_security`.
 */
export interface VerifyExpectations {
  /** Compare the database's counts (only when the database holds nothing but the restored documents). */
  counts?: { docCount: number; deletedCount: number };
  /** The `_security` object to find, when the restore wrote one. */
  security?: unknown;
}

const MAX_DETAILS = 20;

interface Row {
  key?: string;
  error?: string;
  value?: { rev: string; deleted?: boolean };
}

export async function verifyDatabase(
  dest: CouchDestination,
  db: string,
  entries: AsyncIterable<DocEntry>,
  expect: VerifyExpectations,
  parallel = 8,
): Promise<Check[]> {
  const path = dbPath(db);
  const checks: Check[] = [];
  let total = 0;
  let matched = 0;
  let live = 0;
  let deleted = 0;
  const revDiffs: string[] = [];
  const conflicted: DocEntry[] = [];
  const limit = pLimit(Math.max(1, parallel));
  const batches: Promise<void>[] = [];
  const runBatch = async (docs: DocEntry[]) => {
    const { body } = await dest.json<{ rows?: Row[] }>('POST', `${path}/_all_docs`, {
      db,
      body: { keys: docs.map((d) => d.id) },
    });
    const rows = body.rows ?? [];
    docs.forEach((d, i) => {
      const r = rows[i];
      const got = r?.value ? `${r.value.rev}${r.value.deleted ? ' (deleted)' : ''}` : (r?.error ?? 'missing');
      if (r?.value?.deleted) deleted++;
      else if (r?.value) live++;
      const want = `${d.rev}${d.deleted ? ' (deleted)' : ''}`;
      if (r?.key === d.id && got === want) matched++;
      else if (revDiffs.length < MAX_DETAILS)
        revDiffs.push(`${JSON.stringify(d.id)}: expected ${want}, found ${got}`);
    });
  };
  let batch: DocEntry[] = [];
  for await (const e of entries) {
    if (e.local) continue;
    total++;
    if (e.leaves.length > 1)
      conflicted.push({
        ...e,
        leaves: e.leaves.map((l) => ({ rev: l.rev, deleted: l.deleted, body: { size: 0, chunks: [] } })),
      });
    batch.push(e);
    if (batch.length >= 500) {
      const b = batch;
      batch = [];
      const p = limit(() => runBatch(b));
      p.catch(() => undefined); // awaited below; this only keeps an early failure from being "unhandled"
      batches.push(p);
      if (batches.length >= parallel * 2) await Promise.all(batches.splice(0, parallel));
    }
  }
  if (batch.length) batches.push(limit(() => runBatch(batch)));
  await Promise.all(batches);
  checks.push({
    object: db,
    check: 'winning revisions',
    ok: matched === total,
    expected: total,
    actual: matched,
    details: revDiffs.length ? revDiffs : undefined,
  });

  // Conflicts: the same leaves, deleted ones included.
  let leavesOk = 0;
  const leafDiffs: string[] = [];
  await Promise.all(
    conflicted.map((d) =>
      limit(async () => {
        const { status, body } = await dest.json<{ ok?: { _rev?: string } }[]>(
          'GET',
          `${path}/${docPath(d.id)}?open_revs=all&revs=false`,
          { db, notFound: 'return' },
        );
        const got =
          status === 200 && Array.isArray(body)
            ? body.flatMap((x) => (x.ok?._rev ? [x.ok._rev] : [])).sort()
            : [];
        const want = d.leaves.map((l) => l.rev).sort();
        if (isDeepStrictEqual(got, want)) leavesOk++;
        else if (leafDiffs.length < MAX_DETAILS)
          leafDiffs.push(
            `${JSON.stringify(d.id)}: expected leaves ${want.join(', ')}, found ${got.join(', ') || 'none'}`,
          );
      }),
    ),
  );
  checks.push({
    object: db,
    check: 'conflict leaves',
    ok: leavesOk === conflicted.length,
    expected: conflicted.length,
    actual: leavesOk,
    details: leafDiffs.length ? leafDiffs : undefined,
  });

  if (expect.counts) {
    const { body: info } = await dest.json<{ doc_count?: number; doc_del_count?: number }>('GET', path, {
      db,
    });
    checks.push({
      object: db,
      check: 'doc_count',
      ok: info.doc_count === expect.counts.docCount,
      expected: expect.counts.docCount,
      actual: info.doc_count ?? 'not reported',
    });
    if (typeof info.doc_del_count === 'number') {
      checks.push({
        object: db,
        check: 'doc_del_count',
        ok: info.doc_del_count === expect.counts.deletedCount,
        expected: expect.counts.deletedCount,
        actual: info.doc_del_count,
      });
    } else {
      // The server does not report deleted documents (PouchDB): count the tombstones found above.
      checks.push({
        object: db,
        check: 'deleted documents (counted; the server reports no doc_del_count)',
        ok: deleted === expect.counts.deletedCount,
        expected: expect.counts.deletedCount,
        actual: deleted,
      });
    }
  } else {
    checks.push({
      object: db,
      check: 'documents found (live + deleted)',
      ok: live + deleted === total,
      expected: total,
      actual: live + deleted,
    });
  }

  if (expect.security !== undefined) {
    const { body } = await dest.json<unknown>('GET', `${path}/_security`, { db });
    checks.push({
      object: db,
      check: '_security',
      ok: isDeepStrictEqual(body, expect.security),
      details: isDeepStrictEqual(body, expect.security)
        ? undefined
        : [`expected ${JSON.stringify(expect.security)}, found ${JSON.stringify(body)}`],
    });
  }
  return checks;
}
