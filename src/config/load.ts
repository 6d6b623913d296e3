import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseDocument, type YAMLError } from 'yaml';
import type { z } from 'zod';
import { ConfigError, systemCodeOf } from '../errors.js';
import {
  REDACTED,
  isSecretKeyName,
  redact,
  redactString,
  registerSecret,
  registerSecretsIn,
} from '../util/redact.js';
import { configSchema, type Config } from './schema.js';

export const DEFAULT_CONFIG_PATH = 'regbackup.yaml';

export interface LoadedConfig {
  config: Config;
  /** Absolute path of the file it came from. */
  path: string;
  /**
   * Where the file used `${VAR}`: the place (as in messages, `targets[0].credentials.secretAccessKey`) and
   * the value as written with each variable's value replaced by "[redacted]". Every `${VAR}` value is a
   * secret, whatever its length: `config check` shows these places in this form.
   */
  interpolated: ReadonlyMap<string, string>;
  /** The file's values as written (before `${VAR}` and defaults), for showing `5min` rather than 300000. */
  written?: unknown;
}

/** Which file to read: --config, then $REGBACKUP_CONFIG, then ./regbackup.yaml. */
export function resolveConfigPath(explicit?: string, env: NodeJS.ProcessEnv = process.env): string {
  return path.resolve(explicit ?? env.REGBACKUP_CONFIG ?? DEFAULT_CONFIG_PATH);
}

export function loadConfig(file: string, env: NodeJS.ProcessEnv = process.env): LoadedConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const why = systemCodeOf(err) === 'ENOENT' ? 'no such file' : String((err as Error).message);
    throw new ConfigError(
      `cannot read configuration ${file}: ${why} (use --config PATH or set REGBACKUP_CONFIG)`,
    );
  }
  const interpolated = new Map<string, string>();
  const out: { written?: unknown } = {};
  return { config: parseConfig(text, file, env, interpolated, out), path: file, interpolated, ...out };
}

/**
 * The configuration as `config check` prints it: every `${VAR}` value and every secret redacted, file paths
 * and everything else as the program will use them.
 */
export function displayConfig(loaded: LoadedConfig): unknown {
  const replace = (value: unknown, at: (string | number)[]): unknown => {
    const shown = loaded.interpolated.get(formatPath(at));
    if (shown !== undefined) return shown;
    // Durations and sizes as written (`5min`, `16MiB`), not as the milliseconds and bytes they became.
    if (typeof value === 'number') {
      const w = writtenAt(loaded.written, at);
      if (typeof w === 'string') return w;
    }
    if (Array.isArray(value)) return value.map((v, i) => replace(v, [...at, i]));
    if (value && typeof value === 'object') {
      return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, replace(v, [...at, k])]));
    }
    return value;
  };
  return redact(replace(loaded.config, []));
}

function writtenAt(written: unknown, at: readonly (string | number)[]): unknown {
  let v = written;
  for (const k of at) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<string | number, unknown>)[k];
  }
  return v;
}

/**
 * Parses, interpolates and validates a configuration text; every problem found is reported at once. Every
 * secret it holds (`${VAR}` values, credentials, header values, URL passwords and tokens) is registered with
 * the redactor before anything can print it.
 */
export function parseConfig(
  text: string,
  file: string,
  env: NodeJS.ProcessEnv = process.env,
  interpolated: Map<string, string> = new Map(),
  out: { written?: unknown } = {},
): Config {
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length) {
    throw new ConfigError(
      `configuration ${file} is not valid YAML:`,
      doc.errors.map((e) => describeYamlError(e, text)),
    );
  }
  const raw: unknown = doc.toJS();
  out.written = raw;
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new ConfigError(
      `configuration ${file} must be a YAML mapping of keys (keys:, sources:, targets:, …)`,
    );
  }

  const problems: string[] = [];
  const unset = new Set<string>();
  const values = interpolate(raw, [], env, problems, unset, interpolated);
  registerSecretsIn(values);

  const result = configSchema.safeParse(values, { reportInput: true });
  if (!result.success) {
    for (const issue of result.error.issues) {
      const where = formatPath(issue.path);
      // A value that failed because its ${VAR} is unset is already reported once.
      if ([...unset].some((u) => where === u || where.startsWith(`${u}.`) || where.startsWith(`${u}[`)))
        continue;
      problems.push(describeIssue(issue, where, isSecretPlace(issue.path, interpolated)));
    }
  }
  if (result.success) problems.push(...semanticProblems(result.data));
  if (problems.length) {
    throw new ConfigError(
      `configuration ${file} has ${problems.length} problem${problems.length > 1 ? 's' : ''}:`,
      problems,
    );
  }
  return resolvePaths(result.data!, path.dirname(path.resolve(file)));
}

/**
 * One YAML error: where the parser noticed it, what it says (without the parser's trailing colon), and the
 * lines that lead up to it — the parser often notices a mistake a line or two below where it was made (an
 * unclosed `[` shows at the next key). Lines are redacted: the file may hold literal credentials.
 */
function describeYamlError(e: YAMLError, text: string): string {
  const what = e.message
    .split('\n')[0]!
    .replace(/ at line \d+, column \d+:?\s*$/, '')
    .replace(/:\s*$/, '');
  const at = e.linePos?.[0];
  if (!at) return what;
  const lines = text.split(/\r?\n/);
  const context: string[] = [];
  for (let n = Math.max(1, at.line - 2); n <= Math.min(lines.length, at.line); n++)
    context.push(`${n === at.line ? '>' : ' '} ${String(n).padStart(4)} | ${redactString(lines[n - 1]!)}`);
  return `line ${at.line}, column ${at.col}: ${what}\n${context.map((l) => `      ${l}`).join('\n')}`;
}

function interpolate(
  value: unknown,
  at: (string | number)[],
  env: NodeJS.ProcessEnv,
  problems: string[],
  unset: Set<string>,
  interpolated: Map<string, string>,
): unknown {
  if (typeof value === 'string') {
    if (!value.includes('$')) return value;
    let failed = false;
    let secret = false;
    const pattern = /\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g;
    const out = value.replace(pattern, (m, name: string | undefined, fallback: string | undefined) => {
      if (m === '$$') return '$';
      const fromEnv = env[name!];
      const v = fromEnv === undefined || fromEnv === '' ? fallback : fromEnv;
      if (v === undefined || v === '') {
        problems.push(`${formatPath(at)}: environment variable \${${name}} is not set`);
        failed = true;
        return '';
      }
      // Whatever comes from the environment is treated as a secret: it never reaches a log line.
      registerSecret(v);
      secret = true;
      return v;
    });
    if (failed) {
      unset.add(formatPath(at));
      return undefined;
    }
    if (secret)
      interpolated.set(
        formatPath(at),
        value.replace(pattern, (m) => (m === '$$' ? '$' : REDACTED)),
      );
    return out;
  }
  const next = (v: unknown, k: string | number) =>
    interpolate(v, [...at, k], env, problems, unset, interpolated);
  if (Array.isArray(value)) return value.map((v, i) => next(v, i));
  if (value && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = next(v, k);
    return out;
  }
  return value;
}

function formatPath(p: readonly PropertyKey[]): string {
  let s = '';
  for (const part of p) {
    if (typeof part === 'number') s += `[${part}]`;
    else s += s ? `.${String(part)}` : String(part);
  }
  return s || '(top level)';
}

function show(v: unknown): string {
  if (v === undefined) return 'nothing';
  const s = JSON.stringify(v);
  if (s === undefined) return String(v);
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

/**
 * A value that a problem must not quote: it came from `${VAR}`, or it sits under a credential-like key or in
 * a `headers` map (at any depth).
 */
function isSecretPlace(at: readonly PropertyKey[], interpolated: ReadonlyMap<string, string>): boolean {
  for (let i = 1; i <= at.length; i++) {
    if (interpolated.has(formatPath(at.slice(0, i)))) return true;
  }
  return at.some((p) => typeof p === 'string' && (isSecretKeyName(p) || /^headers$/i.test(p)));
}

function describeIssue(issue: z.core.$ZodIssue, where: string, secret: boolean): string {
  const raw = (issue as { input?: unknown }).input;
  const input = secret && raw !== undefined ? REDACTED : redact(raw);
  switch (issue.code) {
    case 'invalid_type':
      return input === undefined
        ? `${where}: is required (expected ${issue.expected})`
        : `${where}: got ${show(input)}, expected ${issue.expected}`;
    case 'unrecognized_keys':
      return issue.keys
        .map(
          (k) =>
            `${where === '(top level)' ? k : `${where}.${k}`}: unknown key (check the spelling against config/regbackup.example.yaml)`,
        )
        .join('\n  - ');
    case 'invalid_union': {
      const disc = (issue as { discriminator?: string; options?: unknown[] }).options;
      if (disc) {
        const got = (input as Record<string, unknown> | undefined)?.[
          (issue as { discriminator?: string }).discriminator ?? ''
        ];
        return `${where}: got ${show(got)}, expected one of ${disc.map((o) => String(o)).join(', ')}`;
      }
      return `${where}: got ${show(input)}, which matches none of the allowed forms`;
    }
    case 'invalid_value':
      return `${where}: got ${show(input)}, expected one of ${issue.values.map((v) => String(v)).join(', ')}`;
    case 'too_small':
    case 'too_big':
    case 'invalid_format':
    case 'custom':
    default:
      return `${where}: got ${show(input)}, ${issue.message}`;
  }
}

function semanticProblems(c: Config): string[] {
  const problems: string[] = [];
  const dup = (what: string, names: string[]) => {
    const seen = new Set<string>();
    for (const n of names) {
      if (seen.has(n)) problems.push(`${what}: the name ${JSON.stringify(n)} is used twice`);
      seen.add(n);
    }
  };
  dup(
    'targets',
    c.targets.map((t) => t.name),
  );
  dup('sources', [...c.sources.couchdb.map((s) => s.name), ...c.sources.tarballs.map((s) => s.name)]);
  return problems;
}

/** Relative paths in the file are relative to the file's directory, not to where the command runs. */
function resolvePaths(c: Config, base: string): Config {
  const abs = (p: string) => path.resolve(base, p);
  return {
    ...c,
    keys: abs(c.keys),
    identity: c.identity ? abs(c.identity) : undefined,
    cache: c.cache ? abs(c.cache) : undefined,
    sources: {
      couchdb: c.sources.couchdb,
      tarballs: c.sources.tarballs.map((s) => ('path' in s ? { ...s, path: abs(s.path) } : s)),
    },
    targets: c.targets.map((t) => {
      if (t.type === 'fs') return { ...t, path: abs(t.path) };
      if (t.type === 'gcs' && t.keyFilename) return { ...t, keyFilename: abs(t.keyFilename) };
      return t;
    }),
    destinations: Object.fromEntries(
      Object.entries(c.destinations).map(([k, d]) => [
        k,
        { ...d, tarballs: d.tarballs && !d.tarballs.startsWith('s3://') ? abs(d.tarballs) : d.tarballs },
      ]),
    ),
  };
}

/** Per target name, the days new objects are locked for (targets with `retention`). */
export function retentionDaysOf(config: Config): Map<string, number> {
  const m = new Map<string, number>();
  for (const t of config.targets) if (t.type !== 'fs' && t.retention) m.set(t.name, t.retention.days);
  return m;
}
