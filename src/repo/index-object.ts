import { IntegrityError } from '../errors.js';
import type { PackInfo } from './blob-index.js';
import { BlobType } from './ids.js';
import { decodeEntry, encodeEntry, ENTRY_SIZE, type PackEntry } from './pack.js';

/**
 * Index objects (docs/FORMAT.md §10, "Index objects"): the body of a signed RBINDX01 object is
 *
 *   version u8 (1) | packCount u32 | pack*
 *   pack = packId[16] | type u8 | reserved[3] | size u64 | sha256[32] | entryCount u32 | entry[entryCount]
 *
 * with 48-byte entries laid out as in a pack trailer (all little endian).
 */
export interface IndexedPack {
  info: PackInfo;
  entries: PackEntry[];
}

const PACK_HEAD = 16 + 1 + 3 + 8 + 32 + 4;

export function encodeIndexBody(packs: readonly IndexedPack[]): Buffer {
  let size = 5;
  for (const p of packs) size += PACK_HEAD + p.entries.length * ENTRY_SIZE;
  const out = Buffer.alloc(size);
  out[0] = 1;
  out.writeUInt32LE(packs.length, 1);
  let at = 5;
  for (const p of packs) {
    Buffer.from(p.info.id, 'hex').copy(out, at);
    out[at + 16] = p.info.type;
    out.writeBigUInt64LE(BigInt(p.info.size), at + 20);
    Buffer.from(p.info.sha256, 'hex').copy(out, at + 28);
    out.writeUInt32LE(p.entries.length, at + 60);
    at += PACK_HEAD;
    for (const e of p.entries) {
      encodeEntry(e, out, at);
      at += ENTRY_SIZE;
    }
  }
  return out;
}

export function decodeIndexBody(body: Buffer, what: string): IndexedPack[] {
  const fail = (why: string) => new IntegrityError(`${what}: ${why}`);
  if (body.length < 5 || body[0] !== 1) throw fail('unknown index version');
  const n = body.readUInt32LE(1);
  if (n > body.length / PACK_HEAD) throw fail(`bad pack count ${n}`);
  const packs: IndexedPack[] = [];
  let at = 5;
  for (let i = 0; i < n; i++) {
    if (at + PACK_HEAD > body.length) throw fail('truncated');
    const type = body[at + 16]!;
    if (type !== BlobType.data && type !== BlobType.tree) throw fail(`bad pack type ${type}`);
    const size = body.readBigUInt64LE(at + 20);
    if (size > BigInt(Number.MAX_SAFE_INTEGER)) throw fail('bad pack size');
    const info: PackInfo = {
      id: body.subarray(at, at + 16).toString('hex'),
      type,
      size: Number(size),
      sha256: body.subarray(at + 28, at + 60).toString('hex'),
    };
    const count = body.readUInt32LE(at + 60);
    at += PACK_HEAD;
    if (count > (body.length - at) / ENTRY_SIZE) throw fail(`bad entry count ${count}`);
    const entries: PackEntry[] = [];
    for (let k = 0; k < count; k++) {
      let e: PackEntry;
      try {
        e = decodeEntry(body, at);
      } catch {
        throw fail(`bad entry ${k} of pack ${info.id}`);
      }
      if (e.type !== type) throw fail(`entry ${k} of pack ${info.id} has the wrong type`);
      if (e.offset + e.length > info.size) throw fail(`entry ${k} of pack ${info.id} lies outside the pack`);
      entries.push(e);
      at += ENTRY_SIZE;
    }
    packs.push({ info, entries });
  }
  if (at !== body.length) throw fail('trailing bytes');
  return packs;
}
