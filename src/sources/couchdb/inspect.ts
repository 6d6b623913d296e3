import { packumentTarballs, type PackumentTarballs } from './expectations.js';
import { arrayItems, JsonShapeError, objectMembers, type Range } from './json-split.js';

/**
 * What the backup needs from one element of a `_bulk_get` answer, computed on a worker thread
 * (util/function-pool.ts): where each returned body lies (it is stored byte for byte), its revision, whether
 * it is deleted, its attachment stubs, and the tarballs a packument names. Found by scanning the bytes, not
 * by parsing the document: a 20 MB packument never becomes a 100 MB object graph.
 */
export interface BodyInfo {
  /** Byte range of the body in the element. */
  start: number;
  end: number;
  rev: string;
  deleted: boolean;
  /** `_attachments` as sent (stubs: small). */
  attachments?: unknown;
  /** Tarballs a live packument names. */
  tarballs?: PackumentTarballs;
}

export interface ResultInfo {
  /** The element's `id`, as sent. */
  id: unknown;
  /** One per requested revision: its body, or null when the revision is gone. */
  docs: (BodyInfo | null)[];
  /** The element is not the JSON expected: the message. */
  error?: string;
}

function parseRange(buf: Buffer, r: Range | undefined): unknown {
  return r ? (JSON.parse(buf.toString('utf8', r.start, r.end)) as unknown) : undefined;
}

/** The `versions` of a packument reduced to what the tarball checks need: `dist` of each version. */
function packumentShape(
  el: Buffer,
  body: Map<string, Range>,
): { name?: unknown; versions: Record<string, { dist?: unknown }> } | undefined {
  const v = body.get('versions');
  if (!v || el[v.start] !== 0x7b) return undefined;
  const versions: Record<string, { dist?: unknown }> = {};
  for (const [ver, r] of objectMembers(el, v.start, v.end)) {
    if (el[r.start] !== 0x7b) {
      versions[ver] = {};
      continue;
    }
    versions[ver] = { dist: parseRange(el, objectMembers(el, r.start, r.end).get('dist')) };
  }
  return { name: parseRange(el, body.get('name')), versions };
}

export function inspectResult(el: Buffer, db: string): ResultInfo {
  try {
    const m = objectMembers(el);
    const idRange = m.get('id');
    const docsRange = m.get('docs');
    if (!idRange || !docsRange) throw new JsonShapeError('a result without "id" or "docs"');
    const id = parseRange(el, idRange);
    const docs: (BodyInfo | null)[] = [];
    for (const r of arrayItems(el, docsRange.start, docsRange.end)) {
      const ok = objectMembers(el, r.start, r.end).get('ok');
      if (!ok) {
        // CouchDB: {"error": {…"not_found"…}}; PouchDB: {"missing": rev} or {}: the revision is gone.
        docs.push(null);
        continue;
      }
      if (el[ok.start] !== 0x7b) throw new JsonShapeError(`a body of ${JSON.stringify(id)} is not an object`);
      const body = objectMembers(el, ok.start, ok.end);
      const rev = parseRange(el, body.get('_rev'));
      if (typeof rev !== 'string') throw new JsonShapeError(`a body of ${JSON.stringify(id)} has no _rev`);
      const deleted = parseRange(el, body.get('_deleted')) === true;
      const info: BodyInfo = { start: ok.start, end: ok.end, rev, deleted };
      const atts = body.get('_attachments');
      if (atts) info.attachments = parseRange(el, atts);
      if (!deleted && typeof id === 'string') {
        const p = packumentShape(el, body);
        if (p) {
          info.tarballs = packumentTarballs(p, id, db);
          // Tarballs kept as attachments of the packument (as the registry once did) are in the backup with
          // the document: they are not expected in the tarball store.
          const names =
            info.attachments && typeof info.attachments === 'object' ? Object.keys(info.attachments) : [];
          if (names.length) {
            const att = new Set(names);
            info.tarballs.expectations = info.tarballs.expectations.filter(
              (e) => !att.has(e.path.slice(e.path.lastIndexOf('/') + 1)),
            );
          }
        }
      }
      docs.push(info);
    }
    return { id, docs };
  } catch (err) {
    return { id: undefined, docs: [], error: err instanceof Error ? err.message : String(err) };
  }
}
