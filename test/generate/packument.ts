/**
 * Packument (package document) and tarball construction for one package of a generated registry.
 *
 * Everything here is a pure function of (seed, package spec): the same spec always yields byte-identical
 * JSON and tarballs, in any thread, in any order.
 */

import { Rng } from './rng.js';
import { buildTarball, type BinaryEntry, type TarFile } from './tarball.js';
import {
  codeSnippet,
  depRange,
  description as makeDescription,
  identifierFor,
  licenseText,
  makeDependency,
  makeScopePool,
  makeUserPool,
  POPULAR_DEPS,
  readme as makeReadme,
  TECH_WORDS,
  type Dependency,
  type User,
} from './text.js';

// ---------------------------------------------------------------------------------------------------------
// Types: the packument shape (subset of a real npm/CouchDB registry document)

export interface PersonField {
  name: string;
  email?: string;
  url?: string;
}

export interface Dist {
  /** `<registry>/<name>/-/<basename>-<version>.tgz` */
  tarball: string;
  /** sha1 hex of the tarball bytes */
  shasum: string;
  /** `sha512-<base64>` of the tarball bytes */
  integrity: string;
  fileCount: number;
  unpackedSize: number;
  signatures?: { keyid: string; sig: string }[];
}

export type JsonValue = string | number | boolean | null | JsonValue[] | { [k: string]: JsonValue };
export type JsonObject = { [k: string]: JsonValue };

/** A version's package.json as found in the tarball (`package/package.json`). */
export interface VersionManifest {
  name: string;
  version: string;
  description: string;
  main: string;
  types?: string;
  scripts: Record<string, string>;
  repository: { type: string; url: string };
  keywords: string[];
  author: PersonField;
  contributors?: PersonField[];
  license: string;
  bugs: { url: string };
  homepage: string;
  dependencies: Record<string, string>;
  devDependencies: Record<string, string>;
  peerDependencies?: Record<string, string>;
  engines?: Record<string, string>;
  files?: string[];
  bin?: Record<string, string>;
  exports?: JsonObject;
  sideEffects?: boolean;
  funding?: { type: string; url: string };
  publishConfig?: Record<string, string>;
  /** tool configuration blocks people keep in package.json (eslintConfig, jest, babel, prettier, …) */
  eslintConfig?: JsonObject;
  jest?: JsonObject;
  babel?: JsonObject;
  prettier?: JsonObject;
  nyc?: JsonObject;
  'lint-staged'?: JsonObject;
  /** old packuments carry each version's readme (published by npm < 5) */
  readme?: string;
  readmeFilename?: string;
}

/** A `versions[v]` entry of a packument. */
export interface PackumentVersion extends VersionManifest {
  gitHead: string;
  _id: string;
  _nodeVersion: string;
  _npmVersion: string;
  dist: Dist;
  _npmUser: PersonField;
  maintainers: PersonField[];
  directories: Record<string, string>;
  _npmOperationalInternal: { host: string; tmp: string };
  _hasShrinkwrap: boolean;
  deprecated?: string;
}

export interface Attachment {
  content_type: string;
  /** base64 of the tarball */
  data: string;
}

export interface Packument {
  _id: string;
  name: string;
  'dist-tags': Record<string, string>;
  versions: Record<string, PackumentVersion>;
  time: Record<string, string>;
  maintainers: PersonField[];
  description: string;
  readme: string;
  readmeFilename: string;
  homepage: string;
  keywords: string[];
  repository: { type: string; url: string };
  author: PersonField;
  bugs: { url: string };
  license: string;
  users?: Record<string, boolean>;
  /** only in attachment mode: the package's tarballs as CouchDB inline attachments */
  _attachments?: Record<string, Attachment>;
}

// ---------------------------------------------------------------------------------------------------------
// Plan types (what a registry is made of, before any bytes exist)

export interface VersionSpec {
  version: string;
  /** publish time, epoch ms */
  time: number;
  /** target size of the tarball in bytes (the real one lands within a few percent) */
  tarballSize: number;
  /** whether this version has a real tarball (see `RegistryOptions.tarballVersions`) */
  tarball: boolean;
}

export interface PackageSpec {
  /** creation order; seeds all of the package's content */
  serial: number;
  name: string;
  /** day the package was created (1 = initial corpus) */
  createdDay: number;
  /** tarballs carried as CouchDB attachments in the packument instead of in the tarball store */
  attachments: boolean;
  /** median tarball size of this package */
  tarballBase: number;
  /** epoch ms of `time.modified` */
  modified: number;
  versions: VersionSpec[];
}

export interface GenContextOptions {
  seed: string;
  registryUrl: string;
  gzipLevel: number;
  scopedFraction: number;
}

/** Shared, seed-derived pools (identical in every thread). */
export interface GenContext {
  opts: GenContextOptions;
  users: User[];
  scopes: string[];
  /** code-like JavaScript snippets, UTF-8 */
  snippets: Buffer[];
}

export function createContext(opts: GenContextOptions): GenContext {
  const users = makeUserPool(Rng.derive(opts.seed, 'users'), 600);
  const scopes = makeScopePool(Rng.derive(opts.seed, 'scopes'), 40);
  const srng = Rng.derive(opts.seed, 'snippets');
  const snippets: Buffer[] = [];
  const prefixes = ['', '', '', '_', 'utils.', 'internal.', '$', 'self.'];
  for (let i = 0; i < 3000; i++)
    snippets.push(Buffer.from(codeSnippet(srng).replaceAll('\u0001', srng.pick(prefixes))));
  return { opts, users, scopes, snippets };
}

// ---------------------------------------------------------------------------------------------------------
// Paths

/** `@scope/name` -> `name`; `name` -> `name`. */
export function basename(name: string): string {
  const i = name.indexOf('/');
  return i < 0 ? name : name.slice(i + 1);
}

/** File name of a packument on disk: `@scope/name` -> `@scope%2fname.json`. */
export function packumentFileName(name: string): string {
  return `${name.replace('/', '%2f')}.json`;
}

/** Path of a tarball inside the tarball store: `<name>/-/<basename>-<version>.tgz`. */
export function tarballPath(name: string, version: string): string {
  return `${name}/-/${basename(name)}-${version}.tgz`;
}

export function tarballFileName(name: string, version: string): string {
  return `${basename(name)}-${version}.tgz`;
}

// ---------------------------------------------------------------------------------------------------------
// Per-package profile: everything that does not change from version to version

const LICENSES = [
  'MIT',
  'MIT',
  'MIT',
  'MIT',
  'MIT',
  'MIT',
  'MIT',
  'ISC',
  'ISC',
  'Apache-2.0',
  'BSD-3-Clause',
  'BSD-2-Clause',
  'MPL-2.0',
  '0BSD',
];
const NPM_KEYID = 'SHA256:jl3bwswu80PjjokCgh0o2w5c2U4LhQAE57gj9cz1kzA';
const SIG_START = Date.UTC(2022, 3, 1);
/** versions published before this carry their own `readme` (older npm clients sent it) */
const LEGACY_README_UNTIL = Date.UTC(2016, 0, 1);

interface Profile {
  name: string;
  ident: string;
  description: string;
  keywords: string[];
  license: string;
  owner: string;
  repository: { type: string; url: string };
  homepage: string;
  bugs: { url: string };
  author: User;
  contributors: User[];
  maintainers: User[];
  readme: string;
  users: Record<string, boolean> | undefined;
  deps: Dependency[];
  devDeps: Dependency[];
  peerDeps: Dependency[];
  main: string;
  types: boolean;
  scripts: Record<string, string>;
  engines: string | undefined;
  files: string[] | undefined;
  binaryKind: 'node' | 'wasm' | 'bundle';
  libFiles: string[];
  /** JSON of the optional package.json blocks (parsed per version: no object is shared between versions) */
  extrasJson: string;
}

function person(u: User, withUrl = false): PersonField {
  return withUrl
    ? { name: u.display, email: u.email, url: `https://${u.login}.example.dev` }
    : { name: u.login, email: u.email };
}

/** Recent profiles per context (a package's day-N rebuild, estimate and build reuse its profile). */
const profileCache = new WeakMap<GenContext, Map<string, Profile>>();

function profile(ctx: GenContext, spec: PackageSpec): Profile {
  const key = `${spec.serial}\u0000${spec.name}`;
  let cache = profileCache.get(ctx);
  if (!cache) profileCache.set(ctx, (cache = new Map()));
  const cached = cache.get(key);
  if (cached) return cached;
  const rng = Rng.derive(ctx.opts.seed, 'profile', spec.serial);
  const name = spec.name;
  const bare = basename(name);
  const ident = identifierFor(name);
  const description = makeDescription(rng, name);
  const keywords: string[] = [];
  for (let i = rng.range(0, 10); i > 0; i--) keywords.push(rng.pickZipf(TECH_WORDS, 0.7));
  const license = rng.pick(LICENSES);
  const author = rng.pickZipf(ctx.users, 0.6);
  const owner = name.startsWith('@') ? name.slice(1, name.indexOf('/')) : author.login.replace(/[._]/g, '-');
  const repo = `https://github.com/${owner}/${bare.replace(/\./g, '-')}`;
  const maintainers = [author];
  for (let i = rng.range(0, 3); i > 0; i--) {
    const u = rng.pickZipf(ctx.users, 0.6);
    if (!maintainers.includes(u)) maintainers.push(u);
  }
  const contributors: User[] = [];
  if (rng.chance(0.4)) for (let i = rng.range(2, 14); i > 0; i--) contributors.push(rng.pick(ctx.users));
  const readmeBytes = Math.min(64 * 1024, Math.max(300, rng.logNormal(3500, 0.9)));
  const readme = makeReadme(rng, name, description, readmeBytes);
  let users: Record<string, boolean> | undefined;
  if (rng.chance(0.3)) {
    users = {};
    for (let i = Math.ceil(rng.logNormal(4, 1.2)); i > 0; i--) users[rng.pick(ctx.users).login] = true;
  }
  const pickDeps = (n: number): Dependency[] => {
    const seen = new Set<string>();
    const out: Dependency[] = [];
    for (let i = 0; i < n * 2 && out.length < n; i++) {
      const d = rng.pickZipf(POPULAR_DEPS, 0.7);
      if (seen.has(d) || d === name) continue;
      seen.add(d);
      out.push(makeDependency(rng, d));
    }
    return out;
  };
  const deps = pickDeps(Math.round(rng.logNormal(4, 0.9)));
  const devDeps = pickDeps(Math.round(rng.logNormal(13, 0.8)));
  const peerDeps = rng.chance(0.15) ? pickDeps(rng.range(1, 3)) : [];
  const main = rng.pick([
    'index.js',
    'index.js',
    'lib/index.js',
    'dist/index.js',
    `dist/${bare.replace(/\.js$/, '')}.cjs`,
  ]);
  const types = rng.chance(0.4);
  const scripts: Record<string, string> = {
    test: rng.pick([
      'mocha',
      'jest',
      'node --test',
      'tap test/*.js',
      'ava',
      'vitest run',
      'echo "Error: no test specified" && exit 1',
    ]),
  };
  if (rng.chance(0.6))
    scripts.build = rng.pick([
      'tsc',
      'rollup -c',
      'babel src -d lib',
      'webpack --mode production',
      'tsup src/index.ts',
    ]);
  if (rng.chance(0.5)) scripts.lint = rng.pick(['eslint .', 'standard', 'xo', 'eslint src --ext .ts']);
  if (rng.chance(0.3)) scripts.prepublishOnly = 'npm run build && npm test';
  if (rng.chance(0.2)) scripts.coverage = 'nyc --reporter=lcov npm test';
  const libFiles: string[] = [];
  for (let i = rng.range(0, 8); i > 0; i--) libFiles.push(`lib/${rng.pick(TECH_WORDS)}.js`);
  const p: Profile = {
    name,
    ident,
    description,
    keywords: [...new Set(keywords)],
    license,
    owner,
    repository: { type: 'git', url: `git+${repo}.git` },
    homepage: `${repo}#readme`,
    bugs: { url: `${repo}/issues` },
    author,
    contributors,
    maintainers,
    readme,
    users,
    deps,
    devDeps,
    peerDeps,
    main,
    types,
    scripts,
    engines: rng.chance(0.5)
      ? rng.pick(['>=0.10.0', '>=4', '>=8', '>=10', '>=12', '>=14', '>=16', '>=18', '^18 || ^20'])
      : undefined,
    files: rng.chance(0.6) ? ['index.js', 'lib', ...(types ? ['index.d.ts'] : [])] : undefined,
    binaryKind: rng.pick(['node', 'wasm', 'bundle'] as const),
    libFiles: [...new Set(libFiles)],
    extrasJson: JSON.stringify(extrasFor(rng, ident, bare, types)),
  };
  if (cache.size > 64) cache.clear();
  cache.set(key, p);
  return p;
}

/** Optional package.json blocks, fixed per package (they repeat in every version entry, like real ones). */
function extrasFor(rng: Rng, ident: string, bare: string, types: boolean): Partial<VersionManifest> {
  const x: Partial<VersionManifest> = {};
  const stem = bare.replace(/\.js$/, '');
  if (rng.chance(0.15)) x.bin = { [stem]: `bin/${stem}.js` };
  if (rng.chance(0.3)) {
    x.exports = {
      '.': types
        ? {
            types: './index.d.ts',
            import: './dist/index.mjs',
            require: './dist/index.cjs',
            default: './dist/index.mjs',
          }
        : { import: './dist/index.mjs', require: './dist/index.cjs' },
      './package.json': './package.json',
    };
    if (rng.chance(0.5))
      x.exports[`./${rng.pick(TECH_WORDS)}`] = { import: './dist/extra.mjs', require: './dist/extra.cjs' };
    x.sideEffects = false;
  }
  if (rng.chance(0.2))
    x.funding = {
      type: rng.pick(['github', 'opencollective', 'individual']),
      url: `https://github.com/sponsors/${ident.toLowerCase()}`,
    };
  if (rng.chance(0.15)) x.publishConfig = { access: 'public', registry: 'https://registry.npmjs.org/' };
  if (rng.chance(0.35)) {
    x.eslintConfig = {
      root: true,
      extends: rng.chance(0.5) ? ['eslint:recommended', 'prettier'] : ['standard'],
      parserOptions: {
        ecmaVersion: rng.pick([2018, 2020, 2022, 'latest']),
        sourceType: rng.pick(['module', 'script']),
      },
      env: { node: true, es6: true, mocha: rng.chance(0.5) },
      rules: {
        'no-console': 'off',
        'no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
        quotes: ['error', 'single'],
        semi: ['error', rng.pick(['always', 'never'])],
      },
    };
  }
  if (rng.chance(0.3)) {
    x.jest = {
      testEnvironment: rng.pick(['node', 'jsdom']),
      collectCoverageFrom: ['src/**/*.{js,ts}', '!src/**/*.d.ts'],
      coverageThreshold: {
        global: {
          branches: rng.range(60, 100),
          functions: rng.range(60, 100),
          lines: rng.range(60, 100),
          statements: rng.range(60, 100),
        },
      },
      testMatch: ['**/__tests__/**/*.[jt]s?(x)', '**/?(*.)+(spec|test).[jt]s?(x)'],
      moduleFileExtensions: ['js', 'json', 'jsx', 'ts', 'tsx', 'node'],
    };
  }
  if (rng.chance(0.2))
    x.babel = {
      presets: [
        ['@babel/preset-env', { targets: { node: rng.pick(['current', '12', '14']) } }],
        '@babel/preset-typescript',
      ],
    };
  if (rng.chance(0.3))
    x.prettier = {
      singleQuote: rng.chance(0.7),
      semi: rng.chance(0.6),
      trailingComma: rng.pick(['es5', 'all', 'none']),
      printWidth: rng.pick([80, 100, 120]),
    };
  if (rng.chance(0.15))
    x.nyc = {
      reporter: ['lcov', 'text-summary'],
      include: ['lib/**/*.js'],
      'check-coverage': true,
      branches: rng.range(70, 100),
    };
  if (rng.chance(0.2))
    x['lint-staged'] = {
      '*.{js,ts,tsx}': ['eslint --fix', 'prettier --write'],
      '*.{json,md,yml}': 'prettier --write',
    };
  return x;
}

// ---------------------------------------------------------------------------------------------------------
// Version manifests

function nodeNpmFor(time: number, rng: Rng): [string, string] {
  const y = new Date(time).getUTCFullYear();
  const table: [number, string[], string[]][] = [
    [2013, ['0.10.26', '0.10.33', '0.8.22'], ['1.3.24', '1.4.28', '1.4.9']],
    [2015, ['0.12.7', '4.2.1', '0.10.40'], ['2.14.7', '2.11.3', '2.7.4']],
    [2017, ['6.9.1', '7.10.0', '4.8.4'], ['3.10.8', '4.2.0', '5.0.3']],
    [2019, ['8.11.3', '10.15.3', '10.13.0'], ['6.4.1', '6.9.0', '5.6.0']],
    [2021, ['12.18.4', '14.15.1', '14.17.0'], ['6.14.6', '6.14.8', '7.20.3']],
    [2023, ['16.17.1', '18.12.1', '16.20.0'], ['8.19.2', '9.5.0', '8.19.4']],
    [9999, ['20.11.1', '18.19.0', '20.17.0', '22.9.0'], ['10.2.4', '10.5.0', '10.8.3']],
  ];
  const row = table.find((r) => y <= r[0])!;
  return [rng.pick(row[1]), rng.pick(row[2])];
}

function depsRecord(deps: readonly Dependency[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const d of deps) out[d.name] = depRange(d);
  return out;
}

/** Mutates the dependency set a little, as a package evolves from one version to the next. */
function drift(rng: Rng, deps: Dependency[], name: string): void {
  if (deps.length && rng.chance(0.25)) {
    const d = deps[rng.int(deps.length)]!;
    const r = rng.next();
    if (r < 0.7) d.patch += rng.range(1, 3);
    else if (r < 0.95) {
      d.minor += 1;
      d.patch = 0;
    } else {
      d.major += 1;
      d.minor = 0;
      d.patch = 0;
    }
  }
  if (rng.chance(0.04)) {
    const n = rng.pickZipf(POPULAR_DEPS, 0.7);
    if (n !== name && !deps.some((d) => d.name === n)) deps.push(makeDependency(rng, n));
  }
  if (deps.length > 1 && rng.chance(0.02)) deps.splice(rng.int(deps.length), 1);
}

interface VersionState {
  deps: Dependency[];
  devDeps: Dependency[];
  description: string;
}

function manifestFor(p: Profile, st: VersionState, v: VersionSpec): VersionManifest {
  const m: VersionManifest = {
    name: p.name,
    version: v.version,
    description: st.description,
    main: p.main,
    scripts: { ...p.scripts },
    repository: { ...p.repository },
    keywords: [...p.keywords],
    author: person(p.author, true),
    license: p.license,
    bugs: { ...p.bugs },
    homepage: p.homepage,
    dependencies: depsRecord(st.deps),
    devDependencies: depsRecord(st.devDeps),
  };
  if (p.types) m.types = 'index.d.ts';
  if (p.contributors.length) m.contributors = p.contributors.map((u) => person(u, true));
  if (p.peerDeps.length) m.peerDependencies = depsRecord(p.peerDeps);
  if (p.engines) m.engines = { node: p.engines };
  if (p.files) m.files = [...p.files];
  if (p.extrasJson !== '{}') Object.assign(m, JSON.parse(p.extrasJson) as Partial<VersionManifest>);
  if (v.time < LEGACY_README_UNTIL) {
    m.readme = p.readme;
    m.readmeFilename = 'README.md';
  }
  return m;
}

// ---------------------------------------------------------------------------------------------------------
// Tarball content

/**
 * Compressed bytes of text content per tarball at most; larger tarballs add a binary entry (a prebuilt
 * `.node`, a `.wasm` or a compressed bundle) of pseudo-random bytes. Deflating text is the slow part of
 * generation (~40 MB/s at level 6), the binary part costs little more than hashing it.
 */
const TEXT_CAP = 48 * 1024;
/** Observed deflate ratio of the generated code text (level 6), used to size text-only tarballs. */
const TEXT_RATIO = 4.6;

const USE_STRICT = Buffer.from("'use strict';\n\n");

function codeText(ctx: GenContext, rng: Rng, bytes: number): Buffer {
  const parts: Buffer[] = [USE_STRICT];
  let n = 0;
  const pool = ctx.snippets;
  while (n < bytes) {
    const s = pool[rng.int(pool.length)]!;
    parts.push(s);
    n += s.length;
  }
  return Buffer.concat(parts);
}

export interface TarballResult {
  data: Buffer;
  shasum: string;
  integrity: string;
  fileCount: number;
  unpackedSize: number;
}

function makeTarball(
  ctx: GenContext,
  p: Profile,
  spec: PackageSpec,
  index: number,
  manifest: VersionManifest,
  scratch: boolean,
): TarballResult {
  const v = spec.versions[index]!;
  const rng = Rng.derive(ctx.opts.seed, 'tgz', spec.serial, index);
  const target = v.tarballSize;
  const textBudget = Math.min(target, TEXT_CAP) * TEXT_RATIO;
  const files: TarFile[] = [];
  const { readme: _readme, readmeFilename: _readmeFilename, ...pj } = manifest;
  const pkgJson = Buffer.from(JSON.stringify(pj, null, 2) + '\n');
  files.push({ path: 'package/package.json', data: pkgJson });
  let used = pkgJson.length;
  if (textBudget > 4096 || rng.chance(0.8)) {
    const rd = Buffer.from(p.readme);
    files.push({ path: 'package/README.md', data: rd });
    used += rd.length;
  }
  const year = new Date(v.time).getUTCFullYear();
  const lic = Buffer.from(licenseText(p.license, year, p.author.display));
  files.push({ path: 'package/LICENSE', data: lic });
  used += lic.length;
  const code = Math.max(400, textBudget - used);
  const libs = code > 8000 ? p.libFiles : [];
  const share = code / (libs.length + 1);
  const main = p.main.endsWith('.cjs') ? p.main : 'index.js';
  files.push({ path: `package/${main}`, data: codeText(ctx, rng, share) });
  for (const lib of libs) files.push({ path: `package/${lib}`, data: codeText(ctx, rng, share) });
  if (p.types) {
    files.push({
      path: 'package/index.d.ts',
      data: Buffer.from(
        `export declare function ${p.ident}(input: unknown, options?: Record<string, unknown>): unknown;\nexport default ${p.ident};\n`,
      ),
    });
  }
  let binary: BinaryEntry | undefined;
  if (target > TEXT_CAP * 1.15) {
    const stem = basename(p.name).replace(/\.js$/, '');
    const kind = p.binaryKind;
    binary = {
      path:
        kind === 'node'
          ? `package/prebuilds/linux-x64/${stem}.node`
          : kind === 'wasm'
            ? `package/dist/${stem}.wasm`
            : `package/dist/${stem}.min.js.br`,
      size: 0,
      seed: [ctx.opts.seed, 'bin', spec.serial, index],
      magic:
        kind === 'node'
          ? Buffer.from([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0])
          : kind === 'wasm'
            ? Buffer.from([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0])
            : undefined,
    };
  }
  return buildTarball(files, binary, { level: ctx.opts.gzipLevel, targetSize: target, scratch });
}

// ---------------------------------------------------------------------------------------------------------
// Packument

export interface BuiltTarball {
  name: string;
  version: string;
  /** path inside the tarball store, `<name>/-/<basename>-<version>.tgz` */
  path: string;
  data: Buffer;
  shasum: string;
  integrity: string;
  /** carried as a CouchDB attachment of the packument rather than stored in the tarball store */
  attachment: boolean;
  /** index into the package's `versions` (creation order) */
  versionIndex: number;
}

export interface BuildOptions {
  /** called with each real tarball as soon as it is built */
  onTarball?: (t: BuiltTarball) => void;
  /**
   * `onTarball` consumes `data` before returning (e.g. writes it): tarballs are then built in a reused
   * buffer, and `data` must not be kept after the callback returns.
   */
  ephemeralTarballs?: boolean;
}

/**
 * Builds a package's packument, generating every real tarball (needed for `dist.shasum`/`integrity`).
 * Versions without a real tarball get well-formed dist fields with pseudo-random digests.
 */
export function buildPackument(ctx: GenContext, spec: PackageSpec, bopts: BuildOptions = {}): Packument {
  const p = profile(ctx, spec);
  const registry = ctx.opts.registryUrl.replace(/\/+$/, '');
  const st: VersionState = {
    deps: p.deps.map((d) => ({ ...d })),
    devDeps: p.devDeps.map((d) => ({ ...d })),
    description: p.description,
  };
  const versions: Record<string, PackumentVersion> = {};
  const time: Record<string, string> = {
    created: new Date(spec.versions[0]!.time).toISOString(),
    modified: new Date(spec.modified).toISOString(),
  };
  const attachments: Record<string, Attachment> = {};
  const maintainers = p.maintainers.map((u) => person(u));
  for (let i = 0; i < spec.versions.length; i++) {
    const v = spec.versions[i]!;
    const rng = Rng.derive(ctx.opts.seed, 'ver', spec.serial, i);
    if (i > 0) {
      drift(rng, st.deps, p.name);
      drift(rng, st.devDeps, p.name);
      if (rng.chance(0.01)) st.description = makeDescription(rng, p.name);
    }
    const manifest = manifestFor(p, st, v);
    const [nodeV, npmV] = nodeNpmFor(v.time, rng);
    const gitHead = rng.hex(20);
    const publisher = rng.pick(p.maintainers);
    let dist: Dist;
    const url = `${registry}/${tarballPath(p.name, v.version)}`;
    if (v.tarball) {
      const t = makeTarball(ctx, p, spec, i, manifest, bopts.ephemeralTarballs === true);
      dist = {
        integrity: t.integrity,
        shasum: t.shasum,
        tarball: url,
        fileCount: t.fileCount,
        unpackedSize: t.unpackedSize,
      };
      if (spec.attachments) {
        attachments[tarballFileName(p.name, v.version)] = {
          content_type: 'application/octet-stream',
          data: t.data.toString('base64'),
        };
      }
      bopts.onTarball?.({
        name: p.name,
        version: v.version,
        path: tarballPath(p.name, v.version),
        data: t.data,
        shasum: t.shasum,
        integrity: t.integrity,
        attachment: spec.attachments,
        versionIndex: i,
      });
    } else {
      const fake = Rng.derive(ctx.opts.seed, 'fakedist', spec.serial, i);
      const unpacked = Math.round(v.tarballSize * (3 + fake.next() * 2));
      dist = {
        integrity: `sha512-${fake.bytes(64).toString('base64')}`,
        shasum: fake.hex(20),
        tarball: url,
        fileCount: 4 + p.libFiles.length + (p.types ? 1 : 0) + (v.tarballSize > TEXT_CAP * 1.15 ? 1 : 0),
        unpackedSize: unpacked,
      };
    }
    if (v.time >= SIG_START) {
      dist.signatures = [{ keyid: NPM_KEYID, sig: `MEUCI${rng.bytes(66).toString('base64')}` }];
    }
    versions[v.version] = {
      ...manifest,
      gitHead,
      _id: `${p.name}@${v.version}`,
      _nodeVersion: nodeV,
      _npmVersion: npmV,
      dist,
      _npmUser: person(publisher),
      maintainers: maintainers.map((m) => ({ ...m })),
      directories: {},
      _npmOperationalInternal: {
        host: 's3://npm-registry-packages',
        tmp: `tmp/${basename(p.name)}_${v.version}_${v.time}_0.${rng.u32().toString().padStart(10, '0')}`,
      },
      _hasShrinkwrap: false,
    };
    time[v.version] = new Date(v.time).toISOString();
  }
  const pk: Packument = {
    _id: p.name,
    name: p.name,
    'dist-tags': distTags(spec.versions),
    versions,
    time,
    maintainers,
    description: p.description,
    readme: p.readme,
    readmeFilename: 'README.md',
    homepage: p.homepage,
    keywords: [...p.keywords],
    repository: { ...p.repository },
    author: person(p.author, true),
    bugs: { ...p.bugs },
    license: p.license,
  };
  if (p.users) pk.users = { ...p.users };
  if (spec.attachments) pk._attachments = attachments;
  return pk;
}

export function isPrerelease(version: string): boolean {
  return version.includes('-');
}

export function distTags(versions: readonly VersionSpec[]): Record<string, string> {
  let latest: string | undefined;
  let next: string | undefined;
  for (const v of versions) {
    if (isPrerelease(v.version)) next = v.version;
    else {
      latest = v.version;
      next = undefined;
    }
  }
  const tags: Record<string, string> = { latest: latest ?? versions[versions.length - 1]!.version };
  if (next) tags.next = next;
  return tags;
}

/** Rough size of a packument's JSON without building it all: one version entry times the count. */
export function estimatePackumentBytes(ctx: GenContext, spec: PackageSpec): number {
  const p = profile(ctx, spec);
  const st: VersionState = { deps: p.deps, devDeps: p.devDeps, description: p.description };
  const last = spec.versions[spec.versions.length - 1]!;
  const m = manifestFor(p, st, { ...last, time: Math.max(last.time, LEGACY_README_UNTIL) });
  const readmeBytes = Buffer.byteLength(JSON.stringify(p.readme));
  // version entry: manifest + underscore fields and dist (~600 B) + maintainers + time entry
  const entry =
    Buffer.byteLength(JSON.stringify(m)) +
    800 +
    JSON.stringify(p.maintainers.map((u) => person(u))).length +
    40;
  let extra = 0;
  for (const v of spec.versions) {
    if (v.time >= SIG_START) extra += 180;
    if (v.time < LEGACY_README_UNTIL) extra += readmeBytes + 40;
  }
  return readmeBytes + 1200 + entry * spec.versions.length + extra;
}
