/**
 * Word lists and text builders for the registry generator: package names, people, descriptions,
 * markdown readmes (with some non-ASCII: accents, CJK, Cyrillic, emoji) and code-like JavaScript.
 */

import { Rng } from './rng.js';

/** Words for package names, identifiers and prose (tech-flavoured English). */
export const TECH_WORDS: readonly string[] = (
  'json parse string array object util utils core fast deep equal clone merge stream buffer http https ' +
  'server client async promise color colors date time log logger debug config env cli args prompt ' +
  'react vue angular svelte plugin loader babel webpack rollup vite eslint prettier postcss sass less css ' +
  'style theme icon icons svg image resize crop canvas chart graph tree table grid list form input button ' +
  'modal dialog menu router route store state redux hook hooks context event emitter signal queue worker ' +
  'task job cron schedule cache memo hash crypto jwt auth oauth session cookie cors proxy socket ws rpc ' +
  'graphql query sql mongo redis kafka mysql postgres orm model schema validate validator types type ' +
  'typed ts node deno bun browser dom html xml yaml toml csv markdown md text template render view ' +
  'component element ui kit design system layout flex scroll drag drop animate motion spring easing ' +
  'file fs path glob watch copy move remove mkdir tmp zip tar gzip compress minify bundle build compile ' +
  'transform polyfill shim fetch request response api rest sdk wrapper adapter driver connector bridge ' +
  'semver version release publish deploy docker cloud aws s3 lambda edge worker pool retry timeout ' +
  'limit rate throttle debounce once noop identity is to get set has map filter reduce find sort uniq ' +
  'flatten chunk range random uuid id slug case camel kebab snake title trim pad left right escape ' +
  'encode decode base64 hex binary bytes bits math number integer float decimal big money currency ' +
  'locale i18n intl translate lang emoji unicode ascii ansi terminal spinner progress bar table diff ' +
  'patch test mock spy assert expect spec runner bench coverage lint format pretty pipe compose curry ' +
  'lazy defer observable rx signal channel mutex lock semaphore binary search index storage local ' +
  'remote sync mirror backup restore migrate seed fixture factory faker mail smtp sms push notify ' +
  'webhook pdf doc docs readme changelog license git github gitlab ci action actions hook commit'
)
  .split(/\s+/)
  .filter(Boolean);

/** Plain English filler, most frequent first (prose is Zipf-distributed over this list). */
export const PROSE_WORDS: readonly string[] = (
  'the of and to a in is it you that for this with on are be as can or if by an from not will your ' +
  'all when use which have more each we one any other only also so into should must may then than ' +
  'value values option options function functions module modules package file files data default ' +
  'object array string number returns return called call first time new used using see example ' +
  'following support supports supported set list true false null undefined error errors instance ' +
  'method methods property properties argument arguments callback promise result results name key ' +
  'keys type types input output node browser version versions install installed run running build ' +
  'test tests change changes update updated release api config configuration plugin plugins server ' +
  'request response event events stream streams buffer path directory command line project code source ' +
  'library application app user users client handler handlers way without like just well both same ' +
  'however because within between before after while where there these those their our its them ' +
  'simple small fast lightweight tiny robust easy minimal flexible modern zero dependency dependencies ' +
  'compatible based custom specific given current global local internal external optional required ' +
  'asynchronous synchronous efficient reliable consistent safe secure stable experimental deprecated ' +
  'note warning important make sure want need know provide provides allow allows create creates read ' +
  'write load loads handle handles parse parses pass passed check checks convert converts format ' +
  'case cases order performance memory size length level mode state context scope support behaviour'
)
  .split(/\s+/)
  .filter(Boolean);

/**
 * Non-ASCII words (2-, 3- and 4-byte UTF-8) sprinkled through prose, so that multi-byte characters land
 * on arbitrary byte offsets (and so on chunk boundaries) in the generated JSON.
 */
export const NON_ASCII_WORDS: readonly string[] = [
  'naïve',
  'café',
  'résumé',
  'Größe',
  'façade',
  'jalapeño',
  'Ångström',
  'smörgåsbord',
  'Zoë',
  'coöperate',
  'déjà-vu',
  'Привет',
  'данные',
  'Ελληνικά',
  'שלום',
  'مرحبا',
  '日本語',
  'ドキュメント',
  '中文文档',
  '한국어',
  'ไทย',
  '→',
  '✓',
  '…',
  '—',
  '€',
  '½',
  '🚀',
  '✨',
  '🎉',
  '📦',
  '🔥',
  '👍',
  '🦀',
  '😀',
  '𝔘𝔫𝔦𝔠𝔬𝔡𝔢',
];

const NAME_PREFIXES: readonly string[] = [
  'node-',
  'react-',
  'vue-',
  'eslint-plugin-',
  'eslint-config-',
  'babel-plugin-',
  'gulp-',
  'grunt-',
  'karma-',
  'postcss-',
  'rollup-plugin-',
  'vite-plugin-',
  'webpack-',
  'express-',
  'koa-',
  'jest-',
  'ng-',
  'is-',
  'get-',
  'to-',
  'has-',
];

const SCOPE_WORDS: readonly string[] = [
  'acme',
  'globex',
  'initech',
  'umbrella',
  'hooli',
  'stark',
  'wayne',
  'tyrell',
  'cyberdyne',
  'aperture',
  'soylent',
  'wonka',
  'oscorp',
  'vandelay',
  'dunder',
  'pied-piper',
  'monsters',
  'nakatomi',
];

const FIRST_NAMES: readonly string[] = [
  'alice',
  'bob',
  'carol',
  'dave',
  'erin',
  'frank',
  'grace',
  'heidi',
  'ivan',
  'judy',
  'mallory',
  'niaj',
  'olivia',
  'peggy',
  'rupert',
  'sybil',
  'trent',
  'victor',
  'walter',
  'yuki',
  'zoe',
  'jose',
  'francois',
  'bjorn',
  'anais',
  'lukas',
  'mei',
  'sergei',
  'priya',
  'omar',
];
/** Display form of FIRST_NAMES (same index), some with non-ASCII letters. */
const FIRST_DISPLAY: readonly string[] = [
  'Alice',
  'Bob',
  'Carol',
  'Dave',
  'Erin',
  'Frank',
  'Grace',
  'Heidi',
  'Ivan',
  'Judy',
  'Mallory',
  'Niaj',
  'Olivia',
  'Peggy',
  'Rupert',
  'Sybil',
  'Trent',
  'Victor',
  'Walter',
  '由紀',
  'Zoë',
  'José',
  'François',
  'Björn',
  'Anaïs',
  'Lukas',
  'Mei',
  'Сергей',
  'Priya',
  'Omar',
];
const LAST_NAMES: readonly string[] = [
  'smith',
  'jones',
  'garcia',
  'muller',
  'nguyen',
  'tanaka',
  'kowalski',
  'rossi',
  'dubois',
  'silva',
  'ivanov',
  'kim',
  'patel',
  'obrien',
  'larsen',
  'novak',
  'haddad',
  'chen',
];
const LAST_DISPLAY: readonly string[] = [
  'Smith',
  'Jones',
  'García',
  'Müller',
  'Nguyễn',
  '田中',
  'Kowalski',
  'Rossi',
  'Dubois',
  'Silva',
  'Иванов',
  'Kim',
  'Patel',
  "O'Brien",
  'Larsen',
  'Novák',
  'Haddad',
  'Chen',
];

export interface Person {
  name: string;
  email: string;
}
export interface Author extends Person {
  url?: string;
}

/** A registry user: npm user name (ASCII) plus a display name that may be non-ASCII. */
export interface User {
  /** npm user name, e.g. `alice-smith3` */
  login: string;
  display: string;
  email: string;
}

export function makeUser(rng: Rng): User {
  const f = rng.int(FIRST_NAMES.length);
  const l = rng.int(LAST_NAMES.length);
  const n = rng.chance(0.5) ? String(rng.int(100)) : '';
  const login = `${FIRST_NAMES[f]}${rng.pick(['-', '', '.', '_'])}${LAST_NAMES[l]}${n}`;
  const domain = rng.pick(['example.com', 'example.org', 'example.net', 'mail.example', 'users.example']);
  return {
    login,
    display: `${FIRST_DISPLAY[f]} ${LAST_DISPLAY[l]}`,
    email: `${FIRST_NAMES[f]}.${LAST_NAMES[l]}${n}@${domain}`,
  };
}

export function makeUserPool(rng: Rng, n: number): User[] {
  const seen = new Set<string>();
  const out: User[] = [];
  while (out.length < n) {
    const u = makeUser(rng);
    if (seen.has(u.login)) continue;
    seen.add(u.login);
    out.push(u);
  }
  return out;
}

export function makeScopePool(rng: Rng, n: number): string[] {
  const out = new Set<string>();
  for (const w of SCOPE_WORDS) out.add(w);
  while (out.size < n)
    out.add(`${rng.pick(TECH_WORDS)}${rng.pick(['-', '', 'js', '-dev', 'hq'])}${rng.pick(SCOPE_WORDS)}`);
  return [...out].slice(0, n);
}

/** A package name following npm's rules (lowercase, URL-safe), scoped or not. */
export function makePackageName(rng: Rng, scopes: readonly string[], scopedFraction: number): string {
  const w = () => rng.pickZipf(TECH_WORDS, 0.9);
  let base: string;
  const r = rng.next();
  if (r < 0.3) base = `${w()}-${w()}`;
  else if (r < 0.42) base = w() + (rng.chance(0.5) ? '' : `-${w()}`) + `-${w()}`;
  else if (r < 0.56) base = `${rng.pick(NAME_PREFIXES)}${w()}`;
  else if (r < 0.64)
    base = `${w()}.${w()}`; // lodash.merge, socket.io style
  else if (r < 0.7) base = `${w()}_${w()}`;
  else if (r < 0.76) base = `${w()}${rng.range(2, 9)}`;
  else if (r < 0.82) base = `${w()}-${w()}.js`;
  else if (r < 0.87) base = `${w()}js`;
  else base = w();
  if (rng.chance(scopedFraction)) return `@${rng.pickZipf(scopes, 1.2)}/${base}`;
  return base;
}

export interface Dependency {
  name: string;
  major: number;
  minor: number;
  patch: number;
  /** range operator, stable for a dependency: `^`, `~`, `` (exact), `>=`, or `x` (for `1.x`) */
  op: string;
}

/** Popular dependency names (real package names, used only as dependency keys). */
export const POPULAR_DEPS: readonly string[] = (
  'lodash chalk debug ms commander semver tslib react react-dom express axios uuid glob minimist yargs ' +
  'fs-extra rimraf mkdirp inherits safe-buffer readable-stream string_decoder core-util-is isarray ' +
  'once wrappy inflight graceful-fs bluebird moment async request body-parser cookie-parser cors ' +
  'dotenv classnames prop-types object-assign loose-envify js-tokens scheduler @babel/core ' +
  '@babel/runtime @babel/preset-env @babel/parser @babel/types @types/node @types/react typescript ' +
  'eslint prettier jest mocha chai sinon nyc ts-node webpack webpack-cli rollup vite esbuild ' +
  'postcss autoprefixer sass less tailwindcss vue @vue/compiler-sfc rxjs zone.js @angular/core ' +
  'ws socket.io node-fetch cross-spawn which execa picomatch micromatch braces fill-range to-regex-range ' +
  'is-number kind-of supports-color has-flag ansi-styles color-convert color-name escape-string-regexp ' +
  'strip-ansi ansi-regex string-width emoji-regex wrap-ansi cliui y18n get-caller-file require-directory ' +
  'source-map source-map-support buffer-from ajv json-schema-traverse fast-deep-equal uri-js punycode ' +
  'qs iconv-lite safer-buffer mime mime-types mime-db etag fresh statuses http-errors depd setprototypeof ' +
  'toidentifier content-type raw-body bytes on-finished ee-first encodeurl escape-html parseurl ' +
  'path-to-regexp send serve-static finalhandler merge-descriptors methods utils-merge vary proxy-addr ' +
  'ipaddr.js forwarded accepts negotiator cookie cookie-signature array-flatten range-parser destroy ' +
  'date-fns dayjs luxon immutable redux react-redux @reduxjs/toolkit mobx zod yup joi ' +
  'pino winston morgan nodemon concurrently husky lint-staged @typescript-eslint/parser ' +
  '@typescript-eslint/eslint-plugin eslint-config-prettier eslint-plugin-import eslint-plugin-react ' +
  '@testing-library/react @testing-library/jest-dom supertest nock tap ava c8 istanbul standard xo'
)
  .split(/\s+/)
  .filter(Boolean);

export function makeDependency(rng: Rng, name: string): Dependency {
  const r = rng.next();
  const op = r < 0.75 ? '^' : r < 0.88 ? '~' : r < 0.95 ? '' : r < 0.98 ? '>=' : 'x';
  return {
    name,
    major: rng.chance(0.15) ? 0 : rng.range(1, 12),
    minor: rng.range(0, 20),
    patch: rng.range(0, 15),
    op,
  };
}

export function depRange(d: Dependency): string {
  return d.op === 'x' ? `${d.major}.x` : `${d.op}${d.major}.${d.minor}.${d.patch}`;
}

/** A sentence of Zipf-distributed prose, with an occasional tech word or non-ASCII word. */
export function sentence(rng: Rng, minWords = 6, maxWords = 22, nonAsciiRate = 0.02): string {
  const n = rng.range(minWords, maxWords);
  const words: string[] = [];
  for (let i = 0; i < n; i++) {
    const r = rng.next();
    if (r < nonAsciiRate) words.push(rng.pick(NON_ASCII_WORDS));
    else if (r < 0.22) words.push(rng.pickZipf(TECH_WORDS, 0.8));
    else words.push(rng.pickZipf(PROSE_WORDS, 1.05));
  }
  const s = words.join(' ');
  return s.charAt(0).toUpperCase() + s.slice(1) + rng.pick(['.', '.', '.', '.', '!', ':', '?']);
}

export function paragraph(rng: Rng, sentences: number, nonAsciiRate = 0.02): string {
  const out: string[] = [];
  for (let i = 0; i < sentences; i++) out.push(sentence(rng, 6, 22, nonAsciiRate));
  return out.join(' ');
}

export function description(rng: Rng, name: string): string {
  const bare = name.replace(/^@[^/]+\//, '');
  const lead = rng.pick([
    'A',
    'A tiny',
    'Fast',
    'Simple',
    'Lightweight',
    'Zero-dependency',
    'Modern',
    'Blazing fast',
    'Tiny',
    'Robust',
  ]);
  const what = rng.pick([
    `${rng.pick(TECH_WORDS)} ${rng.pick(['library', 'utility', 'helper', 'toolkit', 'plugin', 'module', 'wrapper'])}`,
    `${rng.pick(TECH_WORDS)} ${rng.pick(TECH_WORDS)} for ${rng.pick(['Node.js', 'the browser', 'React', 'Vue', 'TypeScript', 'Deno', 'CLI apps'])}`,
    `way to ${rng.pick(PROSE_WORDS.slice(0, 200))} ${rng.pick(TECH_WORDS)} ${rng.pick(TECH_WORDS)}`,
  ]);
  let d = `${lead} ${what}`;
  if (rng.chance(0.3)) d += ` (${bare})`;
  if (rng.chance(0.12)) d += ` ${rng.pick(NON_ASCII_WORDS)}`;
  return d;
}

/** A markdown readme of roughly `targetBytes` UTF-8 bytes. */
export function readme(rng: Rng, name: string, desc: string, targetBytes: number): string {
  const parts: string[] = [];
  parts.push(`# ${name}\n\n`);
  if (rng.chance(0.7)) {
    const slug = encodeURIComponent(name);
    parts.push(
      `[![npm version](https://img.shields.io/npm/v/${slug}.svg)](https://www.npmjs.com/package/${name}) ` +
        `[![build](https://img.shields.io/github/actions/workflow/status/${name.replace('@', '')}/ci.yml)](https://github.com/) ` +
        `[![license](https://img.shields.io/npm/l/${slug}.svg)](LICENSE)\n\n`,
    );
  }
  parts.push(`> ${desc}\n\n`);
  parts.push(`## Install\n\n\`\`\`sh\nnpm install ${name}\n\`\`\`\n\n`);
  const ident = identifierFor(name);
  parts.push(
    `## Usage\n\n\`\`\`js\nconst ${ident} = require('${name}');\n\n${ident}(${rng.pick(["'hello'", '{ deep: true }', '[1, 2, 3]', 'process.argv.slice(2)'])});\n//=> ${rng.pick(["'HELLO'", 'true', '[ 3, 2, 1 ]', "{ ok: true, text: 'naïve café' }"])}\n\`\`\`\n\n`,
  );
  let size = parts.reduce((n, p) => n + Buffer.byteLength(p), 0);
  const sections = [
    'API',
    'Options',
    'Examples',
    'Caveats',
    'FAQ',
    'Related',
    'Internationalization',
    'Changelog',
  ];
  let si = 0;
  while (size < targetBytes) {
    const heading = si < sections.length ? sections[si]! : `${rng.pick(TECH_WORDS)} ${rng.pick(TECH_WORDS)}`;
    si++;
    let sec = `## ${heading}\n\n`;
    if (heading === 'Internationalization') {
      sec += `Works with any Unicode text: naïve café, Größe, Привет мир, 日本語のテキスト, 中文, 한국어, emoji 🚀✨ and 𝔘𝔫𝔦𝔠𝔬𝔡𝔢.\n\n`;
    }
    const k = rng.range(1, 4);
    for (let i = 0; i < k; i++) {
      const r = rng.next();
      if (r < 0.6) sec += `${paragraph(rng, rng.range(2, 6))}\n\n`;
      else if (r < 0.8) {
        sec += `### ${ident}.${rng.pick(TECH_WORDS)}(${rng.pick(['input', 'options', 'value', 'path', 'fn'])}${rng.chance(0.5) ? ', options?' : ''})\n\n${paragraph(rng, rng.range(1, 3))}\n\n`;
        const items = rng.range(2, 6);
        for (let j = 0; j < items; j++) {
          sec += `- \`${rng.pick(TECH_WORDS)}\` (${rng.pick(['boolean', 'string', 'number', 'object', 'Function'])}, default \`${rng.pick(['false', 'true', '0', "''", 'null', '1000'])}\`): ${sentence(rng, 4, 12)}\n`;
        }
        sec += '\n';
      } else {
        sec += '```js\n' + codeLines(rng, ident, rng.range(3, 12)) + '```\n\n';
      }
    }
    parts.push(sec);
    size += Buffer.byteLength(sec);
  }
  parts.push(`## License\n\nMIT © ${rng.pick(FIRST_DISPLAY)} ${rng.pick(LAST_DISPLAY)}\n`);
  return parts.join('');
}

export function identifierFor(name: string): string {
  const bare = name.replace(/^@[^/]+\//, '').replace(/\.js$/, '');
  const parts = bare.split(/[^a-zA-Z0-9]+/).filter(Boolean);
  const id = parts.map((p, i) => (i === 0 ? p : p.charAt(0).toUpperCase() + p.slice(1))).join('');
  return /^[a-zA-Z_$]/.test(id) ? id : `_${id}`;
}

function camel(rng: Rng): string {
  const a = rng.pick(TECH_WORDS);
  const b = rng.pick(TECH_WORDS);
  return a + b.charAt(0).toUpperCase() + b.slice(1);
}

function codeLines(rng: Rng, ident: string, n: number): string {
  let s = '';
  for (let i = 0; i < n; i++) {
    const v = camel(rng);
    s += rng.pick([
      `const ${v} = ${ident}.${rng.pick(TECH_WORDS)}(${rng.int(100)});\n`,
      `${ident}.${camel(rng)}('${rng.pick(TECH_WORDS)}', { ${rng.pick(TECH_WORDS)}: ${rng.pick(['true', 'false', String(rng.int(1000))])} });\n`,
      `// ${sentence(rng, 3, 9)}\n`,
      `await ${ident}(${v});\n`,
      `console.log(${v}); // => ${rng.pick(["'ok'", '42', 'undefined', "'naïve'"])}\n`,
    ]);
  }
  return s;
}

/**
 * Code-like JavaScript snippets with `\u0001` marking where a package-specific identifier goes: a pool
 * of these is built once per generator, and files are assembled from random picks (fast, and varied
 * enough that deflate sees realistic redundancy: ~4-6x).
 */
export function codeSnippet(rng: Rng): string {
  const P = '\u0001';
  const fn = `${P}${camel(rng).replace(/^./, (c) => c.toUpperCase())}`;
  const a = rng.pick([
    'input',
    'value',
    'options',
    'opts',
    'node',
    'item',
    'list',
    'str',
    'buf',
    'obj',
    'key',
  ]);
  const b = rng.pick(['index', 'result', 'acc', 'out', 'ctx', 'state', 'next', 'prev', 'i', 'len', 'tmp']);
  const c = camel(rng);
  const num = rng.int(4096);
  const str = `${rng.pick(TECH_WORDS)}${rng.pick(['', '-', ':', '.', '/'])}${rng.pick(TECH_WORDS)}`;
  const doc = `/**\n * ${sentence(rng, 5, 16, 0.01)}\n * @param {${rng.pick(['string', 'object', 'number', 'Array<*>', 'Buffer'])}} ${a}\n * @returns {${rng.pick(['boolean', 'string', 'Promise<void>', 'number', '*'])}}\n */\n`;
  switch (rng.int(9)) {
    case 0:
      return `${doc}function ${fn}(${a}, ${b}) {\n  if (${a} == null) {\n    throw new TypeError('${fn.slice(1)}: expected ${a} to be defined, got ' + typeof ${a});\n  }\n  const ${c} = ${b} === undefined ? ${num} : ${b};\n  return ${a}.length > ${c} ? ${a}.slice(0, ${c}) : ${a};\n}\n\n`;
    case 1:
      return `${doc}async function ${fn}(${a}) {\n  const ${c} = await ${P}load('${str}', ${a});\n  for (const ${b} of Object.keys(${c})) {\n    if (!${P}has(${c}, ${b})) continue;\n    ${c}[${b}] = ${P}normalize(${c}[${b}], { depth: ${rng.int(8)} });\n  }\n  return ${c};\n}\n\n`;
    case 2:
      return `${doc}exports.${fn.slice(1)} = function (${a}) {\n  var ${b} = [];\n  for (var i = 0; i < ${a}.length; i++) {\n    var ${c} = ${a}[i];\n    if (typeof ${c} === '${rng.pick(['string', 'number', 'object', 'function'])}') ${b}.push(${c});\n  }\n  return ${b};\n};\n\n`;
    case 3:
      return `class ${fn} extends ${rng.pick(['EventEmitter', 'Transform', 'Error', 'Map', 'Base'])} {\n  constructor(${a} = {}) {\n    super();\n    this.${c} = ${a}.${c} ?? ${num};\n    this.${b} = new Map();\n  }\n\n  ${camel(rng)}(${a}) {\n    const ${b} = this.${b}.get(${a});\n    if (${b} !== undefined) return ${b};\n    this.emit('${str}', ${a});\n    return null;\n  }\n}\n\n`;
    case 4:
      return `const ${c} = ${P}memoize((${a}) => {\n  switch (${a}) {\n    case '${rng.pick(TECH_WORDS)}':\n      return ${num};\n    case '${rng.pick(TECH_WORDS)}':\n      return ${rng.int(4096)};\n    default:\n      return -1;\n  }\n});\n\n`;
    case 5:
      return `// ${sentence(rng, 4, 14, 0.01)}\nconst ${c} = /^${rng.pick(['[a-z]+', '\\d{1,3}', '[^/]+', '\\s*', '[\\w.-]+'])}(?:${rng.pick(TECH_WORDS)}|${rng.pick(TECH_WORDS)})$/i;\nconst ${P}${c.toUpperCase()}_MAX = 0x${num.toString(16)};\n\n`;
    case 6:
      return `${doc}module.exports.${c} = (${a}, ${b} = {}) =>\n  new Promise((resolve, reject) => {\n    const timer = setTimeout(() => reject(new Error('${str} timed out after ${num}ms')), ${b}.timeout || ${num});\n    ${P}${camel(rng)}(${a}, (err, res) => {\n      clearTimeout(timer);\n      err ? reject(err) : resolve(res);\n    });\n  });\n\n`;
    case 7:
      return `export function ${fn}(${a}: ${rng.pick(['string', 'unknown', 'number[]', 'Record<string, unknown>'])}): ${rng.pick(['boolean', 'string', 'void', 'number'])} {\n  const ${b} = ${P}${c}(${a});\n  return ${b}${rng.pick([' !== null', '.length > 0', ` > ${num}`, '.ok'])};\n}\n\n`;
    default:
      return `${P}${c}.prototype.${camel(rng)} = function ${camel(rng)}(${a}) {\n  'use strict';\n  var self = this;\n  return Object.keys(${a} || {}).reduce(function (${b}, k) {\n    ${b}[k] = self.${c}(${a}[k], ${num});\n    return ${b};\n  }, {});\n};\n\n`;
  }
}

const MIT = (year: number, holder: string): string =>
  `MIT License\n\nCopyright (c) ${year} ${holder}\n\nPermission is hereby granted, free of charge, to any person obtaining a copy\nof this software and associated documentation files (the "Software"), to deal\nin the Software without restriction, including without limitation the rights\nto use, copy, modify, merge, publish, distribute, sublicense, and/or sell\ncopies of the Software, and to permit persons to whom the Software is\nfurnished to do so, subject to the following conditions:\n\nThe above copyright notice and this permission notice shall be included in all\ncopies or substantial portions of the Software.\n\nTHE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR\nIMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,\nFITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE\nAUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER\nLIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,\nOUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE\nSOFTWARE.\n`;

export function licenseText(license: string, year: number, holder: string): string {
  if (license === 'MIT') return MIT(year, holder);
  return `${license} License\n\nCopyright (c) ${year} ${holder}\n\nSee https://spdx.org/licenses/${license}.html for the full text.\n`;
}
