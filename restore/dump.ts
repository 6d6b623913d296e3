import tar from 'tar-stream';
import { readListing } from '../src/repo/format/listing.js';
import type {
  CouchSourceSnapshot,
  DbSnapshot,
  TarballSourceSnapshot,
} from '../src/repo/format/source-snapshots.js';
import { IntegrityError, UsageError } from '../src/errors.js';
import { BlobReader } from '../src/repo/reader.js';
import type { Repository } from '../src/repo/repository.js';
import type { SnapshotInfo, SnapshotManifest } from '../src/repo/snapshot.js';
import type { StreamRef } from '../src/repo/stream-ref.js';
import { checkDocEntry, type DocEntry } from '../src/repo/format/couchdb-listing.js';
import { checkEntry } from '../src/repo/format/tarball-listing.js';
import type { ObjectStore } from '../src/store/types.js';
import { base64Stream, bodyMembers, inlineBody } from './couch-body.js';
import { BlobFetcher } from './fetch.js';
import { prefetch, StreamBytes } from './prefetch.js';
import { showName } from '../src/repo/names.js';

const MAX_REFUSED_LISTED = 20;

/**
 * `regbackup dump`: a snapshot's content as a standard (POSIX/pax) tar archive on a stream, so that a host
 * regbackup cannot reach is restored through a pipe. Layout:
 *
 *   manifest.json                        what is inside, and how to load it
 *   couchdb/<db>/docs.jsonl              every revision of every document (all leaves: conflicts and
 *                                        tombstones), one JSON object per line, with `_revisions`, and
 *                                        attachments inline (base64), design documents last: load in
 *                                        order with POST /<db>/_bulk_docs {"new_edits": false, "docs": […]}
 *   couchdb/<db>/local.jsonl             `_local` documents (when they were backed up)
 *   couchdb/<db>/security.json           the `_security` object
 *   tarballs/<name>/-/<name>-<v>.tgz     the tarball store in the registry layout
 *
 * A tar entry needs its size before its bytes: a first pass over the listings (metadata only, and the
 * bodies of documents with attachments) computes them, the second streams the content. Memory stays bounded
 * whatever the size of the snapshot; every blob is verified (keyed ID) as it is read.
 */
export interface DumpOptions {
  repo: Repository;
  snapshot: SnapshotInfo;
  manifest: SnapshotManifest;
  metaStore: ObjectStore;
  /** Only this database (`name` or `source/name`), or only the tarball store. */
  only?: { db?: string; tarballs?: boolean };
  out: NodeJS.WritableStream;
  workers?: number;
  signal?: AbortSignal;
}

export interface DumpStats {
  entries: number;
  bytes: number;
  docs: number;
  revisions: number;
  files: number;
  /** Files of a tarball listing left out because the name rule refuses their names (src/repo/names.ts). */
  refused: number;
  refusedNames: string[];
}

type Pack = ReturnType<typeof tar.pack>;

async function addEntry(
  pack: Pack,
  header: Partial<tar.Header> & { name: string },
  src: AsyncIterable<Buffer> | Iterable<Buffer>,
): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const entry = pack.entry(header, (err) => (err ? reject(err) : resolve()));
    (async () => {
      for await (const b of src) {
        if (!entry.write(b)) await new Promise<void>((r) => entry.once('drain', () => r()));
      }
      entry.end(undefined);
    })().catch((err: unknown) => {
      entry.destroy(err as Error);
      reject(err as Error);
    });
  });
}

/** JSON bodies as served never hold a raw newline inside a string: any one is whitespace, and becomes a space. */
async function* oneLine(src: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  for await (const b of src) {
    if (b.indexOf(0x0a) < 0 && b.indexOf(0x0d) < 0) yield b;
    else {
      const c = Buffer.from(b);
      for (let i = 0; i < c.length; i++) if (c[i] === 0x0a || c[i] === 0x0d) c[i] = 0x20;
      yield c;
    }
  }
}

export async function dumpSnapshot(o: DumpOptions): Promise<DumpStats> {
  const stats: DumpStats = {
    entries: 0,
    bytes: 0,
    docs: 0,
    revisions: 0,
    files: 0,
    refused: 0,
    refusedNames: [],
  };
  const couch = o.manifest.sources.filter((s) => s.kind === 'couchdb') as CouchSourceSnapshot[];
  const tarballs = o.manifest.sources.filter((s) => s.kind === 'tarballs') as TarballSourceSnapshot[];
  let dbs: { source: string; db: DbSnapshot }[] = couch.flatMap((s) =>
    s.databases.map((db) => ({ source: s.name, db })),
  );
  let stores = tarballs;
  if (o.only?.db) {
    const want = o.only.db;
    dbs = dbs.filter((d) => d.db.name === want || `${d.source}/${d.db.name}` === want).slice(0, 1);
    if (!dbs.length) throw new UsageError(`snapshot ${o.snapshot.id.slice(0, 12)} has no database ${want}`);
    stores = [];
  } else if (o.only?.tarballs) {
    dbs = [];
    if (!stores.length) throw new UsageError(`snapshot ${o.snapshot.id.slice(0, 12)} has no tarball store`);
  }
  const index = await o.repo.loadIndex(o.metaStore);
  const targets = [o.metaStore, ...o.repo.targets.filter((t) => t !== o.metaStore)];
  const reader = new BlobReader(o.repo, index, targets);
  const fetcher = new BlobFetcher(o.repo, index, targets, reader, { workers: o.workers });
  const pack = tar.pack();
  const mtime = new Date(o.manifest.time);
  const piped = new Promise<void>((resolve, reject) => {
    pack.on('data', (data: unknown) => {
      const chunk = data as Buffer;
      stats.bytes += chunk.length;
      if (!o.out.write(chunk)) {
        pack.pause();
        o.out.once('drain', () => pack.resume());
      }
    });
    pack.on('end', () => resolve());
    pack.on('error', reject);
    o.out.on('error', reject);
  });
  const abort = () => {
    if (o.signal?.aborted) throw new IntegrityError('dump interrupted: the archive is incomplete');
  };
  const add = async (name: string, size: number, src: AsyncIterable<Buffer> | Iterable<Buffer>) => {
    abort();
    await addEntry(pack, { name, size, mtime, mode: 0o644, type: 'file' }, src);
    stats.entries++;
  };
  try {
    const contents: unknown[] = [];
    for (const { source, db } of dbs)
      contents.push({
        kind: 'couchdb',
        source,
        database: db.name,
        docs: db.docCount,
        deleted: db.deletedCount,
        docsFile: `couchdb/${dirName(db.name)}/docs.jsonl`,
      });
    for (const s of stores)
      contents.push({
        kind: 'tarballs',
        source: s.name,
        files: s.files,
        bytes: s.bytes,
        directory: 'tarballs/',
      });
    const manifest = Buffer.from(
      `${JSON.stringify(
        {
          format: 'regbackup dump v1',
          snapshot: o.snapshot.id,
          time: o.manifest.time,
          host: o.manifest.host,
          repository: o.manifest.repository,
          contents,
          howTo: {
            documents:
              'docs.jsonl holds one revision per line (every leaf: conflicts and tombstones too), with _revisions and inline attachments, design documents last; load it in order with POST /<db>/_bulk_docs {"new_edits":false,"docs":[...]} in batches',
            tarballs:
              'tarballs/ is the tarball store in the registry layout: tar -x --strip-components=1 -C /srv/tarballs',
          },
        },
        null,
        2,
      )}\n`,
    );
    await add('manifest.json', manifest.length, [manifest]);
    for (const { db } of dbs) await dumpDatabase(o, db, fetcher, reader, add, stats);
    for (const s of stores) await dumpTarballs(s, fetcher, reader, add, stats);
    pack.finalize();
    await piped;
    if (stats.refused) {
      const more = stats.refused > stats.refusedNames.length ? `, … (${stats.refused} in all)` : '';
      throw new IntegrityError(
        `the archive holds everything else, but not ${stats.refused} file(s) of the tarball listing whose names are refused: ${stats.refusedNames.join(', ')}${more}`,
        { refused: stats.refused },
      );
    }
  } catch (err) {
    // The error is reported once, by the caller: the archive stream's own failure is expected now.
    piped.catch(() => {});
    pack.destroy(err as Error);
    throw err;
  } finally {
    await fetcher.close();
  }
  return stats;
}

async function* toAsync(bufs: Buffer[]): AsyncGenerator<Buffer> {
  yield* bufs;
}

/** A database name as one path segment ("/" is allowed in CouchDB names). */
function dirName(db: string): string {
  return db.replaceAll('/', '%2F');
}

type Add = (name: string, size: number, src: AsyncIterable<Buffer> | Iterable<Buffer>) => Promise<void>;

function docs(reader: BlobReader, db: DbSnapshot): AsyncGenerator<DocEntry> {
  return readListing(reader, db.listing, checkDocEntry, `listing of database ${db.name}`);
}

async function dumpDatabase(
  o: DumpOptions,
  db: DbSnapshot,
  fetcher: BlobFetcher,
  reader: BlobReader,
  add: Add,
  stats: DumpStats,
): Promise<void> {
  const dir = `couchdb/${dirName(db.name)}`;
  if (db.security) {
    const sec = await fetcher.readAll(db.security, 16 * 1024 * 1024);
    await add(`${dir}/security.json`, sec.length, [sec]);
  }
  // Pass 1: sizes. A revision without attachments is its stored body; one with attachments is rebuilt with
  // them inline, so its body is read to know the length.
  let size = 0;
  let localSize = 0;
  for await (const e of docs(reader, db)) {
    for (const l of e.leaves) {
      let n = l.body.size;
      if (l.atts?.length)
        n = inlineBody(bodyMembers(await fetcher.readAll(l.body), {}, `${db.name}/${e.id}`), l.atts).length;
      if (e.local) localSize += n + 1;
      else size += n + 1;
    }
  }
  const refsOf = (e: DocEntry): StreamRef[] =>
    e.leaves.flatMap((l) => [l.body, ...(l.atts ?? []).map((a) => a.data)]);
  const lines = (local: boolean) =>
    async function* (): AsyncGenerator<Buffer> {
      // Design documents last: loaded in order, a validate_doc_update function must not judge the load.
      const selected = async function* () {
        const design: DocEntry[] = [];
        for await (const e of docs(reader, db)) {
          if (Boolean(e.local) !== local) continue;
          if (e.id.startsWith('_design/')) design.push(e);
          else yield e;
        }
        yield* design;
      };
      for await (const { item, streams } of prefetch(selected(), refsOf, fetcher)) {
        let s = 0;
        if (!local) stats.docs++;
        for (const l of item.leaves) {
          const body = streams[s++]!;
          const atts = (l.atts ?? []).map(() => streams[s++]!);
          stats.revisions++;
          if (!l.atts?.length) yield* oneLine(body);
          else {
            const ib = inlineBody(bodyMembers(await body.all(), {}, `${db.name}/${item.id}`), l.atts);
            for (const p of ib.parts) {
              if (typeof p === 'number') yield* base64Stream(atts[p]!);
              else yield* oneLine(toAsync([p]));
            }
          }
          yield Buffer.from('\n');
        }
      }
    };
  await add(`${dir}/docs.jsonl`, size, lines(false)());
  if (localSize) await add(`${dir}/local.jsonl`, localSize, lines(true)());
}

async function dumpTarballs(
  s: TarballSourceSnapshot,
  fetcher: BlobFetcher,
  reader: BlobReader,
  add: Add,
  stats: DumpStats,
): Promise<void> {
  // A name the rule refuses is left out of the archive and named at the end; the other files are dumped.
  const files = readListing(reader, s.listing, checkEntry, `tarball listing of ${s.name}`, ({ refused }) => {
    stats.refused++;
    if (stats.refusedNames.length < MAX_REFUSED_LISTED)
      stats.refusedNames.push(`${showName(refused.raw)} (${refused.reason})`);
  });
  for await (const { item, streams } of prefetch(files, (e) => [e.data], fetcher)) {
    await add(`tarballs/${item.path}`, item.size, streams[0] ?? new StreamBytes(item.data, fetcher));
    stats.files++;
  }
}
