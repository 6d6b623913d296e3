import assert from 'node:assert/strict';
import { test } from 'node:test';
import { missingPrerequisites, prerequisiteProblems, REQUIRED_NODE_MAJOR } from './prerequisites.js';

test('prerequisites: a missing tool is named with how to install it', () => {
  const tools = [
    {
      command: 'regbackup-no-such-tool',
      args: ['--version'],
      why: 'testing',
      install: 'apt-get install nothing',
    },
    { command: process.execPath, args: ['--version'], why: 'node itself', install: '-' },
  ];
  assert.deepEqual(
    missingPrerequisites(tools).map((t) => t.command),
    ['regbackup-no-such-tool'],
  );
  const problems = prerequisiteProblems(tools);
  assert.equal(problems.length, 1);
  assert.match(
    problems[0]!,
    /`regbackup-no-such-tool` is not installed \(testing\); install it with: apt-get install nothing/,
  );
});

test('prerequisites: the suite runs on the Node.js line the project requires', () => {
  assert.ok(
    Number(process.versions.node.split('.')[0]) >= REQUIRED_NODE_MAJOR,
    `the tests run on ${process.version}`,
  );
});
