import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { encrypt } from '../../src/repo/age.js';
import { generateKeys } from '../../src/repo/keys.js';
import { encodeSigned, sha256Hex, type MagicName } from '../../src/repo/signed.js';

/**
 * Damage done to one object of a repository on a filesystem target (`root` is the target's directory, `key`
 * the object's key), the way a failing disk, a careless operator or an attacker with write access to one
 * provider would do it. Objects are built as docs/FORMAT.md §3–§4 and §9–§12 say.
 */
export type Damage = 'delete' | 'truncate' | 'flip' | 'garbage' | 'forge';

export const DAMAGES: readonly Damage[] = ['delete', 'truncate', 'flip', 'garbage', 'forge'];

/** The kinds of object a repository holds, by key prefix. */
export type ObjectKind = 'data' | 'tree' | 'index' | 'snapshot' | 'config';

function file(root: string, key: string): string {
  return path.join(root, ...key.split('/'));
}

/** Keys of the objects under `prefix` on the target, sorted. */
export function objectKeys(root: string, prefix: string): string[] {
  const out: string[] = [];
  const walk = (dir: string, rel: string) => {
    let names: string[];
    try {
      names = readdirSync(dir);
    } catch {
      return;
    }
    for (const n of names) {
      const p = path.join(dir, n);
      const k = rel ? `${rel}/${n}` : n;
      if (statSync(p).isDirectory()) walk(p, k);
      else if (k.startsWith(prefix)) out.push(k);
    }
  };
  const top = prefix.split('/')[0]!;
  if (statSync(path.join(root, top), { throwIfNoEntry: false })?.isFile()) return top === prefix ? [top] : [];
  walk(path.join(root, top), top);
  return out.filter((k) => !k.includes('/.') && !path.basename(k).startsWith('.')).sort();
}

/** Removes the object. */
export function deleteObject(root: string, key: string): void {
  rmSync(file(root, key));
}

/** Cuts the object to half its length (an interrupted upload, a full disk). */
export function truncateObject(root: string, key: string): void {
  const f = file(root, key);
  const b = readFileSync(f);
  writeFileSync(f, b.subarray(0, Math.floor(b.length / 2)));
}

/** Flips one bit of one byte in the middle of the object (bit rot). */
export function flipByte(root: string, key: string): void {
  const f = file(root, key);
  const b = readFileSync(f);
  b[Math.floor(b.length / 2)]! ^= 0x01;
  writeFileSync(f, b);
}

/** Replaces the object with random bytes of the same length, under the same (valid) name. */
export function replaceWithGarbage(root: string, key: string): void {
  const f = file(root, key);
  writeFileSync(f, randomBytes(statSync(f).size));
}

/** The public parameters an attacker reads from the unencrypted, signed config object. */
interface PublicConfig {
  id: string;
  keyId: string;
  recipients: string[];
  metadataRecipient: string;
  [k: string]: unknown;
}

function publicConfig(root: string): PublicConfig {
  const b = readFileSync(file(root, 'config'));
  return JSON.parse(b.subarray(13, b.length - 64).toString('utf8')) as PublicConfig;
}

/**
 * Replaces the object with a forgery that is a valid object of its kind in every respect but the one an
 * attacker cannot produce — made with what can be read from the target and public keys, never the
 * repository's secrets:
 *
 * - a pack (data/, tree/): a valid age file encrypted to the repository's recipients (from the config), of
 *   random plaintext, under the same name (pack names are random, not hashes);
 * - an index object or a snapshot: a signed object of the right magic, signed with another key, encrypted to
 *   the repository's recipients and metadata recipient, stored under a valid name — its own SHA-256 (and,
 *   for a snapshot, the same time) — in place of the original, which is removed;
 * - the config: the same JSON, signed with another key.
 *
 * Returns the key the forgery was stored under.
 */
export async function forgeObject(root: string, key: string): Promise<string> {
  const cfg = publicConfig(root);
  const foreign = (await generateKeys()).worker.signingKey;
  if (key === 'config') {
    const body = Buffer.from(JSON.stringify(cfg, null, 2) + '\n');
    writeFileSync(file(root, key), encodeSigned('config', body, foreign, false));
    return key;
  }
  if (key.startsWith('data/') || key.startsWith('tree/')) {
    const size = statSync(file(root, key)).size;
    const to = key.startsWith('data/') ? cfg.recipients : [...cfg.recipients, cfg.metadataRecipient];
    writeFileSync(file(root, key), await encrypt(to, randomBytes(Math.max(1, size - 512))));
    return key;
  }
  const kind: Exclude<MagicName, 'config'> = key.startsWith('index/') ? 'index' : 'snapshot';
  const body =
    kind === 'snapshot'
      ? Buffer.from(
          JSON.stringify({
            version: 1,
            time: snapshotTime(key),
            host: 'attacker',
            repository: cfg.id,
            keyId: cfg.keyId,
            tags: [],
            sources: [],
          }),
        )
      : Buffer.concat([Buffer.from([1]), Buffer.alloc(4)]);
  const bytes = await encrypt([...cfg.recipients, cfg.metadataRecipient], encodeSigned(kind, body, foreign));
  const name = key.slice(0, key.lastIndexOf('/') + 1) + namePrefix(key) + sha256Hex(bytes);
  deleteObject(root, key);
  writeFileSync(file(root, name), bytes);
  return name;
}

/** `snapshots/<time>-<hash>`: the `<time>-` part; index objects have none. */
function namePrefix(key: string): string {
  const base = key.slice(key.lastIndexOf('/') + 1);
  const dash = base.lastIndexOf('-');
  return dash >= 0 ? base.slice(0, dash + 1) : '';
}

/** The ISO time of a snapshot key (`snapshots/20261203T092400Z-…`). */
function snapshotTime(key: string): string {
  const t = /(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z/.exec(key)!;
  return `${t[1]}-${t[2]}-${t[3]}T${t[4]}:${t[5]}:${t[6]}.000Z`;
}

/** Does `damage` to the object; returns the key the damage is now under (a forgery may be renamed). */
export async function damageObject(root: string, key: string, damage: Damage): Promise<string> {
  switch (damage) {
    case 'delete':
      deleteObject(root, key);
      return key;
    case 'truncate':
      truncateObject(root, key);
      return key;
    case 'flip':
      flipByte(root, key);
      return key;
    case 'garbage':
      replaceWithGarbage(root, key);
      return key;
    case 'forge':
      return forgeObject(root, key);
  }
}
