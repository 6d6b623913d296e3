import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { Writable } from 'node:stream';
import { before, describe, it } from 'node:test';
import { createLogger } from '../../src/log.js';
import { CouchClient } from '../../src/couchdb/client.js';
import { tmpDir } from '../harness/index.js';
import { runCli, type CliResult } from '../helpers/cli.js';

/** A server that refuses every request and echoes it (headers, URL) into its error body, as some proxies do. */
interface EchoServer {
  url: string;
  /** The Authorization headers received. */
  authorizations: string[];
  close(): Promise<void>;
}

async function startEchoServer(status: number, body: (req: IncomingMessage) => string): Promise<EchoServer> {
  const authorizations: string[] = [];
  const server: Server = createServer((req, res) => {
    if (req.headers.authorization) authorizations.push(req.headers.authorization);
    req.resume();
    res.writeHead(status, { 'content-type': 'application/json', connection: 'close' });
    res.end(body(req));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    authorizations,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** Every secret the configuration below holds, by what it is. None may appear in any output. */
const SECRETS = {
  literalSecretAccessKey: 'LiteralSecretAccessKey0123456789',
  literalAccessKeyId: 'AKIALITERALKEYID0001',
  headerApiKey: 'HeaderApiKeyValue-7d1e',
  headerBearer: 'BearerTokenValue-91aa',
  queryToken: 'QueryTokenValue-55c2',
  amzSignature: 'a1b2c3d4e5f60718293a4b5c6d7e8f90',
  amzCredential: 'AKIAQUERYCREDENTIAL01',
  userOnlyToken: 'ghp_UserOnlyUrlToken123',
  passwordAfterAt: 'tail-of-the-password',
  routingKey: 'R0UTINGKEYVALUE0000000000000000',
  influxToken: 'InfluxTokenLiteral-3f3f',
  /** ${VAR} values shorter than 4 characters. */
  shortVar: 'Q7',
  shortVar3: 'k9x',
  envPassword: 'env-password-value-42',
} as const;

const ENV = {
  SHORT_PW: SECRETS.shortVar,
  SHORT_PREFIX: SECRETS.shortVar3,
  COUCH_PW: SECRETS.envPassword,
};

function configYaml(): string {
  return `
keys: ./keys/worker.key
identity: ./keys/restore.key
cache: ./cache
sources:
  couchdb:
    - name: at-sign
      url: "http://admin:p@ss@${SECRETS.passwordAfterAt}@127.0.0.1:5984"
    - name: user-only
      url: "https://${SECRETS.userOnlyToken}@couch.example.net/?token=${SECRETS.queryToken}&limit=5"
    - name: short-var
      url: "http://admin:\${SHORT_PW}@127.0.0.1:5984"
    - name: from-env
      url: "http://admin:\${COUCH_PW}@127.0.0.1:5984"
targets:
  - name: aws
    type: s3
    bucket: backups
    prefix: "r\${SHORT_PREFIX}/"
    endpoint: "https://s3.example.net/?X-Amz-Signature=${SECRETS.amzSignature}&X-Amz-Credential=${SECRETS.amzCredential}"
    credentials:
      accessKeyId: ${SECRETS.literalAccessKeyId}
      secretAccessKey: ${SECRETS.literalSecretAccessKey}
  - name: gcs
    type: gcs
    bucket: backups
    keyFilename: ./keys/gcs.json
alerts:
  pagerduty:
    routingKey: ${SECRETS.routingKey}
  webhook:
    url: https://hooks.example.net/notify
    headers:
      X-Api-Key: ${SECRETS.headerApiKey}
      Authorization: "Bearer ${SECRETS.headerBearer}"
metrics:
  influxdb:
    url: http://influx.example.net:8086/api/v2/write?org=o&bucket=b
    token: ${SECRETS.influxToken}
`;
}

function assertNoSecret(
  out: CliResult,
  what: string,
  secrets: readonly string[] = Object.values(SECRETS),
): void {
  for (const secret of secrets) {
    assert.ok(!out.stdout.includes(secret), `${what}: ${secret} on stdout:\n${out.stdout}`);
    assert.ok(!out.stderr.includes(secret), `${what}: ${secret} on stderr:\n${out.stderr}`);
  }
}

describe('no secret in config check, error messages or log lines', () => {
  let dir: string;
  let env: NodeJS.ProcessEnv;

  before(async () => {
    dir = await tmpDir();
    writeFileSync(path.join(dir, 'regbackup.yaml'), configYaml());
    // config check also checks that the files it names are there (their contents are not read).
    mkdirSync(path.join(dir, 'keys'));
    for (const f of ['worker.key', 'restore.key', 'gcs.json']) writeFileSync(path.join(dir, 'keys', f), '');
    env = { REGBACKUP_CONFIG: path.join(dir, 'regbackup.yaml'), ...ENV };
  });

  it('config check (text): every secret redacted, file paths shown', async () => {
    const r = await runCli(['config', 'check'], { env });
    assert.equal(r.code, 0, r.stderr);
    assertNoSecret(r, 'config check');
    assert.match(r.stdout, /url: http:\/\/admin:\[redacted\]@127\.0\.0\.1:5984\n/);
    assert.match(r.stdout, /url: https:\/\/\[redacted\]@couch\.example\.net\/\?token=\[redacted\]&limit=5/);
    assert.match(r.stdout, /X-Api-Key: "\[redacted\]"/);
    assert.match(r.stdout, /prefix: r\[redacted\]\//);
    // Key FILE PATHS are not secrets.
    assert.match(r.stdout, new RegExp(`identity: ${dir}/keys/restore\\.key`));
    assert.match(r.stdout, new RegExp(`keyFilename: ${dir}/keys/gcs\\.json`));
  });

  it('config check --json: the same', async () => {
    const r = await runCli(['config', 'check', '--json'], { env });
    assert.equal(r.code, 0, r.stderr);
    assertNoSecret(r, 'config check --json');
    const out = JSON.parse(r.stdout) as {
      config: {
        targets: { credentials?: unknown; endpoint?: string; prefix?: string }[];
        sources: { couchdb: { url: string }[] };
        alerts: { pagerduty: { routingKey: string }; webhook: { headers: Record<string, string> } };
        metrics: { influxdb: { token: string } };
      };
    };
    assert.equal(out.config.targets[0]!.credentials, '[redacted]');
    assert.equal(
      out.config.targets[0]!.endpoint,
      'https://s3.example.net/?X-Amz-Signature=[redacted]&X-Amz-Credential=[redacted]',
    );
    assert.equal(out.config.targets[0]!.prefix, 'r[redacted]/');
    assert.deepEqual(
      out.config.sources.couchdb.map((c) => c.url),
      [
        'http://admin:[redacted]@127.0.0.1:5984',
        'https://[redacted]@couch.example.net/?token=[redacted]&limit=5',
        'http://admin:[redacted]@127.0.0.1:5984',
        'http://admin:[redacted]@127.0.0.1:5984',
      ],
    );
    assert.equal(out.config.alerts.pagerduty.routingKey, '[redacted]');
    assert.deepEqual(out.config.alerts.webhook.headers, {
      'X-Api-Key': '[redacted]',
      Authorization: '[redacted]',
    });
    assert.equal(out.config.metrics.influxdb.token, '[redacted]');
  });

  it('a configuration problem never quotes a secret', async () => {
    const file = path.join(dir, 'bad.yaml');
    writeFileSync(
      file,
      `keys: ./k
targets:
  - name: aws
    type: s3
    bucket: b
    credentials: { accessKeyId: AKIAEXAMPLE, secretAccessKey: 918273645546372819 }
alerts:
  webhook:
    url: https://hooks.example.net/notify
    headers: { X-Api-Key: 5647382910564738 }
`,
    );
    const r = await runCli(['config', 'check', '--config', file], { env });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /targets\[0\]\.credentials\.secretAccessKey: got "\[redacted\]", expected string/);
    assert.match(r.stderr, /alerts\.webhook\.headers\.X-Api-Key: got "\[redacted\]", expected string/);
    assertNoSecret(r, 'config problems', ['918273645546372819', '5647382910564738']);
  });

  it('an S3 server echoing the request into its error: the log line names the target, shows no credential', async () => {
    const echo = await startEchoServer(
      400,
      (req) =>
        `<?xml version="1.0" encoding="UTF-8"?><Error><Code>InvalidRequest</Code><Message>refused ${req.method} ${req.url} with Authorization: ${req.headers.authorization}</Message></Error>`,
    );
    try {
      const work = await tmpDir();
      const keys = await runCli(['keys', 'generate', '--out', path.join(work, 'keys')], { env });
      assert.equal(keys.code, 0, keys.stderr);
      const local = `keys: ./keys/worker.key
cache: ./cache
targets:
  - name: local
    type: fs
    path: ./target
`;
      const cfg = { ...env, REGBACKUP_CONFIG: path.join(work, 'regbackup.yaml') };
      writeFileSync(path.join(work, 'regbackup.yaml'), local);
      const init = await runCli(['init'], { env: cfg });
      assert.equal(init.code, 0, init.stderr);
      writeFileSync(
        path.join(work, 'regbackup.yaml'),
        `${local}  - name: echo
    type: s3
    bucket: b
    endpoint: ${echo.url}
    forcePathStyle: true
    credentials: { accessKeyId: ${SECRETS.literalAccessKeyId}, secretAccessKey: ${SECRETS.literalSecretAccessKey} }
sources:
  tarballs:
    - name: files
      path: ./files
      verify: false
`,
      );
      mkdirSync(path.join(work, 'files/a/-'), { recursive: true });
      writeFileSync(path.join(work, 'files/a/-/a-1.0.0.tgz'), 'x');
      const r = await runCli(['backup', '--json'], { env: cfg });
      assert.ok(echo.authorizations.length > 0, 'the S3 target was asked');
      const signatures = echo.authorizations.map((a) => /Signature=([0-9a-f]+)/.exec(a)![1]!);
      assertNoSecret(r, 'backup against an echoing S3 server', [
        SECRETS.literalAccessKeyId,
        SECRETS.literalSecretAccessKey,
        ...signatures,
      ]);
      const line = r.stderr
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as { target?: string; err?: string })
        .find((l) => l.target === 'echo');
      assert.ok(line, `a log line names the target:\n${r.stderr}`);
      assert.match(line.err!, /InvalidRequest/);
      assert.match(line.err!, /AWS4-HMAC-SHA256 \[redacted\]/);
    } finally {
      await echo.close();
    }
  });

  it('a CouchDB answering 401 with the Authorization header echoed: neither message nor log line shows it', async () => {
    const echo = await startEchoServer(401, (req) =>
      JSON.stringify({
        error: 'unauthorized',
        reason: `bad credentials: ${req.headers.authorization} for ${req.url}`,
      }),
    );
    try {
      // A short password: its Basic value is not the password itself, and a 2-character value is not
      // "long enough" for plain string replacement.
      const url = new URL(echo.url);
      url.username = 'admin';
      url.password = 'pw';
      const client = new CouchClient(
        { name: 'registry', url: url.toString(), timeout: 5000, concurrency: 1 },
        { attempts: 1 },
      );
      const err = await client.json('GET', '_all_dbs').then(
        () => assert.fail('a 401 is an error'),
        (e: unknown) => e as Error,
      );
      const basic = echo.authorizations[0]!;
      assert.match(basic, /^Basic /);
      assert.match(err.message, /refused the credentials \(401\)/);

      const lines: string[] = [];
      const logger = createLogger({
        level: 'info',
        pretty: false,
        destination: new Writable({
          write(chunk: Buffer, _enc, done) {
            lines.push(chunk.toString());
            done();
          },
        }),
      });
      logger.error({ err }, 'the source cannot be read');
      logger.error({ err: err.message, source: 'registry' }, 'the source cannot be read');
      logger.warn(`failed: ${err.message}`);
      logger.flush();
      assert.equal(lines.length, 3);
      for (const line of lines) {
        assert.ok(!line.includes(basic.slice(6)), line);
        assert.match(line, /Basic \[redacted\]/);
      }

      // The same through the CLI: a backup whose CouchDB source is this server.
      const work = await tmpDir();
      const keys = await runCli(['keys', 'generate', '--out', path.join(work, 'keys')], { env });
      assert.equal(keys.code, 0, keys.stderr);
      mkdirSync(path.join(work, 'files/a/-'), { recursive: true });
      writeFileSync(path.join(work, 'files/a/-/a-1.0.0.tgz'), 'x');
      writeFileSync(
        path.join(work, 'regbackup.yaml'),
        `keys: ./keys/worker.key
cache: ./cache
sources:
  couchdb:
    - name: registry
      url: "http://admin:\${SHORT_PW}@${url.host}"
  tarballs:
    - name: files
      path: ./files
      verify: false
targets:
  - name: local
    type: fs
    path: ./target
`,
      );
      const cfg = { ...env, REGBACKUP_CONFIG: path.join(work, 'regbackup.yaml') };
      const init = await runCli(['init'], { env: cfg });
      assert.equal(init.code, 0, init.stderr);
      for (const args of [['backup'], ['backup', '--json']]) {
        const r = await runCli(args, { env: cfg });
        const basics = [...new Set(echo.authorizations)].map((a) => a.slice(6));
        assert.ok(basics.length > 0);
        assertNoSecret(r, args.join(' '), basics);
        assert.match(
          r.stdout + r.stderr,
          /refused the credentials \(401\): unauthorized: bad credentials: Basic \[redacted\]/,
        );
      }
    } finally {
      await echo.close();
    }
  });
});
