import type { CouchSeq } from '../../repo/format/source-snapshots.js';
import { SourceError } from '../../errors.js';
import type { DbRun } from './context.js';

/** One document of the changes feed: its ID and its current leaf revisions (`style=all_docs`). */
export interface ChangeRow {
  id: string;
  revs: string[];
}

/** The server refused the `since` we gave (HTTP 400): the sequence is not one of this database's. */
export class SeqRefusedError extends SourceError {}

interface ChangesPage {
  results?: unknown;
  last_seq?: unknown;
  pending?: unknown;
}

export function isSeq(v: unknown): v is CouchSeq {
  return typeof v === 'string' || (typeof v === 'number' && Number.isFinite(v));
}

/** Sequences are opaque: equal when the server gave the same JSON value. */
export function sameSeq(a: CouchSeq | undefined, b: CouchSeq | undefined): boolean {
  return a !== undefined && b !== undefined && typeof a === typeof b && a === b;
}

/**
 * Reads `_changes?style=all_docs` from `since` page by page (`limit` = batch size), continuing from each
 * page's `last_seq`. A page is requested only when the consumer has taken the rows of the one before
 * (backpressure). `lastSeq` is the sequence reached, passed back unchanged as the next `since`.
 */
export class ChangesFeed {
  lastSeq: CouchSeq | undefined;

  constructor(
    private readonly run: DbRun,
    private readonly since: CouchSeq | undefined,
  ) {
    this.lastSeq = since;
  }

  async *rows(): AsyncGenerator<ChangeRow> {
    const { run } = this;
    const limit = run.cfg.batchSize;
    let since = this.since;
    for (;;) {
      const qs = new URLSearchParams({
        style: 'all_docs',
        limit: String(limit),
        seq_interval: String(limit),
      });
      if (since !== undefined) qs.set('since', String(since));
      const path = `${run.path}/_changes?${qs}`;
      const { status, body } = await run.client.json<ChangesPage>('GET', path, { db: run.db, pass: [400] });
      if (status === 400) {
        const reason = (body as { reason?: unknown }).reason;
        throw new SeqRefusedError(
          `${run.client.where(run.db)}: the server refused the sequence ${JSON.stringify(since)} (HTTP 400${typeof reason === 'string' ? `: ${reason}` : ''})`,
        );
      }
      const page = checkPage(body, run, path);
      for (const row of page.rows) yield row;
      this.lastSeq = page.lastSeq;
      since = page.lastSeq;
      if (page.rows.length === 0 || page.pending === 0 || (page.pending === undefined && page.count < limit))
        return;
    }
  }
}

function checkPage(
  body: ChangesPage,
  run: DbRun,
  path: string,
): { rows: ChangeRow[]; count: number; lastSeq: CouchSeq; pending?: number } {
  const bad = (what: string) =>
    new SourceError(`${run.client.where(run.db)}: unexpected answer to GET /${path.split('?')[0]}: ${what}`);
  if (!body || typeof body !== 'object' || !Array.isArray(body.results)) throw bad('no "results"');
  if (!isSeq(body.last_seq)) throw bad('no "last_seq"');
  const rows: ChangeRow[] = [];
  for (const r of body.results as unknown[]) {
    const row = r as { id?: unknown; changes?: unknown };
    if (!row || typeof row.id !== 'string' || !Array.isArray(row.changes)) throw bad('a malformed row');
    const revs = (row.changes as { rev?: unknown }[])
      .map((c) => c?.rev)
      .filter((x): x is string => typeof x === 'string');
    if (revs.length === 0) throw bad(`a row without revisions (${JSON.stringify(row.id)})`);
    rows.push({ id: row.id, revs: [...new Set(revs)] });
  }
  return {
    rows,
    count: body.results.length,
    lastSeq: body.last_seq,
    pending: typeof body.pending === 'number' ? body.pending : undefined,
  };
}

/**
 * The current leaves of some documents, without the feed since a sequence: `_changes?filter=_doc_ids`
 * from the start (one row per existing document). Used for documents whose fetch found a leaf gone and that
 * did not come back in the next round's changes.
 */
export async function currentLeaves(run: DbRun, ids: string[]): Promise<ChangeRow[]> {
  const path = `${run.path}/_changes?filter=_doc_ids&style=all_docs`;
  const { body } = await run.client.json<ChangesPage>('POST', path, { db: run.db, body: { doc_ids: ids } });
  return checkPage(body, run, path).rows;
}
