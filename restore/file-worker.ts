/**
 * Worker thread of the tarball restore's fast path (protocol in file-protocol.ts): reads the pack ranges a job
 * needs from the local target, decrypts them, verifies each blob's keyed ID, and writes each file under a
 * temporary name (O_EXCL|O_NOFOLLOW, checked to lie under the destination), checks its size and sha1, syncs
 * it and renames it into place. Synchronous calls: this thread does nothing else.
 */
import { createHash, type Hash } from 'node:crypto';
import {
  closeSync,
  constants,
  fsyncSync,
  futimesSync,
  openSync,
  readlinkSync,
  readSync,
  renameSync,
  unlinkSync,
} from 'node:fs';
import path from 'node:path';
import v8 from 'node:v8';
import vm from 'node:vm';
import { parentPort, workerData } from 'node:worker_threads';
import {
  CIPHER_SEGMENT_SIZE,
  decryptSegments,
  SEGMENT_SIZE,
  verifiedPieces,
  type Segments,
} from './crypto.js';
import type { ChunkRef, FileJob, FileResult, Job, JobResult } from './file-protocol.js';
import { releaseNow } from '../src/util/release.js';
import { writeAll } from '../src/util/write-all.js';

const idKey = Buffer.from((workerData as { idKey: Uint8Array }).idKey);
const port = parentPort!;
const fds = new Map<string, number>();

function packFd(p: string): number {
  let fd = fds.get(p);
  if (fd === undefined) {
    fd = openSync(p, constants.O_RDONLY | constants.O_NOFOLLOW);
    fds.set(p, fd);
    if (fds.size > 32) {
      const [k, old] = fds.entries().next().value!;
      fds.delete(k);
      closeSync(old);
    }
  }
  return fd;
}

/** Segments per read (2 MiB). */
const MAX_RANGE = 16;

interface Range {
  pack: number;
  first: number;
  last: number;
  /** Chunks still to be cut from it. */
  users: number;
  /** Some chunk in it is stored compressed: its segments are authenticated before decompression. */
  compressed: boolean;
  decoded?: Segments | string;
}

/** One read buffer per worker, grown as needed: fresh buffers would cost a page fault per 4 KiB. */
let readBuf = Buffer.allocUnsafeSlow((MAX_RANGE + 1) * CIPHER_SEGMENT_SIZE);

function codeOf(err: unknown): string | undefined {
  return (err as { code?: string }).code;
}

function handle(job: Job): JobResult {
  let bytesRead = 0;
  // The segment ranges each pack must be read for, merged where they touch.
  // The segment ranges to read per pack: neighbouring chunks merged, at most MAX_RANGE segments per read
  // (unless one chunk is longer), each released as soon as the last chunk in it is used.
  const byPack = new Map<number, ChunkRef[]>();
  for (const f of job.files) {
    for (const c of f.chunks) {
      const list = byPack.get(c.pack) ?? [];
      list.push(c);
      byPack.set(c.pack, list);
    }
  }
  const rangeOf = new Map<ChunkRef, Range>();
  for (const [pack, list] of byPack) {
    list.sort((a, b) => a.offset - b.offset);
    let cur: Range | undefined;
    for (const c of list) {
      const a = Math.floor(c.offset / SEGMENT_SIZE);
      const b = Math.floor((c.offset + Math.max(c.length, 1) - 1) / SEGMENT_SIZE);
      if (cur && a <= cur.last + 1 && Math.max(b, cur.last) - cur.first < MAX_RANGE)
        cur.last = Math.max(cur.last, b);
      else cur = { pack, first: a, last: b, users: 0, compressed: false };
      cur.users++;
      if (c.compression !== 0) cur.compressed = true;
      rangeOf.set(c, cur);
    }
  }
  const decode = (r: Range) => {
    if (r.decoded) return r.decoded;
    const p = job.packs[r.pack]!;
    const start = p.payloadOffset + r.first * CIPHER_SEGMENT_SIZE;
    const end = Math.min(p.size, p.payloadOffset + (r.last + 1) * CIPHER_SEGMENT_SIZE);
    try {
      const fd = packFd(p.path);
      const len = Math.max(0, end - start);
      if (readBuf.length < len) readBuf = Buffer.allocUnsafeSlow(len);
      const cipher = readBuf.subarray(0, len);
      let got = 0;
      while (got < len) {
        const n = readSync(fd, cipher, got, len - got, start + got);
        if (n === 0) break;
        got += n;
      }
      bytesRead += got;
      r.decoded = decryptSegments(
        p.key,
        cipher.subarray(0, got),
        r.first,
        end === p.size && got === len,
        r.compressed,
      );
    } catch (err) {
      r.decoded = `pack ${path.basename(p.path)}: ${codeOf(err) === 'ENOENT' ? 'does not exist' : (err as Error).message}`;
    }
    return r.decoded;
  };
  /** Decrypted segments no chunk needs any more: released once the chunk cut last from them is written. */
  let spent: Buffer[] = [];
  const chunk = (c: ChunkRef): Buffer[] | string => {
    const r = rangeOf.get(c)!;
    const d = decode(r);
    const out = typeof d === 'string' ? d : verifiedPieces(d, c, c.id, idKey);
    if (--r.users === 0) {
      if (typeof r.decoded === 'object') spent.push(...r.decoded.segs);
      r.decoded = undefined;
    }
    return out;
  };
  const releaseSpent = () => {
    releaseNow(spent);
    spent = [];
  };

  const results: FileResult[] = [];
  const written: { i: number; fd: number; f: FileJob }[] = [];
  for (const f of job.files) {
    const tmp = path.join(f.dir, f.tmp);
    let fd: number | undefined;
    try {
      const flags = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;
      try {
        fd = openSync(tmp, flags, 0o644);
      } catch (err) {
        if (codeOf(err) !== 'EEXIST') throw err;
        unlinkSync(tmp); // a stale temporary file (or something planted there): removed, never followed
        fd = openSync(tmp, flags, 0o644);
      }
      const where = readlinkSync(`/proc/self/fd/${fd}`);
      if (!where.startsWith(job.root + path.sep)) {
        throw Object.assign(
          new Error(
            `the file opened outside the destination (${where}); a directory was replaced while restoring`,
          ),
          { code: 'EOUTSIDE' },
        );
      }
      const sha1: Hash | undefined = f.sha1 ? createHash('sha1') : undefined;
      const sha512: Hash | undefined = f.sha512 && !f.sha1 ? createHash('sha512') : undefined;
      let size = 0;
      let failed: FileResult | undefined;
      for (const c of f.chunks) {
        const b = chunk(c);
        if (typeof b === 'string') {
          failed = {
            ok: false,
            kind: 'source',
            message: `blob ${Buffer.from(c.id).toString('hex').slice(0, 16)}…: ${b}`,
          };
          break;
        }
        for (const piece of b) {
          sha1?.update(piece);
          sha512?.update(piece);
          size += piece.length;
        }
        writeAll(fd, b);
        releaseSpent();
      }
      releaseSpent();
      let how: 'sha1' | 'sha512' | 'size' = 'size';
      if (!failed && size !== f.size)
        failed = {
          ok: false,
          kind: 'integrity',
          message: `${size} bytes restored, the snapshot says ${f.size}`,
        };
      if (!failed && sha1) {
        const got = sha1.digest('hex');
        if (got !== f.sha1)
          failed = {
            ok: false,
            kind: 'integrity',
            message: `sha1 ${got} does not match the recorded ${f.sha1}`,
          };
        how = 'sha1';
      } else if (!failed && sha512) {
        if (sha512.digest('base64') !== f.sha512)
          failed = { ok: false, kind: 'integrity', message: 'sha512 does not match the recorded one' };
        how = 'sha512';
      }
      if (failed) {
        closeSync(fd);
        unlinkSync(tmp);
        results.push(failed);
        continue;
      }
      results.push({ ok: true, how });
      written.push({ i: results.length - 1, fd, f });
    } catch (err) {
      if (fd !== undefined) {
        closeSync(fd);
        try {
          unlinkSync(tmp);
        } catch (e) {
          if (codeOf(e) !== 'ENOENT') throw e;
        }
      }
      results.push({ ok: false, kind: 'dest', message: (err as Error).message, code: codeOf(err) });
    }
  }
  // Sync the job's files together (one journal commit covers them all on most filesystems), then rename.
  for (const w of written) {
    try {
      const t = (w.f.mtime + 0.5) / 1000;
      if (Number.isFinite(t) && t > 0) futimesSync(w.fd, t, t);
      fsyncSync(w.fd);
      closeSync(w.fd);
      w.fd = -1;
      renameSync(path.join(w.f.dir, w.f.tmp), path.join(w.f.dir, w.f.base));
    } catch (err) {
      if (w.fd >= 0) closeSync(w.fd);
      try {
        unlinkSync(path.join(w.f.dir, w.f.tmp));
      } catch (e) {
        if (codeOf(e) !== 'ENOENT') throw e;
      }
      const code = codeOf(err);
      results[w.i] = {
        ok: false,
        kind: 'dest',
        message:
          code === 'EISDIR' || code === 'ENOTEMPTY' || code === 'EEXIST'
            ? 'a directory of that name is in the way in the destination'
            : (err as Error).message,
        code,
      };
    }
  }
  return { n: job.n, results, bytesRead };
}

/**
 * A scavenge after each job frees its decrypted segments (64 KiB buffers, one per segment) at once, instead of
 * when V8's external-memory limit (64 MiB per thread) is reached: it keeps the restore within its memory
 * budget. `gc` is exposed to a fresh context only (the flag cannot be given to a worker's execArgv).
 */
v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as (o?: { type: string; execution: string }) => void;

port.on('message', (job: Job) => {
  try {
    port.postMessage(handle(job));
    gc({ type: 'minor', execution: 'sync' });
  } catch (err) {
    port.postMessage({ n: job.n, error: (err as Error).message });
  }
});
