// @ts-check
import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import prettier from 'eslint-config-prettier';

/**
 * Layers (issue 14; ARCHITECTURE.md draws them). Imports go down, never up:
 *
 *   src/cli (composition root)  ->  jobs/  ->  restore/  ->  src/{backup, maintenance, health, alerts, metrics}
 *   src/backup -> src/sources -> src/couchdb -> src/repo (src/repo/format: the storage format) -> src/store
 *   src/config, src/util, src/errors.ts, src/log.ts: the floor
 *   bench/ -> test/ -> production; production never imports test/ or bench/.
 *
 * Each folder names the folders it must not import. The imports are relative, so a folder is matched by its
 * name followed by "/" anywhere in the import path. One block per folder: a later `files` block would replace
 * an earlier one's `no-restricted-imports` options rather than add to them.
 */
const folder = (name, why) => ({ regex: `(^|/)${name}/`, message: why });
const notTests = [
  folder('test', 'production code never imports test/ (layer rule, eslint.config.js)'),
  folder('bench', 'production code never imports bench/ (layer rule, eslint.config.js)'),
];
const onlyCli = [
  folder('cli', 'only bin/ reaches src/cli (the composition root)'),
  folder('jobs', 'only src/cli imports jobs/ (the composition root)'),
];
const notRestore = folder('restore', 'only src/cli and jobs/ import restore/');
const above = (names) =>
  names.map((n) =>
    folder(n, `this folder is below src/${n} or its peer and must not import it (layer rule)`),
  );
const layer = (files, patterns, ignores = []) => ({
  files,
  ignores,
  rules: { 'no-restricted-imports': ['error', { patterns }] },
});

const layerRules = [
  // The floor: imports nothing of the project but itself (log.ts: util).
  layer(
    ['src/util/**', 'src/errors.ts', 'src/log.ts'],
    [
      ...notTests,
      ...onlyCli,
      notRestore,
      ...above([
        'alerts',
        'backup',
        'config',
        'couchdb',
        'health',
        'maintenance',
        'metrics',
        'repo',
        'sources',
        'store',
      ]),
    ],
  ),
  // Configuration: the schema uses the repository's limits, nothing else above the floor.
  layer(
    ['src/config/**'],
    [
      ...notTests,
      ...onlyCli,
      notRestore,
      ...above(['alerts', 'backup', 'couchdb', 'health', 'maintenance', 'metrics', 'sources', 'store']),
      {
        regex: '(^|/)repo/(?!limits\\.js$)',
        message: 'src/config uses only src/repo/limits.ts of the repository',
      },
    ],
  ),
  // Stores: below the repository. Two known imports: the name rule (S3 tarball buckets) and the target types.
  layer(
    ['src/store/**'],
    [
      ...notTests,
      ...onlyCli,
      notRestore,
      ...above(['alerts', 'backup', 'couchdb', 'health', 'maintenance', 'metrics', 'sources']),
      {
        regex: '(^|/)repo/(?!names\\.js$)',
        message: 'src/store is below src/repo (only the name rule, names.ts)',
      },
      {
        regex: '(^|/)config/(?!schema\\.js$)',
        message: 'src/store uses only the configuration types (schema.ts)',
      },
    ],
  ),
  // The repository and its format: stores and the floor only.
  layer(
    ['src/repo/**'],
    [
      ...notTests,
      ...onlyCli,
      notRestore,
      ...above(['alerts', 'backup', 'config', 'couchdb', 'health', 'maintenance', 'metrics', 'sources']),
    ],
  ),
  // The CouchDB protocol (client, packument rules), shared by the source and restore.
  layer(
    ['src/couchdb/**'],
    [
      ...notTests,
      ...onlyCli,
      notRestore,
      ...above(['alerts', 'backup', 'health', 'maintenance', 'metrics', 'sources']),
    ],
  ),
  // Sources read a registry and write listings; the backup run calls them, restore never sees them.
  layer(
    ['src/sources/**'],
    [...notTests, ...onlyCli, notRestore, ...above(['alerts', 'backup', 'health', 'maintenance', 'metrics'])],
  ),
  // Maintenance (forget, prune, check, marks): the repository; the backup run reads its marks.
  layer(
    ['src/maintenance/**'],
    [
      ...notTests,
      ...onlyCli,
      notRestore,
      ...above(['alerts', 'backup', 'health', 'metrics', 'sources', 'couchdb']),
    ],
  ),
  // The rest of src/ except the composition root.
  layer(
    ['src/backup/**', 'src/health/**', 'src/alerts/**', 'src/metrics/**'],
    [...notTests, ...onlyCli, notRestore],
  ),
  layer(['src/cli/**'], notTests),
  // Restore reads the format, never the backup-side adapters.
  layer(
    ['restore/**'],
    [
      ...notTests,
      ...onlyCli,
      folder('sources', 'restore/ reads the format (src/repo/format), never the backup-side src/sources'),
      folder('backup', 'restore/ does not depend on the backup run'),
    ],
  ),
  // Jobs run backups, prunes and drills (the drill job calls restore/): only src/cli is above.
  layer(['jobs/**'], [...notTests, folder('cli', 'only bin/ reaches src/cli (the composition root)')]),
  // Tests may import any production code and the test fixtures, never the benchmarks.
  layer(
    ['test/**'],
    [folder('bench', 'test/ never imports bench/: shared fixtures live in test/ (e.g. test/generate)')],
  ),
];

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'bench/out/**', '.scratch/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  prettier,
  {
    languageOptions: {
      globals: {
        process: 'readonly',
        console: 'readonly',
        Buffer: 'readonly',
        URL: 'readonly',
        setTimeout: 'readonly',
        clearTimeout: 'readonly',
        setInterval: 'readonly',
        clearInterval: 'readonly',
        setImmediate: 'readonly',
        performance: 'readonly',
        fetch: 'readonly',
      },
    },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/no-explicit-any': 'error',
      'no-empty': ['error', { allowEmptyCatch: false }],
    },
  },
  ...layerRules,
);
