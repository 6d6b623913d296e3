import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import pLimit from 'p-limit';
import tar from 'tar-stream';
import { readListing } from '../src/repo/format/listing.js';
import type { DbSnapshot, TarballSourceSnapshot } from '../src/repo/format/source-snapshots.js';
import { messageOf, systemCodeOf } from '../src/errors.js';
import type { BlobReader } from '../src/repo/reader.js';
import { type CouchClient, dbPath, docPath } from '../src/couchdb/client.js';
import { packumentTarballs } from '../src/couchdb/expectations.js';
import { checkDocEntry } from '../src/repo/format/couchdb-listing.js';
import { checkEntry } from '../src/repo/format/tarball-listing.js';
import { comparePaths } from '../src/repo/format/order.js';
import type { DrillCheck } from './drill-report.js';

/**
 * The drill's tarball checks, read back from the standby and the scratch directory: every tarball the
 * restored packuments name is there (in the tarball store, or as an attachment of its packument), or was
 * already missing when the snapshot was taken; every one that is there has the sha512 of its packument's
 * `dist.integrity` (sha1 `dist.shasum` when no integrity is recorded); and a sample of them unpacks
 * (gunzip + tar) into a package whose `package/package.json` has the name and version of the packument
 * entry it belongs to. A referenced tarball found nowhere fails the drill only when the snapshot has it (the
 * restore lost it); one the tarball store already lacked at backup time is counted (the backup reported it).
 */
export interface RestoredDb {
  db: DbSnapshot;
  scratch: string;
}

export interface RestoredStore {
  source: TarballSourceSnapshot;
  dir: string;
}

interface Candidate {
  where: string;
  name: string;
  version: string;
  open: () => Promise<Readable>;
}

const MAX_DETAILS = 20;
/** Referenced paths found nowhere that are remembered for the lookup in the listings (bounded memory). */
const MAX_NOT_RESTORED = 1_000_000;

/** `dist.integrity` (SRI, possibly several hashes) → its sha512 digests, base64. */
function sha512Of(integrity: string | undefined): string[] {
  if (!integrity) return [];
  return integrity
    .trim()
    .split(/\s+/)
    .flatMap((s) => (s.startsWith('sha512-') ? [s.slice(7).replace(/\?.*$/, '')] : []));
}

async function digest(src: Readable): Promise<{ sha512: string; sha1: string; size: number }> {
  const h512 = createHash('sha512');
  const h1 = createHash('sha1');
  let size = 0;
  for await (const b of src) {
    h512.update(b as Buffer);
    h1.update(b as Buffer);
    size += (b as Buffer).length;
  }
  return { sha512: h512.digest('base64'), sha1: h1.digest('hex'), size };
}

/** Reads `<root>/package.json` (npm's root is `package/`; a few old packages use another one). */
export async function packageJsonOf(src: Readable): Promise<{ name?: unknown; version?: unknown }> {
  const extract = tar.extract();
  const done = pipeline(src, createGunzip(), extract);
  done.catch(() => undefined); // its error also surfaces through the iteration below
  let found: Buffer | undefined;
  let other: Buffer | undefined;
  for await (const entry of extract) {
    const name = entry.header.name.replace(/^\.\//, '');
    if (
      (entry.header.type ?? 'file') === 'file' &&
      /^[^/]+\/package\.json$/.test(name) &&
      (name === 'package/package.json' || !other)
    ) {
      const chunks: Buffer[] = [];
      for await (const c of entry) chunks.push(c as Buffer);
      if (name === 'package/package.json') found = Buffer.concat(chunks);
      else other = Buffer.concat(chunks);
    } else entry.resume();
    if (found) break;
  }
  if (found) src.destroy();
  else await done;
  const bytes = found ?? other;
  if (!bytes) throw new Error('no package/package.json in the tarball');
  return JSON.parse(bytes.toString('utf8')) as { name?: unknown; version?: unknown };
}

export async function verifyTarballs(o: {
  standby: CouchClient;
  reader: BlobReader;
  dbs: RestoredDb[];
  stores: RestoredStore[];
  sample: number;
  parallel?: number;
  signal?: AbortSignal;
  random?: () => number;
}): Promise<DrillCheck[]> {
  const random = o.random ?? Math.random;
  const limit = pLimit(Math.max(1, o.parallel ?? 8));
  // Files that did not match their packument when backed up: restored as they were, reported, not a drill failure.
  const flagged = new Set<string>();
  let listed = 0;
  for (const s of o.stores) {
    for await (const e of readListing(
      o.reader,
      s.source.listing,
      checkEntry,
      `tarball listing of ${s.source.name}`,
      () => {}, // a refused name: the drill's restore reports it (and fails); the other entries are checked
    )) {
      listed++;
      if (e.flag === 'checksum-mismatch') flagged.add(e.path);
    }
  }
  const seen = o.dbs.length > 1 ? new Set<string>() : undefined;
  const c = {
    referenced: 0,
    inStore: 0,
    asAttachment: 0,
    absent: 0,
    bySha512: 0,
    bySha1: 0,
    noChecksum: 0,
    mismatched: 0,
    flaggedMismatch: 0,
    unreadable: 0,
  };
  const absent: string[] = [];
  /** Referenced and not restored anywhere: each is looked up in the snapshot's listings afterwards. */
  const notRestored: string[] = [];
  const mismatches: string[] = [];
  const candidates: Candidate[] = [];
  let eligible = 0;
  const consider = (cand: Candidate) => {
    eligible++;
    if (candidates.length < o.sample) candidates.push(cand);
    else {
      const j = Math.floor(random() * eligible);
      if (j < o.sample) candidates[j] = cand;
    }
  };
  const judge = (
    where: string,
    exp: { integrity?: string; shasum?: string },
    got: { sha512: string; sha1: string },
    isFlagged: boolean,
  ): boolean => {
    const want512 = sha512Of(exp.integrity);
    let ok: boolean | undefined;
    if (want512.length) {
      ok = want512.includes(got.sha512);
      if (ok) c.bySha512++;
    } else if (exp.shasum && /^[0-9a-f]{40}$/i.test(exp.shasum)) {
      ok = exp.shasum.toLowerCase() === got.sha1;
      if (ok) c.bySha1++;
    }
    if (ok === undefined) {
      c.noChecksum++;
      return true;
    }
    if (ok) return true;
    if (isFlagged) c.flaggedMismatch++;
    else {
      c.mismatched++;
      if (mismatches.length < MAX_DETAILS)
        mismatches.push(
          `${where}: sha512 ${got.sha512.slice(0, 16)}… is not dist.integrity ${(want512[0] ?? exp.shasum ?? '').slice(0, 16)}…`,
        );
    }
    return false;
  };

  const findFile = async (p: string): Promise<string | undefined> => {
    for (const s of o.stores) {
      const f = path.join(s.dir, ...p.split('/'));
      try {
        if ((await lstat(f)).isFile()) return f;
      } catch (err) {
        if (systemCodeOf(err) !== 'ENOENT' && systemCodeOf(err) !== 'ENOTDIR') throw err;
      }
    }
    return undefined;
  };

  const onePackument = async (d: RestoredDb, id: string) => {
    const db = dbPath(d.scratch);
    const { status, body } = await o.standby.json<Record<string, unknown>>('GET', `${db}/${docPath(id)}`, {
      db: d.scratch,
      notFound: 'return',
    });
    if (status !== 200) {
      c.unreadable++;
      if (absent.length < MAX_DETAILS)
        absent.push(`packument ${JSON.stringify(id)} cannot be read from the standby (HTTP ${status})`);
      return;
    }
    const { expectations } = packumentTarballs(body, id, d.db.name);
    if (!expectations.length) return;
    const name = typeof body.name === 'string' && body.name ? body.name : id;
    const atts = (body._attachments ?? {}) as Record<string, unknown>;
    for (const exp of expectations) {
      if (seen) {
        if (seen.has(exp.path)) continue;
        seen.add(exp.path);
      }
      c.referenced++;
      const file = exp.path.slice(exp.path.lastIndexOf('/') + 1);
      const base = name.startsWith('@') ? name.slice(name.indexOf('/') + 1) : name;
      const version = file.slice(base.length + 1, -'.tgz'.length);
      const onDisk = await findFile(exp.path);
      if (onDisk) {
        c.inStore++;
        const ok = judge(exp.path, exp, await digest(createReadStream(onDisk)), flagged.has(exp.path));
        if (ok) consider({ where: exp.path, name, version, open: async () => createReadStream(onDisk) });
        continue;
      }
      if (file in atts) {
        c.asAttachment++;
        const attPath = `${db}/${docPath(id)}/${encodeURIComponent(file)}`;
        const open = () =>
          o.standby.exchange('GET', attPath, { db: d.scratch }, async (res) =>
            Readable.from(Buffer.from(await res.arrayBuffer())),
          );
        const ok = judge(`${d.scratch}/${id}/${file} (attachment)`, exp, await digest(await open()), false);
        if (ok) consider({ where: `${d.scratch}/${id}/${file} (attachment)`, name, version, open });
        continue;
      }
      c.absent++;
      if (notRestored.length < MAX_NOT_RESTORED) notRestored.push(exp.path);
    }
  };

  for (const d of o.dbs) {
    let batch: Promise<void>[] = [];
    for await (const e of readListing(
      o.reader,
      d.db.listing,
      checkDocEntry,
      `listing of database ${d.db.name}`,
    )) {
      if (o.signal?.aborted) throw new Error('drill interrupted');
      if (e.local || e.deleted || e.id.startsWith('_design/')) continue;
      batch.push(limit(() => onePackument(d, e.id)));
      if (batch.length >= 256) {
        await Promise.all(batch);
        batch = [];
      }
    }
    await Promise.all(batch);
  }

  const checks: DrillCheck[] = [];
  const object = o.stores.map((s) => `${s.source.name} -> ${s.dir}`).join(', ') || 'attachments';
  const verifiable = c.bySha512 + c.bySha1 + c.mismatched + c.flaggedMismatch;
  checks.push({
    group: 'tarballs',
    object,
    check: "every restored tarball's sha512 equals its packument's dist.integrity",
    ok: c.mismatched === 0,
    expected: verifiable - c.flaggedMismatch,
    actual: c.bySha512 + c.bySha1,
    details: [
      `${c.inStore} in the tarball store and ${c.asAttachment} as attachments: ${c.bySha512} match by sha512, ${c.bySha1} by sha1 (no integrity recorded), ${c.noChecksum} without any checksum${c.flaggedMismatch ? `; ${c.flaggedMismatch} did not match already when backed up (restored as they were)` : ''}`,
      ...mismatches,
    ],
  });
  // Absent from the restore: was it in the snapshot (then the restore lost it) or already missing from the
  // tarball store when the snapshot was taken (the registry lacks it; the backup reported it then)?
  notRestored.sort(comparePaths);
  const lost: string[] = [];
  let lostCount = 0;
  for (const s of o.stores) {
    let i = 0;
    for await (const e of readListing(
      o.reader,
      s.source.listing,
      checkEntry,
      `tarball listing of ${s.source.name}`,
      () => {}, // a refused name: the drill's restore reports it (and fails); the other entries are checked
    )) {
      while (i < notRestored.length && comparePaths(notRestored[i]!, e.path) < 0) i++;
      if (i >= notRestored.length) break;
      if (notRestored[i] === e.path) {
        lostCount++;
        if (lost.length < MAX_DETAILS) lost.push(`in the snapshot but not restored: ${e.path}`);
      }
    }
  }
  const unchecked = c.absent - notRestored.length;
  checks.push({
    group: 'tarballs',
    object,
    check:
      'every tarball the packuments refer to is present (unless the tarball store lacked it at backup time)',
    ok: c.unreadable === 0 && lostCount === 0,
    expected: c.referenced - (c.absent - lostCount),
    actual: c.inStore + c.asAttachment,
    details: [
      `${c.referenced} referenced: ${c.inStore} in the tarball store, ${c.asAttachment} as attachments of their packument; ${c.absent - lostCount} were not in the tarball store when the snapshot was taken (the backup reported them as missing)${unchecked > 0 ? ` (${unchecked} not looked up)` : ''}; ${Math.max(0, listed - c.inStore - lostCount)} stored files no packument names`,
      ...lost,
      ...absent,
    ],
  });
  const sampleOk: string[] = [];
  const sampleBad: string[] = [];
  await Promise.all(
    candidates.map((cand) =>
      limit(async () => {
        try {
          const pj = await packageJsonOf(await cand.open());
          if (pj.name === cand.name && pj.version === cand.version) sampleOk.push(cand.where);
          else
            sampleBad.push(
              `${cand.where}: package.json says ${JSON.stringify(pj.name)}@${JSON.stringify(pj.version)}, the packument entry is ${cand.name}@${cand.version}`,
            );
        } catch (err) {
          sampleBad.push(`${cand.where}: ${messageOf(err)}`);
        }
      }),
    ),
  );
  checks.push({
    group: 'tarballs',
    object,
    check: 'sampled tarballs unpack (gunzip + tar) to package/package.json of their name and version',
    ok: sampleBad.length === 0,
    expected: candidates.length,
    actual: sampleOk.length,
    details: sampleBad.slice(0, MAX_DETAILS),
  });
  return checks;
}
