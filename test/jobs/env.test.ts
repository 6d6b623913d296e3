import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { createEnv } from '../../jobs/env.js';
import { loadConfig } from '../../src/config/load.js';
import { createLogger } from '../../src/log.js';
import { StoreClosedError } from '../../src/store/types.js';
import { writeTestConfig } from '../helpers/config.js';
import { removeTmpDir, tmpDir } from '../harness/tmp.js';

/** The worker's environment on shutdown: every target's store is closed, in order, whatever fails. */
describe('jobs/env: close()', () => {
  let dir: string;
  let file: string;
  before(async () => {
    dir = await tmpDir();
    file = writeTestConfig(dir, {
      tarballs: './tarballs',
      targets: [
        '{ name: a, type: fs, path: ./a }',
        '{ name: b, type: fs, path: ./b }',
        '{ name: c, type: fs, path: ./c }',
      ],
    });
  });
  after(() => removeTmpDir(dir));

  const logged: { msg: string; target?: string }[] = [];
  const logger = createLogger({
    level: 'debug',
    pretty: false,
    destination: new Writable({
      write(chunk: Buffer, _enc, cb) {
        for (const line of chunk.toString('utf8').split('\n').filter(Boolean))
          logged.push(JSON.parse(line) as { msg: string; target?: string });
        cb();
      },
    }),
  });

  const closed = async (s: { stat(k: string): Promise<unknown> }) =>
    s.stat('config').then(
      () => false,
      (err: unknown) => err instanceof StoreClosedError,
    );

  test('closes every store of the targets', async () => {
    const env = createEnv(loadConfig(file).config, { logger, configPath: file });
    assert.equal(env.stores.length, 3);
    for (const s of env.stores) assert.equal(await closed(s), false, `${s.name} answers before close`);
    await env.close();
    for (const s of env.stores) assert.equal(await closed(s), true, `${s.name} is closed`);
  });

  test('in the configured order, each one even when one before it fails; the failure is logged', async () => {
    logged.length = 0;
    const env = createEnv(loadConfig(file).config, { logger, configPath: file });
    const order: string[] = [];
    for (const s of env.stores) {
      const close = s.close.bind(s);
      s.close = async () => {
        order.push(s.name);
        await close();
        if (s.name === 'a') throw new Error('socket already gone');
      };
    }
    await env.close();
    assert.deepEqual(order, ['a', 'b', 'c']);
    for (const s of env.stores.slice(1)) assert.equal(await closed(s), true, `${s.name} is closed`);
    const warn = logged.find((l) => l.target === 'a');
    assert.ok(warn, JSON.stringify(logged));
    assert.match(warn.msg, /closing target a failed/);
  });
});
