import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { CouchClient } from '../../src/couchdb/client.js';

describe('CouchClient request deadlines', () => {
  let server: Server;
  let url: string;
  let slow = false;
  before(async () => {
    server = createServer((req, res) => {
      if (slow && req.url?.includes('slow')) {
        // Headers at once, the body never: the deadline must cover reading the body too.
        res.writeHead(200, { 'content-type': 'application/json' });
        res.write('{"a":');
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"ok":true}');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  });

  it("ends a request's deadline with its exchange (no timer lives on after the answer is read)", async () => {
    // A deadline that outlives its exchange is a timer (and a signal) held per request until the timeout
    // passes: at one request per document that is tens of thousands of them. Observed through the signal
    // the request was sent with: once the exchange is over it must never fire.
    const signals: AbortSignal[] = [];
    const realFetch = globalThis.fetch;
    globalThis.fetch = ((input: string | URL | Request, init?: RequestInit) => {
      if (init?.signal) signals.push(init.signal);
      return realFetch(input, init);
    }) as typeof fetch;
    try {
      const client = new CouchClient({ name: 'src', url, timeout: 150, concurrency: 4 });
      for (let i = 0; i < 20; i++)
        assert.deepEqual((await client.json('GET', `db/doc${i}`)).body, { ok: true });
    } finally {
      globalThis.fetch = realFetch;
    }
    // On a loaded machine a request can outlast the 150 ms deadline and be sent again: that deadline fired
    // during its exchange, as it should. What must not happen is a deadline firing after its exchange ended.
    assert.ok(signals.length >= 20, String(signals.length));
    const firedDuring = new Set(signals.filter((s) => s.aborted));
    await new Promise((r) => setTimeout(r, 400));
    assert.equal(
      signals.filter((s) => s.aborted && !firedDuring.has(s)).length,
      0,
      "a finished request's deadline fired later",
    );
  });

  it('still times out a request whose answer stops half-way', async () => {
    slow = true;
    const client = new CouchClient({ name: 'src', url, timeout: 200, concurrency: 1 }, { attempts: 1 });
    await assert.rejects(client.json('GET', 'db/slow'), /timed out/);
  });

  it('aborts a request in flight when the client is interrupted', async () => {
    slow = true;
    const ac = new AbortController();
    const client = new CouchClient(
      { name: 'src', url, timeout: 600_000, concurrency: 1 },
      { attempts: 1, signal: ac.signal },
    );
    const p = client.json('GET', 'db/slow');
    setTimeout(() => ac.abort(), 100);
    await assert.rejects(p, /interrupted/);
  });
});
