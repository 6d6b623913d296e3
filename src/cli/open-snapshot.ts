import type { CliContext } from './context.js';
import { loadRestoreIdentity, type RestoreIdentity } from '../repo/keys.js';
import { defaultCacheRoot } from '../repo/repository.js';
import { openStore } from '../store/index.js';
import {
  openForRestore,
  parseAt,
  pickSnapshot,
  type OpenedRestore,
  type SnapshotChoice,
} from '../../restore/index.js';

/** Opens the configured targets with the restore identity and picks the snapshot (shared by restore and dump). */
export async function openSnapshot(
  c: CliContext,
  o: { snapshot?: string; at?: string; from?: string; identity?: string },
): Promise<OpenedRestore & SnapshotChoice> {
  const { config } = c.config();
  const identityFile = o.identity ?? config.identity;
  let identity: RestoreIdentity | undefined;
  if (identityFile) identity = await loadRestoreIdentity(identityFile);
  const opened = await openForRestore({
    targets: c.closeAtEnd(config.targets.map((t) => openStore(t))),
    from: o.from,
    identity,
    identityFile,
    cacheRoot: config.cache ?? defaultCacheRoot(),
  });
  for (const u of opened.unreachable)
    c.log.warn(
      { target: u.target, err: u.error },
      `target ${u.target} cannot be read; restoring from the others`,
    );
  try {
    const choice = await pickSnapshot(opened.repo, {
      snapshot: o.snapshot,
      at: o.at ? parseAt(o.at) : undefined,
    });
    return { ...opened, ...choice };
  } catch (err) {
    opened.repo.close();
    throw err;
  }
}
