import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { check, formatRestoreReport, tarballLines, targetLines, totalLine } from '../../restore/report.js';
import type { RestoreReport } from '../../restore/types.js';

function report(over: Partial<RestoreReport> = {}): RestoreReport {
  return {
    snapshot: { id: '0123456789abcdef0123', time: '2026-01-02T03:04:05.000Z', host: 'backup-1' },
    destination: 'couchdb http://127.0.0.1:5984, tarballs /restore',
    dryRun: false,
    resumed: false,
    targets: {
      used: ['local', 'offsite'],
      metadata: 'local',
      unreachable: [],
      fallbacks: [],
      fallbackCount: 0,
      metadataFallbacks: [],
      unreadableIndex: [],
    },
    databases: [
      {
        source: 'skimdb',
        name: 'registry',
        dest: 'registry',
        status: 'restored',
        mode: 'exact',
        created: true,
        planned: { docs: 3, deleted: 1, attachments: 0, bytes: 2048 },
        docs: 3,
        revisions: 4,
        attachments: 0,
        bytes: 2048,
        durationMs: 1500,
        failures: [],
        failureCount: 0,
        checks: [{ object: 'registry', check: 'doc_count', ok: true, expected: 3, actual: 3 }],
      },
    ],
    tarballs: [
      {
        source: 'tarballs',
        dest: '/restore',
        status: 'restored',
        created: true,
        planned: { files: 2, bytes: 4096 },
        files: 2,
        bytes: 4096,
        skipped: 0,
        durationMs: 500,
        failures: [],
        failureCount: 0,
        checks: [
          {
            object: 'tarballs -> /restore',
            check: 'files written and verified',
            ok: false,
            expected: 2,
            actual: 1,
            details: ['"a/-/a-1.0.0.tgz": missing on the destination'],
          },
        ],
      },
    ],
    totals: { docs: 3, files: 2, bytes: 6144, durationMs: 2000, bytesPerSecond: 3072 },
    verified: false,
    exitCode: 5,
    ...over,
  };
}

describe('the restore report as text', () => {
  test('a restore with a failed check: headline, snapshot, parts, every check, the totals', () => {
    const text = formatRestoreReport(report()).split('\n');
    assert.equal(text[0], 'restore FINISHED WITH PROBLEMS: see FAIL below');
    assert.equal(text[1], 'snapshot 0123456789ab taken 2026-01-02T03:04:05.000Z on backup-1');
    assert.equal(text[2], 'destination couchdb http://127.0.0.1:5984, tarballs /restore');
    assert.equal(text[3], 'read from local then offsite (metadata from local)');
    assert.match(
      text[4]!,
      /^database skimdb\/registry -> registry \(created\): wrote 3 docs \(4 revisions, 0 attachments, /,
    );
    assert.equal(text[5], '  OK   registry: doc_count (expected 3, found 3)');
    assert.match(text[6]!, /^tarballs tarballs -> \/restore: wrote 2 files \(.+\) in /);
    assert.equal(text[7], '  FAIL tarballs -> /restore: files written and verified (expected 2, found 1)');
    assert.equal(text[8], '         "a/-/a-1.0.0.tgz": missing on the destination');
    assert.match(text[9]!, /^total: 3 documents, 2 files, .+ in .+, .+\/s \(recovery time achieved\)$/);
    assert.equal(text.length, 10);
  });

  test('verified, and a dry run: their headlines; a dry run has no totals and shows what it would do', () => {
    assert.equal(
      formatRestoreReport(report({ verified: true })).split('\n')[0],
      'restore complete: everything verified',
    );
    const dry = report({ dryRun: true });
    dry.databases[0] = { ...dry.databases[0]!, status: 'planned', note: 'would create registry' };
    dry.tarballs[0] = { ...dry.tarballs[0]!, status: 'planned', note: 'would write 2 files into /restore' };
    const lines = formatRestoreReport(dry).split('\n');
    assert.equal(lines[0], 'DRY RUN: nothing was written');
    assert.match(
      lines[4]!,
      /^database skimdb\/registry -> registry: 3 docs, 1 deleted, 0 attachments, .+; would create registry$/,
    );
    assert.match(
      lines[5]!,
      /^tarballs tarballs -> \/restore: 2 files, .+; would write 2 files into \/restore$/,
    );
    assert.ok(!lines.some((l) => l.startsWith('total:')));
  });

  test('targets: unreachable ones, the first ten fallbacks and a count of the rest, metadata fallbacks', () => {
    const fallbacks = Array.from({ length: 12 }, (_, i) => ({
      blob: `${i}`.padEnd(64, 'b'),
      pack: `${i}`.padEnd(64, 'p'),
      from: 'local',
      to: 'offsite',
      reason: 'bad MAC',
    }));
    const lines = targetLines({
      ...report().targets,
      unreachable: [{ target: 'gcs', error: 'ECONNREFUSED' }],
      fallbacks,
      fallbackCount: 12,
      metadataFallbacks: [{ object: 'index/ab', from: 'local', to: 'offsite', reason: 'missing' }],
      unreadableIndex: [{ object: 'index/cd', reason: 'bad MAC' }],
    });
    assert.equal(lines[1], 'target gcs was not used: ECONNREFUSED');
    assert.equal(
      lines[2],
      '12 blob(s) could not be read intact from the first target and came from another:',
    );
    assert.equal(lines[3], `  blob 0${'b'.repeat(15)}… (pack 0${'p'.repeat(11)}): local -> offsite: bad MAC`);
    assert.equal(lines.filter((l) => l.startsWith('  blob ')).length, 10);
    assert.equal(lines[13], '  … and 2 more (--json lists up to 1000)');
    assert.equal(lines[14], 'index/ab: read from offsite instead of local: missing');
    assert.equal(
      lines[15],
      'index object index/cd cannot be read intact from any target (left out): bad MAC',
    );
  });

  test('a resumed tarball store and files already in place are named; a check without values has none', () => {
    const t = { ...report().tarballs[0]!, resumedAfter: 'm/-/m-1.tgz', skipped: 7, checks: [] };
    assert.match(
      tarballLines(t)[0]!,
      /^tarballs tarballs -> \/restore, resumed after "m\/-\/m-1\.tgz": wrote 2 files \(.+\), 7 already in place in /,
    );
    assert.equal(check({ object: 'x', check: 'y', ok: true }), '  OK   x: y');
    assert.match(
      totalLine({ docs: 1, files: 0, bytes: 0, durationMs: 0, bytesPerSecond: 0 }),
      /^total: 1 document, 0 files, .+ \(recovery time achieved\)$/,
    );
  });
});
