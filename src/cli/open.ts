import type { CliContext } from './context.js';
import { KeyError, UsageError } from '../errors.js';
import { loadRestoreIdentity, loadWorkerKey, type RestoreIdentity, type WorkerKey } from '../repo/keys.js';
import { defaultCacheRoot, Repository } from '../repo/repository.js';
import { openStore } from '../store/index.js';

export interface OpenOptions {
  /** Only this target. */
  target?: string;
  /** Require the restore identity (restores, drills, reading data). */
  needIdentity?: boolean;
  /** Path of the identity file (overrides the configuration's `identity`). */
  identity?: string;
}

/** Opens the configured repository for a command: keys from the configuration (and --identity). */
export async function openRepository(
  c: CliContext,
  o: OpenOptions = {},
): Promise<{ repo: Repository; worker?: WorkerKey; restore?: RestoreIdentity }> {
  const { config } = c.config();
  const targets = o.target ? config.targets.filter((t) => t.name === o.target) : config.targets;
  if (o.target && targets.length === 0)
    throw new UsageError(
      `no target named ${o.target} (configured: ${config.targets.map((t) => t.name).join(', ')})`,
    );
  const identityFile = o.identity ?? config.identity;
  let restore: RestoreIdentity | undefined;
  if (identityFile) restore = await loadRestoreIdentity(identityFile);
  else if (o.needIdentity)
    throw new KeyError(
      'this command needs the restore identity: pass --identity FILE (or set `identity:` in the configuration)',
    );
  let worker: WorkerKey | undefined;
  if (!o.needIdentity || !restore) worker = await loadWorkerKey(config.keys);
  const { repo, unreachable } = await Repository.open(
    c.closeAtEnd(targets.map((t) => openStore(t))),
    { worker, restore },
    { cacheRoot: config.cache ?? defaultCacheRoot() },
  );
  for (const u of unreachable)
    c.log.warn({ target: u.target, err: u.error.message }, `target ${u.target} cannot be read`);
  return { repo, worker, restore };
}
