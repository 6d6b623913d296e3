/**
 * Many small packuments (2–6 KB each), quickly: for the scale benchmarks (bench/scale-couch.ts), where the
 * number of documents matters, not their content. Deterministic: document `i` of seed `s` at `generation` g
 * is always the same bytes. Generation 0 is the initial load; a churned document gets generation g + 1 (one
 * more version, `dist-tags.latest` and `time.modified` moved), as a publish does.
 *
 * The loaded database is the reusable copy on disk (CouchDB's own files): the benchmark loads only what a
 * database is missing.
 */
import { Rng } from './rng.js';
import { TECH_WORDS } from './text.js';

export interface SmallPackument {
  _id: string;
  _rev?: string;
  name: string;
  description: string;
  'dist-tags': { latest: string };
  versions: Record<string, unknown>;
  time: Record<string, string>;
  readme: string;
  maintainers: { name: string; email: string }[];
  license: string;
}

/** The document ID of packument `i` (about 1 in 8 scoped, as on the public registry). */
export function smallId(i: number): string {
  const n = String(i).padStart(7, '0');
  return i % 8 === 3 ? `@scope${i % 97}/pkg-${n}` : `pkg-${n}`;
}

function words(rng: Rng, n: number): string {
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push(TECH_WORDS[rng.int(TECH_WORDS.length)]!);
  return out.join(' ');
}

function hex(rng: Rng, bytes: number): string {
  let s = '';
  for (let i = 0; i < bytes; i += 4) s += rng.u32().toString(16).padStart(8, '0');
  return s.slice(0, bytes * 2);
}

function b64(rng: Rng, bytes: number): string {
  const b = Buffer.alloc(bytes);
  for (let i = 0; i < bytes; i += 4) b.writeUInt32LE(rng.u32(), i);
  return b.toString('base64');
}

/** Packument `i` at `generation` (the number of versions published after the first load). */
export function smallPackument(i: number, seed = 1, generation = 0): SmallPackument {
  const rng = Rng.derive('small', seed, i);
  const name = smallId(i);
  const base = name.startsWith('@') ? name.slice(name.indexOf('/') + 1) : name;
  const initial = 1 + rng.int(3);
  const readmeWords = 150 + rng.int(450); // with 1–3 versions: 2–6 KB in all
  const description = words(rng, 6 + rng.int(10));
  const readme = `# ${name}\n\n${words(rng, readmeWords)}\n`;
  const maintainers = [{ name: `user${rng.int(5000)}`, email: `user${rng.int(5000)}@example.com` }];
  const versions: Record<string, unknown> = {};
  const time: Record<string, string> = { created: new Date(Date.UTC(2020, 0, 1) + i * 1000).toISOString() };
  let latest = '';
  for (let v = 0; v < initial + generation; v++) {
    const vr = Rng.derive('small-v', seed, i, v);
    const version = `1.${v}.0`;
    latest = version;
    versions[version] = {
      name,
      version,
      description,
      main: 'index.js',
      license: 'MIT',
      dependencies: { [TECH_WORDS[vr.int(TECH_WORDS.length)]!]: `^${vr.int(9)}.0.0` },
      maintainers,
      dist: {
        shasum: hex(vr, 20),
        integrity: `sha512-${b64(vr, 64)}`,
        tarball: `https://registry.example.com/${name}/-/${base}-${version}.tgz`,
      },
    };
    time[version] = new Date(Date.UTC(2021, 0, 1) + i * 1000 + v * 86_400_000).toISOString();
  }
  time.modified = time[latest]!;
  return {
    _id: name,
    name,
    description,
    'dist-tags': { latest },
    versions,
    time,
    readme,
    maintainers,
    license: 'MIT',
  };
}

/** Packuments [from, to) at generation 0. */
export function* smallPackuments(from: number, to: number, seed = 1): Generator<SmallPackument> {
  for (let i = from; i < to; i++) yield smallPackument(i, seed, 0);
}

/** The documents a churn of `fraction` touches on `day` (≥ 1): spread evenly, different each day. */
export function churnedIndexes(n: number, fraction: number, day: number): number[] {
  const k = Math.max(1, Math.round(n * fraction));
  const step = n / k;
  const out: number[] = [];
  for (let j = 0; j < k; j++) out.push(Math.min(n - 1, Math.floor(j * step + ((day * 7919) % step))));
  return [...new Set(out)];
}
