import type { Logger } from '../log.js';
import { loadConfig, resolveConfigPath, type LoadedConfig } from '../config/load.js';
import { redact, redactString } from '../util/redact.js';

export interface GlobalOptions {
  config?: string;
  json?: boolean;
  debug?: boolean;
  quiet?: boolean;
}

/**
 * What every subcommand gets: the global flags, the logger, and the configuration loaded on first use
 * (commands such as `keys generate` need none).
 */
export class CliContext {
  private loaded?: LoadedConfig;
  /** What the command opened that holds sockets or handles (target stores): closed when it ends. */
  private readonly opened: Array<{ close(): Promise<void> }> = [];

  constructor(
    readonly opts: GlobalOptions,
    readonly log: Logger,
    readonly stdout: NodeJS.WritableStream = process.stdout,
  ) {}

  get json(): boolean {
    return Boolean(this.opts.json);
  }

  /** Progress bars and other TTY niceties: only for a human at a terminal. */
  get interactive(): boolean {
    return !this.opts.json && !this.opts.quiet && Boolean(process.stderr.isTTY);
  }

  /** Registers stores (anything with close()) to close when the command ends; returns them. */
  closeAtEnd<T extends { close(): Promise<void> }>(items: T[]): T[] {
    this.opened.push(...items);
    return items;
  }

  /** Closes what closeAtEnd registered (main() calls it once the command is done, failed or not). */
  async close(): Promise<void> {
    await Promise.allSettled(this.opened.splice(0).map((o) => o.close()));
  }

  config(): LoadedConfig {
    this.loaded ??= loadConfig(resolveConfigPath(this.opts.config));
    return this.loaded;
  }

  /** Prints a command's result: `value` as JSON with --json, else the human text. Secrets are removed from both. */
  print(human: string | (() => string), value: unknown): void {
    if (this.json) this.stdout.write(`${JSON.stringify(redact(value), null, 2)}\n`);
    else {
      const text = redactString(typeof human === 'function' ? human() : human);
      if (text) this.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
    }
  }
}
