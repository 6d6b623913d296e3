import { ExitCode } from '../src/errors.js';
import type { DbReport, RestoreFailureKind, TarballReport } from './types.js';

/** The exit code each kind of restore failure calls for (see `RestoreFailureKind`). */
export const EXIT_CODE_OF_FAILURE: Readonly<Record<RestoreFailureKind, ExitCode>> = {
  'destination-refused': ExitCode.destination,
  'document-refused': ExitCode.destination,
  'document-deleted': ExitCode.destination,
  'destination-write': ExitCode.destination,
  'content-mismatch': ExitCode.integrity,
  'check-failed': ExitCode.integrity,
};

/**
 * The exit code of a restore from the kinds of its failures: 0 without any; the destination's (8) when any
 * failure is the destination's (it names what the operator must change before anything else can be judged);
 * otherwise the integrity one (5).
 */
export function restoreExitCode(kinds: Iterable<RestoreFailureKind>): ExitCode {
  let code: ExitCode = ExitCode.ok;
  for (const kind of kinds) {
    const c = EXIT_CODE_OF_FAILURE[kind];
    if (c === ExitCode.destination) return c;
    code = c;
  }
  return code;
}

/** Every failure of the written parts by kind: what each part could not restore, and each failed check. */
export function failureKinds(databases: DbReport[], tarballs: TarballReport[]): RestoreFailureKind[] {
  return [...databases, ...tarballs].flatMap((part) => [
    ...part.failures.map((f) => f.kind),
    ...part.checks.filter((c) => !c.ok).map((): RestoreFailureKind => 'check-failed'),
  ]);
}
