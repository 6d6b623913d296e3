import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import {
  clearSecrets,
  redact,
  redactString,
  registerSecret,
  registerSecretsIn,
} from '../../src/util/redact.js';

describe('redaction rules', () => {
  afterEach(() => clearSecrets());

  it('hides values under credential-like names at any depth, any case', () => {
    const out = redact({
      a: { b: [{ SecretAccessKey: 's1', PASSWORD: 's2', sessionToken: 's3', apiKey: 's4' }] },
      credentials: { accessKeyId: 'AKIA', secretAccessKey: 'x' },
      'X-Api-Key': 's5',
      routing_key: 's6',
      authorization: 'Basic abc',
    });
    assert.deepEqual(out, {
      a: {
        b: [
          {
            SecretAccessKey: '[redacted]',
            PASSWORD: '[redacted]',
            sessionToken: '[redacted]',
            apiKey: '[redacted]',
          },
        ],
      },
      credentials: '[redacted]',
      'X-Api-Key': '[redacted]',
      routing_key: '[redacted]',
      authorization: '[redacted]',
    });
  });

  it("keeps regbackup's own identifiers and file paths readable", () => {
    const shown = {
      key: 'snapshots/20260101T000000Z-ab',
      keyId: '0123456789abcdef',
      reportKey: 'drills/x',
      dedupKey: 'regbackup/rpo/aws',
      keys: '/etc/regbackup/worker.key',
      keyFilename: './keys/gcs.json',
      restoreKey: './keys/restore.key',
      identity: '/secure/restore.key',
      passwordFile: '/run/secrets/couch',
    };
    assert.deepEqual(redact(shown), shown);
    // A "…Key" that is not a path is a key; a password is a password even when it looks like a path.
    assert.deepEqual(redact({ restoreKey: 'c2VjcmV0', password: '/looks/like/a/path' }), {
      restoreKey: '[redacted]',
      password: '[redacted]',
    });
  });

  it('hides every header value, keeps the names', () => {
    assert.deepEqual(redact({ request: { headers: { 'content-type': 'a/b', 'X-Custom': 'v' } } }), {
      request: { headers: { 'content-type': '[redacted]', 'X-Custom': '[redacted]' } },
    });
    assert.deepEqual(redact({ headers: new Map([['x-token', 'v']]) }), {
      headers: { 'x-token': '[redacted]' },
    });
  });

  it('URL user info, to the last "@" of the authority; a user-only token; not an "@" in a path', () => {
    assert.equal(redactString('see http://u:p@ss@h:5984/db'), 'see http://u:[redacted]@h:5984/db');
    assert.equal(redactString('https://TOKEN123@github.com/x'), 'https://[redacted]@github.com/x');
    assert.equal(redactString('http://h:5984/@scope%2fname'), 'http://h:5984/@scope%2fname');
    assert.equal(redactString('"http://u:p@h","b":"c@d"'), '"http://u:[redacted]@h","b":"c@d"');
  });

  it('credential query parameters, not the others', () => {
    assert.equal(
      redactString(
        'GET /x?X-Amz-Signature=abc&X-Amz-Credential=AKIA%2F2026&X-Amz-Date=20260101&token=t&sig=s&key=k&access_token=a&page=2',
      ),
      'GET /x?X-Amz-Signature=[redacted]&X-Amz-Credential=[redacted]&X-Amz-Date=20260101&token=[redacted]&sig=[redacted]&key=[redacted]&access_token=[redacted]&page=2',
    );
  });

  it('authorization values as servers echo them; plain words stay', () => {
    assert.equal(redactString('bad credentials: Basic YWRtaW46cHc='), 'bad credentials: Basic [redacted]');
    assert.equal(redactString('got Bearer eyJhbGciOi.x.y'), 'got Bearer [redacted]');
    assert.equal(
      redactString(
        'Authorization: AWS4-HMAC-SHA256 Credential=AKIA/2026/us-east-1/s3/aws4_request, Signature=ab',
      ),
      'Authorization: AWS4-HMAC-SHA256 [redacted]',
    );
    assert.equal(redactString('Basic authentication failed'), 'Basic authentication failed');
    assert.equal(redactString('X-Api-Key: abc123 sent'), 'X-Api-Key: [redacted] sent');
    assert.equal(redactString('{"password":"hunter2"}'), '{"password":"[redacted]"}');
  });

  it('registered secrets everywhere; short ones as whole words only', () => {
    registerSecret('longsecret');
    registerSecret('Q7');
    assert.equal(redactString('x-longsecret-y'), 'x-[redacted]-y');
    assert.equal(redactString('pw Q7 in Q7x and xQ7'), 'pw [redacted] in Q7x and xQ7');
  });

  it('errors: message, stack and cause', () => {
    registerSecret('s3cr3t-value');
    const err = new Error('failed with s3cr3t-value', {
      cause: Object.assign(new Error('inner Basic dXNlcjpwdw=='), { headers: { authorization: 'x' } }),
    });
    const out = JSON.stringify(redact({ err }));
    assert.doesNotMatch(out, /s3cr3t-value|dXNlcjpwdw/);
    assert.match(out, /failed with \[redacted\]/);
    assert.match(out, /inner Basic \[redacted\]/);
  });

  it('header values: hunted in every output, except a short plain word that would mangle every line', () => {
    registerSecretsIn({
      webhook: {
        headers: { 'X-Api-Key': 'k9-abc-123', 'X-Source': 'regbackup', 'X-Token': 'abcdefghijklmnopqrstu' },
      },
    });
    assert.equal(redactString('echoed k9-abc-123 back'), 'echoed [redacted] back');
    assert.equal(redactString('echoed abcdefghijklmnopqrstu back'), 'echoed [redacted] back');
    // Still hidden wherever the configuration is printed; not cut out of "regbackup-drill-…".
    assert.equal(redactString('regbackup-drill-1234-aws-registry'), 'regbackup-drill-1234-aws-registry');
    assert.deepEqual(redact({ headers: { 'X-Source': 'regbackup' } }), {
      headers: { 'X-Source': '[redacted]' },
    });
  });
});
