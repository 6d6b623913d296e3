import {
  createHash,
  createPrivateKey,
  createPublicKey,
  hkdfSync,
  randomBytes,
  sign,
  verify,
  type KeyObject,
} from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { generateX25519Identity, identityToRecipient } from './age.js';
import { KeyError, systemCodeOf } from '../errors.js';
import { registerSecret } from '../util/redact.js';

/**
 * The two key files (docs/FORMAT.md §2, "Keys"):
 *
 * - the WORKER KEY (JSON, on the backup host): the restore recipients (public), the repository secret (names
 *   and chunks data), the metadata identity (reads indexes and snapshot listings, never content) and the
 *   Ed25519 signing key. It can write backups; it cannot decrypt any document, attachment or tarball.
 * - the RESTORE IDENTITY (an age identity file, kept offline): the age identity that decrypts everything, plus
 *   as comment lines the verify key and the repository secret, so a restore can check signatures and blob IDs.
 *   `age -d -i restore.key` reads it as an ordinary identity file.
 */

export interface WorkerKey {
  keyId: string;
  recipients: string[];
  repositorySecret: Buffer;
  metadataIdentity: string;
  metadataRecipient: string;
  signingKey: KeyObject;
  verifyKey: KeyObject;
  /** Raw 32-byte Ed25519 public key. */
  verifyKeyRaw: Buffer;
}

export interface RestoreIdentity {
  keyId: string;
  identity: string;
  recipient: string;
  repositorySecret: Buffer;
  verifyKey: KeyObject;
  verifyKeyRaw: Buffer;
}

/** The secrets both sides derive from the repository secret. */
export interface DerivedKeys {
  /** The key of the keyed BLAKE3 that names blobs (FORMAT §5). */
  idKey: Buffer;
  /** Seeds the chunker's gear table, so chunk boundaries do not reveal content. */
  chunkerKey: Buffer;
}

export function deriveKeys(repositorySecret: Buffer): DerivedKeys {
  const d = (info: string, len: number) =>
    Buffer.from(hkdfSync('sha256', repositorySecret, Buffer.alloc(0), info, len));
  return { idKey: d('regbackup/v1 blob-id', 32), chunkerKey: d('regbackup/v1 chunker', 32) };
}

const ED25519_PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');
const ED25519_SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

export function signingKeyFromSeed(seed: Buffer): KeyObject {
  if (seed.length !== 32) throw new KeyError('signing key must be 32 bytes');
  return createPrivateKey({ key: Buffer.concat([ED25519_PKCS8_PREFIX, seed]), format: 'der', type: 'pkcs8' });
}

export function verifyKeyFromRaw(raw: Buffer): KeyObject {
  if (raw.length !== 32) throw new KeyError('verify key must be 32 bytes');
  return createPublicKey({ key: Buffer.concat([ED25519_SPKI_PREFIX, raw]), format: 'der', type: 'spki' });
}

export function rawPublicKey(pub: KeyObject): Buffer {
  const der = pub.export({ format: 'der', type: 'spki' });
  return Buffer.from(der.subarray(der.length - 32));
}

/** Key ID: the first 8 bytes of SHA-256 of the raw verify key, hex. Names a key set in messages. */
export function keyIdOf(verifyKeyRaw: Buffer): string {
  return createHash('sha256').update(verifyKeyRaw).digest('hex').slice(0, 16);
}

export function signBytes(key: KeyObject, data: Buffer): Buffer {
  return sign(null, data, key);
}

export function verifyBytes(key: KeyObject, data: Buffer, sig: Buffer): boolean {
  return sig.length === 64 && verify(null, data, key, sig);
}

export interface GeneratedKeys {
  worker: WorkerKey;
  restore: RestoreIdentity;
  workerFile: string;
  restoreFile: string;
}

/** Makes a new key set: the restore identity, the metadata identity, the repository secret, the signing key. */
export async function generateKeys(
  opts: { postQuantum?: boolean } = {},
): Promise<{ worker: WorkerKey; restore: RestoreIdentity }> {
  // The age-encryption package (slow to load) only for post-quantum keys; X25519 keys with node:crypto.
  const gen = opts.postQuantum
    ? (await import('age-encryption')).generateHybridIdentity
    : async () => generateX25519Identity();
  const identity = await gen();
  const recipient = await identityToRecipient(identity);
  const metadataIdentity = await gen();
  const metadataRecipient = await identityToRecipient(metadataIdentity);
  const repositorySecret = randomBytes(32);
  const seed = randomBytes(32);
  const signingKey = signingKeyFromSeed(seed);
  const verifyKey = createPublicKey(signingKey);
  const verifyKeyRaw = rawPublicKey(verifyKey);
  const keyId = keyIdOf(verifyKeyRaw);
  return {
    worker: {
      keyId,
      recipients: [recipient],
      repositorySecret,
      metadataIdentity,
      metadataRecipient,
      signingKey,
      verifyKey,
      verifyKeyRaw,
    },
    restore: { keyId, identity, recipient, repositorySecret, verifyKey, verifyKeyRaw },
  };
}

function seedOf(key: KeyObject): Buffer {
  const der = key.export({ format: 'der', type: 'pkcs8' });
  return Buffer.from(der.subarray(der.length - 32));
}

export function encodeWorkerKey(k: WorkerKey, created = new Date()): string {
  return `${JSON.stringify(
    {
      type: 'regbackup-worker-key',
      version: 1,
      comment:
        'Lets a host write regbackup backups. It cannot decrypt backed-up content; the restore identity can. Keep it secret: it can sign snapshots and read metadata.',
      created: created.toISOString(),
      keyId: k.keyId,
      recipients: k.recipients,
      metadataRecipient: k.metadataRecipient,
      metadataIdentity: k.metadataIdentity,
      repositorySecret: k.repositorySecret.toString('base64'),
      signingKey: seedOf(k.signingKey).toString('base64'),
      verifyKey: k.verifyKeyRaw.toString('base64'),
    },
    null,
    2,
  )}\n`;
}

export function encodeRestoreIdentity(k: RestoreIdentity, created = new Date()): string {
  return [
    '# regbackup restore identity. It decrypts every backup made with the matching worker key: keep it OFFLINE.',
    '# Restores and drills need it (regbackup restore --identity FILE). In an emergency, any object of the',
    '# repository can be decrypted with the standard age tool:  age -d -i THIS_FILE < OBJECT > PLAINTEXT',
    `# created: ${created.toISOString()}`,
    `# key-id: ${k.keyId}`,
    `# recipient: ${k.recipient}`,
    `# regbackup-verify-key: ${k.verifyKeyRaw.toString('base64')}`,
    `# regbackup-repository-secret: ${k.repositorySecret.toString('base64')}`,
    k.identity,
    '',
  ].join('\n');
}

/** Writes both key files (mode 0600) into `dir`; refuses to overwrite existing ones. */
export function writeKeyFiles(
  dir: string,
  keys: { worker: WorkerKey; restore: RestoreIdentity },
): { workerFile: string; restoreFile: string } {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const workerFile = path.join(dir, 'worker.key');
  const restoreFile = path.join(dir, 'restore.key');
  for (const f of [workerFile, restoreFile]) {
    if (existsSync(f))
      throw new KeyError(`${f} already exists; refusing to overwrite a key (move it away first)`);
  }
  const created = new Date();
  writeFileSync(restoreFile, encodeRestoreIdentity(keys.restore, created), { mode: 0o600, flag: 'wx' });
  writeFileSync(workerFile, encodeWorkerKey(keys.worker, created), { mode: 0o600, flag: 'wx' });
  chmodSync(restoreFile, 0o600);
  chmodSync(workerFile, 0o600);
  return { workerFile, restoreFile };
}

/**
 * What to do when a key file is missing. Keys cannot be made again: new keys write a new repository and
 * cannot decrypt (restore identity) or sign for (worker key) an existing one.
 */
const MISSING_KEY_ADVICE = {
  'restore identity':
    'it is the restore.key written by `regbackup keys generate` when this repository was created and kept offline (a safe, a password manager): copy it from there, or pass --identity FILE; its recipient must be the one `regbackup keys show` prints for the worker key. New keys cannot decrypt existing backups',
  'worker key':
    'it is the worker.key written by `regbackup keys generate` next to restore.key: copy it from where the keys were created, or set `keys:` in the configuration. Only for a new repository, with nothing to restore, create a new pair with `regbackup keys generate --out DIR` (new keys cannot read or extend existing backups)',
} as const;

function readKeyFile(file: string, what: keyof typeof MISSING_KEY_ADVICE): string {
  try {
    const st = statSync(file);
    if (!st.isFile()) throw new KeyError(`${what} ${file} is not a file`);
    if (st.size > 64 * 1024) throw new KeyError(`${what} ${file} is too large to be a key file`);
    return readFileSync(file, 'utf8');
  } catch (err) {
    if (err instanceof KeyError) throw err;
    const code = systemCodeOf(err);
    throw new KeyError(
      code === 'ENOENT'
        ? `${what} ${file} does not exist: ${MISSING_KEY_ADVICE[what]}`
        : `cannot read ${what} ${file}: ${code ?? (err as Error).message}`,
    );
  }
}

function b64(v: unknown, len: number, field: string, file: string): Buffer {
  if (typeof v !== 'string') throw new KeyError(`worker key ${file}: ${field} is missing`);
  const b = Buffer.from(v, 'base64');
  if (b.length !== len) throw new KeyError(`worker key ${file}: ${field} must be ${len} bytes of base64`);
  return b;
}

export async function loadWorkerKey(file: string): Promise<WorkerKey> {
  const text = readKeyFile(file, 'worker key');
  let j: Record<string, unknown>;
  try {
    j = JSON.parse(text) as Record<string, unknown>;
  } catch {
    if (text.includes('AGE-SECRET-KEY-')) {
      throw new KeyError(`${file} is an age identity (the restore identity?), not a worker key file`);
    }
    throw new KeyError(`worker key ${file} is not valid JSON`);
  }
  if (j.type !== 'regbackup-worker-key' || j.version !== 1) {
    throw new KeyError(`${file} is not a regbackup worker key (version 1)`);
  }
  const recipients = j.recipients;
  if (
    !Array.isArray(recipients) ||
    recipients.length === 0 ||
    !recipients.every((r) => typeof r === 'string' && /^age1[0-9a-z]+$/.test(r))
  ) {
    throw new KeyError(`worker key ${file}: recipients must be a list of age1… recipients`);
  }
  const metadataIdentity = j.metadataIdentity;
  if (typeof metadataIdentity !== 'string' || !metadataIdentity.startsWith('AGE-SECRET-KEY-')) {
    throw new KeyError(`worker key ${file}: metadataIdentity is missing or not an age identity`);
  }
  registerSecret(metadataIdentity);
  registerSecret(j.repositorySecret as string);
  registerSecret(j.signingKey as string);
  const repositorySecret = b64(j.repositorySecret, 32, 'repositorySecret', file);
  const signingKey = signingKeyFromSeed(b64(j.signingKey, 32, 'signingKey', file));
  const verifyKey = createPublicKey(signingKey);
  const verifyKeyRaw = rawPublicKey(verifyKey);
  let metadataRecipient: string;
  try {
    metadataRecipient = await identityToRecipient(metadataIdentity);
  } catch {
    throw new KeyError(`worker key ${file}: metadataIdentity is not a valid age identity`);
  }
  return {
    keyId: keyIdOf(verifyKeyRaw),
    recipients: recipients as string[],
    repositorySecret,
    metadataIdentity,
    metadataRecipient,
    signingKey,
    verifyKey,
    verifyKeyRaw,
  };
}

export async function loadRestoreIdentity(file: string): Promise<RestoreIdentity> {
  const text = readKeyFile(file, 'restore identity');
  if (text.trimStart().startsWith('{')) {
    throw new KeyError(
      `${file} is the worker key, not the restore identity: restores need the identity kept offline`,
    );
  }
  let identity: string | undefined;
  let verify: string | undefined;
  let secret: string | undefined;
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (!line) continue;
    const m = /^#\s*regbackup-(verify-key|repository-secret):\s*(\S+)$/.exec(line);
    if (m) {
      if (m[1] === 'verify-key') verify = m[2];
      else secret = m[2];
      continue;
    }
    if (line.startsWith('#')) continue;
    if (line.startsWith('AGE-SECRET-KEY-')) {
      if (identity) throw new KeyError(`restore identity ${file} holds more than one identity`);
      identity = line;
      continue;
    }
    throw new KeyError(`restore identity ${file}: unexpected line (not an age identity file?)`);
  }
  if (!identity) throw new KeyError(`restore identity ${file} holds no AGE-SECRET-KEY line`);
  registerSecret(identity);
  registerSecret(secret);
  if (!verify || !secret) {
    throw new KeyError(
      `restore identity ${file} lacks the "# regbackup-verify-key" / "# regbackup-repository-secret" lines written by \`regbackup keys generate\``,
    );
  }
  let recipient: string;
  try {
    recipient = await identityToRecipient(identity);
  } catch {
    throw new KeyError(`restore identity ${file}: the AGE-SECRET-KEY line is not a valid age identity`);
  }
  const repositorySecret = Buffer.from(secret, 'base64');
  const verifyKeyRaw = Buffer.from(verify, 'base64');
  if (repositorySecret.length !== 32 || verifyKeyRaw.length !== 32) {
    throw new KeyError(`restore identity ${file}: the regbackup lines are damaged`);
  }
  return {
    keyId: keyIdOf(verifyKeyRaw),
    identity,
    recipient,
    repositorySecret,
    verifyKey: verifyKeyFromRaw(verifyKeyRaw),
    verifyKeyRaw,
  };
}
