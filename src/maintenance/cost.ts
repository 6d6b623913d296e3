import type { Config } from '../config/schema.js';
import type { Repository } from '../repo/repository.js';
import { listInTakenOrder, loadSnapshot } from '../repo/snapshot.js';
import { RegbackupError } from '../errors.js';

/**
 * `regbackup cost`: what each target stores and what it costs per month, from list prices (US regions,
 * 2026; override them with `prices:` in the configuration), the requests recent runs made, and what
 * deduplication and compression saved.
 */
export interface Price {
  storagePerGBMonth: number;
  putPer1000: number;
  getPer1000: number;
  minimumDays: number;
}

export const DEFAULT_PRICES: Record<string, Price> = {
  STANDARD: { storagePerGBMonth: 0.023, putPer1000: 0.005, getPer1000: 0.0004, minimumDays: 0 },
  INTELLIGENT_TIERING: { storagePerGBMonth: 0.023, putPer1000: 0.005, getPer1000: 0.0004, minimumDays: 0 },
  STANDARD_IA: { storagePerGBMonth: 0.0125, putPer1000: 0.01, getPer1000: 0.001, minimumDays: 30 },
  ONEZONE_IA: { storagePerGBMonth: 0.01, putPer1000: 0.01, getPer1000: 0.001, minimumDays: 30 },
  GLACIER_IR: { storagePerGBMonth: 0.004, putPer1000: 0.02, getPer1000: 0.01, minimumDays: 90 },
  NEARLINE: { storagePerGBMonth: 0.01, putPer1000: 0.01, getPer1000: 0.001, minimumDays: 30 },
  COLDLINE: { storagePerGBMonth: 0.004, putPer1000: 0.01, getPer1000: 0.005, minimumDays: 90 },
  ARCHIVE: { storagePerGBMonth: 0.0012, putPer1000: 0.01, getPer1000: 0.05, minimumDays: 365 },
};
/** GCS Standard is a little cheaper than S3 Standard. */
const GCS_STANDARD: Price = {
  storagePerGBMonth: 0.02,
  putPer1000: 0.005,
  getPer1000: 0.0004,
  minimumDays: 0,
};

export interface TargetCost {
  target: string;
  type: string;
  storageClass: string;
  objects: number;
  bytes: number;
  byPrefix: Record<string, { objects: number; bytes: number }>;
  price: Price;
  storagePerMonth: number;
  /** Requests of the recent runs (from their snapshots' stats) and what they cost. */
  recentRuns: number;
  recentRequests: { put: number; get: number; list: number; delete: number };
  requestCost: number;
}

export interface CostReport {
  targets: TargetCost[];
  /** From the newest snapshot: the bytes it stands for, and what the targets hold. */
  latest?: { snapshot: string; logicalBytes: number; storedBytes: number; ratio: number };
  /** Over the recent runs: bytes read, new (after deduplication), stored (after compression). */
  recent: {
    runs: number;
    bytesIn: number;
    newBytes: number;
    storedBytes: number;
    dedupSaved: number;
    compressionSaved: number;
  };
  monthlyTotal: number;
}

export function priceOf(config: Config, target: Config['targets'][number]): Price {
  const own = config.prices[target.storageClass];
  if (own) return own;
  if (target.type === 'gcs' && target.storageClass === 'STANDARD') return GCS_STANDARD;
  return DEFAULT_PRICES[target.storageClass] ?? DEFAULT_PRICES.STANDARD!;
}

export async function costReport(
  config: Config,
  repo: Repository,
  opts: { recentRuns?: number } = {},
): Promise<CostReport> {
  const report: CostReport = {
    targets: [],
    recent: { runs: 0, bytesIn: 0, newBytes: 0, storedBytes: 0, dedupSaved: 0, compressionSaved: 0 },
    monthlyTotal: 0,
  };
  const first = repo.targets[0]!;
  const infos = (await listInTakenOrder(repo, first)).slice(-(opts.recentRuns ?? 24));
  const stats: Record<string, number>[] = [];
  let latest: CostReport['latest'];
  for (const info of infos) {
    try {
      const m = await loadSnapshot(repo, first, info);
      if (m.stats) stats.push(m.stats);
      const logical = m.sources.reduce((n, s) => {
        const x = s as { bytes?: number; databases?: { bodyBytes?: number; attachmentBytes?: number }[] };
        return (
          n +
          (x.bytes ?? 0) +
          (x.databases ?? []).reduce((k, d) => k + (d.bodyBytes ?? 0) + (d.attachmentBytes ?? 0), 0)
        );
      }, 0);
      latest = { snapshot: info.id, logicalBytes: logical, storedBytes: 0, ratio: 0 };
    } catch (err) {
      if (!(err instanceof RegbackupError)) throw err;
    }
  }
  for (const s of stats) {
    report.recent.runs++;
    report.recent.bytesIn += s.bytesIn ?? 0;
    report.recent.newBytes += s.newBytes ?? 0;
    report.recent.storedBytes += s.storedBytes ?? 0;
  }
  report.recent.dedupSaved = report.recent.bytesIn - report.recent.newBytes;
  report.recent.compressionSaved = report.recent.newBytes - report.recent.storedBytes;

  for (const t of repo.targets) {
    const cfg = config.targets.find((c) => c.name === t.name)!;
    const byPrefix: TargetCost['byPrefix'] = {};
    let objects = 0;
    let bytes = 0;
    for await (const o of t.list('')) {
      const p = o.key.includes('/') ? o.key.slice(0, o.key.indexOf('/')) : o.key;
      const b = (byPrefix[p] ??= { objects: 0, bytes: 0 });
      b.objects++;
      b.bytes += o.size;
      objects++;
      bytes += o.size;
    }
    const price = priceOf(config, cfg);
    const req = { put: 0, get: 0, list: 0, delete: 0 };
    for (const s of stats)
      for (const k of Object.keys(req) as (keyof typeof req)[]) req[k] += s[`requests.${t.name}.${k}`] ?? 0;
    const storagePerMonth = (bytes / 1e9) * price.storagePerGBMonth;
    const requestCost =
      (req.put / 1000) * price.putPer1000 + ((req.get + req.list) / 1000) * price.getPer1000;
    report.targets.push({
      target: t.name,
      type: cfg.type,
      storageClass: cfg.storageClass,
      objects,
      bytes,
      byPrefix,
      price,
      storagePerMonth,
      recentRuns: stats.length,
      recentRequests: req,
      requestCost,
    });
    report.monthlyTotal += storagePerMonth;
  }
  if (latest && report.targets[0]) {
    latest.storedBytes = report.targets[0].bytes;
    latest.ratio = latest.storedBytes ? latest.logicalBytes / latest.storedBytes : 0;
    report.latest = latest;
  }
  return report;
}
