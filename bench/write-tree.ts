/**
 * The measured side of bench/repo-write.ts: writes every file of a directory through the repository pipeline
 * (chunk -> keyed ID -> compress -> encrypt -> pack) into a local-filesystem target and commits a snapshot.
 * `.json` files go through the JSON path (CDC chunks, zstd), the rest through the bulk path (fixed chunks,
 * stored raw when already compressed). Prints one JSON line of figures.
 *
 *   node dist/bench/write-tree.js --src DIR --repo DIR [--workers N] [--keys DIR]
 */
import { mkdirSync, existsSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { encodeLines } from '../src/repo/format/listing.js';
import { Fanout } from '../src/repo/fanout.js';
import { generateKeys, loadWorkerKey, writeKeyFiles } from '../src/repo/keys.js';
import { Repository } from '../src/repo/repository.js';
import { newManifest, sealSnapshot } from '../src/repo/snapshot.js';
import { refFromChunks, writeStream, type StreamRef } from '../src/repo/stream-ref.js';
import { BlobWriter } from '../src/repo/writer.js';
import { walkTree } from '../src/sources/tarballs/walk.js';
import { FsStore } from '../src/store/fs.js';
import { orderedMap } from '../src/util/ordered.js';

const { values } = parseArgs({
  options: {
    src: { type: 'string' },
    repo: { type: 'string' },
    workers: { type: 'string' },
    keys: { type: 'string' },
  },
});
if (!values.src || !values.repo) throw new Error('usage: write-tree --src DIR --repo DIR [--workers N]');
const keysDir = values.keys ?? path.join(values.repo, '..', 'keys');
if (!existsSync(path.join(keysDir, 'worker.key'))) writeKeyFiles(keysDir, await generateKeys());
const worker = await loadWorkerKey(path.join(keysDir, 'worker.key'));
mkdirSync(values.repo, { recursive: true });
const store = new FsStore({ name: 'bench', root: values.repo });
await Repository.init([store], worker, { packSize: 16 * 1024 * 1024, compressionLevel: 3 });
const { repo } = await Repository.open(
  [store],
  { worker },
  { cacheRoot: path.join(values.repo, '..', 'cache') },
);
const index = await repo.loadIndex();
const writer = new BlobWriter(repo, index, new Fanout([store]), {
  workers: values.workers ? Number(values.workers) : undefined,
});

const t0 = performance.now();
let bytes = 0;
let files = 0;
async function* entries() {
  const walked = (async function* () {
    for await (const e of walkTree(values.src!)) if (e.kind === 'file') yield e;
  })();
  yield* orderedMap(walked, 64, async (f) => {
    const full = path.join(values.src!, f.path);
    const kind = f.path.endsWith('.json') ? 'json' : 'bulk';
    const data: StreamRef = await refFromChunks(writer, await writer.writeFile(full, kind, f));
    bytes += f.size;
    files++;
    return { path: f.path, size: f.size, data };
  });
}
const listing = await writeStream(writer, encodeLines(entries()), 'tree');
await writer.flush();
const sealed = await sealSnapshot(repo, newManifest(repo, [{ kind: 'files', name: 'bench', listing }]));
await store.put(sealed.key, sealed.bytes);
await writer.close();
const secs = (performance.now() - t0) / 1000;
console.log(
  JSON.stringify({
    files,
    bytes,
    seconds: secs,
    mbPerSec: bytes / 1e6 / secs,
    newBytes: writer.stats.newBytes,
    dedupBytes: writer.stats.dedupBytes,
    storedBytes: writer.stats.storedBytes,
    packs: writer.stats.packs,
    maxRssMiB: process.resourceUsage().maxRSS / 1024,
  }),
);
