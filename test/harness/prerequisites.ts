/**
 * `npm test` runs this before any test: the suites start real servers and tools from the machine, and a
 * missing one otherwise surfaces as dozens of `spawn age-keygen ENOENT` failures. Says which tool is
 * missing and how to install it, then exits 1.
 */
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export interface Tool {
  command: string;
  args: string[];
  why: string;
  install: string;
}

const TOOLS: Tool[] = [
  {
    command: process.env.AGE_BIN ?? 'age',
    args: ['--version'],
    why: 'the reference age implementation every encrypted object is checked against',
    install: 'apt-get install age   (Debian/Ubuntu; macOS: brew install age)',
  },
  {
    command: process.env.AGE_KEYGEN_BIN ?? 'age-keygen',
    args: ['--version'],
    why: 'creates the test keys (ships with age)',
    install: 'apt-get install age   (Debian/Ubuntu; macOS: brew install age)',
  },
  {
    command: 'redis-server',
    args: ['--version'],
    why: 'the BullMQ and lock tests start their own Redis on a loopback port',
    install: 'apt-get install redis-server   (macOS: brew install redis)',
  },
];

/** The tools that cannot be run, each with why it is needed and how to install it. */
export function missingPrerequisites(tools: readonly Tool[] = TOOLS): Tool[] {
  return tools.filter((t) => {
    const r = spawnSync(t.command, t.args, { stdio: 'ignore', timeout: 10_000 });
    return r.error !== undefined;
  });
}

/** The Node.js major version the project runs on (package.json engines, the devDependency "node"). */
export const REQUIRED_NODE_MAJOR = 24;

/** What stops the suite from running here, one sentence each (empty: nothing). */
export function prerequisiteProblems(tools: readonly Tool[] = TOOLS): string[] {
  const problems: string[] = [];
  const major = Number(process.versions.node.split('.')[0]);
  if (major < REQUIRED_NODE_MAJOR) {
    problems.push(
      `Node.js ${process.version} runs the tests, but regbackup needs Node.js ${REQUIRED_NODE_MAJOR}: run them with \`npm test\` (npm puts node_modules/.bin/node, Node ${REQUIRED_NODE_MAJOR}, first on PATH) after \`npm ci\``,
    );
  }
  for (const t of missingPrerequisites(tools)) {
    problems.push(`\`${t.command}\` is not installed (${t.why}); install it with: ${t.install}`);
  }
  return problems;
}

function main(): void {
  const problems = prerequisiteProblems();
  if (problems.length === 0) return;
  process.stderr.write(
    `The test suite cannot run on this machine:\n${problems.map((p) => `  - ${p}`).join('\n')}\n(.ci/run installs the missing tools with apt-get.)\n`,
  );
  process.exitCode = 1;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) main();
