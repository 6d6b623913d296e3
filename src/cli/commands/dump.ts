import type { RegisterCommand } from './index.js';
import { wholeNumber } from '../numbers.js';
import { UsageError } from '../../errors.js';
import { count, formatBytes } from '../../util/units.js';

interface DumpFlags {
  snapshot?: string;
  at?: string;
  from?: string;
  db?: string;
  tarballs?: boolean;
  identity?: string;
  workers?: number;
}

export const registerDump: RegisterCommand = (program, ctx) => {
  program
    .command('dump')
    .description(
      "write a snapshot's content to stdout as a tar archive (documents as JSON lines, the tarball store in the registry layout)",
    )
    .option('-s, --snapshot <id>', 'the snapshot: an ID (or unique prefix) or "latest"', 'latest')
    .option('--at <time>', 'the newest snapshot taken at or before this time')
    .option('--from <target>', 'read only this target')
    .option('--db <name>', 'only this database')
    .option('--tarballs', 'only the tarball store')
    .option('--identity <file>', 'the restore identity (default: `identity:` of the configuration)')
    .option('--workers <n>', 'decryption threads', wholeNumber('--workers'))
    .action(async (o: DumpFlags) => {
      const c = ctx();
      if (o.db && o.tarballs) throw new UsageError('give --db or --tarballs, not both');
      if (process.stdout.isTTY)
        throw new UsageError(
          'dump writes a tar archive to stdout: redirect it to a file or a pipe (regbackup dump > out.tar)',
        );
      // Loaded when the command runs: --help and the other commands start fast.
      const [{ openSnapshot }, { dumpSnapshot }] = await Promise.all([
        import('../open-snapshot.js'),
        import('../../../restore/index.js'),
      ]);
      const opened = await openSnapshot(c, {
        snapshot: o.at ? undefined : o.snapshot,
        at: o.at,
        from: o.from,
        identity: o.identity,
      });
      const abort = new AbortController();
      const onSignal = () => abort.abort();
      process.once('SIGINT', onSignal);
      process.once('SIGTERM', onSignal);
      try {
        const stats = await dumpSnapshot({
          repo: opened.repo,
          snapshot: opened.info,
          manifest: opened.manifest,
          metaStore: opened.store,
          only: { db: o.db, tarballs: o.tarballs },
          out: process.stdout,
          workers: o.workers,
          signal: abort.signal,
        });
        await new Promise<void>((resolve) => process.stdout.write('', () => resolve()));
        c.log.info(
          { snapshot: opened.info.id, ...stats },
          `dumped snapshot ${opened.info.id.slice(0, 12)}: ${count(stats.docs, 'document')} (${stats.revisions} revisions), ${count(stats.files, 'file')}, ${formatBytes(stats.bytes)} of tar`,
        );
      } finally {
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
        opened.repo.close();
      }
    });
};
