import type { DbSnapshot } from '../../repo/format/source-snapshots.js';
import { writeBuffer, type StreamRef } from '../../repo/stream-ref.js';
import { isSeq, sameSeq } from './changes.js';
import { CouchHttpError } from '../../couchdb/client.js';
import type { DbRun } from './context.js';
import type { ListingCounts } from '../../repo/format/couchdb-listing.js';

/** What `GET /db` says (fields vary: CouchDB 1.x/2.x/3.x, PouchDB). */
export interface DbInfo {
  doc_count?: unknown;
  doc_del_count?: unknown;
  update_seq?: unknown;
  purge_seq?: unknown;
  instance_start_time?: unknown;
  uuid?: unknown;
  props?: unknown;
}

export async function dbInfo(run: DbRun): Promise<DbInfo> {
  const { body } = await run.client.json<DbInfo>('GET', run.path, { db: run.db });
  if (!body || typeof body !== 'object' || Array.isArray(body)) {
    throw new CouchHttpError(
      `${run.client.where(run.db)}: GET /${run.path} did not answer a database description`,
      200,
      undefined,
    );
  }
  return body;
}

/** The `_security` object, stored as a JSON blob; a server that will not show it gets a warning. */
export async function readSecurity(run: DbRun): Promise<StreamRef | undefined> {
  const p = `${run.path}/_security`;
  try {
    const bytes = await run.client.exchange('GET', p, { db: run.db }, async (res) =>
      Buffer.from(await res.arrayBuffer()),
    );
    run.client.parse(bytes, 'GET', p, run.db);
    return await writeBuffer(run.ctx.writer, bytes, 'json');
  } catch (err) {
    if (!(err instanceof CouchHttpError) || (err.status !== 401 && err.status !== 403)) throw err;
    run.findings.add({
      severity: 'warning',
      code: 'security-unreadable',
      object: run.db,
      message: `the _security object cannot be read with these credentials (HTTP ${err.status}); it is not in the snapshot`,
    });
    return undefined;
  }
}

/**
 * `_revs_limit`: how many revisions of history the database keeps (a restore sets it on the new database
 * before writing, or histories longer than the destination's default would be stemmed). Undefined where the
 * server does not serve it (PouchDB) or will not show it to these credentials (a warning).
 */
export async function readRevsLimit(run: DbRun): Promise<number | undefined> {
  const p = `${run.path}/_revs_limit`;
  const { status, body } = await run.client.json<unknown>('GET', p, {
    db: run.db,
    notFound: 'return',
    pass: [400, 401, 403, 405],
  });
  if (status === 401 || status === 403)
    run.findings.add({
      severity: 'warning',
      code: 'revs-limit-unreadable',
      object: run.db,
      message: `_revs_limit cannot be read with these credentials (HTTP ${status}); a restore keeps the destination's`,
    });
  return status === 200 && Number.isSafeInteger(body) && (body as number) > 0 ? (body as number) : undefined;
}

/** Why the previous snapshot cannot be continued incrementally, if it cannot. */
export function incrementalBlocker(run: DbRun, previous: DbSnapshot, info: DbInfo): string | undefined {
  if (!run.ctx.reader) return 'the previous listing cannot be read in this run (no reader)';
  const pi = previous.info ?? {};
  const ist = typeof info.instance_start_time === 'string' ? info.instance_start_time : undefined;
  if (
    pi.instanceStartTime &&
    ist &&
    pi.instanceStartTime !== '0' &&
    ist !== '0' &&
    pi.instanceStartTime !== ist
  ) {
    return `the database was re-created (instance_start_time ${pi.instanceStartTime} is now ${ist})`;
  }
  const uuid = typeof info.uuid === 'string' ? info.uuid : undefined;
  if (pi.uuid && uuid && pi.uuid !== uuid)
    return `the database was re-created (uuid ${pi.uuid} is now ${uuid})`;
  if (pi.purgeSeq !== undefined && isSeq(info.purge_seq) && !sameSeq(pi.purgeSeq, info.purge_seq)) {
    return 'documents were purged since the previous snapshot (purge_seq changed): purges are not in the changes feed';
  }
  return undefined;
}

export function countMismatch(info: DbInfo, c: ListingCounts): string | undefined {
  const problems: string[] = [];
  if (typeof info.doc_count === 'number' && info.doc_count !== c.docCount) {
    problems.push(
      `the listing has ${c.docCount} live documents, the server's doc_count is ${info.doc_count}`,
    );
  }
  if (typeof info.doc_del_count === 'number' && info.doc_del_count !== c.deletedCount) {
    problems.push(
      `the listing has ${c.deletedCount} deleted documents, the server's doc_del_count is ${info.doc_del_count}`,
    );
  }
  return problems.length ? problems.join('; ') : undefined;
}
