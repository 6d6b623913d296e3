import path from 'node:path';
import type { RegisterCommand } from './index.js';
import { readFileSync } from 'node:fs';
import { KeyError, UsageError } from '../../errors.js';

export const registerKeys: RegisterCommand = (program, ctx) => {
  const keys = program.command('keys').description('create and inspect keys');
  keys
    .command('generate')
    .description('create a restore identity (keep it offline) and a worker key (for the backup host)')
    .requiredOption('--out <dir>', 'directory to write restore.key and worker.key into (mode 0600)')
    .option(
      '--post-quantum',
      'use age post-quantum hybrid (ML-KEM-768 + X25519) recipients; the age 1.1 CLI cannot read those',
    )
    .action(async (o: { out: string; postQuantum?: boolean }) => {
      // Loaded when the command runs: --help and the other commands start fast.
      const { generateKeys, writeKeyFiles } = await import('../../repo/keys.js');
      const c = ctx();
      const k = await generateKeys({ postQuantum: o.postQuantum });
      const files = writeKeyFiles(path.resolve(o.out), k);
      c.print(
        [
          `wrote ${files.restoreFile}  (restore identity: keep it OFFLINE; restores and drills need it)`,
          `wrote ${files.workerFile}  (worker key: for the backup host; it cannot decrypt backups)`,
          `key id:     ${k.worker.keyId}`,
          `recipient:  ${k.restore.recipient}`,
          '',
          'Next: point `keys:` in regbackup.yaml at the worker key, run `regbackup init`, and move',
          'restore.key somewhere safe (a password manager, a safe, two places).',
        ].join('\n'),
        {
          keyId: k.worker.keyId,
          recipient: k.restore.recipient,
          restoreKey: files.restoreFile,
          workerKey: files.workerFile,
        },
      );
    });
  keys
    .command('show [file]')
    .description("print the public parts of a key file (default: the configuration's worker key)")
    .action(async (file: string | undefined) => {
      // Loaded when the command runs: --help and the other commands start fast.
      const { loadRestoreIdentity, loadWorkerKey } = await import('../../repo/keys.js');
      const c = ctx();
      let f = file;
      if (!f) {
        const { resolveConfigPath, loadConfig } = await import('../../config/load.js');
        const p = resolveConfigPath(c.opts.config);
        try {
          f = loadConfig(p).config.keys;
        } catch (err) {
          // The whole message: a configuration error lists its problems on the lines after the first.
          throw new UsageError(
            `no key file given (keys show FILE), and the configuration cannot be read: ${(err as Error).message}`,
          );
        }
      }
      let head: string;
      try {
        head = readFileSync(f, 'utf8').trimStart();
      } catch {
        throw new KeyError(`cannot read key file ${f}`);
      }
      if (head.startsWith('{')) {
        const w = await loadWorkerKey(f);
        c.print(
          [
            `${f}: worker key`,
            `key id:             ${w.keyId}`,
            `recipients:         ${w.recipients.join(', ')}`,
            `metadata recipient: ${w.metadataRecipient}`,
            `verify key:         ${w.verifyKeyRaw.toString('base64')}`,
          ].join('\n'),
          {
            file: f,
            type: 'worker',
            keyId: w.keyId,
            recipients: w.recipients,
            metadataRecipient: w.metadataRecipient,
            verifyKey: w.verifyKeyRaw.toString('base64'),
          },
        );
      } else {
        const r = await loadRestoreIdentity(f);
        c.print(
          [
            `${f}: restore identity`,
            `key id:     ${r.keyId}`,
            `recipient:  ${r.recipient}`,
            `verify key: ${r.verifyKeyRaw.toString('base64')}`,
          ].join('\n'),
          {
            file: f,
            type: 'restore',
            keyId: r.keyId,
            recipient: r.recipient,
            verifyKey: r.verifyKeyRaw.toString('base64'),
          },
        );
      }
    });
};
