import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { startServers, tmpDir } from '../harness/index.js';
import { runCli } from '../helpers/cli.js';
import { assertTargetsIntact } from '../helpers/verify.js';
import { writeTestConfig } from '../helpers/config.js';

/**
 * An offsite GCS target with object retention (immutability) and a cold storage class: a stolen credential
 * cannot delete young backups, and prune neither deletes nor rewrites what retention or the class's minimum
 * storage duration protect — and catching up never copies forgotten or pruned objects back.
 */
describe('retention and cold storage classes', () => {
  let dir: string;
  let servers: Awaited<ReturnType<typeof startServers<{ gcs: true }>>>;
  let env: NodeJS.ProcessEnv;
  let configFile: string;
  const cli = async (args: string[], expect = 0) => {
    const r = await runCli(args, { env });
    assert.equal(r.code, expect, `${args.join(' ')}: ${r.stderr.slice(-2000)}`);
    return r;
  };
  const json = async <T>(args: string[], expect = 0): Promise<T> =>
    JSON.parse((await cli([...args, '--json'], expect)).stdout) as T;
  const addTarballs = (tag: string) => {
    for (let i = 0; i < 6; i++) {
      const d = path.join(dir, 'tarballs', `p-${tag}-${i}`, '-');
      mkdirSync(d, { recursive: true });
      writeFileSync(
        path.join(d, `p-${tag}-${i}-1.0.0.tgz`),
        Buffer.concat([Buffer.from([0x1f, 0x8b]), randomBytes(30_000)]),
      );
    }
  };

  before(async () => {
    dir = await tmpDir();
    servers = await startServers({ gcs: true });
    const bucket = await servers.gcs.createBucket(undefined, { enableObjectRetention: true } as never);
    configFile = writeTestConfig(dir, {
      packSize: '128KiB',
      tarballs: './tarballs',
      targets: [
        '{ name: local, type: fs, path: ./target-local }',
        `{ name: offsite, type: gcs, bucket: ${bucket}, apiEndpoint: "${servers.gcs.url}", storageClass: NEARLINE, retention: { days: 1, mode: governance } }`,
      ],
      more: `retention: { last: 1, hourly: 0, daily: 0, weekly: 0, monthly: 0 }
prune: { grace: 0s }
`,
    });
    env = { REGBACKUP_CONFIG: configFile };
    await cli(['keys', 'generate', '--out', path.join(dir, 'keys')]);
    await cli(['init']);
  });
  after(() => servers.stop());

  test('objects on the offsite target are locked; forget and prune keep what retention and NEARLINE protect', async () => {
    addTarballs('a');
    await cli(['backup']);
    // Every object written to the offsite target carries a retention date a day ahead.
    const objs = await servers.gcs
      .storage()
      .bucket((await servers.gcs.storage().getBuckets())[0][0]!.name)
      .getFiles();
    const meta = objs[0].find((f) => f.name.startsWith('data/'))!.metadata as {
      retention?: { retainUntilTime?: string };
    };
    assert.ok(
      meta.retention?.retainUntilTime &&
        Date.parse(meta.retention.retainUntilTime) > Date.now() + 23 * 3_600_000,
    );

    for (const tag of ['b', 'c']) {
      rmTag(dir, tag === 'b' ? 'a' : 'b');
      addTarballs(tag);
      await cli(['backup']);
    }
    // forget: gone from the local target; the offsite copy is under retention (reported, kept there).
    const f = await json<{ decisions: { keep: boolean; error?: string }[] }>(['forget'], 6);
    const failed = f.decisions.filter((d) => !d.keep);
    assert.equal(failed.length, 2);
    for (const d of failed) assert.match(d.error ?? '', /offsite/);
    // prune: unneeded packs are marked, and with grace 0 the next run would delete them — but on a NEARLINE
    // target young packs are kept (30 days minimum), and on both they are under retention or young.
    await cli(['prune']);
    const p = await json<{
      executed: number;
      targets: { target: string; deletedPacks: number; keptYoung: number; keptRetention: number }[];
    }>(['prune']);
    assert.equal(p.executed, 1);
    const off = p.targets.find((t) => t.target === 'offsite')!;
    assert.ok(off.keptYoung > 0, 'young NEARLINE packs are not deleted');
    assert.equal(off.deletedPacks, 0);
    // Catching up does not copy the forgotten snapshots back to the local target, and everything is intact.
    addTarballs('d');
    await cli(['backup']);
    const counts = await assertTargetsIntact(configFile, path.join(dir, 'keys/restore.key'), ['local']);
    assert.deepEqual(counts, [2], 'local holds the kept snapshot and the new one, not the forgotten ones');
  });
});

function rmTag(dir: string, tag: string): void {
  for (let i = 0; i < 6; i++)
    rmSync(path.join(dir, 'tarballs', `p-${tag}-${i}`), { recursive: true, force: true });
}
