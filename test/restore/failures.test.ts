import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ExitCode } from '../../src/errors.js';
import { EXIT_CODE_OF_FAILURE, failureKinds, restoreExitCode } from '../../restore/failures.js';
import type { Check, DbReport, RestoreFailureKind, TarballReport } from '../../restore/types.js';

const ok = (object: string): Check => ({ object, check: 'count', ok: true });
const bad = (object: string): Check => ({ object, check: 'count', ok: false, expected: 2, actual: 1 });

function db(over: Partial<DbReport> = {}): DbReport {
  return {
    source: 'skimdb',
    name: 'registry',
    dest: 'registry',
    status: 'restored',
    mode: 'exact',
    created: true,
    planned: { docs: 2, deleted: 0, attachments: 0, bytes: 10 },
    docs: 2,
    revisions: 2,
    attachments: 0,
    bytes: 10,
    durationMs: 1,
    failures: [],
    failureCount: 0,
    checks: [ok('registry')],
    ...over,
  };
}

function store(over: Partial<TarballReport> = {}): TarballReport {
  return {
    source: 'tarballs',
    dest: '/restore',
    status: 'restored',
    created: true,
    planned: { files: 2, bytes: 20 },
    files: 2,
    bytes: 20,
    skipped: 0,
    durationMs: 1,
    failures: [],
    failureCount: 0,
    checks: [ok('tarballs')],
    ...over,
  };
}

describe('restore failure kinds and the exit code', () => {
  test('each kind maps to the exit code restore has always given for it', () => {
    assert.deepEqual(EXIT_CODE_OF_FAILURE, {
      'destination-refused': 8,
      'document-refused': 8,
      'document-deleted': 8,
      'destination-write': 8,
      'content-mismatch': 5,
      'check-failed': 5,
    });
  });

  test('no failure: 0; only integrity kinds: 5; any destination kind wins over integrity: 8', () => {
    assert.equal(restoreExitCode([]), ExitCode.ok);
    assert.equal(restoreExitCode(['check-failed']), ExitCode.integrity);
    assert.equal(restoreExitCode(['content-mismatch', 'check-failed']), ExitCode.integrity);
    assert.equal(
      restoreExitCode(['check-failed', 'destination-write', 'content-mismatch']),
      ExitCode.destination,
    );
    assert.equal(restoreExitCode(['check-failed', 'document-refused']), ExitCode.destination);
    assert.equal(restoreExitCode(['destination-refused']), ExitCode.destination);
    const all = Object.keys(EXIT_CODE_OF_FAILURE) as RestoreFailureKind[];
    assert.equal(restoreExitCode(all), ExitCode.destination);
  });

  test('a verified restore has no failure kinds', () => {
    assert.deepEqual(failureKinds([db()], [store()]), []);
    assert.equal(restoreExitCode(failureKinds([db()], [store()])), ExitCode.ok);
  });

  test('a failed check alone (e.g. names refused by the name rule) is an integrity failure: 5', () => {
    const refusedNames = store({ status: 'failed', checks: [ok('tarballs'), bad('tarballs')] });
    assert.deepEqual(failureKinds([db()], [refusedNames]), ['check-failed']);
    assert.equal(restoreExitCode(failureKinds([db()], [refusedNames])), ExitCode.integrity);
  });

  test('a file refused by the destination (a symbolic link on its path) makes it 8; a bad checksum 5', () => {
    const linked = store({
      status: 'failed',
      failures: [{ path: 'evil/-/evil-1.0.0.tgz', message: 'is a symbolic link', kind: 'destination-write' }],
      failureCount: 1,
      checks: [bad('tarballs')],
    });
    assert.deepEqual(failureKinds([], [linked]), ['destination-write', 'check-failed']);
    assert.equal(restoreExitCode(failureKinds([], [linked])), ExitCode.destination);
    const corrupt = store({
      status: 'failed',
      failures: [{ path: 'a/-/a-1.0.0.tgz', message: 'destination: sha1 differs', kind: 'content-mismatch' }],
      failureCount: 1,
      checks: [bad('tarballs')],
    });
    // The message says "destination": the kind decides, not the words of the message.
    assert.equal(restoreExitCode(failureKinds([], [corrupt])), ExitCode.integrity);
  });

  test('documents CouchDB refused make it 8, whatever the tarball store did', () => {
    const refused = db({
      status: 'failed',
      failures: [{ id: 'unicode-doc', message: 'too large', kind: 'document-refused' }],
      failureCount: 1,
      checks: [bad('registry')],
    });
    const corrupt = store({
      status: 'failed',
      failures: [{ path: 'a/-/a-1.0.0.tgz', message: 'sha1', kind: 'content-mismatch' }],
      failureCount: 1,
      checks: [bad('tarballs')],
    });
    assert.deepEqual(failureKinds([refused], [corrupt]), [
      'document-refused',
      'check-failed',
      'content-mismatch',
      'check-failed',
    ]);
    assert.equal(restoreExitCode(failureKinds([refused], [corrupt])), ExitCode.destination);
  });
});
