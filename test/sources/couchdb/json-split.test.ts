import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { packumentTarballs } from '../../../src/couchdb/expectations.js';
import { arrayItems, JsonShapeError, objectMembers, splitArrayMember } from '../../../src/util/json-split.js';

async function* pieces(buf: Buffer, sizes: number[]): AsyncGenerator<Uint8Array> {
  let at = 0;
  let i = 0;
  while (at < buf.length) {
    const n = sizes[i++ % sizes.length]!;
    yield new Uint8Array(buf.subarray(at, at + n));
    at += n;
  }
}

async function collect(src: AsyncIterable<Buffer>): Promise<string[]> {
  const out: string[] = [];
  for await (const b of src) out.push(b.toString('utf8'));
  return out;
}

const tricky = [
  { id: 'a', docs: [{ ok: { _id: 'a', s: 'quote " and backslash \\ and \\" and }]{[' } }] },
  {
    id: '@scope/b',
    docs: [{ ok: { _id: '@scope/b', t: 'ünïcödé 😀 € 中', n: [1, 2.5, -3e2, true, null] } }],
  },
  {
    id: 'c',
    docs: [{ error: { id: 'c', rev: '1-x', error: 'not_found', reason: 'missing' } }, { missing: '2-y' }, {}],
  },
  { id: 'd', docs: [{ ok: { _id: 'd', deep: { a: [{ b: [[['\\\\']]] }] }, end: '\\' } }] },
];

describe('streamed JSON splitting', () => {
  it('splits {"results":[…]} into its items, exactly as sent, whatever the chunking', async () => {
    const text = JSON.stringify({ results: tricky });
    const buf = Buffer.from(text);
    const expected = tricky.map((x) => JSON.stringify(x));
    for (const sizes of [[1], [2], [3], [7], [64], [5, 1, 13, 2], [buf.length]]) {
      const got = await collect(splitArrayMember(pieces(buf, sizes), 'results'));
      assert.deepEqual(got, expected, `chunks of ${sizes.join(',')}`);
    }
    // With whitespace and other members around it.
    const spaced = Buffer.from(
      `  {"other": {"x": "]"} ,\n "results" : [ ${expected.join(' ,\n ')} ] , "tail": 1 }\n`,
    );
    assert.deepEqual(await collect(splitArrayMember(pieces(spaced, [3]), 'results')), expected);
    assert.deepEqual(
      await collect(splitArrayMember(pieces(Buffer.from('{"results":[]}'), [1]), 'results')),
      [],
    );
  });

  it('with owned chunks (an HTTP answer), frees each chunk once no item needs it, items intact', async () => {
    const big = { id: 'big', docs: [{ ok: { _id: 'big', s: 'ü😀'.repeat(50_000) } }] };
    const items = [...tricky, big, ...tricky];
    const buf = Buffer.from(JSON.stringify({ results: items }));
    const expected = items.map((x) => JSON.stringify(x));
    for (const sizes of [[1], [7], [5, 1, 13, 2], [65_536], [buf.length]]) {
      const given: Uint8Array[] = [];
      const src = (async function* () {
        for await (const c of pieces(buf, sizes)) {
          given.push(c);
          yield c;
        }
      })();
      const got = await collect(splitArrayMember(src, 'results', { owned: true }));
      assert.deepEqual(got, expected, `chunks of ${sizes.join(',')}`);
      // Every chunk but the one holding the end of the array was given back (detached: length 0).
      const kept = given.filter((c) => c.byteLength > 0);
      assert.ok(kept.length <= 2, `chunks of ${sizes.join(',')}: ${kept.length} of ${given.length} kept`);
    }
  });

  it('keeps multi-byte characters intact when a read ends inside one', async () => {
    const s = '😀€ß'.repeat(40_000);
    const buf = Buffer.from(JSON.stringify({ results: [{ id: 'x', docs: [{ ok: { s } }] }] }));
    const [item] = await collect(splitArrayMember(pieces(buf, [65_536, 65_535, 3]), 'results'));
    assert.equal((JSON.parse(item!) as { docs: [{ ok: { s: string } }] }).docs[0].ok.s, s);
  });

  it('refuses what is not the expected JSON: HTML, truncation, a missing member', async () => {
    const bad = async (text: string) =>
      assert.rejects(
        collect(splitArrayMember(pieces(Buffer.from(text), [4]), 'results')),
        JsonShapeError,
        text,
      );
    await bad('<html>oops</html>');
    await bad('');
    await bad('{"results":[{"id":"a"}');
    await bad('{"results":[{"id":"a"},');
    await bad('{"rows":[]}');
    await bad('{"results":[1,2]}');
    await bad('{"results":[{"id":"a"}]');
  });

  it('finds raw members and items inside one item', () => {
    const buf = Buffer.from(JSON.stringify(tricky[2]));
    const m = objectMembers(buf);
    assert.deepEqual([...m.keys()], ['id', 'docs']);
    const docs = m.get('docs')!;
    const items = arrayItems(buf, docs.start, docs.end).map(
      (r) => JSON.parse(buf.toString('utf8', r.start, r.end)) as unknown,
    );
    assert.deepEqual(items, tricky[2]!.docs);
    const d = Buffer.from(JSON.stringify(tricky[3]));
    const ok = objectMembers(d, objectMembers(d).get('docs')!.start + 1);
    assert.equal(
      d.toString('utf8', ok.get('ok')!.start, ok.get('ok')!.end),
      JSON.stringify((tricky[3]!.docs[0] as { ok: unknown }).ok),
    );
  });
});

describe('tarball expectations of packuments', () => {
  const dist = { shasum: 'a'.repeat(40), integrity: 'sha512-xyz' };

  it('names unscoped and scoped tarballs as a tarball store lays them out', () => {
    const r = packumentTarballs(
      { name: '@scope/pkg', versions: { '1.0.0': { dist }, '2.0.0-beta.1': { dist } } },
      '@scope/pkg',
      'registry',
    );
    assert.deepEqual(
      r.expectations.map((e) => e.path),
      ['@scope/pkg/-/pkg-1.0.0.tgz', '@scope/pkg/-/pkg-2.0.0-beta.1.tgz'],
    );
    assert.deepEqual(r.expectations[0], {
      path: '@scope/pkg/-/pkg-1.0.0.tgz',
      shasum: dist.shasum,
      integrity: dist.integrity,
      doc: '@scope/pkg',
      db: 'registry',
    });
    // The doc ID when there is no name; versions without dist are not expected.
    const u = packumentTarballs({ versions: { '1.0.0': { dist }, '1.0.1': {} } }, 'left-pad', 'db');
    assert.deepEqual(
      u.expectations.map((e) => e.path),
      ['left-pad/-/left-pad-1.0.0.tgz'],
    );
    assert.deepEqual(packumentTarballs({ not: 'a packument' }, 'x', 'db'), { expectations: [], hostile: [] });
  });

  it('refuses hostile names and versions', () => {
    const hostile = (name: string, version: string) =>
      packumentTarballs({ name, versions: { [version]: { dist } } }, 'id', 'db').hostile.length === 1;
    assert.ok(hostile('left-pad', '../../../etc/passwd'));
    assert.ok(hostile('left-pad', '1.0.0/x'));
    assert.ok(hostile('left-pad', ''));
    assert.ok(hostile('..', '1.0.0'));
    assert.ok(hostile('a/b', '1.0.0'));
    assert.ok(hostile('@scope/a/b', '1.0.0'));
    assert.ok(hostile('@/a', '1.0.0'));
    assert.ok(hostile('@scope/..', '1.0.0'));
    assert.ok(hostile('evil\\name', '1.0.0'));
    assert.ok(hostile('nul\0', '1.0.0'));
    assert.ok(!hostile('fine', '1.0.0'));
  });
});
