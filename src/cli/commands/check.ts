import type { RegisterCommand } from './index.js';
import type { TargetCheck } from '../../maintenance/check.js';
import { KeyError, RegbackupError, UsageError } from '../../errors.js';
import { count, formatBytes } from '../../util/units.js';

export const registerCheck: RegisterCommand = (program, ctx) => {
  program
    .command('check')
    .description('verify the repository on each target: structure, and with --read-data the data itself')
    .option('-t, --target <name>', 'only this target')
    .option(
      '--read-data [percent]',
      'download, decrypt and verify all packs, or a random PERCENT of them (needs --identity)',
    )
    .option('--identity <file>', 'the restore identity (for --read-data)')
    .action(async (o: { target?: string; readData?: string | boolean; identity?: string }) => {
      // Loaded when the command runs: --help and the other commands start fast.
      const { openRepository } = await import('../open.js');
      const { checkTarget, emptyTargetCheck } = await import('../../maintenance/check.js');
      const c = ctx();
      let fraction = 0;
      if (o.readData === true) fraction = 1;
      else if (typeof o.readData === 'string') {
        const p = Number(o.readData.trim().replace(/%$/, ''));
        if (!(p > 0 && p <= 100))
          throw new UsageError(`--read-data takes a percentage between 0 and 100, not ${o.readData}`);
        fraction = p / 100;
      }
      const { config } = c.config();
      const names = o.target ? [o.target] : config.targets.map((t) => t.name);
      const results: TargetCheck[] = [];
      const { openStore } = await import('../../store/index.js');
      for (const name of names) {
        let opened: Awaited<ReturnType<typeof openRepository>>;
        try {
          opened = await openRepository(c, {
            target: name,
            identity: o.identity,
            needIdentity: fraction > 0,
          });
        } catch (err) {
          // A target whose config cannot be read is a finding of that target; the others are still checked.
          if (!(err instanceof RegbackupError) || err instanceof KeyError || err instanceof UsageError)
            throw err;
          results.push({
            ...emptyTargetCheck(name),
            ok: false,
            problems: [{ kind: 'unreadable', object: 'config', message: err.message }],
          });
          continue;
        }
        const { repo } = opened;
        try {
          const peers = c.closeAtEnd(config.targets.filter((t) => t.name !== name).map((t) => openStore(t)));
          results.push(
            await checkTarget(repo, repo.targets[0]!, { readData: fraction, logger: c.log, peers }),
          );
        } finally {
          repo.close();
        }
      }
      const ok = results.every((r) => r.ok);
      c.print(
        () => {
          const lines: string[] = [];
          for (const r of results) {
            lines.push(
              `${r.target}: ${r.ok ? 'OK' : `${r.problems.length} PROBLEM(S)`} — ${count(r.snapshots, 'snapshot')}, ${count(r.indexObjects, 'index object')}, ${count(r.packs, 'pack')}, ${count(r.neededBlobs, 'blob')} needed${r.packsRead ? `; read ${count(r.packsRead, 'pack')} (${formatBytes(r.bytesRead)}), ${count(r.blobsVerified, 'blob')} verified` : ''}${r.unindexedPacks ? `; ${count(r.unindexedPacks, 'pack')} not in any index (prune removes them)` : ''}`,
            );
            for (const p of r.problems) lines.push(`  ${p.kind}: ${p.message}`);
          }
          return lines.join('\n');
        },
        { ok, targets: results },
      );
      process.exitCode = ok ? 0 : 5;
    });
};
