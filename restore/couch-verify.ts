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
 * (`GET /db`; servers that do not report deleted documents are counted through `_all_docs`), every leaf's
 * revision history (the ancestors the listing recorded, asked with `POST _revs_diff`: a history written short
 * is found, not only a wrong leaf), and `_security`.
 */
export interface VerifyExpectations {
  /** Compare the database's counts (only when the database holds nothing but the restored documents). */
  counts?: { docCount: number; deletedCount: number };
  /** The `_security` object to find, when the restore wrote one. */
  security?: unknown;
}

const MAX_DETAILS = 20;
/** Leaves whose history is read back at once (`_bulk_get?revs=true`) to confirm what `_revs_diff` named. */
const CONFIRM_BATCH = 50;
const CONFIRM_BYTES = 8 * 1024 * 1024;

/** The revisions of a `_revisions` history ({start, ids}, newest first), as `<generation>-<hash>`. */
function historyOf(h: { start?: number; ids?: string[] } | undefined): Set<string> {
  if (!h || !Number.isSafeInteger(h.start) || !Array.isArray(h.ids)) return new Set();
  return new Set(h.ids.map((x, k) => `${h.start! - k}-${x}`));
}

interface BulkGetAnswer {
  results?: {
    id?: unknown;
    docs?: { ok?: { _rev?: unknown; _revisions?: { start?: number; ids?: string[] } } }[];
  }[];
}

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
  let histories = 0;
  let historiesOk = 0;
  let unrecorded = 0;
  const historyDiffs: string[] = [];
  const limit = pLimit(Math.max(1, parallel));
  const batches: Promise<void>[] = [];
  const runBatch = async (docs: DocEntry[]) => {
    await Promise.all([winners(docs), ancestry(docs)]);
  };
  const winners = async (docs: DocEntry[]) => {
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
  // Every recorded ancestor must be in the document's revision tree: _revs_diff names those that are not. For a
  // document with one leaf every revision of its tree is on that leaf's path; documents with several leaves are
  // checked leaf by leaf in the conflict pass below (a sibling's path could hold the ancestors).
  const ancestry = async (docs: DocEntry[]) => {
    const ask = Object.create(null) as Record<string, string[]>; // an ID may be "constructor"
    const leavesOf = new Map<string, string[]>(); // "<id>\0<ancestor>" → the leaves whose history has it
    const sizeOf = new Map<string, number>(); // "<id>\0<leaf>" → its body's size
    let n = 0;
    for (const d of docs)
      for (const l of d.leaves) {
        if (d.leaves.length > 1) continue;
        sizeOf.set(`${d.id}\0${l.rev}`, l.body.size);
        if (!l.ancestors) {
          if (Number.parseInt(l.rev, 10) > 1) unrecorded++;
          continue;
        }
        n++;
        for (const a of l.ancestors) {
          const k = `${d.id}\0${a}`;
          const leaves = leavesOf.get(k);
          if (leaves) leaves.push(l.rev);
          else {
            leavesOf.set(k, [l.rev]);
            (ask[d.id] ??= []).push(a);
          }
        }
      }
    if (n === 0) return;
    histories += n;
    const { body } = await dest.json<Record<string, { missing?: string[] }>>('POST', `${path}/_revs_diff`, {
      db,
      body: ask,
    });
    // `_revs_diff` names ancestors missing from the tree; a server may also name those it holds without a body
    // (PouchDB does): each leaf it names is confirmed by reading that revision's own history (`_bulk_get`, a few
    // dozen at a time; on CouchDB only leaves that are indeed short get here).
    const suspects = new Map<string, { id: string; leaf: string; missing: string[] }>();
    for (const [id, r] of Object.entries(body ?? {}))
      for (const a of r?.missing ?? [])
        for (const leaf of leavesOf.get(`${id}\0${a}`) ?? []) {
          const k = `${id}\0${leaf}`;
          const s = suspects.get(k);
          if (s) s.missing.push(a);
          else suspects.set(k, { id, leaf, missing: [a] });
        }
    let short = 0;
    const list = [...suspects.values()];
    for (let i = 0; i < list.length;) {
      // A few dozen leaves, and a few MiB of bodies, a request (the answer is read whole).
      let j = i + 1;
      let bytes = sizeOf.get(`${list[i]!.id}\0${list[i]!.leaf}`) ?? 0;
      while (j < list.length && j - i < CONFIRM_BATCH) {
        bytes += sizeOf.get(`${list[j]!.id}\0${list[j]!.leaf}`) ?? 0;
        if (bytes > CONFIRM_BYTES) break;
        j++;
      }
      const part = list.slice(i, j);
      i = j;
      const { body: got } = await dest.json<BulkGetAnswer>('POST', `${path}/_bulk_get?revs=true`, {
        db,
        body: { docs: part.map((x) => ({ id: x.id, rev: x.leaf })) },
      });
      const held = new Map<string, Set<string>>(); // "<id>\0<rev>" → the revisions of its history
      for (const res of got.results ?? [])
        for (const d of res.docs ?? []) {
          if (typeof res.id !== 'string' || typeof d.ok?._rev !== 'string') continue;
          held.set(`${res.id}\0${d.ok._rev}`, historyOf(d.ok._revisions));
        }
      for (const { id, leaf, missing } of part) {
        const h = held.get(`${id}\0${leaf}`);
        const lacking = missing
          .filter((a) => !h?.has(a))
          .sort((a, b) => Number.parseInt(b, 10) - Number.parseInt(a, 10));
        if (lacking.length === 0) continue;
        short++;
        if (historyDiffs.length < MAX_DETAILS)
          historyDiffs.push(
            `${JSON.stringify(id)} ${leaf}: its history lacks ${lacking.join(', ')} (written short${h ? '' : '; the revision was not returned'})`,
          );
      }
    }
    historiesOk += n - short;
  };
  let batch: DocEntry[] = [];
  for await (const e of entries) {
    if (e.local) continue;
    total++;
    if (e.leaves.length > 1)
      conflicted.push({
        ...e,
        leaves: e.leaves.map((l) => ({
          rev: l.rev,
          deleted: l.deleted,
          body: { size: 0, chunks: [] },
          ...(l.ancestors ? { ancestors: l.ancestors } : {}),
        })),
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
        const { status, body } = await dest.json<
          { ok?: { _rev?: string; _revisions?: { start?: number; ids?: string[] } } }[]
        >('GET', `${path}/${docPath(d.id)}?open_revs=all&revs=true`, { db, notFound: 'return' });
        const served =
          status === 200 && Array.isArray(body) ? body.flatMap((x) => (x.ok?._rev ? [x.ok] : [])) : [];
        const got = served.map((x) => x._rev!).sort();
        // Each leaf's own history (its path), against the ancestors recorded for it.
        for (const l of d.leaves) {
          if (!l.ancestors) {
            if (Number.parseInt(l.rev, 10) > 1) unrecorded++;
            continue;
          }
          histories++;
          const h = historyOf(served.find((x) => x._rev === l.rev)?._revisions);
          const lacking = l.ancestors.filter((a) => !h.has(a));
          if (lacking.length === 0) historiesOk++;
          else if (historyDiffs.length < MAX_DETAILS)
            historyDiffs.push(
              `${JSON.stringify(d.id)} ${l.rev}: its history lacks ${lacking.join(', ')} (written short)`,
            );
        }
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

  checks.push({
    object: db,
    check:
      unrecorded === 0
        ? 'revision histories'
        : `revision histories (${unrecorded} revisions of this snapshot have no recorded history: not checked)`,
    ok: historiesOk === histories,
    expected: histories,
    actual: historiesOk,
    details: historyDiffs.length ? historyDiffs : undefined,
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
