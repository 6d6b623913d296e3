import { IntegrityError, KeyError, RegbackupError, TargetError } from '../errors.js';
import { log } from '../log.js';
import { ObjectNotFoundError, type ObjectStore } from '../store/types.js';
import { cipherRange, openSegments, SEGMENT_SIZE } from './age.js';
import type { BlobIndex, BlobLocation } from './blob-index.js';
import { decompressBlob } from './compress.js';
import { blobId, BlobType } from './ids.js';
import { PackHeaders } from './pack-headers.js';
import { packKey } from './pack.js';
import type { Repository } from './repository.js';

export interface FallbackEvent {
  blob: string;
  pack: string;
  from: string;
  to: string;
  reason: string;
}

/**
 * Reads blobs: finds the blob in the index, reads only its byte range of the pack, decrypts the covering age
 * segments, decompresses, and checks the keyed ID. When a target lacks the pack or serves bad bytes, the next
 * target is tried, and the fallback is recorded.
 */
/** Tree packs (listings) up to this size are fetched whole once and kept, instead of one request per blob. */
const TREE_PACK_CACHE_MAX = 4 * 1024 * 1024;
const TREE_PACK_CACHE_BYTES = 32 * 1024 * 1024;
/** readMany: the most bytes of one pack read with one request. */
const MANY_SPAN_MAX = 4 * 1024 * 1024;

export class BlobReader {
  private readonly headers: PackHeaders;
  /** Whole small tree packs (ciphertext), least recently used first. */
  private readonly packs = new Map<string, Promise<Buffer>>();
  private packBytes = 0;
  readonly fallbacks: FallbackEvent[] = [];
  bytesRead = 0;

  constructor(
    private readonly repo: Repository,
    private readonly index: BlobIndex,
    private readonly stores: readonly ObjectStore[] = repo.targets,
  ) {
    if (!repo.identities)
      throw new KeyError('reading needs the restore identity (or, for metadata, the worker key)');
    this.headers = new PackHeaders(repo);
  }

  locate(id: Buffer): BlobLocation {
    const loc = this.index.lookup(id);
    if (!loc) throw this.repo.blobNotIndexed(id);
    return loc;
  }

  async read(id: Buffer): Promise<Buffer> {
    const loc = this.locate(id);
    let lastErr: Error | undefined;
    let onlyKeyErrors = true;
    for (let i = 0; i < this.stores.length; i++) {
      const store = this.stores[i]!;
      try {
        const data = await this.readFrom(store, id, loc);
        if (i > 0 && lastErr) {
          this.fallbacks.push({
            blob: id.toString('hex'),
            pack: loc.pack.id,
            from: this.stores[i - 1]!.name,
            to: store.name,
            reason: lastErr.message,
          });
          log().warn(
            {
              blob: id.toString('hex').slice(0, 12),
              from: this.stores[i - 1]!.name,
              to: store.name,
              reason: lastErr.message,
            },
            'read from another target',
          );
        }
        return data;
      } catch (err) {
        // A pack no identity opens may be a forgery on this target: the next is tried. A wrong identity
        // fails the same way on every target, and is then the error.
        if (!(err instanceof RegbackupError)) throw err;
        if (!(err instanceof KeyError)) onlyKeyErrors = false;
        lastErr = err;
      }
    }
    if (onlyKeyErrors && lastErr) throw lastErr;
    if (lastErr instanceof TargetError || lastErr instanceof ObjectNotFoundError) {
      throw new TargetError(
        `blob ${id.toString('hex')} (pack ${loc.pack.id}) cannot be read from any target: ${lastErr.message}`,
      );
    }
    throw new IntegrityError(
      `blob ${id.toString('hex')} (pack ${loc.pack.id}) cannot be read intact from any target: ${lastErr?.message}`,
    );
  }

  /**
   * Several blobs, in order. Blobs that lie one after the other in the same pack (a listing's chunks, written
   * in sequence) are read with one ranged request and their age segments decrypted once, instead of one
   * request per blob, each decrypting the segments it shares with its neighbours; each blob is still
   * decompressed and checked against its keyed ID. A group that cannot be read so from the first target is
   * read blob by blob with `read` (which tries the other targets and reports the fallback).
   */
  async readMany(ids: readonly Buffer[]): Promise<Buffer[]> {
    const locs = ids.map((id) => this.locate(id));
    const out: Buffer[] = new Array<Buffer>(ids.length);
    const groups: Promise<void>[] = [];
    for (let i = 0; i < ids.length;) {
      let j = i + 1;
      while (j < ids.length) {
        const prev = locs[j - 1]!;
        const cur = locs[j]!;
        const gap = cur.offset - (prev.offset + prev.length);
        if (cur.pack.id !== locs[i]!.pack.id || gap < 0 || gap > SEGMENT_SIZE) break;
        if (cur.offset + cur.length - locs[i]!.offset > MANY_SPAN_MAX) break;
        j++;
      }
      groups.push(this.readGroup(ids, locs, i, j, out));
      i = j;
    }
    await Promise.all(groups);
    return out;
  }

  private async readGroup(
    ids: readonly Buffer[],
    locs: BlobLocation[],
    from: number,
    to: number,
    out: Buffer[],
  ): Promise<void> {
    if (to - from > 1) {
      try {
        const got = await this.readSpan(this.stores[0]!, ids.slice(from, to), locs.slice(from, to));
        got.forEach((b, k) => (out[from + k] = b));
        return;
      } catch (err) {
        if (!(err instanceof RegbackupError)) throw err;
        // read blob by blob below: other targets, and the error of the blob that is bad
      }
    }
    for (let k = from; k < to; k++) out[k] = await this.read(ids[k]!);
  }

  /** Blobs that follow each other in one pack, from one target: one ranged read, one decryption. */
  private async readSpan(store: ObjectStore, ids: Buffer[], locs: BlobLocation[]): Promise<Buffer[]> {
    const first = locs[0]!;
    const last = locs[locs.length - 1]!;
    const key = packKey(first.pack.type, first.pack.id);
    const opened = await this.headers.get(store, key);
    const span = last.offset + last.length - first.offset;
    const { start, end, firstSegment } = cipherRange(opened, first.pack.size, first.offset, span);
    const cipher =
      first.type === BlobType.tree && first.pack.size <= TREE_PACK_CACHE_MAX
        ? (await this.wholePack(store, key, first.pack.size)).subarray(start, end)
        : await store.getBuffer(key, { offset: start, length: end - start });
    this.bytesRead += cipher.length;
    const where = `pack ${first.pack.id} on ${store.name}`;
    if (cipher.length !== end - start)
      throw new IntegrityError(`${where}: pack is shorter than the index says (truncated?)`);
    let plain: Buffer;
    try {
      plain = openSegments(opened, cipher, firstSegment, end === first.pack.size);
    } catch (err) {
      throw new IntegrityError(`${where}: ${(err as Error).message}`);
    }
    return ids.map((id, k) => {
      const loc = locs[k]!;
      const rel = loc.offset - firstSegment * SEGMENT_SIZE;
      let raw: Buffer;
      try {
        raw = decompressBlob(plain.subarray(rel, rel + loc.length), loc.compression, loc.rawLength);
      } catch (err) {
        throw new IntegrityError(
          `blob ${id.toString('hex').slice(0, 16)}… in ${where}: ${(err as Error).message}`,
        );
      }
      if (loc.type !== first.type || !blobId(this.repo.idKey, loc.type, raw).equals(id)) {
        throw new IntegrityError(
          `blob ${id.toString('hex').slice(0, 16)}… in ${where}: content does not match its ID (corrupt or substituted)`,
        );
      }
      return raw;
    });
  }

  /** A small tree pack, whole (cached): listings are read chunk after chunk from the same few packs. */
  private wholePack(store: ObjectStore, key: string, size: number): Promise<Buffer> {
    const k = `${store.name}\0${key}`;
    let p = this.packs.get(k);
    if (p) {
      this.packs.delete(k);
      this.packs.set(k, p);
      return p;
    }
    p = store.getBuffer(key);
    this.packs.set(k, p);
    this.packBytes += size;
    p.catch(() => {
      if (this.packs.get(k) === p) {
        this.packs.delete(k);
        this.packBytes -= size;
      }
    });
    while (this.packBytes > TREE_PACK_CACHE_BYTES && this.packs.size > 1) {
      const [oldest] = this.packs.keys();
      this.packs.delete(oldest!);
      this.packBytes -=
        this.index.packById(
          oldest!
            .slice(oldest!.indexOf('\0') + 1)
            .split('/')
            .pop()!,
        )?.size ?? 0;
    }
    return p;
  }

  private async readFrom(store: ObjectStore, id: Buffer, loc: BlobLocation): Promise<Buffer> {
    const key = packKey(loc.pack.type, loc.pack.id);
    const opened = await this.headers.get(store, key);
    const { start, end, firstSegment } = cipherRange(opened, loc.pack.size, loc.offset, loc.length);
    const cipher =
      loc.type === BlobType.tree && loc.pack.size <= TREE_PACK_CACHE_MAX
        ? (await this.wholePack(store, key, loc.pack.size)).subarray(start, end)
        : await store.getBuffer(key, { offset: start, length: end - start });
    this.bytesRead += cipher.length;
    const what = `blob ${id.toString('hex').slice(0, 16)}… in pack ${loc.pack.id} on ${store.name}`;
    if (cipher.length !== end - start)
      throw new IntegrityError(`${what}: pack is shorter than the index says (truncated?)`);
    let plain: Buffer;
    try {
      plain = openSegments(opened, cipher, firstSegment, end === loc.pack.size);
    } catch (err) {
      throw new IntegrityError(`${what}: ${(err as Error).message}`);
    }
    const rel = loc.offset - firstSegment * SEGMENT_SIZE;
    const stored = plain.subarray(rel, rel + loc.length);
    let raw: Buffer;
    try {
      raw = decompressBlob(stored, loc.compression, loc.rawLength);
    } catch (err) {
      throw new IntegrityError(`${what}: ${(err as Error).message}`);
    }
    if (!blobId(this.repo.idKey, loc.type, raw).equals(id)) {
      throw new IntegrityError(`${what}: content does not match its ID (corrupt or substituted)`);
    }
    return raw;
  }
}
