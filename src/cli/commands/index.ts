import type { Command } from 'commander';
import type { CliContext } from '../context.js';
import { registerConfig } from './config.js';
import { registerKeys } from './keys.js';
import { registerInit } from './init.js';
import { registerBackup } from './backup.js';
import { registerSnapshots } from './snapshots.js';
import { registerRestore } from './restore.js';
import { registerDump } from './dump.js';
import { registerForget } from './forget.js';
import { registerPrune } from './prune.js';
import { registerCheck } from './check.js';
import { registerRepair } from './repair.js';
import { registerCost } from './cost.js';

import { registerDrill } from './drill.js';
import { registerDrills } from './drills.js';
import { registerCheckHealth } from './check-health.js';
import { registerJobs } from './jobs.js';
import { registerWorker } from './worker.js';

/** Each subcommand lives in its own file and registers itself on the program. */
export type RegisterCommand = (program: Command, ctx: () => CliContext) => void;

export const commands: RegisterCommand[] = [
  registerConfig,
  registerKeys,
  registerInit,
  registerBackup,
  registerSnapshots,
  registerRestore,
  registerDump,
  registerForget,
  registerPrune,
  registerCheck,
  registerRepair,
  registerCost,
  registerDrill,
  registerDrills,
  registerWorker,
  registerJobs,
  registerCheckHealth,
];
