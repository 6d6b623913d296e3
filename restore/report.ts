import { count, formatBytes, formatDuration } from '../src/util/units.js';
import type { Check, DbReport, RestoreReport, TarballReport } from './types.js';

/** One verification as a line (OK or FAIL), with its first differences below it. */
export function check(c: Check): string {
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
  const out: string[] = [headline(r)];
  const host = r.snapshot.host ? ` on ${r.snapshot.host}` : '';
  out.push(`snapshot ${r.snapshot.id.slice(0, 12)} taken ${r.snapshot.time}${host}`);
  out.push(`destination ${r.destination}${r.resumed ? ' (resumed an interrupted restore)' : ''}`);
  out.push(...targetLines(r.targets));
  for (const p of r.packages ?? [])
    out.push(`package ${p.name}: ${p.docs.join(', ') || 'no document'}; ${p.files} tarball(s)`);
  for (const d of r.databases) out.push(...databaseLines(d));
  for (const t of r.tarballs) out.push(...tarballLines(t));
  if (!r.dryRun) out.push(totalLine(r.totals));
  return out.join('\n');
}

function headline(r: RestoreReport): string {
  if (r.dryRun) return 'DRY RUN: nothing was written';
  return r.verified
    ? 'restore complete: everything verified'
    : 'restore FINISHED WITH PROBLEMS: see FAIL below';
}

/** Where the snapshot was read from, and every target that could not serve something intact. */
export function targetLines(t: RestoreReport['targets']): string[] {
  const out = [`read from ${t.used.join(' then ')} (metadata from ${t.metadata})`];
  for (const u of t.unreachable) out.push(`target ${u.target} was not used: ${u.error}`);
  if (t.fallbackCount) {
    out.push(
      `${t.fallbackCount} blob(s) could not be read intact from the first target and came from another:`,
    );
    for (const f of t.fallbacks.slice(0, 10))
      out.push(
        `  blob ${f.blob.slice(0, 16)}… (pack ${f.pack.slice(0, 12)}): ${f.from} -> ${f.to}: ${f.reason}`,
      );
    if (t.fallbackCount > 10) out.push(`  … and ${t.fallbackCount - 10} more (--json lists up to 1000)`);
  }
  for (const f of t.metadataFallbacks)
    out.push(`${f.object}: read from ${f.to} instead of ${f.from}: ${f.reason}`);
  for (const u of t.unreadableIndex)
    out.push(`index object ${u.object} cannot be read intact from any target (left out): ${u.reason}`);
  return out;
}

/** One database: what was planned (dry run), or what was written, and its checks. */
export function databaseLines(d: DbReport): string[] {
  const name = `database ${d.source}/${d.name} -> ${d.dest}`;
  if (d.status === 'planned') {
    const p = d.planned;
    const planned =
      `${count(p.docs, 'doc')}, ${p.deleted} deleted, ${p.attachments} attachments, ` + formatBytes(p.bytes);
    return [`${name}: ${planned}; ${d.note ?? ''}`];
  }
  const how = d.mode === 'revert' ? 'packages put back as new revisions' : d.created ? 'created' : 'existing';
  const resumed = d.resumedAfter ? `, resumed after ${JSON.stringify(d.resumedAfter)}` : '';
  const wrote =
    `wrote ${count(d.docs, 'doc')} (${d.revisions} revisions, ${d.attachments} attachments, ` +
    `${formatBytes(d.bytes)}) in ${formatDuration(d.durationMs)}`;
  const out = [`${name} (${how})${resumed}: ${wrote}`];
  for (const rv of d.reverted ?? [])
    out.push(`  ${rv.id}: ${rv.from} -> ${rv.to} (content of ${rv.snapshotRev})`);
  for (const c of d.checks) out.push(check(c));
  return out;
}

/** One tarball store: what was planned (dry run), or what was written, and its checks. */
export function tarballLines(t: TarballReport): string[] {
  const name = `tarballs ${t.source} -> ${t.dest}`;
  if (t.status === 'planned') {
    const planned = `${count(t.planned.files, 'file')}, ${formatBytes(t.planned.bytes)}`;
    return [`${name}: ${planned}; ${t.note ?? ''}`];
  }
  const resumed = t.resumedAfter ? `, resumed after ${JSON.stringify(t.resumedAfter)}` : '';
  const skipped = t.skipped ? `, ${t.skipped} already in place` : '';
  const files = `${count(t.files, 'file')} (${formatBytes(t.bytes)})`;
  const wrote = `wrote ${files}${skipped} in ${formatDuration(t.durationMs)}`;
  return [`${name}${resumed}: ${wrote}`, ...t.checks.map(check)];
}

/** The totals of a restore that wrote: the recovery time achieved. */
export function totalLine(totals: RestoreReport['totals']): string {
  const rate = totals.bytesPerSecond ? `, ${formatBytes(totals.bytesPerSecond)}/s` : '';
  return (
    `total: ${count(totals.docs, 'document')}, ${count(totals.files, 'file')}, ` +
    `${formatBytes(totals.bytes)} ` +
    `in ${formatDuration(totals.durationMs)}${rate} (recovery time achieved)`
  );
}
