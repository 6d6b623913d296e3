import { stringify } from 'yaml';
import type { RegisterCommand } from './index.js';
import { displayConfig } from '../../config/load.js';

export const registerConfig: RegisterCommand = (program, ctx) => {
  const config = program.command('config').description('work with the configuration file');
  config
    .command('check')
    .description('validate the configuration and print it resolved, with every secret redacted')
    .action(() => {
      const c = ctx();
      const loaded = c.config();
      const clean = displayConfig(loaded);
      c.print(() => `# ${loaded.path}: valid\n${stringify(clean)}`, {
        path: loaded.path,
        valid: true,
        config: clean,
      });
    });
};
