import assert from 'node:assert/strict';
import path from 'node:path';
import { readListing } from '../../src/repo/format/listing.js';
import type { CouchSourceSnapshot, TarballSourceSnapshot } from '../../src/repo/format/source-snapshots.js';
import { loadConfig } from '../../src/config/load.js';
import { loadRestoreIdentity } from '../../src/repo/keys.js';
import { BlobReader } from '../../src/repo/reader.js';
import { Repository } from '../../src/repo/repository.js';
import { listSnapshots, loadSnapshot } from '../../src/repo/snapshot.js';
import { chunkIds, readAll, type StreamRef } from '../../src/repo/stream-ref.js';
import { checkDocEntry } from '../../src/repo/format/couchdb-listing.js';
import { checkEntry } from '../../src/repo/format/tarball-listing.js';
import { openStore } from '../../src/store/index.js';
import type { ObjectStore } from '../../src/store/types.js';

/**
 * Everything every snapshot of every target needs is there: the manifest verifies, every listing reads, and
 * every blob a listing names is in the index and in a pack that exists on that target.
 */
export async function assertTargetsIntact(
  configFile: string,
  identityFile: string,
  only?: string[],
): Promise<number[]> {
  const { config } = loadConfig(configFile);
  const restore = await loadRestoreIdentity(identityFile);
  const counts: number[] = [];
  for (const t of config.targets.filter((x) => !only || only.includes(x.name))) {
    const store: ObjectStore = openStore(t, { retry: false });
    const { repo } = await Repository.open(
      [store],
      { restore },
      { cacheRoot: path.join(path.dirname(configFile), `verify-cache-${Math.random()}`) },
    );
    const index = await repo.loadIndex(store);
    const reader = new BlobReader(repo, index, [store]);
    const packs = new Set<string>();
    for await (const o of store.list('')) packs.add(o.key);
    const need = async (ref: StreamRef) => {
      for await (const id of chunkIds(reader, ref)) {
        const loc = index.lookup(id);
        assert.ok(loc, `blob ${id.toString('hex')} of target ${t.name} is in its index`);
        assert.ok(
          packs.has(`${loc.pack.type === 1 ? 'tree' : 'data'}/${loc.pack.id.slice(0, 2)}/${loc.pack.id}`),
          `pack ${loc.pack.id} exists on ${t.name}`,
        );
      }
    };
    const snaps = await listSnapshots(store);
    for (const info of snaps) {
      const m = await loadSnapshot(repo, store, info);
      for (const s of m.sources) {
        if (s.kind === 'couchdb') {
          for (const db of (s as CouchSourceSnapshot).databases) {
            if (db.security) await need(db.security);
            for await (const e of readListing(reader, db.listing, checkDocEntry, db.name)) {
              for (const leaf of e.leaves) {
                await need(leaf.body);
                for (const a of leaf.atts ?? []) await need(a.data);
              }
            }
          }
        } else {
          for await (const e of readListing(reader, (s as TarballSourceSnapshot).listing, checkEntry, s.name))
            await need(e.data);
        }
      }
    }
    // And the newest snapshot's tarballs really decrypt (every chunk checked against its keyed ID).
    const last = snaps[snaps.length - 1];
    if (last) {
      const m = await loadSnapshot(repo, store, last);
      const tb = m.sources.find((s) => s.kind === 'tarballs') as TarballSourceSnapshot | undefined;
      if (tb)
        for await (const e of readListing(reader, tb.listing, checkEntry, 'tarballs'))
          assert.equal((await readAll(reader, e.data)).length, e.size);
    }
    repo.close();
    counts.push(snaps.length);
  }
  return counts;
}
