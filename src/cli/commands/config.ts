import { stringify } from 'yaml';
import type { RegisterCommand } from './index.js';
import { redact } from '../../util/redact.js';

export const registerConfig: RegisterCommand = (program, ctx) => {
  const config = program.command('config').description('work with the configuration file');
  config
    .command('check')
    .description('validate the configuration and print it resolved, with every secret redacted')
    .action(() => {
      const c = ctx();
      const { config: resolved, path } = c.config();
      const clean = redact(resolved);
      c.print(() => `# ${path}: valid\n${stringify(clean)}`, { path, valid: true, config: clean });
    });
};
