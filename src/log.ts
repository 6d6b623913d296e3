import { createRequire } from 'node:module';
import { pino, type Logger, type DestinationStream } from 'pino';
import type PinoPretty from 'pino-pretty';
import { redact, redactString } from './util/redact.js';

export type { Logger };

export interface LogOptions {
  /** 'silent' | 'error' | 'warn' | 'info' | 'debug' | 'trace' */
  level?: string;
  /** Human-readable output; default: when stderr is a TTY. */
  pretty?: boolean;
  /** Where log lines go; default stderr (stdout is kept for command output and `dump`). */
  destination?: DestinationStream;
}

/**
 * The process logger: JSON lines on stderr by default, human-readable on a TTY. Every record and message
 * goes through the redactor, so secrets registered by the config loader and the key loader never appear.
 */
export function createLogger(opts: LogOptions = {}): Logger {
  const level = opts.level ?? process.env.REGBACKUP_LOG_LEVEL ?? 'info';
  const usePretty = opts.pretty ?? Boolean(process.stderr.isTTY);
  const dest: DestinationStream =
    opts.destination ??
    (usePretty
      ? // Loaded only for a terminal: jobs, cron and pipes log JSON and do not pay for it.
        (createRequire(import.meta.url)('pino-pretty') as typeof PinoPretty)({
          destination: 2,
          sync: true,
          colorize: true,
          translateTime: 'SYS:HH:MM:ss',
          ignore: 'pid,hostname',
        })
      : pino.destination({ fd: 2, sync: true }));
  return pino(
    {
      level,
      base: undefined,
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: {
        level: (label) => ({ level: label }),
        log: (obj) => redact(obj),
      },
      hooks: {
        logMethod(args, method) {
          const clean = args.map((a) => (typeof a === 'string' ? redactString(a) : a));
          return method.apply(this, clean as Parameters<typeof method>);
        },
      },
    },
    dest,
  );
}

let current: Logger | undefined;

/** The logger of this process (created lazily with defaults; the CLI replaces it from its flags). */
export function log(): Logger {
  current ??= createLogger();
  return current;
}

export function setLogger(logger: Logger): void {
  current = logger;
}
