import { createRequire } from 'node:module';
import { pino, type Logger, type DestinationStream } from 'pino';
import type PinoPretty from 'pino-pretty';
import { redact, redactString } from './util/redact.js';
import { eraseStatusLine } from './util/status-line.js';

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
  const dest: DestinationStream = opts.destination ?? belowStatusLine(terminalOrJson(usePretty));
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

/** Human-readable lines for a terminal, JSON lines otherwise; stderr either way. */
function terminalOrJson(pretty: boolean): DestinationStream {
  return pretty
    ? // Loaded only for a terminal: jobs, cron and pipes log JSON and do not pay for it.
      (createRequire(import.meta.url)('pino-pretty') as typeof PinoPretty)({
        destination: 2,
        sync: true,
        colorize: true,
        translateTime: 'SYS:HH:MM:ss',
        ignore: 'pid,hostname',
      })
    : pino.destination({ fd: 2, sync: true });
}

/** Erases a progress line drawn on stderr before each log line, so that the two never share a line. */
export function belowStatusLine(dest: DestinationStream): DestinationStream {
  return {
    write(line: string) {
      eraseStatusLine();
      return dest.write(line);
    },
  };
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
