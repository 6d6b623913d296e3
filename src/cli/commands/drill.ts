import path from 'node:path';
import type { RegisterCommand } from './index.js';
import { wholeNumber } from '../numbers.js';
import { ExitCode, KeyError, messageOf } from '../../errors.js';

interface DrillFlags {
  target?: string[];
  identity?: string;
  couchdb?: string;
  sample?: number;
  keep?: boolean;
  store?: boolean;
  parallel?: number;
}

export const registerDrill: RegisterCommand = (program, ctx) => {
  program
    .command('drill')
    .description(
      'restore the newest snapshot of each target into a standby, verify it, measure RTO and RPO, clean up, store the report',
    )
    .option('-t, --target <name...>', 'only these targets (default: drill.targets, else every target)')
    .option('--identity <file>', 'the restore identity (default: `identity:` of the configuration)')
    .option(
      '--couchdb <url>',
      'restore into this CouchDB under scratch names (default: drill.couchdb, else a temporary in-memory server)',
    )
    .option(
      '--sample <n>',
      'documents and tarballs sampled for the deep checks (default: drill.sample, 50)',
      wholeNumber('--sample', 1),
    )
    .option('--parallel <n>', 'requests and files in flight (default 8)', wholeNumber('--parallel', 1))
    .option('--keep', 'keep the scratch databases and directory')
    .option('--no-store', 'do not store the report in the repository')
    .action(async (o: DrillFlags) => {
      // Loaded when the command runs: --help and the other commands start fast.
      const { checkAndAlert } = await import('../../alerts/index.js');
      const { openStateStore, recordDrill } = await import('../../health/index.js');
      const { loadRestoreIdentity, loadWorkerKey } = await import('../../repo/keys.js');
      const { runDrill } = await import('../../../restore/drill.js');
      const { formatDrillReport } = await import('../../../restore/drill-report.js');
      const c = ctx();
      const { config, path: configPath } = c.config();
      const identityFile = o.identity ?? config.identity;
      if (!identityFile)
        throw new KeyError(
          'a drill restores, so it needs the restore identity: pass --identity FILE (or set `identity:` in the configuration)',
        );
      const identity = await loadRestoreIdentity(identityFile);
      const worker = await loadWorkerKey(config.keys);
      const abort = new AbortController();
      const onSignal = (sig: NodeJS.Signals) => {
        c.log.warn(`${sig}: stopping the drill; scratch data is removed`);
        abort.abort();
      };
      process.once('SIGINT', onSignal);
      process.once('SIGTERM', onSignal);
      try {
        const scratch = config.drill?.tarballs
          ? path.resolve(path.dirname(configPath), config.drill.tarballs)
          : undefined;
        const r = await runDrill({
          config,
          identity,
          worker,
          targets: o.target,
          couchdb: o.couchdb,
          sample: o.sample,
          keep: o.keep,
          store: o.store,
          parallel: o.parallel,
          scratchDir: scratch,
          logger: c.log,
          signal: abort.signal,
        });
        const state = openStateStore(config);
        try {
          await recordDrill(state, r.records, r.report.durationMs);
          const { alerts } = await checkAndAlert(config, state, c.log);
          if (alerts.triggered.length || alerts.resolved.length)
            c.log.info({ triggered: alerts.triggered, resolved: alerts.resolved }, 'alerts updated');
        } catch (err) {
          c.log.error({ err: messageOf(err) }, 'recording the drill for health and alerts failed');
        } finally {
          await state.close();
        }
        c.print(() => formatDrillReport(r.report, { stored: r.stored }), { ...r.report, stored: r.stored });
        process.exitCode = r.report.ok ? ExitCode.ok : ExitCode.integrity;
      } finally {
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
      }
    });
};
