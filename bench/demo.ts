#!/usr/bin/env node
/**
 * `npm run demo`: regbackup end to end on this machine, with nothing else installed or running.
 *
 *   node --openssl-legacy-provider dist/bench/demo.js [--packages N] [--dir DIR] [--keep | --no-keep]
 *
 * Starts stand-ins for a registry's systems — a CouchDB-compatible server (the same in-memory server the
 * restore drill uses when no drill CouchDB is configured) seeded with a generated registry (packuments, some
 * tarballs as attachments), a tarball directory, and two backup targets: "aws" on an embedded S3 server
 * (s3rver) and "offsite" in a local directory — then drives the real `regbackup` CLI, as an operator would:
 * keys, init, a backup, a day of registry changes, an incremental backup, a restore drill from each target,
 * the drill history and a health check. No demo-only code path: only the stand-ins are the demo's.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import S3rver from 's3rver';
import { startTemporaryCouch, type TemporaryCouch } from '../restore/drill-standby.js';
import { formatBytes, formatDuration } from '../src/util/units.js';
import { applyChangesToCouch, loadIntoCouch } from '../test/generate/couch.js';
import { mutateRegistry, writeRegistry } from '../test/generate/registry.js';

const BIN = fileURLToPath(new URL('../../bin/regbackup.js', import.meta.url));

export interface DemoOptions {
  /** Packages of the generated registry (default 300). */
  packages?: number;
  /** Working directory (default: a new one under the system's temporary directory). */
  dir?: string;
  /** Keep the servers running at the end until Ctrl-C (default: when stdout is a terminal). */
  keep?: boolean;
  /** Where the demo's narration goes (default stdout). */
  out?: NodeJS.WritableStream;
}

export interface DemoResult {
  dir: string;
  configFile: string;
  /** Exit statuses of the commands run, in order. */
  steps: { args: string[]; code: number | null }[];
  drillPassed: boolean;
}

interface Cli {
  code: number | null;
  stdout: string;
  stderr: string;
}

function bold(s: string, tty: boolean): string {
  return tty ? `\x1b[1m${s}\x1b[0m` : s;
}

export async function runDemo(o: DemoOptions = {}): Promise<DemoResult> {
  const out = o.out ?? process.stdout;
  const tty = Boolean((out as NodeJS.WriteStream).isTTY);
  const say = (s = '') => out.write(`${s}\n`);
  const step = (s: string) => say(`\n${bold(`==> ${s}`, tty)}`);
  const dir = o.dir ?? mkdtempSync(path.join(os.tmpdir(), 'regbackup-demo-'));
  mkdirSync(dir, { recursive: true });
  const t0 = Date.now();
  let couch: TemporaryCouch | undefined;
  let s3: S3rver | undefined;
  const steps: DemoResult['steps'] = [];
  let finished = false;
  try {
    step('Starting the stand-ins: a CouchDB-compatible server and an S3 server, on 127.0.0.1');
    couch = await startTemporaryCouch();
    s3 = new S3rver({
      port: 0,
      address: '127.0.0.1',
      directory: path.join(dir, 's3rver'),
      silent: true,
      configureBuckets: [{ name: 'npm-backup' }],
    });
    const s3addr = await s3.run();
    const s3url = `http://127.0.0.1:${s3addr.port}`;
    say(`CouchDB-compatible server  ${couch.baseUrl}   (express-pouchdb, in memory)`);
    say(`S3 server (stands for AWS)  ${s3url}   bucket npm-backup`);
    say(`"offsite" target            ${path.join(dir, 'offsite')}   (a local directory)`);

    const registry = path.join(dir, 'registry');
    const packages = o.packages ?? 300;
    step(
      `Generating a registry of ${packages} packages (packuments, real .tgz tarballs, ~10% carried as CouchDB attachments)`,
    );
    const stats = await writeRegistry({
      out: registry,
      packages,
      seed: 2026,
      maxVersionsPerPackage: 5,
      tarballVersions: 5,
      attachments: 0.1,
      maxTarballBytes: 150_000,
    });
    const load = await loadIntoCouch(couch.url, 'registry', registry);
    say(
      `${stats.packages} packuments (${stats.versions} versions, ${formatBytes(stats.packumentBytes)}) in database "registry", ${load.attachments} tarballs as attachments`,
    );
    say(
      `${stats.tarballs} tarballs (${formatBytes(stats.tarballBytes)}) in ${path.join(registry, 'tarballs')}`,
    );

    const configFile = path.join(dir, 'regbackup.yaml');
    writeFileSync(
      configFile,
      `# Written by the regbackup demo. Secrets come from the environment, as in production.
keys: ./keys/worker.key
identity: ./keys/restore.key
cache: ./cache
sources:
  couchdb:
    - name: registry-db
      url: '\${COUCH_URL}'
      databases: ['*']
  tarballs:
    - name: tarballs
      path: ./registry/tarballs
targets:
  - name: aws
    type: s3
    bucket: npm-backup
    endpoint: ${s3url}
    forcePathStyle: true
    region: us-east-1
    prefix: regbackup/
    credentials: { accessKeyId: '\${AWS_ACCESS_KEY_ID}', secretAccessKey: '\${AWS_SECRET_ACCESS_KEY}' }
  - name: offsite
    type: fs
    path: ./offsite
schedule:
  backup: '0 * * * *'
  drill: '0 4 * * 0'
  timezone: UTC
alerts:
  rpoThreshold: 2h
drill:
  sample: 25
`,
    );
    const demoEnv: Record<string, string> = {
      REGBACKUP_CONFIG: configFile,
      COUCH_URL: couch.url,
      AWS_ACCESS_KEY_ID: 'S3RVER',
      AWS_SECRET_ACCESS_KEY: 'S3RVER',
    };
    const env: NodeJS.ProcessEnv = { ...process.env, ...demoEnv, REGBACKUP_LOG_LEVEL: 'warn' };
    const cli = (args: string[]): Promise<Cli> =>
      new Promise((resolve, reject) => {
        const child = spawn(process.execPath, [BIN, ...args], {
          env,
          cwd: dir,
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        const so: Buffer[] = [];
        const se: Buffer[] = [];
        child.stdout.on('data', (b: Buffer) => so.push(b));
        child.stderr.on('data', (b: Buffer) => se.push(b));
        child.on('error', reject);
        child.on('close', (code) => {
          steps.push({ args, code });
          resolve({ code, stdout: Buffer.concat(so).toString(), stderr: Buffer.concat(se).toString() });
        });
      });
    const run = async (
      args: string[],
      show: (r: Cli) => string = (r) => r.stdout.trimEnd(),
      ok: (number | null)[] = [0],
    ): Promise<Cli> => {
      say(`${bold(`$ regbackup ${args.join(' ')}`, tty)}`);
      const r = await cli(args);
      const text = show(r);
      if (text) say(text);
      if (!ok.includes(r.code)) {
        say(r.stderr.trimEnd());
        throw new Error(`regbackup ${args.join(' ')} exited with status ${r.code}`);
      }
      return r;
    };

    step(
      'Keys: the restore identity (keep it offline) and the worker key (writes backups, cannot read them)',
    );
    await run(['keys', 'generate', '--out', 'keys']);
    await run(['init']);

    // The backup lists every tarball a packument names that is not in the tarball store; here those are the
    // tarballs the generator carried as attachments. Counted rather than listed, to keep the narration short.
    const backupText = (r: Cli) => {
      const lines = r.stdout.trimEnd().split('\n');
      const missing = lines.filter((l) => /^warning: .* but missing from the store$/.test(l)).length;
      const more = Number(/^… and (\d+) more findings/m.exec(r.stdout)?.[1] ?? 0);
      const rest = lines.filter(
        (l) => !/^warning: .* but missing from the store$/.test(l) && !/^… and \d+ more findings/.test(l),
      );
      if (missing)
        rest.push(
          `(${missing + more} findings: tarballs named by packuments but not in the tarball store — here, those the generator carries as attachments; --json lists them)`,
        );
      return rest.join('\n');
    };

    step(
      'First backup: every database and the tarball store, deduplicated, compressed, encrypted, to both targets',
    );
    await run(['backup'], backupText);

    step(
      'A day passes on the registry: packages publish new versions, a few are created, one is unpublished',
    );
    const day = await mutateRegistry({ out: registry, day: 2 });
    const applied = await applyChangesToCouch(couch.url, 'registry', registry);
    const d = day[day.length - 1]!;
    say(
      `${d.updated.length} updated, ${d.created.length} created, ${d.unpublished.length} unpublished (${applied.written} documents written, ${applied.deleted} deleted); ${d.newTarballs} new tarballs`,
    );

    step('Incremental backup: only what changed is read and stored');
    await run(['backup'], backupText);
    await run(['snapshots', '--target', 'offsite']);

    step(
      'Restore drill from EACH target into a temporary standby: restore, verify, measure RTO and RPO, clean up',
    );
    const drill = await run(['drill'], (r) => r.stdout.trimEnd(), [0, 5]);
    const drillPassed = drill.code === 0;

    step('The drill history and a health check (as Nagios, Docker HEALTHCHECK or a cron job would run it)');
    await run(['drills']);
    await run(['check-health'], (r) => r.stdout.trimEnd(), [0, 1, 2]);

    const keep = o.keep ?? Boolean(process.stdout.isTTY && process.stdin.isTTY);
    // The demo's own throwaway loopback settings, for the operator's shell: not secrets worth hiding, but
    // written to a file (mode 0600) rather than printed, as real settings would be.
    const envFile = path.join(dir, 'demo.env');
    writeFileSync(
      envFile,
      `# Written by the regbackup demo: the settings of its stand-in servers, for \`source ${envFile}\`.\n` +
        Object.entries(demoEnv)
          .map(([k, v]) => `export ${k}=${shellQuote(v)}\n`)
          .join(''),
      { mode: 0o600 },
    );
    const removeDir = !keep && o.dir === undefined;
    step(`Done in ${formatDuration(Date.now() - t0)}. What to try next:`);
    for (const line of nextSteps(dir, envFile, keep)) say(`  ${line}`);
    say('  Then read README.md ("Running it") for cron vs BullMQ, alerts and metrics.');

    if (keep) {
      say(
        `\nThe stand-in servers keep running (CouchDB at ${couch.baseUrl}, S3 at ${s3url}) and ${dir} stays, so that the commands above work; press Ctrl-C to stop.`,
      );
      await new Promise<void>((resolve) => {
        process.once('SIGINT', () => resolve());
        process.once('SIGTERM', () => resolve());
      });
    } else
      say(
        `\n(The stand-in servers are stopped now${removeDir ? ` and ${dir} is removed` : ''}; \`npm run demo -- --keep\` keeps them running, with the files, so that the commands above work.)`,
      );
    finished = removeDir;
    return { dir, configFile, steps, drillPassed };
  } finally {
    await couch?.stop();
    await s3?.close();
    // A run leaves ~260 MB (registry, both targets, cache): removed unless kept or the caller chose the folder.
    if (finished) rmSync(dir, { recursive: true, force: true });
  }
}

/** `'…'` for a POSIX shell. */
function shellQuote(v: string): string {
  return `'${v.replace(/'/g, `'\\''`)}'`;
}

/** The commands printed at the end: each works as printed after `source demo.env`, from the project folder. */
export function nextSteps(dir: string, envFile: string, kept: boolean): string[] {
  const lines = [
    kept
      ? `Everything is in ${dir}: the configuration (regbackup.yaml), keys/, both targets (offsite/, s3rver/), the registry.`
      : 'With `npm run demo -- --keep` the servers and files stay, and these work:',
    `source ${envFile}                                   # the demo's settings: REGBACKUP_CONFIG, COUCH_URL, S3 keys`,
    `npx regbackup snapshots --target offsite --json    # what each snapshot holds`,
    `npx regbackup drills --show latest                # the full drill report, read back from the repository`,
    `npx regbackup restore --from offsite --tarballs ${path.join(dir, 'restored-tarballs')}   # restore the tarball store`,
    `npx regbackup jobs                                 # the schedule and its next runs`,
    `npx regbackup worker                               # run the schedule (add queue.redis for BullMQ); Ctrl-C stops it`,
  ];
  const snapDir = path.join(dir, 'offsite', 'snapshots');
  const snap = existsSync(snapDir) ? readdirSync(snapDir).sort().at(-1) : undefined;
  if (snap)
    lines.push(
      `age -d -i ${path.join(dir, 'keys', 'restore.key')} < ${path.join(snapDir, snap)} | tail -c +14 | head -c -64 | zstd -d   # by hand (docs/FORMAT.md)`,
    );
  return lines;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      packages: { type: 'string' },
      dir: { type: 'string' },
      keep: { type: 'boolean' },
      'no-keep': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write('usage: npm run demo [-- --packages N] [--dir DIR] [--keep | --no-keep]\n');
    return;
  }
  const packages = values.packages !== undefined ? Number.parseInt(values.packages, 10) : undefined;
  if (packages !== undefined && !(packages > 0))
    throw new Error(`--packages expects a number above 0, not ${values.packages}`);
  const r = await runDemo({
    packages,
    dir: values.dir ? path.resolve(values.dir) : undefined,
    keep: values['no-keep'] ? false : values.keep,
  });
  process.exitCode = r.drillPassed ? 0 : 1;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((err: unknown) => {
    process.stderr.write(`demo failed: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  });
}
