/**
 * Typed errors with a stable code and an exit status. Every failure an operator can see goes through one
 * of these, so that scripts can branch on the exit status and humans get one clear line.
 *
 * Exit statuses (documented in README.md):
 *   0  success
 *   1  internal error (a bug: please report it)
 *   2  usage or configuration error
 *   3  a source (CouchDB, tarball store) is unreachable or refused us
 *   4  a target (object store) is unreachable or refused us
 *   5  integrity failure: tampered, corrupt or missing backup data, or a failed verification
 *   6  partial success: the run finished but something was left behind (a target, a database, a file)
 *   7  keys: a key file is missing, malformed, or does not match the repository
 *   8  a destination (restore) refused the data or is not empty
 *   9  interrupted (SIGINT/SIGTERM) before the work finished; nothing committed is lost
 */
export const ExitCode = {
  ok: 0,
  internal: 1,
  usage: 2,
  source: 3,
  target: 4,
  integrity: 5,
  partial: 6,
  keys: 7,
  destination: 8,
  interrupted: 9,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

export abstract class RegbackupError extends Error {
  abstract readonly code: string;
  abstract readonly exitCode: ExitCode;
  /** Extra structured context for logs and --json output. Never put secrets here. */
  readonly details: Record<string, unknown>;

  constructor(message: string, details: Record<string, unknown> = {}, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.details = details;
  }

  toJSON(): Record<string, unknown> {
    return { error: this.code, message: this.message, exitCode: this.exitCode, ...this.details };
  }
}

export class UsageError extends RegbackupError {
  readonly code = 'E_USAGE';
  readonly exitCode = ExitCode.usage;
}

export class ConfigError extends RegbackupError {
  readonly code = 'E_CONFIG';
  readonly exitCode = ExitCode.usage;
  constructor(
    message: string,
    readonly problems: string[] = [],
    details: Record<string, unknown> = {},
  ) {
    super(problems.length ? `${message}\n${problems.map((p) => `  - ${p}`).join('\n')}` : message, {
      ...details,
      problems,
    });
  }
}

export class SourceError extends RegbackupError {
  readonly code = 'E_SOURCE';
  readonly exitCode = ExitCode.source;
}

export class TargetError extends RegbackupError {
  readonly code = 'E_TARGET';
  readonly exitCode = ExitCode.target;
}

export class IntegrityError extends RegbackupError {
  readonly code = 'E_INTEGRITY';
  readonly exitCode = ExitCode.integrity;
}

export class PartialError extends RegbackupError {
  readonly code = 'E_PARTIAL';
  readonly exitCode = ExitCode.partial;
}

export class KeyError extends RegbackupError {
  readonly code = 'E_KEYS';
  readonly exitCode = ExitCode.keys;
}

export class DestinationError extends RegbackupError {
  readonly code = 'E_DESTINATION';
  readonly exitCode = ExitCode.destination;
}

export class InterruptedError extends RegbackupError {
  readonly code = 'E_INTERRUPTED';
  readonly exitCode = ExitCode.interrupted;
}

/** Reads a (possibly foreign) error's message without trusting its shape. */
export function messageOf(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}

/** Node system error code (ENOENT, ECONNREFUSED, …) if there is one. */
export function systemCodeOf(err: unknown): string | undefined {
  if (
    err &&
    typeof err === 'object' &&
    'code' in err &&
    typeof (err as { code: unknown }).code === 'string'
  ) {
    return (err as { code: string }).code;
  }
  return undefined;
}
