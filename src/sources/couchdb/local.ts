import { SourceError } from '../../errors.js';
import { writeBuffer } from '../../repo/stream-ref.js';
import type { DbRun } from './context.js';
import { encodeRecord, type DocEntry, type FetchedRecord } from '../../repo/format/couchdb-listing.js';

interface LocalDocsPage {
  rows?: { id?: unknown; value?: { rev?: unknown }; doc?: unknown }[];
}

/**
 * The `_local` documents (replication checkpoints and the like), read whole each run through `_local_docs`
 * (CouchDB 2.2+): they have no history, no attachments and are not in the changes feed. A server without
 * `_local_docs` (older CouchDB, the PouchDB server) gets a warning, not a failure. Returns sorter records.
 */
export async function* localDocRecords(run: DbRun): AsyncGenerator<string> {
  const limit = run.cfg.batchSize;
  let last: string | undefined;
  for (;;) {
    const qs = new URLSearchParams({ include_docs: 'true', limit: String(limit) });
    if (last !== undefined) {
      qs.set('startkey', JSON.stringify(last));
      qs.set('skip', '1');
    }
    const path = `${run.path}/_local_docs?${qs}`;
    const { status, body } = await run.client.json<LocalDocsPage>('GET', path, {
      db: run.db,
      notFound: 'return',
      pass: [400],
    });
    if (status === 404 || status === 400) {
      // Either the database is gone (GET /db says so: DbGoneError) or the server has no _local_docs.
      await run.client.json('GET', run.path, { db: run.db });
      run.findings.add({
        severity: 'warning',
        code: 'local-docs-unsupported',
        object: run.db,
        message: `includeLocal is set but the server has no _local_docs (HTTP ${status}; CouchDB 2.2 or later has it): _local documents are not backed up`,
      });
      return;
    }
    if (!body || !Array.isArray(body.rows)) {
      throw new SourceError(`${run.client.where(run.db)}: unexpected answer to GET /${run.path}/_local_docs`);
    }
    for (const row of body.rows) {
      const doc = row.doc as { _id?: unknown; _rev?: unknown } | undefined;
      if (typeof row.id !== 'string') continue;
      last = row.id;
      if (!doc || typeof doc !== 'object' || row.id.includes('\0')) continue;
      const rev =
        typeof doc._rev === 'string' ? doc._rev : typeof row.value?.rev === 'string' ? row.value.rev : '0-0';
      const raw = Buffer.from(JSON.stringify(doc));
      const ref = await writeBuffer(run.ctx.writer, raw, 'json');
      run.stats.localDocs++;
      run.ctx.progress.bytes += raw.length;
      const e: DocEntry = {
        id: row.id,
        rev,
        deleted: false,
        local: true,
        leaves: [{ rev, deleted: false, body: ref }],
      };
      const rec: FetchedRecord = { e };
      yield encodeRecord(row.id, rec);
    }
    if (body.rows.length < limit) return;
  }
}
