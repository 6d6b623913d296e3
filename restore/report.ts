import { count, formatBytes, formatDuration } from '../src/util/units.js';
import type { Check, RestoreReport } from './types.js';

function check(c: Check): string {
  const values =
    c.expected !== undefined || c.actual !== undefined
      ? ` (expected ${String(c.expected ?? '-')}, found ${String(c.actual ?? '-')})`
      : c.actual !== undefined
        ? ` (${String(c.actual)})`
        : '';
  const lines = [`  ${c.ok ? 'OK  ' : 'FAIL'} ${c.object}: ${c.check}${values}`];
  for (const d of c.details ?? []) lines.push(`         ${d}`);
  return lines.join('\n');
}

/** The restore report as text for an operator: what was written, how fast, and every verification. */
export function formatRestoreReport(r: RestoreReport): string {
  const out: string[] = [];
  const head = r.dryRun
    ? 'DRY RUN: nothing was written'
    : r.verified
      ? 'restore complete: everything verified'
      : 'restore FINISHED WITH PROBLEMS: see FAIL below';
  out.push(head);
  out.push(
    `snapshot ${r.snapshot.id.slice(0, 12)} taken ${r.snapshot.time}${r.snapshot.host ? ` on ${r.snapshot.host}` : ''}`,
  );
  out.push(`destination ${r.destination}${r.resumed ? ' (resumed an interrupted restore)' : ''}`);
  out.push(`read from ${r.targets.used.join(' then ')} (metadata from ${r.targets.metadata})`);
  for (const u of r.targets.unreachable) out.push(`target ${u.target} was not used: ${u.error}`);
  if (r.targets.fallbackCount) {
    out.push(
      `${r.targets.fallbackCount} blob(s) could not be read intact from the first target and came from another:`,
    );
    for (const f of r.targets.fallbacks.slice(0, 10))
      out.push(
        `  blob ${f.blob.slice(0, 16)}… (pack ${f.pack.slice(0, 12)}): ${f.from} -> ${f.to}: ${f.reason}`,
      );
    if (r.targets.fallbackCount > 10)
      out.push(`  … and ${r.targets.fallbackCount - 10} more (--json lists up to 1000)`);
  }
  for (const f of r.targets.metadataFallbacks)
    out.push(`${f.object}: read from ${f.to} instead of ${f.from}: ${f.reason}`);
  for (const u of r.targets.unreadableIndex)
    out.push(`index object ${u.object} cannot be read intact from any target (left out): ${u.reason}`);
  for (const p of r.packages ?? [])
    out.push(`package ${p.name}: ${p.docs.join(', ') || 'no document'}; ${p.files} tarball(s)`);
  for (const d of r.databases) {
    const planned = `${count(d.planned.docs, 'doc')}, ${d.planned.deleted} deleted, ${d.planned.attachments} attachments, ${formatBytes(d.planned.bytes)}`;
    if (d.status === 'planned') {
      out.push(`database ${d.source}/${d.name} -> ${d.dest}: ${planned}; ${d.note ?? ''}`);
      continue;
    }
    out.push(
      `database ${d.source}/${d.name} -> ${d.dest} (${d.mode === 'revert' ? 'packages put back as new revisions' : d.created ? 'created' : 'existing'})${d.resumedAfter ? `, resumed after ${JSON.stringify(d.resumedAfter)}` : ''}: wrote ${count(d.docs, 'doc')} (${d.revisions} revisions, ${d.attachments} attachments, ${formatBytes(d.bytes)}) in ${formatDuration(d.durationMs)}`,
    );
    for (const rv of d.reverted ?? [])
      out.push(`  ${rv.id}: ${rv.from} -> ${rv.to} (content of ${rv.snapshotRev})`);
    for (const c of d.checks) out.push(check(c));
  }
  for (const t of r.tarballs) {
    if (t.status === 'planned') {
      out.push(
        `tarballs ${t.source} -> ${t.dest}: ${count(t.planned.files, 'file')}, ${formatBytes(t.planned.bytes)}; ${t.note ?? ''}`,
      );
      continue;
    }
    out.push(
      `tarballs ${t.source} -> ${t.dest}${t.resumedAfter ? `, resumed after ${JSON.stringify(t.resumedAfter)}` : ''}: wrote ${count(t.files, 'file')} (${formatBytes(t.bytes)})${t.skipped ? `, ${t.skipped} already in place` : ''} in ${formatDuration(t.durationMs)}`,
    );
    for (const c of t.checks) out.push(check(c));
  }
  if (!r.dryRun) {
    const rate = r.totals.bytesPerSecond ? `, ${formatBytes(r.totals.bytesPerSecond)}/s` : '';
    out.push(
      `total: ${count(r.totals.docs, 'document')}, ${count(r.totals.files, 'file')}, ${formatBytes(r.totals.bytes)} in ${formatDuration(r.totals.durationMs)}${rate} (recovery time achieved)`,
    );
  }
  return out.join('\n');
}
