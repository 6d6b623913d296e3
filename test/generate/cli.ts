#!/usr/bin/env node
/**
 * Writes a generated registry corpus to disk.
 *
 *   node dist/test/generate/cli.js --out DIR --size 1GiB --seed 1 [--day 2] [--attachments]
 *
 * With `--day N` and a corpus of the same options at an earlier day already in DIR, that corpus is
 * mutated forward in place (mutateRegistry); otherwise day N is written directly (identical result).
 */

import { parseArgs } from 'node:util';
import { formatBytes, formatDuration, parseSize } from '../../src/util/units.js';
import {
  mutateRegistry,
  readRegistryInfo,
  resolveOptions,
  writeRegistry,
  type RegistryOptions,
  type RegistryStats,
} from './registry.js';

const USAGE = `usage: node dist/test/generate/cli.js --out DIR (--size SIZE | --packages N) [options]

  --out DIR               output directory (packuments/, tarballs/, generator.json)
  --size SIZE             approximate total size of day 1, e.g. 200MiB, 1GiB (JSON ~23%, tarballs ~77%)
  --packages N            number of packages instead of (or with) --size
  --seed S                seed (default 1)
  --day N                 write (or advance DIR to) the state of day N (default 1)
  --attachments           carry ~10% of packages' tarballs as CouchDB attachments in their packuments
  --attachments-fraction F  same, with a chosen fraction
  --tarball-versions N    real tarballs for the newest N versions of each package (default: fill --size)
  --max-versions N        cap on versions per package
  --max-tarball SIZE      cap on one tarball
  --unpublish N           packages unpublished per later day (default 1)
  --concurrency N         worker threads (default: cores)
  --overwrite             replace an existing corpus in DIR
  --json                  print the summary as JSON
`;

function fail(msg: string): never {
  process.stderr.write(`${msg}\n\n${USAGE}`);
  process.exit(2);
}

function num(v: string | undefined, what: string): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n)) fail(`${what}: not a number: ${v}`);
  return n;
}

function size(v: string | undefined, what: string): number | undefined {
  if (v === undefined) return undefined;
  const n = parseSize(v);
  if (n === undefined) fail(`${what}: not a size: ${v}`);
  return n;
}

async function main(): Promise<void> {
  let args;
  try {
    args = parseArgs({
      options: {
        out: { type: 'string' },
        size: { type: 'string' },
        packages: { type: 'string' },
        seed: { type: 'string' },
        day: { type: 'string' },
        attachments: { type: 'boolean' },
        'attachments-fraction': { type: 'string' },
        'tarball-versions': { type: 'string' },
        'max-versions': { type: 'string' },
        'max-tarball': { type: 'string' },
        unpublish: { type: 'string' },
        concurrency: { type: 'string' },
        overwrite: { type: 'boolean' },
        json: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
    }).values;
  } catch (e) {
    fail(e instanceof Error ? e.message : String(e));
  }
  if (args.help) {
    process.stdout.write(USAGE);
    return;
  }
  const out = args.out ?? fail('--out is required');
  if (args.size === undefined && args.packages === undefined) fail('give --size or --packages');
  const opts: RegistryOptions = {
    seed: args.seed ?? 1,
    targetBytes: size(args.size, '--size'),
    packages: num(args.packages, '--packages'),
    attachments:
      args['attachments-fraction'] !== undefined
        ? num(args['attachments-fraction'], '--attachments-fraction')
        : args.attachments
          ? 0.1
          : undefined,
    tarballVersions: num(args['tarball-versions'], '--tarball-versions'),
    maxVersionsPerPackage: num(args['max-versions'], '--max-versions'),
    maxTarballBytes: size(args['max-tarball'], '--max-tarball'),
    unpublishPerDay: num(args.unpublish, '--unpublish'),
  };
  const day = num(args.day, '--day') ?? 1;
  const concurrency = num(args.concurrency, '--concurrency');
  const resolved = resolveOptions(opts);
  const t0 = performance.now();

  const existing = readRegistryInfo(out);
  let stats: RegistryStats;
  let mutated = false;
  if (
    existing &&
    !args.overwrite &&
    JSON.stringify(existing.options) === JSON.stringify(resolved) &&
    existing.day < day
  ) {
    const days = await mutateRegistry({ out, day, concurrency });
    for (const d of days) {
      process.stderr.write(
        `day ${d.day}: ${d.updated.length} updated, ${d.created.length} created, ${d.unpublished.length} unpublished, ` +
          `${d.newTarballs} new tarballs (${formatBytes(d.newTarballBytes)}), ${d.removedTarballs} removed, ${formatDuration(d.ms)}\n`,
      );
    }
    stats = readRegistryInfo(out)!.stats;
    mutated = true;
  } else {
    if (existing && !args.overwrite) {
      fail(
        `${out} already holds a corpus (day ${existing.day}${JSON.stringify(existing.options) === JSON.stringify(resolved) ? '' : ', other options'}); pass --overwrite to replace it`,
      );
    }
    let last = 0;
    stats = await writeRegistry({
      ...opts,
      out,
      day,
      concurrency,
      overwrite: args.overwrite,
      onProgress: (done, total) => {
        const now = performance.now();
        if (process.stderr.isTTY && (now - last > 500 || done === total)) {
          last = now;
          process.stderr.write(`\r${done}/${total} packages`);
          if (done === total) process.stderr.write('\n');
        }
      },
    });
  }
  const ms = performance.now() - t0;
  if (args.json) {
    process.stdout.write(JSON.stringify({ out, mutated, ...stats, ms: Math.round(ms) }, null, 2) + '\n');
    return;
  }
  const total = stats.packumentBytes + stats.tarballBytes;
  process.stdout.write(
    [
      `corpus     ${out} (seed ${resolved.seed}, day ${stats.day}${mutated ? ', advanced in place' : ''})`,
      `packages   ${stats.packages} (${stats.scopedPackages} scoped), ${stats.versions} versions`,
      `packuments ${formatBytes(stats.packumentBytes)} JSON (${total ? ((100 * stats.packumentBytes) / total).toFixed(1) : 0}%), largest ${formatBytes(stats.largestPackumentBytes)}`,
      `tarballs   ${stats.tarballs} files, ${formatBytes(stats.tarballBytes)}, largest ${formatBytes(stats.largestTarballBytes)}` +
        (stats.attachmentTarballs
          ? `; ${stats.attachmentTarballs} more as attachments (${formatBytes(stats.attachmentBytes)})`
          : ''),
      `total      ${formatBytes(total)} in ${formatDuration(ms)}`,
      '',
    ].join('\n'),
  );
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exit(1);
});
