import type { RegisterCommand } from './index.js';
import { ConfigError } from '../../errors.js';

export const registerConfig: RegisterCommand = (program, ctx) => {
  const config = program.command('config').description('work with the configuration file');
  config
    .command('check')
    .description(
      'validate the configuration, check the files it names (keys, identity, directories), warn about placeholders left from the example, and print it resolved with every secret redacted',
    )
    .action(async () => {
      const c = ctx();
      const loaded = c.config();
      const [{ stringify }, { checkOnDisk }, { displayConfig }] = await Promise.all([
        import('yaml'),
        import('../../config/check.js'),
        import('../../config/load.js'),
      ]);
      const clean = displayConfig(loaded);
      const disk = checkOnDisk(loaded.config);
      const valid = disk.errors.length === 0;
      c.print(
        () =>
          [
            `# ${loaded.path}: ${valid ? 'valid' : `NOT USABLE on this host (${disk.errors.length} problem${disk.errors.length > 1 ? 's' : ''})`}`,
            ...disk.errors.map((e) => `# error: ${e}`),
            ...disk.warnings.map((w) => `# warning: ${w}`),
            stringify(clean).trimEnd(),
          ].join('\n'),
        { path: loaded.path, valid, errors: disk.errors, warnings: disk.warnings, config: clean },
      );
      if (!valid)
        throw new ConfigError(
          `configuration ${loaded.path} names files this host does not have:`,
          disk.errors,
        );
    });
};
