import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startCouchDB } from '../harness/couchdb.js';
import { applyChangesToCouch, loadIntoCouch } from './couch.js';
import {
  generateChanges,
  generateRegistry,
  mutateRegistry,
  writeRegistry,
  type Packument,
  type RegistryOptions,
} from './registry.js';

const OPTS: RegistryOptions = {
  seed: 'couch2',
  packages: 30,
  tarballVersions: 1,
  maxVersionsPerPackage: 30,
  maxTarballBytes: 120_000,
  attachments: 0.4,
  dailyUpdateFraction: 0.2,
};

async function getJson(
  url: string,
  path: string,
  auth: string,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${url}${path}`, { headers: { authorization: auth, accept: 'application/json' } });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

test('loadIntoCouch loads packuments (attachments inline); applyChangesToCouch applies day 2', async () => {
  const couch = await startCouchDB();
  try {
    const auth = `Basic ${Buffer.from(`${couch.admin!.username}:${couch.admin!.password}`).toString('base64')}`;
    const r = await loadIntoCouch(couch.url, 'registry', { ...OPTS }, { batchSize: 7, concurrency: 3 });
    assert.equal(r.docs, 30);
    assert.equal(r.written, 30);
    assert.deepEqual(r.rejected, []);
    assert.ok(r.attachments > 0 && r.requests >= 5);

    const pkgs = [...generateRegistry(OPTS)];
    const scoped = pkgs.find((p) => p.name.startsWith('@')) ?? pkgs[0]!;
    const got = await getJson(couch.baseUrl, `/registry/${encodeURIComponent(scoped.name)}`, auth);
    assert.equal(got.status, 200);
    assert.deepEqual(Object.keys(got.body.versions as object), Object.keys(scoped.packument.versions));
    const withAtt = pkgs.find((p) => p.packument._attachments)!;
    const att = withAtt.tarballs[0]!;
    const res = await fetch(
      `${couch.baseUrl}/registry/${encodeURIComponent(withAtt.name)}/${att.path.split('/').pop()}`,
      {
        headers: { authorization: auth },
      },
    );
    assert.equal(res.status, 200);
    const bytes = Buffer.from(await res.arrayBuffer());
    assert.equal(
      createHash('sha1').update(bytes).digest('hex'),
      withAtt.packument.versions[att.version]!.dist.shasum,
    );

    const changes = [...generateChanges(OPTS, 2)];
    const attUpdates = changes.filter((x) => x.type === 'update' && x.packument!._attachments);
    assert.ok(attUpdates.length > 0, 'the seed gives an update of an attachment-mode package');
    const c = await applyChangesToCouch(couch.url, 'registry', { ...OPTS, day: 2 }, { batchSize: 4 });
    assert.deepEqual(c.rejected, []);
    // only the new tarballs travel: old attachments go as stubs
    assert.equal(
      c.attachments,
      changes.reduce((n, x) => n + x.newTarballs.filter((t) => t.attachment).length, 0),
    );
    assert.equal(c.updated, changes.filter((x) => x.type === 'update').length);
    assert.equal(c.created, changes.filter((x) => x.type === 'create').length);
    assert.equal(c.deleted, 1);
    for (const ch of changes) {
      const doc = await getJson(couch.baseUrl, `/registry/${encodeURIComponent(ch.name)}`, auth);
      if (ch.type === 'delete') {
        assert.equal(doc.status, 404);
        continue;
      }
      assert.equal(doc.status, 200);
      assert.deepEqual(doc.body['dist-tags'], ch.packument!['dist-tags']);
      if (ch.type === 'update') assert.match(String(doc.body._rev), /^2-/);
      const atts = doc.body._attachments as Record<string, unknown> | undefined;
      if (ch.packument!._attachments) {
        assert.deepEqual(
          Object.keys(atts ?? {}).sort(),
          Object.keys(ch.packument!._attachments).sort(),
          'old attachments kept',
        );
        for (const name of Object.keys(atts!)) {
          const a = await fetch(`${couch.baseUrl}/registry/${encodeURIComponent(ch.name)}/${name}`, {
            headers: { authorization: auth },
          });
          const data = Buffer.from(await a.arrayBuffer());
          assert.equal(
            data.toString('base64'),
            ch.packument!._attachments[name]!.data,
            `${ch.name}/${name} content`,
          );
        }
      }
    }
  } finally {
    await couch.stop();
  }
});

test('applyChangesToCouch from a mutated corpus directory; rejected documents are reported, not fatal', async () => {
  const couch = await startCouchDB();
  const root = mkdtempSync(join(tmpdir(), 'regbackup-gen-couch-'));
  try {
    const opts: RegistryOptions = { ...OPTS, attachments: 0, seed: 'couch-dir' };
    await writeRegistry({ ...opts, out: root, concurrency: 0 });
    const r = await loadIntoCouch(couch.url, 'reg', root);
    assert.equal(r.written, 30);
    const [day] = await mutateRegistry({ out: root, concurrency: 0 });
    const c = await applyChangesToCouch(couch.url, 'reg', root);
    assert.equal(c.updated, day!.updated.length);
    assert.equal(c.created, day!.created.length);
    assert.equal(c.deleted, day!.unpublished.length);
    assert.deepEqual(c.rejected, []);

    // documents the server refuses are reported per document: an illegal _id (the whole request gets a
    // 400: the batch is bisected) and a conflict (a document that exists, sent without _rev)
    const bad = { _id: '_bad', name: '_bad' } as unknown as Packument;
    const good = [...generateRegistry({ ...opts, seed: 'couch-extra', packages: 3 })].map((g) => g.packument);
    const existing = [...generateRegistry(opts)][0]!.packument;
    const r2 = await loadIntoCouch(couch.url, 'reg', [good[0]!, bad, good[1]!, existing, good[2]!], {
      create: false,
    });
    assert.equal(r2.docs, 5);
    assert.equal(r2.written, 3);
    assert.deepEqual(r2.rejected.map((x) => [x.id, x.error]).sort(), [
      ['_bad', 'bad_request'],
      [existing._id, 'conflict'],
    ]);
  } finally {
    await couch.stop();
    rmSync(root, { recursive: true, force: true });
  }
});
