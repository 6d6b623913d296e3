import { packumentTarballs, type PackumentTarballs } from '../../couchdb/expectations.js';
import { JsonShapeError, skipValue, walkArray, walkObject, type Range } from '../../util/json-split.js';

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
  /** The ancestors a restore must find in the revision tree (`historyAncestors` of `_revisions`). */
  ancestors?: string[];
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

/**
 * inspectResult for several elements sent in one buffer (one message to the worker instead of one per
 * document): `lengths` gives each element's size, in order. Ranges are relative to each element.
 */
export function inspectResults(buf: Buffer, db: string, lengths: number[]): ResultInfo[] {
  const out: ResultInfo[] = [];
  let at = 0;
  for (const n of lengths) {
    out.push(inspectResult(buf.subarray(at, at + n), db));
    at += n;
  }
  return out;
}

/**
 * The ancestors of a revision a restore must find again, from its `_revisions` ({start, ids}, newest first):
 * the parent and the oldest revision of the history (one when they are the same); undefined for a history of
 * one revision, or a `_revisions` that is not the history of `rev` (then nothing is recorded, nothing checked).
 */
export function historyAncestors(rev: string, revisions: unknown): string[] | undefined {
  const h = revisions as { start?: unknown; ids?: unknown } | undefined;
  if (!h || typeof h !== 'object' || !Number.isSafeInteger(h.start) || !Array.isArray(h.ids))
    return undefined;
  const start = h.start as number;
  const ids = h.ids as unknown[];
  if (ids.length < 2 || start < ids.length || !ids.every((x) => typeof x === 'string' && x.length > 0))
    return undefined;
  if (rev !== `${start}-${ids[0] as string}`) return undefined;
  const parent = `${start - 1}-${ids[1] as string}`;
  const oldest = `${start - ids.length + 1}-${ids[ids.length - 1] as string}`;
  return parent === oldest ? [parent] : [parent, oldest];
}

function parseRange(buf: Buffer, r: Range | undefined): unknown {
  return r ? (JSON.parse(buf.toString('utf8', r.start, r.end)) as unknown) : undefined;
}

/** The byte range of the value at `start`, scanned once. */
function valueRange(buf: Buffer, start: number, end: number): Range {
  const e = skipValue(buf, start, end);
  if (e < 0) throw new JsonShapeError('truncated value');
  return { start, end: e };
}

interface Packument {
  name?: unknown;
  /** `versions` reduced to what the tarball checks need: `dist` of each version. */
  versions: Record<string, { dist?: unknown }>;
}

/**
 * One pass over the element: `{"id": …, "docs": [{"ok": {body}} | {"error"/"missing": …}, …]}`. Inside a
 * body only `_rev`, `_deleted`, `_attachments`, `name` and each version's `dist` are decoded; every other
 * byte is skipped once (a 20 MB packument costs one scan, not one per level of nesting).
 */
export function inspectResult(el: Buffer, db: string): ResultInfo {
  try {
    const end = el.length;
    let idRange: Range | undefined;
    let sawDocs = false;
    const bodies: ({ info: BodyInfo; packument?: Packument } | null)[] = [];
    walkObject(el, 0, end, (key, vs) => {
      if (key === 'id') {
        idRange = valueRange(el, vs, end);
        return idRange.end;
      }
      if (key !== 'docs') return -1;
      sawDocs = true;
      bodies.length = 0;
      return walkArray(el, vs, end, (is) => {
        let body: { info: BodyInfo; packument?: Packument } | null = null;
        const itemEnd = walkObject(el, is, end, (k, ok) => {
          if (k !== 'ok') return -1;
          const who = () => JSON.stringify(idRange ? parseRange(el, idRange) : undefined);
          if (el[ok] !== 0x7b) throw new JsonShapeError(`a body of ${who()} is not an object`);
          let rev: Range | undefined;
          let deleted: Range | undefined;
          let atts: Range | undefined;
          let revisions: Range | undefined;
          let name: Range | undefined;
          let versions: Packument['versions'] | undefined;
          const okEnd = walkObject(el, ok, end, (bk, bv) => {
            switch (bk) {
              case '_rev':
                return (rev = valueRange(el, bv, end)).end;
              case '_deleted':
                return (deleted = valueRange(el, bv, end)).end;
              case '_attachments':
                return (atts = valueRange(el, bv, end)).end;
              case '_revisions':
                return (revisions = valueRange(el, bv, end)).end;
              case 'name':
                return (name = valueRange(el, bv, end)).end;
              case 'versions':
                if (el[bv] !== 0x7b) {
                  versions = undefined;
                  return -1;
                }
                versions = {};
                return walkObject(el, bv, end, (ver, v) => {
                  if (el[v] !== 0x7b) {
                    versions![ver] = {};
                    return -1;
                  }
                  let dist: Range | undefined;
                  const ve = walkObject(el, v, end, (vk, dv) =>
                    vk === 'dist' ? (dist = valueRange(el, dv, end)).end : -1,
                  );
                  versions![ver] = { dist: parseRange(el, dist) };
                  return ve;
                });
              default:
                return -1;
            }
          });
          const r = parseRange(el, rev);
          if (typeof r !== 'string') throw new JsonShapeError(`a body of ${who()} has no _rev`);
          const info: BodyInfo = { start: ok, end: okEnd, rev: r, deleted: parseRange(el, deleted) === true };
          if (atts) info.attachments = parseRange(el, atts);
          const ancestors = historyAncestors(r, parseRange(el, revisions));
          if (ancestors) info.ancestors = ancestors;
          body = { info, ...(versions ? { packument: { name: parseRange(el, name), versions } } : {}) };
          return okEnd;
        });
        // CouchDB: {"error": {…"not_found"…}}; PouchDB: {"missing": rev} or {}: the revision is gone.
        bodies.push(body);
        return itemEnd;
      });
    });
    if (!idRange || !sawDocs) throw new JsonShapeError('a result without "id" or "docs"');
    const id = parseRange(el, idRange);
    const docs = bodies.map((b) => {
      if (!b) return null;
      const { info, packument } = b;
      if (!info.deleted && typeof id === 'string' && packument) {
        info.tarballs = packumentTarballs(packument, id, db);
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
      return info;
    });
    return { id, docs };
  } catch (err) {
    return { id: undefined, docs: [], error: err instanceof Error ? err.message : String(err) };
  }
}
