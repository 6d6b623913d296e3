import type { RegisterCommand } from './index.js';

export const registerInit: RegisterCommand = (program, ctx) => {
  program
    .command('init')
    .description('create the repository on every configured target (harmless when it exists)')
    .action(async () => {
      // Loaded when the command runs: --help and the other commands start fast.
      const { loadWorkerKey } = await import('../../repo/keys.js');
      const { Repository } = await import('../../repo/repository.js');
      const { openStore } = await import('../../store/index.js');
      const c = ctx();
      const { config } = c.config();
      const worker = await loadWorkerKey(config.keys);
      const stores = c.closeAtEnd(config.targets.map((t) => openStore(t)));
      const results = await Repository.init(stores, worker, config.repository);
      c.print(
        results
          .map(
            (r) =>
              `${r.target.padEnd(12)} ${r.status === 'exists' ? 'already initialized' : r.status === 'copied' ? 'initialized (joined the existing repository)' : 'initialized'}`,
          )
          .join('\n'),
        { targets: results },
      );
    });
};
