/**
 * Issue 12's benchmark: what this machine can physically do, stage by stage, beside regbackup's pipeline and
 * restic's, in one run.
 *
 * 1. Stages in isolation (one worker thread, its own CPU time, over every file of the corpus): reading a file
 *    from the page cache, chunking (FastCDC for JSON, fixed 1 MiB for tarballs), the keyed blob ID (the one in
 *    use, and HMAC-SHA256 and keyed BLAKE3 side by side), zstd at the repository's level (JSON only; gzip
 *    data is recognised and skipped), ChaCha20-Poly1305 (age STREAM segments), the pack's SHA-256, writing
 *    the packs into the page cache (1 MiB writes) and their fsync (the durability a filesystem target gives:
 *    each pack is synced before it is linked into place); for the restore: ChaCha20-Poly1305 decryption,
 *    the tarball's SHA-1 and writing each file into the restore destination.
 * 2. The floor: the sum of the stages a run needs, per byte of its input, spread over the cores (2 here).
 * 3. regbackup's full backup of the tarball store (the CLI, fs target) and its restore (`restore --tarballs`),
 *    beside `restic backup` / `restic restore` of the same directory, alternating, with peak RSS.
 *    With --whole, also the whole corpus (JSON and tarballs, bench/write-tree.ts) beside restic.
 *
 *   npx tsc -p tsconfig.json && node --openssl-legacy-provider dist/bench/floor.js --corpus /tmp/corpus-1g
 *     [--out /tmp/bench-floor] [--rounds 2] [--dest-root /dev/shm] [--whole] [--cores 2]
 */
import { createHash, createHmac, randomBytes } from 'node:crypto';
import {
  closeSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readdirSync,
  readSync,
  rmSync,
  statSync,
  unlinkSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { AgeEncryptor, CIPHER_SEGMENT_SIZE, openSegment, payloadKey } from '../src/repo/age.js';
import { Chunker, gearTable } from '../src/repo/chunker.js';
import { BlobCompressor, looksCompressed } from '../src/repo/compress.js';
import { blobId, BlobType } from '../src/repo/ids.js';
import { DEFAULT_CHUNKERS } from '../src/repo/repository.js';
import { decryptSegments } from '../restore/crypto.js';
import { pageFaultCost, fmt, measure as measureWall, table, warm, type Measured as Wall } from './lib/run.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const BIN = path.join(here, '..', '..', 'bin', 'regbackup.js');
const PACK_SIZE = 16 * 1024 * 1024;
const LEVEL = 3;

interface Blake3 {
  update(b: Uint8Array): Blake3;
  digestBuffer(): Buffer;
}
const { Blake3Hasher } = createRequire(import.meta.url)('@napi-rs/blake-hash') as {
  Blake3Hasher: { newKeyed(key: Buffer): Blake3 };
};

/** A run's wall time and peak RSS, and its CPU time (user + system, all threads and children). */
interface Measured extends Wall {
  cpuSeconds: number;
}

/**
 * Runs a command under GNU time twice nested: the outer (bench/lib/run.ts) gives wall time and peak RSS, the
 * inner the CPU time, which a loaded machine distorts far less than wall time.
 */
async function measure(cmd: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<Measured> {
  const m = await measureWall('/usr/bin/time', ['-f', '__CPU__ %U %S', cmd, ...args], env);
  const c = /__CPU__ ([\d.]+) ([\d.]+)/.exec(m.stderr);
  if (!c) throw new Error(`no CPU time from ${cmd}`);
  return { ...m, cpuSeconds: Number(c[1]) + Number(c[2]) };
}

/** CPU seconds and bytes of one stage, per kind of input. */
type Costs = Record<string, { json: [number, number]; bulk: [number, number] }>;

interface StageReport {
  costs: Costs;
  /** fsync of each pack: wall seconds (the wait), and how many packs. */
  fsyncSeconds: { json: number; bulk: number };
  packs: number;
  bytes: { json: number; bulk: number };
  /** Per-chunk CPU microseconds of HMAC-SHA256 and keyed BLAKE3 at fixed sizes (best of 5 rounds). */
  perChunk: { size: number; hmac: number; blake3: number }[];
  /** Tarballs: bytes left after deduplication with the fixed 1 MiB chunks in use, and with FastCDC. */
  dedup: { fixed: number; cdc: number };
}

function cpu(): number {
  const u = process.threadCpuUsage();
  return (u.user + u.system) / 1e6;
}

function files(dir: string, out: string[] = []): string[] {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) files(p, out);
    else if (e.isFile()) out.push(p);
  }
  return out.sort();
}

/** The stage pass (in a worker thread: its CPU time is the stages' and nothing else's). */
function stages(corpus: string, scratch: string): StageReport {
  const costs: Costs = {};
  const add = (stage: string, kind: 'json' | 'bulk', t0: number, bytes: number): number => {
    const t = cpu();
    const c = (costs[stage] ??= { json: [0, 0], bulk: [0, 0] });
    c[kind][0] += t - t0;
    c[kind][1] += bytes;
    return t;
  };
  const key = randomBytes(32);
  const gear = gearTable(randomBytes(32));
  const compressor = new BlobCompressor(LEVEL);
  const fileKey = randomBytes(16);
  const fsyncSeconds = { json: 0, bulk: 0 };
  const bytes = { json: 0, bulk: 0 };
  let packs = 0;
  let buf = Buffer.allocUnsafe(1024 * 1024);
  const hmac = (c: Buffer) => createHmac('sha256', key).update(Buffer.of(0)).update(c).digest();
  const blake3 = (c: Buffer) => Blake3Hasher.newKeyed(key).update(Buffer.of(0)).update(c).digestBuffer();

  // One open pack per kind, as the pack workers keep one per blob type.
  interface Open {
    enc: AgeEncryptor;
    sha: ReturnType<typeof createHash>;
    fd: number;
    file: string;
    size: number;
    wbuf: Buffer;
    wlen: number;
  }
  const open: Partial<Record<'json' | 'bulk', Open>> = {};
  const newPack = (): Open => {
    const file = path.join(scratch, `pack-${packs++}`);
    return {
      enc: new AgeEncryptor(Buffer.from('age-encryption.org/v1\n--- bench\n'), fileKey),
      sha: createHash('sha256'),
      fd: openSync(file, 'wx', 0o600),
      file,
      size: 0,
      wbuf: Buffer.allocUnsafe(1024 * 1024),
      wlen: 0,
    };
  };
  /** Ciphertext out of the encryptor: hashed, written (1 MiB writes), and decrypted again (restore's cost). */
  const emit = (kind: 'json' | 'bulk', p: Open, parts: Buffer[], last: boolean) => {
    let t = cpu();
    let n = 0;
    for (const b of parts) {
      p.sha.update(b);
      n += b.length;
    }
    t = add('pack SHA-256', kind, t, n);
    const wbuf = p.wbuf;
    for (const b of parts) {
      if (p.wlen + b.length > wbuf.length && p.wlen) {
        writeSync(p.fd, wbuf, 0, p.wlen);
        p.wlen = 0;
      }
      if (b.length > wbuf.length) writeSync(p.fd, b);
      else p.wlen += b.copy(wbuf, p.wlen);
    }
    if (last && p.wlen) {
      writeSync(p.fd, wbuf, 0, p.wlen);
      p.wlen = 0;
    }
    return add('write packs (page cache)', kind, t, n);
  };
  const seal = (kind: 'json' | 'bulk') => {
    const p = open[kind];
    if (!p) return;
    open[kind] = undefined;
    const t0 = cpu();
    const tail = p.enc.finish();
    add('ChaCha20-Poly1305 seal', kind, t0, 0);
    emit(kind, p, tail, true);
    p.sha.digest();
    const w0 = performance.now();
    fsyncSync(p.fd);
    fsyncSeconds[kind] += (performance.now() - w0) / 1000;
    closeSync(p.fd);
    // Decrypt the pack again (the restore's decryption), then drop it.
    const fd = openSync(p.file, 'r');
    const size = statSync(p.file).size;
    const cipher = Buffer.allocUnsafe(size);
    readSync(fd, cipher, 0, size, 0);
    closeSync(fd);
    const t = cpu();
    const start = 'age-encryption.org/v1\n--- bench\n'.length + 16;
    const pkey = payloadKey(fileKey, p.enc.nonce);
    let counter = 0;
    for (let off = start; off < size; off += CIPHER_SEGMENT_SIZE) {
      const end = Math.min(size, off + CIPHER_SEGMENT_SIZE);
      openSegment(pkey, counter++, end === size, cipher.subarray(off, end));
    }
    const t2 = add('ChaCha20-Poly1305 open (restore)', kind, t, size - start);
    // What the restore's fast path does for segments holding only raw blobs (restore/crypto.ts): ChaCha20
    // without the tag, the keyed blob ID then authenticates every byte used.
    decryptSegments(pkey, cipher.subarray(start), 0, true, false);
    add('ChaCha20 only (restore, raw blobs)', kind, t2, size - start);
    unlinkSync(p.file);
  };

  const dedup = { fixed: 0, cdc: 0 };
  const seenFixed = new Set<string>();
  const seenCdc = new Set<string>();
  const destDir = path.join(scratch, 'dest');
  mkdirSync(destDir, { recursive: true });
  const all = files(corpus);
  for (const f of all) {
    const kind = f.endsWith('.json') ? 'json' : 'bulk';
    let t = cpu();
    const fd = openSync(f, 'r');
    const size = statSync(f).size;
    if (buf.length < size) buf = Buffer.allocUnsafe(size);
    let got = 0;
    while (got < size) {
      const n = readSync(fd, buf, got, size - got, got);
      if (n === 0) break;
      got += n;
    }
    closeSync(fd);
    const data = buf.subarray(0, got);
    bytes[kind] += got;
    t = add('read (page cache)', kind, t, got);
    const chunker = new Chunker(kind === 'json' ? DEFAULT_CHUNKERS.json : DEFAULT_CHUNKERS.bulk, gear);
    const lens = chunker.push(data);
    const last = chunker.finish();
    if (last) lens.push(last);
    add(kind === 'json' ? 'FastCDC (JSON)' : 'fixed chunks (tarballs)', kind, t, got);
    const raw = kind === 'bulk' && looksCompressed(data);
    if (kind === 'bulk') {
      // What content-defined chunking would deduplicate in the tarballs (it is not used for them).
      const t0 = cpu();
      const cdc = new Chunker(DEFAULT_CHUNKERS.json, gear);
      const cl = cdc.push(data);
      const cLast = cdc.finish();
      if (cLast) cl.push(cLast);
      add('FastCDC (tarballs; not used)', kind, t0, got);
      let at = 0;
      for (const len of cl) {
        const id = blobId(key, BlobType.data, data.subarray(at, at + len)).toString('latin1');
        at += len;
        if (!seenCdc.has(id)) {
          seenCdc.add(id);
          dedup.cdc += len;
        }
      }
      at = 0;
      for (const len of lens) {
        const id = blobId(key, BlobType.data, data.subarray(at, at + len)).toString('latin1');
        at += len;
        if (!seenFixed.has(id)) {
          seenFixed.add(id);
          dedup.fixed += len;
        }
      }
    }
    let off = 0;
    for (const len of lens) {
      const c = data.subarray(off, off + len);
      off += len;
      t = cpu();
      blobId(key, BlobType.data, c);
      t = add('blob ID (in use)', kind, t, len);
      hmac(c);
      t = add('HMAC-SHA256', kind, t, len);
      blake3(c);
      t = add('keyed BLAKE3', kind, t, len);
      const { bytes: stored } = compressor.compress(c, raw ? 'raw' : 'try');
      t = add(kind === 'json' ? `zstd -${LEVEL} (JSON)` : 'compression skipped (gzip)', kind, t, len);
      const p = (open[kind] ??= newPack());
      const parts = p.enc.push(stored);
      p.size += stored.length;
      add('ChaCha20-Poly1305 seal', kind, t, stored.length);
      emit(kind, p, parts, false);
      if (p.size >= PACK_SIZE) seal(kind);
    }
    if (kind === 'bulk') {
      // Restore: the tarball's SHA-1 (checked against the packument) and writing it to the destination.
      t = cpu();
      createHash('sha1').update(data).digest();
      t = add('SHA-1 of the file (restore)', kind, t, got);
      const dest = path.join(destDir, 'f');
      const wfd = openSync(dest, 'w');
      writeSync(wfd, data);
      closeSync(wfd);
      unlinkSync(dest);
      add('write restored file', kind, t, got);
    }
  }
  seal('json');
  seal('bulk');
  rmSync(destDir, { recursive: true, force: true });

  // Per-chunk cost at fixed sizes, best of five rounds (CPU time, so a loaded machine affects it less).
  const perChunk: StageReport['perChunk'] = [];
  for (const size of [8 * 1024, 32 * 1024, 128 * 1024, 1024 * 1024]) {
    const bufs = Array.from({ length: 16 }, () => randomBytes(size));
    const n = Math.max(32, (32 * 1024 * 1024) / size);
    const best = { hmac: Infinity, blake3: Infinity };
    for (let round = 0; round < 5; round++) {
      for (const [name, h] of [
        ['hmac', hmac],
        ['blake3', blake3],
      ] as const) {
        const t0 = cpu();
        for (let i = 0; i < n; i++) h(bufs[i % 16]!);
        best[name] = Math.min(best[name], ((cpu() - t0) * 1e6) / n);
      }
    }
    perChunk.push({ size, ...best });
  }
  return { costs, fsyncSeconds, packs, bytes, perChunk, dedup };
}

if (!isMainThread) {
  const { corpus, scratch } = workerData as { corpus: string; scratch: string };
  parentPort!.postMessage(stages(corpus, scratch));
} else {
  await main();
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      corpus: { type: 'string', default: '/tmp/corpus-1g' },
      out: { type: 'string', default: '/tmp/bench-floor' },
      rounds: { type: 'string', default: '2' },
      'dest-root': { type: 'string', default: '/dev/shm' },
      cores: { type: 'string' },
      whole: { type: 'boolean', default: false },
      'stages-only': { type: 'boolean', default: false },
    },
  });
  const corpus = values.corpus!;
  const out = values.out!;
  const rounds = Number(values.rounds);
  const cores = Number(values.cores ?? os.availableParallelism());
  const tarballs = path.join(corpus, 'tarballs');
  mkdirSync(out, { recursive: true });
  console.log(pageFaultCost());
  console.log(
    `corpus ${corpus}; ${cores} cores; load average ${os
      .loadavg()
      .map((l) => fmt(l, 2))
      .join(' ')}`,
  );
  const corpusBytes = await warm(corpus);

  // 1. Stages.
  const scratch = path.join(out, 'stages');
  rmSync(scratch, { recursive: true, force: true });
  mkdirSync(scratch, { recursive: true });
  const s = await new Promise<StageReport>((resolve, reject) => {
    const w = new Worker(new URL(import.meta.url), { workerData: { corpus, scratch } });
    w.once('message', resolve);
    w.once('error', reject);
  });
  rmSync(scratch, { recursive: true, force: true });
  const sum = (stage: string, kinds: ('json' | 'bulk')[]) =>
    kinds.reduce((a, k) => a + (s.costs[stage]?.[k][0] ?? 0), 0);
  const rows: (string | number)[][] = [['stage', 'input', 'MB', 'CPU s', 'ns/byte', 'MB/s']];
  for (const [stage, c] of Object.entries(s.costs)) {
    for (const kind of ['json', 'bulk'] as const) {
      const [secs, n] = c[kind];
      if (n === 0 && secs < 0.0005) continue;
      rows.push([
        stage,
        kind === 'json' ? 'JSON' : 'tarballs',
        fmt(n / 1e6),
        fmt(secs, 3),
        n ? fmt((secs * 1e9) / n, 2) : '-',
        n ? fmt(n / 1e6 / secs, 0) : '-',
      ]);
    }
  }
  console.log(`\n== stages in isolation (one thread's CPU time over the corpus; ${s.packs} packs)`);
  console.log(table(rows));
  console.log(
    `fsync of the packs (wall, the durability a filesystem target gives): JSON ${fmt(s.fsyncSeconds.json, 2)} s, tarballs ${fmt(s.fsyncSeconds.bulk, 2)} s`,
  );
  console.log(
    `tarballs after deduplication: ${fmt(s.dedup.fixed / 1e6)} MB with the fixed 1 MiB chunks in use, ${fmt(s.dedup.cdc / 1e6)} MB with FastCDC (8/32/128 KiB) of ${fmt(s.bytes.bulk / 1e6)} MB: CDC would save ${fmt((s.dedup.fixed - s.dedup.cdc) / 1e6, 1)} MB`,
  );
  console.log('\n== keyed blob ID per chunk (CPU µs, best of 5)');
  console.log(
    table([
      ['chunk', 'HMAC-SHA256 µs', 'MB/s', 'keyed BLAKE3 µs', 'MB/s', 'BLAKE3 speed-up'],
      ...s.perChunk.map((r) => [
        `${r.size / 1024} KiB`,
        fmt(r.hmac, 1),
        fmt(r.size / r.hmac, 0),
        fmt(r.blake3, 1),
        fmt(r.size / r.blake3, 0),
        `${fmt(r.hmac / r.blake3, 2)}x`,
      ]),
    ]),
  );

  // 2. Floors.
  const backupStages = (kinds: ('json' | 'bulk')[]) =>
    [
      'read (page cache)',
      kinds.includes('json') ? 'FastCDC (JSON)' : '',
      'fixed chunks (tarballs)',
      'blob ID (in use)',
      kinds.includes('json') ? `zstd -${LEVEL} (JSON)` : '',
      'compression skipped (gzip)',
      'ChaCha20-Poly1305 seal',
      'pack SHA-256',
      'write packs (page cache)',
    ]
      .filter(Boolean)
      .reduce((a, st) => a + sum(st, kinds), 0);
  const floorTar = backupStages(['bulk']) / cores;
  const floorTarDurable = Math.max(floorTar, s.fsyncSeconds.bulk);
  const restoreCpu =
    sum('read (page cache)', ['bulk']) +
    sum('ChaCha20 only (restore, raw blobs)', ['bulk']) +
    sum('blob ID (in use)', ['bulk']) +
    sum('SHA-1 of the file (restore)', ['bulk']) +
    sum('write restored file', ['bulk']);
  const floorRestore = restoreCpu / cores;
  const floorWhole = backupStages(['json', 'bulk']) / cores;
  console.log(
    `\n== floors (sum of the stages / ${cores} cores)\n` +
      `tarball store backup: ${fmt(backupStages(['bulk']), 2)} CPU s -> ${fmt(floorTar, 2)} s` +
      ` (with the packs' fsync as the wall-clock bound: ${fmt(floorTarDurable, 2)} s)\n` +
      `tarball store restore (read, ChaCha20, blob ID, SHA-1, write): ${fmt(restoreCpu, 2)} CPU s -> ${fmt(floorRestore, 2)} s\n` +
      `whole corpus backup: ${fmt(backupStages(['json', 'bulk']), 2)} CPU s -> ${fmt(floorWhole, 2)} s`,
  );
  if (values['stages-only']) return;

  // 3. The pipelines, alternating with restic.
  const tarBytes = s.bytes.bulk;
  const dir = path.join(out, 'rb-tarballs');
  const config = path.join(dir, 'regbackup.yaml');
  const env = { REGBACKUP_CONFIG: config, REGBACKUP_LOG_LEVEL: 'warn' };
  // The binary itself, so that its shebang's flags (heap, malloc arenas) apply as for a user.
  const rb = (args: string[]) => measure(BIN, args, env);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    config,
    `keys: ./keys/worker.key\nidentity: ./keys/restore.key\ncache: ./cache\nsources:\n  tarballs: [{ name: tarballs, path: "${tarballs}" }]\ntargets:\n  - { name: local, type: fs, path: ./target }\n`,
  );
  await rb(['keys', 'generate', '--out', path.join(dir, 'keys')]);
  const restic = path.join(out, 'restic');
  const renv = { RESTIC_PASSWORD: 'bench', RESTIC_CACHE_DIR: path.join(out, 'restic-cache') };
  const destRoot = path.join(values['dest-root']!, `bench-floor-${process.pid}`);
  const res: Record<string, Measured[]> = {
    'rb backup': [],
    'restic backup': [],
    'rb restore': [],
    'restic restore': [],
    'rb whole': [],
    'restic whole': [],
    'rb fixed': [],
    'rb fixed restore': [],
  };
  // regbackup's fixed cost, measured the same way: a backup and a restore of a store of one 1 KB file (process
  // start, four threads, opening the repository, the snapshot and index commits, the restore's verification).
  const fixedDir = path.join(out, 'rb-fixed');
  const fixedStore = path.join(fixedDir, 'store');
  const fixedEnv = { REGBACKUP_CONFIG: path.join(fixedDir, 'regbackup.yaml'), REGBACKUP_LOG_LEVEL: 'warn' };
  rmSync(fixedDir, { recursive: true, force: true });
  mkdirSync(path.join(fixedStore, 'a', '-'), { recursive: true });
  writeFileSync(path.join(fixedStore, 'a', '-', 'a-1.0.0.tgz'), randomBytes(1000));
  writeFileSync(
    fixedEnv.REGBACKUP_CONFIG,
    `keys: ${path.join(dir, 'keys', 'worker.key')}\nidentity: ${path.join(dir, 'keys', 'restore.key')}\ncache: ./cache\nsources:\n  tarballs: [{ name: tarballs, path: "${fixedStore}" }]\ntargets:\n  - { name: local, type: fs, path: ./target }\n`,
  );
  try {
    for (let i = 0; i < rounds; i++) {
      rmSync(path.join(fixedDir, 'target'), { recursive: true, force: true });
      rmSync(path.join(fixedDir, 'cache'), { recursive: true, force: true });
      await measure(BIN, ['init'], fixedEnv);
      res['rb fixed']!.push(await measure(BIN, ['backup'], fixedEnv));
      const d0 = path.join(destRoot, `rb-fixed-${i}`);
      res['rb fixed restore']!.push(await measure(BIN, ['restore', '--tarballs', d0], fixedEnv));
      rmSync(d0, { recursive: true, force: true });
      // Full backups into empty repositories.
      rmSync(path.join(dir, 'target'), { recursive: true, force: true });
      rmSync(path.join(dir, 'cache'), { recursive: true, force: true });
      await rb(['init']);
      await warm(tarballs);
      const b = await rb(['backup']);
      res['rb backup']!.push(b);
      rmSync(restic, { recursive: true, force: true });
      rmSync(renv.RESTIC_CACHE_DIR, { recursive: true, force: true });
      await measure('restic', ['init', '--repo', restic], renv);
      await warm(tarballs);
      const r = await measure('restic', ['backup', '--repo', restic, '--quiet', tarballs], renv);
      res['restic backup']!.push(r);
      // Restores of those, into the destination root (tmpfs by default: the pipeline, not this VM's disk).
      const d1 = path.join(destRoot, `rb-${i}`);
      await warm(path.join(dir, 'target'));
      const rr = await rb(['restore', '--tarballs', d1, '--json']);
      if (!(JSON.parse(rr.stdout) as { verified: boolean }).verified)
        throw new Error('regbackup restore did not verify');
      res['rb restore']!.push(rr);
      rmSync(d1, { recursive: true, force: true });
      const d2 = path.join(destRoot, `restic-${i}`);
      await warm(restic);
      res['restic restore']!.push(
        await measure('restic', ['restore', 'latest', '--repo', restic, '--target', d2, '--quiet'], renv),
      );
      rmSync(d2, { recursive: true, force: true });
      console.log(
        `round ${i + 1}: backup regbackup ${fmt(b.seconds, 2)} s / restic ${fmt(r.seconds, 2)} s; restore regbackup ${fmt(rr.seconds, 2)} s / restic ${fmt(res['restic restore']![i]!.seconds, 2)} s`,
      );
      if (values.whole) {
        const wdir = path.join(out, 'rb-whole');
        rmSync(wdir, { recursive: true, force: true });
        await warm(corpus);
        res['rb whole']!.push(
          // The flags of bin/regbackup.js's shebang.
          await measure(
            'node',
            [
              '--max-semi-space-size=4',
              '--heap-growing-percent=100',
              path.join(here, 'write-tree.js'),
              '--src',
              corpus,
              '--repo',
              path.join(wdir, 'repo'),
            ],
            { MALLOC_ARENA_MAX: '2', MALLOC_TRIM_THRESHOLD_: '8388608', MALLOC_MMAP_THRESHOLD_: '4194304' },
          ),
        );
        const wr = path.join(out, 'restic-whole');
        rmSync(wr, { recursive: true, force: true });
        await measure('restic', ['init', '--repo', wr], renv);
        await warm(corpus);
        res['restic whole']!.push(await measure('restic', ['backup', '--repo', wr, '--quiet', corpus], renv));
        rmSync(wdir, { recursive: true, force: true });
        rmSync(wr, { recursive: true, force: true });
      }
    }
  } finally {
    rmSync(destRoot, { recursive: true, force: true });
  }

  const median = (xs: Measured[], f: (m: Measured) => number) =>
    [...xs.map(f)].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
  const secs = (k: string) => median(res[k]!, (m) => m.seconds);
  const rss = (k: string) => Math.max(...res[k]!.map((m) => m.maxRssMiB));
  const cpuS = (k: string) => median(res[k]!, (m) => m.cpuSeconds);
  const all = (k: string) => res[k]!.map((m) => fmt(m.seconds, 2)).join(' ');
  const line = (name: string, k: string, bytes: number, floor: number, floorCpu: number, peer?: string) => [
    name,
    all(k),
    fmt(bytes / 1e6 / secs(k), 0),
    fmt(rss(k), 0),
    floor ? `${fmt(secs(k) / floor, 2)}x` : '',
    peer ? `${fmt(secs(peer) / secs(k), 2)}x` : '',
    fmt(cpuS(k), 2),
    floor ? `${fmt(cpuS(k) / floorCpu, 2)}x` : '',
    peer ? `${fmt(cpuS(peer) / cpuS(k), 2)}x` : '',
  ];
  /** The pipeline without the fixed cost: the run's median less the 1-file run's, against the floor. */
  const minusFixed = (name: string, k: string, fixed: string, floor: number) => {
    const t = secs(k) - secs(fixed);
    return [
      name,
      fmt(t, 2),
      fmt(tarBytes / 1e6 / t, 0),
      '',
      `${fmt(t / floor, 2)}x`,
      '',
      fmt(cpuS(k) - cpuS(fixed), 2),
      '',
      '',
    ];
  };
  const rowsP: (string | number)[][] = [
    [
      'run (median of rounds)',
      'seconds',
      'MB/s',
      'peak RSS MiB',
      'vs floor',
      'speed vs restic',
      'CPU s',
      'CPU vs floor',
      'CPU: restic/this',
    ],
    [
      'floor: tarball backup',
      fmt(floorTarDurable, 2),
      fmt(tarBytes / 1e6 / floorTarDurable, 0),
      '',
      '',
      '',
      fmt(floorTar * cores, 2),
      '',
      '',
    ],
    line('regbackup backup', 'rb backup', tarBytes, floorTarDurable, floorTar * cores, 'restic backup'),
    line('restic backup', 'restic backup', tarBytes, floorTarDurable, floorTar * cores),
    line('regbackup backup, 1 file', 'rb fixed', 1000, 0, floorTar * cores),
    minusFixed('regbackup backup - 1 file', 'rb backup', 'rb fixed', floorTarDurable),
    [
      'floor: tarball restore',
      fmt(floorRestore, 2),
      fmt(tarBytes / 1e6 / floorRestore, 0),
      '',
      '',
      '',
      fmt(floorRestore * cores, 2),
      '',
      '',
    ],
    line('regbackup restore', 'rb restore', tarBytes, floorRestore, floorRestore * cores, 'restic restore'),
    line('restic restore', 'restic restore', tarBytes, floorRestore, floorRestore * cores),
    line('regbackup restore, 1 file', 'rb fixed restore', 1000, 0, floorRestore * cores),
    minusFixed('regbackup restore - 1 file', 'rb restore', 'rb fixed restore', floorRestore),
  ];
  if (values.whole) {
    rowsP.push(
      [
        'floor: whole corpus',
        fmt(floorWhole, 2),
        fmt(corpusBytes / 1e6 / floorWhole, 0),
        '',
        '',
        '',
        fmt(floorWhole * cores, 2),
        '',
        '',
      ],
      line('regbackup whole corpus', 'rb whole', corpusBytes, floorWhole, floorWhole * cores, 'restic whole'),
      line('restic whole corpus', 'restic whole', corpusBytes, floorWhole, floorWhole * cores),
    );
  }
  console.log(
    `\n== pipelines: tarball store ${fmt(tarBytes / 1e6)} MB${values.whole ? `, whole corpus ${fmt(corpusBytes / 1e6)} MB` : ''}; ${rounds} rounds, alternating`,
  );
  console.log(table(rowsP));
  console.log(
    'CPU s: user + system of the whole process tree (a loaded machine distorts it far less than wall time)',
  );
  console.log(
    'goals: backup <= 1.25x its floor and >= 2x restic; restore >= 1.5x restic; peak RSS <= 200 MB',
  );
  process.exit(0);
}
