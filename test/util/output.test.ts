import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Progress } from '../../src/util/progress.js';
import { belowStatusLine, createLogger } from '../../src/log.js';

test('a log line erases the progress line first: the two never share a line on the terminal', () => {
  const screen: string[] = [];
  const tty = {
    isTTY: true,
    columns: 120,
    write: (s: string) => screen.push(`tty:${s}`),
  } as unknown as NodeJS.WriteStream;
  const progress = new Progress(tty);
  try {
    progress.phase = 'tarballs';
    progress.bytes = 5 * 1024 * 1024;
    progress.draw();
    const logger = createLogger({
      level: 'info',
      destination: belowStatusLine({ write: (s: string) => screen.push(`log:${s}`) }),
    });
    logger.info('snapshot committed');
    const logAt = screen.findIndex((s) => s.startsWith('log:'));
    assert.ok(logAt > 0, screen.join('|'));
    // Drawn, then blanked with a carriage return at both ends, then the log line.
    assert.match(screen[0]!, /^tty:\rtarballs · 5\.00 MiB/);
    assert.match(screen[logAt - 1]!, /^tty:\r +\r$/);
    assert.match(screen[logAt]!, /snapshot committed/);
  } finally {
    progress.stop();
  }
  // Once stopped, logging writes nothing to the terminal.
  const before = screen.length;
  createLogger({ destination: belowStatusLine({ write: () => true }) }).info('after');
  assert.equal(screen.length, before);
});

test('counts are written with the noun in the right number', async () => {
  const { count } = await import('../../src/util/units.js');
  assert.equal(count(1, 'snapshot'), '1 snapshot');
  assert.equal(count(0, 'snapshot'), '0 snapshots');
  assert.equal(count(2, 'index object'), '2 index objects');
  assert.equal(count(undefined, 'file'), '0 files');
});

test('the tarball phase shows its files out of the expected count, and an ETA', () => {
  const p = new Progress();
  p.phase = 'tarballs';
  p.files = 5;
  p.filesTotal = 10;
  assert.match(p.line(), /^tarballs · files 5\/10 · .* · ETA /);
  p.files = 10;
  assert.doesNotMatch(p.line(), /ETA/);
});
