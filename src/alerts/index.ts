import type { Config } from '../config/schema.js';
import { checkHealth } from '../health/index.js';
import type { HealthReport } from '../health/evaluate.js';
import type { StateStore } from '../health/state.js';
import type { Logger } from '../log.js';
import type { ObjectStore } from '../store/types.js';
import { AlertManager, type ReconcileResult } from './manager.js';

export { AlertManager, type Incident, type ReconcileResult } from './manager.js';
export {
  notifiersFor,
  PagerDutyNotifier,
  WebhookNotifier,
  type AlertEvent,
  type Notifier,
} from './notifiers.js';

/** Checks health now and brings the alert incidents in line with it (trigger new problems, resolve gone ones). */
export async function checkAndAlert(
  config: Config,
  state: StateStore,
  logger: Logger,
  opts: { stores?: ObjectStore[]; manager?: AlertManager } = {},
): Promise<{ health: HealthReport; alerts: ReconcileResult }> {
  const health = await checkHealth(config, state, { stores: opts.stores });
  const manager = opts.manager ?? new AlertManager(config, state, logger);
  const alerts = await manager.reconcile(health.problems);
  return { health, alerts };
}
