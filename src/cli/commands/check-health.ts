import type { RegisterCommand } from './index.js';
import { messageOf } from '../../errors.js';
import type { HealthReport } from '../../health/index.js';

/**
 * `regbackup check-health`: one line in the Nagios plugin format, exit status 0 OK, 1 WARNING, 2 CRITICAL,
 * 3 UNKNOWN — for the monitoring the operators run, and the Dockerfile's HEALTHCHECK. It never fails with
 * another status: a configuration it cannot read, or a state store it cannot reach, is UNKNOWN.
 */
export const registerCheckHealth: RegisterCommand = (program, ctx) => {
  program
    .command('check-health')
    .description('one-line health status (Nagios format; exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN)')
    .option('--alert', 'also raise and resolve alerts (when no worker runs to do it)')
    .action(async (o: { alert?: boolean }) => {
      const c = ctx();
      let report: HealthReport;
      try {
        // Loaded when the command runs (and inside the try: whatever fails, the answer is one line).
        const { AlertManager } = await import('../../alerts/index.js');
        const { checkHealth, openStateStoreChecked } = await import('../../health/index.js');
        const { config } = c.config();
        const state = await openStateStoreChecked(config);
        try {
          report = await checkHealth(config, state);
          if (o.alert) await new AlertManager(config, state, c.log).reconcile(report.problems);
        } finally {
          await state
            .close()
            .catch((err: unknown) => c.log.debug({ err: messageOf(err) }, 'closing the state store'));
        }
      } catch (err) {
        const why = messageOf(err).split('\n').join(' ');
        report = {
          status: 'UNKNOWN',
          exitCode: 3,
          checkedAt: new Date().toISOString(),
          problems: [],
          targets: [],
          summary: `REGBACKUP UNKNOWN - ${why}`,
          perfdata: '',
        };
      }
      c.print(() => `${report.summary}${report.perfdata ? ` | ${report.perfdata}` : ''}`, report);
      process.exitCode = report.exitCode;
    });
};
