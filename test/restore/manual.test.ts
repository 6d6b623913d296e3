import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadIntoCouch } from '../generate/couch.js';
import { writeRegistry } from '../generate/registry.js';
import { startServers, tmpDir } from '../harness/index.js';
import { runCli } from '../helpers/cli.js';
import { couch, unicodeText } from './fixture.js';

/**
 * docs/FORMAT.md §16 promises that a document can be recovered with the restore identity, the `age` CLI,
 * `zstd`, `jq` and a hex viewer, following nothing but the format's layout. docs/DISASTER.md gives the exact
 * script ("regbackup itself does not run"); this test takes that script out of the document and runs it, with
 * bash and those tools only, against a real backup, and compares what it prints with the source document.
 */
const DOC = fileURLToPath(new URL('../../../docs/DISASTER.md', import.meta.url));

function scriptFromRunbook(): string {
  const md = readFileSync(DOC, 'utf8');
  const m = /```bash\n(#!\/usr\/bin\/env bash\n# recover-doc\.sh[\s\S]*?)```/.exec(md);
  assert.ok(m, 'docs/DISASTER.md holds the recover-doc.sh script');
  return m[1]!;
}

function run(cmd: string, args: string[]): Promise<{ code: number | null; stdout: Buffer; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { PATH: process.env.PATH, HOME: process.env.HOME },
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', reject);
    child.on('close', (code) =>
      resolve({ code, stdout: Buffer.concat(out), stderr: Buffer.concat(err).toString() }),
    );
  });
}

describe('reading a repository by hand (docs/FORMAT.md §16, docs/DISASTER.md 3.)', () => {
  let dir: string;
  let servers: Awaited<ReturnType<typeof startServers<{ couchdb: true }>>>;
  let script: string;

  before(async () => {
    dir = await tmpDir();
    servers = await startServers({ couchdb: true });
    await writeRegistry({
      out: path.join(dir, 'registry'),
      packages: 4,
      seed: 3,
      maxVersionsPerPackage: 400,
      tarballVersions: 1,
    });
    await loadIntoCouch(servers.couchdb.url, 'registry', path.join(dir, 'registry'));
    await couch(servers.couchdb.url, 'PUT', 'registry/unicode-doc', {
      text: unicodeText(300_000),
      'clé 漢': ['😀'],
    });
    writeFileSync(
      path.join(dir, 'regbackup.yaml'),
      `keys: ./keys/worker.key\ncache: ./cache\nsources:\n  couchdb:\n    - name: skimdb\n      url: "${servers.couchdb.url}"\n      databases: [registry]\ntargets:\n  - name: local\n    type: fs\n    path: ./target\n`,
    );
    const env = { REGBACKUP_CONFIG: path.join(dir, 'regbackup.yaml') };
    for (const args of [['keys', 'generate', '--out', path.join(dir, 'keys')], ['init'], ['backup']]) {
      const r = await runCli(args, { env });
      assert.equal(r.code, 0, r.stderr);
    }
    script = path.join(dir, 'recover-doc.sh');
    writeFileSync(script, scriptFromRunbook());
  });
  after(() => servers.stop());

  for (const id of ['unicode-doc', 'first package']) {
    test(`recovers ${id === 'unicode-doc' ? 'a document of non-ASCII text cut into many chunks' : 'a packument'} with age, zstd, jq and xxd only`, async () => {
      let docId = id;
      if (id === 'first package') {
        const all = await couch<{ rows: { id: string }[] }>(servers.couchdb.url, 'GET', 'registry/_all_docs');
        docId = all.body.rows.map((r) => r.id).find((x) => x !== 'unicode-doc')!;
      }
      const r = await run('bash', [
        script,
        path.join(dir, 'target'),
        path.join(dir, 'keys', 'restore.key'),
        'registry',
        docId,
      ]);
      assert.equal(r.code, 0, r.stderr);
      const recovered = JSON.parse(r.stdout.toString('utf8')) as Record<string, unknown>;
      const source = await couch<Record<string, unknown>>(
        servers.couchdb.url,
        'GET',
        `registry/${encodeURIComponent(docId)}?revs=true`,
      );
      assert.deepEqual(recovered, source.body);
    });
  }
});
