import type { Command } from 'commander';
import type { CliContext } from '../context.js';
import { registerConfig } from './config.js';

/** Each subcommand lives in its own file and registers itself on the program. */
export type RegisterCommand = (program: Command, ctx: () => CliContext) => void;

export const commands: RegisterCommand[] = [registerConfig];
