import { readFileSync } from 'node:fs';
import { Command, CommanderError, Option } from 'commander';
import { RegbackupError, ExitCode, messageOf } from '../errors.js';
import { redact, redactString } from '../util/redact.js';
import type { CliContext, GlobalOptions } from './context.js';
import { commands } from './commands/index.js';

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as {
    version: string;
  };
  return pkg.version;
}

export function buildProgram(ctxRef: { ctx?: CliContext }): Command {
  const program = new Command('regbackup')
    .description(
      'Backup and disaster recovery for an npm-style package registry: deduplicated, age-encrypted ' +
        'snapshots of CouchDB and tarball stores, written to several providers at once, with restore drills.',
    )
    .version(version(), '-V, --version', 'print the version')
    .addOption(
      new Option(
        '-c, --config <path>',
        'configuration file (default: $REGBACKUP_CONFIG or ./regbackup.yaml)',
      ),
    )
    .option('--json', 'machine-readable output (JSON on stdout)')
    .option('--debug', 'verbose logs and stack traces on errors')
    .option('-q, --quiet', 'only warnings and errors on stderr, no progress')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) });

  // The logger and the context (with the config loader) are loaded only when a command runs: --version and
  // --help load neither pino nor the config schema (start-up is most of a short command's time).
  program.hook('preAction', async (_cmd, action) => {
    const opts = action.optsWithGlobals<GlobalOptions>();
    const [{ createLogger, setLogger }, { CliContext }] = await Promise.all([
      import('../log.js'),
      import('./context.js'),
    ]);
    const logger = createLogger({ level: opts.debug ? 'debug' : opts.quiet ? 'warn' : undefined });
    setLogger(logger);
    ctxRef.ctx = new CliContext(opts, logger);
  });

  const context = () => {
    if (!ctxRef.ctx) throw new Error('CLI context used before preAction');
    return ctxRef.ctx;
  };
  for (const register of commands) register(program, context);
  for (const c of program.commands) c.exitOverride();
  return program;
}

/** Runs the CLI; resolves to the process exit status. Never throws. */
export async function main(argv: string[]): Promise<number> {
  const ref: { ctx?: CliContext } = {};
  const debug = argv.includes('--debug');
  const json = argv.includes('--json');
  try {
    const program = buildProgram(ref);
    await program.parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : ExitCode.ok;
  } catch (err) {
    return reportError(err, { debug, json });
  } finally {
    await ref.ctx?.close();
  }
}

function reportError(err: unknown, opts: { debug: boolean; json: boolean }): number {
  if (err instanceof CommanderError) {
    // Help and version are printed by commander and end with exit code 0.
    if (
      err.code === 'commander.helpDisplayed' ||
      err.code === 'commander.version' ||
      err.code === 'commander.help'
    ) {
      return ExitCode.ok;
    }
    return err.exitCode === 0 ? ExitCode.ok : ExitCode.usage;
  }
  if (err instanceof RegbackupError) {
    process.stderr.write(`regbackup: ${redactString(err.message)}\n`);
    if (opts.debug && err.stack) process.stderr.write(`${redactString(err.stack)}\n`);
    if (opts.json) process.stdout.write(`${JSON.stringify(redact(err.toJSON()))}\n`);
    return err.exitCode;
  }
  process.stderr.write(`regbackup: internal error: ${redactString(messageOf(err))}\n`);
  if (opts.debug && err instanceof Error && err.stack) process.stderr.write(`${redactString(err.stack)}\n`);
  else process.stderr.write('(run again with --debug for a stack trace; this is a bug, please report it)\n');
  if (opts.json)
    process.stdout.write(
      `${JSON.stringify({ error: 'E_INTERNAL', message: redactString(messageOf(err)), exitCode: ExitCode.internal })}\n`,
    );
  return ExitCode.internal;
}
