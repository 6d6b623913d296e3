import { isDeepStrictEqual } from 'node:util';
import pLimit from 'p-limit';
import { readListing } from '../src/repo/format/listing.js';
import type { DbSnapshot } from '../src/repo/format/source-snapshots.js';
import { messageOf } from '../src/errors.js';
import type { BlobReader } from '../src/repo/reader.js';
import { CouchClient, dbPath, docPath } from '../src/couchdb/client.js';
import { objectMembers } from '../src/util/json-split.js';
import { checkDocEntry } from '../src/repo/format/couchdb-listing.js';
import type { DrillCheck } from './drill-report.js';

/**
 * The drill's document checks, beyond the restore library's own verification (counts, tombstones, winning
 * revisions, conflicts): a sample of documents compared byte for byte with the source's current state, and
 * the standby answering as a registry needs it to — a document read by ID, a design-document view queried.
 */
export interface DocRef {
  id: string;
  rev: string;
}

export interface DbSample {
  /** Live documents (not deleted, not `_local`), chosen uniformly at random. */
  docs: DocRef[];
  /** Live design documents. */
  designDocs: string[];
  live: number;
}

const MAX_DETAILS = 20;

/** Reads the database's listing once and samples `n` live documents (reservoir sampling). */
export async function sampleDatabase(
  reader: BlobReader,
  db: DbSnapshot,
  n: number,
  random = Math.random,
): Promise<DbSample> {
  const docs: DocRef[] = [];
  const designDocs: string[] = [];
  let live = 0;
  for await (const e of readListing(reader, db.listing, checkDocEntry, `listing of database ${db.name}`)) {
    if (e.local || e.deleted) continue;
    if (e.id.startsWith('_design/')) {
      designDocs.push(e.id);
      continue;
    }
    live++;
    if (docs.length < n) docs.push({ id: e.id, rev: e.rev });
    else {
      const j = Math.floor(random() * live);
      if (j < n) docs[j] = { id: e.id, rev: e.rev };
    }
  }
  return { docs, designDocs, live };
}

interface Got {
  status: number;
  bytes: Buffer;
}

export function getRaw(client: CouchClient, db: string, id: string, query = ''): Promise<Got> {
  return client.exchange(
    'GET',
    `${dbPath(db)}/${docPath(id)}${query}`,
    { db, notFound: 'return' },
    async (res) => ({ status: res.status, bytes: Buffer.from(await res.arrayBuffer()) }),
  );
}

function revOf(bytes: Buffer): string | undefined {
  try {
    const j = JSON.parse(bytes.toString('utf8')) as { _rev?: unknown };
    return typeof j._rev === 'string' ? j._rev : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The sampled documents that the source still holds at the snapshot's revision must be byte-equal in the
 * standby. Documents changed or deleted since the snapshot are counted and skipped.
 */
export async function compareWithSource(
  source: CouchClient | undefined,
  standby: CouchClient,
  sourceDb: string,
  scratch: string,
  sample: DocRef[],
  parallel = 8,
): Promise<DrillCheck> {
  const object = `${sourceDb} -> ${scratch}`;
  const check =
    'sampled documents byte-equal to the source (those unchanged since the snapshot; attachment stubs by digest)';
  if (!source)
    return {
      group: 'documents',
      object,
      check,
      ok: true,
      skipped: true,
      details: ['the source is not in the configuration: nothing to compare with'],
    };
  let unchanged = 0;
  let equal = 0;
  let changed = 0;
  let gone = 0;
  const diffs: string[] = [];
  const limit = pLimit(parallel);
  try {
    await Promise.all(
      sample.map((d) =>
        limit(async () => {
          const src = await getRaw(source, sourceDb, d.id);
          if (src.status === 404) {
            gone++;
            return;
          }
          if (src.status !== 200)
            throw new Error(`the source answered HTTP ${src.status} for ${JSON.stringify(d.id)}`);
          if (revOf(src.bytes) !== d.rev) {
            changed++;
            return;
          }
          unchanged++;
          const got = await getRaw(standby, scratch, d.id);
          if (got.status === 200 && sameDocument(got.bytes, src.bytes)) equal++;
          else if (diffs.length < MAX_DETAILS) {
            const why =
              got.status !== 200
                ? `HTTP ${got.status}`
                : `${sameJson(got.bytes, src.bytes) ? 'same JSON, different bytes' : 'different content'} (${got.bytes.length} bytes, source ${src.bytes.length}; first difference at byte ${firstDifference(got.bytes, src.bytes)}: ${JSON.stringify(context(got.bytes, firstDifference(got.bytes, src.bytes)))} vs ${JSON.stringify(context(src.bytes, firstDifference(got.bytes, src.bytes)))})`;
            diffs.push(`${JSON.stringify(d.id)} ${d.rev}: ${why}`);
          }
        }),
      ),
    );
  } catch (err) {
    return {
      group: 'documents',
      object,
      check,
      ok: true,
      skipped: true,
      details: [`the source could not be read: ${messageOf(err)}`],
    };
  }
  return {
    group: 'documents',
    object,
    check,
    ok: equal === unchanged,
    expected: unchanged,
    actual: equal,
    details: [
      `${sample.length} sampled: ${unchanged} unchanged at the source, ${changed} changed since the snapshot, ${gone} deleted since`,
      ...diffs,
    ],
  };
}

function firstDifference(a: Buffer, b: Buffer): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return n;
}

function context(b: Buffer, at: number): string {
  return b.subarray(Math.max(0, at - 40), at + 40).toString('utf8');
}

/**
 * Byte-equal, member by member, in the same order — except `_attachments`, whose stubs each server renders
 * itself (key order, and `revpos`, which CouchDB can report as 0 after a `new_edits=false` write): those are
 * compared by name, content type, digest and length.
 */
export function sameDocument(a: Buffer, b: Buffer): boolean {
  if (a.equals(b)) return true;
  let ma: Map<string, { start: number; end: number }>;
  let mb: Map<string, { start: number; end: number }>;
  try {
    ma = objectMembers(a);
    mb = objectMembers(b);
  } catch {
    return false;
  }
  const ka = [...ma.keys()];
  const kb = [...mb.keys()];
  if (ka.length !== kb.length || ka.some((k, i) => k !== kb[i])) return false;
  for (const k of ka) {
    const ra = ma.get(k)!;
    const rb = mb.get(k)!;
    if (k === '_attachments') {
      const stubs = (buf: Buffer, r: { start: number; end: number }) => {
        const o = JSON.parse(buf.toString('utf8', r.start, r.end)) as Record<
          string,
          { content_type?: unknown; digest?: unknown; length?: unknown }
        >;
        return Object.fromEntries(
          Object.entries(o).map(([n, s]) => [n, [s.content_type, s.digest, s.length]]),
        );
      };
      if (!isDeepStrictEqual(stubs(a, ra), stubs(b, rb))) return false;
    } else if (!a.subarray(ra.start, ra.end).equals(b.subarray(rb.start, rb.end))) return false;
  }
  return true;
}

function sameJson(a: Buffer, b: Buffer): boolean {
  try {
    return isDeepStrictEqual(JSON.parse(a.toString('utf8')), JSON.parse(b.toString('utf8')));
  } catch {
    return false;
  }
}

/** The view the drill adds when the database has none of its own: every document by ID. */
export const DRILL_DESIGN_DOC = '_design/regbackup-drill';

/**
 * The standby serves: a document read by ID (a scoped package when the sample has one: its ID needs
 * encoding) has the snapshot's winning revision, and a design-document view answers — the database's own
 * first view when it has one, else a view the drill adds (and which must find the document by its key).
 */
export async function standbyServes(
  standby: CouchClient,
  scratch: string,
  sample: DbSample,
  opts: { timeoutMs?: number } = {},
): Promise<DrillCheck[]> {
  const checks: DrillCheck[] = [];
  const probe = sample.docs.find((d) => d.id.includes('/')) ?? sample.docs[0];
  if (probe) {
    const got = await getRaw(standby, scratch, probe.id);
    const rev = got.status === 200 ? revOf(got.bytes) : undefined;
    checks.push({
      group: 'standby',
      object: `${scratch}/${probe.id}`,
      check: 'document read by ID',
      ok: rev === probe.rev,
      expected: probe.rev,
      actual: rev ?? `HTTP ${got.status}`,
    });
  }
  const viewCheck = (object: string, ok: boolean, details: string[]): DrillCheck => ({
    group: 'standby',
    object,
    check: 'design-document view queried',
    ok,
    details,
  });
  const db = dbPath(scratch);
  let view: { ddoc: string; name: string } | undefined;
  for (const id of sample.designDocs) {
    const d = await getRaw(standby, scratch, id);
    if (d.status !== 200) continue;
    const views =
      (JSON.parse(d.bytes.toString('utf8')) as { views?: Record<string, { map?: unknown }> }).views ?? {};
    const name = Object.keys(views).find((v) => typeof views[v]?.map === 'string');
    if (name) {
      view = { ddoc: id, name };
      break;
    }
  }
  const t0 = Date.now();
  const query = async (path: string) =>
    standby.exchange('GET', path, { db: scratch, notFound: 'return' }, async (res) => ({
      status: res.status,
      body: JSON.parse(Buffer.from(await res.arrayBuffer()).toString('utf8')) as {
        rows?: { id?: string; key?: unknown }[];
        total_rows?: number;
        reason?: string;
      },
    }));
  try {
    if (view) {
      const r = await query(`${db}/${docPath(view.ddoc)}/_view/${encodeURIComponent(view.name)}?limit=1`);
      checks.push(
        viewCheck(
          `${scratch}/${view.ddoc}/_view/${view.name}`,
          r.status === 200 && Array.isArray(r.body.rows),
          [
            `HTTP ${r.status}, ${r.body.total_rows ?? '?'} rows, answered in ${Date.now() - t0} ms${r.body.reason ? ` (${r.body.reason})` : ''}`,
          ],
        ),
      );
    } else if (probe) {
      const put = await standby.json<{ ok?: boolean }>('PUT', `${db}/${docPath(DRILL_DESIGN_DOC)}`, {
        db: scratch,
        body: {
          language: 'javascript',
          views: { by_id: { map: 'function (doc) { emit(doc._id, null); }' } },
        },
        pass: [409],
      });
      const r = await query(
        `${db}/${docPath(DRILL_DESIGN_DOC)}/_view/by_id?key=${encodeURIComponent(JSON.stringify(probe.id))}`,
      );
      const rows = r.body.rows ?? [];
      const ok = put.status < 300 && r.status === 200 && rows.length === 1 && rows[0]?.id === probe.id;
      checks.push(
        viewCheck(`${scratch}/${DRILL_DESIGN_DOC}/_view/by_id`, ok, [
          `the database has no view of its own; the drill's view found ${rows.length} row(s) for ${JSON.stringify(probe.id)} of ${r.body.total_rows ?? '?'} (HTTP ${r.status}, ${Date.now() - t0} ms)`,
        ]),
      );
    }
  } catch (err) {
    checks.push(
      viewCheck(`${scratch}/${view ? `${view.ddoc}/_view/${view.name}` : DRILL_DESIGN_DOC}`, false, [
        messageOf(err),
      ]),
    );
  }
  void opts;
  return checks;
}
