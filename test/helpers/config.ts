import { writeFileSync } from 'node:fs';
import path from 'node:path';

/**
 * The regbackup.yaml of an end-to-end test: paths relative to the test's directory, keys in ./keys, the
 * cache in ./cache; a CouchDB source `skimdb` and a tarball source `tarballs` when given.
 */
export interface TestConfig {
  /** Adds `identity: ./keys/restore.key` (commands that read content). */
  identity?: boolean;
  /** `repository: { packSize }`, e.g. "128KiB". */
  packSize?: string;
  /** URL of the CouchDB source `skimdb` (may be an environment reference such as "${COUCH_URL}"). */
  couchdb?: string;
  /** Path of the tarball source `tarballs`. */
  tarballs?: string;
  /** The targets, each a YAML flow mapping: `{ name: local, type: fs, path: ./target }`. */
  targets: string[];
  /** Further top-level YAML, as is (retention, prune, …). */
  more?: string;
}

export function configYaml(c: TestConfig): string {
  const lines = [
    'keys: ./keys/worker.key',
    ...(c.identity ? ['identity: ./keys/restore.key'] : []),
    'cache: ./cache',
    ...(c.packSize ? [`repository: { packSize: ${c.packSize} }`] : []),
    'sources:',
    ...(c.couchdb !== undefined ? [`  couchdb: [{ name: skimdb, url: "${c.couchdb}" }]`] : []),
    ...(c.tarballs !== undefined ? [`  tarballs: [{ name: tarballs, path: ${c.tarballs} }]`] : []),
    'targets:',
    ...c.targets.map((t) => `  - ${t}`),
  ];
  return lines.join('\n') + '\n' + (c.more ?? '');
}

/** Writes `<dir>/regbackup.yaml` and returns its path. */
export function writeTestConfig(dir: string, c: TestConfig): string {
  const file = path.join(dir, 'regbackup.yaml');
  writeFileSync(file, configYaml(c));
  return file;
}
