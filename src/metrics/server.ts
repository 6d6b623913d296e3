import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { messageOf } from '../errors.js';
import type { HealthReport } from '../health/evaluate.js';
import type { Logger } from '../log.js';
import type { Metrics } from './registry.js';

export interface MetricsServer {
  /** http://host:port */
  url: string;
  port: number;
  close(): Promise<void>;
}

/**
 * Serves `GET /metrics` (Prometheus text format) and `GET /health` (the last health report as JSON, with
 * status 200 when OK or WARNING and 503 otherwise: usable as a load balancer or Kubernetes probe).
 */
export async function serveMetrics(
  metrics: Metrics,
  opts: { host: string; port: number; logger: Logger; health?: () => HealthReport | undefined },
): Promise<MetricsServer> {
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    if (url.pathname === '/metrics') {
      metrics.text().then(
        (text) => res.writeHead(200, { 'content-type': metrics.contentType }).end(text),
        (err: unknown) => {
          opts.logger.error({ err: messageOf(err) }, 'collecting metrics failed');
          res
            .writeHead(500, { 'content-type': 'text/plain' })
            .end(`collecting metrics failed: ${messageOf(err)}\n`);
        },
      );
      return;
    }
    if (url.pathname === '/health') {
      const h = opts.health?.();
      res
        .writeHead(!h ? 503 : h.exitCode <= 1 ? 200 : 503, { 'content-type': 'application/json' })
        .end(JSON.stringify(h ?? { status: 'UNKNOWN', summary: 'REGBACKUP UNKNOWN - no check yet' }));
      return;
    }
    res.writeHead(404, { 'content-type': 'text/plain' }).end('regbackup: /metrics or /health\n');
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  const host = opts.host === '0.0.0.0' || opts.host === '::' ? '127.0.0.1' : opts.host;
  return {
    url: `http://${host.includes(':') ? `[${host}]` : host}:${port}`,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
