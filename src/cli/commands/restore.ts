import { Option } from 'commander';
import type { RegisterCommand } from './index.js';
import { wholeNumber } from '../numbers.js';
import { UsageError } from '../../errors.js';
import { parseSize } from '../../util/units.js';
import type { AttachmentMode } from '../../../restore/index.js';

interface RestoreFlags {
  snapshot?: string;
  at?: string;
  from?: string;
  to?: string;
  couchdb?: string;
  tarballs?: string;
  db?: string[];
  package?: string[];
  source?: string[];
  identity?: string;
  parallel?: number;
  workers?: number;
  force?: boolean;
  dryRun?: boolean;
  resume?: boolean;
  attachments?: AttachmentMode;
  batchBytes?: number;
}

export const registerRestore: RegisterCommand = (program, ctx) => {
  program
    .command('restore')
    .description(
      'restore a snapshot into a CouchDB and a tarball store, verify everything, report (resumable)',
    )
    .option('-s, --snapshot <id>', 'the snapshot: an ID (or unique prefix) or "latest"', 'latest')
    .option(
      '--at <time>',
      'the newest snapshot taken at or before this time (ISO 8601, or an age such as 6h)',
    )
    .option(
      '--from <target>',
      'read only this target (default: every target, in order, falling back from one to the next)',
    )
    .option('--to <destination>', 'a destination of the configuration (`destinations:`)')
    .option('--couchdb <url>', "the CouchDB to restore into (overrides the destination's)")
    .option(
      '--tarballs <path|s3://bucket/prefix>',
      "the tarball store to restore into (overrides the destination's)",
    )
    .option('--db <name...>', 'only these databases (then without the tarball store)')
    .option('--package <name...>', 'only these packages: their documents and all their tarballs')
    .option('--source <name...>', 'only these sources of the snapshot')
    .option('--identity <file>', 'the restore identity (default: `identity:` of the configuration)')
    .option('--parallel <n>', 'requests and files in flight (default 8)', wholeNumber('--parallel', 1))
    .option('--workers <n>', 'decryption threads (default: cores, at most 4)', wholeNumber('--workers'))
    .option(
      '--force',
      'write into a non-empty database or store; start over instead of resuming another snapshot',
    )
    .option('--dry-run', 'print what would be written, and how much, without writing')
    .option('--no-resume', 'ignore an interrupted restore into the same destination and start over')
    .option('--batch-bytes <size>', 'bytes of documents per _bulk_docs request (default 1MiB)', (v) => {
      const n = parseSize(v);
      if (n === undefined || n < 1)
        throw new UsageError(`--batch-bytes expects a size such as 4MiB, got ${JSON.stringify(v)}`);
      return n;
    })
    .addOption(
      new Option('--attachments <mode>', 'how documents with attachments are sent')
        .choices(['multipart', 'inline'])
        .hideHelp(),
    )
    .addHelpText(
      'after',
      `
Examples:
  regbackup restore --to new-primary --dry-run          what would be written, and how much
  regbackup restore --to new-primary                    latest snapshot: every database and the tarball store
  regbackup restore --to new-primary --from offsite     read only the "offsite" target
  regbackup restore --at 2026-11-25T18:00Z --to new-primary
  regbackup restore --couchdb https://admin:PASS@standby:5984 --tarballs /srv/tarballs
  regbackup restore --snapshot 3f0a9c2e --to primary --package lodash --force   put one package back
  regbackup restore --tarballs 's3://bucket/tarballs?endpoint=https://storage.example' --source tarballs

Needs the restore identity (--identity restore.key, the offline copy). Interrupted? Run the same command
again: it continues and verifies the destination itself. Exit 0 only when everything verified
(docs/DISASTER.md is the runbook).`,
    )
    .action(async (o: RestoreFlags) => {
      const c = ctx();
      const { config } = c.config();
      // Loaded when the command runs: --help and the other commands start fast.
      const [
        { openSnapshot },
        { Progress },
        { formatRestoreReport, openTarballDestination, restoreSnapshot },
      ] = await Promise.all([
        import('../open-snapshot.js'),
        import('../../util/progress.js'),
        import('../../../restore/index.js'),
      ]);
      if (o.snapshot !== 'latest' && o.at) throw new UsageError('give --snapshot or --at, not both');
      let couchdb = o.couchdb;
      let tarballs = o.tarballs;
      if (o.to) {
        const d = config.destinations[o.to];
        if (!d)
          throw new UsageError(
            `no destination named ${o.to} (configured: ${Object.keys(config.destinations).join(', ') || 'none'})`,
          );
        couchdb ??= d.couchdb;
        tarballs ??= d.tarballs;
      }
      if (!couchdb && !tarballs)
        throw new UsageError('where to? give --to DESTINATION, or --couchdb URL and/or --tarballs PATH');
      const opened = await openSnapshot(c, {
        snapshot: o.at ? undefined : o.snapshot,
        at: o.at,
        from: o.from,
        identity: o.identity,
      });
      const abort = new AbortController();
      const onSignal = (sig: NodeJS.Signals) => {
        c.log.warn(`${sig}: stopping; run the same command again to continue where it stopped`);
        abort.abort();
      };
      process.once('SIGINT', onSignal);
      process.once('SIGTERM', onSignal);
      const progress = new Progress(c.interactive ? process.stderr : undefined);
      try {
        const report = await restoreSnapshot({
          repo: opened.repo,
          snapshot: opened.info,
          manifest: opened.manifest,
          metaStore: opened.store,
          couchdb: couchdb
            ? { url: couchdb, attachments: o.attachments, batchBytes: o.batchBytes }
            : undefined,
          tarballs: tarballs ? openTarballDestination(tarballs) : undefined,
          only: { dbs: o.db, packages: o.package, sources: o.source },
          parallel: o.parallel,
          workers: o.workers,
          force: o.force,
          dryRun: o.dryRun,
          resume: o.resume,
          progress,
          signal: abort.signal,
          unreachable: opened.unreachable,
        });
        c.print(() => formatRestoreReport(report), report);
        process.exitCode = report.exitCode;
      } finally {
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
        opened.repo.close();
      }
    });
};
