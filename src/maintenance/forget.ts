import type { Logger } from '../log.js';
import type { Repository } from '../repo/repository.js';
import { inTakenOrder, listSnapshots } from '../repo/snapshot.js';
import { loadListedSnapshot } from './references.js';
import { RegbackupError } from '../errors.js';
import { applyRetention, type RetentionDecision, type RetentionPolicy } from './retention.js';
import { deletedKeys, loadMarks, sealMark } from './marks.js';
import { Fanout } from '../repo/fanout.js';

/**
 * `regbackup forget`: applies the retention policy to the snapshots (grouped by their set of sources) and
 * deletes the snapshot objects it does not keep, on every target. The data they alone needed stays until
 * `prune`. A snapshot under retention (Object Lock) cannot be deleted before its date: it is reported kept.
 */
export interface ForgetResult {
  decisions: (RetentionDecision & { sources: string[]; deleted?: boolean; error?: string })[];
  kept: number;
  forgotten: number;
}

export async function forget(
  repo: Repository,
  policy: RetentionPolicy,
  opts: { dryRun?: boolean; logger: Logger },
): Promise<ForgetResult> {
  const store = repo.targets[0]!;
  // In the order they were taken (to the millisecond): "keep the last N" keeps the newest N, the ones every
  // other command calls the newest.
  const infos = await inTakenOrder(
    await listSnapshots(store),
    async (info) => (await loadListedSnapshot(repo, store, info))?.time,
  );
  const inputs: { id: string; time: Date; sources: string[]; key: string }[] = [];
  for (const info of infos) {
    let sources: string[];
    let time = info.time;
    try {
      const m = await loadListedSnapshot(repo, store, info);
      if (!m) continue; // forgotten by another run since it was listed
      sources = m.sources.map((s) => s.name);
      const t = new Date(m.time);
      if (!Number.isNaN(t.getTime())) time = t;
    } catch (err) {
      if (!(err instanceof RegbackupError)) throw err;
      // An unreadable snapshot is never forgotten here: `check` reports it, `repair` may heal it.
      opts.logger.warn({ snapshot: info.id, err: err.message }, 'snapshot cannot be read; kept');
      sources = ['(unreadable)'];
    }
    inputs.push({ id: info.id, time, sources, key: info.key });
  }
  const decisions: ForgetResult['decisions'] = applyRetention(inputs, policy).map((d) => ({
    ...d,
    sources: inputs.find((i) => i.id === d.id)!.sources,
  }));
  for (const d of decisions) {
    if (d.sources.includes('(unreadable)')) {
      d.keep = true;
      d.reasons.push('unreadable (never forgotten automatically)');
    }
  }
  let forgotten = 0;
  const going = decisions.filter((d) => !d.keep).map((d) => inputs.find((i) => i.id === d.id)!.key);
  if (going.length && !opts.dryRun) {
    // Recorded first: catching a target up never copies a forgotten snapshot back (from a target where it
    // could not be deleted yet, e.g. under retention).
    const rec = await sealMark(repo, { kind: 'forgotten', packs: [], repack: [], snapshots: going });
    await new Fanout(repo.targets).put(rec.key, rec.bytes);
  }
  // Snapshots forgotten earlier but still on a target (retention then): try again.
  if (!opts.dryRun) {
    for (const key of deletedKeys(await loadMarks(repo, store))) {
      if (!key.startsWith('snapshots/')) continue;
      for (const t of repo.targets) {
        if (!(await t.stat(key))) continue;
        try {
          await t.delete(key);
        } catch (err) {
          if (!(err instanceof RegbackupError)) throw err;
        }
      }
    }
  }
  for (const d of decisions) {
    if (d.keep || opts.dryRun) continue;
    const key = inputs.find((i) => i.id === d.id)!.key;
    const errors: string[] = [];
    for (const t of repo.targets) {
      try {
        await t.delete(key);
      } catch (err) {
        if (!(err instanceof RegbackupError)) throw err;
        errors.push(`${t.name}: ${err.message}`);
      }
    }
    if (errors.length) d.error = errors.join('; ');
    else {
      d.deleted = true;
      forgotten++;
    }
  }
  return {
    decisions,
    kept: decisions.filter((d) => d.keep).length,
    forgotten: opts.dryRun ? decisions.filter((d) => !d.keep).length : forgotten,
  };
}
