/**
 * The read floor of a revision-exact backup of one CouchDB database: the requests such a backup cannot do
 * without, with nothing done to the answers. `_all_docs?include_docs=true` (the server's cheapest full read)
 * gives neither revision histories nor conflicts; `_changes?style=all_docs` names every leaf and
 * `POST _bulk_get?revs=true` returns each with its `_revisions` — the pattern regbackup (and couchbackup) use.
 * Pages of `--batch` rows, each page's `_bulk_get` sent as soon as the page is read, `--inflight` at a time;
 * the answers are read to the end and dropped.
 *
 *   COUCH_URL=http://admin:secret@127.0.0.1:5984 node dist/bench/couch-read-floor.js <db> [--batch 500] [--inflight 4]
 *
 * Prints one JSON line: {"docs": n, "leaves": n, "bytes": n, "seconds": s}. Used by bench/scale-couch.ts.
 */
import { parseArgs } from 'node:util';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { batch: { type: 'string' }, inflight: { type: 'string' } },
});
const db = positionals[0];
const raw = process.env.COUCH_URL;
if (!db || !raw) throw new Error('usage: COUCH_URL=… couch-read-floor <db> [--batch N] [--inflight N]');
const batch = Number(values.batch ?? 500);
const inflight = Number(values.inflight ?? 4);
const u = new URL(raw);
const headers = {
  authorization: `Basic ${Buffer.from(`${decodeURIComponent(u.username)}:${decodeURIComponent(u.password)}`).toString('base64')}`,
  accept: 'application/json',
  'content-type': 'application/json',
};
const dbUrl = `${u.protocol}//${u.host}/${encodeURIComponent(db)}`;

let bytes = 0;
async function drain(res: Response, what: string): Promise<void> {
  if (!res.ok) throw new Error(`${what}: HTTP ${res.status}`);
  for await (const b of res.body as AsyncIterable<Uint8Array>) bytes += b.length;
}

interface Page {
  results: { id: string; changes: { rev: string }[] }[];
  last_seq: unknown;
  pending?: number;
}

const t0 = performance.now();
const pending = new Set<Promise<void>>();
let since: string | undefined;
let docs = 0;
let leaves = 0;
let failure: unknown;
for (;;) {
  const qs = new URLSearchParams({ style: 'all_docs', limit: String(batch), seq_interval: String(batch) });
  if (since !== undefined) qs.set('since', since);
  const res = await fetch(`${dbUrl}/_changes?${qs}`, { headers });
  if (!res.ok) throw new Error(`_changes: HTTP ${res.status}`);
  const page = (await res.json()) as Page;
  if (page.results.length === 0) break;
  since = typeof page.last_seq === 'string' ? page.last_seq : JSON.stringify(page.last_seq);
  const ask = page.results.flatMap((r) => r.changes.map((c) => ({ id: r.id, rev: c.rev })));
  docs += page.results.length;
  leaves += ask.length;
  while (pending.size >= inflight) await Promise.race(pending);
  const p = fetch(`${dbUrl}/_bulk_get?revs=true`, {
    method: 'POST',
    headers,
    body: JSON.stringify({ docs: ask }),
  }).then((r) => drain(r, '_bulk_get'));
  pending.add(p);
  // A failed read must fail the floor (a floor that skipped an answer would read too fast).
  void p
    .catch((err: unknown) => {
      failure ??= err;
    })
    .finally(() => pending.delete(p));
  if (page.pending === 0) break;
}
await Promise.allSettled(pending);
if (failure !== undefined) throw failure;
console.log(JSON.stringify({ docs, leaves, bytes, seconds: (performance.now() - t0) / 1000 }));
