import { spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/** The `age` CLI (Debian's age 1.1.1 at /usr/bin/age): the reference implementation our files must satisfy. */
export const AGE_BIN = process.env.AGE_BIN ?? 'age';
export const AGE_KEYGEN_BIN = process.env.AGE_KEYGEN_BIN ?? 'age-keygen';

export interface AgeKeyPair {
  /** AGE-SECRET-KEY-1… */
  identity: string;
  /** age1… */
  recipient: string;
}

/** Runs a command with `input` on stdin; resolves with stdout, rejects with stderr in the message. */
export function runWithInput(cmd: string, args: string[], input?: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    child.on('error', reject);
    // The child may exit before reading all of stdin (a bad key): EPIPE then is not the error to report.
    child.stdin.on('error', (e) => err.push(Buffer.from(`(stdin: ${e.message})`)));
    child.on('close', (code, signal) => {
      if (code === 0) resolve(Buffer.concat(out));
      else {
        const why = Buffer.concat(err).toString('utf8').trim();
        reject(new Error(`${cmd} ${args.join(' ')} failed (${signal ?? `exit ${code}`}): ${why}`));
      }
    });
    child.stdin.end(input ?? Buffer.alloc(0));
  });
}

/** A new X25519 key pair from `age-keygen`. */
export async function ageKeygen(): Promise<AgeKeyPair> {
  const text = (await runWithInput(AGE_KEYGEN_BIN, [])).toString('utf8');
  const identity = /^AGE-SECRET-KEY-1[0-9A-Z]+$/m.exec(text)?.[0];
  const recipient = /^# public key: (age1[0-9a-z]+)$/m.exec(text)?.[1];
  if (!identity || !recipient) throw new Error('age-keygen printed something unexpected');
  return { identity, recipient };
}

/** The recipient (age1…) of an identity, via `age-keygen -y`. */
export async function ageRecipientOf(identity: string): Promise<string> {
  return (await runWithInput(AGE_KEYGEN_BIN, ['-y'], Buffer.from(`${identity}\n`))).toString('utf8').trim();
}

/** Writes an identity file (mode 0600) into `dir` and returns its path. */
export async function writeIdentityFile(
  dir: string,
  identity: string,
  name = 'identity.txt',
): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, `${identity}\n`, { mode: 0o600 });
  return path;
}

export async function ageEncrypt(
  recipients: string[],
  input: Buffer,
  opts: { armor?: boolean } = {},
): Promise<Buffer> {
  const args = ['--encrypt', ...recipients.flatMap((r) => ['-r', r])];
  if (opts.armor) args.push('--armor');
  return runWithInput(AGE_BIN, args, input);
}

export async function ageDecrypt(identityFile: string, input: Buffer): Promise<Buffer> {
  return runWithInput(AGE_BIN, ['--decrypt', '-i', identityFile], input);
}
