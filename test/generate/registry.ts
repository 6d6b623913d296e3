/**
 * A deterministic generator of realistic npm-style registries, for benchmarks, tests and the demo.
 *
 * - `planRegistry(opts)` decides what exists (names, versions, publish times, tarball sizes) — cheap.
 * - `generateRegistry(opts)` yields each package's packument and tarballs in memory (no files).
 * - `writeRegistry(opts)` writes `<out>/packuments/<name>.json` and `<out>/tarballs/<name>/-/<base>-<v>.tgz`
 *   (the tarball store layout), in worker threads, plus `<out>/generator.json` (options, day, stats).
 * - `generateChanges(opts, day)` / `mutateRegistry({out, day})` produce "day N" from "day N-1": ~2% of
 *   packages publish a new version, a few packages are created, `unpublishPerDay` are unpublished.
 *
 * Everything is a pure function of the options (seed included) and the day number: two runs give
 * byte-identical corpora, and day N written directly equals day 1 mutated N-1 times.
 */

import {
  mkdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
  existsSync,
  readdirSync,
  rmdirSync,
} from 'node:fs';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { Rng } from './rng.js';
import { makePackageName } from './text.js';
import {
  buildPackument,
  createContext,
  estimatePackumentBytes,
  packumentFileName,
  tarballPath,
  type BuiltTarball,
  type GenContext,
  type GenContextOptions,
  type PackageSpec,
  type Packument,
  type VersionSpec,
} from './packument.js';

export {
  basename,
  packumentFileName,
  tarballPath,
  tarballFileName,
  buildPackument,
  createContext,
  type Attachment,
  type BuiltTarball,
  type Dist,
  type GenContext,
  type PackageSpec,
  type Packument,
  type PackumentVersion,
  type PersonField,
  type VersionManifest,
  type VersionSpec,
} from './packument.js';
export { buildTarball, ustarHeader, NPM_MTIME } from './tarball.js';
export { Rng } from './rng.js';

// ---------------------------------------------------------------------------------------------------------
// Options

export interface RegistryOptions {
  /** seed of everything (default 1) */
  seed?: number | string;
  /** number of packages on day 1 (default 100 when `targetBytes` is not given either) */
  packages?: number;
  /**
   * approximate total bytes of day 1 (packument JSON + tarballs). Without `packages`, packages are added
   * until their JSON reaches `jsonFraction` of this; tarballs fill the rest (see `tarballVersions`).
   */
  targetBytes?: number;
  /** share of `targetBytes` that is packument JSON (default 0.23, like a real registry) */
  jsonFraction?: number;
  /** median number of versions per package (log-normal; default 36) */
  versionsMedian?: number;
  /** sigma of the log-normal number of versions (default 1.9: p90 ~11x the median) */
  versionsSigma?: number;
  /** cap on versions per package; default 5000, or targetBytes/256KiB (100..5000) when targetBytes is set */
  maxVersionsPerPackage?: number;
  /**
   * How many versions of each package get a real tarball: the newest N (older ones are "historical":
   * their `dist` fields are well-formed — tarball URL, 40-hex `shasum`, `sha512-` `integrity`, fileCount,
   * unpackedSize — but the digests are pseudo-random and no tarball file exists, like a partial mirror).
   * Default: with `targetBytes`, chosen per package so tarballs fill `(1 - jsonFraction)` of the target
   * (every package's newest version first, then the second newest, …); without it, 1. Versions published
   * by a later day always get a real tarball.
   */
  tarballVersions?: number;
  /** median tarball size (default 48 KB) */
  tarballMedian?: number;
  /** sigma of the log-normal tarball size (default 2.45: p90 ~0.9 MB of the tarballs written, with the default median) */
  tarballSigma?: number;
  /** cap on one tarball; default 44 MiB, or targetBytes/40 (64 KiB..44 MiB) when targetBytes is set */
  maxTarballBytes?: number;
  /**
   * fraction (0..1) of packages that carry their real tarballs as CouchDB attachments
   * (`_attachments: {"<base>-<v>.tgz": {content_type, data: <base64>}}`) instead of in the tarball
   * store, as the registry once did; their tarballs are not written under `tarballs/` (default 0)
   */
  attachments?: number;
  /** registry URL in `dist.tarball` (default https://registry.npmjs.org) */
  registryUrl?: string;
  /** fraction of `@scope/name` packages (default 0.15) */
  scopedFraction?: number;
  /** zlib level of tarballs' text entries (default 6; npm itself uses 9) */
  gzipLevel?: number;
  /** per later day: probability that a package publishes a new version (default 0.02) */
  dailyUpdateFraction?: number;
  /** per later day: packages created (default max(1, round(0.5% of packages))) */
  dailyNewPackages?: number;
  /** per later day: packages unpublished, i.e. their document deleted and tarballs removed (default 1) */
  unpublishPerDay?: number;
}

export interface ResolvedOptions {
  seed: string;
  packages: number | null;
  targetBytes: number | null;
  jsonFraction: number;
  versionsMedian: number;
  versionsSigma: number;
  maxVersionsPerPackage: number;
  tarballVersions: number | null;
  tarballMedian: number;
  tarballSigma: number;
  maxTarballBytes: number;
  attachments: number;
  registryUrl: string;
  scopedFraction: number;
  gzipLevel: number;
  dailyUpdateFraction: number;
  dailyNewPackages: number | null;
  unpublishPerDay: number;
}

const clamp = (v: number, lo: number, hi: number): number => Math.min(hi, Math.max(lo, v));

export function resolveOptions(o: RegistryOptions | ResolvedOptions): ResolvedOptions {
  const target = o.targetBytes ?? null;
  const r: ResolvedOptions = {
    seed: String(o.seed ?? 1),
    packages: o.packages ?? null,
    targetBytes: target,
    jsonFraction: o.jsonFraction ?? 0.23,
    versionsMedian: o.versionsMedian ?? 36,
    versionsSigma: o.versionsSigma ?? 1.9,
    maxVersionsPerPackage:
      o.maxVersionsPerPackage ?? (target ? Math.round(clamp(target / (256 * 1024), 100, 5000)) : 5000),
    tarballVersions: o.tarballVersions ?? null,
    tarballMedian: o.tarballMedian ?? 48_000,
    tarballSigma: o.tarballSigma ?? 2.45,
    maxTarballBytes:
      o.maxTarballBytes ??
      (target ? Math.round(clamp(target / 40, 64 * 1024, 44 * 1024 * 1024)) : 44 * 1024 * 1024),
    attachments: o.attachments ?? 0,
    registryUrl: o.registryUrl ?? 'https://registry.npmjs.org',
    scopedFraction: o.scopedFraction ?? 0.15,
    gzipLevel: o.gzipLevel ?? 6,
    dailyUpdateFraction: o.dailyUpdateFraction ?? 0.02,
    dailyNewPackages: o.dailyNewPackages ?? null,
    unpublishPerDay: o.unpublishPerDay ?? 1,
  };
  if (r.packages === null && r.targetBytes === null) r.packages = 100;
  if (r.packages !== null && (!Number.isInteger(r.packages) || r.packages < 1))
    throw new Error('packages must be a positive integer');
  if (r.targetBytes !== null && !(r.targetBytes > 0)) throw new Error('targetBytes must be positive');
  if (r.attachments < 0 || r.attachments > 1) throw new Error('attachments must be a fraction in 0..1');
  if (r.maxTarballBytes < 1024) throw new Error('maxTarballBytes must be at least 1024');
  return r;
}

function contextOptions(o: ResolvedOptions): GenContextOptions {
  return {
    seed: o.seed,
    registryUrl: o.registryUrl,
    gzipLevel: o.gzipLevel,
    scopedFraction: o.scopedFraction,
  };
}

// ---------------------------------------------------------------------------------------------------------
// Plan

/** Day 1 is 2025-06-01 (UTC); everything published on day 1 predates it, day N adds versions on that date. */
export const DAY1 = Date.UTC(2025, 5, 1);
const DAY = 86_400_000;
const EPOCH = Date.UTC(2011, 0, 1);
const MIN_TARBALL = 700;

export interface RegistryPlan {
  options: ResolvedOptions;
  day: number;
  /** live packages, in creation order */
  packages: PackageSpec[];
  nextSerial: number;
  /** every name ever used (unpublished names are not reused) */
  usedNames: Set<string>;
  /** estimated JSON bytes of the day-1 packuments */
  estimatedJsonBytes: number;
  /** planned day-1 tarball bytes (targets; real sizes are within a few percent) */
  plannedTarballBytes: number;
}

interface SemVer {
  major: number;
  minor: number;
  patch: number;
  pre: { tag: string; n: number; target: [number, number, number] } | null;
}

function fmt(v: SemVer): string {
  return v.pre ? `${v.pre.target.join('.')}-${v.pre.tag}.${v.pre.n}` : `${v.major}.${v.minor}.${v.patch}`;
}

function parseSemVer(s: string): SemVer {
  const m = /^(\d+)\.(\d+)\.(\d+)(?:-([a-z]+)\.(\d+))?$/.exec(s);
  if (!m) throw new Error(`unexpected version ${s}`);
  const [major, minor, patch] = [Number(m[1]), Number(m[2]), Number(m[3])];
  if (m[4])
    return {
      major: 0,
      minor: 0,
      patch: 0,
      pre: { tag: m[4], n: Number(m[5]), target: [major, minor, patch] },
    };
  return { major, minor, patch, pre: null };
}

/** The next version after `v`: mostly patches, some minors, few majors, occasional prerelease runs. */
function bump(rng: Rng, v: SemVer, allowPre: boolean): SemVer {
  if (v.pre) {
    if (allowPre && rng.chance(0.55)) return { ...v, pre: { ...v.pre, n: v.pre.n + 1 } };
    const [major, minor, patch] = v.pre.target;
    return { major, minor, patch, pre: null };
  }
  const r = rng.next();
  let next: SemVer;
  if (r < 0.78) next = { major: v.major, minor: v.minor, patch: v.patch + 1, pre: null };
  else if (r < 0.96) next = { major: v.major, minor: v.minor + 1, patch: 0, pre: null };
  else next = { major: v.major + 1, minor: 0, patch: 0, pre: null };
  if (allowPre && rng.chance(0.03)) {
    return {
      ...v,
      pre: {
        tag: rng.pick(['alpha', 'beta', 'rc', 'next']),
        n: 0,
        target: [next.major, next.minor, next.patch],
      },
    };
  }
  return next;
}

function tarballSizeFor(rng: Rng, o: ResolvedOptions, base: number, i: number, n: number): number {
  const growth = n > 1 ? 0.6 + (0.4 * (i + 1)) / n : 1;
  return Math.round(clamp(base * growth * Math.exp(0.15 * rng.normal()), MIN_TARBALL, o.maxTarballBytes));
}

function uniqueName(o: ResolvedOptions, ctx: GenContext, used: Set<string>, serial: number): string {
  for (let attempt = 0; ; attempt++) {
    let name = makePackageName(Rng.derive(o.seed, 'name', serial, attempt), ctx.scopes, o.scopedFraction);
    if (attempt >= 8) name = `${name}-${serial}`;
    if (!used.has(name)) {
      used.add(name);
      return name;
    }
  }
}

function planPackage(
  o: ResolvedOptions,
  ctx: GenContext,
  plan: RegistryPlan,
  createdDay: number,
): PackageSpec {
  const serial = plan.nextSerial++;
  const name = uniqueName(o, ctx, plan.usedNames, serial);
  const rng = Rng.derive(o.seed, 'plan', serial);
  const base = clamp(rng.logNormal(o.tarballMedian, o.tarballSigma), MIN_TARBALL, o.maxTarballBytes);
  const attachments = Rng.derive(o.seed, 'attachments', serial).chance(o.attachments);
  let n: number;
  let created: number;
  let last: number;
  if (createdDay === 1) {
    n = Math.round(clamp(rng.logNormal(o.versionsMedian, o.versionsSigma), 1, o.maxVersionsPerPackage));
    created = EPOCH + rng.next() * (DAY1 - 30 * DAY - EPOCH);
    // an active span: some packages are still maintained, many were abandoned years ago
    last = n === 1 ? created : created + (DAY1 - DAY - created) * (0.15 + 0.85 * Math.sqrt(rng.next()));
  } else {
    n = rng.chance(0.7) ? 1 : rng.range(2, 3);
    const dayStart = DAY1 + (createdDay - 1) * DAY;
    created = dayStart + rng.next() * DAY * 0.8;
    last = created + (n - 1) * rng.next() * DAY * 0.05;
  }
  created = Math.floor(created);
  // publish times: exponential gaps scaled into [created, last]
  const gaps: number[] = [];
  let sum = 0;
  for (let i = 1; i < n; i++) {
    const g = rng.exponential(1);
    gaps.push(g);
    sum += g;
  }
  const span = Math.max(0, last - created - n * 1000);
  const versions: VersionSpec[] = [];
  let t = created;
  const r0 = rng.next();
  let sv: SemVer = r0 < 0.35 ? parseSemVer('1.0.0') : r0 < 0.75 ? parseSemVer('0.1.0') : parseSemVer('0.0.1');
  for (let i = 0; i < n; i++) {
    if (i > 0) {
      t += 1000 + Math.floor(sum > 0 ? (span * gaps[i - 1]!) / sum : 0);
      sv = bump(rng, sv, i < n - 1);
    }
    versions.push({
      version: fmt(sv),
      time: t,
      tarballSize: tarballSizeFor(rng, o, base, i, n),
      tarball: createdDay > 1,
    });
  }
  const modifiedLimit = createdDay === 1 ? DAY1 - 1000 : DAY1 + createdDay * DAY - 1000;
  const modified = Math.floor(Math.min(modifiedLimit, t + rng.next() * 3 * DAY));
  return { serial, name, createdDay, attachments, tarballBase: Math.round(base), modified, versions };
}

/** Decides the day-1 registry (no bytes are generated). */
export function planRegistry(opts: RegistryOptions | ResolvedOptions, ctx?: GenContext): RegistryPlan {
  const o = resolveOptions(opts);
  const c = ctx ?? createContext(contextOptions(o));
  const plan: RegistryPlan = {
    options: o,
    day: 1,
    packages: [],
    nextSerial: 0,
    usedNames: new Set(),
    estimatedJsonBytes: 0,
    plannedTarballBytes: 0,
  };
  const jsonBudget = o.targetBytes !== null ? o.targetBytes * o.jsonFraction : 0;
  for (;;) {
    if (o.packages !== null ? plan.packages.length >= o.packages : plan.estimatedJsonBytes >= jsonBudget)
      break;
    const spec = planPackage(o, c, plan, 1);
    plan.packages.push(spec);
    plan.estimatedJsonBytes += estimatePackumentBytes(c, spec);
  }
  let spent = 0;
  const mark = (v: VersionSpec): void => {
    v.tarball = true;
    spent += v.tarballSize;
  };
  if (o.tarballVersions !== null || o.targetBytes === null) {
    const k = o.tarballVersions ?? 1;
    for (const p of plan.packages)
      for (let i = Math.max(0, p.versions.length - k); i < p.versions.length; i++) mark(p.versions[i]!);
  } else {
    const budget = o.targetBytes - plan.estimatedJsonBytes;
    for (const p of plan.packages) mark(p.versions[p.versions.length - 1]!);
    outer: for (let r = 1; spent < budget; r++) {
      let any = false;
      for (const p of plan.packages) {
        const i = p.versions.length - 1 - r;
        if (i < 0) continue;
        any = true;
        mark(p.versions[i]!);
        if (spent >= budget) break outer;
      }
      if (!any) break;
    }
  }
  plan.plannedTarballBytes = spent;
  return plan;
}

/** What changed from day N-1 to day N. */
export interface DayDelta {
  day: number;
  /** packages that published a new version, with their version count before */
  updated: { spec: PackageSpec; previousVersions: number }[];
  created: PackageSpec[];
  /** removed from the plan (their last state) */
  unpublished: PackageSpec[];
}

/** Advances `plan` by one day (plan.day + 1), in place; returns what changed. */
export function advancePlan(plan: RegistryPlan, ctx?: GenContext): DayDelta {
  const o = plan.options;
  const c = ctx ?? createContext(contextOptions(o));
  const day = plan.day + 1;
  const rng = Rng.derive(o.seed, 'day', day);
  const dayStart = DAY1 + (day - 1) * DAY;
  const delta: DayDelta = { day, updated: [], created: [], unpublished: [] };

  const chosen: PackageSpec[] = plan.packages.filter(() => rng.chance(o.dailyUpdateFraction));
  if (chosen.length === 0 && plan.packages.length > 0) chosen.push(rng.pick(plan.packages));
  for (const spec of chosen) {
    const last = spec.versions[spec.versions.length - 1]!;
    const sv = bump(rng, parseSemVer(last.version), false);
    const time = Math.floor(Math.max(last.time + 1000, dayStart + rng.next() * DAY * 0.95));
    const version: VersionSpec = {
      version: fmt(sv),
      time,
      tarballSize: tarballSizeFor(rng, o, spec.tarballBase, 1, 1),
      tarball: true,
    };
    delta.updated.push({ spec, previousVersions: spec.versions.length });
    spec.versions.push(version);
    spec.modified = time;
  }

  const candidates = plan.packages.filter((p) => !chosen.includes(p) && p.createdDay < day);
  for (let i = 0; i < o.unpublishPerDay && candidates.length > 0; i++) {
    const victim = candidates.splice(rng.int(candidates.length), 1)[0]!;
    delta.unpublished.push(victim);
  }
  if (delta.unpublished.length) plan.packages = plan.packages.filter((p) => !delta.unpublished.includes(p));

  const creates = o.dailyNewPackages ?? Math.max(1, Math.round(plan.packages.length * 0.005));
  for (let i = 0; i < creates; i++) {
    const spec = planPackage(o, c, plan, day);
    plan.packages.push(spec);
    delta.created.push(spec);
  }
  plan.day = day;
  return delta;
}

/** The plan of day `day` (1 = initial corpus), and the delta that led to it (null on day 1). */
export function planDay(
  opts: RegistryOptions | ResolvedOptions,
  day: number,
  ctx?: GenContext,
): { plan: RegistryPlan; delta: DayDelta | null; ctx: GenContext } {
  if (!Number.isInteger(day) || day < 1) throw new Error('day must be an integer >= 1');
  const o = resolveOptions(opts);
  const c = ctx ?? createContext(contextOptions(o));
  const plan = planRegistry(o, c);
  let delta: DayDelta | null = null;
  while (plan.day < day) delta = advancePlan(plan, c);
  return { plan, delta, ctx: c };
}

// ---------------------------------------------------------------------------------------------------------
// In-memory generation

export interface GeneratedPackage {
  name: string;
  packument: Packument;
  /** the package's real tarballs (including attachment ones, flagged `attachment: true`) */
  tarballs: BuiltTarball[];
}

export interface GenerateOptions extends RegistryOptions {
  /** which day's state to generate (default 1) */
  day?: number;
}

/** Yields every package of the registry (on `day`) with its packument and real tarballs; writes nothing. */
export function* generateRegistry(opts: GenerateOptions = {}): Generator<GeneratedPackage> {
  const { plan, ctx } = planDay(opts, opts.day ?? 1);
  for (const spec of plan.packages) yield generatePackage(ctx, spec);
}

/** Packument and real tarballs of one planned package. */
export function generatePackage(ctx: GenContext, spec: PackageSpec): GeneratedPackage {
  const tarballs: BuiltTarball[] = [];
  const packument = buildPackument(ctx, spec, { onTarball: (t) => tarballs.push(t) });
  return { name: spec.name, packument, tarballs };
}

/** Only the packuments. */
export function* generatePackuments(opts: GenerateOptions = {}): Generator<Packument> {
  const { plan, ctx } = planDay(opts, opts.day ?? 1);
  for (const spec of plan.packages) yield buildPackument(ctx, spec);
}

export interface RegistryChange {
  type: 'create' | 'update' | 'delete';
  name: string;
  /** the new document (create/update) */
  packument?: Packument;
  /** tarballs published that day (attachment ones flagged) */
  newTarballs: BuiltTarball[];
  /** store paths of tarballs removed (delete) */
  removedTarballs: string[];
}

/** The changes that turn day `day - 1` into day `day` (day >= 2). */
export function* generateChanges(
  opts: RegistryOptions | ResolvedOptions,
  day: number,
): Generator<RegistryChange> {
  if (day < 2) throw new Error('changes exist from day 2 on');
  const { delta, ctx } = planDay(opts, day);
  yield* changesOf(ctx, delta!);
}

function* changesOf(ctx: GenContext, delta: DayDelta): Generator<RegistryChange> {
  for (const u of delta.updated) {
    const newTarballs: BuiltTarball[] = [];
    const packument = buildPackument(ctx, u.spec, {
      onTarball: (t) => {
        if (t.versionIndex >= u.previousVersions) newTarballs.push(t);
      },
    });
    yield { type: 'update', name: u.spec.name, packument, newTarballs, removedTarballs: [] };
  }
  for (const spec of delta.unpublished) {
    const removed = spec.versions
      .filter((v) => v.tarball && !spec.attachments)
      .map((v) => tarballPath(spec.name, v.version));
    yield { type: 'delete', name: spec.name, newTarballs: [], removedTarballs: removed };
  }
  for (const spec of delta.created) {
    const g = generatePackage(ctx, spec);
    yield {
      type: 'create',
      name: spec.name,
      packument: g.packument,
      newTarballs: g.tarballs,
      removedTarballs: [],
    };
  }
}

// ---------------------------------------------------------------------------------------------------------
// On disk

export const MANIFEST_FILE = 'generator.json';

export interface RegistryStats {
  day: number;
  packages: number;
  scopedPackages: number;
  versions: number;
  /** bytes of the packument files (including inline attachments in attachment mode) */
  packumentBytes: number;
  largestPackumentBytes: number;
  /** tarball files in the store */
  tarballs: number;
  tarballBytes: number;
  largestTarballBytes: number;
  /** tarballs carried as attachments inside packuments (not in the store) */
  attachmentTarballs: number;
  attachmentBytes: number;
  ms: number;
}

export interface PackageWriteStats {
  name: string;
  versions: number;
  packumentBytes: number;
  tarballs: number;
  tarballBytes: number;
  largestTarballBytes: number;
  attachmentTarballs: number;
  attachmentBytes: number;
}

function writeAtomic(path: string, data: Buffer | string): void {
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, data);
  renameSync(tmp, path);
}

/**
 * Writes one package: its packument, and its tarballs from version index `newFrom` on (all by default).
 * Files are written to a temporary name and renamed, so a hard-linked copy of a corpus is never changed.
 */
export function writePackage(
  ctx: GenContext,
  spec: PackageSpec,
  out: string,
  newFrom = 0,
): PackageWriteStats {
  const st: PackageWriteStats = {
    name: spec.name,
    versions: spec.versions.length,
    packumentBytes: 0,
    tarballs: 0,
    tarballBytes: 0,
    largestTarballBytes: 0,
    attachmentTarballs: 0,
    attachmentBytes: 0,
  };
  const pk = buildPackument(ctx, spec, {
    ephemeralTarballs: true,
    onTarball: (t) => {
      if (t.versionIndex < newFrom) return;
      if (t.attachment) {
        st.attachmentTarballs++;
        st.attachmentBytes += t.data.length;
        return;
      }
      const file = join(out, 'tarballs', t.path);
      mkdirSync(dirname(file), { recursive: true });
      writeAtomic(file, t.data);
      st.tarballs++;
      st.tarballBytes += t.data.length;
      st.largestTarballBytes = Math.max(st.largestTarballBytes, t.data.length);
    },
  });
  const json = Buffer.from(JSON.stringify(pk));
  writeAtomic(join(out, 'packuments', packumentFileName(spec.name)), json);
  st.packumentBytes = json.length;
  return st;
}

export interface WriteRegistryOptions extends RegistryOptions {
  /** output directory (created); must be empty or absent unless `overwrite` */
  out: string;
  /** write the state of this day directly (default 1) */
  day?: number;
  /** worker threads (default: available cores, at most 8); 0 = generate in the calling thread */
  concurrency?: number;
  /** remove an existing corpus in `out` first */
  overwrite?: boolean;
  onProgress?: (done: number, total: number) => void;
}

interface ManifestFile {
  generator: 'regbackup-bench-registry';
  format: 1;
  options: ResolvedOptions;
  day: number;
  stats: RegistryStats;
  history: DayChangeSummary[];
}

function emptyStats(day: number): RegistryStats {
  return {
    day,
    packages: 0,
    scopedPackages: 0,
    versions: 0,
    packumentBytes: 0,
    largestPackumentBytes: 0,
    tarballs: 0,
    tarballBytes: 0,
    largestTarballBytes: 0,
    attachmentTarballs: 0,
    attachmentBytes: 0,
    ms: 0,
  };
}

function addPackageStats(s: RegistryStats, p: PackageWriteStats): void {
  s.packages++;
  if (p.name.startsWith('@')) s.scopedPackages++;
  s.versions += p.versions;
  s.packumentBytes += p.packumentBytes;
  s.largestPackumentBytes = Math.max(s.largestPackumentBytes, p.packumentBytes);
  s.tarballs += p.tarballs;
  s.tarballBytes += p.tarballBytes;
  s.largestTarballBytes = Math.max(s.largestTarballBytes, p.largestTarballBytes);
  s.attachmentTarballs += p.attachmentTarballs;
  s.attachmentBytes += p.attachmentBytes;
}

interface WorkerJob {
  id: number;
  spec: PackageSpec;
  newFrom: number;
}
type WorkerReply =
  { id: number; ok: true; stats: PackageWriteStats } | { id: number; ok: false; error: string };

/** Runs writePackage for many packages on a pool of worker threads (or inline with concurrency 0). */
async function writePackages(
  o: ResolvedOptions,
  ctx: GenContext,
  out: string,
  jobs: { spec: PackageSpec; newFrom: number }[],
  concurrency: number,
  onDone: (s: PackageWriteStats) => void,
): Promise<void> {
  if (concurrency <= 0 || jobs.length < 4) {
    for (const j of jobs) onDone(writePackage(ctx, j.spec, out, j.newFrom));
    return;
  }
  // biggest first, so the last jobs are short
  const cost = (j: { spec: PackageSpec; newFrom: number }): number => {
    let c = j.spec.versions.length * 3000;
    for (let i = j.newFrom; i < j.spec.versions.length; i++)
      if (j.spec.versions[i]!.tarball) c += j.spec.versions[i]!.tarballSize;
    if (j.spec.attachments) c *= 2;
    return c;
  };
  const queue: WorkerJob[] = jobs
    .map((j, id) => ({ id, spec: j.spec, newFrom: j.newFrom, c: cost(j) }))
    .sort((a, b) => b.c - a.c)
    .map(({ id, spec, newFrom }) => ({ id, spec, newFrom }));
  const n = Math.min(concurrency, queue.length);
  const workers: Worker[] = [];
  try {
    await new Promise<void>((resolve, reject) => {
      let running = 0;
      let failed = false;
      const feed = (w: Worker): void => {
        const job = queue.shift();
        if (!job) {
          if (--running === 0) resolve();
          return;
        }
        w.postMessage(job);
      };
      for (let i = 0; i < n; i++) {
        const w = new Worker(new URL('./worker.js', import.meta.url), {
          workerData: { ctx: contextOptions(o), out },
        });
        workers.push(w);
        running++;
        w.on('message', (m: WorkerReply) => {
          if (failed) return;
          if (!m.ok) {
            failed = true;
            reject(new Error(`generating a package failed: ${m.error}`));
            return;
          }
          onDone(m.stats);
          feed(w);
        });
        w.on('error', (e) => {
          failed = true;
          reject(e);
        });
        feed(w);
      }
    });
  } finally {
    await Promise.all(workers.map((w) => w.terminate()));
  }
}

function readManifest(out: string): ManifestFile {
  const m = JSON.parse(readFileSync(join(out, MANIFEST_FILE), 'utf8')) as ManifestFile;
  if (m.generator !== 'regbackup-bench-registry' || m.format !== 1)
    throw new Error(`${out}: not a generated registry`);
  return m;
}

/** Reads `<out>/generator.json`: the options, the day and the stats of a written corpus (null if none). */
export function readRegistryInfo(
  out: string,
): { options: ResolvedOptions; day: number; stats: RegistryStats; history: DayChangeSummary[] } | null {
  if (!existsSync(join(out, MANIFEST_FILE))) return null;
  const m = readManifest(out);
  return { options: m.options, day: m.day, stats: m.stats, history: m.history };
}

/** Writes the registry of `day` (default 1) under `out`; returns what was written. */
export async function writeRegistry(opts: WriteRegistryOptions): Promise<RegistryStats> {
  const t0 = performance.now();
  const out = opts.out;
  if (existsSync(out) && readdirSync(out).length > 0) {
    if (!opts.overwrite) throw new Error(`${out} is not empty (pass overwrite to replace a corpus)`);
    if (!existsSync(join(out, MANIFEST_FILE)))
      throw new Error(`${out} is not empty and is not a generated registry; refusing to delete it`);
    for (const d of ['packuments', 'tarballs', MANIFEST_FILE])
      rmSync(join(out, d), { recursive: true, force: true });
  }
  mkdirSync(join(out, 'packuments'), { recursive: true });
  mkdirSync(join(out, 'tarballs'), { recursive: true });
  const day = opts.day ?? 1;
  const { plan, ctx } = planDay(opts, day);
  const stats = emptyStats(day);
  let done = 0;
  await writePackages(
    plan.options,
    ctx,
    out,
    plan.packages.map((spec) => ({ spec, newFrom: 0 })),
    opts.concurrency ?? Math.min(8, availableParallelism()),
    (s) => {
      addPackageStats(stats, s);
      opts.onProgress?.(++done, plan.packages.length);
    },
  );
  stats.ms = Math.round(performance.now() - t0);
  const manifest: ManifestFile = {
    generator: 'regbackup-bench-registry',
    format: 1,
    options: plan.options,
    day,
    stats,
    history: [],
  };
  writeAtomic(join(out, MANIFEST_FILE), JSON.stringify(manifest, null, 2) + '\n');
  return stats;
}

export interface DayChangeSummary {
  day: number;
  updated: string[];
  created: string[];
  unpublished: string[];
  /** packuments written (updated + created) and their bytes */
  packumentsWritten: number;
  packumentBytesWritten: number;
  /** tarball files added to the store, and their bytes */
  newTarballs: number;
  newTarballBytes: number;
  /** tarballs added as attachments */
  newAttachmentTarballs: number;
  removedTarballs: number;
  ms: number;
}

export interface MutateRegistryOptions {
  /** a directory written by writeRegistry (or already mutated) */
  out: string;
  /** the day to reach (default: the corpus' day + 1); every day in between is applied in order */
  day?: number;
  /** worker threads, as for writeRegistry */
  concurrency?: number;
}

function removeTarballDir(out: string, name: string): void {
  const dir = join(out, 'tarballs', name);
  rmSync(dir, { recursive: true, force: true });
  if (name.startsWith('@')) {
    const scopeDir = dirname(dir);
    try {
      if (readdirSync(scopeDir).length === 0) rmdirSync(scopeDir);
    } catch {
      // the scope directory is already gone
    }
  }
}

/**
 * Turns the corpus in `out` into the one of a later day, in place: new and updated packuments are
 * rewritten (via rename: hard-linked copies are safe), new tarballs added, unpublished packages'
 * packuments and tarballs removed. Returns one summary per day applied.
 */
export async function mutateRegistry(opts: MutateRegistryOptions): Promise<DayChangeSummary[]> {
  const m = readManifest(opts.out);
  const target = opts.day ?? m.day + 1;
  if (!Number.isInteger(target) || target <= m.day)
    throw new Error(`${opts.out} is at day ${m.day}; cannot go to day ${target}`);
  const { plan, ctx } = planDay(m.options, m.day);
  const summaries: DayChangeSummary[] = [];
  while (plan.day < target) {
    const t0 = performance.now();
    const delta = advancePlan(plan, ctx);
    const s: DayChangeSummary = {
      day: delta.day,
      updated: delta.updated.map((u) => u.spec.name),
      created: delta.created.map((c) => c.name),
      unpublished: delta.unpublished.map((u) => u.name),
      packumentsWritten: 0,
      packumentBytesWritten: 0,
      newTarballs: 0,
      newTarballBytes: 0,
      newAttachmentTarballs: 0,
      removedTarballs: 0,
      ms: 0,
    };
    const st = m.stats;
    for (const spec of delta.unpublished) {
      const file = join(opts.out, 'packuments', packumentFileName(spec.name));
      if (existsSync(file)) {
        const size = statSync(file).size;
        st.packumentBytes -= size;
        rmSync(file);
      }
      for (const v of spec.versions) {
        if (!v.tarball || spec.attachments) continue;
        const tf = join(opts.out, 'tarballs', tarballPath(spec.name, v.version));
        if (existsSync(tf)) {
          st.tarballBytes -= statSync(tf).size;
          st.tarballs--;
          s.removedTarballs++;
        }
      }
      if (spec.attachments) {
        // approximate: the planned sizes (the real ones are within a few percent)
        const att = spec.versions.filter((v) => v.tarball);
        st.attachmentTarballs -= att.length;
        st.attachmentBytes -= att.reduce((n, v) => n + v.tarballSize, 0);
      }
      removeTarballDir(opts.out, spec.name);
      st.packages--;
      if (spec.name.startsWith('@')) st.scopedPackages--;
      st.versions -= spec.versions.length;
    }
    const jobs = [
      ...delta.updated.map((u) => ({ spec: u.spec, newFrom: u.previousVersions })),
      ...delta.created.map((spec) => ({ spec, newFrom: 0 })),
    ];
    const oldSizes = new Map<string, number>();
    for (const u of delta.updated) {
      const file = join(opts.out, 'packuments', packumentFileName(u.spec.name));
      oldSizes.set(u.spec.name, existsSync(file) ? statSync(file).size : 0);
    }
    const createdNames = new Set(s.created);
    await writePackages(
      plan.options,
      ctx,
      opts.out,
      jobs,
      opts.concurrency ?? Math.min(8, availableParallelism()),
      (p) => {
        s.packumentsWritten++;
        s.packumentBytesWritten += p.packumentBytes;
        s.newTarballs += p.tarballs;
        s.newTarballBytes += p.tarballBytes;
        s.newAttachmentTarballs += p.attachmentTarballs;
        if (createdNames.has(p.name)) {
          addPackageStats(st, p);
        } else {
          st.versions += 1;
          st.packumentBytes += p.packumentBytes - (oldSizes.get(p.name) ?? 0);
          st.largestPackumentBytes = Math.max(st.largestPackumentBytes, p.packumentBytes);
          st.tarballs += p.tarballs;
          st.tarballBytes += p.tarballBytes;
          st.largestTarballBytes = Math.max(st.largestTarballBytes, p.largestTarballBytes);
          st.attachmentTarballs += p.attachmentTarballs;
          st.attachmentBytes += p.attachmentBytes;
        }
      },
    );
    s.ms = Math.round(performance.now() - t0);
    st.day = delta.day;
    m.day = delta.day;
    m.history.push(s);
    writeAtomic(join(opts.out, MANIFEST_FILE), JSON.stringify(m, null, 2) + '\n');
    summaries.push(s);
  }
  return summaries;
}
